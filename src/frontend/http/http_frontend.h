// The KServe v2 / Triton HTTP/REST front end: health, metadata, configuration, inference (JSON and
// the binary tensor data extension, gzip/deflate), statistics and repository control, with Triton's
// routes, JSON shapes and status codes. It only translates between HTTP and the core's Server
// calls; it holds no model, repository or scheduling logic.
//
// Threads: requests are read, translated and answered on a fixed pool of I/O threads
// (`thread_count`; no thread per connection or request). Inference responses are completed on the
// model instance thread and serialised back on the connection's I/O thread. Repository load and
// unload, which block for the length of a load, run on one control thread of their own so that
// they never hold an I/O thread. Ownership: the front end borrows the Server, which must outlive
// it; requests in flight must be completed (Server::stop()) before the front end is destroyed.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "beamline/core/server.h"
#include "beamline/core/status.h"

namespace beamline::frontend {

struct HttpFrontendOptions {
  std::string address = "0.0.0.0";
  int port = 8000;  // 0: any free port (see HttpFrontend::port())
  // I/O threads. Everything on them is non-blocking, so more threads than cores only adds
  // contention; see `beamline serve --help` for the default.
  int thread_count = 2;
  // Largest request body, before and after decompression (Triton's --http-max-input-size).
  uint64_t max_input_bytes = 64ull << 20;
};

class HttpFrontend {
 public:
  static Result<std::unique_ptr<HttpFrontend>> start(Server& server, HttpFrontendOptions options);
  virtual ~HttpFrontend() = default;

  // The bound port (the chosen one when options.port was 0).
  virtual int port() const = 0;

  // Stops accepting connections, lets requests in flight finish until `deadline`, then closes
  // every connection and joins the threads. Idempotent; call from a thread of its own.
  virtual void shutdown(std::chrono::steady_clock::time_point deadline) = 0;
};

}  // namespace beamline::frontend
