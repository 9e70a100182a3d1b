#!/usr/bin/env bash
# lock probe overhead on a two-thread pthread mutex loop, side by side in one run:
#   no tool | procimage lock (full: uprobes + futex) on it | the same with every uprobe at its
#   function's entry (uprobe_place: entry) | the former probe: return probes on the blocking
#   functions too, at the entry (lock_return, uprobe_place: entry) | contention-only mode on it |
#   procimage lock on another process | a bpftrace uprobe one-liner measuring hold times
# Every configuration starts the loop held on a FIFO, attaches, then releases it; rounds
# interleave the configurations so drift hits them all alike.
# Usage: sudo bench/lock.sh [ROUNDS] [ITERATIONS_PER_THREAD]
source "$(dirname "$0")/lib.sh"
need_root
ROUNDS=${1:-5}
N=${2:-100000}
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
  "$OUT/bin/lock_loop" "$N" "$OUT/go" >"$OUT/loop.out" &
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

configs=(none full entry return contention other bpftrace)
run_config() {
  start_loop
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

for r in $(seq 1 "$ROUNDS"); do
  for c in "${configs[@]}"; do
    run_config "$c" >>"$OUT/$c.txt"
  done
done

echo "two threads x $N pthread_mutex_lock/unlock on one mutex, $ROUNDS rounds, $(nproc) CPUs, kernel $(uname -r)"
report_header
report_line "no tool" "$OUT/none.txt" "$OUT/none.txt"
report_line "procimage lock, full (uprobes + futex)" "$OUT/none.txt" "$OUT/full.txt"
report_line "procimage lock, full, uprobes at entry" "$OUT/none.txt" "$OUT/entry.txt"
report_line "procimage lock, full, lock_return + entry" "$OUT/none.txt" "$OUT/return.txt"
report_line "procimage lock, contention-only" "$OUT/none.txt" "$OUT/contention.txt"
report_line "procimage lock on another process" "$OUT/none.txt" "$OUT/other.txt"
report_line "bpftrace uretprobe lock + uprobe unlock" "$OUT/none.txt" "$OUT/bpftrace.txt"
