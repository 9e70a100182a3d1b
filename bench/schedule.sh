#!/usr/bin/env bash
# schedule probe overhead, side by side in one run, on two workloads:
#   pipe ping-pong (two processes, one byte back and forth: wakeups and switches only)
#   CPU contention (4 threads per CPU: short bursts of work, short sleeps, run-queue waits)
# each with: no tool | procimage -S on the workload only (target) | procimage -S system-wide |
#            runqlat (libbpf-tools, system-wide histogram)
# The workloads time themselves, so tool start-up and shutdown are not in the figures. Rounds
# interleave the configurations so that drift on a shared machine hits them all alike.
# Usage: sudo bench/schedule.sh [ROUNDS] [PINGPONG_ROUND_TRIPS] [CONTEND_ROUNDS]
#        (BUILD_DIR=build-schedule to use another build tree)
# PROGSTATS=1 also measures the nanoseconds each program takes per run (procimage's and
# runqlat's), with kernel.bpf_stats_enabled switched on for that part only: a figure the load
# of a shared machine does not blur. It is a global setting, hence not on by default.
source "$(dirname "$0")/lib.sh"
need_root
ROUNDS=${1:-7}
N_PP=${2:-100000}
N_CT=${3:-2000}

bash "$ROOT/scripts/install-deps.sh" --bench >/dev/null
# Only what this bench runs: the rest of the tree need not build.
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target procimage probe_schedule sink_jsonl >/dev/null
mkdir -p "$OUT/bin"
cc -O2 -o "$OUT/bin/pingpong" "$BENCH_DIR/schedule_pingpong.c"
cc -O2 -pthread -o "$OUT/bin/contend" "$BENCH_DIR/schedule_contend.c"
RUNQLAT=${RUNQLAT:-/usr/sbin/runqlat}
[ -x "$RUNQLAT" ] || { echo "bench: $RUNQLAT not found (apt-get install libbpf-tools)" >&2; exit 1; }

configs=(none target system runqlat)
run_config() { # CONFIG WORKLOAD...
  local c=$1; shift
  case $c in
    none) "$@" ;;
    target) "$PROCIMAGE" -q -S -o jsonl:/dev/null -- "$@" ;;
    system)
      start_tool "$OUT/sys.log" "collecting for" "$PROCIMAGE" -S -o jsonl:/dev/null
      "$@"; stop_tool ;;
    runqlat)
      start_tool "$OUT/rq.log" "Tracing" stdbuf -oL "$RUNQLAT"
      "$@"; stop_tool ;;
  esac
}

for r in $(seq 1 "$ROUNDS"); do
  for c in "${configs[@]}"; do
    run_config "$c" "$OUT/bin/pingpong" "$N_PP" >>"$OUT/pp_$c.txt"
    run_config "$c" "$OUT/bin/contend" "$(( 4 * $(nproc) ))" "$N_CT" >>"$OUT/ct_$c.txt"
  done
done

# avg ns per run of the programs NAMES... that use a map called MAP (bpftool -j, jq)
prog_ns() {
  local map=$1; shift
  local mid
  mid=$(bpftool -j map show | jq -r --arg m "$map" '[.[] | select(.name == $m) | .id] | last')
  bpftool -j prog show | jq -r --argjson mid "$mid" --arg names "$*" '
    .[] | select((.map_ids // []) | index($mid)) | select(.name as $n | ($names | split(" ") | index($n)))
    | "\(.name) \(if .run_cnt > 0 then (.run_time_ns / .run_cnt | floor) else 0 end) ns/run (\(.run_cnt) runs)"'
}

if [ "${PROGSTATS:-0}" = 1 ]; then
  old=$(cat /proc/sys/kernel/bpf_stats_enabled)
  trap 'echo "$old" > /proc/sys/kernel/bpf_stats_enabled; stop_tool; rm -rf "$OUT"' EXIT
  echo 1 > /proc/sys/kernel/bpf_stats_enabled
  "$PROCIMAGE" -q -S -o jsonl:/dev/null -- sh -c "\"$OUT/bin/pingpong\" $N_PP >/dev/null; \
    $(declare -f prog_ns); prog_ns sc_tasks sc_wakeup sc_switch" >"$OUT/ns_procimage.txt"
  start_tool "$OUT/rq2.log" "Tracing" stdbuf -oL "$RUNQLAT"
  "$OUT/bin/pingpong" "$N_PP" >/dev/null
  prog_ns start sched_wakeup sched_switch >"$OUT/ns_runqlat.txt"
  stop_tool
  echo "$old" > /proc/sys/kernel/bpf_stats_enabled
fi

echo "schedule probe overhead: $ROUNDS rounds, $(nproc) CPUs, kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
for w in pp ct; do
  if [ $w = pp ]; then echo; echo "pipe ping-pong, $N_PP round trips"; else
    echo; echo "CPU contention, $(( 4 * $(nproc) )) threads x $N_CT rounds (work + 100 µs sleep)"; fi
  report_header
  report_line "no tool" "$OUT/${w}_none.txt" "$OUT/${w}_none.txt"
  report_line "procimage -S -- workload (target)" "$OUT/${w}_none.txt" "$OUT/${w}_target.txt"
  report_line "procimage -S (system-wide)" "$OUT/${w}_none.txt" "$OUT/${w}_system.txt"
  report_line "runqlat (libbpf-tools)" "$OUT/${w}_none.txt" "$OUT/${w}_runqlat.txt"
  what=$([ $w = pp ] && echo "pipe ping-pong" || echo "CPU contention")
  summary_ratios "$what, run-queue delay, procimage -S (target)" "$OUT/${w}_none.txt" "$OUT/${w}_target.txt" runqlat "$OUT/${w}_runqlat.txt"
  summary "$what, procimage -S (system-wide)" "$(med_ratio "$OUT/${w}_none.txt" "$OUT/${w}_system.txt")" "" ""
done
if [ "${PROGSTATS:-0}" = 1 ]; then
  echo; echo "time per program run during ping-pong (kernel.bpf_stats_enabled)"
  sed 's/^/  procimage -S -- workload: /' "$OUT/ns_procimage.txt"
  sed 's/^/  runqlat:                  /' "$OUT/ns_runqlat.txt"
fi
