#!/usr/bin/env python3
"""ProtoDUNE-like hit classification as a service (the NuSONIC / EmTrackMichelId workflow).

Each event is a few thousand reconstructed hits; each hit is a 48x48 wire x time patch around it.
The patches go to `emtrack_cnn` in batches (`--batch`, as LArSoft's PointIdAlg BatchSize), several
requests in flight, and the per-hit scores come back as EM shower / track / none probabilities
and a Michel-electron score. The toy simulation knows the truth, so the accuracy is printed too.

  .venv/bin/python examples/workflows/protodune_hits.py -u 127.0.0.1:8001 --events 3 --hits 2000
"""

from __future__ import annotations

import queue
import time

import numpy as np

import workflow_common as common
from workloads import protodune_patches


def main() -> int:
    parser = common.parser(__doc__.split("\n", 1)[0])
    parser.add_argument("--hits", type=int, default=2000, help="hits (patches) per event")
    parser.add_argument("--batch", type=int, default=256, help="patches per request")
    parser.add_argument("--in-flight", type=int, default=4, help="requests in flight")
    parser.add_argument("--model", default="emtrack_cnn")
    args = parser.parse_args()
    client = common.client(args.url)
    correct = total = michel = 0
    served_time = 0.0
    for event in range(args.events):
        patches, truth, _ = protodune_patches.simulate_patches(args.seed + event, args.hits)
        scores = np.empty((args.hits, 3), dtype=np.float32)
        michel_scores = np.empty(args.hits, dtype=np.float32)
        done: queue.Queue = queue.Queue()
        start = time.perf_counter()
        starts = list(range(0, args.hits, args.batch))
        pending = 0
        for first in starts:
            while pending >= args.in_flight:
                first_done, result, error = done.get()
                pending -= 1
                if error is not None:
                    raise error
                scores[first_done:first_done + args.batch] = result.as_numpy("em_trk_none__0")
                michel_scores[first_done:first_done + args.batch] = result.as_numpy("michel__1")[:, 0]
            client.async_infer(args.model,
                               common.inputs({"patch": patches[first:first + args.batch]}),
                               callback=lambda result, error, first=first: done.put((first, result, error)),
                               outputs=common.outputs(["em_trk_none__0", "michel__1"]))
            pending += 1
        while pending:
            first_done, result, error = done.get()
            pending -= 1
            if error is not None:
                raise error
            scores[first_done:first_done + args.batch] = result.as_numpy("em_trk_none__0")
            michel_scores[first_done:first_done + args.batch] = result.as_numpy("michel__1")[:, 0]
        elapsed = time.perf_counter() - start
        served_time += elapsed
        predicted = scores.argmax(axis=1)
        counts = np.bincount(predicted, minlength=3)
        correct += int((predicted == truth).sum())
        total += args.hits
        michel += int((michel_scores > 0.5).sum())
        print(f"event {event}: {args.hits} hits in {elapsed * 1e3:.0f} ms "
              f"({args.hits / elapsed:.0f} patches/s): "
              + ", ".join(f"{name} {count}" for name, count in
                          zip(protodune_patches.CLASS_NAMES, counts))
              + f", Michel candidates {int((michel_scores > 0.5).sum())}")
    print(f"{total} hits, accuracy {correct / total:.3f} against the simulation's truth, "
          f"{total / served_time:.0f} patches/s overall, {michel} Michel candidates")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
