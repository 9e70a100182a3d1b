#!/usr/bin/env bash
# Each probe's cost on a shell loop of /bin/true, side by side in one run:
#   sh -c 'for i in $(seq N); do /bin/true; done'
# bare, under procimage with each probe alone (-k -l -r -s -S) and with -a (all of them, on
# the loop: "-- sh ..."), beside execsnoop (libbpf-tools, system-wide) and a bpftrace
# one-liner that prints each exec (tracepoint sched:sched_process_exec, -c sh ...).
# Start-up and shutdown are left out: the loop stamps CLOCK_MONOTONIC before its first and
# after its last /bin/true (bench/stamp.c), and the figure is the time between the stamps.
# Beside it, the CPU time (user + system) of the loop's children, from the shell's own
# "times": what the probes add to each fork, exec and exit is charged to it, and it moves
# less than wall time when other work shares the machine.
# Rounds interleave the configurations so drift hits them all alike; medians, with the
# spread ((max - min) / median) of each configuration.
# Usage: sudo bench/forkloop.sh [ROUNDS] [N]
source "$(dirname "$0")/lib.sh"
need_root
ROUNDS=${1:-5}
N=${2:-3000}
build_bench stamp.c
S="$OUT/bin/stamp"
T="$OUT/t.txt"
C="$OUT/times.txt"
cat >"$OUT/loop.sh" <<LOOP
$S now $T
for i in \$(seq $N); do /bin/true; done
$S now $T
times >$C
LOOP
L="/bin/sh $OUT/loop.sh"
BT='tracepoint:sched:sched_process_exec { printf("%d %s\n", pid, comm); }'

configs=(none k l r s S a execsnoop bpftrace)
run_config() {
  case $1 in
    none) $L ;;
    k | l | r | s | S | a) "$PROCIMAGE" -q "-$1" -o jsonl:/dev/null -- $L 2>>"$OUT/pi.log" ;;
    execsnoop)
      start_tool "$OUT/es.log" "PCOMM" /usr/sbin/execsnoop
      $L; stop_tool ;;
    bpftrace) bpftrace -e "$BT" -c "$L" >/dev/null 2>>"$OUT/bt.log" ;;
  esac
}
for r in $(seq 1 "$ROUNDS"); do
  for c in "${configs[@]}"; do
    rm -f "$T" "$C"
    run_config "$c"
    if [ "$(wc -l <"$T")" != 2 ]; then echo "bench: $c: the loop did not run to its end" >&2; exit 1; fi
    awk 'NR == 1 {a = $1} NR == 2 {printf "%.9f\n", $1 - a}' "$T" >>"$OUT/$c.txt"
    # "times": the shell's user and system time, then its children's ("0m1.234s 0m0.567s")
    awk 'function s(x) { split(x, a, "m"); sub("s", "", a[2]); return a[1] * 60 + a[2] }
      NR == 2 {printf "%.6f\n", s($1) + s($2)}' "$C" >>"$OUT/$c.cpu"
  done
done

label() { case $1 in none) echo "no tool";; execsnoop) echo "execsnoop (libbpf-tools, all processes)";;
  bpftrace) echo "bpftrace: printf at each exec, -c";; *) echo "procimage -$1 -- loop";; esac; }
med() { ms_stats "$OUT/$1.txt" | cut -d' ' -f1; }
NONE=$(med none)
echo "sh loop of $N /bin/true (the loop's own time, start-up excluded), $ROUNDS interleaved rounds, $(nproc) CPUs, kernel $(uname -r)"
NONE_CPU=$(ms_stats "$OUT/none.cpu" | cut -d' ' -f1)
printf '%-42s %10s %8s %12s %8s %13s %8s %8s\n' "configuration" "median ms" "ratio" "us/exec+" "spread" \
  "CPU ms" "ratio" "spread"
for c in "${configs[@]}"; do
  read -r m _ _ sp < <(ms_stats "$OUT/$c.txt")
  read -r cm _ _ csp < <(ms_stats "$OUT/$c.cpu")
  awk -v l="$(label "$c")" -v m="$m" -v b="$NONE" -v n="$N" -v sp="$sp" -v cm="$cm" -v cb="$NONE_CPU" -v csp="$csp" \
    'BEGIN {printf "%-42s %10.1f %7.3fx %12.1f %7s%% %13.1f %7.3fx %7s%%\n", l, m, m / b, (m - b) * 1e3 / n, sp, cm, cm / cb, csp}'
done
echo "ratio: median against the median with no tool; us/exec+: wall time added per /bin/true;"
echo "CPU ms: user + system time of the loop's children (execsnoop's and bpftrace's own programs"
echo "run in the same kernel paths, so the figure compares the in-kernel cost of all three)"
ratio() { awk -v a="$(med "$1")" -v b="$NONE" 'BEGIN {printf "%.3fx", a / b}'; }
for c in k l r s S a; do
  summary "sh loop of $N /bin/true, procimage -$c" "$(ratio "$c") of the bare loop" \
    "execsnoop $(ratio execsnoop), bpftrace $(ratio bpftrace)" \
    "$(awk -v a="$(med "$c")" -v b="$(med execsnoop)" 'BEGIN {printf "%.3f", a / b}') (vs execsnoop)"
done
