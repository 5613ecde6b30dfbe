// The gRPC transport of beamline perf: ModelInfer (unary) or ModelStreamInfer (one bidirectional
// stream per slot) through the gRPC callback API, on one channel. Control-plane calls go through
// the project's GrpcClient. Threads: see transport.h; completions run on gRPC's callback threads.
#include <grpcpp/grpcpp.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>

#include "beamline/client/grpc_client.h"
#include "beamline/client/shared_memory.h"
#include "grpc_service.grpc.pb.h"
#include "transport.h"

namespace beamline::perf {
namespace {

using Clock = std::chrono::steady_clock;

uint64_t nanosSince(Clock::time_point start) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
}

std::string grpcError(const grpc::Status& status) {
  return "gRPC " + std::to_string(static_cast<int>(status.error_code())) + ": " +
         status.error_message();
}

// Fills `request` from the template; shared-memory inputs/outputs point into `region` at `offset`.
void buildRequest(const RequestTemplate& request_template, inference::ModelInferRequest& request,
                  const std::string* region, uint64_t offset, size_t output_bytes) {
  request.set_model_name(request_template.model);
  request.set_model_version(request_template.version);
  for (const InputTensor& input : request_template.inputs) {
    auto* tensor = request.add_inputs();
    tensor->set_name(input.name);
    tensor->set_datatype(std::string(dataTypeWireName(input.datatype)));
    for (int64_t dim : input.shape) tensor->add_shape(dim);
    if (region == nullptr) {
      request.add_raw_input_contents(input.bytes);
    } else {
      auto& parameters = *tensor->mutable_parameters();
      parameters["shared_memory_region"].set_string_param(*region);
      parameters["shared_memory_offset"].set_int64_param(static_cast<int64_t>(offset));
      parameters["shared_memory_byte_size"].set_int64_param(
          static_cast<int64_t>(input.bytes.size()));
      offset += input.bytes.size();
    }
  }
  for (const std::string& name : request_template.outputs) {
    auto* output = request.add_outputs();
    output->set_name(name);
    if (region != nullptr) {
      auto& parameters = *output->mutable_parameters();
      parameters["shared_memory_region"].set_string_param(*region);
      parameters["shared_memory_offset"].set_int64_param(static_cast<int64_t>(offset));
      parameters["shared_memory_byte_size"].set_int64_param(static_cast<int64_t>(output_bytes));
      offset += output_bytes;
    }
  }
}

class GrpcTransport;

// One bidirectional stream with one request in flight. Runs on gRPC's callback threads.
class StreamSlot final : public grpc::ClientBidiReactor<inference::ModelInferRequest,
                                                        inference::ModelStreamInferResponse> {
 public:
  StreamSlot(size_t index, const inference::ModelInferRequest& request, CompletionSink* sink)
      : index_(index), request_(request), sink_(sink) {}

  void start(inference::GRPCInferenceService::Stub& stub) {
    stub.async()->ModelStreamInfer(&context_, this);
    StartRead(&response_);
    StartCall();
  }

  void send() {
    if (closed_.load(std::memory_order_acquire)) {  // a write would never complete
      sink_->onComplete(index_, "stream closed by the server", 0);
      return;
    }
    pending_.store(2, std::memory_order_relaxed);
    const auto start = Clock::now();
    StartWrite(&request_);
    sink_->onSent(nanosSince(start));
  }

  void finish() { StartWritesDone(); }

  void waitDone() {
    std::unique_lock lock(mutex_);
    done_cv_.wait(lock, [&] { return done_; });
  }

  void OnWriteDone(bool ok) override {
    if (!ok) write_error_ = "stream write failed (stream closed)";
    step();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The stream ended; a request still in flight fails.
      closed_.store(true, std::memory_order_release);
      if (pending_.load() > 0) {
        error_ = "stream closed by the server";
        pending_.store(1);
        step();
      }
      return;
    }
    const auto start = Clock::now();
    if (!response_.error_message().empty()) {
      error_ = response_.error_message();
    } else if (response_.infer_response().model_name().empty()) {
      error_ = "stream response without infer_response";
    }
    receive_ns_ = nanosSince(start);
    StartRead(&response_);
    step();
  }

  void OnDone(const grpc::Status& status) override {
    std::lock_guard lock(mutex_);
    done_ = true;
    done_cv_.notify_all();
  }

 private:
  // The write and the read both finished: the request is complete.
  void step() {
    if (pending_.fetch_sub(1) != 1) return;
    // Both callbacks are done: their fields are ours (pending_ orders the accesses).
    std::string error = !write_error_.empty() ? std::move(write_error_) : std::move(error_);
    write_error_.clear();
    error_.clear();
    sink_->onComplete(index_, error, receive_ns_);
  }

