// GrpcClient, InferRequest and InferResult: see include/beamline/client/grpc_client.h.
#include "beamline/client/grpc_client.h"

#include <grpcpp/grpcpp.h>

#include <bit>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <type_traits>

#include "grpc_service.grpc.pb.h"
#include "request_encoding.h"

namespace beamline::client {

static_assert(std::endian::native == std::endian::little,
              "the raw tensor encoding is little-endian; big-endian hosts would need byte swaps");

namespace {

using Clock = std::chrono::steady_clock;

template <class... Fs>
struct Overloaded : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;

std::span<const std::byte> asBytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// A protobuf shape field as a span (RepeatedField is contiguous but not a std::ranges range here).
std::span<const int64_t> dims(const google::protobuf::RepeatedField<int64_t>& shape) {
  return {shape.data(), static_cast<size_t>(shape.size())};
}

std::string quoted(std::string_view s) {
  std::string out = "'";
  out.append(s);
  out.push_back('\'');
  return out;
}

// Checks `data` against the shape: exact byte size for fixed-size types, element count and framing
// for BYTES. `what` names the tensor in the message.
Status checkTensorData(DataType datatype, std::span<const int64_t> shape,
                       std::span<const std::byte> data, std::string_view what) {
  BL_ASSIGN_OR_RETURN(const int64_t count, elementCount(shape));
  if (datatype == DataType::kBytes) {
    auto counted = countBytesElements(data);
    if (!counted.isOk()) return invalidArg(std::string(what) + ": " + counted.status().message());
    if (*counted != count) {
      return invalidArg(std::string(what) + ": " + std::to_string(*counted) +
                        " BYTES elements for shape " + shapeToString(shape) + " (" +
                        std::to_string(count) + " elements)");
    }
    return Status::ok();
  }
  auto expected = fixedByteSize(datatype, shape);
  if (!expected.isOk()) return invalidArg(std::string(what) + ": " + expected.status().message());
  if (*expected != data.size()) {
    return invalidArg(std::string(what) + ": " + std::to_string(data.size()) + " bytes, but " +
                      std::string(dataTypeWireName(datatype)) + " " + shapeToString(shape) +
                      " needs " + std::to_string(*expected));
  }
  return Status::ok();
}

bool hasTypedContents(const inference::InferTensorContents& c) {
  return c.bool_contents_size() > 0 || c.int_contents_size() > 0 || c.int64_contents_size() > 0 ||
         c.uint_contents_size() > 0 || c.uint64_contents_size() > 0 || c.fp32_contents_size() > 0 ||
         c.fp64_contents_size() > 0 || c.bytes_contents_size() > 0;
}

template <typename To, typename Field>
std::vector<std::byte> packAs(const Field& values) {
  std::vector<std::byte> out(static_cast<size_t>(values.size()) * sizeof(To));
  std::byte* dst = out.data();
  for (const auto& v : values) {
    const To converted = static_cast<To>(v);
    std::memcpy(dst, &converted, sizeof(To));
    dst += sizeof(To);
  }
  return out;
}

// The typed contents of an output as raw little-endian bytes (BYTES: length-prefixed elements).
Result<std::vector<std::byte>> convertTypedContents(DataType datatype,
                                                    const inference::InferTensorContents& c) {
  switch (datatype) {
    case DataType::kBool:
      return packAs<uint8_t>(c.bool_contents());
    case DataType::kInt8:
      return packAs<int8_t>(c.int_contents());
    case DataType::kInt16:
      return packAs<int16_t>(c.int_contents());
    case DataType::kInt32:
      return packAs<int32_t>(c.int_contents());
    case DataType::kInt64:
      return packAs<int64_t>(c.int64_contents());
    case DataType::kUint8:
      return packAs<uint8_t>(c.uint_contents());
    case DataType::kUint16:
      return packAs<uint16_t>(c.uint_contents());
    case DataType::kUint32:
      return packAs<uint32_t>(c.uint_contents());
    case DataType::kUint64:
      return packAs<uint64_t>(c.uint64_contents());
    case DataType::kFp32:
      return packAs<float>(c.fp32_contents());
    case DataType::kFp64:
      return packAs<double>(c.fp64_contents());
    case DataType::kBytes: {
      std::string encoded;
      for (const std::string& element : c.bytes_contents()) appendBytesElement(encoded, element);
      const auto* begin = reinterpret_cast<const std::byte*>(encoded.data());
      return std::vector<std::byte>(begin, begin + encoded.size());
    }
    default:
      return unsupported(std::string(dataTypeWireName(datatype)) +
                         " has no typed contents field; it can only be sent as raw contents");
  }
}

std::string_view grpcCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNRECOGNIZED";
  }
}

