#!/usr/bin/env bash
# keytime overhead on a fork+exec loop, side by side in one run:
#   no tool | procimage keytime (system-wide) | procimage keytime --cpu | execsnoop (libbpf-tools)
# Rounds interleave the configurations so drift hits them all alike.
# Usage: sudo bench/keytime.sh [ROUNDS] [ITERATIONS]
source "$(dirname "$0")/lib.sh"
need_root
ROUNDS=${1:-7}
N=${2:-3000}
build_bench forkexec.c
W="$OUT/bin/forkexec $N"

configs=(none keytime keytime_cpu execsnoop)
run_config() {
  case $1 in
    none) $W ;;
    keytime)
      start_tool "$OUT/kt.log" "collecting for" "$PROCIMAGE" -k -o jsonl:/dev/null
      $W; stop_tool ;;
    keytime_cpu)
      start_tool "$OUT/ktc.log" "collecting for" "$PROCIMAGE" -k --cpu -o jsonl:/dev/null
      $W; stop_tool ;;
    execsnoop)
      start_tool "$OUT/es.log" "PCOMM" /usr/sbin/execsnoop
      $W; stop_tool ;;
  esac
}

for r in $(seq 1 "$ROUNDS"); do
  for c in "${configs[@]}"; do
    run_config "$c" >>"$OUT/$c.txt"
  done
done

echo "fork+exec /bin/true x $N, $ROUNDS rounds, $(nproc) CPUs, kernel $(uname -r)"
report_header
report_line "no tool" "$OUT/none.txt" "$OUT/none.txt"
report_line "procimage -k (all processes)" "$OUT/none.txt" "$OUT/keytime.txt"
report_line "procimage -k --cpu (all processes)" "$OUT/none.txt" "$OUT/keytime_cpu.txt"
report_line "execsnoop (libbpf-tools)" "$OUT/none.txt" "$OUT/execsnoop.txt"
summary_ratios "fork+exec loop, every process traced, procimage -k" "$OUT/none.txt" "$OUT/keytime.txt" execsnoop "$OUT/execsnoop.txt"
