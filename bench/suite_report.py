"""Renders the results of bench/run_suite.sh (JSON reports of `beamline perf`, perf_analyzer CSVs)
as the markdown block of docs/PERFORMANCE.md, and draws the plots. Called by run_suite.sh."""
import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path


def load(path: Path):
    try:
        return json.loads(path.read_text())["steps"][0]
    except (OSError, ValueError, KeyError, IndexError):
        return None


def fmt(value, digits=0):
    return "–" if value is None else f"{value:,.{digits}f}"


def stable(step):
    return "" if step is None or step["stable"] else " (unstable)"


def merge(paths, out: Path):
    steps = [s for s in (load(p) for p in paths) if s is not None]
    if not steps:
        return None
    report = json.loads(paths[0].read_text()) if paths[0].exists() else {}
    report["steps"] = steps
    out.write_text(json.dumps(report))
    return out


def plot(script, reports, labels, png, title):
    reports = [r for r in reports if r is not None]
    if not reports:
        return False
    command = [sys.executable, script, *map(str, reports), str(png), "--title", title]
    for label in labels:
        command += ["--label", label]
    return subprocess.run(command).returncode == 0


def part_a(work: Path, levels, plot_dir: Path, script) -> list[str]:
    rows, verdicts = [], []
    all_ok, p50_ok = True, None
    for level in levels:
        b, e = load(work / "a" / f"beamline_{level}.json"), load(work / "a" / f"echo_{level}.json")
        if b is None or e is None:
            rows.append(f"| {level} | {fmt(b and b['throughput_infer_per_s'])} | "
                        f"{fmt(e and e['throughput_infer_per_s'])} | – | – | – | – | – | – | – |")
            all_ok = False
            continue
        ratio = b["throughput_infer_per_s"] / e["throughput_infer_per_s"]
        p50_ratio = b["latency_us"]["p50"] / e["latency_us"]["p50"]
        all_ok &= ratio >= 0.9
        if level == 1:
            p50_ok = p50_ratio <= 1.15
        server = b.get("server") or {}
        rows.append(
            f"| {level} | {fmt(b['throughput_infer_per_s'])}{stable(b)} | "
            f"{fmt(e['throughput_infer_per_s'])}{stable(e)} | **{ratio:.2f}** | "
            f"{fmt(b['latency_us']['p50'])} | {fmt(e['latency_us']['p50'])} | {p50_ratio:.2f} | "
            f"{fmt(b['latency_us']['p99'])} | {fmt(e['latency_us']['p99'])} | "
            f"{fmt(server.get('queue_us'), 1)} / {fmt(server.get('compute_infer_us'), 1)} |")
    best_b = max((s["throughput_infer_per_s"] for s in (load(work / "a" / f"beamline_{l}.json")
                                                         for l in levels) if s), default=None)
    best_e = max((s["throughput_infer_per_s"] for s in (load(work / "a" / f"echo_{l}.json")
                                                         for l in levels) if s), default=None)
    if best_b and best_e:
        verdicts.append(
            f"- The client is not the bottleneck: the same `beamline perf` drove the echo server "
            f"(which shares the 2 vCPU with it) at up to {best_e:,.0f} infer/s, "
            f"**{best_e / best_b:.1f}x** the most beamline sustained ({best_b:,.0f} infer/s).")
        cpu = [(s["client_cpu_us_per_request"], l) for s, l in
               ((load(work / "a" / f"echo_{l}.json"), l) for l in levels)
               if s and s.get("client_cpu_us_per_request")]
        if cpu:
            low, level = min(cpu)
            verdicts.append(
                f"- perf's own cost: {low:.1f} µs of CPU (all its threads) per request at "
                f"concurrency {level} against the echo server, so one core of client drives up to "
                f"{1e6 / low:,.0f} requests/s: **{1e6 / low / best_b:.1f}x** beamline's best "
                f"(per-level CPU in the JSON reports, `client_cpu_us_per_request`).")
    png = plot_dir / "suite_a_beamline_vs_echo.png"
    plotted = plot(script, [merge([work / "a" / f"beamline_{l}.json" for l in levels],
                                  work / "a" / "beamline.json"),
                            merge([work / "a" / f"echo_{l}.json" for l in levels],
                                  work / "a" / "echo.json")],
                   ["beamline", "echo"], png, "identity_fp32 16 KiB, gRPC: beamline vs bare echo")
    verdicts.append(f"- Target ≥ 0.9x echo throughput at every concurrency: "
                    f"**{'met' if all_ok else 'missed'}**.")
    verdicts.append(f"- Target p50 at concurrency 1 ≤ 1.15x echo's: "
                    f"**{'met' if p50_ok else 'missed' if p50_ok is not None else 'not measured'}**.")
    lines = [
        "#### a. beamline vs a bare gRPC echo server (identity_fp32, 16 KiB, gRPC unary)",
        "",
        "Same client (`beamline perf`), same machine, levels interleaved (beamline then echo at "
        "each concurrency). The echo server (`bench/echo_server.cc`) copies raw inputs to raw "
        "outputs on the gRPC callback API with beamline's process settings; beamline runs the "
        "TorchScript `identity_fp32` (LibTorch, one CPU instance). Latencies in µs; server "
        "column = beamline's own queue / compute-infer µs per request from ModelStatistics.",
        "",
        "| concurrency | beamline infer/s | echo infer/s | ratio | beamline p50 | echo p50 | "
        "p50 ratio | beamline p99 | echo p99 | server queue / infer |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows, "", *verdicts]
    if plotted:
        lines += ["", f"![beamline vs echo](perf/{png.name})"]
    return lines


def perf_analyzer_rows(work: Path) -> list[str]:
    rows = []
    for level in (1, 16):
        path = work / "b" / f"pa_{level}.csv"
        ours = load(work / "b" / f"beamline_pa_{level}.json")
        pa = None
        if path.exists():
            with path.open() as file:
                for row in csv.DictReader(file):
                    pa = row
        if pa is None and ours is None:
            continue
        rows.append(f"| {level} | {fmt(float(pa['Inferences/Second'])) if pa else '–'} | "
                    f"{fmt(float(pa['p50 latency'])) if pa else '–'} | "
                    f"{fmt(float(pa['p99 latency'])) if pa else '–'} | "
                    f"{fmt(ours and ours['throughput_infer_per_s'])} | "
                    f"{fmt(ours and ours['latency_us']['p50'])} | "
                    f"{fmt(ours and ours['latency_us']['p99'])} |")
    return rows


def part_b(work: Path, plot_dir: Path, script) -> list[str]:
    version = (work / "b" / "mlserver_version").read_text().strip() \
        if (work / "b" / "mlserver_version").exists() else None
    lines = ["#### b. beamline vs MLServer (identity, 16 KiB, concurrency 16)", "",
             f"MLServer {version or '(not available)'} from PyPI with the runtime in "
             "`bench/mlserver_identity/` (default settings: one inference worker process), "
             "beamline with `identity_fp32`; both driven by `beamline perf` at concurrency 16.", "",
             "| protocol | beamline infer/s | MLServer infer/s | ratio | beamline p50 µs | "
             "MLServer p50 µs | MLServer p99 µs |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    verdicts = []
    for key, name in (("grpc", "gRPC"), ("http_json", "HTTP JSON")):
        b = load(work / "b" / f"beamline_{key}.json")
        m = load(work / "b" / f"mlserver_{key}.json")
        ratio = (b["throughput_infer_per_s"] / m["throughput_infer_per_s"]) if b and m else None
        lines.append(f"| {name} | {fmt(b and b['throughput_infer_per_s'])}{stable(b)} | "
                     f"{fmt(m and m['throughput_infer_per_s'])}{stable(m)} | "
                     f"{'**%.1fx**' % ratio if ratio else '–'} | "
                     f"{fmt(b and b['latency_us']['p50'])} | {fmt(m and m['latency_us']['p50'])} | "
                     f"{fmt(m and m['latency_us']['p99'])} |")
        if ratio is not None:
            verdicts.append(f"- {name}: target ≥ 10x MLServer's throughput "
                            f"**{'met' if ratio >= 10 else 'missed'}** ({ratio:.1f}x).")
    names = [("beamline_grpc", "beamline gRPC"), ("mlserver_grpc", "MLServer gRPC"),
             ("beamline_http_json", "beamline HTTP JSON"), ("mlserver_http_json",
                                                           "MLServer HTTP JSON")]
    present = [(work / "b" / f"{key}.json", label) for key, label in names
               if load(work / "b" / f"{key}.json") is not None]
    png = plot_dir / "suite_b_beamline_vs_mlserver.png"
    if present and plot(script, [p for p, _ in present], [l for _, l in present], png,
                        "identity 16 KiB, concurrency 16: beamline vs MLServer"):
        verdicts.append(f"\n![beamline vs MLServer](perf/{png.name})")
    missing = work / "b" / "mlserver_missing"
    if missing.exists():
        verdicts.append(f"- MLServer not measured: {missing.read_text().strip()}")
    pa_version = work / "b" / "pa_version"
    pa_name = pa_version.read_text().strip() if pa_version.exists() else "perf_analyzer"
    lines += ["", *verdicts, "", f"NVIDIA perf_analyzer (`{pa_name or 'perf_analyzer'}`, the "
              "C++ binary bundled in the `tritonclient` 2.41.1 wheel; PyPI `perf-analyzer` 0.1.0 is "
              "an empty placeholder) against the same beamline, beside `beamline perf` (gRPC, "
              "identity_fp32 16 KiB, one after the other; perf_analyzer with `-s 50`, since it "
              "exits without numbers for a level that is not stable, and its own defaults "
              "otherwise):",
              ""]
    rows = perf_analyzer_rows(work)
    failed = work / "b" / "pa_failed"
    if rows:
        lines += ["| concurrency | perf_analyzer infer/s | PA p50 µs | PA p99 µs | "
                  "beamline perf infer/s | p50 µs | p99 µs |",
                  "|---:|---:|---:|---:|---:|---:|---:|", *rows]
    if failed.exists():
        lines += ["", f"perf_analyzer: {failed.read_text().strip()}"]
    return lines


def part_d(work: Path) -> list[str]:
    lines = ["#### d. Large tensors: 9.2 MB requests (FP32 [1, 2300000])", "",
             "Native `identity` backend (the bytes are copied once into the response), beamline "
             "with `--allow-client-shm true`. gRPC: the tensor crosses the socket both ways. "
             "System shared memory: `beamline perf --shared-memory system` writes the input once "
             "per slot into a registered region and the server writes the output into the "
             "client's region; only names and offsets cross the socket.", "",
             "| path | concurrency | requests/s | GB/s (in+out) | p50 µs | p99 µs |",
             "|---|---:|---:|---:|---:|---:|"]
    size = 2300000 * 4
    for key, name in (("grpc", "gRPC"), ("shm", "system shared memory")):
        for level in (1, 4):
            s = load(work / "d" / f"{key}_{level}.json")
            if s is None:
                lines.append(f"| {name} | {level} | failed | | | |")
                continue
            rate = s["throughput_requests_per_s"]
            lines.append(f"| {name} | {level} | {fmt(rate, 1)}{stable(s)} | "
                         f"{2 * size * rate / 1e9:.2f} | {fmt(s['latency_us']['p50'])} | "
                         f"{fmt(s['latency_us']['p99'])} |")
    memcpy = work / "d" / "memcpy.json"
    if memcpy.exists():
        m = json.loads(memcpy.read_text())
        lines.append(f"| memcpy of the same 9.2 MB (one copy, numpy) | 1 | "
                     f"{1e6 / m['p50_us']:,.0f} | {size / m['p50_us'] / 1e3:.2f} (one way) | "
                     f"{m['p50_us']:,.0f} | {m['p99_us']:,.0f} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--machine", required=True)
    parser.add_argument("--date", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--levels", required=True)
    parser.add_argument("--study", default="")
    parser.add_argument("--plot-dir", type=Path, required=True)
    parser.add_argument("--plot-script", required=True)
    args = parser.parse_args()
    args.plot_dir.mkdir(parents=True, exist_ok=True)
    levels = [int(x) for x in args.levels.split(",")]
    out = ["### The suite run", "",
           f"Machine: {args.machine} (client and servers share it). Date: {args.date}. "
           "Release preset (RelWithDebInfo).", "", "Command:", "", "```sh", args.command, "```",
           "", "Each level: 1 s warm-up, then measurement windows until the last three agree "
           "within 10% on throughput, p50 and p99 (at most 6 windows; levels that never agreed "
           "are marked unstable and report their last three windows).", ""]
    if (args.work / "a" / "urls").exists():
        out += part_a(args.work, levels, args.plot_dir, args.plot_script) + [""]
    if (args.work / "b").exists() and any((args.work / "b").iterdir()):
        out += part_b(args.work, args.plot_dir, args.plot_script) + [""]
    if (args.work / "d").exists() and any((args.work / "d").iterdir()):
        out += part_d(args.work) + [""]
    if args.study and Path(args.study).exists():
        out += [Path(args.study).read_text().rstrip("\n"), ""]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
