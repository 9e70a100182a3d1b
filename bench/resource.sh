#!/usr/bin/env bash
# resource probe cost, in one run:
#  1. the traced workload's cost: getppid, fork+exec, pipe ping-pong and a two-thread mutex loop
#     (bench/micro.c), each without the tool and with procimage -r collecting for every thread
#     at 1 s and at 100 ms, in interleaved rounds; medians and ratios against no tool.
#  2. procimage's own CPU use with 1000 sleeping processes alive (every thread targeted), at
#     1 s and 100 ms intervals: utime+stime of the procimage process over a window, as % of
#     one CPU; with all records, and with "active_only" (records only for tasks that did
#     something, which is what 1000 sleepers then produce: almost nothing).
# Usage: sudo bench/resource.sh [ROUNDS] [WINDOW_S]
source "$(dirname "$0")/lib.sh"
need_root
ROUNDS=${1:-5}
WINDOW=${2:-10}
build_bench micro.c
W="$OUT/bin/micro"

declare -A N=([getppid]=2000000 [forkexec]=800 [pipe]=100000 [mutex]=30000000)
workloads=(getppid forkexec pipe mutex)
configs=(none r1000 r100)

run_config() { # CONFIG WORKLOAD
  case $1 in
    none) $W "$2" "${N[$2]}" ;;
    r1000)
      start_tool "$OUT/r1000.log" "collecting for" "$PROCIMAGE" -r --interval 1000 -o jsonl:/dev/null
      $W "$2" "${N[$2]}"; stop_tool ;;
    r100)
      start_tool "$OUT/r100.log" "collecting for" "$PROCIMAGE" -r --interval 100 -o jsonl:/dev/null
      $W "$2" "${N[$2]}"; stop_tool ;;
  esac
}

for r in $(seq 1 "$ROUNDS"); do
  for w in "${workloads[@]}"; do
    for c in "${configs[@]}"; do
      run_config "$c" "$w" >>"$OUT/$w.$c.txt"
    done
  done
done

echo "resource probe, $(nproc) CPUs, kernel $(uname -r), $ROUNDS rounds"
echo
echo "1. cost to the traced workload (procimage -r: every thread of the system targeted)"
report_header
for w in "${workloads[@]}"; do
  report_line "$w x ${N[$w]}: no tool" "$OUT/$w.none.txt" "$OUT/$w.none.txt"
  report_line "$w: procimage -r --interval 1000" "$OUT/$w.none.txt" "$OUT/$w.r1000.txt"
  report_line "$w: procimage -r --interval 100" "$OUT/$w.none.txt" "$OUT/$w.r100.txt"
done

# ---------------------------------------------------------------- 2. the host's own CPU
SLEEPERS=()
cleanup_sleepers() { [ ${#SLEEPERS[@]} -gt 0 ] && kill "${SLEEPERS[@]}" 2>/dev/null; wait 2>/dev/null || true; }
trap 'stop_tool; cleanup_sleepers; rm -rf "$OUT"' EXIT
for i in $(seq 1 1000); do
  sleep 3600 &
  SLEEPERS+=($!)
done
HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

host_cpu() { # LABEL INTERVAL_MS ACTIVE_ONLY
  local label=$1 iv=$2 active=$3
  cat >"$OUT/p.json" <<EOF
{"version": 1, "interval_ms": $iv, "target": {"all": true},
 "probes": {"resource": {"active_only": $active}},
 "sinks": {"jsonl": {"path": "$OUT/host.jsonl"}}}
EOF
  : >"$OUT/host.jsonl"
  start_tool "$OUT/host.log" "collecting for" "$PROCIMAGE" --pipeline "$OUT/p.json"
  sleep 2
  local t0 l0 t1 l1 tasks
  t0=$(cpu_ticks "$TOOL_PID"); l0=$(wc -l <"$OUT/host.jsonl")
  sleep "$WINDOW"
  t1=$(cpu_ticks "$TOOL_PID"); l1=$(wc -l <"$OUT/host.jsonl")
  stop_tool
  tasks=$(ls -d /proc/[0-9]*/task/[0-9]* 2>/dev/null | wc -l)
  printf '%-46s %9.2f%% %12.0f\n' "$label" \
    "$(echo "($t1 - $t0) * 100 / $HZ / $WINDOW" | bc -l)" "$(echo "($l1 - $l0) / $WINDOW" | bc -l)"
  echo "$tasks" >"$OUT/tasks.txt"
}

echo
echo "2. procimage's own CPU with 1000 sleeping processes (every thread targeted; ${WINDOW} s window)"
printf '%-46s %10s %12s\n' "configuration" "CPU" "records/s"
host_cpu "interval 1000 ms, all records" 1000 false
host_cpu "interval 100 ms, all records" 100 false
host_cpu "interval 1000 ms, active_only" 1000 true
host_cpu "interval 100 ms, active_only" 100 true
echo "(tasks alive at the end: $(cat "$OUT/tasks.txt"); CPU as % of one CPU, from /proc/<pid>/stat)"
