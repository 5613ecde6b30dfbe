// LocalServer: a `beamline serve` child process on free loopback ports, the client's fallback when
// no configured server serves a model (SonicTriton's fallback server, without containers).
//
// start() forks and execs the server with `--grpc-port 0`, waits for its ready line
// ("beamline ready grpc=HOST:PORT ...") and returns its address; the destructor (or stop()) sends
// SIGTERM, waits for the drain, and kills it if it does not exit in time. The child asks the
// kernel for SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG), so it never outlives a
// crashed client. The kernel sends that signal when the *thread* that forked exits: start() must
// run on a thread that lives as long as the server should (ServerRegistry starts it on its
// health thread). When a whole client process is killed the server may get the signal more than
// once and then exits without draining: nobody is left to wait for its answers.
//
// Threads: start() blocks its caller until the server is ready or the start timeout passes.
// stop() and the accessors may be called from any thread, not concurrently with each other.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "beamline/client/logger.h"
#include "beamline/core/status.h"

namespace beamline::client {

class LocalServer {
 public:
  struct Config {
    // The `beamline` executable; empty: findServerBinary().
    std::string binary;
    std::vector<std::string> model_repositories;  // at least one
    // Passed as --backend-directory when not empty.
    std::string backend_directory;
    // Allow client shared memory (--allow-client-shm true) when the server knows the flag.
    bool allow_client_shm = true;
    // More `beamline serve` flags.
    std::vector<std::string> extra_args;
    std::chrono::milliseconds start_timeout = std::chrono::seconds(120);
    // How long stop() waits after SIGTERM before SIGKILL.
    std::chrono::milliseconds stop_timeout = std::chrono::seconds(15);
    // Where the child's stdout/stderr go; empty: a fresh folder under $TMPDIR, removed by stop()
    // unless the server failed.
    std::string log_directory;
  };

  static Result<std::unique_ptr<LocalServer>> start(Config config, Logger logger = {});
  ~LocalServer();
  LocalServer(const LocalServer&) = delete;
  LocalServer& operator=(const LocalServer&) = delete;

  // "127.0.0.1:PORT" of the gRPC endpoint.
  const std::string& address() const { return address_; }
  pid_t pid() const { return pid_; }
  bool running() const;
  // SIGTERM, wait up to stop_timeout, then SIGKILL. OK when the server exited 0. Idempotent.
  Status stop();
  // The last `max_bytes` of the server's stderr, for error messages.
  std::string logTail(size_t max_bytes = 4000) const;

 private:
  LocalServer(Config config, Logger logger) : config_(std::move(config)), logger_(std::move(logger)) {}
  Status launch();

  Config config_;
  Logger logger_;
  pid_t pid_ = -1;
  int exit_status_ = -1;
  bool own_log_directory_ = false;
  std::string log_directory_;
  std::string address_;
};

// The server binary: $BEAMLINE_BIN, else `beamline` next to this executable or in ../bin of it,
// else `beamline` on PATH. Empty when none exists.
std::string findServerBinary();

}  // namespace beamline::client
