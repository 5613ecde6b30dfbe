#include "core/model.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include <spdlog/spdlog.h>

namespace beamline {
namespace {

uint64_t wallClockMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

uint64_t steadyNs(std::chrono::steady_clock::time_point t) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

void add(DurationStat& stat, uint64_t ns) {
  stat.count += 1;
  stat.ns += ns;
}

// Writes the outputs of a one-request batch straight into that request's sink, checking them
// against the config on the way.
class SingleRequestOutputs final : public BatchOutputTarget {
 public:
  SingleRequestOutputs(const InferenceRequest& request,
                       const std::vector<ModelOutputSpec>& config_outputs)
      : request_(request), config_outputs_(config_outputs) {}

  bool isRequested(std::string_view name) const override {
    if (request_.requested_outputs.empty()) return configType(name) != DataType::kInvalid;
    return std::find(request_.requested_outputs.begin(), request_.requested_outputs.end(), name) !=
           request_.requested_outputs.end();
  }

  Result<std::byte*> allocate(std::string_view name, DataType datatype,
                              std::span<const int64_t> shape, uint64_t byte_size) override {
    const DataType expected = configType(name);
    if (expected != datatype) {
      return internalError("the backend produced output '" + std::string(name) + "' as " +
                           std::string(dataTypeWireName(datatype)) + " but the model config says " +
                           std::string(dataTypeWireName(expected)));
    }
    if (datatype != DataType::kBytes) {
      auto expected_size = fixedByteSize(datatype, shape);
      if (!expected_size.isOk() || *expected_size != byte_size) {
        return internalError("the backend asked for " + std::to_string(byte_size) +
                             " bytes for output '" + std::string(name) + "' of shape " +
                             shapeToString(shape));
      }
    }
    ++allocated_;
    return request_.sink->allocateOutput(name, datatype, shape, byte_size);
  }

  size_t allocated() const { return allocated_; }
  size_t expected() const {
    return request_.requested_outputs.empty() ? config_outputs_.size()
                                              : request_.requested_outputs.size();
  }

 private:
  DataType configType(std::string_view name) const {
    for (const auto& output : config_outputs_) {
      if (output.name == name) return output.datatype;
    }
    return DataType::kInvalid;
  }

