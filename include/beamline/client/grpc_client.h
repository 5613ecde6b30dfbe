// beamline::client — a C++ client for servers that speak the KServe v2 / Triton gRPC protocol
// (beamline itself, or Triton).
//
// The pieces, and who uses them from which thread:
// - GrpcClient: one channel and stub; every method is const and safe to call from any number of
//   threads at once. Create one per process (or per server) and share it.
// - InferRequest: a reusable request message. Not thread-safe: one per calling thread or stream.
//   Input buffers keep their capacity between calls, so a loop that sends same-sized tensors does
//   not allocate.
// - InferResult: the response of one call, with views over its outputs. Not thread-safe; may be
//   reused for the next synchronous call on the same thread.
//
// All errors are values (Status / Result<T>); nothing here throws.
#pragma once

#include <atomic>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "beamline/core/datatype.h"
#include "beamline/core/inference.h"
#include "beamline/core/status.h"
#include "beamline/core/tensor.h"
#include "grpc_service.pb.h"

namespace grpc {
class Channel;
}  // namespace grpc

namespace beamline::client {

// Compression of request messages (responses follow the server's choice).
enum class Compression { kNone, kGzip, kDeflate };
// "none" | "gzip" | "deflate" (as SonicTriton's `compression` parameter; "" is none).
Result<Compression> parseCompression(std::string_view text);
std::string_view compressionName(Compression compression);

// TLS for the channel (grpcs). Paths of PEM files, read when the client is created; empty paths
// use gRPC's defaults (system roots, no client certificate).
struct TlsOptions {
  bool enabled = false;
  std::string root_certificates;  // file with PEM root certificates
  std::string private_key;        // file with the client's PEM private key (mutual TLS)
  std::string certificate_chain;  // file with the client's PEM certificate chain (mutual TLS)
};

// Settings of one call that override the client's (ClientOptions): a per-call deadline and
// compression, as SonicTriton sets per module.
struct CallOptions {
  std::optional<std::chrono::microseconds> timeout;  // 0: no deadline
  std::optional<Compression> compression;
};

// Settings of a GrpcClient, fixed when it is created.
struct ClientOptions {
  // gRPC target: "host:port", "dns:///host:port", "unix:///path". A leading "grpc://" is dropped.
  std::string url = "localhost:8001";
  // Largest message sent or received; Triton uses INT32_MAX on both sides (gRPC's default is 4
  // MiB).
  int max_message_bytes = INT32_MAX;
  // Deadline of every call, measured from its start; 0 means no deadline.
  std::chrono::microseconds timeout{0};
  Compression compression = Compression::kNone;
  TlsOptions tls;
  // Extra metadata (HTTP/2 headers) sent with every call; keys must be lower case.
  std::vector<std::pair<std::string, std::string>> headers;
  // Log one line per call (RPC, model, status, latency) through `logger`.
  bool verbose = false;
  // Receives the verbose lines; may be called from gRPC's callback threads, so it must be
  // thread-safe. Empty: lines go to stderr.
  std::function<void(std::string_view line)> logger;
};

// A reusable ModelInferRequest. Inputs are addressed by the index addInput() returned; the data of
// input i lives in raw_input_contents(i). reset() and the setters keep the message's buffers, so
// repeated calls of the same sizes do not allocate. Not thread-safe.
class InferRequest {
 public:
  InferRequest() = default;
  // Copies and moves take the message; pins stay with the original (see pinBuffers()).
  InferRequest(const InferRequest& other);
  InferRequest(InferRequest&& other) noexcept;
  InferRequest& operator=(const InferRequest& other);
  InferRequest& operator=(InferRequest&& other) noexcept;
  // Waits for pins to be released.
  ~InferRequest();

  // Model to run; an empty version lets the server choose by its version policy.
  void setModel(std::string_view name, std::string_view version = "");
  // Request id, echoed in the response.
  void setId(std::string_view id);

