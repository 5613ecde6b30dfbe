// Reading a model's configuration (config.pbtxt, or a JSON override from the load API), filling
// in Triton's defaults and rejecting configurations that cannot be served.
// Pure functions (apart from reading the file); any thread.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "beamline/core/status.h"
#include "model_config.pb.h"

namespace beamline {

// Parses a config.pbtxt in protobuf text format. Syntax errors read
// "<file>:<line>:<column>: <parser message>" (1-based line and column). A missing or unreadable
// file is an INVALID_ARG that names the file.
Result<inference::ModelConfig> parseModelConfigFile(const std::filesystem::path& config_pbtxt);

// Parses a ModelConfig from protobuf JSON (proto or lowerCamel field names), as sent in the
// "config" parameter of a repository load request. `source` names the origin in error messages.
Result<inference::ModelConfig> parseModelConfigJson(std::string_view json, std::string_view source);

// Fills in defaults and validates, in place. Defaults: name from `model_dir_name` when empty;
// platform "pytorch_libtorch" and backend "pytorch" imply each other; version policy latest(1);
// one CPU instance when no instance_group is given, count 0 -> 1, KIND_AUTO -> KIND_CPU (KIND_GPU
// when gpus are listed), group names "<model>_<index>"; default_model_filename "model.pt" for
// PyTorch. Each error is an INVALID_ARG reading "<source_path>: <field path>: <problem>", e.g.
// "m/config.pbtxt: input[1].dims[0]: ...". On error `config` may be partly normalised.
Status normalizeAndValidateModelConfig(inference::ModelConfig& config,
                                       std::string_view model_dir_name,
                                       std::string_view source_path);

// Protobuf JSON with the .proto field names and every primitive field printed, for the HTTP
// model-configuration endpoint.
std::string modelConfigToJson(const inference::ModelConfig& config);

}  // namespace beamline
