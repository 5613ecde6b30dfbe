// The `exatrkx` backend: the whole Exa.TrkX-style tracking pipeline in one backend call, like the
// exatrkx-service custom backends (exatrkxcpu / exatrkxgpu):
//
//   FEATURES [N, 3] -> embedding (TorchScript) -> FRNN graph (native) -> filter (TorchScript)
//                   -> GNN edge scores (TorchScript) -> connected components (native) -> LABELS [N]
//
// The native steps are the code of the `frnn` and `connected_components` backends
// (backends/native, linked in as a static library), and the networks are the TorchScript files of
// the ensemble's steps, so the fused model and the `exatrkx` ensemble give the same labels.
//
// Model config: `backend: "exatrkx"`, `max_batch_size: 0` (one request is one event), one FP32
// input [-1, 3] and one INT64 output [-1]. Parameters (string values): `radius` (required),
// `max_neighbours` (default 500), `threshold` (default 0.5), `embedding_model`, `filter_model`,
// `gnn_model` (file names in the version directory; default embedding.pt, filter.pt, gnn.pt) and
// INTRA_OP_THREAD_COUNT (default 1). The filter's cut is part of filter.pt. The filter model
// returns (kept edges [2, E'], their scores [E']); the GNN returns one score per kept edge.
//
// KIND_CPU instances share the model's modules. KIND_GPU instances need a LibTorch with CUDA (the
// Debian one has none) and a CUDA build of the native algorithms; they run on their device end to
// end: the embedding, the edges and the scores never leave it, only LABELS is copied back.
//
// Threads (backend_api.h): modelCreate/modelDestroy on the repository's load thread;
// instanceCreate, execute and instanceDestroy on the instance's execution thread. ModelState is
// immutable after modelCreate; each InstanceState belongs to its one thread. No exception leaves
// this file.

#include <ATen/Parallel.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "connected_components.h"
#include "frnn.h"
#include "gpu_algorithms.h"
#include "plugin_support.h"

namespace beamline::backend::exatrkx {
namespace {

namespace native = beamline::native;
namespace plugin = beamline::native::plugin;

const BlHostApi* host = nullptr;

struct ModelState {
  std::string name_;
  native::FrnnConfig frnn_;
  native::ComponentsConfig components_;
  int intra_op_threads_ = 1;
  std::string output_name_;
  torch::jit::Module embedding_, filter_, gnn_;  // on the CPU
};

struct InstanceState {
  const ModelState* model_ = nullptr;
  torch::Device device_{torch::kCPU};
  torch::jit::Module embedding_, filter_, gnn_;
  plugin::Placement placement_;
  native::FrnnWorkspace frnn_workspace_;
  native::ComponentsWorkspace components_workspace_;
  native::EdgeList edges_;
};

std::string describe(const std::exception& e) {
  if (const auto* torch_error = dynamic_cast<const c10::Error*>(&e)) {
    return torch_error->what_without_backtrace();
  }
  return e.what();
}

Result<torch::jit::Module> loadModule(const std::string& context,
                                      const std::filesystem::path& file) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(file, error)) {
    return notFound(context + ": TorchScript file '" + file.string() + "' does not exist");
  }
  try {
    torch::jit::Module module = torch::jit::load(file.string(), torch::Device(torch::kCPU));
    module.eval();
    return module;
  } catch (const std::exception& e) {
    return invalidArg(context + ": cannot load '" + file.string() + "': " + describe(e));
  }
}

std::string stringParameter(const inference::ModelConfig& config, const std::string& name,
                            const std::string& fallback) {
  const auto it = config.parameters().find(name);
  return it == config.parameters().end() ? fallback : it->second.string_value();
}

