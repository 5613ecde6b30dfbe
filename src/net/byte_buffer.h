// An owned, fixed-size byte buffer that is not zero-filled on allocation: request bodies are read
// into it and backends write output tensors into it, each byte written once.
// A plain value type (move-only); no thread-safety of its own.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

namespace beamline::net {

class ByteBuffer {
 public:
  ByteBuffer() = default;
  // `size` bytes of uninitialised memory. Throws std::bad_alloc like operator new.
  static ByteBuffer uninitialized(size_t size) {
    ByteBuffer buffer;
    buffer.data_ = std::make_unique_for_overwrite<std::byte[]>(size == 0 ? 1 : size);
    buffer.size_ = size;
    return buffer;
  }

  std::byte* data() { return data_.get(); }
  const std::byte* data() const { return data_.get(); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::span<const std::byte> bytes() const { return {data_.get(), size_}; }
  std::string_view view() const { return {reinterpret_cast<const char*>(data_.get()), size_}; }
  // Forgets the bytes after `size` (the memory stays allocated).
  void truncate(size_t size) {
    if (size < size_) size_ = size;
  }

 private:
  std::unique_ptr<std::byte[]> data_;
  size_t size_ = 0;
};

}  // namespace beamline::net
