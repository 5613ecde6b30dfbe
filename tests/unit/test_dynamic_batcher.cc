// The dynamic batcher's decisions, driven by an injected clock through poll(): no threads, no
// sleeps, every case deterministic.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/scheduler.h"

namespace beamline {
namespace {

using std::chrono::microseconds;

const SteadyTime kT0 = SteadyTime() + std::chrono::hours(1);

// A request with one input "X" of shape [batch, width], arrived at `at`.
std::unique_ptr<InferenceRequest> request(int64_t batch, SteadyTime at = kT0, int64_t width = 4,
                                          uint64_t priority = 0, uint64_t timeout_us = 0,
                                          std::string id = "") {
  auto r = std::make_unique<InferenceRequest>();
  r->model_name = "m";
  r->id = std::move(id);
  InputTensor x;
  x.name = "X";
  x.datatype = DataType::kFp32;
  x.shape = {batch, width};
  r->inputs.push_back(std::move(x));
  r->arrival_time = at;
  r->priority = priority;
  r->timeout_us = timeout_us;
  return r;
}

struct Harness {
  explicit Harness(DynamicBatchingPolicy policy)
      : batcher(
            std::move(policy),
            [](const InferenceRequest& a, const InferenceRequest& b) {
              return a.inputs[0].shape[1] == b.inputs[0].shape[1];
            },
            [](const InferenceRequest& r) { return r.inputs[0].shape[0]; },
            [this](std::unique_ptr<InferenceRequest> r, Status) { rejected_by_next.push_back(std::move(r)); },
            [this] { return now; }) {}

  void add(std::unique_ptr<InferenceRequest> r) {
    Status status = batcher.enqueue(r);
    ASSERT_TRUE(status.isOk()) << status.toString();
  }
  // Polls at `at`; returns the batch's request batch sizes (empty when not ready).
  std::vector<int64_t> poll(SteadyTime at) {
    batch.clear();
    rejected.clear();
    ready = batcher.poll(at, batch, rejected, wake_at);
    std::vector<int64_t> sizes;
    for (const auto& r : batch) sizes.push_back(r->inputs[0].shape[0]);
    return sizes;
  }

