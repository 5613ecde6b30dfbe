"""The HTTP catalogue of bad requests. Each gets Triton's status code and a JSON body
{"error": "..."} that says what is wrong, and the server goes on serving both protocols (and the
same keep-alive connection, where the request could be read to its end)."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import time

import numpy as np
import pytest

from beamline_harness import assert_still_serving_http, expect_http_error, http_request

INFER = "/v2/models/native_pair/infer"


@pytest.fixture
def serving(default_server):
    yield default_server
    assert_still_serving_http(default_server)


def pair_header(first_size: int = 16, second_size: int = 16) -> bytes:
    return json.dumps({"inputs": [
        {"name": "INPUT0", "shape": [1, 4], "datatype": "FP32",
         "parameters": {"binary_data_size": first_size}},
        {"name": "INPUT1", "shape": [1, 4], "datatype": "FP32",
         "parameters": {"binary_data_size": second_size}}]}).encode()


def post_binary(server, header: bytes, binary: bytes, header_length: int | None = None,
                path: str = INFER):
    length = len(header) if header_length is None else header_length
    return http_request(server, "POST", path, header + binary,
                        {"Inference-Header-Content-Length": str(length)})


FOUR = np.arange(4, dtype=np.float32).tobytes()


# --- bodies ---------------------------------------------------------------------------------------

def test_malformed_json(serving):
    expect_http_error(http_request(serving, "POST", INFER, '{"inputs": [ {"name": '), 400,
                      "failed to parse the request JSON")
    expect_http_error(http_request(serving, "POST", INFER, "[1, 2]"), 400, "object")
    expect_http_error(http_request(serving, "POST", INFER, '{"id": 5, "inputs": []}'), 400, "'id'")
    expect_http_error(http_request(serving, "POST", INFER, '{"outputs": []}'), 400, "'inputs'")


def test_wrong_binary_data_size(serving):
    # Claims more than the body holds.
    expect_http_error(post_binary(serving, pair_header(16, 32), FOUR + FOUR), 400,
                      "unexpected size for input 'INPUT1'", "16 additional bytes")
    # Bytes nobody claims.
    expect_http_error(post_binary(serving, pair_header(16, 16), FOUR + FOUR + b"\0" * 8), 400,
                      "unexpected additional input data")
    # Sizes that add up but do not match the shape: the core names the input.
    expect_http_error(post_binary(serving, pair_header(12, 20), FOUR + FOUR), 400, "INPUT0")
    expect_http_error(
        http_request(serving, "POST", INFER,
                     pair_header(-1, 16), {"Inference-Header-Content-Length": "0"}), 400)


def test_header_length_outside_the_body(serving):
    body = pair_header() + FOUR + FOUR
    expect_http_error(post_binary(serving, pair_header(), FOUR + FOUR, header_length=len(body) + 1),
                      400, "inference header size should be in range")
    expect_http_error(http_request(serving, "POST", INFER, body,
                                   {"Inference-Header-Content-Length": "twelve"}), 400,
                      "inference header size")
    expect_http_error(http_request(serving, "POST", INFER, body,
                                   {"Inference-Header-Content-Length": "-4"}), 400)


def test_truncated_body_inside_the_json(serving):
    # The header length cuts the JSON short.
    expect_http_error(post_binary(serving, pair_header(), FOUR + FOUR, header_length=20), 400,
                      "failed to parse")


def test_truncated_body_on_the_wire(serving):
    """Content-Length promises more than arrives, then the client stops sending: the connection
    closes without an answer and nothing else is affected."""
    with socket.create_connection(("127.0.0.1", serving.http_port), timeout=30) as s:
        s.sendall(b"POST " + INFER.encode() + b" HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{\"inp")
        s.shutdown(socket.SHUT_WR)
        assert s.recv(1024) == b""


def test_json_data_errors_name_the_input(serving):
    cases = [
        ({"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3]}, "3 elements"),
        ({"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": ["a", 2, 3, 4]},
         "numbers"),
        ({"name": "INPUT0", "shape": [1, 4], "datatype": "FP32"}, "neither"),
        ({"name": "INPUT0", "shape": [1, -4], "datatype": "FP32", "data": [1]}, "non-negative"),
        ({"name": "INPUT0", "shape": [1, 4], "datatype": "FP99", "data": [1, 2, 3, 4]},
         "unknown datatype"),
    ]
    for tensor, fragment in cases:
        body = json.dumps({"inputs": [tensor]})
        expect_http_error(http_request(serving, "POST", INFER, body), 400, "INPUT0", fragment)


def test_core_validation_errors_over_http(serving):
    good = {"name": "INPUT1", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
    wrong_shape = {"name": "INPUT0", "shape": [1, 5], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}
    expect_http_error(http_request(serving, "POST", INFER,
                                   json.dumps({"inputs": [wrong_shape, good]})), 400, "INPUT0")
    expect_http_error(http_request(serving, "POST", INFER, json.dumps({"inputs": [good]})), 400,
                      "INPUT0")
    expect_http_error(http_request(serving, "POST", "/v2/models/nope/infer",
                                   json.dumps({"inputs": [good]})), 404,
                      "Request for unknown model")
    expect_http_error(http_request(serving, "POST", "/v2/models/native_pair/versions/9/infer",
                                   json.dumps({"inputs": [good]})), 404, "9")
    both = [dict(good, name="INPUT0"), good]
    expect_http_error(http_request(serving, "POST", INFER,
                                   json.dumps({"inputs": both, "outputs": [{"name": "NOPE"}]})),
                      400, "NOPE")


def test_reserved_and_unsupported_parameters(serving):
    good = [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
            {"name": "INPUT1", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]
    expect_http_error(http_request(serving, "POST", INFER,
                                   json.dumps({"inputs": good, "parameters": {"triton_x": 1}})),
                      400, "triton_")
    expect_http_error(http_request(serving, "POST", INFER,
                                   json.dumps({"inputs": good, "parameters": {"sequence_id": 3}})),
                      501, "sequence")
    expect_http_error(http_request(serving, "POST", INFER, json.dumps(
        {"inputs": good, "outputs": [{"name": "OUTPUT0", "parameters": {"classification": 2}}]})),
        501, "classification")


def test_oversize_body(start_server, native_repository):
    server = start_server(native_repository, "--http-max-input-size", "65536", name="small-http")
    big = b"x" * 100_000
    expect_http_error(http_request(server, "POST", INFER, big), 400, "larger than the limit",
                      "--http-max-input-size")
    # A small gzip body that decodes to more than the limit ("zip bomb").
    bomb = gzip.compress(b"\0" * 1_000_000)
    expect_http_error(http_request(server, "POST", INFER, bomb, {"Content-Encoding": "gzip"}), 400,
                      "larger than the limit", "--http-max-input-size")
    assert_still_serving_http(server)


def test_bad_content_encoding(serving):
    reply = http_request(serving, "POST", INFER, b"\x1f\x8b garbage", {"Content-Encoding": "gzip"})
    expect_http_error(reply, 400, "gzip")
    reply = http_request(serving, "POST", INFER, b"{}", {"Content-Encoding": "br"})
    expect_http_error(reply, 501, "Unsupported compression type")
    assert reply.headers["accept-encoding"] == "gzip, deflate"


def test_routing_errors(serving):
    expect_http_error(http_request(serving, "GET", "/v2/nothing/here"), 404, "Not Found")
    expect_http_error(http_request(serving, "GET", "/metrics"), 404, "Not Found")
    expect_http_error(http_request(serving, "GET", "/v2/models/native_pair/versions/x/ready"), 404)
    expect_http_error(http_request(serving, "GET", INFER), 405, "Method Not Allowed")
    expect_http_error(http_request(serving, "DELETE", "/v2/health/live"), 405)
    expect_http_error(http_request(serving, "POST", "/v2/models/native_pair/config"), 405)


def test_malformed_http(serving):
    with socket.create_connection(("127.0.0.1", serving.http_port), timeout=30) as s:
        s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400"), answer


def test_errors_keep_the_connection_usable(serving):
    connection = http.client.HTTPConnection("127.0.0.1", serving.http_port, timeout=30)
    try:
        for _ in range(3):
            assert http_request(serving, "POST", INFER, "{bad", connection=connection).status == 400
            assert http_request(serving, "GET", "/v2/nope", connection=connection).status == 404
            assert http_request(serving, "GET", "/v2/health/ready",
                                connection=connection).status == 200
    finally:
        connection.close()


def test_slow_and_idle_clients_do_not_block_others(serving):
    """Idle keep-alive connections and a client that sends half a request hold no thread."""
    idle = [socket.create_connection(("127.0.0.1", serving.http_port), timeout=30)
            for _ in range(16)]
    slow = socket.create_connection(("127.0.0.1", serving.http_port), timeout=30)
    slow.sendall(b"POST " + INFER.encode() + b" HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
    try:
        start = time.monotonic()
        for _ in range(5):
            assert http_request(serving, "GET", "/v2/health/ready").status == 200
        assert time.monotonic() - start < 10
    finally:
        slow.close()
        for s in idle:
            s.close()
