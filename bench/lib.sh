# Shared by the bench scripts: build, start/stop a tool in the background, run a workload
# several times in interleaved rounds and print medians and ratios.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
BUILD=${BUILD_DIR:-$ROOT/build}
# PROCIMAGE=/path/to/procimage measures that build as it is (nothing is built)
PROCIMAGE_GIVEN=${PROCIMAGE:+1}
PROCIMAGE=${PROCIMAGE:-$BUILD/procimage}
OUT=$(mktemp -d /tmp/procimage-bench.XXXXXX)
trap 'stop_tool; rm -rf "$OUT"' EXIT

need_root() {
  if [ "$(id -u)" -ne 0 ]; then echo "bench: run as root (the tools load BPF programs)" >&2; exit 1; fi
}

build_bench() {
  bash "$ROOT/scripts/install-deps.sh" --bench >/dev/null
  if [ -z "$PROCIMAGE_GIVEN" ]; then BUILD_DIR=$BUILD bash "$ROOT/scripts/build.sh" >/dev/null; fi
  mkdir -p "$OUT/bin"
  for src in "$@"; do
    cc -O2 -pthread -o "$OUT/bin/$(basename "$src" .c)" "$BENCH_DIR/$src"
  done
}

TOOL_PID=
# start_tool LOGFILE READY_REGEX CMD...: start CMD in the background, wait until LOGFILE
# matches READY_REGEX (the tool has attached).
start_tool() {
  local log=$1 ready=$2; shift 2
  "$@" >"$log.out" 2>"$log" &
  TOOL_PID=$!
  for _ in $(seq 1 400); do
    if grep -qE "$ready" "$log" "$log.out" 2>/dev/null; then sleep 0.2; return 0; fi
    if ! kill -0 "$TOOL_PID" 2>/dev/null; then echo "bench: tool failed: $*" >&2; cat "$log" >&2; exit 1; fi
    sleep 0.05
  done
  echo "bench: tool not ready after 20 s: $*" >&2; exit 1
}
stop_tool() {
  if [ -n "${TOOL_PID:-}" ]; then
    kill -INT "$TOOL_PID" 2>/dev/null || true
    wait "$TOOL_PID" 2>/dev/null || true
    TOOL_PID=
  fi
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.6f\n", (a[NR/2]+a[NR/2+1])/2}'; }

# report NAME BASELINE_FILE FILE...: print median seconds, ratio against the baseline's median,
# and the spread of the runs ((max - min) / median), so that a ratio can be read against the
# noise of the same configuration.
report_header() { printf '%-44s %12s %8s %8s\n' "configuration" "median s" "ratio" "spread"; }
spread() { sort -n | awk '{a[NR]=$1} END {m = (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; printf "%.1f\n", (m > 0 ? 100 * (a[NR]-a[1]) / m : 0)}'; }
report_line() {
  local name=$1 base=$2 file=$3 b m
  b=$(median <"$base"); m=$(median <"$file")
  printf '%-44s %12.4f %7.3fx %7s%%\n' "$name" "$m" "$(echo "$m / $b" | bc -l)" "$(spread <"$file")"
}

# summary WHAT FIGURE PEER RATIO: one row of bench/all.sh's table (appended to $BENCH_SUMMARY
# when all.sh runs the script; a script run alone prints its own table only).
summary() {
  if [ -n "${BENCH_SUMMARY:-}" ]; then printf '| %s | %s | %s | %s |\n' "$@" >>"$BENCH_SUMMARY"; fi
}
# med_ratio BASELINE_FILE FILE: the ratio of the medians, "1.234x"
med_ratio() { awk -v b="$(median <"$1")" -v m="$(median <"$2")" 'BEGIN {printf "%.3fx", (b > 0 ? m / b : 0)}'; }
# summary_ratios WHAT BASELINE_FILE FILE PEER_NAME PEER_FILE: a summary row of two ratios
# against one baseline, procimage's and the peer tool's, and procimage's against the peer's
summary_ratios() {
  local what=$1 base=$2 file=$3 peer=$4 pfile=$5
  summary "$what" "$(med_ratio "$base" "$file")" "$peer $(med_ratio "$base" "$pfile")" \
    "$(awk -v a="$(median <"$file")" -v b="$(median <"$pfile")" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}') of the peer's time"
}
# ms_stats FILE: "median min max spread%" of a file of seconds, in ms
ms_stats() {
  sort -n "$1" | awk '{a[NR]=$1} END {m = (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2;
    printf "%.1f %.1f %.1f %.0f\n", m*1e3, a[1]*1e3, a[NR]*1e3, (m > 0 ? 100*(a[NR]-a[1])/m : 0)}'
}
