// A mini event-processing framework, in the shape of CMSSW's: N streams process events
// concurrently, each stream runs the same chain of modules on one event at a time, and a module
// may split its work into acquire() (start something asynchronous, e.g. an inference call) and
// produce() (use the result), as CMSSW's ExternalWork modules do. All of it runs in one TBB task
// arena; while a module waits for its call, the arena's threads work on other streams.
//
// Threads: run() blocks the calling thread until every event is done. Modules are made per
// stream and called by one thread at a time (acquire() and produce() of the same module never
// overlap); acquire() and produce() run on the arena's worker threads; doneWaiting() may be
// called from any thread (a gRPC callback thread, a client pool thread).
#pragma once

#include <any>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "beamline/core/status.h"

namespace beamline::framework {

// One event: an id and the products the modules put on it (typed, by name).
class Event {
 public:
  uint64_t id() const { return id_; }

  template <typename T>
  void put(std::string name, T product) {
    products_.emplace_back(std::move(name), std::make_any<T>(std::move(product)));
  }
  // nullptr when absent or of another type.
  template <typename T>
  const T* get(std::string_view name) const {
    for (const auto& [product_name, product] : products_) {
      if (product_name == name) return std::any_cast<T>(&product);
    }
    return nullptr;
  }

 private:
  friend class Runner;
  uint64_t id_ = 0;
  std::vector<std::pair<std::string, std::any>> products_;
};

// Hands an event back to the framework when the asynchronous part of acquire() is over (CMSSW's
// WaitingTaskWithArenaHolder). Call doneWaiting() exactly once, from any thread; the framework
// then schedules produce() in its arena.
class WaitingTaskHolder {
 public:
  explicit WaitingTaskHolder(std::function<void(Status)> resume) : resume_(std::move(resume)) {}
  void doneWaiting(Status status) {
    auto resume = std::move(resume_);
    resume(std::move(status));
  }

 private:
  std::function<void(Status)> resume_;
};

class Module {
 public:
  virtual ~Module() = default;
  virtual std::string_view name() const = 0;
  // Starts the module's asynchronous work for `event` and returns; the default has none.
  virtual void acquire(Event& event, WaitingTaskHolder holder) {
    (void)event;
    holder.doneWaiting(Status::ok());
  }
  // Runs after acquire()'s work completed successfully.
  virtual Status produce(Event& event) = 0;
};

// Makes the module instance of one stream.
using ModuleMaker = std::function<Result<std::unique_ptr<Module>>(size_t stream)>;

struct FrameworkConfig {
  size_t streams = 1;
  size_t threads = 0;  // arena threads; 0: as many as streams
  uint64_t events = 10;
};

struct RunSummary {
  uint64_t events = 0;
  uint64_t failed = 0;
  std::chrono::nanoseconds wall{0};
  std::vector<std::string> errors;  // the first few, "event N, module M: ..."
};

// Runs `config.events` events through the modules (in order) on `config.streams` streams.
Result<RunSummary> run(const FrameworkConfig& config, const std::vector<ModuleMaker>& modules);

}  // namespace beamline::framework
