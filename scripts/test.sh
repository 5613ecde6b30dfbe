#!/usr/bin/env bash
# The whole test suite: set up and build (scripts/setup.sh), then
#   1. the release build: C++ unit tests (CTest) and the black-box tests (pytest: the real server
#      binary on free loopback ports, NVIDIA's tritonclient as the client);
#   2. the AddressSanitizer + UndefinedBehaviorSanitizer build (no LibTorch): the unit tests and
#      every black-box test that does not need LibTorch, failing on any sanitizer report;
#   3. the ThreadSanitizer build: the scheduler, batching, instance and core tests, and the
#      event-processing client (EventClient, ServerRegistry; in-process and fake endpoints).
# `.ci/run` runs exactly this. BEAMLINE_SKIP_SANITIZERS=1 skips stage 2; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

run_stage() {  # preset, has-libtorch
  local preset=$1
  BEAMLINE_PRESET=$preset bash scripts/setup.sh
  echo "== [$preset] unit tests (ctest)"
  ctest --preset "$preset" -j 2 --timeout 300
  echo "== [$preset] integration tests (pytest)"
  BEAMLINE_BIN=$ROOT/build/$preset/bin/beamline \
  BEAMLINE_BACKEND_DIR=$ROOT/build/$preset/backends \
  BEAMLINE_HAS_LIBTORCH=$2 BEAMLINE_REUSE_MODELS=1 \
    "$ROOT/.venv/bin/python" -m pytest tests/integration -q -p no:cacheprovider "${@:3}"
}

run_stage release 1 "$@"
if [[ "${BEAMLINE_SKIP_SANITIZERS:-0}" != 1 ]]; then
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1
  run_stage asan 0 "$@"

  echo "== [tsan] scheduler, batching and core tests under ThreadSanitizer"
  [[ -f build/tsan/build.ninja ]] || cmake --preset tsan >/dev/null
  TSAN_TESTS=(test_dynamic_batcher test_batching test_ensemble test_server_core test_client_event)
  cmake --build build/tsan -- -j "${BEAMLINE_JOBS:-2}" "${TSAN_TESTS[@]}" \
    beamline_backend_identity beamline_backend_bad_version
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" BEAMLINE_BACKEND_DIR=$ROOT/build/tsan/backends \
    ctest --test-dir build/tsan -j 2 --output-on-failure --timeout 300 \
    -R '^(DynamicBatcherTest|BatchingTest|InstancesTest|EnsembleTest|ServerCoreTest|BackendLoaderTest|EventClientTest|ServerRegistryTest|Modes/RetryTest|EventClientConfigTest|RequestEncodingTest|InferRequestSharedMemoryTest|InferResultSharedMemoryTest|SharedMemoryRegionTest)\.'
fi
