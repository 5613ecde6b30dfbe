"""Prometheus metrics with Triton's names: the text on /metrics, counters that follow inferences,
failures by reason, latency histograms, the CPU gauges and the switches, and a real Prometheus
(Debian's `prometheus`, started here on a free loopback port) scraping the server and evaluating
SuperSONIC's autoscaling expression."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from beamline_harness import http_request, wait_until

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

TRITON_FAMILIES = {
    "nv_inference_request_success": "counter",
    "nv_inference_request_failure": "counter",
    "nv_inference_count": "counter",
    "nv_inference_exec_count": "counter",
    "nv_inference_pending_request_count": "gauge",
    "nv_inference_request_duration_us": "counter",
    "nv_inference_queue_duration_us": "counter",
    "nv_inference_compute_input_duration_us": "counter",
    "nv_inference_compute_infer_duration_us": "counter",
    "nv_inference_compute_output_duration_us": "counter",
    "nv_model_load_duration_secs": "gauge",
    "nv_cpu_utilization": "gauge",
    "nv_cpu_memory_total_bytes": "gauge",
    "nv_cpu_memory_used_bytes": "gauge",
    "nv_inference_request_duration_histogram_us": "histogram",
    "nv_inference_queue_duration_histogram_us": "histogram",
    "nv_inference_compute_duration_histogram_us": "histogram",
}


def scrape(url: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
    """(family -> type, [(sample name, labels, value)]), checking every line's syntax."""
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif line.startswith("# HELP "):
            continue
        else:
            match = SAMPLE.match(line)
            assert match, f"not a Prometheus sample: {line!r}"
            labels = dict(LABEL.findall(match.group(3) or ""))
            samples.append((match.group(1), labels, float(match.group(4))))
    return types, samples


def value(samples, name: str, **labels) -> float | None:
    for sample_name, sample_labels, sample_value in samples:
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items()):
            return sample_value
    return None


def infer_pair(server, batch: int = 2, count: int = 1) -> None:
    with server.http_client() as client:
        data = np.ones((batch, 4), dtype=np.float32)
        inputs = []
        for name in ("INPUT0", "INPUT1"):
            tensor = httpclient.InferInput(name, [batch, 4], "FP32")
            tensor.set_data_from_numpy(data)
            inputs.append(tensor)
        for _ in range(count):
            client.infer("native_pair", inputs)


def test_every_triton_family_is_exposed(default_server):
    infer_pair(default_server)
    types, samples = scrape(default_server.metrics_url)
    for family, kind in TRITON_FAMILIES.items():
        assert types.get(family) == kind, f"{family}: {types.get(family)}"
    pair = {"model": "native_pair", "version": "1"}
    for family in ("nv_inference_request_success", "nv_inference_count", "nv_inference_exec_count",
                   "nv_inference_pending_request_count", "nv_model_load_duration_secs"):
        assert value(samples, family, **pair) is not None, family
    for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER"):
        assert value(samples, "nv_inference_request_failure", reason=reason, **pair) is not None
    assert value(samples, "nv_model_load_duration_secs", **pair) > 0
    total = value(samples, "nv_cpu_memory_total_bytes")
    assert total > value(samples, "nv_cpu_memory_used_bytes") > 0
    if not Path("/dev/nvidiactl").exists():
        assert not any(name.startswith("nv_gpu_") for name, _, _ in samples)


def test_counters_and_histograms_follow_inferences(default_server):
    pair = {"model": "native_pair", "version": "1"}
    _, before = scrape(default_server.metrics_url)
    infer_pair(default_server, batch=2, count=3)
    _, after = scrape(default_server.metrics_url)

    def delta(name, **labels):
        return value(after, name, **pair, **labels) - (value(before, name, **pair, **labels) or 0)

    assert delta("nv_inference_count") == 6
    assert delta("nv_inference_exec_count") == 3
    assert delta("nv_inference_request_success") == 3
    assert delta("nv_inference_request_duration_us") > 0
    histogram = "nv_inference_request_duration_histogram_us"
    assert delta(histogram + "_count") == 3
    buckets = [(float(labels["le"]), v) for name, labels, v in after
               if name == histogram + "_bucket" and labels.get("model") == "native_pair"]
    counts = [v for _, v in sorted(buckets)]
    assert counts == sorted(counts), "buckets must be cumulative"
    assert counts[-1] == value(after, histogram + "_count", **pair)  # le="+Inf"


