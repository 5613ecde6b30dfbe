// The logger injected into the client's components (Acts style): each component takes one in its
// create() call instead of writing to a global. A Logger is called from whichever thread has
// something to say (the caller, a gRPC callback thread, the shared pool or the registry's health
// thread), so it must be thread-safe.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace beamline::client {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

std::string_view logLevelName(LogLevel level);

// Receives one line (no trailing newline).
using Logger = std::function<void(LogLevel level, std::string_view line)>;

// Lines at `minimum` and above to stderr, "[beamline client WARNING] ..." (one write per line).
Logger stderrLogger(LogLevel minimum = LogLevel::kWarning);
// Drops everything.
Logger silentLogger();

// Calls `logger` when it is set; the components use this so that an empty Logger means silent.
inline void log(const Logger& logger, LogLevel level, std::string_view line) {
  if (logger) logger(level, line);
}

}  // namespace beamline::client
