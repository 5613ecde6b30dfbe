// The in-process endpoint: see include/beamline/client/in_process.h.
#include <filesystem>

#include "beamline/client/in_process.h"
#include "model_config.pb.h"

namespace beamline::client {

using Clock = std::chrono::steady_clock;

namespace {

// Writes one request's outputs into the caller's InferResult and completes the call. Owns itself:
// deleted by complete(). Called on the model instance thread (or on the submitting thread for
// errors found before execution).
class ResultSink final : public ResponseSink {
 public:
  ResultSink(InferResult& result, Endpoint::InferDone done, std::string model)
      : result_(result), done_(std::move(done)), model_(std::move(model)), start_(Clock::now()) {}

  Result<std::byte*> allocateOutput(std::string_view name, DataType datatype,
                                    std::span<const int64_t> shape, uint64_t byte_size) override {
    auto& message = result_.mutableMessage();
    auto* output = message.add_outputs();
    output->set_name(std::string(name));
    output->set_datatype(std::string(dataTypeWireName(datatype)));
    output->mutable_shape()->Add(shape.begin(), shape.end());
    std::string* raw = message.add_raw_output_contents();
    raw->resize(byte_size);
    return reinterpret_cast<std::byte*>(raw->data());
  }

  void complete(const Status& status, int64_t model_version) override {
    Status outcome = status;
    auto& message = result_.mutableMessage();
    if (outcome.isOk()) {
      message.set_model_name(model_);
      message.set_model_version(model_version >= 0 ? std::to_string(model_version) : "");
      outcome = result_.prepare();
    } else {
      message.Clear();
    }
    if (!outcome.isOk()) outcome = outcome.withContext("model '" + model_ + "' (in-process)");
    CallReport report;
    report.wait = Clock::now() - start_;
    Endpoint::InferDone done = std::move(done_);
    delete this;
    done(std::move(outcome), report);
  }

 private:
  InferResult& result_;
  Endpoint::InferDone done_;
  std::string model_;
  Clock::time_point start_;
};

class InProcessEndpoint final : public Endpoint {
 public:
  explicit InProcessEndpoint(std::shared_ptr<Server> server) : server_(std::move(server)) {}

  const std::string& name() const override { return name_; }
  bool sameHost() const override { return false; }  // nothing to share: no copies to avoid

  Result<bool> ready() const override { return server_->isReady(); }

  Result<std::vector<std::string>> readyModels() const override {
    std::vector<std::string> models;
    for (const auto& entry : server_->repositoryIndex(/*ready_only=*/true)) {
      if (entry.state == ModelState::kReady) models.push_back(entry.name);
    }
    return models;
  }

  Result<ModelInfo> modelInfo(std::string_view model, std::string_view version) const override {
    BL_ASSIGN_OR_RETURN(const int64_t v, parseVersion(version));
    const std::string name(model);
    BL_ASSIGN_OR_RETURN(auto metadata, server_->modelMetadata(name, v));
    BL_ASSIGN_OR_RETURN(auto config, server_->modelConfig(name, v));
    ModelInfo info;
    info.name = metadata.name;
    info.versions = metadata.versions;
    info.platform = metadata.platform;
    info.max_batch_size = config->max_batch_size();
    auto convert = [&](const std::vector<TensorMetadata>& tensors, std::vector<TensorInfo>& out) {
      for (const auto& tensor : tensors) {
        TensorInfo t{tensor.name, tensor.datatype, tensor.shape};
        if (info.max_batch_size > 0 && !t.dims.empty()) t.dims.erase(t.dims.begin());
        out.push_back(std::move(t));
      }
    };
    convert(metadata.inputs, info.inputs);
    convert(metadata.outputs, info.outputs);
    return info;
  }

