// The modules of the patch-classification demo:
//
// - PatchMaker: a stand-in for detector reconstruction. Makes `patches` 48x48 wire-time patches
//   per event (noise plus a track segment or a blob, from the event id), as the product "patches".
// - PatchClassifier: the inference-as-a-service module, shaped like a SonicTriton producer. In
//   acquire() it fills one EventClient entry per patch, in place, and dispatches; produce() reads
//   the 4 scores per patch (3 hit classes + Michel) from the response and puts the class counts.
// - the counts of every event are summed into a PatchTally shared by the streams.
//
// Threads: as framework.h. A PatchClassifier owns one EventClient (one per stream).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "beamline/client/event_client.h"
#include "framework.h"

namespace beamline::framework {

inline constexpr int kPatchSize = 48;
inline constexpr size_t kPatchPixels = kPatchSize * kPatchSize;

// Patches of one event, row-major [count, 48, 48].
struct Patches {
  size_t count = 0;
  std::vector<float> pixels;
};

// Per-event result: patches per most likely class, and the sum of Michel scores.
struct PatchCounts {
  std::array<uint64_t, 3> per_class{};
  double michel_sum = 0;
};

// Sums over all events; any thread.
struct PatchTally {
  std::array<std::atomic<uint64_t>, 3> per_class{};
  std::atomic<uint64_t> patches{0};
};

class PatchMaker final : public Module {
 public:
  explicit PatchMaker(size_t patches) : patches_(patches) {}
  std::string_view name() const override { return "PatchMaker"; }
  Status produce(Event& event) override;

 private:
  size_t patches_;
};

class PatchClassifier final : public Module {
 public:
  PatchClassifier(std::unique_ptr<client::EventClient> client, PatchTally& tally)
      : client_(std::move(client)), tally_(tally) {}
  std::string_view name() const override { return "PatchClassifier"; }
  void acquire(Event& event, WaitingTaskHolder holder) override;
  Status produce(Event& event) override;

  const client::EventClient& client() const { return *client_; }

 private:
  std::unique_ptr<client::EventClient> client_;
  PatchTally& tally_;
};

// Fills `out` with the deterministic patches of event `id` (what PatchMaker puts).
void makePatches(uint64_t id, size_t count, Patches& out);

}  // namespace beamline::framework
