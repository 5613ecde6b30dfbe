// The HTTP front end's pure parts: the inference body codec (JSON and binary tensor data, raw
// requests, responses), the REST routes, Triton's config JSON and base64.
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "frontend/http/http_routes.h"
#include "frontend/http/infer_codec.h"
#include "frontend/http/json_util.h"
#include "model_config.pb.h"

namespace beamline::frontend::http {
namespace {

std::span<const std::byte> bytesOf(const std::string& text) {
  return std::as_bytes(std::span(text.data(), text.size()));
}

template <typename T>
std::vector<T> elementsOf(const InputTensor& tensor) {
  std::vector<T> values(tensor.data.size() / sizeof(T));
  std::memcpy(values.data(), tensor.data.data(), tensor.data.size());
  return values;
}

struct Parsed {
  Status status;
  InferenceRequest request;
  OutputFormat format;
  JsonInputStorage storage;
};

Parsed parse(const std::string& body, size_t header_length = std::string::npos) {
  Parsed parsed;
  parsed.status = parseInferRequest(
      bytesOf(body), header_length == std::string::npos ? body.size() : header_length, "m",
      parsed.request, parsed.format, parsed.storage);
  return parsed;
}

void expectError(const Status& status, StatusCode code, const std::string& fragment) {
  EXPECT_EQ(status.code(), code) << status.toString();
  EXPECT_NE(status.message().find(fragment), std::string::npos) << status.message();
}

// --- JSON inputs ---------------------------------------------------------------------------------

TEST(InferCodecTest, ParsesFlatAndNestedJsonDataOfEveryFixedSizeType) {
  auto p = parse(R"({"id":"r1","inputs":[
      {"name":"b","datatype":"BOOL","shape":[2],"data":[true,false]},
      {"name":"u8","datatype":"UINT8","shape":[1,2],"data":[[0,255]]},
      {"name":"u16","datatype":"UINT16","shape":[2],"data":[1,65535]},
      {"name":"u32","datatype":"UINT32","shape":[1],"data":[4294967295]},
      {"name":"u64","datatype":"UINT64","shape":[1],"data":[18446744073709551615]},
      {"name":"i8","datatype":"INT8","shape":[2],"data":[-128,127]},
      {"name":"i16","datatype":"INT16","shape":[2],"data":[-32768,32767]},
      {"name":"i32","datatype":"INT32","shape":[2,1],"data":[[-5],[7]]},
      {"name":"i64","datatype":"INT64","shape":[1],"data":[-9223372036854775808]},
      {"name":"f32","datatype":"FP32","shape":[2,2],"data":[[1.5,2],[-3,1e-3]]},
      {"name":"f64","datatype":"FP64","shape":[1],"data":[0.1]}]})");
  ASSERT_TRUE(p.status.isOk()) << p.status.toString();
  const auto& in = p.request.inputs;
  ASSERT_EQ(in.size(), 11u);
  EXPECT_EQ(p.request.id, "r1");
  EXPECT_EQ(elementsOf<uint8_t>(in[0]), (std::vector<uint8_t>{1, 0}));
  EXPECT_EQ(elementsOf<uint8_t>(in[1]), (std::vector<uint8_t>{0, 255}));
  EXPECT_EQ(elementsOf<uint16_t>(in[2]), (std::vector<uint16_t>{1, 65535}));
  EXPECT_EQ(elementsOf<uint32_t>(in[3]), (std::vector<uint32_t>{4294967295u}));
  EXPECT_EQ(elementsOf<uint64_t>(in[4]), (std::vector<uint64_t>{18446744073709551615ull}));
  EXPECT_EQ(elementsOf<int8_t>(in[5]), (std::vector<int8_t>{-128, 127}));
  EXPECT_EQ(elementsOf<int16_t>(in[6]), (std::vector<int16_t>{-32768, 32767}));
  EXPECT_EQ(elementsOf<int32_t>(in[7]), (std::vector<int32_t>{-5, 7}));
  EXPECT_EQ(elementsOf<int64_t>(in[8]), (std::vector<int64_t>{INT64_MIN}));
  EXPECT_EQ(elementsOf<float>(in[9]), (std::vector<float>{1.5f, 2.f, -3.f, 1e-3f}));
  EXPECT_EQ(elementsOf<double>(in[10]), (std::vector<double>{0.1}));
  EXPECT_EQ(in[9].shape, (Shape{2, 2}));
  EXPECT_EQ(in[0].datatype, DataType::kBool);
}

