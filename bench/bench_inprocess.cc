// The in-process limit: a model executed through beamline's core and backend plug-in in this
// process, with no network and no front end, one request of batch B at a time from one thread.
// Reports inferences/s per batch size, to set beside what clients get through the server.
//
//   beamline_bench_inprocess --model-repository models/repository -m cnn_patch --shape 1,48,48 -b 1,8,32
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "beamline/core/process_tuning.h"
#include "beamline/core/server.h"

namespace {

// Keeps the outputs in buffers reused across requests.
class ReusedSink final : public beamline::ResponseSink {
 public:
  beamline::Result<std::byte*> allocateOutput(std::string_view, beamline::DataType,
                                              std::span<const int64_t>, uint64_t bytes) override {
    buffer_.resize(bytes);
    return buffer_.data();
  }
  void complete(const beamline::Status& status, int64_t) override {
    std::lock_guard lock(mutex_);
    status_ = status;
    done_ = true;
    cv_.notify_one();
  }
  beamline::Status wait() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [this] { return done_; });
    done_ = false;
    return status_;
  }

 private:
  std::vector<std::byte> buffer_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  beamline::Status status_;
};

}  // namespace

int main(int argc, char** argv) {
  beamline::tuneProcessForInference();  // as `beamline serve` does: compare like with like
  CLI::App app{"In-process throughput of a model through beamline's core (no network)"};
  std::string repository = "models/repository", model = "cnn_patch", input = "INPUT__0";
  std::vector<int64_t> item_shape = {1, 48, 48};
  std::vector<int64_t> batch_sizes = {1, 8, 32};
  double duration_s = 5.0;
  std::string backend_dir;
  app.add_option("--model-repository", repository, "Model repository")->capture_default_str();
  app.add_option("-m,--model", model, "Model with one FP32 input")->capture_default_str();
  app.add_option("--input", input, "Input name")->capture_default_str();
  app.add_option("--shape", item_shape, "Shape of one object without the batch dimension")
      ->delimiter(',');
  app.add_option("-b,--batch-sizes", batch_sizes, "Batch sizes to measure")->delimiter(',');
  app.add_option("--duration-s", duration_s, "Seconds per batch size")->capture_default_str();
  app.add_option("--backend-directory", backend_dir, "Backend plug-in folder");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);

  beamline::ServerOptions options;
  options.model_repositories = {repository};
  options.control_mode = beamline::ModelControlMode::kExplicit;
  options.startup_models = {model};
  if (!backend_dir.empty()) options.backend_directories.push_back(backend_dir);
  if (const char* env = std::getenv("BEAMLINE_BACKEND_DIR")) options.backend_directories.push_back(env);
  const auto exe = std::filesystem::read_symlink("/proc/self/exe").parent_path().parent_path();
  options.backend_directories.push_back((exe / "backends").string());
  auto server = beamline::Server::create(options);
  if (!server.isOk()) {
    std::fprintf(stderr, "error: %s\n", server.status().message().c_str());
    return 1;
  }

  std::printf("| batch size | inferences/s | ms per batch |\n|---:|---:|---:|\n");
  ReusedSink sink;
  int64_t item_elements = 1;
  for (int64_t d : item_shape) item_elements *= d;
  for (int64_t batch : batch_sizes) {
    std::vector<float> data(static_cast<size_t>(batch * item_elements), 0.25f);
    beamline::Shape shape = {batch};
    shape.insert(shape.end(), item_shape.begin(), item_shape.end());
    auto run = [&] {
      auto request = std::make_unique<beamline::InferenceRequest>();
      request->model_name = model;
      beamline::InputTensor tensor;
      tensor.name = input;
      tensor.datatype = beamline::DataType::kFp32;
      tensor.shape = shape;
      tensor.data = std::as_bytes(std::span(data));
      request->inputs.push_back(std::move(tensor));
      request->sink = &sink;
      (*server)->infer(std::move(request));
      return sink.wait();
    };
    for (int i = 0; i < 3; ++i) (void)run();  // warm-up
    size_t count = 0;
    const auto start = std::chrono::steady_clock::now();
    double elapsed = 0;
    while (elapsed < duration_s) {
      beamline::Status status = run();
      if (!status.isOk()) {
        std::fprintf(stderr, "error: %s\n", status.message().c_str());
        return 1;
      }
      ++count;
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    std::printf("| %lld | %.0f | %.3f |\n", static_cast<long long>(batch),
                static_cast<double>(count * static_cast<size_t>(batch)) / elapsed,
                1000.0 * elapsed / static_cast<double>(count));
    std::fflush(stdout);
  }
  (*server)->stop();
  return 0;
}
