#include "core/version_policy.h"

#include <algorithm>
#include <charconv>
#include <optional>
#include <string>
#include <system_error>

namespace beamline {
namespace {

// Parses a version directory name: digits only, no leading zero (so "0", "01" and "1a" are not
// versions, as in Triton). nullopt otherwise, and when the number does not fit in int64.
std::optional<int64_t> parseVersionName(const std::string& name) {
  if (name.empty() || name.front() == '0') {
    return std::nullopt;
  }
  if (!std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  int64_t version = 0;
  const auto [end, error] = std::from_chars(name.data(), name.data() + name.size(), version);
  if (error != std::errc() || end != name.data() + name.size()) {
    return std::nullopt;
  }
  return version;
}

}  // namespace

std::vector<int64_t> selectVersions(const inference::ModelVersionPolicy& policy,
                                    std::span<const int64_t> available_versions) {
  std::vector<int64_t> available(available_versions.begin(), available_versions.end());
  std::sort(available.begin(), available.end());
  available.erase(std::unique(available.begin(), available.end()), available.end());

  switch (policy.policy_choice_case()) {
    case inference::ModelVersionPolicy::kAll:
      return available;
    case inference::ModelVersionPolicy::kSpecific: {
      std::vector<int64_t> selected;
      for (const int64_t version : policy.specific().versions()) {
        if (std::binary_search(available.begin(), available.end(), version)) {
          selected.push_back(version);
        }
      }
      std::sort(selected.begin(), selected.end());
      selected.erase(std::unique(selected.begin(), selected.end()), selected.end());
      return selected;
    }
    case inference::ModelVersionPolicy::kLatest:
    case inference::ModelVersionPolicy::POLICY_CHOICE_NOT_SET: {
      const size_t wanted =
          policy.has_latest() ? static_cast<size_t>(policy.latest().num_versions()) : 1;
      const size_t keep = std::min(wanted, available.size());
      return std::vector<int64_t>(available.end() - static_cast<std::ptrdiff_t>(keep),
                                  available.end());
    }
  }
  return {};
}

Result<std::vector<int64_t>> listVersionDirectories(const std::filesystem::path& model_dir) {
  std::error_code error;
  if (!std::filesystem::is_directory(model_dir, error)) {
    return notFound(model_dir.string() + ": model directory not found");
  }
  std::vector<int64_t> versions;
  std::filesystem::directory_iterator it(model_dir, error);
  if (error) {
    return internalError(model_dir.string() + ": cannot list directory: " + error.message());
  }
  for (; it != std::filesystem::directory_iterator(); it.increment(error)) {
    std::error_code type_error;
    if (!it->is_directory(type_error)) {
      continue;
    }
    if (const auto version = parseVersionName(it->path().filename().string())) {
      versions.push_back(*version);
    }
  }
  if (error) {
    return internalError(model_dir.string() + ": cannot list directory: " + error.message());
  }
  std::sort(versions.begin(), versions.end());
  return versions;
}

}  // namespace beamline
