#include "core/model_config.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>

#include <charconv>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>
#include <vector>

#include "beamline/core/tensor.h"

namespace beamline {
namespace {

constexpr std::string_view kPytorchPlatform = "pytorch_libtorch";
constexpr std::string_view kPytorchBackend = "pytorch";
constexpr std::string_view kEnsemblePlatform = "ensemble";
constexpr std::string_view kPytorchDefaultFilename = "model.pt";

// Collects text-format parse errors as "<file>:<line>:<column>: <message>" lines. Protobuf reports
// zero-based positions; editors count from one.
class TextFormatErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  explicit TextFormatErrorCollector(std::string file) : file_(std::move(file)) {}

  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    add(line, column, message);
  }
  void AddWarning(int line, google::protobuf::io::ColumnNumber column,
                  const std::string& message) override {
    add(line, column, "warning: " + message);
  }

  const std::string& text() const { return text_; }

 private:
  void add(int line, google::protobuf::io::ColumnNumber column, const std::string& message) {
    if (!text_.empty()) {
      text_ += '\n';
    }
    text_ += file_;
    if (line >= 0) {
      text_ += ':' + std::to_string(line + 1) + ':' + std::to_string(column + 1);
    }
    text_ += ": " + message;
  }

  std::string file_;
  std::string text_;
};

// Builds "<source>: <field>: <problem>" errors.
class ErrorReporter {
 public:
  explicit ErrorReporter(std::string_view source)
      : source_(source.empty() ? "model config" : source) {}

  Status error(std::string_view field, std::string_view problem) const {
    std::string message = source_;
    message += ": ";
    if (!field.empty()) {
      message += field;
      message += ": ";
    }
    message += problem;
    return invalidArg(std::move(message));
  }

 private:
  std::string source_;
};

std::string indexed(std::string_view field, int index) {
  return std::string(field) + '[' + std::to_string(index) + ']';
}

std::string singleQuoted(std::string_view text) { return "'" + std::string(text) + "'"; }

// True when `name` is "<anything>__<digits>".
bool followsPytorchNaming(std::string_view name) {
  const size_t separator = name.rfind("__");
  if (separator == std::string_view::npos) {
    return false;
  }
  const std::string_view index = name.substr(separator + 2);
  if (index.empty()) {
    return false;
  }
  int value = 0;
  const auto [end, error] = std::from_chars(index.data(), index.data() + index.size(), value);
  return error == std::errc() && end == index.data() + index.size();
}

// A shape given as dims: every entry -1 or positive.
Status validateDims(const ErrorReporter& report, const std::string& field,
                    const google::protobuf::RepeatedField<int64_t>& dims) {
  for (int k = 0; k < dims.size(); ++k) {
    if (dims[k] == -1 || dims[k] > 0) {
      continue;
    }
    return report.error(indexed(field, k),
                        "must be -1 (any size) or a positive size, got " + std::to_string(dims[k]));
  }
  return Status::ok();
}

bool fullyKnown(const google::protobuf::RepeatedField<int64_t>& dims) {
  for (const int64_t dim : dims) {
    if (dim < 0) {
      return false;
    }
  }
  return true;
}

