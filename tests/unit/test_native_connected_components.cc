// Connected components (backends/native/connected_components.h) against a breadth-first-search
// reference, on edge cases and random graphs; the CUDA version against the CPU one on a GPU.

#include <gtest/gtest.h>

#include <cmath>
#include <deque>
#include <limits>
#include <random>
#include <vector>

#include "connected_components.h"
#include "gpu_algorithms.h"

namespace beamline::native {
namespace {

struct Graph {
  int64_t nodes = 0;
  std::vector<int64_t> sources, targets;
  std::vector<float> scores;

  void add(int64_t a, int64_t b, float score) {
    sources.push_back(a);
    targets.push_back(b);
    scores.push_back(score);
  }
  ScoredEdgesView view() const {
    return {sources.data(), targets.data(), scores.data(), static_cast<int64_t>(scores.size())};
  }
};

// Visit nodes in increasing order; each unvisited node starts the next label and a BFS over the
// selected edges: labels in order of first appearance.
std::vector<int64_t> reference(const Graph& graph, float threshold) {
  std::vector<std::vector<int64_t>> adjacent(static_cast<size_t>(graph.nodes));
  for (size_t e = 0; e < graph.scores.size(); ++e) {
    if (graph.scores[e] > threshold) {
      adjacent[static_cast<size_t>(graph.sources[e])].push_back(graph.targets[e]);
      adjacent[static_cast<size_t>(graph.targets[e])].push_back(graph.sources[e]);
    }
  }
  std::vector<int64_t> labels(static_cast<size_t>(graph.nodes), -1);
  int64_t next = 0;
  for (int64_t start = 0; start < graph.nodes; ++start) {
    if (labels[static_cast<size_t>(start)] >= 0) continue;
    std::deque<int64_t> queue{start};
    labels[static_cast<size_t>(start)] = next;
    while (!queue.empty()) {
      const int64_t node = queue.front();
      queue.pop_front();
      for (int64_t other : adjacent[static_cast<size_t>(node)]) {
        if (labels[static_cast<size_t>(other)] < 0) {
          labels[static_cast<size_t>(other)] = next;
          queue.push_back(other);
        }
      }
    }
    ++next;
  }
  return labels;
}

std::vector<int64_t> runCpu(const Graph& graph, float threshold) {
  ComponentsWorkspace workspace;
  std::vector<int64_t> labels(static_cast<size_t>(graph.nodes), -7);
  const Status status =
      labelComponentsCpu(graph.nodes, graph.view(), {threshold}, workspace, labels.data());
  EXPECT_TRUE(status.isOk()) << status.toString();
  return labels;
}

Graph randomGraph(std::mt19937_64& rng, int64_t nodes, int64_t edges) {
  Graph graph;
  graph.nodes = nodes;
  std::uniform_int_distribution<int64_t> node(0, std::max<int64_t>(0, nodes - 1));
  std::uniform_real_distribution<float> score(0.0f, 1.0f);
  for (int64_t e = 0; e < edges && nodes > 0; ++e) graph.add(node(rng), node(rng), score(rng));
  return graph;
}

TEST(ConnectedComponentsTest, EmptyGraph) { EXPECT_TRUE(runCpu(Graph{}, 0.5f).empty()); }

TEST(ConnectedComponentsTest, OneNode) {
  Graph graph;
  graph.nodes = 1;
  EXPECT_EQ(runCpu(graph, 0.5f), (std::vector<int64_t>{0}));
  graph.add(0, 0, 0.9f);  // a self loop changes nothing
  EXPECT_EQ(runCpu(graph, 0.5f), (std::vector<int64_t>{0}));
}

TEST(ConnectedComponentsTest, NodesWithoutEdgesAreTheirOwnComponents) {
  Graph graph;
  graph.nodes = 5;
  EXPECT_EQ(runCpu(graph, 0.5f), (std::vector<int64_t>{0, 1, 2, 3, 4}));
}

TEST(ConnectedComponentsTest, LabelsFollowFirstAppearance) {
  Graph graph;
  graph.nodes = 7;
  graph.add(6, 2, 0.9f);  // {2, 6}
  graph.add(5, 0, 0.9f);  // {0, 3, 5}
  graph.add(3, 5, 0.9f);
  graph.add(1, 4, 0.1f);  // below the threshold: 1 and 4 stay apart
  EXPECT_EQ(runCpu(graph, 0.5f), (std::vector<int64_t>{0, 1, 2, 0, 3, 0, 2}));
}

TEST(ConnectedComponentsTest, ThresholdIsStrictAndNanNeverJoins) {
  Graph graph;
  graph.nodes = 4;
  graph.add(0, 1, 0.5f);
  graph.add(2, 3, std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(runCpu(graph, 0.5f), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(runCpu(graph, 0.49f), (std::vector<int64_t>{0, 0, 1, 2}));
}

TEST(ConnectedComponentsTest, LongChainIsOneComponent) {
  Graph graph;
  graph.nodes = 100000;
  for (int64_t i = graph.nodes - 1; i > 0; --i) graph.add(i, i - 1, 1.0f);  // worst order
  const auto labels = runCpu(graph, 0.5f);
  EXPECT_EQ(labels, std::vector<int64_t>(static_cast<size_t>(graph.nodes), 0));
}

TEST(ConnectedComponentsTest, DuplicateEdgesAreHarmless) {
  Graph graph;
  graph.nodes = 3;
  for (int repeat = 0; repeat < 5; ++repeat) graph.add(2, 1, 0.8f);
  EXPECT_EQ(runCpu(graph, 0.5f), (std::vector<int64_t>{0, 1, 1}));
}

TEST(ConnectedComponentsTest, MatchesReferenceOnRandomGraphs) {
  std::mt19937_64 rng(11);
  for (int64_t nodes : {2, 10, 100, 3000}) {
    for (double density : {0.2, 0.6, 1.0, 3.0}) {
      const Graph graph = randomGraph(rng, nodes, static_cast<int64_t>(density * nodes));
      for (float threshold : {0.0f, 0.5f, 0.9f}) {
        EXPECT_EQ(runCpu(graph, threshold), reference(graph, threshold))
            << "N = " << nodes << ", density " << density << ", threshold " << threshold;
      }
    }
  }
}

TEST(ConnectedComponentsTest, RejectsEdgesOutsideTheGraph) {
  Graph graph;
  graph.nodes = 3;
  graph.add(0, 1, 0.9f);
  graph.add(2, 3, 0.0f);  // out of range even though its score is below the threshold
  ComponentsWorkspace workspace;
  std::vector<int64_t> labels(3);
  const Status status = labelComponentsCpu(3, graph.view(), {0.5f}, workspace, labels.data());
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_NE(status.message().find("edge 1 (2, 3)"), std::string::npos) << status.message();
  graph.targets[1] = -1;
  EXPECT_EQ(labelComponentsCpu(3, graph.view(), {0.5f}, workspace, labels.data()).code(),
            StatusCode::kInvalidArg);
  EXPECT_FALSE(validateComponentsConfig({std::numeric_limits<float>::quiet_NaN()}).isOk());
}

TEST(ConnectedComponentsGpuTest, MatchesCpuOnRandomGraphs) {
  if (gpu::deviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  auto workspace = gpu::GpuWorkspace::create(0);
  ASSERT_TRUE(workspace.isOk()) << workspace.status().toString();
  std::mt19937_64 rng(12);
  for (int64_t nodes : {0, 1, 2, 100, 5000, 200000}) {
    for (double density : {0.0, 0.5, 1.0, 4.0}) {
      const Graph graph = randomGraph(rng, nodes, static_cast<int64_t>(density * nodes));
      std::vector<int64_t> labels(static_cast<size_t>(nodes), -7);
      const Status status =
          gpu::labelComponentsGpu(nodes, graph.view(), {0.3f}, **workspace, labels.data());
      ASSERT_TRUE(status.isOk()) << status.toString();
      EXPECT_EQ(labels, runCpu(graph, 0.3f)) << "N = " << nodes << ", density " << density;
    }
  }
  Graph chain;
  chain.nodes = 100000;
  for (int64_t i = chain.nodes - 1; i > 0; --i) chain.add(i, i - 1, 1.0f);
  std::vector<int64_t> labels(static_cast<size_t>(chain.nodes), -7);
  ASSERT_TRUE(gpu::labelComponentsGpu(chain.nodes, chain.view(), {0.5f}, **workspace, labels.data())
                  .isOk());
  EXPECT_EQ(labels, std::vector<int64_t>(static_cast<size_t>(chain.nodes), 0));
  Graph bad;
  bad.nodes = 2;
  bad.add(0, 5, 0.0f);
  const Status status =
      gpu::labelComponentsGpu(bad.nodes, bad.view(), {0.5f}, **workspace, labels.data());
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_NE(status.message().find("edge 0 (0, 5)"), std::string::npos) << status.message();
}

}  // namespace
}  // namespace beamline::native
