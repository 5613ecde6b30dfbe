"""The networks of beamline's reference workloads, written for torch.jit.script (PyTorch 1.13 and 2.x).

Inputs are never modified in place: the server hands TorchScript views of the request's memory.
"""

from __future__ import annotations

import math
from typing import List, Tuple

import torch
from torch import Tensor, nn

# --- EmTrackMichelId-style hit classifier ----------------------------------------------------------


class EmTrackCnn(nn.Module):
    """A 48x48 single-channel patch -> (EM shower / track / none softmax [3], Michel sigmoid [1]).

    The layout follows ProtoDUNE's EmTrackMichelId (convolutions, two dense layers, a 3-way softmax
    head and a Michel sigmoid head) in a compact form (~250k parameters, ~1 MB of weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(2),    # 24x24
            nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 12x12
            nn.Conv2d(32, 48, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 6x6
        )
        self.dense = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(48 * 6 * 6, 128),
                                   nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 32), nn.ReLU())
        self.em_trk_none = nn.Linear(32, 3)
        self.michel = nn.Linear(32, 1)

    def logits(self, patch: Tensor) -> Tuple[Tensor, Tensor]:
        hidden = self.dense(self.features(patch))
        return self.em_trk_none(hidden), self.michel(hidden)

    def forward(self, patch: Tensor) -> Tuple[Tensor, Tensor]:
        classes, michel = self.logits(patch)
        return torch.softmax(classes, dim=1), torch.sigmoid(michel)


# --- ParticleNet (arXiv:1902.08570), after hqucms/ParticleNet and weaver's ParticleNet --------------


def knn(points: Tensor, k: int) -> Tensor:
    """Indices [N, P, k] of each point's k nearest other points; points [N, C, P]."""
    inner = -2.0 * torch.matmul(points.transpose(2, 1), points)
    squared = torch.sum(points * points, dim=1, keepdim=True)
    negative_distance = -squared - inner - squared.transpose(2, 1)
    return negative_distance.topk(k=k + 1, dim=-1)[1][:, :, 1:]


def edge_features(features: Tensor, k: int, indices: Tensor) -> Tensor:
    """EdgeConv inputs [N, 2C, P, k]: (x_i, x_j - x_i) for each neighbour j of i."""
    batch, channels, count = features.size(0), features.size(1), features.size(2)
    base = torch.arange(0, batch, device=features.device).view(-1, 1, 1) * count
    flat = (indices + base).view(-1)
    neighbours = features.transpose(2, 1).reshape(-1, channels)[flat, :]
    neighbours = neighbours.view(batch, count, k, channels).permute(0, 3, 1, 2)
    centre = features.view(batch, channels, count, 1).expand(-1, -1, -1, k)
    return torch.cat((centre, neighbours - centre), dim=1)


class MaskedBatchNorm(nn.Module):
    """BatchNorm over the channel dimension (dim 1) whose training statistics count only the real
    particles (mask 1), not the zero padding. In eval mode it is exactly BatchNorm (running
    statistics, per-element affine), so a jet's output does not depend on how much it is padded;
    and training batches can be padded to their own longest jet without biasing the statistics."""

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.momentum = momentum
        self.eps = eps

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        shape = [1, x.size(1)] + [1 for _ in range(x.dim() - 2)]
        if self.training:
            dims = [0] + [d for d in range(2, x.dim())]
            weights = mask.expand(x.size(0), 1, x.size(2), x.size(x.dim() - 1)) \
                if x.dim() == 4 else mask
            count = torch.clamp(weights.sum(), min=2.0)
            mean = (x * weights).sum(dims) / count
            var = (((x - mean.view(shape)) ** 2) * weights).sum(dims) / count
            with torch.no_grad():
                self.running_mean.mul_(1.0 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1.0 - self.momentum).add_(
                    self.momentum * var * count / (count - 1.0))
        else:
            mean = self.running_mean
            var = self.running_var
        scale = self.weight / torch.sqrt(var + self.eps)
        return (x - mean.view(shape)) * scale.view(shape) + self.bias.view(shape)


class ConvNorm(nn.Module):
    """A 1x1 convolution without bias, then (masked) BatchNorm."""

    def __init__(self, in_channels: int, out_channels: int, dimensions: int) -> None:
        super().__init__()
        convolution = nn.Conv2d if dimensions == 2 else nn.Conv1d
        self.conv = convolution(in_channels, out_channels, kernel_size=1, bias=False)
        self.norm = MaskedBatchNorm(out_channels)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.norm(self.conv(x), mask)


