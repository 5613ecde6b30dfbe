// Parsing, defaulting and validation of config.pbtxt (src/core/model_config.h).
#include "core/model_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace beamline {
namespace {

namespace fs = std::filesystem;

// A minimal valid PyTorch model; tests append to it or change single lines.
constexpr std::string_view kPytorchModel = R"(
name: "m"
platform: "pytorch_libtorch"
max_batch_size: 8
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 3 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 3 ] } ]
)";

void expectError(const Status& status, StatusCode code, std::string_view substring) {
  EXPECT_EQ(status.code(), code) << status.toString();
  EXPECT_NE(status.message().find(substring), std::string::npos)
      << "expected \"" << substring << "\" in: " << status.message();
}

class ModelConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::temp_directory_path() /
            ("beamline_model_config_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path writeConfig(std::string_view model, std::string_view text) {
    const fs::path dir = root_ / model;
    fs::create_directories(dir);
    fs::path file = dir / "config.pbtxt";
    std::ofstream(file) << text;
    return file;
  }

  // Parses and normalises the config of model directory `model`.
  Result<inference::ModelConfig> load(std::string_view model, std::string_view text) {
    const fs::path file = writeConfig(model, text);
    Result<inference::ModelConfig> config = parseModelConfigFile(file);
    if (!config.isOk()) {
      return config;
    }
    BL_RETURN_IF_ERROR(normalizeAndValidateModelConfig(*config, model, file.string()));
    return config;
  }

  Status loadStatus(std::string_view model, std::string_view text) {
    return load(model, text).status();
  }

  fs::path root_;
};

// ------------------------------------------------------------------------------------------
// Valid configurations

TEST_F(ModelConfigTest, ParsesBracketListsAndQueuePolicy) {
  auto config = load("toy", R"(
name: "toy"  backend: "onnxruntime"  max_batch_size: 8
input [ { name: "X" data_type: TYPE_FP32 dims: [ 16 ] }, { name: "Z" data_type: TYPE_INT64 dims: [ -1, 2 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 4 ] } ]
instance_group [ { count: 2 kind: KIND_CPU } ]
dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 100
  default_queue_policy { timeout_action: REJECT default_timeout_microseconds: 50000 max_queue_size: 64 } }
)");
  ASSERT_TRUE(config.isOk()) << config.status().toString();
  EXPECT_EQ(config->backend(), "onnxruntime");
  EXPECT_TRUE(config->platform().empty());
  ASSERT_EQ(config->input_size(), 2);
  EXPECT_EQ(config->input(1).data_type(), inference::TYPE_INT64);
  EXPECT_EQ(config->input(1).dims(0), -1);
  ASSERT_EQ(config->instance_group_size(), 1);
  EXPECT_EQ(config->instance_group(0).count(), 2);
  EXPECT_EQ(config->instance_group(0).name(), "toy_0");
  const auto& batching = config->dynamic_batching();
  ASSERT_EQ(batching.preferred_batch_size_size(), 2);
  EXPECT_EQ(batching.preferred_batch_size(1), 8);
  EXPECT_EQ(batching.max_queue_delay_microseconds(), 100u);
  EXPECT_EQ(batching.default_queue_policy().timeout_action(), inference::ModelQueuePolicy::REJECT);
  EXPECT_EQ(batching.default_queue_policy().max_queue_size(), 64u);
}

TEST_F(ModelConfigTest, ParsesRepeatedBlocksMapsAndEnums) {
  auto config = load("blocks", R"(
backend: "custom"
max_batch_size: 0
input { name: "IMAGE" data_type: TYPE_UINT8 format: FORMAT_NCHW dims: [ 3, 224, 224 ] }
input { name: "MASK" data_type: TYPE_BOOL dims: 224 dims: 224 optional: true }
output { name: "LABELS" data_type: TYPE_STRING dims: [ 1 ] label_filename: "labels.txt" }
instance_group { kind: KIND_GPU gpus: [ 0, 1 ] count: 3 }
parameters { key: "threads" value: { string_value: "4" } }
parameters [ { key: "mode" value { string_value: "fast" } } ]
metric_tags { key: "experiment" value: "cms" }
model_transaction_policy { decoupled: true }
)");
  ASSERT_TRUE(config.isOk()) << config.status().toString();
  EXPECT_EQ(config->name(), "blocks");
  EXPECT_EQ(config->input(0).format(), inference::ModelInput::FORMAT_NCHW);
  EXPECT_EQ(config->input(1).dims_size(), 2);
  EXPECT_TRUE(config->input(1).optional());
  EXPECT_EQ(config->output(0).data_type(), inference::TYPE_STRING);
  EXPECT_EQ(config->instance_group(0).kind(), inference::ModelInstanceGroup::KIND_GPU);
  EXPECT_EQ(config->instance_group(0).gpus_size(), 2);
  EXPECT_EQ(config->parameters().at("threads").string_value(), "4");
  EXPECT_EQ(config->parameters().at("mode").string_value(), "fast");
  EXPECT_EQ(config->metric_tags().at("experiment"), "cms");
  EXPECT_TRUE(config->model_transaction_policy().decoupled());
}