// Checks what ModelInput and ModelOutput have in common.
template <typename Tensor>
Status validateTensor(const ErrorReporter& report, const std::string& field, const Tensor& tensor) {
  if (tensor.name().empty()) {
    return report.error(field + ".name", "must not be empty");
  }
  if (tensor.data_type() == inference::TYPE_INVALID) {
    return report.error(field + ".data_type", "missing or TYPE_INVALID for " +
                                                  singleQuoted(tensor.name()) +
                                                  "; set a type such as TYPE_FP32");
  }
  if (tensor.dims().empty() && !tensor.has_reshape()) {
    return report.error(field + ".dims",
                        "must have at least one dimension (for a scalar use dims: [ 1 ] with "
                        "reshape: { shape: [ ] })");
  }
  BL_RETURN_IF_ERROR(validateDims(report, field + ".dims", tensor.dims()));
  if (tensor.has_reshape()) {
    const auto& reshape = tensor.reshape().shape();
    BL_RETURN_IF_ERROR(validateDims(report, field + ".reshape.shape", reshape));
    if (fullyKnown(tensor.dims()) && fullyKnown(reshape)) {
      const std::vector<int64_t> dims(tensor.dims().begin(), tensor.dims().end());
      const std::vector<int64_t> shape(reshape.begin(), reshape.end());
      const Result<int64_t> dims_count = elementCount(dims);
      const Result<int64_t> shape_count = elementCount(shape);
      if (!dims_count.isOk()) {
        return report.error(field + ".dims", dims_count.status().message());
      }
      if (!shape_count.isOk()) {
        return report.error(field + ".reshape.shape", shape_count.status().message());
      }
      if (*dims_count != *shape_count) {
        return report.error(field + ".reshape", "shape " + shapeToString(shape) + " has " +
                                                    std::to_string(*shape_count) +
                                                    " element(s) but dims " + shapeToString(dims) +
                                                    " has " + std::to_string(*dims_count));
      }
    }
  }
  return Status::ok();
}

template <typename Tensors>
Status validateTensors(const ErrorReporter& report, std::string_view kind, const Tensors& tensors) {
  std::map<std::string, int> first_index;
  for (int i = 0; i < tensors.size(); ++i) {
    const std::string field = indexed(kind, i);
    BL_RETURN_IF_ERROR(validateTensor(report, field, tensors[i]));
    const auto [it, inserted] = first_index.emplace(tensors[i].name(), i);
    if (!inserted) {
      return report.error(field + ".name", "duplicate " + std::string(kind) + " name " +
                                               singleQuoted(tensors[i].name()) + " (also " +
                                               indexed(kind, it->second) + ")");
    }
  }
  return Status::ok();
}

Status normalizePlatformAndBackend(const ErrorReporter& report, inference::ModelConfig& config) {
  if (config.platform().empty() && config.backend().empty()) {
    return report.error("", "neither 'platform' nor 'backend' is set; use e.g. platform: \"" +
                                std::string(kPytorchPlatform) + "\" or backend: \"" +
                                std::string(kPytorchBackend) + "\"");
  }
  if (config.platform().empty()) {
    // Any backend name is accepted here; it is resolved to a plug-in at load time.
    if (config.backend() == kPytorchBackend) {
      config.set_platform(std::string(kPytorchPlatform));
    }
    return Status::ok();
  }
  if (config.platform() == kPytorchPlatform) {
    if (config.backend().empty()) {
      config.set_backend(std::string(kPytorchBackend));
    }
    if (config.backend() != kPytorchBackend) {
      return report.error("backend", singleQuoted(config.backend()) + " does not match platform " +
                                         singleQuoted(config.platform()) + " (expected " +
                                         singleQuoted(kPytorchBackend) + ")");
    }
    return Status::ok();
  }
  if (config.platform() == kEnsemblePlatform) {
    if (!config.backend().empty()) {
      return report.error("backend", "must be empty for platform 'ensemble', got " +
                                         singleQuoted(config.backend()));
    }
    return Status::ok();
  }
  return report.error("platform", "unknown platform " + singleQuoted(config.platform()) +
                                      " (known: pytorch_libtorch, ensemble; other runtimes are "
                                      "selected with 'backend')");
}

