"""ModelStatistics with Triton's semantics: a request counts once, a batch of n counts n
inferences, and every phase of a successful request is counted with a non-zero duration."""

from __future__ import annotations

import time

import numpy as np
import pytest

from beamline_harness import (ServerProcess, expect_error, identity_config, make_input,
                              write_model)

REQUESTS = 5
BATCH = 2


def _start_counted_server(directory) -> ServerProcess:
    repository = directory / "repository"
    write_model(repository, "counted", identity_config("counted"))
    write_model(repository, "idle", identity_config("idle"))
    server = ServerProcess(["--model-repository", str(repository)], directory / "logs",
                           "statistics-server")
    with server.client() as client:
        for request in range(REQUESTS):
            data = np.full((BATCH, 3), float(request), dtype=np.float32)
            client.infer("counted", [make_input("INPUT0", data)])
    return server


@pytest.fixture(scope="module")
def counted_server(tmp_path_factory):
    """A fresh server whose `counted` model has served exactly REQUESTS requests of BATCH rows;
    the tests using it only read statistics."""
    server = _start_counted_server(tmp_path_factory.mktemp("statistics"))
    yield server
    server.stop()


def _statistics(server, model="", version=""):
    with server.client() as client:
        return client.get_inference_statistics(model_name=model, model_version=version)


def _only_entry(server, model):
    stats = _statistics(server, model).model_stats
    assert len(stats) == 1, f"expected one entry for {model}, got {stats}"
    return stats[0]


def test_success_and_counts_follow_triton(counted_server):
    entry = _only_entry(counted_server, "counted")
    assert entry.name == "counted"
    assert entry.version == "1"
    assert entry.inference_count == REQUESTS * BATCH
    assert entry.execution_count == REQUESTS
    assert entry.inference_stats.success.count == REQUESTS
    assert entry.inference_stats.success.ns > 0
    assert entry.inference_stats.fail.count == 0


@pytest.mark.parametrize("phase", ["queue", "compute_infer"])
def test_phase_counted_once_per_request(counted_server, phase):
    duration = getattr(_only_entry(counted_server, "counted").inference_stats, phase)
    assert duration.count == REQUESTS
    assert duration.ns > 0


@pytest.mark.parametrize("phase", ["compute_input", "compute_output"])
def test_input_and_output_phases_counted_like_triton(counted_server, phase):
    duration = getattr(_only_entry(counted_server, "counted").inference_stats, phase)
    assert duration.count == REQUESTS


def test_success_time_covers_the_phases(counted_server):
    stats = _only_entry(counted_server, "counted").inference_stats
    assert stats.success.ns >= stats.queue.ns + stats.compute_infer.ns


def test_batch_statistics_by_batch_size(counted_server):
    entry = _only_entry(counted_server, "counted")
    batches = {batch.batch_size: batch for batch in entry.batch_stats}
    assert BATCH in batches, f"no batch_stats entry for batch size {BATCH}: {list(batches)}"
    assert batches[BATCH].compute_infer.count == REQUESTS


def test_last_inference_is_a_recent_wall_clock_time(counted_server):
    last = _only_entry(counted_server, "counted").last_inference
    now_ms = time.time() * 1000
    assert now_ms - 120_000 < last <= now_ms + 1000


def test_unused_model_has_zero_counts(counted_server):
    entry = _only_entry(counted_server, "idle")
    assert entry.inference_count == 0
    assert entry.execution_count == 0
    assert entry.inference_stats.success.count == 0
    assert entry.last_inference == 0


def test_all_models_listed_without_a_name(counted_server):
    names = {entry.name for entry in _statistics(counted_server).model_stats}
    assert {"counted", "idle"} <= names


def test_statistics_for_explicit_version(counted_server):
    stats = _statistics(counted_server, "counted", "1").model_stats
    assert [entry.version for entry in stats] == ["1"]
    assert stats[0].inference_stats.success.count == REQUESTS


def test_statistics_for_unknown_model_is_not_found(counted_server):
    with counted_server.client() as client:
        expect_error(lambda: client.get_inference_statistics(model_name="no_such_model"),
                     "NOT_FOUND", "no_such_model")


def test_failed_request_is_not_a_success(tmp_path):
    server = _start_counted_server(tmp_path)
    try:
        with server.client() as client:
            bad = make_input("INPUT0", np.ones((1, 3), dtype=np.int32))
            expect_error(lambda: client.infer("counted", [bad]), "INVALID_ARGUMENT")
        entry = _only_entry(server, "counted")
    finally:
        server.stop()
    assert entry.inference_stats.success.count == REQUESTS
    assert entry.inference_count == REQUESTS * BATCH


@pytest.mark.libtorch
def test_torch_model_counts_grow_by_requests(client):
    def snapshot():
        stats = client.get_inference_statistics(model_name="identity_fp32").model_stats[0]
        return stats.inference_stats.success.count, stats.inference_count, stats.execution_count

    before = snapshot()
    for _ in range(3):
        client.infer("identity_fp32", [make_input("INPUT__0", np.ones((4, 5), dtype=np.float32))])
    after = snapshot()
    assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (3, 12, 3)