TEST(InferCodecTest, ParsesBytesAsLengthPrefixedElements) {
  auto p = parse(R"({"inputs":[{"name":"s","datatype":"BYTES","shape":[2],"data":["ab",""]}]})");
  ASSERT_TRUE(p.status.isOk()) << p.status.toString();
  auto elements = splitBytesElements(p.request.inputs[0].data, 2);
  ASSERT_TRUE(elements.isOk());
  EXPECT_EQ((*elements)[0], "ab");
  EXPECT_EQ((*elements)[1], "");
}

TEST(InferCodecTest, RejectsBadJsonData) {
  expectError(
      parse(R"({"inputs":[{"name":"x","datatype":"INT8","shape":[1],"data":[300]}]})").status,
      StatusCode::kInvalidArg, "does not fit");
  expectError(
      parse(R"({"inputs":[{"name":"x","datatype":"UINT8","shape":[1],"data":[-1]}]})").status,
      StatusCode::kInvalidArg, "does not fit");
  expectError(
      parse(R"({"inputs":[{"name":"x","datatype":"INT32","shape":[1],"data":[1.5]}]})").status,
      StatusCode::kInvalidArg, "input 'x'");
  expectError(parse(R"({"inputs":[{"name":"x","datatype":"BOOL","shape":[1],"data":[1]}]})").status,
              StatusCode::kInvalidArg, "booleans");
  expectError(
      parse(R"({"inputs":[{"name":"x","datatype":"FP32","shape":[3],"data":[1,2]}]})").status,
      StatusCode::kInvalidArg, "has 2 elements");
  expectError(parse(R"({"inputs":[{"name":"x","datatype":"FP16","shape":[1],"data":[1]}]})").status,
              StatusCode::kInvalidArg, "FP16 cannot be sent as JSON");
  expectError(parse(R"({"inputs":[{"name":"x","datatype":"BF16","shape":[1],"data":[1]}]})").status,
              StatusCode::kInvalidArg, "BF16");
  expectError(parse(R"({"inputs":[{"name":"x","datatype":"NOPE","shape":[1],"data":[1]}]})").status,
              StatusCode::kInvalidArg, "unknown datatype 'NOPE'");
  expectError(
      parse(R"({"inputs":[{"name":"x","datatype":"FP32","shape":[-1],"data":[1]}]})").status,
      StatusCode::kInvalidArg, "non-negative");
  expectError(parse(R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1]}]})").status,
              StatusCode::kInvalidArg, "neither 'data' nor 'binary_data_size'");
  expectError(parse(R"({"outputs":[]})").status, StatusCode::kInvalidArg, "'inputs'");
}

TEST(InferCodecTest, RefusesDeeplyNestedData) {
  std::string nested(200, '[');
  nested += "1";
  nested += std::string(200, ']');
  expectError(
      parse(R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":)" + nested + "}]}")
          .status,
      StatusCode::kInvalidArg, "nested deeper");
}

TEST(InferCodecTest, MalformedJsonSaysWhere) {
  expectError(parse(R"({"inputs":[}")").status, StatusCode::kInvalidArg,
              "failed to parse the request JSON");
}

// --- binary data --------------------------------------------------------------------------------

TEST(InferCodecTest, BinaryInputsAreViewsIntoTheBody) {
  const std::string header =
      R"({"inputs":[{"name":"a","datatype":"FP32","shape":[1,2],"parameters":{"binary_data_size":8}},)"
      R"({"name":"b","datatype":"INT8","shape":[3],"parameters":{"binary_data_size":3}}]})";
  std::string body = header;
  const float floats[2] = {1.25f, -2.f};
  body.append(reinterpret_cast<const char*>(floats), sizeof(floats));
  body += std::string("\x01\x02\x03", 3);
  auto p = parse(body, header.size());
  ASSERT_TRUE(p.status.isOk()) << p.status.toString();
  EXPECT_EQ(reinterpret_cast<const char*>(p.request.inputs[0].data.data()),
            body.data() + header.size());
  EXPECT_EQ(reinterpret_cast<const char*>(p.request.inputs[1].data.data()),
            body.data() + header.size() + 8);
  EXPECT_EQ(elementsOf<float>(p.request.inputs[0]), (std::vector<float>{1.25f, -2.f}));
  EXPECT_TRUE(p.storage.empty());
  EXPECT_TRUE(p.request.inputs[0].parameters.empty());  // binary_data_size is consumed
}

