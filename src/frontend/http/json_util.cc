#include "frontend/http/json_util.h"

#include <array>
#include <charconv>
#include <cstdint>

#include "core/model_config.h"

namespace beamline::frontend::http {
namespace {

using nlohmann::json;

// Records the first syntax error; accepts everything else (used only to explain a failed parse).
class ErrorCapture final : public nlohmann::json_sax<json> {
 public:
  std::string message;

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&,
                   const nlohmann::detail::exception& error) override {
    message = error.what();
    return false;
  }
};

// Field names whose string values Triton turns into numbers. "shape" only counts inside
// "reshape"; "model_version" only inside an ensemble "step".
constexpr std::array<std::string_view, 6> kNumericFields = {
    "dims",
    "max_queue_delay_microseconds",
    "priority_levels",
    "default_priority_level",
    "default_timeout_microseconds",
    "max_sequence_idle_microseconds",
};

bool isNumericField(std::string_view parent, std::string_view key) {
  for (std::string_view name : kNumericFields) {
    if (key == name) return true;
  }
  return (key == "shape" && parent == "reshape") || (key == "model_version" && parent == "step");
}

// "123" / "-1" -> number; anything else stays as it is.
void toNumber(nlohmann::ordered_json& value) {
  if (!value.is_string()) return;
  const std::string& text = value.get_ref<const std::string&>();
  if (!text.empty() && text[0] == '-') {
    int64_t v = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (error == std::errc() && end == text.data() + text.size()) value = v;
    return;
  }
  uint64_t v = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (error == std::errc() && end == text.data() + text.size()) value = v;
}

void fixNumbers(nlohmann::ordered_json& node, std::string_view parent) {
  if (node.is_array()) {
    for (auto& item : node) fixNumbers(item, parent);  // array items inherit the field name
    return;
  }
  if (!node.is_object()) return;
  for (auto& [key, value] : node.items()) {
    if (isNumericField(parent, key)) {
      if (value.is_array()) {
        for (auto& item : value) toNumber(item);
      } else {
        toNumber(value);
      }
      continue;
    }
    fixNumbers(value, key);
  }
}

}  // namespace

Result<json> parseJson(std::string_view text, std::string_view what) {
  json value = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (!value.is_discarded()) return value;
  ErrorCapture capture;
  json::sax_parse(text.begin(), text.end(), &capture);
  if (capture.message.empty()) capture.message = "invalid JSON";
  return invalidArg("failed to parse the " + std::string(what) + " JSON: " + capture.message);
}

std::string modelConfigToTritonJson(const inference::ModelConfig& config) {
  const std::string printed = modelConfigToJson(config);
  // Ordered, so that fields keep the .proto's order as protobuf printed them.
  auto parsed = nlohmann::ordered_json::parse(printed, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return printed;
  fixNumbers(parsed, "");
  return parsed.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

Result<std::string> decodeBase64(std::string_view text, std::string_view what) {
  auto fail = [&] {
    return invalidArg("failed to decode base64 for " + std::string(what) +
                      ": the value is not valid base64");
  };
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) return fail();
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t accumulator = 0;
  int bits = 0;
  for (char c : text) {
    int value = -1;
    if (c >= 'A' && c <= 'Z')
      value = c - 'A';
    else if (c >= 'a' && c <= 'z')
      value = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
      value = c - '0' + 52;
    else if (c == '+')
      value = 62;
    else if (c == '/')
      value = 63;
    if (value < 0) return fail();
    accumulator = (accumulator << 6) | static_cast<uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((accumulator >> bits) & 0xff);
    }
  }
  return out;
}

}  // namespace beamline::frontend::http
