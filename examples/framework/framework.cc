// The mini framework: see framework.h.
#include "framework.h"

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>

#include <atomic>
#include <condition_variable>
#include <mutex>

namespace beamline::framework {

// Drives the streams. Every step of a stream is a task in the arena; a stream's state is touched
// by one task at a time (the chain acquire -> doneWaiting -> produce -> next module is sequential).
class Runner {
 public:
  Runner(const FrameworkConfig& config, size_t threads)
      : config_(config),
        control_(tbb::global_control::max_allowed_parallelism, threads + 1),
        arena_(static_cast<int>(threads), /*reserved_for_masters=*/0) {}

  struct Stream {
    size_t index = 0;
    std::vector<std::unique_ptr<Module>> modules;
    Event event;
    size_t module = 0;
    bool failed = false;
  };

  Result<RunSummary> run(const std::vector<ModuleMaker>& makers) {
    for (size_t s = 0; s < config_.streams; ++s) {
      auto stream = std::make_unique<Stream>();
      stream->index = s;
      for (const auto& make : makers) {
        auto module = make(s);
        if (!module.isOk()) return module.status().withContext("stream " + std::to_string(s));
        stream->modules.push_back(std::move(module).value());
      }
      streams_.push_back(std::move(stream));
    }
    const auto start = std::chrono::steady_clock::now();
    for (auto& stream : streams_) {
      Stream* s = stream.get();
      arena_.enqueue([this, s] { nextEvent(*s); });
    }
    {
      std::unique_lock lock(mutex_);
      all_done_.wait(lock, [this] { return streams_done_ == streams_.size(); });
    }
    summary_.wall = std::chrono::steady_clock::now() - start;
    summary_.events = config_.events;
    return summary_;
  }

 private:
  void nextEvent(Stream& s) {
    const uint64_t id = next_event_.fetch_add(1);
    if (id >= config_.events) {
      std::lock_guard lock(mutex_);
      if (++streams_done_ == streams_.size()) all_done_.notify_all();
      return;
    }
    s.event.id_ = id;
    s.event.products_.clear();
    s.module = 0;
    s.failed = false;
    runModule(s);
  }

  void runModule(Stream& s) {
    if (s.module == s.modules.size() || s.failed) {
      nextEvent(s);
      return;
    }
    // acquire() may call doneWaiting() before it returns; produce() is then still a task of its
    // own, so that stacks stay flat.
    Module& module = *s.modules[s.module];
    module.acquire(s.event, WaitingTaskHolder([this, &s](Status status) {
      arena_.enqueue([this, &s, status = std::move(status)] { afterAcquire(s, status); });
    }));
  }

  void afterAcquire(Stream& s, const Status& acquired) {
    Module& module = *s.modules[s.module];
    Status status = acquired.isOk() ? module.produce(s.event) : acquired;
    if (!status.isOk()) {
      s.failed = true;
      std::lock_guard lock(mutex_);
      ++summary_.failed;
      if (summary_.errors.size() < 5) {
        summary_.errors.push_back("event " + std::to_string(s.event.id()) + ", module " +
                                  std::string(module.name()) + ": " + status.toString());
      }
    }
    ++s.module;
    runModule(s);
  }

  FrameworkConfig config_;
  tbb::global_control control_;
  tbb::task_arena arena_;
  std::vector<std::unique_ptr<Stream>> streams_;
  std::atomic<uint64_t> next_event_{0};
  std::mutex mutex_;  // guards streams_done_ and summary_
  std::condition_variable all_done_;
  size_t streams_done_ = 0;
  RunSummary summary_;
};

Result<RunSummary> run(const FrameworkConfig& config, const std::vector<ModuleMaker>& modules) {
  if (config.streams == 0) return invalidArg("at least one stream");
  Runner runner(config, config.threads == 0 ? config.streams : config.threads);
  return runner.run(modules);
}

}  // namespace beamline::framework
