#!/usr/bin/env bash
# The event-processing client's benchmark (docs/PERFORMANCE.md, "EventClient"):
#   1. events/s of the framework demo (examples/framework: TBB streams, the 48x48-patch CNN through
#      EventClient) in Sync, Async and PseudoAsync with 1, 2 and 4 streams;
#   2. a 9.2 MB request (1000 patches of 48x48 FP32) over gRPC and through shared memory, against a
#      plain memcpy of the same bytes.
# One local server (models/repository plus a `transfer` identity model) with client shared memory
# allowed, on free loopback ports.
#
#   bash bench/run_client_bench.sh [--events 6] [--patches 1000] [--iterations 50]
# Environment: BEAMLINE_PRESET (release), BEAMLINE_BIN_DIR (build/<preset>/bin),
# BEAMLINE_BACKEND_DIR (extra backend folder for the server, e.g. one with LibTorch).
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=6; PATCHES=1000; ITERATIONS=50; MODEL=cnn_patch
while [[ $# -gt 0 ]]; do
  case $1 in
    --events) EVENTS=$2; shift 2 ;;
    --patches) PATCHES=$2; shift 2 ;;
    --iterations) ITERATIONS=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
BIN_DIR=${BEAMLINE_BIN_DIR:-build/${BEAMLINE_PRESET:-release}/bin}
WORK=$(mktemp -d)
mkdir -p "$WORK/repository/transfer/1"
cat >"$WORK/repository/transfer/config.pbtxt" <<'PBTXT'
name: "transfer"
backend: "identity"
max_batch_size: 1024
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 1, 48, 48 ] },
        { name: "INPUT1" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1, 48, 48 ] },
         { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 1 ] } ]
PBTXT
EXTRA=()
[[ -n ${BEAMLINE_BACKEND_DIR:-} ]] && EXTRA=(--backend-directory "$BEAMLINE_BACKEND_DIR")
"$BIN_DIR/beamline" serve --model-repository models/repository --model-repository "$WORK/repository" \
  --grpc-address 127.0.0.1 --grpc-port 0 --http-port -1 --metrics-port -1 --allow-client-shm true \
  "${EXTRA[@]}" >"$WORK/out" 2>"$WORK/log" &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 600); do grep -q '^beamline ready' "$WORK/out" && break; sleep 0.1; done
URL=$(grep -oP '^beamline ready grpc=\K\S+' "$WORK/out") || { cat "$WORK/log"; exit 1; }
echo "server $URL; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"

echo; echo "## framework demo: $EVENTS events x $PATCHES patches ($MODEL), events/s (patches/s)"
"$BIN_DIR/beamline_framework_demo" --server "$URL" --model "$MODEL" --events 1 --patches 64 >/dev/null
echo "| mode | 1 stream | 2 streams | 4 streams |"
echo "|---|---:|---:|---:|"
for mode in Sync Async PseudoAsync; do
  row="| $mode |"
  for streams in 1 2 4; do
    line=$("$BIN_DIR/beamline_framework_demo" --server "$URL" --model "$MODEL" --mode "$mode" \
           --streams "$streams" --events "$EVENTS" --patches "$PATCHES" | grep '^result')
    eps=$(sed -E 's/.*events\/s=([0-9.]+).*/\1/' <<<"$line")
    pps=$(sed -E 's/.*patches\/s=([0-9.]+).*/\1/' <<<"$line")
    row+=" $eps ($pps) |"
  done
  echo "$row"
done

echo; echo "## 9.2 MB request"
"$BIN_DIR/beamline_bench_client_transfer" --server "$URL" --iterations "$ITERATIONS"
echo; echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
