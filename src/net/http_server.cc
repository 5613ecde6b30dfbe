#include "net/http_server.h"

#include <pthread.h>

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <limits>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>

#include "net/compression.h"

namespace beamline::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// --- small helpers ------------------------------------------------------------------------------

void appendJsonEscaped(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += "\\u00";
          out += kHex[(c >> 4) & 0xf];
          out += kHex[c & 0xf];
        } else {
          out += c;
        }
    }
  }
}

std::string jsonErrorBody(std::string_view message) {
  std::string body = "{\"error\":\"";
  appendJsonEscaped(body, message);
  body += "\"}";
  return body;
}

std::optional<std::string_view> HttpRequest::header(std::string_view lower_case_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_case_name) return std::string_view(value);
  }
  return std::nullopt;
}

std::string_view HttpRequest::path() const {
  std::string_view view(target);
  return view.substr(0, view.find('?'));
}

namespace {

std::string_view toStd(beast::string_view text) { return {text.data(), text.size()}; }

// asio's transfer_all reads and writes at most 64 KiB per system call; a large tensor then costs
// dozens of reactor round trips. This asks for everything that is left.
struct TransferAll {
  size_t total;
  size_t operator()(const boost::system::error_code& ec, size_t transferred) const {
    return ec ? 0 : total - transferred;
  }
};

std::string toLower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

HttpResponse errorResponse(int status, std::string_view message) {
  HttpResponse response;
  response.status = status;
  response.body = jsonErrorBody(message);
  return response;
}

}  // namespace

// --- shared state
// ---------------------------------------------------------------------------------

namespace detail {

// Shared by the server and its connections (connections may outlive a request briefly).
// `connections` and the drain condition are guarded by `mutex`; the rest is immutable or atomic.
struct ServerCore {
  HttpServerOptions options;
  HttpHandler handler;
  std::atomic<bool> stopping{false};
  std::atomic<uint64_t> in_flight{0};
  std::mutex mutex;
  std::condition_variable drained;
  std::vector<std::weak_ptr<Connection>> connections;

  void requestStarted() { in_flight.fetch_add(1); }
  void requestFinished() {
    if (in_flight.fetch_sub(1) == 1) {
      std::lock_guard lock(mutex);
      drained.notify_all();
    }
  }
};

// One client connection. All members are touched only on the connection's strand, except through
// respond()/respondDeferred()/closeIfIdle()/forceClose(), which post to it.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket&& socket, std::shared_ptr<ServerCore> core)
      : stream_(std::move(socket)), core_(std::move(core)) {}

