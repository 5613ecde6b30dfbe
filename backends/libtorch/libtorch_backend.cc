// The `pytorch` backend: runs TorchScript models (`platform: "pytorch_libtorch"`) with LibTorch.
//
// This is the only code in beamline that includes LibTorch headers. It follows the conventions of
// Triton's PyTorch backend, so that a Triton model repository loads unchanged:
//  - the model file is <version dir>/<default_model_filename, or "model.pt">;
//  - inputs bind to forward() by index when every config input is named `<name>__<index>`,
//    otherwise by forward()'s argument names;
//  - forward() returns a Tensor, a tuple or list of Tensors (config output `<name>__<i>` takes
//    element i; without that naming, the config order), a Dict[str, Tensor] (by output name), or,
//    for TYPE_STRING outputs, a List[str];
//  - config parameters INTRA_OP_THREAD_COUNT, INTER_OP_THREAD_COUNT and INFERENCE_MODE.
//
// Threads (see backend_api.h): modelCreate/modelDestroy on the repository's load thread;
// instanceCreate, execute and instanceDestroy on the instance's own execution thread. ModelState is
// immutable after modelCreate. CPU instances share its torch::jit::Module (running one module
// from several threads is safe); each GPU instance runs its own copy moved to its device.
//
// No exception leaves this file: every entry point catches c10::Error, std::exception and anything
// else, and turns it into a BlError.

#include <ATen/Parallel.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>
#if BEAMLINE_TORCH_CUDA  // a CUDA-enabled LibTorch (set by CMake when c10_cuda exists)
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif
#include <torch/script.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "beamline/backend/backend_api.h"
#include "model_config.pb.h"

