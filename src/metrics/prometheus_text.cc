#include "metrics/prometheus_text.h"

#include <charconv>
#include <cmath>

namespace beamline::metrics {
namespace {

void appendNumber(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
    return;
  }
  if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buffer[64];
  // Whole numbers as integers ("5000000", not "5e+06"): easier to read in bucket labels.
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    const auto result = std::to_chars(buffer, buffer + sizeof(buffer), static_cast<int64_t>(value));
    out.append(buffer, result.ptr);
    return;
  }
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  out.append(buffer, result.ptr);
}

void appendNumber(std::string& out, uint64_t value) {
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  out.append(buffer, result.ptr);
}

void declare(std::string& out, std::string_view name, std::string_view type,
             std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

std::string modelLabels(const ModelStatisticsSnapshot& model) {
  return "model=\"" + escapeLabelValue(model.name) + "\",version=\"" +
         escapeLabelValue(model.version) + "\"";
}

template <typename T>
void sample(std::string& out, std::string_view name, std::string_view labels, T value) {
  out += name;
  if (!labels.empty()) {
    out += '{';
    out += labels;
    out += '}';
  }
  out += ' ';
  appendNumber(out, value);
  out += '\n';
}

// A per-model family: one sample per model from `value(model)`.
template <typename Value>
void modelFamily(std::string& out, const std::vector<ModelStatisticsSnapshot>& models,
                 std::string_view name, std::string_view type, std::string_view help, Value value) {
  declare(out, name, type, help);
  for (const auto& model : models) sample(out, name, modelLabels(model), value(model));
}

template <typename Histogram>
void histogramFamily(std::string& out, const std::vector<ModelStatisticsSnapshot>& models,
                     std::string_view name, std::string_view help, Histogram histogram) {
  declare(out, name, "histogram", help);
  const std::string bucket = std::string(name) + "_bucket";
  for (const auto& model : models) {
    const LatencyHistogram& h = histogram(model);
    const std::string labels = modelLabels(model);
    for (size_t i = 0; i < kLatencyBucketsUs.size(); ++i) {
      std::string with_le = labels + ",le=\"";
      appendNumber(with_le, kLatencyBucketsUs[i]);
      with_le += '"';
      sample(out, bucket, with_le, h.buckets[i]);
    }
    sample(out, bucket, labels + ",le=\"+Inf\"", h.count);
    sample(out, std::string(name) + "_sum", labels, h.sum_us);
    sample(out, std::string(name) + "_count", labels, h.count);
  }
}

template <typename Value>
void gpuFamily(std::string& out, const std::vector<GpuSample>& gpus, std::string_view name,
               std::string_view type, std::string_view help, Value value) {
  declare(out, name, type, help);
  for (const auto& gpu : gpus) {
    const auto v = value(gpu);
    if (!v) continue;
    sample(out, name, "gpu_uuid=\"" + escapeLabelValue(gpu.uuid) + "\"", *v);
  }
}

}  // namespace

