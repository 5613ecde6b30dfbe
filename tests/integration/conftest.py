"""Fixtures for the black-box tests: the example model repository, a shared default server, and a
factory for servers over temporary repositories.

Environment:
  BEAMLINE_BIN            server binary (default build/release/bin/beamline)
  BEAMLINE_BACKEND_DIR    passed as --backend-directory (default: the server's own default)
  BEAMLINE_HAS_LIBTORCH   0/1, overrides the detection of the LibTorch backend plug-in
  BEAMLINE_REUSE_MODELS=1 use models/repository and models/reference if they exist instead of
                          generating the example repository into a temporary directory
  BEAMLINE_TEST_LOG_VERBOSE  passed as --log-verbose
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pytest

from beamline_harness import (REPO_ROOT, ServerProcess, kill_leftover_servers,
                              libtorch_backend_available, write_native_repository)

SYSTEM_PYTHON = os.environ.get("BEAMLINE_MODELS_PYTHON", "/usr/bin/python3")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "libtorch: needs the LibTorch backend and the example "
                            "repository (skipped in builds without LibTorch)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if libtorch_backend_available():
        return
    skip = pytest.mark.skip(reason="this build has no LibTorch backend plug-in")
    for item in items:
        if "libtorch" in item.keywords:
            item.add_marker(skip)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    kill_leftover_servers()


@dataclass(frozen=True)
class ExampleRepository:
    repository: Path
    reference: Path


@pytest.fixture(scope="session")
def example_repository(tmp_path_factory: pytest.TempPathFactory) -> ExampleRepository:
    """The example repository (identity_* and cnn_patch TorchScript models) with reference data.

    Generated once per session with the system Python (which has torch), unless
    BEAMLINE_REUSE_MODELS=1 and models/repository already exists."""
    checked_in = ExampleRepository(REPO_ROOT / "models" / "repository",
                                   REPO_ROOT / "models" / "reference")
    if os.environ.get("BEAMLINE_REUSE_MODELS") == "1" and checked_in.repository.is_dir():
        return checked_in
    script = REPO_ROOT / "models" / "make_example_repository.py"
    if not script.exists():
        pytest.fail(f"{script} does not exist", pytrace=False)
    base = tmp_path_factory.mktemp("example_models")
    generated = ExampleRepository(base / "repository", base / "reference")
    command = [SYSTEM_PYTHON, str(script), "--output", str(generated.repository),
               "--reference", str(generated.reference)]
    try:
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(command)} took more than 900 s", pytrace=False)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed with code {done.returncode}\n"
                    f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}", pytrace=False)
    return generated


@pytest.fixture(scope="session")
def native_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Models of the native `identity` backend (see beamline_harness.NATIVE_MODELS)."""
    return write_native_repository(tmp_path_factory.mktemp("native_models"))


@pytest.fixture(scope="session")
def default_server(request: pytest.FixtureRequest, native_repository: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    """One server for the whole session, in the default control mode, over two repositories:
    the example repository (when LibTorch is built) and the native one."""
    repositories = [native_repository]
    if libtorch_backend_available():
        repositories.insert(0, request.getfixturevalue("example_repository").repository)
    args: list[str] = []
    for repository in repositories:
        args += ["--model-repository", str(repository)]
    server = ServerProcess(args, tmp_path_factory.mktemp("default_server_logs"), "default-server")
    yield server
    server.stop()


StartServer = Callable[..., ServerProcess]


@pytest.fixture
def start_server(tmp_path: Path) -> StartServer:
    """Factory: start_server(repositories, *extra_args, name=...) starts a server over the given
    repositories; every server still running at the end of the test is stopped, and must exit 0."""
    started: list[ServerProcess] = []

    def start(repositories: Path | Sequence[Path], *extra_args: str,
              name: str = "server") -> ServerProcess:
        if isinstance(repositories, Path):
            repositories = [repositories]
        args: list[str] = []
        for repository in repositories:
            args += ["--model-repository", str(repository)]
        args += list(extra_args)
        server = ServerProcess(args, tmp_path / "logs", f"{name}-{len(started)}")
        started.append(server)
        return server

    yield start
    for server in started:
        if server.returncode is None:
            server.stop()


@pytest.fixture
def model_repository(tmp_path: Path) -> Path:
    """An empty repository directory for a test to fill."""
    path = tmp_path / "repository"
    path.mkdir()
    return path


@pytest.fixture
def client(default_server: ServerProcess):
    with default_server.client() as connection:
        yield connection


@pytest.fixture
def stub(default_server: ServerProcess):
    from beamline_harness import raw_stub
    with default_server.channel() as channel:
        yield raw_stub(channel)


def pytest_report_header(config: pytest.Config) -> list[str]:
    from beamline_harness import backend_directory, beamline_binary
    return [f"beamline binary: {beamline_binary()} (exists: {beamline_binary().exists()})",
            f"backend directory: {backend_directory()}, LibTorch backend: "
            f"{libtorch_backend_available()}", f"python: {sys.executable}"]


@pytest.fixture
def regions():
    """make(byte_size) -> (key, handle): a POSIX shared memory region made with tritonclient's shm
    utilities, destroyed after the test."""
    import uuid

    import tritonclient.utils.shared_memory as shm
    made = []

    def make(byte_size: int):
        key = f"/beamline_test_{uuid.uuid4().hex[:12]}"
        handle = shm.create_shared_memory_region(key.strip("/"), key, byte_size)
        made.append(handle)
        return key, handle

    yield make
    for handle in made:
        shm.destroy_shared_memory_region(handle)
