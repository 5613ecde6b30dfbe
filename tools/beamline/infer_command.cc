// `beamline infer`: send one (or --count) inference requests to a KServe v2 / Triton gRPC server,
// with inputs from .npy files or generated, then summarise, save or check the outputs.
// Runs entirely on the main thread.
#include <algorithm>
#include <bit>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "beamline/client/grpc_client.h"
#include "commands.h"
#include "npy.h"

namespace beamline::tools {
namespace {

// ---------------------------------------------------------------------------------------------
// Element conversions, so that summaries and comparisons work for every datatype.

float halfToFloat(uint16_t half) {
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1fu;
  const uint32_t mantissa = half & 0x3ffu;
  if (exponent == 0) {
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);  // zero or subnormal
    return sign != 0 ? -magnitude : magnitude;
  }
  if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

// Round to nearest, ties to even; overflow gives infinity.
uint16_t floatToHalf(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t exponent = (bits >> 23) & 0xffu;
  uint32_t mantissa = bits & 0x7fffffu;
  if (exponent == 0xff) return sign | 0x7c00u | (mantissa != 0 ? 0x200u : 0u);
  const int half_exponent = static_cast<int>(exponent) - 127 + 15;
  if (half_exponent >= 0x1f) return sign | 0x7c00u;
  if (half_exponent <= 0) {
    if (half_exponent < -10) return sign;
    mantissa |= 0x800000u;
    const int shift = 14 - half_exponent;
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (half & 1u) != 0)) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = (static_cast<uint32_t>(half_exponent) << 10) | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u) != 0)) ++half;  // may carry to infinity
  return static_cast<uint16_t>(sign | half);
}

float bf16ToFloat(uint16_t value) {
  return std::bit_cast<float>(static_cast<uint32_t>(value) << 16);
}

uint16_t floatToBf16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  if (std::isnan(value)) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

bool isNumeric(DataType datatype) {
  return datatype != DataType::kBytes && datatype != DataType::kInvalid &&
         dataTypeByteSize(datatype) > 0;
}

bool isFloating(DataType datatype) {
  return datatype == DataType::kFp16 || datatype == DataType::kBf16 ||
         datatype == DataType::kFp32 || datatype == DataType::kFp64;
}

