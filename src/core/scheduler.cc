#include "core/scheduler.h"

#include <algorithm>

#include "model_config.pb.h"

namespace beamline {

// --- FifoScheduler ---------------------------------------------------------------------------

Status FifoScheduler::enqueue(std::unique_ptr<InferenceRequest>& request) {
  {
    std::lock_guard lock(mutex_);
    if (closed_) return unavailable("model '" + model_name_ + "' is being unloaded");
    request->sequence = sequence_++;
    queue_.push_back(std::move(request));
  }
  ready_.notify_one();
  return Status::ok();
}

bool FifoScheduler::next(RequestBatch& batch) {
  batch.clear();
  std::unique_lock lock(mutex_);
  ready_.wait(lock, [this] { return closed_ || !queue_.empty(); });
  if (queue_.empty()) return false;
  batch.push_back(std::move(queue_.front()));
  queue_.pop_front();
  return true;
}

void FifoScheduler::close() {
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
  }
  ready_.notify_all();
}

RequestBatch FifoScheduler::drain() {
  std::lock_guard lock(mutex_);
  RequestBatch all;
  for (auto& request : queue_) all.push_back(std::move(request));
  queue_.clear();
  return all;
}

size_t FifoScheduler::size() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

// --- DynamicBatchingPolicy -------------------------------------------------------------------

namespace {

QueuePolicy fromProto(const inference::ModelQueuePolicy& proto) {
  QueuePolicy policy;
  policy.delay_on_timeout = proto.timeout_action() == inference::ModelQueuePolicy::DELAY;
  policy.default_timeout_us = proto.default_timeout_microseconds();
  policy.allow_timeout_override = proto.allow_timeout_override();
  policy.max_queue_size = proto.max_queue_size();
  return policy;
}

}  // namespace

DynamicBatchingPolicy DynamicBatchingPolicy::fromConfig(const inference::ModelConfig& config) {
  const auto& batching = config.dynamic_batching();
  DynamicBatchingPolicy policy;
  policy.model_name = config.name();
  policy.max_batch_size = std::max<int64_t>(1, config.max_batch_size());
  for (int64_t size : batching.preferred_batch_size()) {
    if (size >= 1 && size <= policy.max_batch_size) policy.preferred_batch_sizes.push_back(size);
  }
  std::sort(policy.preferred_batch_sizes.begin(), policy.preferred_batch_sizes.end());
  policy.max_queue_delay = std::chrono::microseconds(batching.max_queue_delay_microseconds());
  policy.preserve_ordering = batching.preserve_ordering();
  policy.priority_levels = std::max<uint32_t>(1, static_cast<uint32_t>(batching.priority_levels()));
  policy.default_priority_level =
      batching.priority_levels() == 0
          ? 1
          : std::clamp<uint32_t>(static_cast<uint32_t>(batching.default_priority_level()), 1,
                                 policy.priority_levels);
  const QueuePolicy fallback = fromProto(batching.default_queue_policy());
  policy.level_policies.assign(policy.priority_levels, fallback);
  for (const auto& [level, proto] : batching.priority_queue_policy()) {
    if (level >= 1 && level <= policy.priority_levels) {
      policy.level_policies[level - 1] = fromProto(proto);
    }
  }
  return policy;
}

// --- DynamicBatcher --------------------------------------------------------------------------

DynamicBatcher::DynamicBatcher(DynamicBatchingPolicy policy, CompatibleFn compatible,
                               BatchSizeFn batch_size, RejectFn reject, ClockFn clock)
    : policy_(std::move(policy)), compatible_(std::move(compatible)),
      batch_size_(std::move(batch_size)), reject_(std::move(reject)), clock_(std::move(clock)),
      levels_(policy_.priority_levels) {}

Status DynamicBatcher::enqueue(std::unique_ptr<InferenceRequest>& request) {
  uint32_t level = policy_.default_priority_level;
  if (request->priority != 0) {
    if (request->priority > policy_.priority_levels) {
      return invalidArg("priority " + std::to_string(request->priority) + " is outside model '" +
                        policy_.model_name + "''s priority levels 1.." +
                        std::to_string(policy_.priority_levels) + " (1 is the highest)");
    }
    level = static_cast<uint32_t>(request->priority);
  }
  const QueuePolicy& queue_policy = policy_.level_policies[level - 1];
  uint64_t timeout_us = queue_policy.default_timeout_us;
  if (request->timeout_us != 0 && queue_policy.allow_timeout_override) {
    // A request may shorten the default timeout, never lengthen it.
    timeout_us = timeout_us == 0 ? request->timeout_us : std::min(timeout_us, request->timeout_us);
  }
  {
    std::lock_guard lock(mutex_);
    if (closed_) return unavailable("model '" + policy_.model_name + "' is being unloaded");
    Level& queue = levels_[level - 1];
    if (queue_policy.max_queue_size != 0 &&
        queue.queue.size() + queue.delayed.size() >= queue_policy.max_queue_size) {
      return unavailable("the queue of model '" + policy_.model_name + "' is full (" +
                         std::to_string(queue_policy.max_queue_size) +
                         " requests at priority level " + std::to_string(level) +
                         "); retry later or raise max_queue_size");
    }
    request->priority_level = level;
    request->deadline = timeout_us == 0
                            ? SteadyTime::max()
                            : request->arrival_time + std::chrono::microseconds(timeout_us);
    request->sequence = sequence_++;
    queue.queue.push_back(std::move(request));
  }
  changed_.notify_one();
  return Status::ok();
}

