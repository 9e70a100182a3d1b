#!/usr/bin/env bash
# Runs inside a guest kernel (or on the host): every probe end to end on `/bin/ls /`, records
# and logs into OUT. Usage: guest.sh BUILD_DIR OUT
B=$1
OUT=$2
cd "$OUT" || exit 1
uname -r >kernel
"$B/procimage" --features >features.txt 2>&1
for p in keytime keytime-cpu syscall schedule resource lock; do
  rm -f "$p.jsonl"
  args=("--${p%-cpu}")
  [ "$p" = keytime-cpu ] && args+=(--cpu)
  "$B/procimage" "${args[@]}" -o "jsonl:$OUT/$p.jsonl" -- /bin/ls / >"$p.log" 2>&1
  echo $? >"$p.rc"
done
