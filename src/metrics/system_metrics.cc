#include "metrics/system_metrics.h"

#include <dlfcn.h>

#include <charconv>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include <spdlog/spdlog.h>

namespace beamline::metrics {
namespace {

std::optional<std::string> readFile(const char* path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The unsigned integers of a whitespace-separated line.
std::vector<uint64_t> numbers(std::string_view line) {
  std::vector<uint64_t> values;
  const char* p = line.data();
  const char* end = line.data() + line.size();
  while (p < end) {
    while (p < end && (*p == ' ' || *p == '\t')) ++p;
    if (p == end) break;
    uint64_t v = 0;
    const auto [next, error] = std::from_chars(p, end, v);
    if (error != std::errc()) break;
    values.push_back(v);
    p = next;
  }
  return values;
}

}  // namespace

std::optional<CpuTimes> parseProcStat(std::string_view text) {
  // "cpu  user nice system idle iowait irq softirq steal guest guest_nice"
  while (!text.empty()) {
    const size_t newline = text.find('\n');
    const std::string_view line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
    if (line.size() < 4 || line.substr(0, 4) != "cpu ") continue;
    const std::vector<uint64_t> v = numbers(line.substr(4));
    if (v.size() < 4) return std::nullopt;
    CpuTimes times;
    for (size_t i = 0; i < v.size() && i < 8; ++i) times.total += v[i];  // not guest, guest_nice
    times.idle = v[3] + (v.size() > 4 ? v[4] : 0);
    return times;
  }
  return std::nullopt;
}

std::optional<double> cpuUtilizationBetween(const CpuTimes& before, const CpuTimes& after) {
  if (after.total <= before.total || after.idle < before.idle) return std::nullopt;
  const double total = static_cast<double>(after.total - before.total);
  const double idle = static_cast<double>(after.idle - before.idle);
  const double busy = (total - idle) / total;
  return busy < 0 ? 0.0 : (busy > 1 ? 1.0 : busy);
}

std::optional<MemoryInfo> parseMeminfo(std::string_view text) {
  std::optional<uint64_t> total_kib, available_kib;
  while (!text.empty()) {
    const size_t newline = text.find('\n');
    const std::string_view line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view key = line.substr(0, colon);
    if (key != "MemTotal" && key != "MemAvailable") continue;
    const auto v = numbers(line.substr(colon + 1));
    if (v.empty()) continue;
    (key == "MemTotal" ? total_kib : available_kib) = v[0];
  }
  if (!total_kib || !available_kib) return std::nullopt;
  MemoryInfo info;
  info.total_bytes = *total_kib * 1024;
  info.used_bytes = (*total_kib - std::min(*available_kib, *total_kib)) * 1024;
  return info;
}

std::optional<double> CpuUtilization::sample() {
  const auto text = readFile("/proc/stat");
  if (!text) return std::nullopt;
  const auto now = parseProcStat(*text);
  if (!now) return std::nullopt;
  std::optional<double> result;
  if (previous_) result = cpuUtilizationBetween(*previous_, *now);
  previous_ = now;
  return result;
}

std::optional<MemoryInfo> readMemoryInfo() {
  const auto text = readFile("/proc/meminfo");
  if (!text) return std::nullopt;
  return parseMeminfo(*text);
}

// --- NVML
// ------------------------------------------------------------------------------------------ The
// few NVML entry points used, declared here so that no CUDA or driver header is needed.

namespace {

using nvmlReturn_t = int;
using nvmlDevice_t = struct nvmlDevice_st*;
struct nvmlUtilization_t {
  unsigned int gpu;
  unsigned int memory;
};
struct nvmlMemory_t {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
constexpr nvmlReturn_t kNvmlSuccess = 0;

class NvmlGpuReaderImpl final : public NvmlGpuReader {
 public:
  ~NvmlGpuReaderImpl() override {
    if (shutdown_ != nullptr) shutdown_();
    if (library_ != nullptr) dlclose(library_);
  }

