// Fixed-radius nearest neighbours (FRNN): the graph-building step of the Exa.TrkX pipeline.
//
// Semantics (shared by the CPU and CUDA versions, and by models/workloads/tracking.py, so their
// results are equal bit for bit):
//  - points are FP32 [N, D], row-major;
//  - d2(i, j) = sum over k = 0..D-1, in that order, of (x[i][k] - x[j][k])^2 in FP32, without fused
//    multiply-add; j is a neighbour of i when j != i and d2(i, j) <= radius * radius (FP32);
//  - each point keeps its `max_neighbours` nearest neighbours, ordered by (d2, j);
//  - the edges are the pairs (min(i, j), max(i, j)) of every kept neighbour, without duplicates,
//    sorted by (source, target): INT64 [2, E], all sources first, then all targets.
// The search uses a uniform grid over (at most) three of the D coordinates, the ones with the
// largest extent; a cell is at least `radius` wide, so only the 3^3 cells around a point can hold
// neighbours.
#pragma once

#include <cstdint>
#include <vector>

#include "beamline/core/status.h"

namespace beamline::native {

struct FrnnConfig {
  float radius = 1.0f;
  int64_t max_neighbours = 500;  // the Exa.TrkX default (knnVal)
};

// A read-only view of N points of D coordinates each, row-major. Not owned.
struct PointSetView {
  const float* data = nullptr;
  int64_t count = 0;
  int64_t dimensions = 0;
};

// An edge list [2, E] in one buffer: data_[0, E) are the sources, data_[E, 2E) the targets.
struct EdgeList {
  std::vector<int64_t> data_;
  int64_t count_ = 0;

  const int64_t* sources() const { return data_.data(); }
  const int64_t* targets() const { return data_.data() + count_; }
};

// Scratch buffers reused from one call to the next (no allocation once they are large enough).
// One per calling thread.
struct FrnnWorkspace {
  std::vector<int64_t> cell_of_point_;
  std::vector<int64_t> cell_start_;
  std::vector<int64_t> cell_fill_;
  std::vector<int64_t> points_by_cell_;
  std::vector<std::pair<float, int64_t>> candidates_;
  std::vector<int64_t> pair_keys_;
};

// Checks the configuration (radius finite and > 0, max_neighbours >= 0).
Status validateFrnnConfig(const FrnnConfig& config);

// Builds the edges of `points` on the CPU into `edges` (its buffer is reused). INVALID_ARG for
// a negative count, no dimensions, non-finite coordinates or more points than an INT64 pair key
// can index (N^2 must fit in 63 bits). Any thread; the workspace and the output are the caller's.
Status findNeighbourEdgesCpu(const PointSetView& points, const FrnnConfig& config,
                             FrnnWorkspace& workspace, EdgeList& edges);

namespace detail {

// The search grid: which coordinates it spans, its origin, cell width and cell counts.
struct Grid {
  int axes_count = 0;
  int64_t axes[3] = {0, 0, 0};
  double origin[3] = {0.0, 0.0, 0.0};
  double cell_width = 1.0;
  int64_t cells[3] = {1, 1, 1};
  int64_t total_cells = 1;
};

// Chooses the grid from each coordinate's minimum and maximum (D values each): the (up to) three
// widest axes, cells a little wider than `radius` (so that rounding can never put two neighbours
// two cells apart), widened until there are at most max(4N, 4096) cells.
Grid chooseGrid(const float* minimum, const float* maximum, int64_t dimensions, int64_t count,
                float radius);

// Cell coordinate of value `x` along grid axis `a` (clamped into the grid). Computed in double:
// the cell offsets can reach thousands, where FP32 rounding would be too coarse.
#if defined(__CUDACC__)
__host__ __device__
#endif
    inline int64_t
    cellCoordinate(const Grid& grid, int a, float x) {
  const double offset = (static_cast<double>(x) - grid.origin[a]) / grid.cell_width;
  const int64_t c = offset <= 0.0 ? 0 : static_cast<int64_t>(offset);
  return c >= grid.cells[a] ? grid.cells[a] - 1 : c;
}

// The largest N for which the pair key min * N + max fits in an int64.
constexpr int64_t kMaxPointsForPairKeys = 3037000499;

}  // namespace detail
}  // namespace beamline::native
