// Helpers shared by the core's end-to-end tests: temporary repositories and a response sink
// that collects outputs.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "beamline/core/server.h"

namespace beamline {
namespace testing {

namespace fs = std::filesystem;

inline std::string backendDir() {
  const char* dir = std::getenv("BEAMLINE_BACKEND_DIR");
  return dir != nullptr ? dir : "";
}

// A fresh repository folder, removed at the end of the test.
class TempRepository {
 public:
  TempRepository() {
    path_ = fs::temp_directory_path() /
            ("beamline_core_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempRepository() { fs::remove_all(path_); }

  void addModel(const std::string& name, const std::string& config,
                const std::vector<int>& versions = {1}) {
    fs::create_directories(path_ / name);
    std::ofstream(path_ / name / "config.pbtxt") << config;
    for (int v : versions) fs::create_directories(path_ / name / std::to_string(v));
  }
  const fs::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

inline std::string identityConfig(const std::string& type = "TYPE_FP32", int max_batch_size = 8,
                           const std::string& extra = "") {
  return "backend: \"identity\"\nmax_batch_size: " + std::to_string(max_batch_size) +
         "\ninput [ { name: \"IN\" data_type: " + type + " dims: [ -1 ] } ]\n" +
         "output [ { name: \"OUT\" data_type: " + type + " dims: [ -1 ] } ]\n" + extra;
}

// Collects one response.
class CollectingSink final : public ResponseSink {
 public:
  Result<std::byte*> allocateOutput(std::string_view name, DataType datatype,
                                    std::span<const int64_t> shape, uint64_t byte_size) override {
    outputs.push_back({std::string(name), datatype, Shape(shape.begin(), shape.end()),
                       std::string(byte_size, '\0')});
    return reinterpret_cast<std::byte*>(outputs.back().data.data());
  }
  void complete(const Status& s, int64_t version) override {
    std::lock_guard lock(mutex_);
    status = s;
    model_version = version;
    done_ = true;
    cv_.notify_all();
  }
  bool isDone() {
    std::lock_guard lock(mutex_);
    return done_;
  }
  void wait() {
    std::unique_lock lock(mutex_);
    ASSERT_TRUE(cv_.wait_for(lock, std::chrono::seconds(10), [this] { return done_; }));
  }

  struct Output {
    std::string name;
    DataType datatype;
    Shape shape;
    std::string data;
  };
  std::vector<Output> outputs;
  Status status;
  int64_t model_version = -2;

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
};


inline ServerOptions optionsFor(const TempRepository& repo,
                         ModelControlMode mode = ModelControlMode::kNone) {
  ServerOptions options;
  options.model_repositories = {repo.path().string()};
  options.backend_directories = {backendDir()};
  options.control_mode = mode;
  options.exit_timeout = std::chrono::seconds(5);
  return options;
}

struct Infer {
  CollectingSink sink;
  std::vector<float> data;
  Shape shape;
};

// Runs one FP32 request on model `name` and waits for it.
inline void runFp32(Server& server, const std::string& name, Infer& call, int64_t version = -1,
                    const std::string& input_name = "IN") {
  auto request = std::make_unique<InferenceRequest>();
  request->model_name = name;
  request->model_version = version;
  InputTensor input;
  input.name = input_name;
  input.datatype = DataType::kFp32;
  input.shape = call.shape;
  input.data = std::as_bytes(std::span(call.data));
  request->inputs.push_back(std::move(input));
  request->sink = &call.sink;
  server.infer(std::move(request));
  call.sink.wait();
}

}  // namespace testing
}  // namespace beamline