std::string escapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string renderPrometheusText(const std::vector<ModelStatisticsSnapshot>& models,
                                 const SystemSample& system) {
  std::string out;
  out.reserve(4096 + models.size() * 6144);
  using M = ModelStatisticsSnapshot;
  modelFamily(out, models, "nv_inference_request_success", "counter",
              "Number of successful inference requests, all batch sizes",
              [](const M& m) { return m.success.count; });
  {
    static constexpr std::string_view kReasons[] = {"REJECTED", "CANCELED", "BACKEND", "OTHER"};
    declare(out, "nv_inference_request_failure", "counter",
            "Number of failed inference requests, all batch sizes");
    for (const auto& model : models) {
      for (size_t r = 0; r < 4; ++r) {
        sample(out, "nv_inference_request_failure",
               modelLabels(model) + ",reason=\"" + std::string(kReasons[r]) + "\"",
               model.failures_by_reason[r]);
      }
    }
  }
  modelFamily(out, models, "nv_inference_count", "counter",
              "Number of inferences performed (does not include cached requests)",
              [](const M& m) { return m.inference_count; });
  modelFamily(out, models, "nv_inference_exec_count", "counter",
              "Number of model executions performed (does not include cached requests)",
              [](const M& m) { return m.execution_count; });
  modelFamily(out, models, "nv_inference_pending_request_count", "gauge",
              "Instantaneous number of pending requests awaiting execution per-model.",
              [](const M& m) { return m.pending_request_count; });
  modelFamily(out, models, "nv_inference_request_duration_us", "counter",
              "Cumulative inference request duration in microseconds (includes cached requests)",
              [](const M& m) { return m.success.ns / 1000; });
  modelFamily(out, models, "nv_inference_queue_duration_us", "counter",
              "Cumulative inference queuing duration in microseconds (includes cached requests)",
              [](const M& m) { return m.queue.ns / 1000; });
  modelFamily(out, models, "nv_inference_compute_input_duration_us", "counter",
              "Cumulative compute input duration in microseconds (does not include cached "
              "requests)",
              [](const M& m) { return m.compute_input.ns / 1000; });
  modelFamily(out, models, "nv_inference_compute_infer_duration_us", "counter",
              "Cumulative compute inference duration in microseconds (does not include cached "
              "requests)",
              [](const M& m) { return m.compute_infer.ns / 1000; });
  modelFamily(out, models, "nv_inference_compute_output_duration_us", "counter",
              "Cumulative inference compute output duration in microseconds (does not include "
              "cached requests)",
              [](const M& m) { return m.compute_output.ns / 1000; });
  histogramFamily(out, models, "nv_inference_request_duration_histogram_us",
                  "Histogram of successful inference request durations in microseconds, end to "
                  "end in the server",
                  [](const M& m) -> const LatencyHistogram& { return m.request_latency; });
  histogramFamily(out, models, "nv_inference_queue_duration_histogram_us",
                  "Histogram of queuing durations of successful requests in microseconds",
                  [](const M& m) -> const LatencyHistogram& { return m.queue_latency; });
  histogramFamily(out, models, "nv_inference_compute_duration_histogram_us",
                  "Histogram of compute durations (input + infer + output) of successful "
                  "requests in microseconds",
                  [](const M& m) -> const LatencyHistogram& { return m.compute_latency; });
  modelFamily(out, models, "nv_model_load_duration_secs", "gauge", "Model load time in seconds",
              [](const M& m) { return m.load_duration_secs; });

  declare(out, "nv_cpu_utilization", "gauge", "CPU utilization rate [0.0 - 1.0]");
  if (system.cpu_utilization) sample(out, "nv_cpu_utilization", "", *system.cpu_utilization);
  declare(out, "nv_cpu_memory_total_bytes", "gauge", "CPU total memory (RAM), in bytes");
  if (system.cpu_memory_total_bytes) {
    sample(out, "nv_cpu_memory_total_bytes", "", *system.cpu_memory_total_bytes);
  }
  declare(out, "nv_cpu_memory_used_bytes", "gauge", "CPU used memory (RAM), in bytes");
  if (system.cpu_memory_used_bytes) {
    sample(out, "nv_cpu_memory_used_bytes", "", *system.cpu_memory_used_bytes);
  }

  if (!system.gpus.empty()) {
    const auto& gpus = system.gpus;
    gpuFamily(out, gpus, "nv_gpu_utilization", "gauge", "GPU utilization rate [0.0 - 1.0)",
              [](const GpuSample& g) { return g.utilization; });
    gpuFamily(out, gpus, "nv_gpu_memory_total_bytes", "gauge", "GPU total memory, in bytes",
              [](const GpuSample& g) { return g.memory_total_bytes; });
    gpuFamily(out, gpus, "nv_gpu_memory_used_bytes", "gauge", "GPU used memory, in bytes",
              [](const GpuSample& g) { return g.memory_used_bytes; });
    gpuFamily(out, gpus, "nv_gpu_power_usage", "gauge", "GPU power usage in watts",
              [](const GpuSample& g) { return g.power_usage_watts; });
    gpuFamily(out, gpus, "nv_gpu_power_limit", "gauge", "GPU power management limit in watts",
              [](const GpuSample& g) { return g.power_limit_watts; });
    gpuFamily(out, gpus, "nv_energy_consumption", "counter",
              "GPU energy consumption in joules since the Triton Server started",
              [](const GpuSample& g) { return g.energy_joules; });
  }
  return out;
}

}  // namespace beamline::metrics
