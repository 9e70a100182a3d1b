#!/usr/bin/env bash
# The user-space event path: how many records procimage decodes and writes per second of its
# own CPU time, side by side in one run with bpftrace writing the same events.
#   procimage -s --batch 1 -- getppid loop   one "sequence" record per system call of the loop,
#                                            into JSON lines (on tmpfs) or into CSV (on tmpfs)
#   bpftrace -f json -c getppid loop         one printf per system call of the loop (tid,
#                                            number, result, latency), into a file on tmpfs
# Each tool's CPU time is its own (user + system, all its threads; the loop it started is not
# counted: bench/stamp.c reads /proc/PID/stat before reaping it). The same configuration on a
# loop of 0 calls is run beside each one and its CPU time subtracted: what is left is the cost
# of the records, not of loading and attaching. The ring buffer is big enough for every record
# (the run says if any was lost); bpftrace's own losses are counted from its output.
# Rounds interleave the configurations so drift hits them all alike; medians, with the spread.
# Usage: sudo bench/eventpath.sh [ROUNDS] [CALLS]
source "$(dirname "$0")/lib.sh"
need_root
ROUNDS=${1:-3}
N=${2:-1000000}
build_bench syscall_getppid.c stamp.c
S="$OUT/bin/stamp"
SHM=$(mktemp -d /dev/shm/procimage-eventpath.XXXXXX)
trap 'stop_tool; rm -rf "$OUT" "$SHM"' EXIT
RB=262144 # KiB: ~110 bytes per one-call sequence record, with room to spare
BT='tracepoint:raw_syscalls:sys_enter /pid == cpid/ { @s[tid] = nsecs; }
tracepoint:raw_syscalls:sys_exit /pid == cpid && @s[tid]/ {
  printf("%d %d %d %d\n", tid, args->id, args->ret, nsecs - @s[tid]); delete(@s[tid]); }'

configs=(jsonl csv bpftrace)
run_one() { # run_one CONFIG CALLS: prints "records lost user sys"
  local c=$1 n=$2 line u s recs lost
  rm -rf "${SHM:?}"/*
  case $c in
    jsonl | csv)
      local sink=jsonl:$SHM/out.jsonl
      [ "$c" = csv ] && sink=csv:$SHM/csv
      line=$("$S" run -o "$OUT/pi.log" -- "$PROCIMAGE" -q -s --batch 1 --set syscall.ringbuf_kb=$RB \
        -o "$sink" -o jsonl:"$SHM/side.jsonl" -- "$OUT/bin/syscall_getppid" "$n")
      if [ "$c" = jsonl ]; then
        recs=$(grep -c '"event":"sequence"' "$SHM/out.jsonl" || true)
      else
        recs=$(($(wc -l <"$SHM/csv/syscall_sequence.csv") - 1))
      fi
      lost=$(jq -r 'select(.event == "summary" and .source == "syscall") | .lost_total' "$SHM/side.jsonl")
      ;;
    bpftrace)
      line=$("$S" run -o "$OUT/bt.log" -- bpftrace -f json -o "$SHM/bt.json" -e "$BT" \
        -c "$OUT/bin/syscall_getppid $n")
      recs=$(grep -c '"type": *"printf"' "$SHM/bt.json" || true)
      lost=$(jq -r 'select(.type == "lost_events") | .data.events' "$SHM/bt.json" 2>/dev/null |
        awk '{s += $1} END {print s + 0}')
      ;;
  esac
  read -r _ _ u s <<<"$line"
  echo "$recs ${lost:-?} $u $s"
}

for r in $(seq 1 "$ROUNDS"); do
  for c in "${configs[@]}"; do
    read -r recs lost u s < <(run_one "$c" "$N")
    read -r _ _ u0 s0 < <(run_one "$c" 0)
    echo "$recs $lost $u $s $u0 $s0" >>"$OUT/$c.raw"
    awk -v n="$recs" -v u="$u" -v s="$s" -v u0="$u0" -v s0="$s0" \
      'BEGIN {c = (u + s) - (u0 + s0); printf "%.0f\n", (c > 0 ? n / c : 0)}' >>"$OUT/$c.rate"
  done
done

label() { case $1 in jsonl) echo "procimage -s --batch 1, JSON lines";; csv) echo "procimage -s --batch 1, CSV";;
  bpftrace) echo "bpftrace -f json, printf per call";; esac; }
med() { median <"$OUT/$1.rate"; }
echo "getppid x $N traced, one record per call; records per CPU-second of the tool's own time (its"
echo "start-up, measured on a 0-call run beside each run, subtracted); $ROUNDS interleaved rounds, $(nproc) CPUs, kernel $(uname -r)"
printf '%-38s %14s %10s %11s %9s %8s\n' "configuration" "records/CPU-s" "spread" "records" "lost" "CPU s"
for c in "${configs[@]}"; do
  awk -v l="$(label "$c")" -v m="$(med "$c")" -v sp="$(spread <"$OUT/$c.rate")" '
    {n = $1; lost = $2; cpu = $3 + $4 - $5 - $6}
    END {printf "%-38s %14.0f %9s%% %11d %9s %8.2f\n", l, m, sp, n, lost, cpu}' "$OUT/$c.raw"
done
echo "records, lost, CPU s: the last round's; lost: procimage's summary lost_total, bpftrace's lost_events"
r() { awk -v a="$(med "$1")" -v b="$(med bpftrace)" 'BEGIN {printf "%.2fx", (b > 0 ? a / b : 0)}'; }
summary "event path: $N one-call syscall sequences to JSON lines" "$(awk -v m="$(med jsonl)" 'BEGIN {printf "%.2f M", m / 1e6}') records/CPU-s" \
  "bpftrace -f json $(awk -v m="$(med bpftrace)" 'BEGIN {printf "%.2f M", m / 1e6}')" "$(r jsonl)"
summary "event path: the same to CSV" "$(awk -v m="$(med csv)" 'BEGIN {printf "%.2f M", m / 1e6}') records/CPU-s" \
  "bpftrace -f json $(awk -v m="$(med bpftrace)" 'BEGIN {printf "%.2f M", m / 1e6}')" "$(r csv)"
