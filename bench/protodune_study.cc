// beamline_protodune_study: the ProtoDUNE inference-as-a-service study (SONIC, Wang et al. 2021)
// on beamline's mini framework (examples/framework), and the served / in-process throughput ratio
// of the physics models. Two subcommands:
//
//   study  A simulated reconstruction job: N streams on T threads (TBB arena); per event a source
//          makes the event's 48x48 wire-time patches, the hit classifier (emtrack_cnn, a
//          SonicTriton-style ExternalWork module on EventClient) scores every patch, and the "rest
//          of the reconstruction" is a calibrated busy loop. --mode cpu runs the CNN in the job
//          (one in-process beamline core with one LibTorch instance per stream, Sync: each worker
//          does its own inference, as a CPU-only job does); --mode service sends it to a server
//          (Async by default, so a thread runs other streams' CPU part while a call is out).
//          --cpu-fraction F sizes the busy loop so that it plus the source is F of the event
//          time in this (CPU-only) run; the run prints the size (--cpu-work-units) to pass to the
//          service runs. Writes per-event records and a summary (--json).
//
//   ratio  Throughput of a model (emtrack_cnn patches or ParticleNet jets of P particles) per
//          batch size B: in-process (beamline core + LibTorch backend in this process, no network,
//          requests of B items, two in flight so that the instance never idles between them, the
//          instance's intra-op threads as configured) and through the server with dynamic
//          batching (several Sync clients in flight, each sending requests of B/split of the same
//          items, which the server's batcher merges into batches of at most B: the models are
//          `<prefix>_b<B>` with max_batch_size B). The two alternate in --rounds slices so that
//          the machine's other load falls on both alike. Prints a table and writes --json.
//          (One std::thread per client in flight: a load generator, not a server.)
//
//   beamline_protodune_study study --mode cpu --model-repository R --threads 2 --events 8
//       --patches 2000 --cpu-fraction 0.35 --json cpu.json
//   beamline_protodune_study study --mode service --server 127.0.0.1:8001 --threads 2
//       --streams 4 --events 8 --patches 2000 --cpu-work-units 123456789 --json service.json
//   beamline_protodune_study ratio --server 127.0.0.1:8001 --model-repository R
//       --model-prefix emtrack_cnn --batch-sizes 1,16,64,256 --json ratio.json
//
// Threads: main() drives everything from the main thread; the framework's arena threads run the
// modules; EventLog is the only state shared between streams (a mutex). In `ratio`, drive() runs
// one std::thread per client in flight.
#include "beamline/core/process_tuning.h"
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "beamline/client/event_client.h"
#include "beamline/client/grpc_client.h"
#include "beamline/client/in_process.h"
#include "framework.h"
#include "patch_modules.h"

namespace bc = beamline::client;
namespace bf = beamline::framework;
using beamline::Result;
using beamline::Status;
using Clock = std::chrono::steady_clock;

namespace {

double msSince(Clock::time_point start, Clock::time_point end) {
  return std::chrono::duration<double, std::milli>(end - start).count();
}

// ---- the stand-in for the rest of the reconstruction ----------------------------------------

// A fixed amount of integer work (xorshift steps): it slows down under CPU contention as real
// reconstruction code would, unlike a timed spin. Returns the state so it is not optimised away.
uint64_t spin(uint64_t iterations, uint64_t seed) {
  uint64_t state = seed | 1;
  for (uint64_t i = 0; i < iterations; ++i) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
  }
  return state;
}

// Iterations of spin() per millisecond on this thread, best of a few tries.
double calibrateSpin() {
  double best = 0;
  for (int attempt = 0; attempt < 5; ++attempt) {
    const uint64_t iterations = 2'000'000;
    const auto start = Clock::now();
    volatile uint64_t sink = spin(iterations, static_cast<uint64_t>(attempt) + 7);
    (void)sink;
    best = std::max(best, static_cast<double>(iterations) / msSince(start, Clock::now()));
  }
  return best;
}

// ---- per-event records --------------------------------------------------------------------

// What the classifier found in one event.
struct Classification {
  std::array<uint64_t, 3> per_class{};  // patches per most likely class (EM, track, none)
  double michel_sum = 0;
  uint64_t hash = 1469598103934665603ull;  // FNV-1a over the most likely class of every patch
  double module_ms = 0;                    // acquire() start to produce() end
};

struct EventRecord {
  uint64_t id = 0;
  double start_s = 0, end_s = 0;  // since the run's start
  double source_ms = 0, ml_ms = 0, cpu_ms = 0;
  Classification classification;
};

// Every event's record; any thread.
class EventLog {
 public:
  explicit EventLog(Clock::time_point origin) : origin_(origin) {}
  Clock::time_point origin() const { return origin_; }
  void add(EventRecord record) {
    std::lock_guard lock(mutex_);
    records_.push_back(std::move(record));
  }
  std::vector<EventRecord> take() {
    std::lock_guard lock(mutex_);
    std::sort(records_.begin(), records_.end(),
              [](const EventRecord& a, const EventRecord& b) { return a.id < b.id; });
    return std::move(records_);
  }

 private:
  Clock::time_point origin_;
  std::mutex mutex_;  // guards records_
  std::vector<EventRecord> records_;
};

