#!/usr/bin/env python3
"""Jet tagging as a service (the SONIC ParticleNet workflow).

Each event has a few jets of up to 100 particles. One request per event carries all its jets,
padded to the longest one (CMS's "half-ragged" batching: P varies from request to request), with
`points`, `features` and `mask` as ParticleNet expects them. The softmax comes back per jet.

  .venv/bin/python examples/workflows/jet_tagging.py -u 127.0.0.1:8001 --events 200 --model particlenet_lite
"""

from __future__ import annotations

import time

import numpy as np

import workflow_common as common
from workloads import toy_jets


def main() -> int:
    parser = common.parser(__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="particlenet", choices=["particlenet", "particlenet_lite"])
    parser.add_argument("--max-jets", type=int, default=6, help="jets per event: 1..max")
    args = parser.parse_args()
    client = common.client(args.url)
    rng = np.random.default_rng(args.seed)
    correct = jets_seen = 0
    lengths = []
    start = time.perf_counter()
    for event in range(args.events):
        count = int(rng.integers(1, args.max_jets + 1))
        jets, truth = toy_jets.simulate_jets(args.seed * 1000 + event, count)
        points, features, mask = toy_jets.pad_jets(jets)
        lengths.append(points.shape[2])
        result = client.infer(args.model,
                              common.inputs({"points": points, "features": features, "mask": mask}),
                              outputs=common.outputs(["softmax__0"]))
        probabilities = result.as_numpy("softmax__0")
        correct += int((probabilities.argmax(axis=1) == truth).sum())
        jets_seen += count
        if event < 3:
            print(f"event {event}: {count} jets, P = {points.shape[2]}, "
                  "P(gluon-like) = [" + ", ".join(f"{p:.3f}" for p in probabilities[:, 1]) +
                  f"], truth {truth.tolist()}")
    elapsed = time.perf_counter() - start
    print(f"{args.events} events, {jets_seen} jets ({elapsed / args.events * 1e3:.1f} ms per event, "
          f"P from {min(lengths)} to {max(lengths)}): accuracy {correct / jets_seen:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
