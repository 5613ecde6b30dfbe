#!/usr/bin/env bash
# The benchmark suite, driven by `beamline perf`; writes markdown tables into docs/PERFORMANCE.md
# (between <!-- suite:begin --> and <!-- suite:end -->) and PNG plots into docs/perf/.
#
#   bash bench/run_suite.sh [--duration-s S] [--parts a,b,d] [--levels 1,2,4,...] [--no-docs]
#
#   a  beamline vs a bare gRPC echo server (beamline_echo_server, same threading model):
#      identity_fp32, 16 KiB FP32 requests, concurrency --levels (default 1,2,4,8,16,32,64).
#   b  beamline vs MLServer (identity runtime in bench/mlserver_identity) at concurrency 16 over
#      gRPC and HTTP JSON; and NVIDIA's perf_analyzer (PyPI perf-analyzer) against beamline beside
#      `beamline perf`, when it installs and runs.
#   d  9.2 MB requests (FP32 [1, 2300000], native identity backend) over gRPC, through system
#      shared memory, and a memcpy of the same bytes.
#   bench/run_study.sh (parts c, e; another module) is run too when it exists.
#
# S is the measurement window (default 3 s); every level runs >= 3 windows (stability 10%, at most
# 6 windows). Python packages for b and the plots (bench/requirements.txt) are installed on demand
# into build/bench-venv, never into the test environment. Needs a release build with the beamline,
# beamline_echo_server, identity and pytorch backend targets, and models/repository.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION_S=3
PARTS=a,b,d
LEVELS=1,2,4,8,16,32,64
WRITE_DOCS=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --duration-s) DURATION_S=$2; shift 2 ;;
    --parts) PARTS=$2; shift 2 ;;
    --levels) LEVELS=$2; shift 2 ;;
    --no-docs) WRITE_DOCS=0; shift ;;
    -h|--help) sed -n 2,22p "$0"; exit 0 ;;
    *) echo "run_suite.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
