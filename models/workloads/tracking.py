"""Reference (brute-force) versions of the two native algorithms, the whole Exa.TrkX pipeline in one
process, and the tracking metrics.

The semantics here are the contract of the C++/CUDA backends (backends/native/), so that the server's
answers can be compared exactly:

Fixed-radius nearest neighbours (FRNN), points x [N, D] FP32, radius r, max_neighbours K:
  d2(i, j) = sum over k = 0..D-1, in that order, of (x[i, k] - x[j, k])^2, in FP32 without fused
  multiply-add; j is a neighbour of i when j != i and d2(i, j) <= r * r (FP32). Each point keeps its
  K nearest neighbours, ordered by (d2, j). The edges are the pairs (min(i, j), max(i, j)) for every
  kept neighbour, without duplicates, sorted, as INT64 [2, E].

Connected components, N nodes, edges [2, E] INT64, scores [E] FP32, threshold t (FP32):
  an edge joins its nodes when score > t. The label of a node is the rank of its component's
  smallest node among all components' smallest nodes, so labels are 0, 1, ... in order of first
  appearance. A node without a selected edge is a component of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .barrel_detector import MIN_HITS_RECONSTRUCTABLE, TrackingEvent


def frnn_reference(points: np.ndarray, radius: float, max_neighbours: int,
                   chunk: int = 1024) -> np.ndarray:
    """Edges [2, E] int64 between points closer than `radius` (see the module docstring)."""
    points = np.ascontiguousarray(points, dtype=np.float32)
    n = points.shape[0]
    if n == 0:
        return np.zeros((2, 0), dtype=np.int64)
    r2 = np.float32(radius) * np.float32(radius)
    pairs = []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        d2 = np.zeros((stop - start, n), dtype=np.float32)
        for k in range(points.shape[1]):  # sequential sum, like the C++ loop
            diff = points[start:stop, None, k] - points[None, :, k]
            d2 = d2 + diff * diff
        for row in range(stop - start):
            i = start + row
            candidates = np.nonzero(d2[row] <= r2)[0]
            candidates = candidates[candidates != i]
            if len(candidates) > max_neighbours:
                order = np.lexsort((candidates, d2[row, candidates]))
                candidates = candidates[order[:max_neighbours]]
            if len(candidates):
                pairs.append(np.stack([np.minimum(i, candidates), np.maximum(i, candidates)]))
    if not pairs:
        return np.zeros((2, 0), dtype=np.int64)
    edges = np.concatenate(pairs, axis=1).astype(np.int64)
    keys = np.unique(edges[0] * n + edges[1])
    return np.stack([keys // n, keys % n]).astype(np.int64)


def connected_components_reference(num_nodes: int, edges: np.ndarray, scores: np.ndarray,
                                   threshold: float) -> np.ndarray:
    """Labels [N] int64 (see the module docstring)."""
    parent = np.arange(num_nodes, dtype=np.int64)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    selected = np.asarray(scores, dtype=np.float32) > np.float32(threshold)
    for a, b in edges[:, selected].T:
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # the smallest node stays the root
    roots = np.array([find(i) for i in range(num_nodes)], dtype=np.int64)
    is_root = roots == np.arange(num_nodes)
    rank = np.cumsum(is_root) - 1
    return rank[roots].astype(np.int64)


@dataclass
class TrackingMetrics:
    reconstructable: int = 0
    matched_particles: int = 0
    candidates: int = 0
    matched_candidates: int = 0

    def add(self, other: "TrackingMetrics") -> None:
        self.reconstructable += other.reconstructable
        self.matched_particles += other.matched_particles
        self.candidates += other.candidates
        self.matched_candidates += other.matched_candidates

    @property
    def efficiency(self) -> float:
        return self.matched_particles / max(1, self.reconstructable)

    @property
    def purity(self) -> float:
        return self.matched_candidates / max(1, self.candidates)


def tracking_metrics(event: TrackingEvent, labels: np.ndarray,
                     min_hits: int = MIN_HITS_RECONSTRUCTABLE) -> TrackingMetrics:
    """Double-majority matching (as in the Exa.TrkX papers): a track candidate (a label with at
    least `min_hits` hits) matches a particle when more than half of its hits are that particle's
    and it holds more than half of that particle's hits. Efficiency: matched reconstructable
    particles (at least `min_hits` hits) over reconstructable particles. Purity: matched candidates
    over candidates."""
    pid = event.particle_id
    hits_per_particle = np.bincount(pid, minlength=int(pid.max(initial=0)) + 1)
    reconstructable = set(int(p) for p in np.nonzero(hits_per_particle >= min_hits)[0] if p > 0)
    metrics = TrackingMetrics(reconstructable=len(reconstructable))
    matched = set()
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    boundaries = np.flatnonzero(np.diff(labels[order])) + 1
    for members in np.split(order, boundaries):
        if len(members) < min_hits:
            continue
        metrics.candidates += 1
        particles, counts = np.unique(pid[members], return_counts=True)
        best = int(np.argmax(counts))
        particle, count = int(particles[best]), int(counts[best])
        if particle > 0 and 2 * count > len(members) and 2 * count > hits_per_particle[particle]:
            metrics.matched_candidates += 1
            if particle in reconstructable:
                matched.add(particle)
    metrics.matched_particles = len(matched)
    return metrics


@dataclass(frozen=True)
class PipelineParameters:
    radius: float
    max_neighbours: int
    threshold: float  # edge score cut of the track building (connected components)


def run_pipeline(modules, features: np.ndarray, parameters: PipelineParameters,
                 keep_intermediate: bool = False):
    """embed -> FRNN -> filter -> GNN -> connected components, in this process.

    `modules` = (embedding, filter, gnn) callables taking/returning torch tensors (TorchScript or
    eager). Returns the labels, or a dict of every intermediate tensor (numpy) when asked."""
    import torch
    embedding_net, filter_net, gnn_net = modules
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        embedding = embedding_net(x).numpy()
        candidate_edges = frnn_reference(embedding, parameters.radius, parameters.max_neighbours)
        filtered_edges, filter_scores = filter_net(x, torch.from_numpy(candidate_edges))
        scores = gnn_net(x, filtered_edges)
    filtered_edges = filtered_edges.numpy()
    scores = scores.numpy()
    labels = connected_components_reference(features.shape[0], filtered_edges, scores,
                                            parameters.threshold)
    if not keep_intermediate:
        return labels
    return {"embedding": embedding, "candidate_edges": candidate_edges,
            "filtered_edges": filtered_edges, "filter_scores": filter_scores.numpy(),
            "edge_scores": scores, "labels": labels}
