#!/usr/bin/env bash
# Memory held while tracing, side by side in one run: the resident set (VmRSS, and its
# anonymous part RssAnon) of the tool, read from /proc 2 s after it started tracing CMD, once
# its probes are loaded and attached:
#   procimage -a -- CMD        every probe of -a
#   procimage -k -- CMD        keytime alone
#   bpftrace -c CMD            one empty tracepoint program (sched:sched_process_exec)
# CMD is `sleep 4`. VmRSS counts a BPF ring buffer twice (libbpf maps its pages twice, so that
# a record can wrap): procimage's five 1 MiB rings are 10 MB of it. Rounds interleave the
# configurations; medians, with the spread ((max - min) / median) of each.
# Usage: sudo bench/memory.sh [ROUNDS]
source "$(dirname "$0")/lib.sh"
need_root
ROUNDS=${1:-5}
build_bench

configs=(pi_a pi_k bpftrace)
SLEEP=$(command -v sleep) # bpftrace -c wants one binary: /bin and /usr/bin both have sleep
kb() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
for r in $(seq 1 "$ROUNDS"); do
  for c in "${configs[@]}"; do
    case $c in
      pi_a) "$PROCIMAGE" -a -o jsonl:/dev/null -- sleep 4 >/dev/null 2>&1 & ;;
      pi_k) "$PROCIMAGE" -k -o jsonl:/dev/null -- sleep 4 >/dev/null 2>&1 & ;;
      bpftrace) bpftrace -e 'tracepoint:sched:sched_process_exec { }' -c "$SLEEP 4" >/dev/null 2>&1 & ;;
    esac
    pid=$!
    # from the moment CMD runs (the tool has attached): CMD is the tool's child
    for _ in $(seq 1 400); do
      pgrep -P "$pid" -x sleep >/dev/null && break
      sleep 0.025
    done
    sleep 2
    if ! kill -0 "$pid" 2>/dev/null; then echo "bench: $c ended before it could be measured" >&2; exit 1; fi
    kb "$pid" VmRSS >>"$OUT/$c.rss"
    kb "$pid" RssAnon >>"$OUT/$c.anon"
    wait "$pid" || true
  done
done

mb() { median <"$OUT/$1.$2" | awk '{printf "%.1f", $1 / 1024}'; }
echo "steady memory 2 s into CMD (sleep 4), $ROUNDS rounds, kernel $(uname -r)"
printf '%-34s %10s %10s %8s\n' "configuration" "VmRSS MB" "anon MB" "spread"
for c in "${configs[@]}"; do
  printf '%-34s %10s %10s %7s%%\n' "$c" "$(mb "$c" rss)" "$(mb "$c" anon)" "$(spread <"$OUT/$c.rss")"
done
ratio() { awk -v a="$(median <"$OUT/$1.rss")" -v b="$(median <"$OUT/$2.rss")" 'BEGIN {printf "%.2fx", (b > 0 ? a / b : 0)}'; }
summary "procimage -a, steady VmRSS (anonymous)" "$(mb pi_a rss) MB ($(mb pi_a anon) MB)" "bpftrace 1 tracepoint $(mb bpftrace rss) MB ($(mb bpftrace anon) MB)" "$(ratio pi_a bpftrace)"
summary "procimage -k, steady VmRSS (anonymous)" "$(mb pi_k rss) MB ($(mb pi_k anon) MB)" "bpftrace 1 tracepoint $(mb bpftrace rss) MB ($(mb bpftrace anon) MB)" "$(ratio pi_k bpftrace)"
