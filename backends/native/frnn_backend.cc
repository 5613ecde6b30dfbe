// The `frnn` backend: fixed-radius nearest neighbours in a latent space (Exa.TrkX graph building).
//
// Model config: `backend: "frnn"`, `max_batch_size: 0` (one request is one event), one FP32 input
// of dims [-1, D] (the points, e.g. EMBEDDING [-1, 8]) and one INT64 output of dims [2, -1] (the
// edges, e.g. EDGES). Parameters (string values): `radius` (required, > 0) and `max_neighbours`
// (default 500, as Exa.TrkX's knnVal). Semantics: frnn.h. KIND_CPU instances run the CPU grid
// search; KIND_GPU instances the CUDA one on their device.
//
// Threads (backend_api.h): modelCreate/modelDestroy on the repository's load thread;
// instanceCreate, execute and instanceDestroy on the instance's execution thread. ModelState is
// immutable after modelCreate; each InstanceState (workspaces, output buffer) belongs to its one
// thread.

#include <chrono>
#include <cstring>
#include <memory>
#include <string>

#include "frnn.h"
#include "plugin_support.h"

namespace beamline::native::frnn_backend {
namespace {

const BlHostApi* host = nullptr;

struct ModelState {
  std::string name_;
  FrnnConfig config_;
  std::string output_name_;
};

struct InstanceState {
  const ModelState* model_ = nullptr;
  plugin::Placement placement_;
  FrnnWorkspace cpu_workspace_;
  EdgeList edges_;
};

Status createModel(BlModel* model, void** model_state) {
  auto state = std::make_unique<ModelState>();
  state->name_ = host->modelName(model);
  const std::string context = "frnn backend: model '" + state->name_ + "'";
  auto parsed = plugin::readModelConfig(host, model);
  if (!parsed.isOk()) return parsed.status().withContext(context);
  const inference::ModelConfig& config = *parsed;
  if (config.max_batch_size() != 0) {
    return invalidArg(context + ": max_batch_size must be 0 (one request is one event), got " +
                      std::to_string(config.max_batch_size()));
  }
  if (config.input_size() != 1 || config.input(0).data_type() != inference::TYPE_FP32 ||
      config.input(0).dims_size() != 2) {
    return invalidArg(context + ": needs exactly one input, TYPE_FP32 with dims [-1, D]");
  }
  if (config.output_size() != 1 || config.output(0).data_type() != inference::TYPE_INT64 ||
      config.output(0).dims_size() != 2 || config.output(0).dims(0) != 2) {
    return invalidArg(context + ": needs exactly one output, TYPE_INT64 with dims [2, -1]");
  }
  state->output_name_ = config.output(0).name();
  auto radius = plugin::numberParameter<double>(config, "radius", std::nullopt);
  if (!radius.isOk()) return radius.status().withContext(context);
  auto max_neighbours = plugin::numberParameter<int64_t>(config, "max_neighbours", 500);
  if (!max_neighbours.isOk()) return max_neighbours.status().withContext(context);
  state->config_.radius = static_cast<float>(*radius);
  state->config_.max_neighbours = *max_neighbours;
  BL_RETURN_IF_ERROR(validateFrnnConfig(state->config_).withContext(context));
  host->log(BL_LOG_INFO, __FILE__, __LINE__,
            (context + ": radius " + std::to_string(state->config_.radius) + ", max_neighbours " +
             std::to_string(state->config_.max_neighbours))
                .c_str());
  *model_state = state.release();
  return Status::ok();
}

Status createInstance(const ModelState& model, BlInstance* instance, void** instance_state) {
  auto state = std::make_unique<InstanceState>();
  state->model_ = &model;
  auto placement = plugin::placeInstance(host, instance);
  if (!placement.isOk()) {
    return placement.status().withContext("frnn backend: model '" + model.name_ + "'");
  }
  state->placement_ = std::move(placement).value();
  *instance_state = state.release();
  return Status::ok();
}

BlError* runBatch(InstanceState& instance, BlBatch* batch) {
  const ModelState& model = *instance.model_;
  const std::string context = "frnn backend: model '" + model.name_ + "'";
  BlTensorView points{};
  BL_NATIVE_RETURN_IF_HOST_ERROR(host->batchInput(batch, 0, &points));
  if (points.datatype != BL_TYPE_FP32 || points.rank != 2 || points.shape[0] < 0 ||
      points.shape[1] <= 0) {
    return plugin::toBlError(
        host, invalidArg(context + ": input '" + points.name +
                         "' must be FP32 [N, D] with D >= 1, got " + plugin::shapeText(points)));
  }
  if (static_cast<uint64_t>(plugin::elementCount(points)) * sizeof(float) != points.byte_size) {
    return plugin::toBlError(host, invalidArg(context + ": input '" + points.name + "' has " +
                                              std::to_string(points.byte_size) +
                                              " bytes for shape " + plugin::shapeText(points)));
  }
  if (points.memory_kind == BL_MEMORY_GPU) {
    return plugin::toBlError(host, unsupported(context + ": inputs in GPU memory"));
  }
  const PointSetView view{static_cast<const float*>(points.data), points.shape[0], points.shape[1]};
  const uint64_t input_end = host->nowNs();
  const Status status =
      instance.placement_.on_gpu
          ? gpu::findNeighbourEdgesGpu(view, model.config_, *instance.placement_.workspace,
                                       instance.edges_)
          : findNeighbourEdgesCpu(view, model.config_, instance.cpu_workspace_, instance.edges_);
  if (!status.isOk()) return plugin::toBlError(host, status.withContext(context));
  const uint64_t infer_end = host->nowNs();

  const int64_t shape[2] = {2, instance.edges_.count_};
  const uint64_t byte_size = instance.edges_.data_.size() * sizeof(int64_t);
  void* buffer = nullptr;
  BL_NATIVE_RETURN_IF_HOST_ERROR(host->batchOutputAllocate(
      batch, model.output_name_.c_str(), BL_TYPE_INT64, shape, 2, byte_size, &buffer));
  if (buffer != nullptr && byte_size > 0) {
    std::memcpy(buffer, instance.edges_.data_.data(), byte_size);
  }
  host->batchReportComputeTimes(batch, input_end, infer_end);
  return nullptr;
}

// --- the C entry points (plugin_support.h): nothing may throw past them -----------------------

struct Plugin {
  static constexpr const char* kName = "frnn backend";
  using ModelState = frnn_backend::ModelState;
  using InstanceState = frnn_backend::InstanceState;
  static void setHost(const BlHostApi* api) { host = api; }
  static Status createModel(BlModel* model, void** state) {
    return frnn_backend::createModel(model, state);
  }
  static Status createInstance(const ModelState& model, BlInstance* instance, void** state) {
    return frnn_backend::createInstance(model, instance, state);
  }
  static BlError* execute(InstanceState& instance, BlBatch* batch) {
    return runBatch(instance, batch);
  }
};

}  // namespace
}  // namespace beamline::native::frnn_backend

BEAMLINE_NATIVE_PLUGIN_EXPORTS(beamline::native::frnn_backend::Plugin)
