#!/usr/bin/env python3
"""Track reconstruction as a service (the Exa.TrkX-as-a-service workflow).

Each event is one request: the spacepoints of the toy barrel detector as FEATURES [N, 3]
(r/1000, phi/pi, z/1000); the answer is one track label per spacepoint. `--model exatrkx` runs
the ensemble (embed -> frnn -> filter -> gnn -> connected components, five models),
`--model exatrkx_fused` the same pipeline in one backend call. The toy simulation knows the truth,
so the tracking efficiency and purity (double-majority matching) are printed.

  .venv/bin/python examples/workflows/tracking.py -u 127.0.0.1:8001 --events 20 --model exatrkx_fused
"""

from __future__ import annotations

import time

import numpy as np

import workflow_common as common
from workloads import barrel_detector, tracking


def main() -> int:
    parser = common.parser(__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="exatrkx_fused", choices=["exatrkx", "exatrkx_fused"])
    args = parser.parse_args()
    client = common.client(args.url)
    events = barrel_detector.simulate_events(args.seed, args.events)
    total = tracking.TrackingMetrics()
    served = 0.0
    for index, event in enumerate(events):
        start = time.perf_counter()
        result = client.infer(args.model, common.inputs({"FEATURES": event.features}),
                              outputs=common.outputs(["LABELS"]))
        served += time.perf_counter() - start
        labels = result.as_numpy("LABELS")
        metrics = tracking.tracking_metrics(event, labels)
        total.add(metrics)
        if index < 3:
            print(f"event {index}: {event.num_hits} spacepoints, {len(np.unique(labels))} labels, "
                  f"{metrics.candidates} track candidates, efficiency {metrics.efficiency:.3f}, "
                  f"purity {metrics.purity:.3f}")
    print(f"{args.events} events with {args.model}: {args.events / served:.1f} events/s, "
          f"tracking efficiency {total.efficiency:.4f}, purity {total.purity:.4f} "
          f"({total.reconstructable} reconstructable particles)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