TEST_F(ModelConfigTest, ParsesPriorityQueuePolicyMap) {
  auto config = load("m", std::string(kPytorchModel) + R"(
dynamic_batching {
  priority_levels: 2 default_priority_level: 2 preserve_ordering: true
  priority_queue_policy { key: 1 value: { timeout_action: DELAY default_timeout_microseconds: 10
                                          allow_timeout_override: true } }
}
)");
  ASSERT_TRUE(config.isOk()) << config.status().toString();
  const auto& policy = config->dynamic_batching().priority_queue_policy().at(1);
  EXPECT_EQ(policy.timeout_action(), inference::ModelQueuePolicy::DELAY);
  EXPECT_TRUE(policy.allow_timeout_override());
}

TEST_F(ModelConfigTest, ParsesEnsembleSchedulingWithoutInstanceGroups) {
  auto config = load("pipeline", R"(
platform: "ensemble"
max_batch_size: 4
input [ { name: "RAW" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "SCORE" data_type: TYPE_FP32 dims: [ 1 ] } ]
ensemble_scheduling {
  step [
    { model_name: "pre" model_version: -1 input_map { key: "IN" value: "RAW" }
      output_map { key: "OUT" value: "features" } },
    { model_name: "gnn" model_version: 2 input_map { key: "INPUT__0" value: "features" }
      output_map { key: "OUTPUT__0" value: "SCORE" } }
  ]
}
)");
  ASSERT_TRUE(config.isOk()) << config.status().toString();
  EXPECT_TRUE(config->backend().empty());
  EXPECT_EQ(config->instance_group_size(), 0);
  ASSERT_EQ(config->ensemble_scheduling().step_size(), 2);
  EXPECT_EQ(config->ensemble_scheduling().step(0).output_map().at("OUT"), "features");
  EXPECT_EQ(config->ensemble_scheduling().step(1).model_version(), 2);
}

TEST_F(ModelConfigTest, ParsesEveryVersionPolicyForm) {
  auto latest =
      load("m", std::string(kPytorchModel) + "version_policy: { latest: { num_versions: 2 } }");
  ASSERT_TRUE(latest.isOk()) << latest.status().toString();
  EXPECT_EQ(latest->version_policy().latest().num_versions(), 2u);

  auto all = load("m", std::string(kPytorchModel) + "version_policy: { all { } }");
  ASSERT_TRUE(all.isOk()) << all.status().toString();
  EXPECT_TRUE(all->version_policy().has_all());

  auto specific = load(
      "m", std::string(kPytorchModel) + "version_policy: { specific: { versions: [ 1, 3 ] } }");
  ASSERT_TRUE(specific.isOk()) << specific.status().toString();
  EXPECT_EQ(specific->version_policy().specific().versions_size(), 2);
}

TEST_F(ModelConfigTest, FillsDefaults) {
  auto config = load("fill", R"(
platform: "pytorch_libtorch"
input [ { name: "x" data_type: TYPE_FP32 dims: [ 3 ] } ]
output [ { name: "y__0" data_type: TYPE_FP32 dims: [ 3 ] } ]
instance_group [ { kind: KIND_AUTO }, { name: "named" count: 0 kind: KIND_GPU } ]
)");
  ASSERT_TRUE(config.isOk()) << config.status().toString();
  EXPECT_EQ(config->name(), "fill");
  EXPECT_EQ(config->backend(), "pytorch");
  EXPECT_EQ(config->default_model_filename(), "model.pt");
  EXPECT_EQ(config->version_policy().latest().num_versions(), 1u);
  ASSERT_EQ(config->instance_group_size(), 2);
  EXPECT_EQ(config->instance_group(0).kind(), inference::ModelInstanceGroup::KIND_CPU);
  EXPECT_EQ(config->instance_group(0).count(), 1);
  EXPECT_EQ(config->instance_group(0).name(), "fill_0");
  EXPECT_EQ(config->instance_group(1).count(), 1);
  EXPECT_EQ(config->instance_group(1).name(), "named");
}

