#include "beamline/core/tensor.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace beamline {
namespace {

constexpr size_t kLengthPrefixBytes = 4;

// Reads the 4-byte little-endian length prefix at `p`, independent of the host's byte order.
uint32_t readLittleEndian32(const std::byte* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

// Walks BYTES framing, calling `on_element(view)` for every element. Stops with an error that
// names the element index and byte offset when the framing is broken, or when there are more
// elements than `max_count` (-1: no limit).
template <typename OnElement>
Result<int64_t> walkBytesElements(std::span<const std::byte> data, int64_t max_count,
                                  OnElement&& on_element) {
  int64_t count = 0;
  size_t offset = 0;
  while (offset < data.size()) {
    if (max_count >= 0 && count == max_count) {
      return invalidArg("BYTES data has more than the expected " + std::to_string(max_count) +
                        " element(s): element " + std::to_string(count) +
                        " starts at byte offset " + std::to_string(offset) + " of " +
                        std::to_string(data.size()));
    }
    const size_t remaining = data.size() - offset;
    if (remaining < kLengthPrefixBytes) {
      return invalidArg("BYTES element " + std::to_string(count) + " at byte offset " +
                        std::to_string(offset) + ": truncated length prefix (needs 4 bytes, " +
                        std::to_string(remaining) + " left)");
    }
    const uint32_t length = readLittleEndian32(data.data() + offset);
    if (length > remaining - kLengthPrefixBytes) {
      return invalidArg("BYTES element " + std::to_string(count) + " at byte offset " +
                        std::to_string(offset) + ": length prefix says " + std::to_string(length) +
                        " bytes but only " + std::to_string(remaining - kLengthPrefixBytes) +
                        " follow");
    }
    const std::byte* begin = data.data() + offset + kLengthPrefixBytes;
    on_element(std::string_view(reinterpret_cast<const char*>(begin), length));
    offset += kLengthPrefixBytes + length;
    ++count;
  }
  return count;
}

Status countMismatch(int64_t actual, int64_t expected, size_t byte_size) {
  return invalidArg("BYTES data holds " + std::to_string(actual) + " element(s) in " +
                    std::to_string(byte_size) + " bytes, expected " + std::to_string(expected));
}

}  // namespace

std::string shapeToString(std::span<const int64_t> shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) {
      text += ',';
    }
    text += std::to_string(shape[i]);
  }
  text += ']';
  return text;
}

Result<int64_t> elementCount(std::span<const int64_t> shape) {
  int64_t count = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    const int64_t dim = shape[i];
    if (dim < 0) {
      return invalidArg("shape " + shapeToString(shape) + ": dimension " + std::to_string(i) +
                        " is " + std::to_string(dim) + ", expected a size >= 0");
    }
    if (dim != 0 && count > std::numeric_limits<int64_t>::max() / dim) {
      // Keep going: a later zero makes the product 0, which is representable. Only report
      // overflow when no zero dimension follows.
      bool zero_follows = false;
      for (size_t j = i + 1; j < shape.size(); ++j) {
        if (shape[j] < 0) {
          return invalidArg("shape " + shapeToString(shape) + ": dimension " + std::to_string(j) +
                            " is " + std::to_string(shape[j]) + ", expected a size >= 0");
        }
        zero_follows = zero_follows || shape[j] == 0;
      }
      if (zero_follows) {
        return int64_t{0};
      }
      return invalidArg("shape " + shapeToString(shape) +
                        ": element count overflows a 64-bit integer");
    }
    count *= dim;
  }
  return count;
}

Result<uint64_t> fixedByteSize(DataType type, std::span<const int64_t> shape) {
  const size_t element_size = dataTypeByteSize(type);
  if (element_size == 0) {
    return invalidArg("datatype " + std::string(dataTypeWireName(type)) +
                      " has no fixed element size");
  }
  BL_ASSIGN_OR_RETURN(const int64_t count, elementCount(shape));
  const auto unsigned_count = static_cast<uint64_t>(count);
  if (unsigned_count > std::numeric_limits<uint64_t>::max() / element_size) {
    return invalidArg("shape " + shapeToString(shape) + " of " +
                      std::string(dataTypeWireName(type)) +
                      ": byte size overflows a 64-bit integer");
  }
  return unsigned_count * element_size;
}

bool shapeMatches(std::span<const int64_t> shape, std::span<const int64_t> dims) {
  if (shape.size() != dims.size()) {
    return false;
  }
  for (size_t i = 0; i < shape.size(); ++i) {
    if (dims[i] != -1 && dims[i] != shape[i]) {
      return false;
    }
  }
  return true;
}

void appendBytesElement(std::string& out, std::string_view element) {
  if (element.size() > std::numeric_limits<uint32_t>::max()) {
    // The 4-byte prefix cannot describe it. Like running out of memory while appending, this is
    // not a recoverable request error: no transport carries a single element this large.
    throw std::length_error("BYTES element of " + std::to_string(element.size()) +
                            " bytes exceeds the 4 GiB limit of its length prefix");
  }
  const auto length = static_cast<uint32_t>(element.size());
  const char prefix[kLengthPrefixBytes] = {
      static_cast<char>(length & 0xffU), static_cast<char>((length >> 8) & 0xffU),
      static_cast<char>((length >> 16) & 0xffU), static_cast<char>((length >> 24) & 0xffU)};
  out.append(prefix, kLengthPrefixBytes);
  out.append(element);
}

size_t serializedBytesSize(std::span<const std::string_view> elements) {
  size_t total = 0;
  for (const std::string_view element : elements) {
    total += kLengthPrefixBytes + element.size();
  }
  return total;
}

Result<std::vector<std::string_view>> splitBytesElements(std::span<const std::byte> data,
                                                         int64_t expected_count) {
  std::vector<std::string_view> elements;
  if (expected_count > 0) {
    // Never trust the count for the allocation: each element takes at least 4 bytes.
    elements.reserve(static_cast<size_t>(std::min<uint64_t>(static_cast<uint64_t>(expected_count),
                                                            data.size() / kLengthPrefixBytes)));
  }
  BL_ASSIGN_OR_RETURN(const int64_t count,
                      walkBytesElements(data, expected_count, [&](std::string_view element) {
                        elements.push_back(element);
                      }));
  if (expected_count >= 0 && count != expected_count) {
    return countMismatch(count, expected_count, data.size());
  }
  return elements;
}

Result<int64_t> countBytesElements(std::span<const std::byte> data) {
  return walkBytesElements(data, -1, [](std::string_view) {});
}

}  // namespace beamline