  void start() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] { self->readHeader(); });
  }

  void respond(HttpResponse&& response) {
    auto shared = std::make_shared<HttpResponse>(std::move(response));
    asio::post(stream_.get_executor(),
               [self = shared_from_this(), shared] { self->write(std::move(*shared)); });
  }

  void respondDeferred(std::unique_ptr<DeferredResponse> deferred) {
    std::shared_ptr<DeferredResponse> shared(std::move(deferred));
    asio::post(stream_.get_executor(), [self = shared_from_this(), shared] {
      HttpResponse response;
      try {
        response = shared->build();
      } catch (const std::exception& error) {
        spdlog::error("{}: building a response failed: {}", self->core_->options.name,
                      error.what());
        response = errorResponse(500, std::string("internal error: ") + error.what());
      }
      self->write(std::move(response));
    });
  }

  void closeIfIdle() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      if (self->idle_) self->closeNow();
    });
  }

  void forceClose() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] { self->closeNow(); });
  }

 private:
  // --- reading ---

  void readHeader() {
    request_ = HttpRequest();
    header_parser_.emplace();
    header_parser_->header_limit(64 * 1024);
    // Checked in onHeader, with a useful answer. (Not boost::none: Beast 1.74 then refuses every
    // body, as it compares the length with an empty optional.)
    header_parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    idle_ = true;
    stream_.expires_never();
    http::async_read_header(
        stream_, buffer_, *header_parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->onHeader(ec); });
  }

  void onHeader(beast::error_code ec) {
    idle_ = false;
    if (ec) {
      if (ec == http::error::end_of_stream || ec == asio::error::eof ||
          ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
          ec == beast::error::timeout) {
        closeNow();
        return;
      }
      // Malformed request line or headers: answer and close (the stream cannot be resynchronised).
      keep_alive_ = false;
      beginRequest();
      write(errorResponse(400, "malformed HTTP request: " + ec.message()));
      return;
    }
    auto& header = header_parser_->get();
    keep_alive_ = header.keep_alive() && !core_->stopping.load();
    request_.method = std::string(toStd(header.method_string()));
    request_.target = std::string(toStd(header.target()));
    request_.headers.reserve(8);
    for (const auto& field : header) {
      request_.headers.emplace_back(toLower(toStd(field.name_string())),
                                    std::string(toStd(field.value())));
    }

    if (header_parser_->chunked()) {
      chunked_parser_.emplace(std::move(*header_parser_));
      chunked_parser_->body_limit(core_->options.max_body_bytes);
      sendContinueIfExpected([self = shared_from_this()] {
        http::async_read(
            self->stream_, self->buffer_, *self->chunked_parser_,
            [self](beast::error_code read_ec, size_t) { self->onChunkedBody(read_ec); });
      });
      return;
    }
    const uint64_t length = header_parser_->content_length().value_or(0);
    if (length > core_->options.max_body_bytes) {
      // Answer at once; the body is read and dropped while closing so that the client sees the
      // answer rather than a reset connection.
      keep_alive_ = false;
      drain_limit_ = length;
      beginRequest();
      write(errorResponse(400, "the request body of " + std::to_string(length) +
                                   " bytes is larger than the limit of " +
                                   std::to_string(core_->options.max_body_bytes) + " bytes." +
                                   (core_->options.body_limit_hint.empty() ? "" : " ") +
                                   core_->options.body_limit_hint));
      return;
    }
    try {
      request_.body = ByteBuffer::uninitialized(length);
    } catch (const std::bad_alloc&) {
      keep_alive_ = false;
      beginRequest();
      write(errorResponse(
          500, "out of memory for a request body of " + std::to_string(length) + " bytes"));
      return;
    }
    // Part of the body may already be buffered behind the header.
    const size_t buffered = std::min<uint64_t>(buffer_.size(), length);
    if (buffered > 0) {
      std::memcpy(request_.body.data(), buffer_.data().data(), buffered);
      buffer_.consume(buffered);
    }
    if (buffered == length) {
      dispatch();
      return;
    }
    sendContinueIfExpected([self = shared_from_this(), buffered, length] {
      asio::async_read(self->stream_,
                       asio::buffer(self->request_.body.data() + buffered, length - buffered),
                       TransferAll{static_cast<size_t>(length - buffered)},
                       [self](beast::error_code read_ec, size_t) {
                         if (read_ec) {
                           self->closeNow();  // the client went away mid-body
                           return;
                         }
                         self->dispatch();
                       });
    });
  }

  template <typename Next>
  void sendContinueIfExpected(Next next) {
    const auto expect = request_.header("expect");
    if (!expect || toLower(*expect) != "100-continue") {
      next();
      return;
    }
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                      [self = shared_from_this(), next](beast::error_code ec, size_t) {
                        if (ec) {
                          self->closeNow();
                          return;
                        }
                        next();
                      });
  }

  void onChunkedBody(beast::error_code ec) {
    if (ec) {
      if (ec == http::error::body_limit) {
        keep_alive_ = false;
        beginRequest();
        write(errorResponse(400, "the chunked request body is larger than the limit of " +
                                     std::to_string(core_->options.max_body_bytes) + " bytes." +
                                     (core_->options.body_limit_hint.empty() ? "" : " ") +
                                     core_->options.body_limit_hint));
        return;
      }
      if (ec == http::error::end_of_stream || ec == asio::error::eof ||
          ec == asio::error::operation_aborted || ec == asio::error::connection_reset) {
        closeNow();
        return;
      }
      keep_alive_ = false;
      beginRequest();
      write(errorResponse(400, "malformed chunked request body: " + ec.message()));
      return;
    }
    std::string& body = chunked_parser_->get().body();
    try {
      request_.body = ByteBuffer::uninitialized(body.size());
      std::memcpy(request_.body.data(), body.data(), body.size());
    } catch (const std::bad_alloc&) {
      keep_alive_ = false;
      beginRequest();
      write(errorResponse(500, "out of memory for the request body"));
      return;
    }
    chunked_parser_.reset();
    dispatch();
  }

  // --- handling ---

  void beginRequest() {
    handling_ = true;
    core_->requestStarted();
  }

  void dispatch() {
    beginRequest();
    response_coding_ = ContentCoding::kIdentity;
    if (core_->options.compression) {
      if (const auto accept = request_.header("accept-encoding")) {
        response_coding_ = chooseResponseCoding(*accept);
      }
      if (const auto encoding = request_.header("content-encoding")) {
        const auto coding = parseContentEncoding(*encoding);
        if (!coding) {
          HttpResponse response = errorResponse(501, "Unsupported compression type");
          response.headers.emplace_back("Accept-Encoding", "gzip, deflate");
          write(std::move(response));
          return;
        }
        if (*coding != ContentCoding::kIdentity) {
          auto decoded = decompress(*coding, request_.body.bytes(), core_->options.max_body_bytes);
          if (!decoded.isOk()) {
            std::string message = decoded.status().message();
            if (message.find("larger than the limit") != std::string::npos &&
                !core_->options.body_limit_hint.empty()) {
              message += ". " + core_->options.body_limit_hint;
            }
            write(errorResponse(decoded.status().code() == StatusCode::kInternal ? 500 : 400,
                                message));
            return;
          }
          request_.body = std::move(decoded).value();
        }
      }
    }
    HttpResponder responder(shared_from_this());
    try {
      core_->handler(std::move(request_), std::move(responder));
    } catch (const std::exception& error) {
      // The responder (moved into the handler) answers 500 when it is destroyed.
      spdlog::error("{}: request handler failed: {}", core_->options.name, error.what());
    } catch (...) {
      spdlog::error("{}: request handler failed with an unknown exception", core_->options.name);
    }
  }

  // --- writing ---

  void write(HttpResponse&& response) {
    if (!handling_ || writing_) {
      spdlog::error("{}: a second response for one request was dropped", core_->options.name);
      return;
    }
    writing_ = true;
    response_ = std::move(response);
    if (core_->stopping.load()) keep_alive_ = false;

    std::string content_encoding;
    if (response_coding_ != ContentCoding::kIdentity &&
        (!response_.body.empty() || !response_.tail.empty())) {
      std::vector<std::span<const std::byte>> parts;
      parts.reserve(1 + response_.tail.size());
      parts.push_back(std::as_bytes(std::span(response_.body.data(), response_.body.size())));
      for (const auto& part : response_.tail) parts.push_back(part.bytes());
      auto compressed = compress(response_coding_, parts);
      if (compressed.isOk()) {
        response_.body = std::move(compressed).value();
        response_.tail.clear();
        content_encoding = contentCodingName(response_coding_);
      } else {
        spdlog::warn("{}: sending uncompressed: {}", core_->options.name,
                     compressed.status().message());
      }
    }

    uint64_t length = response_.body.size();
    for (const auto& part : response_.tail) length += part.size();
    head_.clear();
    head_ += "HTTP/1.1 ";
    head_ += std::to_string(response_.status);
    head_ += ' ';
    head_ +=
        toStd(http::obsolete_reason(http::int_to_status(static_cast<unsigned>(response_.status))));
    head_ += "\r\n";
    if (length > 0 && !response_.content_type.empty()) {
      head_ += "Content-Type: ";
      head_ += response_.content_type;
      head_ += "\r\n";
    }
    head_ += "Content-Length: ";
    head_ += std::to_string(length);
    head_ += keep_alive_ ? "\r\nConnection: keep-alive\r\n" : "\r\nConnection: close\r\n";
    if (!content_encoding.empty()) {
      head_ += "Content-Encoding: ";
      head_ += content_encoding;
      head_ += "\r\n";
    }
    for (const auto& [name, value] : response_.headers) {
      head_ += name;
      head_ += ": ";
      head_ += value;
      head_ += "\r\n";
    }
    head_ += "\r\n";

    write_buffers_.clear();
    write_buffers_.emplace_back(head_.data(), head_.size());
    if (!response_.body.empty()) {
      write_buffers_.emplace_back(response_.body.data(), response_.body.size());
    }
    for (const auto& part : response_.tail) {
      if (!part.empty()) write_buffers_.emplace_back(part.data(), part.size());
    }
    asio::async_write(
        stream_, write_buffers_, TransferAll{head_.size() + length},
        [self = shared_from_this()](beast::error_code ec, size_t) { self->onWritten(ec); });
  }

  void onWritten(beast::error_code ec) {
    writing_ = false;
    handling_ = false;
    response_ = HttpResponse();
    write_buffers_.clear();
    core_->requestFinished();
    if (ec) {
      closeNow();
      return;
    }
    if (keep_alive_ && !core_->stopping.load()) {
      readHeader();
      return;
    }
    closeGracefully();
  }

  // --- closing ---

  // Half-closes, then reads and drops what the client still sends (e.g. the rest of a body that
  // was refused), so that the response is not lost to a connection reset; bounded in time.
  void closeGracefully() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    if (ignored) {
      closeNow();
      return;
    }
    buffer_.consume(buffer_.size());
    drain_buffer_.resize(64 * 1024);
    stream_.expires_after(std::chrono::seconds(drain_limit_ > 0 ? 30 : 2));
    drainSome();
  }

  void drainSome() {
    stream_.async_read_some(asio::buffer(drain_buffer_),
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) {
                                self->closeNow();
                                return;
                              }
                              self->drainSome();
                            });
  }

  void closeNow() {
    idle_ = false;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::shared_ptr<ServerCore> core_;
  std::optional<http::request_parser<http::empty_body>> header_parser_;
  std::optional<http::request_parser<http::string_body>> chunked_parser_;
  HttpRequest request_;
  bool keep_alive_ = true;
  bool idle_ = false;      // waiting for the first byte of a request
  bool handling_ = false;  // a request was dispatched and its response is not yet written
  bool writing_ = false;
  uint64_t drain_limit_ = 0;
  ContentCoding response_coding_ = ContentCoding::kIdentity;
  HttpResponse response_;
  std::string head_;
  std::vector<asio::const_buffer> write_buffers_;
  std::vector<char> drain_buffer_;
};

}  // namespace detail

