"""ModelInfer with NVIDIA's tritonclient: every datatype of the example models round-trips exactly,
the CNN matches in-process PyTorch, and request ids, output selection, parameters and concurrent
requests behave as in Triton."""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from beamline_harness import make_input

RNG_SEED = 20240611


def _fp16_specials() -> np.ndarray:
    values = [0.0, 1.0, -2.5, 65504.0, -65504.0, np.inf, -np.inf, 6e-8, 0.333]
    return np.array([values], dtype=np.float16)


def _int64_extremes() -> np.ndarray:
    info = np.iinfo(np.int64)
    return np.array([[info.min, info.max, 0, -1, 1, 2**53 + 1, -(2**40)]], dtype=np.int64)


IDENTITY_CASES = {
    "fp32_batch1": ("identity_fp32", lambda rng: rng.standard_normal((1, 16)).astype(np.float32)),
    "fp32_batch4": ("identity_fp32", lambda rng: rng.standard_normal((4, 16)).astype(np.float32)),
    "fp32_batch8_long": ("identity_fp32",
                         lambda rng: rng.standard_normal((8, 1000)).astype(np.float32)),
    "int64_random": ("identity_int64",
                     lambda rng: rng.integers(-10**12, 10**12, (3, 9), dtype=np.int64)),
    "int64_extremes": ("identity_int64", lambda rng: _int64_extremes()),
    "bool": ("identity_bool", lambda rng: rng.integers(0, 2, (4, 7)).astype(np.bool_)),
    "fp16_random": ("identity_fp16", lambda rng: rng.standard_normal((2, 10)).astype(np.float16)),
    "fp16_specials": ("identity_fp16", lambda rng: _fp16_specials()),
}


@pytest.mark.libtorch
@pytest.mark.parametrize("case", list(IDENTITY_CASES))
def test_identity_round_trip_is_exact(client, case):
    model, make = IDENTITY_CASES[case]
    data = make(np.random.default_rng(RNG_SEED))
    result = client.infer(model, [make_input("INPUT__0", data)])
    output = result.as_numpy("OUTPUT__0")
    assert output is not None, "no OUTPUT__0 in the response"
    assert output.dtype == data.dtype
    assert output.shape == data.shape
    np.testing.assert_array_equal(output, data)


BYTES_CASES = {
    "ascii": [b"alpha", b"beta", b"gamma"],
    "empty_strings": [b"", b"x", b""],
    "only_empty": [b""],
    "utf8": ["żółw".encode(), "粒子検出器".encode(), "émission γ".encode()],
    "binary": [bytes(range(256)), b"\x00\x00\x00", b"\xff\xfe\x80"],
}


@pytest.mark.parametrize("model", [
    pytest.param("identity_bytes", marks=pytest.mark.libtorch), "native_bytes"])
@pytest.mark.parametrize("case", list(BYTES_CASES))
def test_bytes_round_trip_is_exact(client, model, case):
    input_name, output_name = (("INPUT__0", "OUTPUT__0") if model == "identity_bytes"
                               else ("INPUT0", "OUTPUT0"))
    data = np.array(BYTES_CASES[case], dtype=np.object_)
    result = client.infer(model, [make_input(input_name, data, "BYTES")])
    assert result.get_output(output_name).datatype == "BYTES"
    output = result.as_numpy(output_name)
    assert output.shape == data.shape
    assert [bytes(value) for value in output] == list(data)


def test_native_identity_fp32(client):
    data = np.linspace(-3, 3, 24, dtype=np.float32).reshape(2, 12)
    result = client.infer("native_identity", [make_input("INPUT0", data)])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


@pytest.mark.libtorch
def test_cnn_patch_matches_in_process_pytorch(client, example_repository):
    patches = np.random.default_rng(RNG_SEED).standard_normal((16, 1, 48, 48)).astype(np.float32)
    result = client.infer("cnn_patch", [make_input("INPUT__0", patches)])
    served = result.as_numpy("OUTPUT__0")
    assert served.dtype == np.float32
    assert served.shape == (16, 4)
    assert np.isfinite(served).all()

    torch = pytest.importorskip("torch")
    module = torch.jit.load(str(example_repository.repository / "cnn_patch" / "1" / "model.pt"),
                            map_location="cpu")
    module.eval()
    with torch.no_grad():
        expected = module(torch.from_numpy(patches))
    if isinstance(expected, (tuple, list)):
        expected = expected[0]
    expected = expected.numpy()
    max_difference = float(np.max(np.abs(served - expected)))
    assert max_difference <= 1e-5, f"max |served - pytorch| = {max_difference}"


@pytest.mark.libtorch
def test_cnn_patch_matches_reference_data(client, example_repository):
    # The generator saved inputs and the outputs PyTorch computed for them; no torch needed here.
    patches = np.load(example_repository.reference / "cnn_patch_input.npy")
    expected = np.load(example_repository.reference / "cnn_patch_output.npy")
    served = client.infer("cnn_patch", [make_input("INPUT__0", patches)]).as_numpy("OUTPUT__0")
    assert served.shape == expected.shape
    max_difference = float(np.max(np.abs(served - expected)))
    assert max_difference <= 1e-5, f"max |served - reference| = {max_difference}"


