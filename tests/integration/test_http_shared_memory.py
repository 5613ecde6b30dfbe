"""System shared memory over HTTP with NVIDIA's tritonclient.http and its shm utilities: the
register/status/unregister routes, inputs read from and outputs written into client regions (same
results as plain HTTP), one region table for both protocols, and clear errors for bad regions,
bodies, windows and mixed data."""

import json
import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm

from beamline_harness import (assert_still_serving_http, expect_http_error, http_request,
                              identity_config, write_model)


@pytest.fixture
def shm_server(start_server, model_repository):
    write_model(model_repository, "ident", identity_config("ident", max_batch_size=8))
    return start_server(model_repository, "--allow-client-shm", "true", name="http-shm")


def plain_infer(client, data):
    tensor = httpclient.InferInput("INPUT0", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    return client.infer("ident", [tensor]).as_numpy("OUTPUT0")


def test_inputs_and_outputs_in_shared_memory_equal_plain_http(shm_server, regions):
    data = np.arange(24, dtype=np.float32).reshape(2, 12) * 0.5
    in_key, in_handle = regions(data.nbytes)
    out_key, out_handle = regions(data.nbytes)
    shm.set_shared_memory_region(in_handle, [data])
    with shm_server.http_client() as client:
        client.register_system_shared_memory("in", in_key, data.nbytes)
        client.register_system_shared_memory("out", out_key, data.nbytes)
        status = {r["name"]: r for r in client.get_system_shared_memory_status()}
        assert set(status) == {"in", "out"}
        assert status["in"]["key"] == in_key and status["in"]["byte_size"] == data.nbytes
        assert status["in"]["offset"] == 0
        one = client.get_system_shared_memory_status("out")
        assert [r["name"] for r in one] == ["out"]

        tensor = httpclient.InferInput("INPUT0", list(data.shape), "FP32")
        tensor.set_shared_memory("in", data.nbytes)
        output = httpclient.InferRequestedOutput("OUTPUT0")
        output.set_shared_memory("out", data.nbytes)
        result = client.infer("ident", [tensor], outputs=[output])
        meta = result.get_output("OUTPUT0")
        assert meta["shape"] == [2, 12] and meta["datatype"] == "FP32"
        assert meta["parameters"]["shared_memory_region"] == "out"
        assert meta["parameters"]["shared_memory_byte_size"] == data.nbytes
        assert "data" not in meta
        from_shm = shm.get_contents_as_numpy(out_handle, np.float32, [2, 12])
        np.testing.assert_array_equal(from_shm, plain_infer(client, data))
        np.testing.assert_array_equal(from_shm, data)

        client.unregister_system_shared_memory("in")
        assert [r["name"] for r in client.get_system_shared_memory_status()] == ["out"]
        client.unregister_system_shared_memory()  # all
        assert client.get_system_shared_memory_status() == []


def test_shm_input_with_binary_output_and_offset(shm_server, regions):
    data = np.arange(4, dtype=np.float32).reshape(1, 4) + 7
    key, handle = regions(64)
    shm.set_shared_memory_region(handle, [data], offset=32)
    with shm_server.http_client() as client:
        client.register_system_shared_memory("r", key, 64)
        tensor = httpclient.InferInput("INPUT0", [1, 4], "FP32")
        tensor.set_shared_memory("r", data.nbytes, offset=32)
        out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=True)
        result = client.infer("ident", [tensor], outputs=[out])
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def test_one_region_table_for_grpc_and_http(shm_server, regions):
    data = np.full((1, 6), 3.25, dtype=np.float32)
    key, handle = regions(data.nbytes)
    shm.set_shared_memory_region(handle, [data])
    with shm_server.client() as grpc_client:
        grpc_client.register_system_shared_memory("shared", key, data.nbytes)
    with shm_server.http_client() as client:
        assert [r["name"] for r in client.get_system_shared_memory_status()] == ["shared"]
        tensor = httpclient.InferInput("INPUT0", [1, 6], "FP32")
        tensor.set_shared_memory("shared", data.nbytes)
        np.testing.assert_array_equal(client.infer("ident", [tensor]).as_numpy("OUTPUT0"), data)
        client.unregister_system_shared_memory("shared")
    with shm_server.client() as grpc_client:
        assert len(grpc_client.get_system_shared_memory_status().regions) == 0


def infer_body(inputs, outputs=None) -> str:
    body = {"inputs": inputs}
    if outputs is not None:
        body["outputs"] = outputs
    return json.dumps(body)


def test_bad_regions_and_bodies_get_clear_errors(shm_server, regions):
    server = shm_server
    key, handle = regions(16)
    register = "/v2/systemsharedmemory/region/r/register"
    expect_http_error(http_request(server, "POST", register, '{"key": "' + key + '"}'), 400,
                      "byte_size")
    expect_http_error(http_request(server, "POST", register, '{"byte_size": 16}'), 400, "key")
    expect_http_error(http_request(server, "POST", register,
                                   '{"key": "' + key + '", "byte_size": -1}'), 400, "byte_size")
    expect_http_error(http_request(server, "POST", register, "{not json"), 400)
    expect_http_error(http_request(server, "POST", register,
                                   '{"key": "/no_such_key_beamline", "byte_size": 16}'), 400,
                      "no_such_key_beamline")
    assert http_request(server, "POST", register,
                        json.dumps({"key": key, "byte_size": 16})).status == 200
    expect_http_error(http_request(server, "POST", register,
                                   json.dumps({"key": key, "byte_size": 16})), 400, "'r'")
    expect_http_error(http_request(server, "POST", "/v2/cudasharedmemory/region/c/register",
                                   '{"raw_handle": {"b64": "%%%"}, "device_id": 0, '
                                   '"byte_size": 16}'), 400, "base64")
    expect_http_error(http_request(server, "POST", "/v2/cudasharedmemory/region/c/register",
                                   '{"raw_handle": 5, "byte_size": 16}'), 400, "raw_handle")

    path = "/v2/models/ident/infer"
    shm_input = {"name": "INPUT0", "datatype": "FP32", "shape": [1, 4],
                 "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 16}}
    unknown = dict(shm_input, parameters={"shared_memory_region": "nope",
                                          "shared_memory_byte_size": 16})
    expect_http_error(http_request(server, "POST", path, infer_body([unknown])), 400, "'nope'")
    outside = dict(shm_input, parameters={"shared_memory_region": "r",
                                          "shared_memory_byte_size": 16,
                                          "shared_memory_offset": 8})
    expect_http_error(http_request(server, "POST", path, infer_body([outside])), 400, "outside")
    no_size = dict(shm_input, parameters={"shared_memory_region": "r"})
    expect_http_error(http_request(server, "POST", path, infer_body([no_size])), 400,
                      "shared_memory_byte_size")
    both = dict(shm_input, data=[1, 2, 3, 4])
    expect_http_error(http_request(server, "POST", path, infer_body([both])), 400,
                      "shared memory")
    plain = {"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}
    small_out = {"name": "OUTPUT0", "parameters": {"shared_memory_region": "r",
                                                   "shared_memory_byte_size": 8}}
    expect_http_error(http_request(server, "POST", path, infer_body([plain], [small_out])), 400,
                      "needs 16 bytes")
    expect_http_error(http_request(server, "POST", "/v2/systemsharedmemory/region/nope/unregister"),
                      404, "'nope'")
    expect_http_error(http_request(server, "GET", "/v2/systemsharedmemory/region/nope/status"),
                      404, "'nope'")
    assert_still_serving_http(server, "ident")