class EdgeConvBlock(nn.Module):
    """kNN graph in `points` -> edge features -> 3 x (1x1 conv, BN, ReLU) -> mean over the k
    neighbours; a 1x1 conv + BN shortcut; ReLU of the sum."""

    def __init__(self, k: int, in_channels: int, out_channels: List[int]) -> None:
        super().__init__()
        self.k = k
        layers: List[nn.Module] = []
        previous = 2 * in_channels
        for channels in out_channels:
            layers.append(ConvNorm(previous, channels, dimensions=2))
            previous = channels
        self.convs = nn.ModuleList(layers)
        self.shortcut = ConvNorm(in_channels, out_channels[-1], dimensions=1)

    def forward(self, points: Tensor, features: Tensor, mask: Tensor) -> Tensor:
        indices = knn(points, self.k)
        x = edge_features(features, self.k, indices)
        edge_mask = mask.unsqueeze(-1)  # [N, 1, P, 1]: the edges of real particles
        for layer in self.convs:
            x = torch.relu(layer(x, edge_mask))
        return torch.relu(self.shortcut(features, mask) + x.mean(dim=-1))


class ParticleNet(nn.Module):
    """ParticleNet: inputs points [N, 2, P], features [N, C, P], mask [N, 1, P] (1 = particle,
    0 = padding); output the class probabilities [N, num_classes] (softmax).

    As published: input features go through BatchNorm; EdgeConv blocks (the first builds its kNN
    graph in (eta, phi), the others in the previous block's feature space); masked global average
    pooling; FC + ReLU + dropout; FC; softmax. Padded particles are shifted by 1e9 in every
    coordinate so they are never neighbours of real ones, the average is taken over the real
    particles (weaver's `use_counts`), and BatchNorm's training statistics skip the padding, so a
    jet's output does not depend on how much it is padded. Jets shorter than k + 1 particles are
    padded inside the model (kNN needs k + 1 points)."""

    def __init__(self, input_dims: int, num_classes: int,
                 conv_params: List[Tuple[int, List[int]]], fc_params: List[Tuple[int, float]]
                 ) -> None:
        super().__init__()
        self.input_bn = MaskedBatchNorm(input_dims)
        blocks: List[nn.Module] = []
        previous = input_dims
        for k, channels in conv_params:
            blocks.append(EdgeConvBlock(k, previous, list(channels)))
            previous = channels[-1]
        self.edge_convs = nn.ModuleList(blocks)
        self.min_points = max(k for k, _ in conv_params) + 1
        layers: List[nn.Module] = []
        for channels, dropout in fc_params:
            layers += [nn.Linear(previous, channels), nn.ReLU(), nn.Dropout(dropout)]
            previous = channels
        layers.append(nn.Linear(previous, num_classes))
        self.fc = nn.Sequential(*layers)

    def logits(self, points: Tensor, features: Tensor, mask: Tensor) -> Tensor:
        if points.size(2) < self.min_points:
            padding = [0, self.min_points - points.size(2)]
            points = nn.functional.pad(points, padding)
            features = nn.functional.pad(features, padding)
            mask = nn.functional.pad(mask, padding)
        mask = (mask != 0).to(features.dtype)
        points = points * mask
        features = features * mask
        coordinate_shift = (mask == 0).to(features.dtype) * 1e9
        counts = torch.clamp(mask.sum(dim=-1), min=1.0)
        fts = self.input_bn(features, mask) * mask
        for index, block in enumerate(self.edge_convs):
            pts = (points if index == 0 else fts) + coordinate_shift
            fts = block(pts, fts, mask) * mask
        return self.fc(fts.sum(dim=-1) / counts)

    def forward(self, points: Tensor, features: Tensor, mask: Tensor) -> Tensor:
        return torch.softmax(self.logits(points, features, mask), dim=1)


def particlenet(input_dims: int, num_classes: int) -> ParticleNet:
    """ParticleNet as published: k = 16; (64,64,64), (128,128,128), (256,256,256); FC 256."""
    return ParticleNet(input_dims, num_classes,
                       [(16, [64, 64, 64]), (16, [128, 128, 128]), (16, [256, 256, 256])],
                       [(256, 0.1)])


def particlenet_lite(input_dims: int, num_classes: int) -> ParticleNet:
    """ParticleNet-Lite as published: k = 7; (32,32,32), (64,64,64); FC 128."""
    return ParticleNet(input_dims, num_classes, [(7, [32, 32, 32]), (7, [64, 64, 64])],
                       [(128, 0.1)])


# --- Exa.TrkX-style tracking networks --------------------------------------------------------------
# Spacepoint features are (r / 1000, phi / pi, z / 1000). The networks see phi through cos and sin,
# so tracks that cross phi = +-pi are not cut in two.


