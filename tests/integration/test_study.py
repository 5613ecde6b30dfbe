"""The ProtoDUNE study program (bench/protodune_study.cc, `beamline_protodune_study`) end to end,
with minimal settings: the same events through the CPU-only job (in-process LibTorch per worker)
and through a real server must classify every patch the same way, count the events, report
sane timings, and the server's own statistics must count the inferences. And the served /
in-process ratio subcommand over a repository derived by bench/study_repository.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from beamline_harness import REPO_ROOT, backend_directory, beamline_binary

EVENTS = 2
PATCHES = 48
STREAMS = 2


def study_binary() -> Path:
    return beamline_binary().resolve().parent / "beamline_protodune_study"


pytestmark = [pytest.mark.libtorch,
              pytest.mark.skipif(not study_binary().exists(), reason="the study is not built")]


def run_study(*args: str, timeout: float = 120) -> str:
    done = subprocess.run([str(study_binary()), *args], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def emtrack_statistics(server) -> tuple[int, int]:
    with server.client() as client:
        stats = client.get_inference_statistics("emtrack_cnn", as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def test_cpu_only_and_service_agree(default_server, example_repository, tmp_path):
    repository = example_repository.repository
    if not (repository / "emtrack_cnn").is_dir():
        pytest.skip("the example repository has no emtrack_cnn")
    common = ["--threads", "2", "--streams", str(STREAMS), "--events", str(EVENTS),
              "--patches", str(PATCHES)]
    cpu_out = run_study("study", "--mode", "cpu", "--model-repository", str(repository),
                        "--backend-directory", str(backend_directory()), *common,
                        "--cpu-fraction", "0.35", "--json", str(tmp_path / "cpu.json"))
    assert "result mode=cpu" in cpu_out
    cpu = json.loads((tmp_path / "cpu.json").read_text())

    before = emtrack_statistics(default_server)
    service_out = run_study("study", "--mode", "service", "--server", default_server.url, *common,
                            "--cpu-work-units", str(cpu["cpu_work_units"]),
                            "--json", str(tmp_path / "service.json"))
    after = emtrack_statistics(default_server)
    assert "result mode=service" in service_out
    service = json.loads((tmp_path / "service.json").read_text())

    for run in (cpu, service):
        assert run["events"] == EVENTS
        assert [r["id"] for r in run["records"]] == list(range(EVENTS))
        assert run["patches_classified"] == EVENTS * PATCHES
        assert run["events_per_s"] > 0 and run["seconds"] > 0
        for record in run["records"]:
            assert sum(record["classes"]) == PATCHES
            assert record["ml_ms"] > 0 and record["cpu_ms"] >= 0 and record["source_ms"] >= 0
            latency_ms = (record["end_s"] - record["start_s"]) * 1000
            assert latency_ms >= record["ml_ms"] >= 0
            assert record["start_s"] >= 0
    assert service["cpu_work_units"] == cpu["cpu_work_units"]

    # The same events give the same answer, patch by patch, in both modes.
    for ours, theirs in zip(cpu["records"], service["records"]):
        assert ours["classes"] == theirs["classes"], (ours, theirs)
        assert ours["hash"] == theirs["hash"], (ours, theirs)
        assert ours["michel_sum"] == pytest.approx(theirs["michel_sum"], rel=1e-4, abs=1e-4)

    # The server saw every patch: the warm-up events (one per stream) and the measured ones.
    inferences, executions = after[0] - before[0], after[1] - before[1]
    assert inferences == (STREAMS + EVENTS) * PATCHES
    assert 0 < executions <= inferences
    assert service["server_inferences"] == EVENTS * PATCHES


def test_ratio_served_over_in_process(start_server, example_repository, tmp_path):
    source = example_repository.repository
    if not (source / "emtrack_cnn").is_dir():
        pytest.skip("the example repository has no emtrack_cnn")
    server_repo, cpu_repo = tmp_path / "server_repo", tmp_path / "cpu_repo"
    subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "study_repository.py"),
                    "--source", str(source), "--server-out", str(server_repo), "--cpu-out",
                    str(cpu_repo), "--instances", "1", "--cnn-batches", "4", "--jet-batches", ""],
                   check=True, timeout=60)
    # Derived configs keep the example's inputs and outputs, with the study's batching.
    config = (server_repo / "emtrack_cnn_b4" / "config.pbtxt").read_text()
    assert "max_batch_size: 4" in config and "dynamic_batching" in config
    assert (server_repo / "emtrack_cnn_b4" / "1" / "model.pt").resolve() == \
        (source / "emtrack_cnn" / "1" / "model.pt").resolve()
    server = start_server(server_repo, name="study-ratio")
    out = run_study("ratio", "--server", server.url, "--model-repository", str(server_repo),
                    "--backend-directory", str(backend_directory()), "--model-prefix",
                    "emtrack_cnn", "-b", "4", "--duration-s", "0.3", "--in-flight", "2",
                    "--json", str(tmp_path / "ratio.json"))
    rows = json.loads((tmp_path / "ratio.json").read_text())
    assert len(rows) == 1 and rows[0]["batch"] == 4, out
    row = rows[0]
    assert row["in_process"] > 0 and row["served"] > 0
    assert row["ratio"] == pytest.approx(row["served"] / row["in_process"], rel=1e-3)
    # Requests of one patch, merged by the batcher into batches of at most 4.
    assert row["items_per_request"] == 1
    assert 1.0 <= row["average_batch"] <= 4.0
    with server.client() as client:
        stats = client.get_inference_statistics("emtrack_cnn_b4", as_json=True)["model_stats"][0]
    assert int(stats["inference_count"]) >= 3 * 4
    assert os.path.exists(tmp_path / "ratio.json")
