#include "frontend/common/request_rules.h"

#include <charconv>

namespace beamline::frontend {
namespace {

bool isNonNegativeInteger(const ParameterValue* value) {
  if (value == nullptr) return false;
  if (std::holds_alternative<uint64_t>(*value)) return true;
  return std::holds_alternative<int64_t>(*value) && std::get<int64_t>(*value) >= 0;
}

bool startsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

}  // namespace

Result<int64_t> parseModelVersion(std::string_view text) {
  if (text.empty()) return int64_t{-1};
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < 0) {
    return invalidArg("model version '" + std::string(text) + "' is not a version number");
  }
  return value;
}

Status addRequestParameter(const std::string& name, const ParameterValue* value,
                           Parameters& out) {
  if (name == "sequence_id") {
    bool in_sequence = false;
    if (value != nullptr) {
      if (const auto* i = std::get_if<int64_t>(value)) in_sequence = *i != 0;
      if (const auto* u = std::get_if<uint64_t>(value)) in_sequence = *u != 0;
      if (const auto* s = std::get_if<std::string>(value)) in_sequence = !s->empty();
    }
    if (in_sequence) return unsupported("sequence batching (sequence_id) is not supported");
    return Status::ok();
  }
  if (name == "sequence_start" || name == "sequence_end" || name == "headers") {
    return Status::ok();
  }
  if (name == "priority") {
    if (!isNonNegativeInteger(value)) {
      return invalidArg("parameter 'priority' must be a non-negative integer");
    }
    return Status::ok();  // used by the dynamic batcher
  }
  if (name == "timeout") {
    if (!isNonNegativeInteger(value)) {
      return invalidArg("parameter 'timeout' must be a non-negative integer (microseconds)");
    }
    return Status::ok();
  }
  if (startsWith(name, "triton_") && name != "triton_enable_empty_final_response") {
    return invalidArg("parameter '" + name + "' uses the reserved prefix 'triton_'");
  }
  if (value == nullptr) return invalidArg("parameter '" + name + "' has no value");
  out.emplace(name, *value);
  return Status::ok();
}

Status addRequestParameter(const std::string& name, const ParameterValue* value,
                           InferenceRequest& request) {
  BL_RETURN_IF_ERROR(addRequestParameter(name, value, request.parameters));
  if (name == "priority" || name == "timeout") {
    const uint64_t number = std::holds_alternative<uint64_t>(*value)
                                ? std::get<uint64_t>(*value)
                                : static_cast<uint64_t>(std::get<int64_t>(*value));
    (name == "priority" ? request.priority : request.timeout_us) = number;
  }
  return Status::ok();
}

Status checkInputParameter(std::string_view /*tensor_name*/, std::string_view /*key*/) {
  return Status::ok();
}

Status checkOutputParameter(std::string_view tensor_name, std::string_view key) {
  if (key == "classification") {
    return unsupported("output '" + std::string(tensor_name) +
                       "': the classification extension is not supported");
  }
  return Status::ok();
}

bool isSharedMemoryParameter(std::string_view key) { return startsWith(key, "shared_memory_"); }

Result<std::optional<SharedMemoryLocation>> sharedMemoryLocation(std::string_view tensor_name,
                                                                 const Parameters& parameters) {
  const std::string tensor(tensor_name);
  auto integer = [&](std::string_view key) -> Result<std::optional<uint64_t>> {
    auto it = parameters.find(key);
    if (it == parameters.end()) return std::optional<uint64_t>();
    if (const auto* u = std::get_if<uint64_t>(&it->second)) return std::optional<uint64_t>(*u);
    if (const auto* i = std::get_if<int64_t>(&it->second); i != nullptr && *i >= 0) {
      return std::optional<uint64_t>(static_cast<uint64_t>(*i));
    }
    return invalidArg("tensor '" + tensor + "': parameter '" + std::string(key) +
                      "' must be a non-negative integer");
  };
  BL_ASSIGN_OR_RETURN(auto byte_size, integer("shared_memory_byte_size"));
  BL_ASSIGN_OR_RETURN(auto offset, integer("shared_memory_offset"));
  auto region = parameters.find("shared_memory_region");
  if (region == parameters.end()) {
    if (byte_size || offset) {
      return invalidArg("tensor '" + tensor + "': shared_memory_byte_size or shared_memory_offset "
                        "given without shared_memory_region");
    }
    return std::optional<SharedMemoryLocation>();
  }
  const auto* name = std::get_if<std::string>(&region->second);
  if (name == nullptr || name->empty()) {
    return invalidArg("tensor '" + tensor + "': shared_memory_region must be a region name");
  }
  if (!byte_size) {
    return invalidArg("tensor '" + tensor + "': shared_memory_region '" + *name +
                      "' needs shared_memory_byte_size");
  }
  return std::optional<SharedMemoryLocation>(SharedMemoryLocation{*name, offset.value_or(0), *byte_size});
}

Status loadFileParameterUnsupported(std::string_view key) {
  return unsupported("loading model files through the load request ('" + std::string(key) +
                     "') is not supported; put them in the repository");
}

Status bindSharedMemoryInput(const SharedMemoryManager& shared_memory,
                             const SharedMemoryLocation& location, InputTensor& input,
                             InferenceRequest& request, std::vector<std::string>& host_copies) {
  BL_ASSIGN_OR_RETURN(auto region, shared_memory.find(location.region));
  if (region->isCuda()) {
    std::string& storage = host_copies.emplace_back();
    storage.resize(location.byte_size);
    BL_RETURN_IF_ERROR(region->copyToHost(location.offset, location.byte_size,
                                          reinterpret_cast<std::byte*>(storage.data())));
    input.data = std::as_bytes(std::span(storage.data(), storage.size()));
  } else {
    BL_ASSIGN_OR_RETURN(auto window, region->range(location.offset, location.byte_size));
    input.data = window;
    request.keepalive.push_back(std::move(region));
  }
  for (auto it = input.parameters.begin(); it != input.parameters.end();) {
    it = isSharedMemoryParameter(it->first) ? input.parameters.erase(it) : std::next(it);
  }
  return Status::ok();
}

Result<SharedMemoryWindow> sharedMemoryOutputWindow(const SharedMemoryManager& shared_memory,
                                                    const SharedMemoryLocation& location,
                                                    std::string_view output_name) {
  BL_ASSIGN_OR_RETURN(auto region, shared_memory.find(location.region));
  if (region->isCuda()) {
    return unsupported("output '" + std::string(output_name) +
                       "': CUDA shared memory outputs are not supported yet");
  }
  BL_ASSIGN_OR_RETURN(auto window, region->range(location.offset, location.byte_size));
  return SharedMemoryWindow{std::move(region), window};
}

}  // namespace beamline::frontend
