"""Black-box tests of beamline's event-processing client (EventClient, ServerRegistry, LocalServer,
shared memory) against the real server binary, through `beamline_client_driver`
(tests/integration/client/client_driver.cc), which prints one line per event and a summary with
a checksum of every output.

Covered: the three modes give identical outputs (gRPC, shared memory, compression, in-process);
ragged entries; deadlines in the stated unit; kill -9 of one of two servers mid-run (every event
completes through the other, none lost or duplicated); the fallback server starts, serves and
stops at exit, also when the client is killed; shared-memory outputs equal gRPC outputs; bad
shared-memory requests get clear errors.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from beamline_harness import beamline_binary, backend_directory, identity_config, wait_until, write_model

EVENT_LINE = re.compile(r"^event (\d+) (ok|failed) stream=\d+ server=(\S+) attempts=(\d+) "
                        r"requests=(\d+) shm=(\d) ms=([\d.]+)")
SUMMARY_LINE = re.compile(r"^summary events=(\d+) failed=(\d+) checksum=([0-9a-f]+)")


def driver_binary() -> Path:
    return beamline_binary().resolve().parent / "beamline_client_driver"


pytestmark = pytest.mark.skipif(not driver_binary().exists(),
                                reason="beamline_client_driver is not built")


class DriverRun:
    def __init__(self, completed_stdout: str, stderr: str, returncode: int):
        self.stdout = completed_stdout
        self.stderr = stderr
        self.returncode = returncode
        self.events = [EVENT_LINE.match(line) for line in completed_stdout.splitlines()]
        self.events = [m for m in self.events if m]
        summary = [SUMMARY_LINE.match(line) for line in completed_stdout.splitlines()]
        summary = [m for m in summary if m]
        self.summary = summary[-1] if summary else None

    @property
    def checksum(self) -> str:
        assert self.summary, self.describe()
        return self.summary.group(3)

    def describe(self) -> str:
        return f"rc={self.returncode}\n--- stdout ---\n{self.stdout[-6000:]}\n--- stderr ---\n{self.stderr[-6000:]}"

    def assert_all_ok(self, events: int) -> None:
        assert self.returncode == 0, self.describe()
        ids = sorted(int(m.group(1)) for m in self.events)
        assert ids == list(range(events)), f"events lost or duplicated: {ids}\n{self.describe()}"
        assert all(m.group(2) == "ok" for m in self.events), self.describe()


def run_driver(*args: str, timeout: float = 120, env: dict | None = None) -> DriverRun:
    command = [str(driver_binary()), "run", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    return DriverRun(done.stdout, done.stderr, done.returncode)


@pytest.fixture(scope="module")
def client_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("client_models")
    write_model(repository, "native_identity", identity_config("native_identity"))
    # Fixed dims: outputs can be written into the client's shared memory too.
    write_model(repository, "fixed16", identity_config("fixed16", (("TYPE_FP32", "[ 16 ]"),)))
    # Every execution takes 1 s: for deadlines.
    write_model(repository, "slow", identity_config("slow", execute_delay_ms=1000))
    # A few ms per execution, two instances: a run of 2 streams lasts long enough to kill a server.
    write_model(repository, "paced", identity_config(
        "paced", execute_delay_ms=4, extra="instance_group [ { count: 2 kind: KIND_CPU } ]\n"))
    # No batch dimension: the first dim is the outer dimension.
    write_model(repository, "unbatched", identity_config("unbatched", max_batch_size=0))
    return repository


@pytest.fixture(scope="module")
def shm_server(client_repository: Path, tmp_path_factory: pytest.TempPathFactory):
    from beamline_harness import ServerProcess
    server = ServerProcess(["--model-repository", str(client_repository), "--allow-client-shm", "true"],
                           tmp_path_factory.mktemp("client_server_logs"), "client-server")
    yield server
    server.stop()


def test_three_modes_give_identical_outputs(shm_server):
    checksums = {}
    for mode in ("Sync", "Async", "PseudoAsync"):
        for shm in ("true", "false"):
            result = run_driver("--server", shm_server.url, "--mode", mode, "--shm", shm,
                                "--events", "12", "--streams", "3", "--entries", "11")
            result.assert_all_ok(12)
            # 11 entries at max_batch_size 8: two requests per event.
            assert all(m.group(5) == "2" for m in result.events), result.describe()
            assert all(m.group(6) == ("1" if shm == "true" else "0") for m in result.events), \
                result.describe()
            checksums[(mode, shm)] = result.checksum
    assert len(set(checksums.values())) == 1, checksums


def test_ragged_entries_one_request_each(shm_server):
    per_mode = set()
    for mode in ("Sync", "Async", "PseudoAsync"):
        result = run_driver("--server", shm_server.url, "--mode", mode, "--ragged",
                            "--events", "4", "--entries", "5")
        result.assert_all_ok(4)
        assert all(m.group(5) == "5" for m in result.events), result.describe()
        per_mode.add(result.checksum)
    assert len(per_mode) == 1


def test_unbatched_model(shm_server):
    result = run_driver("--server", shm_server.url, "--model", "unbatched", "--events", "3",
                        "--entries", "2")
    result.assert_all_ok(3)
    assert all(m.group(5) == "2" for m in result.events), result.describe()


def test_shared_memory_outputs_equal_grpc_outputs(shm_server):
    runs = {shm: run_driver("--server", shm_server.url, "--model", "fixed16", "--length", "16",
                            "--shm", shm, "--events", "6", "--entries", "20")
            for shm in ("true", "false")}
    for run in runs.values():
        run.assert_all_ok(6)
    assert all(m.group(6) == "1" for m in runs["true"].events)
    assert runs["true"].checksum == runs["false"].checksum


def test_compression_and_in_process_give_the_same_outputs(shm_server, client_repository):
    reference = run_driver("--server", shm_server.url, "--shm", "false", "--events", "5")
    reference.assert_all_ok(5)
    for compression in ("gzip", "deflate"):
        run = run_driver("--server", shm_server.url, "--shm", "false", "--compression", compression,
                         "--events", "5")
        run.assert_all_ok(5)
        assert run.checksum == reference.checksum
    in_process = run_driver("--in-process", "--fallback-repository", str(client_repository),
                            "--backend-directory", str(backend_directory()), "--events", "5")
    in_process.assert_all_ok(5)
    assert all(m.group(3) == "in-process" for m in in_process.events)
    assert in_process.checksum == reference.checksum


@pytest.mark.parametrize("mode", ["Sync", "Async", "PseudoAsync"])
def test_deadline_is_honoured_in_its_unit(shm_server, mode):
    # 200 ms against a model that takes 1 s: fails after ~200 ms, not 200 us nor 200 s.
    result = run_driver("--server", shm_server.url, "--model", "slow", "--mode", mode,
                        "--timeout-ms", "200", "--events", "1", "--retry-same", "0",
                        "--retry-other", "0", "--retry-fallback", "false")
    assert result.returncode == 1, result.describe()
    [event] = result.events
    assert event.group(2) == "failed"
    assert "timed out after 200000 us" in result.stdout, result.describe()
    assert 150 <= float(event.group(7)) < 900, result.describe()
    # And a deadline that is long enough lets the call through.
    ok = run_driver("--server", shm_server.url, "--model", "slow", "--mode", mode,
                    "--timeout-ms", "5000", "--events", "1")
    ok.assert_all_ok(1)


def test_kill_9_one_of_two_servers_mid_run(start_server, client_repository):
    first = start_server(client_repository, "--allow-client-shm", "true", name="first")
    second = start_server(client_repository, "--allow-client-shm", "true", name="second")
    events = 300
    command = [str(driver_binary()), "run", "--server", first.url, "--server", second.url,
               "--model", "paced", "--mode", "Async", "--streams", "3", "--events", str(events),
               "--entries", "12"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read() -> None:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert wait_until(lambda: sum(1 for l in lines if l.startswith("event ")) >= 40, 60), lines[-5:]
    first.kill()  # SIGKILL, mid-run
    process.wait(timeout=120)
    reader.join(timeout=10)
    stderr = process.stderr.read()
    result = DriverRun("\n".join(lines), stderr, process.returncode)
    result.assert_all_ok(events)
    after_kill = [m for m in result.events[60:]]
    assert after_kill and all(m.group(3) == second.url for m in after_kill[-50:]), result.describe()
    assert "marked unhealthy" in stderr, stderr


def server_children(parent: int) -> list[int]:
    """Pids of `beamline serve` processes whose parent is `parent`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and len(cmdline) > 1 and cmdline[1] == b"serve":
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def start_held_driver(client_repository: Path, hold_ms: int,
                      tmp_path: Path) -> tuple[subprocess.Popen, list[str]]:
    command = [str(driver_binary()), "run", "--fallback-repository", str(client_repository),
               "--backend-directory", str(backend_directory()), "--events", "5",
               "--hold-ms", str(hold_ms)]
    # TMPDIR: the fallback's log folder, which a killed client cannot remove, stays in tmp_path.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "BEAMLINE_BIN": str(beamline_binary()),
                                    "TMPDIR": str(tmp_path)})
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(l.rstrip("\n") for l in process.stdout),
                     daemon=True).start()
    assert wait_until(lambda: "holding" in lines, 120), lines
    return process, lines


