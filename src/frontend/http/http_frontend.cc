#include "frontend/http/http_frontend.h"

#include <charconv>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "beamline/core/shared_memory.h"
#include "frontend/common/request_rules.h"
#include "frontend/http/http_routes.h"
#include "frontend/http/infer_codec.h"
#include "frontend/http/json_util.h"
#include "model_config.pb.h"
#include "net/http_server.h"

namespace beamline::frontend {
namespace {

using http::Endpoint;
using net::HttpRequest;
using net::HttpResponder;
using net::HttpResponse;
// Responses keep their fields in the order they are written (Triton's order).
using json = nlohmann::ordered_json;

// --- status and response helpers
// ------------------------------------------------------------------

// Triton's HttpCodeFromError.
int httpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kInternal:
      return 500;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kUnsupported:
      return 501;
    default:
      return 400;
  }
}

HttpResponse errorResponse(int status, std::string_view message) {
  HttpResponse response;
  response.status = status;
  response.body = net::jsonErrorBody(message);
  return response;
}

HttpResponse errorResponse(const Status& status) {
  return errorResponse(httpStatusFor(status.code()), status.message());
}

HttpResponse jsonResponse(std::string body) {
  HttpResponse response;
  response.body = std::move(body);
  return response;
}

HttpResponse jsonResponse(const json& value) {
  return jsonResponse(value.dump(-1, ' ', false, json::error_handler_t::replace));
}

HttpResponse emptyResponse(int status = 200) {
  HttpResponse response;
  response.status = status;
  return response;
}

std::string_view bodyText(const HttpRequest& request) { return request.body.view(); }

// An optional JSON object body ("" and whitespace count as absent).
Result<nlohmann::json> optionalJsonObject(const HttpRequest& request, std::string_view what) {
  const std::string_view text = bodyText(request);
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return nlohmann::json::object();
  }
  BL_ASSIGN_OR_RETURN(nlohmann::json value, http::parseJson(text, what));
  if (!value.is_object()) return invalidArg("the " + std::string(what) + " JSON must be an object");
  return value;
}

json durationJson(const DurationStat& d) { return json{{"count", d.count}, {"ns", d.ns}}; }

json tensorMetadataJson(const std::vector<TensorMetadata>& tensors) {
  json list = json::array();
  for (const auto& t : tensors) {
    list.push_back(
        json{{"name", t.name}, {"datatype", dataTypeWireName(t.datatype)}, {"shape", t.shape}});
  }
  return list;
}

// --- inference
// --------------------------------------------------------------------------------------

// One inference request: owns the HTTP request (whose body the inputs view), the converted JSON
// inputs and the output buffers. Created on an I/O thread; allocateOutput() and complete() run on
// the model instance thread (or the I/O thread for early errors); build() runs on the connection's
// I/O thread, after which the transport deletes it.
class InferCall final : public ResponseSink, public net::DeferredResponse {
 public:
  InferCall(HttpRequest&& request, HttpResponder&& responder, std::string model_name)
      : request_(std::move(request)),
        responder_(std::move(responder)),
        model_name_(std::move(model_name)) {}

  std::span<const std::byte> body() const { return request_.body.bytes(); }
  http::OutputFormat& format() { return format_; }
  http::JsonInputStorage& storage() { return storage_; }
  void setId(std::string id) { id_ = std::move(id); }

  // An output the client asked to receive in its shared memory: `window` is where it goes.
  void addSharedMemoryOutput(std::string name, std::shared_ptr<const SharedMemoryRegion> region,
                             std::span<std::byte> window) {
    shm_outputs_.push_back({std::move(name), std::move(region), window});
  }

