// Status and Result<T>: errors as values on the request path.
// Immutable value types; safe to pass between threads.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace beamline {

// The same categories as Triton's TRITONSERVER_Error codes, so that the gRPC and HTTP front ends
// can map them to the status codes Triton clients expect.
enum class StatusCode : int {
  kOk = 0,
  kUnknown = 1,
  kInternal = 2,
  kNotFound = 3,
  kInvalidArg = 4,
  kUnavailable = 5,
  kUnsupported = 6,
  kAlreadyExists = 7,
  kCancelled = 8,
};

std::string_view statusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }

  bool isOk() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "INVALID_ARG: message" (or "OK").
  std::string toString() const;

  // Returns a copy with `context: ` put in front of the message.
  Status withContext(std::string_view context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status invalidArg(std::string message) {
  return Status(StatusCode::kInvalidArg, std::move(message));
}
inline Status notFound(std::string message) {
  return Status(StatusCode::kNotFound, std::move(message));
}
inline Status internalError(std::string message) {
  return Status(StatusCode::kInternal, std::move(message));
}
inline Status unavailable(std::string message) {
  return Status(StatusCode::kUnavailable, std::move(message));
}
inline Status unsupported(std::string message) {
  return Status(StatusCode::kUnsupported, std::move(message));
}
inline Status alreadyExists(std::string message) {
  return Status(StatusCode::kAlreadyExists, std::move(message));
}

// A value or an error. Never holds an OK status without a value.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : storage_(std::move(value)) {}          // NOLINT(google-explicit-constructor)
  Result(Status status) : storage_(std::move(status)) {}   // NOLINT(google-explicit-constructor)

  bool isOk() const { return std::holds_alternative<T>(storage_); }
  explicit operator bool() const { return isOk(); }

  const Status& status() const {
    static const Status kOk;
    return isOk() ? kOk : std::get<Status>(storage_);
  }
  T& value() & { return std::get<T>(storage_); }
  const T& value() const& { return std::get<T>(storage_); }
  T&& value() && { return std::get<T>(std::move(storage_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> storage_;
};

}  // namespace beamline

#define BL_CONCAT_INNER(a, b) a##b
#define BL_CONCAT(a, b) BL_CONCAT_INNER(a, b)

// Returns the status from the enclosing function when it is not OK.
#define BL_RETURN_IF_ERROR(expr)                          \
  do {                                                    \
    ::beamline::Status bl_status_ = (expr);               \
    if (!bl_status_.isOk()) return bl_status_;            \
  } while (0)

// `BL_ASSIGN_OR_RETURN(auto x, makeX());`
#define BL_ASSIGN_OR_RETURN(lhs, expr) BL_ASSIGN_OR_RETURN_IMPL(BL_CONCAT(bl_result_, __LINE__), lhs, expr)
#define BL_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.isOk()) return tmp.status();          \
  lhs = std::move(tmp).value()
