#!/usr/bin/env bash
# The ProtoDUNE inference-as-a-service study (issue 7, suite parts c and e), one command:
#   c. served / in-process throughput of emtrack_cnn and ParticleNet (P fixed) per batch size;
#   e. a simulated ProtoDUNE job (mini framework, N worker threads, a calibrated CPU part that is
#      ~35% of the CPU-only event + emtrack_cnn on thousands of 48x48 patches per event): CPU-only
#      (in-process inference per worker) vs through the service (Async EventClient), the module
#      and whole-job speedups, and the saturation curve (events/s and latency vs client threads).
# Starts its own server on free loopback ports over temporary repositories derived from
# models/repository (bench/study_repository.py), writes a markdown fragment to OUT.md and the
# plots to docs/perf/ (study_saturation.png, study_ratio.png).
#
#   bash bench/run_study.sh OUT.md [--quick] [--gpu] [--patches N] [--events N] [--threads N]
#                                  [--instances N] [--duration-s S] [--keep WORKDIR]
#
#   --quick        ~2 minutes: fewer patches, events, batch sizes and saturation points.
#   --gpu          the server's models (the study's emtrack_cnn and part c's models) get
#                  instance_group [{kind: KIND_GPU}] (needs a CUDA LibTorch and a GPU); the
#                  CPU-only job stays on CPU. Part c then compares the served GPU model with the
#                  same GPU model in-process, and the study's speedups are the paper's quantities.
#   --patches N    48x48 patches per event (default 2000; the paper's events have O(10^4)).
#   --threads N    worker threads of the whole-job comparison (default: nproc).
#   --instances N  server instances of the study's model (default: nproc on CPU, 1 on GPU).
# Environment: BEAMLINE_PRESET (release), BEAMLINE_BIN_DIR (build/<preset>/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${1:?usage: bench/run_study.sh OUT.md [--quick] [--gpu] [...]}
shift
QUICK=0; GPU=0; PATCHES=""; EVENTS=""; THREADS=$(nproc); INSTANCES=""; DURATION=""; KEEP=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) QUICK=1; shift ;;
    --gpu) GPU=1; shift ;;
    --patches) PATCHES=$2; shift 2 ;;
    --events) EVENTS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --instances) INSTANCES=$2; shift 2 ;;
    --duration-s) DURATION=$2; shift 2 ;;
    --keep) KEEP=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [[ $QUICK == 1 ]]; then
  PATCHES=${PATCHES:-1000}; EVENTS=${EVENTS:-4}; DURATION=${DURATION:-1.5}; ROUNDS=1
  CNN_BATCHES=1,16,256; JET_BATCHES=1,16; SATURATION=(1 2 4 8)
else
  PATCHES=${PATCHES:-2000}; EVENTS=${EVENTS:-6}; DURATION=${DURATION:-2}; ROUNDS=2
  CNN_BATCHES=1,16,64,256; JET_BATCHES=1,16,64; SATURATION=(1 2 3 4 6 8)
fi
# Debian's LibTorch runs its matrix products in OpenBLAS, whose own thread pool (nproc threads,
# spinning while idle) ignores the models' INTRA_OP_THREAD_COUNT; pin it so that an instance has
# the one thread its config says, in the server and in-process alike.
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
[[ -z $INSTANCES ]] && { [[ $GPU == 1 ]] && INSTANCES=1 || INSTANCES=$(nproc); }
KIND=KIND_CPU; [[ $GPU == 1 ]] && KIND=KIND_GPU
BIN_DIR=${BEAMLINE_BIN_DIR:-build/${BEAMLINE_PRESET:-release}/bin}
STUDY=$BIN_DIR/beamline_protodune_study
PY=.venv/bin/python
for f in "$BIN_DIR/beamline" "$STUDY" "$PY"; do
  [[ -x $f ]] || { echo "missing $f: build (cmake --build --preset release) and make .venv" >&2; exit 1; }
done
if ! "$PY" -c "import matplotlib" 2>/dev/null; then
  echo "installing matplotlib into .venv (bench/requirements.txt)" >&2
  "$PY" -m pip install -q "matplotlib>=3.7,<3.9" "contourpy<1.2"  # the pins of bench/requirements.txt
fi

if [[ -n $KEEP ]]; then WORK=$KEEP; mkdir -p "$WORK"; else WORK=$(mktemp -d); fi
SERVER_PID=""
cleanup() {
  if [[ -n $SERVER_PID ]]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  [[ -z $KEEP ]] && rm -rf "$WORK"
  return 0
}
trap cleanup EXIT
STARTED=$(date -u '+%F %H:%M UTC')
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
GPU_FLAG=(); [[ $GPU == 1 ]] && GPU_FLAG=(--gpu)
"$PY" bench/study_repository.py --source models/repository --server-out "$WORK/server_repo" \
  --cpu-out "$WORK/cpu_repo" --instances "$INSTANCES" "${GPU_FLAG[@]}" \
  --cnn-batches "$CNN_BATCHES" --jet-batches "$JET_BATCHES"

