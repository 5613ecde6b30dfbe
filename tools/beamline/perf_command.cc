// `beamline perf`: a load generator for any KServe v2 / Triton server (flags follow perf_analyzer
// where the meaning is the same). The measuring is done by beamline::perf::LoadGenerator; this file
// parses flags, prints progress and the table, and writes CSV/JSON/PNG. Runs on the main thread
// (the load generator adds its own transport threads).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "beamline/perf/load_generator.h"
#include "commands.h"

namespace beamline::tools {
namespace {

struct PerfFlags {
  std::string model;
  std::string version;
  std::string url;
  std::string protocol = "grpc";
  bool streaming = false;
  std::string http_format = "binary";
  int batch_size = 1;
  std::vector<std::string> shapes;
  std::string input_data = "random";
  std::string concurrency_range;
  std::string request_rate_range;
  std::string request_distribution = "constant";
  int measurement_interval_ms = 5000;
  int warmup_ms = 1000;
  double stability_percentage = 10;
  int max_trials = 10;
  double percentile = 0;
  std::string shared_memory = "none";
  size_t output_shared_memory_size = 100 * 1024;
  size_t max_outstanding = 64;
  int io_threads = 1;
  std::string csv_file;
  std::string json_file;
  std::string plot_file;
  bool progress = false;
};

bool writeFile(const std::string& path, const std::string& text) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file << text;
  return static_cast<bool>(file);
}

// The plotting script: $BEAMLINE_PERF_PLOT_SCRIPT, else next to the binary (the build copies it
// there), else in the source tree.
std::string plotScript() {
  if (const char* env = std::getenv("BEAMLINE_PERF_PLOT_SCRIPT"); env != nullptr && *env) {
    return env;
  }
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const auto& candidate : {exe.parent_path() / "beamline_perf_plot.py",
                                  exe.parent_path() / "../../../tools/beamline/perf_plot.py"}) {
      if (std::filesystem::exists(candidate)) return candidate.string();
    }
  }
  return "tools/beamline/perf_plot.py";
}

std::string shellQuote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// Runs the Python plotting script on the JSON report; returns a message on failure.
std::string plot(const std::string& json_path, const std::string& png_path) {
  const char* python_env = std::getenv("BEAMLINE_PERF_PYTHON");
  const std::string python = python_env != nullptr && *python_env ? python_env : "python3";
  const std::string command = shellQuote(python) + " " + shellQuote(plotScript()) + " " +
                              shellQuote(json_path) + " " + shellQuote(png_path);
  const int code = std::system(command.c_str());
  if (code == 0) return "";
  if (WIFEXITED(code) && WEXITSTATUS(code) == 3) {
    return "plotting unavailable: matplotlib is not installed for " + python +
           " (pip install -r bench/requirements.txt, or set BEAMLINE_PERF_PYTHON to a Python "
           "that has it)";
  }
  return "plotting failed: `" + command + "` exited with " + std::to_string(code);
}

