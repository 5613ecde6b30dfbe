// beamline: serve models over the KServe v2 / Triton protocol, and talk to such servers.
#include <cstdio>
#include <exception>

#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{
      "beamline - machine-learning inference as a service for event processing.\n"
      "Speaks the KServe v2 / Triton protocol, so Triton clients and tools work unchanged."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "beamline 0.1.0");
  int exit_code = 0;
  beamline::tools::registerServeCommand(app, exit_code);
  beamline::tools::registerInferCommand(app, exit_code);
  beamline::tools::registerModelsCommand(app, exit_code);
  beamline::tools::registerPerfCommand(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "beamline: error: %s\n", error.what());
    return 1;
  }
  return exit_code;
}
