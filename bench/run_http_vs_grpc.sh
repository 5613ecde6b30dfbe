#!/usr/bin/env bash
# HTTP (binary tensor data) vs gRPC: throughput and latency of identity_fp32 at 16 KiB and 1 MiB,
# concurrency 1..32, both protocols against one server, alternating level by level.
# Starts its own server on free loopback ports over the example repository.
#   bash bench/run_http_vs_grpc.sh [extra beamline_bench_http_vs_grpc flags]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build/${BEAMLINE_PRESET:-release}
WORK=$(mktemp -d)
"$BUILD/bin/beamline" serve --model-repository models/repository --grpc-address 127.0.0.1 \
  --grpc-port 0 --http-address 127.0.0.1 --http-port 0 --metrics-port -1 \
  ${BEAMLINE_SERVE_ARGS:-} >"$WORK/out" 2>"$WORK/log" &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 600); do grep -q '^beamline ready' "$WORK/out" && break; sleep 0.1; done
GRPC=$(grep -oP '^beamline ready grpc=\K\S+' "$WORK/out")
HTTP=$(grep -oP ' http=\K\S+' "$WORK/out")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BUILD/bin/beamline_bench_http_vs_grpc" --grpc-url "$GRPC" --http-url "$HTTP" -m identity_fp32 \
  --elements 4096,262144 -c 1,2,4,8,16,32 "$@"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
