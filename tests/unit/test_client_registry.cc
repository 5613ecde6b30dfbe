// ServerRegistry and the retry policy with fake endpoints: load-based selection, health marking
// and re-probing with backoff, the order same server -> other servers -> fallback, and which
// failures are retried. The fakes answer on the calling thread or on a thread of their own.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "beamline/client/event_client.h"
#include "beamline/client/server_registry.h"

namespace beamline::client {
namespace {

// An endpoint serving the FP32 identity model "echo" (IN [-1] -> OUT [-1], max_batch_size 8):
// answers with the input, or with `failure` while `failures_left` > 0.
class FakeEndpoint final : public Endpoint {
 public:
  explicit FakeEndpoint(std::string name) : name_(std::move(name)) {}

  const std::string& name() const override { return name_; }
  bool sameHost() const override { return false; }
  Result<bool> ready() const override { return ready_.load(); }
  Result<std::vector<std::string>> readyModels() const override {
    if (!ready_) return unavailable(name_ + " is down");
    return std::vector<std::string>{"echo"};
  }
  Result<ModelInfo> modelInfo(std::string_view, std::string_view) const override {
    ModelInfo info;
    info.name = "echo";
    info.max_batch_size = 8;
    info.inputs = {{"IN", DataType::kFp32, {-1}}};
    info.outputs = {{"OUT", DataType::kFp32, {-1}}};
    return info;
  }
  Result<ServerSideStatistics> statistics(std::string_view, std::string_view) const override {
    return ServerSideStatistics{};
  }

  void infer(const InferRequest& request, InferResult& result, const CallOptions& options,
             InferDone done) const override {
    {
      std::lock_guard lock(mutex_);
      ++calls_;
      last_timeout_ = options.timeout.value_or(std::chrono::microseconds(-1));
    }
    (*log_)(name_);
    if (failures_left_ > 0) {
      --failures_left_;
      CallReport report;
      report.unreachable = failure_.code() == StatusCode::kUnavailable;
      done(failure_, report);
      return;
    }
    auto& message = result.mutableMessage();
    message.Clear();
    auto* output = message.add_outputs();
    output->set_name("OUT");
    output->set_datatype("FP32");
    output->mutable_shape()->CopyFrom(request.message().inputs(0).shape());
    auto data = request.inputData(0);
    message.add_raw_output_contents()->assign(reinterpret_cast<const char*>(data.data()),
                                              data.size());
    Status prepared = result.prepare();
    if (on_thread_) {
      std::thread([done = std::move(done), prepared] { done(prepared, CallReport{}); }).detach();
    } else {
      done(prepared, CallReport{});
    }
  }

  int calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
  }
  std::chrono::microseconds lastTimeout() const {
    std::lock_guard lock(mutex_);
    return last_timeout_;
  }

  std::string name_;
  std::atomic<bool> ready_{true};
  mutable std::atomic<int> failures_left_{0};
  Status failure_ = unavailable("connection refused");
  bool on_thread_ = false;
  std::function<void(const std::string&)>* log_ = &noLog;