Status normalizeVersionPolicy(const ErrorReporter& report, inference::ModelConfig& config) {
  inference::ModelVersionPolicy& policy = *config.mutable_version_policy();
  switch (policy.policy_choice_case()) {
    case inference::ModelVersionPolicy::POLICY_CHOICE_NOT_SET:
      policy.mutable_latest()->set_num_versions(1);
      return Status::ok();
    case inference::ModelVersionPolicy::kLatest:
      if (policy.latest().num_versions() == 0) {
        return report.error("version_policy.latest.num_versions", "must be at least 1");
      }
      return Status::ok();
    case inference::ModelVersionPolicy::kAll:
      return Status::ok();
    case inference::ModelVersionPolicy::kSpecific: {
      const auto& versions = policy.specific().versions();
      if (versions.empty()) {
        return report.error("version_policy.specific.versions", "must list at least one version");
      }
      for (int i = 0; i < versions.size(); ++i) {
        if (versions[i] <= 0) {
          return report.error(
              indexed("version_policy.specific.versions", i),
              "must be a positive version number, got " + std::to_string(versions[i]));
        }
      }
      return Status::ok();
    }
  }
  return Status::ok();
}

Status validateScheduling(const ErrorReporter& report, const inference::ModelConfig& config,
                          bool is_ensemble) {
  const int max_batch_size = config.max_batch_size();
  if (config.has_dynamic_batching()) {
    const inference::ModelDynamicBatching& batching = config.dynamic_batching();
    if (max_batch_size == 0) {
      return report.error("dynamic_batching",
                          "requires max_batch_size > 0 (a model with max_batch_size 0 has no "
                          "batch dimension to batch along)");
    }
    for (int i = 0; i < batching.preferred_batch_size_size(); ++i) {
      const int size = batching.preferred_batch_size(i);
      if (size <= 0 || size > max_batch_size) {
        return report.error(indexed("dynamic_batching.preferred_batch_size", i),
                            std::to_string(size) + " must be between 1 and max_batch_size (" +
                                std::to_string(max_batch_size) + ")");
      }
    }
    const uint64_t levels = batching.priority_levels();
    if (levels > 0 &&
        (batching.default_priority_level() == 0 || batching.default_priority_level() > levels)) {
      return report.error("dynamic_batching.default_priority_level",
                          "must be between 1 and priority_levels (" + std::to_string(levels) +
                              "), got " + std::to_string(batching.default_priority_level()));
    }
    for (const auto& [level, policy] : batching.priority_queue_policy()) {
      if (level == 0 || level > levels) {
        return report.error("dynamic_batching.priority_queue_policy",
                            "priority level " + std::to_string(level) +
                                " is outside 1..priority_levels (" + std::to_string(levels) + ")");
      }
    }
  }
  // Ragged batching: batch_input companions and batch_output scatters refer to real inputs.
  auto isInput = [&](const std::string& name) {
    for (const auto& input : config.input()) {
      if (input.name() == name) return true;
    }
    return false;
  };
  auto isOutput = [&](const std::string& name) {
    for (const auto& output : config.output()) {
      if (output.name() == name) return true;
    }
    return false;
  };
  for (int i = 0; i < config.batch_input_size(); ++i) {
    const auto& batch_input = config.batch_input(i);
    const std::string field = indexed("batch_input", i);
    if (max_batch_size == 0) {
      return report.error(field, "requires max_batch_size > 0");
    }
    if (batch_input.kind() == inference::BatchInput::BATCH_ITEM_SHAPE ||
        batch_input.kind() == inference::BatchInput::BATCH_ITEM_SHAPE_FLATTEN) {
      return report.error(field + ".kind", inference::BatchInput::Kind_Name(batch_input.kind()) +
                                               " is not supported");
    }
    const auto type = batch_input.data_type();
    if (type != inference::TYPE_INT32 && type != inference::TYPE_INT64 &&
        type != inference::TYPE_FP32) {
      return report.error(field + ".data_type", "must be TYPE_INT32, TYPE_INT64 or TYPE_FP32");
    }
    if (batch_input.target_name_size() == 0) {
      return report.error(field + ".target_name", "names no target tensor");
    }
    for (const auto& target : batch_input.target_name()) {
      if (isInput(target)) {
        return report.error(field + ".target_name",
                            "'" + target + "' is already a model input; a batch_input adds a "
                            "tensor of its own");
      }
    }
    if (batch_input.source_input_size() != 1 || !isInput(batch_input.source_input(0))) {
      return report.error(field + ".source_input", "must name exactly one model input");
    }
  }
  for (int i = 0; i < config.batch_output_size(); ++i) {
    const auto& batch_output = config.batch_output(i);
    const std::string field = indexed("batch_output", i);
    for (const auto& target : batch_output.target_name()) {
      if (!isOutput(target)) {
        return report.error(field + ".target_name", "'" + target + "' is not a model output");
      }
    }
    if (batch_output.source_input_size() != 1 || !isInput(batch_output.source_input(0))) {
      return report.error(field + ".source_input", "must name exactly one model input");
    }
  }
  if (config.has_sequence_batching() && config.sequence_batching().has_oldest()) {
    const auto& oldest = config.sequence_batching().oldest();
    for (int i = 0; i < oldest.preferred_batch_size_size(); ++i) {
      const int size = oldest.preferred_batch_size(i);
      if (size <= 0 || size > max_batch_size) {
        return report.error(indexed("sequence_batching.oldest.preferred_batch_size", i),
                            std::to_string(size) + " must be between 1 and max_batch_size (" +
                                std::to_string(max_batch_size) + ")");
      }
    }
  }
  if (is_ensemble) {
    if (!config.has_ensemble_scheduling()) {
      return report.error("ensemble_scheduling", "required for platform 'ensemble'");
    }
    const auto& steps = config.ensemble_scheduling().step();
    if (steps.empty()) {
      return report.error("ensemble_scheduling.step", "must have at least one step");
    }
    for (int i = 0; i < steps.size(); ++i) {
      const std::string field = indexed("ensemble_scheduling.step", i);
      if (steps[i].model_name().empty()) {
        return report.error(field + ".model_name", "must not be empty");
      }
      if (steps[i].model_version() < -1) {
        return report.error(field + ".model_version",
                            "must be -1 (latest) or a version number, got " +
                                std::to_string(steps[i].model_version()));
      }
    }
  } else if (config.has_ensemble_scheduling()) {
    return report.error("ensemble_scheduling", "only allowed with platform 'ensemble'");
  }
  return Status::ok();
}

