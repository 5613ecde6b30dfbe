#include "beamline/core/datatype.h"

#include <array>

namespace beamline {
namespace {

struct DataTypeInfo {
  DataType type;
  std::string_view wire_name;
  std::string_view config_name;
  size_t byte_size;
};

// Indexed by the enum's value. BYTES is "TYPE_STRING" in config.pbtxt (a Triton naming legacy).
constexpr std::array<DataTypeInfo, 15> kDataTypes = {{
    {DataType::kInvalid, "INVALID", "TYPE_INVALID", 0},
    {DataType::kBool, "BOOL", "TYPE_BOOL", 1},
    {DataType::kUint8, "UINT8", "TYPE_UINT8", 1},
    {DataType::kUint16, "UINT16", "TYPE_UINT16", 2},
    {DataType::kUint32, "UINT32", "TYPE_UINT32", 4},
    {DataType::kUint64, "UINT64", "TYPE_UINT64", 8},
    {DataType::kInt8, "INT8", "TYPE_INT8", 1},
    {DataType::kInt16, "INT16", "TYPE_INT16", 2},
    {DataType::kInt32, "INT32", "TYPE_INT32", 4},
    {DataType::kInt64, "INT64", "TYPE_INT64", 8},
    {DataType::kFp16, "FP16", "TYPE_FP16", 2},
    {DataType::kFp32, "FP32", "TYPE_FP32", 4},
    {DataType::kFp64, "FP64", "TYPE_FP64", 8},
    {DataType::kBytes, "BYTES", "TYPE_STRING", 0},
    {DataType::kBf16, "BF16", "TYPE_BF16", 2},
}};

const DataTypeInfo& info(DataType type) {
  const auto index = static_cast<size_t>(type);
  return index < kDataTypes.size() ? kDataTypes[index] : kDataTypes[0];
}

}  // namespace

std::string_view dataTypeWireName(DataType type) { return info(type).wire_name; }

std::optional<DataType> dataTypeFromWireName(std::string_view name) {
  // "INVALID" is not a wire type, so the search starts after it.
  for (size_t i = 1; i < kDataTypes.size(); ++i) {
    if (kDataTypes[i].wire_name == name) {
      return kDataTypes[i].type;
    }
  }
  return std::nullopt;
}

std::string_view dataTypeConfigName(DataType type) { return info(type).config_name; }

size_t dataTypeByteSize(DataType type) { return info(type).byte_size; }

}  // namespace beamline