TEST(InferCodecTest, RejectsBinarySizesThatDoNotAddUp) {
  const std::string header =
      R"({"inputs":[{"name":"a","datatype":"FP32","shape":[2],"parameters":{"binary_data_size":8}}]})";
  expectError(parse(header + std::string(4, '\0'), header.size()).status, StatusCode::kInvalidArg,
              "unexpected size for input 'a', expecting 4 additional bytes for model 'm'");
  expectError(parse(header + std::string(12, '\0'), header.size()).status, StatusCode::kInvalidArg,
              "unexpected additional input data for model 'm'");
  const std::string both =
      R"({"inputs":[{"name":"a","datatype":"FP32","shape":[1],"data":[1],"parameters":{"binary_data_size":4}}]})";
  expectError(parse(both + std::string(4, '\0'), both.size()).status, StatusCode::kInvalidArg,
              "both 'data' and 'binary_data_size'");
  expectError(parse(header, header.size() + 10).status, StatusCode::kInvalidArg,
              "inference header size should be in range");
}

// --- parameters and outputs
// ------------------------------------------------------------------------

TEST(InferCodecTest, ParametersFollowTheSharedRules) {
  auto p = parse(R"({"parameters":{"custom":"x","n":-3,"big":18446744073709551615,"f":0.5,
                    "flag":true,"priority":1,"timeout":100,"sequence_id":0,
                    "binary_data_output":true},"inputs":[]})");
  ASSERT_TRUE(p.status.isOk()) << p.status.toString();
  const Parameters& params = p.request.parameters;
  EXPECT_EQ(std::get<std::string>(params.at("custom")), "x");
  EXPECT_EQ(std::get<int64_t>(params.at("n")), -3);
  EXPECT_EQ(std::get<uint64_t>(params.at("big")), 18446744073709551615ull);
  EXPECT_EQ(std::get<double>(params.at("f")), 0.5);
  EXPECT_TRUE(std::get<bool>(params.at("flag")));
  EXPECT_FALSE(params.contains("priority"));
  EXPECT_EQ(p.request.priority, 1u);
  EXPECT_EQ(p.request.timeout_us, 100u);
  EXPECT_FALSE(params.contains("binary_data_output"));
  EXPECT_TRUE(p.format.default_binary);

  expectError(parse(R"({"parameters":{"triton_x":1},"inputs":[]})").status, StatusCode::kInvalidArg,
              "reserved prefix 'triton_'");
  expectError(parse(R"({"parameters":{"sequence_id":7},"inputs":[]})").status,
              StatusCode::kUnsupported, "sequence");
  expectError(parse(R"({"parameters":{"priority":-1},"inputs":[]})").status,
              StatusCode::kInvalidArg, "priority");
  expectError(parse(R"({"parameters":{"binary_data_output":1},"inputs":[]})").status,
              StatusCode::kInvalidArg, "binary_data_output");
  expectError(parse(R"({"parameters":{"x":[1]},"inputs":[]})").status, StatusCode::kInvalidArg,
              "bool, number or string");
}

TEST(InferCodecTest, OutputsChooseBinaryOrJson) {
  auto p = parse(R"({"inputs":[],"outputs":[{"name":"A","parameters":{"binary_data":true}},
                                             {"name":"B"}]})");
  ASSERT_TRUE(p.status.isOk()) << p.status.toString();
  EXPECT_EQ(p.request.requested_outputs, (std::vector<std::string>{"A", "B"}));
  EXPECT_TRUE(p.format.isBinary("A"));
  EXPECT_FALSE(p.format.isBinary("B"));
  expectError(
      parse(R"({"inputs":[],"outputs":[{"name":"A","parameters":{"classification":2}}]})").status,
      StatusCode::kUnsupported, "classification");
}

