#include "core/backend_loader.h"

#include <dlfcn.h>

#include <ctime>
#include <string_view>

#include <spdlog/spdlog.h>

namespace beamline {
namespace {

BlError* errorNew(BlStatusCode code, const char* message) {
  auto status_code = static_cast<StatusCode>(code);
  if (code <= BL_STATUS_OK || code > BL_STATUS_CANCELLED) status_code = StatusCode::kUnknown;
  return new BlError{Status(status_code, message != nullptr ? message : "")};
}

void errorDelete(BlError* error) { delete error; }

void log(BlLogLevel level, const char* file, int line, const char* message) {
  const std::string_view text = message != nullptr ? message : "";
  const std::string_view where = file != nullptr ? file : "backend";
  switch (level) {
    case BL_LOG_ERROR:
      spdlog::error("[{}:{}] {}", where, line, text);
      break;
    case BL_LOG_WARNING:
      spdlog::warn("[{}:{}] {}", where, line, text);
      break;
    case BL_LOG_INFO:
      spdlog::info("{}", text);
      break;
    default:
      spdlog::debug("[{}:{}] {}", where, line, text);
      break;
  }
}

const char* modelName(const BlModel* model) { return model->name.c_str(); }
int64_t modelVersion(const BlModel* model) { return model->version; }
const char* modelVersionPath(const BlModel* model) { return model->version_path.c_str(); }
void modelConfig(const BlModel* model, const void** bytes, uint64_t* byte_size) {
  *bytes = model->config_bytes.data();
  *byte_size = model->config_bytes.size();
}

const char* instanceName(const BlInstance* instance) { return instance->name.c_str(); }
BlInstanceKind instanceKind(const BlInstance* instance) { return instance->kind; }
int32_t instanceDeviceId(const BlInstance* instance) { return instance->device_id; }

uint32_t batchInputCount(const BlBatch* batch) {
  return static_cast<uint32_t>(batch->inputs.size());
}

void fillView(const BlBatch* batch, size_t index, BlTensorView* view) {
  const BlBatch::Input& input = batch->inputs[index];
  view->name = input.name;
  view->datatype = input.datatype;
  view->shape = input.shape.data();
  view->rank = static_cast<uint32_t>(input.shape.size());
  view->data = input.data.data();
  view->byte_size = input.data.size();
  view->memory_kind = BL_MEMORY_CPU;
  view->memory_device_id = 0;
}

BlError* batchInput(const BlBatch* batch, uint32_t index, BlTensorView* view) {
  if (index >= batch->inputs.size()) {
    return errorNew(BL_STATUS_INVALID_ARG, "input index out of range");
  }
  fillView(batch, index, view);
  return nullptr;
}

BlError* batchInputByName(const BlBatch* batch, const char* name, BlTensorView* view) {
  const std::string_view wanted = name != nullptr ? name : "";
  for (size_t i = 0; i < batch->inputs.size(); ++i) {
    if (wanted == batch->inputs[i].name) {
      fillView(batch, i, view);
      return nullptr;
    }
  }
  return errorNew(BL_STATUS_NOT_FOUND, ("the batch has no input '" + std::string(wanted) + "'").c_str());
}

uint32_t batchRequestCount(const BlBatch* batch) {
  return static_cast<uint32_t>(batch->requests.size());
}

int batchOutputRequested(const BlBatch* batch, const char* name) {
  return batch->outputs != nullptr && name != nullptr && batch->outputs->isRequested(name) ? 1 : 0;
}

BlError* batchOutputAllocate(BlBatch* batch, const char* name, BlDataType datatype,
                             const int64_t* shape, uint32_t rank, uint64_t byte_size,
                             void** buffer) {
  *buffer = nullptr;
  if (name == nullptr || batch->outputs == nullptr) {
    return errorNew(BL_STATUS_INVALID_ARG, "output allocation without a name");
  }
  if (!batch->outputs->isRequested(name)) return nullptr;
  auto memory = batch->outputs->allocate(name, static_cast<DataType>(datatype),
                                         std::span<const int64_t>(shape, rank), byte_size);
  if (!memory.isOk()) {
    if (batch->output_error.isOk()) batch->output_error = memory.status();
    return new BlError{memory.status()};
  }
  *buffer = *memory;
  return nullptr;
}

uint64_t nowNs() { return monotonicNowNs(); }

void batchReportComputeTimes(BlBatch* batch, uint64_t input_end_ns, uint64_t infer_end_ns) {
  batch->input_end_ns = input_end_ns;
  batch->infer_end_ns = infer_end_ns;
  batch->times_reported = true;
}

uint32_t batchRequestParameterCount(const BlBatch* batch, uint32_t request_index) {
  if (request_index >= batch->requests.size()) return 0;
  return static_cast<uint32_t>(batch->requests[request_index]->parameters.size());
}

BlError* batchRequestParameter(const BlBatch* batch, uint32_t request_index,
                               uint32_t parameter_index, BlParameter* parameter) {
  if (request_index >= batch->requests.size()) {
    return errorNew(BL_STATUS_INVALID_ARG, "request index out of range");
  }
  const Parameters& parameters = batch->requests[request_index]->parameters;
  if (parameter_index >= parameters.size()) {
    return errorNew(BL_STATUS_INVALID_ARG, "parameter index out of range");
  }
  auto it = parameters.begin();
  std::advance(it, parameter_index);
  *parameter = BlParameter{};
  parameter->name = it->first.c_str();
  std::visit(
      [&](const auto& value) {
        using T = std::decay_t<decltype(value)>;
        if constexpr (std::is_same_v<T, bool>) {
          parameter->type = BL_PARAMETER_BOOL;
          parameter->bool_value = value ? 1 : 0;
        } else if constexpr (std::is_same_v<T, int64_t>) {
          parameter->type = BL_PARAMETER_INT64;
          parameter->int64_value = value;
        } else if constexpr (std::is_same_v<T, std::string>) {
          parameter->type = BL_PARAMETER_STRING;
          parameter->string_value = value.c_str();
        } else if constexpr (std::is_same_v<T, double>) {
          parameter->type = BL_PARAMETER_DOUBLE;
          parameter->double_value = value;
        } else {
          parameter->type = BL_PARAMETER_UINT64;
          parameter->uint64_value = value;
        }
      },
      it->second);
  return nullptr;
}

const BlHostApi kHostApi = {
    sizeof(BlHostApi),
    BL_BACKEND_API_VERSION,
    errorNew,
    errorDelete,
    log,
    modelName,
    modelVersion,
    modelVersionPath,
    modelConfig,
    instanceName,
    instanceKind,
    instanceDeviceId,
    batchInputCount,
    batchInput,
    batchInputByName,
    batchRequestCount,
    batchOutputRequested,
    batchOutputAllocate,
    nowNs,
    batchReportComputeTimes,
    batchRequestParameterCount,
    batchRequestParameter,
};

}  // namespace

const BlHostApi* hostApi() { return &kHostApi; }

uint64_t monotonicNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

Status takeBackendError(BlError* error) {
  if (error == nullptr) return Status::ok();
  Status status = std::move(error->status);
  delete error;
  if (status.isOk()) status = Status(StatusCode::kUnknown, "backend returned an error without a code");
  return status;
}

Result<std::shared_ptr<Backend>> Backend::open(const std::string& name,
                                               const std::filesystem::path& path) {
  dlerror();
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    return unavailable("cannot open backend '" + name + "' from " + path.string() + ": " +
                       (why != nullptr ? why : "unknown dlopen error"));
  }
  std::shared_ptr<Backend> backend(new Backend(name, handle));
  auto version_fn =
      reinterpret_cast<BlBackendApiVersionFn>(dlsym(handle, BL_BACKEND_API_VERSION_SYMBOL));
  auto init_fn = reinterpret_cast<BlBackendInitFn>(dlsym(handle, BL_BACKEND_INIT_SYMBOL));
  if (version_fn == nullptr || init_fn == nullptr) {
    return unavailable("backend library " + path.string() + " does not export " +
                       BL_BACKEND_API_VERSION_SYMBOL + " and " + BL_BACKEND_INIT_SYMBOL);
  }
  const uint32_t version = version_fn();
  const uint32_t major = version >> 16;
  const uint32_t minor = version & 0xffffu;
  if (major != BL_BACKEND_API_VERSION_MAJOR || minor > BL_BACKEND_API_VERSION_MINOR) {
    return unavailable("backend '" + name + "' (" + path.string() + ") was built for backend API " +
                       std::to_string(major) + "." + std::to_string(minor) +
                       ", this server provides " + std::to_string(BL_BACKEND_API_VERSION_MAJOR) +
                       "." + std::to_string(BL_BACKEND_API_VERSION_MINOR));
  }
  BlBackendApi api{};
  Status status = takeBackendError(init_fn(hostApi(), &api));
  if (!status.isOk()) return status.withContext("initialising backend '" + name + "'");
  // The mandatory entry points (all present in 1.0).
  if (api.struct_size < offsetof(BlBackendApi, finalize) || api.modelCreate == nullptr ||
      api.modelDestroy == nullptr || api.instanceCreate == nullptr ||
      api.instanceDestroy == nullptr || api.execute == nullptr) {
    return unavailable("backend '" + name + "' did not provide all mandatory entry points");
  }
  if (api.struct_size < sizeof(BlBackendApi)) api.finalize = nullptr;
  backend->api_ = api;
  spdlog::info("loaded backend '{}' from {}", name, path.string());
  return backend;
}

