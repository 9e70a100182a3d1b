#!/usr/bin/env bash
# Install what is needed, build, and draw the portrait of the built-in demo workload:
# it forks, vforks and execs, fails an exec, starts threads, has a child killed by a
# signal and exits with status 3.
#  1. its key time points, as procimage prints them (keytime probe, stdout sink);
#  2. the same workload with every probe (-a) into a JSON-lines file, summarised with jq:
#     per process CPU, memory, syscalls, run-queue delay and locks, beside the system's.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
echo
echo "== 1. key time points: procimage -k -- build/procimage-demo"
set +e
./build/procimage -k -- ./build/procimage-demo
rc=$?
set -e
echo "== the demo exited with status $rc (procimage passes it on)"

out=${PROCIMAGE_DEMO_OUT:-/tmp/procimage-demo.jsonl}
echo
echo "== 2. every image: procimage -a -o jsonl:$out -- build/procimage-demo"
./build/procimage -a -o "jsonl:$out" -- ./build/procimage-demo >/dev/null || true
echo "$(wc -l <"$out") records in $out; per process, over its whole life (jq):"
echo
# The last record of each kind per process holds its cumulative figures.
jq -rs '
  def last_per(f): map(select(f)) | group_by(.pid) | map(last);
  def us: . / 1000 | floor;
  (last_per(.probe == "resource" and .event == "process")
     | map({key: (.pid | tostring), value: .}) | from_entries) as $res
  | (map(select(.probe == "resource" and .event == "process")) | group_by(.pid)
     | map({key: (.[0].pid | tostring), value: (map(.rss_bytes) | max)}) | from_entries) as $rss
  | (last_per(.probe == "schedule" and .event == "process" and .window == "total")
     | map({key: (.pid | tostring), value: .}) | from_entries) as $sched
  | (last_per(.probe == "syscall" and .event == "totals" and .scope == "target")
     | map({key: (.pid | tostring), value: .}) | from_entries) as $sc
  | (map(select(.probe == "lock" and .event == "process" and .window == "total")) | group_by(.pid)
     | map({key: (.[0].pid | tostring),
            value: {acq: (map(.acquisitions) | add), hold: (map(.hold_total_ns) | add)}})
     | from_entries) as $lk
  | (last_per(.probe == "syscall" and .event == "totals" and .scope == "system") | last) as $scsys
  | (last_per(.probe == "schedule" and .event == "system" and .window == "total") | last) as $schsys
  | ["PID", "COMM", "CPU_us", "RSS_KiB", "SYSCALLS", "ERRORS", "SYSCALL_AVG_us", "TOP_SYSCALLS",
     "RUNQ_WAITS", "RUNQ_AVG_us", "LOCKS", "LOCK_HOLD_us"],
    (($res | keys_unsorted) + ($sc | keys_unsorted) | unique | sort_by(tonumber)[] as $p
     | [$p, ($res[$p].comm // $sc[$p].comm // "?"),
        ($res[$p].cpu_total_ns // 0 | us), (($rss[$p] // 0) / 1024 | floor),
        ($sc[$p].cum_count // 0), ($sc[$p].cum_errors // 0), ($sc[$p].cum_avg_ns // 0 | us),
        (($sc[$p].cum_top // []) | join(",")),
        ($sched[$p].count // 0), ($sched[$p].avg_ns // 0 | us),
        ($lk[$p].acq // 0), ($lk[$p].hold // 0 | us)]),
    ["-", "(system)", "", "", ($scsys.cum_count // 0), ($scsys.cum_errors // 0),
     ($scsys.cum_avg_ns // 0 | us), (($scsys.cum_top // []) | join(",")),
     ($schsys.count // 0), ($schsys.avg_ns // 0 | us), "", ""]
  | @tsv' "$out" | column -t -s $'\t'
echo
echo "(system: the whole machine over the same window, the demo included; jq . $out shows"
echo " every record, docs/events.md explains every field)"
