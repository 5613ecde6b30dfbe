// RemoteEndpoint (a server over gRPC), the Endpoint defaults, server addresses and same-host
// detection: see include/beamline/client/endpoint.h.
#include <arpa/inet.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "beamline/client/endpoint.h"
#include "grpc_service.grpc.pb.h"
#include "request_encoding.h"

namespace beamline::client {

using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Endpoint defaults

Status Endpoint::inferBlocking(const InferRequest& request, InferResult& result,
                               const CallOptions& options, CallReport& report) const {
  std::mutex mutex;
  std::condition_variable wake;
  bool finished = false;
  Status outcome;
  infer(request, result, options, [&](Status status, const CallReport& call_report) {
    std::lock_guard lock(mutex);
    outcome = std::move(status);
    report = call_report;
    finished = true;
    wake.notify_all();
  });
  std::unique_lock lock(mutex);
  wake.wait(lock, [&] { return finished; });
  return outcome;
}

Status Endpoint::registerSystemSharedMemory(const std::string&, const std::string&, uint64_t,
                                            uint64_t) const {
  return unsupported("endpoint " + name() + " does not take shared memory");
}
Status Endpoint::unregisterSystemSharedMemory(const std::string&) const {
  return unsupported("endpoint " + name() + " does not take shared memory");
}
Status Endpoint::registerCudaSharedMemory(const std::string&, std::span<const std::byte>, int64_t,
                                          uint64_t) const {
  return unsupported("endpoint " + name() + " does not take CUDA shared memory");
}
Status Endpoint::unregisterCudaSharedMemory(const std::string&) const {
  return unsupported("endpoint " + name() + " does not take CUDA shared memory");
}

ServerSideStatistics ServerSideStatistics::operator-(const ServerSideStatistics& earlier) const {
  ServerSideStatistics d;
  d.inference_count = inference_count - earlier.inference_count;
  d.execution_count = execution_count - earlier.execution_count;
  d.success_count = success_count - earlier.success_count;
  d.success = success - earlier.success;
  d.queue = queue - earlier.queue;
  d.compute_input = compute_input - earlier.compute_input;
  d.compute_infer = compute_infer - earlier.compute_infer;
  d.compute_output = compute_output - earlier.compute_output;
  return d;
}

// ---------------------------------------------------------------------------------------------
// Addresses

Result<ServerAddress> parseServerAddress(std::string_view text) {
  ServerAddress server;
  const size_t equals = text.find('=');
  if (equals != std::string_view::npos) {
    server.name = std::string(text.substr(0, equals));
    text.remove_prefix(equals + 1);
  }
  constexpr std::string_view kPlain = "grpc://", kTls = "grpcs://";
  if (text.substr(0, kTls.size()) == kTls) {
    server.tls.enabled = true;
    text.remove_prefix(kTls.size());
  } else if (text.substr(0, kPlain.size()) == kPlain) {
    text.remove_prefix(kPlain.size());
  }
  if (text.empty()) return invalidArg("empty server address");
  if (text.substr(0, 5) != "unix:" && text.rfind(':') == std::string_view::npos) {
    return invalidArg("server address '" + std::string(text) + "' has no port (host:port)");
  }
  server.address = std::string(text);
  if (server.name.empty()) server.name = server.address;
  return server;
}

namespace {

// The host part of "host:port", "[v6]:port" or "dns:///host:port".
std::string hostOf(std::string_view address) {
  constexpr std::string_view kDns = "dns:///";
  if (address.substr(0, kDns.size()) == kDns) address.remove_prefix(kDns.size());
  if (!address.empty() && address.front() == '[') {
    const size_t close = address.find(']');
    return std::string(address.substr(1, close == std::string_view::npos ? close : close - 1));
  }
  const size_t colon = address.rfind(':');
  return std::string(address.substr(0, colon));
}

bool isLocalInterfaceAddress(const std::string& host) {
  in6_addr v6{};
  in_addr v4{};
  const bool is_v4 = ::inet_pton(AF_INET, host.c_str(), &v4) == 1;
  const bool is_v6 = !is_v4 && ::inet_pton(AF_INET6, host.c_str(), &v6) == 1;
  if (!is_v4 && !is_v6) return false;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return false;
  bool found = false;
  for (ifaddrs* entry = list; entry != nullptr && !found; entry = entry->ifa_next) {
    if (entry->ifa_addr == nullptr) continue;
    if (is_v4 && entry->ifa_addr->sa_family == AF_INET) {
      found = reinterpret_cast<sockaddr_in*>(entry->ifa_addr)->sin_addr.s_addr == v4.s_addr;
    } else if (is_v6 && entry->ifa_addr->sa_family == AF_INET6) {
      found = std::memcmp(&reinterpret_cast<sockaddr_in6*>(entry->ifa_addr)->sin6_addr, &v6,
                          sizeof(v6)) == 0;
    }
  }
  ::freeifaddrs(list);
  return found;
}

}  // namespace

bool isSameHost(std::string_view address) {
  if (address.substr(0, 5) == "unix:") return true;
  const std::string host = hostOf(address);
  if (host.empty() || host == "localhost" || host == "::1" || host == "0.0.0.0" ||
      host.rfind("127.", 0) == 0 || host == "ip6-localhost") {
    return true;
  }
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) == 0) {
    const std::string_view self(name);
    if (host == self) return true;
    // "node.domain" against "node" (or the reverse).
    const auto first_label = [](std::string_view s) { return s.substr(0, s.find('.')); };
    if (first_label(host) == first_label(self) &&
        (host.find('.') == std::string::npos || self.find('.') == std::string_view::npos)) {
      return true;
    }
  }
  return isLocalInterfaceAddress(host);
}

