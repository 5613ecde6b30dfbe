// `beamline serve`: load model repositories and serve them over gRPC and HTTP, with Prometheus
// metrics, until SIGTERM/SIGINT.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>
#include <thread>
#include <string>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "beamline/core/process_tuning.h"
#include "beamline/core/server.h"
#include "commands.h"
#include "frontend/grpc/grpc_frontend.h"
#include "frontend/http/http_frontend.h"
#include "metrics/metrics_service.h"

namespace beamline::tools {
namespace {

// The HTTP front end never blocks an I/O thread (inference completes asynchronously; loads run on
// a thread of their own), so threads only buy parallel parsing and copying: one per core, at least
// 2 and at most Triton's 8. More than the cores only adds context switches.
int defaultHttpThreadCount() {
  const unsigned cores = std::thread::hardware_concurrency();
  return std::clamp(static_cast<int>(cores == 0 ? 2 : cores), 2, 8);
}

std::string shownAddress(const std::string& address) {
  return address == "0.0.0.0" || address == "::" ? std::string("127.0.0.1") : address;
}

struct ServeFlags {
  std::vector<std::string> repositories;
  std::string grpc_address = "0.0.0.0";
  int grpc_port = 8001;
  std::string http_address = "0.0.0.0";
  int http_port = 8000;  // negative: no HTTP
  bool allow_http = true;
  int http_thread_count = defaultHttpThreadCount();
  int64_t http_max_input_size = int64_t{64} << 20;
  std::string metrics_address = "0.0.0.0";
  int metrics_port = 8002;  // negative: no metrics
  bool allow_metrics = true;
  bool allow_gpu_metrics = true;
  bool allow_cpu_metrics = true;
  int metrics_interval_ms = 2000;
  int64_t grpc_max_message_size = 2147483647;
  std::string control_mode = "none";
  std::vector<std::string> load_models;
  int poll_secs = 15;
  int log_verbose = 0;
  std::vector<std::string> backend_directories;
  int exit_timeout_secs = 30;
  bool strict_readiness = true;
  bool allow_client_shm = false;
};

// Backend plug-ins live in <prefix>/backends in the build tree and in
// <prefix>/lib/beamline/backends when installed, <prefix> being the folder above bin/.
std::vector<std::string> defaultBackendDirectories() {
  std::vector<std::string> result;
  if (const char* env = std::getenv("BEAMLINE_BACKEND_DIR"); env != nullptr && *env != '\0') {
    result.emplace_back(env);
  }
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const auto prefix = exe.parent_path().parent_path();
    result.push_back((prefix / "backends").string());
    result.push_back((prefix / "lib" / "beamline" / "backends").string());
  }
  return result;
}

int runServe(const ServeFlags& flags) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("beamline"));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(flags.log_verbose > 0 ? spdlog::level::debug : spdlog::level::info);
  tuneProcessForInference();

  // Block the stop signals in every thread; the main thread waits for them with sigwait.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  ServerOptions options;
  options.model_repositories = flags.repositories;
  auto mode = parseModelControlMode(flags.control_mode);
  if (!mode.isOk()) {
    spdlog::error("{}", mode.status().message());
    return 2;
  }
  options.control_mode = *mode;
  options.startup_models = flags.load_models;
  if (!flags.load_models.empty() && options.control_mode != ModelControlMode::kExplicit) {
    spdlog::warn("--load-model only applies with --model-control-mode=explicit; loading everything");
  }
  options.repository_poll_interval = std::chrono::seconds(std::max(1, flags.poll_secs));
  options.backend_directories = flags.backend_directories;
  for (auto& d : defaultBackendDirectories()) options.backend_directories.push_back(d);
  options.exit_timeout = std::chrono::seconds(std::max(0, flags.exit_timeout_secs));
  options.strict_readiness = flags.strict_readiness;
  options.allow_client_shm = flags.allow_client_shm;

  auto server = Server::create(options);
  if (!server.isOk()) {
    spdlog::error("cannot start: {}", server.status().message());
    return 1;
  }
  frontend::GrpcFrontendOptions grpc_options;
  grpc_options.address = flags.grpc_address;
  grpc_options.port = flags.grpc_port;
  grpc_options.max_message_bytes = static_cast<int>(
      std::clamp<int64_t>(flags.grpc_max_message_size, 1024, 2147483647));
  auto grpc = frontend::GrpcFrontend::start(**server, grpc_options);
  if (!grpc.isOk()) {
    spdlog::error("cannot start the gRPC front end: {}", grpc.status().message());
    (*server)->stop();
    return 1;
  }
  std::unique_ptr<frontend::HttpFrontend> http;
  if (flags.allow_http && flags.http_port >= 0) {
    frontend::HttpFrontendOptions http_options;
    http_options.address = flags.http_address;
    http_options.port = flags.http_port;
    http_options.thread_count = std::clamp(flags.http_thread_count, 1, 256);
    http_options.max_input_bytes =
        static_cast<uint64_t>(std::max<int64_t>(flags.http_max_input_size, 0));
    auto started = frontend::HttpFrontend::start(**server, http_options);
    if (!started.isOk()) {
      spdlog::error("cannot start the HTTP front end: {}", started.status().message());
      (*grpc)->shutdown(std::chrono::system_clock::now());
      (*server)->stop();
      return 1;
    }
    http = std::move(started).value();
  }
  std::unique_ptr<metrics::MetricsService> metrics_service;
  if (flags.allow_metrics && flags.metrics_port >= 0) {
    metrics::MetricsOptions metrics_options;
    metrics_options.address = flags.metrics_address;
    metrics_options.port = flags.metrics_port;
    metrics_options.interval = std::chrono::milliseconds(std::max(10, flags.metrics_interval_ms));
    metrics_options.cpu_metrics = flags.allow_cpu_metrics;
    metrics_options.gpu_metrics = flags.allow_gpu_metrics;
    auto started = metrics::MetricsService::start(**server, metrics_options);
    if (!started.isOk()) {
      spdlog::error("cannot start the metrics endpoint: {}", started.status().message());
      if (http) http->shutdown(std::chrono::steady_clock::now());
      (*grpc)->shutdown(std::chrono::system_clock::now());
      (*server)->stop();
      return 1;
    }
    metrics_service = std::move(started).value();
  }
  for (const auto& entry : (*server)->repositoryIndex(false)) {
    spdlog::info("model {:<24} version {:<4} {}{}{}", entry.name,
                 entry.version.empty() ? "-" : entry.version, modelStateName(entry.state),
                 entry.reason.empty() ? "" : ": ", entry.reason);
  }
  std::string ready_line = "beamline ready grpc=" + shownAddress(flags.grpc_address) + ":" +
                           std::to_string((*grpc)->port());
  if (http) {
    ready_line += " http=" + shownAddress(flags.http_address) + ":" + std::to_string(http->port());
  }
  if (metrics_service) {
    ready_line += " metrics=" + shownAddress(flags.metrics_address) + ":" +
                  std::to_string(metrics_service->port());
  }
  std::printf("%s\n", ready_line.c_str());
  std::fflush(stdout);
  spdlog::info("serving gRPC on {}:{}{}{} (pid {})", flags.grpc_address, (*grpc)->port(),
               http ? fmt::format(", HTTP on {}:{}", flags.http_address, http->port()) : "",
               metrics_service ? fmt::format(", metrics on {}:{}", flags.metrics_address,
                                             metrics_service->port())
                               : "",
               getpid());

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  spdlog::info("received {}; draining (up to {} s; a second signal stops at once)",
               signal_number == SIGTERM ? "SIGTERM" : "SIGINT", flags.exit_timeout_secs);
  // Stop accepting calls and let in-flight ones finish, then unload the models. This runs on its
  // own thread so that a model stuck in execute() cannot hold the process past the exit timeout.
  std::promise<void> drained;
  std::thread drainer([&] {
    // Both front ends stop accepting at once and drain in parallel, to the same deadline.
    std::thread http_drainer([&] {
      if (http) {
        http->shutdown(std::chrono::steady_clock::now() +
                       std::chrono::seconds(flags.exit_timeout_secs));
      }
    });
    (*grpc)->shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(flags.exit_timeout_secs));
    http_drainer.join();
    (*server)->stop();
    if (metrics_service) metrics_service->shutdown();
    drained.set_value();
  });
  auto done = drained.get_future();
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(flags.exit_timeout_secs + 2);
  while (done.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) {
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) {
      spdlog::error("requests still running {} s after the stop signal; exiting without them",
                    flags.exit_timeout_secs);
      std::fflush(nullptr);
      std::_Exit(1);
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(left).count();
    timespec wait{static_cast<time_t>(ms / 1000), static_cast<long>((ms % 1000) * 1000000)};
    if (wait.tv_sec > 0 || wait.tv_nsec > 100000000) wait = {0, 100000000};
    if (sigtimedwait(&stop_signals, nullptr, &wait) > 0) {
      spdlog::warn("second stop signal: exiting without waiting for in-flight requests");
      std::fflush(nullptr);
      std::_Exit(1);
    }
  }
  drainer.join();
  spdlog::info("stopped");
  return 0;
}

}  // namespace

