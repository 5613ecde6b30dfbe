// CUDA shared-memory regions: see include/beamline/client/shared_memory.h. Compiled against the
// CUDA runtime API when the build has CUDA (BEAMLINE_WITH_CUDA); otherwise every call answers
// UNSUPPORTED. Only the runtime's static library is linked, so binaries start without a driver.
#include "beamline/client/shared_memory.h"

#if BEAMLINE_CLIENT_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#include <cstring>

namespace beamline::client {

#if BEAMLINE_CLIENT_WITH_CUDA

namespace {

Status cudaStatus(cudaError_t error, const std::string& what) {
  if (error == cudaSuccess) return Status::ok();
  return internalError(what + ": " + cudaGetErrorString(error));
}

}  // namespace

bool CudaSharedMemoryRegion::available() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

Result<std::unique_ptr<CudaSharedMemoryRegion>> CudaSharedMemoryRegion::create(int device,
                                                                                size_t byte_size) {
  if (byte_size == 0) return invalidArg("CUDA shared-memory region of size 0");
  BL_RETURN_IF_ERROR(cudaStatus(cudaSetDevice(device), "cudaSetDevice(" + std::to_string(device) + ")"));
  std::unique_ptr<CudaSharedMemoryRegion> region(new CudaSharedMemoryRegion());
  region->device_ = device;
  BL_RETURN_IF_ERROR(cudaStatus(cudaMalloc(&region->device_pointer_, byte_size),
                                "cudaMalloc(" + std::to_string(byte_size) + ")"));
  region->size_ = byte_size;
  cudaIpcMemHandle_t handle;
  BL_RETURN_IF_ERROR(
      cudaStatus(cudaIpcGetMemHandle(&handle, region->device_pointer_), "cudaIpcGetMemHandle"));
  region->raw_handle_.resize(sizeof(handle));
  std::memcpy(region->raw_handle_.data(), &handle, sizeof(handle));
  return region;
}

CudaSharedMemoryRegion::~CudaSharedMemoryRegion() {
  if (device_pointer_ != nullptr) {
    cudaSetDevice(device_);
    cudaFree(device_pointer_);
  }
}

Status CudaSharedMemoryRegion::copyFromHost(size_t offset, std::span<const std::byte> data) {
  if (offset > size_ || data.size() > size_ - offset) {
    return invalidArg("copy of " + std::to_string(data.size()) + " bytes at " +
                      std::to_string(offset) + " exceeds the " + std::to_string(size_) +
                      "-byte CUDA region");
  }
  BL_RETURN_IF_ERROR(cudaStatus(cudaSetDevice(device_), "cudaSetDevice"));
  return cudaStatus(cudaMemcpy(static_cast<std::byte*>(device_pointer_) + offset, data.data(),
                               data.size(), cudaMemcpyHostToDevice),
                    "cudaMemcpy host to device");
}

Status CudaSharedMemoryRegion::copyToHost(size_t offset, std::span<std::byte> out) const {
  if (offset > size_ || out.size() > size_ - offset) {
    return invalidArg("copy of " + std::to_string(out.size()) + " bytes at " +
                      std::to_string(offset) + " exceeds the " + std::to_string(size_) +
                      "-byte CUDA region");
  }
  BL_RETURN_IF_ERROR(cudaStatus(cudaSetDevice(device_), "cudaSetDevice"));
  return cudaStatus(cudaMemcpy(out.data(), static_cast<const std::byte*>(device_pointer_) + offset,
                               out.size(), cudaMemcpyDeviceToHost),
                    "cudaMemcpy device to host");
}

#else  // no CUDA in this build

bool CudaSharedMemoryRegion::available() { return false; }

Result<std::unique_ptr<CudaSharedMemoryRegion>> CudaSharedMemoryRegion::create(int, size_t) {
  return unsupported("this build of beamline has no CUDA (BEAMLINE_WITH_CUDA is OFF)");
}

CudaSharedMemoryRegion::~CudaSharedMemoryRegion() = default;

Status CudaSharedMemoryRegion::copyFromHost(size_t, std::span<const std::byte>) {
  return unsupported("this build of beamline has no CUDA");
}

Status CudaSharedMemoryRegion::copyToHost(size_t, std::span<std::byte>) const {
  return unsupported("this build of beamline has no CUDA");
}

#endif

}  // namespace beamline::client
