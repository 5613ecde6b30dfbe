"""Toy ProtoDUNE-SP wire x time patches for the EmTrackMichelId-style hit classifier.

A patch is 48 x 48 (wires x downsampled drift ticks), one channel, centred on a hit. The class is
what deposited the centre hit:
  0  EM shower: a cascade of short branching segments and blobs around an axis (diffuse, dense);
  1  track: a thin line with MIP-like fluctuating charge; stopping tracks get a Bragg rise and,
     half of the time, a Michel electron (a short wiggly stub leaving the end point): Michel = 1;
  2  none: electronics noise only, sometimes with a track that misses the centre.
Charge is in MIP units (a MIP deposit peaks at ~1 per pixel); noise is Gaussian per pixel plus a
coherent offset per wire.
"""

from __future__ import annotations

import math

import numpy as np

PATCH_SIZE = 48
CLASS_NAMES = ("em_shower", "track", "none")
_AXIS = np.arange(PATCH_SIZE, dtype=np.float64)


def _deposit(xs: np.ndarray, ys: np.ndarray, charges: np.ndarray, width: float) -> np.ndarray:
    """Sum of Gaussian blobs, as one matrix product of the separable x and y profiles."""
    gx = np.exp(-0.5 * ((_AXIS[None, :] - xs[:, None]) / width) ** 2)
    gy = np.exp(-0.5 * ((_AXIS[None, :] - ys[:, None]) / width) ** 2)
    return (gy * charges[:, None]).T @ gx  # [y, x]


def _line(x0: float, y0: float, angle: float, length: float, step: float = 0.5):
    t = np.arange(0.0, length, step)
    return x0 + t * math.cos(angle), y0 + t * math.sin(angle)


def _noise(rng: np.random.Generator) -> np.ndarray:
    return (rng.normal(0.0, 0.12, (PATCH_SIZE, PATCH_SIZE)) +
            rng.normal(0.0, 0.05, (1, PATCH_SIZE)))


def _delta_rays(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray, count: int):
    """Short knock-on electrons leaving a track: what makes a track look a little shower-like."""
    out_x, out_y, out_q = [], [], []
    for _ in range(count):
        start = int(rng.integers(0, len(xs)))
        x, y = _line(xs[start], ys[start], rng.uniform(0.0, 2.0 * math.pi), rng.uniform(2.0, 7.0))
        out_x.append(x)
        out_y.append(y)
        out_q.append(rng.gamma(3.0, 1.0 / 3.0, len(x)) * 0.5)
    if not out_x:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    return np.concatenate(out_x), np.concatenate(out_y), np.concatenate(out_q)


def _track(rng: np.random.Generator, through_centre: bool) -> tuple[np.ndarray, bool]:
    centre = PATCH_SIZE / 2.0
    angle = rng.uniform(0.0, 2.0 * math.pi)
    if through_centre:
        px, py = centre + rng.normal(0.0, 0.7, 2)
    else:  # passes at least 4 pixels away from the centre
        offset = rng.uniform(4.0, 20.0) * rng.choice([-1.0, 1.0])
        px = centre - offset * math.sin(angle)
        py = centre + offset * math.cos(angle)
    stops = through_centre and rng.random() < 0.4
    forward = rng.uniform(2.0, 10.0) if stops else 60.0
    xs, ys = _line(px - 60.0 * math.cos(angle), py - 60.0 * math.sin(angle), angle, 60.0 + forward)
    charges = rng.gamma(6.0, 1.0 / 6.0, len(xs)) * 0.55
    dx, dy, dq = _delta_rays(rng, xs, ys, int(rng.poisson(1.5)))
    michel = False
    if stops:
        residual = (len(xs) - np.arange(len(xs))) * 0.5  # distance to the end, pixels
        charges = charges * (1.0 + 2.5 * np.exp(-residual / 3.0))  # Bragg rise
        if rng.random() < 0.5:
            michel = True
            mx, my = [xs[-1]], [ys[-1]]
            direction = rng.uniform(0.0, 2.0 * math.pi)
            for _ in range(int(rng.integers(10, 26))):
                direction += rng.normal(0.0, 0.35)
                mx.append(mx[-1] + 0.5 * math.cos(direction))
                my.append(my[-1] + 0.5 * math.sin(direction))
            xs = np.concatenate([xs, mx[1:]])
            ys = np.concatenate([ys, my[1:]])
            charges = np.concatenate([charges, rng.gamma(3.0, 1.0 / 3.0, len(mx) - 1) * 0.7])
    xs, ys, charges = np.concatenate([xs, dx]), np.concatenate([ys, dy]), np.concatenate([charges, dq])
    return _deposit(xs, ys, charges, width=0.7), michel


