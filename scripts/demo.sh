#!/usr/bin/env bash
# Install what is needed, build, and draw the portrait of the built-in demo workload:
# it forks, vforks and execs, fails an exec, starts threads, has a child killed by a
# signal and exits with status 3.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
echo
echo "== procimage -k --cpu -- build/procimage-demo"
set +e
./build/procimage -k -- ./build/procimage-demo
rc=$?
set -e
echo "== the demo exited with status $rc (procimage passes it on)"
