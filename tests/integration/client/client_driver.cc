// beamline_client_driver: drives beamline::client::EventClient for the black-box tests
// (tests/integration/test_client_*.py), which start real servers, kill them, and read what this
// prints. Not an example: see examples/framework for that.
//
//   run          N events of an FP32 identity model (INPUT0 [-1] -> OUTPUT0) over S streams
//                (one thread and one EventClient each); every output is checked against its
//                input; one line per event, then a summary with a checksum of all outputs.
//   shm-errors   registers client shared memory on a server and makes the bad requests the
//                server must refuse; one line per case with the status.
//
// Exit code 0 when every event succeeded (run) or every case ran (shm-errors).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "beamline/client/event_client.h"
#include "beamline/client/in_process.h"
#include "beamline/client/shared_memory.h"

namespace bc = beamline::client;
using beamline::Status;
using Clock = std::chrono::steady_clock;

namespace {

std::mutex print_mutex;

void printLine(const std::string& line) {
  std::lock_guard lock(print_mutex);
  std::fputs(line.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

struct RunOptions {
  std::vector<std::string> servers;
  std::string fallback_repository;
  std::string backend_directory;
  bool in_process = false;
  std::string model = "native_identity";
  std::string mode = "Async";
  int events = 20;
  int entries = 5;
  int length = 16;
  int streams = 1;
  double timeout_ms = 0;
  bool shm = true;
  std::string compression = "none";
  int retry_same = 1;
  int retry_other = 2;
  bool retry_fallback = true;
  bool ragged = false;
  int pause_ms = 0;
  int hold_ms = 0;
  bool verbose = false;
};

float valueOf(uint64_t event, size_t entry, size_t i) {
  return static_cast<float>(event * 1000003 % 9973) + static_cast<float>(entry) * 0.5f +
         static_cast<float>(i) * 0.001f;
}

uint64_t fnv(uint64_t hash, std::span<const std::byte> bytes) {
  for (std::byte b : bytes) hash = (hash ^ static_cast<uint64_t>(b)) * 1099511628211ull;
  return hash;
}

int run(const RunOptions& options) {
  bc::ServerRegistry::Config registry_config;
  registry_config.servers_from_environment = false;
  for (const auto& text : options.servers) {
    auto server = bc::parseServerAddress(text);
    if (!server.isOk()) {
      std::fprintf(stderr, "%s\n", server.status().toString().c_str());
      return 2;
    }
    registry_config.servers.push_back(*server);
  }
  registry_config.health.initial_backoff = std::chrono::milliseconds(100);
  registry_config.health.max_backoff = std::chrono::milliseconds(1000);
  registry_config.fallback.enabled = !options.fallback_repository.empty() || options.in_process;
  if (!options.fallback_repository.empty()) {
    registry_config.fallback.model_repositories = {options.fallback_repository};
    registry_config.fallback.server.backend_directory = options.backend_directory;
  }
  if (options.in_process) {
    registry_config.fallback.factory = [&options]() {
      beamline::ServerOptions server;
      server.model_repositories = {options.fallback_repository};
      if (!options.backend_directory.empty()) server.backend_directories = {options.backend_directory};
      return bc::createInProcessEndpoint(std::move(server));
    };
  }
  const bc::Logger logger = bc::stderrLogger(options.verbose ? bc::LogLevel::kInfo : bc::LogLevel::kWarning);
  auto registry = bc::ServerRegistry::create(registry_config, logger);
  if (!registry.isOk()) {
    std::fprintf(stderr, "%s\n", registry.status().toString().c_str());
    return 2;
  }
  bc::EventClient::Config config;
  config.model_name = options.model;
  config.mode = bc::parseCallMode(options.mode).value();
  config.timeout = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::duration<double, std::milli>(options.timeout_ms));
  config.use_shared_memory = options.shm;
  config.compression = bc::parseCompression(options.compression).value();
  config.retry = {options.retry_same, options.retry_other, options.retry_fallback};
  config.verbose = options.verbose;

  std::atomic<int> next_event{0};
  std::atomic<int> failures{0};
  std::mutex checksum_mutex;
  std::vector<uint64_t> per_event_hash(static_cast<size_t>(options.events), 0);
  const auto start = Clock::now();
  auto stream = [&](int stream_id) {
    auto client = bc::EventClient::create(config, *registry, logger);
    if (!client.isOk()) {
      printLine("stream " + std::to_string(stream_id) + " error " + client.status().toString());
      failures += options.events;
      return;
    }
    if (options.ragged) (*client)->setBatchMode(bc::BatchMode::kRagged);
    for (int event = next_event++; event < options.events; event = next_event++) {
      auto& c = **client;
      const size_t entries = static_cast<size_t>(options.entries);
      Status status = c.setBatchSize(entries);
      auto input = c.input(0);
      const auto event_start = Clock::now();
      for (size_t e = 0; status.isOk() && e < entries; ++e) {
        // Ragged: entry lengths differ (length, length+1, ...).
        const int64_t length = options.length + (options.ragged ? static_cast<int64_t>(e) : 0);
        const int64_t shape[] = {length};
        status = options.ragged ? input.setShape(shape, e) : (e == 0 ? input.setShape(shape) : Status::ok());
      }
      for (size_t e = 0; status.isOk() && e < entries; ++e) {
        auto x = input.entry<float>(e);
        if (!x.isOk()) {
          status = x.status();
          break;
        }
        for (size_t i = 0; i < x->size(); ++i) (*x)[i] = valueOf(static_cast<uint64_t>(event), e, i);
      }
      if (status.isOk()) status = c.call();
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - event_start).count();
      uint64_t hash = 1469598103934665603ull;
      if (status.isOk()) {
        auto output = c.output(0);
        for (size_t e = 0; e < entries && status.isOk(); ++e) {
          auto y = output.entry<float>(e);
          if (!y.isOk()) {
            status = y.status();
            break;
          }
          for (size_t i = 0; i < y->size(); ++i) {
            if ((*y)[i] != valueOf(static_cast<uint64_t>(event), e, i)) {
              status = beamline::internalError("event " + std::to_string(event) + " entry " +
                                               std::to_string(e) + " element " + std::to_string(i) +
                                               ": output differs from input");
              break;
            }
          }
          hash = fnv(hash, std::as_bytes(*y));
        }
      }
      const auto& stats = c.lastCall();
      char line[512];
      std::snprintf(line, sizeof(line), "event %d %s stream=%d server=%s attempts=%zu requests=%zu shm=%d ms=%.1f",
                    event, status.isOk() ? "ok" : "failed", stream_id, stats.server.c_str(),
                    stats.attempts, stats.requests, stats.shared_memory ? 1 : 0, ms);
      std::string text = line;
      if (!status.isOk()) {
        text += " error=" + status.toString();
        ++failures;
      } else {
        std::lock_guard lock(checksum_mutex);
        per_event_hash[static_cast<size_t>(event)] = hash;
      }
      printLine(text);
      c.reset();
      if (options.pause_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(options.pause_ms));
    }
  };
  std::vector<std::thread> threads;
  for (int s = 0; s < options.streams; ++s) threads.emplace_back(stream, s);
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  uint64_t checksum = 1469598103934665603ull;
  for (uint64_t h : per_event_hash) checksum = fnv(checksum, std::as_bytes(std::span(&h, 1)));
  std::string servers;
  for (const auto& server : (*registry)->servers()) {
    servers += " " + server.name + (server.healthy ? "" : "(unhealthy)") + (server.fallback ? "(fallback)" : "");
  }
  char summary[512];
  std::snprintf(summary, sizeof(summary), "summary events=%d failed=%d checksum=%016" PRIx64 " seconds=%.3f servers=%s",
                options.events, failures.load(), checksum, seconds, servers.c_str());
  printLine(summary);
  if (options.hold_ms > 0) {
    printLine("holding");
    std::this_thread::sleep_for(std::chrono::milliseconds(options.hold_ms));
  }
  return failures == 0 ? 0 : 1;
}

// ---- shm-errors ----

std::string describe(const Status& status) {
  return std::string(beamline::statusCodeName(status.code())) + " " + status.message();
}

int shmErrors(const std::string& url) {
  bc::ClientOptions options;
  options.url = url;
  options.timeout = std::chrono::seconds(10);
  auto client = bc::GrpcClient::create(options).value();
  const size_t size = 4096;
  auto region = bc::SharedMemoryRegion::create(bc::makeSharedMemoryKey("errors"), size);
  if (!region.isOk()) {
    printLine("setup failed " + region.status().toString());
    return 2;
  }
  auto report = [](const std::string& name, const Status& status) {
    printLine("case " + name + ": " + describe(status));
  };
  // Register twice.
  report("register", client->registerSystemSharedMemory("region_a", (*region)->key(), 0, size));
  report("register_twice", client->registerSystemSharedMemory("region_a", (*region)->key(), 0, size));
  report("register_unknown_key",
         client->registerSystemSharedMemory("region_b", "/beamline_no_such_key_" + std::to_string(::getpid()), 0, 64));
  report("register_beyond_object",
         client->registerSystemSharedMemory("region_c", (*region)->key(), 0, size * 4));
  // Requests: input in an unknown region, and outside the registered one.
  auto infer = [&](const std::string& name, const std::string& region_name, uint64_t offset,
                   uint64_t bytes) {
    bc::InferRequest request;
    request.setModel("native_identity");
    const int64_t shape[] = {1, static_cast<int64_t>(bytes / 4)};
    request.addSharedMemoryInput("INPUT0", beamline::DataType::kFp32, shape, region_name, offset, bytes);
    bc::InferResult result;
    report(name, client->infer(request, result));
  };
  infer("infer_ok", "region_a", 0, 64);
  infer("infer_unknown_region", "no_such_region", 0, 64);
  infer("infer_offset_outside", "region_a", size, 64);
  infer("infer_size_outside", "region_a", size - 32, 64);
  // Output into a slot too small for it.
  {
    bc::InferRequest request;
    request.setModel("native_identity");
    const int64_t shape[] = {1, 16};
    request.addSharedMemoryInput("INPUT0", beamline::DataType::kFp32, shape, "region_a", 0, 64);
    const size_t out = request.requestOutput("OUTPUT0");
    Status set = request.setOutputSharedMemory(out, "region_a", size - 16, 16);
    (void)set;
    bc::InferResult result;
    report("infer_output_too_small", client->infer(request, result));
  }
  auto status = client->systemSharedMemoryStatus();
  printLine("status " + std::string(status.isOk() ? std::to_string(status->regions_size()) + " region(s)"
                                                  : describe(status.status())));
  report("unregister", client->unregisterSystemSharedMemory("region_a"));
  report("unregister_unknown", client->unregisterSystemSharedMemory("region_a"));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Drives EventClient for the black-box tests"};
  app.require_subcommand(1);
  RunOptions options;
  CLI::App* run_command = app.add_subcommand("run", "Run events of an FP32 identity model");
  run_command->add_option("--server", options.servers, "host:port (repeatable)");
  run_command->add_option("--fallback-repository", options.fallback_repository,
                          "Model repository of the fallback server");
  run_command->add_option("--backend-directory", options.backend_directory, "For the fallback");
  run_command->add_flag("--in-process", options.in_process, "Fallback in-process instead of a child");
  run_command->add_option("--model", options.model);
  run_command->add_option("--mode", options.mode);
  run_command->add_option("--events", options.events);
  run_command->add_option("--entries", options.entries);
  run_command->add_option("--length", options.length);
  run_command->add_option("--streams", options.streams);
  run_command->add_option("--timeout-ms", options.timeout_ms);
  run_command->add_option("--shm", options.shm);
  run_command->add_option("--compression", options.compression);
  run_command->add_option("--retry-same", options.retry_same);
  run_command->add_option("--retry-other", options.retry_other);
  run_command->add_option("--retry-fallback", options.retry_fallback);
  run_command->add_flag("--ragged", options.ragged);
  run_command->add_option("--pause-ms", options.pause_ms);
  run_command->add_option("--hold-ms", options.hold_ms);
  run_command->add_flag("--verbose", options.verbose);
  std::string url;
  CLI::App* shm_command = app.add_subcommand("shm-errors", "Bad shared-memory requests");
  shm_command->add_option("--server", url)->required();
  CLI11_PARSE(app, argc, argv);
  if (*run_command) return run(options);
  return shmErrors(url);
}