Status normalizeInstanceGroups(const ErrorReporter& report, inference::ModelConfig& config) {
  if (config.instance_group().empty()) {
    inference::ModelInstanceGroup& group = *config.add_instance_group();
    group.set_count(1);
    group.set_kind(inference::ModelInstanceGroup::KIND_CPU);
  }
  for (int i = 0; i < config.instance_group_size(); ++i) {
    inference::ModelInstanceGroup& group = *config.mutable_instance_group(i);
    const std::string field = indexed("instance_group", i);
    if (group.count() < 0) {
      return report.error(field + ".count",
                          "must not be negative, got " + std::to_string(group.count()));
    }
    if (group.count() == 0) {
      group.set_count(1);
    }
    if (group.kind() == inference::ModelInstanceGroup::KIND_AUTO) {
      // No GPU discovery yet: listed GPUs mean GPU placement, otherwise CPU.
      group.set_kind(group.gpus().empty() ? inference::ModelInstanceGroup::KIND_CPU
                                          : inference::ModelInstanceGroup::KIND_GPU);
    }
    if (group.kind() == inference::ModelInstanceGroup::KIND_GPU) {
      for (int k = 0; k < group.gpus_size(); ++k) {
        if (group.gpus(k) < 0) {
          return report.error(indexed(field + ".gpus", k),
                              "GPU id must be >= 0, got " + std::to_string(group.gpus(k)));
        }
      }
    } else if (!group.gpus().empty()) {
      return report.error(field + ".gpus",
                          "only allowed with kind KIND_GPU, got " +
                              inference::ModelInstanceGroup::Kind_Name(group.kind()));
    }
    if (group.name().empty()) {
      group.set_name(config.name() + "_" + std::to_string(i));
    }
  }
  return Status::ok();
}

}  // namespace

