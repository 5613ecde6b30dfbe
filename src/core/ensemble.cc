#include "core/ensemble.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <set>

#include "model_config.pb.h"

namespace beamline {
namespace {

// One ensemble tensor: a view of the client's input, or a buffer a step wrote.
struct Tensor {
  DataType datatype = DataType::kInvalid;
  Shape shape;
  std::vector<std::byte> owned;
  std::span<const std::byte> data;
};

struct Run : std::enable_shared_from_this<Run> {
  std::shared_ptr<const Ensemble> ensemble;
  std::unique_ptr<InferenceRequest> request;  // moved out by finish()
  std::string id;                             // of the request, for the step requests
  Ensemble::Done done;
  std::mutex mutex;  // guards everything below
  std::map<std::string, std::shared_ptr<const Tensor>, std::less<>> tensors;
  std::vector<bool> started;
  size_t remaining = 0;
  bool over = false;

  // Steps whose inputs all exist and that have not started; marks them started.
  std::vector<size_t> takeReadyLocked() {
    std::vector<size_t> ready;
    const auto& steps = ensemble->steps();
    for (size_t i = 0; i < steps.size(); ++i) {
      if (started[i]) continue;
      bool all = true;
      for (const auto& [input, tensor] : steps[i].inputs) all = all && tensors.count(tensor) > 0;
      if (all) {
        started[i] = true;
        ready.push_back(i);
      }
    }
    return ready;
  }

  void launch(size_t step);
  void stepDone(size_t step, const Status& status,
                std::vector<std::pair<std::string, std::shared_ptr<Tensor>>> produced);
  void finish(const Status& status);
};

// Collects one step's outputs into buffers the run owns.
class StepSink final : public ResponseSink {
 public:
  StepSink(std::shared_ptr<Run> run, size_t step) : run_(std::move(run)), step_(step) {}

  Result<std::byte*> allocateOutput(std::string_view name, DataType datatype,
                                    std::span<const int64_t> shape, uint64_t byte_size) override {
    auto tensor = std::make_shared<Tensor>();
    tensor->datatype = datatype;
    tensor->shape.assign(shape.begin(), shape.end());
    tensor->owned.resize(byte_size);
    tensor->data = tensor->owned;
    produced_.emplace_back(std::string(name), tensor);
    return tensor->owned.data();
  }

  void complete(const Status& status, int64_t /*model_version*/) override {
    std::shared_ptr<Run> run = std::move(run_);
    auto produced = std::move(produced_);
    const size_t step = step_;
    delete this;  // the step request that pointed here is done with it
    run->stepDone(step, status, std::move(produced));
  }

