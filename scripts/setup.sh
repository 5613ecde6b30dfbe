#!/usr/bin/env bash
# Installs what is missing (Debian packages, the Python test environment) and builds beamline.
# Idempotent and quick when nothing changed: packages are checked with dpkg, the venv is keyed by
# a hash of tests/requirements.txt, and the build is incremental (Ninja).
#
# Environment: BEAMLINE_PRESET (default release), BEAMLINE_SKIP_APT=1 to skip the package check.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PRESET=${BEAMLINE_PRESET:-release}

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libtorch-dev python3-torch libopenblas0-pthread
  libspdlog-dev libcli11-dev nlohmann-json3-dev libboost-dev zlib1g-dev libtbb-dev
  prometheus
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-venv python3-pip python3-numpy
)

if [[ "${BEAMLINE_SKIP_APT:-0}" != 1 ]]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# Python environment for the example models (Debian's torch) and the black-box tests (NVIDIA's
# tritonclient from PyPI). /usr/bin/python3 is Debian's, which has torch; another python3 may come
# first on PATH.
VENV=$ROOT/.venv
REQ_HASH=$(sha256sum tests/requirements.txt | cut -c1-16)
if [[ ! -x $VENV/bin/python || "$(cat "$VENV/.requirements" 2>/dev/null)" != "$REQ_HASH" ]]; then
  log "creating the Python environment in .venv"
  rm -rf "$VENV"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/requirements.txt
  echo "$REQ_HASH" > "$VENV/.requirements"
fi

# CUDA is optional: found in /usr/local/cuda, it is only compiled (no GPU is needed to build).
export PATH=$PATH:/usr/local/cuda/bin
if [[ ! -f build/$PRESET/build.ninja ]]; then
  log "configuring (preset $PRESET)"
  cmake --preset "$PRESET" >/dev/null
fi
log "building (preset $PRESET)"
# Two parallel jobs at most: LibTorch translation units need ~1 GB each.
cmake --build --preset "$PRESET" -- -j "${BEAMLINE_JOBS:-2}" >&2

# The example model repository (TorchScript, made with Debian's python3-torch).
/usr/bin/python3 models/make_example_repository.py --output models/repository --reference models/reference
