// ServerRegistry: see include/beamline/client/server_registry.h.
#include "beamline/client/server_registry.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <thread>

#include "worker_pool.h"

namespace beamline::client {

using Clock = std::chrono::steady_clock;

namespace {

// A latency floor (us) so that a server without samples is tried, and ties between fast ones rotate.
constexpr double kLatencyFloorUs = 50.0;

std::vector<std::string> splitList(std::string_view text, char separator) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const size_t at = text.find(separator);
    std::string_view item = text.substr(0, at);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) out.emplace_back(item);
    if (at == std::string_view::npos) break;
    text.remove_prefix(at + 1);
  }
  return out;
}

}  // namespace

// One server. `endpoint`, `fallback` and `name` are fixed at construction; the rest is guarded by
// Impl::mutex.
struct ServerRegistry::Server {
  std::shared_ptr<Endpoint> endpoint;
  std::string name;
  bool fallback = false;

  bool healthy = true;
  Clock::time_point next_probe{};
  std::chrono::milliseconds backoff{0};
  std::vector<std::string> models;  // READY models, sorted
  size_t outstanding = 0;
  struct ModelLoad {
    size_t outstanding = 0;
    double latency_us = 0;  // moving average; 0 = no sample yet
  };
  std::map<std::string, ModelLoad, std::less<>> load;

  bool serves(std::string_view model) const {
    return std::binary_search(models.begin(), models.end(), model);
  }
};

struct ServerRegistry::Impl {
  Config config;

  mutable std::mutex mutex;  // guards servers' mutable fields, the vector, and the fields below
  std::vector<std::unique_ptr<Server>> servers;  // append-only; indices are stable
  mutable size_t rotation = 0;

  // Health thread.
  std::condition_variable health_wake;
  bool stopping = false;
  std::thread health_thread;

  // Fallback server (started on the health thread).
  bool fallback_requested = false;
  bool fallback_attempted = false;
  Status fallback_status;
  std::optional<size_t> fallback_index;
  std::condition_variable fallback_done;
  std::unique_ptr<LocalServer> local_server;  // owned and stopped by the health thread

  std::unique_ptr<WorkerPool> pool;
};

namespace {

void updateModels(std::vector<std::string>& out, std::vector<std::string> models) {
  std::sort(models.begin(), models.end());
  models.erase(std::unique(models.begin(), models.end()), models.end());
  out = std::move(models);
}

}  // namespace

ServerRegistry::ServerRegistry(Logger logger) : logger_(std::move(logger)) {}

Result<std::shared_ptr<ServerRegistry>> ServerRegistry::create(Config config, Logger logger) {
  if (config.servers_from_environment) {
    if (const char* env = std::getenv("BEAMLINE_SERVERS"); env != nullptr) {
      for (const std::string& item : splitList(env, ',')) {
        auto parsed = parseServerAddress(item);
        if (!parsed.isOk()) return parsed.status().withContext("$BEAMLINE_SERVERS");
        config.servers.push_back(std::move(parsed).value());
      }
    }
  }
  if (config.fallback.model_repositories.empty()) {
    if (const char* env = std::getenv("BEAMLINE_MODEL_REPOSITORY"); env != nullptr) {
      config.fallback.model_repositories = splitList(env, ':');
    }
  }
  if (config.health.latency_weight <= 0 || config.health.latency_weight > 1) {
    return invalidArg("health.latency_weight must be in (0, 1]");
  }
  std::shared_ptr<ServerRegistry> registry(new ServerRegistry(std::move(logger)));
  auto impl = std::make_unique<Impl>();
  impl->pool = std::make_unique<WorkerPool>(std::max<size_t>(1, config.pool_threads));

  std::vector<std::shared_ptr<Endpoint>> endpoints;
  for (const auto& server : config.servers) {
    RemoteEndpointConfig remote;
    remote.server = server;
    remote.control_timeout = config.control_timeout;
    BL_ASSIGN_OR_RETURN(auto endpoint, createRemoteEndpoint(std::move(remote), registry->logger_));
    endpoints.push_back(std::move(endpoint));
  }
  endpoints.insert(endpoints.end(), config.endpoints.begin(), config.endpoints.end());
  const auto now = Clock::now();
  for (auto& endpoint : endpoints) {
    auto server = std::make_unique<Server>();
    server->endpoint = endpoint;
    server->name = endpoint->name();
    auto models = endpoint->readyModels();
    if (models.isOk()) {
      updateModels(server->models, std::move(models).value());
    } else {
      // As SonicTriton: a server whose index cannot be read is skipped, here until a probe works.
      server->healthy = false;
      server->backoff = config.health.initial_backoff;
      server->next_probe = now + server->backoff;
      log(registry->logger_, LogLevel::kWarning,
          "server " + server->name + " skipped for now: " + models.status().toString());
    }
    impl->servers.push_back(std::move(server));
  }
  impl->config = std::move(config);
  registry->impl_ = std::move(impl);
  ServerRegistry* self = registry.get();
  registry->impl_->health_thread = std::thread([self] { self->healthLoop(); });
  return registry;
}

