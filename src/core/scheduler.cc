#include "core/scheduler.h"

namespace beamline {

std::unique_ptr<InferenceRequest> RequestQueue::push(std::unique_ptr<InferenceRequest> request) {
  {
    std::lock_guard lock(mutex_);
    if (closed_) return request;
    queue_.push_back(std::move(request));
  }
  ready_.notify_one();
  return nullptr;
}

std::unique_ptr<InferenceRequest> RequestQueue::pop() {
  std::unique_lock lock(mutex_);
  ready_.wait(lock, [this] { return closed_ || !queue_.empty(); });
  if (queue_.empty()) return nullptr;
  auto request = std::move(queue_.front());
  queue_.pop_front();
  return request;
}

void RequestQueue::close() {
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
  }
  ready_.notify_all();
}

std::deque<std::unique_ptr<InferenceRequest>> RequestQueue::drain() {
  std::lock_guard lock(mutex_);
  return std::exchange(queue_, {});
}

size_t RequestQueue::size() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

}  // namespace beamline
