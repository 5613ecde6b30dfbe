// The measurement rules of beamline perf (see beamline/perf/measurement.h).
#include "beamline/perf/measurement.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>

namespace beamline::perf {
namespace {

std::optional<double> parseNumber(std::string_view text) {
  double value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

}  // namespace

Result<Range> parseRange(std::string_view text) {
  std::vector<std::string_view> parts;
  size_t begin = 0;
  while (true) {
    const size_t colon = text.find(':', begin);
    parts.push_back(text.substr(begin, colon == std::string_view::npos ? colon : colon - begin));
    if (colon == std::string_view::npos) break;
    begin = colon + 1;
  }
  const auto bad = [&](std::string_view why) {
    return invalidArg("range '" + std::string(text) + "': " + std::string(why) +
                      " (expected start[:end[:step]], e.g. 1:16:2)");
  };
  if (text.empty() || parts.size() > 3) return bad("wrong number of fields");
  std::vector<double> values;
  for (std::string_view part : parts) {
    const auto value = parseNumber(part);
    if (!value) return bad("'" + std::string(part) + "' is not a number");
    values.push_back(*value);
  }
  Range range;
  range.start = values[0];
  range.end = values.size() > 1 ? values[1] : values[0];
  range.step = values.size() > 2 ? values[2] : 1;
  if (range.start <= 0) return bad("start must be > 0");
  if (range.end < range.start) return bad("end must be >= start");
  if (range.step <= 0) return bad("step must be > 0");
  if ((range.end - range.start) / range.step > 10000) return bad("more than 10000 steps");
  return range;
}

std::vector<double> expandRange(const Range& range) {
  std::vector<double> values;
  // Index-based, so that fractional steps do not accumulate rounding errors.
  for (size_t i = 0;; ++i) {
    const double value = range.start + static_cast<double>(i) * range.step;
    if (value > range.end + 1e-9 * std::max(1.0, std::abs(range.end)) || i > 10000) break;
    values.push_back(value);
  }
  return values;
}

double percentileUs(std::span<const uint64_t> sorted_ns, double percent) {
  if (sorted_ns.empty()) return 0;
  const double clamped = std::clamp(percent, 0.0, 100.0);
  const auto rank =
      static_cast<size_t>(std::ceil(clamped / 100.0 * static_cast<double>(sorted_ns.size())));
  const size_t index = rank == 0 ? 0 : std::min(rank - 1, sorted_ns.size() - 1);
  return static_cast<double>(sorted_ns[index]) / 1000.0;
}

LatencySummary summarizeLatencies(std::vector<uint64_t>& latencies_ns, double custom_percent) {
  LatencySummary summary;
  if (latencies_ns.empty()) return summary;
  std::sort(latencies_ns.begin(), latencies_ns.end());
  summary.count = latencies_ns.size();
  const long double total =
      std::accumulate(latencies_ns.begin(), latencies_ns.end(), static_cast<long double>(0));
  summary.average_us =
      static_cast<double>(total / static_cast<long double>(summary.count)) / 1000.0;
  summary.p50_us = percentileUs(latencies_ns, 50);
  summary.p90_us = percentileUs(latencies_ns, 90);
  summary.p95_us = percentileUs(latencies_ns, 95);
  summary.p99_us = percentileUs(latencies_ns, 99);
  summary.custom_us = percentileUs(latencies_ns, custom_percent);
  return summary;
}

bool isStable(std::span<const WindowSample> windows, double percentage, size_t window_count) {
  if (window_count == 0 || windows.size() < window_count) return false;
  const auto last = windows.subspan(windows.size() - window_count);
  const auto within = [&](auto field) {
    double mean = 0;
    for (const WindowSample& window : last) mean += field(window);
    mean /= static_cast<double>(last.size());
    if (mean <= 0) return false;
    for (const WindowSample& window : last) {
      if (std::abs(field(window) - mean) > mean * percentage / 100.0) return false;
    }
    return true;
  };
  for (const WindowSample& window : last) {
    if (window.throughput <= 0) return false;
  }
  return within([](const WindowSample& w) { return w.throughput; }) &&
         within([](const WindowSample& w) { return w.p50_us; }) &&
         within([](const WindowSample& w) { return w.p99_us; });
}

Result<Distribution> parseDistribution(std::string_view text) {
  if (text == "constant") return Distribution::kConstant;
  if (text == "poisson") return Distribution::kPoisson;
  return invalidArg("request distribution '" + std::string(text) +
                    "': expected constant or poisson");
}

RequestSchedule::RequestSchedule(double rate_per_s, Distribution distribution, uint64_t seed)
    : rate_(rate_per_s), distribution_(distribution), engine_(seed), exponential_(rate_per_s) {}

std::chrono::nanoseconds RequestSchedule::nextGap() {
  const double seconds =
      distribution_ == Distribution::kConstant ? 1.0 / rate_ : exponential_(engine_);
  return std::chrono::nanoseconds(static_cast<int64_t>(std::llround(seconds * 1e9)));
}

Result<ServerStatsDelta> statsDelta(const ServerStats& before, const ServerStats& after) {
  const auto minus = [](uint64_t a, uint64_t b, bool& ok) -> uint64_t {
    if (a < b) {
      ok = false;
      return 0;
    }
    return a - b;
  };
  bool ok = true;
  const auto perRequest = [](uint64_t ns, uint64_t count) {
    return count == 0 ? 0.0 : static_cast<double>(ns) / static_cast<double>(count) / 1000.0;
  };
  ServerStatsDelta delta;
  delta.success_count = minus(after.success_count, before.success_count, ok);
  delta.fail_count = minus(after.fail_count, before.fail_count, ok);
  delta.inference_count = minus(after.inference_count, before.inference_count, ok);
  delta.execution_count = minus(after.execution_count, before.execution_count, ok);
  delta.request_us =
      perRequest(minus(after.success_ns, before.success_ns, ok), delta.success_count);
  delta.queue_us = perRequest(minus(after.queue_ns, before.queue_ns, ok),
                              minus(after.queue_count, before.queue_count, ok));
  delta.compute_input_us =
      perRequest(minus(after.compute_input_ns, before.compute_input_ns, ok),
                 minus(after.compute_input_count, before.compute_input_count, ok));
  delta.compute_infer_us =
      perRequest(minus(after.compute_infer_ns, before.compute_infer_ns, ok),
                 minus(after.compute_infer_count, before.compute_infer_count, ok));
  delta.compute_output_us =
      perRequest(minus(after.compute_output_ns, before.compute_output_ns, ok),
                 minus(after.compute_output_count, before.compute_output_count, ok));
  if (!ok) {
    return invalidArg("server statistics went backwards (was the model reloaded?)");
  }
  return delta;
}

}  // namespace beamline::perf
