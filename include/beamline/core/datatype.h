// Tensor element types, with the names used on the wire ("FP32"), in config.pbtxt ("TYPE_FP32")
// and their sizes. Pure functions; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace beamline {

// Numbers equal model_config.proto's DataType enum and the backend ABI's BlDataType.
enum class DataType : int {
  kInvalid = 0,
  kBool = 1,
  kUint8 = 2,
  kUint16 = 3,
  kUint32 = 4,
  kUint64 = 5,
  kInt8 = 6,
  kInt16 = 7,
  kInt32 = 8,
  kInt64 = 9,
  kFp16 = 10,
  kFp32 = 11,
  kFp64 = 12,
  kBytes = 13,
  kBf16 = 14,
};

// "FP32", "BYTES", ...; "INVALID" for kInvalid.
std::string_view dataTypeWireName(DataType type);
// Parses a wire name ("FP32"); nullopt when unknown.
std::optional<DataType> dataTypeFromWireName(std::string_view name);
// "TYPE_FP32", "TYPE_STRING", ...
std::string_view dataTypeConfigName(DataType type);
// Size of one element in bytes; 0 for BYTES (variable) and kInvalid.
size_t dataTypeByteSize(DataType type);

}  // namespace beamline
