#!/usr/bin/env bash
# profile probe overhead at 99 Hz on a busy loop (fixed work: any time taken from it makes the
# run longer), side by side in one run, with one busy thread and with one per CPU:
#   no tool | procimage --profile on the workload (-- CMD) | procimage --profile system-wide |
#   perf record -F 99 -g system-wide (the peer: the kernel's own sampler, writing its file)
# The workload times itself, so tool start-up and shutdown are not in the figures: its CPU
# seconds (which include the sampling interrupts it suffered, and not the time it waited for a
# CPU while other work ran) and its wall-clock seconds. Rounds interleave the configurations so
# that drift on a shared machine hits them all alike.
# Usage: sudo bench/profile.sh [ROUNDS] [ITERATIONS]   (BUILD_DIR=… to use another build tree)
# PROGSTATS=1 also measures the nanoseconds the sampling program takes per sample
# (kernel.bpf_stats_enabled, switched on for that part only): the probe's own cost, which the
# run-to-run spread of a shared VM hides in the ratios. It is a global setting, hence not on by
# default.
source "$(dirname "$0")/lib.sh"
need_root
ROUNDS=${1:-9}
N=${2:-3000000000}

bash "$ROOT/scripts/install-deps.sh" --bench >/dev/null
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target procimage probe_profile sink_folded >/dev/null
mkdir -p "$OUT/bin"
cc -O2 -fno-omit-frame-pointer -pthread -o "$OUT/bin/busy_loop" "$BENCH_DIR/busy_loop.c"
PERF=$(command -v perf || true)

configs=(none target system)
[ -n "$PERF" ] && configs+=(perf)
run_config() { # CONFIG THREADS
  local c=$1 th=$2
  case $c in
    none) "$OUT/bin/busy_loop" "$N" "$th" ;;
    target) "$PROCIMAGE" -q --profile -o "folded:$OUT/target.folded" -- "$OUT/bin/busy_loop" "$N" "$th" ;;
    system)
      start_tool "$OUT/sys.log" "collecting for" "$PROCIMAGE" --profile -o "folded:$OUT/system.folded"
      "$OUT/bin/busy_loop" "$N" "$th"; stop_tool ;;
    perf)
      # perf says nothing when it has started: give it a second
      "$PERF" record -q -F 99 -g -a -o "$OUT/perf.data" 2>"$OUT/perf.log" &
      TOOL_PID=$!; sleep 1
      "$OUT/bin/busy_loop" "$N" "$th"; stop_tool ;;
  esac
}

CPUS=$(nproc)
record() { # FILE_PREFIX: "wall cpu" on standard input
  read -r wall cpu
  echo "$wall" >>"$1.wall"; echo "$cpu" >>"$1.cpu"
}
for r in $(seq 1 "$ROUNDS"); do
  for c in "${configs[@]}"; do
    run_config "$c" 1 | record "$OUT/one_$c"
    run_config "$c" "$CPUS" | record "$OUT/all_$c"
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
  "$PROCIMAGE" -q --profile -o "folded:$OUT/stats.folded" -- sh -c "\"$OUT/bin/busy_loop\" $N $CPUS >/dev/null; \
    $(declare -f prog_ns); prog_ns pr_counts0 pr_sample" >"$OUT/ns_procimage.txt"
  echo "$old" > /proc/sys/kernel/bpf_stats_enabled
fi

echo "busy loop ($N iterations per thread), $ROUNDS rounds, $CPUS CPUs, kernel $(uname -r), sampling at 99 Hz"
for w in one all; do
  for m in cpu wall; do
    [ $w = one ] && echo "-- one busy thread, $m seconds" || echo "-- $CPUS busy threads (every CPU), $m seconds"
    report_header
    report_line "no tool" "$OUT/${w}_none.$m" "$OUT/${w}_none.$m"
    report_line "procimage --profile -- CMD" "$OUT/${w}_none.$m" "$OUT/${w}_target.$m"
    report_line "procimage --profile (all threads)" "$OUT/${w}_none.$m" "$OUT/${w}_system.$m"
    [ -n "$PERF" ] && report_line "perf record -F 99 -g -a" "$OUT/${w}_none.$m" "$OUT/${w}_perf.$m"
  done
done
if [ "${PROGSTATS:-0}" = 1 ]; then
  echo "-- time per sample of the sampling program, $CPUS busy threads (kernel.bpf_stats_enabled)"
  read -r _ ns _ <"$OUT/ns_procimage.txt"
  sed 's/^/  procimage --profile: /' "$OUT/ns_procimage.txt"
  echo "  at 99 Hz: $(echo "$ns * 99 / 10000000" | bc -l | cut -c1-6) % of each CPU"
fi
if [ -n "$PERF" ]; then
  summary_ratios "busy loop sampled at 99 Hz with stacks, CPU time, procimage --profile -- CMD" "$OUT/one_none.cpu" \
    "$OUT/one_target.cpu" "perf record -F 99 -g -a" "$OUT/one_perf.cpu"
  summary_ratios "the same, every CPU busy, procimage --profile (all threads)" "$OUT/all_none.cpu" \
    "$OUT/all_system.cpu" "perf record -F 99 -g -a" "$OUT/all_perf.cpu"
else
  summary "busy loop sampled at 99 Hz, procimage --profile -- CMD" "$(med_ratio "$OUT/one_none.cpu" "$OUT/one_target.cpu")" "" ""
fi
# the samples procimage took of the workload in its last round: the loop's frames are there
echo "-- heaviest stack of the last target run:"
head -1 "$OUT/target.folded"
