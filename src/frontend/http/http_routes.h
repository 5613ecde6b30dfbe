// The KServe v2 / Triton REST routes: which endpoint a method and path name, with the model,
// version and region taken from the path. Path patterns follow Triton's http_server.cc (a version
// segment is decimal digits). Pure functions; any thread.
#pragma once

#include <string>
#include <string_view>

namespace beamline::frontend::http {

enum class Endpoint {
  kHealthLive,                    // GET  /v2/health/live
  kHealthReady,                   // GET  /v2/health/ready
  kServerMetadata,                // GET  /v2
  kModelMetadata,                 // GET  /v2/models/M[/versions/V]
  kModelReady,                    // GET  .../ready
  kModelConfig,                   // GET  .../config
  kModelStatistics,               // GET  .../stats, /v2/models/stats (no model)
  kModelInfer,                    // POST .../infer
  kModelGenerate,                 // POST .../generate, .../generate_stream
  kModelTrace,                    // GET/POST /v2/models/M/trace/setting
  kRepositoryIndex,               // POST /v2/repository[/R]/index
  kRepositoryLoad,                // POST /v2/repository[/R]/models/M/load
  kRepositoryUnload,              // POST /v2/repository[/R]/models/M/unload
  kSystemSharedMemoryStatus,      // GET  /v2/systemsharedmemory[/region/R]/status
  kSystemSharedMemoryRegister,    // POST /v2/systemsharedmemory/region/R/register
  kSystemSharedMemoryUnregister,  // POST /v2/systemsharedmemory[/region/R]/unregister
  kCudaSharedMemoryStatus,        // the same under /v2/cudasharedmemory
  kCudaSharedMemoryRegister,
  kCudaSharedMemoryUnregister,
  kTrace,    // GET/POST /v2/trace/setting
  kLogging,  // GET/POST /v2/logging
};

struct Route {
  Endpoint endpoint = Endpoint::kHealthLive;
  std::string model;       // empty when the path names none
  std::string version;     // empty: by policy
  std::string region;      // shared-memory region, empty: all
  std::string repository;  // /v2/repository/<R>/..., empty when not given
};

struct RouteMatch {
  enum class Outcome { kFound, kNotFound, kMethodNotAllowed } outcome = Outcome::kNotFound;
  Route route;
};

// `path` without the query string.
RouteMatch matchRoute(std::string_view method, std::string_view path);

}  // namespace beamline::frontend::http