@pytest.mark.libtorch
def test_cnn_patch_batch_of_one_equals_row_of_batch(client):
    patches = np.random.default_rng(RNG_SEED + 1).standard_normal((5, 1, 48, 48)).astype(np.float32)
    batch = client.infer("cnn_patch", [make_input("INPUT__0", patches)]).as_numpy("OUTPUT__0")
    single = client.infer("cnn_patch", [make_input("INPUT__0", patches[2:3])]).as_numpy("OUTPUT__0")
    np.testing.assert_allclose(single[0], batch[2], atol=1e-5, rtol=0)


def test_request_id_and_model_are_echoed(client):
    data = np.ones((1, 3), dtype=np.float32)
    response = client.infer("native_identity", [make_input("INPUT0", data)],
                            request_id="beamline-request-17").get_response()
    assert response.id == "beamline-request-17"
    assert response.model_name == "native_identity"
    assert response.model_version == "1"


def test_explicit_version(client):
    data = np.full((1, 2), 7.0, dtype=np.float32)
    result = client.infer("native_identity", [make_input("INPUT0", data)], model_version="1")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def _pair_inputs():
    first = np.array([[1, 2, 3, 4]], dtype=np.float32)
    second = np.array([[-5, -6, -7, -8]], dtype=np.float32)
    return first, second, [make_input("INPUT0", first), make_input("INPUT1", second)]


def test_all_outputs_returned_when_none_requested(client):
    first, second, inputs = _pair_inputs()
    result = client.infer("native_pair", inputs)
    assert sorted(output.name for output in result.get_response().outputs) == ["OUTPUT0", "OUTPUT1"]
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), first)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), second)


def test_requested_output_subset(client):
    _, second, inputs = _pair_inputs()
    outputs = [grpcclient.InferRequestedOutput("OUTPUT1")]
    result = client.infer("native_pair", inputs, outputs=outputs)
    response = result.get_response()
    assert [output.name for output in response.outputs] == ["OUTPUT1"]
    assert len(response.raw_output_contents) == 1
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), second)


def test_outputs_come_back_as_raw_contents(client):
    # Triton always answers with raw_output_contents; tritonclient reads numbers only from there.
    _, _, inputs = _pair_inputs()
    response = client.infer("native_pair", inputs).get_response()
    assert len(response.raw_output_contents) == len(response.outputs) == 2
    assert all(len(blob) == 16 for blob in response.raw_output_contents)


@pytest.mark.parametrize("model, input_name, output_name", [
    ("native_identity", "INPUT0", "OUTPUT0"),
    pytest.param("identity_fp32", "INPUT__0", "OUTPUT__0", marks=pytest.mark.libtorch)])
def test_custom_request_parameters_are_accepted(client, model, input_name, output_name):
    data = np.arange(6, dtype=np.float32).reshape(1, 6)
    parameters = {"note": "from the tests", "flag": True, "level": 3, "scale": 0.5}
    result = client.infer(model, [make_input(input_name, data)], parameters=parameters)
    np.testing.assert_array_equal(result.as_numpy(output_name), data)


@pytest.mark.parametrize("model, input_name, output_name", [
    ("native_delayed", "INPUT0", "OUTPUT0"),
    pytest.param("identity_fp32", "INPUT__0", "OUTPUT__0", marks=pytest.mark.libtorch)])
def test_async_infer_with_several_in_flight(client, model, input_name, output_name):
    count = 8
    sent = {f"async-{i}": np.full((1, 3 + i), float(i), dtype=np.float32) for i in range(count)}
    answers: queue.Queue = queue.Queue()
    for request_id, data in sent.items():
        client.async_infer(model, [make_input(input_name, data)],
                           callback=lambda result, error: answers.put((result, error)),
                           request_id=request_id)
    received = {}
    for _ in range(count):
        result, error = answers.get(timeout=60)
        assert error is None, f"async request failed: {error}"
        received[result.get_response().id] = result.as_numpy(output_name)
    assert sorted(received) == sorted(sent)
    for request_id, data in sent.items():
        np.testing.assert_array_equal(received[request_id], data)


def test_concurrent_clients_get_their_own_answers(default_server):
    def one_client(worker: int) -> None:
        rng = np.random.default_rng(worker)
        with default_server.client() as own_client:
            for round_number in range(20):
                data = rng.standard_normal((1 + round_number % 4, 5 + worker)).astype(np.float32)
                result = own_client.infer("native_identity", [make_input("INPUT0", data)])
                np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)

    with ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(one_client, worker) for worker in range(8)]:
            future.result(timeout=120)


def test_tensor_larger_than_grpc_default_message_limit(client):
    # Triton raises gRPC's 4 MiB default to INT32_MAX; clients rely on it for big batches.
    data = np.random.default_rng(RNG_SEED).standard_normal((2, 1 << 20)).astype(np.float32)  # 8 MiB
    result = client.infer("native_identity", [make_input("INPUT0", data)])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)