// ---------------------------------------------------------------------------------------------
// RemoteEndpoint

namespace {

constexpr const char* kModelInferMethod = "/inference.GRPCInferenceService/ModelInfer";

class RemoteEndpoint final : public Endpoint {
 public:
  RemoteEndpoint(RemoteEndpointConfig config, std::unique_ptr<GrpcClient> control, Logger logger)
      : config_(std::move(config)),
        name_(config_.server.name.empty() ? config_.server.address : config_.server.name),
        same_host_(isSameHost(config_.server.address)),
        control_(std::move(control)),
        generic_(control_->channel()),
        logger_(std::move(logger)) {}

  ~RemoteEndpoint() override {
    std::unique_lock lock(in_flight_mutex_);
    in_flight_done_.wait(lock, [this] { return in_flight_ == 0; });
  }

  const std::string& name() const override { return name_; }
  bool sameHost() const override { return same_host_; }

  Result<bool> ready() const override { return control_->serverReady(); }

  Result<std::vector<std::string>> readyModels() const override {
    BL_ASSIGN_OR_RETURN(auto index, control_->repositoryIndex(/*ready_only=*/true));
    std::vector<std::string> models;
    for (const auto& model : index.models()) {
      if (model.state().empty() || model.state() == "READY") models.push_back(model.name());
    }
    return models;
  }

  Result<ModelInfo> modelInfo(std::string_view model, std::string_view version) const override {
    BL_ASSIGN_OR_RETURN(auto metadata, control_->modelMetadata(model, version));
    BL_ASSIGN_OR_RETURN(auto config, control_->modelConfig(model, version));
    ModelInfo info;
    info.name = metadata.name();
    info.versions.assign(metadata.versions().begin(), metadata.versions().end());
    info.platform = metadata.platform();
    info.max_batch_size = config.config().max_batch_size();
    auto convert = [&](const auto& tensors, std::vector<TensorInfo>& out) -> Status {
      for (const auto& tensor : tensors) {
        TensorInfo t;
        t.name = tensor.name();
        const auto datatype = dataTypeFromWireName(tensor.datatype());
        if (!datatype) {
          return internalError("model '" + std::string(model) + "': tensor '" + t.name +
                               "' has unknown datatype '" + tensor.datatype() + "'");
        }
        t.datatype = *datatype;
        t.dims.assign(tensor.shape().begin(), tensor.shape().end());
        // Metadata shapes carry the batch dimension (-1) of batching models; ours do not.
        if (info.max_batch_size > 0 && !t.dims.empty()) t.dims.erase(t.dims.begin());
        out.push_back(std::move(t));
      }
      return Status::ok();
    };
    BL_RETURN_IF_ERROR(convert(metadata.inputs(), info.inputs));
    BL_RETURN_IF_ERROR(convert(metadata.outputs(), info.outputs));
    return info;
  }

  Result<ServerSideStatistics> statistics(std::string_view model,
                                          std::string_view version) const override {
    BL_ASSIGN_OR_RETURN(auto response, control_->modelStatistics(model, version));
    ServerSideStatistics total;
    for (const auto& stats : response.model_stats()) {
      total.inference_count += stats.inference_count();
      total.execution_count += stats.execution_count();
      const auto& inference = stats.inference_stats();
      total.success_count += inference.success().count();
      total.success += std::chrono::nanoseconds(inference.success().ns());
      total.queue += std::chrono::nanoseconds(inference.queue().ns());
      total.compute_input += std::chrono::nanoseconds(inference.compute_input().ns());
      total.compute_infer += std::chrono::nanoseconds(inference.compute_infer().ns());
      total.compute_output += std::chrono::nanoseconds(inference.compute_output().ns());
    }
    return total;
  }

  void infer(const InferRequest& request, InferResult& result, const CallOptions& options,
             InferDone done) const override;

  // Requests without large raw inputs (e.g. tensors in shared memory) take gRPC's blocking call
  // on this thread; the others keep the zero-copy encoding of infer().
  Status inferBlocking(const InferRequest& request, InferResult& result, const CallOptions& options,
                       CallReport& report) const override {
    size_t raw_bytes = 0;
    for (const auto& raw : request.message().raw_input_contents()) raw_bytes += raw.size();
    if (raw_bytes >= 64 * 1024) return Endpoint::inferBlocking(request, result, options, report);
    const auto start = Clock::now();
    CallOptions call = options;
    call.timeout = options.timeout.value_or(std::chrono::microseconds(0));
    Status status = control_->infer(request, result, call);
    report = CallReport{};
    report.wait = Clock::now() - start;
    report.unreachable = status.code() == StatusCode::kUnavailable &&
                         status.message().find("timed out") == std::string::npos;
    return status.isOk() ? status : status.withContext(name_);
  }

