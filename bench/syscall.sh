#!/usr/bin/env bash
# syscall probe overhead on a getppid loop, side by side in one run:
#   no tool
#   floor        an empty raw_tp pair on sys_enter / sys_exit (bench/syscall_floor.bpf.c)
#   clock floor  the same pair reading the clock once each and summing exit - entry: the least
#                any per-call latency tool does
#   procimage -s on the loop (-- CMD), default settings (latency, sequences of 10)
#   procimage -s on the loop without sequences
#   procimage -s on another process (a sleep), system figures "latency" (default), "counts", "off"
#   procimage -k and -l on another process: what their execve / futex syscall tracepoints cost
#     every other system call of the machine (docs/start-and-stop.md: why not the raw ones)
#   syscount -L (libbpf-tools, system-wide)
#   execsnoop (libbpf-tools): the execve syscall tracepoints, for comparison with -k
#   bpftrace one-liner: per-thread latency stats (tracepoint:raw_syscalls)
# Rounds interleave the configurations so drift hits them all alike; the loop reports its
# thread's CPU time and the table shows the best round (and the median) of each.
# Usage: sudo bench/syscall.sh [ROUNDS] [CALLS]      (BUILD_DIR=build-syscall to pick a build)
source "$(dirname "$0")/lib.sh"
need_root
ROUNDS=${1:-5}
N=${2:-2000000}
build_bench syscall_getppid.c
cc -O2 -o "$OUT/bin/syscall_floor" "$BENCH_DIR/syscall_floor.c" -lbpf
for v in floor clock; do
  def=$([ $v = clock ] && echo -DCLOCK || true)
  clang -O2 -g -target bpf $def -I"/usr/include/$(gcc -dumpmachine)" \
    -c "$BENCH_DIR/syscall_floor.bpf.c" -o "$OUT/$v.bpf.o"
done
W="$OUT/bin/syscall_getppid $N"

sleep 3600 &
OTHER=$!
trap 'stop_tool; kill $OTHER 2>/dev/null; rm -rf "$OUT"' EXIT

pipeline() { # pipeline NAME PROBE_CONFIG [TARGET|-- CMD]
  local name=$1 cfg=$2 target=$3
  if [ "$target" = cmd ]; then
    printf '{"version":1,"probes":{"syscall":%s},"sinks":{"jsonl":{"path":"/dev/null"}},"command":["%s/bin/syscall_getppid","%s"]}' \
      "$cfg" "$OUT" "$N" >"$OUT/$name.json"
  else
    printf '{"version":1,"probes":{"syscall":%s},"sinks":{"jsonl":{"path":"/dev/null"}},"target":{"tgid":%s}}' \
      "$cfg" "$target" >"$OUT/$name.json"
  fi
}
pipeline target_noseq '{"sequence":false}' cmd
pipeline other_counts '{"system":"counts"}' "$OTHER"
pipeline other_off '{"system":"off"}' "$OTHER"

BT='tracepoint:raw_syscalls:sys_enter { @s[tid] = nsecs; }
tracepoint:raw_syscalls:sys_exit /@s[tid]/ { @lat[tid] = stats(nsecs - @s[tid]); delete(@s[tid]); }'

