#!/usr/bin/env bash
# Shared by tests/kernels/*.sh: Debian's own kernel packages, fetched once into a cache, booted
# under qemu (TCG) with the host's root shared read-only.
set -euo pipefail

PI_KCACHE=${PROCIMAGE_KERNEL_CACHE:-/var/cache/procimage-kernels}
PI_KSERIES=${PROCIMAGE_KERNELS:-"5.10 6.1 6.12"}

# apt, pointed at a private configuration that knows the bullseye, bookworm and
# bookworm-backports suites; the machine's own sources are not touched.
pi_apt_opts() {
  local c="$PI_KCACHE/apt"
  echo "-o Dir::Etc::sourcelist=$c/sources.list -o Dir::Etc::sourceparts=- \
-o Dir::State::Lists=$c/lists -o Dir::Cache=$c -o Dir::Cache::Archives=$c/archives \
-o APT::Get::List-Cleanup=0 -o Debug::NoLocking=1 -o APT::Sandbox::User=root"
}

pi_apt_setup() {
  local c="$PI_KCACHE/apt"
  mkdir -p "$c/lists/partial" "$c/archives/partial"
  cat >"$c/sources.list" <<SRC
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian-security bookworm-security main
deb http://deb.debian.org/debian bookworm-backports main
deb http://deb.debian.org/debian bullseye main
deb http://deb.debian.org/debian-security bullseye-security main
SRC
  # shellcheck disable=SC2046
  apt-get $(pi_apt_opts) update -qq
}

# The image package of the newest Debian kernel of a series ("6.1" -> linux-image-6.1.0-57-amd64).
pi_image_package() {
  local series=$1 v
  # shellcheck disable=SC2046
  for v in $(apt-cache $(pi_apt_opts) madison linux-image-amd64 | awk '{print $3}'); do
    case "$v" in "$series".*)
      # shellcheck disable=SC2046
      apt-cache $(pi_apt_opts) depends "linux-image-amd64=$v" | awk '/Depends: linux-image-/{print $2; exit}'
      return 0 ;;
    esac
  done
  return 1
}

# Unpack a series into $PI_KCACHE/<series>/root and print that directory. Cached.
pi_fetch_kernel() {
  local series=$1 dir="$PI_KCACHE/$1" pkg
  if [ -f "$dir/.done" ]; then echo "$dir"; return 0; fi
  pkg=$(pi_image_package "$series") || { echo "no linux-image package for $series" >&2; return 1; }
  rm -rf "$dir"; mkdir -p "$dir/deb" "$dir/root"
  (cd "$dir/deb" && apt-get $(pi_apt_opts) download -qq "$pkg" >/dev/null)
  dpkg -x "$dir"/deb/*.deb "$dir/root"
  local kver
  kver=$(ls "$dir/root/lib/modules")
  depmod -b "$dir/root" "$kver"
  echo "$pkg" >"$dir/package"
  touch "$dir/.done"
  echo "$dir"
}

# Modules the guest needs to reach the host's root over virtio 9p, in load order.
pi_guest_modules() {
  local root=$1 kver=$2 m
  for m in virtio_pci 9pnet_virtio 9p; do
    modprobe -d "$root" -S "$kver" --show-depends "$m" 2>/dev/null | awk '$1=="insmod"{print $2}'
  done | awk '!seen[$0]++'
}

# An initramfs: busybox, the modules above (decompressed) and an init that mounts the host's
# root, prepares it for BPF and runs the script named by pi_script= on the kernel command line.
pi_make_initramfs() {
  local kdir=$1 out=$2 kver tmp f i=0
  kver=$(ls "$kdir/root/lib/modules")
  tmp=$(mktemp -d)
  mkdir -p "$tmp/bin" "$tmp/mods" "$tmp/host" "$tmp/proc" "$tmp/sys" "$tmp/dev" "$tmp/out"
  cp /bin/busybox "$tmp/bin/busybox"
  for f in $(pi_guest_modules "$kdir/root" "$kver"); do
    i=$((i + 1))
    case "$f" in
      *.xz) xz -dc "$f" >"$tmp/mods/$(printf %02d "$i").ko" ;;
      *.zst) zstd -qdc "$f" >"$tmp/mods/$(printf %02d "$i").ko" ;;
      *.gz) gzip -dc "$f" >"$tmp/mods/$(printf %02d "$i").ko" ;;
      *) cp "$f" "$tmp/mods/$(printf %02d "$i").ko" ;;
    esac
  done
  cat >"$tmp/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
for m in /mods/*.ko; do insmod "$m" || echo "guest: insmod $m failed"; done
script=$(sed -n 's/.*pi_script=\([^ ]*\).*/\1/p' /proc/cmdline)
mount -t 9p -o trans=virtio,version=9p2000.L,ro host /host || echo "guest: cannot mount the host's root"
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t devtmpfs dev /host/dev
# /tmp stays the host's (read-only: a checkout may live there); /run is the guest's own, with
# the writable share at /run/pi-out and a scratch TMPDIR.
mount -t tmpfs run /host/run
mkdir -p /host/run/pi-out /host/run/tmp
mount -t 9p -o trans=virtio,version=9p2000.L out /host/run/pi-out || echo "guest: no output share"
mount -t bpf bpf /host/sys/fs/bpf
mount -t tracefs tracefs /host/sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /host/sys/kernel/debug 2>/dev/null
mount -t cgroup2 cgroup2 /host/sys/fs/cgroup 2>/dev/null
echo "guest: kernel $(uname -r) up"
TMPDIR=/run/tmp chroot /host /bin/bash "$script"
echo "guest: script exit $?"
sync
poweroff -f
INIT
  chmod +x "$tmp/init"
  (cd "$tmp" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
  rm -rf "$tmp"
}

# pi_boot KDIR OUTDIR SCRIPT [TIMEOUT_S]: boot the kernel, run SCRIPT as root in a chroot of
# the host's root (shared read-only), where OUTDIR is the writable /run/pi-out and SCRIPT a
# path as the guest sees it (e.g. /run/pi-out/run.sh).
pi_boot() {
  local kdir=$1 out=$2 script=$3 timeout_s=${4:-600} kver
  kver=$(ls "$kdir/root/lib/modules")
  [ -f "$kdir/initrd.gz" ] || pi_make_initramfs "$kdir" "$kdir/initrd.gz"
  timeout "$timeout_s" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 2G -nographic -no-reboot -nic none \
    -kernel "$kdir/root/boot/vmlinuz-$kver" -initrd "$kdir/initrd.gz" \
    -append "console=ttyS0 panic=-1 ${PI_GUEST_LOG:-quiet} pi_script=$script" \
    -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
    -virtfs local,path="$out",mount_tag=out,security_model=none,multidevs=remap \
    </dev/null
}
