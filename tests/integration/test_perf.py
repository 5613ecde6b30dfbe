"""`beamline perf` end to end against the real server: every protocol, shared memory, CSV/JSON
outputs checked against the server's own statistics, request-rate mode, and the error paths.

Short windows and a loose stability percentage keep the file well under a minute on 2 cores; no
assertion depends on how fast the machine is, except a loose bound on the asked request rate.
"""

from __future__ import annotations

import csv
import json
import socket
import subprocess
from pathlib import Path

import pytest

from beamline_harness import ServerProcess, beamline_binary

MODEL = "native_identity"  # FP32 [-1], max_batch_size 8 (native identity backend, no LibTorch)
# Short windows; --stability-percentage 100 makes 3 windows enough.
QUICK = ["-p", "300", "--warmup", "100", "-r", "4", "-s", "100"]


@pytest.fixture(scope="module")
def server(native_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    process = ServerProcess(["--model-repository", str(native_repository),
                             "--allow-client-shm", "true"],
                            tmp_path_factory.mktemp("perf_server_logs"), "perf-server")
    yield process
    process.stop()


def run_perf(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(beamline_binary()), "perf", *args], capture_output=True, text=True,
                          timeout=timeout)


def server_success(server: ServerProcess, model: str = MODEL) -> int:
    with server.client() as client:
        stats = client.get_inference_statistics(model, as_json=True)
    return sum(int(s["inference_stats"]["success"].get("count", 0)) for s in stats["model_stats"])


def check_step(step: dict) -> None:
    latency = step["latency_us"]
    assert step["request_count"] > 0, step
    assert step["errors"] == 0, step
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p95"] <= latency["p99"], latency
    assert step["throughput_infer_per_s"] > 0
    assert step["total_sent"] == step["total_succeeded"], step
    # The server's own delta over the step equals what this client sent.
    assert step["server_total_success"] == step["total_sent"], step


@pytest.mark.parametrize("mode", [
    ["-i", "grpc"],
    ["-i", "grpc", "--streaming"],
    ["-i", "http", "--http-format", "json"],
    ["-i", "http", "--http-format", "binary"],
    ["-i", "grpc", "--shared-memory", "system", "--output-shared-memory-size", "4096"],
], ids=["grpc", "grpc-streaming", "http-json", "http-binary", "system-shm"])
def test_perf_protocols_match_server_statistics(server: ServerProcess, tmp_path: Path,
                                                mode: list[str]) -> None:
    url = server.http_url if "http" in mode else server.url
    csv_path, json_path = tmp_path / "out.csv", tmp_path / "out.json"
    before = server_success(server)
    done = run_perf("-m", MODEL, "-u", url, *mode, "--shape", "INPUT0:256", "-b", "2",
                    "--concurrency-range", "1:3:2", *QUICK, "-f", str(csv_path),
                    "--json", str(json_path))
    assert done.returncode == 0, done.stderr + done.stdout
    after = server_success(server)
    report = json.loads(json_path.read_text())
    assert [s["concurrency"] for s in report["steps"]] == [1, 3]
    for step in report["steps"]:
        check_step(step)
        # batch 2: inferences are twice the requests
        assert step["throughput_infer_per_s"] == pytest.approx(
            2 * step["throughput_requests_per_s"])
    assert after - before == sum(s["total_sent"] for s in report["steps"])
    rows = list(csv.DictReader(csv_path.open()))
    assert [int(r["Concurrency"]) for r in rows] == [1, 3]
    for row, step in zip(rows, report["steps"]):
        assert int(row["Client Request Count"]) == step["request_count"]
        assert float(row["p50 latency"]) <= float(row["p90 latency"]) <= float(row["p99 latency"])
        if "grpc" in mode[1]:
            assert row["Server Compute Infer"] != ""  # the breakdown is filled in
    assert "infer/s" in done.stdout


def test_perf_request_rate_is_roughly_kept(server: ServerProcess, tmp_path: Path) -> None:
    json_path = tmp_path / "rate.json"
    done = run_perf("-m", MODEL, "-u", server.url, "--shape", "INPUT0:64",
                    "--request-rate-range", "200", "--request-distribution", "poisson",
                    "-p", "800", "--warmup", "200", "-r", "3", "-s", "100",
                    "--json", str(json_path))
    assert done.returncode == 0, done.stderr
    step = json.loads(json_path.read_text())["steps"][0]
    assert step["request_rate"] == 200
    check_step(step)
    # Loose: Poisson over ~2.4 s has ~5% spread; the bound only catches a broken scheduler.
    assert 120 <= step["throughput_requests_per_s"] <= 300, step


def test_perf_progress_goes_to_stderr(server: ServerProcess) -> None:
    done = run_perf("-m", MODEL, "-u", server.url, "--shape", "INPUT0:16", *QUICK, "--progress")
    assert done.returncode == 0, done.stderr
    assert "window 1/" in done.stderr
    assert "window 1/" not in done.stdout


def test_perf_unknown_model_fails_clearly(server: ServerProcess) -> None:
    done = run_perf("-m", "no_such_model", "-u", server.url, *QUICK)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no_such_model" in lines[0], done.stderr


def test_perf_missing_shape_fails_clearly(server: ServerProcess) -> None:
    done = run_perf("-m", MODEL, "-u", server.url, *QUICK)
    assert done.returncode != 0
    assert "--shape INPUT0" in done.stderr, done.stderr


def test_perf_shm_over_http_is_refused(server: ServerProcess) -> None:
    done = run_perf("-m", MODEL, "-u", server.http_url, "-i", "http", "--shape", "INPUT0:4",
                    "--shared-memory", "system", *QUICK)
    assert done.returncode != 0
    assert "needs -i grpc" in done.stderr, done.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_perf_server_down_fails_clearly(protocol: str) -> None:
    done = run_perf("-m", MODEL, "-u", f"127.0.0.1:{free_port()}", "-i", protocol, *QUICK,
                    timeout=60)
    assert done.returncode != 0
    assert "cannot reach the server" in done.stderr, done.stderr


def test_perf_help_explains_flags() -> None:
    done = run_perf("--help")
    assert done.returncode == 0
    for flag in ("--concurrency-range", "--request-rate-range", "--request-distribution",
                 "--measurement-interval", "--stability-percentage", "--max-trials",
                 "--percentile", "--shared-memory", "--output-shared-memory-size", "--shape",
                 "--input-data", "--streaming", "--http-format", "--json", "--plot", "-f"):
        assert flag in done.stdout, flag


def test_perf_plot_draws_or_says_why(server: ServerProcess, tmp_path: Path) -> None:
    import importlib.util
    import os
    import sys
    png = tmp_path / "latency.png"
    env = dict(os.environ, BEAMLINE_PERF_PYTHON=sys.executable)
    done = subprocess.run([str(beamline_binary()), "perf", "-m", MODEL, "-u", server.url,
                           "--shape", "INPUT0:16", *QUICK, "--plot", str(png)],
                          capture_output=True, text=True, timeout=60, env=env)
    if importlib.util.find_spec("matplotlib") is not None:
        assert done.returncode == 0, done.stderr
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert done.returncode == 2, done.stderr
        assert "plotting unavailable: matplotlib" in done.stderr, done.stderr
        assert not png.exists()


def test_perf_cuda_shared_memory_works_or_says_why(server: ServerProcess) -> None:
    done = run_perf("-m", MODEL, "-u", server.url, "--shape", "INPUT0:16", *QUICK,
                    "--shared-memory", "cuda")
    if done.returncode != 0:  # builds without CUDA, or no GPU
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "--shared-memory cuda needs" in lines[0], done.stderr
