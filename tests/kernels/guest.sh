#!/usr/bin/env bash
# Runs inside a guest kernel (or on the host): every probe end to end on `/bin/ls /` (profile
# on a busy workload), records and logs into OUT. Usage: guest.sh BUILD_DIR OUT
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
# profile: a busy workload (ls is over before a sample is due), its hot function in the stacks
rm -f profile.jsonl
"$B/procimage" --profile --set profile.freq=499 -o "jsonl:$OUT/profile.jsonl" -- "$B/wl-profile" 300 >profile.log 2>&1
echo $? >profile.rc
