"""The physics workloads through the real server: ProtoDUNE hit classifier, ParticleNet taggers and
the Exa.TrkX-style tracking pipeline (step by step, as an ensemble, and fused).

Served outputs are compared with what PyTorch computed in the process that exported the models
(models/export_workloads.py writes the reference data next to the repository). The native
algorithm backends (frnn, connected_components) need no LibTorch, so their tests also run in the
sanitizer build, against the brute-force reference of models/workloads/tracking.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from beamline_harness import REPO_ROOT, ServerProcess, expect_error, make_input, write_model

sys.path.insert(0, str(REPO_ROOT / "models"))
from workloads import tracking  # noqa: E402  (numpy only)

TOLERANCE = 1e-5
TRACKING_EVENTS = 16  # export_workloads.TRACKING_REFERENCE_EVENTS


def infer(client, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict:
    result = client.infer(model, [make_input(name, array) for name, array in inputs.items()],
                          outputs=[grpcclient.InferRequestedOutput(name) for name in outputs])
    return {name: result.as_numpy(name) for name in outputs}


def assert_close(served: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert served.shape == expected.shape, f"{what}: shape {served.shape} != {expected.shape}"
    difference = float(np.max(np.abs(served - expected))) if served.size else 0.0
    assert difference <= TOLERANCE, f"{what}: max |served - in-process| = {difference}"


def reference(example_repository, name: str) -> np.ndarray:
    return np.load(example_repository.reference / name)


def tracking_event(example_repository, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (reference(example_repository, f"exatrkx_event{index}_features.npy"),
            reference(example_repository, f"exatrkx_event{index}_particle_id.npy"),
            reference(example_repository, f"exatrkx_event{index}_labels.npy"))


# --- networks: served == in-process ------------------------------------------------------------------


@pytest.mark.libtorch
def test_emtrack_cnn_matches_in_process(client, example_repository):
    patches = reference(example_repository, "emtrack_cnn_patch.npy")
    served = infer(client, "emtrack_cnn", {"patch": patches}, ["em_trk_none__0", "michel__1"])
    assert_close(served["em_trk_none__0"],
                 reference(example_repository, "emtrack_cnn_em_trk_none.npy"), "em_trk_none")
    assert_close(served["michel__1"], reference(example_repository, "emtrack_cnn_michel.npy"),
                 "michel")
    np.testing.assert_allclose(served["em_trk_none__0"].sum(axis=1), 1.0, atol=1e-5)
    # A trained network: most of the held-out patches are classified right.
    truth = reference(example_repository, "emtrack_cnn_truth.npy")
    assert (served["em_trk_none__0"].argmax(axis=1) == truth).mean() >= 0.8


@pytest.mark.libtorch
@pytest.mark.parametrize("model", ["particlenet", "particlenet_lite"])
def test_particlenet_matches_in_process(client, example_repository, model):
    inputs = {name: reference(example_repository, f"particlenet_{name}.npy")
              for name in ("points", "features", "mask")}
    served = infer(client, model, inputs, ["softmax__0"])["softmax__0"]
    assert_close(served, reference(example_repository, f"{model}_softmax.npy"), model)
    truth = reference(example_repository, "particlenet_truth.npy")
    assert (served.argmax(axis=1) == truth).mean() >= 0.6


@pytest.mark.libtorch
@pytest.mark.parametrize("model", ["particlenet", "particlenet_lite"])
def test_particlenet_output_does_not_depend_on_padding(client, example_repository, model):
    # The same jets with P = the longest jet, P = 100 and P = 8 (shorter than k + 1: padded inside
    # the model; jets longer than 8 lose their softest particles, so compare only short jets).
    inputs = {name: reference(example_repository, f"particlenet_{name}.npy")
              for name in ("points", "features", "mask")}
    expected = reference(example_repository, f"{model}_softmax.npy")
    longest = inputs["points"].shape[2]
    padded = {name: np.pad(array, ((0, 0), (0, 0), (0, 100 - longest)))
              for name, array in inputs.items()}
    assert_close(infer(client, model, padded, ["softmax__0"])["softmax__0"], expected,
                 f"{model} at P = 100")
    short = inputs["mask"][:, 0, :].sum(axis=1) <= 8
    if short.any():
        cut = {name: np.ascontiguousarray(array[short][:, :, :8]) for name, array in inputs.items()}
        assert_close(infer(client, model, cut, ["softmax__0"])["softmax__0"], expected[short],
                     f"{model} at P = 8")


@pytest.mark.libtorch
def test_exatrkx_networks_match_in_process(client, example_repository):
    features, _, _ = tracking_event(example_repository, 0)
    embedding = infer(client, "exatrkx_embedding", {"features": features},
                      ["EMBEDDING__0"])["EMBEDDING__0"]
    assert_close(embedding, reference(example_repository, "exatrkx_event0_embedding.npy"),
                 "embedding")
    candidates = reference(example_repository, "exatrkx_event0_candidate_edges.npy")
    filtered = infer(client, "exatrkx_filter", {"features": features, "edges": candidates},
                     ["EDGES__0", "SCORES__1"])
    np.testing.assert_array_equal(
        filtered["EDGES__0"], reference(example_repository, "exatrkx_event0_filtered_edges.npy"))
    assert_close(filtered["SCORES__1"],
                 reference(example_repository, "exatrkx_event0_filter_scores.npy"), "filter")
    scores = infer(client, "exatrkx_gnn", {"features": features, "edges": filtered["EDGES__0"]},
                   ["SCORES__0"])["SCORES__0"]
    assert_close(scores, reference(example_repository, "exatrkx_event0_edge_scores.npy"), "gnn")


@pytest.mark.libtorch
def test_exatrkx_native_steps_match_in_process(client, example_repository):
    # The served FRNN and track building on the in-process intermediate tensors: exact.
    embedding = reference(example_repository, "exatrkx_event0_embedding.npy")
    edges = infer(client, "exatrkx_frnn", {"EMBEDDING": embedding}, ["EDGES"])["EDGES"]
    np.testing.assert_array_equal(
        edges, reference(example_repository, "exatrkx_event0_candidate_edges.npy"))
    features, _, labels = tracking_event(example_repository, 0)
    served = infer(client, "exatrkx_track_building", {
        "EDGES": reference(example_repository, "exatrkx_event0_filtered_edges.npy"),
        "SCORES": reference(example_repository, "exatrkx_event0_edge_scores.npy"),
        "NODES": features}, ["LABELS"])["LABELS"]
    np.testing.assert_array_equal(served, labels)


# --- the whole pipeline ------------------------------------------------------------------------------


@pytest.mark.libtorch
def test_exatrkx_fused_matches_in_process(client, example_repository):
    for index in range(TRACKING_EVENTS):
        features, _, expected = tracking_event(example_repository, index)
        served = infer(client, "exatrkx_fused", {"FEATURES": features}, ["LABELS"])["LABELS"]
        assert served.dtype == np.int64
        np.testing.assert_array_equal(served, expected, err_msg=f"event {index}")


@pytest.mark.libtorch
def test_exatrkx_ensemble_equals_fused(client, example_repository):
    # Starts passing once ensembles (platform "ensemble") are implemented in the core.
    for index in range(TRACKING_EVENTS):
        features, _, expected = tracking_event(example_repository, index)
        fused = infer(client, "exatrkx_fused", {"FEATURES": features}, ["LABELS"])["LABELS"]
        ensemble = infer(client, "exatrkx", {"FEATURES": features}, ["LABELS"])["LABELS"]
        np.testing.assert_array_equal(ensemble, fused, err_msg=f"event {index}")
        np.testing.assert_array_equal(ensemble, expected, err_msg=f"event {index}")


@pytest.mark.libtorch
def test_exatrkx_tracking_efficiency_and_purity(client, example_repository):
    total = tracking.TrackingMetrics()
    for index in range(TRACKING_EVENTS):
        features, particle_id, _ = tracking_event(example_repository, index)
        labels = infer(client, "exatrkx_fused", {"FEATURES": features}, ["LABELS"])["LABELS"]
        event = tracking.TrackingEvent(features=features, particle_id=particle_id,
                                       layer=np.zeros_like(particle_id),
                                       particle_pt=np.zeros(1))
        total.add(tracking.tracking_metrics(event, labels))
    print(f"held-out events: {TRACKING_EVENTS}, reconstructable particles {total.reconstructable},"
          f" efficiency {total.efficiency:.4f}, purity {total.purity:.4f}")
    assert total.efficiency >= 0.90
    assert total.purity >= 0.80


@pytest.mark.libtorch
def test_exatrkx_fused_empty_and_tiny_events(client):
    for count in (0, 1, 2):
        features = np.zeros((count, 3), dtype=np.float32)
        features[:, 0] = 0.5
        labels = infer(client, "exatrkx_fused", {"FEATURES": features}, ["LABELS"])["LABELS"]
        assert labels.shape == (count,)


@pytest.mark.libtorch
def test_exatrkx_fused_rejects_a_bad_shape(client):
    features = np.zeros((4, 3, 1), dtype=np.float32)
    expect_error(lambda: infer(client, "exatrkx_fused", {"FEATURES": features}, ["LABELS"]),
                 "INVALID_ARGUMENT")


# --- native algorithm backends (no LibTorch) -------------------------------------------------------

FRNN_CONFIG = """name: "frnn"
backend: "frnn"
max_batch_size: 0
input [ { name: "EMBEDDING" data_type: TYPE_FP32 dims: [ -1, -1 ] } ]
output [ { name: "EDGES" data_type: TYPE_INT64 dims: [ 2, -1 ] } ]
parameters { key: "radius" value { string_value: "0.3" } }
parameters { key: "max_neighbours" value { string_value: "12" } }
"""

COMPONENTS_CONFIG = """name: "connected_components"
backend: "connected_components"
max_batch_size: 0
input [
  { name: "EDGES" data_type: TYPE_INT64 dims: [ 2, -1 ] },
  { name: "SCORES" data_type: TYPE_FP32 dims: [ -1 ] },
  { name: "NODES" data_type: TYPE_FP32 dims: [ -1, -1 ] }
]
output [ { name: "LABELS" data_type: TYPE_INT64 dims: [ -1 ] } ]
parameters { key: "threshold" value { string_value: "0.4" } }
"""


@pytest.fixture(scope="module")
def native_server(tmp_path_factory) -> ServerProcess:
    repository = tmp_path_factory.mktemp("native_algorithms")
    write_model(repository, "frnn", FRNN_CONFIG)
    write_model(repository, "connected_components", COMPONENTS_CONFIG)
    write_model(repository, "frnn_no_radius", FRNN_CONFIG.replace('"frnn"\nbackend', '"frnn_no_radius"\nbackend')
                .replace('parameters { key: "radius" value { string_value: "0.3" } }\n', ""))
    server = ServerProcess(["--model-repository", str(repository)],
                           tmp_path_factory.mktemp("native_algorithms_logs"), "native-algorithms")
    yield server
    server.stop()


@pytest.fixture
def native_client(native_server):
    with native_server.client() as connection:
        yield connection


def test_frnn_backend_matches_brute_force(native_client):
    rng = np.random.default_rng(5)
    for count, dimensions in ((0, 8), (1, 8), (2, 3), (300, 8), (1000, 3), (500, 1)):
        points = rng.uniform(-1.0, 1.0, (count, dimensions)).astype(np.float32)
        served = infer(native_client, "frnn", {"EMBEDDING": points}, ["EDGES"])["EDGES"]
        assert served.dtype == np.int64 and served.shape[0] == 2
        np.testing.assert_array_equal(served, tracking.frnn_reference(points, 0.3, 12),
                                      err_msg=f"N = {count}, D = {dimensions}")


def test_frnn_backend_duplicates_and_all_within_radius(native_client):
    points = np.full((20, 8), 0.25, dtype=np.float32)
    served = infer(native_client, "frnn", {"EMBEDDING": points}, ["EDGES"])["EDGES"]
    np.testing.assert_array_equal(served, tracking.frnn_reference(points, 0.3, 12))
    assert served.shape[1] > 0


def test_frnn_backend_rejects_bad_points(native_client):
    points = np.zeros((3, 2), dtype=np.float32)
    points[1, 1] = np.nan
    expect_error(lambda: infer(native_client, "frnn", {"EMBEDDING": points}, ["EDGES"]),
                 "INVALID_ARGUMENT", "non-finite")


def test_frnn_model_without_radius_does_not_load(native_server):
    with native_server.client() as connection:
        assert not connection.is_model_ready("frnn_no_radius")
        assert connection.is_model_ready("frnn")


def test_connected_components_backend_matches_reference(native_client):
    rng = np.random.default_rng(6)
    for nodes, density in ((0, 0), (1, 0), (5, 0), (50, 1.0), (1000, 1.5), (3000, 0.7)):
        edge_count = int(nodes * density)
        edges = rng.integers(0, max(nodes, 1), (2, edge_count)).astype(np.int64)
        scores = rng.uniform(0.0, 1.0, edge_count).astype(np.float32)
        node_tensor = np.zeros((nodes, 3), dtype=np.float32)
        served = infer(native_client, "connected_components",
                       {"EDGES": edges, "SCORES": scores, "NODES": node_tensor},
                       ["LABELS"])["LABELS"]
        np.testing.assert_array_equal(
            served, tracking.connected_components_reference(nodes, edges, scores, 0.4),
            err_msg=f"N = {nodes}, E = {edge_count}")


def test_connected_components_backend_rejects_bad_edges(native_client):
    edges = np.array([[0, 1], [1, 7]], dtype=np.int64)
    scores = np.array([0.9, 0.1], dtype=np.float32)
    expect_error(lambda: infer(native_client, "connected_components",
                               {"EDGES": edges, "SCORES": scores,
                                "NODES": np.zeros((3, 3), np.float32)}, ["LABELS"]),
                 "INVALID_ARGUMENT", "outside [0, 3)")
    expect_error(lambda: infer(native_client, "connected_components",
                               {"EDGES": edges, "SCORES": scores[:1],
                                "NODES": np.zeros((3, 3), np.float32)}, ["LABELS"]),
                 "INVALID_ARGUMENT", "SCORES")


@pytest.mark.libtorch
def test_exatrkx_parameters_are_in_the_configs(example_repository):
    # The cuts used for the reference data are the ones in the served configs.
    parameters = json.loads((example_repository.reference / "exatrkx_parameters.json").read_text())
    for model in ("exatrkx_frnn", "exatrkx_fused"):
        config = (example_repository.repository / model / "config.pbtxt").read_text()
        assert f'string_value: "{parameters["radius"]}"' in config
    track_building = (example_repository.repository / "exatrkx_track_building" /
                      "config.pbtxt").read_text()
    assert f'string_value: "{parameters["threshold"]}"' in track_building
