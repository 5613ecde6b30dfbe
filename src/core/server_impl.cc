// The Server implementation: a thin composition of the backend registry and the repository
// manager, plus readiness and drain. See include/beamline/core/server.h.
#include <atomic>
#include <memory>

#include <spdlog/spdlog.h>

#include "beamline/core/server.h"
#include "core/backend_loader.h"
#include "core/model.h"
#include "core/repository_manager.h"
#include "model_config.pb.h"

namespace beamline {

std::string_view modelStateName(ModelState state) {
  switch (state) {
    case ModelState::kReady:
      return "READY";
    case ModelState::kUnavailable:
      return "UNAVAILABLE";
    case ModelState::kLoading:
      return "LOADING";
    case ModelState::kUnloading:
      return "UNLOADING";
    case ModelState::kUnknown:
      break;
  }
  return "UNKNOWN";
}

Result<ModelControlMode> parseModelControlMode(std::string_view text) {
  if (text == "none") return ModelControlMode::kNone;
  if (text == "poll") return ModelControlMode::kPoll;
  if (text == "explicit") return ModelControlMode::kExplicit;
  return invalidArg("unknown model control mode '" + std::string(text) +
                    "'; use none, poll or explicit");
}

const char* Server::version() { return "0.1.0"; }

std::vector<std::string> Server::extensions() {
  // Only what is implemented, in Triton's order.
  return {"model_repository", "schedule_policy", "model_configuration", "system_shared_memory",
#if BEAMLINE_WITH_CUDA
          "cuda_shared_memory",
#endif
          "binary_tensor_data", "parameters", "statistics"};
}

namespace {

class ServerImpl final : public Server {
 public:
  explicit ServerImpl(ServerOptions options)
      : options_(std::move(options)), shared_memory_(options_.allow_client_shm),
        backends_(options_.backend_directories),
        repository_(options_, backends_,
                    [this](std::unique_ptr<InferenceRequest> request) { infer(std::move(request)); }) {}

  ~ServerImpl() override { stop(); }

  void start() {
    repository_.start();
    started_.store(true, std::memory_order_release);
  }

  bool isLive() const override { return !stopped_.load(std::memory_order_acquire); }

  bool isReady() const override {
    if (!started_.load(std::memory_order_acquire) || stopping_.load(std::memory_order_acquire)) {
      return false;
    }
    return !options_.strict_readiness || !repository_.anyLoading();
  }

  Result<bool> modelReady(const std::string& name, int64_t version) const override {
    auto model = repository_.getModel(name, version);
    if (model.isOk()) return true;
    if (model.status().code() == StatusCode::kUnavailable) return false;
    return model.status();
  }

  Result<ModelMetadata> modelMetadata(const std::string& name, int64_t version) const override {
    BL_ASSIGN_OR_RETURN(auto model, repository_.getModel(name, version));
    const inference::ModelConfig& config = *model->config();
    ModelMetadata metadata;
    metadata.name = name;
    if (version >= 0) {
      metadata.versions.push_back(std::to_string(version));
    } else {
      for (int64_t v : repository_.readyVersions(name)) metadata.versions.push_back(std::to_string(v));
    }
    metadata.platform = config.platform().empty() ? config.backend() : config.platform();
    const bool batching = config.max_batch_size() > 0;
    auto describe = [&](const auto& tensor) {
      TensorMetadata t;
      t.name = tensor.name();
      t.datatype = static_cast<DataType>(tensor.data_type());
      if (batching) t.shape.push_back(-1);
      t.shape.insert(t.shape.end(), tensor.dims().begin(), tensor.dims().end());
      return t;
    };
    for (const auto& input : config.input()) metadata.inputs.push_back(describe(input));
    for (const auto& output : config.output()) metadata.outputs.push_back(describe(output));
    return metadata;
  }

  Result<std::shared_ptr<const inference::ModelConfig>> modelConfig(
      const std::string& name, int64_t version) const override {
    BL_ASSIGN_OR_RETURN(auto model, repository_.getModel(name, version));
    return model->config();
  }

  Result<std::vector<ModelStatisticsSnapshot>> modelStatistics(const std::string& name,
                                                               int64_t version) const override {
    std::vector<ModelStatisticsSnapshot> result;
    if (name.empty()) {
      for (const auto& model : repository_.readyModels()) result.push_back(model->statistics());
      return result;
    }
    if (version >= 0) {
      BL_ASSIGN_OR_RETURN(auto model, repository_.getModel(name, version));
      result.push_back(model->statistics());
      return result;
    }
    for (int64_t v : repository_.readyVersions(name)) {
      if (auto model = repository_.getModel(name, v); model.isOk()) {
        result.push_back((*model)->statistics());
      }
    }
    if (result.empty()) return repository_.getModel(name, -1).status();
    return result;
  }

  std::vector<ModelIndexEntry> repositoryIndex(bool ready_only) const override {
    return repository_.index(ready_only);
  }

  Status loadModel(const std::string& name, const std::optional<std::string>& config_json) override {
    if (stopping_.load()) return unavailable("the server is shutting down");
    return repository_.load(name, config_json);
  }

  Status unloadModel(const std::string& name, bool /*unload_dependents: no ensembles yet*/) override {
    if (stopping_.load()) return unavailable("the server is shutting down");
    return repository_.unload(name);
  }

  SharedMemoryManager& sharedMemory() override { return shared_memory_; }

  void infer(std::unique_ptr<InferenceRequest> request) override {
    request->arrival_time = std::chrono::steady_clock::now();
    if (stopping_.load(std::memory_order_acquire)) {
      request->sink->complete(unavailable("the server is shutting down"), -1);
      return;
    }
    auto model = repository_.getModel(request->model_name, request->model_version);
    if (!model.isOk()) {
      request->sink->complete(model.status(), -1);
      return;
    }
    (*model)->enqueue(std::move(request));
  }

  void stop() override {
    if (stopping_.exchange(true)) return;
    spdlog::info("stopping: waiting up to {} s for in-flight requests", options_.exit_timeout.count());
    repository_.stop(std::chrono::steady_clock::now() + options_.exit_timeout);
    stopped_.store(true, std::memory_order_release);
  }

 private:
  const ServerOptions options_;
  SharedMemoryManager shared_memory_;
  BackendRegistry backends_;
  RepositoryManager repository_;
  std::atomic<bool> started_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stopped_{false};
};

}  // namespace

Result<std::unique_ptr<Server>> Server::create(ServerOptions options) {
  if (options.model_repositories.empty()) {
    return invalidArg("at least one --model-repository is required");
  }
  for (const auto& repository : options.model_repositories) {
    std::error_code ec;
    if (!std::filesystem::is_directory(repository, ec)) {
      return invalidArg("model repository '" + repository + "' is not a directory");
    }
  }
  auto server = std::make_unique<ServerImpl>(std::move(options));
  server->start();
  return std::unique_ptr<Server>(std::move(server));
}

}  // namespace beamline