 private:
  static inline std::function<void(const std::string&)> noLog = [](const std::string&) {};
  mutable std::mutex mutex_;
  mutable int calls_ = 0;
  mutable std::chrono::microseconds last_timeout_{0};
};

ServerRegistry::Config configWith(std::vector<std::shared_ptr<Endpoint>> endpoints) {
  ServerRegistry::Config config;
  config.servers_from_environment = false;
  config.fallback.enabled = false;
  config.endpoints = std::move(endpoints);
  config.health.initial_backoff = std::chrono::milliseconds(20);
  config.health.max_backoff = std::chrono::milliseconds(100);
  return config;
}

// Fills `entries` entries of length 3 with entry * 10 + i and runs the event.
Status runEvent(EventClient& client, size_t entries) {
  BL_RETURN_IF_ERROR(client.setBatchSize(entries));
  auto in = client.input("IN").value();
  BL_RETURN_IF_ERROR(in.setShape({3}));
  for (size_t e = 0; e < entries; ++e) {
    auto x = in.entry<float>(e).value();
    for (size_t i = 0; i < 3; ++i) x[i] = static_cast<float>(e * 10 + i);
  }
  return client.call();
}

TEST(ServerRegistryTest, SelectsTheLeastLoadedServer) {
  auto a = std::make_shared<FakeEndpoint>("a");
  auto b = std::make_shared<FakeEndpoint>("b");
  auto registry = ServerRegistry::create(configWith({a, b})).value();
  // Equal: both get picked (rotation), not always the first.
  std::set<size_t> picked;
  for (int i = 0; i < 4; ++i) picked.insert(registry->select("echo")->index);
  EXPECT_EQ(picked.size(), 2u);
  // Outstanding requests on a: b wins.
  registry->callStarted(0, "echo");
  registry->callStarted(0, "echo");
  for (int i = 0; i < 4; ++i) EXPECT_EQ(registry->select("echo")->index, 1u);
  registry->callFinished(0, "echo", Status::ok(), {}, std::chrono::milliseconds(1));
  registry->callFinished(0, "echo", Status::ok(), {}, std::chrono::milliseconds(1));
  // Slower recent latency on b: a wins.
  registry->callStarted(1, "echo");
  registry->callFinished(1, "echo", Status::ok(), {}, std::chrono::milliseconds(30));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(registry->select("echo")->index, 0u);
  // The preferred server wins while healthy; unknown models are NOT_FOUND.
  EXPECT_EQ(registry->select("echo", "b")->index, 1u);
  EXPECT_EQ(registry->select("other").status().code(), StatusCode::kNotFound);
}

TEST(ServerRegistryTest, UnreachableServerIsAvoidedAndProbedBackWithBackoff) {
  auto a = std::make_shared<FakeEndpoint>("a");
  auto b = std::make_shared<FakeEndpoint>("b");
  auto registry = ServerRegistry::create(configWith({a, b})).value();
  a->ready_ = false;
  CallReport unreachable;
  unreachable.unreachable = true;
  registry->callStarted(0, "echo");
  registry->callFinished(0, "echo", unavailable("refused"), unreachable, {});
  EXPECT_FALSE(registry->servers()[0].healthy);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(registry->select("echo")->index, 1u);
  // Still down after a few probes (backoff 20, 40, 80 ms...), then up again.
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_FALSE(registry->servers()[0].healthy);
  a->ready_ = true;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!registry->servers()[0].healthy && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(registry->servers()[0].healthy);
  // With every server down, select still names one (the call fails fast instead of never).
  registry->markUnhealthy(0, "test");
  registry->markUnhealthy(1, "test");
  EXPECT_TRUE(registry->select("echo").isOk());
}

TEST(ServerRegistryTest, UnreadableIndexSkipsTheServerUntilItAnswers) {
  auto a = std::make_shared<FakeEndpoint>("a");
  a->ready_ = false;
  auto registry = ServerRegistry::create(configWith({a})).value();
  EXPECT_FALSE(registry->servers()[0].healthy);
  EXPECT_TRUE(registry->servers()[0].models.empty());
  EXPECT_EQ(registry->select("echo").status().code(), StatusCode::kNotFound);
  a->ready_ = true;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!registry->select("echo").isOk() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(registry->select("echo").isOk());
}

class RetryTest : public ::testing::TestWithParam<CallMode> {};

TEST_P(RetryTest, SameServerThenOtherServerThenFallback) {
  std::mutex mutex;
  std::vector<std::string> order;
  std::function<void(const std::string&)> record = [&](const std::string& name) {
    std::lock_guard lock(mutex);
    order.push_back(name);
  };
  auto a = std::make_shared<FakeEndpoint>("a");
  auto b = std::make_shared<FakeEndpoint>("b");
  auto fallback = std::make_shared<FakeEndpoint>("fallback");
  for (auto* endpoint : {a.get(), b.get(), fallback.get()}) {
    endpoint->log_ = &record;
    endpoint->on_thread_ = GetParam() == CallMode::kAsync;
  }
  // Server errors (not "unreachable"): a is tried twice, b twice, then the fallback.
  a->failure_ = b->failure_ = Status(StatusCode::kUnknown, "flaky");
  a->failures_left_ = 100;
  b->failures_left_ = 100;
  auto config = configWith({a, b});
  config.fallback.enabled = true;
  config.fallback.factory = [fallback]() -> Result<std::shared_ptr<Endpoint>> { return std::shared_ptr<Endpoint>(fallback); };
  auto registry = ServerRegistry::create(std::move(config)).value();
  EventClient::Config client_config;
  client_config.model_name = "echo";
  client_config.mode = GetParam();
  client_config.preferred_server = "a";
  client_config.retry = RetryPolicy{.same_server = 1, .other_servers = 1, .fallback = true};
  auto client = EventClient::create(client_config, registry).value();
  ASSERT_TRUE(runEvent(*client, 2).isOk());
  EXPECT_EQ(order, (std::vector<std::string>{"a", "a", "b", "fallback"}));
  EXPECT_EQ(client->lastCall().attempts, 4u);
  EXPECT_EQ(client->lastCall().server, "fallback");
  EXPECT_EQ(client->output("OUT")->entry<float>(1).value()[2], 12.0f);
  EXPECT_TRUE(registry->fallbackRunning());
}

TEST_P(RetryTest, UnreachableServerMovesOnWithoutSameServerRetries) {
  auto a = std::make_shared<FakeEndpoint>("a");
  auto b = std::make_shared<FakeEndpoint>("b");
  a->on_thread_ = b->on_thread_ = GetParam() == CallMode::kAsync;
  auto registry = ServerRegistry::create(configWith({a, b})).value();
  EventClient::Config config;
  config.model_name = "echo";
  config.mode = GetParam();
  config.preferred_server = "a";
  auto client = EventClient::create(config, registry).value();
  a->failures_left_ = 1;  // unavailable, unreachable
  a->ready_ = false;
  ASSERT_TRUE(runEvent(*client, 12).isOk());  // two requests of 8 + 4
  EXPECT_EQ(a->calls(), 2);  // both requests of the first attempt, no same-server retry
  EXPECT_EQ(client->lastCall().server, "b");
  EXPECT_EQ(client->output("OUT")->entry<float>(11).value()[0], 110.0f);
  EXPECT_FALSE(registry->servers()[0].healthy);
}

TEST_P(RetryTest, InvalidRequestsAreNotRetried) {
  auto a = std::make_shared<FakeEndpoint>("a");
  auto b = std::make_shared<FakeEndpoint>("b");
  auto registry = ServerRegistry::create(configWith({a, b})).value();
  EventClient::Config config;
  config.model_name = "echo";
  config.mode = GetParam();
  auto client = EventClient::create(config, registry).value();
  a->failure_ = b->failure_ = invalidArg("bad shape");
  a->failures_left_ = b->failures_left_ = 1;
  Status status = runEvent(*client, 1);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg) << status.toString();
  EXPECT_EQ(a->calls() + b->calls(), 1);
}

