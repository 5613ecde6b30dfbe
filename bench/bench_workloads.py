#!/usr/bin/env python3
"""Throughput of the physics workloads: in-process (TorchScript through LibTorch in this process,
one intra-op thread like the server's instances) and through a beamline server (gRPC, NVIDIA's
tritonclient), per batch size; and tracking events/s for the Exa.TrkX ensemble against the fused
model. On demand only (docs/PERFORMANCE.md), never in CI.

  .venv/bin/python bench/bench_workloads.py [--url HOST:PORT] [--duration-s 3]   # markdown tables

Without --url it starts `build/release/bin/beamline serve` over models/repository on free ports.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "models"))

from workloads import barrel_detector, protodune_patches, toy_jets  # noqa: E402

CNN_BATCHES = [1, 16, 64, 256]
JET_BATCHES = [1, 16, 64, 256]
JET_LENGTH = 50  # particles per jet (padded), a CMS AK8-like mean


def timed(function, duration_s: float) -> tuple[int, float]:
    function()  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < duration_s or count < 3:
        function()
        count += 1
    return count, time.perf_counter() - start


def cnn_inputs(batch: int) -> dict:
    patches, _, _ = protodune_patches.simulate_patches(1, batch)
    return {"patch": patches}


def jet_inputs(batch: int) -> dict:
    jets, _ = toy_jets.simulate_jets(2, batch)
    points, features, mask = toy_jets.pad_jets(jets, JET_LENGTH)
    return {"points": points, "features": features, "mask": mask}


WORKLOADS = {  # model -> (inputs for a batch, batch sizes, outputs)
    "emtrack_cnn": (cnn_inputs, CNN_BATCHES, ["em_trk_none__0", "michel__1"]),
    "particlenet": (jet_inputs, JET_BATCHES, ["softmax__0"]),
    "particlenet_lite": (jet_inputs, JET_BATCHES, ["softmax__0"]),
}


class InProcess:
    """TorchScript through LibTorch in this process, one intra-op thread like a server instance."""

    def __init__(self, repository: pathlib.Path):
        import torch
        torch.set_num_threads(1)
        self.torch = torch
        self.repository = repository
        self.modules = {}

    def rate(self, model: str, arrays: dict, batch: int, duration_s: float) -> float:
        torch = self.torch
        if model not in self.modules:
            module = torch.jit.load(str(self.repository / model / "1" / "model.pt"))
            module.eval()
            self.modules[model] = module
        module = self.modules[model]
        tensors = [torch.from_numpy(a) for a in arrays.values()]
        with torch.inference_mode():
            for _ in range(3):  # TorchScript's profiling executor optimises after a few runs
                module(*tensors)
            count, elapsed = timed(lambda: module(*tensors), duration_s)
        return count * batch / elapsed


def start_server(binary: pathlib.Path, repository: pathlib.Path):
    process = subprocess.Popen(
        [str(binary), "serve", "--model-repository", str(repository), "--grpc-address", "127.0.0.1",
         "--grpc-port", "0", "--http-port", "0", "--http-address", "127.0.0.1",
         "--metrics-port", "0", "--metrics-address", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:
        match = re.search(r"grpc=(\S+)", line)
        if match:
            return process, match.group(1)
    raise RuntimeError("the server exited before it was ready")


def measure(url: str, local: InProcess | None, duration_s: float) -> dict:
    """Per model and batch: in-process, then through the server, back to back, so that both
    numbers of a row see the same machine load."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype
    client = grpcclient.InferenceServerClient(url)
    results = {}
    for model, (make_inputs, batches, outputs) in WORKLOADS.items():
        for batch in batches:
            arrays = make_inputs(batch)
            inputs = []
            for name, array in arrays.items():
                tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
                tensor.set_data_from_numpy(array)
                inputs.append(tensor)
            requested = [grpcclient.InferRequestedOutput(name) for name in outputs]
            for _ in range(3):
                client.infer(model, inputs, outputs=requested)
            own = local.rate(model, arrays, batch, duration_s) if local else None
            count, elapsed = timed(lambda: client.infer(model, inputs, outputs=requested),
                                   duration_s)
            results[(model, batch)] = (own, count * batch / elapsed)
    return results


def tracking(url: str, duration_s: float, events: int = 8) -> dict:
    import tritonclient.grpc as grpcclient
    client = grpcclient.InferenceServerClient(url)
    simulated = barrel_detector.simulate_events(77, events)
    requests = []
    for event in simulated:
        tensor = grpcclient.InferInput("FEATURES", list(event.features.shape), "FP32")
        tensor.set_data_from_numpy(event.features)
        requests.append([tensor])
    results = {"mean_spacepoints": float(np.mean([e.num_hits for e in simulated]))}
    for model in ("exatrkx_fused", "exatrkx"):
        position = [0]

        def one() -> None:
            client.infer(model, requests[position[0] % events])
            position[0] += 1
        try:
            count, elapsed = timed(one, duration_s)
            results[model] = count / elapsed
        except Exception as error:  # e.g. a server without ensemble support
            results[model] = f"unavailable ({str(error).splitlines()[0][:80]})"
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--binary", type=pathlib.Path,
                        default=ROOT / "build" / os.environ.get("BEAMLINE_PRESET", "release") /
                        "bin" / "beamline")
    parser.add_argument("--repository", type=pathlib.Path, default=ROOT / "models" / "repository")
    parser.add_argument("--duration-s", type=float, default=3.0)
    parser.add_argument("--skip-in-process", action="store_true")
    args = parser.parse_args()

    local = None if args.skip_in_process else InProcess(args.repository)
    server = None
    url = args.url
    if url is None:
        server, url = start_server(args.binary, args.repository)
    try:
        served = measure(url, local, args.duration_s)
        events = tracking(url, args.duration_s)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)

    print("| model | batch | in-process items/s | through the server items/s | server / in-process |")
    print("|---|---:|---:|---:|---:|")
    for (model, batch), (own, rate) in served.items():
        ratio = f"{rate / own:.2f}" if own else "-"
        own_text = f"{own:.0f}" if own else "-"
        print(f"| {model} | {batch} | {own_text} | {rate:.0f} | {ratio} |")
    print()
    print(f"Tracking, {events['mean_spacepoints']:.0f} spacepoints per event, one event per "
          f"request, one request at a time:")
    print("| model | events/s |")
    print("|---|---:|")
    for model in ("exatrkx_fused", "exatrkx"):
        value = events[model]
        print(f"| {model} | {value:.1f} |" if isinstance(value, float) else f"| {model} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
