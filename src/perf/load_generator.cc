// LoadGenerator: builds the request from the model's metadata and runs the measurement loop over
// a Transport (see beamline/perf/load_generator.h for the threads).
#include "beamline/perf/load_generator.h"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "transport.h"

namespace beamline::perf {
namespace {

using Clock = std::chrono::steady_clock;

// User + system CPU time of the whole process, in nanoseconds.
uint64_t processCpuNs() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto ns = [](const timeval& t) {
    return static_cast<uint64_t>(t.tv_sec) * 1'000'000'000u +
           static_cast<uint64_t>(t.tv_usec) * 1000u;
  };
  return ns(usage.ru_utime) + ns(usage.ru_stime);
}

// ---------------------------------------------------------------------------------------------
// Input data

int64_t elementCount(const std::vector<int64_t>& shape) {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

std::string shapeText(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? "," : "") + std::to_string(shape[i]);
  return text + "]";
}

// Writes one element, given as a double, in the datatype's wire form.
void putElement(DataType datatype, double value, char* out) {
  const auto put = [&](auto typed) { std::memcpy(out, &typed, sizeof(typed)); };
  switch (datatype) {
    case DataType::kBool:
      put(static_cast<uint8_t>(value != 0));
      break;
    case DataType::kUint8:
      put(static_cast<uint8_t>(value));
      break;
    case DataType::kUint16:
      put(static_cast<uint16_t>(value));
      break;
    case DataType::kUint32:
      put(static_cast<uint32_t>(value));
      break;
    case DataType::kUint64:
      put(static_cast<uint64_t>(value));
      break;
    case DataType::kInt8:
      put(static_cast<int8_t>(value));
      break;
    case DataType::kInt16:
      put(static_cast<int16_t>(value));
      break;
    case DataType::kInt32:
      put(static_cast<int32_t>(value));
      break;
    case DataType::kInt64:
      put(static_cast<int64_t>(value));
      break;
    case DataType::kFp32:
      put(static_cast<float>(value));
      break;
    case DataType::kFp64:
      put(value);
      break;
    case DataType::kFp16: {  // small integers and simple fractions are exact enough here
      const float f = static_cast<float>(value);
      const uint32_t bits = std::bit_cast<uint32_t>(f);
      const uint32_t sign = (bits >> 16) & 0x8000u;
      const int exponent = static_cast<int>((bits >> 23) & 0xff) - 127 + 15;
      uint16_t half = static_cast<uint16_t>(sign);
      if (f != 0 && exponent > 0 && exponent < 31) {
        half = static_cast<uint16_t>(sign | (static_cast<uint32_t>(exponent) << 10) |
                                     ((bits >> 13) & 0x3ffu));
      }
      put(half);
      break;
    }
    case DataType::kBf16:
      put(static_cast<uint16_t>(std::bit_cast<uint32_t>(static_cast<float>(value)) >> 16));
      break;
    default:
      break;
  }
}

std::string jsonNumber(DataType datatype, double value) {
  if (datatype == DataType::kBool) return value != 0 ? "true" : "false";
  if (datatype == DataType::kFp32 || datatype == DataType::kFp64 || datatype == DataType::kFp16 ||
      datatype == DataType::kBf16) {
    char buffer[32];
    const auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
    return std::string(buffer, end);
  }
  return std::to_string(static_cast<int64_t>(value));
}

// Fills `input.bytes` and `input.json` from `values` (numbers) or `strings` (BYTES).
void encodeValues(InputTensor& input, const std::vector<double>& values,
                  const std::vector<std::string>& strings) {
  input.bytes.clear();
  input.json = "[";
  if (input.datatype == DataType::kBytes) {
    for (size_t i = 0; i < strings.size(); ++i) {
      const auto length = static_cast<uint32_t>(strings[i].size());
      char prefix[4];
      std::memcpy(prefix, &length, 4);
      input.bytes.append(prefix, 4);
      input.bytes += strings[i];
      input.json += (i ? "," : "") + nlohmann::json(strings[i]).dump();
    }
  } else {
    const size_t size = dataTypeByteSize(input.datatype);
    input.bytes.resize(values.size() * size);
    input.json.reserve(values.size() * 12);
    for (size_t i = 0; i < values.size(); ++i) {
      putElement(input.datatype, values[i], input.bytes.data() + i * size);
      if (i) input.json += ',';
      input.json += jsonNumber(input.datatype, values[i]);
    }
  }
  input.json += "]";
}

Status generateData(InputTensor& input, bool random, std::mt19937_64& engine) {
  const auto count = static_cast<size_t>(elementCount(input.shape));
  std::vector<double> values;
  std::vector<std::string> strings;
  if (input.datatype == DataType::kBytes) {
    std::uniform_int_distribution<int> letter('a', 'z');
    for (size_t i = 0; i < count; ++i) {
      std::string element(16, '0');
      if (random) {
        for (char& c : element) c = static_cast<char>(letter(engine));
      }
      strings.push_back(std::move(element));
    }
  } else {
    values.resize(count, 0.0);
    if (random) {
      const bool floating = input.datatype == DataType::kFp32 ||
                            input.datatype == DataType::kFp64 ||
                            input.datatype == DataType::kFp16 || input.datatype == DataType::kBf16;
      std::uniform_real_distribution<double> real(0.0, 1.0);
      std::uniform_int_distribution<int> integer(0, input.datatype == DataType::kBool ? 1 : 100);
      for (double& value : values) {
        value = floating ? real(engine) : static_cast<double>(integer(engine));
      }
    }
  }
  encodeValues(input, values, strings);
  return Status::ok();
}

void flattenJson(const nlohmann::json& value, std::vector<double>& numbers,
                 std::vector<std::string>& strings) {
  if (value.is_array()) {
    for (const auto& element : value) flattenJson(element, numbers, strings);
  } else if (value.is_string()) {
    strings.push_back(value.get<std::string>());
  } else if (value.is_boolean()) {
    numbers.push_back(value.get<bool>() ? 1 : 0);
  } else if (value.is_number()) {
    numbers.push_back(value.get<double>());
  }
}

// --input-data <file.json>: perf_analyzer's layout {"data": [{"NAME": [...] | {"content": [...],
// "shape": [...]}}]}; the first entry is used.
Status loadJsonData(const std::string& path, std::vector<InputTensor>& inputs) {
  std::ifstream file(path);
  auto json = nlohmann::json::parse(file, nullptr, false);
  if (json.is_discarded() || !json.contains("data") || !json["data"].is_array() ||
      json["data"].empty()) {
    return invalidArg("--input-data " + path + ": expected JSON {\"data\": [{\"INPUT\": [...]}]}");
  }
  const auto& entry = json["data"][0];
  for (InputTensor& input : inputs) {
    if (!entry.contains(input.name)) {
      return invalidArg("--input-data " + path + ": no data for input '" + input.name + "'");
    }
    const nlohmann::json* content = &entry[input.name];
    if (content->is_object()) {
      if (content->contains("shape")) {
        input.shape = (*content)["shape"].get<std::vector<int64_t>>();
      }
      content = &(*content)["content"];
    }
    std::vector<double> numbers;
    std::vector<std::string> strings;
    flattenJson(*content, numbers, strings);
    const size_t got = input.datatype == DataType::kBytes ? strings.size() : numbers.size();
    if (static_cast<int64_t>(got) != elementCount(input.shape)) {
      return invalidArg("--input-data " + path + ": input '" + input.name + "' has " +
                        std::to_string(got) + " elements, its shape " + shapeText(input.shape) +
                        " needs " + std::to_string(elementCount(input.shape)));
    }
    encodeValues(input, numbers, strings);
  }
  return Status::ok();
}

// --input-data <dir>: one file per input, named after it, with the raw wire bytes.
Status loadDirectoryData(const std::string& directory, std::vector<InputTensor>& inputs) {
  for (InputTensor& input : inputs) {
    const auto path = std::filesystem::path(directory) / input.name;
    std::ifstream file(path, std::ios::binary);
    if (!file) return invalidArg("--input-data: cannot read " + path.string());
    std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    if (input.datatype != DataType::kBytes &&
        bytes.size() !=
            static_cast<size_t>(elementCount(input.shape)) * dataTypeByteSize(input.datatype)) {
      return invalidArg("--input-data: " + path.string() + " has " + std::to_string(bytes.size()) +
                        " bytes, input '" + input.name + "' of shape " + shapeText(input.shape) +
                        " needs " +
                        std::to_string(static_cast<size_t>(elementCount(input.shape)) *
                                       dataTypeByteSize(input.datatype)));
    }
    input.bytes = std::move(bytes);
    input.json = "[]";
    if (input.datatype != DataType::kBytes) {
      // JSON requests carry the same values.
      const size_t size = dataTypeByteSize(input.datatype);
      std::vector<double> values;
      for (size_t offset = 0; offset < input.bytes.size(); offset += size) {
        double value = 0;
        const char* p = input.bytes.data() + offset;
        switch (input.datatype) {
          case DataType::kFp32: {
            float f;
            std::memcpy(&f, p, 4);
            value = f;
            break;
          }
          case DataType::kFp64:
            std::memcpy(&value, p, 8);
            break;
          case DataType::kInt32: {
            int32_t v;
            std::memcpy(&v, p, 4);
            value = v;
            break;
          }
          case DataType::kInt64: {
            int64_t v;
            std::memcpy(&v, p, 8);
            value = static_cast<double>(v);
            break;
          }
          default: {
            uint8_t v;
            std::memcpy(&v, p, 1);
            value = v;
            break;
          }
        }
        values.push_back(value);
      }
      std::string bytes_copy = input.bytes;
      encodeValues(input, values, {});
      input.bytes = std::move(bytes_copy);  // keep the exact file bytes on the binary paths
    }
  }
  return Status::ok();
}

// Builds the inputs' final shapes from the model description, --shape and -b.
Result<RequestTemplate> buildTemplate(const PerfOptions& options, const ModelSpec& spec) {
  RequestTemplate request;
  request.model = options.model;
  request.version = options.version;
  const bool batches = spec.max_batch_size.value_or(0) > 0;
  if (!batches && options.batch_size != 1 && spec.max_batch_size.has_value()) {
    return invalidArg("model '" + options.model + "' does not batch (max_batch_size 0): -b " +
                      std::to_string(options.batch_size) + " is not possible");
  }
  if (batches && options.batch_size > *spec.max_batch_size) {
    return invalidArg("-b " + std::to_string(options.batch_size) + " exceeds model '" +
                      options.model + "' max_batch_size " + std::to_string(*spec.max_batch_size));
  }
  if (spec.inputs.empty()) return invalidArg("model '" + options.model + "' has no inputs");
  for (const auto& [name, dims] : options.shapes) {
    const bool known = std::any_of(spec.inputs.begin(), spec.inputs.end(),
                                   [&](const TensorSpec& t) { return t.name == name; });
    if (!known) {
      return invalidArg("--shape " + name + ": model '" + options.model + "' has no such input");
    }
  }
  for (const TensorSpec& tensor : spec.inputs) {
    InputTensor input;
    input.name = tensor.name;
    input.datatype = tensor.datatype;
    std::vector<int64_t> dims = tensor.dims;
    if (batches && !dims.empty()) dims.erase(dims.begin());  // the batch dimension
    const auto given = std::find_if(options.shapes.begin(), options.shapes.end(),
                                    [&](const auto& shape) { return shape.first == tensor.name; });
    if (given != options.shapes.end()) {
      if (given->second.size() != dims.size() && !dims.empty()) {
        return invalidArg("--shape " + tensor.name + ": " + std::to_string(given->second.size()) +
                          " dimensions given, the model's input has " +
                          std::to_string(dims.size()) + " " + shapeText(dims) +
                          (batches ? " (without the batch dimension)" : ""));
      }
      for (size_t i = 0; i < dims.size(); ++i) {
        if (dims[i] != -1 && dims[i] != given->second[i]) {
          return invalidArg("--shape " + tensor.name + ": dimension " + std::to_string(i) +
                            " is fixed at " + std::to_string(dims[i]) + " by the model");
        }
      }
      dims = given->second;
    }
    for (int64_t dim : dims) {
      if (dim < 0) {
        return invalidArg("input '" + tensor.name + "' of model '" + options.model +
                          "' has a variable dimension " + shapeText(dims) +
                          ": give its shape with "
                          "--shape " +
                          tensor.name + ":d1,d2,...");
      }
    }
    if (batches) dims.insert(dims.begin(), options.batch_size);
    input.shape = dims;
    request.inputs.push_back(std::move(input));
  }
  for (const TensorSpec& output : spec.outputs) request.outputs.push_back(output.name);
  std::mt19937_64 engine(options.seed);
  if (options.input_data == "zero" || options.input_data == "random") {
    for (InputTensor& input : request.inputs) {
      BL_RETURN_IF_ERROR(generateData(input, options.input_data == "random", engine));
    }
  } else if (std::filesystem::is_directory(options.input_data)) {
    BL_RETURN_IF_ERROR(loadDirectoryData(options.input_data, request.inputs));
  } else if (std::filesystem::is_regular_file(options.input_data)) {
    BL_RETURN_IF_ERROR(loadJsonData(options.input_data, request.inputs));
  } else {
    return invalidArg("--input-data '" + options.input_data +
                      "': expected zero, random, a directory or a JSON file");
  }
  return request;
}

// ---------------------------------------------------------------------------------------------
// The measurement loop

struct Record {
  uint64_t latency_ns;
  uint64_t receive_ns;
};

// Per-slot storage of completed requests: completions of one slot never overlap, so the mutex is
// contended only when the main thread takes the records at a window boundary.
struct SlotRecords {
  std::mutex mutex;
  std::vector<Record> records;  // guarded by mutex
  uint64_t errors = 0;          // guarded by mutex
  std::string first_error;      // guarded by mutex
  Clock::time_point sent;       // written by the sender, read by the completion of the same slot
  int consecutive_errors = 0;   // touched only by the slot's completions, which never overlap
};

// The measurement loop. Threads: run() on the main thread, which also sleeps through warm-up and
// windows and collects records; onComplete()/onSent() on the transport's threads (closed loop:
// the completion re-sends on its slot); in request-rate mode scheduleLoop() on a thread of its own
// per level. Shared state: per-slot records behind per-slot mutexes, the free-slot list behind
// free_mutex_, counters atomic.
class LoadGeneratorImpl final : public LoadGenerator, private CompletionSink {
 public:
  LoadGeneratorImpl(PerfOptions options, std::unique_ptr<Transport> transport, ModelSpec spec,
                    RequestTemplate request)
      : options_(std::move(options)),
        transport_(std::move(transport)),
        spec_(std::move(spec)),
        request_(std::move(request)) {}

