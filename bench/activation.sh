#!/usr/bin/env bash
# How fast activation takes effect: a fork+exec loop runs; procimage -a waits inactive;
# TRIALS times: procimage-ctl -a -P <loop> (timed), first keytime record of the loop after the
# activation, procimage-ctl -d. Prints the controller's round trip and the delay from the
# moment procimage-ctl returned to the first record's kernel timestamp (negative: the record
# was taken before procimage-ctl had even returned). Target: <= 50 ms.
# Usage: sudo bench/activation.sh [TRIALS]
source "$(dirname "$0")/lib.sh"
need_root
TRIALS=${1:-10}
build_bench micro.c
CTL=$BUILD/procimage-ctl
"$OUT/bin/micro" forkexec 100000000 >/dev/null &
LOOP=$!
trap 'kill $LOOP 2>/dev/null || true; stop_tool; rm -rf "$OUT"' EXIT
start_tool "$OUT/host.log" "inactive: activate it" "$PROCIMAGE" -a --name bench-activation -o jsonl:"$OUT/out.jsonl"
for i in $(seq 1 "$TRIALS"); do
  t0=$(date +%s%N)
  "$CTL" --name bench-activation -a -k 0 -P "$LOOP" >/dev/null
  t1=$(date +%s%N)
  echo "$t0 $t1" >>"$OUT/ctl.txt"
  sleep 0.3
  "$CTL" --name bench-activation -d >/dev/null
  sleep 0.1
done
"$CTL" --name bench-activation -f >/dev/null
wait "$TOOL_PID" 2>/dev/null || true
TOOL_PID=
kill $LOOP 2>/dev/null || true
# first keytime record after each activation
jq -r --argjson loop "$LOOP" 'select((.event == "activated") or (.probe == "keytime" and .pid == $loop)) | "\(.event) \(.ts_ns)"' "$OUT/out.jsonl" |
  awk '$1 == "activated" {want = 1; next} want {print $2; want = 0}' >"$OUT/first.txt"
paste -d' ' "$OUT/ctl.txt" "$OUT/first.txt" | awk '
  { rt = ($2 - $1) / 1e6; d = ($3 - $2) / 1e6; printf "trial %2d: procimage-ctl round trip %7.2f ms, first record %+7.2f ms after it returned\n", NR, rt, d;
    if (NR == 1 || d > max) max = d; srt += rt; sd += d }
  END { printf "mean round trip %.2f ms; mean first-record delay %+.2f ms; worst %+.2f ms\n", srt / NR, sd / NR, max }' | tee "$OUT/act.txt"
summary "procimage-ctl -a to the first record" "$(tail -1 "$OUT/act.txt" | sed 's/.*mean first-record delay \([^ ]*\) ms;.*/\1 ms after the call returned (mean)/')" "" ""

