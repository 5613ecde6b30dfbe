// The KServe v2 REST inference body and Triton's binary tensor data extension, both ways:
//  - request: a JSON header, optionally followed by binary tensor data (Inference-Header-Content-
//    Length says where the JSON ends; inputs with the parameter `binary_data_size` take their
//    bytes from the binary part, in order), or a raw body for a single-input model (header 0);
//  - response: a JSON header with each output either as JSON `data` or as binary data appended
//    after the JSON (`binary_data_size`), as the request asked.
// JSON `data` may be flat or nested; it is converted once into the core's raw little-endian
// layout. Binary inputs are views into the request body: never copied.
//
// Pure functions; any thread. Nothing here throws on bad input: errors are Status values.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "beamline/core/inference.h"
#include "beamline/core/status.h"
#include "frontend/common/request_rules.h"
#include "net/byte_buffer.h"

namespace inference {
class ModelConfig;
}  // namespace inference

namespace beamline::frontend::http {

// How the outputs go back: binary (appended after the JSON) or as JSON data.
struct OutputFormat {
  bool default_binary = false;  // request parameter binary_data_output, or a raw request
  // Requested outputs that set `binary_data` explicitly.
  std::vector<std::pair<std::string, bool>> explicit_binary;
  // Requested outputs that go into the client's shared memory (shared_memory_region and
  // shared_memory_byte_size, optional shared_memory_offset), in request order.
  std::vector<std::pair<std::string, SharedMemoryLocation>> shm_outputs;

  bool isBinary(std::string_view output_name) const;
};

// Storage for inputs sent as JSON data (converted to raw bytes). The request's views point into
// it, so it must outlive the request; entries never move once added.
using JsonInputStorage = std::vector<std::string>;

// Fills `request` (not model_name / model_version, which come from the URL) from a JSON(+binary)
// body. Inputs in client shared memory keep their shared_memory_* parameters and get no data
// here: the caller points them at the region (it owns the region table). `header_length` is the length of the JSON header (the whole body when no binary data).
// `model_name` appears in error messages.
Status parseInferRequest(std::span<const std::byte> body, size_t header_length,
                         std::string_view model_name, InferenceRequest& request,
                         OutputFormat& format, JsonInputStorage& storage);

// A raw binary request (Inference-Header-Content-Length: 0): the body is the data of the model's
// only input; the shape is the config's, with batch 1 and the one variable dimension deduced from
// the size (a BYTES input must have shape [1]; the body is its one element). Every output comes
// back binary.
Status makeRawInferRequest(std::span<const std::byte> body, const inference::ModelConfig& config,
                           InferenceRequest& request, OutputFormat& format,
                           JsonInputStorage& storage);

// One output of a completed request, in the order the backend produced them.
struct OutputTensor {
  std::string name;
  DataType datatype = DataType::kInvalid;
  Shape shape;
  net::ByteBuffer data;  // empty when the output went into shared memory
  // Set when the output was written into the client's shared memory region `shm_region`
  // (`shm_byte_size` bytes); the response then names the region instead of carrying the data.
  std::string shm_region;
  uint64_t shm_byte_size = 0;
};

// The response body: `json` is the JSON header; the data of binary outputs is moved into `binary`
// in order (empty outputs contribute nothing), to be sent after the header.
struct InferResponseBody {
  std::string json;
  std::vector<net::ByteBuffer> binary;
  // Some output is binary (even if empty): the response carries Inference-Header-Content-Length.
  bool has_binary_outputs = false;
};

// Builds the response. Errors (INVALID_ARG) for outputs that JSON cannot carry (FP16, BF16) or
// malformed BYTES data.
Result<InferResponseBody> writeInferResponse(std::string_view model_name, int64_t model_version,
                                             std::string_view id,
                                             std::vector<OutputTensor>& outputs,
                                             const OutputFormat& format);

// Appends the elements of a tensor as a flat JSON array (`[1,2,3]`). Floats use the shortest
// representation that reads back exactly; NaN and infinities are written as NaN, Infinity and
// -Infinity (what Python's json module reads). BOOL as true/false, BYTES as strings.
Status appendTensorJson(std::string& out, std::string_view name, DataType datatype,
                        std::span<const std::byte> data);

}  // namespace beamline::frontend::http