TEST(InferCodecTest, SharedMemoryTensorsAreLeftToTheFrontEnd) {
  // An input in shared memory keeps its location parameters and gets no data from the body.
  auto p = parse(
      R"({"inputs":[{"name":"a","datatype":"FP32","shape":[2],"parameters":{"shared_memory_region":"r","shared_memory_byte_size":8,"shared_memory_offset":4}}],
          "outputs":[{"name":"B","parameters":{"shared_memory_region":"o","shared_memory_byte_size":16}},{"name":"C"}]})");
  ASSERT_TRUE(p.status.isOk()) << p.status.toString();
  ASSERT_EQ(p.request.inputs.size(), 1u);
  EXPECT_TRUE(p.request.inputs[0].data.empty());
  EXPECT_EQ(p.request.inputs[0].parameters.count("shared_memory_region"), 1u);
  ASSERT_EQ(p.format.shm_outputs.size(), 1u);
  EXPECT_EQ(p.format.shm_outputs[0].first, "B");
  EXPECT_EQ(p.format.shm_outputs[0].second.region, "o");
  EXPECT_EQ(p.format.shm_outputs[0].second.byte_size, 16u);
  EXPECT_EQ(p.request.requested_outputs, (std::vector<std::string>{"B", "C"}));

  expectError(
      parse(
          R"({"inputs":[{"name":"a","datatype":"FP32","shape":[1],"parameters":{"shared_memory_region":"r"}}]})")
          .status,
      StatusCode::kInvalidArg, "shared_memory_byte_size");
  expectError(
      parse(
          R"({"inputs":[{"name":"a","datatype":"FP32","shape":[1],"data":[1],"parameters":{"shared_memory_region":"r","shared_memory_byte_size":4}}]})")
          .status,
      StatusCode::kInvalidArg, "shared memory");
  expectError(
      parse(R"({"inputs":[],"outputs":[{"name":"B","parameters":{"shared_memory_offset":4}}]})")
          .status,
      StatusCode::kInvalidArg, "shared_memory_region");
}

// --- raw requests
// ----------------------------------------------------------------------------------

inference::ModelConfig rawConfig(int max_batch, inference::DataType type, std::vector<int64_t> dims,
                                 int inputs = 1) {
  inference::ModelConfig config;
  config.set_name("raw");
  config.set_max_batch_size(max_batch);
  for (int i = 0; i < inputs; ++i) {
    auto* input = config.add_input();
    input->set_name("INPUT" + std::to_string(i));
    input->set_data_type(type);
    for (int64_t d : dims) input->add_dims(d);
  }
  return config;
}

TEST(InferCodecTest, RawRequestDeducesTheShapeWithBatchOne) {
  const std::string body(16, '\0');
  InferenceRequest request;
  OutputFormat format;
  JsonInputStorage storage;
  ASSERT_TRUE(makeRawInferRequest(bytesOf(body), rawConfig(8, inference::TYPE_FP32, {2, -1}),
                                  request, format, storage)
                  .isOk());
  EXPECT_EQ(request.inputs[0].shape, (Shape{1, 2, 2}));
  EXPECT_EQ(request.inputs[0].data.data(), bytesOf(body).data());  // a view, not a copy
  EXPECT_TRUE(format.default_binary);

  const std::string text = "hello";
  ASSERT_TRUE(makeRawInferRequest(bytesOf(text), rawConfig(0, inference::TYPE_STRING, {1}), request,
                                  format, storage)
                  .isOk());
  auto elements = splitBytesElements(request.inputs[0].data, 1);
  ASSERT_TRUE(elements.isOk());
  EXPECT_EQ((*elements)[0], "hello");

  expectError(makeRawInferRequest(bytesOf(body), rawConfig(0, inference::TYPE_FP32, {-1, -1}),
                                  request, format, storage),
              StatusCode::kInvalidArg, "more than one variable-sized dimension");
  expectError(makeRawInferRequest(bytesOf(body), rawConfig(0, inference::TYPE_FP32, {4}, 2),
                                  request, format, storage),
              StatusCode::kInvalidArg, "Raw request must only have 1 input");
  expectError(makeRawInferRequest(bytesOf(text), rawConfig(0, inference::TYPE_STRING, {-1}),
                                  request, format, storage),
              StatusCode::kInvalidArg, "input shape [1]");
}

// --- responses
// ---------------------------------------------------------------------------------------