def _shower(rng: np.random.Generator) -> np.ndarray:
    centre = PATCH_SIZE / 2.0
    axis = rng.uniform(0.0, 2.0 * math.pi)
    start = rng.uniform(8.0, 30.0)  # the shower starts upstream of the centre hit
    sx = centre - start * math.cos(axis) + rng.normal(0.0, 1.5)
    sy = centre - start * math.sin(axis) + rng.normal(0.0, 1.5)
    xs_all, ys_all, q_all = [], [], []
    for _ in range(int(rng.integers(3, 30))):  # short segments spreading around the axis
        distance = rng.exponential(18.0)
        spread = 0.25 + 0.02 * distance
        angle = axis + rng.normal(0.0, spread)
        x0 = sx + distance * math.cos(axis) + rng.normal(0.0, 0.15 * distance + 0.5)
        y0 = sy + distance * math.sin(axis) + rng.normal(0.0, 0.15 * distance + 0.5)
        xs, ys = _line(x0, y0, angle, rng.exponential(6.0) + 1.0)
        xs_all.append(xs)
        ys_all.append(ys)
        q_all.append(rng.gamma(2.0, 0.5, len(xs)) * 0.6)
    n_blobs = int(rng.integers(0, 20))  # isolated deposits (Compton electrons)
    xs_all.append(centre + rng.normal(0.0, 9.0, n_blobs))
    ys_all.append(centre + rng.normal(0.0, 9.0, n_blobs))
    q_all.append(rng.gamma(2.0, 0.6, n_blobs))
    # Make sure the centre hit is part of the shower.
    xs_all.append(centre + rng.normal(0.0, 0.8, 4))
    ys_all.append(centre + rng.normal(0.0, 0.8, 4))
    q_all.append(rng.gamma(2.0, 0.4, 4))
    return _deposit(np.concatenate(xs_all), np.concatenate(ys_all), np.concatenate(q_all),
                    width=1.0)


def simulate_patch(rng: np.random.Generator, label: int) -> tuple[np.ndarray, int]:
    """One [48, 48] float32 patch of class `label`, and its Michel flag."""
    michel = False
    if label == 0:
        image = _shower(rng)
    elif label == 1:
        image, michel = _track(rng, through_centre=True)
    else:
        image = np.zeros((PATCH_SIZE, PATCH_SIZE))
        if rng.random() < 0.6:
            image, _ = _track(rng, through_centre=False)
        if rng.random() < 0.2:  # a shower fragment away from the centre
            fragment = _shower(rng)
            shift = int(rng.integers(12, 20)) * int(rng.choice([-1, 1]))
            image = image + np.roll(fragment, shift, axis=int(rng.integers(0, 2))) * 0.5
    image = image + _noise(rng)
    return image.astype(np.float32), int(michel)


def simulate_patches(seed: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`count` patches [count, 1, 48, 48] with classes [count] (balanced) and Michel flags [count]."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, count)
    patches = np.empty((count, 1, PATCH_SIZE, PATCH_SIZE), dtype=np.float32)
    michel = np.empty(count, dtype=np.int64)
    for i, label in enumerate(labels):
        patches[i, 0], michel[i] = simulate_patch(rng, int(label))
    return patches, labels.astype(np.int64), michel


def simulate_event_patches(seed: int, hits: int) -> np.ndarray:
    """A ProtoDUNE-like "event" for the demo: one patch per reconstructed hit, [hits, 1, 48, 48]."""
    patches, _, _ = simulate_patches(seed, hits)
    return patches
