#include "frontend/grpc/grpc_frontend.h"

#include <charconv>
#include <deque>
#include <mutex>
#include <string_view>
#include <type_traits>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include "frontend/common/request_rules.h"
#include "grpc_service.grpc.pb.h"
#include "health.grpc.pb.h"
#include "model_config.pb.h"

namespace beamline::frontend {
namespace {

// --- status and small conversions -----------------------------------------------------------

grpc::Status toGrpc(const Status& status) {
  if (status.isOk()) return grpc::Status::OK;
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  switch (status.code()) {
    case StatusCode::kInvalidArg:
      code = grpc::StatusCode::INVALID_ARGUMENT;
      break;
    case StatusCode::kNotFound:
      code = grpc::StatusCode::NOT_FOUND;
      break;
    case StatusCode::kUnavailable:
      code = grpc::StatusCode::UNAVAILABLE;
      break;
    case StatusCode::kUnsupported:
      code = grpc::StatusCode::UNIMPLEMENTED;
      break;
    case StatusCode::kAlreadyExists:
      code = grpc::StatusCode::ALREADY_EXISTS;
      break;
    case StatusCode::kCancelled:
      code = grpc::StatusCode::CANCELLED;
      break;
    case StatusCode::kInternal:
      code = grpc::StatusCode::INTERNAL;
      break;
    default:
      break;
  }
  return grpc::Status(code, status.message());
}

Result<int64_t> parseVersion(const std::string& text) { return parseModelVersion(text); }

grpc::ServerUnaryReactor* finishNow(grpc::CallbackServerContext* context, const Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(toGrpc(status));
  return reactor;
}

Result<ParameterValue> fromWire(const std::string& name, const inference::InferParameter& p) {
  switch (p.parameter_choice_case()) {
    case inference::InferParameter::kBoolParam:
      return ParameterValue(p.bool_param());
    case inference::InferParameter::kInt64Param:
      return ParameterValue(p.int64_param());
    case inference::InferParameter::kStringParam:
      return ParameterValue(p.string_param());
    case inference::InferParameter::kDoubleParam:
      return ParameterValue(p.double_param());
    case inference::InferParameter::kUint64Param:
      return ParameterValue(p.uint64_param());
    default:
      return invalidArg("parameter '" + name + "' has no value");
  }
}

// Request-level parameters: the shared rules (frontend/common) check the ones the server
// interprets; the rest are passed through to the backend.
Status translateParameters(const google::protobuf::Map<std::string, inference::InferParameter>& wire,
                           InferenceRequest& request) {
  for (const auto& [name, value] : wire) {
    auto converted = fromWire(name, value);
    BL_RETURN_IF_ERROR(
        addRequestParameter(name, converted.isOk() ? &*converted : nullptr, request));
  }
  return Status::ok();
}

// Typed contents -> the raw little-endian layout the core works with.
template <typename Wire, typename Element>
void appendAs(const google::protobuf::RepeatedField<Wire>& values, std::string& out) {
  const size_t start = out.size();
  out.resize(start + values.size() * sizeof(Element));
  char* cursor = out.data() + start;
  for (const Wire& v : values) {
    const Element e = static_cast<Element>(v);
    std::memcpy(cursor, &e, sizeof(Element));
    cursor += sizeof(Element);
  }
}

Status typedContentsToRaw(const inference::ModelInferRequest::InferInputTensor& input,
                          DataType type, int64_t expected_count, std::string& out) {
  const inference::InferTensorContents& c = input.contents();
  int64_t count = 0;
  const char* field = "";
  switch (type) {
    case DataType::kBool:
      field = "bool_contents";
      count = c.bool_contents_size();
      appendAs<bool, uint8_t>(c.bool_contents(), out);
      break;
    case DataType::kInt8:
      field = "int_contents";
      count = c.int_contents_size();
      appendAs<int32_t, int8_t>(c.int_contents(), out);
      break;
    case DataType::kInt16:
      field = "int_contents";
      count = c.int_contents_size();
      appendAs<int32_t, int16_t>(c.int_contents(), out);
      break;
    case DataType::kInt32:
      field = "int_contents";
      count = c.int_contents_size();
      appendAs<int32_t, int32_t>(c.int_contents(), out);
      break;
    case DataType::kInt64:
      field = "int64_contents";
      count = c.int64_contents_size();
      appendAs<int64_t, int64_t>(c.int64_contents(), out);
      break;
    case DataType::kUint8:
      field = "uint_contents";
      count = c.uint_contents_size();
      appendAs<uint32_t, uint8_t>(c.uint_contents(), out);
      break;
    case DataType::kUint16:
      field = "uint_contents";
      count = c.uint_contents_size();
      appendAs<uint32_t, uint16_t>(c.uint_contents(), out);
      break;
    case DataType::kUint32:
      field = "uint_contents";
      count = c.uint_contents_size();
      appendAs<uint32_t, uint32_t>(c.uint_contents(), out);
      break;
    case DataType::kUint64:
      field = "uint64_contents";
      count = c.uint64_contents_size();
      appendAs<uint64_t, uint64_t>(c.uint64_contents(), out);
      break;
    case DataType::kFp32:
      field = "fp32_contents";
      count = c.fp32_contents_size();
      appendAs<float, float>(c.fp32_contents(), out);
      break;
    case DataType::kFp64:
      field = "fp64_contents";
      count = c.fp64_contents_size();
      appendAs<double, double>(c.fp64_contents(), out);
      break;
    case DataType::kBytes:
      field = "bytes_contents";
      count = c.bytes_contents_size();
      for (const std::string& element : c.bytes_contents()) appendBytesElement(out, element);
      break;
    default:
      return invalidArg("input '" + input.name() + "': datatype " + input.datatype() +
                        " has no typed contents field; send it in raw_input_contents");
  }
  if (count != expected_count) {
    return invalidArg("input '" + input.name() + "' has " + std::to_string(count) +
                      " elements in contents." + field + " but its shape " +
                      shapeToString(std::vector<int64_t>(input.shape().begin(), input.shape().end())) +
                      " needs " + std::to_string(expected_count));
  }
  return Status::ok();
}

// An output the client asked to receive in one of its shared memory regions.
struct SharedMemoryOutput {
  std::string name;
  std::shared_ptr<const SharedMemoryRegion> region;  // kept mapped until the call ends
  std::span<std::byte> window;
};

// What one call owns besides the wire messages: converted typed contents, and where outputs go.
struct CallBuffers {
  std::vector<std::string> typed_storage;
  std::vector<SharedMemoryOutput> shm_outputs;
};

// Fills `request` from the wire message. Input data are views into `wire` (raw contents), into
// `buffers` (converted typed contents) or into registered shared memory regions (kept alive by the
// request); all outlive the request.
Status translateRequest(const inference::ModelInferRequest& wire, InferenceRequest& request,
                        CallBuffers& buffers, const SharedMemoryManager& shared_memory) {
  std::vector<std::string>& typed_storage = buffers.typed_storage;
  buffers.shm_outputs.clear();
  request.model_name = wire.model_name();
  BL_ASSIGN_OR_RETURN(request.model_version, parseVersion(wire.model_version()));
  request.id = wire.id();
  BL_RETURN_IF_ERROR(translateParameters(wire.parameters(), request));

  const bool raw = wire.raw_input_contents_size() > 0;
  if (raw) {
    // Name the input that mixes the two forms before anything else (as Triton does).
    for (const auto& in : wire.inputs()) {
      if (in.has_contents()) {
        return invalidArg("input '" + in.name() +
                          "' sets contents although the request uses raw_input_contents; use one "
                          "form for all inputs");
      }
    }
  }
  // Inputs in shared memory take no raw_input_contents entry (Triton walks the raw entries with an
  // index that skips them).
  int shm_inputs = 0;
  for (const auto& in : wire.inputs()) {
    if (in.parameters().count("shared_memory_region") > 0) ++shm_inputs;
  }
  if (raw && wire.raw_input_contents_size() != wire.inputs_size() - shm_inputs) {
    return invalidArg("the request has " + std::to_string(wire.inputs_size() - shm_inputs) +
                      " inputs outside shared memory but " +
                      std::to_string(wire.raw_input_contents_size()) +
                      " raw_input_contents entries; send one entry per such input, in order");
  }
  typed_storage.clear();
  typed_storage.reserve(wire.inputs_size());  // no reallocation: views stay valid
  int raw_index = 0;
  request.inputs.resize(wire.inputs_size());
  for (int i = 0; i < wire.inputs_size(); ++i) {
    const auto& in = wire.inputs(i);
    InputTensor& input = request.inputs[i];
    input.name = in.name();
    auto type = dataTypeFromWireName(in.datatype());
    if (!type || *type == DataType::kInvalid) {
      return invalidArg("input '" + in.name() + "' has unknown datatype '" + in.datatype() + "'");
    }
    input.datatype = *type;
    input.shape.assign(in.shape().begin(), in.shape().end());
    for (const auto& [key, value] : in.parameters()) {
      BL_RETURN_IF_ERROR(checkInputParameter(in.name(), key));
      if (key == "binary_data_size") continue;
      BL_ASSIGN_OR_RETURN(auto converted, fromWire(key, value));
      input.parameters.emplace(key, std::move(converted));
    }
    BL_ASSIGN_OR_RETURN(auto location, sharedMemoryLocation(in.name(), input.parameters));
    if (location) {
      if (in.has_contents()) {
        return invalidArg("input '" + in.name() +
                          "' is in shared memory and must not also carry contents");
      }
      BL_RETURN_IF_ERROR(
          bindSharedMemoryInput(shared_memory, *location, input, request, typed_storage));
      continue;
    }
    if (raw) {
      const std::string& bytes = wire.raw_input_contents(raw_index++);
      input.data = std::as_bytes(std::span(bytes.data(), bytes.size()));
      continue;
    }
    if (!in.has_contents()) {
      return invalidArg("input '" + in.name() +
                        "' has no data: send it in raw_input_contents or in contents");
    }
    auto count = elementCount(input.shape);
    if (!count.isOk()) return count.status().withContext("input '" + in.name() + "'");
    std::string& storage = typed_storage.emplace_back();
    BL_RETURN_IF_ERROR(typedContentsToRaw(in, input.datatype, *count, storage));
    input.data = std::as_bytes(std::span(storage.data(), storage.size()));
  }
  request.requested_outputs.reserve(wire.outputs_size());
  for (const auto& out : wire.outputs()) {
    Parameters parameters;
    for (const auto& [key, value] : out.parameters()) {
      BL_RETURN_IF_ERROR(checkOutputParameter(out.name(), key));
      if (!isSharedMemoryParameter(key)) continue;
      BL_ASSIGN_OR_RETURN(auto converted, fromWire(key, value));
      parameters.emplace(key, std::move(converted));
    }
    BL_ASSIGN_OR_RETURN(auto location, sharedMemoryLocation(out.name(), parameters));
    if (location) {
      BL_ASSIGN_OR_RETURN(auto target,
                          sharedMemoryOutputWindow(shared_memory, *location, out.name()));
      buffers.shm_outputs.push_back({out.name(), std::move(target.region), target.window});
    }
    request.requested_outputs.push_back(out.name());
  }
  return Status::ok();
}


// Appends one output to a response message and returns where its bytes go.
std::byte* addOutput(inference::ModelInferResponse& response, std::string_view name,
                     DataType datatype, std::span<const int64_t> shape, uint64_t byte_size) {
  auto* tensor = response.add_outputs();
  tensor->set_name(std::string(name));
  tensor->set_datatype(std::string(dataTypeWireName(datatype)));
  for (int64_t d : shape) tensor->add_shape(d);
  std::string* raw = response.add_raw_output_contents();
  raw->resize(byte_size);
  return reinterpret_cast<std::byte*>(raw->data());
}

// Where one output's bytes go: the client's shared memory window when it asked for one (the
// response then carries the output's metadata and an empty raw entry, as Triton's does), else a
// new raw_output_contents entry.
Result<std::byte*> allocateResponseOutput(inference::ModelInferResponse& response,
                                          const CallBuffers& buffers, std::string_view name,
                                          DataType datatype, std::span<const int64_t> shape,
                                          uint64_t byte_size) {
  for (const auto& shm : buffers.shm_outputs) {
    if (shm.name != name) continue;
    if (byte_size > shm.window.size()) {
      return invalidArg("output '" + shm.name + "' needs " + std::to_string(byte_size) +
                        " bytes but its shared memory window in region '" + shm.region->name() +
                        "' has " + std::to_string(shm.window.size()));
    }
    addOutput(response, name, datatype, shape, 0);
    return shm.window.data();
  }
  return addOutput(response, name, datatype, shape, byte_size);
}

void finishResponse(inference::ModelInferResponse& response, const inference::ModelInferRequest& wire,
                    int64_t version) {
  response.set_model_name(wire.model_name());
  response.set_model_version(version >= 0 ? std::to_string(version) : wire.model_version());
  response.set_id(wire.id());
}

// --- ModelInfer ------------------------------------------------------------------------------

// One unary inference call. Created on a gRPC thread, completed (and deleted) on whichever thread
// completes the request.
class UnaryInferCall final : public ResponseSink {
 public:
  UnaryInferCall(grpc::ServerUnaryReactor* reactor, const inference::ModelInferRequest* wire,
                 inference::ModelInferResponse* response)
      : reactor_(reactor), wire_(wire), response_(response) {}

