#include "frontend/http/infer_codec.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "frontend/common/request_rules.h"
#include "frontend/http/json_util.h"
#include "model_config.pb.h"
#include "net/http_server.h"

namespace beamline::frontend::http {
namespace {

using nlohmann::json;

// Deeper nesting than any tensor rank is refused before it can exhaust the stack.
constexpr int kMaxDataDepth = 64;

std::string where(std::string_view tensor) { return "input '" + std::string(tensor) + "'"; }

// --- JSON data -> raw little-endian elements --------------------------------------------------

template <typename T>
Status appendNumber(const json& value, std::string_view tensor, std::string& out) {
  T element{};
  if constexpr (std::is_same_v<T, bool>) {
    if (!value.is_boolean()) {
      return invalidArg(where(tensor) + ": BOOL data must be JSON booleans, got " +
                        std::string(value.type_name()));
    }
    element = value.get<bool>();
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!value.is_number()) {
      return invalidArg(where(tensor) + ": floating-point data must be JSON numbers, got " +
                        std::string(value.type_name()));
    }
    element = static_cast<T>(value.get<double>());
  } else {
    if (!value.is_number_integer()) {
      return invalidArg(where(tensor) + ": integer data must be JSON integers, got " +
                        (value.is_number() ? std::string("a fraction or exponent")
                                           : std::string(value.type_name())));
    }
    bool in_range = false;
    if (value.is_number_unsigned()) {
      const uint64_t v = value.get<uint64_t>();
      in_range = v <= static_cast<uint64_t>(std::numeric_limits<T>::max());
      element = static_cast<T>(v);
    } else {
      const int64_t v = value.get<int64_t>();
      if constexpr (std::is_signed_v<T>) {
        in_range = v >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
                   v <= static_cast<int64_t>(std::numeric_limits<T>::max());
      } else {
        in_range = false;  // negative
      }
      element = static_cast<T>(v);
    }
    if (!in_range) {
      return invalidArg(where(tensor) + ": value " + value.dump() + " does not fit the datatype");
    }
  }
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &element, sizeof(T));
  return Status::ok();
}

// Visits the leaves of flat or nested `data` in row-major order.
template <typename Leaf>
Status forEachElement(const json& data, std::string_view tensor, int depth, int64_t& count,
                      int64_t expected, Leaf&& leaf) {
  if (data.is_array()) {
    if (depth >= kMaxDataDepth) {
      return invalidArg(where(tensor) + ": 'data' is nested deeper than " +
                        std::to_string(kMaxDataDepth) + " levels");
    }
    for (const json& item : data) {
      BL_RETURN_IF_ERROR(forEachElement(item, tensor, depth + 1, count, expected, leaf));
    }
    return Status::ok();
  }
  if (++count > expected) return Status::ok();  // counted; reported by the caller
  return leaf(data);
}

template <typename T>
Status convertNumbers(const json& data, std::string_view tensor, int64_t expected, int64_t& count,
                      std::string& out) {
  out.reserve(static_cast<size_t>(expected) * sizeof(T));
  return forEachElement(data, tensor, 0, count, expected,
                        [&](const json& v) { return appendNumber<T>(v, tensor, out); });
}

Status jsonDataToRaw(const json& data, std::string_view tensor, DataType type,
                     std::span<const int64_t> shape, std::string& out) {
  auto expected = elementCount(shape);
  if (!expected.isOk()) return expected.status().withContext(where(tensor));
  int64_t count = 0;
  Status status;
  switch (type) {
    case DataType::kBool:
      status = convertNumbers<bool>(data, tensor, *expected, count, out);
      break;
    case DataType::kUint8:
      status = convertNumbers<uint8_t>(data, tensor, *expected, count, out);
      break;
    case DataType::kUint16:
      status = convertNumbers<uint16_t>(data, tensor, *expected, count, out);
      break;
    case DataType::kUint32:
      status = convertNumbers<uint32_t>(data, tensor, *expected, count, out);
      break;
    case DataType::kUint64:
      status = convertNumbers<uint64_t>(data, tensor, *expected, count, out);
      break;
    case DataType::kInt8:
      status = convertNumbers<int8_t>(data, tensor, *expected, count, out);
      break;
    case DataType::kInt16:
      status = convertNumbers<int16_t>(data, tensor, *expected, count, out);
      break;
    case DataType::kInt32:
      status = convertNumbers<int32_t>(data, tensor, *expected, count, out);
      break;
    case DataType::kInt64:
      status = convertNumbers<int64_t>(data, tensor, *expected, count, out);
      break;
    case DataType::kFp32:
      status = convertNumbers<float>(data, tensor, *expected, count, out);
      break;
    case DataType::kFp64:
      status = convertNumbers<double>(data, tensor, *expected, count, out);
      break;
    case DataType::kBytes:
      status = forEachElement(data, tensor, 0, count, *expected, [&](const json& v) -> Status {
        if (!v.is_string()) {
          return invalidArg(where(tensor) + ": BYTES data must be JSON strings, got " +
                            std::string(v.type_name()));
        }
        appendBytesElement(out, v.get_ref<const std::string&>());
        return Status::ok();
      });
      break;
    case DataType::kFp16:
    case DataType::kBf16:
      return invalidArg(where(tensor) + ": datatype " + std::string(dataTypeWireName(type)) +
                        " cannot be sent as JSON data; send it as binary data "
                        "(parameter binary_data_size)");
    default:
      return invalidArg(where(tensor) + ": datatype " + std::string(dataTypeWireName(type)) +
                        " is not supported");
  }
  BL_RETURN_IF_ERROR(status);
  if (count != *expected) {
    return invalidArg(where(tensor) + " has " + std::to_string(count) +
                      " elements in 'data' but its shape " + shapeToString(shape) + " needs " +
                      std::to_string(*expected));
  }
  return Status::ok();
}

