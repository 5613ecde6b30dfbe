// The server core end to end, without a network: repositories on disk, the real `identity`
// backend plug-in loaded with dlopen, requests through Server::infer().
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "beamline/core/server.h"
#include "core/backend_loader.h"
#include "core_test_util.h"

namespace beamline {
namespace {
using namespace beamline::testing;  // NOLINT(google-build-using-namespace)

TEST(ServerCoreTest, ServesIdentityModelThroughPlugin) {
  TempRepository repo;
  repo.addModel("ident", identityConfig());
  auto server = Server::create(optionsFor(repo));
  ASSERT_TRUE(server.isOk()) << server.status().toString();
  EXPECT_TRUE((*server)->isReady());

  Infer call;
  call.data = {1.5f, -2.0f, 3.25f, 4.0f, 5.0f, 6.0f};
  call.shape = {2, 3};
  runFp32(**server, "ident", call);
  ASSERT_TRUE(call.sink.status.isOk()) << call.sink.status.toString();
  EXPECT_EQ(call.sink.model_version, 1);
  ASSERT_EQ(call.sink.outputs.size(), 1u);
  EXPECT_EQ(call.sink.outputs[0].name, "OUT");
  EXPECT_EQ(call.sink.outputs[0].shape, (Shape{2, 3}));
  EXPECT_EQ(std::memcmp(call.sink.outputs[0].data.data(), call.data.data(), 24), 0);

  auto stats = (*server)->modelStatistics("ident", -1);
  ASSERT_TRUE(stats.isOk());
  ASSERT_EQ(stats->size(), 1u);
  EXPECT_EQ((*stats)[0].inference_count, 2u);  // a batch of 2 counts 2
  EXPECT_EQ((*stats)[0].execution_count, 1u);
  EXPECT_EQ((*stats)[0].success.count, 1u);
}

TEST(ServerCoreTest, RejectsBadRequestsWithClearErrors) {
  TempRepository repo;
  repo.addModel("ident", identityConfig());
  auto server = Server::create(optionsFor(repo));
  ASSERT_TRUE(server.isOk());

  Infer too_big;
  too_big.data.resize(9);
  too_big.shape = {9, 1};
  runFp32(**server, "ident", too_big);
  EXPECT_EQ(too_big.sink.status.code(), StatusCode::kInvalidArg);
  EXPECT_NE(too_big.sink.status.message().find("batch size 9"), std::string::npos)
      << too_big.sink.status.message();

  Infer short_data;
  short_data.data.resize(3);
  short_data.shape = {1, 4};
  runFp32(**server, "ident", short_data);
  EXPECT_EQ(short_data.sink.status.code(), StatusCode::kInvalidArg);
  EXPECT_NE(short_data.sink.status.message().find("12 bytes"), std::string::npos)
      << short_data.sink.status.message();

  Infer unknown;
  unknown.data = {1};
  unknown.shape = {1, 1};
  runFp32(**server, "nope", unknown);
  EXPECT_EQ(unknown.sink.status.code(), StatusCode::kNotFound);

  Infer bad_version;
  bad_version.data = {1};
  bad_version.shape = {1, 1};
  runFp32(**server, "ident", bad_version, 7);
  EXPECT_EQ(bad_version.sink.status.code(), StatusCode::kNotFound);

  // Still serving after all that.
  Infer good;
  good.data = {1};
  good.shape = {1, 1};
  runFp32(**server, "ident", good);
  EXPECT_TRUE(good.sink.status.isOk()) << good.sink.status.toString();
  auto stats = (*server)->modelStatistics("ident", -1);
  ASSERT_TRUE(stats.isOk());
  EXPECT_EQ((*stats)[0].fail.count, 2u);  // the two that reached the model
}

TEST(ServerCoreTest, BrokenModelDoesNotStopOthers) {
  TempRepository repo;
  repo.addModel("good", identityConfig());
  repo.addModel("bad_syntax", "max_batch_size: [[[ 8");
  repo.addModel("no_backend", "backend: \"does_not_exist\"\nmax_batch_size: 0\n"
                              "input [ { name: \"IN\" data_type: TYPE_FP32 dims: [ 1 ] } ]\n"
                              "output [ { name: \"OUT\" data_type: TYPE_FP32 dims: [ 1 ] } ]\n");
  auto server = Server::create(optionsFor(repo));
  ASSERT_TRUE(server.isOk());
  std::map<std::string, ModelIndexEntry> index;
  for (const auto& e : (*server)->repositoryIndex(false)) index[e.name] = e;
  ASSERT_EQ(index.size(), 3u);
  EXPECT_EQ(index["good"].state, ModelState::kReady);
  EXPECT_EQ(index["bad_syntax"].state, ModelState::kUnavailable);
  EXPECT_NE(index["bad_syntax"].reason.find("config.pbtxt:1:"), std::string::npos)
      << index["bad_syntax"].reason;
  EXPECT_EQ(index["no_backend"].state, ModelState::kUnavailable);
  EXPECT_NE(index["no_backend"].reason.find("libbeamline_backend_does_not_exist.so"),
            std::string::npos)
      << index["no_backend"].reason;

  Infer call;
  call.data = {1};
  call.shape = {1, 1};
  runFp32(**server, "good", call);
  EXPECT_TRUE(call.sink.status.isOk());
  Infer broken;
  broken.data = {1};
  broken.shape = {1};
  runFp32(**server, "no_backend", broken);
  EXPECT_EQ(broken.sink.status.code(), StatusCode::kUnavailable);
}

TEST(ServerCoreTest, VersionPolicySelectsVersionsToLoad) {
  TempRepository repo;
  repo.addModel("latest2", identityConfig("TYPE_FP32", 8, "version_policy { latest { num_versions: 2 } }"),
                {1, 2, 3});
  repo.addModel("specific", identityConfig("TYPE_FP32", 8, "version_policy { specific { versions: [1, 3] } }"),
                {1, 2, 3});
  auto server = Server::create(optionsFor(repo));
  ASSERT_TRUE(server.isOk());
  std::vector<std::string> latest, specific;
  for (const auto& e : (*server)->repositoryIndex(true)) {
    (e.name == "latest2" ? latest : specific).push_back(e.version);
  }
  EXPECT_EQ(latest, (std::vector<std::string>{"2", "3"}));
  EXPECT_EQ(specific, (std::vector<std::string>{"1", "3"}));
  Infer call;
  call.data = {1};
  call.shape = {1, 1};
  runFp32(**server, "latest2", call);
  EXPECT_EQ(call.sink.model_version, 3);  // no version asked: the highest ready one
}

TEST(ServerCoreTest, ExplicitModeLoadsAndUnloadsOnRequest) {
  TempRepository repo;
  repo.addModel("a", identityConfig());
  repo.addModel("b", identityConfig());
  ServerOptions options = optionsFor(repo, ModelControlMode::kExplicit);
  options.startup_models = {"a"};
  auto server = Server::create(options);
  ASSERT_TRUE(server.isOk());
  EXPECT_TRUE(*(*server)->modelReady("a", -1));
  EXPECT_FALSE(*(*server)->modelReady("b", -1));

  EXPECT_TRUE((*server)->loadModel("b", std::nullopt).isOk());
  EXPECT_TRUE(*(*server)->modelReady("b", -1));
  EXPECT_TRUE((*server)->unloadModel("a", false).isOk());
  EXPECT_FALSE(*(*server)->modelReady("a", -1));
  Infer call;
  call.data = {1};
  call.shape = {1, 1};
  runFp32(**server, "a", call);
  EXPECT_EQ(call.sink.status.code(), StatusCode::kUnavailable);

  EXPECT_EQ((*server)->loadModel("missing", std::nullopt).code(), StatusCode::kNotFound);
}

TEST(ServerCoreTest, LoadAndUnloadRefusedOutsideExplicitMode) {
  TempRepository repo;
  repo.addModel("a", identityConfig());
  auto server = Server::create(optionsFor(repo));
  ASSERT_TRUE(server.isOk());
  EXPECT_EQ((*server)->loadModel("a", std::nullopt).code(), StatusCode::kUnavailable);
  EXPECT_EQ((*server)->unloadModel("a", false).code(), StatusCode::kUnavailable);
}

TEST(ServerCoreTest, StopFailsNewRequestsWithUnavailable) {
  TempRepository repo;
  repo.addModel("a", identityConfig());
  auto server = Server::create(optionsFor(repo));
  ASSERT_TRUE(server.isOk());
  (*server)->stop();
  EXPECT_FALSE((*server)->isReady());
  Infer call;
  call.data = {1};
  call.shape = {1, 1};
  runFp32(**server, "a", call);
  EXPECT_EQ(call.sink.status.code(), StatusCode::kUnavailable);
}

TEST(BackendLoaderTest, RefusesPluginOfAnotherAbiMajorVersion) {
  BackendRegistry registry({TEST_PLUGIN_DIR});
  auto backend = registry.get("bad_version");
  ASSERT_FALSE(backend.isOk());
  EXPECT_EQ(backend.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(backend.status().message().find("backend API 2.0"), std::string::npos)
      << backend.status().message();
}

TEST(BackendLoaderTest, RejectsBackendNamesThatCouldEscapeTheDirectory) {
  BackendRegistry registry({backendDir()});
  auto backend = registry.get("../identity");
  ASSERT_FALSE(backend.isOk());
  EXPECT_EQ(backend.status().code(), StatusCode::kInvalidArg);
}

}  // namespace
}  // namespace beamline