void registerServeCommand(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<ServeFlags>();
  CLI::App* serve = app.add_subcommand(
      "serve",
      "Serve the models of one or more Triton-layout model repositories over the KServe v2 / "
      "Triton gRPC and HTTP/REST protocols, with Prometheus metrics. Prints 'beamline ready "
      "grpc=HOST:PORT http=HOST:PORT metrics=HOST:PORT' on stdout once it serves (disabled "
      "endpoints left out); logs go to stderr. SIGTERM or SIGINT drains in-flight requests and "
      "exits 0.");
  serve->add_option("--model-repository", flags->repositories,
                    "Model repository folder (<model>/config.pbtxt, <model>/<version>/model.pt). "
                    "Repeat for several.")
      ->required()
      ->check(CLI::ExistingDirectory);
  serve->add_option("--grpc-address", flags->grpc_address, "Address to listen on for gRPC")
      ->capture_default_str();
  serve->add_option("--grpc-port", flags->grpc_port,
                    "gRPC port; 0 picks a free one (printed in the ready line)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  serve->add_option("--allow-http", flags->allow_http, "Serve the HTTP/REST protocol")
      ->capture_default_str();
  serve->add_option("--http-address", flags->http_address, "Address to listen on for HTTP")
      ->capture_default_str();
  serve->add_option("--http-port", flags->http_port,
                    "HTTP port; 0 picks a free one (printed in the ready line), negative disables "
                    "HTTP")
      ->capture_default_str()
      ->check(CLI::Range(-1000000, 65535));
  serve->add_option("--http-thread-count", flags->http_thread_count,
                    "HTTP I/O threads. Handlers never block, so the default is one per core "
                    "(at least 2, at most Triton's 8)")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  serve->add_option("--http-max-input-size", flags->http_max_input_size,
                    "Largest HTTP request body in bytes, also after decompression (Triton's "
                    "default: 64 MiB)")
      ->capture_default_str();
  serve->add_option("--allow-metrics", flags->allow_metrics,
                    "Serve Prometheus metrics at /metrics on the metrics port")
      ->capture_default_str();
  serve->add_option("--allow-gpu-metrics", flags->allow_gpu_metrics,
                    "GPU utilisation, memory and power through NVML, when a driver is present")
      ->capture_default_str();
  serve->add_option("--allow-cpu-metrics", flags->allow_cpu_metrics,
                    "CPU utilisation and memory from /proc")
      ->capture_default_str();
  serve->add_option("--metrics-address", flags->metrics_address,
                    "Address to listen on for metrics")
      ->capture_default_str();
  serve->add_option("--metrics-port", flags->metrics_port,
                    "Metrics port; 0 picks a free one (printed in the ready line), negative "
                    "disables metrics")
      ->capture_default_str()
      ->check(CLI::Range(-1000000, 65535));
  serve->add_option("--metrics-interval-ms", flags->metrics_interval_ms,
                    "How often CPU, memory and GPU metrics are sampled (per-model metrics are "
                    "always current)")
      ->capture_default_str();
  serve->add_option("--grpc-max-message-size", flags->grpc_max_message_size,
                    "Largest gRPC message in bytes, both directions (Triton's default: 2 GiB - 1)")
      ->capture_default_str();
  serve->add_option("--model-control-mode", flags->control_mode,
                    "none: load everything at start; poll: also reload what changes on disk; "
                    "explicit: load only --load-model and the load/unload API")
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "poll", "explicit"}));
  serve->add_option("--load-model", flags->load_models,
                    "With explicit control: a model to load at start ('*' for all). Repeatable.");
  serve->add_option("--repository-poll-secs", flags->poll_secs,
                    "With poll control: seconds between repository scans")
      ->capture_default_str();
  serve->add_option("--backend-directory", flags->backend_directories,
                    "Extra folder to look for backend plug-ins (libbeamline_backend_<name>.so) "
                    "before the built-in ones. Repeatable.");
  serve->add_option("--exit-timeout-secs", flags->exit_timeout_secs,
                    "On SIGTERM/SIGINT, how long to wait for in-flight requests")
      ->capture_default_str();
  serve->add_option("--strict-readiness", flags->strict_readiness,
                    "Report not-ready while any model is still loading")
      ->capture_default_str();
  serve->add_option("--allow-client-shm", flags->allow_client_shm,
                    "Let clients register system (and, with CUDA, CUDA) shared memory regions "
                    "for inputs and outputs; off by default, as in Triton")
      ->capture_default_str();
  serve->add_option("--log-verbose", flags->log_verbose,
                    "Verbose logging level; >= 1 logs every execution with its batch size")
      ->capture_default_str();
  serve->callback([flags, &exit_code] { exit_code = runServe(*flags); });
}

}  // namespace beamline::tools
