"""Inference over HTTP/REST: NVIDIA's tritonclient.http for JSON and binary tensor data (every
datatype, BYTES, requested-output subsets, compression), and header-level requests with
http.client for what the client library hides (the binary layout, raw single-input bodies, gzip,
chunked bodies, keep-alive)."""

from __future__ import annotations

import gzip
import http.client
import json
import zlib

import ml_dtypes  # comes with tritonclient; BF16 tensors are ml_dtypes.bfloat16 arrays
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from beamline_harness import ALL_DATATYPES, assert_still_serving_http, http_request

NUMPY = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
         "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
         "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
         "BYTES": np.object_, "BF16": ml_dtypes.bfloat16}


def sample(datatype: str, batch: int = 2, length: int = 3, text_only: bool = False) -> np.ndarray:
    """Values that exercise each type's range (extremes, signs, non-ASCII bytes; only UTF-8 text
    with `text_only`, since JSON strings cannot carry arbitrary bytes)."""
    if datatype == "BOOL":
        flat = np.array([True, False, True, True, False, False])
    elif datatype == "BYTES":
        raw = b"\x00\xff" if not text_only else b"\x01\x7f"
        flat = np.array([b"", b"abc", "\u00e9\u4e2d".encode(), raw, b'"q"\\', b"x" * 300],
                        dtype=np.object_)
    elif datatype in ("FP16", "FP32", "FP64", "BF16"):
        # Exactly representable in every float type, BF16 included.
        flat = np.array([0.0, -1.5, 2.25, 1024.0, -0.125, 3.0], dtype=NUMPY[datatype])
    else:
        info = np.iinfo(NUMPY[datatype])
        flat = np.array([info.min, info.max, 0, 1, info.max // 3, info.min // 5 if info.min else 7],
                        dtype=NUMPY[datatype])
    return flat[: batch * length].reshape(batch, length)


def all_type_inputs(binary: bool, skip=()) -> tuple[list, dict[str, np.ndarray]]:
    """One input per datatype of native_all_types; FP16 and BF16 are always binary (JSON cannot
    carry them)."""
    inputs, expected = [], {}
    for index, datatype in enumerate(ALL_DATATYPES):
        if datatype in skip:
            continue
        data = sample(datatype, text_only=not binary)
        tensor = httpclient.InferInput(f"INPUT{index}", list(data.shape), datatype)
        tensor.set_data_from_numpy(data, binary_data=binary or datatype in ("FP16", "BF16"))
        inputs.append(tensor)
        expected[f"OUTPUT{index}"] = data
    return inputs, expected


def assert_outputs(result, expected: dict[str, np.ndarray]) -> None:
    for name, data in expected.items():
        got = result.as_numpy(name)
        assert got is not None, f"{name} missing from {result.get_response()}"
        if data.dtype == ml_dtypes.bfloat16:
            got, data = got.astype(np.float32), data.astype(np.float32)
        if data.dtype == np.object_:
            got = np.array([g if isinstance(g, bytes) else g.encode() for g in got.flatten()],
                           dtype=np.object_).reshape(got.shape)
        np.testing.assert_array_equal(got, data, err_msg=name)


@pytest.fixture
def client(default_server):
    with default_server.http_client() as connection:
        yield connection


# --- tritonclient.http ----------------------------------------------------------------------------

def test_every_datatype_round_trips_as_binary(client):
    inputs, expected = all_type_inputs(binary=True)
    result = client.infer("native_all_types", inputs)  # no outputs named: all binary
    assert_outputs(result, expected)
    for output in result.get_response()["outputs"]:
        assert "binary_data_size" in output["parameters"], output


def test_every_datatype_round_trips_as_json(client):
    # FP16 and BF16 have no JSON form (Triton rejects them as JSON data): binary both ways.
    inputs, expected = all_type_inputs(binary=False)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=name in ("OUTPUT9", "OUTPUT13"))
               for name in expected]
    result = client.infer("native_all_types", inputs, outputs=outputs)
    response = result.get_response()
    for output in response["outputs"]:
        if output["name"] not in ("OUTPUT9", "OUTPUT13"):
            assert "data" in output and "parameters" not in output, output
    assert_outputs(result, expected)
    by_name = {o["name"]: o for o in response["outputs"]}
    assert by_name["OUTPUT0"]["data"] == [True, False, True, True, False, False]
    assert by_name["OUTPUT4"]["data"][1] == 2**64 - 1          # UINT64 max, exact
    assert by_name["OUTPUT8"]["data"][0] == -(2**63)           # INT64 min, exact
    assert by_name["OUTPUT12"]["shape"] == [2, 3]


