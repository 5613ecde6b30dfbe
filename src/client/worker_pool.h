// WorkerPool: a fixed set of threads running posted tasks in order of posting. The registry owns
// one, shared by every client of the process (PseudoAsync calls, blocking steps of retries), so
// that no client needs a thread of its own.
//
// Threads: post() from any thread; tasks run on the pool's threads. The destructor runs the tasks
// already posted, then joins.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace beamline::client {

class WorkerPool {
 public:
  explicit WorkerPool(size_t threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void post(std::function<void()> task);

 private:
  void run();

  std::mutex mutex_;  // guards tasks_ and stopping_
  std::condition_variable wake_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace beamline::client