  Result<std::byte*> allocateOutput(std::string_view name, DataType datatype,
                                    std::span<const int64_t> shape, uint64_t byte_size) override {
    return allocateResponseOutput(*response_, buffers, name, datatype, shape, byte_size);
  }

  void complete(const Status& status, int64_t model_version) override {
    if (status.isOk()) {
      finishResponse(*response_, *wire_, model_version);
      reactor_->Finish(grpc::Status::OK);
    } else {
      response_->Clear();
      reactor_->Finish(toGrpc(status));
    }
    delete this;
  }

  CallBuffers buffers;

 private:
  grpc::ServerUnaryReactor* reactor_;
  const inference::ModelInferRequest* wire_;
  inference::ModelInferResponse* response_;
};

// --- ModelStreamInfer ------------------------------------------------------------------------

// One bidirectional stream. Reads requests one after another; each runs concurrently and its
// response (or error_message) is written when it completes, one write at a time. The stream ends
// after the client half-closes and every request has been answered.
class StreamInferReactor final
    : public grpc::ServerBidiReactor<inference::ModelInferRequest,
                                     inference::ModelStreamInferResponse> {
 public:
  StreamInferReactor(Server& server) : server_(server) { startNextRead(); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      std::lock_guard lock(mutex_);
      reads_done_ = true;
      pending_read_.reset();
      maybeFinishLocked();
      return;
    }
    std::unique_ptr<Call> call = std::move(pending_read_);
    Call* raw = call.get();
    {
      std::lock_guard lock(mutex_);
      ++pending_calls_;
      calls_.push_back(std::move(call));
    }
    startNextRead();
    submit(*raw);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mutex_);
    writing_.reset();
    if (!ok) {
      broken_ = true;
      writes_.clear();
    }
    writeNextLocked();
    maybeFinishLocked();
  }