namespace beamline::backend::libtorch {
namespace {

const BlHostApi* host = nullptr;  // set once by beamline_backend_init, valid until dlclose

constexpr const char* kDefaultModelFilename = "model.pt";

// On the 2-vCPU machines we measured, two intra-op threads made batch-1 CNN inference slower than
// one, and a busy server gets its parallelism from instances and batching anyway.
constexpr int kDefaultIntraOpThreads = 1;

#define BL_RETURN_IF_ERROR(expression)    \
  do {                                    \
    if (BlError* error_ = (expression)) { \
      return error_;                      \
    }                                     \
  } while (false)

#define BL_LOG(level, message) host->log((level), __FILE__, __LINE__, std::string(message).c_str())

BlError* makeError(BlStatusCode code, const std::string& message) {
  return host->errorNew(code, message.c_str());
}

std::string typeName(BlDataType datatype) {
  return inference::DataType_Name(static_cast<inference::DataType>(datatype));
}

// The LibTorch element type of a tensor datatype; nullopt for BYTES and for the types that
// LibTorch 1.13 lacks (UINT16/32/64).
std::optional<torch::ScalarType> torchTypeOf(BlDataType datatype) {
  switch (datatype) {
    case BL_TYPE_BOOL:
      return torch::kBool;
    case BL_TYPE_UINT8:
      return torch::kByte;
    case BL_TYPE_INT8:
      return torch::kChar;
    case BL_TYPE_INT16:
      return torch::kShort;
    case BL_TYPE_INT32:
      return torch::kInt;
    case BL_TYPE_INT64:
      return torch::kLong;
    case BL_TYPE_FP16:
      return torch::kHalf;
    case BL_TYPE_BF16:
      return torch::kBFloat16;
    case BL_TYPE_FP32:
      return torch::kFloat;
    case BL_TYPE_FP64:
      return torch::kDouble;
    default:
      return std::nullopt;
  }
}

// The index in a Triton-convention name `<name>__<index>`, or nullopt.
std::optional<size_t> conventionIndex(const std::string& name) {
  const size_t separator = name.rfind("__");
  if (separator == std::string::npos || separator + 2 == name.size()) {
    return std::nullopt;
  }
  size_t index = 0;
  const char* first = name.data() + separator + 2;
  const char* last = name.data() + name.size();
  const auto [end, error] = std::from_chars(first, last, index);
  if (error != std::errc() || end != last) {
    return std::nullopt;
  }
  return index;
}

std::optional<int> parsePositiveInt(const std::string& text) {
  int value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value <= 0) {
    return std::nullopt;
  }
  return value;
}

// The message of any exception, without LibTorch's C++ backtrace.
std::string describe(const std::exception& e) {
  if (const auto* torch_error = dynamic_cast<const c10::Error*>(&e)) {
    return torch_error->what_without_backtrace();
  }
  return e.what();
}

// One argument of forward() (self excluded).
struct ForwardArgument {
  std::string name_;
  c10::TypePtr type_;
  std::optional<c10::IValue> default_value_;
};

// A config input and the forward() argument position it feeds.
struct InputBinding {
  std::string name_;
  BlDataType datatype_;
  size_t argument_;
};

// A config output and where it is found in forward()'s result.
struct OutputBinding {
  std::string name_;
  BlDataType datatype_;
  size_t element_;             // position in a returned tuple or list of tensors
  std::vector<int64_t> dims_;  // full dims, batch dimension (-1) first when batching
};

// One loaded model version. Immutable after modelCreate; read concurrently by all instances.
struct ModelState {
  std::string model_name_;
  std::string model_file_;
  bool batching_ = false;
  int intra_op_threads_ = kDefaultIntraOpThreads;
  bool inference_mode_ = true;
  torch::jit::Module module_;  // on the CPU
  std::vector<ForwardArgument> arguments_;
  std::vector<InputBinding> inputs_;
  std::vector<OutputBinding> outputs_;
};

// One execution instance: the device it runs on and the module it runs.
struct InstanceState {
  const ModelState* model_;
  std::string instance_name_;
  torch::Device device_{torch::kCPU};
  torch::jit::Module module_;  // the model's module for CPU instances, a device copy for GPU
#if BEAMLINE_TORCH_CUDA
  // Each GPU instance runs on a stream of its own, so instances on one GPU overlap and waiting for
  // one instance's kernels never waits for another's.
  std::optional<c10::cuda::CUDAStream> stream_;
#endif
};

std::once_flag inter_op_once;

// at::set_num_interop_threads works once per process and only before any parallel work: the first
// model that asks for it decides, later requests are logged and ignored.
void setInterOpThreadsOnce(const std::string& model_name, int threads) {
  bool applied = false;
  std::call_once(inter_op_once, [&] {
    applied = true;
    try {
      at::set_num_interop_threads(threads);
      BL_LOG(BL_LOG_INFO, "pytorch backend: model '" + model_name + "' set inter-op threads to " +
                              std::to_string(threads));
    } catch (const std::exception& e) {
      BL_LOG(BL_LOG_WARNING, "pytorch backend: cannot set inter-op threads to " +
                                 std::to_string(threads) + ": " + describe(e));
    }
  });
  if (!applied) {
    BL_LOG(BL_LOG_WARNING, "pytorch backend: model '" + model_name +
                               "': INTER_OP_THREAD_COUNT ignored, it is set once per process and "
                               "another model set it first");
  }
}

BlError* readParameters(const inference::ModelConfig& config, ModelState& state) {
  const auto& parameters = config.parameters();
  if (const auto it = parameters.find("INTRA_OP_THREAD_COUNT"); it != parameters.end()) {
    const std::optional<int> threads = parsePositiveInt(it->second.string_value());
    if (!threads) {
      return makeError(BL_STATUS_INVALID_ARG, "model '" + state.model_name_ +
                                                  "': INTRA_OP_THREAD_COUNT must be a positive "
                                                  "integer, got '" +
                                                  it->second.string_value() + "'");
    }
    state.intra_op_threads_ = *threads;
  }
  if (const auto it = parameters.find("INTER_OP_THREAD_COUNT"); it != parameters.end()) {
    const std::optional<int> threads = parsePositiveInt(it->second.string_value());
    if (!threads) {
      return makeError(BL_STATUS_INVALID_ARG, "model '" + state.model_name_ +
                                                  "': INTER_OP_THREAD_COUNT must be a positive "
                                                  "integer, got '" +
                                                  it->second.string_value() + "'");
    }
    setInterOpThreadsOnce(state.model_name_, *threads);
  }
  if (const auto it = parameters.find("INFERENCE_MODE"); it != parameters.end()) {
    const std::string& text = it->second.string_value();
    if (text != "true" && text != "false") {
      return makeError(BL_STATUS_INVALID_ARG,
                       "model '" + state.model_name_ +
                           "': INFERENCE_MODE must be \"true\" or \"false\", "
                           "got '" +
                           text + "'");
    }
    state.inference_mode_ = text == "true";
  }
  return nullptr;
}

// Rejects config datatypes that LibTorch cannot represent.
BlError* checkDatatype(const ModelState& state, const char* what, const std::string& name,
                       BlDataType datatype) {
  if (datatype == BL_TYPE_BYTES || torchTypeOf(datatype)) {
    return nullptr;
  }
  const BlStatusCode code =
      datatype == BL_TYPE_UINT16 || datatype == BL_TYPE_UINT32 || datatype == BL_TYPE_UINT64
          ? BL_STATUS_UNSUPPORTED
          : BL_STATUS_INVALID_ARG;
  return makeError(code, "model '" + state.model_name_ + "': " + what + " '" + name +
                             "' has type " + typeName(datatype) +
                             ", which the pytorch backend does not support");
}

std::string argumentList(const std::vector<ForwardArgument>& arguments) {
  std::string list;
  for (const ForwardArgument& argument : arguments) {
    list += (list.empty() ? "" : ", ") + argument.name_;
  }
  return list;
}

BlError* bindInputs(const inference::ModelConfig& config, ModelState& state) {
  const auto& arguments = state.arguments_;
  bool by_index = config.input_size() > 0;
  for (const auto& input : config.input()) {
    by_index = by_index && conventionIndex(input.name()).has_value();
  }
  std::vector<bool> bound(arguments.size(), false);
  for (const auto& input : config.input()) {
    size_t position = arguments.size();
    if (by_index) {
      position = *conventionIndex(input.name());
      if (position >= arguments.size()) {
        return makeError(BL_STATUS_INVALID_ARG,
                         "model '" + state.model_name_ + "': input '" + input.name() +
                             "' names forward() argument " + std::to_string(position) +
                             ", but forward() takes " + std::to_string(arguments.size()) + " (" +
                             argumentList(arguments) + ")");
      }
    } else {
      for (size_t i = 0; i < arguments.size(); ++i) {
        if (arguments[i].name_ == input.name()) {
          position = i;
        }
      }
      if (position == arguments.size()) {
        return makeError(BL_STATUS_INVALID_ARG,
                         "model '" + state.model_name_ + "': input '" + input.name() +
                             "' is not an argument of forward(" + argumentList(arguments) +
                             "); name the inputs after the arguments or as <name>__<index>");
      }
    }
    if (bound[position]) {
      return makeError(BL_STATUS_INVALID_ARG, "model '" + state.model_name_ + "': input '" +
                                                  input.name() + "' binds forward() argument '" +
                                                  arguments[position].name_ + "' a second time");
    }
    bound[position] = true;
    const auto datatype = static_cast<BlDataType>(input.data_type());
    const c10::TypePtr value_type = datatype == BL_TYPE_BYTES
                                        ? c10::TypePtr(c10::ListType::ofStrings())
                                        : c10::TensorType::get();
    if (!value_type->isSubtypeOf(*arguments[position].type_)) {
      return makeError(BL_STATUS_INVALID_ARG,
                       "model '" + state.model_name_ + "': input '" + input.name() + "' (" +
                           typeName(datatype) + ") would be passed as " + value_type->str() +
                           ", but forward() argument '" + arguments[position].name_ + "' is " +
                           arguments[position].type_->str());
    }
    state.inputs_.push_back({input.name(), datatype, position});
  }
  for (size_t i = 0; i < arguments.size(); ++i) {
    if (!bound[i] && !arguments[i].default_value_) {
      return makeError(BL_STATUS_INVALID_ARG, "model '" + state.model_name_ +
                                                  "': forward() argument '" + arguments[i].name_ +
                                                  "' (position " + std::to_string(i) +
                                                  ") has no config input and no default value");
    }
  }
  return nullptr;
}

void bindOutputs(const inference::ModelConfig& config, ModelState& state) {
  bool by_index = true;
  for (const auto& output : config.output()) {
    by_index = by_index && conventionIndex(output.name()).has_value();
  }
  for (int i = 0; i < config.output_size(); ++i) {
    const auto& output = config.output(i);
    OutputBinding binding{output.name(),
                          static_cast<BlDataType>(output.data_type()),
                          by_index ? *conventionIndex(output.name()) : static_cast<size_t>(i),
                          {}};
    if (state.batching_) {
      binding.dims_.push_back(-1);
    }
    binding.dims_.insert(binding.dims_.end(), output.dims().begin(), output.dims().end());
    state.outputs_.push_back(std::move(binding));
  }
}

BlError* createModel(BlModel* model, void** model_state) {
  auto state = std::make_unique<ModelState>();
  state->model_name_ = host->modelName(model);
  const void* bytes = nullptr;
  uint64_t byte_size = 0;
  host->modelConfig(model, &bytes, &byte_size);
  inference::ModelConfig config;
  if (!config.ParseFromArray(bytes, static_cast<int>(byte_size))) {
    return makeError(BL_STATUS_INVALID_ARG,
                     "model '" + state->model_name_ + "': cannot parse the model config");
  }
  state->batching_ = config.max_batch_size() > 0;
  for (const auto& input : config.input()) {
    BL_RETURN_IF_ERROR(
        checkDatatype(*state, "input", input.name(), static_cast<BlDataType>(input.data_type())));
  }
  for (const auto& output : config.output()) {
    BL_RETURN_IF_ERROR(checkDatatype(*state, "output", output.name(),
                                     static_cast<BlDataType>(output.data_type())));
  }
  BL_RETURN_IF_ERROR(readParameters(config, *state));

  const std::filesystem::path file =
      std::filesystem::path(host->modelVersionPath(model)) /
      (config.default_model_filename().empty() ? kDefaultModelFilename
                                               : config.default_model_filename());
  state->model_file_ = file.string();
  std::error_code filesystem_error;
  if (!std::filesystem::is_regular_file(file, filesystem_error)) {
    return makeError(BL_STATUS_NOT_FOUND, "model '" + state->model_name_ + "': TorchScript file '" +
                                              state->model_file_ + "' does not exist");
  }
  try {
    // Load onto the CPU whatever device the model was saved from; instances move it.
    state->module_ = torch::jit::load(state->model_file_, torch::Device(torch::kCPU));
    state->module_.eval();
  } catch (const std::exception& e) {
    return makeError(BL_STATUS_INVALID_ARG, "model '" + state->model_name_ +
                                                "': cannot load TorchScript file '" +
                                                state->model_file_ + "': " + describe(e));
  }
  const auto forward = state->module_.find_method("forward");
  if (!forward) {
    return makeError(BL_STATUS_INVALID_ARG, "model '" + state->model_name_ + "': '" +
                                                state->model_file_ + "' has no forward() method");
  }
  const auto& schema_arguments = forward->function().getSchema().arguments();
  for (size_t i = 0; i < schema_arguments.size(); ++i) {
    const c10::Argument& argument = schema_arguments[i];
    if (i == 0 && argument.name() == "self") {
      continue;
    }
    state->arguments_.push_back({argument.name(), argument.type(),
                                 argument.default_value()
                                     ? std::optional<c10::IValue>(*argument.default_value())
                                     : std::nullopt});
  }
  BL_RETURN_IF_ERROR(bindInputs(config, *state));
  bindOutputs(config, *state);

  BL_LOG(BL_LOG_INFO,
         "pytorch backend: loaded '" + state->model_file_ + "' for model '" + state->model_name_ +
             "' version " + std::to_string(host->modelVersion(model)) + ": forward(" +
             argumentList(state->arguments_) + "), " + std::to_string(state->inputs_.size()) +
             " inputs, " + std::to_string(state->outputs_.size()) + " outputs, " +
             std::to_string(state->intra_op_threads_) + " intra-op thread(s) per instance");
  *model_state = state.release();
  return nullptr;
}

BlError* createInstance(const ModelState& model, BlInstance* instance, void** instance_state) {
  auto state = std::make_unique<InstanceState>();
  state->model_ = &model;
  state->instance_name_ = host->instanceName(instance);
  // Thread-local in LibTorch's OpenMP build: this runs on the thread that will call execute().
  at::set_num_threads(model.intra_op_threads_);
  if (host->instanceKind(instance) == BL_INSTANCE_GPU) {
    const int32_t device_id = host->instanceDeviceId(instance);
    if (!torch::cuda::is_available()) {
      return makeError(BL_STATUS_UNAVAILABLE,
                       "model '" + model.model_name_ + "': instance '" + state->instance_name_ +
                           "' is KIND_GPU, but this LibTorch sees no CUDA device (it may be a "
                           "CPU-only build)");
    }
    const auto device_count = static_cast<int64_t>(torch::cuda::device_count());
    if (device_id < 0 || device_id >= device_count) {
      return makeError(BL_STATUS_UNAVAILABLE,
                       "model '" + model.model_name_ + "': instance '" + state->instance_name_ +
                           "' asks for GPU " + std::to_string(device_id) + ", but LibTorch sees " +
                           std::to_string(device_count));
    }
    state->device_ = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(device_id));
    state->module_ = model.module_.clone();
    state->module_.to(state->device_);
#if BEAMLINE_TORCH_CUDA
    state->stream_ = c10::cuda::getStreamFromPool(/*isHighPriority=*/false,
                                                  static_cast<c10::DeviceIndex>(device_id));
#endif
  } else {
    state->module_ = model.module_;  // shares the model's module object
  }
  BL_LOG(BL_LOG_INFO, "pytorch backend: instance '" + state->instance_name_ + "' of model '" +
                          model.model_name_ + "' runs on " + state->device_.str());
  *instance_state = state.release();
  return nullptr;
}

