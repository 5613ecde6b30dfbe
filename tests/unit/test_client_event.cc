// EventClient end to end through the in-process endpoint (the real core and identity plug-in, no
// network): modes, rectangular and ragged batches, batch size 0, shapes, outputs, buffer reuse.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <numeric>
#include <thread>

#include "beamline/client/event_client.h"
#include "beamline/client/in_process.h"
#include "core_test_util.h"

namespace beamline::client {
namespace {

using beamline::testing::TempRepository;

// Two inputs/outputs: a variable-length FP32 vector and a fixed INT64 triple, batching up to 4.
constexpr const char* kPairConfig = R"(backend: "identity"
max_batch_size: 4
input [ { name: "IN0" data_type: TYPE_FP32 dims: [ -1 ] },
        { name: "IN1" data_type: TYPE_INT64 dims: [ 3 ] } ]
output [ { name: "OUT0" data_type: TYPE_FP32 dims: [ -1 ] },
         { name: "OUT1" data_type: TYPE_INT64 dims: [ 3 ] } ]
instance_group [ { count: 2 kind: KIND_CPU } ]
)";

// No batch dimension: the first dim is the model's own outer dimension.
constexpr const char* kUnbatchedConfig = R"(backend: "identity"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ -1, 2 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ -1, 2 ] } ]
)";

class EventClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repository_ = new TempRepository();
    repository_->addModel("pair", kPairConfig);
    repository_->addModel("unbatched", kUnbatchedConfig);
    auto endpoint = createInProcessEndpoint(beamline::testing::optionsFor(*repository_));
    ASSERT_TRUE(endpoint.isOk()) << endpoint.status().toString();
    ServerRegistry::Config config;
    config.servers_from_environment = false;
    config.fallback.enabled = false;
    config.endpoints.push_back(*endpoint);
    auto registry = ServerRegistry::create(std::move(config));
    ASSERT_TRUE(registry.isOk()) << registry.status().toString();
    registry_ = new std::shared_ptr<ServerRegistry>(*registry);
  }
  static void TearDownTestSuite() {
    delete registry_;
    delete repository_;
  }

  std::unique_ptr<EventClient> makeClient(std::string model, CallMode mode,
                                          std::vector<std::string> outputs = {}) {
    EventClient::Config config;
    config.model_name = std::move(model);
    config.mode = mode;
    config.outputs = std::move(outputs);
    auto client = EventClient::create(std::move(config), *registry_);
    EXPECT_TRUE(client.isOk()) << client.status().toString();
    return client.isOk() ? std::move(client).value() : nullptr;
  }

  // Fills entry e of the pair model: IN0 = length e % 3 + 2 (rectangular: `length`), IN1 = e.
  static void fillPair(EventClient& client, size_t entries, int64_t length, float offset) {
    ASSERT_TRUE(client.setBatchSize(entries).isOk());
    auto in0 = client.input("IN0").value();
    auto in1 = client.input("IN1").value();
    ASSERT_TRUE(in0.setShape({length}).isOk());
    for (size_t e = 0; e < entries; ++e) {
      auto x = in0.entry<float>(e);
      ASSERT_TRUE(x.isOk()) << x.status().toString();
      ASSERT_EQ(x->size(), static_cast<size_t>(length));
      for (size_t i = 0; i < x->size(); ++i) (*x)[i] = offset + static_cast<float>(e * 100 + i);
      const int64_t ids[3] = {static_cast<int64_t>(e), -1, 7};
      ASSERT_TRUE(in1.setEntry<int64_t>(e, ids).isOk());
    }
  }

  static std::vector<float> collect(const EventClient& client, size_t entries) {
    std::vector<float> all;
    auto out0 = client.output("OUT0").value();
    for (size_t e = 0; e < entries; ++e) {
      auto y = out0.entry<float>(e);
      EXPECT_TRUE(y.isOk()) << y.status().toString();
      if (y.isOk()) all.insert(all.end(), y->begin(), y->end());
    }
    return all;
  }

  static TempRepository* repository_;
  static std::shared_ptr<ServerRegistry>* registry_;
};

TempRepository* EventClientTest::repository_ = nullptr;
std::shared_ptr<ServerRegistry>* EventClientTest::registry_ = nullptr;

TEST_F(EventClientTest, ThreeModesGiveIdenticalOutputs) {
  std::vector<std::vector<float>> per_mode;
  for (CallMode mode : {CallMode::kSync, CallMode::kAsync, CallMode::kPseudoAsync}) {
    auto client = makeClient("pair", mode);
    ASSERT_NE(client, nullptr);
    std::vector<float> outputs;
    for (int event = 0; event < 3; ++event) {
      fillPair(*client, 10, 5, static_cast<float>(event) * 0.5f);  // 10 > max_batch_size 4
      ASSERT_TRUE(client->call().isOk()) << callModeName(mode);
      EXPECT_EQ(client->lastCall().requests, 3u);  // 4 + 4 + 2 rows
      auto values = collect(*client, 10);
      auto ids = client->output("OUT1").value();
      for (size_t e = 0; e < 10; ++e) {
        auto id = ids.entry<int64_t>(e);
        ASSERT_TRUE(id.isOk());
        EXPECT_EQ((*id)[0], static_cast<int64_t>(e));
        EXPECT_EQ(ids.shape(e).value().size(), 1u);
      }
      outputs.insert(outputs.end(), values.begin(), values.end());
      client->reset();
    }
    per_mode.push_back(std::move(outputs));
  }
  ASSERT_EQ(per_mode[0].size(), 3u * 10 * 5);
  EXPECT_EQ(per_mode[0][7], 100.0f + 2);  // event 0, entry 1, element 2
  EXPECT_EQ(per_mode[0], per_mode[1]);
  EXPECT_EQ(per_mode[0], per_mode[2]);
}

