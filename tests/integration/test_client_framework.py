"""The event-processing demo (examples/framework: TBB streams, acquire/produce, the 48x48-patch CNN
through EventClient) end to end: through a server, through the fallback it starts, and in-process.
Each run first checks 16 reference patches against in-process PyTorch (max |diff| <= 1e-5)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from beamline_harness import backend_directory, beamline_binary

RESULT = re.compile(r"^processed (\d+) events \((\d+) failed\)", re.M)


def demo_binary() -> Path:
    return beamline_binary().resolve().parent / "beamline_framework_demo"


pytestmark = [pytest.mark.libtorch,
              pytest.mark.skipif(not demo_binary().exists(), reason="the demo is not built")]


def run_demo(*args: str, timeout: float = 240) -> str:
    done = subprocess.run([str(demo_binary()), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "BEAMLINE_BIN": str(beamline_binary())})
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "(PASS)" in output, output
    match = RESULT.search(done.stdout)
    assert match and match.group(2) == "0", output
    return done.stdout


@pytest.mark.parametrize("mode", ["Sync", "Async", "PseudoAsync"])
def test_demo_through_a_server(default_server, example_repository, mode):
    out = run_demo("--server", default_server.url, "--reference", str(example_repository.reference),
                   "--mode", mode, "--events", "3", "--patches", "200", "--streams", "2")
    assert f"result mode={mode} streams=2 events=3" in out


def test_demo_starts_its_fallback_server(example_repository):
    out = run_demo("--model-repository", str(example_repository.repository),
                   "--backend-directory", str(backend_directory()),
                   "--reference", str(example_repository.reference), "--events", "2",
                   "--patches", "200")
    assert "(fallback)" in out


def test_demo_in_process(example_repository):
    out = run_demo("--in-process", "--model-repository", str(example_repository.repository),
                   "--backend-directory", str(backend_directory()),
                   "--reference", str(example_repository.reference), "--events", "2",
                   "--patches", "200", "--streams", "2", "--mode", "Async")
    assert "via in-process" in out