 private:
  std::shared_ptr<Run> run_;
  size_t step_;
  std::vector<std::pair<std::string, std::shared_ptr<Tensor>>> produced_;
};

void Run::launch(size_t step) {
  const Ensemble::Step& spec = ensemble->steps()[step];
  auto step_request = std::make_unique<InferenceRequest>();
  step_request->model_name = spec.model;
  step_request->model_version = spec.version;
  step_request->id = id;
  {
    std::lock_guard lock(mutex);
    for (const auto& [input, tensor_name] : spec.inputs) {
      const Tensor& tensor = *tensors.find(tensor_name)->second;
      InputTensor in;
      in.name = input;
      in.datatype = tensor.datatype;
      in.shape = tensor.shape;
      in.data = tensor.data;  // a view: the tensor lives in `tensors` until the run ends
      step_request->inputs.push_back(std::move(in));
    }
  }
  for (const auto& [output, tensor_name] : spec.outputs) {
    step_request->requested_outputs.push_back(output);
  }
  step_request->sink = new StepSink(shared_from_this(), step);  // deletes itself in complete()
  ensemble->submitStep(std::move(step_request));
}

void Run::stepDone(size_t step, const Status& status,
                   std::vector<std::pair<std::string, std::shared_ptr<Tensor>>> produced) {
  std::vector<size_t> ready;
  bool all_done = false;
  {
    std::lock_guard lock(mutex);
    if (over) return;
    const Ensemble::Step& spec = ensemble->steps()[step];
    if (!status.isOk()) {
      over = true;
    } else {
      for (auto& [output, tensor] : produced) {
        for (const auto& [step_output, tensor_name] : spec.outputs) {
          if (step_output == output) tensors[tensor_name] = tensor;
        }
      }
      --remaining;
      ready = takeReadyLocked();
      all_done = remaining == 0;
      if (all_done) over = true;
    }
  }
  if (!status.isOk()) {
    const Ensemble::Step& spec = ensemble->steps()[step];
    finish(Status(status.code(), "ensemble '" + ensemble->name() + "' step " +
                                     std::to_string(step) + " (model '" + spec.model +
                                     "') failed: " + status.message()));
    return;
  }
  if (all_done) {
    finish(Status::ok());
    return;
  }
  for (size_t next : ready) launch(next);
}

void Run::finish(const Status& status) {
  Status outcome = status;
  if (outcome.isOk()) {
    // The ensemble's own outputs: one copy each into the client's response.
    InferenceRequest& req = *request;
    for (const auto& name : ensemble->outputNames()) {
      if (!req.requested_outputs.empty() &&
          std::find(req.requested_outputs.begin(), req.requested_outputs.end(), name) ==
              req.requested_outputs.end()) {
        continue;
      }
      auto it = tensors.find(name);
      if (it == tensors.end()) {
        outcome = internalError("ensemble '" + ensemble->name() + "' did not produce output '" +
                                name + "'");
        break;
      }
      const Tensor& tensor = *it->second;
      auto memory = req.sink->allocateOutput(name, tensor.datatype, tensor.shape, tensor.data.size());
      if (!memory.isOk()) {
        outcome = memory.status();
        break;
      }
      if (!tensor.data.empty()) std::memcpy(*memory, tensor.data.data(), tensor.data.size());
    }
  }
  done(std::move(request), outcome);
}

}  // namespace

Result<std::shared_ptr<const Ensemble>> Ensemble::create(const inference::ModelConfig& config,
                                                         Submit submit) {
  std::shared_ptr<Ensemble> ensemble(new Ensemble());
  ensemble->name_ = config.name();
  ensemble->submit_ = std::move(submit);
  std::set<std::string> available;
  for (const auto& input : config.input()) available.insert(input.name());
  std::set<std::string> produced;
  for (int i = 0; i < config.ensemble_scheduling().step_size(); ++i) {
    const auto& proto = config.ensemble_scheduling().step(i);
    Step step;
    step.model = proto.model_name();
    step.version = proto.model_version();
    for (const auto& [input, tensor] : proto.input_map()) step.inputs.emplace_back(input, tensor);
    for (const auto& [output, tensor] : proto.output_map()) {
      if (!produced.insert(tensor).second || available.count(tensor) > 0) {
        return invalidArg("ensemble '" + config.name() + "': tensor '" + tensor +
                          "' is produced more than once (step " + std::to_string(i) + ")");
      }
      step.outputs.emplace_back(output, tensor);
    }
    if (step.outputs.empty()) {
      return invalidArg("ensemble '" + config.name() + "': step " + std::to_string(i) +
                        " (model '" + step.model + "') has no output_map");
    }
    ensemble->steps_.push_back(std::move(step));
  }
  // Walk the DAG: every step must become runnable.
  std::vector<bool> done(ensemble->steps_.size(), false);
  for (bool progress = true; progress;) {
    progress = false;
    for (size_t i = 0; i < ensemble->steps_.size(); ++i) {
      if (done[i]) continue;
      bool ready = true;
      for (const auto& [input, tensor] : ensemble->steps_[i].inputs) {
        ready = ready && available.count(tensor) > 0;
      }
      if (!ready) continue;
      done[i] = progress = true;
      for (const auto& [output, tensor] : ensemble->steps_[i].outputs) available.insert(tensor);
    }
  }
  for (size_t i = 0; i < done.size(); ++i) {
    if (done[i]) continue;
    std::string missing;
    for (const auto& [input, tensor] : ensemble->steps_[i].inputs) {
      if (available.count(tensor) == 0) missing += (missing.empty() ? "'" : ", '") + tensor + "'";
    }
    return invalidArg("ensemble '" + config.name() + "': step " + std::to_string(i) +
                      " (model '" + ensemble->steps_[i].model + "') reads " + missing +
                      ", which neither an ensemble input nor an earlier step produces");
  }
  for (const auto& output : config.output()) {
    if (available.count(output.name()) == 0) {
      return invalidArg("ensemble '" + config.name() + "': output '" + output.name() +
                        "' is not produced by any step");
    }
    ensemble->output_names_.push_back(output.name());
  }
  return std::shared_ptr<const Ensemble>(std::move(ensemble));
}

void Ensemble::run(std::unique_ptr<InferenceRequest> request, Done done) const {
  auto run = std::make_shared<Run>();
  run->ensemble = shared_from_this();
  run->done = std::move(done);
  run->started.assign(steps_.size(), false);
  run->remaining = steps_.size();
  for (const auto& input : request->inputs) {
    auto tensor = std::make_shared<Tensor>();
    tensor->datatype = input.datatype;
    tensor->shape = input.shape;
    tensor->data = input.data;  // a view of the client's request
    run->tensors[input.name] = std::move(tensor);
  }
  run->id = request->id;
  run->request = std::move(request);
  std::vector<size_t> ready;
  {
    std::lock_guard lock(run->mutex);
    ready = run->takeReadyLocked();
  }
  for (size_t step : ready) run->launch(step);
}

}  // namespace beamline
