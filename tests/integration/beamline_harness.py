"""Helpers for the black-box tests: start the real `beamline serve`, write model repositories, and
check errors the way a Triton client sees them.

Everything stays on the loopback interface, binds port 0 and writes only below pytest's temporary
directories, so several runs can share a machine.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_LINE = re.compile(r"grpc=\S+:(\d+)")
# The other endpoints of the ready line; absent when disabled.
READY_HTTP = re.compile(r"\bhttp=\S+:(\d+)")
READY_METRICS = re.compile(r"\bmetrics=\S+:(\d+)")
# Reports that sanitizer builds print without necessarily changing the exit code.
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")

READY_TIMEOUT_S = float(os.environ.get("BEAMLINE_READY_TIMEOUT", "60"))
STOP_TIMEOUT_S = float(os.environ.get("BEAMLINE_STOP_TIMEOUT", "30"))


def beamline_binary() -> Path:
    """The server under test: $BEAMLINE_BIN, else the release build in this checkout."""
    default = REPO_ROOT / "build" / "release" / "bin" / "beamline"
    return Path(os.environ.get("BEAMLINE_BIN", default))


def backend_directory() -> Path:
    """Where the server finds its backend plug-ins: $BEAMLINE_BACKEND_DIR or <bin>/../backends."""
    explicit = os.environ.get("BEAMLINE_BACKEND_DIR")
    if explicit:
        return Path(explicit)
    return beamline_binary().resolve().parent.parent / "backends"


def libtorch_backend_available() -> bool:
    """False for builds without LibTorch (sanitizer presets); $BEAMLINE_HAS_LIBTORCH overrides."""
    override = os.environ.get("BEAMLINE_HAS_LIBTORCH")
    if override is not None:
        return override not in ("0", "", "false", "no")
    directory = backend_directory()
    if not directory.is_dir():
        return True  # An installed layout we do not know: assume a full build.
    # Only plug-in files count: the build tree also has CMake folders named after the backends.
    return any(path.is_file() and ".so" in path.suffixes and "torch" in path.name
               for path in directory.iterdir())


# Every server started by this process, so that none outlives the session even after a crash.
_LIVE_SERVERS: list["ServerProcess"] = []


class ServerProcess:
    """One `beamline serve` process on a free loopback port.

    The constructor returns once the server has printed its ready line; `stop()` asks it to drain
    with SIGTERM and fails the test unless it exits 0 in time. A reader thread drains stdout so the
    pipe never fills; stderr goes to a file that failures print.
    """

    def __init__(self, serve_args: Sequence[str], log_dir: Path, name: str = "beamline",
                 ready_timeout_s: float = READY_TIMEOUT_S):
        binary = beamline_binary()
        if not binary.exists():
            pytest.fail(f"server binary {binary} does not exist: build it (cmake --preset release "
                        f"&& cmake --build --preset release) or set BEAMLINE_BIN", pytrace=False)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.stderr_path = log_dir / f"{name}.stderr.log"
        self.stdout_lines: list[str] = []
        self.args = [str(binary), "serve", "--grpc-port", "0", "--grpc-address", "127.0.0.1"]
        # HTTP and metrics on free loopback ports too, unless the test chooses.
        for flag, value in (("--http-port", "0"), ("--http-address", "127.0.0.1"),
                            ("--metrics-port", "0"), ("--metrics-address", "127.0.0.1")):
            if flag not in serve_args:
                self.args += [flag, value]
        self.args += list(serve_args)
        if os.environ.get("BEAMLINE_BACKEND_DIR") and "--backend-directory" not in serve_args:
            self.args += ["--backend-directory", os.environ["BEAMLINE_BACKEND_DIR"]]
        if os.environ.get("BEAMLINE_TEST_LOG_VERBOSE") and "--log-verbose" not in serve_args:
            self.args += ["--log-verbose", os.environ["BEAMLINE_TEST_LOG_VERBOSE"]]
        self.port: int | None = None
        self.http_port: int | None = None  # None when HTTP is disabled
        self.metrics_port: int | None = None  # None when metrics are disabled
        self.returncode: int | None = None
        self.signals_sent: list[int] = []
        self._ready = threading.Event()
        self._stderr_file = open(self.stderr_path, "wb")
        # A session of its own: a Ctrl-C in the terminal reaches pytest, which then stops us.
        self.process = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=self._stderr_file, start_new_session=True)
        _LIVE_SERVERS.append(self)
        self._reader = threading.Thread(target=self._read_stdout, name=f"{name}-stdout",
                                        daemon=True)
        self._reader.start()
        deadline = time.monotonic() + ready_timeout_s
        while not self._ready.wait(0.05):
            if self.process.poll() is not None:
                self._finish(self.process.returncode)
                pytest.fail(f"{name} exited with code {self.process.returncode} before it was "
                            f"ready\ncommand: {' '.join(self.args)}\n{self.describe()}",
                            pytrace=False)
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"{name} printed no ready line within {ready_timeout_s:.0f} s\n"
                            f"command: {' '.join(self.args)}\n{self.describe()}", pytrace=False)

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.stdout_lines.append(line)
            match = READY_LINE.search(line)
            if match and not self._ready.is_set():
                self.port = int(match.group(1))
                http = READY_HTTP.search(line)
                self.http_port = int(http.group(1)) if http else None
                metrics = READY_METRICS.search(line)
                self.metrics_port = int(metrics.group(1)) if metrics else None
                self._ready.set()

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        """host:port of the HTTP front end (what tritonclient.http takes)."""
        assert self.http_port is not None, "this server runs without HTTP"
        return f"127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        """http://host:port/metrics"""
        assert self.metrics_port is not None, "this server runs without metrics"
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def http_client(self, **kwargs):
        """A fresh tritonclient HTTP client; the caller closes it."""
        import tritonclient.http as httpclient
        return httpclient.InferenceServerClient(self.http_url, **kwargs)

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self, **kwargs) -> grpcclient.InferenceServerClient:
        """A fresh tritonclient gRPC client; the caller closes it (use it as a context manager)."""
        return grpcclient.InferenceServerClient(self.url, **kwargs)

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.url)

    def stderr_text(self) -> str:
        if not self._stderr_file.closed:
            self._stderr_file.flush()
        return self.stderr_path.read_text("utf-8", "replace")

    def describe(self, tail_chars: int = 6000) -> str:
        text = self.stderr_text()
        if len(text) > tail_chars:
            text = "...\n" + text[-tail_chars:]
        return (f"--- {self.name} stdout ---\n" + "\n".join(self.stdout_lines[-50:]) +
                f"\n--- {self.name} stderr ({self.stderr_path}) ---\n{text}")

    def is_running(self) -> bool:
        return self.process.poll() is None

    def send_signal(self, signum: int) -> None:
        self.signals_sent.append(signum)
        self.process.send_signal(signum)

    def wait(self, timeout_s: float) -> int | None:
        """The exit code, or None if the process is still running after `timeout_s`."""
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
        self._finish(code)
        return code

    def stop(self, signum: int = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Ask the server to drain and exit; fail unless it exits 0 in time and cleanly. If a test
        already sent a signal, this only waits (a second signal could mean "exit now")."""
        if not self.signals_sent and self.returncode is None and self.is_running():
            self.send_signal(signum)
        signum = self.signals_sent[-1] if self.signals_sent else signum
        code = self.wait(timeout_s)
        if code is None:
            self.kill()
            pytest.fail(f"{self.name} still running {timeout_s:.0f} s after "
                        f"{signal.Signals(signum).name}; killed\n{self.describe()}", pytrace=False)
        if code != 0:
            pytest.fail(f"{self.name} exited with code {code} after {signal.Signals(signum).name}"
                        f"\n{self.describe()}", pytrace=False)
        self.check_no_sanitizer_reports()

    def kill(self) -> None:
        if self.is_running():
            self.process.kill()
        self._finish(self.process.wait(timeout=30))

    def check_no_sanitizer_reports(self) -> None:
        text = self.stderr_text()
        found = [marker for marker in SANITIZER_MARKERS if marker in text]
        if found:
            pytest.fail(f"{self.name} printed sanitizer reports {found}\n{self.describe(20000)}",
                        pytrace=False)

    def _finish(self, code: int) -> None:
        self.returncode = code
        if self in _LIVE_SERVERS:
            _LIVE_SERVERS.remove(self)
        self._reader.join(timeout=5)
        if not self._stderr_file.closed:
            self._stderr_file.close()


def kill_leftover_servers() -> None:
    """Last resort at session end: kill servers whose owners did not stop them."""
    for server in list(_LIVE_SERVERS):
        server.kill()


# ---------------------------------------------------------------------------------------------
# Model repositories


def write_model(repository: Path, name: str, config: str,
                files: dict[str, bytes] | None = None, versions: Iterable[int] = (1,)) -> Path:
    """Create <repository>/<name>/config.pbtxt, one directory per version, and extra files
    (paths relative to the model directory, e.g. {"1/model.pt": b"..."})."""
    model_dir = repository / name
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(config)
    for version in versions:
        (model_dir / str(version)).mkdir(exist_ok=True)
    for relative, content in (files or {}).items():
        path = model_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return model_dir


def identity_config(name: str, tensors: Sequence[tuple[str, str]] = (("TYPE_FP32", "[ -1 ]"),),
                    max_batch_size: int = 8, execute_delay_ms: int | None = None,
                    extra: str = "") -> str:
    """config.pbtxt for the native `identity` test backend: input INPUTi goes to output OUTPUTi.
    `tensors` holds (data type, dims) per input/output pair."""
    inputs = ",\n".join(f'  {{ name: "INPUT{i}" data_type: {dtype} dims: {dims} }}'
                        for i, (dtype, dims) in enumerate(tensors))
    outputs = ",\n".join(f'  {{ name: "OUTPUT{i}" data_type: {dtype} dims: {dims} }}'
                         for i, (dtype, dims) in enumerate(tensors))
    text = (f'name: "{name}"\nbackend: "identity"\nmax_batch_size: {max_batch_size}\n'
            f"input [\n{inputs}\n]\noutput [\n{outputs}\n]\n")
    if execute_delay_ms is not None:
        text += ('parameters { key: "execute_delay_ms" value { string_value: "'
                 f'{execute_delay_ms}" }} }}\n')
    return text + extra


# Every wire datatype with its config.pbtxt name.
ALL_DATATYPES = {"BOOL": "TYPE_BOOL", "UINT8": "TYPE_UINT8", "UINT16": "TYPE_UINT16",
                 "UINT32": "TYPE_UINT32", "UINT64": "TYPE_UINT64", "INT8": "TYPE_INT8",
                 "INT16": "TYPE_INT16", "INT32": "TYPE_INT32", "INT64": "TYPE_INT64",
                 "FP16": "TYPE_FP16", "FP32": "TYPE_FP32", "FP64": "TYPE_FP64",
                 "BYTES": "TYPE_STRING", "BF16": "TYPE_BF16"}

# Models of the native repository that the default server serves next to the example repository.
# They need no LibTorch, so the error-path tests also run in sanitizer builds.
NATIVE_MODELS = {
    # FP32, any length, batching: the workhorse for "is the server still serving?".
    "native_identity": identity_config("native_identity"),
    # Two fixed-shape inputs/outputs: shape, rank, missing-input and output-subset checks.
    "native_pair": identity_config("native_pair", (("TYPE_FP32", "[ 4 ]"), ("TYPE_FP32", "[ 4 ]"))),
    # BYTES without batching.
    "native_bytes": identity_config("native_bytes", (("TYPE_STRING", "[ -1 ]"),), max_batch_size=0),
    # A few milliseconds per execution, so that async requests really overlap; also carries a
    # model parameter for the config round trip.
    "native_delayed": identity_config("native_delayed", execute_delay_ms=20),
    # One INPUTi/OUTPUTi pair per datatype, in ALL_DATATYPES order (INPUT0 is BOOL, ...).
    "native_all_types": identity_config(
        "native_all_types", tuple((config, "[ -1 ]") for config in ALL_DATATYPES.values())),
}


def write_native_repository(repository: Path) -> Path:
    for name, config in NATIVE_MODELS.items():
        write_model(repository, name, config)
    return repository


# ---------------------------------------------------------------------------------------------
# Requests and assertions


def make_input(name: str, array: np.ndarray, datatype: str | None = None) -> grpcclient.InferInput:
    if datatype is None:
        from tritonclient.utils import np_to_triton_dtype
        datatype = np_to_triton_dtype(array.dtype)
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def expect_error(call: Callable[[], object], codes: str | Sequence[str],
                 *fragments: str) -> InferenceServerException:
    """Run `call`, require an InferenceServerException whose gRPC code is one of `codes` (names
    such as "NOT_FOUND") and whose message contains every fragment; return the exception."""
    allowed = [codes] if isinstance(codes, str) else list(codes)
    try:
        result = call()
    except InferenceServerException as error:
        status = error.status() or ""
        assert any(status == f"StatusCode.{code}" for code in allowed), (
            f"expected status {allowed}, got {status!r}: {error.message()!r}")
        message = error.message() or ""
        for fragment in fragments:
            assert fragment in message, f"{fragment!r} not in error message {message!r}"
        return error
    pytest.fail(f"expected an error with status {allowed}, the call returned {result!r}")


def expect_rpc_error(call: Callable[[], object], codes: grpc.StatusCode | Sequence[grpc.StatusCode],
                     *fragments: str) -> grpc.RpcError:
    """Like expect_error for calls made with a raw service stub."""
    allowed = [codes] if isinstance(codes, grpc.StatusCode) else list(codes)
    try:
        result = call()
    except grpc.RpcError as error:
        assert error.code() in allowed, (
            f"expected {allowed}, got {error.code()}: {error.details()!r}")
        details = error.details() or ""
        for fragment in fragments:
            assert fragment in details, f"{fragment!r} not in error details {details!r}"
        return error
    pytest.fail(f"expected an RPC error {allowed}, the call returned {result!r}")


def assert_still_serving(server: ServerProcess, model: str = "native_identity") -> None:
    """A fresh client gets a correct answer from `model` (a FP32 [-1] identity with batching)."""
    assert server.is_running(), f"server died\n{server.describe()}"
    data = np.arange(5, dtype=np.float32).reshape(1, 5) * 1.5
    with server.client() as client:
        result = client.infer(model, [make_input("INPUT0", data)], client_timeout=30)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def raw_stub(channel: grpc.Channel) -> service_pb2_grpc.GRPCInferenceServiceStub:
    return service_pb2_grpc.GRPCInferenceServiceStub(channel)


def raw_request(model: str, inputs: Sequence[tuple[str, str, Sequence[int]]],
                raw_contents: Sequence[bytes] = (), outputs: Sequence[str] = (),
                version: str = "") -> service_pb2.ModelInferRequest:
    """A ModelInferRequest built field by field, for requests tritonclient refuses to send.
    `inputs` holds (name, datatype, shape); typed contents can be set on the result afterwards."""
    request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    for name, datatype, shape in inputs:
        tensor = request.inputs.add()
        tensor.name = name
        tensor.datatype = datatype
        tensor.shape.extend(shape)
    request.raw_input_contents.extend(raw_contents)
    for name in outputs:
        request.outputs.add().name = name
    return request


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)


def repository_index(server: ServerProcess) -> dict[str, object]:
    """RepositoryIndex as {model name: entry} (the last entry wins for multi-version models)."""
    with server.client() as client:
        index = client.get_model_repository_index()
    return {entry.name: entry for entry in index.models}


# ---------------------------------------------------------------------------------------------
# HTTP


class HttpReply:
    """One HTTP response, read completely."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body

    def json(self):
        import json
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"HttpReply({self.status}, {self.headers}, {self.body[:300]!r})"


def http_request(server: ServerProcess, method: str, path: str, body: bytes | str = b"",
                 headers: dict[str, str] | None = None, port: int | None = None,
                 connection=None) -> HttpReply:
    """A request with http.client (no client-side checks); `connection` reuses a keep-alive
    http.client.HTTPConnection."""
    import http.client
    if isinstance(body, str):
        body = body.encode()
    own = connection is None
    if own:
        connection = http.client.HTTPConnection("127.0.0.1", port or server.http_port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return HttpReply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        if own:
            connection.close()


def expect_http_error(reply: HttpReply, status: int, *fragments: str) -> str:
    """Require `status` and a JSON body {"error": "..."} containing every fragment; return the
    message."""
    assert reply.status == status, f"expected HTTP {status}, got {reply!r}"
    assert reply.headers.get("content-type", "").startswith("application/json"), reply
    message = reply.json()["error"]
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in error message {message!r}"
    return message


def assert_still_serving_http(server: ServerProcess, model: str = "native_identity") -> None:
    """Both protocols still answer `model` correctly."""
    import tritonclient.http as httpclient
    assert server.is_running(), f"server died\n{server.describe()}"
    data = np.arange(5, dtype=np.float32).reshape(1, 5) * 2.5
    with server.http_client() as client:
        tensor = httpclient.InferInput("INPUT0", [1, 5], "FP32")
        tensor.set_data_from_numpy(data)
        result = client.infer(model, [tensor])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)
    assert_still_serving(server, model)