Status createModel(BlModel* model, void** model_state) {
  auto state = std::make_unique<ModelState>();
  state->name_ = host->modelName(model);
  const std::string context = "exatrkx backend: model '" + state->name_ + "'";
  auto parsed = plugin::readModelConfig(host, model);
  if (!parsed.isOk()) return parsed.status().withContext(context);
  const inference::ModelConfig& config = *parsed;
  if (config.max_batch_size() != 0) {
    return invalidArg(context + ": max_batch_size must be 0 (one request is one event)");
  }
  if (config.input_size() != 1 || config.input(0).data_type() != inference::TYPE_FP32 ||
      config.input(0).dims_size() != 2) {
    return invalidArg(context + ": needs exactly one input, TYPE_FP32 with dims [-1, F]");
  }
  if (config.output_size() != 1 || config.output(0).data_type() != inference::TYPE_INT64 ||
      config.output(0).dims_size() != 1) {
    return invalidArg(context + ": needs exactly one output, TYPE_INT64 with dims [-1]");
  }
  state->output_name_ = config.output(0).name();
  auto radius = plugin::numberParameter<double>(config, "radius", std::nullopt);
  auto max_neighbours = plugin::numberParameter<int64_t>(config, "max_neighbours", 500);
  auto threshold = plugin::numberParameter<double>(config, "threshold", 0.5);
  auto threads = plugin::numberParameter<int>(config, "INTRA_OP_THREAD_COUNT", 1);
  for (const Status* status :
       {&radius.status(), &max_neighbours.status(), &threshold.status(), &threads.status()}) {
    if (!status->isOk()) return status->withContext(context);
  }
  if (*threads <= 0) return invalidArg(context + ": INTRA_OP_THREAD_COUNT must be positive");
  state->frnn_ = {static_cast<float>(*radius), *max_neighbours};
  state->components_ = {static_cast<float>(*threshold)};
  state->intra_op_threads_ = *threads;
  BL_RETURN_IF_ERROR(native::validateFrnnConfig(state->frnn_).withContext(context));
  BL_RETURN_IF_ERROR(native::validateComponentsConfig(state->components_).withContext(context));

  const std::filesystem::path directory = host->modelVersionPath(model);
  struct Part {
    torch::jit::Module* module;
    const char* parameter;
    const char* fallback;
  };
  for (const Part& part : {Part{&state->embedding_, "embedding_model", "embedding.pt"},
                           Part{&state->filter_, "filter_model", "filter.pt"},
                           Part{&state->gnn_, "gnn_model", "gnn.pt"}}) {
    auto module =
        loadModule(context, directory / stringParameter(config, part.parameter, part.fallback));
    if (!module.isOk()) return module.status();
    *part.module = std::move(module).value();
  }
  host->log(BL_LOG_INFO, __FILE__, __LINE__,
            (context + ": radius " + std::to_string(state->frnn_.radius) + ", max_neighbours " +
             std::to_string(state->frnn_.max_neighbours) + ", threshold " +
             std::to_string(state->components_.threshold))
                .c_str());
  *model_state = state.release();
  return Status::ok();
}

Status createInstance(const ModelState& model, BlInstance* instance, void** instance_state) {
  auto state = std::make_unique<InstanceState>();
  state->model_ = &model;
  const std::string context = "exatrkx backend: model '" + model.name_ + "'";
  at::set_num_threads(model.intra_op_threads_);  // thread-local: this is the execution thread
  if (host->instanceKind(instance) == BL_INSTANCE_GPU) {
    if (!torch::cuda::is_available()) {
      return unavailable(context + ": instance '" + host->instanceName(instance) +
                         "' is KIND_GPU, but this LibTorch sees no CUDA device (it may be a "
                         "CPU-only build)");
    }
    auto placement = plugin::placeInstance(host, instance);
    if (!placement.isOk()) return placement.status().withContext(context);
    state->placement_ = std::move(placement).value();
    state->device_ = torch::Device(torch::kCUDA,
                                   static_cast<c10::DeviceIndex>(host->instanceDeviceId(instance)));
    for (auto [from, to] :
         {std::pair{&model.embedding_, &state->embedding_},
          std::pair{&model.filter_, &state->filter_}, std::pair{&model.gnn_, &state->gnn_}}) {
      *to = from->clone();
      to->to(state->device_);
    }
  } else {
    state->embedding_ = model.embedding_;  // shared: forward() from several threads is safe
    state->filter_ = model.filter_;
    state->gnn_ = model.gnn_;
  }
  *instance_state = state.release();
  return Status::ok();
}

