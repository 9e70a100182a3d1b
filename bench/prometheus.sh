#!/usr/bin/env bash
# What the prometheus sink costs the host, side by side in one run. procimage traces a
# fork+exec loop and its children (keytime --cpu, schedule, syscall, resource; target: the
# loop's process, descendants followed, system figures on), so every child makes its own series;
# the configurations differ only in the sink:
#   jsonl to /dev/null                  (the baseline: an event sink that formats every record)
#   prometheus, never scraped
#   prometheus, scraped every second    (curl in a loop, like a Prometheus server)
# Reported: the loop's wall time, procimage's CPU time (utime + stime from /proc) over the same
# loop, for the whole process and for its host thread alone (the event loop that delivers the
# records to the sink; the exporter's HTTP threads are apart), as medians and ratios against no
# tool / the jsonl run. Then, for the scraped
# runs: the size of the exposition, its series and the median time of one scrape.
# Rounds interleave the configurations so drift hits them all alike.
# Usage: sudo bench/prometheus.sh [ROUNDS] [ITERATIONS]   (BUILD_DIR=build-prometheus to pick a build)
source "$(dirname "$0")/lib.sh"
need_root
ROUNDS=${1:-5}
N=${2:-2000}
build_bench forkexec.c
W="$OUT/bin/forkexec $N"
PORT=19464
SCRAPER=
trap 'stop_tool; [ -n "$SCRAPER" ] && kill "$SCRAPER" 2>/dev/null; rm -rf "$OUT"' EXIT

pipeline() { # pipeline NAME TGID SINKS_JSON
  printf '{"version":1,"target":{"tgid":%s,"follow":true},"probes":{"keytime":{"cpu":true},"schedule":{},"syscall":{"sequence":false},"resource":{"threads":false}},"sinks":%s}' \
    "$2" "$3" >"$OUT/$1.json"
}

# procimage's CPU seconds so far: the whole process, and its host thread (the main thread)
tool_cpu() { awk '{print ($14 + $15) / '"$(getconf CLK_TCK)"'}' "/proc/$TOOL_PID/stat"; }
host_cpu() { awk '{print ($14 + $15) / '"$(getconf CLK_TCK)"'}' "/proc/$TOOL_PID/task/$TOOL_PID/stat"; }

run_config() { # run_config NAME: the loop's seconds to NAME.txt, procimage's CPU to NAME.cpu
  local c=$1 before after hbefore hafter
  if [ "$c" = none ]; then $W >>"$OUT/none.txt"; return; fi
  # the loop waits, stopped, until procimage collects for it
  sh -c 'kill -STOP $$; exec '"$W" >>"$OUT/$c.txt" &
  local loop=$!
  while [ "$(awk '{print $3}' "/proc/$loop/stat")" != T ]; do sleep 0.01; done
  case $c in
    jsonl) pipeline "$c" "$loop" '{"jsonl":{"path":"/dev/null"}}' ;;
    prom | prom_scraped) pipeline "$c" "$loop" '{"prometheus":{"listen":"127.0.0.1:'$PORT'","max_series":100000}}' ;;
  esac
  start_tool "$OUT/$c.log" "collecting for" "$PROCIMAGE" --pipeline "$OUT/$c.json"
  if [ "$c" = prom_scraped ]; then
    (while true; do
       curl -s -o "$OUT/metrics.txt" -w '%{time_total} %{size_download}\n' "http://127.0.0.1:$PORT/metrics" >>"$OUT/scrapes.txt"
       sleep 1
     done) &
    SCRAPER=$!
  fi
  before=$(tool_cpu)
  hbefore=$(host_cpu)
  kill -CONT "$loop"
  wait "$loop"
  sleep 1.5 # the loop's last records reach the sink (interval_ms 1000, flush_ms 100)
  after=$(tool_cpu)
  hafter=$(host_cpu)
  echo "$after - $before" | bc -l >>"$OUT/$c.cpu"
  echo "$hafter - $hbefore" | bc -l >>"$OUT/$c.host"
  if [ -n "$SCRAPER" ]; then
    kill "$SCRAPER" 2>/dev/null || true
    wait "$SCRAPER" 2>/dev/null || true
    SCRAPER=
    curl -s -o "$OUT/metrics.txt" "http://127.0.0.1:$PORT/metrics"
    grep -c -v '^#' "$OUT/metrics.txt" >>"$OUT/series.txt" || true
  fi
  stop_tool
}

configs=(none jsonl prom prom_scraped)
for r in $(seq 1 "$ROUNDS"); do
  for c in "${configs[@]}"; do
    run_config "$c"
  done
done

echo "fork+exec /bin/true x $N, the loop and its children traced (keytime --cpu, schedule, syscall, resource), $ROUNDS rounds, $(nproc) CPUs, kernel $(uname -r)"
echo "the loop's wall time:"
report_header
report_line "no tool" "$OUT/none.txt" "$OUT/none.txt"
report_line "procimage, jsonl sink (/dev/null)" "$OUT/none.txt" "$OUT/jsonl.txt"
report_line "procimage, prometheus sink" "$OUT/none.txt" "$OUT/prom.txt"
report_line "procimage, prometheus sink, scraped every 1 s" "$OUT/none.txt" "$OUT/prom_scraped.txt"
echo "procimage's CPU time over the loop, whole process:"
report_header
report_line "jsonl sink (/dev/null)" "$OUT/jsonl.cpu" "$OUT/jsonl.cpu"
report_line "prometheus sink" "$OUT/jsonl.cpu" "$OUT/prom.cpu"
report_line "prometheus sink, scraped every 1 s" "$OUT/jsonl.cpu" "$OUT/prom_scraped.cpu"
echo "procimage's CPU time over the loop, host thread only:"
report_header
report_line "jsonl sink (/dev/null)" "$OUT/jsonl.host" "$OUT/jsonl.host"
report_line "prometheus sink" "$OUT/jsonl.host" "$OUT/prom.host"
report_line "prometheus sink, scraped every 1 s" "$OUT/jsonl.host" "$OUT/prom_scraped.host"
summary "fork-heavy loop traced into the prometheus sink (never scraped / scraped every 1 s), against the same into jsonl" \
  "$(med_ratio "$OUT/jsonl.txt" "$OUT/prom.txt") / $(med_ratio "$OUT/jsonl.txt" "$OUT/prom_scraped.txt") of the loop's time" "" \
  "host thread CPU $(med_ratio "$OUT/jsonl.host" "$OUT/prom.host")"
echo "scrapes: $(wc -l <"$OUT/scrapes.txt") in all; median $(cut -d' ' -f1 "$OUT/scrapes.txt" | median) s per scrape," \
  "median $(cut -d' ' -f2 "$OUT/scrapes.txt" | median) bytes; $(median <"$OUT/series.txt") series at the end of a round"
