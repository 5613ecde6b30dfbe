// FRNN (backends/native/frnn.h) against a brute-force reference, on edge cases and random inputs;
// the CUDA version against the CPU one when this machine has a GPU.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "frnn.h"
#include "gpu_algorithms.h"

namespace beamline::native {
namespace {

using Edges = std::vector<std::pair<int64_t, int64_t>>;

// The semantics of frnn.h, written out in the plainest way: every pair, every distance.
Edges bruteForce(const std::vector<float>& points, int64_t dimensions, float radius,
                 int64_t max_neighbours) {
  const auto n = static_cast<int64_t>(points.size()) / dimensions;
  const float r2 = radius * radius;
  Edges edges;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<std::pair<float, int64_t>> neighbours;
    for (int64_t j = 0; j < n; ++j) {
      if (j == i) continue;
      float d2 = 0.0f;
      for (int64_t k = 0; k < dimensions; ++k) {
        const float difference = points[static_cast<size_t>(i * dimensions + k)] -
                                 points[static_cast<size_t>(j * dimensions + k)];
        d2 = d2 + difference * difference;
      }
      if (d2 <= r2) neighbours.emplace_back(d2, j);
    }
    std::sort(neighbours.begin(), neighbours.end());
    if (static_cast<int64_t>(neighbours.size()) > max_neighbours) {
      neighbours.resize(static_cast<size_t>(max_neighbours));
    }
    for (const auto& [d2, j] : neighbours) edges.emplace_back(std::min(i, j), std::max(i, j));
  }
  std::sort(edges.begin(), edges.end());
  edges.erase(std::unique(edges.begin(), edges.end()), edges.end());
  return edges;
}

Edges asPairs(const EdgeList& list) {
  Edges edges;
  for (int64_t e = 0; e < list.count_; ++e)
    edges.emplace_back(list.sources()[e], list.targets()[e]);
  return edges;
}

Edges runCpu(const std::vector<float>& points, int64_t dimensions, float radius,
             int64_t max_neighbours, FrnnWorkspace* workspace = nullptr) {
  FrnnWorkspace local;
  EdgeList list;
  const PointSetView view{points.data(), static_cast<int64_t>(points.size()) / dimensions,
                          dimensions};
  const Status status = findNeighbourEdgesCpu(view, FrnnConfig{radius, max_neighbours},
                                              workspace ? *workspace : local, list);
  EXPECT_TRUE(status.isOk()) << status.toString();
  EXPECT_EQ(list.data_.size(), static_cast<size_t>(2 * list.count_));
  return asPairs(list);
}

std::vector<float> randomPoints(std::mt19937_64& rng, int64_t count, int64_t dimensions,
                                float scale) {
  std::uniform_real_distribution<float> uniform(-scale, scale);
  std::vector<float> points(static_cast<size_t>(count * dimensions));
  for (float& x : points) x = uniform(rng);
  return points;
}

TEST(FrnnTest, NoPointsGiveNoEdges) { EXPECT_TRUE(runCpu({}, 8, 1.0f, 10).empty()); }

TEST(FrnnTest, OnePointGivesNoEdges) {
  EXPECT_TRUE(runCpu({0.5f, -0.5f, 1.0f}, 3, 10.0f, 10).empty());
}

TEST(FrnnTest, RadiusIsInclusive) {
  // d2 = 1 exactly, radius 1: the pair is an edge; just outside: none.
  EXPECT_EQ(runCpu({0.0f, 0.0f, 1.0f, 0.0f}, 2, 1.0f, 10), (Edges{{0, 1}}));
  EXPECT_TRUE(runCpu({0.0f, 0.0f, 1.0f, 0.0f}, 2, 0.999f, 10).empty());
}

TEST(FrnnTest, AllWithinRadiusGiveTheCompleteGraph) {
  std::mt19937_64 rng(1);
  const auto points = randomPoints(rng, 60, 8, 0.1f);
  const Edges edges = runCpu(points, 8, 10.0f, 1000);
  EXPECT_EQ(edges.size(), 60u * 59u / 2u);
  EXPECT_EQ(edges, bruteForce(points, 8, 10.0f, 1000));
}

TEST(FrnnTest, MaxNeighboursKeepsTheNearest) {
  std::mt19937_64 rng(2);
  const auto points = randomPoints(rng, 80, 8, 0.1f);
  for (int64_t k : {0, 1, 3, 7, 79, 200}) {
    EXPECT_EQ(runCpu(points, 8, 10.0f, k), bruteForce(points, 8, 10.0f, k)) << "k = " << k;
  }
}

TEST(FrnnTest, DuplicatePointsAreNeighbours) {
  const std::vector<float> points = {1, 1, 1, 1, 1, 1, 1, 1, 1, 5, 5, 5};
  EXPECT_EQ(runCpu(points, 3, 0.5f, 10), (Edges{{0, 1}, {0, 2}, {1, 2}}));
  // With one neighbour each, ties in d2 go to the smaller index.
  EXPECT_EQ(runCpu(points, 3, 0.5f, 1), (Edges{{0, 1}, {0, 2}}));
}

TEST(FrnnTest, MatchesBruteForceOnRandomInputs) {
  std::mt19937_64 rng(3);
  for (int64_t dimensions : {1, 2, 3, 4, 8}) {
    for (float radius : {0.05f, 0.2f, 0.7f}) {
      for (int64_t k : {2, 16, 500}) {
        const auto points = randomPoints(rng, 300, dimensions, 1.0f);
        EXPECT_EQ(runCpu(points, dimensions, radius, k), bruteForce(points, dimensions, radius, k))
            << "D = " << dimensions << ", r = " << radius << ", k = " << k;
      }
    }
  }
}

TEST(FrnnTest, FarOutlierWidensTheGrid) {
  // One point a billion radii away: the grid must not need a cell per radius.
  std::mt19937_64 rng(4);
  auto points = randomPoints(rng, 200, 3, 1.0f);
  points.insert(points.end(), {1e8f, -1e8f, 1e8f});
  EXPECT_EQ(runCpu(points, 3, 0.1f, 50), bruteForce(points, 3, 0.1f, 50));
}

TEST(FrnnTest, DisconnectedClustersStayApart) {
  std::mt19937_64 rng(5);
  std::vector<float> points;
  for (int cluster = 0; cluster < 4; ++cluster) {
    auto part = randomPoints(rng, 20, 8, 0.05f);
    for (size_t i = 0; i < part.size(); i += 8) part[i] += 10.0f * static_cast<float>(cluster);
    points.insert(points.end(), part.begin(), part.end());
  }
  const Edges edges = runCpu(points, 8, 1.0f, 100);
  EXPECT_EQ(edges.size(), 4u * 20u * 19u / 2u);
  for (const auto& [a, b] : edges) EXPECT_EQ(a / 20, b / 20);
}

TEST(FrnnTest, WorkspaceIsReusedAcrossSizes) {
  std::mt19937_64 rng(6);
  FrnnWorkspace workspace;
  for (int64_t count : {500, 3, 0, 200, 1}) {
    const auto points = randomPoints(rng, count, 8, 1.0f);
    EXPECT_EQ(runCpu(points, 8, 0.6f, 20, &workspace), bruteForce(points, 8, 0.6f, 20));
  }
}

TEST(FrnnTest, RejectsBadInputs) {
  FrnnWorkspace workspace;
  EdgeList edges;
  const std::vector<float> nan_point = {0.0f, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_EQ(findNeighbourEdgesCpu({nan_point.data(), 1, 2}, {}, workspace, edges).code(),
            StatusCode::kInvalidArg);
  const std::vector<float> infinite = {0.0f, std::numeric_limits<float>::infinity()};
  EXPECT_EQ(findNeighbourEdgesCpu({infinite.data(), 1, 2}, {}, workspace, edges).code(),
            StatusCode::kInvalidArg);
  EXPECT_EQ(findNeighbourEdgesCpu({nan_point.data(), 1, 0}, {}, workspace, edges).code(),
            StatusCode::kInvalidArg);
  EXPECT_EQ(findNeighbourEdgesCpu({nan_point.data(), -1, 2}, {}, workspace, edges).code(),
            StatusCode::kInvalidArg);
  EXPECT_FALSE(validateFrnnConfig({0.0f, 1}).isOk());
  EXPECT_FALSE(validateFrnnConfig({-1.0f, 1}).isOk());
  EXPECT_FALSE(validateFrnnConfig({std::numeric_limits<float>::infinity(), 1}).isOk());
  EXPECT_FALSE(validateFrnnConfig({1.0f, -1}).isOk());
  EXPECT_TRUE(validateFrnnConfig({1.0f, 0}).isOk());
}

TEST(FrnnGpuTest, NoDeviceIsReportedNotThrown) {
  if (gpu::deviceCount() > 0) GTEST_SKIP() << "this machine has a GPU";
  auto workspace = gpu::GpuWorkspace::create(0);
  ASSERT_FALSE(workspace.isOk());
  EXPECT_EQ(workspace.status().code(), StatusCode::kUnavailable);
}

TEST(FrnnGpuTest, MatchesCpuOnRandomInputs) {
  if (gpu::deviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  auto workspace = gpu::GpuWorkspace::create(0);
  ASSERT_TRUE(workspace.isOk()) << workspace.status().toString();
  std::mt19937_64 rng(7);
  for (int64_t count : {0, 1, 2, 50, 2000, 20000}) {
    for (int64_t dimensions : {1, 3, 8}) {
      for (int64_t k : {1, 8, 500}) {
        const auto points = randomPoints(rng, count, dimensions, 1.0f);
        const float radius = count > 5000 ? 0.1f : 0.4f;
        EdgeList list;
        const Status status = gpu::findNeighbourEdgesGpu({points.data(), count, dimensions},
                                                         {radius, k}, **workspace, list);
        ASSERT_TRUE(status.isOk()) << status.toString();
        EXPECT_EQ(asPairs(list), runCpu(points, dimensions, radius, k))
            << "N = " << count << ", D = " << dimensions << ", k = " << k;
      }
    }
  }
  // Duplicates and the all-within-radius case.
  const std::vector<float> duplicates(3 * 40, 0.25f);
  EdgeList list;
  ASSERT_TRUE(
      gpu::findNeighbourEdgesGpu({duplicates.data(), 40, 3}, {1.0f, 5}, **workspace, list).isOk());
  EXPECT_EQ(asPairs(list), runCpu(duplicates, 3, 1.0f, 5));
  const std::vector<float> bad = {0.0f, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_EQ(gpu::findNeighbourEdgesGpu({bad.data(), 1, 2}, {}, **workspace, list).code(),
            StatusCode::kInvalidArg);
}

}  // namespace
}  // namespace beamline::native
