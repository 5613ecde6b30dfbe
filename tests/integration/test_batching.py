"""Dynamic batching seen from NVIDIA's tritonclient: concurrent requests merge into fewer
executions, each client gets exactly its own rows back, statistics say so, the verbose log names
the batch sizes, and a full queue or an expired timeout answers UNAVAILABLE."""

import queue
import re
import time

import numpy as np

from beamline_harness import expect_error, identity_config, make_input, write_model

BATCHED = identity_config(
    "batched", max_batch_size=16, execute_delay_ms=50,
    extra="dynamic_batching { max_queue_delay_microseconds: 200000 preferred_batch_size: [ 8 ] }\n")


def _send_concurrently(client, model, arrays, parameters=None):
    answers: queue.Queue = queue.Queue()
    for i, array in enumerate(arrays):
        client.async_infer(model, [make_input("INPUT0", array)], request_id=str(i),
                           parameters=parameters,
                           callback=lambda result, error, i=i: answers.put((i, result, error)))
    results = {}
    for _ in arrays:
        i, result, error = answers.get(timeout=30)
        results[i] = (result, error)
    return results


def test_concurrent_requests_are_batched_and_split_back(start_server, model_repository):
    write_model(model_repository, "batched", BATCHED)
    server = start_server(model_repository, "--log-verbose", "1", name="batching")
    arrays = [np.full((1, 5), i, dtype=np.float32) for i in range(8)]
    with server.client() as client:
        results = _send_concurrently(client, "batched", arrays)
        for i, (result, error) in results.items():
            assert error is None, error
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), arrays[i])
            assert result.get_response().id == str(i)
        stats = client.get_inference_statistics("batched").model_stats[0]
    assert stats.inference_count == 8
    assert stats.inference_stats.success.count == 8
    assert stats.execution_count < 8, "no requests were merged"
    assert max(b.batch_size for b in stats.batch_stats) > 1
    assert sum(b.batch_size * b.compute_infer.count for b in stats.batch_stats) == 8
    # --log-verbose names every execution's batch size.
    sizes = [int(m) for m in re.findall(r"executing \d+ request\(s\), batch size (\d+)",
                                        server.stderr_text())]
    assert sum(sizes) == 8 and max(sizes) > 1


def test_batch_of_several_rows_counts_its_rows(start_server, model_repository):
    write_model(model_repository, "batched", BATCHED)
    server = start_server(model_repository, name="rows")
    arrays = [np.arange(3 * 5, dtype=np.float32).reshape(3, 5) + 100 * i for i in range(4)]
    with server.client() as client:
        results = _send_concurrently(client, "batched", arrays)
        for i, (result, error) in results.items():
            assert error is None, error
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), arrays[i])
        stats = client.get_inference_statistics("batched").model_stats[0]
    assert stats.inference_count == 12
    assert all(b.batch_size <= 16 for b in stats.batch_stats)


def test_full_queue_rejects_with_unavailable(start_server, model_repository):
    write_model(model_repository, "tight", identity_config(
        "tight", max_batch_size=1, execute_delay_ms=300,
        extra="dynamic_batching { default_queue_policy { max_queue_size: 1 } }\n"))
    server = start_server(model_repository, name="queue-full")
    arrays = [np.ones((1, 2), dtype=np.float32)] * 4
    with server.client() as client:
        results = _send_concurrently(client, "tight", arrays)
        errors = [error for _, error in results.values() if error is not None]
        stats = client.get_inference_statistics("tight").model_stats[0]
    assert errors, "a queue of 1 took 4 requests"
    for error in errors:
        assert error.status() == "StatusCode.UNAVAILABLE"
        assert "full" in error.message()
    assert stats.inference_stats.fail.count == len(errors)


def test_queue_timeout_rejects_with_unavailable(start_server, model_repository):
    write_model(model_repository, "timeouts", identity_config(
        "timeouts", max_batch_size=1, execute_delay_ms=400,
        extra="dynamic_batching { default_queue_policy { allow_timeout_override: true } }\n"))
    server = start_server(model_repository, name="timeouts")
    with server.client() as client:
        answers: queue.Queue = queue.Queue()
        # The first occupies the only instance; the second may wait at most 50 ms for it.
        client.async_infer("timeouts", [make_input("INPUT0", np.ones((1, 1), np.float32))],
                           callback=lambda result, error: answers.put(("first", error)))
        time.sleep(0.15)  # the first is executing now
        client.async_infer("timeouts", [make_input("INPUT0", np.ones((1, 1), np.float32))],
                           timeout=50_000,  # the server-side queue timeout, in µs
                           callback=lambda result, error: answers.put(("second", error)))
        outcome = dict(answers.get(timeout=30) for _ in range(2))
    assert outcome["first"] is None
    assert outcome["second"] is not None
    assert outcome["second"].status() == "StatusCode.UNAVAILABLE"
    assert "timed out" in outcome["second"].message()


def test_priority_outside_the_levels_is_invalid(start_server, model_repository):
    write_model(model_repository, "prio", identity_config(
        "prio", extra="dynamic_batching { priority_levels: 2 default_priority_level: 2 }\n"))
    server = start_server(model_repository, name="priority")
    with server.client() as client:
        ok = client.infer("prio", [make_input("INPUT0", np.ones((1, 1), np.float32))],
                          priority=1)
        assert ok.as_numpy("OUTPUT0").shape == (1, 1)
        expect_error(lambda: client.infer("prio", [make_input("INPUT0", np.ones((1, 1), np.float32))],
                                          priority=3), "INVALID_ARGUMENT", "priority 3")