  const InferenceRequest& request_;
  const std::vector<ModelOutputSpec>& config_outputs_;
  size_t allocated_ = 0;
};

}  // namespace

Model::Model(std::shared_ptr<const inference::ModelConfig> config, int64_t version,
             std::shared_ptr<Backend> backend)
    : config_(std::move(config)), version_(version), backend_(std::move(backend)) {
  max_batch_size_ = config_->max_batch_size();
  for (const auto& input : config_->input()) {
    InputSpec spec;
    spec.name = input.name();
    spec.datatype = static_cast<DataType>(input.data_type());
    spec.dims.assign(input.dims().begin(), input.dims().end());
    if (input.has_reshape()) {
      spec.reshape = Shape(input.reshape().shape().begin(), input.reshape().shape().end());
    }
    spec.optional = input.optional();
    inputs_.push_back(std::move(spec));
  }
  for (const auto& output : config_->output()) {
    outputs_.push_back({output.name(), static_cast<DataType>(output.data_type())});
  }
}

Result<std::shared_ptr<Model>> Model::create(std::shared_ptr<const inference::ModelConfig> config,
                                             int64_t version,
                                             const std::filesystem::path& version_dir,
                                             std::shared_ptr<Backend> backend) {
  std::shared_ptr<Model> model(new Model(std::move(config), version, std::move(backend)));
  model->handle_.name = model->config_->name();
  model->handle_.version = version;
  model->handle_.version_path = version_dir.string();
  model->config_->SerializeToString(&model->handle_.config_bytes);

  const BlBackendApi& api = model->backend_->api();
  Status status = takeBackendError(api.modelCreate(&model->handle_, &model->model_state_));
  if (!status.isOk()) {
    model->model_state_ = nullptr;
    model->accepting_ = false;
    return status;
  }

  // One thread per instance; each creates its backend instance on itself, as the ABI promises.
  int index = 0;
  for (const auto& group : model->config_->instance_group()) {
    const int count = std::max(1, group.count());
    for (int i = 0; i < count; ++i) {
      auto instance = std::make_unique<Instance>();
      instance->handle.name = model->name() + "_" + std::to_string(index++);
      if (group.kind() == inference::ModelInstanceGroup::KIND_GPU) {
        instance->handle.kind = BL_INSTANCE_GPU;
        instance->handle.device_id = group.gpus_size() > 0 ? group.gpus(i % group.gpus_size()) : 0;
      }
      model->instances_.push_back(std::move(instance));
    }
  }
  if (model->instances_.empty()) {
    auto instance = std::make_unique<Instance>();
    instance->handle.name = model->name() + "_0";
    model->instances_.push_back(std::move(instance));
  }
  std::vector<std::promise<Status>> created(model->instances_.size());
  for (size_t i = 0; i < model->instances_.size(); ++i) {
    Instance* instance = model->instances_[i].get();
    std::promise<Status>* promise = &created[i];
    Model* raw = model.get();
    instance->thread = std::thread([raw, instance, promise] { raw->instanceLoop(*instance, *promise); });
  }
  Status first_error;
  for (auto& promise : created) {
    Status s = promise.get_future().get();
    if (!s.isOk() && first_error.isOk()) first_error = s;
  }
  if (!first_error.isOk()) {
    model->shutdown(std::chrono::steady_clock::now());
    return first_error;
  }
  spdlog::info("model '{}' version {} ready: {} instance(s), backend '{}'", model->name(), version,
               model->instances_.size(), model->backend_->name());
  return model;
}

Model::~Model() { shutdown(std::chrono::steady_clock::now()); }

void Model::instanceLoop(Instance& instance, std::promise<Status>& created) {
  const BlBackendApi& api = backend_->api();
  Status status = takeBackendError(api.instanceCreate(model_state_, &instance.handle, &instance.state));
  const bool ok = status.isOk();
  created.set_value(ok ? Status::ok()
                       : status.withContext("creating instance " + instance.handle.name));
  if (!ok) {
    instance.state = nullptr;
    return;
  }
  while (auto request = queue_.pop()) {
    execute(instance, std::move(request));
  }
  api.instanceDestroy(instance.state);
  instance.state = nullptr;
}

Status Model::validate(const InferenceRequest& request) const {
  const std::string& model = name();
  int64_t batch_size = -1;
  size_t matched = 0;
  for (size_t i = 0; i < request.inputs.size(); ++i) {
    const InputTensor& input = request.inputs[i];
    for (size_t j = 0; j < i; ++j) {
      if (request.inputs[j].name == input.name) {
        return invalidArg("input '" + input.name + "' appears more than once in the request");
      }
    }
    const auto spec = std::find_if(inputs_.begin(), inputs_.end(),
                                   [&](const InputSpec& s) { return s.name == input.name; });
    if (spec == inputs_.end()) {
      std::string expected;
      for (const auto& s : inputs_) expected += (expected.empty() ? "" : ", ") + s.name;
      return invalidArg("unexpected input '" + input.name + "' for model '" + model +
                        "'; it expects [" + expected + "]");
    }
    ++matched;
    if (input.datatype != spec->datatype) {
      return invalidArg("input '" + input.name + "' has datatype " +
                        std::string(dataTypeWireName(input.datatype)) + " but model '" + model +
                        "' expects " + std::string(dataTypeWireName(spec->datatype)));
    }
    std::span<const int64_t> item_shape = input.shape;
    if (max_batch_size_ > 0) {
      if (input.shape.empty()) {
        return invalidArg("input '" + input.name + "' has no batch dimension; model '" + model +
                          "' batches (max_batch_size " + std::to_string(max_batch_size_) +
                          "), so its shape is [batch] + " + shapeToString(spec->dims));
      }
      const int64_t batch = input.shape[0];
      if (batch < 1 || batch > max_batch_size_) {
        return invalidArg("input '" + input.name + "' has batch size " + std::to_string(batch) +
                          "; model '" + model + "' accepts 1 to " +
                          std::to_string(max_batch_size_));
      }
      if (batch_size >= 0 && batch != batch_size) {
        return invalidArg("input '" + input.name + "' has batch size " + std::to_string(batch) +
                          " but other inputs have " + std::to_string(batch_size));
      }
      batch_size = batch;
      item_shape = item_shape.subspan(1);
    }
    if (!shapeMatches(item_shape, spec->dims)) {
      return invalidArg("input '" + input.name + "' has shape " + shapeToString(input.shape) +
                        " but model '" + model + "' expects " +
                        (max_batch_size_ > 0 ? "[batch] + " : "") + shapeToString(spec->dims));
    }
    auto count = elementCount(input.shape);
    if (!count.isOk()) return count.status().withContext("input '" + input.name + "'");
    if (input.datatype == DataType::kBytes) {
      auto elements = countBytesElements(input.data);
      if (!elements.isOk()) return elements.status().withContext("input '" + input.name + "'");
      if (*elements != *count) {
        return invalidArg("input '" + input.name + "' holds " + std::to_string(*elements) +
                          " BYTES elements but its shape " + shapeToString(input.shape) +
                          " needs " + std::to_string(*count));
      }
    } else {
      const uint64_t expected = static_cast<uint64_t>(*count) * dataTypeByteSize(input.datatype);
      if (input.data.size() != expected) {
        return invalidArg("input '" + input.name + "' has " + std::to_string(input.data.size()) +
                          " bytes of data but shape " + shapeToString(input.shape) + " of " +
                          std::string(dataTypeWireName(input.datatype)) + " needs " +
                          std::to_string(expected));
      }
    }
  }
  if (matched < inputs_.size()) {
    for (const auto& spec : inputs_) {
      if (spec.optional) continue;
      const bool present =
          std::any_of(request.inputs.begin(), request.inputs.end(),
                      [&](const InputTensor& input) { return input.name == spec.name; });
      if (!present) {
        return invalidArg("missing input '" + spec.name + "' for model '" + model + "'");
      }
    }
  }
  for (const auto& wanted : request.requested_outputs) {
    const bool known = std::any_of(outputs_.begin(), outputs_.end(),
                                   [&](const ModelOutputSpec& o) { return o.name == wanted; });
    if (!known) {
      std::string names;
      for (const auto& o : outputs_) names += (names.empty() ? "" : ", ") + o.name;
      return invalidArg("unknown output '" + wanted + "' requested from model '" + model +
                        "'; it has [" + names + "]");
    }
  }
  return Status::ok();
}

void Model::enqueue(std::unique_ptr<InferenceRequest> request) {
  inflight_.fetch_add(1, std::memory_order_acq_rel);
  if (!accepting_.load(std::memory_order_acquire)) {
    finish(*request, unavailable("model '" + name() + "' version " + std::to_string(version_) +
                                 " is being unloaded"));
    return;
  }
  if (Status status = validate(*request); !status.isOk()) {
    finish(*request, status);
    return;
  }
  if (auto refused = queue_.push(std::move(request))) {
    finish(*refused, unavailable("model '" + name() + "' is being unloaded"));
  }
}

void Model::recordFailure(const InferenceRequest& request) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(stats_mutex_);
  add(stats_.fail, steadyNs(now) - steadyNs(request.arrival_time));
}

