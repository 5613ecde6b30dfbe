"""Shared plumbing of the demo workflows: command line, client, the toy simulations, timing."""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from contextlib import contextmanager

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "models"))


def parser(description: str) -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(description=description)
    result.add_argument("-u", "--url", default="127.0.0.1:8001",
                        help="gRPC endpoint of a beamline (or Triton) server (default: %(default)s)")
    result.add_argument("--events", type=int, default=5, help="events to process")
    result.add_argument("--seed", type=int, default=2026, help="simulation seed")
    return result


def client(url: str):
    import tritonclient.grpc as grpcclient
    return grpcclient.InferenceServerClient(url)


def inputs(values: dict[str, np.ndarray]):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype
    result = []
    for name, array in values.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(np.ascontiguousarray(array))
        result.append(tensor)
    return result


def outputs(names: list[str]):
    import tritonclient.grpc as grpcclient
    return [grpcclient.InferRequestedOutput(name) for name in names]


@contextmanager
def stopwatch(totals: dict, key: str):
    start = time.perf_counter()
    yield
    totals[key] = totals.get(key, 0.0) + time.perf_counter() - start