  Result<std::byte*> allocateOutput(std::string_view name, DataType datatype,
                                    std::span<const int64_t> shape, uint64_t byte_size) override {
    for (const auto& shm : shm_outputs_) {
      if (shm.name != name) continue;
      if (byte_size > shm.window.size()) {
        return invalidArg("output '" + std::string(name) + "' needs " +
                          std::to_string(byte_size) + " bytes but its shared memory window in '" +
                          shm.region->name() + "' holds " + std::to_string(shm.window.size()));
      }
      http::OutputTensor& output = outputs_.emplace_back();
      output.name = std::string(name);
      output.datatype = datatype;
      output.shape.assign(shape.begin(), shape.end());
      output.shm_region = shm.region->name();
      output.shm_byte_size = byte_size;
      return shm.window.data();
    }
    try {
      http::OutputTensor& output = outputs_.emplace_back();
      output.name = std::string(name);
      output.datatype = datatype;
      output.shape.assign(shape.begin(), shape.end());
      output.data = net::ByteBuffer::uninitialized(byte_size);
      return output.data.data();
    } catch (const std::bad_alloc&) {
      return internalError("out of memory for output '" + std::string(name) + "' (" +
                           std::to_string(byte_size) + " bytes)");
    }
  }

  void complete(const Status& status, int64_t model_version) override {
    status_ = status;
    model_version_ = model_version;
    HttpResponder responder = std::move(responder_);
    // The transport owns this call from here on and deletes it after build().
    responder.sendDeferred(std::unique_ptr<net::DeferredResponse>(this));
  }

  HttpResponse build() override {
    if (!status_.isOk()) return errorResponse(status_);
    auto body = http::writeInferResponse(model_name_, model_version_, id_, outputs_, format_);
    if (!body.isOk()) return errorResponse(body.status());
    HttpResponse response;
    if (body->has_binary_outputs) {
      response.content_type = "application/octet-stream";
      response.headers.emplace_back("Inference-Header-Content-Length",
                                    std::to_string(body->json.size()));
    }
    response.body = std::move(body->json);
    response.tail = std::move(body->binary);
    return response;
  }

 private:
  HttpRequest request_;
  HttpResponder responder_;
  std::string model_name_;
  std::string id_;
  http::OutputFormat format_;
  http::JsonInputStorage storage_;
  std::vector<http::OutputTensor> outputs_;
  struct SharedMemoryOutput {
    std::string name;
    std::shared_ptr<const SharedMemoryRegion> region;  // kept mapped until the call is deleted
    std::span<std::byte> window;
  };
  std::vector<SharedMemoryOutput> shm_outputs_;
  Status status_;
  int64_t model_version_ = -1;
};

// --- a thread for blocking calls
// --------------------------------------------------------------------

// Runs repository load/unload one after the other, off the I/O threads. The queue is guarded by
// `mutex_`; tasks run on the worker thread.
class ControlThread {
 public:
  ControlThread() : thread_([this] { run(); }) {}
  ~ControlThread() { stop(); }

  void post(std::function<void()> task) {
    std::lock_guard lock(mutex_);
    tasks_.push_back(std::move(task));
    wake_.notify_one();
  }

