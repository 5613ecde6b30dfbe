// Reading and writing NumPy .npy files (format versions 1.0, 2.0 and 3.0), for the `beamline infer`
// command's --input, --expect and --save. Pure functions; any thread.
//
// Supported: C-order arrays of little-endian (or single-byte) numbers, mapped to the protocol's
// datatypes: <f2 FP16, <f4 FP32, <f8 FP64, |i1 <i2 <i4 <i8 INT8..INT64, |u1 <u2 <u4 <u8
// UINT8..UINT64, |b1 BOOL; and fixed-width byte strings |S<n>, mapped to BYTES (trailing NULs
// removed, as NumPy does). Not supported, with an error that says so: Fortran order, big-endian
// data, unicode (<U), object (|O, pickled) and structured dtypes. BF16 has no NumPy dtype.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "beamline/core/datatype.h"
#include "beamline/core/status.h"
#include "beamline/core/tensor.h"

namespace beamline::tools {

// An array read from a .npy file. `data` is row-major little-endian; for BYTES it holds the
// protocol's encoding (4-byte little-endian length + bytes, per element).
struct NpyArray {
  DataType datatype = DataType::kInvalid;
  Shape shape;
  std::vector<std::byte> data;
};

// Reads a whole .npy file. INVALID_ARG for a malformed or unsupported file, NOT_FOUND when it
// cannot be opened; messages name the file.
Result<NpyArray> readNpy(const std::filesystem::path& path);

// Parses the bytes of a .npy file (what readNpy() does after reading the file).
Result<NpyArray> parseNpy(std::span<const std::byte> file);

// Writes `data` (row-major little-endian; BYTES in the protocol's encoding, written as |S<n>)
// as a .npy file, replacing any file there. INVALID_ARG when the size does not match the shape or
// the datatype has no NumPy equivalent (BF16).
Status writeNpy(const std::filesystem::path& path, DataType datatype,
                std::span<const int64_t> shape, std::span<const std::byte> data);

// The bytes writeNpy() would write.
Result<std::string> encodeNpy(DataType datatype, std::span<const int64_t> shape,
                              std::span<const std::byte> data);

}  // namespace beamline::tools