  Result<ServerSideStatistics> statistics(std::string_view model,
                                          std::string_view version) const override {
    BL_ASSIGN_OR_RETURN(const int64_t v, parseVersion(version));
    BL_ASSIGN_OR_RETURN(auto snapshots, server_->modelStatistics(std::string(model), v));
    ServerSideStatistics total;
    for (const auto& s : snapshots) {
      total.inference_count += s.inference_count;
      total.execution_count += s.execution_count;
      total.success_count += s.success.count;
      total.success += std::chrono::nanoseconds(s.success.ns);
      total.queue += std::chrono::nanoseconds(s.queue.ns);
      total.compute_input += std::chrono::nanoseconds(s.compute_input.ns);
      total.compute_infer += std::chrono::nanoseconds(s.compute_infer.ns);
      total.compute_output += std::chrono::nanoseconds(s.compute_output.ns);
    }
    return total;
  }

  void infer(const InferRequest& request, InferResult& result, const CallOptions& options,
             InferDone done) const override {
    const std::string& model = request.modelName();
    Status valid = request.validate();
    auto version = parseVersion(request.message().model_version());
    if (valid.isOk() && !version.isOk()) valid = version.status();
    if (!valid.isOk()) {
      done(valid.withContext("model '" + model + "' (in-process)"), CallReport{});
      return;
    }
    const auto& message = request.message();
    auto core = std::make_unique<InferenceRequest>();
    core->model_name = model;
    core->model_version = *version;
    core->id = message.id();
    core->inputs.reserve(static_cast<size_t>(message.inputs_size()));
    for (int i = 0; i < message.inputs_size(); ++i) {
      const auto& input = message.inputs(i);
      InputTensor tensor;
      tensor.name = input.name();
      tensor.datatype = dataTypeFromWireName(input.datatype()).value_or(DataType::kInvalid);
      tensor.shape.assign(input.shape().begin(), input.shape().end());
      tensor.data = request.inputData(static_cast<size_t>(i));  // a view: no copy
      core->inputs.push_back(std::move(tensor));
    }
    for (const auto& output : message.outputs()) core->requested_outputs.push_back(output.name());
    for (const auto& [key, value] : message.parameters()) {
      if (auto converted = fromInferParameter(value)) core->parameters.emplace(key, *converted);
    }
    (void)options;  // no deadline in-process: requests run to completion
    result.mutableMessage().Clear();
    result.clearSharedMemoryOutputs();
    auto* sink = new ResultSink(result, std::move(done), model);
    core->sink = sink;
    server_->infer(std::move(core));
  }

 private:
  static Result<int64_t> parseVersion(std::string_view version) {
    if (version.empty()) return int64_t{-1};
    int64_t value = 0;
    for (char c : version) {
      if (c < '0' || c > '9') return invalidArg("model version '" + std::string(version) + "' is not a number");
      value = value * 10 + (c - '0');
    }
    return value;
  }

  std::shared_ptr<Server> server_;
  std::string name_ = "in-process";
};

}  // namespace

std::shared_ptr<Endpoint> createInProcessEndpoint(std::shared_ptr<Server> server) {
  return std::make_shared<InProcessEndpoint>(std::move(server));
}

Result<std::shared_ptr<Endpoint>> createInProcessEndpoint(ServerOptions options, Logger logger) {
  if (const char* env = std::getenv("BEAMLINE_BACKEND_DIR"); env != nullptr && *env != '\0') {
    options.backend_directories.emplace_back(env);
  }
  std::error_code error;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) options.backend_directories.push_back((exe.parent_path().parent_path() / "backends").string());
  BL_ASSIGN_OR_RETURN(std::unique_ptr<Server> made, Server::create(std::move(options)));
  // Stop (drain) the core when the last endpoint holder lets go.
  std::shared_ptr<Server> server(made.release(), [](Server* s) {
    s->stop();
    delete s;
  });
  log(logger, LogLevel::kInfo, "in-process server core ready");
  return createInProcessEndpoint(std::move(server));
}

}  // namespace beamline::client
