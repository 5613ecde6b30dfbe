// Machine-level gauges sampled once per metrics interval: CPU utilisation (/proc/stat), memory
// (/proc/meminfo) and, when an NVIDIA driver is present, GPU utilisation, memory and power through
// NVML loaded with dlopen("libnvidia-ml.so.1") (no build-time dependency; no driver: no GPUs, no
// error).
//
// Threads: the parse functions are pure (any thread). CpuUtilization and NvmlGpuReader keep the
// previous reading between calls and are used by one thread at a time (the metrics sampler).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "metrics/prometheus_text.h"

namespace beamline::metrics {

// The aggregate "cpu" line of /proc/stat, in clock ticks.
struct CpuTimes {
  uint64_t idle = 0;   // idle + iowait
  uint64_t total = 0;  // every field except guest time (already counted in user/nice)
};
std::optional<CpuTimes> parseProcStat(std::string_view text);
// Busy fraction between two readings; nullopt when no time passed.
std::optional<double> cpuUtilizationBetween(const CpuTimes& before, const CpuTimes& after);

struct MemoryInfo {
  uint64_t total_bytes = 0;
  uint64_t used_bytes = 0;  // MemTotal - MemAvailable, as Triton reports it
};
std::optional<MemoryInfo> parseMeminfo(std::string_view text);

// Utilisation over the time since the previous call (the first call returns nullopt).
class CpuUtilization {
 public:
  std::optional<double> sample();

 private:
  std::optional<CpuTimes> previous_;
};

std::optional<MemoryInfo> readMemoryInfo();

class NvmlGpuReader {
 public:
  // nullptr when NVML cannot be loaded or initialised, or reports no device.
  static std::unique_ptr<NvmlGpuReader> open();
  virtual ~NvmlGpuReader() = default;
  virtual std::vector<GpuSample> sample() = 0;
};

}  // namespace beamline::metrics