OutputTensor output(std::string name, DataType type, Shape shape, const void* data, size_t size) {
  OutputTensor tensor;
  tensor.name = std::move(name);
  tensor.datatype = type;
  tensor.shape = std::move(shape);
  tensor.data = net::ByteBuffer::uninitialized(size);
  std::memcpy(tensor.data.data(), data, size);
  return tensor;
}

TEST(InferCodecTest, WritesJsonAndBinaryOutputs) {
  const float floats[3] = {1.5f, 0.1f, -2.f};
  const std::string bytes = std::string("\x02\0\0\0hi", 6) + std::string("\x01\0\0\0\"", 5);
  std::vector<OutputTensor> outputs;
  outputs.push_back(output("F", DataType::kFp32, {1, 3}, floats, sizeof(floats)));
  outputs.push_back(output("S", DataType::kBytes, {2}, bytes.data(), bytes.size()));
  outputs.push_back(output("B", DataType::kFp32, {1, 3}, floats, sizeof(floats)));
  OutputFormat format;
  format.explicit_binary = {{"B", true}};
  auto body = writeInferResponse("m", 3, "id\"1", outputs, format);
  ASSERT_TRUE(body.isOk()) << body.status().toString();
  EXPECT_EQ(
      body->json,
      R"({"id":"id\"1","model_name":"m","model_version":"3","outputs":[)"
      R"({"name":"F","datatype":"FP32","shape":[1,3],"data":[1.5,0.1,-2]},)"
      R"({"name":"S","datatype":"BYTES","shape":[2],"data":["hi","\""]},)"
      R"({"name":"B","datatype":"FP32","shape":[1,3],"parameters":{"binary_data_size":12}}]})");
  ASSERT_EQ(body->binary.size(), 1u);
  EXPECT_EQ(body->binary[0].size(), 12u);
  EXPECT_TRUE(body->has_binary_outputs);
}

TEST(InferCodecTest, JsonCannotCarryHalfPrecision) {
  const uint16_t half = 0x3c00;
  std::vector<OutputTensor> outputs;
  outputs.push_back(output("H", DataType::kFp16, {1}, &half, sizeof(half)));
  auto body = writeInferResponse("m", 1, "", outputs, OutputFormat{});
  expectError(body.status(), StatusCode::kInvalidArg, "binary_data");
}

TEST(InferCodecTest, NonFiniteFloatsUsePythonSpelling) {
  const double values[3] = {std::numeric_limits<double>::quiet_NaN(),
                            std::numeric_limits<double>::infinity(),
                            -std::numeric_limits<double>::infinity()};
  std::string out;
  ASSERT_TRUE(appendTensorJson(out, "x", DataType::kFp64, std::as_bytes(std::span(values))).isOk());
  EXPECT_EQ(out, "[NaN,Infinity,-Infinity]");
}

// --- routes
// ------------------------------------------------------------------------------------------

TEST(HttpRoutesTest, MatchesTritonPaths) {
  auto infer = matchRoute("POST", "/v2/models/my_model/versions/3/infer");
  ASSERT_EQ(infer.outcome, RouteMatch::Outcome::kFound);
  EXPECT_EQ(infer.route.endpoint, Endpoint::kModelInfer);
  EXPECT_EQ(infer.route.model, "my_model");
  EXPECT_EQ(infer.route.version, "3");
  EXPECT_EQ(matchRoute("GET", "/v2").route.endpoint, Endpoint::kServerMetadata);
  EXPECT_EQ(matchRoute("GET", "/v2/health/ready").route.endpoint, Endpoint::kHealthReady);
  EXPECT_EQ(matchRoute("GET", "/v2/models/stats").route.endpoint, Endpoint::kModelStatistics);
  EXPECT_EQ(matchRoute("GET", "/v2/models/m/config").route.endpoint, Endpoint::kModelConfig);
  EXPECT_EQ(matchRoute("GET", "/v2/models/m").route.endpoint, Endpoint::kModelMetadata);
  EXPECT_EQ(matchRoute("POST", "/v2/repository/index").route.endpoint, Endpoint::kRepositoryIndex);
  auto load = matchRoute("POST", "/v2/repository/models/m/load");
  EXPECT_EQ(load.route.endpoint, Endpoint::kRepositoryLoad);
  EXPECT_EQ(load.route.model, "m");
  auto unregister = matchRoute("POST", "/v2/systemsharedmemory/unregister");
  EXPECT_EQ(unregister.route.endpoint, Endpoint::kSystemSharedMemoryUnregister);
  EXPECT_TRUE(unregister.route.region.empty());
  auto status = matchRoute("GET", "/v2/cudasharedmemory/region/r1/status");
  EXPECT_EQ(status.route.endpoint, Endpoint::kCudaSharedMemoryStatus);
  EXPECT_EQ(status.route.region, "r1");
}