  size_t index_;
  const inference::ModelInferRequest& request_;
  CompletionSink* sink_;
  grpc::ClientContext context_;
  inference::ModelStreamInferResponse response_;
  std::atomic<int> pending_{0};
  std::atomic<bool> closed_{false};  // the server ended the stream
  std::string error_;                // written by OnReadDone of the request in flight
  std::string write_error_;          // written by OnWriteDone of the request in flight
  uint64_t receive_ns_ = 0;
  std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;  // guarded by mutex_
};

// One channel (through GrpcClient, which also serves the control-plane calls) and one slot per
// outstanding request: unary slots own a reused response and an in-place ClientContext, stream
// slots one bidirectional stream each. Threads: as Transport (transport.h); unary completions run
// on gRPC's callback threads and read only their own slot.
class GrpcTransport final : public Transport {
 public:
  explicit GrpcTransport(const PerfOptions& options) : options_(options) {}

  ~GrpcTransport() override { close(); }

  Status connect() {
    if (client_) return Status::ok();
    client::ClientOptions options;
    options.url = options_.url.empty() ? "localhost:8001" : options_.url;
    BL_ASSIGN_OR_RETURN(client_, client::GrpcClient::create(options));
    stub_ = inference::GRPCInferenceService::NewStub(client_->channel());
    return Status::ok();
  }

  Result<ModelSpec> describeModel(const std::string& model, const std::string& version) override {
    BL_RETURN_IF_ERROR(connect());
    BL_ASSIGN_OR_RETURN(auto metadata, client_->modelMetadata(model, version));
    ModelSpec spec;
    spec.name = model;
    spec.version = version;
    const auto convert = [&](const auto& tensors, std::vector<TensorSpec>& out) -> Status {
      for (const auto& tensor : tensors) {
        TensorSpec converted;
        converted.name = tensor.name();
        const auto datatype = dataTypeFromWireName(tensor.datatype());
        if (!datatype) {
          return invalidArg("model '" + model + "': tensor '" + tensor.name() +
                            "' has unknown datatype '" + tensor.datatype() + "'");
        }
        converted.datatype = *datatype;
        converted.dims.assign(tensor.shape().begin(), tensor.shape().end());
        out.push_back(std::move(converted));
      }
      return Status::ok();
    };
    BL_RETURN_IF_ERROR(convert(metadata.inputs(), spec.inputs));
    BL_RETURN_IF_ERROR(convert(metadata.outputs(), spec.outputs));
    auto config = client_->modelConfig(model, version);
    if (config.isOk()) spec.max_batch_size = config->config().max_batch_size();
    return spec;
  }

  Result<ServerStats> statistics(const std::string& model, const std::string& version) override {
    BL_RETURN_IF_ERROR(connect());
    BL_ASSIGN_OR_RETURN(auto response, client_->modelStatistics(model, version));
    if (response.model_stats_size() == 0) return notFound("no statistics for " + model);
    ServerStats stats;
    // Versions of the model are summed (a version policy may serve several).
    for (const auto& model_stats : response.model_stats()) {
      const auto& s = model_stats.inference_stats();
      stats.success_count += s.success().count();
      stats.success_ns += s.success().ns();
      stats.fail_count += s.fail().count();
      stats.queue_count += s.queue().count();
      stats.queue_ns += s.queue().ns();
      stats.compute_input_count += s.compute_input().count();
      stats.compute_input_ns += s.compute_input().ns();
      stats.compute_infer_count += s.compute_infer().count();
      stats.compute_infer_ns += s.compute_infer().ns();
      stats.compute_output_count += s.compute_output().count();
      stats.compute_output_ns += s.compute_output().ns();
      stats.inference_count += model_stats.inference_count();
      stats.execution_count += model_stats.execution_count();
    }
    return stats;
  }

  Status prepare(const RequestTemplate& request, size_t slots, CompletionSink* sink) override {
    BL_RETURN_IF_ERROR(connect());
    sink_ = sink;
    size_t input_bytes = 0;
    for (const InputTensor& input : request.inputs) input_bytes += input.bytes.size();
    const size_t output_bytes = options_.output_shared_memory_size;
    const size_t stride = input_bytes + output_bytes * request.outputs.size();
    if (options_.shared_memory != SharedMemoryKind::kNone) {
      BL_RETURN_IF_ERROR(prepareSharedMemory(request, slots, stride));
    }
    // Without shared memory every slot sends the same bytes: one message, read concurrently.
    const size_t messages = options_.shared_memory == SharedMemoryKind::kNone ? 1 : slots;
    requests_.resize(messages);
    for (size_t i = 0; i < messages; ++i) {
      requests_[i].Clear();
      buildRequest(request, requests_[i],
                   options_.shared_memory == SharedMemoryKind::kNone ? nullptr : &region_name_,
                   i * stride, output_bytes);
    }
    unary_slots_.clear();
    stream_slots_.clear();
    if (options_.streaming) {
      for (size_t i = 0; i < slots; ++i) {
        stream_slots_.push_back(std::make_unique<StreamSlot>(i, requestFor(i), sink));
        stream_slots_.back()->start(*stub_);
      }
    } else {
      unary_slots_ = std::vector<UnarySlot>(slots);
    }
    return Status::ok();
  }

