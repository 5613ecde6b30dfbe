// beamline::perf measurement rules: the pure, clock-free parts of the load generator (`beamline
// perf`), kept apart so that unit tests can check them: range parsing, percentiles, the stability
// rule over measurement windows, request schedules for request-rate mode, and deltas of the
// server's ModelStatistics.
//
// Threads: everything here is a free function or a value type with no shared state; call it from
// any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "beamline/core/status.h"

namespace beamline::perf {

// `start:end:step` as perf_analyzer takes it (`--concurrency-range 1:64:2`, `--request-rate-range
// 100:400:100`). `end` and `step` may be left out ("8" is 8:8:1, "1:4" is 1:4:1).
struct Range {
  double start = 1;
  double end = 1;
  double step = 1;
};
// Errors (INVALID_ARG) name the text: non-numbers, start <= 0, end < start, step <= 0.
Result<Range> parseRange(std::string_view text);
// The values start, start+step, ... up to and including end (at most 10000 of them).
std::vector<double> expandRange(const Range& range);

// Latencies of one set of requests, in microseconds.
struct LatencySummary {
  uint64_t count = 0;
  double average_us = 0;
  double p50_us = 0;
  double p90_us = 0;
  double p95_us = 0;
  double p99_us = 0;
  double custom_us = 0;  // at the --percentile the user asked for (p99 when none)
};
// Nearest-rank percentile (the smallest value with at least `percent`% of values at or below it)
// of `sorted` (ascending) nanoseconds, in microseconds; 0 for an empty span.
double percentileUs(std::span<const uint64_t> sorted_ns, double percent);
// Sorts `latencies_ns` in place and summarises it.
LatencySummary summarizeLatencies(std::vector<uint64_t>& latencies_ns, double custom_percent);

// What the stability rule looks at in one measurement window.
struct WindowSample {
  double throughput = 0;  // completed inferences per second
  double p50_us = 0;
  double p99_us = 0;
};
// perf_analyzer's rule: the last `window_count` (3) windows are stable when, for throughput, p50
// and p99 each, every window lies within `percentage`% of their mean. Fewer windows, or a window
// that completed nothing, are not stable.
bool isStable(std::span<const WindowSample> windows, double percentage, size_t window_count = 3);

// When requests start in request-rate mode.
enum class Distribution { kConstant, kPoisson };
Result<Distribution> parseDistribution(std::string_view text);

// Gaps between request starts for one rate: equal gaps (constant) or exponentially distributed
// ones (poisson, i.e. a Poisson arrival process) with mean 1/rate. Deterministic for one seed.
// Not thread-safe: one per scheduling thread.
class RequestSchedule {
 public:
  RequestSchedule(double rate_per_s, Distribution distribution, uint64_t seed = 1);
  std::chrono::nanoseconds nextGap();
  double rate() const { return rate_; }

 private:
  double rate_;
  Distribution distribution_;
  std::mt19937_64 engine_;
  std::exponential_distribution<double> exponential_;
};

// The counters of one model's ModelStatistics that perf reports (durations in nanoseconds, as on
// the wire).
struct ServerStats {
  uint64_t success_count = 0;
  uint64_t success_ns = 0;
  uint64_t fail_count = 0;
  uint64_t queue_count = 0;
  uint64_t queue_ns = 0;
  uint64_t compute_input_count = 0;
  uint64_t compute_input_ns = 0;
  uint64_t compute_infer_count = 0;
  uint64_t compute_infer_ns = 0;
  uint64_t compute_output_count = 0;
  uint64_t compute_output_ns = 0;
  uint64_t inference_count = 0;
  uint64_t execution_count = 0;
};
// The server's view of an interval: counts, and average durations per request in microseconds.
struct ServerStatsDelta {
  uint64_t success_count = 0;
  uint64_t fail_count = 0;
  uint64_t inference_count = 0;
  uint64_t execution_count = 0;
  double request_us = 0;  // end to end in the server
  double queue_us = 0;
  double compute_input_us = 0;
  double compute_infer_us = 0;
  double compute_output_us = 0;
};
// after - before; INVALID_ARG when a counter went backwards (the model was reloaded).
Result<ServerStatsDelta> statsDelta(const ServerStats& before, const ServerStats& after);

}  // namespace beamline::perf
