// The Prometheus text exposition (format 0.0.4) of beamline's metrics, with Triton's metric names
// and labels so that existing dashboards, autoscalers (SuperSONIC's KEDA trigger) and
// perf_analyzer --collect-metrics read them unchanged. Pure functions; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "beamline/core/server.h"

namespace beamline::metrics {

// One GPU as NVML reports it; a missing value is left out of the exposition.
struct GpuSample {
  std::string uuid;
  std::optional<double> utilization;  // 0..1
  std::optional<uint64_t> memory_total_bytes, memory_used_bytes;
  std::optional<double> power_usage_watts, power_limit_watts;
  std::optional<double> energy_joules;  // since the driver was loaded
};

// Values sampled once per --metrics-interval-ms.
struct SystemSample {
  std::optional<double> cpu_utilization;  // 0..1, over the last interval
  std::optional<uint64_t> cpu_memory_total_bytes, cpu_memory_used_bytes;
  std::vector<GpuSample> gpus;
};

// Every family, with # HELP and # TYPE lines. Per-model families carry `model` and `version`
// labels (failures also `reason`); families without samples are still declared. Latency
// histograms (µs, cumulative buckets of kLatencyBucketsUs):
//   nv_inference_request_duration_histogram_us, nv_inference_queue_duration_histogram_us,
//   nv_inference_compute_duration_histogram_us.
std::string renderPrometheusText(const std::vector<ModelStatisticsSnapshot>& models,
                                 const SystemSample& system);

// Escapes a label value (backslash, double quote, newline).
std::string escapeLabelValue(std::string_view value);

}  // namespace beamline::metrics
