#!/usr/bin/env bash
# The dynamic-batching study (issue: scheduler): the 48x48-patch CNN, one patch per request,
# through the server without dynamic batching (cnn_patch) and with it (cnn_patch_batched), at
# concurrency 1..64, beside the in-process limit (the same model through beamline's core and the
# LibTorch backend, no network) at batch sizes 1, 8, 32 and 64. One run, side by side.
#   bash bench/run_batching.sh [--duration-s N]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build/${BEAMLINE_PRESET:-release}
DURATION=${1:-}
[[ "$DURATION" == --duration-s ]] && DURATION=$2 || DURATION=5
LEVELS=1,2,4,8,16,32,64
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u '+%F %H:%M UTC')"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

echo; echo "## in-process (core + LibTorch backend, no network), cnn_patch"
"$BUILD/bin/beamline_bench_inprocess" --model-repository models/repository -m cnn_patch \
  --shape 1,48,48 -b 1,8,32,64 --duration-s "$DURATION"

WORK=$(mktemp -d)
"$BUILD/bin/beamline" serve --model-repository models/repository --grpc-address 127.0.0.1 \
  --grpc-port 0 --http-port -1 --metrics-port -1 --model-control-mode explicit \
  --load-model cnn_patch --load-model cnn_patch_batched \
  >"$WORK/out" 2>"$WORK/log" &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 600); do grep -q '^beamline ready' "$WORK/out" && break; sleep 0.1; done
URL=$(grep -oP '^beamline ready grpc=\K\S+' "$WORK/out")
for model in cnn_patch cnn_patch_batched; do
  echo; echo "## through the server over gRPC: $model, one patch per request"
  "$BUILD/bin/beamline_bench_grpc_infer" -u "$URL" -m "$model" --shape 1,48,48 -c "$LEVELS" \
    --duration-s "$DURATION"
done
