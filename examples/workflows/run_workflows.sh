#!/usr/bin/env bash
# The three demo workflows against a local beamline server: ProtoDUNE-like hit classification,
# jet tagging with ParticleNet, tracking with the Exa.TrkX pipeline (fused, then the ensemble).
# Uses the release build and models/repository (scripts/setup.sh makes both); pass -u HOST:PORT
# to use a server that is already running instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PYTHON=$ROOT/.venv/bin/python
URL=""
if [[ "${1:-}" == "-u" ]]; then URL=$2; fi
SERVER_PID=""
LOG=$(mktemp -d)
cleanup() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true
  fi
  rm -rf "$LOG"
}
trap cleanup EXIT
if [[ -z $URL ]]; then
  BIN=$ROOT/build/${BEAMLINE_PRESET:-release}/bin/beamline
  "$BIN" serve --model-repository "$ROOT/models/repository" --grpc-address 127.0.0.1 --grpc-port 0 \
    --http-port 0 --http-address 127.0.0.1 --metrics-port 0 --metrics-address 127.0.0.1 \
    >"$LOG/server.out" 2>"$LOG/server.log" &
  SERVER_PID=$!
  for _ in $(seq 1 600); do
    grep -q '^beamline ready' "$LOG/server.out" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$LOG/server.log"; exit 1; }
    sleep 0.1
  done
  URL=$(grep -oP '^beamline ready grpc=\K\S+' "$LOG/server.out")
fi
echo "== server at $URL"
echo "== ProtoDUNE-like events: hit classification (emtrack_cnn)"
"$PYTHON" examples/workflows/protodune_hits.py -u "$URL" --events 3 --hits 2000
echo "== jet events: ParticleNet and ParticleNet-Lite"
"$PYTHON" examples/workflows/jet_tagging.py -u "$URL" --events 100 --model particlenet
"$PYTHON" examples/workflows/jet_tagging.py -u "$URL" --events 100 --model particlenet_lite
echo "== tracking events: Exa.TrkX fused"
"$PYTHON" examples/workflows/tracking.py -u "$URL" --events 20 --model exatrkx_fused
echo "== tracking events: Exa.TrkX ensemble"
"$PYTHON" examples/workflows/tracking.py -u "$URL" --events 20 --model exatrkx
