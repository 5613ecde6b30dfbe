#include "metrics/metrics_service.h"

#include <pthread.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "metrics/prometheus_text.h"
#include "metrics/system_metrics.h"
#include "net/http_server.h"

namespace beamline::metrics {
namespace {

class MetricsServiceImpl final : public MetricsService {
 public:
  MetricsServiceImpl(Server& server, MetricsOptions options)
      : server_(server), options_(std::move(options)) {}

  ~MetricsServiceImpl() override { shutdown(); }

  Status start() {
    if (options_.gpu_metrics) {
      gpus_ = NvmlGpuReader::open();
      if (gpus_) {
        gpu_count_ = gpus_->sample().size();
        spdlog::info("metrics: {} GPU(s) found through NVML", gpu_count_);
      }
    }
    sampleOnce();  // first CPU reading; memory and GPU values right away
    net::HttpServerOptions http_options;
    http_options.address = options_.address;
    http_options.port = options_.port;
    http_options.thread_count = 1;
    http_options.max_body_bytes = 64 * 1024;
    http_options.name = "metrics";
    BL_ASSIGN_OR_RETURN(
        http_, net::HttpServer::start(http_options,
                                      [this](net::HttpRequest&& request, net::HttpResponder r) {
                                        r.send(answer(request));
                                      }));
    sampler_ = std::thread([this] { sampleLoop(); });
    return Status::ok();
  }

  int port() const override { return http_ ? http_->port() : 0; }
  size_t gpuCount() const override { return gpu_count_; }

  void shutdown() override {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
      wake_.notify_all();
    }
    if (sampler_.joinable()) sampler_.join();
    if (http_) http_->shutdown(std::chrono::steady_clock::now() + std::chrono::seconds(1));
  }

 private:
  // Metrics I/O thread.
  net::HttpResponse answer(const net::HttpRequest& request) {
    net::HttpResponse response;
    if (request.path() != "/metrics") {
      response.status = 404;
      response.body = net::jsonErrorBody("Not Found");
      return response;
    }
    if (request.method != "GET" && request.method != "HEAD") {
      response.status = 405;
      response.body = net::jsonErrorBody("Method Not Allowed");
      return response;
    }
    std::vector<ModelStatisticsSnapshot> models;
    if (auto stats = server_.modelStatistics("", -1); stats.isOk()) models = std::move(*stats);
    SystemSample system;
    {
      std::lock_guard lock(mutex_);
      system = latest_;
    }
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    response.body = renderPrometheusText(models, system);
    if (request.method == "HEAD") response.body.clear();
    return response;
  }

  // Sampler thread (and start()).
  void sampleOnce() {
    SystemSample sample;
    if (options_.cpu_metrics) {
      sample.cpu_utilization = cpu_.sample();
      if (auto memory = readMemoryInfo()) {
        sample.cpu_memory_total_bytes = memory->total_bytes;
        sample.cpu_memory_used_bytes = memory->used_bytes;
      }
    }
    if (gpus_) sample.gpus = gpus_->sample();
    std::lock_guard lock(mutex_);
    if (!sample.cpu_utilization) sample.cpu_utilization = latest_.cpu_utilization;
    latest_ = std::move(sample);
  }

  void sampleLoop() {
    pthread_setname_np(pthread_self(), "metrics-sample");
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      if (wake_.wait_for(lock, options_.interval, [&] { return stopping_; })) break;
      lock.unlock();
      sampleOnce();
      lock.lock();
    }
  }

  Server& server_;
  const MetricsOptions options_;
  std::unique_ptr<net::HttpServer> http_;
  std::unique_ptr<NvmlGpuReader> gpus_;  // sampler thread only (after start)
  size_t gpu_count_ = 0;
  CpuUtilization cpu_;  // sampler thread only (after start)
  std::mutex mutex_;    // guards latest_ and stopping_
  std::condition_variable wake_;
  SystemSample latest_;
  bool stopping_ = false;
  std::thread sampler_;
};

}  // namespace

Result<std::unique_ptr<MetricsService>> MetricsService::start(Server& server,
                                                              MetricsOptions options) {
  auto service = std::make_unique<MetricsServiceImpl>(server, std::move(options));
  BL_RETURN_IF_ERROR(service->start());
  return std::unique_ptr<MetricsService>(std::move(service));
}

}  // namespace beamline::metrics
