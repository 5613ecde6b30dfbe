"""ModelStreamInfer: many requests on one bidirectional stream; a bad request's error comes back in
`error_message` and the stream stays open for the requests after it."""

from __future__ import annotations

import queue

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from beamline_harness import assert_still_serving, make_input

RESPONSE_TIMEOUT_S = 30


class StreamCollector:
    """The callback of tritonclient's start_stream; keeps (result, error) pairs in arrival order."""

    def __init__(self):
        self.answers: queue.Queue = queue.Queue()

    def __call__(self, result, error):
        self.answers.put((result, error))

    def take(self, count):
        return [self.answers.get(timeout=RESPONSE_TIMEOUT_S) for _ in range(count)]


@pytest.fixture
def stream(default_server):
    """A client with an open stream; the stream is closed (and must close cleanly) afterwards."""
    collector = StreamCollector()
    with default_server.client() as client:
        client.start_stream(callback=collector)
        yield client, collector
        client.stop_stream()


def _ok(result, error):
    assert error is None, f"unexpected error on the stream: {error}"
    return result


def test_several_requests_on_one_stream(stream):
    client, collector = stream
    sent = {f"stream-{i}": np.full((1, 2 + i), float(i), dtype=np.float32) for i in range(6)}
    for request_id, data in sent.items():
        client.async_stream_infer("native_identity", [make_input("INPUT0", data)],
                                  request_id=request_id)
    received = {}
    for result, error in collector.take(len(sent)):
        result = _ok(result, error)
        received[result.get_response().id] = result.as_numpy("OUTPUT0")
    assert sorted(received) == sorted(sent)
    for request_id, data in sent.items():
        np.testing.assert_array_equal(received[request_id], data)


def test_bad_request_in_the_middle_keeps_the_stream_open(stream, default_server):
    client, collector = stream
    good = np.array([[1, 2, 3, 4]], dtype=np.float32)
    for index in range(5):
        if index == 2:  # INT32 where the model wants FP32
            bad = np.array([[1, 2, 3, 4]], dtype=np.int32)
            inputs = [make_input("INPUT0", bad), make_input("INPUT1", good)]
        else:
            inputs = [make_input("INPUT0", good * index), make_input("INPUT1", good)]
        client.async_stream_infer("native_pair", inputs, request_id=f"mixed-{index}")

    answers = collector.take(5)
    errors = [error for _, error in answers if error is not None]
    results = [result for result, error in answers if error is None]
    assert len(errors) == 1, f"expected exactly one error, got {[str(e) for e in errors]}"
    # A per-request error arrives in error_message (no gRPC status); a status would mean the
    # server ended the stream.
    assert errors[0].status() is None, f"stream was terminated: {errors[0]}"
    assert "INPUT0" in errors[0].message()
    by_id = {result.get_response().id: result for result in results}
    assert sorted(by_id) == ["mixed-0", "mixed-1", "mixed-3", "mixed-4"]
    for index in (0, 1, 3, 4):
        np.testing.assert_array_equal(by_id[f"mixed-{index}"].as_numpy("OUTPUT0"), good * index)

    # The same stream still works afterwards.
    client.async_stream_infer("native_identity", [make_input("INPUT0", good)], request_id="after")
    (result, error), = collector.take(1)
    assert _ok(result, error).get_response().id == "after"
    assert_still_serving(default_server)


def test_unknown_model_on_stream_is_reported_and_stream_continues(stream):
    client, collector = stream
    data = np.ones((1, 3), dtype=np.float32)
    client.async_stream_infer("no_such_model", [make_input("INPUT0", data)], request_id="missing")
    client.async_stream_infer("native_identity", [make_input("INPUT0", data)], request_id="present")
    answers = collector.take(2)
    errors = [error for _, error in answers if error is not None]
    assert len(errors) == 1 and errors[0].status() is None
    assert "no_such_model" in errors[0].message()
    results = [result for result, error in answers if error is None]
    assert [result.get_response().id for result in results] == ["present"]


def test_stream_alternates_between_models(stream):
    client, collector = stream
    sent = {}
    for index in range(6):
        data = np.full((1, 4), float(index), dtype=np.float32)
        if index % 2:
            inputs = [make_input("INPUT0", data), make_input("INPUT1", -data)]
            model = "native_pair"
        else:
            inputs = [make_input("INPUT0", data)]
            model = "native_identity"
        sent[f"alt-{index}"] = (model, data)
        client.async_stream_infer(model, inputs, request_id=f"alt-{index}")
    for result, error in collector.take(len(sent)):
        response = _ok(result, error).get_response()
        model, data = sent[response.id]
        assert response.model_name == model
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def test_stream_requested_output_subset(stream):
    client, collector = stream
    first = np.array([[1, 2, 3, 4]], dtype=np.float32)
    client.async_stream_infer("native_pair", [make_input("INPUT0", first),
                                              make_input("INPUT1", first * 10)],
                              outputs=[grpcclient.InferRequestedOutput("OUTPUT1")])
    (result, error), = collector.take(1)
    response = _ok(result, error).get_response()
    assert [output.name for output in response.outputs] == ["OUTPUT1"]
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), first * 10)


@pytest.mark.libtorch
def test_stream_on_torch_model(stream):
    client, collector = stream
    for index in range(4):
        data = np.full((2, 3), float(index), dtype=np.float32)
        client.async_stream_infer("identity_fp32", [make_input("INPUT__0", data)],
                                  request_id=str(index))
    for result, error in collector.take(4):
        result = _ok(result, error)
        index = int(result.get_response().id)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT__0"),
                                      np.full((2, 3), float(index), dtype=np.float32))


def test_client_works_after_stream_closed(default_server):
    collector = StreamCollector()
    with default_server.client() as client:
        client.start_stream(callback=collector)
        client.async_stream_infer("native_identity",
                                  [make_input("INPUT0", np.ones((1, 1), dtype=np.float32))])
        _ok(*collector.take(1)[0])
        client.stop_stream()
        result = client.infer("native_identity",
                              [make_input("INPUT0", np.ones((1, 2), dtype=np.float32))])
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.ones((1, 2), np.float32))