template <typename T>
T load(const std::byte* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

template <typename T>
void store(std::byte* p, T value) {
  std::memcpy(p, &value, sizeof(T));
}

// Element `p` of a numeric tensor as a double (BOOL: 0 or 1).
double loadAsDouble(DataType datatype, const std::byte* p) {
  switch (datatype) {
    case DataType::kBool:
      return load<uint8_t>(p) != 0 ? 1.0 : 0.0;
    case DataType::kUint8:
      return load<uint8_t>(p);
    case DataType::kUint16:
      return load<uint16_t>(p);
    case DataType::kUint32:
      return load<uint32_t>(p);
    case DataType::kUint64:
      return static_cast<double>(load<uint64_t>(p));
    case DataType::kInt8:
      return load<int8_t>(p);
    case DataType::kInt16:
      return load<int16_t>(p);
    case DataType::kInt32:
      return load<int32_t>(p);
    case DataType::kInt64:
      return static_cast<double>(load<int64_t>(p));
    case DataType::kFp16:
      return halfToFloat(load<uint16_t>(p));
    case DataType::kBf16:
      return bf16ToFloat(load<uint16_t>(p));
    case DataType::kFp32:
      return load<float>(p);
    case DataType::kFp64:
      return load<double>(p);
    default:
      return std::nan("");
  }
}

// Truncates toward zero and saturates, as a C cast would if it were defined everywhere; NaN -> 0.
template <typename T>
T saturate(double value) {
  if (std::isnan(value)) return T{0};
  const double truncated = std::trunc(value);
  if (truncated <= static_cast<double>(std::numeric_limits<T>::lowest())) {
    return std::numeric_limits<T>::lowest();
  }
  if (truncated >= static_cast<double>(std::numeric_limits<T>::max())) {
    return std::numeric_limits<T>::max();
  }
  return static_cast<T>(truncated);
}

void storeFromDouble(DataType datatype, double value, std::byte* p) {
  switch (datatype) {
    case DataType::kBool:
      store<uint8_t>(p, value != 0.0 ? 1 : 0);
      break;
    case DataType::kUint8:
      store(p, saturate<uint8_t>(value));
      break;
    case DataType::kUint16:
      store(p, saturate<uint16_t>(value));
      break;
    case DataType::kUint32:
      store(p, saturate<uint32_t>(value));
      break;
    case DataType::kUint64:
      store(p, saturate<uint64_t>(value));
      break;
    case DataType::kInt8:
      store(p, saturate<int8_t>(value));
      break;
    case DataType::kInt16:
      store(p, saturate<int16_t>(value));
      break;
    case DataType::kInt32:
      store(p, saturate<int32_t>(value));
      break;
    case DataType::kInt64:
      store(p, saturate<int64_t>(value));
      break;
    case DataType::kFp16:
      store(p, floatToHalf(static_cast<float>(value)));
      break;
    case DataType::kBf16:
      store(p, floatToBf16(static_cast<float>(value)));
      break;
    case DataType::kFp32:
      store(p, static_cast<float>(value));
      break;
    case DataType::kFp64:
      store(p, value);
      break;
    default:
      break;
  }
}

std::vector<double> toDoubles(DataType datatype, std::span<const std::byte> data) {
  const size_t size = dataTypeByteSize(datatype);
  std::vector<double> values(size == 0 ? 0 : data.size() / size);
  for (size_t i = 0; i < values.size(); ++i) values[i] = loadAsDouble(datatype, &data[i * size]);
  return values;
}

// Numeric data converted element by element to another numeric type.
std::vector<std::byte> convertNumeric(DataType from, std::span<const std::byte> data, DataType to) {
  const std::vector<double> values = toDoubles(from, data);
  const size_t size = dataTypeByteSize(to);
  std::vector<std::byte> out(values.size() * size);
  for (size_t i = 0; i < values.size(); ++i) storeFromDouble(to, values[i], &out[i * size]);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Printing

std::string formatNumber(DataType datatype, double value) {
  char buffer[64];
  if (datatype == DataType::kBool) return value != 0.0 ? "true" : "false";
  if (isFloating(datatype)) {
    std::snprintf(buffer, sizeof(buffer), "%.7g", value);
  } else {
    std::snprintf(buffer, sizeof(buffer), "%.0f", value);
  }
  return buffer;
}

// Exact integer text for 64-bit types (doubles lose digits past 2^53).
std::string formatElement(DataType datatype, const std::byte* p) {
  char buffer[32];
  if (datatype == DataType::kInt64) {
    std::snprintf(buffer, sizeof(buffer), "%" PRId64, load<int64_t>(p));
    return buffer;
  }
  if (datatype == DataType::kUint64) {
    std::snprintf(buffer, sizeof(buffer), "%" PRIu64, load<uint64_t>(p));
    return buffer;
  }
  return formatNumber(datatype, loadAsDouble(datatype, p));
}

// A BYTES element as a quoted string, non-printable bytes as \xNN, cut after `limit` bytes.
std::string formatBytesElement(std::string_view element, size_t limit) {
  std::string out = "\"";
  for (size_t i = 0; i < element.size() && i < limit; ++i) {
    const auto c = static_cast<unsigned char>(element[i]);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      char buffer[8];
      std::snprintf(buffer, sizeof(buffer), "\\x%02x", c);
      out += buffer;
    }
  }
  out.push_back('"');
  if (element.size() > limit) out += "...(" + std::to_string(element.size()) + " bytes)";
  return out;
}

constexpr size_t kPreviewElements = 8;

// One output: datatype, shape, statistics, and the first elements (all with `print_all`).
void printOutput(const client::OutputView& output, bool print_all) {
  std::printf("output %.*s: %s %s\n", static_cast<int>(output.name.size()), output.name.data(),
              std::string(dataTypeWireName(output.datatype)).c_str(),
              shapeToString(output.shape).c_str());
  auto count_result = elementCount(output.shape);
  const int64_t count = count_result.isOk() ? *count_result : 0;
  const size_t shown =
      print_all ? static_cast<size_t>(count) : std::min<size_t>(kPreviewElements, count);
  std::string line;
  if (output.datatype == DataType::kBytes) {
    auto elements = splitBytesElements(output.data, count);
    if (!elements.isOk()) {
      std::printf("  (malformed BYTES data: %s)\n", elements.status().message().c_str());
      return;
    }
    for (size_t i = 0; i < shown; ++i) {
      if (i > 0) line += ", ";
      line += formatBytesElement((*elements)[i], print_all ? SIZE_MAX : 64);
    }
  } else {
    const std::vector<double> values = toDoubles(output.datatype, output.data);
    if (!values.empty()) {
      double min = std::numeric_limits<double>::infinity();
      double max = -min;
      double sum = 0;
      size_t nan_count = 0;
      for (double v : values) {
        if (std::isnan(v)) {
          ++nan_count;
          continue;
        }
        min = std::min(min, v);
        max = std::max(max, v);
        sum += v;
      }
      const size_t finite = values.size() - nan_count;
      if (finite > 0) {
        std::printf("  min=%s max=%s mean=%.7g", formatNumber(output.datatype, min).c_str(),
                    formatNumber(output.datatype, max).c_str(), sum / static_cast<double>(finite));
      }
      if (nan_count > 0) std::printf("  nan=%zu", nan_count);
      std::printf("\n");
    }
    const size_t size = dataTypeByteSize(output.datatype);
    for (size_t i = 0; i < shown; ++i) {
      if (i > 0) line += ", ";
      line += formatElement(output.datatype, &output.data[i * size]);
    }
  }
  if (count == 0) {
    std::printf("  (no elements)\n");
    return;
  }
  std::printf("  [%s%s]", line.c_str(), shown < static_cast<size_t>(count) ? ", ..." : "");
  if (shown < static_cast<size_t>(count)) {
    std::printf(" (first %zu of %" PRId64 ")", shown, count);
  }
  std::printf("\n");
}

// ---------------------------------------------------------------------------------------------
// Comparison with --expect

struct Comparison {
  bool passed = false;
  std::string detail;
};

Comparison compareOutput(const client::OutputView& got, const NpyArray& expected,
                         double tolerance) {
  if (got.shape != expected.shape) {
    return {false, "shape mismatch: got " + shapeToString(got.shape) + ", expected " +
                       shapeToString(expected.shape)};
  }
  const bool got_bytes = got.datatype == DataType::kBytes;
  const bool expected_bytes = expected.datatype == DataType::kBytes;
  if (got_bytes != expected_bytes) {
    return {false, "datatype mismatch: got " + std::string(dataTypeWireName(got.datatype)) +
                       ", expected " + std::string(dataTypeWireName(expected.datatype))};
  }
  auto count_result = elementCount(got.shape);
  const int64_t count = count_result.isOk() ? *count_result : 0;
  if (got_bytes) {
    auto got_elements = splitBytesElements(got.data, count);
    auto expected_elements = splitBytesElements(expected.data, count);
    if (!got_elements.isOk() || !expected_elements.isOk()) {
      return {false, "malformed BYTES data"};
    }
    size_t mismatches = 0;
    std::optional<size_t> first;
    for (size_t i = 0; i < got_elements->size(); ++i) {
      if ((*got_elements)[i] != (*expected_elements)[i]) {
        ++mismatches;
        if (!first) first = i;
      }
    }
    if (mismatches == 0) return {true, "all " + std::to_string(count) + " elements equal"};
    return {false, std::to_string(mismatches) + " of " + std::to_string(count) +
                       " elements differ; first at flat index " + std::to_string(*first) +
                       ": got " + formatBytesElement((*got_elements)[*first], 64) + ", expected " +
                       formatBytesElement((*expected_elements)[*first], 64)};
  }
  const std::vector<double> got_values = toDoubles(got.datatype, got.data);
  const std::vector<double> expected_values = toDoubles(expected.datatype, expected.data);
  double max_diff = 0;
  size_t worst = 0;
  for (size_t i = 0; i < got_values.size() && i < expected_values.size(); ++i) {
    const double a = got_values[i];
    const double b = expected_values[i];
    double diff = 0;
    if (std::isnan(a) || std::isnan(b)) {
      diff = std::isnan(a) && std::isnan(b) ? 0 : std::numeric_limits<double>::infinity();
    } else if (a != b) {  // equal infinities differ by 0, not NaN
      diff = std::fabs(a - b);
    }
    if (diff > max_diff) {
      max_diff = diff;
      worst = i;
    }
  }
  char buffer[160];
  std::snprintf(buffer, sizeof(buffer), "max_abs_diff=%.6g", max_diff);
  std::string detail = buffer;
  if (max_diff > 0) {
    std::snprintf(buffer, sizeof(buffer), " at flat index %zu (got %.9g, expected %.9g)", worst,
                  got_values[worst], expected_values[worst]);
    detail += buffer;
  }
  return {max_diff <= tolerance, detail};
}

// ---------------------------------------------------------------------------------------------
// Options and input preparation

struct InferOptions {
  std::string model;
  std::string version;
  std::string url = "localhost:8001";
  std::vector<std::string> inputs;
  std::string data_mode = "random";
  uint64_t seed = 0;
  std::vector<std::string> shapes;
  int64_t batch_size = 1;
  std::vector<std::string> outputs;
  std::vector<std::string> expects;
  double tolerance = 1e-5;
  std::vector<std::string> saves;
  bool print_all = false;
  int count = 1;
  int64_t timeout_ms = 0;
  bool verbose = false;
};

// Error exit codes of the command.
constexpr int kExitError = 1;
constexpr int kExitMismatch = 2;

// "NAME=VALUE" pairs into a map; `flag` names the option in messages.
Result<std::map<std::string, std::string>> parsePairs(const std::vector<std::string>& items,
                                                      std::string_view flag) {
  std::map<std::string, std::string> pairs;
  for (const std::string& item : items) {
    const size_t equals = item.find('=');
    if (equals == std::string::npos || equals == 0) {
      return invalidArg(std::string(flag) + " '" + item + "': expected NAME=VALUE");
    }
    std::string name = item.substr(0, equals);
    if (!pairs.emplace(name, item.substr(equals + 1)).second) {
      return invalidArg(std::string(flag) + ": '" + name + "' given twice");
    }
  }
  return pairs;
}

// "d1,d2,..." (empty: a scalar).
Result<Shape> parseShape(std::string_view text, std::string_view name) {
  Shape shape;
  if (text.empty()) return shape;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string_view item = text.substr(start, comma - start);
    int64_t dim = 0;
    if (item.empty() || item.size() > 18 ||
        !std::all_of(item.begin(), item.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return invalidArg("--shape " + std::string(name) + "=" + std::string(text) +
                        ": dimensions must be non-negative integers separated by commas");
    }
    for (char c : item) dim = dim * 10 + (c - '0');
    shape.push_back(dim);
    start = comma + 1;
  }
  return shape;
}

// Resolves a user-given shape against the model's dims: the full rank, or (for batching models)
// the rank without the batch dimension, which then comes from -b.
Result<Shape> fitShape(const Shape& given, std::span<const int64_t> dims, bool batching,
                       int64_t batch_size, std::string_view input, std::string_view source) {
  Shape shape;
  if (given.size() == dims.size()) {
    shape = given;
  } else if (batching && given.size() + 1 == dims.size()) {
    shape.push_back(batch_size);
    shape.insert(shape.end(), given.begin(), given.end());
  } else {
    return invalidArg("input '" + std::string(input) + "': " + std::string(source) + " shape " +
                      shapeToString(given) + " does not fit the model's " + shapeToString(dims));
  }
  if (!shapeMatches(shape, dims)) {
    return invalidArg("input '" + std::string(input) + "': shape " + shapeToString(shape) +
                      " (from " + std::string(source) + ") does not match the model's " +
                      shapeToString(dims));
  }
  return shape;
}

// Zero or pseudo-random data for a generated input. Numbers: uniform in [0, 1) for floating
// types, integers in [0, 100) otherwise, 0/1 for BOOL; BYTES: such integers as decimal strings.
std::vector<std::byte> generateData(DataType datatype, int64_t count, bool random,
                                    std::mt19937_64& rng) {
  std::uniform_real_distribution<double> real(0.0, 1.0);
  std::uniform_int_distribution<int> integer(0, 99);
  if (datatype == DataType::kBytes) {
    std::string encoded;
    for (int64_t i = 0; i < count; ++i) {
      appendBytesElement(encoded, random ? std::to_string(integer(rng)) : "0");
    }
    const auto* begin = reinterpret_cast<const std::byte*>(encoded.data());
    return {begin, begin + encoded.size()};
  }
  const size_t size = dataTypeByteSize(datatype);
  std::vector<std::byte> data(static_cast<size_t>(count) * size);  // all zero
  if (!random) return data;
  for (int64_t i = 0; i < count; ++i) {
    double value = 0;
    if (isFloating(datatype)) {
      value = real(rng);
    } else if (datatype == DataType::kBool) {
      value = integer(rng) % 2;
    } else {
      value = integer(rng);
    }
    storeFromDouble(datatype, value, &data[static_cast<size_t>(i) * size]);
  }
  return data;
}

// Repeats `data` `times` times (an un-batched .npy fed to -b N).
std::vector<std::byte> repeat(const std::vector<std::byte>& data, int64_t times) {
  std::vector<std::byte> out;
  out.reserve(data.size() * static_cast<size_t>(times));
  for (int64_t i = 0; i < times; ++i) out.insert(out.end(), data.begin(), data.end());
  return out;
}

void printError(const Status& status) {
  std::fprintf(stderr, "error: %s\n", status.toString().c_str());
}

void note(const std::string& text) { std::fprintf(stderr, "note: %s\n", text.c_str()); }

// Builds the request from the model's metadata and the options.
Status prepareRequest(const client::GrpcClient& client, const InferOptions& options,
                      client::InferRequest& request) {
  BL_ASSIGN_OR_RETURN(const auto metadata, client.modelMetadata(options.model, options.version));
  bool batching = false;
  auto config = client.modelConfig(options.model, options.version);
  if (config.isOk()) {
    batching = config->config().max_batch_size() > 0;
  } else {
    // Servers without the model_configuration extension: guess from a leading -1.
    batching = metadata.inputs_size() > 0 && metadata.inputs(0).shape_size() > 0 &&
               metadata.inputs(0).shape(0) == -1;
    note("no model config (" + config.status().message() + "); assuming the model " +
         (batching ? "batches" : "does not batch"));
  }
  if (!batching && options.batch_size != 1) {
    note("model '" + options.model + "' does not batch; -b " + std::to_string(options.batch_size) +
         " is ignored");
  }

  BL_ASSIGN_OR_RETURN(const auto files, parsePairs(options.inputs, "--input"));
  BL_ASSIGN_OR_RETURN(const auto shapes, parsePairs(options.shapes, "--shape"));
  std::string known;
  for (const auto& input : metadata.inputs()) known += (known.empty() ? "" : ", ") + input.name();
  for (const auto* pairs : {&files, &shapes}) {
    for (const auto& [name, value] : *pairs) {
      const bool exists = std::any_of(metadata.inputs().begin(), metadata.inputs().end(),
                                      [&](const auto& input) { return input.name() == name; });
      if (!exists) {
        return invalidArg("model '" + options.model + "' has no input '" + name +
                          "'; its inputs: " + known);
      }
    }
  }

  std::mt19937_64 rng(options.seed);
  request.setModel(options.model, options.version);
  for (const auto& input : metadata.inputs()) {
    const auto datatype = dataTypeFromWireName(input.datatype());
    if (!datatype || *datatype == DataType::kInvalid) {
      return unsupported("input '" + input.name() + "' has unknown datatype " + input.datatype());
    }
    const Shape dims(input.shape().begin(), input.shape().end());
    Shape shape;
    std::vector<std::byte> data;
    std::string source;
    if (auto file = files.find(input.name()); file != files.end()) {
      BL_ASSIGN_OR_RETURN(NpyArray array, readNpy(file->second));
      source = file->second;
      const bool unbatched = batching && array.shape.size() + 1 == dims.size();
      BL_ASSIGN_OR_RETURN(shape, fitShape(array.shape, dims, batching, options.batch_size,
                                          input.name(), file->second));
      if (shapes.count(input.name()) > 0) {
        note("input '" + input.name() + "': --shape is ignored, the shape comes from " +
             file->second);
      }
      if (batching && !unbatched && options.batch_size != 1 && shape[0] != options.batch_size) {
        note("input '" + input.name() + "': using the batch size " + std::to_string(shape[0]) +
             " of " + file->second + ", not -b " + std::to_string(options.batch_size));
      }
      if (array.datatype != *datatype) {
        if (!isNumeric(array.datatype) || !isNumeric(*datatype)) {
          return invalidArg("input '" + input.name() + "' is " + input.datatype() + " but " +
                            file->second + " holds " +
                            std::string(dataTypeWireName(array.datatype)));
        }
        note("input '" + input.name() + "': converting " +
             std::string(dataTypeWireName(array.datatype)) + " data from " + file->second + " to " +
             input.datatype());
        array.data = convertNumeric(array.datatype, array.data, *datatype);
      }
      data = unbatched ? repeat(array.data, options.batch_size) : std::move(array.data);
    } else {
      if (auto given = shapes.find(input.name()); given != shapes.end()) {
        BL_ASSIGN_OR_RETURN(const Shape parsed, parseShape(given->second, input.name()));
        BL_ASSIGN_OR_RETURN(
            shape, fitShape(parsed, dims, batching, options.batch_size, input.name(), "--shape"));
      } else {
        shape = dims;
        for (size_t i = 0; i < shape.size(); ++i) {
          if (batching && i == 0) {
            shape[0] = options.batch_size;
          } else if (shape[i] < 0) {
            shape[i] = 1;
            note("input '" + input.name() + "': dimension " + std::to_string(i) +
                 " is variable; using 1 (set it with --shape " + input.name() + "=...)");
          }
        }
      }
      BL_ASSIGN_OR_RETURN(const int64_t count, elementCount(shape));
      data = generateData(*datatype, count, options.data_mode == "random", rng);
      source = options.data_mode;
    }
    std::printf("input %s: %s %s from %s\n", input.name().c_str(), input.datatype().c_str(),
                shapeToString(shape).c_str(), source.c_str());
    const size_t index = request.addInput(input.name(), *datatype, shape);
    BL_RETURN_IF_ERROR(request.setInputData(index, data));
  }

  // Outputs: those named by --output, plus any --expect / --save needs; none means all.
  if (!options.outputs.empty()) {
    std::vector<std::string> names = options.outputs;
    for (const auto* items : {&options.expects, &options.saves}) {
      BL_ASSIGN_OR_RETURN(const auto pairs, parsePairs(*items, "--expect/--save"));
      for (const auto& [name, file] : pairs) names.push_back(name);
    }
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    for (const std::string& name : names) request.requestOutput(name);
  }
  return Status::ok();
}

void printLatencies(std::vector<double> latencies_us, double total_s) {
  if (latencies_us.size() == 1) {
    std::printf("latency: %.0f us\n", latencies_us[0]);
    return;
  }
  std::sort(latencies_us.begin(), latencies_us.end());
  const auto percentile = [&](double p) {
    const auto rank = static_cast<size_t>(std::ceil(p / 100.0 * latencies_us.size()));
    return latencies_us[std::min(latencies_us.size() - 1, rank == 0 ? 0 : rank - 1)];
  };
  double sum = 0;
  for (double v : latencies_us) sum += v;
  std::printf(
      "latency over %zu requests (us): mean %.0f  min %.0f  p50 %.0f  p90 %.0f  p99 %.0f  "
      "max %.0f;  %.1f infer/s\n",
      latencies_us.size(), sum / static_cast<double>(latencies_us.size()), latencies_us.front(),
      percentile(50), percentile(90), percentile(99), latencies_us.back(),
      static_cast<double>(latencies_us.size()) / total_s);
}

int runInfer(const InferOptions& options) {
  client::ClientOptions client_options;
  client_options.url = options.url;
  client_options.timeout = std::chrono::milliseconds(options.timeout_ms);
  client_options.verbose = options.verbose;
  auto client = client::GrpcClient::create(client_options);
  if (!client.isOk()) {
    printError(client.status());
    return kExitError;
  }
  // Parse --expect and --save before sending anything, so typos fail fast.
  auto expects = parsePairs(options.expects, "--expect");
  auto saves = parsePairs(options.saves, "--save");
  if (!expects.isOk() || !saves.isOk()) {
    printError(!expects.isOk() ? expects.status() : saves.status());
    return kExitError;
  }
  std::map<std::string, NpyArray> expected_arrays;
  for (const auto& [name, file] : *expects) {
    auto array = readNpy(file);
    if (!array.isOk()) {
      printError(array.status());
      return kExitError;
    }
    expected_arrays.emplace(name, std::move(array).value());
  }

  client::InferRequest request;
  if (Status prepared = prepareRequest(**client, options, request); !prepared.isOk()) {
    printError(prepared);
    return kExitError;
  }

  client::InferResult result;
  std::vector<double> latencies_us;
  latencies_us.reserve(static_cast<size_t>(options.count));
  const auto run_start = std::chrono::steady_clock::now();
  for (int i = 0; i < options.count; ++i) {
    const auto start = std::chrono::steady_clock::now();
    Status status = (*client)->infer(request, result);
    const auto end = std::chrono::steady_clock::now();
    if (!status.isOk()) {
      printError(status);
      return kExitError;
    }
    latencies_us.push_back(std::chrono::duration<double, std::micro>(end - start).count());
  }
  const double total_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();

  std::printf("model %.*s version %.*s\n", static_cast<int>(result.modelName().size()),
              result.modelName().data(), static_cast<int>(result.modelVersion().size()),
              result.modelVersion().data());
  for (size_t i = 0; i < result.outputCount(); ++i) {
    auto output = result.output(i);
    if (output.isOk()) printOutput(*output, options.print_all);
  }
  printLatencies(latencies_us, total_s);

  int exit_code = 0;
  for (const auto& [name, file] : *saves) {
    auto output = result.output(name);
    if (!output.isOk()) {
      printError(output.status());
      exit_code = kExitError;
      continue;
    }
    Status written;
    if (output->datatype == DataType::kBf16) {
      note("output '" + name + "' is BF16, which NumPy lacks; saving it as FP32");
      const auto converted = convertNumeric(DataType::kBf16, output->data, DataType::kFp32);
      written = writeNpy(file, DataType::kFp32, output->shape, converted);
    } else {
      written = writeNpy(file, output->datatype, output->shape, output->data);
    }
    if (!written.isOk()) {
      printError(written);
      exit_code = kExitError;
    } else {
      std::printf("saved output %s to %s\n", name.c_str(), file.c_str());
    }
  }
  for (const auto& [name, expected] : expected_arrays) {
    auto output = result.output(name);
    if (!output.isOk()) {
      std::printf("compare %s: FAIL (%s)\n", name.c_str(), output.status().message().c_str());
      if (exit_code == 0) exit_code = kExitMismatch;
      continue;
    }
    const Comparison comparison = compareOutput(*output, expected, options.tolerance);
    std::printf("compare %s: %s %s (tolerance %g)\n", name.c_str(), comparison.detail.c_str(),
                comparison.passed ? "OK" : "FAIL", options.tolerance);
    if (!comparison.passed && exit_code == 0) exit_code = kExitMismatch;
  }
  return exit_code;
}

}  // namespace