void Model::finish(InferenceRequest& request, const Status& status) {
  if (!status.isOk()) recordFailure(request);
  request.sink->complete(status, version_);
  if (inflight_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    std::lock_guard lock(drain_mutex_);
    drained_.notify_all();
  }
}

void Model::execute(Instance& instance, std::unique_ptr<InferenceRequest> request) {
  const uint64_t start_ns = monotonicNowNs();
  const uint64_t arrival_ns = steadyNs(request->arrival_time);

  // Build the batch: here one request, its inputs viewed in place (reshaped where configured).
  BlBatch& batch = instance.batch;
  batch.clear();
  instance.reshaped.clear();
  instance.reshaped.reserve(request->inputs.size());  // no reallocation: spans stay valid
  for (const auto& spec : inputs_) {
    for (const InputTensor& input : request->inputs) {
      if (input.name != spec.name) continue;
      std::span<const int64_t> shape = input.shape;
      if (spec.reshape) {
        Shape& s = instance.reshaped.emplace_back();
        if (max_batch_size_ > 0) s.push_back(input.shape[0]);
        s.insert(s.end(), spec.reshape->begin(), spec.reshape->end());
        shape = s;
      }
      batch.inputs.push_back(
          {input.name.c_str(), static_cast<BlDataType>(input.datatype), shape, input.data});
    }
  }
  batch.requests.push_back(request.get());
  SingleRequestOutputs outputs(*request, outputs_);
  batch.outputs = &outputs;

  const int64_t batch_size =
      max_batch_size_ > 0 && !request->inputs.empty() ? request->inputs.front().shape[0] : 1;
  spdlog::debug("model '{}' v{} on {}: executing 1 request, batch size {}", name(), version_,
                instance.handle.name, batch_size);

  Status status = takeBackendError(backend_->api().execute(instance.state, &batch));
  const uint64_t end_ns = monotonicNowNs();
  if (status.isOk() && !batch.output_error.isOk()) status = batch.output_error;
  if (status.isOk() && outputs.allocated() < outputs.expected()) {
    status = internalError("model '" + name() + "' did not produce every requested output (" +
                           std::to_string(outputs.allocated()) + " of " +
                           std::to_string(outputs.expected()) + ")");
  }
  if (!status.isOk()) {
    finish(*request, status.withContext("model '" + name() + "' execution failed"));
    return;
  }
  uint64_t input_ns = 0, infer_ns = end_ns - start_ns, output_ns = 0;
  if (batch.times_reported && batch.input_end_ns >= start_ns &&
      batch.infer_end_ns >= batch.input_end_ns && end_ns >= batch.infer_end_ns) {
    input_ns = batch.input_end_ns - start_ns;
    infer_ns = batch.infer_end_ns - batch.input_end_ns;
    output_ns = end_ns - batch.infer_end_ns;
  }
  {
    std::lock_guard lock(stats_mutex_);
    stats_.last_inference_ms = wallClockMs();
    stats_.inference_count += static_cast<uint64_t>(batch_size);
    stats_.execution_count += 1;
    add(stats_.success, end_ns - arrival_ns);
    add(stats_.queue, start_ns - arrival_ns);
    add(stats_.compute_input, input_ns);
    add(stats_.compute_infer, infer_ns);
    add(stats_.compute_output, output_ns);
    BatchStat& b = stats_.batch_stats[static_cast<uint64_t>(batch_size)];
    b.batch_size = static_cast<uint64_t>(batch_size);
    add(b.compute_input, input_ns);
    add(b.compute_infer, infer_ns);
    add(b.compute_output, output_ns);
  }
  finish(*request, Status::ok());
}