  void OnDone() override {
    delete this;
  }

 private:
  struct Call final : public ResponseSink {
    StreamInferReactor* stream = nullptr;
    inference::ModelInferRequest wire;
    std::unique_ptr<inference::ModelStreamInferResponse> response =
        std::make_unique<inference::ModelStreamInferResponse>();
    CallBuffers buffers;

    Result<std::byte*> allocateOutput(std::string_view name, DataType datatype,
                                      std::span<const int64_t> shape, uint64_t byte_size) override {
      return allocateResponseOutput(*response->mutable_infer_response(), buffers, name, datatype,
                                    shape, byte_size);
    }
    void complete(const Status& status, int64_t model_version) override {
      stream->completed(this, status, model_version);
    }
  };

  void startNextRead() {
    pending_read_ = std::make_unique<Call>();
    pending_read_->stream = this;
    StartRead(&pending_read_->wire);
  }

  void submit(Call& call) {
    auto request = std::make_unique<InferenceRequest>();
    Status status = translateRequest(call.wire, *request, call.buffers, server_.sharedMemory());
    if (!status.isOk()) {
      completed(&call, status, -1);
      return;
    }
    request->sink = &call;
    server_.infer(std::move(request));
  }

  // Any thread: queue the response of `call` for writing and forget the call.
  void completed(Call* call, const Status& status, int64_t model_version) {
    std::unique_ptr<inference::ModelStreamInferResponse> response = std::move(call->response);
    if (status.isOk()) {
      finishResponse(*response->mutable_infer_response(), call->wire, model_version);
    } else {
      response->Clear();
      response->set_error_message(status.message());
      auto* infer = response->mutable_infer_response();
      infer->set_model_name(call->wire.model_name());
      infer->set_model_version(call->wire.model_version());
      infer->set_id(call->wire.id());
    }
    std::lock_guard lock(mutex_);
    for (auto it = calls_.begin(); it != calls_.end(); ++it) {
      if (it->get() == call) {
        calls_.erase(it);
        break;
      }
    }
    --pending_calls_;
    if (!broken_) writes_.push_back(std::move(response));
    writeNextLocked();
    maybeFinishLocked();
  }