"$BIN_DIR/beamline" serve --model-repository "$WORK/server_repo" --grpc-address 127.0.0.1 \
  --grpc-port 0 --http-port -1 --metrics-port -1 >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 1 900); do
  grep -q '^beamline ready' "$WORK/server.out" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.1
done
URL=$(grep -oP '^beamline ready grpc=\K\S+' "$WORK/server.out")
echo "server $URL (pid $SERVER_PID), work dir $WORK" >&2

COMMANDS="$WORK/commands.txt"
{ echo "export OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS"
  echo "build/release/bin/beamline serve --model-repository \$WORK/server_repo --grpc-address 127.0.0.1 --grpc-port 0 --http-port -1 --metrics-port -1 &  # SERVER_PID=\$!"
} >"$COMMANDS"
run() {  # logs the command (with the work dir and URL as placeholders) and runs it
  echo "$*" | sed -e "s|$WORK|\$WORK|g" -e "s|$URL|\$URL|g" -e "s|--server-pid $SERVER_PID|--server-pid \$SERVER_PID|g" >>"$COMMANDS"
  echo "+ $*" >&2
  "$@"
}

# c. served / in-process per batch size.
run "$STUDY" ratio --server "$URL" --model-repository "$WORK/server_repo" --model-prefix emtrack_cnn \
  -b "$CNN_BATCHES" --duration-s "$DURATION" --json "$WORK/ratio_emtrack_cnn.json"
run "$STUDY" ratio --server "$URL" --model-repository "$WORK/server_repo" --model-prefix particlenet \
  -b "$JET_BATCHES" --particles 50 --duration-s "$DURATION" --json "$WORK/ratio_particlenet.json"

# e. the job: CPU-only (the first run sizes the CPU part to 35% of its events), then the service;
# ROUNDS times in turn, so that the machine's other load falls on every mode.
COMMON=(--threads "$THREADS" --events "$EVENTS" --patches "$PATCHES")
for round in $(seq 1 "$ROUNDS"); do
  if [[ $round == 1 ]]; then
    run "$STUDY" study --mode cpu --model-repository "$WORK/cpu_repo" "${COMMON[@]}" \
      --cpu-fraction 0.35 --json "$WORK/job_cpu_1.json"
    UNITS=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['cpu_work_units'])" "$WORK/job_cpu_1.json")
    CPU_MS=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['cpu_ms_median'])" "$WORK/job_cpu_1.json")
  else
    run "$STUDY" study --mode cpu --model-repository "$WORK/cpu_repo" "${COMMON[@]}" \
      --cpu-work-units "$UNITS" --json "$WORK/job_cpu_$round.json"
  fi
  run "$STUDY" study --mode service --server "$URL" --server-pid "$SERVER_PID" "${COMMON[@]}" \
    --streams "$THREADS" --cpu-work-units "$UNITS" --json "$WORK/job_service_$round.json"
  run "$STUDY" study --mode service --server "$URL" --server-pid "$SERVER_PID" "${COMMON[@]}" \
    --streams $((2 * THREADS)) --cpu-work-units "$UNITS" --json "$WORK/job_service_overlap_$round.json"
done

# e. saturation: N client threads (one event in flight each) against the one server. The CPU part
# sleeps as long as it would compute (the clients' CPUs are elsewhere, as in the paper), so that
# the curve shows the server's capacity rather than the clients and the server fighting over the
# same cores.
for n in "${SATURATION[@]}"; do
  events=$(( 2 * n > EVENTS ? 2 * n : EVENTS ))
  run "$STUDY" study --mode service --server "$URL" --server-pid "$SERVER_PID" --threads "$n" \
    --streams "$n" --events "$events" \
    --warmup-events 2 --patches "$PATCHES" --cpu-work sleep --cpu-sleep-ms "$CPU_MS" \
    --json "$WORK/saturation_$n.json"
done

kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=""
mkdir -p docs/perf
"$PY" bench/study_report.py --work "$WORK" --out "$OUT" --plots docs/perf \
  --started "$STARTED" --load-before "$LOAD_BEFORE" --load-after "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --command "bash bench/run_study.sh $OUT $([[ $QUICK == 1 ]] && echo --quick) $([[ $GPU == 1 ]] && echo --gpu)" \
  --kind "$KIND" --instances "$INSTANCES" --saturation "${SATURATION[*]}" --rounds "$ROUNDS"
echo "wrote $OUT and docs/perf/study_saturation.png, docs/perf/study_ratio.png" >&2
