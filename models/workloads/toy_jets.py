"""Toy jets of two classes for the ParticleNet taggers.

Class 0 ("quark-like") has fewer, harder and more collimated particles; class 1 ("gluon-like") has
more, softer particles spread wider. The distributions overlap, so a tagger cannot be perfect.

Per particle, ParticleNet's inputs for the top-tagging dataset of the ParticleNet paper:
  points   (2, P): delta eta, delta phi to the jet axis
  features (7, P): delta eta, delta phi, log pT, log E, log(pT / pT_jet), log(E / E_jet), delta R
  mask     (1, P): 1 for a particle, 0 for padding
Particles are sorted by decreasing pT and padded with zeros to P.
"""

from __future__ import annotations

import numpy as np

NUM_FEATURES = 7
NUM_CLASSES = 2
MAX_PARTICLES = 100
CLASS_NAMES = ("quark_like", "gluon_like")

_MEAN_MULTIPLICITY = (18.0, 26.0)
_ANGULAR_SPREAD = (0.075, 0.105)
_DIRICHLET_ALPHA = (0.5, 0.65)


def simulate_jet(rng: np.random.Generator, label: int) -> tuple[np.ndarray, np.ndarray]:
    """points [2, n] and features [7, n] (float32) of one jet with n particles."""
    n = int(np.clip(2 + rng.poisson(_MEAN_MULTIPLICITY[label] - 2), 2, MAX_PARTICLES))
    fractions = np.sort(rng.dirichlet(np.full(n, _DIRICHLET_ALPHA[label])))[::-1]
    fractions = np.maximum(fractions, 1e-5)
    jet_pt = rng.uniform(500.0, 1000.0)
    jet_eta = rng.uniform(-2.0, 2.0)
    # Softer particles lie further from the axis.
    width = _ANGULAR_SPREAD[label] * (0.25 + 0.25 / np.sqrt(fractions * n))
    deta = rng.normal(0.0, 1.0, n) * width
    dphi = rng.normal(0.0, 1.0, n) * width
    pt = fractions * jet_pt
    energy = pt * np.cosh(jet_eta + deta)
    jet_energy = energy.sum()
    features = np.stack([deta, dphi, np.log(pt), np.log(energy), np.log(pt / jet_pt),
                         np.log(energy / jet_energy), np.hypot(deta, dphi)])
    return np.stack([deta, dphi]).astype(np.float32), features.astype(np.float32)


def pad_jets(jets: list[tuple[np.ndarray, np.ndarray]], length: int | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero-padded points [J, 2, P], features [J, 7, P], mask [J, 1, P]; P = the longest jet
    (clipped to MAX_PARTICLES) unless `length` is given; longer jets keep their hardest particles."""
    if length is None:
        length = max([j[0].shape[1] for j in jets], default=1)
    length = int(min(max(length, 1), MAX_PARTICLES))
    points = np.zeros((len(jets), 2, length), dtype=np.float32)
    features = np.zeros((len(jets), NUM_FEATURES, length), dtype=np.float32)
    mask = np.zeros((len(jets), 1, length), dtype=np.float32)
    for i, (p, f) in enumerate(jets):
        n = min(p.shape[1], length)
        points[i, :, :n] = p[:, :n]
        features[i, :, :n] = f[:, :n]
        mask[i, 0, :n] = 1.0
    return points, features, mask


def simulate_jets(seed: int, count: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """`count` jets with balanced random classes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, count)
    return [simulate_jet(rng, int(label)) for label in labels], labels.astype(np.int64)
