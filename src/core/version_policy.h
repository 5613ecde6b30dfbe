// Which numbered version directories of a model are served, by its ModelVersionPolicy.
// Pure functions (apart from listing a directory); any thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

#include "beamline/core/status.h"
#include "model_config.pb.h"

namespace beamline {

// The versions to serve, ascending: latest{n} gives the n highest, all gives every one, specific
// gives those listed that are available. An unset policy acts as latest{1}. Duplicates in
// `available_versions` are ignored; its order does not matter.
std::vector<int64_t> selectVersions(const inference::ModelVersionPolicy& policy,
                                    std::span<const int64_t> available_versions);

// The version directories under `model_dir`, ascending: subdirectories whose names are decimal
// numbers > 0 without a leading '0'. Other entries are ignored. NOT_FOUND when `model_dir` is
// not a directory.
Result<std::vector<int64_t>> listVersionDirectories(const std::filesystem::path& model_dir);

}  // namespace beamline
