#!/usr/bin/env bash
# lock probe overhead on a two-thread pthread mutex loop, side by side in one run:
#   no tool | procimage lock (full: uprobes + futex) on it | the same with every uprobe at its
#   function's entry (uprobe_place: entry) | the former probe: return probes on the blocking
#   functions too, at the entry (lock_return, uprobe_place: entry) | contention-only mode on it |
#   procimage lock on another process | a bpftrace uprobe one-liner measuring hold times
# Every configuration starts the loop held on a FIFO, attaches, then releases it; rounds
# interleave the configurations so drift hits them all alike.
# Two tables, each against its own no-tool runs: the configurations that put uprobes into the
# loop at the given length, and the cheap ones (contention-only, another process) on a loop
# LONG_FACTOR times longer, so that their ratios are not lost in the noise of a short run.
# Usage: sudo bench/lock.sh [ROUNDS] [ITERATIONS_PER_THREAD] [LONG_FACTOR]
source "$(dirname "$0")/lib.sh"
need_root
ROUNDS=${1:-5}
N=${2:-100000}
LONG_FACTOR=${3:-20}
build_bench lock_loop.c
command -v bpftrace >/dev/null || { echo "bench: bpftrace is needed (apt-get install bpftrace)" >&2; exit 1; }

# the other process: idle, with the same libc mapped
sleep 100000 &
OTHER=$!
LOOP_PID=
trap 'stop_tool; kill $OTHER $LOOP_PID 2>/dev/null; rm -rf "$OUT"' EXIT

cat >"$OUT/contention.json" <<JSON
{"version": 1, "probes": {"lock": {"mode": "contention"}}, "sinks": {"jsonl": {"path": "/dev/null"}}}
JSON
cat >"$OUT/entry.json" <<JSON
{"version": 1, "probes": {"lock": {"uprobe_place": "entry"}}, "sinks": {"jsonl": {"path": "/dev/null"}}}
JSON
cat >"$OUT/return.json" <<JSON
{"version": 1, "probes": {"lock": {"lock_return": true, "uprobe_place": "entry"}}, "sinks": {"jsonl": {"path": "/dev/null"}}}
JSON

start_loop() {
  rm -f "$OUT/go"; mkfifo "$OUT/go"
  "$OUT/bin/lock_loop" "$1" "$OUT/go" >"$OUT/loop.out" &
  LOOP_PID=$!
  # its libc is mapped once the dynamic loader has run
  until grep -q '/libc\.so' "/proc/$LOOP_PID/maps" 2>/dev/null; do sleep 0.01; done
}
finish_loop() {
  echo x >"$OUT/go"
  wait "$LOOP_PID"
  LOOP_PID=
  cat "$OUT/loop.out"
}
libc_of() { awk '$6 ~ /\/libc\.so/ {print $6; exit}' "/proc/$1/maps"; }

uprobe_configs=(none full entry return bpftrace)
cheap_configs=(none full contention other)
# run_config CONFIG ITERATIONS
run_config() {
  start_loop "$2"
  case $1 in
    none) ;;
    full)
      start_tool "$OUT/full.log" "collecting for" "$PROCIMAGE" -l -P "$LOOP_PID" -o jsonl:/dev/null ;;
    entry)
      start_tool "$OUT/entry.log" "collecting for" "$PROCIMAGE" --pipeline "$OUT/entry.json" -P "$LOOP_PID" ;;
    return)
      start_tool "$OUT/return.log" "collecting for" "$PROCIMAGE" --pipeline "$OUT/return.json" -P "$LOOP_PID" ;;
    contention)
      start_tool "$OUT/cont.log" "collecting for" "$PROCIMAGE" --pipeline "$OUT/contention.json" -P "$LOOP_PID" ;;
    other)
      start_tool "$OUT/other.log" "collecting for" "$PROCIMAGE" -l -P "$OTHER" -o jsonl:/dev/null ;;
    bpftrace)
      local libc; libc=$(libc_of "$LOOP_PID")
      start_tool "$OUT/bt.log" "Attaching" bpftrace -p "$LOOP_PID" -e "
        uretprobe:$libc:pthread_mutex_lock { @acq[tid] = nsecs; }
        uprobe:$libc:pthread_mutex_unlock /@acq[tid]/ { @hold_ns = hist(nsecs - @acq[tid]); delete(@acq[tid]); }" ;;
  esac
  finish_loop
  stop_tool
}

LONG=$((N * LONG_FACTOR))
for r in $(seq 1 "$ROUNDS"); do
  for c in "${uprobe_configs[@]}"; do run_config "$c" "$N" >>"$OUT/$c-short.txt"; done
  for c in "${cheap_configs[@]}"; do run_config "$c" "$LONG" >>"$OUT/$c-long.txt"; done
done

echo "two threads locking one mutex, $ROUNDS rounds, $(nproc) CPUs, kernel $(uname -r)"
echo
echo "uprobes in the loop: $N pthread_mutex_lock/unlock per thread"
report_header
report_line "no tool" "$OUT/none-short.txt" "$OUT/none-short.txt"
report_line "procimage lock, full (uprobes + futex)" "$OUT/none-short.txt" "$OUT/full-short.txt"
report_line "procimage lock, full, uprobes at entry" "$OUT/none-short.txt" "$OUT/entry-short.txt"
report_line "procimage lock, full, lock_return + entry" "$OUT/none-short.txt" "$OUT/return-short.txt"
report_line "bpftrace uretprobe lock + uprobe unlock" "$OUT/none-short.txt" "$OUT/bpftrace-short.txt"
echo
echo "no uprobes in the loop: $LONG pthread_mutex_lock/unlock per thread"
report_header
report_line "no tool" "$OUT/none-long.txt" "$OUT/none-long.txt"
report_line "procimage lock, full (uprobes + futex)" "$OUT/none-long.txt" "$OUT/full-long.txt"
report_line "procimage lock, contention-only" "$OUT/none-long.txt" "$OUT/contention-long.txt"
report_line "procimage lock on another process" "$OUT/none-long.txt" "$OUT/other-long.txt"
summary_ratios "two-thread mutex loop, hold times (uprobes), procimage -l" "$OUT/none-short.txt" "$OUT/full-short.txt" \
  "bpftrace" "$OUT/bpftrace-short.txt"
summary "mutex loop, procimage -l contention-only / on another process" \
  "$(med_ratio "$OUT/none-long.txt" "$OUT/contention-long.txt") / $(med_ratio "$OUT/none-long.txt" "$OUT/other-long.txt")" "" ""