// --- request pieces -----------------------------------------------------------------------------

Result<ParameterValue> parameterFromJson(const std::string& name, const json& value) {
  if (value.is_boolean()) return ParameterValue(value.get<bool>());
  if (value.is_number_unsigned()) {
    const uint64_t v = value.get<uint64_t>();
    if (v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return ParameterValue(static_cast<int64_t>(v));
    }
    return ParameterValue(v);
  }
  if (value.is_number_integer()) return ParameterValue(value.get<int64_t>());
  if (value.is_number_float()) return ParameterValue(value.get<double>());
  if (value.is_string()) return ParameterValue(value.get<std::string>());
  return invalidArg("parameter '" + name + "' must be a bool, number or string, got " +
                    std::string(value.type_name()));
}

Status parseRequestParameters(const json& parameters, InferenceRequest& request,
                              OutputFormat& format) {
  if (!parameters.is_object()) return invalidArg("'parameters' must be a JSON object");
  for (const auto& [name, value] : parameters.items()) {
    if (name == "binary_data_output") {
      if (!value.is_boolean()) {
        return invalidArg("parameter 'binary_data_output' must be a bool");
      }
      format.default_binary = value.get<bool>();
      continue;
    }
    auto converted = parameterFromJson(name, value);
    if (!converted.isOk()) {
      // The reserved numeric parameters explain themselves; anything else is a type error.
      if (name == "priority" || name == "timeout") {
        return addRequestParameter(name, nullptr, request);
      }
      return converted.status();
    }
    // priority and timeout also reach the request's scheduling fields (dynamic batcher).
    BL_RETURN_IF_ERROR(addRequestParameter(name, &*converted, request));
  }
  return Status::ok();
}

Result<Shape> parseShape(const json& input, std::string_view tensor) {
  const auto it = input.find("shape");
  if (it == input.end() || !it->is_array()) {
    return invalidArg(where(tensor) + " has no 'shape' array");
  }
  Shape shape;
  shape.reserve(it->size());
  for (const json& d : *it) {
    if (!d.is_number_unsigned()) {
      return invalidArg(where(tensor) + ": 'shape' must hold non-negative integers, got " +
                        d.dump());
    }
    const uint64_t v = d.get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return invalidArg(where(tensor) + ": dimension " + d.dump() + " is too large");
    }
    shape.push_back(static_cast<int64_t>(v));
  }
  return shape;
}

// Returns the binary_data_size (or -1 when the input has none).
Result<int64_t> parseInputParameters(const json& input, InputTensor& tensor) {
  int64_t binary_size = -1;
  const auto it = input.find("parameters");
  if (it == input.end()) return binary_size;
  if (!it->is_object()) return invalidArg(where(tensor.name) + ": 'parameters' must be an object");
  for (const auto& [key, value] : it->items()) {
    BL_RETURN_IF_ERROR(checkInputParameter(tensor.name, key));
    if (key == "binary_data_size") {
      if (!value.is_number_unsigned() ||
          value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return invalidArg(where(tensor.name) +
                          ": parameter 'binary_data_size' must be a non-negative integer");
      }
      binary_size = static_cast<int64_t>(value.get<uint64_t>());
      continue;
    }
    BL_ASSIGN_OR_RETURN(auto converted, parameterFromJson(key, value));
    tensor.parameters.emplace(key, std::move(converted));
  }
  return binary_size;
}