  void writeNextLocked() {
    if (writing_ || writes_.empty() || broken_) return;
    writing_ = std::move(writes_.front());
    writes_.pop_front();
    StartWrite(writing_.get());
  }

  void maybeFinishLocked() {
    if (finished_ || !reads_done_ || pending_calls_ > 0 || writing_ || !writes_.empty()) return;
    finished_ = true;
    Finish(grpc::Status::OK);
  }

  Server& server_;
  std::unique_ptr<Call> pending_read_;  // the message the current read fills (reactor thread only)
  std::mutex mutex_;                    // guards everything below
  std::vector<std::unique_ptr<Call>> calls_;
  size_t pending_calls_ = 0;
  std::deque<std::unique_ptr<inference::ModelStreamInferResponse>> writes_;
  std::unique_ptr<inference::ModelStreamInferResponse> writing_;
  bool reads_done_ = false;
  bool broken_ = false;
  bool finished_ = false;
};

// --- the service -----------------------------------------------------------------------------

class InferenceService final : public inference::GRPCInferenceService::CallbackService {
 public:
  explicit InferenceService(Server& server) : server_(server) {}

  grpc::ServerUnaryReactor* ServerLive(grpc::CallbackServerContext* context,
                                       const inference::ServerLiveRequest*,
                                       inference::ServerLiveResponse* response) override {
    response->set_live(server_.isLive());
    return finishNow(context, Status::ok());
  }

