#!/usr/bin/env bash
# Install what is needed, build, and draw the portrait of the built-in demo workload:
# it forks, vforks and execs, fails an exec, starts threads, has a child killed by a
# signal and exits with status 3.
#  1. its key time points, as procimage prints them (keytime probe, stdout sink);
#  2. the same workload with every probe (-a --cpu) into a JSON-lines file, and its portrait:
#     the text report, an HTML page and a Chrome trace (procimage report, the report sink).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
echo
echo "== 1. key time points: procimage -k -- build/procimage-demo"
set +e
./build/procimage -k -- ./build/procimage-demo
rc=$?
set -e
echo "== the demo exited with status $rc (procimage passes it on)"

out=${PROCIMAGE_DEMO_OUT:-/tmp/procimage-demo.jsonl}
html=${out%.jsonl}.html
trace=${out%.jsonl}.trace.json
echo
echo "== 2. the portrait: procimage -a --cpu -o jsonl:$out -o report:$html -o report:$trace -- build/procimage-demo"
PROCIMAGE_DEMO_LOG=${out%.jsonl}.log ./build/procimage -q -a --cpu --no-portrait -o "jsonl:$out" -o "report:$html" -o "report:$trace" \
  -- ./build/procimage-demo >/dev/null || true
echo "$(wc -l <"$out") records in $out; their portrait (procimage report $out):"
echo
./build/procimage report "$out"
echo
echo "HTML portrait:  $html  (one self-contained file: open it in a browser)"
echo "Chrome trace:   $trace  (open it in https://ui.perfetto.dev or chrome://tracing)"
echo "(docs/report.md explains every figure; jq . $out shows every record)"
