// How fast a 9.2 MB request (1000 patches of 48x48 FP32) reaches the server through the
// EventClient: over gRPC (serialized into the socket) and through shared memory (written into a
// registered region; the request carries only its name), against a plain memcpy of the same
// bytes in this process.
//
// Each measured step is what a framework module does per event: copy the patches from the event
// into the client's buffer (entry by entry, in place), then make the call. The server model is
// `transfer` (identity backend, run_client_bench.sh writes it): INPUT0 [1,48,48] plus a tiny
// INPUT1, and only OUTPUT1 is requested, so the server reads the patches without copying them and
// answers a few bytes: the cost measured is the way in.
//
//   beamline_bench_client_transfer --server 127.0.0.1:8001 --iterations 50
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <vector>

#include <CLI/CLI.hpp>

#include "beamline/client/event_client.h"

namespace bc = beamline::client;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kPixels = 48 * 48;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

struct Timing {
  double fill_ms = 0, call_ms = 0;
  double send_ms = 0, receive_ms = 0;  // client serialization / parsing inside the call
};

// `iterations` events of `patches` patches; per-step medians.
beamline::Result<Timing> measure(bc::EventClient& client, const std::vector<float>& source,
                                 size_t patches, int iterations, bool& used_shm) {
  std::vector<double> fill, call, send, receive;
  for (int i = -3; i < iterations; ++i) {  // 3 warm-up events
    BL_RETURN_IF_ERROR(client.setBatchSize(patches));
    auto big = client.input("INPUT0").value();
    auto small = client.input("INPUT1").value();
    const auto t0 = Clock::now();
    for (size_t p = 0; p < patches; ++p) {
      BL_ASSIGN_OR_RETURN(auto entry, big.entry<float>(p));
      std::memcpy(entry.data(), source.data() + p * kPixels, kPixels * sizeof(float));
    }
    const auto t1 = Clock::now();
    for (size_t p = 0; p < patches; ++p) {
      BL_ASSIGN_OR_RETURN(auto entry, small.entry<float>(p));
      entry[0] = static_cast<float>(p);
    }
    const auto t2 = Clock::now();
    BL_RETURN_IF_ERROR(client.call());
    const auto t3 = Clock::now();
    auto answer = client.output("OUTPUT1").value().entry<float>(patches - 1);
    if (!answer.isOk() || (*answer)[0] != static_cast<float>(patches - 1)) {
      return beamline::internalError("wrong answer from the server");
    }
    used_shm = client.lastCall().shared_memory;
    const auto& stats = client.lastCall();
    client.reset();
    if (i < 0) continue;
    send.push_back(std::chrono::duration<double, std::milli>(stats.send).count());
    receive.push_back(std::chrono::duration<double, std::milli>(stats.receive).count());
    fill.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    call.push_back(std::chrono::duration<double, std::milli>((t3 - t2)).count());
  }
  return Timing{median(fill), median(call), median(send), median(receive)};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"9.2 MB request: gRPC and shared memory against memcpy"};
  std::string server;
  size_t patches = 1000;
  int iterations = 50;
  std::string model = "transfer";
  app.add_option("--server", server, "host:port of a server with the transfer model")->required();
  app.add_option("--patches", patches, "48x48 FP32 patches per request")->capture_default_str();
  app.add_option("--iterations", iterations, "Measured requests per path")->capture_default_str();
  app.add_option("--model", model)->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const size_t bytes = patches * kPixels * sizeof(float);
  std::vector<float> source(patches * kPixels);
  std::iota(source.begin(), source.end(), 0.0f);

  // memcpy baseline: the same bytes, same sizes, warm buffers.
  std::vector<float> destination(source.size());
  std::vector<double> copies;
  for (int i = -3; i < iterations; ++i) {
    const auto t0 = Clock::now();
    std::memcpy(destination.data(), source.data(), bytes);
    const auto t1 = Clock::now();
    if (i >= 0) copies.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  const double memcpy_ms = median(copies);

  bc::ServerRegistry::Config registry_config;
  registry_config.servers_from_environment = false;
  registry_config.fallback.enabled = false;
  registry_config.servers.push_back(bc::parseServerAddress(server).value());
  auto registry = bc::ServerRegistry::create(registry_config, bc::stderrLogger()).value();

  const double mb = static_cast<double>(bytes) / 1e6;
  std::printf("request: %zu patches of 48x48 FP32 = %.2f MB; %d measured requests per path "
              "(medians)\n\n", patches, mb, iterations);
  std::printf("| path | fill ms | call ms (of which serialize) | fill + call ms | GB/s | vs memcpy |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  std::printf("| memcpy | %.3f | - | %.3f | %.2f | 1.00 |\n", memcpy_ms, memcpy_ms,
              mb / 1e3 / (memcpy_ms / 1e3));
  for (bool shm : {false, true}) {
    bc::EventClient::Config config;
    config.model_name = model;
    config.mode = bc::CallMode::kSync;
    config.outputs = {"OUTPUT1"};
    config.use_shared_memory = shm;
    auto client = bc::EventClient::create(config, registry, bc::stderrLogger());
    if (!client.isOk()) {
      std::fprintf(stderr, "%s\n", client.status().toString().c_str());
      return 1;
    }
    bool used_shm = false;
    auto timing = measure(**client, source, patches, iterations, used_shm);
    if (!timing.isOk()) {
      std::fprintf(stderr, "%s\n", timing.status().toString().c_str());
      return 1;
    }
    if (used_shm != shm) {
      std::fprintf(stderr, "shared memory was %s\n", used_shm ? "used" : "not used (refused?)");
      return 1;
    }
    const double total = timing->fill_ms + timing->call_ms;
    std::printf("| %s | %.3f | %.3f (%.3f) | %.3f | %.2f | %.2f |\n",
                shm ? "shared memory" : "gRPC", timing->fill_ms, timing->call_ms, timing->send_ms,
                total, mb / 1e3 / (total / 1e3), memcpy_ms / total);
  }
  return 0;
}