// --- execution ----------------------------------------------------------------------------------

// A List[str] from BYTES elements (4-byte little-endian length, then the bytes).
BlError* makeBytesInput(const ModelState& model, const BlTensorView& view, c10::IValue* value) {
  uint64_t expected_count = 1;
  for (uint32_t d = 0; d < view.rank; ++d) {
    expected_count *= static_cast<uint64_t>(view.shape[d]);
  }
  c10::List<std::string> strings;
  const auto* data = static_cast<const unsigned char*>(view.data);
  uint64_t offset = 0;
  while (offset < view.byte_size) {
    if (view.byte_size - offset < 4) {
      return makeError(BL_STATUS_INVALID_ARG, "model '" + model.model_name_ + "': input '" +
                                                  view.name + "': truncated BYTES length prefix");
    }
    const uint64_t length = uint64_t{data[offset]} | uint64_t{data[offset + 1]} << 8 |
                            uint64_t{data[offset + 2]} << 16 | uint64_t{data[offset + 3]} << 24;
    offset += 4;
    if (length > view.byte_size - offset) {
      return makeError(BL_STATUS_INVALID_ARG, "model '" + model.model_name_ + "': input '" +
                                                  view.name + "': BYTES element of " +
                                                  std::to_string(length) +
                                                  " bytes runs past the end of the tensor");
    }
    strings.emplace_back(reinterpret_cast<const char*>(data + offset), length);
    offset += length;
  }
  if (strings.size() != expected_count) {
    return makeError(BL_STATUS_INVALID_ARG,
                     "model '" + model.model_name_ + "': input '" + view.name + "' holds " +
                         std::to_string(strings.size()) + " BYTES elements, its shape says " +
                         std::to_string(expected_count));
  }
  *value = std::move(strings);
  return nullptr;
}

