#!/usr/bin/env bash
# Install what is needed, build, run a fixed-length fuzz run of the pipeline and --set parsers,
# then every test (unit, root integration, the kernel matrix), then the unit and integration
# tests again on the asan-ubsan build (procimage, procimage-ctl, the core, its plugins and sinks
# instrumented with ASan and UBSan; the test workloads not, so their syscalls stay the same).
# Root integration tests need root: they load BPF programs. Run this as root.
# Arguments go to both ctest runs (e.g. -L unit, -R 'syscall:'). PROCIMAGE_TEST_FUZZ=0 leaves
# out the fuzz step, PROCIMAGE_TEST_SANITIZE=0 the asan-ubsan step.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
# the fuzz run first (its output is long), so that ctest's summaries close the run
if [ "${PROCIMAGE_TEST_FUZZ:-1}" != 0 ]; then
  bash scripts/fuzz.sh
fi
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure --timeout 900 "$@")
if [ "${PROCIMAGE_TEST_SANITIZE:-1}" = 0 ]; then
  exit 0
fi

echo "== the same tests on the asan-ubsan build (build-asan), without the kernel matrix and the load cases"
cmake --preset asan-ubsan >/dev/null
cmake --build build-asan -j"$(nproc)"
# A report (memory error, leak, undefined behaviour) stops the program with status 86, so the
# test that ran it fails. ASan's and LeakSanitizer's reports are also written to a file in
# $reports, so one from a process whose status no test looks at fails this step too (gcc's UBSan
# runtime ignores log_path beside ASan: its reports go to the program's stderr). Tests run some
# programs as uid 65534: the folder is writable by all.
reports=$(mktemp -d)
trap 'rm -rf "$reports"' EXIT
chmod 1777 "$reports"
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:exitcode=86:log_path=$reports/asan:log_exe_name=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=86:log_path=$reports/ubsan:log_exe_name=1"
status=0
# Left out there: the kernel matrix, and the "losses:" cases, which measure whether the host
# keeps up with 10,000-20,000 processes: an instrumented host runs several times slower, and the
# code they run is the code the other cases run.
(cd build-asan && ctest --output-on-failure --timeout 900 -E '^(kernels|losses: .*)$' "$@") || status=$?
if [ -n "$(ls -A "$reports")" ]; then
  for f in "$reports"/*; do
    echo "== sanitizer report ${f##*/}"
    cat "$f"
  done
  echo "asan-ubsan: $(ls "$reports" | wc -l) sanitizer report(s), above" >&2
  status=1
fi
exit "$status"