Backend::~Backend() {
  if (api_.finalize != nullptr) api_.finalize();
  // Backends linking large runtimes (LibTorch) leave thread-local destructors and static state
  // behind; unloading them mid-process is not worth the risk, so the library stays mapped.
  (void)handle_;
}

BackendRegistry::BackendRegistry(std::vector<std::string> directories)
    : directories_(std::move(directories)) {}

Result<std::shared_ptr<Backend>> BackendRegistry::get(const std::string& name) {
  std::lock_guard lock(mutex_);
  if (auto it = backends_.find(name); it != backends_.end()) {
    if (auto backend = it->second.lock()) return backend;
  }
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) {
      return invalidArg("backend name '" + name + "' may only contain letters, digits, '_' and '-'");
    }
  }
  const std::string file = "libbeamline_backend_" + name + ".so";
  std::string searched;
  for (const auto& directory : directories_) {
    const std::filesystem::path candidate = std::filesystem::path(directory) / file;
    std::error_code ec;
    if (std::filesystem::exists(candidate, ec)) {
      BL_ASSIGN_OR_RETURN(auto backend, Backend::open(name, candidate));
      backends_[name] = backend;
      return backend;
    }
    searched += (searched.empty() ? "" : ", ") + directory;
  }
  return unavailable("no backend '" + name + "': " + file + " not found in [" + searched +
                     "] (set --backend-directory)");
}

}  // namespace beamline
