// beamline::perf — a load generator for any KServe v2 / Triton server (`beamline perf`).
//
// LoadGenerator reads the model's metadata (and config, where the server has one) to build the
// inputs, then for each concurrency (closed loop: N requests outstanding) or request rate (open
// loop: requests start on a constant or Poisson schedule) warms up, measures windows of
// `measurement_interval` until the last three agree within `stability_percentage` (or
// `max_trials` windows passed), and reports client latencies and throughput beside the server's
// own ModelStatistics over the same windows.
//
// Transports (see src/perf/transport.h): gRPC unary and ModelStreamInfer over the gRPC callback
// API, HTTP/REST with JSON or binary tensor data over Boost.Asio; inputs can live in system or CUDA
// shared memory (gRPC). Every outstanding request owns a slot with its own reused request and
// response buffers, so the steady state does not allocate per request where a reused buffer works.
//
// Threads: create() and run()/runStep() are called from one thread (the CLI's main thread), which
// also measures windows and calls the ProgressCallback. Requests complete on the transport's
// threads (gRPC's callback executor, or the Asio I/O threads); request-rate mode adds one
// scheduling thread per step. Nothing here throws; errors are Status values.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "beamline/core/status.h"
#include "beamline/perf/measurement.h"

namespace beamline::perf {

enum class Protocol { kGrpc, kHttp };
enum class HttpFormat { kJson, kBinary };
enum class SharedMemoryKind { kNone, kSystem, kCuda };

Result<Protocol> parseProtocol(std::string_view text);                  // grpc | http
Result<HttpFormat> parseHttpFormat(std::string_view text);              // json | binary
Result<SharedMemoryKind> parseSharedMemoryKind(std::string_view text);  // none | system | cuda
// "NAME:d1,d2,..." (perf_analyzer's --shape); dims must be > 0.
Result<std::pair<std::string, std::vector<int64_t>>> parseShapeFlag(std::string_view text);

struct PerfOptions {
  std::string model;
  std::string version;  // empty: the server's choice
  std::string url;      // host:port; empty: localhost:8001 (gRPC) or localhost:8000 (HTTP)
  Protocol protocol = Protocol::kGrpc;
  bool streaming = false;  // gRPC ModelStreamInfer, one stream per outstanding request
  HttpFormat http_format = HttpFormat::kBinary;
  int batch_size = 1;  // the leading dimension, for models with max_batch_size > 0
  // Shapes for inputs with -1 dimensions (without the batch dimension when the model batches).
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  // "zero", "random", a directory with one raw file per input (named after it), or a JSON file
  // {"data":[{"NAME":[values...]}]} (its first entry; values flattened row-major).
  std::string input_data = "random";
  // Exactly one of the two ranges is used; concurrency when no request rate is given.
  Range concurrency_range{1, 1, 1};
  std::optional<Range> request_rate_range;
  Distribution request_distribution = Distribution::kConstant;
  std::chrono::milliseconds measurement_interval{5000};
  std::chrono::milliseconds warmup{1000};
  double stability_percentage = 10;
  int max_trials = 10;    // windows per step before giving up on stability
  double percentile = 0;  // 0: none asked (custom column = p99)
  SharedMemoryKind shared_memory = SharedMemoryKind::kNone;
  size_t output_shared_memory_size = 100 * 1024;  // bytes per output
  // Request-rate mode: requests in flight at most (each slot has its own connection or stream and,
  // with shared memory, its own window of the region).
  size_t max_outstanding = 64;
  int io_threads = 1;  // HTTP I/O threads
  uint64_t seed = 1;   // random input data and Poisson schedules
};

// One concurrency or request-rate level.
struct StepReport {
  double concurrency = 0;   // closed loop; 0 in request-rate mode
  double request_rate = 0;  // open loop (requests/s asked); 0 in concurrency mode
  bool stable = false;
  int windows = 0;        // measured windows (the last three are reported)
  double measured_s = 0;  // length of the reported windows
  double throughput = 0;  // inferences/s (requests/s x batch size) over the reported windows
  double request_throughput = 0;  // requests/s
  LatencySummary latency;         // client-side, of the reported windows
  double send_us = 0;             // average client time to encode and hand a request over
  double receive_us = 0;          // average client time to read and check a response
  // CPU time of this whole process (every thread: gRPC/Asio, the measuring thread) per completed
  // request over the reported windows, in us: 1e6 / client_cpu_us bounds the request rate this
  // client can drive per core, whatever the server.
  double client_cpu_us = 0;
  uint64_t errors = 0;      // failed requests in the reported windows
  uint64_t delayed = 0;     // request-rate mode: starts that waited for a free slot
  std::string first_error;  // the first failure's message, if any
  // Server statistics over the reported windows (absent when the server has none).
  std::optional<ServerStatsDelta> server;
  // Whole step, warm-up and drain included: requests sent and answered by this client, and the
  // server's success count over the same span (equal when nobody else uses the model).
  uint64_t total_sent = 0;
  uint64_t total_succeeded = 0;
  std::optional<uint64_t> server_total_success;
};

struct PerfReport {
  std::string model;
  std::string version;
  std::string url;
  std::string protocol;  // "grpc", "grpc-streaming", "http-json", "http-binary" (+ "+shm-...")
  int batch_size = 1;
  std::vector<StepReport> steps;
};

// Called on the main thread after every window (and at the end of a step with `final` set).
using ProgressCallback = std::function<void(const std::string& line, bool final)>;

class LoadGenerator {
 public:
  // Connects, reads the model's metadata/config and builds the request; errors are one line
  // (server unreachable, unknown model, missing --shape, bad input data, shm unavailable).
  static Result<std::unique_ptr<LoadGenerator>> create(PerfOptions options);
  virtual ~LoadGenerator() = default;

  // Every level of the range, in order. Stops at the first level that fails outright (every
  // request failing); unstable levels are reported with stable = false.
  virtual Result<PerfReport> run(const ProgressCallback& progress) = 0;
  // The input tensors as built: "NAME DATATYPE [d0,d1] BYTES" lines, for the report header.
  virtual std::vector<std::string> describeInputs() const = 0;
};

// Writers of the report: CSV with one row per step (perf_analyzer's leading columns
// "Concurrency,Inferences/Second,Client Send,..." then beamline's), and JSON.
std::string reportCsv(const PerfReport& report);
std::string reportJson(const PerfReport& report);
// A human-readable table for stdout.
std::string reportTable(const PerfReport& report);

}  // namespace beamline::perf