def test_half_precision_json_input_is_refused(client):
    tensor = httpclient.InferInput("INPUT9", [1, 2], "FP16")
    tensor.set_data_from_numpy(np.ones((1, 2), dtype=np.float16), binary_data=False)
    with pytest.raises(InferenceServerException) as error:
        client.infer("native_all_types", [tensor])
    assert "FP16" in error.value.message() and "binary" in error.value.message()
    assert error.value.status() == "400"


def test_half_precision_output_as_json_is_refused_and_binary_works(client):
    data = sample("FP16")
    tensor = httpclient.InferInput("INPUT9", list(data.shape), "FP16")
    tensor.set_data_from_numpy(data)
    # Every input of the model is required: send all of them and ask for OUTPUT9 only.
    inputs, _ = all_type_inputs(binary=True, skip=("FP16",))
    inputs.insert(9, tensor)
    with pytest.raises(InferenceServerException) as error:
        client.infer("native_all_types", inputs,
                     outputs=[httpclient.InferRequestedOutput("OUTPUT9", binary_data=False)])
    assert "FP16" in error.value.message()
    result = client.infer("native_all_types", inputs,
                          outputs=[httpclient.InferRequestedOutput("OUTPUT9")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT9"), data)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["OUTPUT9"]


def test_bytes_tensor_both_ways(client):
    data = np.array([b"alpha", b"", "\u00fcber".encode(), b"\x01\x02"], dtype=np.object_)
    for binary in (True, False):
        tensor = httpclient.InferInput("INPUT0", [4], "BYTES")
        tensor.set_data_from_numpy(data, binary_data=binary)
        result = client.infer("native_bytes", [tensor], outputs=[
            httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)])
        got = [g if isinstance(g, bytes) else g.encode() for g in result.as_numpy("OUTPUT0")]
        assert got == list(data), binary


def test_requested_output_subset_and_mixed_formats(client):
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = -a
    inputs = []
    for name, data in (("INPUT0", a), ("INPUT1", b)):
        tensor = httpclient.InferInput(name, [2, 4], "FP32")
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    only_second = client.infer("native_pair", inputs,
                               outputs=[httpclient.InferRequestedOutput("OUTPUT1")])
    assert [o["name"] for o in only_second.get_response()["outputs"]] == ["OUTPUT1"]
    assert only_second.as_numpy("OUTPUT0") is None
    np.testing.assert_array_equal(only_second.as_numpy("OUTPUT1"), b)
    mixed = client.infer("native_pair", inputs, outputs=[
        httpclient.InferRequestedOutput("OUTPUT0", binary_data=False),
        httpclient.InferRequestedOutput("OUTPUT1", binary_data=True)])
    outputs = {o["name"]: o for o in mixed.get_response()["outputs"]}
    assert "data" in outputs["OUTPUT0"] and "binary_data_size" in outputs["OUTPUT1"]["parameters"]
    np.testing.assert_array_equal(mixed.as_numpy("OUTPUT0"), a)
    np.testing.assert_array_equal(mixed.as_numpy("OUTPUT1"), b)


def test_id_version_and_custom_parameters(client):
    tensor = httpclient.InferInput("INPUT0", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 3), dtype=np.float32))
    result = client.infer("native_identity", [tensor], model_version="1", request_id="req-42",
                          parameters={"my_flag": True, "my_count": 3, "my_name": "x"})
    response = result.get_response()
    assert response["id"] == "req-42"
    assert response["model_name"] == "native_identity"
    assert response["model_version"] == "1"


