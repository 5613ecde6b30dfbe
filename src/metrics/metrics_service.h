// The Prometheus endpoint (GET /metrics on its own port, Triton's 8002): per-model counters,
// gauges and latency histograms read from the core's statistics at every scrape (so they are
// always current), plus CPU, memory and GPU gauges sampled once per interval.
//
// Threads: one I/O thread answers scrapes (no thread per connection); one sampler thread reads
// /proc and NVML every `interval`. The latest sample is guarded by a mutex. Ownership: borrows the
// Server, which must outlive the service.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "beamline/core/server.h"
#include "beamline/core/status.h"

namespace beamline::metrics {

struct MetricsOptions {
  std::string address = "0.0.0.0";
  int port = 8002;  // 0: any free port
  std::chrono::milliseconds interval{2000};
  bool cpu_metrics = true;
  bool gpu_metrics = true;  // only where NVML loads; otherwise silently none
};

class MetricsService {
 public:
  static Result<std::unique_ptr<MetricsService>> start(Server& server, MetricsOptions options);
  virtual ~MetricsService() = default;

  virtual int port() const = 0;
  // Number of GPUs NVML reported (0 without a driver or with GPU metrics off).
  virtual size_t gpuCount() const = 0;

  // Stops the sampler and the endpoint. Idempotent.
  virtual void shutdown() = 0;
};

}  // namespace beamline::metrics
