// JSON helpers for the HTTP front end: parsing without exceptions (errors are Status values with
// the parser's position), and the model configuration in Triton's JSON form.
// Pure functions; any thread.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "beamline/core/status.h"

namespace inference {
class ModelConfig;
}  // namespace inference

namespace beamline::frontend::http {

// Parses `text`; INVALID_ARG "failed to parse the <what> JSON: <parser message>" on error.
Result<nlohmann::json> parseJson(std::string_view text, std::string_view what);

// The configuration as protobuf JSON (proto field names, every primitive field printed, enums as
// names), with Triton's number handling: protobuf JSON prints 64-bit integers as strings, and
// Triton turns the ones clients read back into JSON numbers (dims, reshape shape, the batcher's
// and sequence batcher's microsecond and priority fields, ensemble step model_version, warm-up
// dims; core/src/model_config_utils.cc). Other 64-bit fields stay strings, as in Triton.
std::string modelConfigToTritonJson(const inference::ModelConfig& config);

// Standard base64 (RFC 4648, '=' padding optional, no whitespace); INVALID_ARG naming `what` when
// the text is not base64.
Result<std::string> decodeBase64(std::string_view text, std::string_view what);

}  // namespace beamline::frontend::http
