// The core's request and response types: what a front end builds from a wire message and hands to
// Server::infer(), and the sink through which the response is written back.
//
// Ownership: the front end owns the request's input bytes (typically the wire message) and the
// ResponseSink; both must stay alive until ResponseSink::complete() has been called. The core owns
// the InferenceRequest object once Server::infer() accepted it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "beamline/core/datatype.h"
#include "beamline/core/status.h"
#include "beamline/core/tensor.h"

namespace beamline {

// A request or tensor parameter: bool, int64, string, double or uint64 (the protocol's oneof).
using ParameterValue = std::variant<bool, int64_t, std::string, double, uint64_t>;
using Parameters = std::map<std::string, ParameterValue, std::less<>>;

// One input of a request. `data` points into memory the front end owns.
struct InputTensor {
  std::string name;
  DataType datatype = DataType::kInvalid;
  Shape shape;
  std::span<const std::byte> data;
  Parameters parameters;
};

// Receives the response of one request. Implemented by each front end (e.g. a gRPC call object).
// Threads: allocateOutput() and complete() are called from the executing model instance's thread
// (or from the caller of Server::infer() for errors found before execution); never concurrently for
// the same request. complete() is called exactly once, last.
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;

  // Memory for one output, `byte_size` bytes, filled by the backend after this returns. The sink
  // owns the memory (e.g. a string inside the response message), so the output is written once,
  // in place. Called only for outputs the request asked for (all of them when it named none).
  virtual Result<std::byte*> allocateOutput(std::string_view name, DataType datatype,
                                            std::span<const int64_t> shape,
                                            uint64_t byte_size) = 0;

  // The end of the request. On error, outputs allocated so far must be discarded by the sink.
  // `model_version` is the version that executed (or was chosen), -1 when none was.
  virtual void complete(const Status& status, int64_t model_version) = 0;
};

// One inference request, as the core sees it.
struct InferenceRequest {
  std::string model_name;
  int64_t model_version = -1;  // -1: chosen by the model's version policy (the latest ready)
  std::string id;
  Parameters parameters;
  std::vector<InputTensor> inputs;
  std::vector<std::string> requested_outputs;  // empty: every output
  ResponseSink* sink = nullptr;                // not owned; see the file comment
  // Scheduling (the `priority` and `timeout` request parameters). 0 means the model's default
  // priority level / queue-policy timeout.
  uint64_t priority = 0;
  uint64_t timeout_us = 0;

  // Whatever the input views need kept alive beyond the front end's own buffers (e.g. the shared
  // memory regions they point into); released with the request.
  std::vector<std::shared_ptr<const void>> keepalive;

  // Set by the core.
  std::chrono::steady_clock::time_point arrival_time{};
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  uint32_t priority_level = 0;  // resolved level, 1 = highest
  // Arrival order within the model's scheduler (for preserve_ordering); kNotQueued until queued.
  static constexpr uint64_t kNotQueued = ~uint64_t{0};
  uint64_t sequence = kNotQueued;
};

}  // namespace beamline