def mlp(sizes: List[int], final_activation: bool = False) -> nn.Sequential:
    layers: List[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or final_activation:
            layers += [nn.LayerNorm(sizes[i + 1]), nn.ReLU()]
    return nn.Sequential(*layers)


def node_inputs(features: Tensor) -> Tensor:
    """[N, 4]: r, cos phi, sin phi, z."""
    phi = features[:, 1] * math.pi
    return torch.stack([features[:, 0], torch.cos(phi), torch.sin(phi), features[:, 2]], dim=1)


def oriented_edges(features: Tensor, edges: Tensor) -> Tuple[Tensor, Tensor]:
    """(inner, outer) node indices of each edge, ordered by radius."""
    swap = features[edges[0], 0] > features[edges[1], 0]
    return torch.where(swap, edges[1], edges[0]), torch.where(swap, edges[0], edges[1])


def edge_inputs(features: Tensor, inner: Tensor, outer: Tensor) -> Tensor:
    """[E, 13]: both nodes' inputs, dr, dphi, dz, dphi/dr and the z intercept at r = 0."""
    nodes = node_inputs(features)
    dr = features[outer, 0] - features[inner, 0]
    dphi = (torch.remainder(features[outer, 1] - features[inner, 1] + 1.0, 2.0) - 1.0) * math.pi
    dz = features[outer, 2] - features[inner, 2]
    safe_dr = torch.clamp(dr, min=0.01)
    phi_slope = torch.clamp(dphi / safe_dr, min=-10.0, max=10.0)
    z0 = torch.clamp(features[inner, 2] - features[inner, 0] * dz / safe_dr, min=-10.0, max=10.0)
    geometry = torch.stack([dr, dphi, dz, phi_slope, z0], dim=1)
    return torch.cat([nodes[inner], nodes[outer], geometry], dim=1)


class EmbeddingNet(nn.Module):
    """Metric learning: spacepoint features [N, 3] -> latent coordinates [N, 8], where hits of one
    track lie close together."""

    def __init__(self, hidden: int = 256, latent: int = 8) -> None:
        super().__init__()
        self.net = mlp([4, hidden, hidden, hidden, latent])

    def forward(self, features: Tensor) -> Tensor:
        return self.net(node_inputs(features))


class FilterNet(nn.Module):
    """Edge filter: scores the candidate edges [2, E] (from FRNN) with an MLP on both spacepoints
    and keeps those above `cut`. Returns the kept edges [2, E'] and their scores [E']."""

    def __init__(self, hidden: int = 128, cut: float = 0.2) -> None:
        super().__init__()
        self.net = mlp([13, hidden, hidden, hidden, 1])
        self.cut = cut

    def logits(self, features: Tensor, edges: Tensor) -> Tensor:
        inner, outer = oriented_edges(features, edges)
        return self.net(edge_inputs(features, inner, outer)).squeeze(1)

    def forward(self, features: Tensor, edges: Tensor) -> Tuple[Tensor, Tensor]:
        scores = torch.sigmoid(self.logits(features, edges))
        keep = scores > self.cut
        return edges[:, keep], scores[keep]


class InteractionGnn(nn.Module):
    """Interaction network edge classifier: node and edge encoders, `iterations` rounds of message
    passing along inner -> outer edges (edge update from both nodes; node update from the sums of
    incoming and outgoing edge states; residual), then an edge score [E] (sigmoid)."""

    def __init__(self, hidden: int = 64, iterations: int = 6) -> None:
        super().__init__()
        self.iterations = iterations
        self.node_encoder = mlp([4, hidden, hidden], final_activation=True)
        self.edge_encoder = mlp([13, hidden, hidden], final_activation=True)
        self.edge_network = mlp([3 * hidden, hidden, hidden], final_activation=True)
        self.node_network = mlp([3 * hidden, hidden, hidden], final_activation=True)
        self.output = mlp([3 * hidden, hidden, 1])

    def logits(self, features: Tensor, edges: Tensor) -> Tensor:
        inner, outer = oriented_edges(features, edges)
        nodes = self.node_encoder(node_inputs(features))
        states = self.edge_encoder(edge_inputs(features, inner, outer))
        for _ in range(self.iterations):
            incoming = torch.zeros_like(nodes).index_add_(0, outer, states)
            outgoing = torch.zeros_like(nodes).index_add_(0, inner, states)
            nodes = nodes + self.node_network(torch.cat([nodes, incoming, outgoing], dim=1))
            states = states + self.edge_network(
                torch.cat([states, nodes[inner], nodes[outer]], dim=1))
        return self.output(torch.cat([states, nodes[inner], nodes[outer]], dim=1)).squeeze(1)

    def forward(self, features: Tensor, edges: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(features, edges))
