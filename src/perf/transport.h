// The transports behind LoadGenerator (internal to beamline_perf): one per protocol. A transport
// answers the control-plane questions perf needs (model metadata/config, statistics) and sends
// inference requests on numbered slots, each slot with its own reused buffers and at most one
// request in flight.
//
// Threads: describeModel(), statistics(), prepare() and close() are called on the main thread.
// send(slot) is called from any thread (the main thread, the rate scheduler, or the completion of
// the slot's previous request), never twice for one slot before its completion. Completions are
// reported on the transport's threads through the CompletionSink given to prepare().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "beamline/core/datatype.h"
#include "beamline/core/status.h"
#include "beamline/perf/load_generator.h"
#include "beamline/perf/measurement.h"

namespace beamline::perf {

// One input or output as the server describes it. `dims` include the batch dimension as -1 when
// the model batches (`max_batch_size` > 0), as ModelMetadata reports it.
struct TensorSpec {
  std::string name;
  DataType datatype = DataType::kInvalid;
  std::vector<int64_t> dims;
};

struct ModelSpec {
  std::string name;
  std::string version;
  std::optional<int64_t> max_batch_size;  // absent when the server has no ModelConfig
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;
};

// An input with its final shape and data, shared by every slot (read-only once built).
struct InputTensor {
  std::string name;
  DataType datatype = DataType::kInvalid;
  std::vector<int64_t> shape;
  std::string bytes;  // raw wire bytes (BYTES: 4-byte length-prefixed elements)
  std::string json;   // the data as a JSON array, for HTTP JSON requests
};

struct RequestTemplate {
  std::string model;
  std::string version;
  std::vector<InputTensor> inputs;
  std::vector<std::string> outputs;  // requested by name
};

// Receives completions, on the transport's threads.
class CompletionSink {
 public:
  virtual ~CompletionSink() = default;
  // `error` is empty on success. `receive_ns`: client time spent reading/checking the response.
  virtual void onComplete(size_t slot, const std::string& error, uint64_t receive_ns) = 0;
  // Client time spent encoding and handing over one request (may run before or after its
  // completion).
  virtual void onSent(uint64_t send_ns) = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual Result<ModelSpec> describeModel(const std::string& model, const std::string& version) = 0;
  // NOT_FOUND / UNSUPPORTED when the server keeps none for this model.
  virtual Result<ServerStats> statistics(const std::string& model, const std::string& version) = 0;
  // Opens `slots` slots for `request` (connections, streams, shared-memory regions).
  // `sink` must outlive close().
  virtual Status prepare(const RequestTemplate& request, size_t slots, CompletionSink* sink) = 0;
  virtual void send(size_t slot) = 0;
  // Waits for slots to finish (the caller has drained them), closes streams and connections,
  // unregisters shared memory.
  virtual void close() = 0;
};

std::unique_ptr<Transport> makeGrpcTransport(const PerfOptions& options);
std::unique_ptr<Transport> makeHttpTransport(const PerfOptions& options);

}  // namespace beamline::perf
