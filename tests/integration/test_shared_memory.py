"""System shared memory with NVIDIA's tritonclient and its shm utilities: inputs read from and
outputs written to client regions give the same results as plain gRPC; registration is refused
without --allow-client-shm; bad regions, offsets and sizes get clear errors."""

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm

from beamline_harness import expect_error, identity_config, make_input, write_model


@pytest.fixture
def shm_server(start_server, model_repository):
    write_model(model_repository, "ident", identity_config("ident", max_batch_size=8))
    return start_server(model_repository, "--allow-client-shm", "true", name="shm")


def test_inputs_and_outputs_in_shared_memory_equal_grpc(shm_server, regions):
    data = np.arange(24, dtype=np.float32).reshape(2, 12)
    in_key, in_handle = regions(data.nbytes)
    out_key, out_handle = regions(data.nbytes)
    shm.set_shared_memory_region(in_handle, [data])
    with shm_server.client() as client:
        client.register_system_shared_memory("in", in_key, data.nbytes)
        client.register_system_shared_memory("out", out_key, data.nbytes)
        status = client.get_system_shared_memory_status()
        assert set(status.regions) == {"in", "out"}
        assert status.regions["in"].byte_size == data.nbytes

        tensor = grpcclient.InferInput("INPUT0", list(data.shape), "FP32")
        tensor.set_shared_memory("in", data.nbytes)
        output = grpcclient.InferRequestedOutput("OUTPUT0")
        output.set_shared_memory("out", data.nbytes)
        result = client.infer("ident", [tensor], outputs=[output])
        meta = result.get_output("OUTPUT0")
        assert list(meta.shape) == [2, 12] and meta.datatype == "FP32"
        from_shm = shm.get_contents_as_numpy(out_handle, np.float32, [2, 12])

        plain = client.infer("ident", [make_input("INPUT0", data)]).as_numpy("OUTPUT0")
        np.testing.assert_array_equal(from_shm, plain)
        np.testing.assert_array_equal(from_shm, data)

        client.unregister_system_shared_memory("in")
        assert set(client.get_system_shared_memory_status().regions) == {"out"}
        client.unregister_system_shared_memory()  # all
        assert len(client.get_system_shared_memory_status().regions) == 0


def test_offset_into_a_region(shm_server, regions):
    data = np.arange(4, dtype=np.float32).reshape(1, 4)
    key, handle = regions(64)
    shm.set_shared_memory_region(handle, [data], offset=32)
    with shm_server.client() as client:
        client.register_system_shared_memory("r", key, 64)
        tensor = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
        tensor.set_shared_memory("r", data.nbytes, offset=32)
        result = client.infer("ident", [tensor])
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def test_bad_regions_get_clear_errors(shm_server, regions):
    key, handle = regions(16)
    with shm_server.client() as client:
        client.register_system_shared_memory("r", key, 16)
        expect_error(lambda: client.register_system_shared_memory("r", key, 16),
                     "ALREADY_EXISTS", "'r'")
        expect_error(lambda: client.register_system_shared_memory("x", "/no_such_key_beamline", 16),
                     "INVALID_ARGUMENT", "no_such_key_beamline")
        expect_error(lambda: client.register_system_shared_memory("big", key, 1 << 20),
                     "INVALID_ARGUMENT", "exceeds")

        unknown = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
        unknown.set_shared_memory("nope", 16)
        expect_error(lambda: client.infer("ident", [unknown]), "INVALID_ARGUMENT", "'nope'")

        outside = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
        outside.set_shared_memory("r", 16, offset=8)
        expect_error(lambda: client.infer("ident", [outside]), "INVALID_ARGUMENT", "outside")

        small_out = grpcclient.InferRequestedOutput("OUTPUT0")
        small_out.set_shared_memory("r", 8)
        expect_error(lambda: client.infer("ident", [make_input("INPUT0", np.ones((1, 4), np.float32))],
                                          outputs=[small_out]),
                     "INVALID_ARGUMENT", "needs 16 bytes")

        expect_error(lambda: client.unregister_system_shared_memory("nope"), "NOT_FOUND", "'nope'")
        # Still serving.
        ok = client.infer("ident", [make_input("INPUT0", np.ones((1, 4), np.float32))])
        assert ok.as_numpy("OUTPUT0").shape == (1, 4)


def test_registration_refused_without_allow_client_shm(start_server, model_repository, regions):
    write_model(model_repository, "ident", identity_config("ident"))
    server = start_server(model_repository, name="no-shm")
    key, _ = regions(16)
    with server.client() as client:
        expect_error(lambda: client.register_system_shared_memory("r", key, 16),
                     "UNAVAILABLE", "--allow-client-shm")
        client.unregister_system_shared_memory()  # "unregister all" still succeeds
        assert len(client.get_system_shared_memory_status().regions) == 0