  ~LoadGeneratorImpl() override { transport_->close(); }

  std::vector<std::string> describeInputs() const override {
    std::vector<std::string> lines;
    for (const InputTensor& input : request_.inputs) {
      lines.push_back(input.name + " " + std::string(dataTypeWireName(input.datatype)) + " " +
                      shapeText(input.shape) + " " + std::to_string(input.bytes.size()) + " bytes");
    }
    return lines;
  }

  Result<PerfReport> run(const ProgressCallback& progress) override {
    PerfReport report;
    report.model = options_.model;
    report.version = options_.version;
    report.url = options_.url;
    report.batch_size = options_.batch_size;
    report.protocol = protocolName();
    const bool rate_mode = options_.request_rate_range.has_value();
    const std::vector<double> levels =
        expandRange(rate_mode ? *options_.request_rate_range : options_.concurrency_range);
    size_t slots = 0;
    if (rate_mode) {
      slots = std::max<size_t>(1, options_.max_outstanding);
    } else {
      for (double level : levels) slots = std::max(slots, static_cast<size_t>(level));
    }
    slots_ = std::vector<SlotRecords>(slots);
    BL_RETURN_IF_ERROR(transport_->prepare(request_, slots, this));
    for (double level : levels) {
      BL_ASSIGN_OR_RETURN(StepReport step, runStep(level, rate_mode, progress));
      report.steps.push_back(std::move(step));
    }
    return report;
  }