  grpc::ServerUnaryReactor* ServerReady(grpc::CallbackServerContext* context,
                                        const inference::ServerReadyRequest*,
                                        inference::ServerReadyResponse* response) override {
    response->set_ready(server_.isReady());
    return finishNow(context, Status::ok());
  }

  grpc::ServerUnaryReactor* ModelReady(grpc::CallbackServerContext* context,
                                       const inference::ModelReadyRequest* request,
                                       inference::ModelReadyResponse* response) override {
    auto version = parseVersion(request->version());
    if (!version.isOk()) return finishNow(context, version.status());
    auto ready = server_.modelReady(request->name(), *version);
    // Like Triton: an unknown model is simply not ready.
    response->set_ready(ready.isOk() && *ready);
    return finishNow(context, Status::ok());
  }

  grpc::ServerUnaryReactor* ServerMetadata(grpc::CallbackServerContext* context,
                                           const inference::ServerMetadataRequest*,
                                           inference::ServerMetadataResponse* response) override {
    response->set_name(Server::kName);
    response->set_version(Server::version());
    for (const auto& extension : Server::extensions()) response->add_extensions(extension);
    return finishNow(context, Status::ok());
  }

  grpc::ServerUnaryReactor* ModelMetadata(grpc::CallbackServerContext* context,
                                          const inference::ModelMetadataRequest* request,
                                          inference::ModelMetadataResponse* response) override {
    auto version = parseVersion(request->version());
    if (!version.isOk()) return finishNow(context, version.status());
    auto metadata = server_.modelMetadata(request->name(), *version);
    if (!metadata.isOk()) return finishNow(context, metadata.status());
    response->set_name(metadata->name);
    for (const auto& v : metadata->versions) response->add_versions(v);
    response->set_platform(metadata->platform);
    auto fill = [](const TensorMetadata& t, inference::ModelMetadataResponse::TensorMetadata* out) {
      out->set_name(t.name);
      out->set_datatype(std::string(dataTypeWireName(t.datatype)));
      for (int64_t d : t.shape) out->add_shape(d);
    };
    for (const auto& t : metadata->inputs) fill(t, response->add_inputs());
    for (const auto& t : metadata->outputs) fill(t, response->add_outputs());
    return finishNow(context, Status::ok());
  }

