// Connected components on the CPU: union-find that always hooks the larger root under the smaller,
// so each component's root is its smallest node; then roots are ranked. See connected_components.h.

#include <cmath>
#include <string>

#include "connected_components.h"

namespace beamline::native {

Status validateComponentsConfig(const ComponentsConfig& config) {
  if (!std::isfinite(config.threshold)) {
    return invalidArg("connected components threshold must be finite, got " +
                      std::to_string(config.threshold));
  }
  return Status::ok();
}

namespace {

int64_t findRoot(std::vector<int64_t>& parent, int64_t node) {
  while (parent[static_cast<size_t>(node)] != node) {
    const int64_t grandparent = parent[static_cast<size_t>(parent[static_cast<size_t>(node)])];
    parent[static_cast<size_t>(node)] = grandparent;  // path halving
    node = grandparent;
  }
  return node;
}

}  // namespace

Status labelComponentsCpu(int64_t node_count, const ScoredEdgesView& edges,
                          const ComponentsConfig& config, ComponentsWorkspace& workspace,
                          int64_t* labels) {
  BL_RETURN_IF_ERROR(validateComponentsConfig(config));
  if (node_count < 0 || edges.count < 0) {
    return invalidArg("connected components: negative node or edge count");
  }
  if (edges.count > 0 &&
      (edges.sources == nullptr || edges.targets == nullptr || edges.scores == nullptr)) {
    return invalidArg("connected components: edges without data");
  }
  if (node_count > 0 && labels == nullptr) {
    return invalidArg("connected components: no output for the labels");
  }
  for (int64_t e = 0; e < edges.count; ++e) {
    const int64_t a = edges.sources[e];
    const int64_t b = edges.targets[e];
    if (a < 0 || a >= node_count || b < 0 || b >= node_count) {
      return invalidArg("connected components: edge " + std::to_string(e) + " (" +
                        std::to_string(a) + ", " + std::to_string(b) +
                        ") names a node outside [0, " + std::to_string(node_count) + ")");
    }
  }
  auto& parent = workspace.parent_;
  parent.resize(static_cast<size_t>(node_count));
  for (int64_t i = 0; i < node_count; ++i) parent[static_cast<size_t>(i)] = i;
  const float threshold = config.threshold;
  for (int64_t e = 0; e < edges.count; ++e) {
    if (!(edges.scores[e] > threshold)) continue;
    int64_t a = findRoot(parent, edges.sources[e]);
    int64_t b = findRoot(parent, edges.targets[e]);
    if (a == b) continue;
    if (a > b) std::swap(a, b);
    parent[static_cast<size_t>(b)] = a;
  }
  // Roots in increasing order get labels 0, 1, ...; every other node takes its root's label, which
  // is already set because the root is smaller.
  int64_t next = 0;
  for (int64_t i = 0; i < node_count; ++i) {
    const int64_t root = findRoot(parent, i);
    labels[i] = root == i ? next++ : labels[root];
  }
  return Status::ok();
}

}  // namespace beamline::native
