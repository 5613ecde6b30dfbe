#!/usr/bin/env bash
# The whole test suite: set up and build (scripts/setup.sh), then the C++ unit tests (CTest) and
# the black-box tests (pytest: the real server binary on free loopback ports, NVIDIA's tritonclient
# as the client). `.ci/run` runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PRESET=${BEAMLINE_PRESET:-release}
bash scripts/setup.sh
echo "== unit tests (ctest)"
ctest --preset "$PRESET" -j 2 --timeout 300
echo "== integration tests (pytest)"
export BEAMLINE_BIN=$ROOT/build/$PRESET/bin/beamline
export BEAMLINE_BACKEND_DIR=$ROOT/build/$PRESET/backends
export BEAMLINE_REUSE_MODELS=1
"$ROOT/.venv/bin/python" -m pytest tests/integration -q -p no:cacheprovider "$@"
