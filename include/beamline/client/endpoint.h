// An Endpoint is one place inference requests can go: a server reached over gRPC (made by
// createRemoteEndpoint, this file), or the server core running inside this process (made by
// createInProcessEndpoint, in_process.h). The ServerRegistry holds endpoints and chooses among
// them; EventClient sends through the one it was given. Requests and results are the wire types
// of grpc_client.h (InferRequest / InferResult) in both cases, so that the same buffers serve
// both.
//
// Threads: every method is const and thread-safe. infer() returns at once; its callback runs on a
// gRPC callback thread (remote) or on the model instance thread that executed the request
// (in-process), never on a thread made for the call.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "beamline/client/grpc_client.h"
#include "beamline/client/logger.h"
#include "beamline/core/datatype.h"
#include "beamline/core/status.h"
#include "beamline/core/tensor.h"

namespace beamline::client {

// One input or output as the model declares it. `dims` leave out the batch dimension of batching
// models; -1 marks a variable dimension.
struct TensorInfo {
  std::string name;
  DataType datatype = DataType::kInvalid;
  Shape dims;
};

// What a client needs to know about a model, from the server's ModelMetadata and ModelConfig.
struct ModelInfo {
  std::string name;
  std::vector<std::string> versions;
  std::string platform;
  // > 0: requests carry a leading batch dimension of at most this size. 0: no batch dimension;
  // the first of `dims` (if any) is the model's own "outer dimension".
  int64_t max_batch_size = 0;
  std::vector<TensorInfo> inputs;
  std::vector<TensorInfo> outputs;
};

// Cumulative server-side counters of one model (Triton's ModelStatistics); the difference of two
// snapshots describes the requests in between.
struct ServerSideStatistics {
  uint64_t inference_count = 0;  // batch rows
  uint64_t execution_count = 0;  // executions (batches)
  uint64_t success_count = 0;    // successful requests
  std::chrono::nanoseconds success{0}, queue{0}, compute_input{0}, compute_infer{0},
      compute_output{0};

  ServerSideStatistics operator-(const ServerSideStatistics& earlier) const;
};

// How one infer() went, beside its Status.
struct CallReport {
  // Building and serializing the request (send), waiting for the response (network + server),
  // parsing it (receive). The in-process endpoint has no serialization: send and receive are ~0.
  std::chrono::nanoseconds send{0}, wait{0}, receive{0};
  // True when the server could not be reached (connection refused or reset) or answered
  // UNAVAILABLE (draining, queue full): the registry marks it unhealthy and probes it again later.
  // False for other errors the server answered, and for deadlines.
  bool unreachable = false;
};

class Endpoint {
 public:
  // Runs exactly once per infer(); see the file comment for the thread.
  using InferDone = std::function<void(Status status, const CallReport& report)>;

  virtual ~Endpoint() = default;

  // "host:port" of a remote server; "in-process" for the core in this process.
  virtual const std::string& name() const = 0;
  // True when the server runs on this host (loopback address or this host's name), so that
  // shared-memory regions made here can be mapped by it.
  virtual bool sameHost() const = 0;

  virtual Result<bool> ready() const = 0;
  // Names of the models that are READY (from RepositoryIndex).
  virtual Result<std::vector<std::string>> readyModels() const = 0;
  virtual Result<ModelInfo> modelInfo(std::string_view model, std::string_view version) const = 0;
  virtual Result<ServerSideStatistics> statistics(std::string_view model,
                                                  std::string_view version) const = 0;

  // Starts one inference. `request` and `result` belong to the caller and must stay alive and
  // untouched until `done` ran; `result` is overwritten (its buffers reused) and prepared. An
  // invalid request calls `done` on the calling thread before infer() returns.
  virtual void infer(const InferRequest& request, InferResult& result, const CallOptions& options,
                     InferDone done) const = 0;
  // The same, blocking the calling thread; for one request at a time this saves the hand-over
  // from the completion thread. The default waits for infer().
  virtual Status inferBlocking(const InferRequest& request, InferResult& result,
                               const CallOptions& options, CallReport& report) const;

  // Shared memory registration (UNSUPPORTED unless the endpoint is a remote server).
  virtual Status registerSystemSharedMemory(const std::string& name, const std::string& key,
                                            uint64_t offset, uint64_t byte_size) const;
  virtual Status unregisterSystemSharedMemory(const std::string& name) const;
  virtual Status registerCudaSharedMemory(const std::string& name,
                                          std::span<const std::byte> raw_handle, int64_t device_id,
                                          uint64_t byte_size) const;
  virtual Status unregisterCudaSharedMemory(const std::string& name) const;
};

// A server to reach over gRPC.
struct ServerAddress {
  std::string name;     // for logs and `preferred_server`; empty: the address
  std::string address;  // host:port (a leading grpc:// is dropped; grpcs:// turns TLS on)
  TlsOptions tls;
};

// Parses "host:port", "grpc://host:port", "grpcs://host:port" or "name=host:port".
Result<ServerAddress> parseServerAddress(std::string_view text);

struct RemoteEndpointConfig {
  ServerAddress server;
  // Deadline of metadata, statistics, health and shared-memory calls.
  std::chrono::microseconds control_timeout = std::chrono::seconds(5);
  int max_message_bytes = INT32_MAX;
};

// An endpoint for a server reached over gRPC: one channel (one HTTP/2 connection) shared by
// every client that sends through it. Requests are serialized and responses parsed by the
// endpoint itself, which is what CallReport's send/receive times measure. Does not connect until
// the first call.
Result<std::shared_ptr<Endpoint>> createRemoteEndpoint(RemoteEndpointConfig config,
                                                       Logger logger = {});

// True when `address` ("host:port") names this host: a loopback address, "localhost", this host's
// name, or an address of one of its interfaces. unix: targets count as this host.
bool isSameHost(std::string_view address);

}  // namespace beamline::client
