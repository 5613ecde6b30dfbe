"""The catalogue of bad requests and broken models. Each bad request must get the gRPC status a
Triton client expects, with a message that names the offending tensor, and the server must go on
serving good requests afterwards."""

from __future__ import annotations

import re
import struct

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2

from beamline_harness import (assert_still_serving, expect_error, expect_rpc_error,
                              identity_config, make_input, raw_request, repository_index,
                              write_model)

INVALID = grpc.StatusCode.INVALID_ARGUMENT
FOUR_FLOATS = np.arange(4, dtype=np.float32).tobytes()


@pytest.fixture
def serving(default_server):
    """The default server, checked to still serve once the test is done with it."""
    yield default_server
    assert_still_serving(default_server)


def _pair(first=None, second=None):
    first = np.array([[1, 2, 3, 4]], dtype=np.float32) if first is None else first
    second = np.array([[5, 6, 7, 8]], dtype=np.float32) if second is None else second
    return [make_input("INPUT0", first), make_input("INPUT1", second)]


# --- with tritonclient ---------------------------------------------------------------------------

def test_unknown_model(serving, client):
    # Triton's wording, which existing client code matches on.
    expect_error(lambda: client.infer("no_such_model", _pair()), "NOT_FOUND",
                 "Request for unknown model", "no_such_model")


def test_unknown_version(serving, client):
    expect_error(lambda: client.infer("native_pair", _pair(), model_version="99"), "NOT_FOUND",
                 "version 99")


def test_wrong_datatype(serving, client):
    inputs = _pair(first=np.array([[1, 2, 3, 4]], dtype=np.int32))
    expect_error(lambda: client.infer("native_pair", inputs), "INVALID_ARGUMENT", "INPUT0")


def test_wrong_rank(serving, client):
    inputs = _pair(second=np.zeros((1, 2, 2), dtype=np.float32))
    expect_error(lambda: client.infer("native_pair", inputs), "INVALID_ARGUMENT", "INPUT1")


def test_wrong_shape(serving, client):
    inputs = _pair(first=np.zeros((1, 5), dtype=np.float32))
    expect_error(lambda: client.infer("native_pair", inputs), "INVALID_ARGUMENT", "INPUT0")


def test_inputs_with_different_batch_sizes(serving, client):
    inputs = _pair(first=np.zeros((2, 4), dtype=np.float32))
    expect_error(lambda: client.infer("native_pair", inputs), "INVALID_ARGUMENT")


def test_missing_input(serving, client):
    only_first = [make_input("INPUT0", np.zeros((1, 4), dtype=np.float32))]
    expect_error(lambda: client.infer("native_pair", only_first), "INVALID_ARGUMENT", "INPUT1")


def test_unexpected_input(serving, client):
    inputs = _pair() + [make_input("BOGUS", np.zeros((1, 4), dtype=np.float32))]
    expect_error(lambda: client.infer("native_pair", inputs), "INVALID_ARGUMENT", "BOGUS")


def test_unknown_requested_output(serving, client):
    outputs = [grpcclient.InferRequestedOutput("OUTPUT9")]
    expect_error(lambda: client.infer("native_pair", _pair(), outputs=outputs),
                 "INVALID_ARGUMENT", "OUTPUT9")


def test_batch_larger_than_max_batch_size(serving, client):
    nine = np.zeros((9, 4), dtype=np.float32)  # max_batch_size is 8
    expect_error(lambda: client.infer("native_pair", _pair(nine, nine)), "INVALID_ARGUMENT")


@pytest.mark.libtorch
def test_batch_larger_than_max_batch_size_on_torch_model(serving, client):
    patches = np.zeros((65, 1, 48, 48), dtype=np.float32)  # cnn_patch: max_batch_size 64
    expect_error(lambda: client.infer("cnn_patch", [make_input("INPUT__0", patches)]),
                 "INVALID_ARGUMENT")


@pytest.mark.libtorch
def test_wrong_datatype_on_torch_model(serving, client):
    data = np.zeros((1, 4), dtype=np.float64)
    expect_error(lambda: client.infer("identity_fp32", [make_input("INPUT__0", data)]),
                 "INVALID_ARGUMENT", "INPUT__0")


# --- crafted with the raw stub -------------------------------------------------------------------

def test_raw_size_does_not_match_shape(serving, stub):
    request = raw_request("native_pair", [("INPUT0", "FP32", [1, 4]), ("INPUT1", "FP32", [1, 4])],
                          [FOUR_FLOATS[:12], FOUR_FLOATS])
    expect_rpc_error(lambda: stub.ModelInfer(request), INVALID, "INPUT0")


