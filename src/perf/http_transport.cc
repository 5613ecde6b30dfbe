// The HTTP/REST transport of beamline perf: KServe v2 `POST /v2/models/M[/versions/V]/infer` with
// JSON tensors or Triton's binary tensor data extension, one keep-alive connection per slot, on
// Boost.Asio/Beast I/O threads. Control-plane calls (metadata, config, statistics) use short
// synchronous connections on the main thread. Threads: see transport.h.
#include <utility>  // before Asio: Boost 1.74 uses std::exchange without including it

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstring>
#include <limits>
#include <memory>
#include <thread>

#include "transport.h"

namespace beamline::perf {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

uint64_t nanosSince(Clock::time_point start) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
}

std::string modelPath(const std::string& model, const std::string& version) {
  std::string path = "/v2/models/" + model;
  if (!version.empty()) path += "/versions/" + version;
  return path;
}

// The error text of a KServe v2 error body ({"error": "..."}), or the body itself.
std::string errorFromBody(std::string_view body, unsigned status) {
  auto json = nlohmann::json::parse(body, nullptr, false);
  std::string message;
  if (!json.is_discarded() && json.is_object() && json.contains("error") &&
      json["error"].is_string()) {
    message = json["error"].get<std::string>();
  } else {
    message = std::string(body.substr(0, 200));
  }
  return "HTTP " + std::to_string(status) + ": " + message;
}

// One keep-alive connection with one request in flight. Runs on the I/O threads.
class HttpSlot {
 public:
  HttpSlot(asio::io_context& io, size_t index, const std::string& head, const std::string& body,
           CompletionSink* sink)
      : stream_(io), index_(index), head_(head), body_(body), sink_(sink) {
    response_body_.resize(64 * 1024);
  }

  Status connect(const tcp::resolver::results_type& endpoints) {
    beast::error_code ec;
    stream_.socket().connect(*endpoints.begin(), ec);
    if (ec) return unavailable("cannot connect: " + ec.message());
    stream_.socket().set_option(tcp::no_delay(true), ec);
    return Status::ok();
  }

  // From any thread; the work runs on the connection's I/O thread.
  void send() {
    asio::dispatch(stream_.get_executor(), [this] { write(); });
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
  }

 private:
  void write() {
    const auto start = Clock::now();
    const std::array<asio::const_buffer, 2> buffers = {asio::buffer(head_), asio::buffer(body_)};
    asio::async_write(stream_, buffers, [this, start](beast::error_code ec, size_t) {
      sink_->onSent(nanosSince(start));
      if (ec) return fail("send failed: " + ec.message());
      readHeader();
    });
  }

  // The header with Beast's parser, then the body (content-length or chunked) in large reads into
  // a buffer reused from one response to the next.
  void readHeader() {
    parser_.emplace();
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    response_used_ = 0;
    http::async_read_header(stream_, buffer_, *parser_, [this](beast::error_code ec, size_t) {
      if (ec) return fail("receive failed: " + ec.message());
      receive_start_ = Clock::now();
      if (const auto length = parser_->content_length();
          length && *length > response_body_.size()) {
        response_body_.resize(*length);
      }
      readBody();
    });
  }

  void readBody() {
    if (parser_->is_done()) return finish();
    if (response_used_ == response_body_.size()) response_body_.resize(response_body_.size() * 2);
    auto& body = parser_->get().body();
    body.data = response_body_.data() + response_used_;
    body.size = response_body_.size() - response_used_;
    http::async_read(stream_, buffer_, *parser_, [this](beast::error_code ec, size_t) {
      auto& read_body = parser_->get().body();
      response_used_ =
          static_cast<size_t>(static_cast<char*>(read_body.data) - response_body_.data());
      if (ec == http::error::need_buffer) ec = {};
      if (ec) return fail("receive failed: " + ec.message());
      readBody();
    });
  }

  void finish() {
    const auto start = Clock::now();
    const auto& response = parser_->get();
    std::string error;
    if (response.result() != http::status::ok) {
      error = errorFromBody(std::string_view(response_body_.data(), response_used_),
                            response.result_int());
    } else if (response_used_ == 0) {
      error = "empty response body";
    }
    (void)start;
    const uint64_t receive_ns = nanosSince(receive_start_);
    if (!response.keep_alive()) {
      error = error.empty() ? "server closed the connection" : error;
    }
    sink_->onComplete(index_, error, receive_ns);
  }

  void fail(const std::string& message) { sink_->onComplete(index_, message, 0); }