Status parseOutputs(const json& outputs, InferenceRequest& request, OutputFormat& format) {
  if (!outputs.is_array()) return invalidArg("'outputs' must be a JSON array");
  request.requested_outputs.reserve(outputs.size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    const json& output = outputs[i];
    const auto name = output.is_object() ? output.find("name") : output.end();
    if (!output.is_object() || name == output.end() || !name->is_string()) {
      return invalidArg("outputs[" + std::to_string(i) + "] has no 'name' string");
    }
    const std::string& output_name = name->get_ref<const std::string&>();
    Parameters shm_parameters;
    if (const auto parameters = output.find("parameters"); parameters != output.end()) {
      if (!parameters->is_object()) {
        return invalidArg("output '" + output_name + "': 'parameters' must be an object");
      }
      for (const auto& [key, value] : parameters->items()) {
        BL_RETURN_IF_ERROR(checkOutputParameter(output_name, key));
        if (isSharedMemoryParameter(key)) {
          BL_ASSIGN_OR_RETURN(auto converted, parameterFromJson(key, value));
          shm_parameters.emplace(key, std::move(converted));
          continue;
        }
        if (key == "binary_data") {
          if (!value.is_boolean()) {
            return invalidArg("output '" + output_name +
                              "': parameter 'binary_data' must be a bool");
          }
          format.explicit_binary.emplace_back(output_name, value.get<bool>());
        }
      }
    }
    BL_ASSIGN_OR_RETURN(auto location, sharedMemoryLocation(output_name, shm_parameters));
    if (location) format.shm_outputs.push_back({output_name, std::move(*location)});
    request.requested_outputs.push_back(output_name);
  }
  return Status::ok();
}

// --- response -----------------------------------------------------------------------------------

template <typename T>
void appendElements(std::string& out, std::span<const std::byte> data) {
  const size_t count = data.size() / sizeof(T);
  char buffer[64];
  for (size_t i = 0; i < count; ++i) {
    T value;
    std::memcpy(&value, data.data() + i * sizeof(T), sizeof(T));
    if (i > 0) out += ',';
    if constexpr (std::is_same_v<T, bool>) {
      out += value ? "true" : "false";
    } else if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(value)) {
        out += "NaN";
      } else if (std::isinf(value)) {
        out += value > 0 ? "Infinity" : "-Infinity";
      } else {
        const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
        out.append(buffer, result.ptr);
      }
    } else {
      const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
      out.append(buffer, result.ptr);
    }
  }
}

void appendShape(std::string& out, std::span<const int64_t> shape) {
  out += '[';
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(shape[i]);
  }
  out += ']';
}

}  // namespace

bool OutputFormat::isBinary(std::string_view output_name) const {
  for (const auto& [name, binary] : explicit_binary) {
    if (name == output_name) return binary;
  }
  return default_binary;
}

