// One loaded version of one model: its effective config, its backend state, its scheduler, its
// execution instances (one thread each) and its statistics.
//
// Request path inside the core: Model::enqueue() validates the request against the config (on the
// caller's thread) and hands it to the scheduler (FIFO, or the dynamic batcher). A free instance
// thread takes the next batch, lays its inputs out for the backend (views of the request memory for
// a single request; one gather copy for a merged batch, plus the batch_input companions of ragged
// inputs), executes it through the backend and writes each request's slice of the outputs into
// that request's ResponseSink.
//
// Threads: enqueue(), validate(), statistics() and inflight() are thread-safe. shutdown() is called
// by the repository manager. Ownership: the repository manager shares the Model through
// shared_ptr; the Model owns its scheduler, instance threads and the backend's model state, and
// each queued request until it is completed.
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
#include "core/ensemble.h"
#include "core/scheduler.h"
#include "model_config.pb.h"

namespace beamline {

// An output as the model config declares it.
struct ModelOutputSpec {
  std::string name;
  DataType datatype = DataType::kInvalid;
  std::string scatter_source;  // batch_output BATCH_SCATTER_WITH_INPUT_SHAPE: its source input
};

class Model : public std::enable_shared_from_this<Model> {
 public:
  // Creates the backend model state and every instance; fails without leaving threads behind.
  // An ensemble (platform "ensemble") has no backend and no instances: its steps go to the other
  // models through `submit`.
  static Result<std::shared_ptr<Model>> create(std::shared_ptr<const inference::ModelConfig> config,
                                               int64_t version,
                                               const std::filesystem::path& version_dir,
                                               std::shared_ptr<Backend> backend,
                                               Ensemble::Submit submit = nullptr);
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

  // Whether two requests can execute in one batch (same inputs, same non-batch shapes except for
  // ragged inputs). Used by the dynamic batcher.
  bool compatible(const InferenceRequest& first, const InferenceRequest& candidate) const;
  // The batch size a request contributes: its first dimension when the model batches, else 1.
  int64_t batchSizeOf(const InferenceRequest& request) const;

  ModelStatisticsSnapshot statistics() const;
  size_t inflight() const { return inflight_.load(std::memory_order_acquire); }
  // Set by the repository once the version is loaded (for nv_model_load_duration_secs).
  void setLoadDuration(double seconds) { load_duration_secs_.store(seconds); }

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
    bool ragged = false;
  };
  struct BatchInputSpec {
    std::string target;
    inference::BatchInput::Kind kind = inference::BatchInput::BATCH_ELEMENT_COUNT;
    DataType datatype = DataType::kInvalid;
    std::string source;
  };
  // What an instance reuses from one execution to the next, so that steady-state execution does
  // not allocate.
  struct Instance {
    BlInstance handle;
    void* state = nullptr;  // the backend's
    std::thread thread;
    BlBatch batch;
    RequestBatch requests;
    std::vector<Shape> shapes;                    // shapes the BlBatch points into
    std::vector<std::vector<std::byte>> gathered;  // merged inputs and batch_input companions
    std::vector<std::vector<std::byte>> outputs;   // batch outputs before the split, per output
    std::vector<Shape> output_shapes;
    std::vector<bool> output_allocated;
  };
  struct Stats {
    uint64_t last_inference_ms = 0;
    uint64_t inference_count = 0;
    uint64_t execution_count = 0;
    DurationStat success, fail, queue, compute_input, compute_infer, compute_output;
    std::map<uint64_t, BatchStat> batch_stats;
    std::array<uint64_t, 4> failures_by_reason{};
    LatencyHistogram request_latency, queue_latency, compute_latency;
  };
  struct Completion {
    std::unique_ptr<InferenceRequest> request;
    Status status;
  };

  Model(std::shared_ptr<const inference::ModelConfig> config, int64_t version,
        std::shared_ptr<Backend> backend);
  void instanceLoop(Instance& instance, std::promise<Status>& created);
  void execute(Instance& instance);
  Status gatherInputs(Instance& instance, int64_t total_batch);
  Status scatterOutputs(Instance& instance, int64_t total_batch, std::vector<Status>& per_request);
  // Ends a request: statistics for failures, then sink->complete() (in arrival order when the
  // config says preserve_ordering).
  void finish(std::unique_ptr<InferenceRequest> request, const Status& status,
              FailureReason reason = FailureReason::kOther);
  void completeNow(InferenceRequest& request, const Status& status);
  const InputSpec* inputSpec(std::string_view name) const;
  void ensembleDone(std::unique_ptr<InferenceRequest> request, const Status& status);

  std::shared_ptr<const inference::ModelConfig> config_;
  const int64_t version_;
  std::shared_ptr<Backend> backend_;
  BlModel handle_;
  void* model_state_ = nullptr;  // the backend's; destroyed in shutdown()
  int max_batch_size_ = 0;
  std::vector<InputSpec> inputs_;
  std::vector<ModelOutputSpec> outputs_;
  std::vector<BatchInputSpec> batch_inputs_;
  bool needs_gather_ = false;  // ragged inputs, batch_input or batch_output: never a plain view
  bool preserve_ordering_ = false;

  std::unique_ptr<Scheduler> scheduler_;
  std::shared_ptr<const Ensemble> ensemble_;  // set for platform "ensemble" (then no backend)
  std::vector<std::unique_ptr<Instance>> instances_;

  std::atomic<bool> accepting_{true};
  std::atomic<size_t> inflight_{0};
  std::atomic<double> load_duration_secs_{0};
  std::mutex drain_mutex_;  // with drained_: signals inflight_ reaching 0
  std::condition_variable drained_;
  std::once_flag shutdown_once_;

  std::mutex order_mutex_;  // guards next_to_complete_ and held_ (preserve_ordering)
  uint64_t next_to_complete_ = 0;
  std::map<uint64_t, Completion> held_;

  mutable std::mutex stats_mutex_;  // guards stats_
  Stats stats_;
};

}  // namespace beamline