// --- HttpResponder
// ----------------------------------------------------------------------------------

HttpResponder::HttpResponder(std::shared_ptr<detail::Connection> connection)
    : connection_(std::move(connection)) {}

HttpResponder& HttpResponder::operator=(HttpResponder&& other) noexcept {
  if (this != &other) {
    if (connection_) connection_->respond(errorResponse(500, "internal error: no response"));
    connection_ = std::move(other.connection_);
  }
  return *this;
}

HttpResponder::~HttpResponder() {
  if (connection_) {
    connection_->respond(errorResponse(500, "internal error: the request was dropped"));
  }
}

void HttpResponder::send(HttpResponse&& response) {
  if (!connection_) return;
  std::shared_ptr<detail::Connection> connection = std::move(connection_);
  connection->respond(std::move(response));
}

void HttpResponder::sendDeferred(std::unique_ptr<DeferredResponse> response) {
  if (!connection_) return;
  std::shared_ptr<detail::Connection> connection = std::move(connection_);
  connection->respondDeferred(std::move(response));
}

// --- the server
// -----------------------------------------------------------------------------------

namespace {

class HttpServerImpl final : public HttpServer {
 public:
  HttpServerImpl(HttpServerOptions options, HttpHandler handler)
      : io_(std::max(1, options.thread_count)),
        acceptor_(asio::make_strand(io_)),
        work_(asio::make_work_guard(io_)),
        core_(std::make_shared<detail::ServerCore>()) {
    core_->options = std::move(options);
    core_->handler = std::move(handler);
  }

