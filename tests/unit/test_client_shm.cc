// The client's shared-memory pieces and its zero-copy request encoding: requests with inputs in
// shared memory, results with outputs bound to a region, POSIX regions, and the encoding that
// must parse to the very message protobuf would have serialized.
#include <gtest/gtest.h>
#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <sys/stat.h>

#include <cstring>

#include "beamline/client/grpc_client.h"
#include "beamline/client/shared_memory.h"
#include "client/request_encoding.h"

namespace beamline::client {
namespace {

std::span<const std::byte> bytesOf(const std::vector<float>& v) { return std::as_bytes(std::span(v)); }

InferRequest sampleRequest(const std::vector<float>& big, const std::vector<float>& small) {
  InferRequest request;
  request.setModel("m", "3");
  request.setId("event-7");
  request.setParameter("priority", ParameterValue(int64_t{2}));
  request.setParameter("tag", ParameterValue(std::string("x")));
  const int64_t big_shape[] = {static_cast<int64_t>(big.size())};
  const int64_t small_shape[] = {static_cast<int64_t>(small.size())};
  const size_t a = request.addInput("A", DataType::kFp32, big_shape);
  EXPECT_TRUE(request.setInputData(a, bytesOf(big)).isOk());
  request.addSharedMemoryInput("S", DataType::kFp32, small_shape, "region", 128,
                               small.size() * sizeof(float));
  const size_t b = request.addInput("B", DataType::kFp32, small_shape);
  EXPECT_TRUE(request.setInputData(b, bytesOf(small)).isOk());
  const size_t empty = request.addInput("E", DataType::kFp32, std::vector<int64_t>{0});
  EXPECT_TRUE(request.setInputData(empty, {}).isOk());
  const size_t out = request.requestOutput("OUT");
  EXPECT_TRUE(request.setOutputSharedMemory(out, "region", 4096, 64).isOk());
  request.requestOutput("OTHER");
  return request;
}

TEST(RequestEncodingTest, ParsesToTheMessageProtobufWouldSerialize) {
  std::vector<float> big(100000), small(5);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>(i) * 0.25f;
  for (size_t i = 0; i < small.size(); ++i) small[i] = -static_cast<float>(i);
  InferRequest request = sampleRequest(big, small);
  ASSERT_TRUE(request.validate().isOk()) << request.validate().toString();
  inference::ModelInferRequest parsed;
  {
    grpc::ByteBuffer buffer;
    encodeModelInferRequest(request, buffer);
    grpc::Status status =
        grpc::SerializationTraits<inference::ModelInferRequest>::Deserialize(&buffer, &parsed);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parsed, request.message()));
  EXPECT_EQ(parsed.raw_input_contents_size(), 3);  // A, B and the empty E; not S
  // The buffer is gone: nothing pinned, the request may change.
  EXPECT_TRUE(request.waitUntilUnpinned(std::chrono::milliseconds(0)));
}

TEST(RequestEncodingTest, LargeBuffersStayPinnedWhileTheTransportHoldsThem) {
  std::vector<float> big(100000, 1.0f), small(5, 2.0f);
  InferRequest request = sampleRequest(big, small);
  auto buffer = std::make_unique<grpc::ByteBuffer>();
  encodeModelInferRequest(request, *buffer);
  EXPECT_FALSE(request.waitUntilUnpinned(std::chrono::milliseconds(0)));
  buffer.reset();
  EXPECT_TRUE(request.waitUntilUnpinned(std::chrono::milliseconds(0)));
}

TEST(InferRequestSharedMemoryTest, InputsInSharedMemoryHaveNoRawEntry) {
  InferRequest request;
  request.setModel("m");
  const int64_t shape[] = {2, 3};
  const size_t s = request.addSharedMemoryInput("S", DataType::kFp32, shape, "r", 0, 24);
  EXPECT_TRUE(request.inputInSharedMemory(s));
  EXPECT_EQ(request.message().raw_input_contents_size(), 0);
  EXPECT_TRUE(request.validate().isOk());
  EXPECT_FALSE(request.setInputData(s, std::vector<std::byte>(24)).isOk());
  EXPECT_FALSE(request.mutableInputData(s, 24).isOk());
  const auto& parameters = request.message().inputs(0).parameters();
  EXPECT_EQ(parameters.at("shared_memory_region").string_param(), "r");
  EXPECT_EQ(parameters.at("shared_memory_byte_size").int64_param(), 24);
  // A byte size that does not match the shape is refused before sending.
  InferRequest wrong;
  wrong.setModel("m");
  wrong.addSharedMemoryInput("S", DataType::kFp32, shape, "r", 0, 20);
  EXPECT_EQ(wrong.validate().code(), StatusCode::kInvalidArg);
  // Raw inputs after a shared-memory one keep their own raw slots.
  const size_t raw = request.addInput("R", DataType::kInt64, std::vector<int64_t>{1});
  const int64_t value = 42;
  ASSERT_TRUE(request.setInputData(raw, std::as_bytes(std::span(&value, 1))).isOk());
  EXPECT_EQ(request.message().raw_input_contents_size(), 1);
  EXPECT_EQ(request.inputData(raw).size(), 8u);
  EXPECT_TRUE(request.validate().isOk());
}

TEST(InferResultSharedMemoryTest, BoundOutputsAreReadFromTheRegion) {
  std::vector<float> region(8);
  for (size_t i = 0; i < region.size(); ++i) region[i] = static_cast<float>(i) + 0.5f;
  // Servers differ: an empty raw entry for the shared-memory output, or none.
  for (bool empty_raw_entry : {true, false}) {
    InferResult result;
    auto& message = result.mutableMessage();
    auto* shm = message.add_outputs();
    shm->set_name("SHM");
    shm->set_datatype("FP32");
    shm->add_shape(2);
    shm->add_shape(2);
    if (empty_raw_entry) message.add_raw_output_contents();
    auto* raw = message.add_outputs();
    raw->set_name("RAW");
    raw->set_datatype("INT32");
    raw->add_shape(1);
    const int32_t seven = 7;
    message.add_raw_output_contents()->assign(reinterpret_cast<const char*>(&seven), 4);
    result.bindSharedMemoryOutput("SHM", std::as_bytes(std::span(region)));
    ASSERT_TRUE(result.prepare().isOk()) << result.prepare().toString();
    auto view = result.tensor(0).value();
    ASSERT_EQ(view.data.size(), 16u);
    EXPECT_EQ(reinterpret_cast<const float*>(view.data.data())[3], 3.5f);
    auto other = result.output("RAW").value();
    EXPECT_EQ(*reinterpret_cast<const int32_t*>(other.data.data()), 7);
  }
  // The bound slot is smaller than the output: an error, not a read past the region.
  InferResult result;
  auto* shm = result.mutableMessage().add_outputs();
  shm->set_name("SHM");
  shm->set_datatype("FP32");
  shm->add_shape(16);
  result.bindSharedMemoryOutput("SHM", std::as_bytes(std::span(region)));
  EXPECT_EQ(result.prepare().code(), StatusCode::kInternal);
}

TEST(SharedMemoryRegionTest, CreatesMapsAndUnlinks) {
  const std::string key = makeSharedMemoryKey("unit");
  struct stat info{};
  {
    auto region = SharedMemoryRegion::create(key, 1 << 20);
    ASSERT_TRUE(region.isOk()) << region.status().toString();
    EXPECT_EQ((*region)->size(), 1u << 20);
    std::memset((*region)->data(), 0x5a, (*region)->size());
    ASSERT_EQ(::stat(("/dev/shm" + key).c_str(), &info), 0);
    EXPECT_EQ(static_cast<size_t>(info.st_size), 1u << 20);
    // The key is taken: a second region of that name is refused.
    EXPECT_EQ(SharedMemoryRegion::create(key, 64).status().code(), StatusCode::kAlreadyExists);
  }
  EXPECT_NE(::stat(("/dev/shm" + key).c_str(), &info), 0);  // removed with the region
  EXPECT_FALSE(SharedMemoryRegion::create("no_slash", 64).isOk());
  EXPECT_FALSE(SharedMemoryRegion::create(makeSharedMemoryKey("unit"), 0).isOk());
}

TEST(SharedMemoryRegionTest, CudaRegionsAnswerClearlyWithoutADevice) {
  if (CudaSharedMemoryRegion::available()) GTEST_SKIP() << "a CUDA device is present";
  auto region = CudaSharedMemoryRegion::create(0, 1024);
  ASSERT_FALSE(region.isOk());
  EXPECT_FALSE(region.status().message().empty());
}

}  // namespace
}  // namespace beamline::client