@pytest.mark.parametrize("request_coding, response_coding",
                         [("gzip", None), ("deflate", "gzip"), (None, "deflate"), ("gzip", "gzip")])
def test_compression_with_the_client(client, request_coding, response_coding):
    data = np.linspace(0, 1, 4096, dtype=np.float32).reshape(1, -1)
    tensor = httpclient.InferInput("INPUT0", [1, 4096], "FP32")
    tensor.set_data_from_numpy(data)
    result = client.infer("native_identity", [tensor], request_compression_algorithm=request_coding,
                          response_compression_algorithm=response_coding)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def test_async_requests_overlap(client, default_server):
    with default_server.http_client(concurrency=4) as concurrent:
        data = np.ones((1, 16), dtype=np.float32)
        tensor = httpclient.InferInput("INPUT0", [1, 16], "FP32")
        tensor.set_data_from_numpy(data)
        pending = [concurrent.async_infer("native_delayed", [tensor]) for _ in range(8)]
        for request in pending:
            np.testing.assert_array_equal(request.get_result().as_numpy("OUTPUT0"), data)


# --- header level ---------------------------------------------------------------------------------

def _binary_body(header: dict, *blobs: bytes) -> tuple[bytes, dict[str, str]]:
    text = json.dumps(header).encode()
    return text + b"".join(blobs), {"Inference-Header-Content-Length": str(len(text)),
                                    "Content-Type": "application/octet-stream"}


def _split_binary_response(reply) -> tuple[dict, bytes]:
    length = int(reply.headers["inference-header-content-length"])
    return json.loads(reply.body[:length]), reply.body[length:]


def test_binary_layout_on_the_wire(default_server):
    a = np.arange(4, dtype=np.float32).reshape(1, 4)
    b = np.arange(4, 8, dtype=np.float32).reshape(1, 4)
    body, headers = _binary_body(
        {"id": "wire", "inputs": [
            {"name": "INPUT0", "shape": [1, 4], "datatype": "FP32",
             "parameters": {"binary_data_size": 16}},
            {"name": "INPUT1", "shape": [1, 4], "datatype": "FP32", "data": b.tolist()}],
         "outputs": [{"name": "OUTPUT1", "parameters": {"binary_data": True}},
                     {"name": "OUTPUT0", "parameters": {"binary_data": True}}]},
        a.tobytes())
    reply = http_request(default_server, "POST", "/v2/models/native_pair/infer", body, headers)
    assert reply.status == 200, reply
    assert reply.headers["content-type"] == "application/octet-stream"
    header, binary = _split_binary_response(reply)
    assert header["id"] == "wire"
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    assert sizes == [16, 16] and len(binary) == 32
    # Blobs follow the order of the outputs in the JSON.
    order = [o["name"] for o in header["outputs"]]
    blobs = dict(zip(order, (binary[:16], binary[16:])))
    assert blobs["OUTPUT0"] == a.tobytes() and blobs["OUTPUT1"] == b.tobytes()


def test_pure_json_response_without_binary_header(default_server):
    reply = http_request(default_server, "POST", "/v2/models/native_identity/infer",
                         json.dumps({"inputs": [{"name": "INPUT0", "shape": [2, 2],
                                                 "datatype": "FP32", "data": [[1, 2], [3, 4.5]]}]}))
    assert reply.status == 200, reply
    assert reply.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in reply.headers
    output = reply.json()["outputs"][0]
    assert output == {"name": "OUTPUT0", "datatype": "FP32", "shape": [2, 2],
                      "data": [1, 2, 3, 4.5]}


