// Helpers shared by the native algorithm plug-ins (and the fused Exa.TrkX plug-in): errors across
// the C ABI, the model config, config parameters, and where an instance runs.
//
// Header-only and compiled into each plug-in separately (hidden visibility): every plug-in keeps
// its own pointer to the host's API.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

#include "beamline/backend/backend_api.h"
#include "beamline/core/status.h"
#include "gpu_algorithms.h"
#include "model_config.pb.h"

namespace beamline::native::plugin {

// The host API of this plug-in; set once by beamline_backend_init.
struct Host {
  const BlHostApi* api = nullptr;
};

inline BlStatusCode toBlCode(StatusCode code) { return static_cast<BlStatusCode>(code); }

// A Status as a BlError (NULL for OK); the host owns the result.
inline BlError* toBlError(const BlHostApi* host, const Status& status) {
  if (status.isOk()) return nullptr;
  return host->errorNew(toBlCode(status.code()), status.message().c_str());
}

// Runs `function` (returning a Status) and turns its result, or anything it throws, into a
// BlError: nothing crosses the C ABI as an exception.
template <typename Function>
BlError* guarded(const BlHostApi* host, const char* what, Function&& function) noexcept {
  try {
    return toBlError(host, function());
  } catch (const std::exception& e) {
    return host->errorNew(BL_STATUS_INTERNAL, (std::string(what) + ": " + e.what()).c_str());
  } catch (...) {
    return host->errorNew(BL_STATUS_INTERNAL, (std::string(what) + ": unknown exception").c_str());
  }
}

// Returns a host call's BlError from the enclosing function (the host's API has no accessor for an
// error's message, so host errors travel back unchanged rather than as a Status).
#define BL_NATIVE_RETURN_IF_HOST_ERROR(expression) \
  do {                                             \
    if (BlError* bl_host_error_ = (expression)) {  \
      return bl_host_error_;                       \
    }                                              \
  } while (false)

inline Result<inference::ModelConfig> readModelConfig(const BlHostApi* host, BlModel* model) {
  const void* bytes = nullptr;
  uint64_t byte_size = 0;
  host->modelConfig(model, &bytes, &byte_size);
  inference::ModelConfig config;
  if (!config.ParseFromArray(bytes, static_cast<int>(byte_size))) {
    return invalidArg("cannot parse the model config");
  }
  return config;
}

// Config parameter `name` (its string_value) as a number; `fallback` when absent. Use double for
// FP32 parameters and narrow afterwards: decimal -> double -> float is what Python's
// numpy.float32(float(text)) does, so both sides round a cut the same way.
template <typename Number>
Result<Number> numberParameter(const inference::ModelConfig& config, const std::string& name,
                               std::optional<Number> fallback) {
  const auto it = config.parameters().find(name);
  if (it == config.parameters().end()) {
    if (fallback) return *fallback;
    return invalidArg("config parameter '" + name + "' is required");
  }
  const std::string& text = it->second.string_value();
  Number value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) {
    return invalidArg("config parameter '" + name + "' must be a number, got '" + text + "'");
  }
  if constexpr (std::is_floating_point_v<Number>) {
    if (!std::isfinite(value)) {
      return invalidArg("config parameter '" + name + "' must be finite, got '" + text + "'");
    }
  }
  return value;
}

// Where one instance runs: a CPU instance has no GPU workspace.
struct Placement {
  bool on_gpu = false;
  std::unique_ptr<gpu::GpuWorkspace> workspace;
};

// KIND_CPU instances run the CPU versions; KIND_GPU instances the CUDA versions on their device
// (UNAVAILABLE when this build has no CUDA or the device is missing). Call on the instance's
// execution thread.
inline Result<Placement> placeInstance(const BlHostApi* host, BlInstance* instance) {
  Placement placement;
  if (host->instanceKind(instance) != BL_INSTANCE_GPU) return placement;
  const int32_t device = host->instanceDeviceId(instance);
  if (!gpu::compiledWithCuda()) {
    return unavailable(std::string("instance '") + host->instanceName(instance) +
                       "' is KIND_GPU, but this build has no CUDA support");
  }
  auto workspace = gpu::GpuWorkspace::create(device);
  if (!workspace.isOk()) {
    return Status(workspace.status().code(), std::string("instance '") +
                                                 host->instanceName(instance) +
                                                 "': " + workspace.status().message());
  }
  placement.on_gpu = true;
  placement.workspace = std::move(workspace).value();
  return placement;
}

// Shape helpers.
inline std::string shapeText(const BlTensorView& view) {
  std::string text = "[";
  for (uint32_t d = 0; d < view.rank; ++d) {
    text += (d ? ", " : "") + std::to_string(view.shape[d]);
  }
  return text + "]";
}

inline int64_t elementCount(const BlTensorView& view) {
  int64_t count = 1;
  for (uint32_t d = 0; d < view.rank; ++d) count *= view.shape[d];
  return count;
}

}  // namespace beamline::native::plugin
