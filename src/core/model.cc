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

namespace {

// Collects the outputs of a merged batch in the instance's buffers; they are split per request
// after execution.
class GatheredOutputs final : public BatchOutputTarget {
 public:
  GatheredOutputs(const RequestBatch& requests, const std::vector<ModelOutputSpec>& specs,
                  std::vector<std::vector<std::byte>>& buffers, std::vector<Shape>& shapes,
                  std::vector<bool>& allocated)
      : requests_(requests), specs_(specs), buffers_(buffers), shapes_(shapes),
        allocated_(allocated) {}

  bool isRequested(std::string_view name) const override {
    if (index(name) < 0) return false;
    for (const auto& request : requests_) {
      if (request->requested_outputs.empty()) return true;
      for (const auto& wanted : request->requested_outputs) {
        if (wanted == name) return true;
      }
    }
    return false;
  }

  Result<std::byte*> allocate(std::string_view name, DataType datatype,
                              std::span<const int64_t> shape, uint64_t byte_size) override {
    const int k = index(name);
    if (k < 0 || specs_[k].datatype != datatype) {
      return internalError("the backend produced output '" + std::string(name) + "' as " +
                           std::string(dataTypeWireName(datatype)) +
                           ", which the model config does not declare");
    }
    if (datatype != DataType::kBytes) {
      auto expected = fixedByteSize(datatype, shape);
      if (!expected.isOk() || *expected != byte_size) {
        return internalError("the backend asked for " + std::to_string(byte_size) +
                             " bytes for output '" + std::string(name) + "' of shape " +
                             shapeToString(shape));
      }
    }
    buffers_[k].resize(byte_size);
    shapes_[k].assign(shape.begin(), shape.end());
    allocated_[k] = true;
    return buffers_[k].data();
  }

 private:
  int index(std::string_view name) const {
    for (size_t k = 0; k < specs_.size(); ++k) {
      if (specs_[k].name == name) return static_cast<int>(k);
    }
    return -1;
  }

  const RequestBatch& requests_;
  const std::vector<ModelOutputSpec>& specs_;
  std::vector<std::vector<std::byte>>& buffers_;
  std::vector<Shape>& shapes_;
  std::vector<bool>& allocated_;
};

const InputTensor* findInput(const InferenceRequest& request, std::string_view name) {
  for (const auto& input : request.inputs) {
    if (input.name == name) return &input;
  }
  return nullptr;
}

bool wantsOutput(const InferenceRequest& request, std::string_view name) {
  if (request.requested_outputs.empty()) return true;
  return std::find(request.requested_outputs.begin(), request.requested_outputs.end(), name) !=
         request.requested_outputs.end();
}

// Byte length of the first `count` BYTES elements of `data`; error when the framing is cut short.
Result<size_t> bytesPrefixLength(std::span<const std::byte> data, int64_t count) {
  size_t offset = 0;
  for (int64_t i = 0; i < count; ++i) {
    if (data.size() - offset < 4) return internalError("BYTES output is shorter than its shape");
    uint32_t length = 0;
    for (int b = 3; b >= 0; --b) {
      length = (length << 8) | static_cast<uint32_t>(data[offset + static_cast<size_t>(b)]);
    }
    offset += 4;
    if (data.size() - offset < length) return internalError("BYTES output element is cut short");
    offset += length;
  }
  return offset;
}

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
    spec.ragged = input.allow_ragged_batch() && max_batch_size_ > 0;
    needs_gather_ = needs_gather_ || spec.ragged;
    inputs_.push_back(std::move(spec));
  }
  for (const auto& output : config_->output()) {
    ModelOutputSpec spec{output.name(), static_cast<DataType>(output.data_type()), ""};
    for (const auto& batch_output : config_->batch_output()) {
      for (const auto& target : batch_output.target_name()) {
        if (target == output.name() && batch_output.source_input_size() > 0) {
          spec.scatter_source = batch_output.source_input(0);
          needs_gather_ = true;
        }
      }
    }
    outputs_.push_back(std::move(spec));
  }
  for (const auto& batch_input : config_->batch_input()) {
    for (const auto& target : batch_input.target_name()) {
      batch_inputs_.push_back({target, batch_input.kind(),
                               static_cast<DataType>(batch_input.data_type()),
                               batch_input.source_input_size() > 0 ? batch_input.source_input(0)
                                                                   : std::string()});
      needs_gather_ = true;
    }
  }
  if (config_->has_dynamic_batching() && max_batch_size_ > 0) {
    DynamicBatchingPolicy policy = DynamicBatchingPolicy::fromConfig(*config_);
    preserve_ordering_ = policy.preserve_ordering;
    scheduler_ = std::make_unique<DynamicBatcher>(
        std::move(policy),
        [this](const InferenceRequest& a, const InferenceRequest& b) { return compatible(a, b); },
        [this](const InferenceRequest& r) { return batchSizeOf(r); },
        [this](std::unique_ptr<InferenceRequest> r, Status s) {
          finish(std::move(r), s, FailureReason::kRejected);
        });
  } else {
    scheduler_ = std::make_unique<FifoScheduler>(config_->name());
  }
}

