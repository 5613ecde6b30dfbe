// Scheduling of requests onto a model's instances.
//
// Every model has one Scheduler. Front-end threads enqueue(); each instance's execution thread calls
// next() when it is free and gets the next batch to run ("pull": a batch is formed only when an
// instance can run it, so it keeps growing while all instances are busy).
//
//  - FifoScheduler: no dynamic_batching in the config. Requests go, one at a time and in arrival
//    order, to the next free instance.
//  - DynamicBatcher: Triton's dynamic_batching semantics — preferred batch sizes, queue delay,
//    priority levels, per-level queue policies (timeouts with REJECT or DELAY, max queue size),
//    per-request timeout override. The decision itself (poll) is a non-blocking function of the
//    queue and an injected `now`, so it is unit-tested without threads or sleeps.
//
// Threads: all methods are thread-safe (one mutex per scheduler). Ownership: enqueue() takes the
// request on success; on failure the caller still owns it and must fail it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "beamline/core/inference.h"

namespace inference {
class ModelConfig;
}  // namespace inference

namespace beamline {

using SteadyTime = std::chrono::steady_clock::time_point;
using RequestBatch = std::vector<std::unique_ptr<InferenceRequest>>;

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  // Queues the request (setting its priority level, deadline and sequence number). On failure
  // (queue full, closed, bad priority) the request stays with the caller.
  virtual Status enqueue(std::unique_ptr<InferenceRequest>& request) = 0;
  // Blocks until a batch is ready and moves it into `batch` (cleared first); false once the
  // scheduler is closed and empty.
  virtual bool next(RequestBatch& batch) = 0;
  // Wakes every waiting next(); later enqueues fail. Queued requests can still be taken.
  virtual void close() = 0;
  // Removes and returns everything still queued (to fail it at shutdown).
  virtual RequestBatch drain() = 0;
  // Requests queued and not yet taken by an instance.
  virtual size_t size() const = 0;
};

class FifoScheduler final : public Scheduler {
 public:
  explicit FifoScheduler(std::string model_name) : model_name_(std::move(model_name)) {}
  Status enqueue(std::unique_ptr<InferenceRequest>& request) override;
  bool next(RequestBatch& batch) override;
  void close() override;
  RequestBatch drain() override;
  size_t size() const override;

 private:
  const std::string model_name_;
  mutable std::mutex mutex_;  // guards queue_, closed_, sequence_
  std::condition_variable ready_;
  std::deque<std::unique_ptr<InferenceRequest>> queue_;
  bool closed_ = false;
  uint64_t sequence_ = 0;
};

// The dynamic_batching section of a model config, in the batcher's terms.
struct QueuePolicy {
  bool delay_on_timeout = false;  // timeout_action DELAY (else REJECT)
  uint64_t default_timeout_us = 0;  // 0: none
  bool allow_timeout_override = false;
  uint32_t max_queue_size = 0;  // 0: unbounded
};

struct DynamicBatchingPolicy {
  std::string model_name;
  int64_t max_batch_size = 1;
  std::vector<int64_t> preferred_batch_sizes;  // ascending, each <= max_batch_size
  std::chrono::microseconds max_queue_delay{0};
  bool preserve_ordering = false;
  uint32_t priority_levels = 1;         // levels 1 (highest) .. priority_levels
  uint32_t default_priority_level = 1;  // for requests without a priority
  std::vector<QueuePolicy> level_policies;  // index level-1; size priority_levels

  // From a validated config with dynamic_batching set.
  static DynamicBatchingPolicy fromConfig(const inference::ModelConfig& config);
};

class DynamicBatcher final : public Scheduler {
 public:
  // Whether `candidate` may join a batch that starts with `first` (same non-batch shapes, except
  // for ragged inputs). Supplied by the model, which knows the config.
  using CompatibleFn = std::function<bool(const InferenceRequest& first,
                                          const InferenceRequest& candidate)>;
  // The batch size a request contributes (its first dimension, or 1).
  using BatchSizeFn = std::function<int64_t(const InferenceRequest&)>;
  // Ends a request the batcher will not run (its queue timeout expired with REJECT). Called
  // without the batcher's lock held.
  using RejectFn = std::function<void(std::unique_ptr<InferenceRequest>, Status)>;
  using ClockFn = std::function<SteadyTime()>;

  DynamicBatcher(DynamicBatchingPolicy policy, CompatibleFn compatible, BatchSizeFn batch_size,
                 RejectFn reject, ClockFn clock = &std::chrono::steady_clock::now);

  Status enqueue(std::unique_ptr<InferenceRequest>& request) override;
  bool next(RequestBatch& batch) override;
  void close() override;
  RequestBatch drain() override;
  size_t size() const override;

  // The non-blocking decision, for tests and for next(): applies queue timeouts as of `now`
  // (expired REJECT requests are moved to `rejected`, DELAY ones behind every other request),
  // then either moves a ready batch into `batch` and returns true, or returns false and sets
  // `wake_at` to when the decision can next change without a new arrival (max() if never).
  bool poll(SteadyTime now, RequestBatch& batch, RequestBatch& rejected, SteadyTime& wake_at);

  const DynamicBatchingPolicy& policy() const { return policy_; }

 private:
  struct Level {
    std::deque<std::unique_ptr<InferenceRequest>> queue;
    std::deque<std::unique_ptr<InferenceRequest>> delayed;  // timed out with DELAY
  };
  // `flush`: send what there is without waiting for the queue delay (closing).
  bool pollLocked(SteadyTime now, RequestBatch& batch, RequestBatch& rejected, SteadyTime& wake_at,
                  bool flush = false);
  size_t sizeLocked() const;

  const DynamicBatchingPolicy policy_;
  const CompatibleFn compatible_;
  const BatchSizeFn batch_size_;
  const RejectFn reject_;
  const ClockFn clock_;

  mutable std::mutex mutex_;  // guards everything below
  std::condition_variable changed_;
  std::vector<Level> levels_;
  bool closed_ = false;
  uint64_t sequence_ = 0;
};

}  // namespace beamline
