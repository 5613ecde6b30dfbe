// beamline_framework_demo: the 48x48-patch CNN on a few thousand patches per event, through
// beamline's EventClient, inside the mini framework (TBB arena, N streams, acquire/produce).
//
//   beamline_framework_demo --server 127.0.0.1:8001 --mode Async --streams 4 --events 20
//   beamline_framework_demo --model-repository models/repository   # no server: the fallback
//   beamline_framework_demo --in-process --model-repository models/repository
//
// With --reference DIR it first sends the reference patches (cnn_patch_input.npy) and compares
// the scores with what PyTorch computed in-process (cnn_patch_output.npy, max |diff| <= 1e-5).
// The last line is machine-readable: "result mode=... streams=... events/s=...".
#include <cmath>
#include <cstdio>
#include <filesystem>

#include <CLI/CLI.hpp>

#include "beamline/client/event_client.h"
#include "beamline/core/process_tuning.h"
#include "beamline/client/in_process.h"
#include "framework.h"
#include "npy.h"
#include "patch_modules.h"

namespace bc = beamline::client;
namespace bf = beamline::framework;

namespace {

// Sends the reference patches through one client and compares with PyTorch's scores.
beamline::Status checkReference(const bc::EventClient::Config& base,
                                const std::shared_ptr<bc::ServerRegistry>& registry,
                                const std::filesystem::path& directory, double& max_diff) {
  BL_ASSIGN_OR_RETURN(auto input, beamline::tools::readNpy(directory / "cnn_patch_input.npy"));
  BL_ASSIGN_OR_RETURN(auto expected, beamline::tools::readNpy(directory / "cnn_patch_output.npy"));
  auto config = base;
  config.mode = bc::CallMode::kSync;
  BL_ASSIGN_OR_RETURN(auto client, bc::EventClient::create(config, registry, bc::stderrLogger()));
  const size_t count = static_cast<size_t>(input.shape.at(0));
  BL_RETURN_IF_ERROR(client->setBatchSize(count));
  auto in = client->input(0);
  const auto* pixels = reinterpret_cast<const float*>(input.data.data());
  for (size_t p = 0; p < count; ++p) {
    BL_ASSIGN_OR_RETURN(auto entry, in.entry<float>(p));
    std::copy(pixels + p * bf::kPatchPixels, pixels + (p + 1) * bf::kPatchPixels, entry.begin());
  }
  BL_RETURN_IF_ERROR(client->call());
  const auto* want = reinterpret_cast<const float*>(expected.data.data());
  max_diff = 0;
  auto out = client->output(0);
  for (size_t p = 0; p < count; ++p) {
    BL_ASSIGN_OR_RETURN(auto scores, out.entry<float>(p));
    for (size_t k = 0; k < scores.size(); ++k) {
      max_diff = std::max(max_diff, static_cast<double>(std::fabs(scores[k] - want[p * scores.size() + k])));
    }
  }
  return beamline::Status::ok();
}

}  // namespace

