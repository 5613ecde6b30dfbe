// ServerRegistry: the servers a process may send to, which models each serves, how healthy and
// how loaded each is, and the local fallback server. One per process (like SonicTriton's
// TritonService), shared by every EventClient through a shared_ptr.
//
// - Servers come from the Config and, when `servers_from_environment` is set, from
//   $BEAMLINE_SERVERS ("host:port,grpcs://host:port,name=host:port"). Extra endpoints (an
//   in-process server core) can be added to the Config as they are.
// - The model -> servers map is read from each server's RepositoryIndex (READY models) at
//   create(); a server whose index cannot be read is skipped (marked unhealthy and probed later).
// - select() picks, among the healthy servers that serve a model, the one with the least expected
//   wait: (requests outstanding from this process + 1) x recent latency (an exponential moving
//   average per server and model). Ties rotate. A preferred server wins while it is healthy.
// - A call that cannot reach its server marks it unhealthy; the health thread probes it again
//   (ServerReady, then RepositoryIndex) after a backoff that doubles up to `max_backoff`.
// - fallback(): when no server serves a model (or every retry failed), a local `beamline serve`
//   child over `fallback.model_repositories` is started once (on the health thread, see
//   local_server.h) and used; it is stopped when the registry is destroyed. A custom factory
//   (e.g. an in-process endpoint) can replace the child process.
// - post(): a small shared pool (`pool_threads`) that runs PseudoAsync calls and the blocking
//   parts of retries, instead of a thread per client.
//
// Threads: every public method is thread-safe. Health probes and fallback starts run on the
// registry's one health thread; post()ed tasks on the pool threads. Callbacks of calls never run
// here. The registry must outlive the clients that use it (they hold a shared_ptr).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "beamline/client/endpoint.h"
#include "beamline/client/local_server.h"
#include "beamline/client/logger.h"
#include "beamline/core/status.h"

namespace beamline::client {

class ServerRegistry {
 public:
  struct HealthConfig {
    std::chrono::milliseconds initial_backoff{200};
    std::chrono::milliseconds max_backoff{10000};
    // Deadline of a probe (ServerReady + RepositoryIndex).
    std::chrono::milliseconds probe_timeout{2000};
    // Weight of the newest sample in the latency average (0 < w <= 1).
    double latency_weight = 0.2;
  };

  struct FallbackConfig {
    bool enabled = true;
    // The repositories the fallback server serves; empty: $BEAMLINE_MODEL_REPOSITORY (":"
    // separated). Without any, there is no fallback.
    std::vector<std::string> model_repositories;
    // The child process (binary, backend directory, flags, timeouts). model_repositories above
    // replace its own.
    LocalServer::Config server;
    // When set, called (once, on the health thread) instead of starting a child process, e.g.
    // [] { return createInProcessEndpoint(options); }.
    std::function<Result<std::shared_ptr<Endpoint>>()> factory;
  };

  struct Config {
    std::vector<ServerAddress> servers;
    bool servers_from_environment = true;  // $BEAMLINE_SERVERS
    // Endpoints made elsewhere (e.g. createInProcessEndpoint), used like servers.
    std::vector<std::shared_ptr<Endpoint>> endpoints;
    // Metadata, statistics, health and shared-memory calls to servers.
    std::chrono::milliseconds control_timeout{5000};
    HealthConfig health;
    FallbackConfig fallback;
    // Threads of the shared pool (PseudoAsync calls, blocking steps of retries); at least 1.
    size_t pool_threads = 2;
  };

  // A choice of server for one call.
  struct Selection {
    std::shared_ptr<const Endpoint> endpoint;
    size_t index = 0;       // stable index of the server in this registry
    bool fallback = false;  // the fallback server
  };

  // What the registry knows about one server (for logs, tests and benchmarks).
  struct ServerState {
    std::string name;
    bool healthy = true;
    bool fallback = false;
    size_t outstanding = 0;            // calls from this process in flight
    std::vector<std::string> models;  // READY models
  };

  // Builds the registry and reads every server's repository index (blocking, control_timeout per
  // server). Does not start the fallback.
  static Result<std::shared_ptr<ServerRegistry>> create(Config config, Logger logger = {});
  // Stops the health thread and the pool, then the fallback server.
  ~ServerRegistry();
  ServerRegistry(const ServerRegistry&) = delete;
  ServerRegistry& operator=(const ServerRegistry&) = delete;

  // The best server for `model` (see the file comment), not `avoid` when another serves it.
  // Healthy servers first; when none is healthy, the unhealthy one probed longest ago, so that a
  // call fails fast rather than not at all. NOT_FOUND when no server (fallback included, if
  // started) serves the model.
  Result<Selection> select(std::string_view model, std::string_view preferred = "",
                           std::optional<size_t> avoid = std::nullopt) const;
  // The fallback server, started (blocking, up to its start timeout) when it is not yet running.
  // UNAVAILABLE when the fallback is disabled, has no repository or failed to start.
  Result<Selection> fallback(std::string_view model);
  bool fallbackRunning() const;

  // Load accounting, called by clients around each request.
  void callStarted(size_t index, std::string_view model);
  // `latency` of a successful call feeds the average; an unreachable server is marked unhealthy.
  void callFinished(size_t index, std::string_view model, const Status& status,
                    const CallReport& report, std::chrono::nanoseconds latency);
  // Marks a server unhealthy now (e.g. after a failed shared-memory registration of a region).
  void markUnhealthy(size_t index, std::string_view why);

  // Runs `task` on the shared pool.
  void post(std::function<void()> task);

  std::vector<ServerState> servers() const;
  const Logger& logger() const { return logger_; }

 private:
  struct Server;
  struct Impl;
  explicit ServerRegistry(Logger logger);
  // The health thread: probes, fallback start and stop.
  void healthLoop();
  Status startFallback(std::shared_ptr<Endpoint>& endpoint, std::unique_ptr<LocalServer>& local);

  Logger logger_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace beamline::client