  // Declares an input with no data yet and returns its index.
  size_t addInput(std::string_view name, DataType datatype, std::span<const int64_t> shape);
  // Declares an input whose bytes the server reads from a registered shared-memory region (the
  // parameters shared_memory_region/_offset/_byte_size); it has no raw_input_contents entry and
  // its data cannot be set here. Returns its index.
  size_t addSharedMemoryInput(std::string_view name, DataType datatype,
                              std::span<const int64_t> shape, std::string_view region,
                              uint64_t offset, uint64_t byte_size);
  // True when input `index` lives in shared memory.
  bool inputInSharedMemory(size_t index) const;
  // Index of the input with this name; kNotFound when there is none.
  Result<size_t> inputIndex(std::string_view name) const;
  size_t inputCount() const { return datatypes_.size(); }
  // Changes the shape of an input (e.g. the batch size of this event). Data set before must be set
  // again when its size no longer matches; infer() checks.
  Status setInputShape(size_t index, std::span<const int64_t> shape);
  // Copies `data` into the input's raw buffer, reusing its capacity. Fixed-size types: the size
  // must equal shape x element size. BYTES: `data` must hold exactly one length-prefixed element
  // per shape element. INVALID_ARG otherwise, and the buffer is left as it was.
  Status setInputData(size_t index, std::span<const std::byte> data);
  // The input's raw buffer resized to `byte_size` (capacity kept; nothing is written when the size
  // did not change), for the caller to fill in place: the data goes into the request message with
  // no intermediate copy. The span stays valid until the input's size changes or reset().
  Result<std::span<std::byte>> mutableInputData(size_t index, size_t byte_size);
  // The raw bytes of an input (empty for shared-memory inputs).
  std::span<const std::byte> inputData(size_t index) const;
  // BYTES inputs: encodes the elements (4-byte little-endian length + bytes each) into the input's
  // raw buffer. Their number must equal the shape's element count.
  Status setInputBytes(size_t index, std::span<const std::string_view> elements);
  // Parameter of one input (e.g. shared_memory_region); replaces one of the same name.
  Status setInputParameter(size_t index, std::string_view name, const ParameterValue& value);

  // Asks for one output by name and returns its index among the requested outputs. With none
  // requested the server returns every output.
  size_t requestOutput(std::string_view name);
  // Asks the server to write output `index` into a registered shared-memory region
  // (shared_memory_region/_offset/_byte_size); the result then has no raw data for it.
  Status setOutputSharedMemory(size_t index, std::string_view region, uint64_t offset,
                               uint64_t byte_size);
  // Parameter of one requested output (e.g. classification); replaces one of the same name.
  Status setOutputParameter(size_t index, std::string_view name, const ParameterValue& value);
  // Forgets the requested outputs (the server then returns all of them).
  void clearOutputs();

  // A request parameter (sequence_id, priority, timeout, or a custom one for the backend); replaces
  // one of the same name.
  void setParameter(std::string_view name, const ParameterValue& value);
  void clearParameters();

  // Clears everything (model, id, inputs, outputs, parameters) but keeps the allocated buffers.
  void reset();

  // Checks that every input has data of the right size for its shape (BYTES: element count).
  // GrpcClient::infer() calls it before sending.
  Status validate() const;

  const std::string& modelName() const { return request_.model_name(); }
  // The wire message, for inspection or for calls made without GrpcClient.
  const inference::ModelInferRequest& message() const { return request_; }

  // Zero-copy senders hand the raw input buffers to the transport as they are and pin the request
  // once per buffer; the transport unpins when it drops its last reference (after the bytes were
  // sent, or when a cancelled call is torn down). Every method above that resizes, rewrites or
  // frees a raw buffer first waits until no pin is left; code that writes into spans obtained
  // earlier (mutableInputData) must call waitUntilUnpinned() first. Thread-safe.
  void pinBuffers() const { pins_.fetch_add(1, std::memory_order_relaxed); }
  void unpinBuffers() const { pins_.fetch_sub(1, std::memory_order_release); }
  // Returns at once when nothing is pinned (the usual case: a completed call has released its
  // buffers); otherwise yields until the pins are gone or `limit` has passed (then false).
  bool waitUntilUnpinned(std::chrono::milliseconds limit = std::chrono::seconds(30)) const;

