// Client shared memory (the system_shared_memory and cuda_shared_memory protocol extensions):
// regions a co-located client registers by name, from which request inputs are read and into
// which outputs are written, instead of travelling over the socket.
//
// Threads: thread-safe (one mutex). Ownership: a region is mapped while it is registered or while a
// request that uses it is in flight (requests hold a shared_ptr to it), and unmapped after both.
// Unregistering never invalidates memory a running request reads or writes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "beamline/core/status.h"

namespace beamline {

// One mapped region.
class SharedMemoryRegion {
 public:
  virtual ~SharedMemoryRegion() = default;
  const std::string& name() const { return name_; }
  uint64_t byteSize() const { return byte_size_; }
  bool isCuda() const { return cuda_; }

  // The bytes [offset, offset + size) of the region; INVALID_ARG (naming the region) when that
  // range is not inside it.
  Result<std::span<std::byte>> range(uint64_t offset, uint64_t size) const;
  // Copies [offset, offset + size) into host memory (device-to-host for CUDA regions).
  Status copyToHost(uint64_t offset, uint64_t size, std::byte* destination) const;

 protected:
  SharedMemoryRegion(std::string name, std::byte* base, uint64_t byte_size, bool cuda)
      : name_(std::move(name)), base_(base), byte_size_(byte_size), cuda_(cuda) {}
  std::string name_;
  std::byte* base_ = nullptr;  // the registered range, not the whole mapping
  uint64_t byte_size_ = 0;
  bool cuda_ = false;
};

struct SystemRegionStatus {
  std::string name, key;
  uint64_t offset = 0, byte_size = 0;
};
struct CudaRegionStatus {
  std::string name;
  int64_t device_id = 0;
  uint64_t byte_size = 0;
};

class SharedMemoryManager {
 public:
  // `allowed`: --allow-client-shm. When false, registering answers UNAVAILABLE (status and
  // unregister still work, with nothing registered).
  explicit SharedMemoryManager(bool allowed) : allowed_(allowed) {}
  ~SharedMemoryManager();

  bool allowed() const { return allowed_; }

  // System shared memory: shm_open(key) and map [offset, offset + byte_size) of it.
  Status registerSystem(const std::string& name, const std::string& key, uint64_t offset,
                        uint64_t byte_size);
  // CUDA shared memory: a cudaIpcMemHandle_t from another process on device `device_id`.
  // UNSUPPORTED in builds without CUDA.
  Status registerCuda(const std::string& name, const std::string& raw_handle, int64_t device_id,
                      uint64_t byte_size);
  // Empty name: every region of that kind. NOT_FOUND for an unknown name.
  Status unregisterSystem(const std::string& name);
  Status unregisterCuda(const std::string& name);
  Result<std::vector<SystemRegionStatus>> systemStatus(const std::string& name) const;
  Result<std::vector<CudaRegionStatus>> cudaStatus(const std::string& name) const;

  // The region to read an input from or write an output to; INVALID_ARG when unknown.
  Result<std::shared_ptr<const SharedMemoryRegion>> find(const std::string& name) const;

 private:
  struct Entry {
    std::shared_ptr<const SharedMemoryRegion> region;
    SystemRegionStatus system;
    CudaRegionStatus cuda;
  };
  Status unregister(const std::string& name, bool cuda);

  const bool allowed_;
  mutable std::mutex mutex_;  // guards regions_
  std::map<std::string, Entry> regions_;  // one namespace for system and CUDA regions
};

}  // namespace beamline