  ~HttpServerImpl() override { shutdown(std::chrono::steady_clock::now()); }

  Status listen() {
    const HttpServerOptions& options = core_->options;
    beast::error_code ec;
    const auto address = asio::ip::make_address(options.address, ec);
    if (ec) {
      return invalidArg(options.name + " address '" + options.address +
                        "' is not an IP address: " + ec.message());
    }
    const tcp::endpoint endpoint(address, static_cast<unsigned short>(options.port));
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return unavailable("cannot listen for " + options.name + " on " + options.address + ":" +
                         std::to_string(options.port) + ": " + ec.message());
    }
    port_ = acceptor_.local_endpoint().port();
    accept();
    const int count = std::max(1, options.thread_count);
    threads_.reserve(static_cast<size_t>(count));
    for (int i = 0; i < count; ++i) {
      threads_.emplace_back([this, i] {
        const std::string name = (core_->options.name + "-io-" + std::to_string(i)).substr(0, 15);
        pthread_setname_np(pthread_self(), name.c_str());
        io_.run();
      });
    }
    return Status::ok();
  }

  int port() const override { return port_; }
  uint64_t inFlight() const override { return core_->in_flight.load(); }

  void shutdown(std::chrono::steady_clock::time_point deadline) override {
    std::lock_guard lock(shutdown_mutex_);
    if (stopped_) return;
    stopped_ = true;
    core_->stopping = true;
    asio::post(acceptor_.get_executor(), [this] {
      beast::error_code ignored;
      acceptor_.close(ignored);
    });
    forEachConnection([](detail::Connection& c) { c.closeIfIdle(); });
    {
      std::unique_lock wait_lock(core_->mutex);
      core_->drained.wait_until(wait_lock, deadline, [&] { return core_->in_flight.load() == 0; });
    }
    if (core_->in_flight.load() > 0) {
      spdlog::warn("{}: closing {} connections with requests still in flight", core_->options.name,
                   core_->in_flight.load());
    }
    forEachConnection([](detail::Connection& c) { c.forceClose(); });
    work_.reset();
    // Give the closes a moment to run, then stop whatever is left (e.g. a lingering drain).
    const auto grace = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
    while (!io_.stopped() && std::chrono::steady_clock::now() < grace) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    io_.stop();
    for (auto& thread : threads_) thread.join();
    threads_.clear();
  }

