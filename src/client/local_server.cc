// LocalServer: see include/beamline/client/local_server.h.
#include "beamline/client/local_server.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace beamline::client {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

bool isExecutable(const fs::path& path) {
  std::error_code error;
  return fs::is_regular_file(path, error) && ::access(path.c_str(), X_OK) == 0;
}

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs argv with stdout+stderr captured into `output` (waits for it). For `serve --help` only.
int runCaptured(const std::vector<std::string>& args, std::string& output) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return -1;
  std::vector<char*> argv;
  for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    return -1;
  }
  if (pid == 0) {
    ::dup2(pipe_fds[1], STDOUT_FILENO);
    ::dup2(pipe_fds[1], STDERR_FILENO);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(pipe_fds[0], buffer, sizeof(buffer));
    if (n > 0) {
      output.append(buffer, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(pipe_fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string describeExit(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + strsignal(WTERMSIG(status));
  return "ended";
}

}  // namespace

std::string findServerBinary() {
  if (const char* env = std::getenv("BEAMLINE_BIN"); env != nullptr && *env != '\0') {
    if (isExecutable(env)) return env;
  }
  std::error_code error;
  const fs::path self = fs::read_symlink("/proc/self/exe", error);
  if (!error) {
    for (const fs::path& candidate :
         {self.parent_path() / "beamline", self.parent_path().parent_path() / "bin" / "beamline"}) {
      if (isExecutable(candidate)) return candidate.string();
    }
  }
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    std::string_view rest(path);
    while (!rest.empty()) {
      const size_t colon = rest.find(':');
      const std::string_view dir = rest.substr(0, colon);
      if (!dir.empty() && isExecutable(fs::path(dir) / "beamline")) {
        return (fs::path(dir) / "beamline").string();
      }
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  }
  return "";
}

Result<std::unique_ptr<LocalServer>> LocalServer::start(Config config, Logger logger) {
  if (config.model_repositories.empty()) {
    return invalidArg("the local server needs at least one model repository");
  }
  if (config.binary.empty()) config.binary = findServerBinary();
  if (config.binary.empty()) {
    return notFound("no beamline server binary found (set $BEAMLINE_BIN, or put beamline next to "
                    "this program or on PATH)");
  }
  std::unique_ptr<LocalServer> server(new LocalServer(std::move(config), std::move(logger)));
  BL_RETURN_IF_ERROR(server->launch());
  return server;
}

Status LocalServer::launch() {
  // Log folder.
  if (config_.log_directory.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") +
                          "/beamline_local_server_XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      return internalError("mkdtemp(" + pattern + "): " + std::strerror(errno));
    }
    log_directory_ = pattern;
    own_log_directory_ = true;
  } else {
    log_directory_ = config_.log_directory;
    std::error_code error;
    fs::create_directories(log_directory_, error);
  }
  const std::string stdout_path = log_directory_ + "/server.stdout";
  const std::string stderr_path = log_directory_ + "/server.stderr";

  std::vector<std::string> args = {config_.binary, "serve"};
  for (const auto& repository : config_.model_repositories) {
    args.push_back("--model-repository");
    args.push_back(repository);
  }
  for (const char* flag : {"--grpc-address=127.0.0.1", "--grpc-port=0", "--http-port=-1",
                           "--metrics-port=-1", "--exit-timeout-secs=5"}) {
    args.emplace_back(flag);
  }
  if (!config_.backend_directory.empty()) {
    args.push_back("--backend-directory");
    args.push_back(config_.backend_directory);
  }
  if (config_.allow_client_shm) {
    std::string help;
    runCaptured({config_.binary, "serve", "--help"}, help);
    if (help.find("--allow-client-shm") != std::string::npos) {
      args.emplace_back("--allow-client-shm=true");
    } else {
      log(logger_, LogLevel::kInfo,
          "local server: " + config_.binary + " has no --allow-client-shm; shared memory off");
    }
  }
  args.insert(args.end(), config_.extra_args.begin(), config_.extra_args.end());

  // Everything the child needs is prepared before fork(): after it, only async-signal-safe calls.
  std::vector<char*> argv;
  for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  const int out_fd = ::open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int err_fd = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out_fd < 0 || err_fd < 0) {
    if (out_fd >= 0) ::close(out_fd);
    if (err_fd >= 0) ::close(err_fd);
    return internalError("cannot create the local server's log files in " + log_directory_);
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int error = errno;
    ::close(out_fd);
    ::close(err_fd);
    return internalError(std::string("fork: ") + std::strerror(error));
  }
  if (pid == 0) {
    // The child: die with the parent (SIGTERM drains), keep terminal signals away (a process group
    // of its own: Ctrl-C reaches the parent, whose death then stops the server).
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);  // the parent died before prctl
    ::setpgid(0, 0);
    ::dup2(out_fd, STDOUT_FILENO);
    ::dup2(err_fd, STDERR_FILENO);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out_fd);
  ::close(err_fd);
  pid_ = pid;
  log(logger_, LogLevel::kInfo,
      "local server: started " + config_.binary + " (pid " + std::to_string(pid) + "), logs in " +
          log_directory_);

  // Wait for "beamline ready grpc=HOST:PORT".
  const auto deadline = Clock::now() + config_.start_timeout;
  for (;;) {
    const std::string out = readFile(stdout_path);
    const size_t ready = out.find("beamline ready");
    if (ready != std::string::npos) {
      const size_t line_end = out.find('\n', ready);
      if (line_end != std::string::npos) {
        const std::string line = out.substr(ready, line_end - ready);
        const size_t grpc = line.find("grpc=");
        if (grpc == std::string::npos) {
          Status stopped = stop();
          (void)stopped;  // the error below says more
          return internalError("local server ready line has no gRPC endpoint: " + line);
        }
        const size_t end = line.find(' ', grpc);
        address_ = line.substr(grpc + 5, end == std::string::npos ? end : end - grpc - 5);
        log(logger_, LogLevel::kInfo, "local server ready at " + address_);
        return Status::ok();
      }
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_status_ = status;
      pid_ = -1;
      own_log_directory_ = false;  // keep the logs of a failed server
      return unavailable("local server " + describeExit(status) + " before it was ready (logs in " +
                         log_directory_ + "):\n" + logTail());
    }
    if (Clock::now() > deadline) {
      own_log_directory_ = false;
      Status stopped = stop();
      (void)stopped;
      return unavailable("local server not ready within " +
                         std::to_string(config_.start_timeout.count()) + " ms (logs in " +
                         log_directory_ + "):\n" + logTail());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

bool LocalServer::running() const {
  return pid_ > 0 && ::kill(pid_, 0) == 0;
}

Status LocalServer::stop() {
  if (pid_ <= 0) {
    return exit_status_ < 0 || (WIFEXITED(exit_status_) && WEXITSTATUS(exit_status_) == 0)
               ? Status::ok()
               : unavailable("local server " + describeExit(exit_status_));
  }
  ::kill(pid_, SIGTERM);
  const auto deadline = Clock::now() + config_.stop_timeout;
  int status = 0;
  bool exited = false;
  while (Clock::now() < deadline) {
    const pid_t done = ::waitpid(pid_, &status, WNOHANG);
    if (done == pid_ || (done < 0 && errno == ECHILD)) {
      exited = done == pid_;
      if (done < 0) status = 0;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Status result;
  if (!exited && ::waitpid(pid_, &status, WNOHANG) != pid_) {
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    result = unavailable("local server did not stop within " +
                         std::to_string(config_.stop_timeout.count()) + " ms; killed");
  }
  exit_status_ = status;
  pid_ = -1;
  if (result.isOk() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    result = unavailable("local server " + describeExit(status));
  }
  if (result.isOk()) {
    log(logger_, LogLevel::kInfo, "local server stopped");
    if (own_log_directory_) {
      std::error_code error;
      fs::remove_all(log_directory_, error);
    }
  } else {
    log(logger_, LogLevel::kWarning,
        result.message() + " (logs in " + log_directory_ + "):\n" + logTail());
  }
  return result;
}

LocalServer::~LocalServer() {
  Status stopped = stop();
  (void)stopped;
}

std::string LocalServer::logTail(size_t max_bytes) const {
  std::string text = readFile(log_directory_ + "/server.stderr");
  if (text.size() > max_bytes) text = "..." + text.substr(text.size() - max_bytes);
  return text;
}

}  // namespace beamline::client
