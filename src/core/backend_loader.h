// Backend plug-ins: finding, opening and version-checking `libbeamline_backend_<name>.so`, and the
// host side of the C ABI (include/beamline/backend/backend_api.h).
//
// Threads: BackendRegistry is thread-safe (one mutex). A Backend is immutable after open() and is
// shared by every model that uses it; the library stays open until the last model lets go of it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "beamline/backend/backend_api.h"
#include "beamline/core/inference.h"
#include "beamline/core/status.h"

// The host's definitions of the ABI's opaque handles. Backends never see inside them.
struct BlError {
  beamline::Status status;
};

struct BlModel {
  std::string name;
  int64_t version = 0;
  std::string version_path;
  std::string config_bytes;  // serialized inference.ModelConfig
};

struct BlInstance {
  std::string name;
  BlInstanceKind kind = BL_INSTANCE_CPU;
  int32_t device_id = -1;
};

namespace beamline {

// Where a batch's outputs go. Implemented by the scheduler for each execution; with one request in
// the batch it forwards straight to that request's ResponseSink.
class BatchOutputTarget {
 public:
  virtual ~BatchOutputTarget() = default;
  virtual bool isRequested(std::string_view name) const = 0;
  virtual Result<std::byte*> allocate(std::string_view name, DataType datatype,
                                      std::span<const int64_t> shape, uint64_t byte_size) = 0;
};

}  // namespace beamline

struct BlBatch {
  struct Input {
    const char* name = nullptr;  // NUL-terminated, owned by the request (or the batch)
    BlDataType datatype = BL_TYPE_INVALID;
    std::span<const int64_t> shape;
    std::span<const std::byte> data;
  };
  std::vector<Input> inputs;
  std::vector<const beamline::InferenceRequest*> requests;
  beamline::BatchOutputTarget* outputs = nullptr;
  uint64_t input_end_ns = 0;
  uint64_t infer_end_ns = 0;
  bool times_reported = false;
  beamline::Status output_error;  // first failure seen by batchOutputAllocate

  // Empties the batch but keeps its capacity, so an instance reuses one BlBatch per execution.
  void clear() {
    inputs.clear();
    requests.clear();
    outputs = nullptr;
    input_end_ns = infer_end_ns = 0;
    times_reported = false;
    output_error = beamline::Status::ok();
  }
};

namespace beamline {

// The host API table handed to every backend.
const BlHostApi* hostApi();

// Converts a backend's error (taking ownership; NULL is OK) into a Status.
Status takeBackendError(BlError* error);

uint64_t monotonicNowNs();

// One opened backend library.
class Backend {
 public:
  // Opens `path`, checks the ABI version and calls the backend's init.
  static Result<std::shared_ptr<Backend>> open(const std::string& name,
                                               const std::filesystem::path& path);
  ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  const std::string& name() const { return name_; }
  const BlBackendApi& api() const { return api_; }

 private:
  Backend(std::string name, void* handle) : name_(std::move(name)), handle_(handle) {}
  std::string name_;
  void* handle_ = nullptr;  // from dlopen; closed in the destructor
  BlBackendApi api_{};
};

// Finds backends by name in the configured directories and keeps them open while in use.
class BackendRegistry {
 public:
  explicit BackendRegistry(std::vector<std::string> directories);

  // The backend called `name` (e.g. "pytorch", "identity"), opened on first use.
  Result<std::shared_ptr<Backend>> get(const std::string& name);

  const std::vector<std::string>& directories() const { return directories_; }

 private:
  std::vector<std::string> directories_;
  std::mutex mutex_;  // guards backends_
  std::map<std::string, std::weak_ptr<Backend>> backends_;
};

}  // namespace beamline
