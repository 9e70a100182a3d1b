#!/usr/bin/env bash
# Start and stop cost of a traced command, side by side in one run:
#   no tool                    the command alone (fork + exec + exit of a tiny program)
#   procimage -a -- CMD        every probe of -a loaded, attached to CMD
#   procimage -k -- CMD        keytime alone
#   bpftrace -c CMD            one empty tracepoint program (sched:sched_process_exec)
# CMD is bench/stamp.c's "now": it writes CLOCK_MONOTONIC as it exits. For each run:
#   wall  from the tool's start to its exit (what a user waits for)
#   start from the tool's start to CMD's stamp (load, verify, attach, start CMD)
#   stop  from CMD's stamp to the tool's exit (detach, drain, flush, summaries, unload)
# Rounds interleave the configurations so drift hits them all alike; medians, with the spread
# ((max - min) / median) of each.
# Usage: sudo bench/startup.sh [ROUNDS]
source "$(dirname "$0")/lib.sh"
need_root
ROUNDS=${1:-9}
build_bench stamp.c
S="$OUT/bin/stamp"

configs=(none pi_a pi_k bpftrace)
run_config() { # prints "START END USER SYS"; CMD's stamp goes to $OUT/cmd.txt
  local f="$OUT/cmd.txt"
  case $1 in
    none) "$S" run -- "$S" now "$f" ;;
    pi_a) "$S" run -o "$OUT/pi.log" -- "$PROCIMAGE" -a -- "$S" now "$f" ;;
    pi_k) "$S" run -o "$OUT/pi.log" -- "$PROCIMAGE" -k -- "$S" now "$f" ;;
    bpftrace) "$S" run -o "$OUT/bt.log" -- bpftrace -e 'tracepoint:sched:sched_process_exec { }' -c "$S now $f" ;;
  esac
}
for r in $(seq 1 "$ROUNDS"); do
  for c in "${configs[@]}"; do
    rm -f "$OUT/cmd.txt"
    # "stamp run" prints on stdout; the tool's own output goes elsewhere
    line=$(run_config "$c")
    read -r t0 t1 _ _ <<<"$line"
    cmd=$(tail -1 "$OUT/cmd.txt" 2>/dev/null || echo "$t1")
    awk -v a="$t0" -v b="$t1" -v c="$cmd" 'BEGIN {printf "%.9f\n", b - a}' >>"$OUT/$c.wall"
    awk -v a="$t0" -v b="$t1" -v c="$cmd" 'BEGIN {printf "%.9f\n", c - a}' >>"$OUT/$c.start"
    awk -v a="$t0" -v b="$t1" -v c="$cmd" 'BEGIN {printf "%.9f\n", b - c}' >>"$OUT/$c.stop"
  done
done

med() { ms_stats "$OUT/$1.$2" | cut -d' ' -f1; }
label() { case $1 in none) echo "no tool";; pi_a) echo "procimage -a -- CMD";; pi_k) echo "procimage -k -- CMD";;
  bpftrace) echo "bpftrace, 1 tracepoint, -c CMD";; esac; }
echo "start and stop of a traced command, $ROUNDS interleaved rounds, $(nproc) CPUs, kernel $(uname -r)"
printf '%-32s %22s %22s %22s\n' "configuration" "wall ms (spread)" "start ms (spread)" "stop ms (spread)"
for c in "${configs[@]}"; do
  printf '%-32s' "$(label "$c")"
  for k in wall start stop; do
    read -r m _ _ sp < <(ms_stats "$OUT/$c.$k")
    printf ' %14.1f (%3s%%)' "$m" "$sp"
  done
  echo
done
ratio() { awk -v a="$(med "$1" "$3")" -v b="$(med "$2" "$3")" 'BEGIN {printf "%.2fx", (b > 0 ? a / b : 0)}'; }
echo "wall ratio to bpftrace: -a $(ratio pi_a bpftrace wall), -k $(ratio pi_k bpftrace wall);" \
  "stop ratio to bpftrace: -a $(ratio pi_a bpftrace stop), -k $(ratio pi_k bpftrace stop)"
echo "spread: (max - min) / median of the runs of that configuration"
summary "procimage -a -- /bin/true, start to exit" "$(med pi_a wall) ms" "bpftrace 1 tracepoint $(med bpftrace wall) ms" "$(ratio pi_a bpftrace wall)"
summary "procimage -k -- /bin/true, start to exit" "$(med pi_k wall) ms" "bpftrace 1 tracepoint $(med bpftrace wall) ms" "$(ratio pi_k bpftrace wall)"
summary "procimage -a, CMD exit to procimage exit" "$(med pi_a stop) ms" "bpftrace $(med bpftrace stop) ms" "$(ratio pi_a bpftrace stop)"
summary "procimage -k, CMD exit to procimage exit" "$(med pi_k stop) ms" "bpftrace $(med bpftrace stop) ms" "$(ratio pi_k bpftrace stop)"