  grpc::ServerUnaryReactor* ModelConfig(grpc::CallbackServerContext* context,
                                        const inference::ModelConfigRequest* request,
                                        inference::ModelConfigResponse* response) override {
    auto version = parseVersion(request->version());
    if (!version.isOk()) return finishNow(context, version.status());
    auto config = server_.modelConfig(request->name(), *version);
    if (!config.isOk()) return finishNow(context, config.status());
    *response->mutable_config() = **config;
    return finishNow(context, Status::ok());
  }

  grpc::ServerUnaryReactor* ModelStatistics(grpc::CallbackServerContext* context,
                                            const inference::ModelStatisticsRequest* request,
                                            inference::ModelStatisticsResponse* response) override {
    auto version = parseVersion(request->version());
    if (!version.isOk()) return finishNow(context, version.status());
    auto stats = server_.modelStatistics(request->name(), *version);
    if (!stats.isOk()) return finishNow(context, stats.status());
    auto put = [](const DurationStat& from, inference::StatisticDuration* to) {
      to->set_count(from.count);
      to->set_ns(from.ns);
    };
    for (const auto& s : *stats) {
      auto* out = response->add_model_stats();
      out->set_name(s.name);
      out->set_version(s.version);
      out->set_last_inference(s.last_inference_ms);
      out->set_inference_count(s.inference_count);
      out->set_execution_count(s.execution_count);
      auto* infer = out->mutable_inference_stats();
      put(s.success, infer->mutable_success());
      put(s.fail, infer->mutable_fail());
      put(s.queue, infer->mutable_queue());
      put(s.compute_input, infer->mutable_compute_input());
      put(s.compute_infer, infer->mutable_compute_infer());
      put(s.compute_output, infer->mutable_compute_output());
      infer->mutable_cache_hit();
      infer->mutable_cache_miss();
      for (const auto& b : s.batch_stats) {
        auto* batch = out->add_batch_stats();
        batch->set_batch_size(b.batch_size);
        put(b.compute_input, batch->mutable_compute_input());
        put(b.compute_infer, batch->mutable_compute_infer());
        put(b.compute_output, batch->mutable_compute_output());
      }
    }
    return finishNow(context, Status::ok());
  }

  grpc::ServerUnaryReactor* RepositoryIndex(grpc::CallbackServerContext* context,
                                            const inference::RepositoryIndexRequest* request,
                                            inference::RepositoryIndexResponse* response) override {
    if (!request->repository_name().empty()) {
      return finishNow(context, unsupported("repository_name is not supported; leave it empty"));
    }
    for (const auto& entry : server_.repositoryIndex(request->ready())) {
      auto* model = response->add_models();
      model->set_name(entry.name);
      model->set_version(entry.version);
      model->set_state(std::string(modelStateName(entry.state)));
      model->set_reason(entry.reason);
    }
    return finishNow(context, Status::ok());
  }

