#!/usr/bin/env bash
# Every bench in this folder, one after the other, then one markdown table of their headline
# figures (what, figure, peer, ratio) with the date and the machine. Each script's own full
# table is printed as it finishes (and kept in the log folder named at the end).
# Usage: sudo bench/all.sh [quick]     quick: fewer rounds and shorter workloads
source "$(dirname "$0")/lib.sh"
need_root
QUICK=${1:-}
LOGS=$(mktemp -d /tmp/procimage-bench-logs.XXXXXX)
export BENCH_SUMMARY="$LOGS/summary.md"
: >"$BENCH_SUMMARY"
# the scripts build what they need; build once here so that no script's figures include it
build_bench
export PROCIMAGE # measured as built above, not rebuilt by each script

# script and its arguments (quick: fewer rounds)
if [ "$QUICK" = quick ]; then
  runs=("startup.sh 5" "memory.sh 3" "forkloop.sh 3 1000" "eventpath.sh 2 300000" "keytime.sh 3 1000"
        "syscall.sh 3 500000" "schedule.sh 3" "lock.sh 3" "profile.sh 3" "resource.sh 3"
        "inactive.sh 3" "activation.sh 5" "prometheus.sh 2")
else
  runs=("startup.sh" "memory.sh" "forkloop.sh" "eventpath.sh" "keytime.sh" "syscall.sh" "schedule.sh" "lock.sh"
        "profile.sh" "resource.sh" "inactive.sh" "activation.sh" "prometheus.sh")
fi
rows() { grep -c . "$BENCH_SUMMARY" || true; }
for r in "${runs[@]}"; do
  set -- $r
  script=$1; shift
  log="$LOGS/${script%.sh}.txt"
  before=$(rows)
  echo "=== bench/$script $*"
  if ! bash "$BENCH_DIR/$script" "$@" 2>&1 | tee "$log"; then
    echo "| bench/$script | failed: see $log | | |" >>"$BENCH_SUMMARY"
  elif [ "$(rows)" = "$before" ]; then
    # a script with no summary rows of its own: its last row with a ratio stands for it
    # (a script may print no ratio at all: grep finding nothing must not end this run)
    row=$({ grep -E '[0-9.]+x( |$)' "$log" || true; } | tail -1 | tr -s ' ' | cut -c1-150)
    echo "| bench/$script: ${row:-$(grep -v '^ *$' "$log" | tail -1 | tr -s ' ' | cut -c1-150)} | (see its table) | | |" >>"$BENCH_SUMMARY"
  fi
done

echo
echo "## procimage benches, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "Machine: kernel $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores," \
  "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| what | figure | peer | ratio |"
echo "|---|---|---|---|"
cat "$BENCH_SUMMARY"
echo
echo "Each script's full table (medians, spreads): $LOGS"