def test_raw_binary_request_with_header_zero(default_server):
    data = np.arange(6, dtype=np.float32)
    reply = http_request(default_server, "POST", "/v2/models/native_identity/infer", data.tobytes(),
                         {"Inference-Header-Content-Length": "0"})
    assert reply.status == 200, reply
    header, binary = _split_binary_response(reply)
    assert header["outputs"][0]["shape"] == [1, 6]  # batch 1, the variable dimension deduced
    assert binary == data.tobytes()


def test_raw_binary_request_needs_a_single_input_model(default_server):
    reply = http_request(default_server, "POST", "/v2/models/native_pair/infer", b"\0" * 16,
                         {"Inference-Header-Content-Length": "0"})
    assert reply.status == 400
    assert "Raw request must only have 1 input" in reply.json()["error"]


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_compressed_request_and_response_bodies(default_server, coding):
    data = np.arange(1024, dtype=np.float32).reshape(1, -1)
    body, headers = _binary_body({"inputs": [{"name": "INPUT0", "shape": [1, 1024],
                                              "datatype": "FP32",
                                              "parameters": {"binary_data_size": 4096}}],
                                  "parameters": {"binary_data_output": True}}, data.tobytes())
    compressed = gzip.compress(body) if coding == "gzip" else zlib.compress(body)
    headers.update({"Content-Encoding": coding, "Accept-Encoding": coding})
    reply = http_request(default_server, "POST", "/v2/models/native_identity/infer", compressed,
                         headers)
    assert reply.status == 200, reply
    assert reply.headers["content-encoding"] == coding
    plain = gzip.decompress(reply.body) if coding == "gzip" else zlib.decompress(reply.body)
    length = int(reply.headers["inference-header-content-length"])
    assert json.loads(plain[:length])["outputs"][0]["parameters"]["binary_data_size"] == 4096
    assert plain[length:] == data.tobytes()


def test_keep_alive_and_chunked_bodies(default_server):
    connection = http.client.HTTPConnection("127.0.0.1", default_server.http_port, timeout=30)
    try:
        body = json.dumps({"inputs": [{"name": "INPUT0", "shape": [1, 1], "datatype": "FP32",
                                       "data": [7]}]}).encode()
        sockets = set()
        for _ in range(20):
            reply = http_request(default_server, "POST", "/v2/models/native_identity/infer", body,
                                 connection=connection)
            assert reply.status == 200 and reply.headers["connection"] == "keep-alive"
            sockets.add(id(connection.sock))
        assert len(sockets) == 1  # one TCP connection for all of them
        connection.request("POST", "/v2/models/native_identity/infer",
                           body=iter([body[:10], body[10:]]), encode_chunked=True)
        chunked = connection.getresponse()
        assert chunked.status == 200
        assert json.loads(chunked.read())["outputs"][0]["data"] == [7]
    finally:
        connection.close()


def test_expect_continue(default_server):
    body = json.dumps({"inputs": [{"name": "INPUT0", "shape": [1, 1], "datatype": "FP32",
                                   "data": [3]}]}).encode()
    import socket
    with socket.create_connection(("127.0.0.1", default_server.http_port), timeout=30) as s:
        s.sendall(b"POST /v2/models/native_identity/infer HTTP/1.1\r\nHost: x\r\n"
                  b"Expect: 100-continue\r\nContent-Length: " + str(len(body)).encode() +
                  b"\r\n\r\n")
        assert s.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(body)
        answer = b""
        while b"}]}" not in answer:
            answer += s.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 OK")
    assert_still_serving_http(default_server)


def test_large_binary_tensor(default_server, client):
    data = np.random.default_rng(1).random((1, 1 << 18), dtype=np.float32)  # 1 MiB
    tensor = httpclient.InferInput("INPUT0", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    np.testing.assert_array_equal(client.infer("native_identity", [tensor]).as_numpy("OUTPUT0"),
                                  data)