 private:
  Status checkInputIndex(size_t index) const;
  std::string* rawInput(size_t index);
  const std::string* rawInput(size_t index) const;

  inference::ModelInferRequest request_;
  std::vector<DataType> datatypes_;  // parallel to request_.inputs()
  // Parallel to request_.inputs(): index into raw_input_contents, -1 for shared-memory inputs
  // (which have no raw entry, as the protocol requires).
  std::vector<int> raw_slots_;
  mutable std::atomic<int> pins_{0};
};

// One output of an InferResult: views into the result, valid while it lives and is not reused.
struct OutputView {
  std::string_view name;
  DataType datatype = DataType::kInvalid;
  Shape shape;
  std::span<const std::byte> data;  // row-major; BYTES: length-prefixed elements
};

// The response of one inference. Outputs are read from raw_output_contents by position (what
// Triton and beamline send); typed `contents` (fp32_contents, ...) sent by other servers are
// converted once into buffers owned by the result. Not thread-safe.
class InferResult {
 public:
  InferResult() = default;

  size_t outputCount() const { return outputs_.size(); }
  // Output by position in the response, or by name; kNotFound when absent.
  Result<OutputView> output(size_t index) const;
  Result<OutputView> output(std::string_view name) const;
  // The same without allocating: views of the name, shape (inside the response message) and data.
  Result<TensorView> tensor(size_t index) const;
  // The elements of a BYTES output, as views into the result.
  Result<std::vector<std::string_view>> bytesElements(std::string_view name) const;

  std::string_view modelName() const { return response_.model_name(); }
  std::string_view modelVersion() const { return response_.model_version(); }
  std::string_view id() const { return response_.id(); }
  const inference::ModelInferResponse& message() const { return response_; }

  // The message to fill (by GrpcClient, or by code that received it another way), followed by
  // prepare(), which indexes the outputs and checks their sizes against their shapes. Buffers of
  // a previous response are reused where protobuf can.
  inference::ModelInferResponse& mutableMessage() { return response_; }
  Status prepare();

  // Outputs that the request asked to be written into shared memory: before prepare(), name the
  // output and the mapped bytes the server writes it to. prepare() then views that memory instead
  // of raw_output_contents (servers may or may not send an empty raw entry for such an output;
  // both are accepted). `name` and `memory` must outlive the result's use; cleared by
  // clearSharedMemoryOutputs().
  void bindSharedMemoryOutput(std::string_view name, std::span<const std::byte> memory);
  void clearSharedMemoryOutputs() { shm_outputs_.clear(); }

 private:
  struct OutputEntry {
    DataType datatype = DataType::kInvalid;
    std::span<const std::byte> data;
  };

  inference::ModelInferResponse response_;
  std::vector<OutputEntry> outputs_;               // parallel to response_.outputs()
  std::vector<std::vector<std::byte>> converted_;  // owned data of typed-contents outputs
  std::vector<std::pair<std::string_view, std::span<const std::byte>>> shm_outputs_;
};

// A connection to one server. Thread-safe: all methods are const and may be called concurrently;
// the underlying gRPC channel multiplexes the calls. Synchronous methods block the calling thread
// until the reply or the deadline.
class GrpcClient {
 public:
  // Called once with the outcome of asyncInfer(), on one of gRPC's callback threads; it should
  // return quickly and must not block on another call made through the same client.
  using InferCallback = std::function<void(Status status, std::unique_ptr<InferResult> result)>;

  // Creates the channel. Does not connect: the first call does, and fails with UNAVAILABLE when the
  // server cannot be reached.
  static Result<std::unique_ptr<GrpcClient>> create(ClientOptions options);
  // Waits until every asyncInfer() callback has returned; so never destroy the client from inside
  // one of its callbacks.
  ~GrpcClient();
  GrpcClient(const GrpcClient&) = delete;
  GrpcClient& operator=(const GrpcClient&) = delete;

  // Health.
  Result<bool> serverLive() const;
  Result<bool> serverReady() const;
  Result<bool> modelReady(std::string_view name, std::string_view version = "") const;

