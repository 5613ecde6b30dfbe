// Subcommands of the `beamline` program. Each registers itself on the CLI11 app; the callback runs
// on the main thread and sets the process exit code through `exit_code`.
#pragma once

#include <CLI/CLI.hpp>

namespace beamline::tools {

void registerServeCommand(CLI::App& app, int& exit_code);
void registerInferCommand(CLI::App& app, int& exit_code);
void registerModelsCommand(CLI::App& app, int& exit_code);
void registerPerfCommand(CLI::App& app, int& exit_code);

}  // namespace beamline::tools
