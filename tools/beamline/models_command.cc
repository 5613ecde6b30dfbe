// `beamline models`: list a server's model repository (RepositoryIndex) as a table.
// Runs on the main thread.
#include <algorithm>
#include <array>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "beamline/client/grpc_client.h"
#include "commands.h"

namespace beamline::tools {
namespace {

struct ModelsOptions {
  std::string url = "localhost:8001";
  bool ready_only = false;
  int64_t timeout_ms = 0;
};

int runModels(const ModelsOptions& options) {
  client::ClientOptions client_options;
  client_options.url = options.url;
  client_options.timeout = std::chrono::milliseconds(options.timeout_ms);
  auto client = client::GrpcClient::create(client_options);
  if (!client.isOk()) {
    std::fprintf(stderr, "error: %s\n", client.status().toString().c_str());
    return 1;
  }
  auto index = (*client)->repositoryIndex(options.ready_only);
  if (!index.isOk()) {
    std::fprintf(stderr, "error: %s\n", index.status().toString().c_str());
    return 1;
  }

  using Row = std::array<std::string, 4>;
  std::vector<Row> rows;
  rows.push_back({"NAME", "VERSION", "STATE", "REASON"});
  for (const auto& model : index->models()) {
    rows.push_back({model.name(), model.version().empty() ? "-" : model.version(), model.state(),
                    model.reason()});
  }
  std::array<size_t, 3> widths{};  // the last column is not padded
  for (const Row& row : rows) {
    for (size_t i = 0; i < widths.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const Row& row : rows) {
    std::string line;
    for (size_t i = 0; i < widths.size(); ++i) {
      line += row[i];
      line.append(widths[i] - row[i].size() + 2, ' ');
    }
    line += row[3];
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::printf("%s\n", line.c_str());
  }
  if (rows.size() == 1) std::printf("(no models%s)\n", options.ready_only ? " ready" : "");
  return 0;
}

}  // namespace

void registerModelsCommand(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<ModelsOptions>();
  CLI::App* command = app.add_subcommand(
      "models", "List the models in a server's repository: NAME VERSION STATE REASON");
  command->add_option("-u,--url", options->url, "gRPC address of the server, host:port")
      ->capture_default_str();
  command->add_flag("--ready", options->ready_only, "List only the models that are ready");
  command
      ->add_option("--timeout-ms", options->timeout_ms,
                   "Deadline of the call in milliseconds (0: none)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command->footer("Exit codes: 0 success; 1 the server could not be reached or answered an error.");
  command->callback([options, &exit_code] { exit_code = runModels(*options); });
}

}  // namespace beamline::tools