// A tensor viewing the host's input memory (no copy), moved to the instance's device if needed.
// The host's memory is read-only to us; a model that writes into its inputs in place would write
// into it (TorchScript models rarely do).
BlError* makeTensorInput(const InstanceState& instance, const BlTensorView& view,
                         c10::IValue* value) {
  const ModelState& model = *instance.model_;
  const torch::ScalarType scalar_type = *torchTypeOf(view.datatype);
  std::vector<int64_t> sizes(view.shape, view.shape + view.rank);
  uint64_t element_count = 1;
  for (const int64_t size : sizes) {
    if (size < 0 || (size > 0 && element_count > UINT64_MAX / static_cast<uint64_t>(size))) {
      return makeError(BL_STATUS_INVALID_ARG, "model '" + model.model_name_ + "': input '" +
                                                  view.name + "' has a bad shape");
    }
    element_count *= static_cast<uint64_t>(size);
  }
  const uint64_t element_size = c10::elementSize(scalar_type);
  if (element_count > UINT64_MAX / element_size || element_count * element_size != view.byte_size) {
    return makeError(BL_STATUS_INVALID_ARG,
                     "model '" + model.model_name_ + "': input '" + view.name + "' has " +
                         std::to_string(view.byte_size) + " bytes, its shape and type need " +
                         std::to_string(element_count * element_size));
  }
  if (element_count == 0) {
    *value =
        torch::empty(sizes, torch::TensorOptions().dtype(scalar_type).device(instance.device_));
    return nullptr;
  }
  if (view.data == nullptr) {
    return makeError(BL_STATUS_INVALID_ARG,
                     "model '" + model.model_name_ + "': input '" + view.name + "' has no data");
  }
  const bool on_gpu = view.memory_kind == BL_MEMORY_GPU;
  if (scalar_type == torch::kBool && !on_gpu) {
    const auto* bytes = static_cast<const unsigned char*>(view.data);
    for (uint64_t i = 0; i < view.byte_size; ++i) {
      if (bytes[i] > 1) {
        return makeError(BL_STATUS_INVALID_ARG, "model '" + model.model_name_ + "': input '" +
                                                    view.name +
                                                    "' has a BOOL byte that is not 0 or 1");
      }
    }
  }
  const torch::Device memory_device =
      on_gpu ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(view.memory_device_id))
             : torch::Device(torch::kCPU);
  torch::Tensor tensor =
      torch::from_blob(const_cast<void*>(view.data), sizes,
                       torch::TensorOptions().dtype(scalar_type).device(memory_device));
  if (tensor.device() != instance.device_) {
    tensor = tensor.to(instance.device_);
  }
  *value = std::move(tensor);
  return nullptr;
}