 private:
  std::string protocolName() const {
    std::string name;
    if (options_.protocol == Protocol::kGrpc) {
      name = options_.streaming ? "grpc-streaming" : "grpc";
    } else {
      name = options_.http_format == HttpFormat::kJson ? "http-json" : "http-binary";
    }
    if (options_.shared_memory == SharedMemoryKind::kSystem) name += "+shm-system";
    if (options_.shared_memory == SharedMemoryKind::kCuda) name += "+shm-cuda";
    return name;
  }

  // CompletionSink, on the transport's threads.
  void onSent(uint64_t send_ns) override {
    send_ns_.fetch_add(send_ns, std::memory_order_relaxed);
    send_count_.fetch_add(1, std::memory_order_relaxed);
  }

  void onComplete(size_t slot, const std::string& error, uint64_t receive_ns) override {
    SlotRecords& records = slots_[slot];
    const auto latency =
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - records.sent).count();
    {
      std::lock_guard lock(records.mutex);
      if (error.empty()) {
        records.records.push_back({static_cast<uint64_t>(latency), receive_ns});
      } else {
        ++records.errors;
        if (records.first_error.empty()) records.first_error = error;
      }
    }
    if (error.empty()) succeeded_.fetch_add(1, std::memory_order_relaxed);
    // A slot whose requests keep failing (server gone, connection closed) stops rather than spin.
    records.consecutive_errors = error.empty() ? 0 : records.consecutive_errors + 1;
    if (!rate_mode_ && !stopping_.load(std::memory_order_acquire) &&
        records.consecutive_errors < 3) {
      sendOn(slot);
    } else {
      {
        std::lock_guard lock(free_mutex_);
        free_slots_.push_back(slot);
        --outstanding_;
      }
      free_cv_.notify_all();
    }
  }

