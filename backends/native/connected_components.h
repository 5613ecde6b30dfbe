// Connected components: the track-building step of the Exa.TrkX pipeline.
//
// Semantics (shared by the CPU and CUDA versions and models/workloads/tracking.py):
//  - N nodes; edges [2, E] INT64 (sources, then targets) with scores [E] FP32;
//  - an edge joins its two nodes when score > threshold (FP32; a NaN score never does);
//  - every edge must name nodes in [0, N), whatever its score (INVALID_ARG otherwise);
//  - the label of a node is the rank of its component's smallest node among the smallest nodes of
//    all components: labels are 0, 1, ... in order of first appearance, and a node without a
//    selected edge is a component (a track candidate) of its own.
#pragma once

#include <cstdint>
#include <vector>

#include "beamline/core/status.h"

namespace beamline::native {

struct ComponentsConfig {
  float threshold = 0.5f;
};

// A read-only view of scored edges. Not owned.
struct ScoredEdgesView {
  const int64_t* sources = nullptr;
  const int64_t* targets = nullptr;
  const float* scores = nullptr;
  int64_t count = 0;
};

// Scratch buffers reused from one call to the next. One per calling thread.
struct ComponentsWorkspace {
  std::vector<int64_t> parent_;
};

// Checks the configuration (a finite threshold).
Status validateComponentsConfig(const ComponentsConfig& config);

// Writes the label of each of the `node_count` nodes into `labels` (caller-owned, node_count
// values). Any thread; the workspace and the output are the caller's.
Status labelComponentsCpu(int64_t node_count, const ScoredEdgesView& edges,
                          const ComponentsConfig& config, ComponentsWorkspace& workspace,
                          int64_t* labels);

}  // namespace beamline::native