  grpc::ServerUnaryReactor* RepositoryModelLoad(
      grpc::CallbackServerContext* context, const inference::RepositoryModelLoadRequest* request,
      inference::RepositoryModelLoadResponse*) override {
    std::optional<std::string> config_json;
    for (const auto& [key, value] : request->parameters()) {
      if (key == "config") {
        if (!value.has_string_param()) {
          return finishNow(context, invalidArg("load parameter 'config' must be a string (JSON)"));
        }
        config_json = value.string_param();
      } else if (key.rfind("file:", 0) == 0) {
        return finishNow(context, loadFileParameterUnsupported(key));
      }
    }
    return finishNow(context, server_.loadModel(request->model_name(), config_json));
  }

  grpc::ServerUnaryReactor* RepositoryModelUnload(
      grpc::CallbackServerContext* context, const inference::RepositoryModelUnloadRequest* request,
      inference::RepositoryModelUnloadResponse*) override {
    bool dependents = false;
    if (auto it = request->parameters().find("unload_dependents");
        it != request->parameters().end() && it->second.has_bool_param()) {
      dependents = it->second.bool_param();
    }
    return finishNow(context, server_.unloadModel(request->model_name(), dependents));
  }

  // Client shared memory: the regions live in the core (shared with the HTTP front end).
  grpc::ServerUnaryReactor* SystemSharedMemoryStatus(
      grpc::CallbackServerContext* context, const inference::SystemSharedMemoryStatusRequest* request,
      inference::SystemSharedMemoryStatusResponse* response) override {
    auto regions = server_.sharedMemory().systemStatus(request->name());
    if (!regions.isOk()) return finishNow(context, regions.status());
    for (const auto& region : *regions) {
      auto& out = (*response->mutable_regions())[region.name];
      out.set_name(region.name);
      out.set_key(region.key);
      out.set_offset(region.offset);
      out.set_byte_size(region.byte_size);
    }
    return finishNow(context, Status::ok());
  }
  grpc::ServerUnaryReactor* SystemSharedMemoryRegister(
      grpc::CallbackServerContext* context, const inference::SystemSharedMemoryRegisterRequest* request,
      inference::SystemSharedMemoryRegisterResponse*) override {
    return finishNow(context, server_.sharedMemory().registerSystem(
                                  request->name(), request->key(), request->offset(),
                                  request->byte_size()));
  }
  grpc::ServerUnaryReactor* SystemSharedMemoryUnregister(
      grpc::CallbackServerContext* context,
      const inference::SystemSharedMemoryUnregisterRequest* request,
      inference::SystemSharedMemoryUnregisterResponse*) override {
    return finishNow(context, server_.sharedMemory().unregisterSystem(request->name()));
  }
  grpc::ServerUnaryReactor* CudaSharedMemoryStatus(
      grpc::CallbackServerContext* context, const inference::CudaSharedMemoryStatusRequest* request,
      inference::CudaSharedMemoryStatusResponse* response) override {
    auto regions = server_.sharedMemory().cudaStatus(request->name());
    if (!regions.isOk()) return finishNow(context, regions.status());
    for (const auto& region : *regions) {
      auto& out = (*response->mutable_regions())[region.name];
      out.set_name(region.name);
      out.set_device_id(static_cast<uint64_t>(region.device_id));
      out.set_byte_size(region.byte_size);
    }
    return finishNow(context, Status::ok());
  }
  grpc::ServerUnaryReactor* CudaSharedMemoryRegister(
      grpc::CallbackServerContext* context, const inference::CudaSharedMemoryRegisterRequest* request,
      inference::CudaSharedMemoryRegisterResponse*) override {
    return finishNow(context, server_.sharedMemory().registerCuda(
                                  request->name(), request->raw_handle(), request->device_id(),
                                  request->byte_size()));
  }
  grpc::ServerUnaryReactor* CudaSharedMemoryUnregister(
      grpc::CallbackServerContext* context,
      const inference::CudaSharedMemoryUnregisterRequest* request,
      inference::CudaSharedMemoryUnregisterResponse*) override {
    return finishNow(context, server_.sharedMemory().unregisterCuda(request->name()));
  }

  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* context,
                                       const inference::ModelInferRequest* wire,
                                       inference::ModelInferResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    auto* call = new UnaryInferCall(reactor, wire, response);  // deletes itself in complete()
    auto request = std::make_unique<InferenceRequest>();
    Status status = translateRequest(*wire, *request, call->buffers, server_.sharedMemory());
    if (!status.isOk()) {
      call->complete(status, -1);
      return reactor;
    }
    request->sink = call;
    server_.infer(std::move(request));
    return reactor;
  }

  grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
  ModelStreamInfer(grpc::CallbackServerContext*) override {
    return new StreamInferReactor(server_);  // deletes itself in OnDone()
  }

 private:
  Server& server_;
};