// The shape of a BYTES output of `count` elements: the config dims with the batch dimension and at
// most one other variable dimension filled in; a flat [count] when they do not fit.
std::vector<int64_t> bytesOutputShape(const OutputBinding& output, int64_t batch_size,
                                      int64_t count) {
  std::vector<int64_t> shape = output.dims_;
  if (!shape.empty() && shape[0] == -1 && batch_size >= 0) {
    shape[0] = batch_size;
  }
  int64_t known = 1;
  int variable = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) {
      if (variable >= 0) {
        return {count};
      }
      variable = static_cast<int>(i);
    } else {
      known *= shape[i];
    }
  }
  if (variable >= 0 && known > 0 && count % known == 0) {
    shape[static_cast<size_t>(variable)] = count / known;
    return shape;
  }
  return variable < 0 && known == count ? shape : std::vector<int64_t>{count};
}

BlError* writeBytesOutput(const ModelState& model, const OutputBinding& output,
                          const c10::IValue& value, int64_t batch_size, BlBatch* batch) {
  if (!value.isList()) {
    return makeError(BL_STATUS_INTERNAL, "model '" + model.model_name_ + "': output '" +
                                             output.name_ +
                                             "' is TYPE_STRING, but forward() "
                                             "returned " +
                                             value.tagKind() + " for it, not List[str]");
  }
  const c10::List<c10::IValue> list = value.toList();
  uint64_t byte_size = 0;
  for (const c10::IValue& element : list) {
    if (!element.isString()) {
      return makeError(BL_STATUS_INTERNAL, "model '" + model.model_name_ + "': output '" +
                                               output.name_ +
                                               "' is TYPE_STRING, but forward() "
                                               "returned a list holding " +
                                               element.tagKind());
    }
    const size_t length = element.toStringRef().size();
    if (length > UINT32_MAX) {
      return makeError(BL_STATUS_INTERNAL, "model '" + model.model_name_ + "': output '" +
                                               output.name_ + "' has a string over 4 GiB");
    }
    byte_size += 4 + length;
  }
  const std::vector<int64_t> shape =
      bytesOutputShape(output, batch_size, static_cast<int64_t>(list.size()));
  void* buffer = nullptr;
  BL_RETURN_IF_ERROR(host->batchOutputAllocate(batch, output.name_.c_str(), BL_TYPE_BYTES,
                                               shape.data(), static_cast<uint32_t>(shape.size()),
                                               byte_size, &buffer));
  if (buffer == nullptr) {
    return nullptr;
  }
  auto* out = static_cast<unsigned char*>(buffer);
  for (const c10::IValue& element : list) {
    const std::string& text = element.toStringRef();
    const auto length = static_cast<uint32_t>(text.size());
    out[0] = static_cast<unsigned char>(length);
    out[1] = static_cast<unsigned char>(length >> 8);
    out[2] = static_cast<unsigned char>(length >> 16);
    out[3] = static_cast<unsigned char>(length >> 24);
    std::copy(text.begin(), text.end(), out + 4);
    out += 4 + text.size();
  }
  return nullptr;
}

