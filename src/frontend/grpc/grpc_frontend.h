// The KServe v2 / Triton gRPC front end (service inference.GRPCInferenceService, plus
// grpc.health.v1.Health) on one port. It only translates between wire messages and the core's
// Server calls; it holds no model, repository or scheduling logic.
//
// Threads: requests are handled on gRPC's callback-API executor (a fixed pool owned by gRPC; no
// thread per request or per connection). Responses are finished from whichever thread completes
// the request (a model instance thread). Ownership: the front end borrows the Server, which must
// outlive it.
#pragma once

#include <chrono>
#include <climits>
#include <memory>
#include <string>

#include "beamline/core/server.h"
#include "beamline/core/status.h"

namespace beamline::frontend {

struct GrpcFrontendOptions {
  std::string address = "0.0.0.0";
  int port = 8001;  // 0: any free port (see GrpcFrontend::port())
  // Largest message accepted and sent; Triton's default is 2 GiB - 1.
  int max_message_bytes = INT_MAX;
};

class GrpcFrontend {
 public:
  static Result<std::unique_ptr<GrpcFrontend>> start(Server& server, GrpcFrontendOptions options);
  virtual ~GrpcFrontend() = default;

  // The bound port (the chosen one when options.port was 0).
  virtual int port() const = 0;

  // Stops accepting calls, lets in-flight calls finish until `deadline`, then cancels the rest and
  // waits for the handlers to return. Idempotent.
  virtual void shutdown(std::chrono::system_clock::time_point deadline) = 0;
};

}  // namespace beamline::frontend
