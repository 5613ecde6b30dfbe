// The `identity` backend: the smallest complete beamline backend.
//
// Input i of the model config (then the batch_input companions) is copied to output i, with the
// input's shape. modelCreate checks
// that the config has as many outputs as inputs and that the datatypes agree position by position.
// The optional config parameter `execute_delay_ms` makes every execute() sleep that long first,
// and the request parameter `delay_ms` (int64) adds to it for that request's execution; the tests
// use them to hold an instance busy (concurrency, queueing, ordering, graceful drain).
//
// Threads: modelCreate/modelDestroy on the repository's load thread; instanceCreate, execute and
// instanceDestroy on the instance's execution thread. The model state is immutable after
// modelCreate, so instances share it without locking.

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "beamline/backend/backend_api.h"
#include "model_config.pb.h"

namespace beamline::backend::identity {
namespace {

const BlHostApi* host = nullptr;  // set once by beamline_backend_init, valid until dlclose

BlError* makeError(BlStatusCode code, const std::string& message) {
  return host->errorNew(code, message.c_str());
}

// One (input, output) pair of the config, matched by position.
struct TensorPair {
  std::string input_name_;
  std::string output_name_;
};

// Immutable after modelCreate; shared by all instances of the model version.
struct ModelState {
  std::vector<TensorPair> pairs_;
  std::chrono::milliseconds execute_delay_{0};
};

BlError* modelCreate(BlModel* model, void** model_state) {
  try {
    const void* bytes = nullptr;
    uint64_t byte_size = 0;
    host->modelConfig(model, &bytes, &byte_size);
    inference::ModelConfig config;
    if (!config.ParseFromArray(bytes, static_cast<int>(byte_size))) {
      return makeError(BL_STATUS_INVALID_ARG, "identity backend: cannot parse the model config");
    }
    // The tensors the backend receives: the config's inputs, then any batch_input companions
    // (which the server adds for ragged batching), paired by position with the outputs.
    std::vector<std::pair<std::string, inference::DataType>> inputs;
    for (const auto& input : config.input()) inputs.emplace_back(input.name(), input.data_type());
    for (const auto& batch_input : config.batch_input()) {
      for (const auto& target : batch_input.target_name()) {
        inputs.emplace_back(target, batch_input.data_type());
      }
    }
    if (static_cast<int>(inputs.size()) != config.output_size()) {
      return makeError(BL_STATUS_INVALID_ARG,
                       "identity backend: the config has " + std::to_string(inputs.size()) +
                           " inputs (batch_input companions included) but " +
                           std::to_string(config.output_size()) +
                           " outputs; they must pair up by position");
    }
    auto state = std::make_unique<ModelState>();
    for (size_t i = 0; i < inputs.size(); ++i) {
      const auto& [input_name, input_type] = inputs[i];
      const auto& output = config.output(static_cast<int>(i));
      if (input_type != output.data_type()) {
        return makeError(BL_STATUS_INVALID_ARG, "identity backend: input '" + input_name +
                                                    "' is " + inference::DataType_Name(input_type) +
                                                    " but output '" + output.name() + "' is " +
                                                    inference::DataType_Name(output.data_type()));
      }
      state->pairs_.push_back({input_name, output.name()});
    }
    const auto delay = config.parameters().find("execute_delay_ms");
    if (delay != config.parameters().end()) {
      const std::string& text = delay->second.string_value();
      int64_t milliseconds = 0;
      const auto [end, error] =
          std::from_chars(text.data(), text.data() + text.size(), milliseconds);
      if (error != std::errc() || end != text.data() + text.size() || milliseconds < 0) {
        return makeError(BL_STATUS_INVALID_ARG,
                         "identity backend: parameter execute_delay_ms must be a non-negative "
                         "integer, got '" +
                             text + "'");
      }
      state->execute_delay_ = std::chrono::milliseconds(milliseconds);
    }
    *model_state = state.release();
    return nullptr;
  } catch (const std::exception& e) {
    return makeError(BL_STATUS_INTERNAL, std::string("identity backend: ") + e.what());
  } catch (...) {
    return makeError(BL_STATUS_INTERNAL, "identity backend: unknown error in modelCreate");
  }
}

void modelDestroy(void* model_state) { delete static_cast<ModelState*>(model_state); }

// The instance needs nothing of its own: its state is the shared model state.
BlError* instanceCreate(void* model_state, BlInstance* /*instance*/, void** instance_state) {
  *instance_state = model_state;
  return nullptr;
}

void instanceDestroy(void* /*instance_state*/) {}

BlError* execute(void* instance_state, BlBatch* batch) {
  try {
    const auto& state = *static_cast<const ModelState*>(instance_state);
    const uint64_t compute_start = host->nowNs();  // the delay stands in for compute time
    // A request parameter `delay_ms` (int64) adds to the delay: tests use it to make one request
    // of a batch or instance slower than another.
    std::chrono::milliseconds delay = state.execute_delay_;
    for (uint32_t r = 0; r < host->batchRequestCount(batch); ++r) {
      for (uint32_t p = 0; p < host->batchRequestParameterCount(batch, r); ++p) {
        BlParameter parameter{};
        if (BlError* error = host->batchRequestParameter(batch, r, p, &parameter)) return error;
        if (std::strcmp(parameter.name, "delay_ms") == 0 && parameter.type == BL_PARAMETER_INT64) {
          delay = std::max(delay, state.execute_delay_ +
                                      std::chrono::milliseconds(parameter.int64_value));
        }
      }
    }
    if (delay.count() > 0) std::this_thread::sleep_for(delay);
    for (const TensorPair& pair : state.pairs_) {
      BlTensorView input{};
      if (BlError* error = host->batchInputByName(batch, pair.input_name_.c_str(), &input)) {
        host->errorDelete(error);  // an optional input that no request sent: no output either
        continue;
      }
      if (input.memory_kind == BL_MEMORY_GPU) {
        return makeError(BL_STATUS_UNSUPPORTED,
                         "identity backend: input '" + pair.input_name_ + "' is in GPU memory");
      }
      void* buffer = nullptr;
      if (BlError* error =
              host->batchOutputAllocate(batch, pair.output_name_.c_str(), input.datatype,
                                        input.shape, input.rank, input.byte_size, &buffer)) {
        return error;
      }
      if (buffer != nullptr && input.byte_size > 0) {
        std::memcpy(buffer, input.data, input.byte_size);
      }
    }
    host->batchReportComputeTimes(batch, compute_start, host->nowNs());
    return nullptr;
  } catch (const std::exception& e) {
    return makeError(BL_STATUS_INTERNAL, std::string("identity backend: ") + e.what());
  } catch (...) {
    return makeError(BL_STATUS_INTERNAL, "identity backend: unknown error in execute");
  }
}

}  // namespace
}  // namespace beamline::backend::identity

extern "C" {

BL_BACKEND_EXPORT uint32_t beamline_backend_api_version(void) { return BL_BACKEND_API_VERSION; }

BL_BACKEND_EXPORT BlError* beamline_backend_init(const BlHostApi* host, BlBackendApi* backend) {
  namespace identity = beamline::backend::identity;
  if (host->struct_size < sizeof(BlHostApi)) {
    return host->errorNew(BL_STATUS_UNSUPPORTED,
                          "identity backend: the server's host API is older than the backend's");
  }
  identity::host = host;
  backend->struct_size = sizeof(BlBackendApi);
  backend->modelCreate = identity::modelCreate;
  backend->modelDestroy = identity::modelDestroy;
  backend->instanceCreate = identity::instanceCreate;
  backend->instanceDestroy = identity::instanceDestroy;
  backend->execute = identity::execute;
  backend->finalize = nullptr;
  return nullptr;
}

}  // extern "C"
