#!/usr/bin/env bash
# First gRPC measurement: p50 latency and throughput of identity_fp32 with 16 KiB requests
# (4096 FP32) at concurrency 1 and 8, with the project's client (closed loop, asynchronous).
# Starts its own server on a free loopback port over the example repository.
#   bash bench/run_grpc_latency.sh [extra beamline_bench_grpc_infer flags]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build/${BEAMLINE_PRESET:-release}
WORK=$(mktemp -d)
"$BUILD/bin/beamline" serve --model-repository models/repository --grpc-address 127.0.0.1 \
  --grpc-port 0 --http-port -1 --metrics-port -1 >"$WORK/out" 2>"$WORK/log" &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 600); do grep -q '^beamline ready' "$WORK/out" && break; sleep 0.1; done
URL=$(grep -oP '^beamline ready grpc=\K\S+' "$WORK/out")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"
"$BUILD/bin/beamline_bench_grpc_infer" -u "$URL" -m identity_fp32 --elements 4096 -c 1,8 "$@"
