#!/usr/bin/env bash
# The main job: set up and build (scripts/setup.sh), make the example models, start a local
# beamline server on a free port, send requests to every example model with the project's own
# client (`beamline infer`), compare the outputs with what PyTorch computed in-process, print a
# summary, and stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
bash scripts/setup.sh
BIN=$ROOT/build/${BEAMLINE_PRESET:-release}/bin/beamline
REPO=$ROOT/models/repository
REF=$ROOT/models/reference
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== starting beamline serve on a free loopback port"
"$BIN" serve --model-repository "$REPO" --grpc-address 127.0.0.1 --grpc-port 0 \
  --http-address 127.0.0.1 --http-port 0 --metrics-address 127.0.0.1 --metrics-port 0 \
  --allow-client-shm true \
  >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 1 600); do
  grep -q '^beamline ready' "$WORK/server.out" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log"; echo "server failed to start"; exit 1; }
  sleep 0.1
done
URL=$(grep -oP '^beamline ready grpc=\K\S+' "$WORK/server.out") || { cat "$WORK/server.log"; exit 1; }
echo "   ready at $URL"
"$BIN" models -u "$URL"

declare -a RESULTS=()
run() {  # name, then beamline infer arguments
  local name=$1; shift
  echo; echo "== $name"
  if "$BIN" infer -u "$URL" "$@"; then RESULTS+=("PASS  $name"); else RESULTS+=("FAIL  $name"); fi
}
run "cnn_patch: 16 patches of 48x48, compared with in-process PyTorch" \
  -m cnn_patch --input INPUT__0="$REF/cnn_patch_input.npy" --expect OUTPUT__0="$REF/cnn_patch_output.npy"
run "identity_fp32: compared with in-process PyTorch" \
  -m identity_fp32 --input INPUT__0="$REF/identity_fp32_input.npy" --expect OUTPUT__0="$REF/identity_fp32_output.npy"
for model in identity_int64 identity_bool identity_fp16; do
  run "$model: random data, batch 4" -m "$model" -b 4 --shape INPUT__0=16
done
run "identity_bytes: BYTES round trip" -m identity_bytes --shape INPUT__0=3 --print
run "cnn_patch: 200 requests of 8 patches, latency" -m cnn_patch -b 8 --count 200

# The event-processing demo: a mini framework (TBB, 2 streams, acquire/produce) classifying 1000
# patches per event through beamline's EventClient (Async; shared memory with this local server),
# after checking 16 reference patches against in-process PyTorch.
echo; echo "== framework demo: 4 events x 1000 patches, 2 streams, Async, through the client"
if "$ROOT/build/${BEAMLINE_PRESET:-release}/bin/beamline_framework_demo" --server "$URL" \
    --reference "$REF" --events 4 --patches 1000 --streams 2 --mode Async; then
  RESULTS+=("PASS  framework demo (EventClient, 2 streams, reference patches)")
else
  RESULTS+=("FAIL  framework demo (EventClient, 2 streams, reference patches)")
fi

# The physics workloads' demo workflows (examples/workflows): ProtoDUNE-like hit classification
# with emtrack_cnn, jet tagging with ParticleNet(-Lite), tracking with Exa.TrkX fused and ensemble.
echo; echo "== demo workflows: ProtoDUNE hits, jet tagging, tracking"
if bash "$ROOT/examples/workflows/run_workflows.sh" -u "$URL"; then
  RESULTS+=("PASS  demo workflows (emtrack_cnn, particlenet(_lite), exatrkx fused + ensemble)")
else
  RESULTS+=("FAIL  demo workflows (emtrack_cnn, particlenet(_lite), exatrkx fused + ensemble)")
fi

echo; echo "== summary"
printf '   %s\n' "${RESULTS[@]}"
echo "   server log: $(grep -c . "$WORK/server.log") lines; last: $(tail -1 "$WORK/server.log")"
kill -TERM "$SERVER_PID"; wait "$SERVER_PID"; SERVER_PID=""
echo "   server stopped cleanly"
! printf '%s\n' "${RESULTS[@]}" | grep -q '^FAIL'