  bool load() {
    library_ = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (library_ == nullptr) return false;
    init_ = symbol<nvmlReturn_t (*)()>("nvmlInit_v2");
    shutdown_ = symbol<nvmlReturn_t (*)()>("nvmlShutdown");
    count_ = symbol<nvmlReturn_t (*)(unsigned int*)>("nvmlDeviceGetCount_v2");
    handle_ =
        symbol<nvmlReturn_t (*)(unsigned int, nvmlDevice_t*)>("nvmlDeviceGetHandleByIndex_v2");
    uuid_ = symbol<nvmlReturn_t (*)(nvmlDevice_t, char*, unsigned int)>("nvmlDeviceGetUUID");
    utilization_ =
        symbol<nvmlReturn_t (*)(nvmlDevice_t, nvmlUtilization_t*)>("nvmlDeviceGetUtilizationRates");
    memory_ = symbol<nvmlReturn_t (*)(nvmlDevice_t, nvmlMemory_t*)>("nvmlDeviceGetMemoryInfo");
    power_ = symbol<nvmlReturn_t (*)(nvmlDevice_t, unsigned int*)>("nvmlDeviceGetPowerUsage");
    power_limit_ =
        symbol<nvmlReturn_t (*)(nvmlDevice_t, unsigned int*)>("nvmlDeviceGetEnforcedPowerLimit");
    energy_ = symbol<nvmlReturn_t (*)(nvmlDevice_t, unsigned long long*)>(
        "nvmlDeviceGetTotalEnergyConsumption");
    if (init_ == nullptr || count_ == nullptr || handle_ == nullptr || uuid_ == nullptr) {
      return false;
    }
    if (init_() != kNvmlSuccess) {
      shutdown_ = nullptr;  // not initialised: nothing to shut down
      return false;
    }
    unsigned int count = 0;
    if (count_(&count) != kNvmlSuccess || count == 0) return false;
    for (unsigned int i = 0; i < count; ++i) {
      nvmlDevice_t device = nullptr;
      char uuid[96] = {};
      if (handle_(i, &device) != kNvmlSuccess ||
          uuid_(device, uuid, sizeof(uuid)) != kNvmlSuccess) {
        continue;
      }
      devices_.push_back({device, uuid, std::nullopt});
    }
    return !devices_.empty();
  }

  std::vector<GpuSample> sample() override {
    std::vector<GpuSample> samples;
    samples.reserve(devices_.size());
    for (auto& device : devices_) {
      GpuSample s;
      s.uuid = device.uuid;
      nvmlUtilization_t utilization{};
      if (utilization_ != nullptr && utilization_(device.handle, &utilization) == kNvmlSuccess) {
        s.utilization = utilization.gpu / 100.0;
      }
      nvmlMemory_t memory{};
      if (memory_ != nullptr && memory_(device.handle, &memory) == kNvmlSuccess) {
        s.memory_total_bytes = memory.total;
        s.memory_used_bytes = memory.used;
      }
      unsigned int milliwatts = 0;
      if (power_ != nullptr && power_(device.handle, &milliwatts) == kNvmlSuccess) {
        s.power_usage_watts = milliwatts / 1000.0;
      }
      if (power_limit_ != nullptr && power_limit_(device.handle, &milliwatts) == kNvmlSuccess) {
        s.power_limit_watts = milliwatts / 1000.0;
      }
      unsigned long long millijoules = 0;
      if (energy_ != nullptr && energy_(device.handle, &millijoules) == kNvmlSuccess) {
        if (!device.first_energy_mj) device.first_energy_mj = millijoules;
        s.energy_joules = static_cast<double>(millijoules - *device.first_energy_mj) / 1000.0;
      }
      samples.push_back(std::move(s));
    }
    return samples;
  }

 private:
  template <typename F>
  F symbol(const char* name) {
    return reinterpret_cast<F>(dlsym(library_, name));
  }

  struct Device {
    nvmlDevice_t handle;
    std::string uuid;
    std::optional<unsigned long long> first_energy_mj;  // energy counts from the server's start
  };

  void* library_ = nullptr;
  nvmlReturn_t (*init_)() = nullptr;
  nvmlReturn_t (*shutdown_)() = nullptr;
  nvmlReturn_t (*count_)(unsigned int*) = nullptr;
  nvmlReturn_t (*handle_)(unsigned int, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*uuid_)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*utilization_)(nvmlDevice_t, nvmlUtilization_t*) = nullptr;
  nvmlReturn_t (*memory_)(nvmlDevice_t, nvmlMemory_t*) = nullptr;
  nvmlReturn_t (*power_)(nvmlDevice_t, unsigned int*) = nullptr;
  nvmlReturn_t (*power_limit_)(nvmlDevice_t, unsigned int*) = nullptr;
  nvmlReturn_t (*energy_)(nvmlDevice_t, unsigned long long*) = nullptr;
  std::vector<Device> devices_;
};

}  // namespace

std::unique_ptr<NvmlGpuReader> NvmlGpuReader::open() {
  auto reader = std::make_unique<NvmlGpuReaderImpl>();
  if (!reader->load()) return nullptr;
  return reader;
}

}  // namespace beamline::metrics