  void sendOn(size_t slot) {
    slots_[slot].sent = Clock::now();
    sent_.fetch_add(1, std::memory_order_relaxed);
    transport_->send(slot);
  }

  // Takes the records of every slot (swapping in empty vectors that keep their capacity).
  struct Window {
    std::vector<uint64_t> latencies_ns;
    uint64_t receive_ns = 0;
    uint64_t errors = 0;
    std::string first_error;
    double seconds = 0;
  };

  void collect(Window& window) {
    for (SlotRecords& slot : slots_) {
      std::lock_guard lock(slot.mutex);
      for (const Record& record : slot.records) {
        window.latencies_ns.push_back(record.latency_ns);
        window.receive_ns += record.receive_ns;
      }
      slot.records.clear();
      window.errors += slot.errors;
      slot.errors = 0;
      if (window.first_error.empty() && !slot.first_error.empty()) {
        window.first_error = slot.first_error;
      }
      slot.first_error.clear();
    }
  }

  // Request-rate mode: starts requests on the schedule, waiting for a free slot when all are busy.
  void scheduleLoop(double rate) {
    RequestSchedule schedule(rate, options_.request_distribution, options_.seed);
    auto next = Clock::now();
    while (!stopping_.load(std::memory_order_acquire)) {
      next += schedule.nextGap();
      std::this_thread::sleep_until(next);
      size_t slot = 0;
      {
        std::unique_lock lock(free_mutex_);
        if (free_slots_.empty()) {
          ++delayed_;
          free_cv_.wait(lock, [&] { return !free_slots_.empty() || stopping_.load(); });
          if (stopping_.load()) break;
        }
        slot = free_slots_.back();
        free_slots_.pop_back();
        ++outstanding_;
      }
      sendOn(slot);
    }
  }

