// The `connected_components` backend: track building from scored edges (the last Exa.TrkX step).
//
// Model config: `backend: "connected_components"`, `max_batch_size: 0` (one request is one event),
// inputs named
//   EDGES   TYPE_INT64 [2, -1]   the edges (sources, then targets)
//   SCORES  TYPE_FP32  [-1]      one score per edge
//   NODES   any type   [-1, ...] a node tensor: only its first dimension (the node count) is read
// and one TYPE_INT64 output of dims [-1] (the label of each node, e.g. LABELS). Parameter
// `threshold` (default 0.5): an edge joins its nodes when its score is above it. Semantics:
// connected_components.h. KIND_CPU instances run union-find on the CPU; KIND_GPU instances the
// CUDA version on their device.
//
// Threads (backend_api.h): modelCreate/modelDestroy on the repository's load thread;
// instanceCreate, execute and instanceDestroy on the instance's execution thread. ModelState is
// immutable after modelCreate; each InstanceState belongs to its one thread.

#include <memory>
#include <string>

#include "connected_components.h"
#include "plugin_support.h"

namespace beamline::native::components_backend {
namespace {

const BlHostApi* host = nullptr;

constexpr const char* kEdgesInput = "EDGES";
constexpr const char* kScoresInput = "SCORES";
constexpr const char* kNodesInput = "NODES";

struct ModelState {
  std::string name_;
  ComponentsConfig config_;
  std::string output_name_;
};

struct InstanceState {
  const ModelState* model_ = nullptr;
  plugin::Placement placement_;
  ComponentsWorkspace cpu_workspace_;
};

Status checkInput(const inference::ModelConfig& config, const std::string& context,
                  const char* name, int expected_type, const char* expected) {
  for (const auto& input : config.input()) {
    if (input.name() != name) continue;
    if (expected_type >= 0 && input.data_type() != expected_type) {
      return invalidArg(context + ": input '" + name + "' must be " + expected);
    }
    return Status::ok();
  }
  return invalidArg(context + ": needs an input named '" + name + "' (" + expected + ")");
}

Status createModel(BlModel* model, void** model_state) {
  auto state = std::make_unique<ModelState>();
  state->name_ = host->modelName(model);
  const std::string context = "connected_components backend: model '" + state->name_ + "'";
  auto parsed = plugin::readModelConfig(host, model);
  if (!parsed.isOk()) return parsed.status().withContext(context);
  const inference::ModelConfig& config = *parsed;
  if (config.max_batch_size() != 0) {
    return invalidArg(context + ": max_batch_size must be 0 (one request is one event), got " +
                      std::to_string(config.max_batch_size()));
  }
  BL_RETURN_IF_ERROR(
      checkInput(config, context, kEdgesInput, inference::TYPE_INT64, "TYPE_INT64 [2, -1]"));
  BL_RETURN_IF_ERROR(
      checkInput(config, context, kScoresInput, inference::TYPE_FP32, "TYPE_FP32 [-1]"));
  BL_RETURN_IF_ERROR(checkInput(config, context, kNodesInput, -1, "any type, [-1, ...]"));
  if (config.input_size() != 3) {
    return invalidArg(context + ": needs exactly the inputs EDGES, SCORES and NODES");
  }
  if (config.output_size() != 1 || config.output(0).data_type() != inference::TYPE_INT64 ||
      config.output(0).dims_size() != 1) {
    return invalidArg(context + ": needs exactly one output, TYPE_INT64 with dims [-1]");
  }
  state->output_name_ = config.output(0).name();
  auto threshold = plugin::numberParameter<double>(config, "threshold", 0.5);
  if (!threshold.isOk()) return threshold.status().withContext(context);
  state->config_.threshold = static_cast<float>(*threshold);
  BL_RETURN_IF_ERROR(validateComponentsConfig(state->config_).withContext(context));
  *model_state = state.release();
  return Status::ok();
}

Status createInstance(const ModelState& model, BlInstance* instance, void** instance_state) {
  auto state = std::make_unique<InstanceState>();
  state->model_ = &model;
  auto placement = plugin::placeInstance(host, instance);
  if (!placement.isOk()) {
    return placement.status().withContext("connected_components backend: model '" + model.name_ +
                                          "'");
  }
  state->placement_ = std::move(placement).value();
  *instance_state = state.release();
  return Status::ok();
}

BlError* runBatch(InstanceState& instance, BlBatch* batch) {
  const ModelState& model = *instance.model_;
  const std::string context = "connected_components backend: model '" + model.name_ + "'";
  BlTensorView edges{}, scores{}, nodes{};
  BL_NATIVE_RETURN_IF_HOST_ERROR(host->batchInputByName(batch, kEdgesInput, &edges));
  BL_NATIVE_RETURN_IF_HOST_ERROR(host->batchInputByName(batch, kScoresInput, &scores));
  BL_NATIVE_RETURN_IF_HOST_ERROR(host->batchInputByName(batch, kNodesInput, &nodes));
  if (edges.datatype != BL_TYPE_INT64 || edges.rank != 2 || edges.shape[0] != 2 ||
      edges.shape[1] < 0 ||
      static_cast<uint64_t>(2 * edges.shape[1]) * sizeof(int64_t) != edges.byte_size) {
    return plugin::toBlError(host, invalidArg(context + ": EDGES must be INT64 [2, E], got " +
                                              plugin::shapeText(edges)));
  }
  const int64_t edge_count = edges.shape[1];
  if (scores.datatype != BL_TYPE_FP32 || scores.rank != 1 || scores.shape[0] != edge_count ||
      static_cast<uint64_t>(edge_count) * sizeof(float) != scores.byte_size) {
    return plugin::toBlError(host, invalidArg(context + ": SCORES must be FP32 [E] with E = " +
                                              std::to_string(edge_count) + " (from EDGES), got " +
                                              plugin::shapeText(scores)));
  }
  if (nodes.rank < 1 || nodes.shape[0] < 0) {
    return plugin::toBlError(host,
                             invalidArg(context + ": NODES must have a first dimension, got " +
                                        plugin::shapeText(nodes)));
  }
  if (edges.memory_kind == BL_MEMORY_GPU || scores.memory_kind == BL_MEMORY_GPU) {
    return plugin::toBlError(host, unsupported(context + ": inputs in GPU memory"));
  }
  const int64_t node_count = nodes.shape[0];
  const int64_t shape[1] = {node_count};
  const uint64_t byte_size = static_cast<uint64_t>(node_count) * sizeof(int64_t);
  void* buffer = nullptr;
  BL_NATIVE_RETURN_IF_HOST_ERROR(host->batchOutputAllocate(
      batch, model.output_name_.c_str(), BL_TYPE_INT64, shape, 1, byte_size, &buffer));
  if (buffer == nullptr) return nullptr;  // nobody asked for the labels

  const auto* edge_data = static_cast<const int64_t*>(edges.data);
  const ScoredEdgesView view{edge_data, edge_data + edge_count,
                             static_cast<const float*>(scores.data), edge_count};
  const uint64_t input_end = host->nowNs();
  auto* labels = static_cast<int64_t*>(buffer);
  const Status status =
      instance.placement_.on_gpu
          ? gpu::labelComponentsGpu(node_count, view, model.config_, *instance.placement_.workspace,
                                    labels)
          : labelComponentsCpu(node_count, view, model.config_, instance.cpu_workspace_, labels);
  if (!status.isOk()) return plugin::toBlError(host, status.withContext(context));
  host->batchReportComputeTimes(batch, input_end, host->nowNs());
  return nullptr;
}

// --- the C entry points (plugin_support.h): nothing may throw past them -----------------------

struct Plugin {
  static constexpr const char* kName = "connected_components backend";
  using ModelState = components_backend::ModelState;
  using InstanceState = components_backend::InstanceState;
  static void setHost(const BlHostApi* api) { host = api; }
  static Status createModel(BlModel* model, void** state) {
    return components_backend::createModel(model, state);
  }
  static Status createInstance(const ModelState& model, BlInstance* instance, void** state) {
    return components_backend::createInstance(model, instance, state);
  }
  static BlError* execute(InstanceState& instance, BlBatch* batch) {
    return runBatch(instance, batch);
  }
};

}  // namespace
}  // namespace beamline::native::components_backend

BEAMLINE_NATIVE_PLUGIN_EXPORTS(beamline::native::components_backend::Plugin)
