// The demo's modules: see patch_modules.h.
#include "patch_modules.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace beamline::framework {

namespace {

// A small fast generator (xorshift64*), seeded per event and patch.
struct Random {
  uint64_t state;
  explicit Random(uint64_t seed) : state(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545F4914F6CDD1Dull;
  }
  float uniform() { return static_cast<float>(next() >> 40) / static_cast<float>(1 << 24); }
};

}  // namespace

void makePatches(uint64_t id, size_t count, Patches& out) {
  out.count = count;
  out.pixels.resize(count * kPatchPixels);
  for (size_t p = 0; p < count; ++p) {
    Random random(id * 1000003 + p);
    float* patch = out.pixels.data() + p * kPatchPixels;
    for (size_t i = 0; i < kPatchPixels; ++i) patch[i] = 0.05f * random.uniform();
    const float kind = random.uniform();
    if (kind < 0.6f) {  // a track segment through the patch
      const float angle = 3.14159f * random.uniform();
      const float dx = std::cos(angle), dy = std::sin(angle);
      const float x0 = 24 + 8 * (random.uniform() - 0.5f), y0 = 24 + 8 * (random.uniform() - 0.5f);
      for (int t = -30; t <= 30; ++t) {
        const int x = static_cast<int>(x0 + dx * static_cast<float>(t));
        const int y = static_cast<int>(y0 + dy * static_cast<float>(t));
        if (x >= 0 && x < kPatchSize && y >= 0 && y < kPatchSize) patch[y * kPatchSize + x] += 1.0f;
      }
    } else {  // a shower-like blob
      const float cx = 12 + 24 * random.uniform(), cy = 12 + 24 * random.uniform();
      for (int y = 0; y < kPatchSize; ++y) {
        for (int x = 0; x < kPatchSize; ++x) {
          const float r2 = (static_cast<float>(x) - cx) * (static_cast<float>(x) - cx) +
                           (static_cast<float>(y) - cy) * (static_cast<float>(y) - cy);
          patch[y * kPatchSize + x] += std::exp(-r2 / 40.0f);
        }
      }
    }
  }
}

Status PatchMaker::produce(Event& event) {
  Patches patches;
  makePatches(event.id(), patches_, patches);
  event.put("patches", std::move(patches));
  return Status::ok();
}

void PatchClassifier::acquire(Event& event, WaitingTaskHolder holder) {
  const Patches* patches = event.get<Patches>("patches");
  if (patches == nullptr) {
    holder.doneWaiting(notFound("no 'patches' product"));
    return;
  }
  // One entry per patch, written straight into the request (or shared-memory) buffer.
  client::EventClient& c = *client_;
  Status status = c.setBatchSize(patches->count);
  auto input = c.input(0);
  for (size_t p = 0; status.isOk() && p < patches->count; ++p) {
    auto entry = input.entry<float>(p);
    if (!entry.isOk()) {
      status = entry.status();
      break;
    }
    std::memcpy(entry->data(), patches->pixels.data() + p * kPatchPixels, kPatchPixels * sizeof(float));
  }
  if (!status.isOk()) {
    holder.doneWaiting(status);
    return;
  }
  // ExternalWork: acquire() returns now; the callback hands the event back to the framework.
  c.dispatch([holder = std::move(holder)](Status done) mutable { holder.doneWaiting(std::move(done)); });
}

Status PatchClassifier::produce(Event& event) {
  client::EventClient& c = *client_;
  PatchCounts counts;
  auto scores = c.output(0);
  for (size_t p = 0; p < c.batchSize(); ++p) {
    BL_ASSIGN_OR_RETURN(std::span<const float> s, scores.entry<float>(p));  // 3 classes + Michel
    if (s.size() != 4) return internalError("expected 4 scores per patch, got " + std::to_string(s.size()));
    const size_t best = static_cast<size_t>(std::max_element(s.begin(), s.begin() + 3) - s.begin());
    ++counts.per_class[best];
    counts.michel_sum += s[3];
  }
  for (size_t k = 0; k < 3; ++k) tally_.per_class[k] += counts.per_class[k];
  tally_.patches += c.batchSize();
  event.put("patch_counts", counts);
  c.reset();
  return Status::ok();
}

}  // namespace beamline::framework
