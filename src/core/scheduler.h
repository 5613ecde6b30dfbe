// Scheduling of requests onto a model's instances.
//
// RequestQueue is the FIFO shared by the instances of one model: front-end threads push, each
// instance's execution thread pops the oldest request when it is free ("FIFO to the next free
// instance"). The dynamic batcher builds on the same queue.
//
// Threads: all methods are thread-safe (one mutex, one condition variable).
// Ownership: push() takes the request; on failure (queue closed) it hands it back.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>

#include "beamline/core/inference.h"

namespace beamline {

class RequestQueue {
 public:
  // Returns the request back when the queue is closed, so the caller can fail it.
  std::unique_ptr<InferenceRequest> push(std::unique_ptr<InferenceRequest> request);

  // Blocks until a request is available or the queue is closed and empty (then nullptr).
  std::unique_ptr<InferenceRequest> pop();

  // Wakes every waiting pop(); later pushes are refused. Queued requests can still be popped.
  void close();

  // Removes and returns everything still queued (used to fail requests at shutdown).
  std::deque<std::unique_ptr<InferenceRequest>> drain();

  size_t size() const;

 private:
  mutable std::mutex mutex_;  // guards queue_ and closed_
  std::condition_variable ready_;
  std::deque<std::unique_ptr<InferenceRequest>> queue_;
  bool closed_ = false;
};

}  // namespace beamline