 private:
  void accept() {
    acceptor_.async_accept(
        asio::make_strand(io_), [this](beast::error_code ec, tcp::socket socket) {
          if (ec) {
            if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
            spdlog::warn("{}: accept failed: {}", core_->options.name, ec.message());
          } else if (!core_->stopping.load()) {
            beast::error_code ignored;
            socket.set_option(tcp::no_delay(true), ignored);
            auto connection = std::make_shared<detail::Connection>(std::move(socket), core_);
            {
              std::lock_guard lock(core_->mutex);
              auto& list = core_->connections;
              std::erase_if(list, [](const auto& weak) { return weak.expired(); });
              list.push_back(connection);
            }
            connection->start();
          }
          if (!core_->stopping.load()) accept();
        });
  }

  template <typename F>
  void forEachConnection(F&& f) {
    std::vector<std::shared_ptr<detail::Connection>> live;
    {
      std::lock_guard lock(core_->mutex);
      for (const auto& weak : core_->connections) {
        if (auto c = weak.lock()) live.push_back(std::move(c));
      }
    }
    for (auto& c : live) f(*c);
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::shared_ptr<detail::ServerCore> core_;
  std::vector<std::thread> threads_;
  int port_ = 0;
  std::mutex shutdown_mutex_;
  bool stopped_ = false;
};

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::start(HttpServerOptions options,
                                                      HttpHandler handler) {
  auto server = std::make_unique<HttpServerImpl>(std::move(options), std::move(handler));
  BL_RETURN_IF_ERROR(server->listen());
  return std::unique_ptr<HttpServer>(std::move(server));
}

}  // namespace beamline::net