  Status registerSystemSharedMemory(const std::string& name, const std::string& key,
                                    uint64_t offset, uint64_t byte_size) const override {
    return control_->registerSystemSharedMemory(name, key, offset, byte_size);
  }
  Status unregisterSystemSharedMemory(const std::string& name) const override {
    return control_->unregisterSystemSharedMemory(name);
  }
  Status registerCudaSharedMemory(const std::string& name, std::span<const std::byte> raw_handle,
                                  int64_t device_id, uint64_t byte_size) const override {
    return control_->registerCudaSharedMemory(name, raw_handle, device_id, byte_size);
  }
  Status unregisterCudaSharedMemory(const std::string& name) const override {
    return control_->unregisterCudaSharedMemory(name);
  }

 private:
  // What gRPC needs until the callback: context, buffers, the caller's result and callback.
  struct Call {
    grpc::ClientContext context;
    grpc::ByteBuffer request_buffer;
    grpc::ByteBuffer response_buffer;
    InferResult* result = nullptr;
    InferDone done;
    std::string model;
    std::chrono::microseconds timeout{0};
    CallReport report;
    Clock::time_point sent;
  };

  void complete(std::unique_ptr<Call> call, const grpc::Status& grpc_status) const;

  RemoteEndpointConfig config_;
  std::string name_;
  bool same_host_;
  std::unique_ptr<GrpcClient> control_;
  mutable grpc::GenericStub generic_;
  Logger logger_;

  mutable std::mutex in_flight_mutex_;  // guards in_flight_
  mutable std::condition_variable in_flight_done_;
  mutable size_t in_flight_ = 0;
};

void RemoteEndpoint::infer(const InferRequest& request, InferResult& result,
                           const CallOptions& options, InferDone done) const {
  const auto start = Clock::now();
  Status valid = request.validate();
  if (!valid.isOk()) {
    done(valid.withContext("model '" + request.modelName() + "'"), CallReport{});
    return;
  }
  auto call = std::make_unique<Call>();
  encodeModelInferRequest(request, call->request_buffer);
  call->timeout = options.timeout.value_or(std::chrono::microseconds(0));
  if (call->timeout.count() > 0) {
    call->context.set_deadline(std::chrono::system_clock::now() + call->timeout);
  }
  if (options.compression) call->context.set_compression_algorithm(toGrpcCompression(*options.compression));
  call->result = &result;
  call->done = std::move(done);
  call->model = request.modelName();
  call->sent = Clock::now();
  call->report.send = call->sent - start;
  {
    std::lock_guard lock(in_flight_mutex_);
    ++in_flight_;
  }
  Call* raw = call.release();
  generic_.UnaryCall(&raw->context, kModelInferMethod, grpc::StubOptions(), &raw->request_buffer,
                     &raw->response_buffer, [this, raw](grpc::Status status) {
                       complete(std::unique_ptr<Call>(raw), status);
                     });
}

void RemoteEndpoint::complete(std::unique_ptr<Call> call, const grpc::Status& grpc_status) const {
  const auto arrived = Clock::now();
  call->report.wait = arrived - call->sent;
  const std::string context = "model '" + call->model + "' on " + name_;
  Status status = statusFromGrpc(grpc_status.error_code(), grpc_status.error_message(), context,
                                 call->timeout);
  call->report.unreachable = grpc_status.error_code() == grpc::StatusCode::UNAVAILABLE;
  if (status.isOk()) {
    auto& message = call->result->mutableMessage();
    message.Clear();
    const grpc::Status parsed = grpc::SerializationTraits<inference::ModelInferResponse>::Deserialize(
        &call->response_buffer, &message);
    if (!parsed.ok()) {
      status = internalError(context + ": cannot parse the response: " + parsed.error_message());
    } else {
      status = call->result->prepare();
      if (!status.isOk()) status = status.withContext(context);
    }
  }
  call->report.receive = Clock::now() - arrived;
  InferDone done = std::move(call->done);
  const CallReport report = call->report;
  call.reset();  // before the callback: the caller may reuse `result` and the request at once
  done(std::move(status), report);
  std::lock_guard lock(in_flight_mutex_);
  --in_flight_;
  in_flight_done_.notify_all();
}

}  // namespace

Result<std::shared_ptr<Endpoint>> createRemoteEndpoint(RemoteEndpointConfig config,
                                                       Logger logger) {
  if (config.server.address.empty()) return invalidArg("server address is empty");
  ClientOptions options;
  options.url = config.server.address;
  options.timeout = config.control_timeout;
  options.tls = config.server.tls;
  options.max_message_bytes = config.max_message_bytes;
  BL_ASSIGN_OR_RETURN(auto control, GrpcClient::create(std::move(options)));
  return std::shared_ptr<Endpoint>(
      std::make_shared<RemoteEndpoint>(std::move(config), std::move(control), std::move(logger)));
}

}  // namespace beamline::client
