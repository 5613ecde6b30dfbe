// The server core: model repositories, loaded models and the inference entry point. Front ends
// (gRPC, later HTTP) and the in-process client translate to and from these calls and hold no model,
// repository or scheduling logic of their own.
//
// Threads: every public method is thread-safe and may be called from any front-end thread.
// Ownership: the Server owns the repository manager, the loaded models and their instance threads.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "beamline/core/inference.h"
#include "beamline/core/shared_memory.h"
#include "beamline/core/status.h"

namespace inference {
class ModelConfig;
}  // namespace inference

namespace beamline {

enum class ModelControlMode { kNone, kPoll, kExplicit };

// "none" | "poll" | "explicit"
Result<ModelControlMode> parseModelControlMode(std::string_view text);

struct ServerOptions {
  std::vector<std::string> model_repositories;
  ModelControlMode control_mode = ModelControlMode::kNone;
  // Models to load at start-up in explicit mode ("*" loads all).
  std::vector<std::string> startup_models;
  std::chrono::seconds repository_poll_interval{15};
  // Where backend plug-ins (libbeamline_backend_<name>.so) are looked up, in order.
  std::vector<std::string> backend_directories;
  bool strict_readiness = true;
  // How long stop() waits for in-flight requests before it gives up.
  std::chrono::seconds exit_timeout{30};
  // Whether clients may register shared memory regions (--allow-client-shm; off by default, as
  // in Triton since 2026).
  bool allow_client_shm = false;
};

enum class ModelState { kUnknown, kReady, kUnavailable, kLoading, kUnloading };
// "READY", "UNAVAILABLE", ... as in RepositoryIndex.
std::string_view modelStateName(ModelState state);

struct ModelIndexEntry {
  std::string name;
  std::string version;  // empty when no version could be determined
  ModelState state = ModelState::kUnknown;
  std::string reason;
};

struct TensorMetadata {
  std::string name;
  DataType datatype = DataType::kInvalid;
  Shape shape;  // with a leading -1 when the model batches
};

struct ModelMetadata {
  std::string name;
  std::vector<std::string> versions;
  std::string platform;
  std::vector<TensorMetadata> inputs;
  std::vector<TensorMetadata> outputs;
};

// Cumulative counters with Triton's ModelStatistics semantics.
struct DurationStat {
  uint64_t count = 0;
  uint64_t ns = 0;
};
struct BatchStat {
  uint64_t batch_size = 0;
  DurationStat compute_input, compute_infer, compute_output;
};
// A cumulative latency histogram in microseconds (Prometheus semantics: bucket i counts the
// observations <= kLatencyBucketsUs[i]; the +Inf bucket is `count`).
inline constexpr std::array<double, 14> kLatencyBucketsUs = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 5000000};
struct LatencyHistogram {
  std::array<uint64_t, kLatencyBucketsUs.size()> buckets{};  // cumulative
  uint64_t count = 0;
  double sum_us = 0;
  void observe(double us) {
    for (size_t i = 0; i < kLatencyBucketsUs.size(); ++i) {
      if (us <= kLatencyBucketsUs[i]) ++buckets[i];
    }
    ++count;
    sum_us += us;
  }
};

// Why a request failed, as Triton's nv_inference_request_failure `reason` label says.
enum class FailureReason { kRejected, kCanceled, kBackend, kOther };

struct ModelStatisticsSnapshot {
  std::string name;
  std::string version;
  uint64_t last_inference_ms = 0;  // since the epoch; 0 when none
  uint64_t inference_count = 0;    // a batch of n counts n
  uint64_t execution_count = 0;    // a batch counts 1
  DurationStat success, fail, queue, compute_input, compute_infer, compute_output;
  std::vector<BatchStat> batch_stats;  // sorted by batch size

  // For the metrics endpoint.
  uint64_t pending_request_count = 0;  // queued, not yet executing
  double load_duration_secs = 0;
  // Failed requests by reason: REJECTED, CANCELED, BACKEND, OTHER.
  std::array<uint64_t, 4> failures_by_reason{};
  // Per successful request: end to end in the core, in the queue, and compute (input + infer +
  // output of its execution).
  LatencyHistogram request_latency, queue_latency, compute_latency;
};

class Server {
 public:
  static Result<std::unique_ptr<Server>> create(ServerOptions options);
  virtual ~Server() = default;

  static constexpr const char* kName = "beamline";
  static const char* version();
  // The protocol extensions this server really supports, in Triton's order.
  static std::vector<std::string> extensions();

  virtual bool isLive() const = 0;
  // Ready: started, not stopping, and (with strict readiness) every model it was asked to load is
  // ready.
  virtual bool isReady() const = 0;

  // version -1: by policy. NOT_FOUND when the model or version is unknown.
  virtual Result<bool> modelReady(const std::string& name, int64_t version) const = 0;
  virtual Result<ModelMetadata> modelMetadata(const std::string& name, int64_t version) const = 0;
  // The effective configuration (defaults filled in).
  virtual Result<std::shared_ptr<const inference::ModelConfig>> modelConfig(
      const std::string& name, int64_t version) const = 0;
  // Empty name: every loaded model version.
  virtual Result<std::vector<ModelStatisticsSnapshot>> modelStatistics(const std::string& name,
                                                                       int64_t version) const = 0;

  virtual std::vector<ModelIndexEntry> repositoryIndex(bool ready_only) const = 0;
  // Explicit mode only. `config_json`, when given, replaces the model's config.pbtxt.
  virtual Status loadModel(const std::string& name, const std::optional<std::string>& config_json) = 0;
  virtual Status unloadModel(const std::string& name, bool unload_dependents) = 0;

  // The client shared-memory regions, shared by every front end.
  virtual SharedMemoryManager& sharedMemory() = 0;

  // Runs one request. Always ends with exactly one call of request->sink->complete(), which may
  // happen before infer() returns (e.g. unknown model).
  virtual void infer(std::unique_ptr<InferenceRequest> request) = 0;

  // Stops accepting requests (isReady() turns false, new requests get UNAVAILABLE), waits up to
  // exit_timeout for in-flight requests, then unloads every model. Idempotent.
  virtual void stop() = 0;
};

}  // namespace beamline