int runPerf(const PerfFlags& flags) {
  const auto fail = [](const Status& status) {
    std::fprintf(stderr, "beamline perf: error: %s\n", status.message().c_str());
    return 1;
  };
  perf::PerfOptions options;
  options.model = flags.model;
  options.version = flags.version;
  options.url = flags.url;
  auto protocol = perf::parseProtocol(flags.protocol);
  if (!protocol.isOk()) return fail(protocol.status());
  options.protocol = *protocol;
  options.streaming = flags.streaming;
  auto format = perf::parseHttpFormat(flags.http_format);
  if (!format.isOk()) return fail(format.status());
  options.http_format = *format;
  options.batch_size = flags.batch_size;
  for (const std::string& text : flags.shapes) {
    auto shape = perf::parseShapeFlag(text);
    if (!shape.isOk()) return fail(shape.status());
    options.shapes.push_back(std::move(shape).value());
  }
  options.input_data = flags.input_data;
  if (!flags.concurrency_range.empty() && !flags.request_rate_range.empty()) {
    return fail(invalidArg("give --concurrency-range or --request-rate-range, not both"));
  }
  if (!flags.concurrency_range.empty()) {
    auto range = perf::parseRange(flags.concurrency_range);
    if (!range.isOk()) return fail(range.status());
    options.concurrency_range = *range;
  }
  if (!flags.request_rate_range.empty()) {
    auto range = perf::parseRange(flags.request_rate_range);
    if (!range.isOk()) return fail(range.status());
    options.request_rate_range = *range;
  }
  auto distribution = perf::parseDistribution(flags.request_distribution);
  if (!distribution.isOk()) return fail(distribution.status());
  options.request_distribution = *distribution;
  options.measurement_interval = std::chrono::milliseconds(flags.measurement_interval_ms);
  options.warmup = std::chrono::milliseconds(flags.warmup_ms);
  options.stability_percentage = flags.stability_percentage;
  options.max_trials = flags.max_trials;
  options.percentile = flags.percentile;
  auto shm = perf::parseSharedMemoryKind(flags.shared_memory);
  if (!shm.isOk()) return fail(shm.status());
  options.shared_memory = *shm;
  options.output_shared_memory_size = flags.output_shared_memory_size;
  options.max_outstanding = flags.max_outstanding;
  options.io_threads = flags.io_threads;

  auto generator = perf::LoadGenerator::create(options);
  if (!generator.isOk()) return fail(generator.status());
  const bool show_progress = flags.progress || isatty(STDERR_FILENO) != 0;
  const bool tty = isatty(STDERR_FILENO) != 0;
  std::printf("beamline perf: model %s%s%s at %s over %s, batch size %d\n", flags.model.c_str(),
              flags.version.empty() ? "" : " version ", flags.version.c_str(),
              flags.url.empty() ? (flags.protocol == "grpc" ? "localhost:8001" : "localhost:8000")
                                : flags.url.c_str(),
              flags.protocol.c_str(), flags.batch_size);
  for (const std::string& line : (*generator)->describeInputs()) {
    std::printf("  input %s\n", line.c_str());
  }
  std::fflush(stdout);
  perf::ProgressCallback progress;
  if (show_progress) {
    progress = [tty](const std::string& line, bool final) {
      if (tty) {
        std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final ? "\n" : "");
      } else {
        std::fprintf(stderr, "%s\n", line.c_str());
      }
      std::fflush(stderr);
    };
  }
  auto report = (*generator)->run(progress);
  if (!report.isOk()) {
    if (tty && show_progress) std::fprintf(stderr, "\n");
    return fail(report.status());
  }
  report->url = flags.url;
  std::printf("%s", perf::reportTable(*report).c_str());
  bool unstable = false;
  for (const auto& step : report->steps) unstable = unstable || !step.stable;
  if (unstable) {
    std::printf(
        "note: levels marked NO did not reach %.0f%% stability within %d windows; their "
        "numbers are from the last 3 windows\n",
        flags.stability_percentage, flags.max_trials);
  }
  int code = 0;
  if (!flags.csv_file.empty() && !writeFile(flags.csv_file, perf::reportCsv(*report))) {
    std::fprintf(stderr, "beamline perf: error: cannot write %s\n", flags.csv_file.c_str());
    code = 1;
  }
  std::string json_path = flags.json_file;
  if (!flags.plot_file.empty() && json_path.empty()) {
    json_path = flags.plot_file + ".json";
  }
  if (!json_path.empty() && !writeFile(json_path, perf::reportJson(*report))) {
    std::fprintf(stderr, "beamline perf: error: cannot write %s\n", json_path.c_str());
    code = 1;
  }
  if (!flags.plot_file.empty() && code == 0) {
    const std::string message = plot(json_path, flags.plot_file);
    if (!message.empty()) {
      std::fprintf(stderr, "beamline perf: %s\n", message.c_str());
      code = 2;
    }
    if (flags.json_file.empty()) std::filesystem::remove(json_path);
  }
  return code;
}

}  // namespace