ServerRegistry::~ServerRegistry() {
  impl_->pool.reset();  // runs what was posted, then joins
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->health_wake.notify_all();
  impl_->fallback_done.notify_all();
  impl_->health_thread.join();
}

void ServerRegistry::healthLoop() {
  Impl& impl = *impl_;
  std::unique_lock lock(impl.mutex);
  while (!impl.stopping) {
    // Start the fallback when asked.
    if (impl.fallback_requested && !impl.fallback_attempted) {
      impl.fallback_attempted = true;
      lock.unlock();
      std::shared_ptr<Endpoint> endpoint;
      std::unique_ptr<LocalServer> local;
      Status status = startFallback(endpoint, local);
      std::vector<std::string> models;
      if (status.isOk()) {
        auto ready = endpoint->readyModels();
        if (ready.isOk()) {
          models = std::move(ready).value();
        } else {
          status = ready.status().withContext("fallback server");
        }
      }
      lock.lock();
      impl.local_server = std::move(local);
      impl.fallback_status = status;
      if (status.isOk()) {
        auto server = std::make_unique<Server>();
        server->endpoint = std::move(endpoint);
        server->name = server->endpoint->name();
        server->fallback = true;
        updateModels(server->models, std::move(models));
        impl.fallback_index = impl.servers.size();
        impl.servers.push_back(std::move(server));
      }
      impl.fallback_done.notify_all();
      continue;
    }
    // Probe the unhealthy servers whose backoff has passed.
    const auto now = Clock::now();
    auto next_wake = Clock::time_point::max();
    std::vector<size_t> due;
    for (size_t i = 0; i < impl.servers.size(); ++i) {
      const Server& server = *impl.servers[i];
      if (server.healthy) continue;
      if (server.next_probe <= now) {
        due.push_back(i);
      } else {
        next_wake = std::min(next_wake, server.next_probe);
      }
    }
    if (!due.empty()) {
      for (size_t index : due) {
        std::shared_ptr<Endpoint> endpoint = impl.servers[index]->endpoint;
        lock.unlock();
        Status probe;
        std::vector<std::string> models;
        auto ready = endpoint->ready();
        if (!ready.isOk()) {
          probe = ready.status();
        } else if (!*ready) {
          probe = unavailable("not ready");
        } else {
          auto listed = endpoint->readyModels();
          if (listed.isOk()) {
            models = std::move(listed).value();
          } else {
            probe = listed.status();
          }
        }
        lock.lock();
        Server& server = *impl.servers[index];
        if (probe.isOk()) {
          server.healthy = true;
          server.backoff = std::chrono::milliseconds(0);
          updateModels(server.models, std::move(models));
          log(logger_, LogLevel::kInfo, "server " + server.name + " is healthy again");
        } else {
          server.backoff = std::min(impl.config.health.max_backoff,
                                    std::max(impl.config.health.initial_backoff, server.backoff * 2));
          server.next_probe = Clock::now() + server.backoff;
          log(logger_, LogLevel::kDebug,
              "server " + server.name + " still unhealthy (" + probe.message() + "); next probe in " +
                  std::to_string(server.backoff.count()) + " ms");
        }
      }
      continue;  // recompute the next wake-up
    }
    if (next_wake == Clock::time_point::max()) {
      impl.health_wake.wait(lock);
    } else {
      impl.health_wake.wait_until(lock, next_wake);
    }
  }
  // Stop the fallback server here: it was forked by this thread (PR_SET_PDEATHSIG).
  std::unique_ptr<LocalServer> local = std::move(impl.local_server);
  lock.unlock();
  if (local) {
    Status stopped = local->stop();
    if (!stopped.isOk()) log(logger_, LogLevel::kWarning, "fallback server: " + stopped.message());
  }
}