Status parseInferRequest(std::span<const std::byte> body, size_t header_length,
                         std::string_view model_name, InferenceRequest& request,
                         OutputFormat& format, JsonInputStorage& storage) {
  if (header_length > body.size()) {
    return invalidArg("inference header size should be in range (0, " +
                      std::to_string(body.size()) + "), got: " + std::to_string(header_length));
  }
  const std::string_view text(reinterpret_cast<const char*>(body.data()), header_length);
  BL_ASSIGN_OR_RETURN(json header, parseJson(text, "request"));
  if (!header.is_object()) return invalidArg("the request JSON must be an object");

  if (const auto id = header.find("id"); id != header.end()) {
    if (!id->is_string()) return invalidArg("'id' must be a string");
    request.id = id->get<std::string>();
  }
  if (const auto parameters = header.find("parameters"); parameters != header.end()) {
    BL_RETURN_IF_ERROR(parseRequestParameters(*parameters, request, format));
  }
  const auto inputs = header.find("inputs");
  if (inputs == header.end() || !inputs->is_array()) {
    return invalidArg("the request JSON has no 'inputs' array");
  }

  const std::span<const std::byte> binary = body.subspan(header_length);
  size_t binary_offset = 0;
  storage.clear();
  storage.reserve(inputs->size());  // no reallocation: views stay valid
  request.inputs.resize(inputs->size());
  for (size_t i = 0; i < inputs->size(); ++i) {
    const json& input = (*inputs)[i];
    InputTensor& tensor = request.inputs[i];
    const auto name = input.is_object() ? input.find("name") : input.end();
    if (!input.is_object() || name == input.end() || !name->is_string()) {
      return invalidArg("inputs[" + std::to_string(i) + "] has no 'name' string");
    }
    tensor.name = name->get<std::string>();
    const auto datatype = input.find("datatype");
    if (datatype == input.end() || !datatype->is_string()) {
      return invalidArg(where(tensor.name) + " has no 'datatype' string");
    }
    const auto type = dataTypeFromWireName(datatype->get_ref<const std::string&>());
    if (!type || *type == DataType::kInvalid) {
      return invalidArg(where(tensor.name) + " has unknown datatype '" +
                        datatype->get<std::string>() + "'");
    }
    tensor.datatype = *type;
    BL_ASSIGN_OR_RETURN(tensor.shape, parseShape(input, tensor.name));
    BL_ASSIGN_OR_RETURN(const int64_t binary_size, parseInputParameters(input, tensor));
    const auto data = input.find("data");
    // In client shared memory: the front end points the data at the region (resolveSharedMemory).
    BL_ASSIGN_OR_RETURN(auto location, sharedMemoryLocation(tensor.name, tensor.parameters));
    if (location) {
      if (binary_size >= 0 || data != input.end()) {
        return invalidArg(where(tensor.name) +
                          " is in shared memory and must not also carry 'data' or "
                          "'binary_data_size'");
      }
      continue;
    }
    if (binary_size >= 0) {
      if (data != input.end()) {
        return invalidArg(where(tensor.name) +
                          " has both 'data' and 'binary_data_size'; use one of them");
      }
      const uint64_t available = binary.size() - binary_offset;
      if (static_cast<uint64_t>(binary_size) > available) {
        return invalidArg("unexpected size for input '" + tensor.name + "', expecting " +
                          std::to_string(static_cast<uint64_t>(binary_size) - available) +
                          " additional bytes for model '" + std::string(model_name) + "'");
      }
      tensor.data = binary.subspan(binary_offset, static_cast<size_t>(binary_size));
      binary_offset += static_cast<size_t>(binary_size);
      continue;
    }
    if (data == input.end()) {
      auto count = elementCount(tensor.shape);
      if (count.isOk() && *count == 0) continue;  // an empty tensor needs no data
      return invalidArg(where(tensor.name) + " has neither 'data' nor 'binary_data_size'");
    }
    std::string& raw = storage.emplace_back();
    BL_RETURN_IF_ERROR(jsonDataToRaw(*data, tensor.name, tensor.datatype, tensor.shape, raw));
    tensor.data = std::as_bytes(std::span(raw.data(), raw.size()));
  }
  if (binary_offset != binary.size()) {
    return invalidArg("unexpected additional input data for model '" + std::string(model_name) +
                      "': " + std::to_string(binary.size() - binary_offset) +
                      " bytes after the JSON header are not claimed by any input's "
                      "binary_data_size");
  }
  if (const auto outputs = header.find("outputs"); outputs != header.end()) {
    BL_RETURN_IF_ERROR(parseOutputs(*outputs, request, format));
  }
  return Status::ok();
}

Status makeRawInferRequest(std::span<const std::byte> body, const inference::ModelConfig& config,
                           InferenceRequest& request, OutputFormat& format,
                           JsonInputStorage& storage) {
  if (config.input_size() != 1) {
    return invalidArg("Raw request must only have 1 input (found 1) to be deduced but got " +
                      std::to_string(config.input_size()) + " inputs in '" + config.name() +
                      "' model configuration");
  }
  const inference::ModelInput& input = config.input(0);
  const DataType type = static_cast<DataType>(input.data_type());
  Shape shape;
  if (config.max_batch_size() > 0) shape.push_back(1);
  int dynamic_axis = -1;
  int64_t fixed_elements = 1;
  for (int64_t d : input.dims()) {
    if (d < 0) {
      if (dynamic_axis >= 0) {
        return invalidArg("The shape of the raw input '" + input.name() +
                          "' can not be deduced because there are more than one variable-sized "
                          "dimension");
      }
      dynamic_axis = static_cast<int>(shape.size());
    } else {
      fixed_elements *= d;
    }
    shape.push_back(d);
  }
  InputTensor tensor;
  tensor.name = input.name();
  tensor.datatype = type;
  storage.clear();
  if (type == DataType::kBytes) {
    if (dynamic_axis >= 0 || fixed_elements != 1) {
      return invalidArg("For BYTE datatype raw input, the model must have input shape [1]");
    }
    if (body.size() > std::numeric_limits<uint32_t>::max()) {
      return invalidArg("raw BYTES input '" + input.name() + "' is longer than 4 GiB");
    }
    // The element needs its 4-byte length prefix, so this one is copied.
    std::string& raw = storage.emplace_back();
    appendBytesElement(raw,
                       std::string_view(reinterpret_cast<const char*>(body.data()), body.size()));
    tensor.data = std::as_bytes(std::span(raw.data(), raw.size()));
  } else {
    const size_t element_size = dataTypeByteSize(type);
    if (dynamic_axis >= 0 && fixed_elements > 0 && element_size > 0) {
      shape[static_cast<size_t>(dynamic_axis)] =
          static_cast<int64_t>(body.size() / static_cast<size_t>(fixed_elements) / element_size);
    }
    tensor.data = body;
  }
  tensor.shape = std::move(shape);
  request.inputs.clear();
  request.inputs.push_back(std::move(tensor));
  format.default_binary = true;
  return Status::ok();
}