  Result<StepReport> runStep(double level, bool rate_mode, const ProgressCallback& progress) {
    StepReport step;
    rate_mode_ = rate_mode;
    const auto concurrency = static_cast<size_t>(level);
    if (rate_mode) {
      step.request_rate = level;
    } else {
      step.concurrency = static_cast<double>(concurrency);
    }
    const std::string label = rate_mode
                                  ? "request rate " + jsonNumber(DataType::kFp64, level) + "/s"
                                  : "concurrency " + std::to_string(concurrency);
    stopping_.store(false);
    sent_.store(0);
    succeeded_.store(0);
    {
      std::lock_guard lock(free_mutex_);
      free_slots_.clear();
      const size_t count = rate_mode ? slots_.size() : concurrency;
      for (size_t i = 0; i < count; ++i) free_slots_.push_back(count - 1 - i);
      outstanding_ = rate_mode ? 0 : concurrency;
      delayed_ = 0;
    }
    auto stats_before = transport_->statistics(options_.model, options_.version);

    // Start the load.
    std::thread scheduler;
    if (rate_mode) {
      scheduler = std::thread([this, level] { scheduleLoop(level); });
    } else {
      std::vector<size_t> start;
      {
        std::lock_guard lock(free_mutex_);
        start.swap(free_slots_);
      }
      for (size_t slot : start) sendOn(slot);
    }

    // Warm-up, then windows until stable.
    Window discard;
    std::this_thread::sleep_for(options_.warmup);
    collect(discard);
    send_ns_.store(0);
    send_count_.store(0);
    std::vector<WindowSample> samples;
    std::vector<Window> windows;
    std::vector<std::optional<ServerStats>> snapshots;
    const auto snapshot = [&]() -> std::optional<ServerStats> {
      auto stats = transport_->statistics(options_.model, options_.version);
      if (!stats.isOk()) return std::nullopt;
      return *stats;
    };
    snapshots.push_back(snapshot());
    std::vector<uint64_t> cpu_marks{processCpuNs()};        // at each window boundary
    std::vector<std::pair<uint64_t, uint64_t>> send_times;  // per window: ns, count
    auto window_start = Clock::now();
    Status failure = Status::ok();
    while (static_cast<int>(windows.size()) < std::max(options_.max_trials, 1)) {
      std::this_thread::sleep_until(window_start + options_.measurement_interval);
      Window window;
      window.latencies_ns.reserve(windows.empty() ? 1024
                                                  : windows.back().latencies_ns.size() + 1024);
      collect(window);
      const auto now = Clock::now();
      window.seconds = std::chrono::duration<double>(now - window_start).count();
      window_start = now;
      send_times.emplace_back(send_ns_.exchange(0), send_count_.exchange(0));
      cpu_marks.push_back(processCpuNs());
      snapshots.push_back(snapshot());
      std::vector<uint64_t> sorted = window.latencies_ns;
      const LatencySummary summary = summarizeLatencies(sorted, 99);
      samples.push_back({static_cast<double>(summary.count) * options_.batch_size / window.seconds,
                         summary.p50_us, summary.p99_us});
      const bool stable = isStable(samples, options_.stability_percentage);
      if (progress) {
        char line[256];
        std::snprintf(line, sizeof(line),
                      "%s: window %zu/%d  %.1f infer/s  p50 %.0f us  p99 %.0f us%s%s",
                      label.c_str(), samples.size(), options_.max_trials, samples.back().throughput,
                      summary.p50_us, summary.p99_us, window.errors ? "  errors " : "",
                      window.errors ? std::to_string(window.errors).c_str() : "");
        progress(line, false);
      }
      if (window.latencies_ns.empty() && (window.errors > 0 || discard.errors > 0)) {
        failure = unavailable("every request failed at " + label + ": " +
                              (window.errors > 0 ? window.first_error : discard.first_error));
      } else if (window.latencies_ns.empty()) {
        failure = unavailable(
            "no request completed in a " + std::to_string(options_.measurement_interval.count()) +
            " ms window at " + label + " (server too slow? raise --measurement-interval)");
      }
      windows.push_back(std::move(window));
      if (!failure.isOk() || stable) {
        step.stable = stable;
        break;
      }
    }

    // Drain: no new requests; wait for the outstanding ones.
    stopping_.store(true, std::memory_order_release);
    free_cv_.notify_all();
    if (scheduler.joinable()) scheduler.join();
    {
      std::unique_lock lock(free_mutex_);
      free_cv_.wait_for(lock, std::chrono::seconds(60), [&] { return outstanding_ == 0; });
    }
    collect(discard);
    if (!failure.isOk()) return failure;
    step.total_sent = sent_.load();
    step.total_succeeded = succeeded_.load();
    auto stats_after = transport_->statistics(options_.model, options_.version);
    if (stats_before.isOk() && stats_after.isOk()) {
      auto delta = statsDelta(*stats_before, *stats_after);
      if (delta.isOk()) step.server_total_success = delta->success_count;
    }

    // Report the last (up to) three windows.
    const size_t reported = std::min<size_t>(3, windows.size());
    const size_t first = windows.size() - reported;
    std::vector<uint64_t> latencies;
    uint64_t receive_ns = 0;
    uint64_t send_ns = 0;
    uint64_t send_count = 0;
    for (size_t i = first; i < windows.size(); ++i) {
      latencies.insert(latencies.end(), windows[i].latencies_ns.begin(),
                       windows[i].latencies_ns.end());
      receive_ns += windows[i].receive_ns;
      step.errors += windows[i].errors;
      step.measured_s += windows[i].seconds;
      if (step.first_error.empty()) step.first_error = windows[i].first_error;
      send_ns += send_times[i].first;
      send_count += send_times[i].second;
    }
    step.windows = static_cast<int>(windows.size());
    step.latency =
        summarizeLatencies(latencies, options_.percentile > 0 ? options_.percentile : 99.0);
    step.request_throughput = static_cast<double>(step.latency.count) / step.measured_s;
    step.throughput = step.request_throughput * options_.batch_size;
    step.receive_us = step.latency.count == 0 ? 0
                                              : static_cast<double>(receive_ns) /
                                                    static_cast<double>(step.latency.count) / 1000;
    step.client_cpu_us = step.latency.count == 0
                             ? 0
                             : static_cast<double>(cpu_marks.back() - cpu_marks[first]) /
                                   static_cast<double>(step.latency.count) / 1000;
    step.send_us =
        send_count == 0 ? 0 : static_cast<double>(send_ns) / static_cast<double>(send_count) / 1000;
    {
      std::lock_guard lock(free_mutex_);
      step.delayed = delayed_;
    }
    if (snapshots[first] && snapshots.back()) {
      auto delta = statsDelta(*snapshots[first], *snapshots.back());
      if (delta.isOk()) step.server = *delta;
    }
    if (progress) {
      char line[256];
      std::snprintf(line, sizeof(line), "%s: %s after %d windows, %.1f infer/s, p50 %.0f us",
                    label.c_str(), step.stable ? "stable" : "NOT stable", step.windows,
                    step.throughput, step.latency.p50_us);
      progress(line, true);
    }
    return step;
  }

