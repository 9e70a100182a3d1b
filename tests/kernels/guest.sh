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
# keytime for a cgroup target: a shell moved into a fresh cgroup after procimage started runs
# /bin/ls; procimage must see it (and nothing else) from the cgroup alone
rm -f keytime-cgroup.jsonl
echo 255 >keytime-cgroup.rc
cgmnt=$(awk '{for (i = 7; i < NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2" && $4 == "/") print $5; break }}' /proc/self/mountinfo | head -1)
cg=$cgmnt/procimage-kernels-$$
if [ -n "$cgmnt" ] && mkdir "$cg"; then
  "$B/procimage" --keytime --cgroup "$cg" -o "jsonl:$OUT/keytime-cgroup.jsonl" >keytime-cgroup.log 2>&1 &
  host=$!
  for _ in $(seq 1200); do
    grep -q '"activated"' keytime-cgroup.jsonl 2>/dev/null && break
    kill -0 $host 2>/dev/null || break
    sleep 0.1
  done
  sh -c "echo \$\$ >$cg/cgroup.procs && exec /bin/ls /" >/dev/null
  /bin/ls / >/dev/null # outside the cgroup: not traced
  kill -INT $host
  wait $host
  echo $? >keytime-cgroup.rc
  rmdir "$cg"
else
  echo "no cgroup v2 hierarchy to make a cgroup in (mount: '$cgmnt')" >keytime-cgroup.log
fi
