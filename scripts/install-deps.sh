#!/usr/bin/env bash
# Install everything procimage needs to build, run and test, from Debian's archive.
#   install-deps.sh               what building and testing need (CI, scripts/test.sh)
#   install-deps.sh --bench       the same, and the peer tools the benchmarks compare against
#   install-deps.sh --build-only  only what building needs (the build stage of
#                                 deploy/kubernetes/Dockerfile)
set -euo pipefail

# Building: compilers, the BPF toolchain, the libraries procimage links with.
BUILD_PKGS=(
  build-essential cmake pkg-config xz-utils
  clang llvm libbpf-dev bpftool libelf-dev libdw-dev zlib1g-dev libcapstone-dev
  libboost-dev libboost-program-options-dev libspdlog-dev nlohmann-json3-dev
  libseccomp-dev libcpp-httplib-dev
)
# Testing, the man pages and the demo, on top.
TEST_PKGS=(
  git catch2
  jq bsdextrautils strace util-linux bc curl
  help2man man-db
  python3 python3-jsonschema python3-yaml
  prometheus
  qemu-system-x86 busybox-static cpio kmod zstd
  chromium
)
# Peer tools the benchmarks compare against.
BENCH_PKGS=(libbpf-tools bpftrace linux-perf)

build_only=0
bench=0
for arg in "$@"; do
  case "$arg" in
    --build-only) build_only=1 ;;
    --bench) bench=1 ;;
    *) echo "install-deps: unknown option '$arg' (expected --build-only or --bench)" >&2; exit 2 ;;
  esac
done
if [ "$build_only" = 1 ] && [ "$bench" = 1 ]; then
  echo "install-deps: --build-only and --bench do not go together (the benchmarks need the test packages)" >&2
  exit 2
fi

want=("${BUILD_PKGS[@]}")
if [ "$build_only" = 0 ]; then want+=("${TEST_PKGS[@]}"); fi
if [ "$bench" = 1 ]; then want+=("${BENCH_PKGS[@]}"); fi

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
