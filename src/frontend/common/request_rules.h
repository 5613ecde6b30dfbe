// Rules that both front ends (gRPC and HTTP) apply to what clients send, so that the two protocols
// accept and refuse exactly the same things: model version strings, the reserved request
// parameters, the tensor parameters this server does not support, and load-request parameters.
// Pure functions, but for the shared-memory helpers, which read the server's region table; any
// thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "beamline/core/inference.h"
#include "beamline/core/shared_memory.h"
#include "beamline/core/status.h"

namespace beamline::frontend {

// "" selects by policy (-1); otherwise a non-negative decimal number.
Result<int64_t> parseModelVersion(std::string_view text);

// One request-level parameter. The ones the server interprets are checked here (sequence_id:
// non-zero is UNSUPPORTED; priority and timeout: non-negative integers; sequence_start/_end and
// headers: ignored; the prefix "triton_" is reserved); every other parameter is added to `out`
// for the backend. `value` is null when the wire parameter carries no value.
Status addRequestParameter(const std::string& name, const ParameterValue* value, Parameters& out);
// The same for a request: `priority` and `timeout` also set request.priority and
// request.timeout_us (for the dynamic batcher); others go to request.parameters.
Status addRequestParameter(const std::string& name, const ParameterValue* value,
                           InferenceRequest& request);

// Input tensor parameter keys the server handles itself (shared_memory_* are read by
// sharedMemoryLocation; nothing else is refused today).
Status checkInputParameter(std::string_view tensor_name, std::string_view key);
// Requested-output parameter keys the server handles itself (classification: UNSUPPORTED).
Status checkOutputParameter(std::string_view tensor_name, std::string_view key);

// Where a tensor lives in client shared memory, from its parameters shared_memory_region (string),
// shared_memory_byte_size (required with a region) and shared_memory_offset (optional, default 0).
struct SharedMemoryLocation {
  std::string region;
  uint64_t offset = 0;
  uint64_t byte_size = 0;
};
// nullopt when the tensor does not use shared memory; INVALID_ARG (naming the tensor) for a
// byte size or offset without a region, a missing byte size, or values of the wrong type.
Result<std::optional<SharedMemoryLocation>> sharedMemoryLocation(std::string_view tensor_name,
                                                                 const Parameters& parameters);
bool isSharedMemoryParameter(std::string_view key);

// Points `input` at its bytes in client shared memory: a view into a system region (kept mapped
// by request.keepalive), or for a CUDA region one copy to the host into a new entry of
// `host_copies` (the backends read host memory; reserve it so that earlier entries never move).
// Removes the shared_memory_* parameters from the input. INVALID_ARG for an unknown region or a
// range outside it.
Status bindSharedMemoryInput(const SharedMemoryManager& shared_memory,
                             const SharedMemoryLocation& location, InputTensor& input,
                             InferenceRequest& request, std::vector<std::string>& host_copies);

// Where an output the client asked to receive in shared memory goes; the caller keeps `region`
// until the response is built. CUDA regions: UNSUPPORTED (outputs go to host memory only).
struct SharedMemoryWindow {
  std::shared_ptr<const SharedMemoryRegion> region;
  std::span<std::byte> window;
};
Result<SharedMemoryWindow> sharedMemoryOutputWindow(const SharedMemoryManager& shared_memory,
                                                    const SharedMemoryLocation& location,
                                                    std::string_view output_name);

// A repository load-request parameter whose name starts with "file:" (model files sent with the
// request): UNSUPPORTED, naming the parameter.
Status loadFileParameterUnsupported(std::string_view key);


}  // namespace beamline::frontend
