"""A toy barrel tracking detector for the Exa.TrkX-style pipeline.

Charged particles come from the origin (a small beam spot in z), bend in a 2 T solenoid field and
leave one spacepoint per crossed cylindrical layer. Noise hits are spread uniformly over the layers.
Hits are shuffled, so their order says nothing about the truth.

Spacepoint features follow the Exa.TrkX service inputs: (r / 1000, phi / pi, z / 1000) with r and z
in mm, as FP32 [N, 3].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LAYER_RADII_MM = (32.0, 72.0, 116.0, 172.0, 260.0, 360.0, 500.0, 660.0, 820.0, 1020.0)
HALF_LENGTH_MM = 1500.0
B_FIELD_T = 2.0
R_SCALE_MM = 1000.0
Z_SCALE_MM = 1000.0

# A particle is "reconstructable" when it left at least this many hits.
MIN_HITS_RECONSTRUCTABLE = 5


@dataclass(frozen=True)
class DetectorConfig:
    """Event composition. The defaults give ~1000 spacepoints per event (like the small LRT sample
    events of the Exa.TrkX service, 1.1k-2.6k)."""
    min_particles: int = 60
    max_particles: int = 100
    min_pt_gev: float = 0.5
    max_pt_gev: float = 10.0
    max_abs_eta: float = 1.0
    beam_spot_sigma_z_mm: float = 30.0
    hit_efficiency: float = 0.98
    noise_fraction: float = 0.10      # noise hits per particle hit
    sigma_rphi_mm: float = 0.05
    sigma_z_mm: float = 0.5


@dataclass
class TrackingEvent:
    features: np.ndarray     # [N, 3] float32: r/1000, phi/pi, z/1000
    particle_id: np.ndarray  # [N] int64: 0 for noise, 1.. for particles
    layer: np.ndarray        # [N] int64: layer index 0..len(LAYER_RADII_MM)-1
    particle_pt: np.ndarray  # [n_particles + 1] float64: pT of particle id i (index 0 unused)

    @property
    def num_hits(self) -> int:
        return int(self.features.shape[0])


def _wrap_phi(phi: np.ndarray) -> np.ndarray:
    return (phi + math.pi) % (2.0 * math.pi) - math.pi


def simulate_event(rng: np.random.Generator, config: DetectorConfig = DetectorConfig()
                   ) -> TrackingEvent:
    """One event: particles with 1/pT uniform in [1/max_pt, 1/min_pt], uniform phi and eta."""
    n_particles = int(rng.integers(config.min_particles, config.max_particles + 1))
    inverse_pt = rng.uniform(1.0 / config.max_pt_gev, 1.0 / config.min_pt_gev, n_particles)
    pt = 1.0 / inverse_pt
    phi0 = rng.uniform(-math.pi, math.pi, n_particles)
    eta = rng.uniform(-config.max_abs_eta, config.max_abs_eta, n_particles)
    cot_theta = np.sinh(eta)
    z0 = rng.normal(0.0, config.beam_spot_sigma_z_mm, n_particles)
    charge = rng.choice([-1.0, 1.0], n_particles)
    radius_of_curvature_mm = pt / (0.3 * B_FIELD_T) * 1000.0

    radii, phis, zs, pids, layers = [], [], [], [], []
    for layer, r in enumerate(LAYER_RADII_MM):
        reaches = r < 2.0 * radius_of_curvature_mm
        alpha = np.arcsin(np.clip(r / (2.0 * radius_of_curvature_mm), -1.0, 1.0))
        phi = phi0 - charge * alpha
        z = z0 + cot_theta * 2.0 * radius_of_curvature_mm * alpha
        seen = reaches & (np.abs(z) < HALF_LENGTH_MM) & (rng.random(n_particles) < config.hit_efficiency)
        count = int(seen.sum())
        phis.append(phi[seen] + rng.normal(0.0, config.sigma_rphi_mm / r, count))
        zs.append(z[seen] + rng.normal(0.0, config.sigma_z_mm, count))
        radii.append(np.full(count, r))
        pids.append(np.nonzero(seen)[0] + 1)
        layers.append(np.full(count, layer))
    n_signal = sum(len(p) for p in pids)
    n_noise = int(round(config.noise_fraction * n_signal))
    noise_layer = rng.integers(0, len(LAYER_RADII_MM), n_noise)
    radii.append(np.asarray(LAYER_RADII_MM)[noise_layer])
    phis.append(rng.uniform(-math.pi, math.pi, n_noise))
    zs.append(rng.uniform(-HALF_LENGTH_MM, HALF_LENGTH_MM, n_noise))
    pids.append(np.zeros(n_noise, dtype=np.int64))
    layers.append(noise_layer)

    r_all = np.concatenate(radii)
    phi_all = _wrap_phi(np.concatenate(phis))
    z_all = np.concatenate(zs)
    order = rng.permutation(len(r_all))
    features = np.stack([r_all / R_SCALE_MM, phi_all / math.pi, z_all / Z_SCALE_MM], axis=1)
    return TrackingEvent(features=features[order].astype(np.float32),
                         particle_id=np.concatenate(pids).astype(np.int64)[order],
                         layer=np.concatenate(layers).astype(np.int64)[order],
                         particle_pt=np.concatenate([[0.0], pt]))


def simulate_events(seed: int, count: int, config: DetectorConfig = DetectorConfig()
                    ) -> list[TrackingEvent]:
    rng = np.random.default_rng(seed)
    return [simulate_event(rng, config) for _ in range(count)]


def true_edge_mask(event: TrackingEvent, edges: np.ndarray) -> np.ndarray:
    """True for edges [2, E] whose two hits belong to the same particle (noise never matches)."""
    a = event.particle_id[edges[0]]
    b = event.particle_id[edges[1]]
    return (a == b) & (a > 0)


def consecutive_hit_pairs(event: TrackingEvent) -> np.ndarray:
    """[2, M] pairs of hits of the same particle on consecutive crossed layers (the truth graph
    the embedding learns to keep close)."""
    signal = np.nonzero(event.particle_id > 0)[0]
    order = signal[np.lexsort((event.layer[signal], event.particle_id[signal]))]
    same = event.particle_id[order[1:]] == event.particle_id[order[:-1]]
    return np.stack([order[:-1][same], order[1:][same]]).astype(np.int64)