BUILD=build/${BEAMLINE_PRESET:-release}
BIN=$ROOT/$BUILD/bin
WINDOW_MS=$(python3 -c "print(int(float('$DURATION_S') * 1000))")
PERF_FLAGS=(-p "$WINDOW_MS" --warmup 1000 -s 10 -r 6)
VENV=$ROOT/build/bench-venv
WORK=$(mktemp -d)
PIDS=()
# Servers started inside $(...) run in a subshell, so their ids go to a file, not just to PIDS.
cleanup() {
  [[ -f $WORK/pids ]] && mapfile -t -O "${#PIDS[@]}" PIDS <"$WORK/pids"
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
has_part() { [[ ",$PARTS," == *",$1,"* ]]; }
log() { echo "[suite] $*" >&2; }

bench_venv() {  # matplotlib, mlserver, perf-analyzer, on demand
  if [[ ! -x $VENV/bin/python ]]; then
    /usr/bin/python3 -m venv "$VENV"
  fi
  for package in "$@"; do
    "$VENV/bin/pip" install -q "$package" >>"$WORK/pip.log" 2>&1 || log "pip install $package failed (see below)"
  done
}

# Starts a server; waits for a line matching $2 on its stdout; echoes the captured group of $3.
start_server() {  # name pattern command...
  local name=$1 pattern=$2; shift 2
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  echo $! >>"$WORK/pids"
  for _ in $(seq 1 1200); do
    if grep -qP "$pattern" "$WORK/$name.out" "$WORK/$name.err" 2>/dev/null; then
      grep -ohP "$pattern" "$WORK/$name.out" "$WORK/$name.err" | head -1
      return 0
    fi
    sleep 0.1
  done
  log "$name did not start:"; tail -20 "$WORK/$name.err" >&2; return 1
}

perf() {  # output-json perf-args...
  local out=$1; shift
  "$BIN/beamline" perf "${PERF_FLAGS[@]}" --json "$out" "$@" >"$out.txt" 2>"$out.err" || {
    log "beamline perf $* failed: $(tail -1 "$out.err")"; return 1; }
}

MACHINE="$(nproc) vCPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr), load average $(cut -d' ' -f1 /proc/loadavg) at the start"
DATE=$(date -u '+%F %H:%M UTC')
COMMAND="bash bench/run_suite.sh --duration-s $DURATION_S --parts $PARTS --levels $LEVELS"
mkdir -p "$WORK/a" "$WORK/b" "$WORK/d"
bench_venv "matplotlib>=3.7,<3.9" "contourpy<1.2"

# ----- a: beamline vs echo --------------------------------------------------------------------
if has_part a; then
  log "part a: beamline vs echo, identity_fp32 16 KiB, concurrency $LEVELS"
  BEAMLINE=$(start_server beamline_a 'grpc=\K\S+' "$BIN/beamline" serve --model-repository models/repository \
    --grpc-address 127.0.0.1 --grpc-port 0 --http-port -1 --metrics-port -1)
  ECHO=$(start_server echo_a 'grpc=\K\S+' "$BIN/beamline_echo_server" --port 0)
  for level in ${LEVELS//,/ }; do  # side by side, level by level, so drift hits both alike
    log "  concurrency $level"
    perf "$WORK/a/beamline_$level.json" -m identity_fp32 -u "$BEAMLINE" --shape INPUT__0:4096 \
      --concurrency-range "$level" || true
    perf "$WORK/a/echo_$level.json" -m identity_fp32 -u "$ECHO" --shape INPUT__0:4096 \
      --concurrency-range "$level" || true
  done
  echo "$BEAMLINE $ECHO" >"$WORK/a/urls"
fi

# ----- b: beamline vs MLServer (and perf_analyzer) --------------------------------------------
if has_part b; then
  log "part b: MLServer"
  bench_venv mlserver "uvloop<0.22" perf-analyzer
  BEAMLINE_B=$(start_server beamline_b 'grpc=\K\S+' "$BIN/beamline" serve --model-repository models/repository \
    --grpc-address 127.0.0.1 --grpc-port 0 --http-address 127.0.0.1 --http-port 0 --metrics-port -1)
  BEAMLINE_B_HTTP=$(grep -oP 'http=\K\S+' "$WORK/beamline_b.out")
  perf "$WORK/b/beamline_grpc.json" -m identity_fp32 -u "$BEAMLINE_B" --shape INPUT__0:4096 \
    --concurrency-range 16 || true
  perf "$WORK/b/beamline_http_json.json" -m identity_fp32 -u "$BEAMLINE_B_HTTP" -i http \
    --http-format json --shape INPUT__0:4096 --concurrency-range 16 || true
  if [[ -x $VENV/bin/mlserver ]]; then
    read -r MS_HTTP MS_GRPC MS_METRICS < <(python3 -c "
import socket
s=[socket.socket() for _ in range(3)]
[x.bind(('127.0.0.1',0)) for x in s]
print(*[x.getsockname()[1] for x in s])")
    cp -r bench/mlserver_identity "$WORK/mlserver_identity"
    (cd "$WORK/mlserver_identity" && MLSERVER_HTTP_PORT=$MS_HTTP MLSERVER_GRPC_PORT=$MS_GRPC \
      MLSERVER_METRICS_PORT=$MS_METRICS exec "$VENV/bin/mlserver" start . \
      >"$WORK/mlserver.out" 2>"$WORK/mlserver.err") &
    PIDS+=($!)
    for _ in $(seq 1 600); do
      curl -sf "http://127.0.0.1:$MS_HTTP/v2/models/identity_fp32/ready" >/dev/null && break; sleep 0.2
    done
    python3 -c "import platform; print(platform.python_version())" >/dev/null
    MLSERVER_VERSION=$("$VENV/bin/python" -c "import mlserver; print(mlserver.__version__)" 2>/dev/null || echo "?")
    echo "$MLSERVER_VERSION" >"$WORK/b/mlserver_version"
    perf "$WORK/b/mlserver_grpc.json" -m identity_fp32 -u "127.0.0.1:$MS_GRPC" \
      --shape INPUT__0:1,4096 --concurrency-range 16 || true
    perf "$WORK/b/mlserver_http_json.json" -m identity_fp32 -u "127.0.0.1:$MS_HTTP" -i http \
      --http-format json --shape INPUT__0:1,4096 --concurrency-range 16 || true
  else
    echo "mlserver did not install: $(grep -m3 -i error "$WORK/pip.log" | tr '\n' ' ')" >"$WORK/b/mlserver_missing"
  fi
  # PyPI's `perf-analyzer` is a placeholder without a binary (0.1.0 when this was written); the
  # tritonclient wheels up to 2.4x bundled the C++ perf_analyzer, which needs libb64 (Debian
  # libb64-0d) and libcudart.so.12 (PyPI nvidia-cuda-runtime-cu12) even on CPU-only machines.
  PA=$VENV/bin/perf_analyzer
  if [[ ! -x $PA ]] || ! "$PA" --version >/dev/null 2>&1; then
    PA=$VENV/pa/perf_analyzer
    if [[ ! -x $PA ]]; then
      bench_venv nvidia-cuda-runtime-cu12
      mkdir -p "$VENV/pa"
      (cd "$VENV/pa" && "$VENV/bin/pip" download -q --no-deps "tritonclient==2.41.1" >>"$WORK/pip.log" 2>&1 &&
        unzip -q -o -j tritonclient-2.41.1-*.whl 'tritonclient-2.41.1.data/data/bin/perf_analyzer' &&
        chmod +x perf_analyzer && rm -f tritonclient-2.41.1-*.whl) || true
    fi
    CUDART=$(dirname "$(find "$VENV" -name 'libcudart.so.12*' | head -1)" 2>/dev/null || true)
    export LD_LIBRARY_PATH=${CUDART}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    if [[ -x $PA ]] && ! ldconfig -p | grep libb64.so.0d >/dev/null; then  # no -q: pipefail
      echo "perf_analyzer (tritonclient 2.41.1 wheel) needs libb64.so.0d: apt-get install libb64-0d" >"$WORK/b/pa_failed"
      PA=""
    fi
  fi
  if [[ -n $PA && -x $PA ]]; then
    "$PA" --version 2>&1 | head -1 >"$WORK/b/pa_version" || true  # it prints to stderr
    for level in 1 16; do
      # -s 50: perf_analyzer exits without numbers when a level is not stable, which on this
      # noisy shared machine happened at 10% (beamline perf reports such levels, marked unstable).
      "$PA" -m identity_fp32 -u "$BEAMLINE_B" -i grpc --shape INPUT__0:4096 --concurrency-range "$level" \
        --measurement-interval "$WINDOW_MS" -s 50 -f "$WORK/b/pa_$level.csv" >"$WORK/b/pa_$level.txt" 2>&1 \
        || echo "concurrency $level: perf_analyzer exited $?: $(tail -3 "$WORK/b/pa_$level.txt" | tr '\n' ' ')" >>"$WORK/b/pa_failed"
      perf "$WORK/b/beamline_pa_$level.json" -m identity_fp32 -u "$BEAMLINE_B" --shape INPUT__0:4096 \
        --concurrency-range "$level" || true
    done
  elif [[ ! -f $WORK/b/pa_failed ]]; then
    echo "no perf_analyzer binary: PyPI perf-analyzer is a placeholder and the tritonclient 2.41.1 wheel could not be fetched ($(grep -i -m3 'error' "$WORK/pip.log" | tr '\n' ' '))" >"$WORK/b/pa_failed"
  fi
fi

# ----- d: 9.2 MB requests -------------------------------------------------------------------
if has_part d; then
  log "part d: 9.2 MB over gRPC and system shared memory"
  mkdir -p "$WORK/large/large_identity/1"
  cat >"$WORK/large/large_identity/config.pbtxt" <<'PBTXT'
name: "large_identity"
backend: "identity"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 1, -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1, -1 ] } ]
PBTXT
  BEAMLINE_D=$(start_server beamline_d 'grpc=\K\S+' "$BIN/beamline" serve --model-repository "$WORK/large" \
    --grpc-address 127.0.0.1 --grpc-port 0 --http-port -1 --metrics-port -1 --allow-client-shm true)
  for level in 1 4; do
    perf "$WORK/d/grpc_$level.json" -m large_identity -u "$BEAMLINE_D" --shape INPUT0:1,2300000 \
      --input-data zero --concurrency-range "$level" || true
    perf "$WORK/d/shm_$level.json" -m large_identity -u "$BEAMLINE_D" --shape INPUT0:1,2300000 \
      --input-data zero --shared-memory system --output-shared-memory-size 9200000 \
      --concurrency-range "$level" || true
  done
  /usr/bin/python3 - "$WORK/d/memcpy.json" <<'PY'
