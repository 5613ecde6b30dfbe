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

// The C entry points of one plug-in, written once. `Plugin` names the plug-in's parts:
//   static constexpr const char* kName;                  e.g. "frnn backend" (error prefix)
//   using ModelState = ...; using InstanceState = ...;   deleted with `delete`
//   static void setHost(const BlHostApi*);               keeps the host's API
//   static Status createModel(BlModel*, void** model_state);
//   static Status createInstance(const ModelState&, BlInstance*, void** instance_state);
//   static BlError* execute(InstanceState&, BlBatch*);
//   static std::string describe(const std::exception&);  optional (default: what())
// Everything is noexcept: exceptions become INTERNAL errors naming the plug-in. Threads: as the
// ABI says (model calls on the loading thread, instance calls on that instance's thread).
template <typename Plugin>
struct EntryPoints {
  static std::string describe(const std::exception& e) {
    if constexpr (requires { Plugin::describe(e); }) {
      return Plugin::describe(e);
    } else {
      return e.what();
    }
  }

  static BlError* modelCreate(BlModel* model, void** model_state) noexcept {
    return guarded(host_, (std::string(Plugin::kName) + ": modelCreate").c_str(),
                   [&] { return Plugin::createModel(model, model_state); });
  }

  static void modelDestroy(void* model_state) noexcept {
    try {
      delete static_cast<typename Plugin::ModelState*>(model_state);
    } catch (...) {  // destructors should not throw; never let one out
    }
  }

  static BlError* instanceCreate(void* model_state, BlInstance* instance,
                                 void** instance_state) noexcept {
    return guarded(host_, (std::string(Plugin::kName) + ": instanceCreate").c_str(), [&] {
      return Plugin::createInstance(*static_cast<const typename Plugin::ModelState*>(model_state),
                                    instance, instance_state);
    });
  }

  static void instanceDestroy(void* instance_state) noexcept {
    try {
      delete static_cast<typename Plugin::InstanceState*>(instance_state);
    } catch (...) {
    }
  }

  static BlError* execute(void* instance_state, BlBatch* batch) noexcept {
    try {
      return Plugin::execute(*static_cast<typename Plugin::InstanceState*>(instance_state), batch);
    } catch (const std::exception& e) {
      return host_->errorNew(BL_STATUS_INTERNAL,
                             (std::string(Plugin::kName) + ": " + describe(e)).c_str());
    } catch (...) {
      return host_->errorNew(BL_STATUS_INTERNAL,
                             (std::string(Plugin::kName) + ": unknown exception").c_str());
    }
  }

  // beamline_backend_init: checks the host's API size, keeps the host, fills the entry points.
  static BlError* init(const BlHostApi* host, BlBackendApi* backend) noexcept {
    if (host->struct_size < sizeof(BlHostApi)) {
      return host->errorNew(
          BL_STATUS_UNSUPPORTED,
          (std::string(Plugin::kName) + ": the server's host API is older than the backend's")
              .c_str());
    }
    host_ = host;
    Plugin::setHost(host);
    backend->struct_size = sizeof(BlBackendApi);
    backend->modelCreate = modelCreate;
    backend->modelDestroy = modelDestroy;
    backend->instanceCreate = instanceCreate;
    backend->instanceDestroy = instanceDestroy;
    backend->execute = execute;
    backend->finalize = nullptr;
    return nullptr;
  }

 private:
  static inline const BlHostApi* host_ = nullptr;
};

// Defines the two exported C functions of a plug-in from its `Plugin` description (at global
// scope, once per plug-in library).
#define BEAMLINE_NATIVE_PLUGIN_EXPORTS(Plugin)                                                     \
  extern "C" {                                                                                     \
  BL_BACKEND_EXPORT uint32_t beamline_backend_api_version(void) { return BL_BACKEND_API_VERSION; } \
  BL_BACKEND_EXPORT BlError* beamline_backend_init(const BlHostApi* host, BlBackendApi* backend) { \
    return ::beamline::native::plugin::EntryPoints<Plugin>::init(host, backend);                   \
  }                                                                                                \
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
