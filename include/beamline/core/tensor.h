// Shapes, tensor views and the BYTES element encoding (4-byte little-endian length, then the bytes).
// Pure functions and plain values; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "beamline/core/datatype.h"
#include "beamline/core/status.h"

namespace beamline {

using Shape = std::vector<int64_t>;

// "[2,3,-1]"
std::string shapeToString(std::span<const int64_t> shape);

// Number of elements of a concrete shape. Error when a dimension is negative or the product
// overflows int64.
Result<int64_t> elementCount(std::span<const int64_t> shape);

// Byte size of a tensor of fixed-size type with this shape; error for BYTES or a bad shape.
Result<uint64_t> fixedByteSize(DataType type, std::span<const int64_t> shape);

// True when `shape` matches `dims`, where -1 in `dims` matches any size.
bool shapeMatches(std::span<const int64_t> shape, std::span<const int64_t> dims);

// A non-owning view of one tensor's bytes. The owner (a request message, a response buffer) must
// outlive the view; who owns it is said where views are handed out.
struct TensorView {
  std::string_view name;
  DataType datatype = DataType::kInvalid;
  std::span<const int64_t> shape;
  std::span<const std::byte> data;
};

// BYTES encoding.
// Appends one element (length prefix + bytes) to `out`.
void appendBytesElement(std::string& out, std::string_view element);
// Serialized size of the given elements.
size_t serializedBytesSize(std::span<const std::string_view> elements);
// Splits serialized BYTES data into element views over `data`. Fails with a message that says
// where, when a length prefix runs past the end or the count differs from `expected_count`
// (pass -1 to accept any count).
Result<std::vector<std::string_view>> splitBytesElements(std::span<const std::byte> data,
                                                         int64_t expected_count);
// Counts the elements, validating the framing, without materialising views.
Result<int64_t> countBytesElements(std::span<const std::byte> data);

}  // namespace beamline
