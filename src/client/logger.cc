// Loggers for the client components: see include/beamline/client/logger.h.
#include "beamline/client/logger.h"

#include <cstdio>
#include <string>

namespace beamline::client {

std::string_view logLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarning:
      return "WARNING";
    case LogLevel::kError:
      return "ERROR";
  }
  return "?";
}

Logger stderrLogger(LogLevel minimum) {
  return [minimum](LogLevel level, std::string_view line) {
    if (level < minimum) return;
    std::string text = "[beamline client ";
    text += logLevelName(level);
    text += "] ";
    text += line;
    text += '\n';
    std::fwrite(text.data(), 1, text.size(), stderr);  // one write: lines do not interleave
  };
}

Logger silentLogger() {
  return [](LogLevel, std::string_view) {};
}

}  // namespace beamline::client