Result<inference::ModelConfig> parseModelConfigFile(const std::filesystem::path& config_pbtxt) {
  const std::string file = config_pbtxt.string();
  std::error_code error;
  if (!std::filesystem::is_regular_file(config_pbtxt, error)) {
    return invalidArg(file + ": model configuration file not found");
  }
  std::ifstream stream(config_pbtxt, std::ios::binary);
  if (!stream) {
    return invalidArg(file + ": model configuration file could not be opened");
  }
  std::ostringstream text;
  // An empty file inserts nothing and sets failbit on `text`; that is not an error here.
  text << stream.rdbuf();
  if (stream.bad()) {
    return invalidArg(file + ": model configuration file could not be read");
  }

  TextFormatErrorCollector errors(file);
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  inference::ModelConfig config;
  if (!parser.ParseFromString(text.str(), &config)) {
    if (errors.text().empty()) {
      return invalidArg(file + ": not a valid model configuration");
    }
    return invalidArg(errors.text());
  }
  return config;
}

Result<inference::ModelConfig> parseModelConfigJson(std::string_view json,
                                                    std::string_view source) {
  inference::ModelConfig config;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &config, options);
  if (!status.ok()) {
    return invalidArg(std::string(source.empty() ? "model config JSON" : source) +
                      ": invalid model configuration JSON: " + std::string(status.message()));
  }
  return config;
}

Status normalizeAndValidateModelConfig(inference::ModelConfig& config,
                                       std::string_view model_dir_name,
                                       std::string_view source_path) {
  const ErrorReporter report(source_path);

  if (config.name().empty()) {
    if (model_dir_name.empty()) {
      return report.error("name", "must not be empty");
    }
    config.set_name(std::string(model_dir_name));
  } else if (!model_dir_name.empty() && config.name() != model_dir_name) {
    return report.error("name", singleQuoted(config.name()) +
                                    " does not match the model directory " +
                                    singleQuoted(model_dir_name));
  }

  BL_RETURN_IF_ERROR(normalizePlatformAndBackend(report, config));
  const bool is_ensemble = config.platform() == kEnsemblePlatform;
  const bool is_pytorch = config.backend() == kPytorchBackend;

  BL_RETURN_IF_ERROR(normalizeVersionPolicy(report, config));

  if (config.max_batch_size() < 0) {
    return report.error("max_batch_size", "must be >= 0 (0 disables batching), got " +
                                              std::to_string(config.max_batch_size()));
  }

  if (config.input().empty()) {
    return report.error("input", "the model must have at least one input");
  }
  if (config.output().empty()) {
    return report.error("output", "the model must have at least one output");
  }
  BL_RETURN_IF_ERROR(validateTensors(report, "input", config.input()));
  BL_RETURN_IF_ERROR(validateTensors(report, "output", config.output()));
  if (is_pytorch) {
    for (int i = 0; i < config.output_size(); ++i) {
      if (followsPytorchNaming(config.output(i).name())) {
        continue;
      }
      return report.error(
          indexed("output", i) + ".name",
          singleQuoted(config.output(i).name()) +
              " does not follow the PyTorch naming convention '<name>__<index>' (e.g. "
              "'OUTPUT__0'): TorchScript outputs have no names, so the suffix gives the "
              "output's position in the model's returned tuple");
    }
  }

  BL_RETURN_IF_ERROR(validateScheduling(report, config, is_ensemble));

  // Ensembles run no instances of their own; their steps' models do.
  if (!is_ensemble) {
    BL_RETURN_IF_ERROR(normalizeInstanceGroups(report, config));
  }

  if (is_pytorch && config.default_model_filename().empty()) {
    config.set_default_model_filename(std::string(kPytorchDefaultFilename));
  }
  return Status::ok();
}

std::string modelConfigToJson(const inference::ModelConfig& config) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string json;
  // Printing a well-formed message cannot fail; an empty object is the safe answer if it does.
  if (!google::protobuf::util::MessageToJsonString(config, &json, options).ok()) {
    return "{}";
  }
  return json;
}

}  // namespace beamline