BlError* writeTensorOutput(const ModelState& model, const OutputBinding& output,
                           const c10::IValue& value, BlBatch* batch) {
  if (!value.isTensor()) {
    return makeError(BL_STATUS_INTERNAL, "model '" + model.model_name_ + "': output '" +
                                             output.name_ +
                                             "' needs a Tensor, but forward() "
                                             "returned " +
                                             value.tagKind() + " for it");
  }
  torch::Tensor tensor = value.toTensor();
  const torch::ScalarType expected = *torchTypeOf(output.datatype_);
  if (tensor.scalar_type() != expected) {
    return makeError(BL_STATUS_INTERNAL, "model '" + model.model_name_ + "': output '" +
                                             output.name_ + "' is " + typeName(output.datatype_) +
                                             " (" + c10::toString(expected) +
                                             ") in the config, but the model returned " +
                                             c10::toString(tensor.scalar_type()));
  }
  tensor = tensor.contiguous().to(torch::kCPU);
  const auto byte_size = static_cast<uint64_t>(tensor.nbytes());
  void* buffer = nullptr;
  BL_RETURN_IF_ERROR(host->batchOutputAllocate(
      batch, output.name_.c_str(), output.datatype_, tensor.sizes().data(),
      static_cast<uint32_t>(tensor.dim()), byte_size, &buffer));
  if (buffer != nullptr && byte_size > 0) {
    std::memcpy(buffer, tensor.data_ptr(), byte_size);
  }
  return nullptr;
}

