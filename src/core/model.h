// One loaded version of one model: its effective config, its backend state, its execution
// instances (one thread each) and its statistics.
//
// Request path inside the core: Model::enqueue() validates the request against the config (on the
// caller's thread), queues it, and a free instance thread executes it through the backend, writing
// outputs straight into the request's ResponseSink.
//
// Threads: enqueue(), statistics() and inflight() are thread-safe. shutdown() is called once, by the
// repository manager. Ownership: the repository manager and in-flight requests share the Model
// through shared_ptr; the Model owns its instance threads and the backend's model state.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "beamline/core/inference.h"
#include "beamline/core/server.h"
#include "core/backend_loader.h"
#include "core/scheduler.h"
#include "model_config.pb.h"

namespace beamline {

// An output as the model config declares it.
struct ModelOutputSpec {
  std::string name;
  DataType datatype = DataType::kInvalid;
};

class Model {
 public:
  // Creates the backend model state and every instance; fails without leaving threads behind.
  static Result<std::shared_ptr<Model>> create(std::shared_ptr<const inference::ModelConfig> config,
                                               int64_t version,
                                               const std::filesystem::path& version_dir,
                                               std::shared_ptr<Backend> backend);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const std::string& name() const { return config_->name(); }
  int64_t version() const { return version_; }
  const std::shared_ptr<const inference::ModelConfig>& config() const { return config_; }

  // Validates and queues the request. Always ends with exactly one sink->complete().
  void enqueue(std::unique_ptr<InferenceRequest> request);

  // Checks a request against the config: inputs, datatypes, shapes, sizes, requested outputs.
  Status validate(const InferenceRequest& request) const;

  ModelStatisticsSnapshot statistics() const;
  size_t inflight() const { return inflight_.load(std::memory_order_acquire); }

  // Refuses new requests, waits until `deadline` for queued and executing ones, fails whatever is
  // still queued then, stops the instance threads and releases the backend state. Idempotent.
  void shutdown(std::chrono::steady_clock::time_point deadline);

 private:
  struct InputSpec {
    std::string name;
    DataType datatype = DataType::kInvalid;
    Shape dims;
    std::optional<Shape> reshape;
    bool optional = false;
  };
  struct Instance {
    BlInstance handle;
    void* state = nullptr;  // the backend's
    std::thread thread;
    BlBatch batch;                // reused by every execution on this instance
    std::vector<Shape> reshaped;  // likewise
  };
  struct Stats {
    uint64_t last_inference_ms = 0;
    uint64_t inference_count = 0;
    uint64_t execution_count = 0;
    DurationStat success, fail, queue, compute_input, compute_infer, compute_output;
    std::map<uint64_t, BatchStat> batch_stats;
  };

  Model(std::shared_ptr<const inference::ModelConfig> config, int64_t version,
        std::shared_ptr<Backend> backend);
  void instanceLoop(Instance& instance, std::promise<Status>& created);
  void execute(Instance& instance, std::unique_ptr<InferenceRequest> request);
  void finish(InferenceRequest& request, const Status& status);
  void recordFailure(const InferenceRequest& request);

  std::shared_ptr<const inference::ModelConfig> config_;
  const int64_t version_;
  std::shared_ptr<Backend> backend_;
  BlModel handle_;
  void* model_state_ = nullptr;  // the backend's; destroyed in shutdown()
  int max_batch_size_ = 0;
  std::vector<InputSpec> inputs_;
  std::vector<ModelOutputSpec> outputs_;

  RequestQueue queue_;
  std::vector<std::unique_ptr<Instance>> instances_;

  std::atomic<bool> accepting_{true};
  std::atomic<size_t> inflight_{0};
  std::mutex drain_mutex_;  // with drained_: signals inflight_ reaching 0
  std::condition_variable drained_;
  std::once_flag shutdown_once_;

  mutable std::mutex stats_mutex_;  // guards stats_
  Stats stats_;
};

}  // namespace beamline
