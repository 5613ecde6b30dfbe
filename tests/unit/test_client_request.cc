// The client library (include/beamline/client/grpc_client.h): request building and validation,
// response decoding, status mapping, and calls against a small in-process fake server.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "beamline/client/grpc_client.h"
#include "grpc_service.grpc.pb.h"

namespace beamline::client {
namespace {

template <typename T>
std::vector<std::byte> bytesOf(const std::vector<T>& values) {
  std::vector<std::byte> out(values.size() * sizeof(T));
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

template <typename T>
std::string stringOf(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

template <typename T>
std::vector<T> valuesOf(std::span<const std::byte> data) {
  std::vector<T> out(data.size() / sizeof(T));
  std::memcpy(out.data(), data.data(), out.size() * sizeof(T));
  return out;
}

// ---------------------------------------------------------------------------------------------
// InferRequest

TEST(InferRequestTest, ChecksDataSizeAgainstShape) {
  InferRequest request;
  request.setModel("m", "2");
  const size_t x = request.addInput("x", DataType::kFp32, Shape{2, 3});
  EXPECT_EQ(x, 0u);
  Status too_small = request.setInputData(x, bytesOf<float>({1, 2, 3, 4, 5}));
  EXPECT_EQ(too_small.code(), StatusCode::kInvalidArg);
  EXPECT_NE(too_small.message().find("'x'"), std::string::npos) << too_small.message();
  EXPECT_TRUE(request.message().raw_input_contents(0).empty());  // left as it was

  ASSERT_TRUE(request.setInputData(x, bytesOf<float>({1, 2, 3, 4, 5, 6})).isOk());
  EXPECT_TRUE(request.validate().isOk());
  EXPECT_EQ(request.message().model_name(), "m");
  EXPECT_EQ(request.message().model_version(), "2");
  EXPECT_EQ(request.message().inputs(0).datatype(), "FP32");

  // A new shape makes the old data stale; validate() says so before anything is sent.
  ASSERT_TRUE(request.setInputShape(x, Shape{3, 3}).isOk());
  EXPECT_EQ(request.validate().code(), StatusCode::kInvalidArg);
  EXPECT_EQ(request.setInputShape(x, Shape{-1, 3}).code(), StatusCode::kInvalidArg);
  EXPECT_EQ(request.setInputData(7, {}).code(), StatusCode::kInvalidArg);
}

TEST(InferRequestTest, ValidatesBytesFraming) {
  InferRequest request;
  request.setModel("m");
  const size_t s = request.addInput("s", DataType::kBytes, Shape{2});
  const std::vector<std::string_view> one = {"only"};
  EXPECT_EQ(request.setInputBytes(s, one).code(), StatusCode::kInvalidArg);

  const std::vector<std::string_view> two = {"ab", ""};
  ASSERT_TRUE(request.setInputBytes(s, two).isOk());
  EXPECT_EQ(request.message().raw_input_contents(0), std::string("\x02\0\0\0ab\0\0\0\0", 10));

  // Raw data: a length prefix that runs past the end is rejected, as is a wrong count.
  const std::string broken("\x09\0\0\0ab", 6);
  EXPECT_EQ(request.setInputData(s, {reinterpret_cast<const std::byte*>(broken.data()), 6}).code(),
            StatusCode::kInvalidArg);
  const std::string three("\x01\0\0\0a\x01\0\0\0b\x01\0\0\0c", 15);
  EXPECT_EQ(request.setInputData(s, {reinterpret_cast<const std::byte*>(three.data()), 15}).code(),
            StatusCode::kInvalidArg);
  const std::string good("\x01\0\0\0a\x01\0\0\0b", 10);
  EXPECT_TRUE(
      request.setInputData(s, {reinterpret_cast<const std::byte*>(good.data()), 10}).isOk());

  const size_t f = request.addInput("f", DataType::kFp32, Shape{2});
  EXPECT_EQ(request.setInputBytes(f, two).code(), StatusCode::kInvalidArg);  // not BYTES
}

TEST(InferRequestTest, ReusesTheInputBufferForSameSizedData) {
  InferRequest request;
  request.setModel("m");
  const size_t x = request.addInput("x", DataType::kFp32, Shape{1024});
  std::vector<float> values(1024, 1.0f);
  ASSERT_TRUE(request.setInputData(x, bytesOf(values)).isOk());
  const char* first = request.message().raw_input_contents(0).data();
  values.assign(1024, 2.0f);
  ASSERT_TRUE(request.setInputData(x, bytesOf(values)).isOk());
  EXPECT_EQ(request.message().raw_input_contents(0).data(), first);
  EXPECT_EQ(request.message().raw_input_contents(0), stringOf(values));

  // Smaller data fits in the same buffer too.
  ASSERT_TRUE(request.setInputShape(x, Shape{512}).isOk());
  ASSERT_TRUE(request.setInputData(x, bytesOf(std::vector<float>(512, 3.0f))).isOk());
  EXPECT_EQ(request.message().raw_input_contents(0).data(), first);

  // reset() keeps the message's strings for the next request built the same way.
  request.reset();
  EXPECT_EQ(request.inputCount(), 0u);
  EXPECT_EQ(request.message().inputs_size(), 0);
  request.setModel("m");
  const size_t y = request.addInput("y", DataType::kFp32, Shape{1024});
  EXPECT_TRUE(request.message().raw_input_contents(0).empty());
  ASSERT_TRUE(request.setInputData(y, bytesOf(values)).isOk());
  EXPECT_EQ(request.message().raw_input_contents(0).data(), first);
}

TEST(InferRequestTest, MapsParametersToTheProto) {
  InferRequest request;
  request.setModel("m");
  request.setId("req-1");
  request.setParameter("sequence_start", true);
  request.setParameter("sequence_id", int64_t{42});
  request.setParameter("note", std::string("hello"));
  request.setParameter("scale", 0.5);
  request.setParameter("priority", uint64_t{3});
  request.setParameter("priority", uint64_t{1});  // replaces

  const auto& parameters = request.message().parameters();
  ASSERT_EQ(parameters.size(), 5u);
  EXPECT_EQ(parameters.at("sequence_start").parameter_choice_case(),
            inference::InferParameter::kBoolParam);
  EXPECT_TRUE(parameters.at("sequence_start").bool_param());
  EXPECT_EQ(parameters.at("sequence_id").parameter_choice_case(),
            inference::InferParameter::kInt64Param);
  EXPECT_EQ(parameters.at("sequence_id").int64_param(), 42);
  EXPECT_EQ(parameters.at("note").string_param(), "hello");
  EXPECT_EQ(parameters.at("scale").parameter_choice_case(),
            inference::InferParameter::kDoubleParam);
  EXPECT_EQ(parameters.at("scale").double_param(), 0.5);
  EXPECT_EQ(parameters.at("priority").parameter_choice_case(),
            inference::InferParameter::kUint64Param);
  EXPECT_EQ(parameters.at("priority").uint64_param(), 1u);
  EXPECT_EQ(request.message().id(), "req-1");

  auto back = fromInferParameter(parameters.at("note"));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(std::get<std::string>(*back), "hello");

  const size_t out = request.requestOutput("y");
  ASSERT_TRUE(request.setOutputParameter(out, "classification", int64_t{3}).isOk());
  EXPECT_EQ(request.message().outputs(0).name(), "y");
  EXPECT_EQ(request.message().outputs(0).parameters().at("classification").int64_param(), 3);
  request.clearOutputs();
  EXPECT_EQ(request.message().outputs_size(), 0);
}

// ---------------------------------------------------------------------------------------------
// InferResult

void addOutput(inference::ModelInferResponse& response, const std::string& name,
               const std::string& datatype, const Shape& shape) {
  auto* output = response.add_outputs();
  output->set_name(name);
  output->set_datatype(datatype);
  for (int64_t d : shape) output->add_shape(d);
}

TEST(InferResultTest, ReadsRawOutputsByPosition) {
  InferResult result;
  auto& response = result.mutableMessage();
  response.set_model_name("m");
  response.set_model_version("3");
  response.set_id("abc");
  addOutput(response, "a", "FP32", {2});
  addOutput(response, "b", "BYTES", {2});
  addOutput(response, "c", "INT64", {0});
  response.add_raw_output_contents(stringOf<float>({1.5f, -1.0f}));
  std::string encoded;
  appendBytesElement(encoded, "hi");
  appendBytesElement(encoded, "there");
  response.add_raw_output_contents(encoded);
  response.add_raw_output_contents("");
  ASSERT_TRUE(result.prepare().isOk());

  EXPECT_EQ(result.outputCount(), 3u);
  EXPECT_EQ(result.modelName(), "m");
  EXPECT_EQ(result.modelVersion(), "3");
  EXPECT_EQ(result.id(), "abc");
  auto a = result.output("a");
  ASSERT_TRUE(a.isOk());
  EXPECT_EQ(a->datatype, DataType::kFp32);
  EXPECT_EQ(a->shape, Shape{2});
  EXPECT_EQ(valuesOf<float>(a->data), (std::vector<float>{1.5f, -1.0f}));
  // A view over the message, not a copy.
  EXPECT_EQ(reinterpret_cast<const char*>(a->data.data()),
            result.message().raw_output_contents(0).data());
  auto b = result.bytesElements("b");
  ASSERT_TRUE(b.isOk());
  EXPECT_EQ(*b, (std::vector<std::string_view>{"hi", "there"}));
  EXPECT_TRUE(result.output("c").isOk());
  EXPECT_EQ(result.output("missing").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(result.bytesElements("a").status().code(), StatusCode::kInvalidArg);
}

TEST(InferResultTest, ConvertsTypedContents) {
  InferResult result;
  auto& response = result.mutableMessage();
  addOutput(response, "f", "FP32", {3});
  response.mutable_outputs(0)->mutable_contents()->add_fp32_contents(1.0f);
  response.mutable_outputs(0)->mutable_contents()->add_fp32_contents(2.0f);
  response.mutable_outputs(0)->mutable_contents()->add_fp32_contents(3.0f);
  addOutput(response, "i8", "INT8", {2});
  response.mutable_outputs(1)->mutable_contents()->add_int_contents(-5);
  response.mutable_outputs(1)->mutable_contents()->add_int_contents(7);
  addOutput(response, "flag", "BOOL", {2});
  response.mutable_outputs(2)->mutable_contents()->add_bool_contents(true);
  response.mutable_outputs(2)->mutable_contents()->add_bool_contents(false);
  addOutput(response, "s", "BYTES", {2});
  response.mutable_outputs(3)->mutable_contents()->add_bytes_contents("x");
  response.mutable_outputs(3)->mutable_contents()->add_bytes_contents("yz");
  // Mixed: an output without typed contents takes the (only) raw entry.
  addOutput(response, "raw", "UINT16", {2});
  response.add_raw_output_contents(stringOf<uint16_t>({9, 10}));
  ASSERT_TRUE(result.prepare().isOk());

  EXPECT_EQ(valuesOf<float>(result.output("f")->data), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(valuesOf<int8_t>(result.output("i8")->data), (std::vector<int8_t>{-5, 7}));
  EXPECT_EQ(valuesOf<uint8_t>(result.output("flag")->data), (std::vector<uint8_t>{1, 0}));
  EXPECT_EQ(*result.bytesElements("s"), (std::vector<std::string_view>{"x", "yz"}));
  EXPECT_EQ(valuesOf<uint16_t>(result.output("raw")->data), (std::vector<uint16_t>{9, 10}));
}

TEST(InferResultTest, RejectsMalformedResponses) {
  {
    InferResult result;
    addOutput(result.mutableMessage(), "a", "FP32", {3});
    result.mutableMessage().add_raw_output_contents(stringOf<float>({1, 2}));
    EXPECT_EQ(result.prepare().code(), StatusCode::kInternal);
  }
  {
    InferResult result;
    addOutput(result.mutableMessage(), "a", "FP33", {1});
    EXPECT_EQ(result.prepare().code(), StatusCode::kInternal);
  }
  {
    InferResult result;  // more raw entries than outputs
    addOutput(result.mutableMessage(), "a", "UINT8", {1});
    result.mutableMessage().add_raw_output_contents("a");
    result.mutableMessage().add_raw_output_contents("b");
    EXPECT_FALSE(result.prepare().isOk());
  }
}

// ---------------------------------------------------------------------------------------------
// Status mapping

TEST(StatusFromGrpcTest, MapsCodesAndNamesTheContext) {
  using std::chrono::microseconds;
  EXPECT_TRUE(statusFromGrpc(0, "", "model 'm'", microseconds(0)).isOk());
  Status invalid = statusFromGrpc(static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT), "bad",
                                  "model 'm'", microseconds(0));
  EXPECT_EQ(invalid.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(invalid.message(), "model 'm': bad");
  EXPECT_EQ(statusFromGrpc(static_cast<int>(grpc::StatusCode::NOT_FOUND), "", "", {}).code(),
            StatusCode::kNotFound);
  EXPECT_EQ(statusFromGrpc(static_cast<int>(grpc::StatusCode::UNIMPLEMENTED), "", "", {}).code(),
            StatusCode::kUnsupported);
  EXPECT_EQ(statusFromGrpc(static_cast<int>(grpc::StatusCode::UNAVAILABLE), "", "", {}).code(),
            StatusCode::kUnavailable);
  EXPECT_EQ(
      statusFromGrpc(static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED), "", "", {}).code(),
      StatusCode::kInvalidArg);
  Status deadline = statusFromGrpc(static_cast<int>(grpc::StatusCode::DEADLINE_EXCEEDED),
                                   "Deadline Exceeded", "model 'm'", microseconds(1500));
  EXPECT_EQ(deadline.code(), StatusCode::kUnavailable);
  EXPECT_NE(deadline.message().find("model 'm': timed out after 1500 us"), std::string::npos);
  Status other = statusFromGrpc(static_cast<int>(grpc::StatusCode::PERMISSION_DENIED), "no", "",
                                microseconds(0));
  EXPECT_EQ(other.code(), StatusCode::kInternal);
  EXPECT_NE(other.message().find("PERMISSION_DENIED"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Calls against an in-process fake server on a free port.

// Echoes each input back as an output named "<input>_out"; model "slow" sleeps 500 ms; other
// models than "echo" and "slow" are NOT_FOUND. Runs on gRPC's sync server threads.
class FakeService final : public inference::GRPCInferenceService::Service {
 public:
  grpc::Status ServerLive(grpc::ServerContext*, const inference::ServerLiveRequest*,
                          inference::ServerLiveResponse* response) override {
    response->set_live(true);
    return grpc::Status::OK;
  }
  grpc::Status ModelInfer(grpc::ServerContext*, const inference::ModelInferRequest* request,
                          inference::ModelInferResponse* response) override {
    if (request->model_name() == "slow") {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    } else if (request->model_name() != "echo") {
      return {grpc::StatusCode::NOT_FOUND, "unknown model"};
    }
    response->set_model_name(request->model_name());
    response->set_model_version("1");
    response->set_id(request->id());
    for (int i = 0; i < request->inputs_size(); ++i) {
      auto* output = response->add_outputs();
      output->set_name(request->inputs(i).name() + "_out");
      output->set_datatype(request->inputs(i).datatype());
      *output->mutable_shape() = request->inputs(i).shape();
      response->add_raw_output_contents(request->raw_input_contents(i));
    }
    return grpc::Status::OK;
  }
  grpc::Status RepositoryIndex(grpc::ServerContext*, const inference::RepositoryIndexRequest*,
                               inference::RepositoryIndexResponse* response) override {
    auto* model = response->add_models();
    model->set_name("echo");
    model->set_version("1");
    model->set_state("READY");
    return grpc::Status::OK;
  }
  grpc::Status RepositoryModelLoad(grpc::ServerContext*,
                                   const inference::RepositoryModelLoadRequest* request,
                                   inference::RepositoryModelLoadResponse*) override {
    std::lock_guard lock(mutex_);
    last_load_config_ = request->parameters().count("config") > 0
                            ? request->parameters().at("config").string_param()
                            : "";
    return grpc::Status::OK;
  }
  std::string lastLoadConfig() {
    std::lock_guard lock(mutex_);
    return last_load_config_;
  }

 private:
  std::mutex mutex_;
  std::string last_load_config_;
};

class GrpcClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
  }
  std::unique_ptr<GrpcClient> makeClient(std::chrono::microseconds timeout = {}) {
    ClientOptions options;
    options.url = "grpc://127.0.0.1:" + std::to_string(port_);
    options.timeout = timeout;
    auto client = GrpcClient::create(options);
    EXPECT_TRUE(client.isOk()) << client.status().toString();
    return std::move(client).value();
  }
  static void fillEcho(InferRequest& request) {
    request.setModel("echo");
    const size_t x = request.addInput("x", DataType::kFp32, Shape{2});
    ASSERT_TRUE(request.setInputData(x, bytesOf<float>({1.0f, 2.0f})).isOk());
  }

  FakeService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(GrpcClientTest, RejectsBadOptions) {
  ClientOptions options;
  options.url = "";
  EXPECT_EQ(GrpcClient::create(options).status().code(), StatusCode::kInvalidArg);
  options.url = "localhost:1";
  options.max_message_bytes = 0;
  EXPECT_EQ(GrpcClient::create(options).status().code(), StatusCode::kInvalidArg);
}

TEST_F(GrpcClientTest, InfersSynchronously) {
  auto client = makeClient();
  EXPECT_TRUE(*client->serverLive());
  InferRequest request;
  fillEcho(request);
  request.setId("7");
  InferResult result;
  ASSERT_TRUE(client->infer(request, result).isOk());
  EXPECT_EQ(result.id(), "7");
  auto out = result.output("x_out");
  ASSERT_TRUE(out.isOk()) << out.status().toString();
  EXPECT_EQ(valuesOf<float>(out->data), (std::vector<float>{1.0f, 2.0f}));

  // The same request and result objects serve the next call.
  ASSERT_TRUE(request.setInputData(0, bytesOf<float>({3.0f, 4.0f})).isOk());
  ASSERT_TRUE(client->infer(request, result).isOk());
  EXPECT_EQ(valuesOf<float>(result.output("x_out")->data), (std::vector<float>{3.0f, 4.0f}));

  auto index = client->repositoryIndex();
  ASSERT_TRUE(index.isOk());
  ASSERT_EQ(index->models_size(), 1);
  EXPECT_EQ(index->models(0).state(), "READY");
  ASSERT_TRUE(client->loadModel("echo", std::string("{\"max_batch_size\": 4}")).isOk());
  EXPECT_EQ(service_.lastLoadConfig(), "{\"max_batch_size\": 4}");
}

TEST_F(GrpcClientTest, MapsServerErrors) {
  auto client = makeClient();
  InferRequest request;
  fillEcho(request);
  request.setModel("nope");
  InferResult result;
  Status status = client->infer(request, result);
  EXPECT_EQ(status.code(), StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "model 'nope': unknown model");
  // The fake server does not implement ModelConfig.
  EXPECT_EQ(client->modelConfig("echo").status().code(), StatusCode::kUnsupported);
}

TEST_F(GrpcClientTest, ReportsTimeouts) {
  auto client = makeClient(std::chrono::milliseconds(50));
  InferRequest request;
  fillEcho(request);
  request.setModel("slow");
  InferResult result;
  Status status = client->infer(request, result);
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_NE(status.message().find("model 'slow': timed out after 50000 us"), std::string::npos)
      << status.message();
}

TEST_F(GrpcClientTest, InfersAsynchronously) {
  auto client = makeClient();
  constexpr int kCalls = 16;
  std::vector<InferRequest> requests(kCalls);
  std::mutex mutex;
  std::condition_variable all_done;
  int done = 0;
  int ok = 0;
  for (int i = 0; i < kCalls; ++i) {
    requests[i].setModel("echo");
    const size_t x = requests[i].addInput("x", DataType::kInt32, Shape{1});
    ASSERT_TRUE(requests[i].setInputData(x, bytesOf<int32_t>({i})).isOk());
    client->asyncInfer(requests[i], [&, i](Status status, std::unique_ptr<InferResult> result) {
      bool good = status.isOk() && result != nullptr &&
                  valuesOf<int32_t>(result->output("x_out")->data) == std::vector<int32_t>{i};
      std::lock_guard lock(mutex);
      ok += good ? 1 : 0;
      ++done;
      all_done.notify_all();
    });
  }
  std::unique_lock lock(mutex);
  ASSERT_TRUE(all_done.wait_for(lock, std::chrono::seconds(10), [&] { return done == kCalls; }));
  EXPECT_EQ(ok, kCalls);
}

TEST_F(GrpcClientTest, AsyncReportsInvalidRequestsAndUnreachableServers) {
  auto client = makeClient();
  InferRequest invalid;  // names no model
  bool called = false;
  client->asyncInfer(invalid, [&](Status status, std::unique_ptr<InferResult> result) {
    called = true;
    EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
    EXPECT_EQ(result, nullptr);
  });
  EXPECT_TRUE(called);  // on the calling thread, before asyncInfer returned

  server_->Shutdown(std::chrono::system_clock::now());
  server_.reset();
  InferRequest request;
  fillEcho(request);
  std::promise<Status> outcome;
  client->asyncInfer(request, [&](Status status, std::unique_ptr<InferResult>) {
    outcome.set_value(std::move(status));
  });
  auto future = outcome.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_EQ(future.get().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace beamline::client
