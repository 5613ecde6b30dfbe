#include "frontend/http/http_routes.h"

#include <algorithm>
#include <cctype>
#include <vector>

namespace beamline::frontend::http {
namespace {

std::vector<std::string_view> splitPath(std::string_view path) {
  std::vector<std::string_view> segments;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    const size_t slash = path.find('/');
    segments.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash);
  }
  return segments;
}

bool isVersion(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

enum class Methods { kGet, kPost, kGetOrPost };

RouteMatch found(std::string_view method, Methods allowed, Route route) {
  const bool ok = (allowed == Methods::kGet && method == "GET") ||
                  (allowed == Methods::kPost && method == "POST") ||
                  (allowed == Methods::kGetOrPost && (method == "GET" || method == "POST"));
  RouteMatch match;
  match.outcome = ok ? RouteMatch::Outcome::kFound : RouteMatch::Outcome::kMethodNotAllowed;
  match.route = std::move(route);
  return match;
}

Route make(Endpoint endpoint, std::string_view model = {}, std::string_view version = {},
           std::string_view region = {}, std::string_view repository = {}) {
  Route route;
  route.endpoint = endpoint;
  route.model = std::string(model);
  route.version = std::string(version);
  route.region = std::string(region);
  route.repository = std::string(repository);
  return route;
}

// /v2/models/...
RouteMatch matchModels(std::string_view method, const std::vector<std::string_view>& s) {
  // s[0] == "v2", s[1] == "models"
  if (s.size() == 3 && s[2] == "stats") {
    return found(method, Methods::kGet, make(Endpoint::kModelStatistics));
  }
  if (s.size() < 3) return {};
  const std::string_view model = s[2];
  size_t next = 3;
  std::string_view version;
  if (s.size() >= 5 && s[3] == "versions") {
    if (!isVersion(s[4])) return {};
    version = s[4];
    next = 5;
  }
  const size_t rest = s.size() - next;
  if (rest == 0)
    return found(method, Methods::kGet, make(Endpoint::kModelMetadata, model, version));
  if (rest == 2 && s[next] == "trace" && s[next + 1] == "setting" && version.empty()) {
    return found(method, Methods::kGetOrPost, make(Endpoint::kModelTrace, model));
  }
  if (rest != 1) return {};
  const std::string_view action = s[next];
  if (action == "ready")
    return found(method, Methods::kGet, make(Endpoint::kModelReady, model, version));
  if (action == "config") {
    return found(method, Methods::kGet, make(Endpoint::kModelConfig, model, version));
  }
  if (action == "stats") {
    return found(method, Methods::kGet, make(Endpoint::kModelStatistics, model, version));
  }
  if (action == "infer")
    return found(method, Methods::kPost, make(Endpoint::kModelInfer, model, version));
  if (action == "generate" || action == "generate_stream") {
    return found(method, Methods::kPost, make(Endpoint::kModelGenerate, model, version));
  }
  return {};
}

// /v2/repository[/R]/index, /v2/repository[/R]/models/M/(load|unload)
RouteMatch matchRepository(std::string_view method, const std::vector<std::string_view>& s) {
  size_t next = 2;
  std::string_view repository;
  if (s.size() > 2 && s[2] != "index" && s[2] != "models") {
    repository = s[2];
    next = 3;
  }
  const size_t rest = s.size() - next;
  if (rest == 1 && s[next] == "index") {
    return found(method, Methods::kPost, make(Endpoint::kRepositoryIndex, {}, {}, {}, repository));
  }
  if (rest == 3 && s[next] == "models") {
    const std::string_view model = s[next + 1];
    if (s[next + 2] == "load") {
      return found(method, Methods::kPost,
                   make(Endpoint::kRepositoryLoad, model, {}, {}, repository));
    }
    if (s[next + 2] == "unload") {
      return found(method, Methods::kPost,
                   make(Endpoint::kRepositoryUnload, model, {}, {}, repository));
    }
  }
  return {};
}

// /v2/(system|cuda)sharedmemory[/region/R]/(status|register|unregister)
RouteMatch matchSharedMemory(std::string_view method, const std::vector<std::string_view>& s,
                             bool cuda) {
  std::string_view region;
  size_t next = 2;
  if (s.size() >= 4 && s[2] == "region") {
    region = s[3];
    next = 4;
  }
  if (s.size() != next + 1) return {};
  const std::string_view action = s[next];
  if (action == "status") {
    return found(
        method, Methods::kGet,
        make(cuda ? Endpoint::kCudaSharedMemoryStatus : Endpoint::kSystemSharedMemoryStatus, {}, {},
             region));
  }
  if (action == "register" && !region.empty()) {
    return found(
        method, Methods::kPost,
        make(cuda ? Endpoint::kCudaSharedMemoryRegister : Endpoint::kSystemSharedMemoryRegister, {},
             {}, region));
  }
  if (action == "unregister") {
    return found(
        method, Methods::kPost,
        make(cuda ? Endpoint::kCudaSharedMemoryUnregister : Endpoint::kSystemSharedMemoryUnregister,
             {}, {}, region));
  }
  return {};
}

}  // namespace

RouteMatch matchRoute(std::string_view method, std::string_view path) {
  const std::vector<std::string_view> s = splitPath(path);
  if (s.empty() || s[0] != "v2") return {};
  if (s.size() == 1) return found(method, Methods::kGet, make(Endpoint::kServerMetadata));
  if (s[1] == "health" && s.size() == 3) {
    if (s[2] == "live") return found(method, Methods::kGet, make(Endpoint::kHealthLive));
    if (s[2] == "ready") return found(method, Methods::kGet, make(Endpoint::kHealthReady));
    return {};
  }
  if (s[1] == "models") return matchModels(method, s);
  if (s[1] == "repository") return matchRepository(method, s);
  if (s[1] == "systemsharedmemory") return matchSharedMemory(method, s, false);
  if (s[1] == "cudasharedmemory") return matchSharedMemory(method, s, true);
  if (s[1] == "trace" && s.size() == 3 && s[2] == "setting") {
    return found(method, Methods::kGetOrPost, make(Endpoint::kTrace));
  }
  if (s[1] == "logging" && s.size() == 2) {
    return found(method, Methods::kGetOrPost, make(Endpoint::kLogging));
  }
  return {};
}

}  // namespace beamline::frontend::http
