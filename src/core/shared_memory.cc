#include "beamline/core/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#if BEAMLINE_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace beamline {
namespace {

// A POSIX shared-memory object mapped into this process.
class SystemRegion final : public SharedMemoryRegion {
 public:
  SystemRegion(std::string name, void* mapping, size_t mapping_size, uint64_t offset,
               uint64_t byte_size)
      : SharedMemoryRegion(std::move(name), static_cast<std::byte*>(mapping) + offset, byte_size,
                           false),
        mapping_(mapping), mapping_size_(mapping_size) {}
  ~SystemRegion() override { munmap(mapping_, mapping_size_); }

 private:
  void* mapping_;
  size_t mapping_size_;
};

#if BEAMLINE_WITH_CUDA
// Device memory of another process, opened from its IPC handle.
class CudaRegion final : public SharedMemoryRegion {
 public:
  CudaRegion(std::string name, void* device_pointer, uint64_t byte_size, int device)
      : SharedMemoryRegion(std::move(name), static_cast<std::byte*>(device_pointer), byte_size,
                           true),
        device_(device) {}
  ~CudaRegion() override {
    int previous = 0;
    if (cudaGetDevice(&previous) == cudaSuccess) {
      cudaSetDevice(device_);
      cudaIpcCloseMemHandle(base_);
      cudaSetDevice(previous);
    }
  }

 private:
  int device_;
};
#endif

Status disabled() {
  return unavailable(
      "client shared memory is disabled on this server; start it with --allow-client-shm");
}

}  // namespace

Result<std::span<std::byte>> SharedMemoryRegion::range(uint64_t offset, uint64_t size) const {
  if (offset > byte_size_ || size > byte_size_ - offset) {
    return invalidArg("shared memory region '" + name_ + "' has " + std::to_string(byte_size_) +
                      " bytes; offset " + std::to_string(offset) + " + size " +
                      std::to_string(size) + " is outside it");
  }
  return std::span<std::byte>(base_ + offset, size);
}

Status SharedMemoryRegion::copyToHost(uint64_t offset, uint64_t size, std::byte* destination) const {
  BL_ASSIGN_OR_RETURN(auto bytes, range(offset, size));
  if (size == 0) return Status::ok();
  if (!cuda_) {
    std::memcpy(destination, bytes.data(), size);
    return Status::ok();
  }
#if BEAMLINE_WITH_CUDA
  const cudaError_t error = cudaMemcpy(destination, bytes.data(), size, cudaMemcpyDeviceToHost);
  if (error != cudaSuccess) {
    return internalError("CUDA shared memory region '" + name_ + "': " + cudaGetErrorString(error));
  }
  return Status::ok();
#else
  return unsupported("CUDA shared memory is not available in this build");
#endif
}

SharedMemoryManager::~SharedMemoryManager() {
  std::lock_guard lock(mutex_);
  regions_.clear();  // mappings go when the last in-flight request lets go of them
}