Result<std::shared_ptr<Model>> Model::create(std::shared_ptr<const inference::ModelConfig> config,
                                             int64_t version,
                                             const std::filesystem::path& version_dir,
                                             std::shared_ptr<Backend> backend,
                                             Ensemble::Submit submit) {
  std::shared_ptr<Model> model(new Model(std::move(config), version, std::move(backend)));
  if (model->config_->platform() == "ensemble") {
    if (!submit) return internalError("ensemble '" + model->name() + "' created without a server");
    BL_ASSIGN_OR_RETURN(model->ensemble_, Ensemble::create(*model->config_, std::move(submit)));
    spdlog::info("ensemble '{}' version {} ready: {} steps", model->name(), version,
                 model->ensemble_->steps().size());
    return model;
  }
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
    instance->thread =
        std::thread([raw, instance, promise] { raw->instanceLoop(*instance, *promise); });
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
  spdlog::info("model '{}' version {} ready: {} instance(s), backend '{}', {}", model->name(),
               version, model->instances_.size(), model->backend_->name(),
               model->config_->has_dynamic_batching() && model->max_batch_size_ > 0
                   ? "dynamic batching"
                   : "no dynamic batching");
  return model;
}

Model::~Model() { shutdown(std::chrono::steady_clock::now()); }

