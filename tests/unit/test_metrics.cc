// The Prometheus exposition with Triton's names, and the /proc parsers behind the CPU gauges.
#include <string>

#include <gtest/gtest.h>

#include "metrics/prometheus_text.h"
#include "metrics/system_metrics.h"

namespace beamline::metrics {
namespace {

bool contains(const std::string& text, const std::string& line) {
  return text.find(line) != std::string::npos;
}

ModelStatisticsSnapshot snapshot() {
  ModelStatisticsSnapshot s;
  s.name = "my\"model";
  s.version = "2";
  s.success = {10, 5'000'000};
  s.inference_count = 12;
  s.execution_count = 7;
  s.queue = {10, 2'500'000};
  s.compute_input = {7, 1000};
  s.compute_infer = {7, 3'000'000};
  s.compute_output = {7, 2000};
  s.pending_request_count = 3;
  s.load_duration_secs = 1.25;
  s.failures_by_reason = {1, 0, 2, 0};
  s.request_latency.observe(80);
  s.request_latency.observe(300);
  s.request_latency.observe(7e6);
  return s;
}

TEST(PrometheusTextTest, WritesTritonFamiliesWithModelLabels) {
  const std::string text = renderPrometheusText({snapshot()}, {});
  const std::string labels = R"(model="my\"model",version="2")";
  EXPECT_TRUE(contains(text, "# TYPE nv_inference_count counter\n"));
  EXPECT_TRUE(contains(text, "nv_inference_request_success{" + labels + "} 10\n"));
  EXPECT_TRUE(contains(text, "nv_inference_count{" + labels + "} 12\n"));
  EXPECT_TRUE(contains(text, "nv_inference_exec_count{" + labels + "} 7\n"));
  EXPECT_TRUE(contains(text, "# TYPE nv_inference_pending_request_count gauge\n"));
  EXPECT_TRUE(contains(text, "nv_inference_pending_request_count{" + labels + "} 3\n"));
  EXPECT_TRUE(contains(text, "nv_inference_request_duration_us{" + labels + "} 5000\n"));
  EXPECT_TRUE(contains(text, "nv_inference_queue_duration_us{" + labels + "} 2500\n"));
  EXPECT_TRUE(contains(text, "nv_inference_compute_input_duration_us{" + labels + "} 1\n"));
  EXPECT_TRUE(contains(text, "nv_inference_compute_infer_duration_us{" + labels + "} 3000\n"));
  EXPECT_TRUE(contains(text, "nv_inference_compute_output_duration_us{" + labels + "} 2\n"));
  EXPECT_TRUE(
      contains(text, "nv_inference_request_failure{" + labels + R"(,reason="REJECTED"} 1)"));
  EXPECT_TRUE(contains(text, "nv_inference_request_failure{" + labels + R"(,reason="BACKEND"} 2)"));
  EXPECT_TRUE(contains(text, "nv_inference_request_failure{" + labels + R"(,reason="OTHER"} 0)"));
  EXPECT_TRUE(contains(text, "nv_model_load_duration_secs{" + labels + "} 1.25\n"));
}

TEST(PrometheusTextTest, WritesCumulativeLatencyHistograms) {
  const std::string text = renderPrometheusText({snapshot()}, {});
  const std::string name = "nv_inference_request_duration_histogram_us";
  const std::string labels = R"(model="my\"model",version="2")";
  EXPECT_TRUE(contains(text, "# TYPE " + name + " histogram\n"));
  EXPECT_TRUE(contains(text, name + "_bucket{" + labels + R"(,le="100"} 1)" + "\n"));
  EXPECT_TRUE(contains(text, name + "_bucket{" + labels + R"(,le="500"} 2)" + "\n"));
  EXPECT_TRUE(contains(text, name + "_bucket{" + labels + R"(,le="5000000"} 2)" + "\n"));
  EXPECT_TRUE(contains(text, name + "_bucket{" + labels + R"(,le="+Inf"} 3)" + "\n"));
  EXPECT_TRUE(contains(text, name + "_count{" + labels + "} 3\n"));
  EXPECT_TRUE(contains(text, name + "_sum{" + labels + "} 7000380\n"));
  EXPECT_TRUE(contains(text, "# TYPE nv_inference_queue_duration_histogram_us histogram\n"));
  EXPECT_TRUE(contains(text, "# TYPE nv_inference_compute_duration_histogram_us histogram\n"));
}