// ---- the modules ----------------------------------------------------------------------------

struct EventStart {
  Clock::time_point time;
  double source_ms = 0;
};

// The event source: the event's patches (deterministic in the event id) and its start time.
class PatchSource final : public bf::Module {
 public:
  explicit PatchSource(size_t patches) : patches_(patches) {}
  std::string_view name() const override { return "PatchSource"; }
  Status produce(bf::Event& event) override {
    const auto start = Clock::now();
    bf::Patches patches;
    bf::makePatches(event.id(), patches_, patches);
    event.put("patches", std::move(patches));
    event.put("start", EventStart{start, msSince(start, Clock::now())});
    return Status::ok();
  }

 private:
  size_t patches_;
};

// emtrack_cnn on every patch, SonicTriton-style: acquire() fills one entry per patch in place
// and dispatches; produce() reads the 3 class scores and the Michel score of each patch. The
// client is owned by main() (it outlives the warm-up and calibration runs); one per stream.
class HitClassifier final : public bf::Module {
 public:
  HitClassifier(bc::EventClient& client, size_t scores_output, size_t michel_output)
      : client_(client), scores_output_(scores_output), michel_output_(michel_output) {}
  std::string_view name() const override { return "HitClassifier"; }

  void acquire(bf::Event& event, bf::WaitingTaskHolder holder) override {
    started_ = Clock::now();
    const bf::Patches* patches = event.get<bf::Patches>("patches");
    if (patches == nullptr) {
      holder.doneWaiting(beamline::notFound("no 'patches' product"));
      return;
    }
    Status status = client_.setBatchSize(patches->count);
    auto input = client_.input(0);
    for (size_t p = 0; status.isOk() && p < patches->count; ++p) {
      auto entry = input.entry<float>(p);
      if (!entry.isOk()) {
        status = entry.status();
        break;
      }
      std::memcpy(entry->data(), patches->pixels.data() + p * bf::kPatchPixels,
                  bf::kPatchPixels * sizeof(float));
    }
    if (!status.isOk()) {
      holder.doneWaiting(status);
      return;
    }
    client_.dispatch(
        [holder = std::move(holder)](Status done) mutable { holder.doneWaiting(std::move(done)); });
  }

  Status produce(bf::Event& event) override {
    Classification result;
    auto scores = client_.output(scores_output_);
    auto michel = client_.output(michel_output_);
    for (size_t p = 0; p < client_.batchSize(); ++p) {
      BL_ASSIGN_OR_RETURN(std::span<const float> s, scores.entry<float>(p));
      BL_ASSIGN_OR_RETURN(std::span<const float> m, michel.entry<float>(p));
      if (s.size() != 3 || m.size() != 1) {
        return beamline::internalError("expected 3 class scores and 1 Michel score per patch");
      }
      const auto best = static_cast<uint64_t>(std::max_element(s.begin(), s.end()) - s.begin());
      ++result.per_class[best];
      result.michel_sum += m[0];
      result.hash = (result.hash ^ best) * 1099511628211ull;
    }
    client_.reset();
    result.module_ms = msSince(started_, Clock::now());
    event.put("classification", result);
    return Status::ok();
  }

 private:
  bc::EventClient& client_;
  size_t scores_output_, michel_output_;
  Clock::time_point started_;
};

enum class CpuWork { kBusy, kSleep };

// The rest of the reconstruction: `iterations` of spin() (kBusy), or a sleep of `sleep_ms`
// (kSleep: the CPU part runs elsewhere, as when the clients are other machines' jobs; pass what
// the loop took in the CPU-only job). Last module: writes the event's record.
class Reconstruction final : public bf::Module {
 public:
  Reconstruction(uint64_t iterations, CpuWork work, double sleep_ms, EventLog& log)
      : iterations_(iterations), work_(work), sleep_ms_(sleep_ms), log_(log) {}
  std::string_view name() const override { return "Reconstruction"; }
  Status produce(bf::Event& event) override {
    const auto start = Clock::now();
    if (work_ == CpuWork::kBusy) {
      sink_ += spin(iterations_, event.id() + 1);
    } else if (sleep_ms_ > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(sleep_ms_));
    }
    const auto end = Clock::now();
    const auto* begin = event.get<EventStart>("start");
    const auto* classification = event.get<Classification>("classification");
    if (begin == nullptr || classification == nullptr) {
      return beamline::notFound("missing 'start' or 'classification' product");
    }
    EventRecord record;
    record.id = event.id();
    record.start_s = msSince(log_.origin(), begin->time) / 1000.0;
    record.end_s = msSince(log_.origin(), end) / 1000.0;
    record.source_ms = begin->source_ms;
    record.ml_ms = classification->module_ms;
    record.cpu_ms = msSince(start, end);
    record.classification = *classification;
    log_.add(std::move(record));
    return Status::ok();
  }
  uint64_t sink() const { return sink_; }

 private:
  uint64_t iterations_;
  CpuWork work_;
  double sleep_ms_;
  EventLog& log_;
  uint64_t sink_ = 0;
};

// ---- statistics helpers ---------------------------------------------------------------------

double quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double position = q * static_cast<double>(values.size() - 1);
  const auto low = static_cast<size_t>(position);
  const size_t high = std::min(low + 1, values.size() - 1);
  return values[low] + (position - static_cast<double>(low)) * (values[high] - values[low]);
}

double mean(const std::vector<double>& values) {
  return values.empty() ? 0
                        : std::accumulate(values.begin(), values.end(), 0.0) /
                              static_cast<double>(values.size());
}

// CPU seconds (user + system) this process has used.
double processCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// CPU seconds (user + system) of another process from /proc/<pid>/stat; -1 when unreadable.
double otherProcessCpuSeconds(int pid) {
  if (pid <= 0) return -1;
  std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  const size_t close = text.rfind(')');  // the command name may hold spaces
  if (close == std::string::npos) return -1;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  double ticks = 0;
  for (int index = 3; fields >> field; ++index) {  // field 3 is the state
    if (index == 14 || index == 15) ticks += std::stod(field);
    if (index == 15) break;
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// The server's inference and execution counters of one model (0, 0 when unavailable).
std::pair<uint64_t, uint64_t> serverCounters(bc::GrpcClient* client, const std::string& model) {
  if (client == nullptr) return {0, 0};
  auto stats = client->modelStatistics(model);
  if (!stats.isOk() || stats->model_stats_size() == 0) return {0, 0};
  return {stats->model_stats(0).inference_count(), stats->model_stats(0).execution_count()};
}

Result<std::unique_ptr<bc::GrpcClient>> statisticsClient(const std::string& url) {
  bc::ClientOptions options;
  options.url = url;
  options.timeout = std::chrono::seconds(10);
  return bc::GrpcClient::create(options);
}

// A registry on one server (no fallback, nothing from the environment).
Result<std::shared_ptr<bc::ServerRegistry>> serverRegistry(const std::string& url) {
  bc::ServerRegistry::Config config;
  BL_ASSIGN_OR_RETURN(bc::ServerAddress address, bc::parseServerAddress(url));
  config.servers.push_back(address);
  config.servers_from_environment = false;
  config.fallback.enabled = false;
  return bc::ServerRegistry::create(std::move(config), bc::stderrLogger());
}

// A registry on a beamline core in this process that loads only `model` from `repository`.
Result<std::shared_ptr<bc::ServerRegistry>> inProcessRegistry(const std::string& repository,
                                                              const std::string& model,
                                                              const std::string& backends) {
  beamline::ServerOptions options;
  options.model_repositories = {repository};
  options.control_mode = beamline::ModelControlMode::kExplicit;
  options.startup_models = {model};
  if (!backends.empty()) options.backend_directories = {backends};
  BL_ASSIGN_OR_RETURN(std::shared_ptr<bc::Endpoint> endpoint,
                      bc::createInProcessEndpoint(std::move(options), bc::stderrLogger()));
  bc::ServerRegistry::Config config;
  config.endpoints = {std::move(endpoint)};
  config.servers_from_environment = false;
  config.fallback.enabled = false;
  return bc::ServerRegistry::create(std::move(config), bc::stderrLogger());
}

// ---- study -----------------------------------------------------------------------------------

struct StudyOptions {
  std::string mode = "cpu";  // cpu | service
  std::string server, repository, backends, model = "emtrack_cnn", call_mode = "Async";
  std::string cpu_work = "busy";  // busy | sleep
  size_t threads = 2, streams = 0, patches = 2000;
  uint64_t events = 8, warmup_events = 0, calibration_events = 0;
  double cpu_fraction = -1;  // < 0: use cpu_work_units
  uint64_t cpu_work_units = 0;
  double cpu_sleep_ms = 0;
  int server_pid = 0;  // > 0: account the server's CPU time too
  bool shared_memory = false;
  std::string json;
};

struct RunResult {
  bf::RunSummary summary;
  std::vector<EventRecord> records;
};

Result<RunResult> runJob(const StudyOptions& options, size_t streams, uint64_t events,
                         uint64_t iterations,
                         std::vector<std::unique_ptr<bc::EventClient>>& clients) {
  EventLog log(Clock::now());
  const CpuWork work = options.cpu_work == "sleep" ? CpuWork::kSleep : CpuWork::kBusy;
  std::vector<bf::ModuleMaker> modules;
  modules.push_back([&](size_t) -> Result<std::unique_ptr<bf::Module>> {
    return std::unique_ptr<bf::Module>(std::make_unique<PatchSource>(options.patches));
  });
  modules.push_back([&](size_t stream) -> Result<std::unique_ptr<bf::Module>> {
    bc::EventClient& client = *clients.at(stream);
    size_t scores = 0, michel = 1;
    for (size_t i = 0; i < client.outputCount(); ++i) {
      const std::string& name = client.output(i).info().name;
      if (name.starts_with("michel"))
        michel = i;
      else
        scores = i;
    }
    return std::unique_ptr<bf::Module>(std::make_unique<HitClassifier>(client, scores, michel));
  });
  modules.push_back([&](size_t) -> Result<std::unique_ptr<bf::Module>> {
    return std::unique_ptr<bf::Module>(
        std::make_unique<Reconstruction>(iterations, work, options.cpu_sleep_ms, log));
  });
  bf::FrameworkConfig config;
  config.streams = streams;
  config.threads = options.threads;
  config.events = events;
  BL_ASSIGN_OR_RETURN(bf::RunSummary summary, bf::run(config, modules));
  if (summary.failed != 0) {
    return beamline::internalError(std::to_string(summary.failed) + " events failed, first: " +
                                   (summary.errors.empty() ? "?" : summary.errors.front()));
  }
  return RunResult{std::move(summary), log.take()};
}

int runStudy(const StudyOptions& options) {
  if (options.mode != "cpu" && options.mode != "service") {
    std::fprintf(stderr, "--mode must be cpu or service\n");
    return 2;
  }
  if (options.cpu_work != "busy" && options.cpu_work != "sleep") {
    std::fprintf(stderr, "--cpu-work must be busy or sleep\n");
    return 2;
  }
  if (options.mode == "service" ? options.server.empty() : options.repository.empty()) {
    std::fprintf(stderr, "--mode %s needs %s\n", options.mode.c_str(),
                 options.mode == "service" ? "--server" : "--model-repository");
    return 2;
  }
  const bool cpu_only = options.mode == "cpu";
  const size_t streams = options.streams == 0 ? options.threads : options.streams;
  const double iterations_per_ms = calibrateSpin();

  // One client per stream. CPU-only: each stream has its own in-process core and LibTorch
  // instance and calls it synchronously (the worker thread waits for its own inference).
  bc::EventClient::Config client_config;
  client_config.model_name = options.model;
  client_config.timeout = std::chrono::seconds(300);
  client_config.use_shared_memory = options.shared_memory;
  client_config.retry.fallback = false;
  auto call_mode = bc::parseCallMode(cpu_only ? "Sync" : options.call_mode);
  if (!call_mode.isOk()) {
    std::fprintf(stderr, "%s\n", call_mode.status().toString().c_str());
    return 2;
  }
  client_config.mode = *call_mode;
  std::vector<std::shared_ptr<bc::ServerRegistry>> registries;
  std::vector<std::unique_ptr<bc::EventClient>> clients;
  std::unique_ptr<bc::GrpcClient> statistics;
  for (size_t s = 0; s < streams; ++s) {
    if (cpu_only || registries.empty()) {
      auto registry = cpu_only
                          ? inProcessRegistry(options.repository, options.model, options.backends)
                          : serverRegistry(options.server);
      if (!registry.isOk()) {
        std::fprintf(stderr, "registry: %s\n", registry.status().toString().c_str());
        return 1;
      }
      registries.push_back(*registry);
    }
    auto client = bc::EventClient::create(client_config, registries.back(), bc::stderrLogger());
    if (!client.isOk()) {
      std::fprintf(stderr, "client: %s\n", client.status().toString().c_str());
      return 1;
    }
    clients.push_back(std::move(client).value());
  }
  if (!cpu_only) {
    auto client = statisticsClient(options.server);
    if (client.isOk()) statistics = std::move(client).value();
  }

  auto fail = [](const Status& status) {
    std::fprintf(stderr, "study: %s\n", status.toString().c_str());
    return 1;
  };
  // Warm-up (first LibTorch calls, connections), then with --cpu-fraction two calibration runs
  // (without the busy loop, then with it) that size it.
  const uint64_t warmup = options.warmup_events == 0 ? streams : options.warmup_events;
  if (auto run = runJob(options, streams, warmup, 0, clients); !run.isOk()) {
    return fail(run.status());
  }
  uint64_t iterations = options.cpu_work_units;
  double calibration_ml_ms = 0, calibration_source_ms = 0;
  if (options.cpu_fraction >= 0) {
    const uint64_t events = options.calibration_events == 0 ? streams : options.calibration_events;
    auto run = runJob(options, streams, events, 0, clients);
    if (!run.isOk()) return fail(run.status());
    std::vector<double> ml, source;
    for (const auto& r : run->records) {
      ml.push_back(r.ml_ms);
      source.push_back(r.source_ms);
    }
    calibration_ml_ms = quantile(ml, 0.5);
    calibration_source_ms = quantile(source, 0.5);
    const double f = std::clamp(options.cpu_fraction, 0.0, 0.95);
    const double busy_ms = std::max(0.0, calibration_ml_ms * f / (1 - f) - calibration_source_ms);
    iterations = static_cast<uint64_t>(busy_ms * iterations_per_ms);
    // Contention slows the loop and the CNN by different factors: one more pass with the loop in
    // place, and the loop rescaled to what the share needs under those conditions.
    if (iterations > 0) {
      auto again = runJob(options, streams, events, iterations, clients);
      if (!again.isOk()) return fail(again.status());
      std::vector<double> ml2, source2, cpu2;
      for (const auto& r : again->records) {
        ml2.push_back(r.ml_ms);
        source2.push_back(r.source_ms);
        cpu2.push_back(r.cpu_ms);
      }
      const double wanted_ms = quantile(ml2, 0.5) * f / (1 - f) - quantile(source2, 0.5);
      const double got_ms = quantile(cpu2, 0.5);
      if (got_ms > 0) {
        iterations = static_cast<uint64_t>(static_cast<double>(iterations) *
                                           std::max(0.0, wanted_ms) / got_ms);
      }
      calibration_ml_ms = quantile(ml2, 0.5);
      calibration_source_ms = quantile(source2, 0.5);
    }
  }

  const auto before = serverCounters(statistics.get(), options.model);
  const double client_cpu_before = processCpuSeconds();
  const double server_cpu_before = otherProcessCpuSeconds(options.server_pid);
  auto run = runJob(options, streams, options.events, iterations, clients);
  if (!run.isOk()) return fail(run.status());
  const double client_cpu_s = processCpuSeconds() - client_cpu_before;
  const double server_cpu_s =
      server_cpu_before < 0 ? 0.0 : otherProcessCpuSeconds(options.server_pid) - server_cpu_before;
  const auto after = serverCounters(statistics.get(), options.model);

  std::vector<double> ml, cpu, source, latency, share;
  uint64_t patches = 0;
  for (const auto& r : run->records) {
    ml.push_back(r.ml_ms);
    cpu.push_back(r.cpu_ms);
    source.push_back(r.source_ms);
    latency.push_back((r.end_s - r.start_s) * 1000.0);
    share.push_back((r.cpu_ms + r.source_ms) / std::max(1e-9, (r.end_s - r.start_s) * 1000.0));
    for (uint64_t c : r.classification.per_class) patches += c;
  }
  const double seconds = std::chrono::duration<double>(run->summary.wall).count();
  const double events_per_s = static_cast<double>(run->records.size()) / seconds;
  const uint64_t inferences = after.first - before.first, executions = after.second - before.second;
  std::printf(
      "mode=%s threads=%zu streams=%zu events=%zu patches/event=%zu: %.3f events/s, ML module "
      "%.1f ms/event (median), CPU part %.1f ms + source %.1f ms, latency p50 %.1f ms, "
      "non-ML share %.2f\n",
      options.mode.c_str(), options.threads, streams, run->records.size(), options.patches,
      events_per_s, quantile(ml, 0.5), quantile(cpu, 0.5), quantile(source, 0.5),
      quantile(latency, 0.5), mean(share));
  if (!cpu_only) {
    std::printf(
        "server: %llu inferences in %llu executions (avg batch %.1f)\n",
        static_cast<unsigned long long>(inferences), static_cast<unsigned long long>(executions),
        executions > 0 ? static_cast<double>(inferences) / static_cast<double>(executions) : 0.0);
  }
  std::printf("cpu-work-units=%llu (%.1f ms at %.0f iterations/ms)\n",
              static_cast<unsigned long long>(iterations),
              static_cast<double>(iterations) / iterations_per_ms, iterations_per_ms);

  if (!options.json.empty()) {
    FILE* out = std::fopen(options.json.c_str(), "w");
    if (out == nullptr) {
      std::fprintf(stderr, "cannot write %s\n", options.json.c_str());
      return 1;
    }
    std::fprintf(
        out,
        "{\"mode\": \"%s\", \"call_mode\": \"%s\", \"cpu_work\": \"%s\", \"threads\": %zu, "
        "\"streams\": %zu, \"patches\": %zu, \"events\": %zu, \"seconds\": %.6f, "
        "\"events_per_s\": %.6f, \"patches_classified\": %llu,\n",
        options.mode.c_str(), cpu_only ? "Sync" : options.call_mode.c_str(),
        options.cpu_work.c_str(), options.threads, streams, options.patches, run->records.size(),
        seconds, events_per_s, static_cast<unsigned long long>(patches));
    std::fprintf(out,
                 " \"ml_ms_median\": %.3f, \"ml_ms_mean\": %.3f, \"cpu_ms_median\": %.3f, "
                 "\"source_ms_median\": %.3f, \"latency_ms_p50\": %.3f, \"latency_ms_p90\": %.3f, "
                 "\"latency_ms_mean\": %.3f, \"non_ml_share\": %.4f,\n",
                 quantile(ml, 0.5), mean(ml), quantile(cpu, 0.5), quantile(source, 0.5),
                 quantile(latency, 0.5), quantile(latency, 0.9), mean(latency), mean(share));
    std::fprintf(
        out,
        " \"cpu_work_units\": %llu, \"cpu_sleep_ms\": %.3f, \"iterations_per_ms\": %.1f, "
        "\"cpu_fraction_target\": %.3f, "
        "\"calibration_ml_ms\": %.3f, \"calibration_source_ms\": %.3f, "
        "\"server_inferences\": %llu, \"server_executions\": %llu, \"client_cpu_s\": %.3f, "
        "\"server_cpu_s\": %.3f,\n \"records\": [\n",
        static_cast<unsigned long long>(iterations), options.cpu_sleep_ms, iterations_per_ms,
        options.cpu_fraction, calibration_ml_ms, calibration_source_ms,
        static_cast<unsigned long long>(inferences), static_cast<unsigned long long>(executions),
        client_cpu_s, server_cpu_s);
    for (size_t i = 0; i < run->records.size(); ++i) {
      const auto& r = run->records[i];
      const auto& c = r.classification;
      std::fprintf(out,
                   "  {\"id\": %llu, \"start_s\": %.6f, \"end_s\": %.6f, \"source_ms\": %.3f, "
                   "\"ml_ms\": %.3f, \"cpu_ms\": %.3f, \"classes\": [%llu, %llu, %llu], "
                   "\"michel_sum\": %.6f, \"hash\": \"%016llx\"}%s\n",
                   static_cast<unsigned long long>(r.id), r.start_s, r.end_s, r.source_ms, r.ml_ms,
                   r.cpu_ms, static_cast<unsigned long long>(c.per_class[0]),
                   static_cast<unsigned long long>(c.per_class[1]),
                   static_cast<unsigned long long>(c.per_class[2]), c.michel_sum,
                   static_cast<unsigned long long>(c.hash), i + 1 < run->records.size() ? "," : "");
    }
    std::fprintf(out, " ]}\n");
    std::fclose(out);
  }
  std::printf(
      "result mode=%s threads=%zu streams=%zu events=%zu events/s=%.4f ml_ms=%.2f "
      "latency_ms=%.2f\n",
      options.mode.c_str(), options.threads, streams, run->records.size(), events_per_s,
      quantile(ml, 0.5), quantile(latency, 0.5));
  return 0;
}

// ---- ratio ----------------------------------------------------------------------------------

struct RatioOptions {
  std::string server, repository, backends, prefix = "emtrack_cnn";
  std::vector<int64_t> batch_sizes = {1, 16, 64, 256};
  double duration_s = 3;
  int64_t particles = 50;  // P for models with a variable particle dimension
  size_t in_flight = 8, split = 4, in_process_in_flight = 2;
  size_t rounds = 3;  // in-process and served slices alternate this many times
  std::string json;
};

// Input data for `items` objects of a model: one buffer per input, item after item.
struct ItemData {
  std::vector<std::vector<int64_t>> shapes;  // per input, the item shape (-1 filled in)
  std::vector<std::vector<float>> values;    // per input, items x elements
  std::vector<size_t> elements;              // per input, elements per item
};

ItemData makeItems(const bc::ModelInfo& model, size_t items, int64_t particles) {
  ItemData data;
  bf::Patches patches;
  bf::makePatches(12345, items, patches);
  uint64_t state = 88172645463325252ull;
  for (const auto& input : model.inputs) {
    std::vector<int64_t> shape(input.dims.begin(), input.dims.end());
    size_t elements = 1;
    for (auto& d : shape) {
      if (d < 0) d = particles;
      elements *= static_cast<size_t>(d);
    }
    std::vector<float> values(elements * items);
    if (elements == bf::kPatchPixels) {
      values = patches.pixels;
    } else if (input.name == "mask") {
      std::fill(values.begin(), values.end(), 1.0f);
    } else {
      for (auto& v : values) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        v = static_cast<float>(state >> 40) / static_cast<float>(1 << 24) - 0.5f;
      }
    }
    data.shapes.push_back(std::move(shape));
    data.values.push_back(std::move(values));
    data.elements.push_back(elements);
  }
  return data;
}

// One call of `items` items (from item `first` of `data` on) through `client`.
Status callItems(bc::EventClient& client, const ItemData& data, size_t items, size_t first = 0) {
  BL_RETURN_IF_ERROR(client.setBatchSize(items));
  // Every shape first: the first entry written lays out the requests.
  for (size_t i = 0; i < client.inputCount(); ++i) {
    BL_RETURN_IF_ERROR(client.input(i).setShape(std::span<const int64_t>(data.shapes[i])));
  }
  for (size_t i = 0; i < client.inputCount(); ++i) {
    auto input = client.input(i);
    for (size_t p = 0; p < items; ++p) {
      BL_ASSIGN_OR_RETURN(std::span<float> entry, input.entry<float>(p));
      std::memcpy(entry.data(), data.values[i].data() + (first + p) * data.elements[i],
                  data.elements[i] * sizeof(float));
    }
  }
  Status status = client.call();
  client.reset();
  return status;
}

// Runs `clients` (Sync, one thread each) back to back with calls of `items` items for `slice`,
// and on until `minimum_items` are done (slow models); returns the items done and the time taken
// until every call in flight finished, or the first error. Client c sends the items from
// (c % parts) * items on, so that requests merged by a batcher cover `data`'s items.
struct Driven {
  double items = 0, ms = 0;
  Status status;
};
Driven drive(const std::vector<std::unique_ptr<bc::EventClient>>& clients, const ItemData& data,
             size_t items, size_t parts, std::chrono::duration<double> slice,
             size_t minimum_items) {
  std::atomic<bool> stop{false};
  std::atomic<size_t> done{0};
  std::mutex mutex;  // guards first_error
  Status first_error;
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (size_t index = 0; index < clients.size(); ++index) {
    threads.emplace_back([&, c = clients[index].get(), first = (index % parts) * items] {
      while (!stop.load()) {
        Status status = callItems(*c, data, items, first);
        if (status.isOk()) {
          done += items;
          continue;
        }
        std::lock_guard lock(mutex);
        if (first_error.isOk()) first_error = status;
        stop = true;
      }
    });
  }
  std::this_thread::sleep_for(slice);
  while (!stop.load() && done.load() < minimum_items && Clock::now() - start < 10 * slice) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stop = true;
  for (auto& t : threads) t.join();  // calls in flight finish: count them and their time
  Driven result;
  result.items = static_cast<double>(done.load());
  result.ms = msSince(start, Clock::now());
  result.status = first_error;
  return result;
}

struct Rate {
  double items_per_s = 0;
  double average_batch = 0;
};

int runRatio(const RatioOptions& options) {
  bc::EventClient::Config config;
  config.mode = bc::CallMode::kSync;
  config.timeout = std::chrono::seconds(300);
  config.use_shared_memory = false;
  config.retry.fallback = false;
  auto statistics = statisticsClient(options.server);
  auto served_registry = serverRegistry(options.server);
  if (!statistics.isOk() || !served_registry.isOk()) {
    std::fprintf(
        stderr, "server %s: %s\n", options.server.c_str(),
        (statistics.isOk() ? served_registry.status() : statistics.status()).toString().c_str());
    return 1;
  }
  const auto duration = std::chrono::duration<double>(options.duration_s);
  std::string json = "[";
  std::printf(
      "| model | batch B | in-process items/s | served items/s | served / in-process | "
      "server avg batch | items per request |\n|---|---:|---:|---:|---:|---:|---:|\n");
  for (int64_t batch : options.batch_sizes) {
    const std::string model = options.prefix + "_b" + std::to_string(batch);
    const auto items = static_cast<size_t>(batch);
    const size_t per_request = std::max<size_t>(1, items / options.split);
    config.model_name = model;
    // In-process: `in_process_in_flight` clients (default 2) sending requests of B items to one
    // instance: batches of exactly B (two never merge past max_batch_size B), and the instance
    // never waits for the caller's thread to be scheduled between requests, as a direct LibTorch
    // call on the caller's thread would not.
    auto local_registry = inProcessRegistry(options.repository, model, options.backends);
    if (!local_registry.isOk()) {
      std::fprintf(stderr, "%s in-process: %s\n", model.c_str(),
                   local_registry.status().toString().c_str());
      return 1;
    }
    std::vector<std::unique_ptr<bc::EventClient>> local_clients;
    for (size_t c = 0; c < std::max<size_t>(1, options.in_process_in_flight); ++c) {
      auto client = bc::EventClient::create(config, *local_registry, bc::stderrLogger());
      if (!client.isOk()) {
        std::fprintf(stderr, "%s: %s\n", model.c_str(), client.status().toString().c_str());
        return 1;
      }
      local_clients.push_back(std::move(client).value());
    }
    const ItemData local_data = makeItems(local_clients.front()->model(), items, options.particles);
    // Served: `in_flight` Sync clients, each sending requests of B/split items back to back; the
    // server's dynamic batcher merges them into batches of at most B.
    std::vector<std::unique_ptr<bc::EventClient>> clients;
    for (size_t c = 0; c < options.in_flight; ++c) {
      auto client = bc::EventClient::create(config, *served_registry, bc::stderrLogger());
      if (!client.isOk()) {
        std::fprintf(stderr, "%s served: %s\n", model.c_str(), client.status().toString().c_str());
        return 1;
      }
      clients.push_back(std::move(client).value());
    }
    const size_t parts = std::max<size_t>(1, items / per_request);

    // Warm-up of both (first LibTorch calls, connections).
    for (auto& client : local_clients) {
      for (int i = 0; i < 2; ++i) (void)callItems(*client, local_data, items);
    }
    for (auto& client : clients) (void)callItems(*client, local_data, per_request);

    // Rounds that alternate the two, so that the machine's other load falls on both alike.
    const auto slice = duration / static_cast<double>(std::max<size_t>(1, options.rounds));
    double local_items = 0, local_ms = 0, served_items = 0, served_ms = 0;
    uint64_t inferences = 0, executions = 0;
    for (size_t round = 0; round < std::max<size_t>(1, options.rounds); ++round) {
      const Driven local_run = drive(local_clients, local_data, items, 1, slice, 2 * items);
      if (!local_run.status.isOk()) {
        std::fprintf(stderr, "%s in-process: %s\n", model.c_str(),
                     local_run.status.toString().c_str());
        return 1;
      }
      local_items += local_run.items;
      local_ms += local_run.ms;
      const auto before = serverCounters(statistics->get(), model);
      const Driven served_run = drive(clients, local_data, per_request, parts, slice, 2 * items);
      const auto after = serverCounters(statistics->get(), model);
      if (!served_run.status.isOk()) {
        std::fprintf(stderr, "%s served: %s\n", model.c_str(),
                     served_run.status.toString().c_str());
        return 1;
      }
      served_items += served_run.items;
      served_ms += served_run.ms;
      inferences += after.first - before.first;
      executions += after.second - before.second;
    }
    Rate local, served;
    local.items_per_s = local_items / (local_ms / 1000);
    local.average_batch = static_cast<double>(items);
    served.items_per_s = served_items / (served_ms / 1000);
    served.average_batch =
        executions > 0 ? static_cast<double>(inferences) / static_cast<double>(executions) : 0.0;
    const double ratio = served.items_per_s / local.items_per_s;
    std::printf("| %s | %lld | %.1f | %.1f | %.2f | %.1f | %zu |\n", options.prefix.c_str(),
                static_cast<long long>(batch), local.items_per_s, served.items_per_s, ratio,
                served.average_batch, per_request);
    std::fflush(stdout);
    char row[512];
    std::snprintf(row, sizeof(row),
                  "%s{\"model\": \"%s\", \"batch\": %lld, \"in_process\": %.3f, \"served\": %.3f, "
                  "\"ratio\": %.4f, \"average_batch\": %.2f, \"items_per_request\": %zu, "
                  "\"in_flight\": %zu}",
                  json.size() > 1 ? ",\n " : "", options.prefix.c_str(),
                  static_cast<long long>(batch), local.items_per_s, served.items_per_s, ratio,
                  served.average_batch, per_request, options.in_flight);
    json += row;
  }
  json += "]\n";
  if (!options.json.empty()) {
    FILE* out = std::fopen(options.json.c_str(), "w");
    if (out == nullptr) return 1;
    std::fputs(json.c_str(), out);
    std::fclose(out);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // The allocator settings of `beamline serve`: in-process and served must differ only in the
  // serving path (process_tuning.h).
  beamline::tuneProcessForInference();
  CLI::App app{"The ProtoDUNE inference-as-a-service study and the served / in-process ratio"};
  app.require_subcommand(1);
  spdlog::set_level(spdlog::level::warn);

  StudyOptions study;
  CLI::App* study_app =
      app.add_subcommand("study", "A simulated job: CPU-only or through the service");
  study_app->add_option("--mode", study.mode, "cpu (in-process inference per worker) or service")
      ->capture_default_str();
  study_app->add_option("--server", study.server, "host:port of the server (service mode)");
  study_app->add_option("--model-repository", study.repository, "Repository for cpu mode");
  study_app->add_option("--backend-directory", study.backends, "Backend plug-ins (cpu mode)");
  study_app->add_option("--model", study.model, "The hit classifier")->capture_default_str();
  study_app->add_option("--call-mode", study.call_mode, "Sync, Async or PseudoAsync (service)")
      ->capture_default_str();
  study_app->add_option("--threads", study.threads, "Worker threads")->capture_default_str();
  study_app->add_option("--streams", study.streams, "Events in flight (0: one per thread)");
  study_app->add_option("--events", study.events, "Measured events")->capture_default_str();
  study_app->add_option("--warmup-events", study.warmup_events,
                        "Warm-up events (0: one per stream)");
  study_app->add_option("--calibration-events", study.calibration_events,
                        "Events of the --cpu-fraction calibration run (0: one per stream)");
  study_app->add_option("--patches", study.patches, "48x48 patches per event")
      ->capture_default_str();
  study_app->add_option(
      "--cpu-fraction", study.cpu_fraction,
      "Size the CPU part so that it (with the source) is this share of the event");
  study_app->add_option("--cpu-work-units", study.cpu_work_units,
                        "Size of the CPU part in busy-loop iterations (as printed by a cpu run)");
  study_app
      ->add_option("--cpu-work", study.cpu_work,
                   "busy: spin --cpu-work-units on the worker; sleep: wait --cpu-sleep-ms "
                   "(the CPU part runs elsewhere)")
      ->capture_default_str();
  study_app->add_option(
      "--cpu-sleep-ms", study.cpu_sleep_ms,
      "With --cpu-work sleep: the CPU part's time (a CPU-only run's cpu_ms_median)");
  study_app->add_option("--server-pid", study.server_pid,
                        "Process id of a local server, to account its CPU time per event");
  study_app->add_option("--shm", study.shared_memory, "Shared memory with a local server")
      ->capture_default_str();
  study_app->add_option("--json", study.json, "Write the summary and per-event records here");

  RatioOptions ratio;
  CLI::App* ratio_app =
      app.add_subcommand("ratio", "Served / in-process throughput per batch size");
  ratio_app->add_option("--server", ratio.server, "host:port of the server")->required();
  ratio_app->add_option("--model-repository", ratio.repository, "Repository for in-process")
      ->required();
  ratio_app->add_option("--backend-directory", ratio.backends, "Backend plug-ins (in-process)");
  ratio_app->add_option("--model-prefix", ratio.prefix, "Models <prefix>_b<B>")
      ->capture_default_str();
  ratio_app->add_option("-b,--batch-sizes", ratio.batch_sizes, "Batch sizes")->delimiter(',');
  ratio_app->add_option("--duration-s", ratio.duration_s, "Seconds per measurement")
      ->capture_default_str();
  ratio_app->add_option("--particles", ratio.particles, "P for variable particle dimensions")
      ->capture_default_str();
  ratio_app->add_option("--in-flight", ratio.in_flight, "Concurrent served requests")
      ->capture_default_str();
  ratio_app->add_option("--split", ratio.split, "Served requests carry B/split items")
      ->capture_default_str();
  ratio_app
      ->add_option("--in-process-in-flight", ratio.in_process_in_flight,
                   "Concurrent in-process requests of B items (1: one at a time)")
      ->capture_default_str();
  ratio_app
      ->add_option("--rounds", ratio.rounds,
                   "Alternate in-process and served this many times (duration split)")
      ->capture_default_str();
  ratio_app->add_option("--json", ratio.json, "Write the rows here");
  CLI11_PARSE(app, argc, argv);

  if (study_app->parsed()) return runStudy(study);
  return runRatio(ratio);
}