TEST_F(ModelConfigTest, AddsOneCpuInstanceWhenNoGroupIsGiven) {
  auto config = load("m", kPytorchModel);
  ASSERT_TRUE(config.isOk()) << config.status().toString();
  ASSERT_EQ(config->instance_group_size(), 1);
  EXPECT_EQ(config->instance_group(0).kind(), inference::ModelInstanceGroup::KIND_CPU);
  EXPECT_EQ(config->instance_group(0).count(), 1);
  EXPECT_EQ(config->instance_group(0).name(), "m_0");
}

TEST_F(ModelConfigTest, PytorchBackendImpliesPlatform) {
  auto config = load("m", R"(
backend: "pytorch"
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 3 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 3 ] } ]
default_model_filename: "traced.pt"
)");
  ASSERT_TRUE(config.isOk()) << config.status().toString();
  EXPECT_EQ(config->platform(), "pytorch_libtorch");
  EXPECT_EQ(config->default_model_filename(), "traced.pt");
}

TEST_F(ModelConfigTest, ParsesAdvancedSectionsOfTritonConfigs) {
  auto config = load("m", R"(
backend: "custom"
max_batch_size: 16
input [ { name: "HITS" data_type: TYPE_FP32 dims: [ -1, 3 ] allow_ragged_batch: true },
        { name: "SCALAR" data_type: TYPE_INT32 dims: [ 1 ] reshape: { shape: [ ] } } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
batch_input [ { kind: BATCH_ACCUMULATED_ELEMENT_COUNT target_name: "OFFSETS"
                data_type: TYPE_INT32 source_input: "HITS" } ]
batch_output [ { target_name: "OUT" kind: BATCH_SCATTER_WITH_INPUT_SHAPE source_input: "HITS" } ]
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  oldest { max_candidate_sequences: 4 preferred_batch_size: [ 2, 4 ] max_queue_delay_microseconds: 100 }
  control_input [ { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
                  { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] } ]
  state [ { input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_FP32 dims: [ 8 ]
            initial_state: { name: "zeros" data_type: TYPE_FP32 dims: [ 8 ] zero_data: true } } ]
}
optimization {
  priority: PRIORITY_MAX
  cuda { graphs: true graph_spec [ { batch_size: 4 input { key: "HITS" value: { dim: [ 100, 3 ] } }
                                     graph_lower_bound { batch_size: 1
                                       input { key: "HITS" value: { dim: [ 1, 3 ] } } } } ] }
  execution_accelerators { gpu_execution_accelerator: [ { name: "tensorrt"
                           parameters { key: "precision_mode" value: "FP16" } } ] }
  input_pinned_memory { enable: false }
  gather_kernel_buffer_threshold: 0
}
model_warmup [ { name: "warm" batch_size: 2 count: 3
                 inputs { key: "HITS" value: { data_type: TYPE_FP32 dims: [ 10, 3 ] random_data: true } } } ]
model_repository_agents { agents [ { name: "checksum" parameters { key: "MD5:1/model.pt" value: "abc" } } ] }
response_cache { enable: true }
model_metrics { metric_control [ { metric_identifier { family: "nv_inference_first_response_histogram_ms" }
                                   histogram_options { buckets: [ 1, 10, 100 ] } } ] }
cc_model_filenames { key: "8.0" value: "model_a100.pt" }
model_operations { op_library_filename: "libops.so" }
)");
  ASSERT_TRUE(config.isOk()) << config.status().toString();
  EXPECT_EQ(config->batch_input(0).kind(), inference::BatchInput::BATCH_ACCUMULATED_ELEMENT_COUNT);
  EXPECT_EQ(config->sequence_batching().oldest().max_candidate_sequences(), 4);
  EXPECT_EQ(config->sequence_batching().state(0).initial_state(0).zero_data(), true);
  EXPECT_EQ(config->optimization().cuda().graph_spec(0).input().at("HITS").dim(0), 100);
  EXPECT_EQ(config->model_warmup(0).inputs().at("HITS").random_data(), true);
  EXPECT_EQ(config->model_metrics().metric_control(0).histogram_options().buckets_size(), 3);
}

