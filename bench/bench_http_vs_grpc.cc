// HTTP (binary tensor data extension) against gRPC, side by side: the same closed-loop load on
// the same server, `concurrency` requests in flight, each reissued as soon as its answer arrives,
// alternating protocols level by level so that both see the same machine state.
//
//  - gRPC: the project's client (beamline::client::GrpcClient::asyncInfer, callback API, one reused
//    request per in-flight slot), as in bench_grpc_infer.cc.
//  - HTTP: one keep-alive connection per in-flight slot on an asynchronous Boost.Beast client
//    (`--http-client-threads` I/O threads, no thread per request). The request is the JSON header
//    plus the tensor sent with gather I/O; the response is read, its JSON header parsed (as a real
//    client must) and the binary output's size checked.
//
//   beamline_bench_http_vs_grpc --grpc-url 127.0.0.1:8001 --http-url 127.0.0.1:8000
//       -m identity_fp32 --elements 4096,262144 -c 1,2,4,8,16,32
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <nlohmann/json.hpp>

#include "beamline/client/grpc_client.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

struct LevelResult {
  double throughput = 0;  // inferences per second
  size_t errors = 0;
  double p50 = 0, p99 = 0;
};

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

// Shared shape of a closed-loop run: measuring window, stop, wait for the slots to go idle.
struct Run {
  std::atomic<bool> measuring{false};
  std::atomic<bool> stopping{false};
  std::atomic<size_t> errors{0};
  std::mutex mutex;
  std::condition_variable idle;
  int outstanding = 0;

  void slotStopped() {
    std::lock_guard lock(mutex);
    if (--outstanding == 0) idle.notify_all();
  }

  LevelResult measure(int concurrency, double warmup_s, double duration_s,
                      const std::function<void()>& start,
                      const std::function<std::vector<double>()>& latencies) {
    outstanding = concurrency;
    start();
    std::this_thread::sleep_for(std::chrono::duration<double>(warmup_s));
    measuring = true;
    const auto begin = Clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(duration_s));
    measuring = false;
    const auto end = Clock::now();
    stopping = true;
    {
      std::unique_lock lock(mutex);
      idle.wait(lock, [&] { return outstanding == 0; });
    }
    std::vector<double> all = latencies();
    LevelResult result;
    result.throughput =
        static_cast<double>(all.size()) / std::chrono::duration<double>(end - begin).count();
    result.errors = errors.load();
    result.p50 = percentile(all, 0.50);
    result.p99 = percentile(all, 0.99);
    return result;
  }
};

// --- gRPC ---------------------------------------------------------------------------------------

LevelResult runGrpc(const beamline::client::GrpcClient& client, const std::string& model,
                    const std::string& input, std::span<const float> data, int concurrency,
                    double warmup_s, double duration_s) {
  struct Slot {
    beamline::client::InferRequest request;
    Clock::time_point sent;
    std::vector<double> latencies_us;
  };
  std::vector<Slot> slots(static_cast<size_t>(concurrency));
  const std::vector<int64_t> shape = {1, static_cast<int64_t>(data.size())};
  for (auto& slot : slots) {
    slot.request.setModel(model);
    const size_t index = slot.request.addInput(input, beamline::DataType::kFp32, shape);
    (void)slot.request.setInputData(index, std::as_bytes(data));
    slot.latencies_us.reserve(1 << 18);
  }
  Run run;
  std::function<void(Slot&)> issue = [&](Slot& slot) {
    slot.sent = Clock::now();
    client.asyncInfer(slot.request, [&, s = &slot](beamline::Status status,
                                                   std::unique_ptr<beamline::client::InferResult>) {
      const auto now = Clock::now();
      if (!status.isOk()) {
        run.errors.fetch_add(1);
      } else if (run.measuring.load(std::memory_order_relaxed)) {
        s->latencies_us.push_back(std::chrono::duration<double, std::micro>(now - s->sent).count());
      }
      if (run.stopping.load()) {
        run.slotStopped();
        return;
      }
      issue(*s);
    });
  };
  return run.measure(
      concurrency, warmup_s, duration_s,
      [&] {
        for (auto& slot : slots) issue(slot);
      },
      [&] {
        std::vector<double> all;
        for (auto& slot : slots) {
          all.insert(all.end(), slot.latencies_us.begin(), slot.latencies_us.end());
        }
        return all;
      });
}

// --- HTTP ---------------------------------------------------------------------------------------

