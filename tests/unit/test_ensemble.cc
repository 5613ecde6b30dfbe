// Ensembles end to end through the server core and the identity plug-in: chained and parallel
// steps, a failing step, and DAGs that cannot run.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "beamline/core/server.h"
#include "core_test_util.h"

namespace beamline {
namespace {
using namespace beamline::testing;  // NOLINT(google-build-using-namespace)

// An identity model "name" with input IN and output OUT, FP32 [-1], no batching.
std::string step(const std::string& extra = "") { return identityConfig("TYPE_FP32", 0, extra); }

std::string ensemble(const std::string& steps, const std::vector<std::string>& outputs = {"Y"}) {
  std::string text =
      "platform: \"ensemble\"\nmax_batch_size: 0\n"
      "input [ { name: \"X\" data_type: TYPE_FP32 dims: [ -1 ] } ]\noutput [ ";
  for (size_t i = 0; i < outputs.size(); ++i) {
    text += std::string(i > 0 ? ", " : "") + "{ name: \"" + outputs[i] +
            "\" data_type: TYPE_FP32 dims: [ -1 ] }";
  }
  return text + " ]\nensemble_scheduling { step [ " + steps + " ] }\n";
}

std::string stepEntry(const std::string& model, const std::string& in, const std::string& out) {
  return "{ model_name: \"" + model + "\" model_version: -1 input_map { key: \"IN\" value: \"" +
         in + "\" } output_map { key: \"OUT\" value: \"" + out + "\" } }";
}

void runX(Server& server, const std::string& model, Infer& call) {
  runFp32(server, model, call, -1, "X");
}

TEST(EnsembleTest, ChainsStepsThroughIntermediateTensors) {
  TempRepository repo;
  repo.addModel("first", step());
  repo.addModel("second", step());
  repo.addModel("chain", ensemble(stepEntry("first", "X", "T") + ", " + stepEntry("second", "T", "Y")));
  auto server = Server::create(optionsFor(repo));
  ASSERT_TRUE(server.isOk()) << server.status().toString();
  Infer call;
  call.data = {1.5f, 2.5f, -3.0f};
  call.shape = {3};
  runX(**server, "chain", call);
  ASSERT_TRUE(call.sink.status.isOk()) << call.sink.status.toString();
  ASSERT_EQ(call.sink.outputs.size(), 1u);
  EXPECT_EQ(call.sink.outputs[0].name, "Y");
  EXPECT_EQ(call.sink.outputs[0].shape, (Shape{3}));
  EXPECT_EQ(std::memcmp(call.sink.outputs[0].data.data(), call.data.data(), 12), 0);
  // Each step ran once, and the ensemble counts itself.
  for (const char* model : {"first", "second", "chain"}) {
    auto stats = (*server)->modelStatistics(model, -1);
    ASSERT_TRUE(stats.isOk());
    EXPECT_EQ((*stats)[0].success.count, 1u) << model;
  }
}

TEST(EnsembleTest, RunsIndependentStepsInParallel) {
  TempRepository repo;
  const std::string slow = "parameters { key: \"execute_delay_ms\" value: { string_value: \"300\" } }";
  repo.addModel("left", step(slow));
  repo.addModel("right", step(slow));
  repo.addModel("fork", ensemble(stepEntry("left", "X", "Y") + ", " + stepEntry("right", "X", "Y2"),
                                 {"Y", "Y2"}));
  auto server = Server::create(optionsFor(repo));
  ASSERT_TRUE(server.isOk()) << server.status().toString();
  Infer call;
  call.data = {7.0f};
  call.shape = {1};
  const auto start = std::chrono::steady_clock::now();
  runX(**server, "fork", call);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(call.sink.status.isOk()) << call.sink.status.toString();
  EXPECT_EQ(call.sink.outputs.size(), 2u);
  EXPECT_LT(seconds, 0.55) << "the two independent 300 ms steps did not overlap";
}

TEST(EnsembleTest, FailingStepFailsTheRequestCleanly) {
  TempRepository repo;
  repo.addModel("first", step());
  // The second step feeds the model a tensor under a name it does not have.
  repo.addModel("broken",
                ensemble(stepEntry("first", "X", "T") + ", { model_name: \"first\" model_version: -1 "
                         "input_map { key: \"NOT_AN_INPUT\" value: \"T\" } "
                         "output_map { key: \"OUT\" value: \"Y\" } }"));
  auto server = Server::create(optionsFor(repo));
  ASSERT_TRUE(server.isOk()) << server.status().toString();
  Infer call;
  call.data = {1.0f};
  call.shape = {1};
  runX(**server, "broken", call);
  EXPECT_EQ(call.sink.status.code(), StatusCode::kInvalidArg);
  EXPECT_NE(call.sink.status.message().find("step 1 (model 'first')"), std::string::npos)
      << call.sink.status.message();
  EXPECT_NE(call.sink.status.message().find("NOT_AN_INPUT"), std::string::npos);
  EXPECT_TRUE(call.sink.outputs.empty());
  // The server and the step model still serve.
  Infer again;
  again.data = {2.0f};
  again.shape = {1};
  runFp32(**server, "first", again);
  EXPECT_TRUE(again.sink.status.isOk());
}

TEST(EnsembleTest, UnreachableStepMakesTheEnsembleUnavailable) {
  TempRepository repo;
  repo.addModel("first", step());
  repo.addModel("cycle", ensemble(stepEntry("first", "NOWHERE", "Y")));
  auto server = Server::create(optionsFor(repo));
  ASSERT_TRUE(server.isOk());
  std::map<std::string, ModelIndexEntry> index;
  for (const auto& e : (*server)->repositoryIndex(false)) index[e.name] = e;
  EXPECT_EQ(index["cycle"].state, ModelState::kUnavailable);
  EXPECT_NE(index["cycle"].reason.find("'NOWHERE'"), std::string::npos) << index["cycle"].reason;
  EXPECT_EQ(index["first"].state, ModelState::kReady);
}

TEST(EnsembleTest, ExplicitModeLoadsTheStepModels) {
  TempRepository repo;
  repo.addModel("first", step());
  repo.addModel("second", step());
  repo.addModel("chain", ensemble(stepEntry("first", "X", "T") + ", " + stepEntry("second", "T", "Y")));
  ServerOptions options = optionsFor(repo, ModelControlMode::kExplicit);
  options.startup_models = {"chain"};
  auto server = Server::create(options);
  ASSERT_TRUE(server.isOk());
  EXPECT_TRUE(*(*server)->modelReady("first", -1));
  EXPECT_TRUE(*(*server)->modelReady("second", -1));
  Infer call;
  call.data = {4.0f, 5.0f};
  call.shape = {2};
  runX(**server, "chain", call);
  EXPECT_TRUE(call.sink.status.isOk()) << call.sink.status.toString();
}

}  // namespace
}  // namespace beamline