TEST_F(ModelConfigTest, ParsesJsonOverride) {
  auto config = parseModelConfigJson(
      R"({"name": "m", "platform": "pytorch_libtorch", "max_batch_size": 4,
          "input": [{"name": "INPUT__0", "data_type": "TYPE_FP32", "dims": [3]}],
          "output": [{"name": "OUTPUT__0", "dataType": "TYPE_FP32", "dims": ["3"]}],
          "dynamic_batching": {"max_queue_delay_microseconds": "100"}})",
      "load request");
  ASSERT_TRUE(config.isOk()) << config.status().toString();
  EXPECT_EQ(config->output(0).dims(0), 3);
  EXPECT_EQ(config->dynamic_batching().max_queue_delay_microseconds(), 100u);
  EXPECT_TRUE(normalizeAndValidateModelConfig(*config, "m", "load request").isOk());
}

TEST_F(ModelConfigTest, JsonOutputKeepsProtoNamesAndDefaultsAndRoundTrips) {
  auto config = load("m", kPytorchModel);
  ASSERT_TRUE(config.isOk()) << config.status().toString();
  const std::string json = modelConfigToJson(*config);
  EXPECT_NE(json.find("\"max_batch_size\":8"), std::string::npos) << json;
  EXPECT_NE(json.find("\"data_type\":\"TYPE_FP32\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"default_model_filename\":\"model.pt\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"is_shape_tensor\":false"), std::string::npos) << json;
  auto parsed = parseModelConfigJson(json, "round trip");
  ASSERT_TRUE(parsed.isOk()) << parsed.status().toString();
  EXPECT_EQ(parsed->SerializeAsString(), config->SerializeAsString());
}

// ------------------------------------------------------------------------------------------
// Invalid configurations

TEST_F(ModelConfigTest, ReportsSyntaxErrorWithLineAndColumn) {
  const fs::path file =
      writeConfig("m", "name: \"m\"\nplatform: \"pytorch_libtorch\"\ninput [ { name: \"x\" \n");
  auto config = parseModelConfigFile(file);
  expectError(config.status(), StatusCode::kInvalidArg, file.string() + ":4:1: ");
}

TEST_F(ModelConfigTest, ReportsUnknownFieldWithLine) {
  const fs::path file = writeConfig("m", "name: \"m\"\n\nmax_batchsize: 4\n");
  auto config = parseModelConfigFile(file);
  expectError(config.status(), StatusCode::kInvalidArg, file.string() + ":3:");
  expectError(config.status(), StatusCode::kInvalidArg, "max_batchsize");
}

TEST_F(ModelConfigTest, ReportsUnknownEnumValueWithLine) {
  const fs::path file = writeConfig(
      "m", "name: \"m\"\ninput [ { name: \"x\" data_type: TYPE_FLOAT32 dims: [ 1 ] } ]\n");
  auto config = parseModelConfigFile(file);
  expectError(config.status(), StatusCode::kInvalidArg, file.string() + ":2:");
  expectError(config.status(), StatusCode::kInvalidArg, "TYPE_FLOAT32");
}

TEST_F(ModelConfigTest, RejectsMissingFile) {
  const fs::path file = root_ / "absent" / "config.pbtxt";
  auto config = parseModelConfigFile(file);
  expectError(config.status(), StatusCode::kInvalidArg,
              file.string() + ": model configuration file not found");
}

TEST_F(ModelConfigTest, RejectsMalformedJson) {
  auto config = parseModelConfigJson(R"({"name": "m", "max_batch_size": "lots"})", "load request");
  expectError(config.status(), StatusCode::kInvalidArg,
              "load request: invalid model configuration JSON");
}

TEST_F(ModelConfigTest, RejectsNameThatDiffersFromDirectory) {
  expectError(loadStatus("other", kPytorchModel), StatusCode::kInvalidArg,
              "config.pbtxt: name: 'm' does not match the model directory 'other'");
}