// One keep-alive connection with one request in flight. Runs on the client's I/O threads.
class HttpSlot : public std::enable_shared_from_this<HttpSlot> {
 public:
  HttpSlot(asio::io_context& io, Run& run, const std::string& head, std::span<const float> data,
           uint64_t expected_output_bytes)
      : stream_(io), run_(run), head_(head), data_(data), expected_(expected_output_bytes) {
    latencies_us_.reserve(1 << 18);
  }

  bool connect(const tcp::endpoint& endpoint) {
    beast::error_code ec;
    stream_.socket().connect(endpoint, ec);
    if (!ec) stream_.socket().set_option(tcp::no_delay(true), ec);
    return !ec;
  }

  void issue() {
    sent_ = Clock::now();
    const std::array<asio::const_buffer, 2> buffers = {
        asio::buffer(head_), asio::buffer(data_.data(), data_.size_bytes())};
    const size_t total = head_.size() + data_.size_bytes();
    asio::async_write(
        stream_, buffers,
        [total](const beast::error_code& ec, size_t done) -> size_t {
          return ec ? 0 : total - done;
        },
        [self = shared_from_this()](beast::error_code ec, size_t) {
          if (ec) return self->failed();
          self->read();
        });
  }

  std::vector<double>& latencies() { return latencies_us_; }

 private:
  // The header with Beast's parser, then the body straight into a buffer reused from one
  // response to the next, in large reads (what an efficient client does; Beast's string_body would
  // read it in small pieces and copy it once more).
  void read() {
    parser_.emplace();
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) return self->failed();
                              self->readBody();
                            });
  }

  void readBody() {
    const size_t length = static_cast<size_t>(parser_->content_length().value_or(0));
    body_.resize(length);
    const size_t buffered = std::min(buffer_.size(), length);
    std::memcpy(body_.data(), buffer_.data().data(), buffered);
    buffer_.consume(buffered);
    if (buffered == length) return onResponse();
    const size_t left = length - buffered;
    asio::async_read(
        stream_, asio::buffer(body_.data() + buffered, left),
        [left](const beast::error_code& ec, size_t done) -> size_t { return ec ? 0 : left - done; },
        [self = shared_from_this()](beast::error_code ec, size_t) {
          if (ec) return self->failed();
          self->onResponse();
        });
  }

  void onResponse() {
    const auto now = Clock::now();
    auto& response = parser_->get();
    bool ok = response.result() == http::status::ok;
    if (ok) {
      const auto header = response.find("Inference-Header-Content-Length");
      const size_t length =
          header == response.end() ? body_.size() : std::stoul(std::string(header->value()));
      auto json = nlohmann::json::parse(body_.data(), body_.data() + std::min(length, body_.size()),
                                        nullptr, false);
      ok = !json.is_discarded() && body_.size() - length == expected_;
    }
    if (!ok) {
      run_.errors.fetch_add(1);
    } else if (run_.measuring.load(std::memory_order_relaxed)) {
      latencies_us_.push_back(std::chrono::duration<double, std::micro>(now - sent_).count());
    }
    if (run_.stopping.load()) {
      run_.slotStopped();
      return;
    }
    issue();
  }

  void failed() {
    run_.errors.fetch_add(1);
    run_.slotStopped();  // a broken connection ends this slot
  }

  beast::tcp_stream stream_;
  Run& run_;
  const std::string& head_;
  std::span<const float> data_;
  uint64_t expected_;
  beast::flat_buffer buffer_;
  std::optional<http::response_parser<http::empty_body>> parser_;
  std::vector<char> body_;
  Clock::time_point sent_;
  std::vector<double> latencies_us_;
};

LevelResult runHttp(const tcp::endpoint& endpoint, const std::string& model,
                    const std::string& input, const std::string& output,
                    std::span<const float> data, int concurrency, int threads, double warmup_s,
                    double duration_s) {
  const std::string json = "{\"inputs\":[{\"name\":\"" + input + "\",\"shape\":[1," +
                           std::to_string(data.size()) +
                           "],\"datatype\":\"FP32\",\"parameters\":{\"binary_data_size\":" +
                           std::to_string(data.size_bytes()) + "}}],\"outputs\":[{\"name\":\"" +
                           output + "\",\"parameters\":{\"binary_data\":true}}]}";
  const std::string head = "POST /v2/models/" + model +
                           "/infer HTTP/1.1\r\nHost: bench\r\nContent-Type: "
                           "application/octet-stream\r\nInference-Header-Content-Length: " +
                           std::to_string(json.size()) + "\r\nContent-Length: " +
                           std::to_string(json.size() + data.size_bytes()) + "\r\n\r\n" + json;
  asio::io_context io;
  Run run;
  std::vector<std::shared_ptr<HttpSlot>> slots;
  for (int i = 0; i < concurrency; ++i) {
    auto slot = std::make_shared<HttpSlot>(io, run, head, data, data.size_bytes());
    if (!slot->connect(endpoint)) {
      std::fprintf(stderr, "error: cannot connect to %s:%d\n",
                   endpoint.address().to_string().c_str(), endpoint.port());
      std::exit(1);
    }
    slots.push_back(std::move(slot));
  }
  auto guard = asio::make_work_guard(io);
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) pool.emplace_back([&] { io.run(); });
  LevelResult result = run.measure(
      concurrency, warmup_s, duration_s,
      [&] {
        for (auto& slot : slots) slot->issue();
      },
      [&] {
        std::vector<double> all;
        for (auto& slot : slots) {
          all.insert(all.end(), slot->latencies().begin(), slot->latencies().end());
        }
        return all;
      });
  guard.reset();
  io.stop();
  for (auto& thread : pool) thread.join();
  return result;
}

