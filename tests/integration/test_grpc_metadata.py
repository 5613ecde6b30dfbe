"""Health, server metadata, model metadata, model config and model readiness over gRPC."""

from __future__ import annotations

import pytest
from tritonclient.grpc import model_config_pb2

from beamline_harness import expect_error


def test_server_is_live_and_ready(client):
    assert client.is_server_live()
    assert client.is_server_ready()


def test_server_metadata_names_beamline(client):
    metadata = client.get_server_metadata()
    assert metadata.name == "beamline"
    assert metadata.version == "0.1.0"


@pytest.mark.parametrize("extension", ["statistics", "model_repository", "model_configuration"])
def test_server_metadata_lists_extension(client, extension):
    assert extension in client.get_server_metadata().extensions


def _tensor(metadata_tensors, name):
    by_name = {tensor.name: tensor for tensor in metadata_tensors}
    assert name in by_name, f"{name} not among {list(by_name)}"
    return by_name[name]


@pytest.mark.libtorch
@pytest.mark.parametrize("model, datatype", [
    ("identity_fp32", "FP32"), ("identity_int64", "INT64"), ("identity_bool", "BOOL"),
    ("identity_fp16", "FP16")])
def test_model_metadata_prepends_batch_dimension(client, model, datatype):
    metadata = client.get_model_metadata(model)
    assert metadata.name == model
    assert metadata.platform == "pytorch_libtorch"
    assert "1" in metadata.versions
    for tensor in (_tensor(metadata.inputs, "INPUT__0"), _tensor(metadata.outputs, "OUTPUT__0")):
        assert tensor.datatype == datatype
        assert list(tensor.shape) == [-1, -1]


@pytest.mark.libtorch
def test_model_metadata_of_fixed_shape_model(client):
    metadata = client.get_model_metadata("cnn_patch")
    assert list(_tensor(metadata.inputs, "INPUT__0").shape) == [-1, 1, 48, 48]
    assert list(_tensor(metadata.outputs, "OUTPUT__0").shape) == [-1, 4]


@pytest.mark.libtorch
def test_model_metadata_without_batching_keeps_shape(client):
    metadata = client.get_model_metadata("identity_bytes")
    tensor = _tensor(metadata.inputs, "INPUT__0")
    assert tensor.datatype == "BYTES"
    assert list(tensor.shape) == [-1]


def test_model_metadata_platform_falls_back_to_backend(client):
    metadata = client.get_model_metadata("native_pair")
    assert metadata.platform == "identity"
    assert [tensor.name for tensor in metadata.inputs] == ["INPUT0", "INPUT1"]
    assert [tensor.name for tensor in metadata.outputs] == ["OUTPUT0", "OUTPUT1"]
    assert list(metadata.inputs[0].shape) == [-1, 4]


def test_model_metadata_for_explicit_version(client):
    metadata = client.get_model_metadata("native_identity", model_version="1")
    assert list(metadata.versions) == ["1"]


def test_model_metadata_of_unknown_model_is_not_found(client):
    expect_error(lambda: client.get_model_metadata("no_such_model"), "NOT_FOUND", "no_such_model")


@pytest.mark.libtorch
def test_model_config_round_trip(client):
    config = client.get_model_config("identity_fp32").config
    assert config.name == "identity_fp32"
    assert config.platform == "pytorch_libtorch"
    assert config.max_batch_size == 8
    assert [tensor.name for tensor in config.input] == ["INPUT__0"]
    assert config.input[0].data_type == model_config_pb2.TYPE_FP32
    assert list(config.input[0].dims) == [-1]
    assert [tensor.name for tensor in config.output] == ["OUTPUT__0"]
    assert config.output[0].data_type == model_config_pb2.TYPE_FP32


@pytest.mark.libtorch
def test_model_config_of_fixed_shape_model(client):
    config = client.get_model_config("cnn_patch").config
    assert config.max_batch_size == 64
    assert list(config.input[0].dims) == [1, 48, 48]
    assert list(config.output[0].dims) == [4]


def test_model_config_keeps_backend_and_parameters(client):
    config = client.get_model_config("native_delayed").config
    assert config.backend == "identity"
    assert config.max_batch_size == 8
    assert config.parameters["execute_delay_ms"].string_value == "20"


def test_model_config_string_type(client):
    config = client.get_model_config("native_bytes").config
    assert config.max_batch_size == 0
    assert config.input[0].data_type == model_config_pb2.TYPE_STRING


def test_model_config_of_unknown_model_is_not_found(client):
    expect_error(lambda: client.get_model_config("no_such_model"), "NOT_FOUND", "no_such_model")


def test_model_ready_for_loaded_model(client):
    assert client.is_model_ready("native_identity")
    assert client.is_model_ready("native_identity", model_version="1")


@pytest.mark.libtorch
def test_torch_model_ready(client):
    assert client.is_model_ready("identity_fp32")
    assert client.is_model_ready("cnn_patch")


def test_model_ready_is_false_for_missing_model(client):
    # Triton answers ready=false (not an error) for a model it does not know.
    assert not client.is_model_ready("no_such_model")


def test_model_ready_is_false_for_missing_version(client):
    assert not client.is_model_ready("native_identity", model_version="42")


def test_standard_grpc_health_check_reports_serving(default_server):
    # grpc.health.v1.Health/Check on the same port. Encoded by hand to avoid a dependency:
    # HealthCheckRequest{service=""} is empty; SERVING is field 1, varint 1.
    with default_server.channel() as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                    request_serializer=lambda raw: raw,
                                    response_deserializer=lambda raw: raw)
        assert check(b"", timeout=10) == b"\x08\x01"