import json, sys, time
import numpy as np
src = np.ones(2300000, np.float32); dst = np.empty_like(src)
np.copyto(dst, src)
times = []
for _ in range(200):
    t = time.perf_counter_ns(); np.copyto(dst, src); times.append(time.perf_counter_ns() - t)
times.sort()
json.dump({"bytes": src.nbytes, "p50_us": times[len(times)//2] / 1e3,
           "p99_us": times[int(len(times)*0.99)] / 1e3}, open(sys.argv[1], "w"))
PY
fi

# ----- c, e: another module's study -------------------------------------------------------
STUDY_FRAGMENT=""
if [[ -f bench/run_study.sh ]]; then
  log "bench/run_study.sh (parts c, e)"
  if bash bench/run_study.sh "$WORK/study.md"; then STUDY_FRAGMENT="$WORK/study.md";
  else log "bench/run_study.sh failed; its section is left out"; fi
fi

# ----- report --------------------------------------------------------------------------------
PLOT_DIR=docs/perf
[[ $WRITE_DOCS == 1 ]] || PLOT_DIR=$ROOT/build/suite-last/plots  # --no-docs leaves docs/ alone
# The raw reports of this run stay in build/suite-last/ for inspection.
rm -rf build/suite-last && mkdir -p build/suite-last/plots && cp -r "$WORK"/a "$WORK"/b "$WORK"/d build/suite-last/
"$VENV/bin/python" bench/suite_report.py --work "$WORK" --machine "$MACHINE" --date "$DATE" \
  --command "$COMMAND" --levels "$LEVELS" --study "$STUDY_FRAGMENT" \
  --plot-dir "$PLOT_DIR" --plot-script tools/beamline/perf_plot.py >"$WORK/suite.md"
cat "$WORK/suite.md"
if [[ $WRITE_DOCS == 1 ]]; then
  python3 - "$WORK/suite.md" docs/PERFORMANCE.md <<'PY'
import sys
fragment = open(sys.argv[1]).read().rstrip("\n")
path = sys.argv[2]
text = open(path).read()
begin, end = "<!-- suite:begin -->", "<!-- suite:end -->"
block = f"{begin}\n{fragment}\n{end}"
if begin in text and end in text:
    text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
open(path, "w").write(text)
PY
  log "wrote docs/PERFORMANCE.md (suite block) and docs/perf/*.png"
fi
