"""Ensembles seen from NVIDIA's tritonclient: a two-step chain of native identity models, its
config as perf_analyzer reads it, and a failing step reported with the step's model."""

import numpy as np

from beamline_harness import expect_error, identity_config, make_input, write_model


def _ensemble(name: str, steps: str) -> str:
    return (f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: 8\n'
            'input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
            'output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
            f"ensemble_scheduling {{ step [ {steps} ] }}\n")


def _step(model: str, source: str, target: str, input_name: str = "INPUT0") -> str:
    return (f'{{ model_name: "{model}" model_version: -1 '
            f'input_map {{ key: "{input_name}" value: "{source}" }} '
            f'output_map {{ key: "OUTPUT0" value: "{target}" }} }}')


def test_chained_ensemble_serves_and_reports(start_server, model_repository):
    write_model(model_repository, "first", identity_config("first"))
    write_model(model_repository, "second", identity_config("second"))
    write_model(model_repository, "chain",
                _ensemble("chain", _step("first", "X", "T") + ", " + _step("second", "T", "Y")))
    server = start_server(model_repository, name="ensemble")
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    with server.client() as client:
        result = client.infer("chain", [make_input("X", data)], request_id="e1")
        np.testing.assert_array_equal(result.as_numpy("Y"), data)
        assert result.get_response().id == "e1"
        config = client.get_model_config("chain").config
        assert config.platform == "ensemble"
        assert [s.model_name for s in config.ensemble_scheduling.step] == ["first", "second"]
        metadata = client.get_model_metadata("chain")
        assert metadata.platform == "ensemble"
        stats = {s.name: s for s in client.get_inference_statistics("").model_stats}
    assert stats["chain"].inference_stats.success.count == 1
    assert stats["first"].inference_stats.success.count == 1
    assert stats["second"].inference_stats.success.count == 1


def test_failing_step_names_the_step(start_server, model_repository):
    write_model(model_repository, "first", identity_config("first"))
    write_model(model_repository, "wrong",
                _ensemble("wrong", _step("first", "X", "T") + ", " +
                          _step("first", "T", "Y", input_name="NO_SUCH_INPUT")))
    server = start_server(model_repository, name="ensemble-fail")
    with server.client() as client:
        expect_error(lambda: client.infer("wrong", [make_input("X", np.ones((1, 2), np.float32))]),
                     "INVALID_ARGUMENT", "step 1", "'first'", "NO_SUCH_INPUT")
        # The step model itself still serves.
        ok = client.infer("first", [make_input("INPUT0", np.ones((1, 2), np.float32))])
        assert ok.as_numpy("OUTPUT0").shape == (1, 2)