TEST_F(EventClientTest, DispatchCallbackRunsOnceWithTheOutcome) {
  for (CallMode mode : {CallMode::kSync, CallMode::kAsync, CallMode::kPseudoAsync}) {
    auto client = makeClient("pair", mode);
    fillPair(*client, 3, 2, 0);
    std::mutex mutex;
    std::condition_variable wake;
    int calls = 0;
    std::thread::id where;
    client->dispatch([&](Status status) {
      EXPECT_TRUE(status.isOk()) << status.toString();
      std::lock_guard lock(mutex);
      ++calls;
      where = std::this_thread::get_id();
      wake.notify_all();
    });
    std::unique_lock lock(mutex);
    ASSERT_TRUE(wake.wait_for(lock, std::chrono::seconds(10), [&] { return calls > 0; }));
    if (mode == CallMode::kSync) {
      EXPECT_EQ(where, std::this_thread::get_id());
    } else {
      EXPECT_NE(where, std::this_thread::get_id());
    }
    lock.unlock();
    client.reset();  // waits for nothing: the call is over
    EXPECT_EQ(calls, 1);
  }
}

TEST_F(EventClientTest, RaggedEntriesGoAsOneRequestEach) {
  // As SonicTriton's ragged_io test: 4 entries of lengths 2, 4, 1, 3 echoed back.
  for (CallMode mode : {CallMode::kSync, CallMode::kAsync}) {
    auto client = makeClient("pair", mode);
    const int64_t lengths[] = {2, 4, 1, 3};
    ASSERT_TRUE(client->setBatchSize(4).isOk());
    auto in0 = client->input("IN0").value();
    auto in1 = client->input("IN1").value();
    ASSERT_TRUE(in0.setShape({2}).isOk());
    for (size_t e = 0; e < 4; ++e) {
      const int64_t shape[] = {lengths[e]};
      ASSERT_TRUE(in0.setShape(shape, e).isOk());
    }
    EXPECT_EQ(client->batchMode(), BatchMode::kRagged);
    for (size_t e = 0; e < 4; ++e) {
      auto x = in0.entry<float>(e).value();
      ASSERT_EQ(x.size(), static_cast<size_t>(lengths[e]));
      std::iota(x.begin(), x.end(), static_cast<float>(10 * e));
      const int64_t ids[3] = {static_cast<int64_t>(e), 0, 0};
      ASSERT_TRUE(in1.setEntry<int64_t>(e, ids).isOk());
    }
    ASSERT_TRUE(client->call().isOk());
    EXPECT_EQ(client->lastCall().requests, 4u);
    auto out0 = client->output("OUT0").value();
    for (size_t e = 0; e < 4; ++e) {
      auto shape = out0.shape(e).value();
      ASSERT_EQ(shape.size(), 1u);
      EXPECT_EQ(shape[0], lengths[e]);
      auto y = out0.entry<float>(e).value();
      ASSERT_EQ(y.size(), static_cast<size_t>(lengths[e]));
      EXPECT_EQ(y[0], static_cast<float>(10 * e));
      EXPECT_EQ(y.back(), static_cast<float>(10 * e + lengths[e] - 1));
    }
    client->reset();
    EXPECT_EQ(client->batchMode(), BatchMode::kRectangular);  // ragged was for that event only
  }
}

TEST_F(EventClientTest, BatchSizeZeroCompletesAtOnceOnTheCaller) {
  auto client = makeClient("pair", CallMode::kAsync);
  ASSERT_TRUE(client->setBatchSize(0).isOk());
  bool called = false;
  client->dispatch([&](Status status) {
    EXPECT_TRUE(status.isOk());
    called = true;
  });
  EXPECT_TRUE(called);  // before dispatch() returned, on this thread
  EXPECT_EQ(client->lastCall().requests, 0u);
}

