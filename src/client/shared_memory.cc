// POSIX shared-memory regions: see include/beamline/client/shared_memory.h.
#include "beamline/client/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

namespace beamline::client {

namespace {

std::string errnoText(int error) { return std::strerror(error); }

}  // namespace

std::string makeSharedMemoryKey(std::string_view tag) {
  static std::atomic<uint64_t> counter{0};
  std::string key = "/beamline_" + std::to_string(::getpid()) + "_";
  key += tag;
  key += "_" + std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
  return key;
}

Result<std::unique_ptr<SharedMemoryRegion>> SharedMemoryRegion::create(std::string key,
                                                                        size_t byte_size) {
  if (key.size() < 2 || key[0] != '/' || key.find('/', 1) != std::string::npos) {
    return invalidArg("shared-memory key '" + key + "' must be '/' followed by a name");
  }
  if (byte_size == 0) return invalidArg("shared-memory region '" + key + "' of size 0");
  const int fd = ::shm_open(key.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) {
    const int error = errno;
    return Status(error == EEXIST ? StatusCode::kAlreadyExists : StatusCode::kInternal,
                  "shm_open('" + key + "'): " + errnoText(error));
  }
  if (::ftruncate(fd, static_cast<off_t>(byte_size)) != 0) {
    const int error = errno;
    ::close(fd);
    ::shm_unlink(key.c_str());
    return internalError("ftruncate('" + key + "', " + std::to_string(byte_size) +
                         "): " + errnoText(error));
  }
  void* mapped = ::mmap(nullptr, byte_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int error = errno;
  ::close(fd);  // the mapping keeps the object
  if (mapped == MAP_FAILED) {
    ::shm_unlink(key.c_str());
    return internalError("mmap('" + key + "', " + std::to_string(byte_size) +
                         "): " + errnoText(error));
  }
  return std::unique_ptr<SharedMemoryRegion>(
      new SharedMemoryRegion(std::move(key), static_cast<std::byte*>(mapped), byte_size));
}

SharedMemoryRegion::~SharedMemoryRegion() {
  if (data_ != nullptr) ::munmap(data_, size_);
  ::shm_unlink(key_.c_str());
}

}  // namespace beamline::client