TEST(HttpRoutesTest, UnknownPathIs404AndWrongMethodIs405) {
  EXPECT_EQ(matchRoute("GET", "/v3/models").outcome, RouteMatch::Outcome::kNotFound);
  EXPECT_EQ(matchRoute("GET", "/v2/models/m/versions/x/ready").outcome,
            RouteMatch::Outcome::kNotFound);
  EXPECT_EQ(matchRoute("GET", "/v2/models/m/bogus").outcome, RouteMatch::Outcome::kNotFound);
  EXPECT_EQ(matchRoute("GET", "/v2/models/m/infer").outcome,
            RouteMatch::Outcome::kMethodNotAllowed);
  EXPECT_EQ(matchRoute("POST", "/v2/health/live").outcome, RouteMatch::Outcome::kMethodNotAllowed);
  EXPECT_EQ(matchRoute("DELETE", "/v2").outcome, RouteMatch::Outcome::kMethodNotAllowed);
}

// --- config JSON and base64
// -------------------------------------------------------------------------

TEST(ModelConfigJsonTest, SixtyFourBitFieldsTritonReadsBackAreNumbers) {
  inference::ModelConfig config = rawConfig(4, inference::TYPE_FP32, {3, -1});
  config.mutable_input(0)->mutable_reshape()->add_shape(6);
  config.mutable_dynamic_batching()->set_max_queue_delay_microseconds(100);
  config.mutable_dynamic_batching()
      ->mutable_default_queue_policy()
      ->set_default_timeout_microseconds(50);
  auto parsed = parseJson(modelConfigToTritonJson(config), "test");
  ASSERT_TRUE(parsed.isOk());
  const auto& json = *parsed;
  EXPECT_EQ(json["input"][0]["dims"], nlohmann::json::parse("[3,-1]"));
  EXPECT_EQ(json["input"][0]["reshape"]["shape"], nlohmann::json::parse("[6]"));
  EXPECT_EQ(json["input"][0]["data_type"], "TYPE_FP32");
  EXPECT_EQ(json["max_batch_size"], 4);
  EXPECT_EQ(json["dynamic_batching"]["max_queue_delay_microseconds"], 100);
  EXPECT_EQ(json["dynamic_batching"]["default_queue_policy"]["default_timeout_microseconds"], 50);
  // Field order stays the .proto's, as protobuf prints it.
  const std::string text = modelConfigToTritonJson(config);
  EXPECT_LT(text.find("\"name\""), text.find("\"max_batch_size\""));

  inference::ModelConfig ensemble;  // ensemble_scheduling and dynamic_batching are a oneof
  auto* step = ensemble.mutable_ensemble_scheduling()->add_step();
  step->set_model_name("x");
  step->set_model_version(-1);
  auto ensemble_json = parseJson(modelConfigToTritonJson(ensemble), "test");
  ASSERT_TRUE(ensemble_json.isOk());
  EXPECT_EQ((*ensemble_json)["ensemble_scheduling"]["step"][0]["model_version"], -1);
}

TEST(Base64Test, DecodesAndRejects) {
  auto decoded = decodeBase64("aGVsbG8=", "x");
  ASSERT_TRUE(decoded.isOk());
  EXPECT_EQ(*decoded, "hello");
  EXPECT_EQ(*decodeBase64("aGVsbG8", "x"), "hello");
  EXPECT_EQ(*decodeBase64("", "x"), "");
  expectError(decodeBase64("a$b=", "file:1/model.pt").status(), StatusCode::kInvalidArg,
              "file:1/model.pt");
  expectError(decodeBase64("abcde", "x").status(), StatusCode::kInvalidArg, "base64");
}

}  // namespace
}  // namespace beamline::frontend::http
