// Closed-loop gRPC inference load with the project's client: `concurrency` requests in flight,
// each reissued as soon as its response arrives, on gRPC's callback threads (no thread per
// request). Reports throughput and latency percentiles per concurrency level.
//
//   beamline_bench_grpc_infer -u 127.0.0.1:8001 -m identity_fp32 --elements 4096 -c 1,8
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <span>
#include <thread>
#include <mutex>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "beamline/client/grpc_client.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Slot {
  beamline::client::InferRequest request;
  Clock::time_point sent;
  std::vector<double> latencies_us;
};

struct LevelResult {
  int concurrency = 0;
  double seconds = 0;
  size_t completed = 0;
  size_t errors = 0;
  double p50 = 0, p90 = 0, p99 = 0;
};

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

LevelResult runLevel(const beamline::client::GrpcClient& client, const std::string& model,
                     const std::string& input, const std::vector<float>& data,
                     const std::vector<int64_t>& shape, int concurrency, double warmup_s,
                     double duration_s) {
  std::vector<Slot> slots(static_cast<size_t>(concurrency));
  for (auto& slot : slots) {
    slot.request.setModel(model);
    size_t index = slot.request.addInput(input, beamline::DataType::kFp32, shape);
    (void)slot.request.setInputData(index, std::as_bytes(std::span(data)));
    slot.latencies_us.reserve(200000);
  }
  std::atomic<bool> measuring{false};
  std::atomic<bool> stopping{false};
  std::atomic<size_t> errors{0};
  std::mutex mutex;
  std::condition_variable idle;
  int outstanding = 0;

  std::function<void(Slot&)> issue = [&](Slot& slot) {
    slot.sent = Clock::now();
    client.asyncInfer(slot.request, [&, s = &slot](beamline::Status status,
                                                   std::unique_ptr<beamline::client::InferResult>) {
      const auto now = Clock::now();
      if (!status.isOk()) {
        errors.fetch_add(1);
      } else if (measuring.load(std::memory_order_relaxed)) {
        s->latencies_us.push_back(
            std::chrono::duration<double, std::micro>(now - s->sent).count());
      }
      if (stopping.load()) {
        std::lock_guard lock(mutex);
        if (--outstanding == 0) idle.notify_all();
        return;
      }
      issue(*s);
    });
  };
  {
    std::lock_guard lock(mutex);
    outstanding = concurrency;
  }
  for (auto& slot : slots) issue(slot);
  std::this_thread::sleep_for(std::chrono::duration<double>(warmup_s));
  measuring = true;
  const auto start = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(duration_s));
  measuring = false;
  const auto end = Clock::now();
  stopping = true;
  {
    std::unique_lock lock(mutex);
    idle.wait(lock, [&] { return outstanding == 0; });
  }
  LevelResult result;
  result.concurrency = concurrency;
  result.seconds = std::chrono::duration<double>(end - start).count();
  result.errors = errors.load();
  std::vector<double> all;
  for (auto& slot : slots) all.insert(all.end(), slot.latencies_us.begin(), slot.latencies_us.end());
  result.completed = all.size();
  result.p50 = percentile(all, 0.50);
  result.p90 = percentile(all, 0.90);
  result.p99 = percentile(all, 0.99);
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Closed-loop gRPC inference benchmark with the beamline client"};
  std::string url = "127.0.0.1:8001";
  std::string model = "identity_fp32";
  int64_t elements = 4096;
  std::string input = "INPUT__0";
  std::vector<int64_t> item_shape;
  std::vector<int> levels = {1, 8};
  double warmup_s = 1.0, duration_s = 5.0;
  app.add_option("-u,--url", url, "Server address")->capture_default_str();
  app.add_option("-m,--model", model, "Model with one FP32 input and a batch dimension")
      ->capture_default_str();
  app.add_option("--elements", elements, "FP32 elements per request (4096 = 16 KiB)")
      ->capture_default_str();
  app.add_option("--input", input, "Name of the FP32 input")->capture_default_str();
  app.add_option("--shape", item_shape,
                 "Shape of one object without the batch dimension (overrides --elements), "
                 "e.g. 1,48,48; each request carries one object")
      ->delimiter(',');
  app.add_option("-c,--concurrency", levels, "Requests in flight, one run per value")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--warmup-s", warmup_s, "Seconds before measuring")->capture_default_str();
  app.add_option("--duration-s", duration_s, "Seconds measured per level")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  beamline::client::ClientOptions options;
  options.url = url;
  auto client = beamline::client::GrpcClient::create(options);
  if (!client.isOk()) {
    std::fprintf(stderr, "error: %s\n", client.status().message().c_str());
    return 1;
  }
  std::vector<int64_t> shape = {1};
  if (item_shape.empty()) {
    shape.push_back(elements);
  } else {
    shape.insert(shape.end(), item_shape.begin(), item_shape.end());
    elements = 1;
    for (int64_t d : item_shape) elements *= d;
  }
  std::vector<float> data(static_cast<size_t>(elements));
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(i % 997) * 0.5f;

  // The server's own counters (ModelStatistics) around each level give the average batch size
  // it executed.
  auto counters = [&]() -> std::pair<uint64_t, uint64_t> {
    auto stats = (*client)->modelStatistics(model);
    if (!stats.isOk() || stats->model_stats_size() == 0) return {0, 0};
    return {stats->model_stats(0).inference_count(), stats->model_stats(0).execution_count()};
  };
  std::printf("| concurrency | inferences/s | p50 us | p90 us | p99 us | avg batch | errors |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int level : levels) {
    const auto before = counters();
    LevelResult r = runLevel(**client, model, input, data, shape, level, warmup_s, duration_s);
    const auto after = counters();
    const double executions = static_cast<double>(after.second - before.second);
    const double average_batch =
        executions > 0 ? static_cast<double>(after.first - before.first) / executions : 0.0;
    std::printf("| %d | %.0f | %.0f | %.0f | %.0f | %.1f | %zu |\n", r.concurrency,
                static_cast<double>(r.completed) / r.seconds, r.p50, r.p90, r.p99, average_batch,
                r.errors);
    std::fflush(stdout);
  }
  return 0;
}
