// beamline_echo_server: the bare gRPC limit for the benchmark suite. A KServe v2 server with one
// model that answers ModelInfer by copying each raw input to the output of the same position —
// no model, no scheduler, no validation — on the same threading model as beamline's gRPC front end
// (gRPC callback API, handlers on gRPC's executor, no thread per request) and the same process
// settings (malloc thresholds). It also answers the calls `beamline perf` makes: health,
// ModelMetadata, ModelConfig (ModelStatistics answers UNIMPLEMENTED).
//
// Prints "echo ready grpc=HOST:PORT" on stdout once serving; SIGINT/SIGTERM stop it.
#include <grpcpp/grpcpp.h>
#include "beamline/core/process_tuning.h"
#include <signal.h>

#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "grpc_service.grpc.pb.h"

namespace {

struct EchoOptions {
  std::string address = "127.0.0.1";
  int port = 0;
  std::string model = "identity_fp32";
  std::string input = "INPUT__0";
  std::string output = "OUTPUT__0";
  std::string datatype = "FP32";
  int max_batch_size = 8;
};

// Handlers run on gRPC's callback executor threads; the service is immutable after construction.
class EchoService final : public inference::GRPCInferenceService::CallbackService {
 public:
  explicit EchoService(EchoOptions options) : options_(std::move(options)) {}

  grpc::ServerUnaryReactor* ServerLive(grpc::CallbackServerContext* context,
                                       const inference::ServerLiveRequest*,
                                       inference::ServerLiveResponse* response) override {
    response->set_live(true);
    return finish(context, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* ServerReady(grpc::CallbackServerContext* context,
                                        const inference::ServerReadyRequest*,
                                        inference::ServerReadyResponse* response) override {
    response->set_ready(true);
    return finish(context, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* ModelReady(grpc::CallbackServerContext* context,
                                       const inference::ModelReadyRequest* request,
                                       inference::ModelReadyResponse* response) override {
    response->set_ready(request->name() == options_.model);
    return finish(context, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* ModelMetadata(grpc::CallbackServerContext* context,
                                          const inference::ModelMetadataRequest* request,
                                          inference::ModelMetadataResponse* response) override {
    if (request->name() != options_.model) return finish(context, unknownModel(request->name()));
    response->set_name(options_.model);
    response->add_versions("1");
    response->set_platform("echo");
    for (auto* tensor : {response->add_inputs(), response->add_outputs()}) {
      tensor->set_datatype(options_.datatype);
      if (options_.max_batch_size > 0) tensor->add_shape(-1);
      tensor->add_shape(-1);
    }
    response->mutable_inputs(0)->set_name(options_.input);
    response->mutable_outputs(0)->set_name(options_.output);
    return finish(context, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* ModelConfig(grpc::CallbackServerContext* context,
                                        const inference::ModelConfigRequest* request,
                                        inference::ModelConfigResponse* response) override {
    if (request->name() != options_.model) return finish(context, unknownModel(request->name()));
    response->mutable_config()->set_name(options_.model);
    response->mutable_config()->set_max_batch_size(options_.max_batch_size);
    return finish(context, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* context,
                                       const inference::ModelInferRequest* request,
                                       inference::ModelInferResponse* response) override {
    response->set_model_name(request->model_name());
    response->set_model_version("1");
    response->set_id(request->id());
    for (int i = 0; i < request->inputs_size(); ++i) {
      const auto& input = request->inputs(i);
      auto* output = response->add_outputs();
      output->set_name(i == 0 ? options_.output : "OUTPUT" + std::to_string(i));
      output->set_datatype(input.datatype());
      *output->mutable_shape() = input.shape();
      if (i < request->raw_input_contents_size()) {
        response->add_raw_output_contents(request->raw_input_contents(i));
      }
    }
    return finish(context, grpc::Status::OK);
  }

 private:
  static grpc::ServerUnaryReactor* finish(grpc::CallbackServerContext* context,
                                          const grpc::Status& status) {
    auto* reactor = context->DefaultReactor();
    reactor->Finish(status);
    return reactor;
  }

  static grpc::Status unknownModel(const std::string& name) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown model: '" + name + "'");
  }

  EchoOptions options_;
};

}  // namespace

int main(int argc, char** argv) {
  EchoOptions options;
  CLI::App app{"beamline_echo_server - a KServe v2 gRPC server that echoes inputs (bench limit)"};
  app.add_option("--address", options.address, "Listen address (default 127.0.0.1)");
  app.add_option("--port", options.port, "Port; 0 picks a free one (default 0)");
  app.add_option("--model", options.model, "Model name answered (default identity_fp32)");
  app.add_option("--input", options.input, "Input name in metadata (default INPUT__0)");
  app.add_option("--output", options.output, "Output name (default OUTPUT__0)");
  app.add_option("--datatype", options.datatype, "Datatype in metadata (default FP32)");
  app.add_option("--max-batch-size", options.max_batch_size, "Reported max_batch_size (default 8)");
  CLI11_PARSE(app, argc, argv);

  // The same allocator settings as `beamline serve`.
  beamline::tuneProcessForInference();
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  EchoService service(options);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.address + ":" + std::to_string(options.port),
                           grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(INT32_MAX);
  builder.SetMaxSendMessageSize(INT32_MAX);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "echo: cannot listen on %s:%d\n", options.address.c_str(), options.port);
    return 1;
  }
  std::printf("echo ready grpc=%s:%d\n", options.address.c_str(), port);
  std::fflush(stdout);
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  server->Shutdown();
  return 0;
}