void registerPerfCommand(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<PerfFlags>();
  CLI::App* command = app.add_subcommand(
      "perf",
      "Load generator for any KServe v2 / Triton server (flags follow perf_analyzer). For each "
      "concurrency (N requests outstanding) or request rate it warms up, measures windows until "
      "the last 3 agree on throughput, p50 and p99 within --stability-percentage, and reports "
      "client latencies beside the server's ModelStatistics over the same windows.");
  command->add_option("-m,--model-name", flags->model, "Model to load (required)")->required();
  command->add_option("-x,--model-version", flags->version,
                      "Model version (default: the server's choice)");
  command->add_option("-u,--url", flags->url,
                      "Server address host:port (default localhost:8001 for gRPC, "
                      "localhost:8000 for HTTP)");
  command->add_option("-i,--protocol", flags->protocol, "grpc or http (default grpc)");
  command->add_flag("--streaming", flags->streaming,
                    "gRPC only: send over ModelStreamInfer, one bidirectional stream per "
                    "outstanding request (default: unary ModelInfer)");
  command->add_option("--http-format", flags->http_format,
                      "HTTP only: json (tensors as JSON arrays) or binary (Triton's binary tensor "
                      "data extension) (default binary)");
  command->add_option("-b,--batch-size", flags->batch_size,
                      "Batch size: the leading dimension for models with max_batch_size > 0 "
                      "(default 1); throughput counts inferences = requests x batch size");
  command->add_option("--shape", flags->shapes,
                      "NAME:d1,d2,... shape of an input with variable (-1) dimensions, without "
                      "the batch dimension when the model batches; repeatable");
  command->add_option("--input-data", flags->input_data,
                      "zero, random (default), a directory with one raw file per input named "
                      "after it, or a JSON file {\"data\":[{\"NAME\":[...]}]} (first entry)");
  command->add_option("--concurrency-range", flags->concurrency_range,
                      "start[:end[:step]] requests outstanding (closed loop) (default 1)");
  command->add_option("--request-rate-range", flags->request_rate_range,
                      "start[:end[:step]] requests per second (open loop); replaces "
                      "--concurrency-range");
  command->add_option("--request-distribution", flags->request_distribution,
                      "constant or poisson gaps between request starts in request-rate mode "
                      "(default constant)");
  command->add_option("-p,--measurement-interval", flags->measurement_interval_ms,
                      "Length of one measurement window in ms (default 5000)");
  command->add_option("--warmup", flags->warmup_ms,
                      "Warm-up before the first window of each level in ms, not measured "
                      "(default 1000)");
  command->add_option("-s,--stability-percentage", flags->stability_percentage,
                      "Largest deviation in % of the last 3 windows from their mean for "
                      "throughput, p50 and p99 (default 10)");
  command->add_option("-r,--max-trials", flags->max_trials,
                      "Most windows per level; a level that is not stable by then is reported "
                      "as unstable (default 10)");
  command->add_option("--percentile", flags->percentile,
                      "An extra latency percentile for the CSV/JSON 'custom' column, 0-100 "
                      "(default: none; the column then holds p99)");
  command->add_option("--shared-memory", flags->shared_memory,
                      "none (default), system (POSIX shared memory; the server must be on this "
                      "host and allow it: beamline serve --allow-client-shm true) or cuda (CUDA "
                      "builds with a GPU); gRPC only. Inputs are written once per slot");
  command->add_option("--output-shared-memory-size", flags->output_shared_memory_size,
                      "Bytes reserved per output in shared memory (default 102400)");
  command->add_option(
      "--max-outstanding", flags->max_outstanding,
      "Request-rate mode: most requests in flight; later starts wait and count "
      "as delayed; each has its own connection or stream (and shared-memory window) "
      "(default 64)");
  command->add_option("--http-threads", flags->io_threads,
                      "HTTP I/O threads of the client (default 1)");
  command->add_option("-f,--latency-report-file", flags->csv_file,
                      "Write one CSV row per level (latencies in us) to this file");
  command->add_option("--json", flags->json_file, "Write the report as JSON to this file");
  command->add_option("--plot", flags->plot_file,
                      "Draw p50/p99 latency against throughput into this PNG (runs "
                      "tools/beamline/perf_plot.py with $BEAMLINE_PERF_PYTHON or python3; needs "
                      "matplotlib)");
  command->add_flag("--progress", flags->progress,
                    "Print one progress line per window on stderr even when it is not a "
                    "terminal (on a terminal it is always shown)");
  command->callback([flags, &exit_code] { exit_code = runPerf(*flags); });
}

}  // namespace beamline::tools