TEST_F(ModelConfigTest, RejectsConfigWithoutPlatformOrBackend) {
  expectError(loadStatus("m", R"(input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ])"),
              StatusCode::kInvalidArg, "neither 'platform' nor 'backend' is set");
}

TEST_F(ModelConfigTest, RejectsUnknownPlatform) {
  expectError(loadStatus("m", R"(platform: "tensorflow_graphdef")"), StatusCode::kInvalidArg,
              "platform: unknown platform 'tensorflow_graphdef'");
}

TEST_F(ModelConfigTest, RejectsPlatformBackendMismatch) {
  expectError(loadStatus("m", std::string(kPytorchModel) + R"(backend: "onnxruntime")"),
              StatusCode::kInvalidArg, "backend: 'onnxruntime' does not match platform");
}

TEST_F(ModelConfigTest, RejectsNegativeMaxBatchSize) {
  auto text = std::string(kPytorchModel);
  text.replace(text.find("max_batch_size: 8"), 17, "max_batch_size: -2");
  expectError(loadStatus("m", text), StatusCode::kInvalidArg, "max_batch_size: must be >= 0");
}

TEST_F(ModelConfigTest, RejectsModelWithoutInputs) {
  expectError(loadStatus("m", R"(platform: "pytorch_libtorch"
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 3 ] } ])"),
              StatusCode::kInvalidArg, "input: the model must have at least one input");
}

TEST_F(ModelConfigTest, RejectsModelWithoutOutputs) {
  expectError(loadStatus("m", R"(platform: "pytorch_libtorch"
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 3 ] } ])"),
              StatusCode::kInvalidArg, "output: the model must have at least one output");
}

TEST_F(ModelConfigTest, RejectsEmptyTensorName) {
  expectError(loadStatus("m", std::string(kPytorchModel) +
                                  R"(input [ { data_type: TYPE_FP32 dims: [ 3 ] } ])"),
              StatusCode::kInvalidArg, "input[1].name: must not be empty");
}

TEST_F(ModelConfigTest, RejectsDuplicateInputName) {
  expectError(
      loadStatus("m", std::string(kPytorchModel) +
                          R"(input [ { name: "INPUT__0" data_type: TYPE_INT32 dims: [ 1 ] } ])"),
      StatusCode::kInvalidArg, "input[1].name: duplicate input name 'INPUT__0' (also input[0])");
}

TEST_F(ModelConfigTest, RejectsDuplicateOutputName) {
  expectError(
      loadStatus("m", std::string(kPytorchModel) +
                          R"(output [ { name: "OUTPUT__0" data_type: TYPE_INT32 dims: [ 1 ] } ])"),
      StatusCode::kInvalidArg, "output[1].name: duplicate output name 'OUTPUT__0'");
}

TEST_F(ModelConfigTest, RejectsMissingDataType) {
  expectError(
      loadStatus("m", std::string(kPytorchModel) + R"(input [ { name: "b" dims: [ 3 ] } ])"),
      StatusCode::kInvalidArg, "input[1].data_type: missing or TYPE_INVALID");
}

TEST_F(ModelConfigTest, RejectsEmptyDimsWithoutReshape) {
  expectError(loadStatus("m", std::string(kPytorchModel) +
                                  R"(output [ { name: "OUTPUT__1" data_type: TYPE_FP32 } ])"),
              StatusCode::kInvalidArg, "output[1].dims: must have at least one dimension");
}

TEST_F(ModelConfigTest, RejectsZeroDimension) {
  expectError(loadStatus("m", std::string(kPytorchModel) +
                                  R"(input [ { name: "b" data_type: TYPE_FP32 dims: [ 0, 4 ] } ])"),
              StatusCode::kInvalidArg,
              "config.pbtxt: input[1].dims[0]: must be -1 (any size) or a positive size, got 0");
}

TEST_F(ModelConfigTest, RejectsDimensionBelowMinusOne) {
  expectError(
      loadStatus("m", std::string(kPytorchModel) +
                          R"(input [ { name: "b" data_type: TYPE_FP32 dims: [ 4, -3 ] } ])"),
      StatusCode::kInvalidArg,
      "input[1].dims[1]: must be -1 (any size) or a positive size, got -3");
}