Status appendTensorJson(std::string& out, std::string_view name, DataType datatype,
                        std::span<const std::byte> data) {
  out += '[';
  switch (datatype) {
    case DataType::kBool:
      appendElements<bool>(out, data);
      break;
    case DataType::kUint8:
      appendElements<uint8_t>(out, data);
      break;
    case DataType::kUint16:
      appendElements<uint16_t>(out, data);
      break;
    case DataType::kUint32:
      appendElements<uint32_t>(out, data);
      break;
    case DataType::kUint64:
      appendElements<uint64_t>(out, data);
      break;
    case DataType::kInt8:
      appendElements<int8_t>(out, data);
      break;
    case DataType::kInt16:
      appendElements<int16_t>(out, data);
      break;
    case DataType::kInt32:
      appendElements<int32_t>(out, data);
      break;
    case DataType::kInt64:
      appendElements<int64_t>(out, data);
      break;
    case DataType::kFp32:
      appendElements<float>(out, data);
      break;
    case DataType::kFp64:
      appendElements<double>(out, data);
      break;
    case DataType::kBytes: {
      auto elements = splitBytesElements(data, -1);
      if (!elements.isOk())
        return elements.status().withContext("output '" + std::string(name) + "'");
      for (size_t i = 0; i < elements->size(); ++i) {
        if (i > 0) out += ',';
        out += '"';
        net::appendJsonEscaped(out, (*elements)[i]);
        out += '"';
      }
      break;
    }
    default:
      return invalidArg("output '" + std::string(name) + "' has datatype " +
                        std::string(dataTypeWireName(datatype)) +
                        ", which JSON cannot carry; ask for it as binary data (parameter "
                        "binary_data: true)");
  }
  out += ']';
  return Status::ok();
}

Result<InferResponseBody> writeInferResponse(std::string_view model_name, int64_t model_version,
                                             std::string_view id,
                                             std::vector<OutputTensor>& outputs,
                                             const OutputFormat& format) {
  InferResponseBody body;
  std::string& out = body.json;
  out.reserve(128 + 96 * outputs.size());
  out += '{';
  if (!id.empty()) {
    out += "\"id\":\"";
    net::appendJsonEscaped(out, id);
    out += "\",";
  }
  out += "\"model_name\":\"";
  net::appendJsonEscaped(out, model_name);
  out += "\",\"model_version\":\"";
  out += std::to_string(model_version);
  out += "\",\"outputs\":[";
  for (size_t i = 0; i < outputs.size(); ++i) {
    OutputTensor& output = outputs[i];
    if (i > 0) out += ',';
    out += "{\"name\":\"";
    net::appendJsonEscaped(out, output.name);
    out += "\",\"datatype\":\"";
    out += dataTypeWireName(output.datatype);
    out += "\",\"shape\":";
    appendShape(out, output.shape);
    if (!output.shm_region.empty()) {
      out += ",\"parameters\":{\"shared_memory_region\":\"";
      net::appendJsonEscaped(out, output.shm_region);
      out += "\",\"shared_memory_byte_size\":";
      out += std::to_string(output.shm_byte_size);
      out += "}}";
    } else if (format.isBinary(output.name)) {
      out += ",\"parameters\":{\"binary_data_size\":";
      out += std::to_string(output.data.size());
      out += "}}";
      body.has_binary_outputs = true;
      if (!output.data.empty()) body.binary.push_back(std::move(output.data));
    } else {
      out += ",\"data\":";
      BL_RETURN_IF_ERROR(appendTensorJson(out, output.name, output.datatype, output.data.bytes()));
      out += '}';
    }
  }
  out += "]}";
  return body;
}

}  // namespace beamline::frontend::http