void registerInferCommand(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<InferOptions>();
  CLI::App* command = app.add_subcommand(
      "infer",
      "Send inference requests to a KServe v2 / Triton gRPC server and show, save or check the "
      "outputs.\nInputs are read from .npy files or generated from the model's metadata.");
  command->add_option("-m,--model", options->model, "Name of the model to run")->required();
  command->add_option("-x,--model-version", options->version,
                      "Version of the model (default: the server's choice, usually the latest)");
  command->add_option("-u,--url", options->url, "gRPC address of the server, host:port")
      ->capture_default_str();
  command
      ->add_option("--input", options->inputs,
                   "Read an input from a .npy file (repeatable). The file's shape is used; for "
                   "a batching model a file without the batch dimension is repeated -b times. "
                   "Numeric data of another dtype is converted to the input's datatype.")
      ->type_name("NAME=FILE.npy");
  command
      ->add_option("--data", options->data_mode,
                   "Data for inputs without --input: 'zero', or 'random' (uniform [0,1) for "
                   "floats, integers 0..99 otherwise, those integers as strings for BYTES)")
      ->check(CLI::IsMember({"zero", "random"}))
      ->capture_default_str();
  command->add_option("--seed", options->seed, "Seed of the random data")->capture_default_str();
  command
      ->add_option("--shape", options->shapes,
                   "Shape of a generated input (repeatable), needed where the model has variable "
                   "(-1) dimensions; otherwise those are 1. For batching models give it with or "
                   "without the batch dimension (then -b supplies it).")
      ->type_name("NAME=d1,d2,...");
  command
      ->add_option("-b,--batch-size", options->batch_size,
                   "Batch size for models with max_batch_size > 0: the first dimension of "
                   "generated inputs and of un-batched .npy files")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      ->add_option("--output", options->outputs,
                   "Request only these outputs (repeatable; default: all outputs)")
      ->type_name("NAME");
  command
      ->add_option("--expect", options->expects,
                   "Compare an output with a .npy file (repeatable): shapes must be equal and "
                   "max_abs_diff <= --tolerance (BYTES: equal strings); exit code 2 otherwise")
      ->type_name("NAME=FILE.npy");
  command
      ->add_option("--tolerance", options->tolerance,
                   "Largest absolute difference --expect accepts")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command
      ->add_option("--save", options->saves,
                   "Write an output to a .npy file (repeatable; BYTES as |S<n>, BF16 as float32)")
      ->type_name("NAME=FILE.npy");
  command->add_flag("--print", options->print_all,
                    "Print every element of every output (default: the first 8)");
  command
      ->add_option("--count", options->count,
                   "Send the request N times, one after another, and report the latency")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command
      ->add_option("--timeout-ms", options->timeout_ms,
                   "Deadline of each call in milliseconds (0: none)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command->add_flag("-v,--verbose", options->verbose, "Log every gRPC call to stderr");
  command->footer(
      "Exit codes: 0 success; 1 an error (server, connection, files or arguments); 2 an --expect "
      "comparison failed.\n"
      "Examples:\n"
      "  beamline infer -m simple\n"
      "  beamline infer -m gnn --input x=hits.npy --expect scores=ref.npy --tolerance 1e-4\n"
      "  beamline infer -m cnn -b 8 --data zero --count 100");
  command->callback([options, &exit_code] { exit_code = runInfer(*options); });
}

}  // namespace beamline::tools