  // Metadata and configuration. An empty version lets the server choose.
  Result<inference::ServerMetadataResponse> serverMetadata() const;
  Result<inference::ModelMetadataResponse> modelMetadata(std::string_view name,
                                                         std::string_view version = "") const;
  Result<inference::ModelConfigResponse> modelConfig(std::string_view name,
                                                     std::string_view version = "") const;
  // Statistics of one model, or of every model when `name` is empty.
  Result<inference::ModelStatisticsResponse> modelStatistics(std::string_view name = "",
                                                             std::string_view version = "") const;

  // Repository control (servers started with explicit model control).
  Result<inference::RepositoryIndexResponse> repositoryIndex(bool ready_only = false) const;
  // Loads (or reloads) a model; `config_json` overrides its config.pbtxt (the "config" parameter).
  Status loadModel(std::string_view name,
                   const std::optional<std::string>& config_json = std::nullopt) const;
  Status unloadModel(std::string_view name) const;

  // Runs one inference and waits for it. `request` is only read; `result` is overwritten, its
  // buffers reused. Errors name the model; a deadline reads "timed out after N us".
  Status infer(const InferRequest& request, InferResult& result) const;
  // The same with a per-call deadline and/or compression.
  Status infer(const InferRequest& request, InferResult& result, const CallOptions& call) const;

  // Starts one inference and returns at once; `done` runs on a gRPC callback thread. `request` must
  // stay alive and unmodified until `done` has been called; it may be reused afterwards. No thread
  // is created per call. An invalid request (see InferRequest::validate) calls `done` with the
  // error on the calling thread before this returns.
  void asyncInfer(const InferRequest& request, InferCallback done) const;
  void asyncInfer(const InferRequest& request, InferCallback done, const CallOptions& call) const;

  // System shared memory (Triton's SystemSharedMemory RPCs): the server maps `byte_size` bytes at
  // `offset` of the POSIX shared-memory object `key` under the region name `name`. Servers refuse
  // it unless started to allow client shared memory.
  Status registerSystemSharedMemory(std::string_view name, std::string_view key, uint64_t offset,
                                    uint64_t byte_size) const;
  // Empty name: every region.
  Status unregisterSystemSharedMemory(std::string_view name = "") const;
  Result<inference::SystemSharedMemoryStatusResponse> systemSharedMemoryStatus(
      std::string_view name = "") const;
  // CUDA shared memory: `raw_handle` is a cudaIpcMemHandle_t's bytes.
  Status registerCudaSharedMemory(std::string_view name, std::span<const std::byte> raw_handle,
                                  int64_t device_id, uint64_t byte_size) const;
  Status unregisterCudaSharedMemory(std::string_view name = "") const;
  Result<inference::CudaSharedMemoryStatusResponse> cudaSharedMemoryStatus(
      std::string_view name = "") const;

  const ClientOptions& options() const { return options_; }
  // The channel, shared with other stubs on the same connection (e.g. a generic stub).
  const std::shared_ptr<grpc::Channel>& channel() const;

 private:
  struct Impl;
  GrpcClient(ClientOptions options, std::unique_ptr<Impl> impl);

  ClientOptions options_;
  std::unique_ptr<Impl> impl_;
};

// Maps a gRPC status code and message to a Status (INVALID_ARGUMENT -> kInvalidArg, NOT_FOUND ->
// kNotFound, UNAVAILABLE and DEADLINE_EXCEEDED -> kUnavailable, UNIMPLEMENTED -> kUnsupported,
// RESOURCE_EXHAUSTED -> kInvalidArg, ...). `context` (a model name, an RPC) goes in front of the
// message; `timeout` is used for the deadline message. Exposed for tests and other transports.
Status statusFromGrpc(int grpc_code, std::string_view grpc_message, std::string_view context,
                      std::chrono::microseconds timeout);

// Converts a protocol parameter value to the wire form and back.
void toInferParameter(const ParameterValue& value, inference::InferParameter& out);
std::optional<ParameterValue> fromInferParameter(const inference::InferParameter& parameter);

}  // namespace beamline::client