configs=(none floor clock target target_noseq other other_counts other_off keytime_other lock_other syscount execsnoop bpftrace)
run_config() {
  case $1 in
    none) $W ;;
    floor | clock)
      start_tool "$OUT/$1.log" "attached" "$OUT/bin/syscall_floor" "$OUT/$1.bpf.o"
      $W; stop_tool ;;
    target) "$PROCIMAGE" -q -s -o jsonl:/dev/null -- $W ;;
    target_noseq) "$PROCIMAGE" -q --pipeline "$OUT/target_noseq.json" ;;
    other)
      start_tool "$OUT/o.log" "collecting for" "$PROCIMAGE" -s -P "$OTHER" -o jsonl:/dev/null
      $W; stop_tool ;;
    other_counts | other_off)
      start_tool "$OUT/$1.log" "collecting for" "$PROCIMAGE" --pipeline "$OUT/$1.json"
      $W; stop_tool ;;
    keytime_other)
      start_tool "$OUT/k.log" "collecting for" "$PROCIMAGE" -k -P "$OTHER" -o jsonl:/dev/null
      $W; stop_tool ;;
    lock_other)
      start_tool "$OUT/l.log" "collecting for" "$PROCIMAGE" -l -P "$OTHER" -o jsonl:/dev/null
      $W; stop_tool ;;
    execsnoop)
      start_tool "$OUT/es.log" "PCOMM" stdbuf -oL /usr/sbin/execsnoop
      $W; stop_tool ;;
    syscount)
      start_tool "$OUT/sc.log" "Tracing" stdbuf -oL /usr/sbin/syscount -L
      $W; stop_tool ;;
    bpftrace)
      start_tool "$OUT/bt.log" "Attaching" bpftrace -e "$BT"
      $W; stop_tool ;;
  esac
}

for r in $(seq 1 "$ROUNDS"); do
  for c in "${configs[@]}"; do
    run_config "$c" >>"$OUT/$c.txt"
  done
done

# The best round of each configuration: on a shared machine, other work only ever adds time
# (to wall and to CPU time alike: steal, shared cores), so the minimum is the steadiest estimate
# of what the configuration itself costs. The median is printed beside it.
m() { sort -n "$OUT/$1.txt" | head -1; }
med() { median <"$OUT/$1.txt"; }
NONE=$(m none); FLOOR=$(m floor); CLOCK=$(m clock)
line() { # line LABEL CONFIG
  awk -v l="$1" -v t="$(m "$2")" -v md="$(med "$2")" -v b="$NONE" -v f="$FLOOR" -v c="$CLOCK" -v n="$N" 'BEGIN {
    o = (t - b) / n * 1e9; fo = (f - b) / n * 1e9; co = (c - b) / n * 1e9;
    printf "%-46s %9.4f %9.4f %7.3fx %9.1f %8.2fx %8.2fx\n", l, t, md, t / b, o, (fo > 0 ? o / fo : 0), (co > 0 ? o / co : 0) }'
}
echo "getppid x $N, CPU time of the loop thread, $ROUNDS interleaved rounds, $(nproc) CPUs, kernel $(uname -r)"
printf '%-46s %9s %9s %8s %9s %9s %9s\n' "configuration" "best s" "median s" "ratio" "ns/call+" "/floor" "/clock"
line "no tool" none
line "floor: empty raw_tp pair" floor
line "clock floor: raw_tp pair, 2 clock reads" clock
line "procimage -s on the loop (sequences of 10)" target
line "procimage -s on the loop, no sequences" target_noseq
line "procimage -s on another pid (system latency)" other
line "procimage -s on another pid (system counts)" other_counts
line "procimage -s on another pid (system off)" other_off
line "procimage -k on another pid (execve tracepoints)" keytime_other
line "procimage -l on another pid (futex tracepoints)" lock_other
line "syscount -L (libbpf-tools, system-wide)" syscount
line "execsnoop (libbpf-tools, execve tracepoints)" execsnoop
line "bpftrace per-thread latency stats" bpftrace
echo "ratio, ns/call+: best round against the best round with no tool; /floor, /clock: that added"
echo "cost over the floor's and over the clock floor's"
added() { awk -v t="$(m "$1")" -v b="$NONE" -v n="$N" 'BEGIN {printf "%.0f", (t - b) / n * 1e9}'; }
summary "getppid loop, ns added per call: procimage -s on it (sequences / none)" \
  "$(added target) / $(added target_noseq) ns" "syscount -L $(added syscount) ns" \
  "$(awk -v a="$(added target)" -v b="$(added target_noseq)" -v s="$(added syscount)" 'BEGIN {printf "%.2fx / %.2fx", a / s, b / s}')"
summary "the same loop, another process traced: procimage -k / -l" "$(added keytime_other) / $(added lock_other) ns" \
  "execsnoop $(added execsnoop) ns" ""
