#!/usr/bin/env bash
# Install what is needed, build, and run every test (unit, root integration, end to end).
# Root integration tests need root: they load BPF programs. Run this as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 900 "$@"
