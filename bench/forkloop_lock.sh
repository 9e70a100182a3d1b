#!/usr/bin/env bash
# lock probe (and every probe, -a) on a fork-heavy target, side by side in one run:
#   no tool | procimage -l -- LOOP | the same with every new process probed at once
#   (attach_after_ms: 0, the former behaviour) | procimage -a -- LOOP
# LOOP is `sh -c 'for i in $(seq N); do /bin/true; done'`: a shell that forks and execs
# /bin/true N times, each child living about a millisecond. The tool starts the loop itself
# (-- CMD), so it follows every child; a run's time is the whole command's, the tool's start
# and end included, the same for every configuration but "no tool".
# Rounds interleave the configurations so drift hits them all alike.
# Usage: sudo bench/forkloop_lock.sh [ROUNDS] [ITERATIONS]
source "$(dirname "$0")/lib.sh"
need_root
ROUNDS=${1:-5}
N=${2:-3000}
build_bench
LOOP=(sh -c "for i in \$(seq $N); do /bin/true; done")

cat >"$OUT/at_once.json" <<JSON
{"version": 1, "probes": {"lock": {"attach_after_ms": 0}}, "sinks": {"jsonl": {"path": "/dev/null"}}}
JSON

configs=(none lock lock_at_once all)
# seconds the configuration takes, start to end
run_config() {
  local t0 t1
  t0=$(date +%s.%N)
  case $1 in
    none) "${LOOP[@]}" ;;
    lock) "$PROCIMAGE" -q -l -o jsonl:/dev/null -- "${LOOP[@]}" 2>/dev/null ;;
    lock_at_once) "$PROCIMAGE" -q --pipeline "$OUT/at_once.json" -- "${LOOP[@]}" 2>/dev/null ;;
    all) "$PROCIMAGE" -q -a -o jsonl:/dev/null -- "${LOOP[@]}" 2>/dev/null ;;
  esac
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

for r in $(seq 1 "$ROUNDS"); do
  for c in "${configs[@]}"; do
    run_config "$c" >>"$OUT/$c.txt"
  done
done

echo "sh loop of $N fork+exec /bin/true, $ROUNDS rounds, $(nproc) CPUs, kernel $(uname -r)"
report_header
report_line "no tool" "$OUT/none.txt" "$OUT/none.txt"
report_line "procimage -l (attach_after_ms 10)" "$OUT/none.txt" "$OUT/lock.txt"
report_line "procimage -l, attach_after_ms 0" "$OUT/none.txt" "$OUT/lock_at_once.txt"
report_line "procimage -a" "$OUT/none.txt" "$OUT/all.txt"