Status SharedMemoryManager::registerSystem(const std::string& name, const std::string& key,
                                           uint64_t offset, uint64_t byte_size) {
  if (!allowed_) return disabled();
  if (name.empty()) return invalidArg("a shared memory region needs a name");
  if (byte_size == 0) return invalidArg("shared memory region '" + name + "': byte_size is 0");
  {
    std::lock_guard lock(mutex_);
    if (regions_.count(name) > 0) {
      return alreadyExists("shared memory region '" + name + "' is already registered");
    }
  }
  const int fd = shm_open(key.c_str(), O_RDWR, 0);
  if (fd < 0) {
    return invalidArg("shared memory region '" + name + "': cannot open key '" + key +
                      "': " + std::strerror(errno));
  }
  struct stat info {};
  if (fstat(fd, &info) != 0) {
    const int error = errno;
    close(fd);
    return internalError("shared memory region '" + name + "': " + std::strerror(error));
  }
  const auto file_size = static_cast<uint64_t>(info.st_size);
  if (offset > file_size || byte_size > file_size - offset) {
    close(fd);
    return invalidArg("shared memory region '" + name + "': offset " + std::to_string(offset) +
                      " + byte_size " + std::to_string(byte_size) + " exceeds the " +
                      std::to_string(file_size) + " bytes of '" + key + "'");
  }
  const size_t mapping_size = static_cast<size_t>(offset + byte_size);
  void* mapping = mmap(nullptr, mapping_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int map_error = errno;
  close(fd);
  if (mapping == MAP_FAILED) {
    return internalError("shared memory region '" + name + "': mmap failed: " +
                         std::strerror(map_error));
  }
  auto region = std::make_shared<SystemRegion>(name, mapping, mapping_size, offset, byte_size);
  std::lock_guard lock(mutex_);
  if (regions_.count(name) > 0) {
    return alreadyExists("shared memory region '" + name + "' is already registered");
  }
  Entry entry;
  entry.region = std::move(region);
  entry.system = {name, key, offset, byte_size};
  regions_.emplace(name, std::move(entry));
  return Status::ok();
}

Status SharedMemoryManager::registerCuda(const std::string& name, const std::string& raw_handle,
                                         int64_t device_id, uint64_t byte_size) {
  if (!allowed_) return disabled();
#if BEAMLINE_WITH_CUDA
  if (name.empty()) return invalidArg("a shared memory region needs a name");
  if (raw_handle.size() != sizeof(cudaIpcMemHandle_t)) {
    return invalidArg("CUDA shared memory region '" + name + "': raw_handle has " +
                      std::to_string(raw_handle.size()) + " bytes, a cudaIpcMemHandle_t has " +
                      std::to_string(sizeof(cudaIpcMemHandle_t)));
  }
  {
    std::lock_guard lock(mutex_);
    if (regions_.count(name) > 0) {
      return alreadyExists("shared memory region '" + name + "' is already registered");
    }
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || device_id < 0 || device_id >= count) {
    return invalidArg("CUDA shared memory region '" + name + "': no CUDA device " +
                      std::to_string(device_id) + " on this server");
  }
  cudaIpcMemHandle_t handle;
  std::memcpy(&handle, raw_handle.data(), sizeof handle);
  int previous = 0;
  cudaGetDevice(&previous);
  cudaSetDevice(static_cast<int>(device_id));
  void* pointer = nullptr;
  const cudaError_t error = cudaIpcOpenMemHandle(&pointer, handle, cudaIpcMemLazyEnablePeerAccess);
  cudaSetDevice(previous);
  if (error != cudaSuccess) {
    return invalidArg("CUDA shared memory region '" + name +
                      "': cannot open the IPC handle: " + cudaGetErrorString(error));
  }
  auto region = std::make_shared<CudaRegion>(name, pointer, byte_size, static_cast<int>(device_id));
  std::lock_guard lock(mutex_);
  Entry entry;
  entry.region = std::move(region);
  entry.cuda = {name, device_id, byte_size};
  regions_.emplace(name, std::move(entry));
  return Status::ok();
#else
  (void)raw_handle;
  (void)device_id;
  (void)byte_size;
  return unsupported("CUDA shared memory region '" + name +
                     "': this server was built without CUDA");
#endif
}

Status SharedMemoryManager::unregister(const std::string& name, bool cuda) {
  std::lock_guard lock(mutex_);
  if (name.empty()) {
    for (auto it = regions_.begin(); it != regions_.end();) {
      it = it->second.region->isCuda() == cuda ? regions_.erase(it) : std::next(it);
    }
    return Status::ok();
  }
  auto it = regions_.find(name);
  if (it == regions_.end() || it->second.region->isCuda() != cuda) {
    return notFound(std::string(cuda ? "CUDA" : "system") + " shared memory region '" + name +
                    "' is not registered");
  }
  regions_.erase(it);
  return Status::ok();
}

Status SharedMemoryManager::unregisterSystem(const std::string& name) {
  return unregister(name, false);
}
Status SharedMemoryManager::unregisterCuda(const std::string& name) {
  return unregister(name, true);
}

Result<std::vector<SystemRegionStatus>> SharedMemoryManager::systemStatus(
    const std::string& name) const {
  std::lock_guard lock(mutex_);
  std::vector<SystemRegionStatus> result;
  for (const auto& [region_name, entry] : regions_) {
    if (entry.region->isCuda() || (!name.empty() && region_name != name)) continue;
    result.push_back(entry.system);
  }
  if (!name.empty() && result.empty()) {
    return notFound("system shared memory region '" + name + "' is not registered");
  }
  return result;
}

Result<std::vector<CudaRegionStatus>> SharedMemoryManager::cudaStatus(
    const std::string& name) const {
  std::lock_guard lock(mutex_);
  std::vector<CudaRegionStatus> result;
  for (const auto& [region_name, entry] : regions_) {
    if (!entry.region->isCuda() || (!name.empty() && region_name != name)) continue;
    result.push_back(entry.cuda);
  }
  if (!name.empty() && result.empty()) {
    return notFound("CUDA shared memory region '" + name + "' is not registered");
  }
  return result;
}

Result<std::shared_ptr<const SharedMemoryRegion>> SharedMemoryManager::find(
    const std::string& name) const {
  std::lock_guard lock(mutex_);
  auto it = regions_.find(name);
  if (it == regions_.end()) {
    return invalidArg("shared memory region '" + name + "' is not registered");
  }
  return it->second.region;
}

}  // namespace beamline
