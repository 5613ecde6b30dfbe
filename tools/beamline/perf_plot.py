#!/usr/bin/env python3
"""Draw latency (p50 and p99) against throughput from `beamline perf --json` reports.

usage: perf_plot.py REPORT.json [REPORT.json ...] OUT.png [--title TITLE]

One line pair per report (labelled by protocol and url, or by --label entries in order). Exits 3
when matplotlib is missing, so that `beamline perf --plot` can say so plainly.
"""
import argparse
import json
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="JSON reports, then the PNG to write")
    parser.add_argument("--title", default="")
    parser.add_argument("--label", action="append", default=[],
                        help="legend label of each report, in order")
    args = parser.parse_args()
    if len(args.paths) < 2:
        parser.error("need at least one report and the output PNG")
    *reports, output = args.paths
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("perf_plot.py: matplotlib is not installed", file=sys.stderr)
        return 3
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for index, path in enumerate(reports):
        with open(path) as file:
            report = json.load(file)
        steps = report["steps"]
        label = (args.label[index] if index < len(args.label)
                 else f"{report.get('model', '')} {report.get('protocol', '')}")
        throughput = [s["throughput_infer_per_s"] for s in steps]
        p50 = [s["latency_us"]["p50"] for s in steps]
        p99 = [s["latency_us"]["p99"] for s in steps]
        line, = axes.plot(throughput, p50, marker="o", label=f"{label} p50")
        axes.plot(throughput, p99, marker="^", linestyle="--", color=line.get_color(),
                  label=f"{label} p99")
        for s, x, y in zip(steps, throughput, p50):
            level = s["concurrency"] or s["request_rate"]
            axes.annotate(f"{level:g}", (x, y), textcoords="offset points", xytext=(3, 3),
                          fontsize=7)
    axes.set_xlabel("throughput (inferences/s)")
    axes.set_ylabel("latency (µs)")
    axes.set_yscale("log")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    if args.title:
        axes.set_title(args.title, fontsize=10)
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
