#!/usr/bin/env bash
# deps.sh - install every Debian package ubdma needs to build, test, benchmark and run its
# virtual-machine test bed.  Idempotent: apt-get runs only when something is missing.
set -euo pipefail

UBDMA_PACKAGES=(
  meson ninja-build pkg-config gcc clang libclang-rt-14-dev python3 strace mandoc
  libcmocka-dev                                  # unit tests
  libdpdk-dev dpdk dpdk-dev                      # DPDK peer (bench, interop; dpdk-testpmd)
  libhwloc-dev libucx-dev libhugetlbfs-dev liburing-dev   # NUMA, rcache peer, hugepages
  libjson-c-dev                                  # tools/ubdma: JSON output and the bench reader
  qemu-system-x86 busybox-static cpio kmod       # VM test bed (VFIO in a guest)
  fio tshark gnuplot-nox                         # peers and outside checks
)

missing=()
for p in "${UBDMA_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
