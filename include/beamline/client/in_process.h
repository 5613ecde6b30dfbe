// The in-process endpoint: the client API executing through beamline's server core linked into
// this process (beamline::Server::create + Server::infer with a ResponseSink), with no network
// and no serialization. Inputs are passed as views of the request's buffers; outputs are written
// by the backend straight into the result.
//
// Library: beamline_client_inprocess (links beamline_core); the rest of the client does not need
// the core. Use it as one of ServerRegistry::Config::endpoints, or as the fallback factory.
//
// Requests run to completion: CallOptions' deadline and compression do not apply in-process.
//
// Threads: as every Endpoint. Completions run on the model instance thread that executed the
// request (or on the caller for errors found before execution).
#pragma once

#include <memory>

#include "beamline/client/endpoint.h"
#include "beamline/core/server.h"

namespace beamline::client {

// Creates a server core over `options` (loading its models, blocking) and an endpoint on it. The
// core is stopped when the last holder of the endpoint releases it. Backend plug-ins are looked
// up in options.backend_directories, then $BEAMLINE_BACKEND_DIR, then <this executable>/../backends.
Result<std::shared_ptr<Endpoint>> createInProcessEndpoint(ServerOptions options, Logger logger = {});

// An endpoint on a core that the caller already runs (and keeps running while the endpoint lives).
std::shared_ptr<Endpoint> createInProcessEndpoint(std::shared_ptr<Server> server);

}  // namespace beamline::client
