#!/usr/bin/env bash
# Install what is needed, build, run a fixed-length fuzz run of the pipeline and --set parsers,
# then every test (unit, root integration, the kernel matrix), and on request the same tests on
# the asan-ubsan build (procimage, its plugins and sinks instrumented; the test workloads not).
# Root integration tests need root: they load BPF programs. Run this as root.
# PROCIMAGE_TEST_FUZZ=0 leaves out the fuzz step; PROCIMAGE_TEST_SANITIZE=1 adds the asan-ubsan
# step (off by default until its full integration run is proven clean on CI).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
# the fuzz run first (its output is long), so that ctest's summary closes the run
if [ "${PROCIMAGE_TEST_FUZZ:-1}" != 0 ]; then
  bash scripts/fuzz.sh
fi
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure --timeout 900 "$@")
if [ "${PROCIMAGE_TEST_SANITIZE:-0}" != 0 ]; then
  cmake --preset asan-ubsan >/dev/null
  cmake --build build-asan -j"$(nproc)"
  # a report stops the program with a non-zero status: the test that ran it fails
  export ASAN_OPTIONS="halt_on_error=1:abort_on_error=0:detect_leaks=0:exitcode=86"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=86"
  (cd build-asan && ctest --output-on-failure --timeout 900 "$@")
fi