  void send(size_t slot) override {
    if (options_.streaming) {
      stream_slots_[slot]->send();
      return;
    }
    UnarySlot& unary = unary_slots_[slot];
    unary.context.emplace();  // a ClientContext serves one call; emplace reuses the storage
    const auto start = Clock::now();
    stub_->async()->ModelInfer(&*unary.context, &requestFor(slot), &unary.response,
                               [this, slot](grpc::Status status) { onUnaryDone(slot, status); });
    sink_->onSent(nanosSince(start));
  }

  void close() override {
    for (auto& stream : stream_slots_) stream->finish();
    for (auto& stream : stream_slots_) stream->waitDone();
    stream_slots_.clear();
    unary_slots_.clear();
    if (!region_name_.empty() && client_) {
      if (options_.shared_memory == SharedMemoryKind::kCuda) {
        (void)client_->unregisterCudaSharedMemory(region_name_);
      } else {
        (void)client_->unregisterSystemSharedMemory(region_name_);
      }
      region_name_.clear();
    }
    system_region_.reset();
    cuda_region_.reset();
  }

 private:
  struct UnarySlot {
    std::optional<grpc::ClientContext> context;
    inference::ModelInferResponse response;  // reused: protobuf keeps its buffers
  };

  const inference::ModelInferRequest& requestFor(size_t slot) const {
    return requests_.size() == 1 ? requests_[0] : requests_[slot];
  }

  void onUnaryDone(size_t slot, const grpc::Status& status) {
    const auto start = Clock::now();
    std::string error;
    if (!status.ok()) {
      error = grpcError(status);
    } else if (unary_slots_[slot].response.outputs_size() == 0) {
      error = "response without outputs";
    }
    sink_->onComplete(slot, error, nanosSince(start));
  }

  Status prepareSharedMemory(const RequestTemplate& request, size_t slots, size_t stride) {
    const size_t total = stride * slots;
    region_name_ = "perf_" + std::to_string(::getpid()) + "_" + std::to_string(++region_counter_);
    if (options_.shared_memory == SharedMemoryKind::kCuda) {
      if (!client::CudaSharedMemoryRegion::available()) {
        return unsupported(
            "--shared-memory cuda needs a build with CUDA and a visible GPU (this one has none)");
      }
      BL_ASSIGN_OR_RETURN(cuda_region_, client::CudaSharedMemoryRegion::create(0, total));
      for (size_t i = 0; i < slots; ++i) {
        size_t offset = i * stride;
        for (const InputTensor& input : request.inputs) {
          BL_RETURN_IF_ERROR(cuda_region_->copyFromHost(
              offset, std::as_bytes(std::span(input.bytes.data(), input.bytes.size()))));
          offset += input.bytes.size();
        }
      }
      Status registered =
          client_->registerCudaSharedMemory(region_name_, cuda_region_->rawHandle(), 0, total);
      if (!registered.isOk()) region_name_.clear();
      return registered;
    }
    BL_ASSIGN_OR_RETURN(system_region_, client::SharedMemoryRegion::create(
                                            client::makeSharedMemoryKey("perf"), total));
    for (size_t i = 0; i < slots; ++i) {
      size_t offset = i * stride;
      for (const InputTensor& input : request.inputs) {
        std::memcpy(system_region_->data() + offset, input.bytes.data(), input.bytes.size());
        offset += input.bytes.size();
      }
    }
    Status registered =
        client_->registerSystemSharedMemory(region_name_, system_region_->key(), 0, total);
    if (!registered.isOk()) {
      region_name_.clear();
      return Status(registered.code(),
                    "cannot register system shared memory: " + registered.message() +
                        " (start beamline with --allow-client-shm true; the server must run on "
                        "this host)");
    }
    return Status::ok();
  }

  PerfOptions options_;
  std::unique_ptr<client::GrpcClient> client_;
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub_;
  CompletionSink* sink_ = nullptr;
  std::vector<inference::ModelInferRequest> requests_;
  std::vector<UnarySlot> unary_slots_;
  std::vector<std::unique_ptr<StreamSlot>> stream_slots_;
  std::unique_ptr<client::SharedMemoryRegion> system_region_;
  std::unique_ptr<client::CudaSharedMemoryRegion> cuda_region_;
  std::string region_name_;
  int region_counter_ = 0;
};

}  // namespace

std::unique_ptr<Transport> makeGrpcTransport(const PerfOptions& options) {
  return std::make_unique<GrpcTransport>(options);
}

}  // namespace beamline::perf