int main(int argc, char** argv) {
  // In-process inference and the local fallback run LibTorch here (process_tuning.h).
  beamline::tuneProcessForInference();
  CLI::App app{"The patch-classification demo: a mini framework calling the CNN through beamline"};
  std::vector<std::string> servers;
  std::string repository, backend_directory, reference, model = "cnn_patch", mode = "Async",
                                                        compression = "none";
  bool in_process = false, shm = true, verbose = false;
  bf::FrameworkConfig framework;
  framework.streams = 2;
  framework.events = 8;
  size_t patches = 2000;
  app.add_option("--server", servers, "host:port of a server (repeatable; also $BEAMLINE_SERVERS)");
  app.add_option("--model-repository", repository,
                 "Repository for the local fallback server (or the in-process core)");
  app.add_option("--backend-directory", backend_directory, "Backend plug-ins of the fallback");
  app.add_flag("--in-process", in_process, "Run the models in this process (no server)");
  app.add_option("--model", model, "cnn_patch or cnn_patch_batched")->capture_default_str();
  app.add_option("--mode", mode, "Sync, Async or PseudoAsync")->capture_default_str();
  app.add_option("--streams", framework.streams, "Concurrent events")->capture_default_str();
  app.add_option("--threads", framework.threads, "Arena threads (0: one per stream)");
  app.add_option("--events", framework.events, "Events to process")->capture_default_str();
  app.add_option("--patches", patches, "Patches per event")->capture_default_str();
  app.add_option("--shm", shm, "Shared memory with a server on this host")->capture_default_str();
  app.add_option("--compression", compression, "none, gzip or deflate")->capture_default_str();
  app.add_option("--reference", reference, "Folder with cnn_patch_input.npy / cnn_patch_output.npy");
  app.add_flag("--verbose", verbose, "Per-call server statistics in the log");
  CLI11_PARSE(app, argc, argv);

  auto call_mode = bc::parseCallMode(mode);
  auto call_compression = bc::parseCompression(compression);
  if (!call_mode.isOk() || !call_compression.isOk()) {
    std::fprintf(stderr, "%s\n", (call_mode.isOk() ? call_compression.status() : call_mode.status()).toString().c_str());
    return 2;
  }
  bc::ServerRegistry::Config registry_config;
  for (const auto& text : servers) {
    auto server = bc::parseServerAddress(text);
    if (!server.isOk()) {
      std::fprintf(stderr, "%s\n", server.status().toString().c_str());
      return 2;
    }
    registry_config.servers.push_back(*server);
  }
  if (!repository.empty()) registry_config.fallback.model_repositories = {repository};
  registry_config.fallback.server.backend_directory = backend_directory;
  if (in_process) {
    registry_config.servers.clear();
    registry_config.servers_from_environment = false;
    registry_config.fallback.factory = [&]() {
      beamline::ServerOptions options;
      options.model_repositories = {repository};
      if (!backend_directory.empty()) options.backend_directories = {backend_directory};
      return bc::createInProcessEndpoint(std::move(options));
    };
  }
  const bc::Logger logger = bc::stderrLogger(verbose ? bc::LogLevel::kInfo : bc::LogLevel::kWarning);
  auto registry = bc::ServerRegistry::create(registry_config, logger);
  if (!registry.isOk()) {
    std::fprintf(stderr, "%s\n", registry.status().toString().c_str());
    return 1;
  }
  bc::EventClient::Config client_config;
  client_config.model_name = model;
  client_config.mode = *call_mode;
  client_config.compression = *call_compression;
  client_config.use_shared_memory = shm;
  client_config.verbose = verbose;
  client_config.timeout = std::chrono::seconds(120);

  int exit_code = 0;
  if (!reference.empty()) {
    double max_diff = 0;
    beamline::Status checked = checkReference(client_config, *registry, reference, max_diff);
    if (!checked.isOk()) {
      std::printf("reference check: %s\n", checked.toString().c_str());
      return 1;
    }
    const bool pass = max_diff <= 1e-5;
    std::printf("reference check: 16 patches vs in-process PyTorch, max |diff| = %.2e (%s)\n",
                max_diff, pass ? "PASS" : "FAIL");
    if (!pass) exit_code = 1;
  }

  bf::PatchTally tally;
  std::vector<bf::ModuleMaker> modules;
  modules.push_back([patches](size_t) -> beamline::Result<std::unique_ptr<bf::Module>> {
    return std::unique_ptr<bf::Module>(std::make_unique<bf::PatchMaker>(patches));
  });
  modules.push_back([&](size_t) -> beamline::Result<std::unique_ptr<bf::Module>> {
    BL_ASSIGN_OR_RETURN(auto client, bc::EventClient::create(client_config, *registry, logger));
    return std::unique_ptr<bf::Module>(std::make_unique<bf::PatchClassifier>(std::move(client), tally));
  });
  auto summary = bf::run(framework, modules);
  if (!summary.isOk()) {
    std::fprintf(stderr, "framework: %s\n", summary.status().toString().c_str());
    return 1;
  }
  for (const auto& error : summary->errors) std::fprintf(stderr, "error: %s\n", error.c_str());
  const double seconds = std::chrono::duration<double>(summary->wall).count();
  std::string where;
  for (const auto& server : (*registry)->servers()) {
    where += (where.empty() ? "" : ",") + server.name + (server.fallback ? "(fallback)" : "");
  }
  std::printf("processed %llu events (%llu failed) of %zu patches on %zu streams in %.2f s via %s\n",
              static_cast<unsigned long long>(summary->events),
              static_cast<unsigned long long>(summary->failed), patches, framework.streams, seconds,
              where.c_str());
  std::printf("patch classes: %llu / %llu / %llu\n",
              static_cast<unsigned long long>(tally.per_class[0].load()),
              static_cast<unsigned long long>(tally.per_class[1].load()),
              static_cast<unsigned long long>(tally.per_class[2].load()));
  std::printf("result mode=%s streams=%zu events=%llu patches=%zu seconds=%.3f events/s=%.3f patches/s=%.1f\n",
              std::string(bc::callModeName(*call_mode)).c_str(), framework.streams,
              static_cast<unsigned long long>(summary->events), patches, seconds,
              static_cast<double>(summary->events) / seconds,
              static_cast<double>(tally.patches.load()) / seconds);
  return summary->failed == 0 ? exit_code : 1;
}
