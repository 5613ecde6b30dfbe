// FRNN on the CPU: a counting sort of the points into grid cells, then a scan of the 3^axes cells
// around each point. See frnn.h for the semantics.

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "frnn.h"

namespace beamline::native {

Status validateFrnnConfig(const FrnnConfig& config) {
  if (!std::isfinite(config.radius) || config.radius <= 0.0f) {
    return invalidArg("FRNN radius must be a finite number > 0, got " +
                      std::to_string(config.radius));
  }
  if (config.max_neighbours < 0) {
    return invalidArg("FRNN max_neighbours must be >= 0, got " +
                      std::to_string(config.max_neighbours));
  }
  return Status::ok();
}

namespace detail {

Grid chooseGrid(const float* minimum, const float* maximum, int64_t dimensions, int64_t count,
                float radius) {
  Grid grid;
  // The (up to) three widest axes; the first one wins a tie.
  std::vector<int64_t> order(static_cast<size_t>(dimensions));
  for (int64_t d = 0; d < dimensions; ++d) order[static_cast<size_t>(d)] = d;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return static_cast<double>(maximum[a]) - minimum[a] >
           static_cast<double>(maximum[b]) - minimum[b];
  });
  grid.axes_count = static_cast<int>(std::min<int64_t>(3, dimensions));
  for (int a = 0; a < grid.axes_count; ++a) {
    grid.axes[a] = order[static_cast<size_t>(a)];
    grid.origin[a] = minimum[grid.axes[a]];
  }
  const double budget = static_cast<double>(std::max<int64_t>(4 * count, 4096));
  grid.cell_width = static_cast<double>(radius) * (1.0 + 1e-4);
  for (int attempt = 0; attempt < 64; ++attempt) {
    double total = 1.0;
    for (int a = 0; a < grid.axes_count; ++a) {
      const double extent = static_cast<double>(maximum[grid.axes[a]]) - grid.origin[a];
      const double cells = std::floor(extent / grid.cell_width) + 1.0;
      grid.cells[a] =
          cells > budget ? static_cast<int64_t>(budget) + 1 : static_cast<int64_t>(cells);
      total *= static_cast<double>(grid.cells[a]);
    }
    if (total <= budget) {
      grid.total_cells = static_cast<int64_t>(total);
      return grid;
    }
    grid.cell_width *= std::max(1.01, std::pow(total / budget, 1.0 / grid.axes_count));
  }
  // Unreachable for finite inputs; one cell is always correct.
  for (int a = 0; a < grid.axes_count; ++a) grid.cells[a] = 1;
  grid.cell_width = std::numeric_limits<double>::infinity();
  grid.total_cells = 1;
  return grid;
}

}  // namespace detail

namespace {

// The squared distance of the semantics: FP32, coordinates in order, no fused multiply-add (this
// file is compiled with -ffp-contract=off).
inline float squaredDistance(const float* a, const float* b, int64_t dimensions) {
  float sum = 0.0f;
  for (int64_t k = 0; k < dimensions; ++k) {
    const float difference = a[k] - b[k];
    sum = sum + difference * difference;
  }
  return sum;
}

}  // namespace