  PerfOptions options_;
  std::unique_ptr<Transport> transport_;
  ModelSpec spec_;
  RequestTemplate request_;
  std::vector<SlotRecords> slots_;
  bool rate_mode_ = false;  // set by the main thread while no request is in flight
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> sent_{0};
  std::atomic<uint64_t> succeeded_{0};
  std::atomic<uint64_t> send_ns_{0};
  std::atomic<uint64_t> send_count_{0};
  std::mutex free_mutex_;
  std::condition_variable free_cv_;
  std::vector<size_t> free_slots_;  // guarded by free_mutex_
  size_t outstanding_ = 0;          // guarded by free_mutex_
  uint64_t delayed_ = 0;            // guarded by free_mutex_
};

}  // namespace

Result<Protocol> parseProtocol(std::string_view text) {
  if (text == "grpc") return Protocol::kGrpc;
  if (text == "http") return Protocol::kHttp;
  return invalidArg("protocol '" + std::string(text) + "': expected grpc or http");
}

Result<HttpFormat> parseHttpFormat(std::string_view text) {
  if (text == "json") return HttpFormat::kJson;
  if (text == "binary") return HttpFormat::kBinary;
  return invalidArg("HTTP format '" + std::string(text) + "': expected json or binary");
}

Result<SharedMemoryKind> parseSharedMemoryKind(std::string_view text) {
  if (text == "none") return SharedMemoryKind::kNone;
  if (text == "system") return SharedMemoryKind::kSystem;
  if (text == "cuda") return SharedMemoryKind::kCuda;
  return invalidArg("shared memory '" + std::string(text) + "': expected none, system or cuda");
}