std::string normalizeTarget(std::string_view url) {
  constexpr std::string_view kScheme = "grpc://";
  if (url.substr(0, kScheme.size()) == kScheme) url.remove_prefix(kScheme.size());
  return std::string(url);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Compression names

Result<Compression> parseCompression(std::string_view text) {
  if (text.empty() || text == "none") return Compression::kNone;
  if (text == "gzip") return Compression::kGzip;
  if (text == "deflate") return Compression::kDeflate;
  return invalidArg("unknown compression " + quoted(text) + " (none, gzip or deflate)");
}

std::string_view compressionName(Compression compression) {
  switch (compression) {
    case Compression::kGzip:
      return "gzip";
    case Compression::kDeflate:
      return "deflate";
    case Compression::kNone:
      break;
  }
  return "none";
}

// ---------------------------------------------------------------------------------------------
// Parameters and status mapping

void toInferParameter(const ParameterValue& value, inference::InferParameter& out) {
  std::visit(Overloaded{
                 [&](bool v) { out.set_bool_param(v); },
                 [&](int64_t v) { out.set_int64_param(v); },
                 [&](const std::string& v) { out.set_string_param(v); },
                 [&](double v) { out.set_double_param(v); },
                 [&](uint64_t v) { out.set_uint64_param(v); },
             },
             value);
}

std::optional<ParameterValue> fromInferParameter(const inference::InferParameter& parameter) {
  switch (parameter.parameter_choice_case()) {
    case inference::InferParameter::kBoolParam:
      return ParameterValue(parameter.bool_param());
    case inference::InferParameter::kInt64Param:
      return ParameterValue(static_cast<int64_t>(parameter.int64_param()));
    case inference::InferParameter::kStringParam:
      return ParameterValue(parameter.string_param());
    case inference::InferParameter::kDoubleParam:
      return ParameterValue(parameter.double_param());
    case inference::InferParameter::kUint64Param:
      return ParameterValue(static_cast<uint64_t>(parameter.uint64_param()));
    default:
      return std::nullopt;
  }
}

Status statusFromGrpc(int grpc_code, std::string_view grpc_message, std::string_view context,
                      std::chrono::microseconds timeout) {
  const auto code = static_cast<grpc::StatusCode>(grpc_code);
  std::string message(grpc_message);
  StatusCode mapped = StatusCode::kInternal;
  switch (code) {
    case grpc::StatusCode::OK:
      return Status::ok();
    case grpc::StatusCode::INVALID_ARGUMENT:
      mapped = StatusCode::kInvalidArg;
      break;
    case grpc::StatusCode::NOT_FOUND:
      mapped = StatusCode::kNotFound;
      break;
    case grpc::StatusCode::UNAVAILABLE:
      mapped = StatusCode::kUnavailable;
      break;
    case grpc::StatusCode::UNIMPLEMENTED:
      mapped = StatusCode::kUnsupported;
      break;
    case grpc::StatusCode::ALREADY_EXISTS:
      mapped = StatusCode::kAlreadyExists;
      break;
    case grpc::StatusCode::CANCELLED:
      mapped = StatusCode::kCancelled;
      break;
    case grpc::StatusCode::UNKNOWN:
      mapped = StatusCode::kUnknown;
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      // Retrying later may succeed, as with UNAVAILABLE.
      mapped = StatusCode::kUnavailable;
      message = "timed out after " + std::to_string(timeout.count()) + " us" +
                (grpc_message.empty() ? "" : " (" + std::string(grpc_message) + ")");
      break;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      // Almost always a message over the size limit: the request as sent is not acceptable.
      mapped = StatusCode::kInvalidArg;
      message +=
          " (RESOURCE_EXHAUSTED; if a message is too large, raise max_message_bytes on the "
          "client and the server's limit)";
      break;
    default:
      message = std::string(grpcCodeName(code)) + ": " + message;
      break;
  }
  Status status(mapped, std::move(message));
  return context.empty() ? status : status.withContext(context);
}

// ---------------------------------------------------------------------------------------------
// InferRequest

InferRequest::InferRequest(const InferRequest& other)
    : request_(other.request_), datatypes_(other.datatypes_), raw_slots_(other.raw_slots_) {}

InferRequest::InferRequest(InferRequest&& other) noexcept {
  other.waitUntilUnpinned();
  request_.Swap(&other.request_);
  datatypes_ = std::move(other.datatypes_);
  raw_slots_ = std::move(other.raw_slots_);
}

InferRequest& InferRequest::operator=(const InferRequest& other) {
  if (this != &other) {
    waitUntilUnpinned();
    request_ = other.request_;
    datatypes_ = other.datatypes_;
    raw_slots_ = other.raw_slots_;
  }
  return *this;
}

InferRequest& InferRequest::operator=(InferRequest&& other) noexcept {
  if (this != &other) {
    waitUntilUnpinned();
    other.waitUntilUnpinned();
    request_.Swap(&other.request_);
    datatypes_ = std::move(other.datatypes_);
    raw_slots_ = std::move(other.raw_slots_);
  }
  return *this;
}

InferRequest::~InferRequest() { waitUntilUnpinned(); }

bool InferRequest::waitUntilUnpinned(std::chrono::milliseconds limit) const {
  if (pins_.load(std::memory_order_acquire) == 0) return true;
  const auto deadline = Clock::now() + limit;
  while (pins_.load(std::memory_order_acquire) != 0) {
    if (Clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

void InferRequest::setModel(std::string_view name, std::string_view version) {
  request_.set_model_name(std::string(name));
  request_.set_model_version(std::string(version));
}

void InferRequest::setId(std::string_view id) { request_.set_id(std::string(id)); }

size_t InferRequest::addInput(std::string_view name, DataType datatype,
                              std::span<const int64_t> shape) {
  auto* input = request_.add_inputs();
  input->set_name(std::string(name));
  input->set_datatype(std::string(dataTypeWireName(datatype)));
  input->mutable_shape()->Clear();
  input->mutable_shape()->Add(shape.begin(), shape.end());
  raw_slots_.push_back(request_.raw_input_contents_size());
  request_.add_raw_input_contents()->clear();  // may be a recycled string; keeps its capacity
  datatypes_.push_back(datatype);
  return datatypes_.size() - 1;
}

size_t InferRequest::addSharedMemoryInput(std::string_view name, DataType datatype,
                                          std::span<const int64_t> shape, std::string_view region,
                                          uint64_t offset, uint64_t byte_size) {
  auto* input = request_.add_inputs();
  input->set_name(std::string(name));
  input->set_datatype(std::string(dataTypeWireName(datatype)));
  input->mutable_shape()->Clear();
  input->mutable_shape()->Add(shape.begin(), shape.end());
  auto& parameters = *input->mutable_parameters();
  parameters["shared_memory_region"].set_string_param(std::string(region));
  parameters["shared_memory_offset"].set_int64_param(static_cast<int64_t>(offset));
  parameters["shared_memory_byte_size"].set_int64_param(static_cast<int64_t>(byte_size));
  raw_slots_.push_back(-1);
  datatypes_.push_back(datatype);
  return datatypes_.size() - 1;
}

bool InferRequest::inputInSharedMemory(size_t index) const {
  return index < raw_slots_.size() && raw_slots_[index] < 0;
}

std::string* InferRequest::rawInput(size_t index) {
  const int slot = raw_slots_[index];
  return slot < 0 ? nullptr : request_.mutable_raw_input_contents(slot);
}

const std::string* InferRequest::rawInput(size_t index) const {
  const int slot = raw_slots_[index];
  return slot < 0 ? nullptr : &request_.raw_input_contents(slot);
}

Result<std::span<std::byte>> InferRequest::mutableInputData(size_t index, size_t byte_size) {
  BL_RETURN_IF_ERROR(checkInputIndex(index));
  std::string* raw = rawInput(index);
  if (raw == nullptr) {
    return invalidArg("input " + quoted(request_.inputs(static_cast<int>(index)).name()) +
                      " lives in shared memory; it has no raw buffer");
  }
  waitUntilUnpinned();
  if (raw->size() != byte_size) raw->resize(byte_size);
  return std::span<std::byte>(reinterpret_cast<std::byte*>(raw->data()), raw->size());
}

std::span<const std::byte> InferRequest::inputData(size_t index) const {
  if (index >= raw_slots_.size()) return {};
  const std::string* raw = rawInput(index);
  return raw == nullptr ? std::span<const std::byte>() : asBytes(*raw);
}

Result<size_t> InferRequest::inputIndex(std::string_view name) const {
  for (int i = 0; i < request_.inputs_size(); ++i) {
    if (request_.inputs(i).name() == name) return static_cast<size_t>(i);
  }
  return notFound("no input " + quoted(name) + " in the request");
}

Status InferRequest::checkInputIndex(size_t index) const {
  if (index >= datatypes_.size()) {
    return invalidArg("input index " + std::to_string(index) + " out of range (" +
                      std::to_string(datatypes_.size()) + " inputs)");
  }
  return Status::ok();
}

Status InferRequest::setInputShape(size_t index, std::span<const int64_t> shape) {
  BL_RETURN_IF_ERROR(checkInputIndex(index));
  for (int64_t dim : shape) {
    if (dim < 0) {
      return invalidArg("input " + quoted(request_.inputs(static_cast<int>(index)).name()) +
                        ": negative dimension in shape " + shapeToString(shape));
    }
  }
  auto* shape_field = request_.mutable_inputs(static_cast<int>(index))->mutable_shape();
  shape_field->Clear();  // keeps capacity
  shape_field->Add(shape.begin(), shape.end());
  return Status::ok();
}

Status InferRequest::setInputData(size_t index, std::span<const std::byte> data) {
  BL_RETURN_IF_ERROR(checkInputIndex(index));
  const auto& input = request_.inputs(static_cast<int>(index));
  std::string* raw = rawInput(index);
  if (raw == nullptr) {
    return invalidArg("input " + quoted(input.name()) + " lives in shared memory; write the data "
                      "into the region instead");
  }
  BL_RETURN_IF_ERROR(checkTensorData(datatypes_[index], dims(input.shape()), data,
                                     "input " + quoted(input.name())));
  // assign() reuses the string's capacity when the new data fits.
  waitUntilUnpinned();
  raw->assign(reinterpret_cast<const char*>(data.data()), data.size());
  return Status::ok();
}

Status InferRequest::setInputBytes(size_t index, std::span<const std::string_view> elements) {
  BL_RETURN_IF_ERROR(checkInputIndex(index));
  const auto& input = request_.inputs(static_cast<int>(index));
  if (datatypes_[index] != DataType::kBytes) {
    return invalidArg("input " + quoted(input.name()) + " is " +
                      std::string(dataTypeWireName(datatypes_[index])) + ", not BYTES");
  }
  BL_ASSIGN_OR_RETURN(const int64_t count, elementCount(dims(input.shape())));
  if (static_cast<int64_t>(elements.size()) != count) {
    return invalidArg("input " + quoted(input.name()) + ": " + std::to_string(elements.size()) +
                      " BYTES elements for shape " + shapeToString(dims(input.shape())) + " (" +
                      std::to_string(count) + " elements)");
  }
  for (std::string_view element : elements) {
    if (element.size() > UINT32_MAX) {
      return invalidArg("input " + quoted(input.name()) + ": a BYTES element exceeds 4 GiB");
    }
  }
  std::string* raw = rawInput(index);
  if (raw == nullptr) {
    return invalidArg("input " + quoted(input.name()) + " lives in shared memory");
  }
  waitUntilUnpinned();
  raw->clear();
  raw->reserve(serializedBytesSize(elements));
  for (std::string_view element : elements) appendBytesElement(*raw, element);
  return Status::ok();
}

Status InferRequest::setInputParameter(size_t index, std::string_view name,
                                       const ParameterValue& value) {
  BL_RETURN_IF_ERROR(checkInputIndex(index));
  auto& parameters = *request_.mutable_inputs(static_cast<int>(index))->mutable_parameters();
  toInferParameter(value, parameters[std::string(name)]);
  return Status::ok();
}

size_t InferRequest::requestOutput(std::string_view name) {
  auto* output = request_.add_outputs();
  output->set_name(std::string(name));
  return static_cast<size_t>(request_.outputs_size() - 1);
}

Status InferRequest::setOutputParameter(size_t index, std::string_view name,
                                        const ParameterValue& value) {
  if (index >= static_cast<size_t>(request_.outputs_size())) {
    return invalidArg("output index " + std::to_string(index) + " out of range (" +
                      std::to_string(request_.outputs_size()) + " requested outputs)");
  }
  auto& parameters = *request_.mutable_outputs(static_cast<int>(index))->mutable_parameters();
  toInferParameter(value, parameters[std::string(name)]);
  return Status::ok();
}

Status InferRequest::setOutputSharedMemory(size_t index, std::string_view region, uint64_t offset,
                                           uint64_t byte_size) {
  BL_RETURN_IF_ERROR(
      setOutputParameter(index, "shared_memory_region", ParameterValue(std::string(region))));
  BL_RETURN_IF_ERROR(setOutputParameter(index, "shared_memory_offset",
                                        ParameterValue(static_cast<int64_t>(offset))));
  return setOutputParameter(index, "shared_memory_byte_size",
                            ParameterValue(static_cast<int64_t>(byte_size)));
}

void InferRequest::clearOutputs() { request_.clear_outputs(); }

void InferRequest::setParameter(std::string_view name, const ParameterValue& value) {
  toInferParameter(value, (*request_.mutable_parameters())[std::string(name)]);
}

void InferRequest::clearParameters() { request_.clear_parameters(); }

void InferRequest::reset() {
  // Clear() keeps the repeated elements (and their string capacity) for reuse by the next add.
  waitUntilUnpinned();
  request_.Clear();
  datatypes_.clear();
  raw_slots_.clear();
}

Status InferRequest::validate() const {
  if (request_.model_name().empty()) return invalidArg("the request names no model");
  int raw_inputs = 0;
  for (int slot : raw_slots_) raw_inputs += slot >= 0 ? 1 : 0;
  if (static_cast<size_t>(request_.inputs_size()) != raw_slots_.size() ||
      request_.raw_input_contents_size() != raw_inputs) {
    return invalidArg("raw_input_contents does not match the inputs; use addInput()");
  }
  for (int i = 0; i < request_.inputs_size(); ++i) {
    const auto& input = request_.inputs(i);
    const size_t index = static_cast<size_t>(i);
    const std::string* raw = rawInput(index);
    if (raw != nullptr) {
      BL_RETURN_IF_ERROR(checkTensorData(datatypes_[index], dims(input.shape()), asBytes(*raw),
                                         "input " + quoted(input.name())));
      continue;
    }
    // Shared memory: the declared byte size must match the shape (BYTES cannot be checked here).
    if (datatypes_[index] == DataType::kBytes) continue;
    auto expected = fixedByteSize(datatypes_[index], dims(input.shape()));
    if (!expected.isOk()) {
      return invalidArg("input " + quoted(input.name()) + ": " + expected.status().message());
    }
    const auto found = input.parameters().find("shared_memory_byte_size");
    const uint64_t declared = found == input.parameters().end()
                                  ? 0
                                  : static_cast<uint64_t>(found->second.int64_param());
    if (declared != *expected) {
      return invalidArg("input " + quoted(input.name()) + ": shared_memory_byte_size " +
                        std::to_string(declared) + ", but " +
                        std::string(dataTypeWireName(datatypes_[index])) + " " +
                        shapeToString(dims(input.shape())) + " needs " +
                        std::to_string(*expected));
    }
  }
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// InferResult

void InferResult::bindSharedMemoryOutput(std::string_view name,
                                         std::span<const std::byte> memory) {
  for (auto& [bound_name, bound_memory] : shm_outputs_) {
    if (bound_name == name) {
      bound_memory = memory;
      return;
    }
  }
  shm_outputs_.emplace_back(name, memory);
}

Status InferResult::prepare() {
  outputs_.clear();
  converted_.clear();
  const int raw_count = response_.raw_output_contents_size();
  // Outputs written into shared memory by the server: some servers send an empty raw entry for
  // them (keeping raw entries positional), others none. Both layouts are accepted.
  auto boundMemory = [this](const std::string& name) -> const std::span<const std::byte>* {
    for (const auto& [bound_name, memory] : shm_outputs_) {
      if (bound_name == name) return &memory;
    }
    return nullptr;
  };
  int raw_needed = 0;
  int shm_outputs = 0;
  for (const auto& output : response_.outputs()) {
    if (output.has_contents() && hasTypedContents(output.contents())) continue;
    if (!shm_outputs_.empty() && boundMemory(output.name()) != nullptr) {
      ++shm_outputs;
    } else {
      ++raw_needed;
    }
  }
  const bool shm_take_raw_entries = shm_outputs > 0 && raw_count == raw_needed + shm_outputs;
  int next_raw = 0;
  for (const auto& output : response_.outputs()) {
    const std::string what = "response output " + quoted(output.name());
    const auto datatype = dataTypeFromWireName(output.datatype());
    if (!datatype || *datatype == DataType::kInvalid) {
      return internalError(what + " has unknown datatype " + quoted(output.datatype()));
    }
    OutputEntry entry;
    entry.datatype = *datatype;
    // As Triton does for inputs: outputs with typed contents do not take a raw entry.
    const std::span<const std::byte>* bound =
        shm_outputs_.empty() ? nullptr : boundMemory(output.name());
    if (output.has_contents() && hasTypedContents(output.contents())) {
      auto converted = convertTypedContents(*datatype, output.contents());
      if (!converted.isOk()) return converted.status().withContext(what);
      converted_.push_back(std::move(converted).value());
      entry.data = converted_.back();  // moving the vector later keeps its heap buffer
    } else if (bound != nullptr) {
      if (shm_take_raw_entries) ++next_raw;
      auto size = fixedByteSize(entry.datatype, dims(output.shape()));
      if (!size.isOk()) return internalError(what + ": " + size.status().message());
      if (*size > bound->size()) {
        return internalError(what + ": " + std::to_string(*size) + " bytes for shape " +
                             shapeToString(dims(output.shape())) + " exceed its " +
                             std::to_string(bound->size()) + "-byte shared-memory slot");
      }
      entry.data = bound->first(*size);
    } else if (next_raw < raw_count) {
      entry.data = asBytes(response_.raw_output_contents(next_raw++));
    }
    Status checked = checkTensorData(entry.datatype, dims(output.shape()), entry.data, what);
    if (!checked.isOk()) return Status(StatusCode::kInternal, checked.message());
    outputs_.push_back(entry);
  }
  if (next_raw != raw_count) {
    return internalError("response has " + std::to_string(raw_count) + " raw_output_contents for " +
                         std::to_string(next_raw) + " outputs without typed contents");
  }
  return Status::ok();
}

Result<OutputView> InferResult::output(size_t index) const {
  if (index >= outputs_.size()) {
    return notFound("output index " + std::to_string(index) + " out of range (" +
                    std::to_string(outputs_.size()) + " outputs)");
  }
  const auto& output = response_.outputs(static_cast<int>(index));
  OutputView view;
  view.name = output.name();
  view.datatype = outputs_[index].datatype;
  view.shape.assign(output.shape().begin(), output.shape().end());
  view.data = outputs_[index].data;
  return view;
}

Result<TensorView> InferResult::tensor(size_t index) const {
  if (index >= outputs_.size()) {
    return notFound("output index " + std::to_string(index) + " out of range (" +
                    std::to_string(outputs_.size()) + " outputs)");
  }
  const auto& output = response_.outputs(static_cast<int>(index));
  TensorView view;
  view.name = output.name();
  view.datatype = outputs_[index].datatype;
  view.shape = dims(output.shape());
  view.data = outputs_[index].data;
  return view;
}

Result<OutputView> InferResult::output(std::string_view name) const {
  for (size_t i = 0; i < outputs_.size(); ++i) {
    if (response_.outputs(static_cast<int>(i)).name() == name) return output(i);
  }
  return notFound("no output " + quoted(name) + " in the response of model " +
                  quoted(response_.model_name()));
}

Result<std::vector<std::string_view>> InferResult::bytesElements(std::string_view name) const {
  BL_ASSIGN_OR_RETURN(const OutputView view, output(name));
  if (view.datatype != DataType::kBytes) {
    return invalidArg("output " + quoted(name) + " is " +
                      std::string(dataTypeWireName(view.datatype)) + ", not BYTES");
  }
  BL_ASSIGN_OR_RETURN(const int64_t count, elementCount(view.shape));
  return splitBytesElements(view.data, count);
}

// ---------------------------------------------------------------------------------------------
// GrpcClient

struct GrpcClient::Impl {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub;
  std::string server_context;  // "server 'host:port'", for messages of server-wide calls

  // Asynchronous calls in flight; the destructor waits for them.
  std::mutex in_flight_mutex;
  std::condition_variable in_flight_done;
  size_t in_flight = 0;
};

namespace {

void configureContext(grpc::ClientContext& context, const ClientOptions& options,
                      const CallOptions* call = nullptr) {
  const auto timeout = call != nullptr && call->timeout ? *call->timeout : options.timeout;
  if (timeout.count() > 0) context.set_deadline(std::chrono::system_clock::now() + timeout);
  if (call != nullptr && call->compression) {
    context.set_compression_algorithm(toGrpcCompression(*call->compression));
  }
  for (const auto& [key, value] : options.headers) context.AddMetadata(key, value);
}

std::chrono::microseconds effectiveTimeout(const ClientOptions& options, const CallOptions* call) {
  return call != nullptr && call->timeout ? *call->timeout : options.timeout;
}

Result<std::string> readPemFile(const std::string& path, std::string_view what) {
  if (path.empty()) return std::string();
  std::ifstream in(path, std::ios::binary);
  if (!in) return invalidArg("cannot read the TLS " + std::string(what) + " file " + quoted(path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void logLine(const ClientOptions& options, const std::string& line) {
  if (!options.verbose) return;
  if (options.logger) {
    options.logger(line);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

void logCall(const ClientOptions& options, std::string_view rpc, std::string_view detail,
             const grpc::Status& status, Clock::time_point start) {
  if (!options.verbose) return;
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
  std::string line = "beamline client: " + std::string(rpc);
  if (!detail.empty()) line += " " + std::string(detail);
  line += " -> " + std::string(grpcCodeName(status.error_code()));
  if (!status.ok()) line += " (" + status.error_message() + ")";
  line += " in " + std::to_string(us.count()) + " us";
  logLine(options, line);
}

}  // namespace

GrpcClient::GrpcClient(ClientOptions options, std::unique_ptr<Impl> impl)
    : options_(std::move(options)), impl_(std::move(impl)) {}

GrpcClient::~GrpcClient() {
  std::unique_lock lock(impl_->in_flight_mutex);
  impl_->in_flight_done.wait(lock, [this] { return impl_->in_flight == 0; });
}

Result<std::unique_ptr<GrpcClient>> GrpcClient::create(ClientOptions options) {
  options.url = normalizeTarget(options.url);
  if (options.url.empty()) return invalidArg("the server URL is empty");
  if (options.max_message_bytes <= 0) {
    return invalidArg("max_message_bytes must be positive, got " +
                      std::to_string(options.max_message_bytes));
  }
  if (options.timeout.count() < 0) return invalidArg("the timeout must not be negative");

  grpc::ChannelArguments arguments;
  arguments.SetMaxSendMessageSize(options.max_message_bytes);
  arguments.SetMaxReceiveMessageSize(options.max_message_bytes);
  switch (options.compression) {
    case Compression::kNone:
      break;
    case Compression::kGzip:
      arguments.SetCompressionAlgorithm(GRPC_COMPRESS_GZIP);
      break;
    case Compression::kDeflate:
      arguments.SetCompressionAlgorithm(GRPC_COMPRESS_DEFLATE);
      break;
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls.enabled) {
    grpc::SslCredentialsOptions ssl;
    BL_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                        readPemFile(options.tls.root_certificates, "root certificates"));
    BL_ASSIGN_OR_RETURN(ssl.pem_private_key, readPemFile(options.tls.private_key, "private key"));
    BL_ASSIGN_OR_RETURN(ssl.pem_cert_chain,
                        readPemFile(options.tls.certificate_chain, "certificate chain"));
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  auto impl = std::make_unique<Impl>();
  impl->channel = grpc::CreateCustomChannel(options.url, credentials, arguments);
  if (!impl->channel) return internalError("cannot create a gRPC channel to " + options.url);
  impl->stub = inference::GRPCInferenceService::NewStub(impl->channel);
  impl->server_context = "server " + quoted(options.url);
  return std::unique_ptr<GrpcClient>(new GrpcClient(std::move(options), std::move(impl)));
}

namespace {

// Runs one unary RPC: `invoke(context)` calls the stub method and returns its status.
template <typename Invoke>
Status unaryCall(const ClientOptions& options, std::string_view rpc, std::string_view detail,
                 std::string_view error_context, Invoke&& invoke) {
  grpc::ClientContext context;
  configureContext(context, options);
  const auto start = Clock::now();
  const grpc::Status status = invoke(&context);
  logCall(options, rpc, detail, status, start);
  return statusFromGrpc(status.error_code(), status.error_message(), error_context,
                        options.timeout);
}

std::string modelContext(std::string_view name) { return "model " + quoted(name); }

// Puts the model's name in front of an error; OK stays OK.
Status forModel(Status status, std::string_view name) {
  return status.isOk() ? status : status.withContext(modelContext(name));
}

}  // namespace

Result<bool> GrpcClient::serverLive() const {
  inference::ServerLiveRequest request;
  inference::ServerLiveResponse response;
  BL_RETURN_IF_ERROR(unaryCall(
      options_, "ServerLive", "", impl_->server_context,
      [&](grpc::ClientContext* c) { return impl_->stub->ServerLive(c, request, &response); }));
  return response.live();
}

Result<bool> GrpcClient::serverReady() const {
  inference::ServerReadyRequest request;
  inference::ServerReadyResponse response;
  BL_RETURN_IF_ERROR(unaryCall(
      options_, "ServerReady", "", impl_->server_context,
      [&](grpc::ClientContext* c) { return impl_->stub->ServerReady(c, request, &response); }));
  return response.ready();
}

Result<bool> GrpcClient::modelReady(std::string_view name, std::string_view version) const {
  inference::ModelReadyRequest request;
  request.set_name(std::string(name));
  request.set_version(std::string(version));
  inference::ModelReadyResponse response;
  BL_RETURN_IF_ERROR(unaryCall(
      options_, "ModelReady", name, modelContext(name),
      [&](grpc::ClientContext* c) { return impl_->stub->ModelReady(c, request, &response); }));
  return response.ready();
}

Result<inference::ServerMetadataResponse> GrpcClient::serverMetadata() const {
  inference::ServerMetadataRequest request;
  inference::ServerMetadataResponse response;
  BL_RETURN_IF_ERROR(unaryCall(
      options_, "ServerMetadata", "", impl_->server_context,
      [&](grpc::ClientContext* c) { return impl_->stub->ServerMetadata(c, request, &response); }));
  return response;
}

Result<inference::ModelMetadataResponse> GrpcClient::modelMetadata(std::string_view name,
                                                                   std::string_view version) const {
  inference::ModelMetadataRequest request;
  request.set_name(std::string(name));
  request.set_version(std::string(version));
  inference::ModelMetadataResponse response;
  BL_RETURN_IF_ERROR(unaryCall(
      options_, "ModelMetadata", name, modelContext(name),
      [&](grpc::ClientContext* c) { return impl_->stub->ModelMetadata(c, request, &response); }));
  return response;
}

Result<inference::ModelConfigResponse> GrpcClient::modelConfig(std::string_view name,
                                                               std::string_view version) const {
  inference::ModelConfigRequest request;
  request.set_name(std::string(name));
  request.set_version(std::string(version));
  inference::ModelConfigResponse response;
  BL_RETURN_IF_ERROR(unaryCall(
      options_, "ModelConfig", name, modelContext(name),
      [&](grpc::ClientContext* c) { return impl_->stub->ModelConfig(c, request, &response); }));
  return response;
}

Result<inference::ModelStatisticsResponse> GrpcClient::modelStatistics(
    std::string_view name, std::string_view version) const {
  inference::ModelStatisticsRequest request;
  request.set_name(std::string(name));
  request.set_version(std::string(version));
  inference::ModelStatisticsResponse response;
  BL_RETURN_IF_ERROR(unaryCall(
      options_, "ModelStatistics", name, name.empty() ? impl_->server_context : modelContext(name),
      [&](grpc::ClientContext* c) { return impl_->stub->ModelStatistics(c, request, &response); }));
  return response;
}

Result<inference::RepositoryIndexResponse> GrpcClient::repositoryIndex(bool ready_only) const {
  inference::RepositoryIndexRequest request;
  request.set_ready(ready_only);
  inference::RepositoryIndexResponse response;
  BL_RETURN_IF_ERROR(unaryCall(
      options_, "RepositoryIndex", "", impl_->server_context,
      [&](grpc::ClientContext* c) { return impl_->stub->RepositoryIndex(c, request, &response); }));
  return response;
}

Status GrpcClient::loadModel(std::string_view name,
                             const std::optional<std::string>& config_json) const {
  inference::RepositoryModelLoadRequest request;
  request.set_model_name(std::string(name));
  if (config_json) (*request.mutable_parameters())["config"].set_string_param(*config_json);
  inference::RepositoryModelLoadResponse response;
  return unaryCall(options_, "RepositoryModelLoad", name, modelContext(name),
                   [&](grpc::ClientContext* c) {
                     return impl_->stub->RepositoryModelLoad(c, request, &response);
                   });
}

Status GrpcClient::unloadModel(std::string_view name) const {
  inference::RepositoryModelUnloadRequest request;
  request.set_model_name(std::string(name));
  inference::RepositoryModelUnloadResponse response;
  return unaryCall(options_, "RepositoryModelUnload", name, modelContext(name),
                   [&](grpc::ClientContext* c) {
                     return impl_->stub->RepositoryModelUnload(c, request, &response);
                   });
}

Status GrpcClient::infer(const InferRequest& request, InferResult& result) const {
  return infer(request, result, CallOptions{});
}

Status GrpcClient::infer(const InferRequest& request, InferResult& result,
                         const CallOptions& call) const {
  const std::string& model = request.modelName();
  BL_RETURN_IF_ERROR(forModel(request.validate(), model));
  result.mutableMessage().Clear();
  grpc::ClientContext context;
  configureContext(context, options_, &call);
  const auto start = Clock::now();
  const grpc::Status status =
      impl_->stub->ModelInfer(&context, request.message(), &result.mutableMessage());
  logCall(options_, "ModelInfer", model, status, start);
  BL_RETURN_IF_ERROR(statusFromGrpc(status.error_code(), status.error_message(),
                                    modelContext(model), effectiveTimeout(options_, &call)));
  return forModel(result.prepare(), model);
}

void GrpcClient::asyncInfer(const InferRequest& request, InferCallback done) const {
  asyncInfer(request, std::move(done), CallOptions{});
}

void GrpcClient::asyncInfer(const InferRequest& request, InferCallback done,
                            const CallOptions& call_options) const {
  Status valid = request.validate();
  if (!valid.isOk()) {
    done(forModel(std::move(valid), request.modelName()), nullptr);
    return;
  }
  // Owns what gRPC needs until the callback: the context, the response and the callback.
  struct AsyncCall {
    grpc::ClientContext context;
    std::unique_ptr<InferResult> result = std::make_unique<InferResult>();
    InferCallback done;
    const InferRequest* request = nullptr;
    Clock::time_point start;
  };
  auto call = std::make_unique<AsyncCall>();
  configureContext(call->context, options_, &call_options);
  const auto timeout = effectiveTimeout(options_, &call_options);
  call->done = std::move(done);
  call->request = &request;
  call->start = Clock::now();
  {
    std::lock_guard lock(impl_->in_flight_mutex);
    ++impl_->in_flight;
  }
  AsyncCall* raw = call.release();
  impl_->stub->async()->ModelInfer(
      &raw->context, &request.message(), &raw->result->mutableMessage(),
      [this, raw, timeout](const grpc::Status& grpc_status) {
        std::unique_ptr<AsyncCall> owned(raw);
        const std::string& model = owned->request->modelName();
        logCall(options_, "ModelInfer (async)", model, grpc_status, owned->start);
        Status status = statusFromGrpc(grpc_status.error_code(), grpc_status.error_message(),
                                       modelContext(model), timeout);
        if (status.isOk()) status = forModel(owned->result->prepare(), model);
        if (status.isOk()) {
          owned->done(std::move(status), std::move(owned->result));
        } else {
          owned->done(std::move(status), nullptr);
        }
        owned.reset();
        std::lock_guard lock(impl_->in_flight_mutex);
        --impl_->in_flight;
        impl_->in_flight_done.notify_all();
      });
}

const std::shared_ptr<grpc::Channel>& GrpcClient::channel() const { return impl_->channel; }

// ---------------------------------------------------------------------------------------------
// Shared memory RPCs

Status GrpcClient::registerSystemSharedMemory(std::string_view name, std::string_view key,
                                              uint64_t offset, uint64_t byte_size) const {
  inference::SystemSharedMemoryRegisterRequest request;
  request.set_name(std::string(name));
  request.set_key(std::string(key));
  request.set_offset(offset);
  request.set_byte_size(byte_size);
  inference::SystemSharedMemoryRegisterResponse response;
  return unaryCall(options_, "SystemSharedMemoryRegister", name,
                   "", [&](grpc::ClientContext* c) {
                     return impl_->stub->SystemSharedMemoryRegister(c, request, &response);
                   });
}

Status GrpcClient::unregisterSystemSharedMemory(std::string_view name) const {
  inference::SystemSharedMemoryUnregisterRequest request;
  request.set_name(std::string(name));
  inference::SystemSharedMemoryUnregisterResponse response;
  return unaryCall(options_, "SystemSharedMemoryUnregister", name,
                   name.empty() ? impl_->server_context : "",
                   [&](grpc::ClientContext* c) {
                     return impl_->stub->SystemSharedMemoryUnregister(c, request, &response);
                   });
}

Result<inference::SystemSharedMemoryStatusResponse> GrpcClient::systemSharedMemoryStatus(
    std::string_view name) const {
  inference::SystemSharedMemoryStatusRequest request;
  request.set_name(std::string(name));
  inference::SystemSharedMemoryStatusResponse response;
  BL_RETURN_IF_ERROR(unaryCall(
      options_, "SystemSharedMemoryStatus", name,
      name.empty() ? impl_->server_context : "",
      [&](grpc::ClientContext* c) {
        return impl_->stub->SystemSharedMemoryStatus(c, request, &response);
      }));
  return response;
}

Status GrpcClient::registerCudaSharedMemory(std::string_view name,
                                            std::span<const std::byte> raw_handle,
                                            int64_t device_id, uint64_t byte_size) const {
  inference::CudaSharedMemoryRegisterRequest request;
  request.set_name(std::string(name));
  request.set_raw_handle(reinterpret_cast<const char*>(raw_handle.data()), raw_handle.size());
  request.set_device_id(device_id);
  request.set_byte_size(byte_size);
  inference::CudaSharedMemoryRegisterResponse response;
  return unaryCall(options_, "CudaSharedMemoryRegister", name,
                   "", [&](grpc::ClientContext* c) {
                     return impl_->stub->CudaSharedMemoryRegister(c, request, &response);
                   });
}

Status GrpcClient::unregisterCudaSharedMemory(std::string_view name) const {
  inference::CudaSharedMemoryUnregisterRequest request;
  request.set_name(std::string(name));
  inference::CudaSharedMemoryUnregisterResponse response;
  return unaryCall(
      options_, "CudaSharedMemoryUnregister", name,
      name.empty() ? impl_->server_context : "",
      [&](grpc::ClientContext* c) {
        return impl_->stub->CudaSharedMemoryUnregister(c, request, &response);
      });
}

Result<inference::CudaSharedMemoryStatusResponse> GrpcClient::cudaSharedMemoryStatus(
    std::string_view name) const {
  inference::CudaSharedMemoryStatusRequest request;
  request.set_name(std::string(name));
  inference::CudaSharedMemoryStatusResponse response;
  BL_RETURN_IF_ERROR(unaryCall(
      options_, "CudaSharedMemoryStatus", name,
      name.empty() ? impl_->server_context : "",
      [&](grpc::ClientContext* c) {
        return impl_->stub->CudaSharedMemoryStatus(c, request, &response);
      }));
  return response;
}

}  // namespace beamline::client
