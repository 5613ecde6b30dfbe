// EventClient: the per-module client of an event-processing framework (what SonicTriton's
// TritonClient, NuSONIC's and AthenaTriton's tools are), framework-neutral.
//
// One EventClient per module and stream: it serves one event at a time. Per event:
//
//   client.setBatchSize(n);                        // n objects ("entries"); 0 = nothing to send
//   auto in = client.input("INPUT__0").value();
//   in.setShape(shape);                            // variable (-1) dims, if any
//   std::span<float> x = in.entry<float>(i).value();  // write entry i in place, for each i
//   client.dispatch([&](Status s) { ... });        // ExternalWork: acquire() ends here
//   ... in the callback / produce():
//   std::span<const float> y = client.output("OUTPUT__0")->entry<float>(i).value();
//   client.reset();                                // end of the event
//
// Batch size and outer dimension. For a model with max_batch_size > 0 the entries of an event
// are rows of the batch dimension: they share one shape and go as one request ("rectangular",
// Triton's own batching), split into several requests when n exceeds max_batch_size. For a model
// with max_batch_size 0 there is no batch dimension; its first dim is the model's "outer
// dimension", set with setShape(), and each entry is one request.
// Ragged entries: giving one entry a shape different from the others (setShape(shape, entry)),
// or setBatchMode(kRagged), sends one request per entry, all in the same call; results come back
// per entry as for rectangular batches.
//
// No extra copies: entry spans point into the buffers that are sent (the request message's raw
// input, or the shared-memory region when the server is on this host); output spans point into
// the response (or the output region). They are valid until reset(). Buffers, requests and
// regions are reused from one event to the next.
//
// Modes (Config::mode): Sync blocks the caller in dispatch() and runs the callback on it; Async
// returns at once and runs the callback on a gRPC callback thread (or, in-process, on the model's
// instance thread); PseudoAsync returns at once and runs the blocking call on the registry's
// small shared pool, which also runs the callback. None makes a thread per client or call.
// Retries follow the RetryPolicy: the same server, then other servers, then the fallback.
//
// Threads: not thread-safe. The per-event methods are called by one thread at a time (the
// framework's stream), never while a call is in flight except output reads inside the callback.
// The destructor waits for a call in flight.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "beamline/client/endpoint.h"
#include "beamline/client/grpc_client.h"
#include "beamline/client/logger.h"
#include "beamline/client/server_registry.h"
#include "beamline/core/datatype.h"
#include "beamline/core/status.h"

namespace beamline::client {

enum class CallMode { kSync, kAsync, kPseudoAsync };
// "Sync" | "Async" | "PseudoAsync" (any case); "" is PseudoAsync, as in SonicTriton.
Result<CallMode> parseCallMode(std::string_view text);
std::string_view callModeName(CallMode mode);

enum class BatchMode { kRectangular, kRagged };

// What a failed call tries next, in this order. Only failures that another try can cure are
// retried (unreachable server, deadline, server-side UNAVAILABLE/INTERNAL/UNKNOWN); a request the
// server rejects as invalid is not.
struct RetryPolicy {
  int same_server = 1;    // extra tries on the server that failed
  int other_servers = 2;  // then tries on other servers that serve the model, best first
  bool fallback = true;   // then one try on the registry's local fallback server
};

// Timing of the last call, from dispatch() to the callback.
struct CallStatistics {
  std::string server;    // where it finally went
  size_t requests = 0;   // wire requests (1, one per entry when ragged, or per max_batch_size)
  size_t attempts = 0;   // 1 + retries
  bool shared_memory = false;  // inputs went through shared memory
  // total = dispatch to completion; send = building and serializing requests; receive = parsing
  // responses; wait = the rest (network and server).
  std::chrono::nanoseconds total{0}, send{0}, wait{0}, receive{0};
  // Verbose clients: the server's ModelStatistics delta over the call (includes other clients'
  // requests to the same model in that time, as in SonicTriton).
  std::optional<ServerSideStatistics> server_side;
};

template <typename T>
constexpr DataType dataTypeFor() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, bool>) return DataType::kBool;
  else if constexpr (std::is_same_v<U, uint8_t>) return DataType::kUint8;
  else if constexpr (std::is_same_v<U, uint16_t>) return DataType::kUint16;
  else if constexpr (std::is_same_v<U, uint32_t>) return DataType::kUint32;
  else if constexpr (std::is_same_v<U, uint64_t>) return DataType::kUint64;
  else if constexpr (std::is_same_v<U, int8_t>) return DataType::kInt8;
  else if constexpr (std::is_same_v<U, int16_t>) return DataType::kInt16;
  else if constexpr (std::is_same_v<U, int32_t>) return DataType::kInt32;
  else if constexpr (std::is_same_v<U, int64_t>) return DataType::kInt64;
  else if constexpr (std::is_same_v<U, float>) return DataType::kFp32;
  else if constexpr (std::is_same_v<U, double>) return DataType::kFp64;
  else return DataType::kInvalid;  // std::byte and others: any type, checked by size only
}

class EventClient;
struct EventClientState;

// One input of the current event: a cheap handle, valid while its EventClient lives.
class EventInput {
 public:
  const TensorInfo& info() const;
  // Sets the shape of every entry (the model's dims with the -1 filled in). Changing a fixed
  // dim, the rank, or any shape after an entry was written is INVALID_ARG.
  Status setShape(std::span<const int64_t> shape);
  Status setShape(std::initializer_list<int64_t> shape) { return setShape(std::span(shape)); }
  // Sets the shape of one entry; a shape different from the other entries' makes the event
  // ragged (unless it is a batch of one).
  Status setShape(std::span<const int64_t> shape, size_t entry);
  // The shape of one entry.
  std::span<const int64_t> shape(size_t entry = 0) const;