Result<std::pair<std::string, std::vector<int64_t>>> parseShapeFlag(std::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size()) {
    return invalidArg("--shape '" + std::string(text) + "': expected NAME:d1,d2,...");
  }
  std::pair<std::string, std::vector<int64_t>> shape{std::string(text.substr(0, colon)), {}};
  std::string_view dims = text.substr(colon + 1);
  while (!dims.empty()) {
    const size_t comma = dims.find(',');
    const std::string_view part = dims.substr(0, comma);
    int64_t dim = 0;
    const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), dim);
    if (ec != std::errc() || end != part.data() + part.size() || dim <= 0) {
      return invalidArg("--shape '" + std::string(text) + "': '" + std::string(part) +
                        "' is not a positive dimension");
    }
    shape.second.push_back(dim);
    if (comma == std::string_view::npos) break;
    dims = dims.substr(comma + 1);
  }
  return shape;
}

Result<std::unique_ptr<LoadGenerator>> LoadGenerator::create(PerfOptions options) {
  if (options.model.empty()) return invalidArg("no model given (-m NAME)");
  if (options.batch_size < 1) return invalidArg("-b must be >= 1");
  if (options.measurement_interval.count() <= 0) {
    return invalidArg("--measurement-interval must be > 0 ms");
  }
  if (options.streaming && options.protocol != Protocol::kGrpc) {
    return invalidArg("--streaming needs -i grpc");
  }
  if (options.shared_memory != SharedMemoryKind::kNone && options.protocol != Protocol::kGrpc) {
    return invalidArg(
        "--shared-memory " +
        std::string(options.shared_memory == SharedMemoryKind::kCuda ? "cuda" : "system") +
        " needs -i grpc");
  }
  std::unique_ptr<Transport> transport =
      options.protocol == Protocol::kGrpc ? makeGrpcTransport(options) : makeHttpTransport(options);
  auto spec = transport->describeModel(options.model, options.version);
  if (!spec.isOk()) {
    const std::string where =
        options.url.empty()
            ? (options.protocol == Protocol::kGrpc ? "localhost:8001" : "localhost:8000")
            : options.url;
    if (spec.status().code() == StatusCode::kUnavailable) {
      const std::string& message = spec.status().message();
      return unavailable(message.rfind("cannot reach", 0) == 0
                             ? message
                             : "cannot reach the server at " + where + ": " + message);
    }
    return Status(spec.status().code(),
                  "model '" + options.model + "' at " + where + ": " + spec.status().message());
  }
  BL_ASSIGN_OR_RETURN(RequestTemplate request, buildTemplate(options, *spec));
  return std::unique_ptr<LoadGenerator>(new LoadGeneratorImpl(
      std::move(options), std::move(transport), std::move(spec).value(), std::move(request)));
}

// ---------------------------------------------------------------------------------------------
// Reports

namespace {

std::string number(double value, int decimals = 1) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", decimals, value);
  return buffer;
}

}  // namespace

std::string reportCsv(const PerfReport& report) {
  std::ostringstream out;
  out << "Concurrency,Request Rate,Inferences/Second,Client Send,Client Recv,p50 latency,"
         "p90 latency,p95 latency,p99 latency,Avg latency,Custom percentile latency,"
         "Server Queue,Server Compute Input,Server Compute Infer,Server Compute Output,"
         "Server Success Count,Client Request Count,Errors,Delayed,Stable,Windows,"
         "Total Sent,Total Succeeded,Server Total Success,Client CPU per Request\n";
  for (const StepReport& s : report.steps) {
    const auto server = [&](auto field) {
      return s.server ? number(field(*s.server), 1) : std::string();
    };
    out << number(s.concurrency, 0) << ',' << number(s.request_rate, 1) << ','
        << number(s.throughput, 2) << ',' << number(s.send_us, 1) << ',' << number(s.receive_us, 1)
        << ',' << number(s.latency.p50_us, 1) << ',' << number(s.latency.p90_us, 1) << ','
        << number(s.latency.p95_us, 1) << ',' << number(s.latency.p99_us, 1) << ','
        << number(s.latency.average_us, 1) << ',' << number(s.latency.custom_us, 1) << ','
        << server([](const ServerStatsDelta& d) { return d.queue_us; }) << ','
        << server([](const ServerStatsDelta& d) { return d.compute_input_us; }) << ','
        << server([](const ServerStatsDelta& d) { return d.compute_infer_us; }) << ','
        << server([](const ServerStatsDelta& d) { return d.compute_output_us; }) << ','
        << (s.server ? std::to_string(s.server->success_count) : std::string()) << ','
        << s.latency.count << ',' << s.errors << ',' << s.delayed << ','
        << (s.stable ? "true" : "false") << ',' << s.windows << ',' << s.total_sent << ','
        << s.total_succeeded << ','
        << (s.server_total_success ? std::to_string(*s.server_total_success) : std::string()) << ','
        << number(s.client_cpu_us, 2) << '\n';
  }
  return out.str();
}

