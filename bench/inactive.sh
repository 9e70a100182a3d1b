#!/usr/bin/env bash
# The cost of a pre-attached, inactive host: every probe this build has is loaded and
# verified ("procimage -a"), nothing is attached. Workloads run with no procimage at all and
# with the inactive host, interleaved, in one run. Target: <= 1.02x each.
# Usage: sudo bench/inactive.sh [ROUNDS]
source "$(dirname "$0")/lib.sh"
need_root
ROUNDS=${1:-5}
build_bench micro.c
M="$OUT/bin/micro"
declare -A WORK=([getppid]="getppid 3000000" [forkexec]="forkexec 2000" [pipe]="pipe 100000" [mutex]="mutex 20000000")
order=(getppid forkexec pipe mutex)

# The pipe ping-pong runs both ends on CPU 0: its speed otherwise swings several-fold with
# where the scheduler happens to put the two processes.
run() { if [ "$1" = pipe ]; then taskset -c 0 $M ${WORK[$1]}; else $M ${WORK[$1]}; fi; }
for r in $(seq 1 "$ROUNDS"); do
  for w in "${order[@]}"; do run $w >>"$OUT/none-$w.txt"; done
  start_tool "$OUT/host.log" "inactive: activate it" "$PROCIMAGE" -a --name bench-inactive -o jsonl:/dev/null
  for w in "${order[@]}"; do run $w >>"$OUT/inactive-$w.txt"; done
  stop_tool
done

probes=$(grep -o "probe '[a-z/]*'" "$OUT/host.log" | sort -u | tr '\n' ' ')
echo "inactive host with: $probes; $ROUNDS rounds, $(nproc) CPUs, kernel $(uname -r)"
report_header
for w in "${order[@]}"; do
  report_line "$w: no procimage" "$OUT/none-$w.txt" "$OUT/none-$w.txt"
  report_line "$w: procimage -a (inactive)" "$OUT/none-$w.txt" "$OUT/inactive-$w.txt"
done
summary "loaded and inactive (procimage -a): getppid / fork+exec / pipe / mutex" \
  "$(for w in "${order[@]}"; do med_ratio "$OUT/none-$w.txt" "$OUT/inactive-$w.txt"; echo -n ' '; done)" "" ""