TEST_F(EventClientTest, ShapesAreCheckedAgainstTheModel) {
  auto client = makeClient("pair", CallMode::kSync);
  ASSERT_TRUE(client->setBatchSize(2).isOk());
  auto in0 = client->input("IN0").value();
  auto in1 = client->input("IN1").value();
  EXPECT_EQ(in1.setShape({4}).code(), StatusCode::kInvalidArg);     // fixed dim
  EXPECT_EQ(in0.setShape({2, 2}).code(), StatusCode::kInvalidArg);  // rank
  EXPECT_EQ(in0.setShape({-3}).code(), StatusCode::kInvalidArg);
  // IN0's length was never set: the layout refuses.
  auto entry = in1.entry<int64_t>(0);
  ASSERT_FALSE(entry.isOk());
  EXPECT_NE(entry.status().message().find("setShape"), std::string::npos)
      << entry.status().message();
  ASSERT_TRUE(in0.setShape({3}).isOk());
  EXPECT_FALSE(in0.entry<double>(0).isOk());  // FP32, not FP64
  EXPECT_FALSE(in0.entry<float>(2).isOk());   // out of range
  ASSERT_TRUE(in0.entry<float>(1).isOk());
  EXPECT_EQ(in0.setShape({4}).code(), StatusCode::kInvalidArg);  // fixed once written
  EXPECT_EQ(client->setBatchSize(3).code(), StatusCode::kInvalidArg);
  client->reset();
  EXPECT_TRUE(client->setBatchSize(3).isOk());
  EXPECT_FALSE(client->input("NOPE").isOk());
}

TEST_F(EventClientTest, UnbatchedModelUsesItsOuterDimension) {
  auto client = makeClient("unbatched", CallMode::kAsync);
  EXPECT_FALSE(client->hasBatchDimension());
  EXPECT_EQ(client->model().inputs[0].dims, (Shape{-1, 2}));
  ASSERT_TRUE(client->setBatchSize(1).isOk());
  auto in = client->input("IN").value();
  ASSERT_TRUE(in.setShape({5, 2}).isOk());  // outer dimension 5
  auto x = in.entry<float>(0).value();
  ASSERT_EQ(x.size(), 10u);
  std::iota(x.begin(), x.end(), 1.0f);
  ASSERT_TRUE(client->call().isOk());
  auto out = client->output("OUT").value();
  EXPECT_EQ(std::vector<int64_t>(out.shape(0)->begin(), out.shape(0)->end()),
            (std::vector<int64_t>{5, 2}));
  EXPECT_EQ(out.entry<float>(0).value()[9], 10.0f);
  client->reset();
  // Several entries of an unbatched model: one request each.
  ASSERT_TRUE(client->setBatchSize(3).isOk());
  ASSERT_TRUE(in.setShape({1, 2}).isOk());
  for (size_t e = 0; e < 3; ++e) in.entry<float>(e).value()[0] = static_cast<float>(e);
  ASSERT_TRUE(client->call().isOk());
  EXPECT_EQ(client->lastCall().requests, 3u);
  EXPECT_EQ(client->output("OUT")->entry<float>(2).value()[0], 2.0f);
}

TEST_F(EventClientTest, OutputSubset) {
  auto client = makeClient("pair", CallMode::kSync, {"OUT1"});
  EXPECT_EQ(client->outputCount(), 1u);
  fillPair(*client, 2, 3, 0);
  ASSERT_TRUE(client->call().isOk());
  EXPECT_FALSE(client->output("OUT0").isOk());
  EXPECT_EQ(client->output("OUT1")->entry<int64_t>(1).value()[0], 1);

  EventClient::Config config;
  config.model_name = "pair";
  config.outputs = {"OUT7"};
  auto bad = EventClient::create(config, *registry_);
  ASSERT_FALSE(bad.isOk());
  EXPECT_EQ(bad.status().code(), StatusCode::kNotFound);
}

TEST_F(EventClientTest, BuffersAreReusedFromOneEventToTheNext) {
  auto client = makeClient("pair", CallMode::kAsync);
  std::byte* first = nullptr;
  for (int event = 0; event < 3; ++event) {
    fillPair(*client, 6, 8, 0);
    std::byte* now = client->input("IN0")->entryBytes(5).value().data();
    if (first == nullptr) first = now;
    EXPECT_EQ(now, first) << "event " << event;
    ASSERT_TRUE(client->call().isOk());
    client->reset();
  }
}

TEST_F(EventClientTest, UnknownModelIsNotFound) {
  EventClient::Config config;
  config.model_name = "no_such_model";
  auto client = EventClient::create(config, *registry_);
  ASSERT_FALSE(client.isOk());
  EXPECT_EQ(client.status().code(), StatusCode::kNotFound) << client.status().toString();
}

TEST_F(EventClientTest, VerboseReportsServerSideStatistics) {
  EventClient::Config config;
  config.model_name = "pair";
  config.mode = CallMode::kAsync;
  config.verbose = true;
  std::atomic<int> lines{0};
  auto client = EventClient::create(config, *registry_, [&](LogLevel, std::string_view line) {
    if (line.find("inference count") != std::string_view::npos) ++lines;
  });
  ASSERT_TRUE(client.isOk());
  fillPair(**client, 6, 2, 0);
  ASSERT_TRUE((*client)->call().isOk());
  const auto& stats = (*client)->lastCall();
  ASSERT_TRUE(stats.server_side.has_value());
  EXPECT_GE(stats.server_side->inference_count, 6u);
  EXPECT_GE(stats.server_side->success_count, 2u);
  EXPECT_GT(stats.total.count(), 0);
  EXPECT_EQ(lines.load(), 1);
}

}  // namespace
}  // namespace beamline::client