TEST(PrometheusTextTest, CpuGaugesAndGpusOnlyWhenPresent) {
  SystemSample system;
  system.cpu_utilization = 0.5;
  system.cpu_memory_total_bytes = 1000;
  system.cpu_memory_used_bytes = 400;
  std::string text = renderPrometheusText({}, system);
  EXPECT_TRUE(contains(text, "\nnv_cpu_utilization 0.5\n"));
  EXPECT_TRUE(contains(text, "\nnv_cpu_memory_total_bytes 1000\n"));
  EXPECT_TRUE(contains(text, "\nnv_cpu_memory_used_bytes 400\n"));
  EXPECT_FALSE(contains(text, "nv_gpu_"));

  GpuSample gpu;
  gpu.uuid = "GPU-1234";
  gpu.utilization = 0.25;
  gpu.memory_total_bytes = 80;
  gpu.power_usage_watts = 70.5;
  system.gpus.push_back(gpu);
  text = renderPrometheusText({}, system);
  EXPECT_TRUE(contains(text, R"(nv_gpu_utilization{gpu_uuid="GPU-1234"} 0.25)"));
  EXPECT_TRUE(contains(text, R"(nv_gpu_memory_total_bytes{gpu_uuid="GPU-1234"} 80)"));
  EXPECT_TRUE(contains(text, R"(nv_gpu_power_usage{gpu_uuid="GPU-1234"} 70.5)"));
  EXPECT_FALSE(contains(text, "nv_gpu_memory_used_bytes{"));  // not reported: left out
}

TEST(PrometheusTextTest, EveryLineIsACommentOrASample) {
  const std::string text = renderPrometheusText({snapshot(), snapshot()}, {});
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    ASSERT_NE(end, std::string::npos);
    const std::string line = text.substr(start, end - start);
    EXPECT_TRUE(line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0 ||
                line.rfind("nv_", 0) == 0)
        << line;
    start = end + 1;
  }
  EXPECT_EQ(escapeLabelValue("a\\b\"c\nd"), R"(a\\b\"c\nd)");
}

TEST(SystemMetricsTest, ParsesProcStatAndMeminfo) {
  const auto before = parseProcStat("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n");
  const auto after = parseProcStat("cpu  200 0 100 1100 100 0 0 0 0 0\n");
  ASSERT_TRUE(before && after);
  EXPECT_EQ(before->total, 1000u);
  EXPECT_EQ(before->idle, 850u);
  const auto utilization = cpuUtilizationBetween(*before, *after);
  ASSERT_TRUE(utilization);
  EXPECT_DOUBLE_EQ(*utilization, 150.0 / 500.0);
  EXPECT_FALSE(cpuUtilizationBetween(*after, *after));
  EXPECT_FALSE(parseProcStat("intr 1 2 3\n"));

  const auto memory = parseMeminfo(
      "MemTotal:       16000 kB\nMemFree:         1000 kB\nMemAvailable:    6000 kB\n");
  ASSERT_TRUE(memory);
  EXPECT_EQ(memory->total_bytes, 16000u * 1024);
  EXPECT_EQ(memory->used_bytes, 10000u * 1024);
  EXPECT_FALSE(parseMeminfo("MemTotal: 1 kB\n"));
}

TEST(SystemMetricsTest, ReadsThisMachine) {
  CpuUtilization cpu;
  EXPECT_FALSE(cpu.sample());  // the first reading has nothing to compare with
  EXPECT_TRUE(readMemoryInfo());
  // Without an NVIDIA driver there is no reader, and no error.
  auto gpus = NvmlGpuReader::open();
  if (gpus) {
    EXPECT_FALSE(gpus->sample().empty());
  }
}

}  // namespace
}  // namespace beamline::metrics