def test_fewer_raw_contents_than_inputs(serving, stub):
    request = raw_request("native_pair", [("INPUT0", "FP32", [1, 4]), ("INPUT1", "FP32", [1, 4])],
                          [FOUR_FLOATS])
    expect_rpc_error(lambda: stub.ModelInfer(request), INVALID)


def test_more_raw_contents_than_inputs(serving, stub):
    request = raw_request("native_pair", [("INPUT0", "FP32", [1, 4]), ("INPUT1", "FP32", [1, 4])],
                          [FOUR_FLOATS, FOUR_FLOATS, FOUR_FLOATS])
    expect_rpc_error(lambda: stub.ModelInfer(request), INVALID)


def test_raw_and_typed_contents_mixed(serving, stub):
    request = raw_request("native_pair", [("INPUT0", "FP32", [1, 4]), ("INPUT1", "FP32", [1, 4])],
                          [FOUR_FLOATS])
    request.inputs[0].contents.fp32_contents.extend([1, 2, 3, 4])
    expect_rpc_error(lambda: stub.ModelInfer(request), INVALID, "INPUT0")


def test_typed_contents_are_accepted(serving, stub):
    # The good counterpart of the request above: typed contents only.
    request = raw_request("native_pair", [("INPUT0", "FP32", [1, 4]), ("INPUT1", "FP32", [1, 4])])
    request.inputs[0].contents.fp32_contents.extend([1, 2, 3, 4])
    request.inputs[1].contents.fp32_contents.extend([5, 6, 7, 8])
    response = stub.ModelInfer(request)
    assert [output.name for output in response.outputs] == ["OUTPUT0", "OUTPUT1"]
    assert np.frombuffer(response.raw_output_contents[1], dtype=np.float32).tolist() == [5, 6, 7, 8]


def test_typed_contents_with_wrong_count(serving, stub):
    request = raw_request("native_pair", [("INPUT0", "FP32", [1, 4]), ("INPUT1", "FP32", [1, 4])])
    request.inputs[0].contents.fp32_contents.extend([1, 2, 3])
    request.inputs[1].contents.fp32_contents.extend([5, 6, 7, 8])
    expect_rpc_error(lambda: stub.ModelInfer(request), INVALID, "INPUT0")


def test_typed_contents_in_field_of_other_type(serving, stub):
    request = raw_request("native_pair", [("INPUT0", "FP32", [1, 4]), ("INPUT1", "FP32", [1, 4])])
    request.inputs[0].contents.int64_contents.extend([1, 2, 3, 4])
    request.inputs[1].contents.fp32_contents.extend([5, 6, 7, 8])
    expect_rpc_error(lambda: stub.ModelInfer(request), INVALID, "INPUT0")


def test_unknown_datatype_string(serving, stub):
    request = raw_request("native_pair", [("INPUT0", "FP99", [1, 4]), ("INPUT1", "FP32", [1, 4])],
                          [FOUR_FLOATS, FOUR_FLOATS])
    expect_rpc_error(lambda: stub.ModelInfer(request), INVALID, "INPUT0")


def test_negative_dimension_in_request(serving, stub):
    request = raw_request("native_pair", [("INPUT0", "FP32", [-1, 4]), ("INPUT1", "FP32", [1, 4])],
                          [FOUR_FLOATS, FOUR_FLOATS])
    expect_rpc_error(lambda: stub.ModelInfer(request), INVALID, "INPUT0")


def test_huge_shape_does_not_allocate(serving, stub):
    # 2^62 elements would overflow a byte count; it must be refused, not attempted.
    request = raw_request("native_identity", [("INPUT0", "FP32", [1, 1 << 62])], [FOUR_FLOATS])
    expect_rpc_error(lambda: stub.ModelInfer(request), INVALID, "INPUT0")


def test_duplicate_input(serving, stub):
    request = raw_request("native_pair", [("INPUT0", "FP32", [1, 4]), ("INPUT0", "FP32", [1, 4]),
                                          ("INPUT1", "FP32", [1, 4])],
                          [FOUR_FLOATS, FOUR_FLOATS, FOUR_FLOATS])
    expect_rpc_error(lambda: stub.ModelInfer(request), INVALID, "INPUT0")


def test_empty_model_name(serving, stub):
    request = raw_request("", [("INPUT0", "FP32", [1, 4])], [FOUR_FLOATS])
    expect_rpc_error(lambda: stub.ModelInfer(request),
                     (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT))


@pytest.mark.parametrize("blob", [
    pytest.param(struct.pack("<I", 10) + b"abc", id="length_past_end"),
    pytest.param(b"\x01\x00", id="truncated_length_prefix"),
    pytest.param(struct.pack("<I", 1) + b"a" + struct.pack("<I", 0), id="extra_element"),
])
def test_malformed_raw_bytes_tensor(serving, stub, blob):
    # BYTES raw form: each element is a little-endian uint32 length and that many bytes; the
    # shape says one element.
    request = raw_request("native_bytes", [("INPUT0", "BYTES", [1])], [blob])
    expect_rpc_error(lambda: stub.ModelInfer(request), INVALID, "INPUT0")


