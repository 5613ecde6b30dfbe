"""Model control modes: `explicit` (load/unload RPCs and --load-model), `none` (the RPCs are
refused) and `poll` (the repository is rescanned while the server runs)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from beamline_harness import (assert_still_serving, expect_error, identity_config, make_input,
                              raw_stub, repository_index, wait_until, write_model)

POLL_WAIT_S = 20


def _infer_ones(server, model):
    data = np.ones((1, 3), dtype=np.float32)
    with server.client() as client:
        return client.infer(model, [make_input("INPUT0", data)], client_timeout=30)


def _ready(server, model):
    with server.client() as client:
        return client.is_model_ready(model)


@pytest.fixture
def explicit_server(start_server, model_repository):
    for name in ("alpha", "beta"):
        write_model(model_repository, name, identity_config(name))
    return start_server(model_repository, "--model-control-mode", "explicit",
                        "--load-model", "alpha", name="explicit")


# --- explicit mode -------------------------------------------------------------------------------

def test_explicit_mode_loads_only_listed_models(explicit_server):
    assert _ready(explicit_server, "alpha")
    assert not _ready(explicit_server, "beta")
    index = repository_index(explicit_server)
    assert set(index) == {"alpha", "beta"}, "the index lists every model in the repository"
    assert index["alpha"].state == "READY"
    assert index["alpha"].version == "1"
    assert index["beta"].state != "READY"


def test_index_ready_filter(explicit_server):
    with explicit_server.channel() as channel:
        response = raw_stub(channel).RepositoryIndex(service_pb2.RepositoryIndexRequest(ready=True))
    assert [entry.name for entry in response.models] == ["alpha"]


def test_load_makes_model_ready(explicit_server):
    with explicit_server.client() as client:
        client.load_model("beta")
        assert client.is_model_ready("beta")
    assert repository_index(explicit_server)["beta"].state == "READY"
    _infer_ones(explicit_server, "beta")


def test_unload_then_infer_fails_and_load_restores(explicit_server):
    with explicit_server.client() as client:
        client.unload_model("alpha")
        assert wait_until(lambda: not client.is_model_ready("alpha"), 10)
    entry = repository_index(explicit_server)["alpha"]
    assert entry.state == "UNAVAILABLE"
    expect_error(lambda: _infer_ones(explicit_server, "alpha"), ("UNAVAILABLE", "NOT_FOUND"),
                 "alpha")
    with explicit_server.client() as client:
        client.load_model("alpha")
        assert client.is_model_ready("alpha")
    _infer_ones(explicit_server, "alpha")
    assert repository_index(explicit_server)["alpha"].state == "READY"


def test_load_of_unknown_model_fails(explicit_server):
    with explicit_server.client() as client:
        expect_error(lambda: client.load_model("no_such_model"),
                     ("INVALID_ARGUMENT", "NOT_FOUND", "UNAVAILABLE"), "no_such_model")
    assert_still_serving(explicit_server, "alpha")


def test_load_rereads_a_changed_config(explicit_server, model_repository):
    write_model(model_repository, "alpha", identity_config("alpha", max_batch_size=4))
    with explicit_server.client() as client:
        client.load_model("alpha")
        assert client.get_model_config("alpha").config.max_batch_size == 4
        too_big = make_input("INPUT0", np.ones((5, 2), dtype=np.float32))
        expect_error(lambda: client.infer("alpha", [too_big]), "INVALID_ARGUMENT")
    assert_still_serving(explicit_server, "alpha")


def test_load_model_star_loads_everything(start_server, model_repository):
    for name in ("alpha", "beta"):
        write_model(model_repository, name, identity_config(name))
    server = start_server(model_repository, "--model-control-mode", "explicit",
                          "--load-model", "*", name="explicit-star")
    assert _ready(server, "alpha") and _ready(server, "beta")


def test_load_model_flag_repeats(start_server, model_repository):
    for name in ("alpha", "beta", "gamma"):
        write_model(model_repository, name, identity_config(name))
    server = start_server(model_repository, "--model-control-mode", "explicit",
                          "--load-model", "alpha", "--load-model", "gamma", name="explicit-two")
    assert [_ready(server, name) for name in ("alpha", "beta", "gamma")] == [True, False, True]


# --- none mode -----------------------------------------------------------------------------------

def test_load_and_unload_refused_in_none_mode(default_server, client):
    # Triton: UNAVAILABLE "explicit model load / unload is not allowed if polling is enabled".
    expect_error(lambda: client.load_model("native_identity"), "UNAVAILABLE")
    expect_error(lambda: client.unload_model("native_identity"), "UNAVAILABLE")
    assert client.is_model_ready("native_identity")
    assert_still_serving(default_server)


def test_none_mode_loads_everything_at_start(client):
    index = {entry.name: entry.state for entry in client.get_model_repository_index().models}
    for name in ("native_identity", "native_pair", "native_bytes", "native_delayed"):
        assert index.get(name) == "READY", f"{name}: {index.get(name)!r}"


# --- poll mode -----------------------------------------------------------------------------------

@pytest.fixture
def poll_server(start_server, model_repository):
    write_model(model_repository, "alpha", identity_config("alpha"))
    return start_server(model_repository, "--model-control-mode", "poll",
                        "--repository-poll-secs", "1", name="poll")


def test_poll_mode_picks_up_a_new_model(poll_server, model_repository, tmp_path):
    assert not _ready(poll_server, "gamma")
    # Written elsewhere and renamed in, so a scan never sees a half-written model.
    staged = write_model(tmp_path / "staging", "gamma", identity_config("gamma"))
    os.rename(staged, model_repository / "gamma")
    assert wait_until(lambda: _ready(poll_server, "gamma"), POLL_WAIT_S), (
        f"gamma not ready {POLL_WAIT_S} s after it appeared\n{poll_server.describe()}")
    _infer_ones(poll_server, "gamma")
    assert repository_index(poll_server)["gamma"].state == "READY"
    assert_still_serving(poll_server, "alpha")


def test_poll_mode_unloads_a_removed_model(poll_server, model_repository, tmp_path):
    assert _ready(poll_server, "alpha")
    os.rename(model_repository / "alpha", tmp_path / "alpha-removed")
    assert wait_until(lambda: not _ready(poll_server, "alpha"), POLL_WAIT_S), (
        f"alpha still ready {POLL_WAIT_S} s after its directory was removed")


def test_poll_mode_keeps_old_model_when_update_is_broken(poll_server, model_repository):
    (model_repository / "alpha" / "config.pbtxt").write_text('name: "alpha"\nbackend: [ broken\n')
    time.sleep(3.5)  # three poll periods
    assert_still_serving(poll_server, "alpha")


def test_load_refused_in_poll_mode(poll_server):
    with poll_server.client() as client:
        expect_error(lambda: client.load_model("alpha"), "UNAVAILABLE")
