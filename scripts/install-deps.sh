#!/usr/bin/env bash
# Install everything procimage needs to build, run and test, from Debian's archive.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git
  clang llvm libbpf-dev bpftool libelf-dev libdw-dev zlib1g-dev libcapstone-dev
  libboost-dev libboost-program-options-dev libspdlog-dev nlohmann-json3-dev catch2
  libseccomp-dev libcpp-httplib-dev
  jq bsdextrautils strace util-linux bc curl
  help2man man-db
  python3 python3-jsonschema
  prometheus
  qemu-system-x86 busybox-static cpio kmod xz-utils zstd
  chromium
)
# Peer tools the benchmarks compare against.
BENCH_PKGS=(libbpf-tools bpftrace linux-perf)

want=("${PKGS[@]}")
if [ "${1:-}" = "--bench" ]; then want+=("${BENCH_PKGS[@]}"); fi

missing=()
for p in "${want[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: everything is installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: run as root (or with sudo) to install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: installed ${missing[*]}"
