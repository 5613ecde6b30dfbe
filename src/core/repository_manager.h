// The model repositories on disk and the models loaded from them: discovery, configs, version
// policies, load/unload/reload, the states RepositoryIndex reports, and polling for changes.
//
// Threads: thread-safe. Lookups (getModel, index) take a shared lock and never wait for a load;
// loads and unloads are serialised by their own mutex and may run on a front-end thread (load RPC)
// or on the poll thread. Ownership: owns the Model objects (shared with in-flight requests).
#pragma once

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "beamline/core/server.h"
#include "core/backend_loader.h"
#include "core/model.h"

namespace beamline {

class RepositoryManager {
 public:
  // `submit` runs a request through the server; ensembles use it for their steps.
  RepositoryManager(const ServerOptions& options, BackendRegistry& backends,
                    Ensemble::Submit submit);
  ~RepositoryManager();

  // Loads what the control mode says to load at start-up and, in poll mode, starts polling.
  // Failures of single models are recorded in the index, never returned here.
  void start();

  // The ready model version to run (`version` -1: the highest ready version).
  Result<std::shared_ptr<Model>> getModel(const std::string& name, int64_t version) const;
  // Every ready model version.
  std::vector<std::shared_ptr<Model>> readyModels() const;
  // The ready versions of a model, ascending.
  std::vector<int64_t> readyVersions(const std::string& name) const;

  std::vector<ModelIndexEntry> index(bool ready_only) const;
  bool anyLoading() const;

  // Explicit mode API (UNAVAILABLE in the other modes).
  Status load(const std::string& name, const std::optional<std::string>& config_json);
  Status unload(const std::string& name);

  // Stops polling and unloads every model, giving in-flight requests until `deadline`.
  void stop(std::chrono::steady_clock::time_point deadline);

 private:
  struct VersionRecord {
    ModelState state = ModelState::kUnknown;
    std::string reason;
    std::shared_ptr<Model> model;
  };
  struct ModelRecord {
    std::filesystem::path directory;
    ModelState state = ModelState::kUnknown;  // of the model as a whole, when no version applies
    std::string reason;
    std::map<int64_t, VersionRecord> versions;
    std::string signature;  // what the poller compares to see a change on disk
  };

  // name -> model directory, over every repository (first repository wins; a clash is an error).
  std::map<std::string, std::filesystem::path> scan(std::vector<std::string>* problems) const;
  Status loadLocked(const std::string& name, const std::filesystem::path& directory,
                    const std::optional<std::string>& config_json, int depth = 0);
  void unloadLocked(const std::string& name, std::chrono::steady_clock::time_point deadline,
                    const std::string& reason);
  void setModelState(const std::string& name, const std::filesystem::path& directory,
                     ModelState state, const std::string& reason);
  static std::string signatureOf(const std::filesystem::path& directory);
  void pollLoop();
  void pollOnce();

  const ServerOptions options_;
  BackendRegistry& backends_;
  const Ensemble::Submit submit_;

  std::mutex load_mutex_;  // serialises load/unload/poll
  mutable std::shared_mutex state_mutex_;  // guards models_
  std::map<std::string, ModelRecord> models_;

  std::mutex poll_mutex_;  // with poll_wake_ and stopping_
  std::condition_variable poll_wake_;
  bool stopping_ = false;
  std::thread poll_thread_;
};

}  // namespace beamline