void Model::instanceLoop(Instance& instance, std::promise<Status>& created) {
  const BlBackendApi& api = backend_->api();
  Status status =
      takeBackendError(api.instanceCreate(model_state_, &instance.handle, &instance.state));
  const bool ok = status.isOk();
  created.set_value(ok ? Status::ok()
                       : status.withContext("creating instance " + instance.handle.name));
  if (!ok) {
    instance.state = nullptr;
    return;
  }
  while (scheduler_->next(instance.requests)) execute(instance);
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

const Model::InputSpec* Model::inputSpec(std::string_view name) const {
  for (const auto& spec : inputs_) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

int64_t Model::batchSizeOf(const InferenceRequest& request) const {
  if (max_batch_size_ <= 0 || request.inputs.empty() || request.inputs.front().shape.empty()) {
    return 1;
  }
  return request.inputs.front().shape[0];
}

bool Model::compatible(const InferenceRequest& first, const InferenceRequest& candidate) const {
  if (first.inputs.size() != candidate.inputs.size()) return false;
  for (const auto& a : first.inputs) {
    const InputTensor* b = findInput(candidate, a.name);
    if (b == nullptr || b->shape.size() != a.shape.size()) return false;
    const InputSpec* spec = inputSpec(a.name);
    // Past the batch dimension shapes must agree; ragged inputs may differ in their first item
    // dimension too (they are concatenated along it).
    const size_t from = spec != nullptr && spec->ragged ? 2 : 1;
    for (size_t d = from; d < a.shape.size(); ++d) {
      if (a.shape[d] != b->shape[d]) return false;
    }
  }
  return true;
}

void Model::enqueue(std::unique_ptr<InferenceRequest> request) {
  inflight_.fetch_add(1, std::memory_order_acq_rel);
  if (!accepting_.load(std::memory_order_acquire)) {
    finish(std::move(request), unavailable("model '" + name() + "' version " +
                                           std::to_string(version_) + " is being unloaded"));
    return;
  }
  if (Status status = validate(*request); !status.isOk()) {
    finish(std::move(request), status);
    return;
  }
  if (ensemble_) {
    ensemble_->run(std::move(request),
                   [self = shared_from_this()](std::unique_ptr<InferenceRequest> done,
                                               const Status& status) {
                     self->ensembleDone(std::move(done), status);
                   });
    return;
  }
  if (Status status = scheduler_->enqueue(request); !status.isOk()) {
    finish(std::move(request), status,
           status.code() == StatusCode::kUnavailable ? FailureReason::kRejected
                                                     : FailureReason::kOther);
  }
}

void Model::ensembleDone(std::unique_ptr<InferenceRequest> request, const Status& status) {
  if (status.isOk()) {
    const uint64_t end_ns = monotonicNowNs();
    const uint64_t arrival_ns = steadyNs(request->arrival_time);
    std::lock_guard lock(stats_mutex_);
    stats_.last_inference_ms = wallClockMs();
    stats_.inference_count += static_cast<uint64_t>(batchSizeOf(*request));
    stats_.execution_count += 1;
    add(stats_.success, end_ns - arrival_ns);
    add(stats_.queue, 0);
    add(stats_.compute_infer, end_ns - arrival_ns);
    stats_.request_latency.observe(static_cast<double>(end_ns - arrival_ns) / 1000.0);
  }
  finish(std::move(request), status, FailureReason::kBackend);
}

void Model::completeNow(InferenceRequest& request, const Status& status) {
  request.sink->complete(status, version_);
}

void Model::finish(std::unique_ptr<InferenceRequest> request, const Status& status,
                   FailureReason reason) {
  if (!status.isOk()) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(stats_mutex_);
    add(stats_.fail, steadyNs(now) - steadyNs(request->arrival_time));
    ++stats_.failures_by_reason[static_cast<size_t>(reason)];
  }
  size_t completed = 1;
  if (preserve_ordering_ && request->sequence != InferenceRequest::kNotQueued) {
    // Hold responses until every earlier request of this model has been answered.
    std::lock_guard lock(order_mutex_);
    const uint64_t sequence = request->sequence;
    held_.emplace(sequence, Completion{std::move(request), status});
    completed = 0;
    for (auto it = held_.find(next_to_complete_); it != held_.end();
         it = held_.find(next_to_complete_)) {
      completeNow(*it->second.request, it->second.status);
      held_.erase(it);
      ++next_to_complete_;
      ++completed;
    }
  } else {
    completeNow(*request, status);
  }
  if (completed > 0 && inflight_.fetch_sub(completed, std::memory_order_acq_rel) == completed) {
    std::lock_guard lock(drain_mutex_);
    drained_.notify_all();
  }
}

Status Model::gatherInputs(Instance& instance, int64_t total_batch) {
  const RequestBatch& requests = instance.requests;
  const InferenceRequest& first = *requests.front();
  BlBatch& batch = instance.batch;
  const size_t slots = inputs_.size() + batch_inputs_.size();
  if (instance.shapes.size() < slots) instance.shapes.resize(slots);
  if (instance.gathered.size() < slots) instance.gathered.resize(slots);
  size_t slot = 0;
  for (const InputSpec& spec : inputs_) {
    const InputTensor* head = findInput(first, spec.name);
    if (head == nullptr) continue;
    Shape& shape = instance.shapes[slot];
    shape.clear();
    if (spec.ragged) {
      // Concatenated along the first item dimension, the batch dimension folded into it.
      int64_t rows = 0;
      for (const auto& request : requests) {
        const InputTensor* in = findInput(*request, spec.name);
        rows += in->shape[0] * (in->shape.size() > 1 ? in->shape[1] : 1);
      }
      shape.push_back(rows);
      if (head->shape.size() > 2) shape.insert(shape.end(), head->shape.begin() + 2, head->shape.end());
    } else if (spec.reshape) {
      if (max_batch_size_ > 0) shape.push_back(total_batch);
      shape.insert(shape.end(), spec.reshape->begin(), spec.reshape->end());
    } else {
      shape = head->shape;
      if (max_batch_size_ > 0) shape[0] = total_batch;
    }
    std::span<const std::byte> data = head->data;
    if (requests.size() > 1) {
      std::vector<std::byte>& buffer = instance.gathered[slot];
      size_t bytes = 0;
      for (const auto& request : requests) bytes += findInput(*request, spec.name)->data.size();
      buffer.resize(bytes);
      size_t offset = 0;
      for (const auto& request : requests) {
        const auto in = findInput(*request, spec.name)->data;
        if (!in.empty()) std::memcpy(buffer.data() + offset, in.data(), in.size());
        offset += in.size();
      }
      data = buffer;
    }
    batch.inputs.push_back(
        {spec.name.c_str(), static_cast<BlDataType>(spec.datatype), shape, data});
    ++slot;
  }
  // batch_input companions of ragged inputs.
  for (const BatchInputSpec& spec : batch_inputs_) {
    std::vector<int64_t> counts;
    counts.reserve(requests.size());
    for (const auto& request : requests) {
      const InputTensor* source = findInput(*request, spec.source);
      if (source == nullptr) {
        return invalidArg("batch_input '" + spec.target + "' needs input '" + spec.source +
                          "', which the request does not have");
      }
      auto count = elementCount(source->shape);
      if (!count.isOk()) return count.status();
      counts.push_back(*count);
    }
    std::vector<int64_t> values;
    Shape& shape = instance.shapes[slot];
    switch (spec.kind) {
      case inference::BatchInput::BATCH_ELEMENT_COUNT:
        values = counts;
        shape = {static_cast<int64_t>(values.size())};
        break;
      case inference::BatchInput::BATCH_ACCUMULATED_ELEMENT_COUNT:
      case inference::BatchInput::BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO: {
        if (spec.kind == inference::BatchInput::BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO) {
          values.push_back(0);
        }
        int64_t sum = 0;
        for (int64_t c : counts) values.push_back(sum += c);
        shape = {static_cast<int64_t>(values.size())};
        break;
      }
      case inference::BatchInput::BATCH_MAX_ELEMENT_COUNT_AS_SHAPE: {
        const int64_t max_count = *std::max_element(counts.begin(), counts.end());
        values.assign(static_cast<size_t>(max_count), 0);
        shape = {max_count};
        break;
      }
      default:
        return unsupported("batch_input kind " + inference::BatchInput::Kind_Name(spec.kind) +
                           " is not supported");
    }
    std::vector<std::byte>& buffer = instance.gathered[slot];
    const size_t width = dataTypeByteSize(spec.datatype);
    buffer.resize(values.size() * width);
    for (size_t i = 0; i < values.size(); ++i) {
      std::byte* out = buffer.data() + i * width;
      switch (spec.datatype) {
        case DataType::kInt32: {
          const auto v = static_cast<int32_t>(values[i]);
          std::memcpy(out, &v, sizeof v);
          break;
        }
        case DataType::kInt64:
          std::memcpy(out, &values[i], sizeof values[i]);
          break;
        case DataType::kFp32: {
          const auto v = static_cast<float>(values[i]);
          std::memcpy(out, &v, sizeof v);
          break;
        }
        default:
          return unsupported("batch_input '" + spec.target + "' must be TYPE_INT32, TYPE_INT64 "
                             "or TYPE_FP32");
      }
    }
    batch.inputs.push_back(
        {spec.target.c_str(), static_cast<BlDataType>(spec.datatype), shape, buffer});
    ++slot;
  }
  return Status::ok();
}

Status Model::scatterOutputs(Instance& instance, int64_t total_batch,
                             std::vector<Status>& per_request) {
  const RequestBatch& requests = instance.requests;
  for (size_t k = 0; k < outputs_.size(); ++k) {
    if (!instance.output_allocated[k]) continue;
    const ModelOutputSpec& spec = outputs_[k];
    const Shape& batch_shape = instance.output_shapes[k];
    const std::span<const std::byte> all(instance.outputs[k]);
    const bool scatter = !spec.scatter_source.empty();
    int64_t item_elements = 1;  // elements per batch row, for plain outputs
    if (!scatter) {
      if (requests.size() > 1 || max_batch_size_ > 0) {
        if (batch_shape.empty() || batch_shape[0] != total_batch) {
          return internalError("model '" + name() + "' returned output '" + spec.name +
                               "' of shape " + shapeToString(batch_shape) +
                               ", whose first dimension should be the batch size " +
                               std::to_string(total_batch));
        }
        for (size_t d = 1; d < batch_shape.size(); ++d) item_elements *= batch_shape[d];
      }
    }
    size_t offset = 0;
    for (size_t i = 0; i < requests.size(); ++i) {
      InferenceRequest& request = *requests[i];
      Shape shape;
      int64_t elements = 0;
      if (scatter) {
        const InputTensor* source = findInput(request, spec.scatter_source);
        if (source == nullptr) return internalError("batch_output source input missing");
        shape = source->shape;
        elements = *elementCount(shape);
      } else if (requests.size() == 1 && max_batch_size_ <= 0) {
        shape = batch_shape;
        elements = *elementCount(shape);
      } else {
        const int64_t rows = batchSizeOf(request);
        shape = batch_shape;
        shape[0] = rows;
        elements = rows * item_elements;
      }
      size_t bytes = 0;
      if (spec.datatype == DataType::kBytes) {
        auto length = bytesPrefixLength(all.subspan(offset), elements);
        if (!length.isOk()) return length.status().withContext("output '" + spec.name + "'");
        bytes = *length;
      } else {
        bytes = static_cast<size_t>(elements) * dataTypeByteSize(spec.datatype);
        if (offset + bytes > all.size()) {
          return internalError("model '" + name() + "' returned too little data for output '" +
                               spec.name + "' to split it across the batch");
        }
      }
      if (wantsOutput(request, spec.name) && per_request[i].isOk()) {
        auto memory = request.sink->allocateOutput(spec.name, spec.datatype, shape, bytes);
        if (!memory.isOk()) {
          per_request[i] = memory.status();
        } else if (bytes > 0) {
          std::memcpy(*memory, all.data() + offset, bytes);
        }
      }
      offset += bytes;
    }
  }
  // Every requested output must have been produced.
  for (size_t i = 0; i < requests.size(); ++i) {
    for (size_t k = 0; k < outputs_.size(); ++k) {
      if (!instance.output_allocated[k] && wantsOutput(*requests[i], outputs_[k].name) &&
          per_request[i].isOk()) {
        per_request[i] = internalError("model '" + name() + "' did not produce output '" +
                                       outputs_[k].name + "'");
      }
    }
  }
  return Status::ok();
}

void Model::execute(Instance& instance) {
  RequestBatch& requests = instance.requests;
  const uint64_t start_ns = monotonicNowNs();
  int64_t total_batch = 0;
  for (const auto& request : requests) total_batch += batchSizeOf(*request);

  BlBatch& batch = instance.batch;
  batch.clear();
  for (const auto& request : requests) batch.requests.push_back(request.get());
  const bool direct = requests.size() == 1 && !needs_gather_;
  std::optional<SingleRequestOutputs> single;
  std::optional<GatheredOutputs> gathered;
  Status status;
  if (direct) {
    // One request: the backend reads the request's memory and writes straight into its sink.
    InferenceRequest& request = *requests.front();
    if (instance.shapes.size() < inputs_.size()) instance.shapes.resize(inputs_.size());
    size_t slot = 0;
    for (const auto& spec : inputs_) {
      const InputTensor* input = findInput(request, spec.name);
      if (input == nullptr) continue;
      std::span<const int64_t> shape = input->shape;
      if (spec.reshape) {
        Shape& s = instance.shapes[slot++];
        s.clear();
        if (max_batch_size_ > 0) s.push_back(input->shape[0]);
        s.insert(s.end(), spec.reshape->begin(), spec.reshape->end());
        shape = s;
      }
      batch.inputs.push_back(
          {spec.name.c_str(), static_cast<BlDataType>(input->datatype), shape, input->data});
    }
    single.emplace(request, outputs_);
    batch.outputs = &*single;
  } else {
    status = gatherInputs(instance, total_batch);
    instance.outputs.resize(outputs_.size());
    instance.output_shapes.resize(outputs_.size());
    instance.output_allocated.assign(outputs_.size(), false);
    gathered.emplace(requests, outputs_, instance.outputs, instance.output_shapes,
                     instance.output_allocated);
    batch.outputs = &*gathered;
  }
  spdlog::debug("model '{}' v{} on {}: executing {} request(s), batch size {}", name(), version_,
                instance.handle.name, requests.size(), total_batch);

  if (status.isOk()) status = takeBackendError(backend_->api().execute(instance.state, &batch));
  if (status.isOk() && !batch.output_error.isOk()) status = batch.output_error;
  const uint64_t infer_done_ns = monotonicNowNs();

  std::vector<Status> per_request(requests.size());
  if (status.isOk() && direct && single->allocated() < single->expected()) {
    status = internalError("model '" + name() + "' did not produce every requested output (" +
                           std::to_string(single->allocated()) + " of " +
                           std::to_string(single->expected()) + ")");
  }
  if (status.isOk() && !direct) status = scatterOutputs(instance, total_batch, per_request);
  const uint64_t end_ns = monotonicNowNs();
  if (!status.isOk()) {
    const Status failure = status.withContext("model '" + name() + "' execution failed");
    for (auto& request : requests) finish(std::move(request), failure, FailureReason::kBackend);
    requests.clear();
    return;
  }

  uint64_t input_ns = 0, infer_ns = infer_done_ns - start_ns, output_ns = end_ns - infer_done_ns;
  if (batch.times_reported && batch.input_end_ns >= start_ns &&
      batch.infer_end_ns >= batch.input_end_ns && infer_done_ns >= batch.infer_end_ns) {
    input_ns = batch.input_end_ns - start_ns;
    infer_ns = batch.infer_end_ns - batch.input_end_ns;
    output_ns = end_ns - batch.infer_end_ns;
  }
  {
    std::lock_guard lock(stats_mutex_);
    stats_.last_inference_ms = wallClockMs();
    stats_.inference_count += static_cast<uint64_t>(total_batch);
    stats_.execution_count += 1;
    for (size_t i = 0; i < requests.size(); ++i) {
      if (!per_request[i].isOk()) continue;
      const uint64_t arrival_ns = steadyNs(requests[i]->arrival_time);
      add(stats_.success, end_ns - arrival_ns);
      add(stats_.queue, start_ns - arrival_ns);
      add(stats_.compute_input, input_ns);
      add(stats_.compute_infer, infer_ns);
      add(stats_.compute_output, output_ns);
      stats_.request_latency.observe(static_cast<double>(end_ns - arrival_ns) / 1000.0);
      stats_.queue_latency.observe(static_cast<double>(start_ns - arrival_ns) / 1000.0);
      stats_.compute_latency.observe(static_cast<double>(end_ns - start_ns) / 1000.0);
    }
    BatchStat& b = stats_.batch_stats[static_cast<uint64_t>(total_batch)];
    b.batch_size = static_cast<uint64_t>(total_batch);
    add(b.compute_input, input_ns);
    add(b.compute_infer, infer_ns);
    add(b.compute_output, output_ns);
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    finish(std::move(requests[i]), per_request[i],
           per_request[i].isOk() ? FailureReason::kOther : FailureReason::kBackend);
  }
  requests.clear();
}

ModelStatisticsSnapshot Model::statistics() const {
  ModelStatisticsSnapshot snapshot;
  snapshot.name = name();
  snapshot.version = std::to_string(version_);
  snapshot.pending_request_count = scheduler_->size();
  snapshot.load_duration_secs = load_duration_secs_.load();
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
  snapshot.failures_by_reason = stats_.failures_by_reason;
  snapshot.request_latency = stats_.request_latency;
  snapshot.queue_latency = stats_.queue_latency;
  snapshot.compute_latency = stats_.compute_latency;
  return snapshot;
}

void Model::shutdown(std::chrono::steady_clock::time_point deadline) {
  std::call_once(shutdown_once_, [&] {
    accepting_.store(false, std::memory_order_release);
    {
      std::unique_lock lock(drain_mutex_);
      drained_.wait_until(lock, deadline, [this] { return inflight_.load() == 0; });
    }
    scheduler_->close();
    for (auto& request : scheduler_->drain()) {
      finish(std::move(request),
             unavailable("model '" + name() + "' was unloaded before the request ran"));
    }
    for (auto& instance : instances_) {
      if (instance->thread.joinable()) instance->thread.join();
    }
    if (model_state_ != nullptr && backend_) backend_->api().modelDestroy(model_state_);
    model_state_ = nullptr;
    spdlog::info("model '{}' version {} unloaded", name(), version_);
  });
}

}  // namespace beamline
