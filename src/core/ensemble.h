// Ensembles (`platform: "ensemble"`): a DAG of steps, each an inference request to another model,
// wired by `input_map` / `output_map` through named ensemble tensors.
//
// One Run per request. A step is submitted as soon as every ensemble tensor it reads exists, so
// independent steps execute in parallel (each on its own model's instances). Step outputs are
// written once, by the step model's backend, into buffers the run owns; later steps read them as
// views — no copy between steps. Only the ensemble's own outputs are copied, once, into the
// client's response. A failing step fails the request with the step's error, once; steps still
// running are let finish and ignored.
//
// Threads: run() is called on the thread that enqueued the request; steps complete on their models'
// instance threads, which also submit the steps that became ready. A Run's state is guarded by its
// mutex. Ownership: the Ensemble is immutable and shared (shared_ptr) by its runs; a Run owns the
// request until it calls `done`.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "beamline/core/inference.h"
#include "beamline/core/status.h"

namespace inference {
class ModelConfig;
}  // namespace inference

namespace beamline {

class Ensemble : public std::enable_shared_from_this<Ensemble> {
 public:
  // Hands a step request to the server (Server::infer): it always completes its sink once.
  using Submit = std::function<void(std::unique_ptr<InferenceRequest>)>;
  // Called once per run with the original request and the outcome.
  using Done = std::function<void(std::unique_ptr<InferenceRequest>, const Status&)>;

  struct Step {
    std::string model;
    int64_t version = -1;
    std::vector<std::pair<std::string, std::string>> inputs;   // step input -> ensemble tensor
    std::vector<std::pair<std::string, std::string>> outputs;  // step output -> ensemble tensor
  };

  // Checks the DAG: every step input is an ensemble input or an earlier step's output, every
  // ensemble output is produced, no tensor is produced twice, no step is unreachable.
  static Result<std::shared_ptr<const Ensemble>> create(const inference::ModelConfig& config,
                                                        Submit submit);

  void run(std::unique_ptr<InferenceRequest> request, Done done) const;

  const std::string& name() const { return name_; }
  const std::vector<Step>& steps() const { return steps_; }
  const std::vector<std::string>& outputNames() const { return output_names_; }
  void submitStep(std::unique_ptr<InferenceRequest> request) const { submit_(std::move(request)); }

 private:
  Ensemble() = default;
  std::string name_;
  std::vector<Step> steps_;
  std::vector<std::string> output_names_;
  Submit submit_;
};

}  // namespace beamline
