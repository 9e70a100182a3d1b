#!/usr/bin/env bash
# The kernel matrix: every probe, end to end, on Debian's own kernels booted under qemu (TCG)
# and on the running kernel. Usage: matrix.sh BUILD_DIR [REPORT.md]
# Environment: PROCIMAGE_KERNELS ("5.10 6.1 6.12"), PROCIMAGE_KERNEL_CACHE.
# Exit 0 when every probe works or is refused by name (what the kernel lacks and since when);
# 77 (skipped) when Debian's archive cannot be reached; 1 otherwise.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
B=$(cd "${1:?usage: matrix.sh BUILD_DIR [REPORT.md]}" && pwd)
report=${2:-$B/kernel-matrix.md}
PROBES="keytime keytime-cpu keytime-cgroup syscall schedule resource lock profile"

if ! command -v qemu-system-x86_64 >/dev/null || [ ! -x /bin/busybox ]; then
  echo "kernels: SKIPPED: qemu-system-x86_64 or busybox-static is missing (scripts/install-deps.sh installs them)"
  exit 77
fi
if ! pi_apt_setup 2>/dev/null; then
  echo "kernels: SKIPPED: Debian's archive cannot be reached, so no kernel package can be fetched"
  exit 77
fi

# One cell: ✓ when the probe's records show what /bin/ls did (profile: samples of
# wl-profile's hot function), "refused: …" when procimage
# refused it by name, ✗ with the first error line otherwise.
cell() {
  local d=$1 p=$2 rc pid ok
  rc=$(cat "$d/$p.rc" 2>/dev/null || echo 255)
  if [ "$rc" != 0 ]; then
    if grep -q "needs .* (Linux .* and later)" "$d/$p.log"; then
      echo "refused: $(grep -o 'needs [^;]*' "$d/$p.log" | head -1)"
    else
      echo "✗ exit $rc: $(grep -m1 -E 'error' "$d/$p.log" | cut -c1-160)"
    fi
    return
  fi
  # the command's pid: procimage's own threads are not traced, so any process row is the command's
  pid=$(jq -r 'select(.pid != 0 and .event != "activated" and .event != "deactivated" and .event != "summary"
                      and .event != "system" and .event != "totals" and .scope != "system") | .pid' \
        "$d/$p.jsonl" 2>/dev/null | head -1)
  ok=
  case $p in
    keytime-cgroup) ok=$(jq -s --argjson p "${pid:-0}" '(map(select(.event=="exec" and .pid==$p and .filename=="/bin/ls" and .ret==0))|length)==1 and (map(select(.event=="exit" and .pid==$p and .exit_code==0))|length)==1 and (map(select(.probe=="keytime" and .pid!=$p))|length)==0 and (map(select(.event=="activated" and (.cgroup_id // 0) > 0))|length)==1' "$d/$p.jsonl") ;;
    keytime-cpu) ok=$(jq -s --argjson p "${pid:-0}" '(map(select(.event=="oncpu" and .pid==$p and .dur_ns > 0))|length) > 0' "$d/$p.jsonl") ;;
    keytime)  ok=$(jq -s --argjson p "${pid:-0}" '(map(select(.event=="exec" and .pid==$p and .filename=="/bin/ls" and .ret==0))|length)==1 and (map(select(.event=="exit" and .pid==$p and .exit_code==0 and .group_dead))|length)==1' "$d/$p.jsonl") ;;
    syscall)  ok=$(jq -s --argjson p "${pid:-0}" '(map(select(.event=="sequence" and .pid==$p) | .syscalls[]) | index("execve") != null) and (map(select(.event=="sequence" and .pid==$p) | .syscalls[]) | index("write") != null)' "$d/$p.jsonl") ;;
    schedule) ok=$(jq -s --argjson p "${pid:-0}" 'map(select(.event=="process" and .pid==$p and .count > 0))|length > 0' "$d/$p.jsonl") ;;
    profile)  ok=$(jq -s --argjson p "${pid:-0}" 'map(select(.event=="stack" and .pid==$p and .samples > 0 and (.ustack | any(.[]; startswith("burn_cpu_here+")))))|length > 0' "$d/$p.jsonl") ;;
    resource) ok=$(jq -s --argjson p "${pid:-0}" 'map(select(.event=="process" and .pid==$p and .cpu_ns > 0 and .rss_bytes > 0))|length > 0' "$d/$p.jsonl") ;;
    lock)
      if grep -q "^lock .*contention-only" "$d/features.txt"; then
        # no uprobes on this kernel: futex waits only, and /bin/ls has none; it ran clean
        ok=$(jq -s 'map(select(.event=="summary" and .source=="lock" and .errors==0 and .lost_total==0))|length == 1' "$d/$p.jsonl")
        [ "$ok" = true ] && { echo "✓ contention-only"; return; }
      else
        ok=$(jq -s --argjson p "${pid:-0}" 'map(select(.event=="process" and .pid==$p and .acquisitions > 0 and .releases > 0))|length > 0' "$d/$p.jsonl")
      fi ;;
  esac
  if [ "$ok" = true ]; then echo "✓"; else echo "✗ records do not show /bin/ls (pid ${pid:-none})"; fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cols=()
failed=0

for series in $PI_KSERIES; do
  if ! kdir=$(pi_fetch_kernel "$series"); then
    echo "kernels: cannot fetch Debian's $series kernel" >&2
    failed=1
    continue
  fi
  mkdir -p "$work/$series"
  printf 'exec bash /run/pi-out/guest.sh %q /run/pi-out\n' "$B" >"$work/$series/run.sh"
  cp "$here/guest.sh" "$work/$series/guest.sh"
  echo "kernels: booting $(cat "$kdir/package") under qemu (TCG)"
  pi_boot "$kdir" "$work/$series" /run/pi-out/run.sh 900 >"$work/$series/console.log" 2>&1 || true
  if [ ! -f "$work/$series/kernel" ]; then
    echo "kernels: the $series guest did not run its script; its console:" >&2
    tail -20 "$work/$series/console.log" >&2
    failed=1
    continue
  fi
  cols+=("$series")
done

# The running kernel, without a VM.
mkdir -p "$work/host"
bash "$here/guest.sh" "$B" "$work/host"
cols+=("host")

{
  printf '| kernel |'; for p in $PROBES; do printf ' %s |' "$p"; done; echo
  printf '|---|'; for _ in $PROBES; do printf -- '---|'; done; echo
  for c in "${cols[@]}"; do
    d="$work/$c"
    name="$(cat "$d/kernel")"
    [ "$c" = host ] && name="$name (this machine)"
    printf '| %s |' "$name"
    for p in $PROBES; do
      v=$(cell "$d" "$p")
      case $v in ✓*|refused:*) ;; *) failed=1 ;; esac
      printf ' %s |' "$v"
    done
    echo
  done
} >"$report"
cat "$report"
for c in "${cols[@]}"; do
  echo; echo "--- procimage --features on $(cat "$work/$c/kernel")"; sed -n '/^PROBE/,$p' "$work/$c/features.txt"
done
exit $failed