TEST_F(ModelConfigTest, RejectsReshapeWithDifferentElementCount) {
  expectError(loadStatus("m", std::string(kPytorchModel) +
                                  R"(input [ { name: "b" data_type: TYPE_FP32 dims: [ 2, 3 ]
                                               reshape: { shape: [ 5 ] } } ])"),
              StatusCode::kInvalidArg,
              "input[1].reshape: shape [5] has 5 element(s) but dims [2,3] has 6");
}

TEST_F(ModelConfigTest, RejectsPreferredBatchSizeAboveMax) {
  expectError(
      loadStatus(
          "m", std::string(kPytorchModel) + "dynamic_batching { preferred_batch_size: [ 4, 16 ] }"),
      StatusCode::kInvalidArg,
      "dynamic_batching.preferred_batch_size[1]: 16 must be between 1 and max_batch_size (8)");
}

TEST_F(ModelConfigTest, RejectsDynamicBatchingWithoutBatchDimension) {
  auto text = std::string(kPytorchModel) + "dynamic_batching { }";
  text.replace(text.find("max_batch_size: 8"), 17, "max_batch_size: 0");
  expectError(loadStatus("m", text), StatusCode::kInvalidArg,
              "dynamic_batching: requires max_batch_size > 0");
}

TEST_F(ModelConfigTest, RejectsNegativeInstanceCount) {
  expectError(
      loadStatus("m", std::string(kPytorchModel) +
                          "instance_group [ { kind: KIND_CPU }, { count: -1 kind: KIND_CPU } ]"),
      StatusCode::kInvalidArg, "instance_group[1].count: must not be negative, got -1");
}

TEST_F(ModelConfigTest, RejectsNegativeGpuId) {
  expectError(loadStatus("m", std::string(kPytorchModel) +
                                  "instance_group [ { kind: KIND_GPU gpus: [ 0, -1 ] } ]"),
              StatusCode::kInvalidArg, "instance_group[0].gpus[1]: GPU id must be >= 0, got -1");
}

TEST_F(ModelConfigTest, RejectsGpuListOnCpuInstances) {
  expectError(loadStatus("m", std::string(kPytorchModel) +
                                  "instance_group [ { kind: KIND_CPU gpus: [ 0 ] } ]"),
              StatusCode::kInvalidArg, "instance_group[0].gpus: only allowed with kind KIND_GPU");
}

TEST_F(ModelConfigTest, RejectsSpecificVersionPolicyWithoutVersions) {
  expectError(loadStatus("m", std::string(kPytorchModel) + "version_policy { specific { } }"),
              StatusCode::kInvalidArg,
              "version_policy.specific.versions: must list at least one version");
}

TEST_F(ModelConfigTest, RejectsNonPositiveSpecificVersion) {
  expectError(loadStatus("m", std::string(kPytorchModel) +
                                  "version_policy { specific { versions: [ 2, 0 ] } }"),
              StatusCode::kInvalidArg,
              "version_policy.specific.versions[1]: must be a positive version number, got 0");
}

TEST_F(ModelConfigTest, RejectsLatestPolicyWithZeroVersions) {
  expectError(
      loadStatus("m", std::string(kPytorchModel) + "version_policy { latest { num_versions: 0 } }"),
      StatusCode::kInvalidArg, "version_policy.latest.num_versions: must be at least 1");
}

TEST_F(ModelConfigTest, RejectsPytorchOutputWithoutIndexSuffix) {
  expectError(
      loadStatus("m", std::string(kPytorchModel) +
                          R"(output [ { name: "scores" data_type: TYPE_FP32 dims: [ 3 ] } ])"),
      StatusCode::kInvalidArg,
      "output[1].name: 'scores' does not follow the PyTorch naming convention '<name>__<index>'");
}

TEST_F(ModelConfigTest, RejectsEnsembleWithoutSteps) {
  expectError(loadStatus("e", R"(platform: "ensemble"
input [ { name: "A" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "B" data_type: TYPE_FP32 dims: [ 1 ] } ]
ensemble_scheduling { })"),
              StatusCode::kInvalidArg, "ensemble_scheduling.step: must have at least one step");
}

TEST_F(ModelConfigTest, RejectsEnsembleSchedulingOnOrdinaryModel) {
  expectError(loadStatus("m", std::string(kPytorchModel) +
                                  R"(ensemble_scheduling { step [ { model_name: "x" } ] })"),
              StatusCode::kInvalidArg,
              "ensemble_scheduling: only allowed with platform 'ensemble'");
}

}  // namespace
}  // namespace beamline