def test_failures_are_counted_with_a_reason(default_server):
    labels = {"model": "native_pair", "version": "1", "reason": "OTHER"}
    _, before = scrape(default_server.metrics_url)
    bad = json.dumps({"inputs": [{"name": "INPUT0", "shape": [1, 5], "datatype": "FP32",
                                  "data": [1, 2, 3, 4, 5]},
                                 {"name": "INPUT1", "shape": [1, 4], "datatype": "FP32",
                                  "data": [1, 2, 3, 4]}]})
    assert http_request(default_server, "POST", "/v2/models/native_pair/infer", bad).status == 400
    _, after = scrape(default_server.metrics_url)
    assert value(after, "nv_inference_request_failure", **labels) == (
        value(before, "nv_inference_request_failure", **labels) + 1)


def test_cpu_utilization_is_sampled_per_interval(start_server, native_repository):
    server = start_server(native_repository, "--metrics-interval-ms", "100", name="fast-metrics")
    assert wait_until(lambda: value(scrape(server.metrics_url)[1], "nv_cpu_utilization")
                      is not None, timeout_s=10)
    utilization = value(scrape(server.metrics_url)[1], "nv_cpu_utilization")
    assert 0.0 <= utilization <= 1.0


def test_switches(start_server, native_repository):
    no_cpu = start_server(native_repository, "--allow-cpu-metrics", "false",
                          "--allow-gpu-metrics", "false", name="no-cpu-metrics")
    types, samples = scrape(no_cpu.metrics_url)
    assert "nv_cpu_utilization" in types  # declared, without a sample
    assert value(samples, "nv_cpu_memory_total_bytes") is None
    assert value(samples, "nv_inference_count", model="native_pair") is not None
    for flags in (("--allow-metrics", "false"), ("--metrics-port", "-1")):
        server = start_server(native_repository, *flags, name="no-metrics")
        assert server.metrics_port is None and server.http_port is not None
    other = urllib.request.Request(no_cpu.metrics_url.replace("/metrics", "/other"))
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(other, timeout=30)
    assert error.value.code == 404


# --- a real Prometheus ----------------------------------------------------------------------------

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """A Prometheus server on a free loopback port, storage in a temporary directory, scraping
    one target every second."""

    def __init__(self, target: str, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: beamline\n    scrape_interval: 1s\n"
            f"    static_configs:\n      - targets: ['{target}']\n")
        self.port = _free_port()
        self.log = directory / "prometheus.log"
        self._log_file = open(self.log, "wb")
        self.process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ready(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"prometheus exited with {self.process.returncode}:\n"
                        f"{self.log.read_text()}", pytrace=False)
        try:
            with urllib.request.urlopen(self.url("/-/ready"), timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def query(self, expression: str) -> list:
        url = self.url("/api/v1/query?" + urllib.parse.urlencode({"query": expression}))
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def scalar(self, expression: str) -> float | None:
        result = self.query(expression)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log_file.close()


@pytest.fixture
def prometheus(default_server, tmp_path):
    if not Path(PROMETHEUS).exists():
        pytest.fail("the Debian package 'prometheus' is not installed (scripts/setup.sh installs "
                    "it)", pytrace=False)
    server = Prometheus(f"127.0.0.1:{default_server.metrics_port}", tmp_path / "prometheus")
    try:
        assert wait_until(server.ready, timeout_s=60, interval_s=0.2), server.log.read_text()
        yield server
    finally:
        server.stop()


def test_prometheus_scrapes_and_evaluates_supersonic_expression(default_server, prometheus):
    selector = 'nv_inference_count{job="beamline",model="native_identity",version="1"}'
    assert wait_until(lambda: prometheus.scalar('up{job="beamline"}') == 1.0, timeout_s=30), (
        prometheus.query("up"))
    assert wait_until(lambda: prometheus.scalar(selector) is not None, timeout_s=30)
    start = prometheus.scalar(selector)

    with default_server.http_client() as client:
        tensor = httpclient.InferInput("INPUT0", [2, 8], "FP32")
        tensor.set_data_from_numpy(np.ones((2, 8), dtype=np.float32))
        for _ in range(25):
            client.infer("native_identity", [tensor])
    assert wait_until(lambda: prometheus.scalar(selector) >= start + 50, timeout_s=30), (
        start, prometheus.scalar(selector))

    # SuperSONIC's server-load metric: average queue time per execution, in ms.
    expression = ("sum(rate(nv_inference_queue_duration_us[30s])) / "
                  "(sum(rate(nv_inference_exec_count[30s]))*1000 + 0.001)")
    assert wait_until(lambda: prometheus.scalar(expression) is not None, timeout_s=30)
    load = prometheus.scalar(expression)
    assert load == load and load >= 0.0  # a number, not NaN
    # And the histogram works with PromQL's quantile function.
    quantile = prometheus.scalar(
        "histogram_quantile(0.5, sum by (le) (rate("
        "nv_inference_request_duration_histogram_us_bucket[30s])))")
    assert quantile is not None
