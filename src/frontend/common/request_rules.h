// Rules that both front ends (gRPC and HTTP) apply to what clients send, so that the two protocols
// accept and refuse exactly the same things: model version strings, the reserved request
// parameters, the tensor parameters this server does not support, and load-request parameters.
// Pure functions; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "beamline/core/inference.h"
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

// Input tensor parameter keys the server handles itself (shared_memory_*: UNSUPPORTED).
Status checkInputParameter(std::string_view tensor_name, std::string_view key);
// Requested-output parameter keys the server handles itself (classification and shared_memory_*:
// UNSUPPORTED).
Status checkOutputParameter(std::string_view tensor_name, std::string_view key);

// A repository load-request parameter whose name starts with "file:" (model files sent with the
// request): UNSUPPORTED, naming the parameter.
Status loadFileParameterUnsupported(std::string_view key);

// Shared memory is not supported: "unregister all" and "status of all" succeed with nothing (as
// perf_analyzer calls them unconditionally); a named region is NOT_FOUND; registering is
// UNSUPPORTED. `kind` is "system" or "CUDA".
Status sharedMemoryRegionNotFound(std::string_view kind, std::string_view region);
Status sharedMemoryRegisterUnsupported(std::string_view kind);

}  // namespace beamline::frontend