  SteadyTime now = kT0;
  DynamicBatcher batcher;
  RequestBatch batch, rejected, rejected_by_next;
  SteadyTime wake_at;
  bool ready = false;
};

DynamicBatchingPolicy policy(int64_t max_batch, std::vector<int64_t> preferred = {},
                             int64_t delay_us = 0) {
  DynamicBatchingPolicy p;
  p.model_name = "m";
  p.max_batch_size = max_batch;
  p.preferred_batch_sizes = std::move(preferred);
  p.max_queue_delay = microseconds(delay_us);
  p.level_policies.assign(1, QueuePolicy{});
  return p;
}

TEST(DynamicBatcherTest, FlushesAtPreferredSize) {
  Harness h(policy(8, {4}, 1'000'000));
  for (int i = 0; i < 3; ++i) h.add(request(1));
  EXPECT_TRUE(h.poll(kT0 + microseconds(10)).empty());
  EXPECT_EQ(h.wake_at, kT0 + microseconds(1'000'000));  // the delay of the oldest request
  h.add(request(1));
  EXPECT_EQ(h.poll(kT0 + microseconds(20)), (std::vector<int64_t>{1, 1, 1, 1}));
  EXPECT_EQ(h.batcher.size(), 0u);
}

TEST(DynamicBatcherTest, FlushesAtMaxQueueDelay) {
  Harness h(policy(8, {}, 100));
  h.add(request(1));
  h.add(request(2, kT0 + microseconds(30)));
  EXPECT_TRUE(h.poll(kT0 + microseconds(50)).empty());
  EXPECT_EQ(h.wake_at, kT0 + microseconds(100));
  EXPECT_EQ(h.poll(kT0 + microseconds(100)), (std::vector<int64_t>{1, 2}));
}

TEST(DynamicBatcherTest, FlushesWhenTheNextRequestWouldExceedTheMaximum) {
  Harness h(policy(4, {}, 1'000'000));
  h.add(request(3));
  h.add(request(2));
  // 3 + 2 > 4: the batch is as full as it can get, so it goes without waiting.
  EXPECT_EQ(h.poll(kT0), (std::vector<int64_t>{3}));
  EXPECT_TRUE(h.poll(kT0).empty());  // the 2 waits for company or the delay
  EXPECT_EQ(h.poll(kT0 + microseconds(1'000'000)), (std::vector<int64_t>{2}));
}

TEST(DynamicBatcherTest, FlushesAtMaxBatchSizeExactly) {
  Harness h(policy(4, {}, 1'000'000));
  for (int i = 0; i < 6; ++i) h.add(request(1));
  EXPECT_EQ(h.poll(kT0), (std::vector<int64_t>{1, 1, 1, 1}));
  EXPECT_EQ(h.batcher.size(), 2u);
}

TEST(DynamicBatcherTest, WithoutDelayBatchesGreedily) {
  Harness h(policy(8));
  h.add(request(1));
  EXPECT_EQ(h.poll(kT0), (std::vector<int64_t>{1}));
  h.add(request(2));
  h.add(request(3));
  EXPECT_EQ(h.poll(kT0), (std::vector<int64_t>{2, 3}));
}

TEST(DynamicBatcherTest, AfterTheDelayPrefersALargestPreferredPrefix) {
  Harness h(policy(8, {2, 6}, 100));
  for (int i = 0; i < 3; ++i) h.add(request(1));
  // 3 queued, 6 not reached; at the delay the largest prefix of a preferred size (2) goes.
  EXPECT_EQ(h.poll(kT0 + microseconds(100)), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(h.poll(kT0 + microseconds(100)), (std::vector<int64_t>{1}));
}

TEST(DynamicBatcherTest, IncompatibleShapesEndTheBatch) {
  Harness h(policy(8));
  h.add(request(1, kT0, 4));
  h.add(request(1, kT0, 5));
  h.add(request(1, kT0, 4));
  EXPECT_EQ(h.poll(kT0).size(), 1u);
  EXPECT_EQ(h.batch[0]->inputs[0].shape[1], 4);
  EXPECT_EQ(h.poll(kT0).size(), 1u);
  EXPECT_EQ(h.batch[0]->inputs[0].shape[1], 5);
}

TEST(DynamicBatcherTest, HigherPriorityLevelsGoFirst) {
  DynamicBatchingPolicy p = policy(1);
  p.priority_levels = 3;
  p.default_priority_level = 2;
  p.level_policies.assign(3, QueuePolicy{});
  Harness h(std::move(p));
  h.add(request(1, kT0, 4, 3, 0, "low"));
  h.add(request(1, kT0, 4, 0, 0, "default"));
  h.add(request(1, kT0, 4, 1, 0, "high"));
  std::vector<std::string> order;
  while (!h.poll(kT0).empty()) order.push_back(h.batch[0]->id);
  EXPECT_EQ(order, (std::vector<std::string>{"high", "default", "low"}));
}

TEST(DynamicBatcherTest, RejectsPriorityOutsideTheLevels) {
  DynamicBatchingPolicy p = policy(4);
  p.priority_levels = 2;
  p.level_policies.assign(2, QueuePolicy{});
  Harness h(std::move(p));
  auto r = request(1, kT0, 4, 3);
  Status status = h.batcher.enqueue(r);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_NE(r, nullptr);  // still the caller's
}

TEST(DynamicBatcherTest, FullQueueRejectsAtOnceWithUnavailable) {
  DynamicBatchingPolicy p = policy(4, {}, 1'000'000);
  p.level_policies[0].max_queue_size = 2;
  Harness h(std::move(p));
  h.add(request(1));
  h.add(request(1));
  auto third = request(1);
  Status status = h.batcher.enqueue(third);
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_NE(status.message().find("full"), std::string::npos) << status.message();
  EXPECT_NE(third, nullptr);
}

TEST(DynamicBatcherTest, TimeoutWithRejectRemovesTheRequest) {
  DynamicBatchingPolicy p = policy(4, {}, 1'000'000);
  p.level_policies[0].default_timeout_us = 100;
  Harness h(std::move(p));
  h.add(request(1));
  EXPECT_TRUE(h.poll(kT0 + microseconds(50)).empty());
  EXPECT_EQ(h.wake_at, kT0 + microseconds(100));  // wakes for the timeout before the delay
  EXPECT_TRUE(h.poll(kT0 + microseconds(150)).empty());
  EXPECT_EQ(h.rejected.size(), 1u);
  EXPECT_EQ(h.batcher.size(), 0u);
}

TEST(DynamicBatcherTest, TimeoutWithDelayMovesTheRequestBehindTheOthers) {
  DynamicBatchingPolicy p = policy(1);
  p.level_policies[0].delay_on_timeout = true;
  p.level_policies[0].allow_timeout_override = true;
  Harness h(std::move(p));
  h.add(request(1, kT0, 4, 0, 100, "expires"));
  h.add(request(1, kT0, 4, 0, 0, "patient"));
  EXPECT_EQ(h.poll(kT0 + microseconds(200)).size(), 1u);
  EXPECT_EQ(h.batch[0]->id, "patient");
  EXPECT_TRUE(h.rejected.empty());
  EXPECT_EQ(h.poll(kT0 + microseconds(200)).size(), 1u);
  EXPECT_EQ(h.batch[0]->id, "expires");
}

TEST(DynamicBatcherTest, RequestTimeoutMayOnlyShortenTheDefault) {
  DynamicBatchingPolicy p = policy(4, {}, 1'000'000);
  p.level_policies[0].default_timeout_us = 1000;
  p.level_policies[0].allow_timeout_override = true;
  Harness h(std::move(p));
  h.add(request(1, kT0, 4, 0, 5000, "longer"));
  h.add(request(1, kT0, 4, 0, 100, "shorter"));
  h.poll(kT0 + microseconds(150));
  ASSERT_EQ(h.rejected.size(), 1u);
  EXPECT_EQ(h.rejected[0]->id, "shorter");
  h.poll(kT0 + microseconds(1001));
  ASSERT_EQ(h.rejected.size(), 1u);
  EXPECT_EQ(h.rejected[0]->id, "longer");  // capped at the default, not 5000 us
}

TEST(DynamicBatcherTest, RequestTimeoutIgnoredWithoutOverride) {
  DynamicBatchingPolicy p = policy(4, {}, 1'000'000);
  p.level_policies[0].default_timeout_us = 1000;
  Harness h(std::move(p));
  h.add(request(1, kT0, 4, 0, 100));
  h.poll(kT0 + microseconds(500));
  EXPECT_TRUE(h.rejected.empty());
  h.poll(kT0 + microseconds(1000));
  EXPECT_EQ(h.rejected.size(), 1u);
}

TEST(DynamicBatcherTest, NextRejectsExpiredRequestsAndReturnsFalseWhenClosed) {
  DynamicBatchingPolicy p = policy(4);
  p.level_policies[0].default_timeout_us = 10;
  Harness h(std::move(p));
  h.add(request(1));
  h.now = kT0 + microseconds(20);
  h.batcher.close();
  RequestBatch batch;
  EXPECT_FALSE(h.batcher.next(batch));
  EXPECT_EQ(h.rejected_by_next.size(), 1u);
}

TEST(DynamicBatcherTest, ClosingFlushesWithoutWaitingForTheDelay) {
  Harness h(policy(8, {}, 10'000'000));
  h.add(request(1));
  h.batcher.close();
  RequestBatch batch;
  EXPECT_TRUE(h.batcher.next(batch));
  EXPECT_EQ(batch.size(), 1u);
  EXPECT_FALSE(h.batcher.next(batch));
}

}  // namespace
}  // namespace beamline
