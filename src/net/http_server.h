// A small asynchronous HTTP/1.1 server (Boost.Beast underneath, hidden from this header):
// keep-alive connections, bodies read straight into one buffer per request, gzip/deflate request
// bodies decoded and responses encoded on request, and responses written with gather I/O so that
// large payloads (tensors) go to the socket without being copied into a serialisation buffer.
//
// It knows nothing about inference: the HTTP front end and the metrics endpoint each give it a
// handler.
//
// Threads: `thread_count` I/O threads run every connection (no thread per connection); each
// connection is served by one thread at a time (a strand). The handler runs on an I/O thread and
// must not block; HttpResponder::send() may be called from any thread. Ownership: the HttpServer
// owns its threads, sockets and connections; shutdown() (or the destructor) stops them.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "beamline/core/status.h"
#include "net/byte_buffer.h"

namespace beamline::net {

// One request, with its body decoded (Content-Encoding removed).
struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query, as sent
  // Header names in lower case, in arrival order.
  std::vector<std::pair<std::string, std::string>> headers;
  ByteBuffer body;

  // The first header with this (lower-case) name.
  std::optional<std::string_view> header(std::string_view lower_case_name) const;
  // The target without its query string.
  std::string_view path() const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  std::string body;
  // Sent after `body`, in order, without copying (e.g. binary output tensors).
  std::vector<ByteBuffer> tail;
};

// A response built on an I/O thread, for work that should not run on the thread that completes a
// request (e.g. turning a large output tensor into JSON on a model instance thread).
class DeferredResponse {
 public:
  virtual ~DeferredResponse() = default;
  // Called once, on the connection's I/O thread. Must not throw.
  virtual HttpResponse build() = 0;
};

namespace detail {
class Connection;
}

// The right and duty to answer one request. Move-only; send exactly once, from any thread. A
// responder destroyed without sending answers 500, so that no client waits forever.
class HttpResponder {
 public:
  HttpResponder() = default;
  explicit HttpResponder(std::shared_ptr<detail::Connection> connection);
  HttpResponder(HttpResponder&&) noexcept = default;
  HttpResponder& operator=(HttpResponder&& other) noexcept;
  HttpResponder(const HttpResponder&) = delete;
  HttpResponder& operator=(const HttpResponder&) = delete;
  ~HttpResponder();

  void send(HttpResponse&& response);
  // The response is built by `response->build()` on the connection's I/O thread.
  void sendDeferred(std::unique_ptr<DeferredResponse> response);
  bool pending() const { return connection_ != nullptr; }

 private:
  std::shared_ptr<detail::Connection> connection_;
};

// Called on an I/O thread for every complete request. Whatever it throws is answered 500 (this is
// the one place where exceptions from request handling are caught).
using HttpHandler = std::function<void(HttpRequest&& request, HttpResponder responder)>;

struct HttpServerOptions {
  std::string address = "0.0.0.0";
  int port = 0;  // 0: any free port (see HttpServer::port())
  int thread_count = 2;
  // Largest request body accepted, before and after decompression.
  uint64_t max_body_bytes = 64ull << 20;
  // Decode gzip/deflate request bodies and honour Accept-Encoding.
  bool compression = true;
  // Names the server in logs and thread names ("http", "metrics").
  std::string name = "http";
  // Appended to size-limit errors, e.g. "Use --http-max-input-size to increase the limit."
  std::string body_limit_hint;
};

class HttpServer {
 public:
  static Result<std::unique_ptr<HttpServer>> start(HttpServerOptions options, HttpHandler handler);
  virtual ~HttpServer() = default;

  // The bound port.
  virtual int port() const = 0;
  // Requests being handled (handler called, response not yet written).
  virtual uint64_t inFlight() const = 0;

  // Stops accepting connections, closes idle ones, lets requests in flight finish until
  // `deadline` (their connections close after the response), then closes everything and joins
  // the I/O threads. Idempotent; any thread except an I/O thread.
  virtual void shutdown(std::chrono::steady_clock::time_point deadline) = 0;
};

// `{"error":"<message>"}` with JSON escaping.
std::string jsonErrorBody(std::string_view message);
// Escapes `text` as the inside of a JSON string (quotes not included) and appends it to `out`.
void appendJsonEscaped(std::string& out, std::string_view text);

}  // namespace beamline::net