  beast::tcp_stream stream_;
  size_t index_;
  const std::string& head_;
  const std::string& body_;
  CompletionSink* sink_;
  beast::flat_buffer buffer_;
  std::optional<http::response_parser<http::buffer_body>> parser_;
  std::vector<char> response_body_;
  size_t response_used_ = 0;
  Clock::time_point receive_start_;
};

// One io_context run by --http-threads threads, one HttpSlot (connection) per outstanding
// request, and one prepared request (head + body) shared read-only by every slot. Threads: as
// Transport (transport.h); slots run on the I/O threads.
class HttpTransport final : public Transport {
 public:
  explicit HttpTransport(const PerfOptions& options) : options_(options) {
    std::string url = options.url.empty() ? "localhost:8000" : options.url;
    if (url.rfind("http://", 0) == 0) url = url.substr(7);
    const size_t colon = url.rfind(':');
    host_ = colon == std::string::npos ? url : url.substr(0, colon);
    port_ = colon == std::string::npos ? "80" : url.substr(colon + 1);
  }

  ~HttpTransport() override { close(); }

  Result<ModelSpec> describeModel(const std::string& model, const std::string& version) override {
    BL_ASSIGN_OR_RETURN(auto metadata, getJson(modelPath(model, version)));
    ModelSpec spec;
    spec.name = model;
    spec.version = version;
    const auto convert = [&](const char* key, std::vector<TensorSpec>& out) -> Status {
      if (!metadata.contains(key) || !metadata[key].is_array()) return Status::ok();
      for (const auto& tensor : metadata[key]) {
        TensorSpec converted;
        converted.name = tensor.value("name", "");
        const std::string datatype = tensor.value("datatype", "");
        const auto parsed = dataTypeFromWireName(datatype);
        if (!parsed) {
          return invalidArg("model '" + model + "': tensor '" + converted.name +
                            "' has unknown datatype '" + datatype + "'");
        }
        converted.datatype = *parsed;
        if (tensor.contains("shape")) {
          for (const auto& dim : tensor["shape"]) converted.dims.push_back(dim.get<int64_t>());
        }
        out.push_back(std::move(converted));
      }
      return Status::ok();
    };
    BL_RETURN_IF_ERROR(convert("inputs", spec.inputs));
    BL_RETURN_IF_ERROR(convert("outputs", spec.outputs));
    auto config = getJson(modelPath(model, version) + "/config");
    if (config.isOk() && config->is_object() && config->contains("max_batch_size")) {
      spec.max_batch_size = (*config)["max_batch_size"].get<int64_t>();
    }
    return spec;
  }

  Result<ServerStats> statistics(const std::string& model, const std::string& version) override {
    BL_ASSIGN_OR_RETURN(auto json, getJson(modelPath(model, version) + "/stats"));
    if (!json.contains("model_stats") || !json["model_stats"].is_array() ||
        json["model_stats"].empty()) {
      return notFound("no statistics for " + model);
    }
    ServerStats stats;
    const auto duration = [](const nlohmann::json& s, const char* key, uint64_t& count,
                             uint64_t& ns) {
      if (!s.contains(key)) return;
      count += s[key].value("count", uint64_t{0});
      ns += s[key].value("ns", uint64_t{0});
    };
    for (const auto& model_stats : json["model_stats"]) {
      if (!model_stats.contains("inference_stats")) continue;
      const auto& s = model_stats["inference_stats"];
      duration(s, "success", stats.success_count, stats.success_ns);
      uint64_t fail_ns = 0;
      duration(s, "fail", stats.fail_count, fail_ns);
      duration(s, "queue", stats.queue_count, stats.queue_ns);
      duration(s, "compute_input", stats.compute_input_count, stats.compute_input_ns);
      duration(s, "compute_infer", stats.compute_infer_count, stats.compute_infer_ns);
      duration(s, "compute_output", stats.compute_output_count, stats.compute_output_ns);
      stats.inference_count += model_stats.value("inference_count", uint64_t{0});
      stats.execution_count += model_stats.value("execution_count", uint64_t{0});
    }
    return stats;
  }

  Status prepare(const RequestTemplate& request, size_t slots, CompletionSink* sink) override {
    if (options_.shared_memory != SharedMemoryKind::kNone) {
      return unsupported("--shared-memory needs -i grpc (perf registers regions over gRPC)");
    }
    buildBody(request);
    try {
      tcp::resolver resolver(io_);
      const auto endpoints = resolver.resolve(host_, port_);
      for (size_t i = 0; i < slots; ++i) {
        slots_.push_back(std::make_unique<HttpSlot>(io_, i, head_, body_, sink));
        BL_RETURN_IF_ERROR(slots_.back()->connect(endpoints));
      }
    } catch (const std::exception& error) {
      return unavailable("cannot reach " + host_ + ":" + port_ + ": " + error.what());
    }
    work_.emplace(asio::make_work_guard(io_));
    for (int i = 0; i < std::max(1, options_.io_threads); ++i) {
      threads_.emplace_back([this] { io_.run(); });
    }
    return Status::ok();
  }