bool DynamicBatcher::poll(SteadyTime now, RequestBatch& batch, RequestBatch& rejected,
                          SteadyTime& wake_at) {
  std::lock_guard lock(mutex_);
  return pollLocked(now, batch, rejected, wake_at);
}

bool DynamicBatcher::pollLocked(SteadyTime now, RequestBatch& batch, RequestBatch& rejected,
                                SteadyTime& wake_at, bool flush) {
  batch.clear();
  wake_at = SteadyTime::max();

  // 1. Queue timeouts.
  for (size_t l = 0; l < levels_.size(); ++l) {
    Level& level = levels_[l];
    const bool delay = policy_.level_policies[l].delay_on_timeout;
    for (auto it = level.queue.begin(); it != level.queue.end();) {
      if ((*it)->deadline <= now) {
        if (delay) {
          level.delayed.push_back(std::move(*it));
        } else {
          rejected.push_back(std::move(*it));
        }
        it = level.queue.erase(it);
      } else {
        wake_at = std::min(wake_at, (*it)->deadline);
        ++it;
      }
    }
  }

  // 2. The candidate batch: requests in priority order, then arrival order, then the delayed
  //    ones; it stops at the first request that does not fit or is not compatible.
  std::vector<std::deque<std::unique_ptr<InferenceRequest>>*> order;
  for (Level& level : levels_) order.push_back(&level.queue);
  for (Level& level : levels_) order.push_back(&level.delayed);
  struct Taken {
    size_t queue;
    int64_t size_after;  // batch size with this request included
  };
  std::vector<Taken> taken;
  const InferenceRequest* first = nullptr;
  int64_t size = 0;
  bool full = false;
  SteadyTime oldest = SteadyTime::max();
  for (size_t q = 0; q < order.size() && !full; ++q) {
    for (const auto& request : *order[q]) {
      const int64_t n = batch_size_(*request);
      if (first != nullptr && (size + n > policy_.max_batch_size || !compatible_(*first, *request))) {
        full = true;
        break;
      }
      if (first == nullptr) first = request.get();
      size += n;
      taken.push_back({q, size});
      oldest = std::min(oldest, request->arrival_time);
      if (size >= policy_.max_batch_size) {
        full = true;
        break;
      }
    }
  }
  if (taken.empty()) return false;

  // 3. Send now, or wait.
  const auto& preferred = policy_.preferred_batch_sizes;
  const int64_t target = preferred.empty() ? policy_.max_batch_size : preferred.back();
  size_t count = 0;  // how many of `taken` to send
  if (full) {
    count = taken.size();
  } else if (size >= target) {
    // The largest preferred size is reached: the shortest prefix that reaches it.
    while (taken[count].size_after < target) ++count;
    ++count;
  } else if (flush || policy_.max_queue_delay.count() == 0 ||
             now - oldest >= policy_.max_queue_delay) {
    // The delay is over: the longest prefix whose size is a preferred size, else everything.
    count = taken.size();
    for (size_t i = taken.size(); i > 0; --i) {
      if (std::binary_search(preferred.begin(), preferred.end(), taken[i - 1].size_after)) {
        count = i;
        break;
      }
    }
  } else {
    wake_at = std::min(wake_at, oldest + policy_.max_queue_delay);
    return false;
  }

  // 4. Move the chosen prefix out of its queues (it is a prefix of each queue it touches).
  for (size_t i = 0; i < count; ++i) {
    auto& queue = *order[taken[i].queue];
    batch.push_back(std::move(queue.front()));
    queue.pop_front();
  }
  return true;
}

bool DynamicBatcher::next(RequestBatch& batch) {
  RequestBatch rejected;
  bool ready = false;
  {
    std::unique_lock lock(mutex_);
    while (true) {
      SteadyTime wake_at;
      ready = pollLocked(clock_(), batch, rejected, wake_at);
      if (ready || !rejected.empty()) break;
      if (closed_ && sizeLocked() == 0) break;
      if (closed_) {
        // Closing: no more arrivals will come, so do not wait for the delay.
        ready = pollLocked(clock_(), batch, rejected, wake_at, /*flush=*/true);
        break;
      }
      if (wake_at == SteadyTime::max()) {
        changed_.wait(lock);
      } else {
        changed_.wait_until(lock, wake_at);
      }
    }
  }
  for (auto& request : rejected) {
    reject_(std::move(request),
            unavailable("request timed out in the queue of model '" + policy_.model_name + "'"));
  }
  if (ready) return true;
  if (!rejected.empty()) return next(batch);  // rejected some; look again
  return false;
}

void DynamicBatcher::close() {
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
  }
  changed_.notify_all();
}

RequestBatch DynamicBatcher::drain() {
  std::lock_guard lock(mutex_);
  RequestBatch all;
  for (Level& level : levels_) {
    for (auto& request : level.queue) all.push_back(std::move(request));
    for (auto& request : level.delayed) all.push_back(std::move(request));
    level.queue.clear();
    level.delayed.clear();
  }
  return all;
}

size_t DynamicBatcher::sizeLocked() const {
  size_t n = 0;
  for (const Level& level : levels_) n += level.queue.size() + level.delayed.size();
  return n;
}

size_t DynamicBatcher::size() const {
  std::lock_guard lock(mutex_);
  return sizeLocked();
}

}  // namespace beamline