Status ServerRegistry::startFallback(std::shared_ptr<Endpoint>& endpoint,
                                     std::unique_ptr<LocalServer>& local) {
  const FallbackConfig& fallback = impl_->config.fallback;  // immutable after create()
  if (fallback.factory) {
    auto made = fallback.factory();
    if (!made.isOk()) return made.status().withContext("fallback endpoint");
    endpoint = std::move(made).value();
    log(logger_, LogLevel::kInfo, "fallback endpoint " + endpoint->name() + " created");
    return Status::ok();
  }
  LocalServer::Config server = fallback.server;
  server.model_repositories = fallback.model_repositories;
  auto started = LocalServer::start(std::move(server), logger_);
  if (!started.isOk()) return started.status().withContext("fallback server");
  local = std::move(started).value();
  RemoteEndpointConfig remote;
  remote.server.name = "fallback(" + local->address() + ")";
  remote.server.address = local->address();
  remote.control_timeout = impl_->config.control_timeout;
  auto made = createRemoteEndpoint(std::move(remote), logger_);
  if (!made.isOk()) return made.status();
  endpoint = std::move(made).value();
  return Status::ok();
}

Result<ServerRegistry::Selection> ServerRegistry::select(std::string_view model,
                                                         std::string_view preferred,
                                                         std::optional<size_t> avoid) const {
  std::lock_guard lock(impl_->mutex);
  const auto& servers = impl_->servers;
  const Server* best = nullptr;
  size_t best_index = 0;
  double best_score = std::numeric_limits<double>::infinity();
  const Server* best_unhealthy = nullptr;
  size_t best_unhealthy_index = 0;
  const Server* avoided = nullptr;
  const size_t count = servers.size();
  const size_t start = count == 0 ? 0 : impl_->rotation++ % count;
  for (size_t k = 0; k < count; ++k) {
    const size_t i = (start + k) % count;
    const Server& server = *servers[i];
    if (!server.serves(model)) continue;
    if (avoid && *avoid == i) {
      avoided = &server;
      continue;
    }
    if (!server.healthy) {
      if (best_unhealthy == nullptr || server.next_probe < best_unhealthy->next_probe) {
        best_unhealthy = &server;
        best_unhealthy_index = i;
      }
      continue;
    }
    if (!preferred.empty() && (server.name == preferred || server.endpoint->name() == preferred)) {
      best = &server;
      best_index = i;
      break;
    }
    double latency = kLatencyFloorUs;
    size_t outstanding = 0;
    if (auto found = server.load.find(model); found != server.load.end()) {
      latency = std::max(latency, found->second.latency_us);
      outstanding = found->second.outstanding;
    }
    // Other models' requests on the same server wait in other queues, but share its CPU/GPU.
    const double score = static_cast<double>(outstanding + 1) * latency +
                         static_cast<double>(server.outstanding - outstanding) * kLatencyFloorUs;
    if (score < best_score) {
      best_score = score;
      best = &server;
      best_index = i;
    }
  }
  if (best == nullptr && best_unhealthy != nullptr) {
    best = best_unhealthy;
    best_index = best_unhealthy_index;
  }
  if (best == nullptr && avoided != nullptr) {
    best = avoided;
    best_index = *avoid;
  }
  if (best == nullptr) {
    return notFound("no server serves model '" + std::string(model) + "' (" +
                    std::to_string(count) + " server(s) known" +
                    (impl_->fallback_index ? ", fallback included)" : ")"));
  }
  return Selection{best->endpoint, best_index, best->fallback};
}

