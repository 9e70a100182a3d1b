#!/usr/bin/env bash
# resource probe cost, in one run:
#  1. the traced workload's cost: getppid, fork+exec, pipe ping-pong and a two-thread mutex loop
#     (bench/micro.c), each with no tool, with a procimage host loaded but inactive (the control:
#     a process that merely exists changes CPU idle states and wake-ups on a small VM), and with
#     procimage -r collecting for every thread at 1 s and at 100 ms; interleaved rounds, medians
#     of wall time and of the workload's own CPU time (perf stat task-clock: the kernel's
#     on-CPU ns of the workload and its children, which waiting for a CPU on a shared machine
#     does not inflate), ratios against no tool.
#  2. procimage's own CPU use with 1000 sleeping processes alive (every thread targeted), at
#     1 s and 100 ms intervals: utime+stime of the procimage process over a window, as % of
#     one CPU; with all records, and with "active_only" (records only for tasks that did
#     something, which is what 1000 sleepers then produce: almost nothing).
# Usage: sudo bench/resource.sh [ROUNDS] [WINDOW_S]
source "$(dirname "$0")/lib.sh"
need_root
command -v perf >/dev/null || { echo "bench: needs perf (linux-perf) for the workloads' task-clock" >&2; exit 1; }
ROUNDS=${1:-15}
WINDOW=${2:-10}
build_bench micro.c
W="$OUT/bin/micro"

declare -A N=([getppid]=1000000 [forkexec]=500 [pipe]=60000 [mutex]=20000000)
workloads=(getppid forkexec pipe mutex)
configs=(none idle r1000 r100)

timed() { # OUT_PREFIX WORKLOAD: wall seconds (from micro) and on-CPU seconds (task-clock)
  perf stat -x, -o "$OUT/t.txt" -e task-clock -- "$W" "$2" "${N[$2]}" >>"$1.wall"
  awk -F, '$3 == "task-clock" {print $1 / 1000}' "$OUT/t.txt" >>"$1.cpu"
}

run_config() { # CONFIG WORKLOAD
  local o="$OUT/$2.$1"
  case $1 in
    none) timed "$o" "$2" ;;
    idle)
      start_tool "$OUT/idle.log" "inactive: activate it" "$PROCIMAGE" -r --start inactive --name bench-resource -o jsonl:/dev/null
      timed "$o" "$2"; stop_tool ;;
    r1000)
      start_tool "$OUT/r1000.log" "collecting for" "$PROCIMAGE" -r --interval 1000 --name bench-resource -o jsonl:/dev/null
      timed "$o" "$2"; stop_tool ;;
    r100)
      start_tool "$OUT/r100.log" "collecting for" "$PROCIMAGE" -r --interval 100 --name bench-resource -o jsonl:/dev/null
      timed "$o" "$2"; stop_tool ;;
  esac
}

for r in $(seq 1 "$ROUNDS"); do
  for w in "${workloads[@]}"; do
    for c in "${configs[@]}"; do
      run_config "$c" "$w"
    done
  done
done

ratio() { echo "$(median <"$2") / $(median <"$1")" | bc -l; }
echo "resource probe, $(nproc) CPUs, kernel $(uname -r), $ROUNDS rounds, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "1. cost to the traced workload (procimage -r: every thread of the system targeted)"
printf '%-40s %10s %7s %10s %7s\n' "configuration" "wall s" "ratio" "CPU s" "ratio"
for w in "${workloads[@]}"; do
  for c in "${configs[@]}"; do
    case $c in
      none) label="$w x ${N[$w]}: no tool" ;;
      idle) label="$w: host loaded, inactive" ;;
      r1000) label="$w: procimage -r, 1 s" ;;
      r100) label="$w: procimage -r, 100 ms" ;;
    esac
    b="$OUT/$w.none"; o="$OUT/$w.$c"
    printf '%-40s %10.4f %6.3fx %10.4f %6.3fx\n' "$label" "$(median <"$o.wall")" "$(ratio "$b.wall" "$o.wall")" \
      "$(median <"$o.cpu")" "$(ratio "$b.cpu" "$o.cpu")"
  done
done

summary "resource sampling of every thread, 1 s: ${workloads[*]}" \
  "$(for w in "${workloads[@]}"; do printf "%.3fx " "$(ratio "$OUT/$w.none.cpu" "$OUT/$w.r1000.cpu")"; done)CPU time" "" ""

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
  start_tool "$OUT/host.log" "collecting for" "$PROCIMAGE" --name bench-resource --pipeline "$OUT/p.json"
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