  void send(size_t slot) override { slots_[slot]->send(); }

  void close() override {
    if (threads_.empty()) return;
    for (auto& slot : slots_) {
      asio::post(io_, [&slot] { slot->close(); });
    }
    work_.reset();
    for (auto& thread : threads_) thread.join();
    threads_.clear();
    slots_.clear();
  }

 private:
  void buildBody(const RequestTemplate& request) {
    nlohmann::json header;
    header["inputs"] = nlohmann::json::array();
    const bool binary = options_.http_format == HttpFormat::kBinary;
    std::string json_inputs;
    size_t binary_size = 0;
    for (const InputTensor& input : request.inputs) {
      std::string shape;
      for (int64_t dim : input.shape) shape += (shape.empty() ? "" : ",") + std::to_string(dim);
      if (!json_inputs.empty()) json_inputs += ",";
      json_inputs += "{\"name\":" + nlohmann::json(input.name).dump() + ",\"shape\":[" + shape +
                     "],\"datatype\":\"" + std::string(dataTypeWireName(input.datatype)) + "\"";
      if (binary) {
        json_inputs +=
            ",\"parameters\":{\"binary_data_size\":" + std::to_string(input.bytes.size()) + "}}";
        binary_size += input.bytes.size();
      } else {
        json_inputs += ",\"data\":" + input.json + "}";
      }
    }
    std::string json_outputs;
    for (const std::string& name : request.outputs) {
      if (!json_outputs.empty()) json_outputs += ",";
      json_outputs += "{\"name\":" + nlohmann::json(name).dump() +
                      ",\"parameters\":{\"binary_data\":" + (binary ? "true" : "false") + "}}";
    }
    const std::string json =
        "{\"inputs\":[" + json_inputs + "],\"outputs\":[" + json_outputs + "]}";
    body_ = json;
    if (binary) {
      for (const InputTensor& input : request.inputs) body_ += input.bytes;
    }
    head_ = "POST " + modelPath(request.model, request.version) +
            "/infer HTTP/1.1\r\nHost: " + host_ + "\r\nConnection: keep-alive\r\n";
    if (binary) {
      head_ += "Content-Type: application/octet-stream\r\nInference-Header-Content-Length: " +
               std::to_string(json.size()) + "\r\n";
    } else {
      head_ += "Content-Type: application/json\r\n";
    }
    head_ += "Content-Length: " + std::to_string(body_.size()) + "\r\n\r\n";
    (void)binary_size;
  }

  // One GET on a fresh connection, main thread.
  Result<nlohmann::json> getJson(const std::string& path) {
    try {
      asio::io_context io;
      tcp::resolver resolver(io);
      beast::tcp_stream stream(io);
      stream.expires_after(std::chrono::seconds(10));
      beast::error_code ec;
      stream.connect(resolver.resolve(host_, port_), ec);
      if (ec) {
        return unavailable("cannot reach the server at " + host_ + ":" + port_ +
                           " (HTTP): " + ec.message());
      }
      http::request<http::empty_body> request{http::verb::get, path, 11};
      request.set(http::field::host, host_);
      http::write(stream, request);
      beast::flat_buffer buffer;
      http::response<http::string_body> response;
      http::read(stream, buffer, response);
      stream.socket().shutdown(tcp::socket::shutdown_both, ec);
      if (response.result() != http::status::ok) {
        const std::string message = errorFromBody(response.body(), response.result_int());
        if (response.result() == http::status::not_found) {
          return notFound("GET " + path + ": " + message);
        }
        return invalidArg("GET " + path + ": " + message);
      }
      auto json = nlohmann::json::parse(response.body(), nullptr, false);
      if (json.is_discarded()) return invalidArg("GET " + path + ": the answer is not JSON");
      return json;
    } catch (const std::exception& error) {
      return unavailable("cannot reach the server at " + host_ + ":" + port_ +
                         " (HTTP): " + error.what());
    }
  }

  PerfOptions options_;
  std::string host_;
  std::string port_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
  std::vector<std::unique_ptr<HttpSlot>> slots_;
  std::string head_;
  std::string body_;
};

}  // namespace

std::unique_ptr<Transport> makeHttpTransport(const PerfOptions& options) {
  return std::make_unique<HttpTransport>(options);
}

}  // namespace beamline::perf
