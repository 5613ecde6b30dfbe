"""The HTTP/REST endpoints other than inference: health, server and model metadata, configuration
(Triton's JSON numbers), statistics, repository index/load/unload, the shared-memory no-ops, and
the flags that place or disable the HTTP and metrics endpoints."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from beamline_harness import (assert_still_serving_http, expect_http_error, http_request,
                              identity_config, write_model)


@pytest.fixture
def client(default_server):
    with default_server.http_client() as connection:
        yield connection


def test_health(default_server, client):
    assert client.is_server_live() and client.is_server_ready()
    for path in ("/v2/health/live", "/v2/health/ready"):
        reply = http_request(default_server, "GET", path)
        assert reply.status == 200 and reply.body == b"", reply


def test_server_metadata_matches_grpc(default_server, client):
    metadata = client.get_server_metadata()
    with default_server.client() as grpc_client:
        grpc_metadata = grpc_client.get_server_metadata()
    assert metadata["name"] == grpc_metadata.name
    assert metadata["version"] == grpc_metadata.version
    assert metadata["extensions"] == list(grpc_metadata.extensions)
    assert list(http_request(default_server, "GET", "/v2").json()) == ["name", "version",
                                                                       "extensions"]


def test_model_metadata_and_readiness(default_server, client):
    metadata = client.get_model_metadata("native_pair")
    assert metadata["name"] == "native_pair"
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "identity"
    assert metadata["inputs"] == [{"name": "INPUT0", "datatype": "FP32", "shape": [-1, 4]},
                                  {"name": "INPUT1", "datatype": "FP32", "shape": [-1, 4]}]
    assert client.get_model_metadata("native_pair", "1") == metadata
    assert client.is_model_ready("native_pair") and client.is_model_ready("native_pair", "1")
    assert not client.is_model_ready("native_pair", "7")
    assert not client.is_model_ready("no_such_model")
    not_ready = http_request(default_server, "GET", "/v2/models/native_pair/versions/7/ready")
    expect_http_error(not_ready, 400, "Model version not ready")
    expect_http_error(http_request(default_server, "GET", "/v2/models/no_such_model"), 404,
                      "no_such_model")


def test_model_config_uses_json_numbers(default_server, client):
    config = client.get_model_config("native_delayed")
    assert config["name"] == "native_delayed"
    assert config["max_batch_size"] == 8
    assert config["input"][0]["dims"] == [-1]          # int64 as a number, as Triton sends it
    assert config["input"][0]["data_type"] == "TYPE_FP32"
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert config["parameters"]["execute_delay_ms"]["string_value"] == "20"
    assert "config" not in config  # unwrapped, unlike the gRPC response
    with default_server.client() as grpc_client:
        grpc_config = grpc_client.get_model_config("native_delayed", as_json=True)["config"]
    assert grpc_config["input"][0]["dims"] == ["-1"]   # protobuf JSON over gRPC keeps strings
    expect_http_error(http_request(default_server, "GET", "/v2/models/nope/config"), 404, "nope")


def test_statistics(default_server, client):
    before = client.get_inference_statistics("native_identity")["model_stats"][0]
    tensor = httpclient.InferInput("INPUT0", [3, 2], "FP32")
    tensor.set_data_from_numpy(np.ones((3, 2), dtype=np.float32))
    client.infer("native_identity", [tensor])
    after = client.get_inference_statistics("native_identity")["model_stats"][0]
    assert after["inference_count"] == before["inference_count"] + 3
    assert after["inference_stats"]["success"]["count"] == (
        before["inference_stats"]["success"]["count"] + 1)
    assert set(after["inference_stats"]) >= {"success", "fail", "queue", "compute_input",
                                             "compute_infer", "compute_output", "cache_hit",
                                             "cache_miss"}
    everything = client.get_inference_statistics()["model_stats"]
    assert {"native_identity", "native_pair"} <= {s["name"] for s in everything}
    expect_http_error(http_request(default_server, "GET", "/v2/models/nope/stats"), 404)


def test_repository_index(default_server, client):
    index = {entry["name"]: entry for entry in client.get_model_repository_index()}
    assert index["native_pair"]["state"] == "READY" and index["native_pair"]["version"] == "1"
    ready = http_request(default_server, "POST", "/v2/repository/index", '{"ready": true}').json()
    assert all(entry["state"] == "READY" for entry in ready)
    expect_http_error(http_request(default_server, "POST", "/v2/repository/index", '{"ready": 1}'),
                      400, "ready")
    expect_http_error(http_request(default_server, "POST", "/v2/repository/other/index"), 501)


def test_load_and_unload_refused_in_none_mode(default_server, client):
    with pytest.raises(InferenceServerException) as error:
        client.load_model("native_identity")
    assert error.value.status() == "503"
    assert client.is_model_ready("native_identity")


def test_shared_memory_routes_answer_like_grpc(default_server, client):
    # perf_analyzer calls "unregister all" and "status" unconditionally; registering needs
    # --allow-client-shm (tests/integration/test_http_shared_memory.py has the rest).
    client.unregister_system_shared_memory()
    client.unregister_cuda_shared_memory()
    assert client.get_system_shared_memory_status() == []
    assert client.get_cuda_shared_memory_status() == []
    expect_http_error(http_request(default_server, "GET", "/v2/systemsharedmemory/region/r/status"),
                      404, "r")
    expect_http_error(http_request(default_server, "POST",
                                   "/v2/cudasharedmemory/region/r/unregister"), 404)
    expect_http_error(http_request(default_server, "POST",
                                   "/v2/systemsharedmemory/region/r/register",
                                   '{"key": "/k", "offset": 0, "byte_size": 16}'),
                      503, "--allow-client-shm")
    for method, path in (("GET", "/v2/trace/setting"), ("POST", "/v2/logging"),
                         ("POST", "/v2/models/native_pair/generate")):
        expect_http_error(http_request(default_server, method, path, "{}"), 501)


# --- explicit model control -----------------------------------------------------------------------

@pytest.fixture
def explicit_server(start_server, model_repository):
    write_model(model_repository, "alpha", identity_config("alpha"))
    write_model(model_repository, "beta", identity_config("beta"))
    return start_server(model_repository, "--model-control-mode", "explicit",
                        "--load-model", "alpha", name="explicit-http")


def test_load_unload_and_config_override(explicit_server):
    with explicit_server.http_client() as client:
        assert client.is_model_ready("alpha") and not client.is_model_ready("beta")
        client.load_model("beta")
        assert client.is_model_ready("beta")
        client.unload_model("alpha")
        assert not client.is_model_ready("alpha")
        # A JSON config override (a string, as tritonclient sends it) with a smaller batch.
        override = json.dumps({"name": "alpha", "backend": "identity", "max_batch_size": 2,
                               "input": [{"name": "INPUT0", "data_type": "TYPE_FP32",
                                          "dims": [-1]}],
                               "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32",
                                           "dims": [-1]}]})
        client.load_model("alpha", config=override)
        assert client.get_model_config("alpha")["max_batch_size"] == 2
        unload = http_request(explicit_server, "POST", "/v2/repository/models/beta/unload",
                              '{"parameters": {"unload_dependents": true}}')
        assert unload.status == 200, unload
        assert not client.is_model_ready("beta")


def test_load_errors(explicit_server):
    expect_http_error(http_request(explicit_server, "POST", "/v2/repository/models/nope/load"), 404,
                      "nope")
    # Model files with the request: base64 is checked first, then the feature is refused.
    expect_http_error(http_request(explicit_server, "POST", "/v2/repository/models/beta/load",
                                   json.dumps({"parameters": {"file:1/model.pt": "not base64!"}})),
                      400, "base64", "file:1/model.pt")
    encoded = base64.b64encode(b"\x00model bytes").decode()
    expect_http_error(http_request(explicit_server, "POST", "/v2/repository/models/beta/load",
                                   json.dumps({"parameters": {"config": "{}",
                                                              "file:1/model.pt": encoded}})),
                      501, "file:1/model.pt")
    expect_http_error(http_request(explicit_server, "POST", "/v2/repository/models/beta/load",
                                   '{"parameters": {"config": 5}}'), 400, "config")
    expect_http_error(http_request(explicit_server, "POST", "/v2/repository/models/beta/load",
                                   "{not json"), 400, "failed to parse")
    assert_still_serving_http(explicit_server, "alpha")


# --- flags and the ready line ---------------------------------------------------------------------

def test_ready_line_names_every_endpoint(default_server):
    line = next(l for l in default_server.stdout_lines if l.startswith("beamline ready"))
    assert line == (f"beamline ready grpc=127.0.0.1:{default_server.port} "
                    f"http=127.0.0.1:{default_server.http_port} "
                    f"metrics=127.0.0.1:{default_server.metrics_port}")


@pytest.mark.parametrize("flags", [("--allow-http", "false"), ("--http-port", "-1")])
def test_http_can_be_disabled(start_server, native_repository, flags):
    server = start_server(native_repository, *flags, name="no-http")
    assert server.http_port is None and server.metrics_port is not None
    line = next(l for l in server.stdout_lines if l.startswith("beamline ready"))
    assert "http=" not in line and "grpc=" in line


# --- shutdown -------------------------------------------------------------------------------------

def test_sigterm_drains_http_requests_in_flight(start_server, model_repository):
    import signal
    import threading
    import time
    write_model(model_repository, "slow", identity_config("slow", execute_delay_ms=200))
    server = start_server(model_repository, "--exit-timeout-secs", "30", name="slow-http")
    results: list = []

    def send(index: int) -> None:
        body = json.dumps({"id": str(index), "inputs": [
            {"name": "INPUT0", "shape": [1, 2], "datatype": "FP32", "data": [index, index]}]})
        results.append(http_request(server, "POST", "/v2/models/slow/infer", body))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # all sent; one executing, the rest queued
    server.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=60)
    answered = sorted(int(r.json()["id"]) for r in results if r.status == 200)
    assert answered == list(range(5)), results
    server.stop()  # exit code 0
