// Batching and instances end to end through the server core and the real identity plug-in:
// requests merged into one execution and split back, ragged inputs with batch_input companions,
// preserve_ordering, concurrent instances, queue-full rejection, unload with queued requests.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "beamline/core/server.h"
#include "core_test_util.h"

namespace beamline {
namespace {
using namespace beamline::testing;  // NOLINT(google-build-using-namespace)
using Clock = std::chrono::steady_clock;

// Starts one FP32 request on input "IN" without waiting for it.
void submit(Server& server, const std::string& model, Infer& call, Parameters parameters = {},
            const std::string& input = "IN") {
  auto request = std::make_unique<InferenceRequest>();
  request->model_name = model;
  request->parameters = std::move(parameters);
  InputTensor in;
  in.name = input;
  in.datatype = DataType::kFp32;
  in.shape = call.shape;
  in.data = std::as_bytes(std::span(call.data));
  request->inputs.push_back(std::move(in));
  request->sink = &call.sink;
  server.infer(std::move(request));
}

ModelStatisticsSnapshot statsOf(Server& server, const std::string& model) {
  auto stats = server.modelStatistics(model, -1);
  EXPECT_TRUE(stats.isOk());
  return stats.isOk() && !stats->empty() ? stats->front() : ModelStatisticsSnapshot{};
}

TEST(BatchingTest, MergesConcurrentRequestsAndSplitsResultsBack) {
  TempRepository repo;
  // The delay holds the batch open long enough for all four requests to join it.
  repo.addModel("batched", identityConfig("TYPE_FP32", 8,
                                          "dynamic_batching { max_queue_delay_microseconds: 500000 "
                                          "preferred_batch_size: [ 5 ] }"));
  auto server = Server::create(optionsFor(repo));
  ASSERT_TRUE(server.isOk()) << server.status().toString();
  std::vector<std::unique_ptr<Infer>> calls;
  for (int i = 0; i < 4; ++i) {
    auto call = std::make_unique<Infer>();
    const int rows = i == 2 ? 2 : 1;  // one request carries a batch of 2: 1+1+2+1 = 5
    call->shape = {rows, 3};
    for (int k = 0; k < rows * 3; ++k) call->data.push_back(static_cast<float>(100 * i + k));
    submit(**server, "batched", *call);
    calls.push_back(std::move(call));
  }
  for (auto& call : calls) {
    call->sink.wait();
    ASSERT_TRUE(call->sink.status.isOk()) << call->sink.status.toString();
    ASSERT_EQ(call->sink.outputs.size(), 1u);
    EXPECT_EQ(call->sink.outputs[0].shape, call->shape);
    ASSERT_EQ(call->sink.outputs[0].data.size(), call->data.size() * sizeof(float));
    EXPECT_EQ(std::memcmp(call->sink.outputs[0].data.data(), call->data.data(),
                          call->data.size() * sizeof(float)),
              0);
  }
  const auto stats = statsOf(**server, "batched");
  EXPECT_EQ(stats.execution_count, 1u);  // one execution, at the preferred size 5
  EXPECT_EQ(stats.inference_count, 5u);
  EXPECT_EQ(stats.success.count, 4u);
  EXPECT_EQ(stats.compute_infer.count, 4u);  // per request, as Triton counts it
  ASSERT_EQ(stats.batch_stats.size(), 1u);
  EXPECT_EQ(stats.batch_stats[0].batch_size, 5u);
  EXPECT_EQ(stats.batch_stats[0].compute_infer.count, 1u);
}

TEST(BatchingTest, RaggedInputsAreConcatenatedWithBatchInputCompanions) {
  TempRepository repo;
  repo.addModel("ragged",
                "backend: \"identity\"\nmax_batch_size: 8\n"
                "input [ { name: \"POINTS\" data_type: TYPE_FP32 dims: [ -1 ] "
                "allow_ragged_batch: true } ]\n"
                "batch_input [ { kind: BATCH_ACCUMULATED_ELEMENT_COUNT target_name: \"OFFSETS\" "
                "data_type: TYPE_INT32 source_input: \"POINTS\" } ]\n"
                "output [ { name: \"POINTS_OUT\" data_type: TYPE_FP32 dims: [ -1 ] },\n"
                "         { name: \"OFFSETS_OUT\" data_type: TYPE_INT32 dims: [ 1 ] } ]\n"
                "batch_output [ { target_name: \"POINTS_OUT\" kind: BATCH_SCATTER_WITH_INPUT_SHAPE "
                "source_input: \"POINTS\" } ]\n"
                "dynamic_batching { max_queue_delay_microseconds: 500000 preferred_batch_size: [ 3 ] }\n");
  auto server = Server::create(optionsFor(repo));
  ASSERT_TRUE(server.isOk()) << server.status().toString();
  const std::vector<int64_t> sizes = {2, 3, 1};
  std::vector<std::unique_ptr<Infer>> calls;
  for (size_t i = 0; i < sizes.size(); ++i) {
    auto call = std::make_unique<Infer>();
    call->shape = {1, sizes[i]};
    for (int64_t k = 0; k < sizes[i]; ++k) call->data.push_back(static_cast<float>(10 * i + k));
    submit(**server, "ragged", *call, {}, "POINTS");
    calls.push_back(std::move(call));
  }
  std::set<int32_t> offsets;
  for (auto& call : calls) {
    call->sink.wait();
    ASSERT_TRUE(call->sink.status.isOk()) << call->sink.status.toString();
    std::map<std::string, const CollectingSink::Output*> by_name;
    for (const auto& out : call->sink.outputs) by_name[out.name] = &out;
    ASSERT_EQ(by_name.count("POINTS_OUT"), 1u);
    ASSERT_EQ(by_name.count("OFFSETS_OUT"), 1u);
    // Each request gets exactly its own points back, in its own shape.
    EXPECT_EQ(by_name["POINTS_OUT"]->shape, call->shape);
    ASSERT_EQ(by_name["POINTS_OUT"]->data.size(), call->data.size() * sizeof(float));
    EXPECT_EQ(std::memcmp(by_name["POINTS_OUT"]->data.data(), call->data.data(),
                          call->data.size() * sizeof(float)),
              0);
    ASSERT_EQ(by_name["OFFSETS_OUT"]->data.size(), sizeof(int32_t));
    int32_t offset = 0;
    std::memcpy(&offset, by_name["OFFSETS_OUT"]->data.data(), sizeof offset);
    offsets.insert(offset);
  }
  // One execution of the three graphs: accumulated element counts 2, 5, 6.
  EXPECT_EQ(offsets, (std::set<int32_t>{2, 5, 6}));
  EXPECT_EQ(statsOf(**server, "ragged").execution_count, 1u);
}

// With two instances, a slow request followed by a fast one finish out of order; with
// preserve_ordering the responses still come back in arrival order.
void checkOrdering(bool preserve, bool expect_in_order) {
  TempRepository repo;
  repo.addModel("ordered",
                identityConfig("TYPE_FP32", 1,
                               std::string("instance_group [ { count: 2 kind: KIND_CPU } ]\n"
                                           "dynamic_batching { preserve_ordering: ") +
                                   (preserve ? "true" : "false") + " }\n"));
  auto server = Server::create(optionsFor(repo));
  ASSERT_TRUE(server.isOk()) << server.status().toString();
  Infer slow, fast;
  slow.shape = fast.shape = {1, 1};
  slow.data = {1};
  fast.data = {2};
  submit(**server, "ordered", slow, {{"delay_ms", int64_t{300}}});
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  submit(**server, "ordered", fast);
  fast.sink.wait();
  const bool slow_done_first = slow.sink.isDone();
  slow.sink.wait();
  EXPECT_TRUE(slow.sink.status.isOk());
  EXPECT_TRUE(fast.sink.status.isOk());
  EXPECT_EQ(slow_done_first, expect_in_order);
}

TEST(BatchingTest, PreserveOrderingHoldsLaterResponses) { checkOrdering(true, true); }
TEST(BatchingTest, WithoutPreserveOrderingFastRequestsOvertake) { checkOrdering(false, false); }

TEST(InstancesTest, InstancesExecuteConcurrently) {
  TempRepository repo;
  repo.addModel("two", identityConfig("TYPE_FP32", 8,
                                      "instance_group [ { count: 2 kind: KIND_CPU } ]\n"
                                      "parameters { key: \"execute_delay_ms\" value: { "
                                      "string_value: \"400\" } }\n"));
  auto server = Server::create(optionsFor(repo));
  ASSERT_TRUE(server.isOk()) << server.status().toString();
  Infer a, b;
  a.shape = b.shape = {1, 1};
  a.data = b.data = {1};
  const auto start = Clock::now();
  submit(**server, "two", a);
  submit(**server, "two", b);
  a.sink.wait();
  b.sink.wait();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_TRUE(a.sink.status.isOk() && b.sink.status.isOk());
  // Serially they would take 0.8 s; overlapped, about 0.4 s.
  EXPECT_LT(seconds, 0.7) << "two instances did not overlap";
  EXPECT_EQ(statsOf(**server, "two").execution_count, 2u);
}

TEST(BatchingTest, FullQueueRejectsWithUnavailableAndCountsIt) {
  TempRepository repo;
  repo.addModel("tight", identityConfig("TYPE_FP32", 1,
                                        "parameters { key: \"execute_delay_ms\" value: { "
                                        "string_value: \"300\" } }\n"
                                        "dynamic_batching { default_queue_policy { "
                                        "max_queue_size: 1 } }\n"));
  auto server = Server::create(optionsFor(repo));
  ASSERT_TRUE(server.isOk()) << server.status().toString();
  Infer running, queued, refused;
  for (Infer* call : {&running, &queued, &refused}) {
    call->shape = {1, 1};
    call->data = {1};
  }
  submit(**server, "tight", running);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // now executing
  submit(**server, "tight", queued);                            // fills the queue
  submit(**server, "tight", refused);
  refused.sink.wait();
  EXPECT_EQ(refused.sink.status.code(), StatusCode::kUnavailable);
  EXPECT_NE(refused.sink.status.message().find("full"), std::string::npos);
  running.sink.wait();
  queued.sink.wait();
  EXPECT_TRUE(running.sink.status.isOk());
  EXPECT_TRUE(queued.sink.status.isOk());
  const auto stats = statsOf(**server, "tight");
  EXPECT_EQ(stats.failures_by_reason[static_cast<size_t>(FailureReason::kRejected)], 1u);
}

TEST(BatchingTest, UnloadFinishesOrFailsQueuedRequestsWithoutHanging) {
  TempRepository repo;
  repo.addModel("slow", identityConfig("TYPE_FP32", 1,
                                       "parameters { key: \"execute_delay_ms\" value: { "
                                       "string_value: \"200\" } }\n"
                                       "dynamic_batching { }\n"));
  ServerOptions options = optionsFor(repo, ModelControlMode::kExplicit);
  options.startup_models = {"slow"};
  options.exit_timeout = std::chrono::seconds(0);  // do not wait: queued requests must fail
  auto server = Server::create(options);
  ASSERT_TRUE(server.isOk()) << server.status().toString();
  std::vector<std::unique_ptr<Infer>> calls;
  for (int i = 0; i < 4; ++i) {
    auto call = std::make_unique<Infer>();
    call->shape = {1, 1};
    call->data = {1};
    submit(**server, "slow", *call);
    calls.push_back(std::move(call));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto start = Clock::now();
  EXPECT_TRUE((*server)->unloadModel("slow", false).isOk());
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 2.0);
  int succeeded = 0, failed = 0;
  for (auto& call : calls) {
    call->sink.wait();
    if (call->sink.status.isOk()) {
      ++succeeded;
    } else {
      ++failed;
      EXPECT_EQ(call->sink.status.code(), StatusCode::kUnavailable);
      EXPECT_NE(call->sink.status.message().find("unloaded"), std::string::npos);
    }
  }
  EXPECT_EQ(succeeded + failed, 4);
  EXPECT_GE(failed, 1);  // the executing one finishes, queued ones get a clear error
}

}  // namespace
}  // namespace beamline