  // Runs what is queued, then joins. Idempotent.
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      wake_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void run() {
    pthread_setname_np(pthread_self(), "http-control");
    std::unique_lock lock(mutex_);
    while (true) {
      wake_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;
      auto task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::thread thread_;
};

// --- the front end
// --------------------------------------------------------------------------------

class HttpFrontendImpl final : public HttpFrontend {
 public:
  explicit HttpFrontendImpl(Server& server) : server_(server) {}
  ~HttpFrontendImpl() override { shutdown(std::chrono::steady_clock::now()); }

  Status start(const HttpFrontendOptions& options) {
    net::HttpServerOptions http_options;
    http_options.address = options.address;
    http_options.port = options.port;
    http_options.thread_count = options.thread_count;
    http_options.max_body_bytes = options.max_input_bytes;
    http_options.name = "http";
    http_options.body_limit_hint = "Use --http-max-input-size to increase the limit.";
    BL_ASSIGN_OR_RETURN(
        http_, net::HttpServer::start(http_options, [this](HttpRequest&& request, HttpResponder r) {
          handle(std::move(request), std::move(r));
        }));
    return Status::ok();
  }

  int port() const override { return http_ ? http_->port() : 0; }

  void shutdown(std::chrono::steady_clock::time_point deadline) override {
    std::lock_guard lock(shutdown_mutex_);
    if (http_) http_->shutdown(deadline);
    control_.stop();
  }

 private:
  // I/O thread.
  void handle(HttpRequest&& request, HttpResponder responder) {
    const http::RouteMatch match = http::matchRoute(request.method, request.path());
    if (match.outcome == http::RouteMatch::Outcome::kNotFound) {
      responder.send(errorResponse(404, "Not Found"));
      return;
    }
    if (match.outcome == http::RouteMatch::Outcome::kMethodNotAllowed) {
      responder.send(errorResponse(405, "Method Not Allowed"));
      return;
    }
    const http::Route& route = match.route;
    switch (route.endpoint) {
      case Endpoint::kModelInfer:
        infer(route, std::move(request), std::move(responder));
        return;
      case Endpoint::kRepositoryLoad:
      case Endpoint::kRepositoryUnload: {
        // Blocking: off the I/O thread.
        auto shared = std::make_shared<std::tuple<http::Route, HttpRequest, HttpResponder>>(
            route, std::move(request), std::move(responder));
        control_.post([this, shared] {
          auto& [r, req, res] = *shared;
          res.send(r.endpoint == Endpoint::kRepositoryLoad ? load(r, req) : unload(r, req));
        });
        return;
      }
      default:
        responder.send(answer(route, request));
        return;
    }
  }

  // Everything that answers at once, on the I/O thread.
  HttpResponse answer(const http::Route& route, const HttpRequest& request) {
    switch (route.endpoint) {
      case Endpoint::kHealthLive:
        return emptyResponse(server_.isLive() ? 200 : 400);
      case Endpoint::kHealthReady:
        return emptyResponse(server_.isReady() ? 200 : 400);
      case Endpoint::kServerMetadata:
        return jsonResponse(json{{"name", Server::kName},
                                 {"version", Server::version()},
                                 {"extensions", Server::extensions()}});
      case Endpoint::kModelReady:
        return modelReady(route);
      case Endpoint::kModelMetadata:
        return modelMetadata(route);
      case Endpoint::kModelConfig:
        return modelConfig(route);
      case Endpoint::kModelStatistics:
        return modelStatistics(route);
      case Endpoint::kRepositoryIndex:
        return repositoryIndex(route, request);
      case Endpoint::kSystemSharedMemoryStatus:
        return systemSharedMemoryStatus(route);
      case Endpoint::kCudaSharedMemoryStatus:
        return cudaSharedMemoryStatus(route);
      case Endpoint::kSystemSharedMemoryRegister:
        return registerSystemSharedMemory(route, request);
      case Endpoint::kCudaSharedMemoryRegister:
        return registerCudaSharedMemory(route, request);
      case Endpoint::kSystemSharedMemoryUnregister:
        return statusResponse(server_.sharedMemory().unregisterSystem(route.region));
      case Endpoint::kCudaSharedMemoryUnregister:
        return statusResponse(server_.sharedMemory().unregisterCuda(route.region));
      case Endpoint::kModelGenerate:
        return errorResponse(unsupported("the generate extension is not supported"));
      case Endpoint::kModelTrace:
      case Endpoint::kTrace:
        return errorResponse(unsupported("trace settings are not supported"));
      case Endpoint::kLogging:
        return errorResponse(unsupported("log settings are not supported"));
      default:
        return errorResponse(internalError("unhandled endpoint"));
    }
  }

  static HttpResponse statusResponse(const Status& status) {
    return status.isOk() ? emptyResponse() : errorResponse(status);
  }

  // --- client shared memory (the regions live in the core's SharedMemoryManager, shared with
  // gRPC: a region registered over one protocol is usable over the other)

  HttpResponse systemSharedMemoryStatus(const http::Route& route) {
    auto regions = server_.sharedMemory().systemStatus(route.region);
    if (!regions.isOk()) return errorResponse(regions.status());
    json list = json::array();
    for (const auto& r : *regions) {
      list.push_back(json{{"name", r.name}, {"key", r.key}, {"offset", r.offset},
                          {"byte_size", r.byte_size}});
    }
    return jsonResponse(list);
  }

  HttpResponse cudaSharedMemoryStatus(const http::Route& route) {
    auto regions = server_.sharedMemory().cudaStatus(route.region);
    if (!regions.isOk()) return errorResponse(regions.status());
    json list = json::array();
    for (const auto& r : *regions) {
      list.push_back(
          json{{"name", r.name}, {"device_id", r.device_id}, {"byte_size", r.byte_size}});
    }
    return jsonResponse(list);
  }

  // A required (or, with `fallback`, optional) non-negative integer field of a register body.
  static Result<uint64_t> unsignedField(const nlohmann::json& body, const char* field,
                                        std::optional<uint64_t> fallback = std::nullopt) {
    const auto it = body.find(field);
    if (it == body.end()) {
      if (fallback) return *fallback;
      return invalidArg(std::string("the register request has no '") + field + "'");
    }
    if (!it->is_number_unsigned()) {
      return invalidArg(std::string("'") + field + "' must be a non-negative integer, got " +
                        it->dump());
    }
    return it->get<uint64_t>();
  }

  HttpResponse registerSystemSharedMemory(const http::Route& route, const HttpRequest& request) {
    auto body = optionalJsonObject(request, "shared memory register request");
    if (!body.isOk()) return errorResponse(body.status());
    const auto key = body->find("key");
    if (key == body->end() || !key->is_string()) {
      return errorResponse(invalidArg("the register request has no 'key' string"));
    }
    auto offset = unsignedField(*body, "offset", 0);
    if (!offset.isOk()) return errorResponse(offset.status());
    auto byte_size = unsignedField(*body, "byte_size");
    if (!byte_size.isOk()) return errorResponse(byte_size.status());
    return statusResponse(server_.sharedMemory().registerSystem(
        route.region, key->get<std::string>(), *offset, *byte_size));
  }

  HttpResponse registerCudaSharedMemory(const http::Route& route, const HttpRequest& request) {
    auto body = optionalJsonObject(request, "CUDA shared memory register request");
    if (!body.isOk()) return errorResponse(body.status());
    const auto handle = body->find("raw_handle");
    const nlohmann::json* b64 = nullptr;
    if (handle != body->end() && handle->is_object()) {
      if (const auto it = handle->find("b64"); it != handle->end()) b64 = &*it;
    }
    if (b64 == nullptr || !b64->is_string()) {
      return errorResponse(
          invalidArg("the register request has no 'raw_handle': {\"b64\": <base64 string>}"));
    }
    auto raw = http::decodeBase64(b64->get_ref<const std::string&>(), "'raw_handle'");
    if (!raw.isOk()) return errorResponse(raw.status());
    auto device = unsignedField(*body, "device_id", 0);
    if (!device.isOk()) return errorResponse(device.status());
    auto byte_size = unsignedField(*body, "byte_size");
    if (!byte_size.isOk()) return errorResponse(byte_size.status());
    return statusResponse(server_.sharedMemory().registerCuda(
        route.region, *raw, static_cast<int64_t>(*device), *byte_size));
  }

  // Points inputs in client shared memory at their regions and tells the call where outputs in
  // shared memory go. I/O thread, before the request reaches the core.
  Status resolveSharedMemory(InferenceRequest& request, InferCall& call) {
    const SharedMemoryManager& shared_memory = server_.sharedMemory();
    for (InputTensor& input : request.inputs) {
      BL_ASSIGN_OR_RETURN(auto location, sharedMemoryLocation(input.name, input.parameters));
      if (!location) continue;
      // The storage was reserved for one entry per input, so earlier views stay valid.
      BL_RETURN_IF_ERROR(
          bindSharedMemoryInput(shared_memory, *location, input, request, call.storage()));
    }
    for (const auto& [name, location] : call.format().shm_outputs) {
      BL_ASSIGN_OR_RETURN(auto target, sharedMemoryOutputWindow(shared_memory, location, name));
      call.addSharedMemoryOutput(name, std::move(target.region), target.window);
    }
    return Status::ok();
  }

  HttpResponse modelReady(const http::Route& route) {
    auto version = parseModelVersion(route.version);
    if (!version.isOk()) return errorResponse(version.status());
    auto ready = server_.modelReady(route.model, *version);
    // Like Triton (and the gRPC front end): an unknown model is simply not ready.
    if (ready.isOk() && *ready) return emptyResponse();
    return errorResponse(400, "Model version not ready");
  }

  HttpResponse modelMetadata(const http::Route& route) {
    auto version = parseModelVersion(route.version);
    if (!version.isOk()) return errorResponse(version.status());
    auto metadata = server_.modelMetadata(route.model, *version);
    if (!metadata.isOk()) return errorResponse(metadata.status());
    return jsonResponse(json{{"name", metadata->name},
                             {"versions", metadata->versions},
                             {"platform", metadata->platform},
                             {"inputs", tensorMetadataJson(metadata->inputs)},
                             {"outputs", tensorMetadataJson(metadata->outputs)}});
  }

  HttpResponse modelConfig(const http::Route& route) {
    auto version = parseModelVersion(route.version);
    if (!version.isOk()) return errorResponse(version.status());
    auto config = server_.modelConfig(route.model, *version);
    if (!config.isOk()) return errorResponse(config.status());
    return jsonResponse(http::modelConfigToTritonJson(**config));
  }

  HttpResponse modelStatistics(const http::Route& route) {
    auto version = parseModelVersion(route.version);
    if (!version.isOk()) return errorResponse(version.status());
    auto stats = server_.modelStatistics(route.model, *version);
    if (!stats.isOk()) return errorResponse(stats.status());
    json list = json::array();
    for (const auto& s : *stats) {
      json batches = json::array();
      for (const auto& b : s.batch_stats) {
        batches.push_back(json{{"batch_size", b.batch_size},
                               {"compute_input", durationJson(b.compute_input)},
                               {"compute_infer", durationJson(b.compute_infer)},
                               {"compute_output", durationJson(b.compute_output)}});
      }
      list.push_back(
          json{{"name", s.name},
               {"version", s.version},
               {"last_inference", s.last_inference_ms},
               {"inference_count", s.inference_count},
               {"execution_count", s.execution_count},
               {"inference_stats", json{{"success", durationJson(s.success)},
                                        {"fail", durationJson(s.fail)},
                                        {"queue", durationJson(s.queue)},
                                        {"compute_input", durationJson(s.compute_input)},
                                        {"compute_infer", durationJson(s.compute_infer)},
                                        {"compute_output", durationJson(s.compute_output)},
                                        {"cache_hit", durationJson({})},
                                        {"cache_miss", durationJson({})}}},
               {"batch_stats", std::move(batches)},
               {"memory_usage", json::array()},
               {"response_stats", json::object()}});
    }
    return jsonResponse(json{{"model_stats", std::move(list)}});
  }

  HttpResponse repositoryIndex(const http::Route& route, const HttpRequest& request) {
    if (!route.repository.empty()) {
      return errorResponse(
          unsupported("repository names are not supported; use /v2/repository/index"));
    }
    auto body = optionalJsonObject(request, "repository index request");
    if (!body.isOk()) return errorResponse(body.status());
    bool ready_only = false;
    if (const auto ready = body->find("ready"); ready != body->end()) {
      if (!ready->is_boolean()) return errorResponse(invalidArg("'ready' must be a bool"));
      ready_only = ready->get<bool>();
    }
    json list = json::array();
    for (const auto& entry : server_.repositoryIndex(ready_only)) {
      json item{{"name", entry.name}};
      if (!entry.version.empty()) item["version"] = entry.version;
      item["state"] = modelStateName(entry.state);
      if (!entry.reason.empty()) item["reason"] = entry.reason;
      list.push_back(std::move(item));
    }
    return jsonResponse(list);
  }

  // Control thread.
  HttpResponse load(const http::Route& route, const HttpRequest& request) {
    if (!route.repository.empty()) {
      return errorResponse(unsupported("repository names are not supported"));
    }
    auto body = optionalJsonObject(request, "load request");
    if (!body.isOk()) return errorResponse(body.status());
    std::optional<std::string> config_json;
    if (const auto parameters = body->find("parameters"); parameters != body->end()) {
      if (!parameters->is_object()) {
        return errorResponse(invalidArg("'parameters' must be a JSON object"));
      }
      std::optional<Status> file_refusal;
      for (const auto& [key, value] : parameters->items()) {
        if (key == "config") {
          if (value.is_string()) {
            config_json = value.get<std::string>();
          } else if (value.is_object()) {
            config_json = value.dump();
          } else {
            return errorResponse(invalidArg("load parameter 'config' must be a string (JSON)"));
          }
        } else if (key.rfind("file:", 0) == 0) {
          if (!value.is_string()) {
            return errorResponse(
                invalidArg("load parameter '" + key + "' must be a base64 string"));
          }
          auto decoded = http::decodeBase64(value.get_ref<const std::string&>(),
                                            "load parameter '" + key + "'");
          if (!decoded.isOk()) return errorResponse(decoded.status());
          if (!file_refusal) file_refusal = loadFileParameterUnsupported(key);
        }
      }
      if (file_refusal) return errorResponse(*file_refusal);
    }
    const Status status = server_.loadModel(route.model, config_json);
    return status.isOk() ? emptyResponse() : errorResponse(status);
  }

  // Control thread.
  HttpResponse unload(const http::Route& route, const HttpRequest& request) {
    if (!route.repository.empty()) {
      return errorResponse(unsupported("repository names are not supported"));
    }
    auto body = optionalJsonObject(request, "unload request");
    if (!body.isOk()) return errorResponse(body.status());
    bool dependents = false;
    if (const auto parameters = body->find("parameters");
        parameters != body->end() && parameters->is_object()) {
      if (const auto it = parameters->find("unload_dependents");
          it != parameters->end() && it->is_boolean()) {
        dependents = it->get<bool>();
      }
    }
    const Status status = server_.unloadModel(route.model, dependents);
    return status.isOk() ? emptyResponse() : errorResponse(status);
  }

  // I/O thread: translate, then hand the request to the core.
  void infer(const http::Route& route, HttpRequest&& request, HttpResponder&& responder) {
    auto version = parseModelVersion(route.version);
    if (!version.isOk()) {
      responder.send(errorResponse(version.status()));
      return;
    }
    const size_t body_size = request.body.size();
    std::optional<size_t> header_length;
    if (const auto header = request.header("inference-header-content-length")) {
      int64_t value = -1;
      const auto [end, error] =
          std::from_chars(header->data(), header->data() + header->size(), value);
      if (error != std::errc() || end != header->data() + header->size() || value < 0 ||
          static_cast<uint64_t>(value) > body_size) {
        responder.send(errorResponse(invalidArg("inference header size should be in range (0, " +
                                                std::to_string(body_size) +
                                                "), got: " + std::string(*header))));
        return;
      }
      header_length = static_cast<size_t>(value);
    }
    auto call = std::make_unique<InferCall>(std::move(request), std::move(responder), route.model);
    auto core_request = std::make_unique<InferenceRequest>();
    core_request->model_name = route.model;
    core_request->model_version = *version;
    Status status;
    if (header_length && *header_length == 0) {
      auto config = server_.modelConfig(route.model, *version);
      status = config.isOk() ? http::makeRawInferRequest(call->body(), **config, *core_request,
                                                         call->format(), call->storage())
                             : config.status();
    } else {
      status = http::parseInferRequest(call->body(), header_length.value_or(body_size), route.model,
                                       *core_request, call->format(), call->storage());
    }
    if (status.isOk()) status = resolveSharedMemory(*core_request, *call);
    if (!status.isOk()) {
      call.release()->complete(status, -1);  // hands itself to the transport
      return;
    }
    call->setId(core_request->id);
    core_request->sink = call.release();  // owned by the transport once complete() is called
    server_.infer(std::move(core_request));
  }

  Server& server_;
  std::unique_ptr<net::HttpServer> http_;
  ControlThread control_;
  std::mutex shutdown_mutex_;
};

}  // namespace

Result<std::unique_ptr<HttpFrontend>> HttpFrontend::start(Server& server,
                                                          HttpFrontendOptions options) {
  auto frontend = std::make_unique<HttpFrontendImpl>(server);
  BL_RETURN_IF_ERROR(frontend->start(options));
  return std::unique_ptr<HttpFrontend>(std::move(frontend));
}

}  // namespace beamline::frontend