Result<ServerRegistry::Selection> ServerRegistry::fallback(std::string_view model) {
  const FallbackConfig& config = impl_->config.fallback;
  if (!config.enabled) return unavailable("the fallback server is disabled");
  if (!config.factory && config.model_repositories.empty()) {
    return unavailable("no fallback server: no model repository given (fallback.model_repositories "
                       "or $BEAMLINE_MODEL_REPOSITORY)");
  }
  std::unique_lock lock(impl_->mutex);
  if (!impl_->fallback_attempted) {
    impl_->fallback_requested = true;
    impl_->health_wake.notify_all();
  }
  impl_->fallback_done.wait(lock, [this] {
    return impl_->stopping || (impl_->fallback_attempted && (impl_->fallback_index.has_value() ||
                                                             !impl_->fallback_status.isOk()));
  });
  if (!impl_->fallback_index) {
    return impl_->fallback_status.isOk() ? unavailable("the registry is stopping")
                                         : impl_->fallback_status;
  }
  const size_t index = *impl_->fallback_index;
  const Server& server = *impl_->servers[index];
  if (!server.serves(model)) {
    return notFound("the fallback server does not serve model '" + std::string(model) + "'");
  }
  return Selection{server.endpoint, index, true};
}

bool ServerRegistry::fallbackRunning() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->fallback_index.has_value();
}

void ServerRegistry::callStarted(size_t index, std::string_view model) {
  std::lock_guard lock(impl_->mutex);
  Server& server = *impl_->servers.at(index);
  ++server.outstanding;
  auto found = server.load.find(model);
  if (found == server.load.end()) found = server.load.emplace(std::string(model), Server::ModelLoad{}).first;
  ++found->second.outstanding;
}

void ServerRegistry::callFinished(size_t index, std::string_view model, const Status& status,
                                  const CallReport& report, std::chrono::nanoseconds latency) {
  bool mark = false;
  {
    std::lock_guard lock(impl_->mutex);
    Server& server = *impl_->servers.at(index);
    if (server.outstanding > 0) --server.outstanding;
    auto found = server.load.find(model);
    if (found != server.load.end()) {
      auto& load = found->second;
      if (load.outstanding > 0) --load.outstanding;
      if (status.isOk()) {
        const double us = std::chrono::duration<double, std::micro>(latency).count();
        const double w = impl_->config.health.latency_weight;
        load.latency_us = load.latency_us == 0 ? us : (1 - w) * load.latency_us + w * us;
      }
    }
    mark = report.unreachable && server.healthy;
  }
  if (mark) markUnhealthy(index, status.message());
}

void ServerRegistry::markUnhealthy(size_t index, std::string_view why) {
  std::lock_guard lock(impl_->mutex);
  Server& server = *impl_->servers.at(index);
  if (!server.healthy) return;
  server.healthy = false;
  server.backoff = impl_->config.health.initial_backoff;
  server.next_probe = Clock::now() + server.backoff;
  log(logger_, LogLevel::kWarning,
      "server " + server.name + " marked unhealthy: " + std::string(why) + "; probing again in " +
          std::to_string(server.backoff.count()) + " ms");
  impl_->health_wake.notify_all();
}

void ServerRegistry::post(std::function<void()> task) { impl_->pool->post(std::move(task)); }

std::vector<ServerRegistry::ServerState> ServerRegistry::servers() const {
  std::lock_guard lock(impl_->mutex);
  std::vector<ServerState> out;
  for (const auto& server : impl_->servers) {
    out.push_back(ServerState{server->name, server->healthy, server->fallback, server->outstanding,
                              server->models});
  }
  return out;
}

}  // namespace beamline::client
