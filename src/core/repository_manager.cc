#include "core/repository_manager.h"

#include <algorithm>
#include <sstream>

#include <spdlog/spdlog.h>

#include "core/model_config.h"
#include "core/version_policy.h"

namespace beamline {
namespace fs = std::filesystem;

namespace {

// The plug-in that serves a config: `backend`, or the one a known `platform` maps to.
Result<std::string> backendNameFor(const inference::ModelConfig& config) {
  if (!config.backend().empty()) return config.backend();
  if (config.platform() == "pytorch_libtorch") return std::string("pytorch");
  return invalidArg("model '" + config.name() + "': no backend for platform '" + config.platform() +
                    "'");
}

std::chrono::steady_clock::time_point deadlineIn(std::chrono::seconds s) {
  return std::chrono::steady_clock::now() + s;
}

}  // namespace

RepositoryManager::RepositoryManager(const ServerOptions& options, BackendRegistry& backends,
                                     Ensemble::Submit submit)
    : options_(options), backends_(backends), submit_(std::move(submit)) {}

RepositoryManager::~RepositoryManager() { stop(std::chrono::steady_clock::now()); }

std::map<std::string, fs::path> RepositoryManager::scan(std::vector<std::string>* problems) const {
  std::map<std::string, fs::path> found;
  for (const auto& repository : options_.model_repositories) {
    std::error_code ec;
    fs::directory_iterator it(repository, ec);
    if (ec) {
      if (problems != nullptr) {
        problems->push_back("cannot read model repository " + repository + ": " + ec.message());
      }
      continue;
    }
    for (const auto& entry : it) {
      const std::string name = entry.path().filename().string();
      if (name.empty() || name[0] == '.' || !entry.is_directory(ec)) continue;
      auto [existing, inserted] = found.emplace(name, entry.path());
      if (!inserted && problems != nullptr) {
        problems->push_back("model '" + name + "' is in two repositories (" +
                            existing->second.string() + " and " + entry.path().string() +
                            "); using the first");
      }
    }
  }
  return found;
}

std::string RepositoryManager::signatureOf(const fs::path& directory) {
  // Names, sizes and modification times of the config and of every file one level inside each
  // version directory: enough to notice an edited config or a replaced model file.
  std::ostringstream out;
  std::error_code ec;
  std::vector<fs::path> paths;
  for (fs::recursive_directory_iterator it(directory, ec), end; !ec && it != end; it.increment(ec)) {
    if (it.depth() > 2) {
      it.disable_recursion_pending();
      continue;
    }
    paths.push_back(it->path());
  }
  std::sort(paths.begin(), paths.end());
  for (const auto& path : paths) {
    std::error_code e;
    const auto time = fs::last_write_time(path, e).time_since_epoch().count();
    const auto size = fs::is_regular_file(path, e) ? fs::file_size(path, e) : 0;
    out << path.lexically_relative(directory).string() << ':' << size << ':' << time << ';';
  }
  return out.str();
}

void RepositoryManager::setModelState(const std::string& name, const fs::path& directory,
                                      ModelState state, const std::string& reason) {
  std::unique_lock lock(state_mutex_);
  ModelRecord& record = models_[name];
  record.directory = directory;
  record.state = state;
  record.reason = reason;
}

void RepositoryManager::start() {
  std::vector<std::string> problems;
  auto found = scan(&problems);
  for (const auto& problem : problems) spdlog::warn("{}", problem);
  if (found.empty()) spdlog::warn("no models found in the model repositories");

  std::vector<std::string> to_load;
  if (options_.control_mode == ModelControlMode::kExplicit) {
    for (const auto& name : options_.startup_models) {
      if (name == "*") {
        for (const auto& [n, dir] : found) to_load.push_back(n);
      } else {
        to_load.push_back(name);
      }
    }
    // Everything else is listed in the index as not loaded.
    for (const auto& [name, dir] : found) {
      if (std::find(to_load.begin(), to_load.end(), name) == to_load.end()) {
        setModelState(name, dir, ModelState::kUnavailable, "not loaded");
      }
    }
  } else {
    for (const auto& [name, dir] : found) to_load.push_back(name);
  }
  std::sort(to_load.begin(), to_load.end());
  to_load.erase(std::unique(to_load.begin(), to_load.end()), to_load.end());

  std::lock_guard load_lock(load_mutex_);
  for (const auto& name : to_load) {
    auto it = found.find(name);
    if (it == found.end()) {
      spdlog::error("cannot load model '{}': it is in none of the model repositories", name);
      setModelState(name, fs::path(), ModelState::kUnavailable,
                    "not found in the model repositories");
      continue;
    }
    Status status = loadLocked(name, it->second, std::nullopt);
    if (!status.isOk()) spdlog::error("{}", status.message());
  }
  if (options_.control_mode == ModelControlMode::kPoll) {
    poll_thread_ = std::thread([this] { pollLoop(); });
  }
}

Status RepositoryManager::loadLocked(const std::string& name, const fs::path& directory,
                                     const std::optional<std::string>& config_json, int depth) {
  const std::string signature = signatureOf(directory);
  bool has_ready = false;
  {
    std::shared_lock lock(state_mutex_);
    if (auto it = models_.find(name); it != models_.end()) {
      for (const auto& [v, record] : it->second.versions) {
        has_ready = has_ready || record.state == ModelState::kReady;
      }
    }
  }
  // A failed reload keeps the versions that serve now; a failed first load is recorded.
  auto fail = [&](const Status& status) {
    const std::string reason = status.message();
    if (has_ready) {
      spdlog::error("reloading model '{}' failed, the loaded versions keep serving: {}", name,
                    reason);
      std::unique_lock lock(state_mutex_);
      models_[name].signature = signature;
    } else {
      std::unique_lock lock(state_mutex_);
      ModelRecord& record = models_[name];
      record.directory = directory;
      record.state = ModelState::kUnavailable;
      record.reason = reason;
      record.signature = signature;
      for (auto& [v, version] : record.versions) {
        version.state = ModelState::kUnavailable;
        version.reason = reason;
      }
    }
    return Status(status.code(), "failed to load model '" + name + "': " + reason);
  };

  const fs::path config_path = directory / "config.pbtxt";
  Result<inference::ModelConfig> parsed =
      config_json ? parseModelConfigJson(*config_json, "the config parameter of the load request")
                  : parseModelConfigFile(config_path);
  if (!parsed.isOk()) return fail(parsed.status());
  auto config = std::make_shared<inference::ModelConfig>(std::move(parsed).value());
  if (Status s = normalizeAndValidateModelConfig(*config, name,
                                                 config_json ? "load request" : config_path.string());
      !s.isOk()) {
    return fail(s);
  }
  auto available = listVersionDirectories(directory);
  if (!available.isOk()) return fail(available.status());
  const std::vector<int64_t> selected = selectVersions(config->version_policy(), *available);
  if (selected.empty()) {
    return fail(unavailable("no version directory of " + directory.string() +
                            " matches the version policy (found " +
                            std::to_string(available->size()) + " numeric version directories)"));
  }
  std::shared_ptr<Backend> backend;
  if (config->platform() == "ensemble") {
    // The steps' models are loaded first when they are not (explicit mode loads dependencies).
    if (depth > 8) return fail(invalidArg("ensembles nested deeper than 8 levels"));
    auto found = scan(nullptr);
    for (const auto& step : config->ensemble_scheduling().step()) {
      bool ready = false;
      {
        std::shared_lock lock(state_mutex_);
        auto it = models_.find(step.model_name());
        ready = it != models_.end() && it->second.state == ModelState::kReady;
      }
      if (ready || step.model_name() == name) continue;
      auto dir = found.find(step.model_name());
      if (dir == found.end()) {
        return fail(notFound("ensemble step model '" + step.model_name() +
                             "' is not in the model repositories"));
      }
      if (Status s = loadLocked(step.model_name(), dir->second, std::nullopt, depth + 1); !s.isOk()) {
        return fail(Status(s.code(), "ensemble step: " + s.message()));
      }
    }
  } else {
    auto backend_name = backendNameFor(*config);
    if (!backend_name.isOk()) return fail(backend_name.status());
    auto opened = backends_.get(*backend_name);
    if (!opened.isOk()) return fail(opened.status());
    backend = std::move(opened).value();
  }

  {
    std::unique_lock lock(state_mutex_);
    ModelRecord& record = models_[name];
    record.directory = directory;
    record.state = ModelState::kLoading;
    record.reason.clear();
    for (int64_t v : selected) {
      VersionRecord& version = record.versions[v];
      if (version.state != ModelState::kReady) {
        version.state = ModelState::kLoading;
        version.reason.clear();
      }
    }
  }
  std::shared_ptr<const inference::ModelConfig> shared_config = config;
  std::map<int64_t, VersionRecord> loaded;
  std::string failures;
  for (int64_t v : selected) {
    const auto started = std::chrono::steady_clock::now();
    auto model = Model::create(shared_config, v, directory / std::to_string(v), backend, submit_);
    VersionRecord record;
    if (model.isOk()) {
      record.state = ModelState::kReady;
      record.model = std::move(model).value();
      record.model->setLoadDuration(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
      spdlog::info("loaded model '{}' version {} in {:.3f} s", name, v,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    } else {
      record.state = ModelState::kUnavailable;
      record.reason = model.status().message();
      failures += (failures.empty() ? "" : "; ") + ("version " + std::to_string(v) + ": " +
                                                   record.reason);
      spdlog::error("failed to load model '{}' version {}: {}", name, v, record.reason);
    }
    loaded.emplace(v, std::move(record));
  }

  // Publish the new versions; versions no longer selected are unloaded after the swap.
  std::vector<std::shared_ptr<Model>> retired;
  {
    std::unique_lock lock(state_mutex_);
    ModelRecord& record = models_[name];
    for (auto& [v, version] : record.versions) {
      if (version.model) retired.push_back(version.model);
    }
    record.versions = std::move(loaded);
    record.state = failures.empty() ? ModelState::kReady : ModelState::kUnavailable;
    record.reason = failures;
    record.signature = signature;
  }
  for (auto& old : retired) old->shutdown(deadlineIn(options_.exit_timeout));
  if (!failures.empty()) {
    return Status(StatusCode::kInvalidArg, "failed to load model '" + name + "': " + failures);
  }
  return Status::ok();
}

void RepositoryManager::unloadLocked(const std::string& name,
                                     std::chrono::steady_clock::time_point deadline,
                                     const std::string& reason) {
  std::vector<std::shared_ptr<Model>> models;
  {
    std::unique_lock lock(state_mutex_);
    auto it = models_.find(name);
    if (it == models_.end()) return;
    for (auto& [v, version] : it->second.versions) {
      if (version.model) {
        version.state = ModelState::kUnloading;
        models.push_back(version.model);
      }
    }
  }
  for (auto& model : models) model->shutdown(deadline);
  std::unique_lock lock(state_mutex_);
  auto it = models_.find(name);
  if (it == models_.end()) return;
  it->second.state = ModelState::kUnavailable;
  it->second.reason = reason;
  for (auto& [v, version] : it->second.versions) {
    version.model.reset();
    version.state = ModelState::kUnavailable;
    version.reason = reason;
  }
}

Status RepositoryManager::load(const std::string& name,
                               const std::optional<std::string>& config_json) {
  if (options_.control_mode != ModelControlMode::kExplicit) {
    return unavailable(
        "explicit model load / unload is not allowed unless the server runs with "
        "--model-control-mode=explicit");
  }
  std::lock_guard load_lock(load_mutex_);
  auto found = scan(nullptr);
  auto it = found.find(name);
  if (it == found.end()) {
    return notFound("failed to load model '" + name + "': no directory '" + name +
                    "' in the model repositories");
  }
  return loadLocked(name, it->second, config_json);
}

Status RepositoryManager::unload(const std::string& name) {
  if (options_.control_mode != ModelControlMode::kExplicit) {
    return unavailable(
        "explicit model load / unload is not allowed unless the server runs with "
        "--model-control-mode=explicit");
  }
  std::lock_guard load_lock(load_mutex_);
  {
    std::shared_lock lock(state_mutex_);
    if (models_.find(name) == models_.end()) {
      return notFound("failed to unload model '" + name + "': no such model");
    }
  }
  unloadLocked(name, deadlineIn(options_.exit_timeout), "unloaded");
  return Status::ok();
}

void RepositoryManager::pollLoop() {
  std::unique_lock lock(poll_mutex_);
  while (!stopping_) {
    if (poll_wake_.wait_for(lock, options_.repository_poll_interval, [this] { return stopping_; })) {
      break;
    }
    lock.unlock();
    pollOnce();
    lock.lock();
  }
}

void RepositoryManager::pollOnce() {
  std::lock_guard load_lock(load_mutex_);
  auto found = scan(nullptr);
  std::vector<std::string> gone;
  std::vector<std::pair<std::string, fs::path>> changed;
  {
    std::shared_lock lock(state_mutex_);
    for (const auto& [name, record] : models_) {
      if (found.find(name) == found.end()) gone.push_back(name);
    }
    for (const auto& [name, dir] : found) {
      auto it = models_.find(name);
      if (it == models_.end() || it->second.signature != signatureOf(dir)) {
        changed.emplace_back(name, dir);
      }
    }
  }
  for (const auto& name : gone) {
    spdlog::info("model '{}' was removed from the repository; unloading it", name);
    unloadLocked(name, deadlineIn(options_.exit_timeout), "removed from the repository");
    std::unique_lock lock(state_mutex_);
    models_.erase(name);
  }
  for (const auto& [name, dir] : changed) {
    spdlog::info("model '{}' changed on disk; (re)loading it", name);
    Status status = loadLocked(name, dir, std::nullopt);
    if (!status.isOk()) spdlog::error("{}", status.message());
  }
}

void RepositoryManager::stop(std::chrono::steady_clock::time_point deadline) {
  {
    std::lock_guard lock(poll_mutex_);
    stopping_ = true;
  }
  poll_wake_.notify_all();
  if (poll_thread_.joinable()) poll_thread_.join();
  std::lock_guard load_lock(load_mutex_);
  std::vector<std::string> names;
  {
    std::shared_lock lock(state_mutex_);
    for (const auto& [name, record] : models_) names.push_back(name);
  }
  for (const auto& name : names) unloadLocked(name, deadline, "server stopped");
}

Result<std::shared_ptr<Model>> RepositoryManager::getModel(const std::string& name,
                                                           int64_t version) const {
  std::shared_lock lock(state_mutex_);
  auto it = models_.find(name);
  if (it == models_.end()) {
    return notFound("Request for unknown model: '" + name + "' is not found");
  }
  const ModelRecord& record = it->second;
  if (version < 0) {
    for (auto v = record.versions.rbegin(); v != record.versions.rend(); ++v) {
      if (v->second.state == ModelState::kReady && v->second.model) return v->second.model;
    }
    return unavailable("model '" + name + "' has no ready version" +
                       (record.reason.empty() ? std::string() : ": " + record.reason));
  }
  auto v = record.versions.find(version);
  if (v == record.versions.end()) {
    return notFound("Request for unknown model: '" + name + "' version " + std::to_string(version) +
                    " is not found");
  }
  if (v->second.state != ModelState::kReady || !v->second.model) {
    return unavailable("model '" + name + "' version " + std::to_string(version) +
                       " is not ready (" + std::string(modelStateName(v->second.state)) +
                       (v->second.reason.empty() ? "" : ": " + v->second.reason) + ")");
  }
  return v->second.model;
}

std::vector<std::shared_ptr<Model>> RepositoryManager::readyModels() const {
  std::vector<std::shared_ptr<Model>> result;
  std::shared_lock lock(state_mutex_);
  for (const auto& [name, record] : models_) {
    for (const auto& [v, version] : record.versions) {
      if (version.state == ModelState::kReady && version.model) result.push_back(version.model);
    }
  }
  return result;
}

std::vector<int64_t> RepositoryManager::readyVersions(const std::string& name) const {
  std::vector<int64_t> result;
  std::shared_lock lock(state_mutex_);
  if (auto it = models_.find(name); it != models_.end()) {
    for (const auto& [v, version] : it->second.versions) {
      if (version.state == ModelState::kReady) result.push_back(v);
    }
  }
  return result;
}

std::vector<ModelIndexEntry> RepositoryManager::index(bool ready_only) const {
  std::vector<ModelIndexEntry> entries;
  std::shared_lock lock(state_mutex_);
  for (const auto& [name, record] : models_) {
    if (record.versions.empty()) {
      if (!ready_only) entries.push_back({name, "", record.state, record.reason});
      continue;
    }
    for (const auto& [v, version] : record.versions) {
      if (ready_only && version.state != ModelState::kReady) continue;
      entries.push_back({name, std::to_string(v), version.state, version.reason});
    }
  }
  return entries;
}

bool RepositoryManager::anyLoading() const {
  std::shared_lock lock(state_mutex_);
  for (const auto& [name, record] : models_) {
    for (const auto& [v, version] : record.versions) {
      if (version.state == ModelState::kLoading) return true;
    }
  }
  return false;
}

}  // namespace beamline
