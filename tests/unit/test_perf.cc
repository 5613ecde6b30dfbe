// The measurement rules of beamline perf: ranges, percentiles, the stability rule, request
// schedules and server-statistics deltas (no network, no clock).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "beamline/perf/load_generator.h"
#include "beamline/perf/measurement.h"

namespace beamline::perf {
namespace {

TEST(PerfRangeTest, ParsesStartEndStep) {
  auto range = parseRange("1:64:2");
  ASSERT_TRUE(range.isOk()) << range.status().message();
  EXPECT_EQ(range->start, 1);
  EXPECT_EQ(range->end, 64);
  EXPECT_EQ(range->step, 2);
}

TEST(PerfRangeTest, DefaultsEndAndStep) {
  auto single = parseRange("8");
  ASSERT_TRUE(single.isOk());
  EXPECT_EQ(expandRange(*single), (std::vector<double>{8}));
  auto pair = parseRange("1:4");
  ASSERT_TRUE(pair.isOk());
  EXPECT_EQ(expandRange(*pair), (std::vector<double>{1, 2, 3, 4}));
}

TEST(PerfRangeTest, ExpandsInclusiveOfEnd) {
  EXPECT_EQ(expandRange({1, 7, 3}), (std::vector<double>{1, 4, 7}));
  EXPECT_EQ(expandRange({1, 8, 3}), (std::vector<double>{1, 4, 7}));
  const auto fractional = expandRange({0.1, 0.3, 0.1});
  ASSERT_EQ(fractional.size(), 3u);  // no rounding drift drops the end
  EXPECT_NEAR(fractional[2], 0.3, 1e-12);
}

TEST(PerfRangeTest, RejectsBadText) {
  for (const char* text : {"", "a", "1:b", "0:4", "4:1", "1:4:0", "1:2:3:4", "1::2", "-1"}) {
    auto range = parseRange(text);
    EXPECT_FALSE(range.isOk()) << text;
    if (!range.isOk()) {
      EXPECT_NE(range.status().message().find("range"), std::string::npos);
    }
  }
}

TEST(PerfPercentileTest, NearestRank) {
  std::vector<uint64_t> sorted(100);
  std::iota(sorted.begin(), sorted.end(), 1);  // 1..100 ns
  for (auto& value : sorted) value *= 1000;    // 1..100 us
  EXPECT_DOUBLE_EQ(percentileUs(sorted, 50), 50);
  EXPECT_DOUBLE_EQ(percentileUs(sorted, 90), 90);
  EXPECT_DOUBLE_EQ(percentileUs(sorted, 99), 99);
  EXPECT_DOUBLE_EQ(percentileUs(sorted, 100), 100);
  EXPECT_DOUBLE_EQ(percentileUs(sorted, 0), 1);
  EXPECT_DOUBLE_EQ(percentileUs({}, 50), 0);
  const std::vector<uint64_t> one{7000};
  EXPECT_DOUBLE_EQ(percentileUs(one, 99), 7);
}

TEST(PerfPercentileTest, SummarySortsAndOrdersPercentiles) {
  std::vector<uint64_t> latencies{9000, 1000, 5000, 3000, 7000, 2000, 8000, 4000, 6000, 10000};
  const LatencySummary summary = summarizeLatencies(latencies, 95);
  EXPECT_EQ(summary.count, 10u);
  EXPECT_DOUBLE_EQ(summary.average_us, 5.5);
  EXPECT_DOUBLE_EQ(summary.p50_us, 5);
  EXPECT_DOUBLE_EQ(summary.p90_us, 9);
  EXPECT_DOUBLE_EQ(summary.p99_us, 10);
  EXPECT_DOUBLE_EQ(summary.custom_us, 10);
  EXPECT_LE(summary.p50_us, summary.p90_us);
  EXPECT_LE(summary.p90_us, summary.p95_us);
  EXPECT_LE(summary.p95_us, summary.p99_us);
  EXPECT_TRUE(std::is_sorted(latencies.begin(), latencies.end()));
}

TEST(PerfStabilityTest, ThreeWindowsWithinPercentageAreStable) {
  const std::vector<WindowSample> windows{{1000, 100, 200}, {1050, 104, 210}, {980, 98, 195}};
  EXPECT_TRUE(isStable(windows, 10));
  EXPECT_FALSE(isStable(windows, 2));
}

TEST(PerfStabilityTest, NeedsThreeWindows) {
  const std::vector<WindowSample> windows{{1000, 100, 200}, {1000, 100, 200}};
  EXPECT_FALSE(isStable(windows, 10));
}

TEST(PerfStabilityTest, OnlyTheLastThreeCount) {
  const std::vector<WindowSample> windows{
      {10, 900, 5000}, {1000, 100, 200}, {1000, 100, 200}, {1000, 100, 200}};
  EXPECT_TRUE(isStable(windows, 10));
}

TEST(PerfStabilityTest, EachMetricIsChecked) {
  // Throughput steady but p99 jumps: not stable.
  EXPECT_FALSE(isStable(
      std::vector<WindowSample>{{1000, 100, 200}, {1000, 100, 200}, {1000, 100, 400}}, 10));
  // p50 drifts.
  EXPECT_FALSE(isStable(
      std::vector<WindowSample>{{1000, 100, 200}, {1000, 130, 200}, {1000, 100, 200}}, 10));
  // Throughput drifts.
  EXPECT_FALSE(isStable(
      std::vector<WindowSample>{{1000, 100, 200}, {1300, 100, 200}, {1000, 100, 200}}, 10));
}

TEST(PerfStabilityTest, EmptyWindowIsNeverStable) {
  EXPECT_FALSE(isStable(std::vector<WindowSample>{{0, 0, 0}, {0, 0, 0}, {0, 0, 0}}, 10));
}

double meanRate(Distribution distribution, double rate, int count) {
  RequestSchedule schedule(rate, distribution, 42);
  double total_s = 0;
  for (int i = 0; i < count; ++i)
    total_s += std::chrono::duration<double>(schedule.nextGap()).count();
  return count / total_s;
}

TEST(PerfScheduleTest, ConstantGapsAreExact) {
  RequestSchedule schedule(250, Distribution::kConstant);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(schedule.nextGap(), std::chrono::milliseconds(4));
  EXPECT_NEAR(meanRate(Distribution::kConstant, 1000, 1000), 1000, 1e-6);
}

TEST(PerfScheduleTest, PoissonMeanRateMatches) {
  // 200000 exponential gaps: the mean is within 1% of 1/rate with overwhelming probability, and
  // the seed makes the test deterministic anyway.
  EXPECT_NEAR(meanRate(Distribution::kPoisson, 500, 200000), 500, 5);
}

TEST(PerfScheduleTest, PoissonGapsVary) {
  RequestSchedule schedule(1000, Distribution::kPoisson, 7);
  const auto first = schedule.nextGap();
  bool varied = false;
  for (int i = 0; i < 10; ++i) varied = varied || schedule.nextGap() != first;
  EXPECT_TRUE(varied);
}

TEST(PerfScheduleTest, ParsesDistribution) {
  EXPECT_EQ(*parseDistribution("poisson"), Distribution::kPoisson);
  EXPECT_EQ(*parseDistribution("constant"), Distribution::kConstant);
  EXPECT_FALSE(parseDistribution("uniform").isOk());
}

TEST(PerfStatsDeltaTest, AveragesPerRequest) {
  ServerStats before;
  before.success_count = 10;
  before.success_ns = 10'000'000;
  before.queue_count = 10;
  before.queue_ns = 1'000'000;
  before.inference_count = 10;
  before.execution_count = 5;
  ServerStats after = before;
  after.success_count = 110;
  after.success_ns += 100 * 50'000;  // 50 us each
  after.queue_count = 110;
  after.queue_ns += 100 * 4'000;  // 4 us each
  after.compute_infer_count = 100;
  after.compute_infer_ns = 100 * 30'000;
  after.inference_count = 210;
  after.execution_count = 55;
  auto delta = statsDelta(before, after);
  ASSERT_TRUE(delta.isOk());
  EXPECT_EQ(delta->success_count, 100u);
  EXPECT_EQ(delta->inference_count, 200u);
  EXPECT_EQ(delta->execution_count, 50u);
  EXPECT_DOUBLE_EQ(delta->request_us, 50);
  EXPECT_DOUBLE_EQ(delta->queue_us, 4);
  EXPECT_DOUBLE_EQ(delta->compute_infer_us, 30);
  EXPECT_DOUBLE_EQ(delta->compute_input_us, 0);  // nothing counted: 0, not NaN
}

TEST(PerfStatsDeltaTest, CountersGoingBackwardsIsAnError) {
  ServerStats before;
  before.success_count = 10;
  ServerStats after;
  after.success_count = 3;
  EXPECT_FALSE(statsDelta(before, after).isOk());
}

TEST(PerfFlagsTest, ParsesShapes) {
  auto shape = parseShapeFlag("INPUT__0:1,4096");
  ASSERT_TRUE(shape.isOk());
  EXPECT_EQ(shape->first, "INPUT__0");
  EXPECT_EQ(shape->second, (std::vector<int64_t>{1, 4096}));
  EXPECT_FALSE(parseShapeFlag("INPUT__0").isOk());
  EXPECT_FALSE(parseShapeFlag("INPUT__0:").isOk());
  EXPECT_FALSE(parseShapeFlag("INPUT__0:4,-1").isOk());
  EXPECT_FALSE(parseShapeFlag("INPUT__0:4,x").isOk());
}

TEST(PerfFlagsTest, ParsesProtocolsAndSharedMemory) {
  EXPECT_EQ(*parseProtocol("http"), Protocol::kHttp);
  EXPECT_FALSE(parseProtocol("tcp").isOk());
  EXPECT_EQ(*parseHttpFormat("json"), HttpFormat::kJson);
  EXPECT_FALSE(parseHttpFormat("xml").isOk());
  EXPECT_EQ(*parseSharedMemoryKind("system"), SharedMemoryKind::kSystem);
  EXPECT_FALSE(parseSharedMemoryKind("gpu").isOk());
}

TEST(PerfReportTest, CsvHasOneRowPerStep) {
  PerfReport report;
  report.steps.resize(2);
  report.steps[0].concurrency = 1;
  report.steps[1].concurrency = 2;
  report.steps[1].server = ServerStatsDelta{};
  const std::string csv = reportCsv(report);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 3);
  EXPECT_EQ(csv.rfind("Concurrency,", 0), 0u);
  EXPECT_NE(reportJson(report).find("\"steps\""), std::string::npos);
}

}  // namespace
}  // namespace beamline::perf