tcp::endpoint parseEndpoint(const std::string& url) {
  const size_t colon = url.rfind(':');
  return {asio::ip::make_address(url.substr(0, colon)),
          static_cast<unsigned short>(std::stoi(url.substr(colon + 1)))};
}

std::string sizeLabel(size_t bytes) {
  return bytes >= (1u << 20) ? std::to_string(bytes >> 20) + " MiB"
                             : std::to_string(bytes >> 10) + " KiB";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"HTTP (binary tensor data) vs gRPC closed-loop inference throughput, side by side"};
  std::string grpc_url = "127.0.0.1:8001", http_url = "127.0.0.1:8000";
  std::string model = "identity_fp32", input = "INPUT__0", output = "OUTPUT__0";
  std::vector<int64_t> sizes = {4096, 262144};
  std::vector<int> levels = {1, 2, 4, 8, 16, 32};
  int http_threads = 1;
  std::vector<std::string> protocols = {"grpc", "http"};
  double warmup_s = 1.0, duration_s = 5.0;
  app.add_option("--grpc-url", grpc_url, "gRPC address")->capture_default_str();
  app.add_option("--http-url", http_url, "HTTP address (IP:port)")->capture_default_str();
  app.add_option("-m,--model", model, "Model with one FP32 input [1, -1]")->capture_default_str();
  app.add_option("--input", input, "Input name")->capture_default_str();
  app.add_option("--output", output, "Output name")->capture_default_str();
  app.add_option("--elements", sizes, "FP32 elements per request (4096 = 16 KiB, 262144 = 1 MiB)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("-c,--concurrency", levels, "Requests in flight, one run per value")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--http-client-threads", http_threads, "I/O threads of the HTTP client")
      ->capture_default_str();
  app.add_option("--protocols", protocols, "Which to run (for profiling one alone)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--warmup-s", warmup_s, "Seconds before measuring")->capture_default_str();
  app.add_option("--duration-s", duration_s, "Seconds measured per level and protocol")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  beamline::client::ClientOptions options;
  options.url = grpc_url;
  auto client = beamline::client::GrpcClient::create(options);
  if (!client.isOk()) {
    std::fprintf(stderr, "error: %s\n", client.status().message().c_str());
    return 1;
  }
  const tcp::endpoint endpoint = parseEndpoint(http_url);

  std::printf(
      "| payload | concurrency | gRPC inf/s | HTTP inf/s | HTTP/gRPC | gRPC p50 µs | "
      "HTTP p50 µs | gRPC p99 µs | HTTP p99 µs | errors |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int64_t elements : sizes) {
    std::vector<float> data(static_cast<size_t>(elements));
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(i % 997) * 0.5f;
    for (int level : levels) {
      const auto wants = [&](const char* p) {
        return std::find(protocols.begin(), protocols.end(), p) != protocols.end();
      };
      const LevelResult g = wants("grpc")
                                ? runGrpc(**client, model, input, data, level, warmup_s, duration_s)
                                : LevelResult{};
      const LevelResult h = wants("http") ? runHttp(endpoint, model, input, output, data, level,
                                                    http_threads, warmup_s, duration_s)
                                          : LevelResult{};
      std::printf("| %s | %d | %.0f | %.0f | %.2f | %.0f | %.0f | %.0f | %.0f | %zu |\n",
                  sizeLabel(data.size() * sizeof(float)).c_str(), level, g.throughput, h.throughput,
                  g.throughput > 0 ? h.throughput / g.throughput : 0, g.p50, h.p50, g.p99, h.p99,
                  g.errors + h.errors);
      std::fflush(stdout);
    }
  }
  return 0;
}