Status findNeighbourEdgesCpu(const PointSetView& points, const FrnnConfig& config,
                             FrnnWorkspace& workspace, EdgeList& edges) {
  BL_RETURN_IF_ERROR(validateFrnnConfig(config));
  const int64_t n = points.count;
  const int64_t dimensions = points.dimensions;
  if (n < 0 || dimensions <= 0) {
    return invalidArg("FRNN needs points of shape [N, D] with D >= 1, got [" + std::to_string(n) +
                      ", " + std::to_string(dimensions) + "]");
  }
  if (n > detail::kMaxPointsForPairKeys) {
    return invalidArg("FRNN supports at most " + std::to_string(detail::kMaxPointsForPairKeys) +
                      " points, got " + std::to_string(n));
  }
  edges.data_.clear();
  edges.count_ = 0;
  if (n == 0) return Status::ok();
  if (points.data == nullptr) return invalidArg("FRNN points have no data");

  std::vector<float> minimum(static_cast<size_t>(dimensions), std::numeric_limits<float>::max());
  std::vector<float> maximum(static_cast<size_t>(dimensions), std::numeric_limits<float>::lowest());
  for (int64_t i = 0; i < n; ++i) {
    const float* x = points.data + i * dimensions;
    for (int64_t k = 0; k < dimensions; ++k) {
      if (!std::isfinite(x[k])) {
        return invalidArg("FRNN point " + std::to_string(i) + " has a non-finite coordinate");
      }
      minimum[static_cast<size_t>(k)] = std::min(minimum[static_cast<size_t>(k)], x[k]);
      maximum[static_cast<size_t>(k)] = std::max(maximum[static_cast<size_t>(k)], x[k]);
    }
  }
  const detail::Grid grid =
      detail::chooseGrid(minimum.data(), maximum.data(), dimensions, n, config.radius);

  // Counting sort of the points by cell (stable: point order within a cell).
  auto& cell_of_point = workspace.cell_of_point_;
  auto& cell_start = workspace.cell_start_;
  auto& points_by_cell = workspace.points_by_cell_;
  cell_of_point.resize(static_cast<size_t>(n));
  cell_start.assign(static_cast<size_t>(grid.total_cells) + 1, 0);
  points_by_cell.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const float* x = points.data + i * dimensions;
    int64_t linear = 0;
    for (int a = grid.axes_count - 1; a >= 0; --a) {
      linear = linear * grid.cells[a] + detail::cellCoordinate(grid, a, x[grid.axes[a]]);
    }
    cell_of_point[static_cast<size_t>(i)] = linear;
    ++cell_start[static_cast<size_t>(linear) + 1];
  }
  for (int64_t c = 0; c < grid.total_cells; ++c) {
    cell_start[static_cast<size_t>(c) + 1] += cell_start[static_cast<size_t>(c)];
  }
  auto& fill = workspace.cell_fill_;
  fill.assign(cell_start.begin(), cell_start.end() - 1);
  for (int64_t i = 0; i < n; ++i) {
    const auto cell = static_cast<size_t>(cell_of_point[static_cast<size_t>(i)]);
    points_by_cell[static_cast<size_t>(fill[cell]++)] = i;
  }

  const float r2 = config.radius * config.radius;
  const auto max_neighbours = static_cast<size_t>(config.max_neighbours);
  int offsets_count = 1;
  for (int a = 0; a < grid.axes_count; ++a) offsets_count *= 3;
  auto& candidates = workspace.candidates_;
  auto& keys = workspace.pair_keys_;
  keys.clear();
  for (int64_t i = 0; i < n; ++i) {
    const float* x = points.data + i * dimensions;
    int64_t centre[3] = {0, 0, 0};
    for (int a = 0; a < grid.axes_count; ++a) {
      centre[a] = detail::cellCoordinate(grid, a, x[grid.axes[a]]);
    }
    candidates.clear();
    for (int offset = 0; offset < offsets_count; ++offset) {
      int64_t linear = 0;
      bool inside = true;
      int rest = offset;
      int64_t coordinate[3] = {0, 0, 0};
      for (int a = 0; a < grid.axes_count; ++a) {
        coordinate[a] = centre[a] + rest % 3 - 1;
        rest /= 3;
        inside = inside && coordinate[a] >= 0 && coordinate[a] < grid.cells[a];
      }
      if (!inside) continue;
      for (int a = grid.axes_count - 1; a >= 0; --a)
        linear = linear * grid.cells[a] + coordinate[a];
      const int64_t begin = cell_start[static_cast<size_t>(linear)];
      const int64_t end = cell_start[static_cast<size_t>(linear) + 1];
      for (int64_t p = begin; p < end; ++p) {
        const int64_t j = points_by_cell[static_cast<size_t>(p)];
        if (j == i) continue;
        const float d2 = squaredDistance(x, points.data + j * dimensions, dimensions);
        if (d2 <= r2) candidates.emplace_back(d2, j);
      }
    }
    if (candidates.size() > max_neighbours) {
      std::nth_element(candidates.begin(),
                       candidates.begin() + static_cast<std::ptrdiff_t>(max_neighbours),
                       candidates.end());
      candidates.resize(max_neighbours);
    }
    for (const auto& [d2, j] : candidates) {
      keys.push_back(std::min(i, j) * n + std::max(i, j));
    }
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());

  const auto count = static_cast<int64_t>(keys.size());
  edges.count_ = count;
  edges.data_.resize(static_cast<size_t>(2 * count));
  for (int64_t e = 0; e < count; ++e) {
    edges.data_[static_cast<size_t>(e)] = keys[static_cast<size_t>(e)] / n;
    edges.data_[static_cast<size_t>(count + e)] = keys[static_cast<size_t>(e)] % n;
  }
  return Status::ok();
}

}  // namespace beamline::native