// forward()'s result as a list of outputs addressable by position.
std::vector<c10::IValue> resultElements(const c10::IValue& result) {
  if (result.isTuple()) {
    const auto& elements = result.toTupleRef().elements();
    return std::vector<c10::IValue>(elements.begin(), elements.end());
  }
  if (result.isList()) {
    const c10::List<c10::IValue> list = result.toList();
    bool all_tensors = !list.empty();
    for (const c10::IValue& element : list) {
      all_tensors = all_tensors && element.isTensor();
    }
    if (all_tensors) {
      return std::vector<c10::IValue>(list.begin(), list.end());
    }
  }
  return {result};  // a Tensor, or the List[str] of a single TYPE_STRING output
}

BlError* runBatch(InstanceState& instance, BlBatch* batch) {
  const ModelState& model = *instance.model_;
  std::optional<c10::InferenceMode> inference_mode;
  std::optional<torch::NoGradGuard> no_grad;
  if (model.inference_mode_) {
    inference_mode.emplace();
  } else {
    no_grad.emplace();
  }
  std::optional<c10::DeviceGuard> device_guard;
  if (instance.device_.is_cuda()) {
    device_guard.emplace(instance.device_);
  }
#if BEAMLINE_TORCH_CUDA
  std::optional<c10::cuda::CUDAStreamGuard> stream_guard;
  if (instance.stream_) stream_guard.emplace(*instance.stream_);
#endif

  std::vector<c10::IValue> arguments(model.arguments_.size());
  std::vector<bool> bound(model.arguments_.size(), false);
  int64_t batch_size = -1;
  const uint32_t input_count = host->batchInputCount(batch);
  for (uint32_t i = 0; i < input_count; ++i) {
    BlTensorView view{};
    BL_RETURN_IF_ERROR(host->batchInput(batch, i, &view));
    if (view.name == nullptr) {
      return makeError(BL_STATUS_INTERNAL, "model '" + model.model_name_ + "': unnamed input");
    }
    const InputBinding* binding = nullptr;
    for (const InputBinding& candidate : model.inputs_) {
      if (candidate.name_ == view.name) {
        binding = &candidate;
      }
    }
    if (binding == nullptr || view.datatype != binding->datatype_) {
      return makeError(BL_STATUS_INVALID_ARG, "model '" + model.model_name_ +
                                                  "': unexpected input '" + view.name +
                                                  "' of type " + typeName(view.datatype));
    }
    if (model.batching_ && batch_size < 0 && view.rank > 0) {
      batch_size = view.shape[0];
    }
    c10::IValue& argument = arguments[binding->argument_];
    BL_RETURN_IF_ERROR(binding->datatype_ == BL_TYPE_BYTES
                           ? makeBytesInput(model, view, &argument)
                           : makeTensorInput(instance, view, &argument));
    bound[binding->argument_] = true;
  }
  for (size_t i = 0; i < arguments.size(); ++i) {
    if (!bound[i]) {
      if (!model.arguments_[i].default_value_) {
        return makeError(BL_STATUS_INVALID_ARG, "model '" + model.model_name_ +
                                                    "': no input for forward() argument '" +
                                                    model.arguments_[i].name_ + "'");
      }
      arguments[i] = *model.arguments_[i].default_value_;
    }
  }

  const uint64_t input_end_ns = host->nowNs();
  // Module handles are shared; forward() on one module from several threads is safe.
  c10::IValue result = instance.module_.forward(std::move(arguments));
  if (instance.device_.is_cuda()) {
    // Count the kernels as compute time: wait for this instance's stream only.
#if BEAMLINE_TORCH_CUDA
    instance.stream_->synchronize();
#else
    torch::cuda::synchronize(instance.device_.index());
#endif
  }
  const uint64_t infer_end_ns = host->nowNs();

  std::optional<c10::Dict<c10::IValue, c10::IValue>> dict;
  std::vector<c10::IValue> elements;
  if (result.isGenericDict()) {
    dict = result.toGenericDict();
  } else {
    elements = resultElements(result);
  }
  for (const OutputBinding& output : model.outputs_) {
    if (!host->batchOutputRequested(batch, output.name_.c_str())) {
      continue;
    }
    const c10::IValue* value = nullptr;
    c10::IValue dict_value;
    if (dict) {
      const auto it = dict->find(c10::IValue(output.name_));
      if (it != dict->end()) {
        dict_value = it->value();
        value = &dict_value;
      }
    } else if (output.element_ < elements.size()) {
      value = &elements[output.element_];
    }
    if (value == nullptr) {
      return makeError(BL_STATUS_INTERNAL,
                       "model '" + model.model_name_ +
                           "': forward() returned no value for output '" + output.name_ + "' (" +
                           (dict ? std::string("missing from the returned dict")
                                 : "position " + std::to_string(output.element_) + " of " +
                                       std::to_string(elements.size())) +
                           ")");
    }
    BL_RETURN_IF_ERROR(output.datatype_ == BL_TYPE_BYTES
                           ? writeBytesOutput(model, output, *value, batch_size, batch)
                           : writeTensorOutput(model, output, *value, batch));
  }
  host->batchReportComputeTimes(batch, input_end_ns, infer_end_ns);
  return nullptr;
}