def test_fallback_starts_serves_and_stops_at_exit(client_repository, tmp_path):
    process, lines = start_held_driver(client_repository, hold_ms=1500, tmp_path=tmp_path)
    children = server_children(process.pid)
    assert len(children) == 1, children
    assert process.wait(timeout=60) == 0, process.stderr.read()
    result = DriverRun("\n".join(lines), "", 0)
    result.assert_all_ok(5)
    assert all(m.group(3).startswith("fallback(127.0.0.1:") for m in result.events)
    assert wait_until(lambda: not alive(children[0]), 5), "the fallback server outlived its client"
    assert not list(tmp_path.glob("beamline_local_server_*")), "logs of a clean stop are removed"


def test_fallback_dies_with_a_killed_client(client_repository, tmp_path):
    process, _ = start_held_driver(client_repository, hold_ms=60000, tmp_path=tmp_path)
    [child] = server_children(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    # PR_SET_PDEATHSIG: SIGTERM, then the server drains and exits.
    assert wait_until(lambda: not alive(child), 20), "the fallback server outlived a killed client"


def test_no_server_and_no_fallback_is_a_clear_error():
    result = run_driver("--events", "1")
    assert result.returncode != 0
    assert "no server serves model 'native_identity'" in result.stdout, result.describe()


def test_bad_shared_memory_requests_get_clear_errors(shm_server):
    done = subprocess.run([str(driver_binary()), "shm-errors", "--server", shm_server.url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    cases = dict(re.findall(r"^case (\S+): (.*)$", done.stdout, re.M))

    def expect(case: str, code: str, *fragments: str) -> None:
        outcome = cases[case]
        assert outcome.startswith(code), f"{case}: {outcome}"
        for fragment in fragments:
            assert fragment in outcome, f"{case}: {fragment!r} not in {outcome!r}"

    expect("register", "OK")
    expect("register_twice", "ALREADY_EXISTS", "region_a")
    expect("register_unknown_key", "INVALID_ARG", "beamline_no_such_key")
    expect("register_beyond_object", "INVALID_ARG", "region_c")
    expect("infer_ok", "OK")
    expect("infer_unknown_region", "INVALID_ARG", "no_such_region")
    expect("infer_offset_outside", "INVALID_ARG", "region_a", "4096")
    expect("infer_size_outside", "INVALID_ARG", "region_a", "4064")
    expect("infer_output_too_small", "INVALID_ARG", "OUTPUT0")
    expect("unregister", "OK")
    expect("unregister_unknown", "NOT_FOUND", "region_a")
    assert_still_serving_after = run_driver("--server", shm_server.url, "--events", "2")
    assert_still_serving_after.assert_all_ok(2)