Result<torch::Tensor> tensorResult(const c10::IValue& value, const std::string& what) {
  if (value.isTensor()) return value.toTensor();
  if (value.isTuple() && !value.toTupleRef().elements().empty() &&
      value.toTupleRef().elements()[0].isTensor()) {
    return value.toTupleRef().elements()[0].toTensor();
  }
  return internalError(what + " returned " + value.tagKind() + ", not a tensor or a tuple");
}

BlError* runPipeline(InstanceState& instance, BlBatch* batch) {
  const ModelState& model = *instance.model_;
  const std::string context = "exatrkx backend: model '" + model.name_ + "'";
  auto fail = [&](const Status& status) { return plugin::toBlError(host, status); };
  BlTensorView view{};
  BL_NATIVE_RETURN_IF_HOST_ERROR(host->batchInput(batch, 0, &view));
  if (view.datatype != BL_TYPE_FP32 || view.rank != 2 || view.shape[0] < 0 || view.shape[1] <= 0 ||
      static_cast<uint64_t>(plugin::elementCount(view)) * sizeof(float) != view.byte_size) {
    return fail(invalidArg(context + ": input '" + view.name + "' must be FP32 [N, F], got " +
                           plugin::shapeText(view)));
  }
  if (view.memory_kind == BL_MEMORY_GPU) {
    return fail(unsupported(context + ": inputs in GPU memory"));
  }
  const int64_t node_count = view.shape[0];
  const int64_t output_shape[1] = {node_count};
  void* output = nullptr;
  BL_NATIVE_RETURN_IF_HOST_ERROR(
      host->batchOutputAllocate(batch, model.output_name_.c_str(), BL_TYPE_INT64, output_shape, 1,
                                static_cast<uint64_t>(node_count) * sizeof(int64_t), &output));
  if (output == nullptr) return nullptr;  // nobody asked for the labels
  auto* labels = static_cast<int64_t*>(output);

  c10::InferenceMode inference_mode;
  std::optional<c10::DeviceGuard> device_guard;
  const bool on_gpu = instance.device_.is_cuda();
  if (on_gpu) device_guard.emplace(instance.device_);
  torch::Tensor features =
      torch::from_blob(const_cast<void*>(view.data), {view.shape[0], view.shape[1]},
                       torch::TensorOptions().dtype(torch::kFloat));
  if (on_gpu) features = features.to(instance.device_);
  const uint64_t input_end = host->nowNs();

  // 1. Embedding.
  auto embedding_result =
      tensorResult(instance.embedding_.forward({features}), "the embedding model");
  if (!embedding_result.isOk()) return fail(embedding_result.status().withContext(context));
  const torch::Tensor embedding = embedding_result->to(torch::kFloat).contiguous();
  if (embedding.dim() != 2 || embedding.size(0) != node_count) {
    return fail(internalError(context + ": the embedding model returned shape " +
                              c10::str(embedding.sizes()) + " for " + std::to_string(node_count) +
                              " spacepoints"));
  }

  // 2. Graph building (FRNN), with the `frnn` backend's code.
  torch::Tensor candidate_edges;
  if (on_gpu) {
    torch::cuda::synchronize(instance.device_.index());  // our kernels use their own stream
    const int64_t* device_edges = nullptr;
    int64_t edge_count = 0;
    const Status status = native::gpu::findNeighbourEdgesOnDevice(
        embedding.data_ptr<float>(), embedding.size(0), embedding.size(1), model.frnn_,
        *instance.placement_.workspace, &device_edges, &edge_count);
    if (!status.isOk()) return fail(status.withContext(context));
    candidate_edges =
        torch::from_blob(const_cast<int64_t*>(device_edges), {2, edge_count},
                         torch::TensorOptions().dtype(torch::kLong).device(instance.device_));
  } else {
    const Status status = native::findNeighbourEdgesCpu(
        {embedding.data_ptr<float>(), embedding.size(0), embedding.size(1)}, model.frnn_,
        instance.frnn_workspace_, instance.edges_);
    if (!status.isOk()) return fail(status.withContext(context));
    candidate_edges = torch::from_blob(instance.edges_.data_.data(), {2, instance.edges_.count_},
                                       torch::TensorOptions().dtype(torch::kLong));
  }

  // 3. Filter (keeps the edges above its cut), 4. GNN edge scores.
  auto filtered_result =
      tensorResult(instance.filter_.forward({features, candidate_edges}), "the filter model");
  if (!filtered_result.isOk()) return fail(filtered_result.status().withContext(context));
  const torch::Tensor filtered_edges = filtered_result->to(torch::kLong).contiguous();
  auto scores_result =
      tensorResult(instance.gnn_.forward({features, filtered_edges}), "the GNN model");
  if (!scores_result.isOk()) return fail(scores_result.status().withContext(context));
  const torch::Tensor scores = scores_result->to(torch::kFloat).contiguous();
  if (filtered_edges.dim() != 2 || filtered_edges.size(0) != 2 || scores.dim() != 1 ||
      scores.size(0) != filtered_edges.size(1)) {
    return fail(internalError(context + ": the filter returned edges of shape " +
                              c10::str(filtered_edges.sizes()) + " and the GNN scores of shape " +
                              c10::str(scores.sizes())));
  }

  // 5. Track building (connected components), with the `connected_components` backend's code.
  const int64_t edge_count = filtered_edges.size(1);
  const int64_t* edge_data = filtered_edges.data_ptr<int64_t>();
  const native::ScoredEdgesView scored{edge_data, edge_data + edge_count, scores.data_ptr<float>(),
                                       edge_count};
  if (on_gpu) {
    torch::cuda::synchronize(instance.device_.index());
    const torch::Tensor device_labels = torch::empty(
        {node_count}, torch::TensorOptions().dtype(torch::kLong).device(instance.device_));
    const Status status = native::gpu::labelComponentsOnDevice(
        node_count, scored, model.components_, *instance.placement_.workspace,
        device_labels.data_ptr<int64_t>());
    if (!status.isOk()) return fail(status.withContext(context));
    const torch::Tensor host_labels = device_labels.to(torch::kCPU);
    std::memcpy(labels, host_labels.data_ptr<int64_t>(),
                static_cast<size_t>(node_count) * sizeof(int64_t));
  } else {
    const Status status = native::labelComponentsCpu(node_count, scored, model.components_,
                                                     instance.components_workspace_, labels);
    if (!status.isOk()) return fail(status.withContext(context));
  }
  host->batchReportComputeTimes(batch, input_end, host->nowNs());
  return nullptr;
}

// --- the C entry points (plugin_support.h): nothing may throw past them -----------------------

struct Plugin {
  static constexpr const char* kName = "exatrkx backend";
  using ModelState = exatrkx::ModelState;
  using InstanceState = exatrkx::InstanceState;
  static void setHost(const BlHostApi* api) { host = api; }
  static Status createModel(BlModel* model, void** state) {
    return exatrkx::createModel(model, state);
  }
  static Status createInstance(const ModelState& model, BlInstance* instance, void** state) {
    return exatrkx::createInstance(model, instance, state);
  }
  static BlError* execute(InstanceState& instance, BlBatch* batch) {
    return runPipeline(instance, batch);
  }
  static std::string describe(const std::exception& e) { return exatrkx::describe(e); }
};

}  // namespace
}  // namespace beamline::backend::exatrkx

BEAMLINE_NATIVE_PLUGIN_EXPORTS(beamline::backend::exatrkx::Plugin)