TEST_P(RetryTest, ExhaustedPolicyReportsTheLastError) {
  auto a = std::make_shared<FakeEndpoint>("a");
  auto registry = ServerRegistry::create(configWith({a})).value();
  EventClient::Config config;
  config.model_name = "echo";
  config.mode = GetParam();
  config.retry = RetryPolicy{.same_server = 2, .other_servers = 2, .fallback = false};
  auto client = EventClient::create(config, registry).value();
  a->failure_ = Status(StatusCode::kUnknown, "flaky");
  a->failures_left_ = 10;
  Status status = runEvent(*client, 1);
  EXPECT_EQ(status.code(), StatusCode::kUnknown);
  EXPECT_NE(status.message().find("after 3 attempts"), std::string::npos) << status.message();
  EXPECT_EQ(a->calls(), 3);
}

INSTANTIATE_TEST_SUITE_P(Modes, RetryTest,
                         ::testing::Values(CallMode::kSync, CallMode::kAsync, CallMode::kPseudoAsync),
                         [](const auto& mode) { return std::string(callModeName(mode.param)); });

TEST(EventClientConfigTest, TimeoutKeepsItsUnit) {
  auto a = std::make_shared<FakeEndpoint>("a");
  auto registry = ServerRegistry::create(configWith({a})).value();
  EventClient::Config config;
  config.model_name = "echo";
  config.mode = CallMode::kSync;
  config.timeout = std::chrono::milliseconds(250);
  auto client = EventClient::create(config, registry).value();
  ASSERT_TRUE(runEvent(*client, 1).isOk());
  EXPECT_EQ(a->lastTimeout(), std::chrono::microseconds(250000));
}

TEST(EventClientConfigTest, ParsesModesAndCompression) {
  EXPECT_EQ(parseCallMode("Async").value(), CallMode::kAsync);
  EXPECT_EQ(parseCallMode("pseudoasync").value(), CallMode::kPseudoAsync);
  EXPECT_EQ(parseCallMode("").value(), CallMode::kPseudoAsync);
  EXPECT_FALSE(parseCallMode("fast").isOk());
  EXPECT_EQ(parseCompression("gzip").value(), Compression::kGzip);
  EXPECT_FALSE(parseCompression("zstd").isOk());
  auto server = parseServerAddress("gpu1=grpcs://node7:8001").value();
  EXPECT_EQ(server.name, "gpu1");
  EXPECT_EQ(server.address, "node7:8001");
  EXPECT_TRUE(server.tls.enabled);
  EXPECT_FALSE(parseServerAddress("node7").isOk());
  EXPECT_TRUE(isSameHost("127.0.0.1:8001"));
  EXPECT_TRUE(isSameHost("localhost:1"));
  EXPECT_TRUE(isSameHost("[::1]:8001"));
  EXPECT_FALSE(isSameHost("192.0.2.7:8001"));  // TEST-NET-1: never a local interface
}

}  // namespace
}  // namespace beamline::client