def test_unknown_model_metadata_via_stub(serving, stub):
    expect_rpc_error(lambda: stub.ModelMetadata(service_pb2.ModelMetadataRequest(name="nope")),
                     grpc.StatusCode.NOT_FOUND)


# --- message size --------------------------------------------------------------------------------

def test_message_over_the_limit_is_resource_exhausted(start_server, native_repository):
    server = start_server(native_repository, "--grpc-max-message-size", "65536", name="small-limit")
    one_mib = np.zeros((1, 1 << 18), dtype=np.float32)
    with server.client() as client:
        expect_error(lambda: client.infer("native_identity", [make_input("INPUT0", one_mib)]),
                     "RESOURCE_EXHAUSTED")
        small = np.ones((1, 8), dtype=np.float32)
        result = client.infer("native_identity", [make_input("INPUT0", small)])
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), small)
    assert_still_serving(server)


# --- broken models -------------------------------------------------------------------------------

@pytest.mark.libtorch
def test_corrupt_torchscript_file(start_server, model_repository):
    config = ('name: "broken_torch"\nplatform: "pytorch_libtorch"\nmax_batch_size: 8\n'
              'input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
              'output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ -1 ] } ]\n')
    write_model(model_repository, "broken_torch", config,
                files={"1/model.pt": b"this is not a TorchScript archive\x00\xff" * 64})
    write_model(model_repository, "native_identity", identity_config("native_identity"))
    server = start_server(model_repository, name="corrupt-model")

    assert_still_serving(server)
    entry = repository_index(server)["broken_torch"]
    assert entry.state == "UNAVAILABLE"
    assert "model.pt" in entry.reason, f"reason does not name the file: {entry.reason!r}"
    with server.client() as client:
        assert not client.is_model_ready("broken_torch")
        data = np.ones((1, 2), dtype=np.float32)
        expect_error(lambda: client.infer("broken_torch", [make_input("INPUT__0", data)]),
                     ("UNAVAILABLE", "NOT_FOUND"), "broken_torch")
    assert_still_serving(server)


BROKEN_CONFIG = """name: "bad_config"
backend: "identity"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
dynamic_batching { max_queue_delay_microseconds: 100 ]
"""  # The stray "]" is on line 7.


def test_invalid_config_syntax(start_server, model_repository):
    write_model(model_repository, "bad_config", BROKEN_CONFIG)
    write_model(model_repository, "native_identity", identity_config("native_identity"))
    server = start_server(model_repository, name="bad-config")

    assert_still_serving(server)
    entry = repository_index(server)["bad_config"]
    assert entry.state == "UNAVAILABLE"
    assert "config.pbtxt" in entry.reason, f"reason does not name the file: {entry.reason!r}"
    reason = entry.reason.replace(str(model_repository), "<repository>")
    assert re.search(r"line\s*7\b|:7:|\b7:\d+", reason), f"reason does not give line 7: {reason!r}"
    with server.client() as client:
        assert not client.is_model_ready("bad_config")
        expect_error(lambda: client.infer(
            "bad_config", [make_input("INPUT0", np.ones((1, 2), dtype=np.float32))]),
            ("UNAVAILABLE", "NOT_FOUND"), "bad_config")


@pytest.mark.parametrize("config, fragment", [
    pytest.param(identity_config("other_name"), "other_name", id="name_differs_from_directory"),
    pytest.param(identity_config("bad_semantics").replace("TYPE_FP32", "TYPE_NOT_A_TYPE", 1),
                 "TYPE_NOT_A_TYPE", id="unknown_data_type"),
    pytest.param('name: "bad_semantics"\nbackend: "no_such_backend"\nmax_batch_size: 0\n'
                 'input [ { name: "I" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
                 'output [ { name: "O" data_type: TYPE_FP32 dims: [ 1 ] } ]\n',
                 "no_such_backend", id="unknown_backend"),
])
def test_semantically_invalid_config(start_server, model_repository, config, fragment):
    write_model(model_repository, "bad_semantics", config)
    write_model(model_repository, "native_identity", identity_config("native_identity"))
    server = start_server(model_repository, name="bad-semantics")
    assert_still_serving(server)
    entry = repository_index(server)["bad_semantics"]
    assert entry.state == "UNAVAILABLE"
    assert entry.reason, "an unavailable model needs a reason"
    assert fragment in entry.reason, f"{fragment!r} not in reason {entry.reason!r}"