// --- C entry points: nothing may throw past these ------------------------------------------------

template <typename Function>
BlError* guarded(const char* entry_point, Function&& function) {
  try {
    return function();
  } catch (const std::exception& e) {
    return makeError(BL_STATUS_INTERNAL,
                     std::string("pytorch backend: ") + entry_point + ": " + describe(e));
  } catch (...) {
    return makeError(BL_STATUS_INTERNAL,
                     std::string("pytorch backend: ") + entry_point + ": unknown exception");
  }
}

BlError* modelCreate(BlModel* model, void** model_state) {
  return guarded("modelCreate", [&] { return createModel(model, model_state); });
}

void modelDestroy(void* model_state) {
  try {
    delete static_cast<ModelState*>(model_state);
  } catch (...) {  // destructors of LibTorch objects should not throw; never let one out
  }
}

BlError* instanceCreate(void* model_state, BlInstance* instance, void** instance_state) {
  return guarded("instanceCreate", [&] {
    return createInstance(*static_cast<const ModelState*>(model_state), instance, instance_state);
  });
}

void instanceDestroy(void* instance_state) {
  try {
    delete static_cast<InstanceState*>(instance_state);
  } catch (...) {
  }
}

BlError* execute(void* instance_state, BlBatch* batch) {
  return guarded("execute",
                 [&] { return runBatch(*static_cast<InstanceState*>(instance_state), batch); });
}

}  // namespace
}  // namespace beamline::backend::libtorch

extern "C" {

BL_BACKEND_EXPORT uint32_t beamline_backend_api_version(void) { return BL_BACKEND_API_VERSION; }

BL_BACKEND_EXPORT BlError* beamline_backend_init(const BlHostApi* host, BlBackendApi* backend) {
  namespace libtorch = beamline::backend::libtorch;
  if (host->struct_size < sizeof(BlHostApi)) {
    return host->errorNew(BL_STATUS_UNSUPPORTED,
                          "pytorch backend: the server's host API is older than the backend's");
  }
  libtorch::host = host;
  backend->struct_size = sizeof(BlBackendApi);
  backend->modelCreate = libtorch::modelCreate;
  backend->modelDestroy = libtorch::modelDestroy;
  backend->instanceCreate = libtorch::instanceCreate;
  backend->instanceDestroy = libtorch::instanceDestroy;
  backend->execute = libtorch::execute;
  backend->finalize = nullptr;
  return nullptr;
}

}  // extern "C"
