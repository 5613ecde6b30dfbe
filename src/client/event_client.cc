// EventClient: see include/beamline/client/event_client.h.
//
// Inside: an event is laid out (lazily, at the first entry access or at dispatch) as `wires`:
// wire requests, one per max_batch_size rows of a rectangular batch, or one per entry when the
// event is ragged or the model has no batch dimension. Each wire is an InferRequest (whose raw
// input buffers, or slots of the client's shared-memory region, the entries are written into) and
// an InferResult. Wires, their buffers and the regions are kept from one event to the next; when
// the layout of an event equals the previous one, nothing is rebuilt.
//
// A call sends every wire not yet answered; the last completion decides: done, retry (the same
// wires again, elsewhere when the policy says so), or fail. Sync and PseudoAsync wait for each
// attempt on their own thread (the caller, or a pool thread) and retry there; Async retries on the
// registry's pool, because choosing another server or starting the fallback may block.
#include "beamline/client/event_client.h"

#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include "beamline/client/shared_memory.h"

namespace beamline::client {

using Clock = std::chrono::steady_clock;

namespace {

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

constexpr size_t kAlignment = 64;
size_t alignUp(size_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }

int64_t product(std::span<const int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

bool concrete(std::span<const int64_t> shape) {
  for (int64_t d : shape) {
    if (d < 0) return false;
  }
  return true;
}

std::string lowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool retryableOnSameServer(StatusCode code) {
  return code == StatusCode::kUnavailable || code == StatusCode::kUnknown ||
         code == StatusCode::kCancelled;
}

bool retryableElsewhere(StatusCode code) {
  return retryableOnSameServer(code) || code == StatusCode::kInternal ||
         code == StatusCode::kNotFound;
}

std::atomic<uint64_t> next_client_id{0};

}  // namespace

Result<CallMode> parseCallMode(std::string_view text) {
  const std::string mode = lowercase(text);
  if (mode == "sync") return CallMode::kSync;
  if (mode == "async") return CallMode::kAsync;
  if (mode.empty() || mode == "pseudoasync") return CallMode::kPseudoAsync;
  return invalidArg("unknown call mode " + quoted(text) + " (Sync, Async or PseudoAsync)");
}

std::string_view callModeName(CallMode mode) {
  switch (mode) {
    case CallMode::kSync:
      return "Sync";
    case CallMode::kAsync:
      return "Async";
    case CallMode::kPseudoAsync:
      return "PseudoAsync";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// State

struct EventClientState {
  struct Input {
    TensorInfo info;
    size_t element_size = 0;
    Shape shape;                       // every entry's shape (rectangular)
    bool ragged = false;               // entries have their own shapes, in entry_shapes
    std::vector<int64_t> entry_shapes;  // batch x rank, when ragged
  };

  // One wire request of the event.
  struct Wire {
    InferRequest request;
    InferResult result;
    size_t first = 0;  // first entry
    size_t count = 0;  // entries
    std::vector<std::byte*> input_data;  // per input: where its bytes start (raw buffer or region)
    std::vector<size_t> input_bytes;     // per input: bytes in this wire
    bool shm_inputs = false;
    bool shm_outputs = false;
    std::vector<TensorView> outputs;  // per requested output, once the call completed
    // The current call.
    bool ok = false;
    bool unreachable = false;
    Status status;
    Clock::time_point started;
    std::chrono::nanoseconds send{0}, receive{0};
  };

  // A shared-memory region of this client and the servers it is registered with.
  struct Region {
    std::unique_ptr<SharedMemoryRegion> memory;
    std::string name;
    std::vector<size_t> registered_on;  // server indices
  };

  EventClient::Config config;
  std::shared_ptr<ServerRegistry> registry;
  Logger logger;
  ModelInfo model;
  uint64_t id = 0;
  std::vector<Input> inputs;
  std::vector<TensorInfo> outputs;  // requested outputs, in request order

  // Event.
  size_t batch = 0;
  bool forced_ragged = false;
  bool laid_out = false;
  bool per_entry = false;  // this layout: one wire per entry
  std::vector<std::unique_ptr<Wire>> wires;
  size_t wire_count = 0;
  std::vector<int64_t> layout_key, next_key;  // reuse check
  Shape scratch_shape;
  std::vector<size_t> to_send;

  // Where the event goes.
  std::optional<ServerRegistry::Selection> selection;

  // Shared memory.
  Region shm_in, shm_out;
  uint64_t shm_generation = 0;
  std::vector<size_t> shm_refused;  // servers that would not take our regions

  // The call in flight.
  EventClient::DoneCallback user_done;
  std::atomic<size_t> pending{0};
  std::mutex call_mutex;  // guards in_flight, attempt_done
  std::condition_variable call_wake;
  bool in_flight = false;
  bool attempt_done = false;
  Status call_status;
  bool results_valid = false;
  int same_tries = 0;
  int other_tries = 0;
  size_t attempts = 0;
  Clock::time_point call_start;
  std::optional<ServerSideStatistics> stats_before;
  CallStatistics last;

  bool ragged() const {
    if (forced_ragged) return true;
    for (const auto& input : inputs) {
      if (input.ragged) return true;
    }
    return false;
  }

  std::span<const int64_t> entryShape(size_t k, size_t entry) const {
    const Input& input = inputs[k];
    if (!input.ragged) return input.shape;
    const size_t rank = input.shape.size();
    return std::span<const int64_t>(input.entry_shapes).subspan(entry * rank, rank);
  }

  Status checkShape(const Input& input, std::span<const int64_t> shape) const {
    const auto& dims = input.info.dims;
    if (shape.size() != dims.size()) {
      return invalidArg("input " + quoted(input.info.name) + ": shape " + shapeToString(shape) +
                        " has rank " + std::to_string(shape.size()) + ", the model's dims " +
                        shapeToString(dims) + " have rank " + std::to_string(dims.size()));
    }
    for (size_t i = 0; i < dims.size(); ++i) {
      if (shape[i] < 0) {
        return invalidArg("input " + quoted(input.info.name) + ": negative dimension in " +
                          shapeToString(shape));
      }
      if (dims[i] >= 0 && shape[i] != dims[i]) {
        return invalidArg("input " + quoted(input.info.name) + ": dimension " + std::to_string(i) +
                          " is fixed to " + std::to_string(dims[i]) + " by the model, not " +
                          std::to_string(shape[i]));
      }
    }
    if (laid_out) {
      return invalidArg("input " + quoted(input.info.name) +
                        ": shapes are fixed once an entry was written; reset() first");
    }
    return Status::ok();
  }

  // The wire shape of input k in wire w (with the batch dimension where the model has one).
  void wireShape(size_t k, const Wire& w, Shape& out) const {
    out.clear();
    if (model.max_batch_size > 0) out.push_back(per_entry ? 1 : static_cast<int64_t>(w.count));
    const auto shape = entryShape(k, w.first);
    out.insert(out.end(), shape.begin(), shape.end());
  }

  bool refused(size_t server) const {
    return std::find(shm_refused.begin(), shm_refused.end(), server) != shm_refused.end();
  }

  Status chooseServer() {
    auto chosen = registry->select(config.model_name, config.preferred_server);
    if (!chosen.isOk()) {
      // No configured server serves the model: the fallback is the embedded default.
      auto fallback = registry->fallback(config.model_name);
      if (!fallback.isOk()) {
        return Status(chosen.status().code(),
                      chosen.status().message() + "; fallback: " + fallback.status().message());
      }
      chosen = std::move(fallback);
    }
    selection = std::move(chosen).value();
    return Status::ok();
  }

  // Makes `region` at least `bytes` large and registered on `server`.
  Status ensureRegion(Region& region, size_t bytes, std::string_view tag,
                      const ServerRegistry::Selection& server) {
    if (!region.memory || region.memory->size() < bytes) {
      releaseRegion(region);
      const size_t grown = region.memory ? region.memory->size() + region.memory->size() / 2 : 0;
      const size_t size = alignUp(std::max(bytes, grown));
      BL_ASSIGN_OR_RETURN(region.memory,
                          SharedMemoryRegion::create(makeSharedMemoryKey(tag), size));
      region.name = "beamline_" + std::to_string(::getpid()) + "_" + std::to_string(id) + "_" +
                    std::string(tag) + "_" + std::to_string(++shm_generation);
    }
    if (std::find(region.registered_on.begin(), region.registered_on.end(), server.index) ==
        region.registered_on.end()) {
      BL_RETURN_IF_ERROR(server.endpoint->registerSystemSharedMemory(
          region.name, region.memory->key(), 0, region.memory->size()));
      region.registered_on.push_back(server.index);
    }
    return Status::ok();
  }

  // Unregisters the region from every server that has it (best effort) and removes it.
  void releaseRegion(Region& region) {
    if (!region.memory) return;
    const auto states = region.registered_on.empty() ? std::vector<ServerRegistry::ServerState>()
                                                     : registry->servers();
    for (size_t server : region.registered_on) {
      // A server that cannot be reached has nothing to unregister (and would only delay us).
      if (server < states.size() && !states[server].healthy) continue;
      auto endpoint = serverEndpoint(server);
      if (endpoint) {
        Status status = endpoint->unregisterSystemSharedMemory(region.name);
        if (!status.isOk()) {
          log(logger, LogLevel::kDebug, "unregistering " + region.name + ": " + status.message());
        }
      }
    }
    region.registered_on.clear();
    region.memory.reset();
  }

  // Endpoints of servers we registered with: kept from the selections we made.
  std::vector<std::pair<size_t, std::shared_ptr<const Endpoint>>> known_endpoints;
  std::shared_ptr<const Endpoint> serverEndpoint(size_t index) const {
    for (const auto& [i, endpoint] : known_endpoints) {
      if (i == index) return endpoint;
    }
    return nullptr;
  }
  void remember(const ServerRegistry::Selection& server) {
    if (!serverEndpoint(server.index)) known_endpoints.emplace_back(server.index, server.endpoint);
  }

  // Uses shared memory for `server` when allowed and possible; false (and remembered) otherwise.
  bool tryShm(const ServerRegistry::Selection& server, size_t in_bytes, size_t out_bytes) {
    if (!config.use_shared_memory || !server.endpoint->sameHost() || refused(server.index)) {
      return false;
    }
    remember(server);
    Status status = ensureRegion(shm_in, in_bytes, "in", server);
    if (status.isOk() && out_bytes > 0) status = ensureRegion(shm_out, out_bytes, "out", server);
    if (!status.isOk()) {
      shm_refused.push_back(server.index);
      // Servers refuse client shared memory unless started to allow it (Triton's default): a
      // normal configuration, not a fault.
      log(logger, LogLevel::kInfo,
          "model " + quoted(model.name) + ": shared memory with " + server.endpoint->name() +
              " not possible, sending tensors over gRPC: " + status.message());
      return false;
    }
    return true;
  }

  // Output slot sizes: bytes of output j in wire w when known before the call, else 0.
  size_t fixedOutputBytes(size_t j, const Wire& w) const {
    const TensorInfo& out = outputs[j];
    if (out.datatype == DataType::kBytes || !concrete(out.dims)) return 0;
    int64_t rows = 1;
    if (model.max_batch_size > 0 && !per_entry) rows = static_cast<int64_t>(w.count);
    return static_cast<size_t>(rows * product(out.dims)) * dataTypeByteSize(out.datatype);
  }

  Status layOut() {
    if (laid_out) return Status::ok();
    if (batch == 0) return invalidArg("the batch size is 0: nothing to lay out");
    for (size_t k = 0; k < inputs.size(); ++k) {
      const size_t entries = inputs[k].ragged ? batch : 1;
      for (size_t e = 0; e < entries; ++e) {
        const auto shape = entryShape(k, e);
        if (!concrete(shape)) {
          return invalidArg("input " + quoted(inputs[k].info.name) + ": shape " +
                            shapeToString(shape) + (inputs[k].ragged ? " of entry " + std::to_string(e) : "") +
                            " has variable dimensions left; set them with setShape()");
        }
      }
    }
    per_entry = ragged() || model.max_batch_size <= 0;
    const size_t max_rows = static_cast<size_t>(std::max<int64_t>(1, model.max_batch_size));
    const size_t count = per_entry ? batch : (batch + max_rows - 1) / max_rows;
    while (wires.size() < count) {
      auto wire = std::make_unique<Wire>();
      wire->input_data.resize(inputs.size());
      wire->input_bytes.resize(inputs.size());
      wire->outputs.resize(outputs.size());
      wires.push_back(std::move(wire));
    }
    wire_count = count;
    for (size_t r = 0; r < count; ++r) {
      Wire& w = *wires[r];
      w.first = per_entry ? r : r * max_rows;
      w.count = per_entry ? 1 : std::min(max_rows, batch - w.first);
      for (size_t k = 0; k < inputs.size(); ++k) {
        w.input_bytes[k] = static_cast<size_t>(product(entryShape(k, w.first))) *
                           inputs[k].element_size * (per_entry ? 1 : w.count);
      }
    }
    BL_RETURN_IF_ERROR(chooseServer());
    size_t in_bytes = 0, out_bytes = 0;
    for (size_t r = 0; r < count; ++r) {
      for (size_t k = 0; k < inputs.size(); ++k) in_bytes += alignUp(wires[r]->input_bytes[k]);
      for (size_t j = 0; j < outputs.size(); ++j) out_bytes += alignUp(fixedOutputBytes(j, *wires[r]));
    }
    const bool shm = in_bytes > 0 && tryShm(*selection, in_bytes, out_bytes);

    // Same layout as the last event (and the wires untouched since): keep everything.
    next_key.clear();
    next_key.insert(next_key.end(), {static_cast<int64_t>(batch), per_entry ? 1 : 0,
                                     static_cast<int64_t>(selection->index), shm ? 1 : 0,
                                     static_cast<int64_t>(shm_generation)});
    for (size_t k = 0; k < inputs.size(); ++k) {
      if (inputs[k].ragged) {
        next_key.insert(next_key.end(), inputs[k].entry_shapes.begin(), inputs[k].entry_shapes.end());
      } else {
        next_key.insert(next_key.end(), inputs[k].shape.begin(), inputs[k].shape.end());
      }
      next_key.push_back(-1);
    }
    if (next_key != layout_key) {
      size_t in_offset = 0, out_offset = 0;
      for (size_t r = 0; r < count; ++r) {
        BL_RETURN_IF_ERROR(buildWire(*wires[r], shm, in_offset, out_offset));
      }
      layout_key.swap(next_key);
    } else {
      // The entries are about to be rewritten in place: the transport must be done with them.
      for (size_t r = 0; r < count; ++r) wires[r]->request.waitUntilUnpinned();
    }
    laid_out = true;
    return Status::ok();
  }

  Status buildWire(Wire& w, bool shm, size_t& in_offset, size_t& out_offset) {
    InferRequest& request = w.request;
    request.reset();
    request.setModel(model.name, config.model_version);
    w.shm_inputs = shm;
    for (size_t k = 0; k < inputs.size(); ++k) {
      wireShape(k, w, scratch_shape);
      const size_t bytes = w.input_bytes[k];
      if (shm) {
        request.addSharedMemoryInput(inputs[k].info.name, inputs[k].info.datatype, scratch_shape,
                                     shm_in.name, in_offset, bytes);
        w.input_data[k] = shm_in.memory->data() + in_offset;
        in_offset += alignUp(bytes);
      } else {
        const size_t index = request.addInput(inputs[k].info.name, inputs[k].info.datatype,
                                              scratch_shape);
        BL_ASSIGN_OR_RETURN(std::span<std::byte> data, request.mutableInputData(index, bytes));
        w.input_data[k] = data.data();
      }
    }
    w.result.clearSharedMemoryOutputs();
    w.shm_outputs = false;
    for (size_t j = 0; j < outputs.size(); ++j) {
      const size_t index = request.requestOutput(outputs[j].name);
      const size_t bytes = shm && shm_out.memory ? fixedOutputBytes(j, w) : 0;
      if (bytes > 0) {
        BL_RETURN_IF_ERROR(request.setOutputSharedMemory(index, shm_out.name, out_offset, bytes));
        w.result.bindSharedMemoryOutput(outputs[j].name,
                                        std::span<const std::byte>(shm_out.memory->data() + out_offset, bytes));
        w.shm_outputs = true;
        out_offset += alignUp(bytes);
      }
    }
    return Status::ok();
  }

  // After a switch of server: a wire whose tensors were in our regions goes over gRPC when the new
  // server cannot map them (one copy out of the region, on the failure path only).
  Status rewireForServer(Wire& w, const ServerRegistry::Selection& server) {
    if (!w.shm_inputs && !w.shm_outputs) return Status::ok();
    if (config.use_shared_memory && server.endpoint->sameHost() && !refused(server.index)) {
      remember(server);
      Status status = ensureRegion(shm_in, shm_in.memory->size(), "in", server);
      if (status.isOk() && shm_out.memory) {
        status = ensureRegion(shm_out, shm_out.memory->size(), "out", server);
      }
      if (status.isOk()) return Status::ok();
      shm_refused.push_back(server.index);
    }
    InferRequest& request = w.request;
    request.reset();
    request.setModel(model.name, config.model_version);
    for (size_t k = 0; k < inputs.size(); ++k) {
      wireShape(k, w, scratch_shape);
      const size_t index =
          request.addInput(inputs[k].info.name, inputs[k].info.datatype, scratch_shape);
      BL_ASSIGN_OR_RETURN(std::span<std::byte> data,
                          request.mutableInputData(index, w.input_bytes[k]));
      if (w.input_bytes[k] > 0) std::memcpy(data.data(), w.input_data[k], w.input_bytes[k]);
      w.input_data[k] = data.data();
    }
    for (const auto& output : outputs) request.requestOutput(output.name);
    w.result.clearSharedMemoryOutputs();
    w.shm_inputs = w.shm_outputs = false;
    layout_key.clear();  // the next event lays out afresh
    return Status::ok();
  }

  Result<std::span<std::byte>> entryBytes(size_t k, size_t entry) {
    if (entry >= batch) {
      return invalidArg("input " + quoted(inputs[k].info.name) + ": entry " + std::to_string(entry) +
                        " out of range (batch size " + std::to_string(batch) + ")");
    }
    {
      std::lock_guard lock(call_mutex);
      if (in_flight) return invalidArg("entries cannot be written while a call is in flight");
    }
    BL_RETURN_IF_ERROR(layOut());
    if (per_entry) {
      Wire& w = *wires[entry];
      return std::span<std::byte>(w.input_data[k], w.input_bytes[k]);
    }
    const size_t rows = static_cast<size_t>(model.max_batch_size);
    Wire& w = *wires[entry / rows];
    const size_t entry_bytes = w.input_bytes[k] / w.count;
    return std::span<std::byte>(w.input_data[k] + (entry - w.first) * entry_bytes, entry_bytes);
  }

  // ---- calls ----

  void startAttempt() {
    to_send.clear();
    for (size_t i = 0; i < wire_count; ++i) {
      if (!wires[i]->ok) to_send.push_back(i);
    }
    const size_t n = to_send.size();
    pending.store(n, std::memory_order_release);
    const ServerRegistry::Selection server = *selection;
    const CallOptions options = callOptions();
    // Nothing of this object's call state may be touched after the last infer(): its completion
    // may already be running on another thread.
    for (size_t k = 0; k < n; ++k) {
      const size_t i = to_send[k];
      Wire& w = *wires[i];
      registry->callStarted(server.index, model.name);
      w.started = Clock::now();
      server.endpoint->infer(w.request, w.result, options,
                             [this, i, index = server.index](Status status, const CallReport& report) {
                               onWireDone(i, index, std::move(status), report);
                             });
    }
  }

  CallOptions callOptions() const {
    CallOptions options;
    options.timeout = config.timeout;
    options.compression = config.compression;
    return options;
  }

  void recordWire(size_t i, size_t server_index, Status status, const CallReport& report) {
    Wire& w = *wires[i];
    registry->callFinished(server_index, model.name, status, report, Clock::now() - w.started);
    w.send += report.send;
    w.receive += report.receive;
    w.ok = status.isOk();
    w.unreachable = report.unreachable;
    w.status = std::move(status);
  }

  // One wire left to send, on a thread that waits anyway: the blocking call, no hand-over.
  void sendBlocking(size_t i) {
    const ServerRegistry::Selection server = *selection;
    Wire& w = *wires[i];
    registry->callStarted(server.index, model.name);
    w.started = Clock::now();
    CallReport report;
    Status status = server.endpoint->inferBlocking(w.request, w.result, callOptions(), report);
    recordWire(i, server.index, std::move(status), report);
  }

  void onWireDone(size_t i, size_t server_index, Status status, const CallReport& report) {
    recordWire(i, server_index, std::move(status), report);
    if (pending.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    // The last completion of the attempt.
    if (config.mode == CallMode::kAsync) {
      onAsyncAttemptDone();
    } else {
      std::lock_guard lock(call_mutex);
      attempt_done = true;
      call_wake.notify_all();
    }
  }

  Status firstFailure() const {
    for (size_t i = 0; i < wire_count; ++i) {
      if (!wires[i]->ok) {
        if (wire_count == 1) return wires[i]->status;
        return wires[i]->status.withContext("request " + std::to_string(i + 1) + " of " +
                                            std::to_string(wire_count));
      }
    }
    return Status::ok();
  }

  // A server that could not be reached is not tried again at once: the registry probes it.
  bool sameServerWorthTrying(const Status& failure) const {
    if (!retryableOnSameServer(failure.code()) || same_tries >= config.retry.same_server) {
      return false;
    }
    for (size_t i = 0; i < wire_count; ++i) {
      if (!wires[i]->ok && wires[i]->unreachable) return false;
    }
    return true;
  }

  bool mayRetry(const Status& failure) const {
    const auto& policy = config.retry;
    if (sameServerWorthTrying(failure)) return true;
    if (!retryableElsewhere(failure.code())) return false;
    return other_tries < policy.other_servers || (policy.fallback && !selection->fallback);
  }

  // Chooses where the next attempt goes; false when the policy is exhausted. May block.
  bool prepareRetry(const Status& failure) {
    const auto& policy = config.retry;
    const size_t current = selection->index;
    if (sameServerWorthTrying(failure)) {
      ++same_tries;
      log(logger, LogLevel::kInfo, "model " + quoted(model.name) + ": retrying on " +
                                       selection->endpoint->name() + " after: " + failure.message());
      return true;
    }
    if (!retryableElsewhere(failure.code())) return false;
    while (other_tries < policy.other_servers) {
      ++other_tries;
      auto next = registry->select(model.name, "", current);
      if (!next.isOk() || next->index == current || next->fallback) break;
      if (switchTo(*next, failure)) return true;
    }
    if (policy.fallback && !selection->fallback) {
      auto fallback = registry->fallback(model.name);
      if (fallback.isOk() && fallback->index != current) {
        if (switchTo(*fallback, failure)) return true;
      } else if (!fallback.isOk()) {
        log(logger, LogLevel::kInfo, "model " + quoted(model.name) + ": no fallback: " +
                                         fallback.status().message());
      }
    }
    return false;
  }

  bool switchTo(const ServerRegistry::Selection& next, const Status& failure) {
    log(logger, LogLevel::kWarning,
        "model " + quoted(model.name) + ": moving to " + next.endpoint->name() + " after: " +
            failure.message());
    selection = next;
    for (size_t i = 0; i < wire_count; ++i) {
      if (wires[i]->ok) continue;
      Status rewired = rewireForServer(*wires[i], next);
      if (!rewired.isOk()) {
        log(logger, LogLevel::kError, "model " + quoted(model.name) + ": " + rewired.message());
        return false;
      }
    }
    return true;
  }

  void onAsyncAttemptDone() {
    Status failure = firstFailure();
    if (failure.isOk() || !mayRetry(failure)) {
      completeCall(std::move(failure));
      if (config.verbose) {
        registry->post([this] { finishUser(); });
      } else {
        finishUser();
      }
      return;
    }
    registry->post([this, failure] {
      if (prepareRetry(failure)) {
        ++attempts;
        startAttempt();
      } else {
        completeCall(failure);
        finishUser();
      }
    });
  }

  // Sync and PseudoAsync: the whole call on this thread.
  void runBlocking() {
    for (;;) {
      size_t left = 0, last_left = 0;
      for (size_t i = 0; i < wire_count; ++i) {
        if (!wires[i]->ok) {
          ++left;
          last_left = i;
        }
      }
      if (left == 1) {
        sendBlocking(last_left);
      } else {
        {
          std::lock_guard lock(call_mutex);
          attempt_done = false;
        }
        startAttempt();
        std::unique_lock lock(call_mutex);
        call_wake.wait(lock, [this] { return attempt_done; });
      }
      Status failure = firstFailure();
      if (failure.isOk() || !prepareRetry(failure)) {
        completeCall(std::move(failure));
        return;
      }
      ++attempts;
    }
  }

  void completeCall(Status status) {
    if (status.isOk()) {
      for (size_t i = 0; i < wire_count && status.isOk(); ++i) {
        Wire& w = *wires[i];
        for (size_t j = 0; j < outputs.size(); ++j) {
          bool found = false;
          for (size_t o = 0; o < w.result.outputCount(); ++o) {
            auto view = w.result.tensor(o);
            if (view.isOk() && view->name == outputs[j].name) {
              w.outputs[j] = *view;
              found = true;
              break;
            }
          }
          if (!found) {
            status = internalError("model " + quoted(model.name) + ": the response has no output " +
                                   quoted(outputs[j].name));
            break;
          }
        }
      }
    }
    if (!status.isOk() && attempts > 1) {
      status = status.withContext("after " + std::to_string(attempts) + " attempts");
    }
    call_status = std::move(status);
    results_valid = call_status.isOk();
    last.server = selection->endpoint->name();
    last.requests = wire_count;
    last.attempts = attempts;
    last.shared_memory = wire_count > 0 && wires[0]->shm_inputs;
    for (size_t i = 0; i < wire_count; ++i) {
      last.send += wires[i]->send;
      last.receive += wires[i]->receive;
    }
  }

  // The callback, after the optional statistics read. On the thread that completed the call.
  void finishUser() {
    if (config.verbose && call_status.isOk()) {
      auto after = selection->endpoint->statistics(model.name, config.model_version);
      if (after.isOk() && stats_before) {
        last.server_side = *after - *stats_before;
        const auto& d = *last.server_side;
        const auto avg = [&](std::chrono::nanoseconds total) {
          return d.success_count == 0 ? 0 : total.count() / 1000 / static_cast<int64_t>(d.success_count);
        };
        const auto overhead = d.success - d.queue - d.compute_input - d.compute_infer - d.compute_output;
        log(logger, LogLevel::kInfo,
            "model " + quoted(model.name) + " on " + last.server + ": " +
                std::to_string(last.requests) + " request(s); server: inference count " +
                std::to_string(d.inference_count) + ", execution count " +
                std::to_string(d.execution_count) + ", successful requests " +
                std::to_string(d.success_count) + "; average latency (us): overhead " +
                std::to_string(avg(overhead)) + ", queue " + std::to_string(avg(d.queue)) +
                ", compute input " + std::to_string(avg(d.compute_input)) + ", compute infer " +
                std::to_string(avg(d.compute_infer)) + ", compute output " +
                std::to_string(avg(d.compute_output)));
      }
    }
    last.total = Clock::now() - call_start;
    last.wait = std::max(std::chrono::nanoseconds(0), last.total - last.send - last.receive);
    EventClient::DoneCallback done = std::move(user_done);
    Status status = call_status;
    {
      std::lock_guard lock(call_mutex);
      in_flight = false;
      call_wake.notify_all();
    }
    done(std::move(status));  // `this` may be gone once done() returns
  }
};

// ---------------------------------------------------------------------------------------------
// EventInput / EventOutput

const TensorInfo& EventInput::info() const { return state_->inputs[index_].info; }

Status EventInput::setShape(std::span<const int64_t> shape) {
  auto& input = state_->inputs[index_];
  BL_RETURN_IF_ERROR(state_->checkShape(input, shape));
  input.shape.assign(shape.begin(), shape.end());
  input.ragged = false;
  return Status::ok();
}

Status EventInput::setShape(std::span<const int64_t> shape, size_t entry) {
  auto& input = state_->inputs[index_];
  BL_RETURN_IF_ERROR(state_->checkShape(input, shape));
  if (entry >= state_->batch) {
    return invalidArg("input " + quoted(input.info.name) + ": entry " + std::to_string(entry) +
                      " out of range (batch size " + std::to_string(state_->batch) + ")");
  }
  if (!input.ragged) {
    if (std::equal(shape.begin(), shape.end(), input.shape.begin(), input.shape.end())) {
      return Status::ok();
    }
    if (state_->batch == 1) {
      input.shape.assign(shape.begin(), shape.end());
      return Status::ok();
    }
    // The first entry with a shape of its own: the event becomes ragged.
    input.ragged = true;
    input.entry_shapes.clear();
    for (size_t e = 0; e < state_->batch; ++e) {
      input.entry_shapes.insert(input.entry_shapes.end(), input.shape.begin(), input.shape.end());
    }
  }
  std::copy(shape.begin(), shape.end(), input.entry_shapes.begin() + static_cast<std::ptrdiff_t>(entry * shape.size()));
  return Status::ok();
}

std::span<const int64_t> EventInput::shape(size_t entry) const {
  const auto& input = state_->inputs[index_];
  if (input.ragged && entry < state_->batch) return state_->entryShape(index_, entry);
  return input.shape;
}

Result<std::span<std::byte>> EventInput::entryBytes(size_t entry) {
  return state_->entryBytes(index_, entry);
}

Status EventInput::checkType(size_t element_size, DataType datatype) const {
  const auto& info = state_->inputs[index_].info;
  if (datatype != DataType::kInvalid && datatype != info.datatype &&
      !(element_size == 2 && (info.datatype == DataType::kFp16 || info.datatype == DataType::kBf16))) {
    return invalidArg("input " + quoted(info.name) + " is " +
                      std::string(dataTypeWireName(info.datatype)) + ", not " +
                      std::string(dataTypeWireName(datatype)));
  }
  if (element_size != 1 && element_size != dataTypeByteSize(info.datatype)) {
    return invalidArg("input " + quoted(info.name) + " has " +
                      std::to_string(dataTypeByteSize(info.datatype)) +
                      "-byte elements, not " + std::to_string(element_size));
  }
  return Status::ok();
}

Status EventInput::sizeMismatch(size_t entry, size_t given, size_t expected) const {
  return invalidArg("input " + quoted(info().name) + ", entry " + std::to_string(entry) + ": " +
                    std::to_string(given) + " values for shape " + shapeToString(shape(entry)) +
                    " (" + std::to_string(expected) + " elements)");
}

const TensorInfo& EventOutput::info() const { return state_->outputs[index_]; }

namespace {

Status checkOutputReadable(const EventClientState& state, size_t index, size_t entry) {
  const auto& name = state.outputs[index].name;
  if (!state.results_valid) {
    return invalidArg("output " + quoted(name) + ": no completed call in this event");
  }
  if (entry >= state.batch) {
    return invalidArg("output " + quoted(name) + ": entry " + std::to_string(entry) +
                      " out of range (batch size " + std::to_string(state.batch) + ")");
  }
  return Status::ok();
}

const EventClientState::Wire& wireOf(const EventClientState& state, size_t entry) {
  if (state.per_entry) return *state.wires[entry];
  return *state.wires[entry / static_cast<size_t>(state.model.max_batch_size)];
}

}  // namespace

Result<std::span<const int64_t>> EventOutput::shape(size_t entry) const {
  BL_RETURN_IF_ERROR(checkOutputReadable(*state_, index_, entry));
  const TensorView& view = wireOf(*state_, entry).outputs[index_];
  if (state_->model.max_batch_size > 0 && !view.shape.empty()) return view.shape.subspan(1);
  return view.shape;
}

Result<std::span<const std::byte>> EventOutput::entryBytes(size_t entry) const {
  BL_RETURN_IF_ERROR(checkOutputReadable(*state_, index_, entry));
  const auto& w = wireOf(*state_, entry);
  const TensorView& view = w.outputs[index_];
  if (state_->per_entry || w.count == 1) return view.data;
  if (view.datatype == DataType::kBytes) {
    return unsupported("output " + quoted(view.name) +
                       " is BYTES: per-entry views need a ragged batch (one request per entry)");
  }
  if (view.data.size() % w.count != 0) {
    return internalError("output " + quoted(view.name) + ": " + std::to_string(view.data.size()) +
                         " bytes do not split into " + std::to_string(w.count) + " entries");
  }
  const size_t bytes = view.data.size() / w.count;
  return view.data.subspan((entry - w.first) * bytes, bytes);
}

Status EventOutput::checkType(size_t element_size, DataType datatype) const {
  const auto& out = state_->outputs[index_];
  if (datatype != DataType::kInvalid && datatype != out.datatype) {
    return invalidArg("output " + quoted(out.name) + " is " +
                      std::string(dataTypeWireName(out.datatype)) + ", not " +
                      std::string(dataTypeWireName(datatype)));
  }
  if (element_size != 1 && element_size != dataTypeByteSize(out.datatype)) {
    return invalidArg("output " + quoted(out.name) + " has " +
                      std::to_string(dataTypeByteSize(out.datatype)) + "-byte elements, not " +
                      std::to_string(element_size));
  }
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// EventClient

EventClient::EventClient(std::unique_ptr<EventClientState> state) : state_(std::move(state)) {}

Result<std::unique_ptr<EventClient>> EventClient::create(Config config,
                                                         std::shared_ptr<ServerRegistry> registry,
                                                         Logger logger) {
  if (config.model_name.empty()) return invalidArg("EventClient: the model name is empty");
  if (config.timeout.count() < 0) return invalidArg("EventClient: the timeout is negative");
  if (!registry) {
    BL_ASSIGN_OR_RETURN(registry, ServerRegistry::create(ServerRegistry::Config{}, logger));
  }
  auto state = std::make_unique<EventClientState>();
  state->id = next_client_id.fetch_add(1);
  state->registry = std::move(registry);
  state->logger = std::move(logger);
  state->config = std::move(config);
  const std::string& model = state->config.model_name;
  BL_RETURN_IF_ERROR(state->chooseServer().withContext("EventClient"));
  auto info = state->selection->endpoint->modelInfo(model, state->config.model_version);
  if (!info.isOk()) return info.status().withContext("EventClient");
  state->model = std::move(info).value();
  if (state->model.inputs.empty() || state->model.outputs.empty()) {
    return invalidArg("model " + quoted(model) + " has no inputs or no outputs");
  }
  for (const auto& tensor : state->model.inputs) {
    if (tensor.datatype == DataType::kBytes) {
      return unsupported("model " + quoted(model) + ": input " + quoted(tensor.name) +
                         " is BYTES; EventClient fills fixed-size tensors in place (use "
                         "GrpcClient for BYTES inputs)");
    }
    EventClientState::Input input;
    input.info = tensor;
    input.element_size = dataTypeByteSize(tensor.datatype);
    input.shape = tensor.dims;
    state->inputs.push_back(std::move(input));
  }
  if (state->config.outputs.empty()) {
    state->outputs = state->model.outputs;
  } else {
    for (const auto& name : state->config.outputs) {
      auto found = std::find_if(state->model.outputs.begin(), state->model.outputs.end(),
                                [&](const TensorInfo& t) { return t.name == name; });
      if (found == state->model.outputs.end()) {
        return notFound("model " + quoted(model) + " has no output " + quoted(name));
      }
      state->outputs.push_back(*found);
    }
  }
  log(state->logger, LogLevel::kInfo,
      "EventClient for model " + quoted(model) + " (max_batch_size " +
          std::to_string(state->model.max_batch_size) + ", mode " +
          std::string(callModeName(state->config.mode)) + ") on " +
          state->selection->endpoint->name());
  return std::unique_ptr<EventClient>(new EventClient(std::move(state)));
}

EventClient::~EventClient() {
  EventClientState& s = *state_;
  {
    std::unique_lock lock(s.call_mutex);
    s.call_wake.wait(lock, [&s] { return !s.in_flight; });
  }
  s.releaseRegion(s.shm_in);
  s.releaseRegion(s.shm_out);
}

const EventClient::Config& EventClient::config() const { return state_->config; }
const ModelInfo& EventClient::model() const { return state_->model; }

Status EventClient::setBatchSize(size_t entries) {
  EventClientState& s = *state_;
  if (s.laid_out) {
    return invalidArg("the batch size is fixed once an entry was written; reset() first");
  }
  s.batch = entries;
  for (auto& input : s.inputs) {
    if (!input.ragged) continue;
    // New entries start with the common shape.
    const size_t rank = input.shape.size();
    const size_t had = input.entry_shapes.size() / std::max<size_t>(rank, 1);
    input.entry_shapes.resize(entries * rank);
    for (size_t e = had; e < entries; ++e) {
      std::copy(input.shape.begin(), input.shape.end(),
                input.entry_shapes.begin() + static_cast<std::ptrdiff_t>(e * rank));
    }
  }
  s.results_valid = false;
  return Status::ok();
}

size_t EventClient::batchSize() const { return state_->batch; }

void EventClient::setBatchMode(BatchMode mode) { state_->forced_ragged = mode == BatchMode::kRagged; }

BatchMode EventClient::batchMode() const {
  return state_->ragged() ? BatchMode::kRagged : BatchMode::kRectangular;
}

size_t EventClient::inputCount() const { return state_->inputs.size(); }
EventInput EventClient::input(size_t index) { return EventInput(state_.get(), index); }

Result<EventInput> EventClient::input(std::string_view name) {
  for (size_t i = 0; i < state_->inputs.size(); ++i) {
    if (state_->inputs[i].info.name == name) return EventInput(state_.get(), i);
  }
  return notFound("model " + quoted(state_->model.name) + " has no input " + quoted(name));
}

size_t EventClient::outputCount() const { return state_->outputs.size(); }
EventOutput EventClient::output(size_t index) const { return EventOutput(state_.get(), index); }

Result<EventOutput> EventClient::output(std::string_view name) const {
  for (size_t i = 0; i < state_->outputs.size(); ++i) {
    if (state_->outputs[i].name == name) return EventOutput(state_.get(), i);
  }
  return notFound("output " + quoted(name) + " is not among the client's outputs of model " +
                  quoted(state_->model.name));
}

void EventClient::dispatch(DoneCallback done) {
  EventClientState& s = *state_;
  {
    std::lock_guard lock(s.call_mutex);
    if (s.in_flight) {
      done(invalidArg("model " + quoted(s.model.name) + ": a call is already in flight"));
      return;
    }
  }
  s.last = CallStatistics{};
  s.results_valid = false;
  s.call_start = Clock::now();
  if (s.batch == 0) {  // nothing to process
    s.results_valid = true;
    done(Status::ok());
    return;
  }
  Status laid = s.layOut();
  if (!laid.isOk()) {
    done(laid.withContext("model " + quoted(s.model.name)));
    return;
  }
  for (size_t i = 0; i < s.wire_count; ++i) {
    auto& w = *s.wires[i];
    w.ok = false;
    w.send = w.receive = std::chrono::nanoseconds(0);
  }
  s.same_tries = s.other_tries = 0;
  s.attempts = 1;
  s.stats_before.reset();
  if (s.config.verbose) {
    auto before = s.selection->endpoint->statistics(s.model.name, s.config.model_version);
    if (before.isOk()) s.stats_before = *before;
  }
  s.user_done = std::move(done);
  {
    std::lock_guard lock(s.call_mutex);
    s.in_flight = true;
  }
  switch (s.config.mode) {
    case CallMode::kSync:
      s.runBlocking();
      s.finishUser();
      break;
    case CallMode::kAsync:
      s.startAttempt();
      break;
    case CallMode::kPseudoAsync:
      s.registry->post([&s] {
        s.runBlocking();
        s.finishUser();
      });
      break;
  }
}

Status EventClient::call() {
  std::mutex mutex;
  std::condition_variable wake;
  bool finished = false;
  Status outcome;
  dispatch([&](Status status) {
    std::lock_guard lock(mutex);
    outcome = std::move(status);
    finished = true;
    wake.notify_all();
  });
  std::unique_lock lock(mutex);
  wake.wait(lock, [&] { return finished; });
  return outcome;
}

const CallStatistics& EventClient::lastCall() const { return state_->last; }

void EventClient::reset() {
  EventClientState& s = *state_;
  {
    std::lock_guard lock(s.call_mutex);
    if (s.in_flight) {
      log(s.logger, LogLevel::kError,
          "model " + quoted(s.model.name) + ": reset() while a call is in flight is ignored");
      return;
    }
  }
  s.batch = 0;
  s.laid_out = false;
  s.results_valid = false;
  for (auto& input : s.inputs) {
    input.shape = input.info.dims;
    input.ragged = false;
  }
  for (size_t i = 0; i < s.wire_count; ++i) {
    for (auto& view : s.wires[i]->outputs) view = TensorView{};
  }
}

}  // namespace beamline::client