// grpc.health.v1.Health: "" (or the inference service's name) is the server; any other name is a
// model.
class HealthService final : public grpc::health::v1::Health::CallbackService {
 public:
  explicit HealthService(Server& server) : server_(server) {}

  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* context,
                                  const grpc::health::v1::HealthCheckRequest* request,
                                  grpc::health::v1::HealthCheckResponse* response) override {
    using Response = grpc::health::v1::HealthCheckResponse;
    const std::string& service = request->service();
    if (service.empty() || service == "inference.GRPCInferenceService") {
      response->set_status(server_.isReady() ? Response::SERVING : Response::NOT_SERVING);
      return finishNow(context, Status::ok());
    }
    auto ready = server_.modelReady(service, -1);
    if (!ready.isOk()) return finishNow(context, notFound("unknown service '" + service + "'"));
    response->set_status(*ready ? Response::SERVING : Response::NOT_SERVING);
    return finishNow(context, Status::ok());
  }

 private:
  Server& server_;
};

class GrpcFrontendImpl final : public GrpcFrontend {
 public:
  GrpcFrontendImpl(Server& server) : inference_(server), health_(server) {}

  ~GrpcFrontendImpl() override { shutdown(std::chrono::system_clock::now()); }

  Status start(const GrpcFrontendOptions& options) {
    grpc::ServerBuilder builder;
    const std::string address = (options.address.find(':') != std::string::npos
                                     ? "[" + options.address + "]"
                                     : options.address) +
                                ":" + std::to_string(options.port);
    builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port_);
    builder.SetMaxReceiveMessageSize(options.max_message_bytes);
    builder.SetMaxSendMessageSize(options.max_message_bytes);
    builder.RegisterService(&inference_);
    builder.RegisterService(&health_);
    server_ = builder.BuildAndStart();
    if (!server_ || port_ == 0) {
      return unavailable("cannot listen for gRPC on " + address +
                         " (port in use, or address not available)");
    }
    return Status::ok();
  }

  int port() const override { return port_; }

  void shutdown(std::chrono::system_clock::time_point deadline) override {
    std::lock_guard lock(shutdown_mutex_);
    if (!server_) return;
    server_->Shutdown(deadline);
    server_->Wait();
    server_.reset();
  }

 private:
  InferenceService inference_;
  HealthService health_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::mutex shutdown_mutex_;
};

}  // namespace

Result<std::unique_ptr<GrpcFrontend>> GrpcFrontend::start(Server& server,
                                                          GrpcFrontendOptions options) {
  auto frontend = std::make_unique<GrpcFrontendImpl>(server);
  BL_RETURN_IF_ERROR(frontend->start(options));
  return std::unique_ptr<GrpcFrontend>(std::move(frontend));
}

}  // namespace beamline::frontend