std::string reportJson(const PerfReport& report) {
  nlohmann::json json;
  json["model"] = report.model;
  json["version"] = report.version;
  json["url"] = report.url;
  json["protocol"] = report.protocol;
  json["batch_size"] = report.batch_size;
  json["steps"] = nlohmann::json::array();
  for (const StepReport& s : report.steps) {
    nlohmann::json step;
    step["concurrency"] = s.concurrency;
    step["request_rate"] = s.request_rate;
    step["stable"] = s.stable;
    step["windows"] = s.windows;
    step["measured_s"] = s.measured_s;
    step["throughput_infer_per_s"] = s.throughput;
    step["throughput_requests_per_s"] = s.request_throughput;
    step["latency_us"] = {{"avg", s.latency.average_us}, {"p50", s.latency.p50_us},
                          {"p90", s.latency.p90_us},     {"p95", s.latency.p95_us},
                          {"p99", s.latency.p99_us},     {"custom", s.latency.custom_us}};
    step["client_send_us"] = s.send_us;
    step["client_receive_us"] = s.receive_us;
    step["client_cpu_us_per_request"] = s.client_cpu_us;
    step["request_count"] = s.latency.count;
    step["errors"] = s.errors;
    step["delayed"] = s.delayed;
    step["first_error"] = s.first_error;
    step["total_sent"] = s.total_sent;
    step["total_succeeded"] = s.total_succeeded;
    step["server_total_success"] =
        s.server_total_success ? nlohmann::json(*s.server_total_success) : nlohmann::json();
    if (s.server) {
      step["server"] = {{"success_count", s.server->success_count},
                        {"fail_count", s.server->fail_count},
                        {"inference_count", s.server->inference_count},
                        {"execution_count", s.server->execution_count},
                        {"request_us", s.server->request_us},
                        {"queue_us", s.server->queue_us},
                        {"compute_input_us", s.server->compute_input_us},
                        {"compute_infer_us", s.server->compute_infer_us},
                        {"compute_output_us", s.server->compute_output_us}};
    } else {
      step["server"] = nullptr;
    }
    json["steps"].push_back(std::move(step));
  }
  return json.dump(2) + "\n";
}

std::string reportTable(const PerfReport& report) {
  std::ostringstream out;
  const bool rate = !report.steps.empty() && report.steps.front().request_rate > 0;
  out << (rate ? "  rate/s" : "    conc") << "    infer/s     p50 us     p90 us     p95 us"
      << "     p99 us     avg us  send us  recv us  server: queue  input  infer output us"
      << "  stable\n";
  for (const StepReport& s : report.steps) {
    char line[512];
    const auto server = [&](double value) {
      return s.server ? number(value, 1) : std::string("-");
    };
    std::snprintf(line, sizeof(line),
                  "%8s %10.1f %10.0f %10.0f %10.0f %10.0f %10.0f %8.1f %8.1f %14s %6s %6s %6s"
                  "  %s%s\n",
                  number(rate ? s.request_rate : s.concurrency, rate ? 1 : 0).c_str(), s.throughput,
                  s.latency.p50_us, s.latency.p90_us, s.latency.p95_us, s.latency.p99_us,
                  s.latency.average_us, s.send_us, s.receive_us,
                  server(s.server ? s.server->queue_us : 0).c_str(),
                  server(s.server ? s.server->compute_input_us : 0).c_str(),
                  server(s.server ? s.server->compute_infer_us : 0).c_str(),
                  server(s.server ? s.server->compute_output_us : 0).c_str(),
                  s.stable ? "yes" : "NO",
                  s.errors ? (" (" + std::to_string(s.errors) + " errors)").c_str() : "");
    out << line;
  }
  return out.str();
}

}  // namespace beamline::perf
