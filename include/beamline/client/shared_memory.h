// Client-side shared memory: the memory a client creates and registers with a server on the same
// host, so that tensors travel without being serialized or copied through the socket.
//
// - SharedMemoryRegion: a POSIX shared-memory object (shm_open + ftruncate + mmap) made by this
//   process, registered with the server by its key (SystemSharedMemoryRegister). The object is
//   unlinked and unmapped when the region is destroyed.
// - CudaSharedMemoryRegion: device memory exported with cudaIpcGetMemHandle, registered with
//   CudaSharedMemoryRegister. Compiled when the build has CUDA (BEAMLINE_WITH_CUDA); elsewhere
//   create() answers UNSUPPORTED.
//
// Threads: a region is owned by one client; it is created and destroyed on the client's thread.
// Its bytes are written by the client before a call and read by the server (or by the client
// after the call), so no two parties touch them at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "beamline/core/status.h"

namespace beamline::client {

class SharedMemoryRegion {
 public:
  // Creates the object `key` (a name starting with '/', created exclusively: an existing object of
  // that name is an error), sized `byte_size` (> 0), and maps it read-write.
  static Result<std::unique_ptr<SharedMemoryRegion>> create(std::string key, size_t byte_size);
  // Unmaps and unlinks.
  ~SharedMemoryRegion();
  SharedMemoryRegion(const SharedMemoryRegion&) = delete;
  SharedMemoryRegion& operator=(const SharedMemoryRegion&) = delete;

  const std::string& key() const { return key_; }
  std::span<std::byte> bytes() const { return {data_, size_}; }
  std::byte* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  SharedMemoryRegion(std::string key, std::byte* data, size_t size)
      : key_(std::move(key)), data_(data), size_(size) {}

  std::string key_;
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// A unique key for a region of this process: "/beamline_<pid>_<tag>_<counter>".
std::string makeSharedMemoryKey(std::string_view tag);

class CudaSharedMemoryRegion {
 public:
  // True when the build has CUDA and a device is visible.
  static bool available();
  // cudaMalloc on `device` + cudaIpcGetMemHandle.
  static Result<std::unique_ptr<CudaSharedMemoryRegion>> create(int device, size_t byte_size);
  ~CudaSharedMemoryRegion();
  CudaSharedMemoryRegion(const CudaSharedMemoryRegion&) = delete;
  CudaSharedMemoryRegion& operator=(const CudaSharedMemoryRegion&) = delete;

  int device() const { return device_; }
  size_t size() const { return size_; }
  // The cudaIpcMemHandle_t's bytes, for CudaSharedMemoryRegister.
  std::span<const std::byte> rawHandle() const { return raw_handle_; }
  // Host <-> device copies at `offset` (synchronous).
  Status copyFromHost(size_t offset, std::span<const std::byte> data);
  Status copyToHost(size_t offset, std::span<std::byte> out) const;

 private:
  CudaSharedMemoryRegion() = default;

  int device_ = 0;
  void* device_pointer_ = nullptr;
  size_t size_ = 0;
  std::vector<std::byte> raw_handle_;
};

}  // namespace beamline::client
