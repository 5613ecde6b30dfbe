#include "beamline/core/status.h"

#include <string>

namespace beamline {

std::string_view statusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "OK";
    case StatusCode::kUnknown:
      return "UNKNOWN";
    case StatusCode::kInternal:
      return "INTERNAL";
    case StatusCode::kNotFound:
      return "NOT_FOUND";
    case StatusCode::kInvalidArg:
      return "INVALID_ARG";
    case StatusCode::kUnavailable:
      return "UNAVAILABLE";
    case StatusCode::kUnsupported:
      return "UNSUPPORTED";
    case StatusCode::kAlreadyExists:
      return "ALREADY_EXISTS";
    case StatusCode::kCancelled:
      return "CANCELLED";
  }
  // A value cast from an integer outside the enum.
  return "UNKNOWN";
}

std::string Status::toString() const {
  if (isOk()) {
    return "OK";
  }
  std::string text(statusCodeName(code_));
  text += ": ";
  text += message_;
  return text;
}

Status Status::withContext(std::string_view context) const {
  // OK carries no message; adding context to it would turn "no error" into something that reads
  // like one.
  if (isOk()) {
    return *this;
  }
  std::string message(context);
  message += ": ";
  message += message_;
  return Status(code_, std::move(message));
}

}  // namespace beamline