ModelStatisticsSnapshot Model::statistics() const {
  ModelStatisticsSnapshot snapshot;
  snapshot.name = name();
  snapshot.version = std::to_string(version_);
  std::lock_guard lock(stats_mutex_);
  snapshot.last_inference_ms = stats_.last_inference_ms;
  snapshot.inference_count = stats_.inference_count;
  snapshot.execution_count = stats_.execution_count;
  snapshot.success = stats_.success;
  snapshot.fail = stats_.fail;
  snapshot.queue = stats_.queue;
  snapshot.compute_input = stats_.compute_input;
  snapshot.compute_infer = stats_.compute_infer;
  snapshot.compute_output = stats_.compute_output;
  for (const auto& [size, stat] : stats_.batch_stats) snapshot.batch_stats.push_back(stat);
  return snapshot;
}

void Model::shutdown(std::chrono::steady_clock::time_point deadline) {
  std::call_once(shutdown_once_, [&] {
    accepting_.store(false, std::memory_order_release);
    {
      std::unique_lock lock(drain_mutex_);
      drained_.wait_until(lock, deadline, [this] { return inflight_.load() == 0; });
    }
    queue_.close();
    for (auto& request : queue_.drain()) {
      finish(*request, unavailable("model '" + name() + "' was unloaded before the request ran"));
    }
    for (auto& instance : instances_) {
      if (instance->thread.joinable()) instance->thread.join();
    }
    if (model_state_ != nullptr) backend_->api().modelDestroy(model_state_);
    model_state_ = nullptr;
    spdlog::info("model '{}' version {} unloaded", name(), version_);
  });
}

}  // namespace beamline