  // The bytes of entry `entry`, to be written in place. The first call of an event fixes the
  // shapes and the batch size (the requests are laid out then).
  Result<std::span<std::byte>> entryBytes(size_t entry);
  template <typename T>
  Result<std::span<T>> entry(size_t entry) {
    BL_RETURN_IF_ERROR(checkType(sizeof(T), dataTypeFor<T>()));
    BL_ASSIGN_OR_RETURN(std::span<std::byte> bytes, entryBytes(entry));
    return std::span<T>(reinterpret_cast<T*>(bytes.data()), bytes.size() / sizeof(T));
  }
  // Copies `values` into entry `entry` (their number must match its shape).
  template <typename T>
  Status setEntry(size_t entry, std::span<const T> values) {
    BL_ASSIGN_OR_RETURN(std::span<T> out, this->entry<T>(entry));
    if (out.size() != values.size()) return sizeMismatch(entry, values.size(), out.size());
    std::copy(values.begin(), values.end(), out.begin());
    return Status::ok();
  }

 private:
  friend class EventClient;
  EventInput(EventClientState* state, size_t index) : state_(state), index_(index) {}
  Status checkType(size_t element_size, DataType datatype) const;
  Status sizeMismatch(size_t entry, size_t given, size_t expected) const;

  EventClientState* state_;
  size_t index_;
};

// One output of the last completed call: a cheap handle, valid until reset().
class EventOutput {
 public:
  const TensorInfo& info() const;
  // The shape of one entry as the server returned it (without the batch dimension).
  Result<std::span<const int64_t>> shape(size_t entry) const;
  // Read-only views over the response (or the output region).
  Result<std::span<const std::byte>> entryBytes(size_t entry) const;
  template <typename T>
  Result<std::span<const T>> entry(size_t entry) const {
    BL_RETURN_IF_ERROR(checkType(sizeof(T), dataTypeFor<T>()));
    BL_ASSIGN_OR_RETURN(std::span<const std::byte> bytes, entryBytes(entry));
    return std::span<const T>(reinterpret_cast<const T*>(bytes.data()), bytes.size() / sizeof(T));
  }

 private:
  friend class EventClient;
  EventOutput(const EventClientState* state, size_t index) : state_(state), index_(index) {}
  Status checkType(size_t element_size, DataType datatype) const;

  const EventClientState* state_;
  size_t index_;
};

class EventClient {
 public:
  struct Config {
    std::string model_name;
    std::string model_version;  // empty: the server's version policy
    CallMode mode = CallMode::kAsync;
    // Deadline of each request of a call, per try; 0: none. Any std::chrono unit converts
    // (std::chrono::milliseconds(300) means 300 ms).
    std::chrono::microseconds timeout{0};
    RetryPolicy retry;
    Compression compression = Compression::kNone;
    // Outputs to ask for; empty: all of them. Unknown names fail create().
    std::vector<std::string> outputs;
    // Use shared memory when the chosen server runs on this host (and accepts it).
    bool use_shared_memory = true;
    // Read the model's server-side statistics before and after every call (two RPCs) and report
    // the difference, in lastCall() and in the log.
    bool verbose = false;
    // Server (name or address) to use while it is healthy and serves the model.
    std::string preferred_server;
  };

  // Called once per dispatch(): on the caller (Sync, batch size 0, or a failure before sending),
  // a gRPC callback or model instance thread (Async), or a pool thread (PseudoAsync). It may read
  // the outputs; it should hand the rest of the work to the framework and return quickly.
  using DoneCallback = std::function<void(Status status)>;

  // Resolves the model on the registry's servers (starting the fallback server when none serves
  // it) and reads its metadata. Blocking.
  static Result<std::unique_ptr<EventClient>> create(Config config,
                                                     std::shared_ptr<ServerRegistry> registry,
                                                     Logger logger = {});
  ~EventClient();
  EventClient(const EventClient&) = delete;
  EventClient& operator=(const EventClient&) = delete;

  const Config& config() const;
  const ModelInfo& model() const;
  // max_batch_size > 0: entries are rows of a batch dimension.
  bool hasBatchDimension() const { return model().max_batch_size > 0; }

  // ---- per event (see the file comment) ----
  Status setBatchSize(size_t entries);
  size_t batchSize() const;
  // kRagged: one request per entry, until set back. kRectangular (the default) turns ragged by
  // itself when entries get different shapes, for that event only.
  void setBatchMode(BatchMode mode);
  BatchMode batchMode() const;

  size_t inputCount() const;
  EventInput input(size_t index);
  Result<EventInput> input(std::string_view name);
  size_t outputCount() const;
  EventOutput output(size_t index) const;
  Result<EventOutput> output(std::string_view name) const;

  // Sends the event's requests and calls `done` once with the outcome (see DoneCallback). With
  // batch size 0 it calls `done(OK)` at once. Entries not written are sent as they are.
  void dispatch(DoneCallback done);
  // dispatch() and wait for the outcome on this thread, whatever the mode.
  Status call();
  // Timing of the last completed call.
  const CallStatistics& lastCall() const;

  // Ends the event: batch size 0, shapes back to the model's dims, outputs released. Buffers and
  // regions are kept for the next event.
  void reset();

 private:
  explicit EventClient(std::unique_ptr<EventClientState> state);
  std::unique_ptr<EventClientState> state_;
};

}  // namespace beamline::client
