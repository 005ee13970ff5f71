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
  busybox-static cpio kmod                       # VM test bed (VFIO in a guest; QEMU below)
  fio tshark gnuplot-nox                         # peers and outside checks
  libblkid-dev libmount-dev e2fsprogs            # ubdma bench: in-use checks; vm tests' ext4 image
  flex bison bc libelf-dev libssl-dev xz-utils make   # the test bed's own guest kernel (tests/vm/kernel)
)

missing=()
for p in "${UBDMA_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# bookworm-backports (Debian's registry serves it): the test bed's QEMU, and the source of the
# guest kernel built in tests/vm/kernel.
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "deb http://deb.debian.org/debian bookworm-backports main" >/etc/apt/sources.list.d/ubdma-backports.list
  UBDMA_APT_UPDATE=1
fi
# QEMU 10.0 from backports, not bookworm's 7.2: 7.2's TCG crashed with a general protection fault
# (the same instruction, qemu-system-x86_64+0x769a7a, in two CI runs of 2026-12-04, one run in
# five) while the vm suite ran; 10.0 passed every vm test here.
qemu_ok=0
v=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || true)
[ -n "$v" ] && dpkg --compare-versions "$v" ge 1:10 && qemu_ok=1
if ((${#missing[@]})) || [ "${UBDMA_APT_UPDATE:-0}" = 1 ] || [ $qemu_ok = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  if ((${#missing[@]})); then
    echo "deps: installing ${missing[*]}"
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ $qemu_ok = 0 ]; then
    echo "deps: installing qemu-system-x86 from bookworm-backports"
    apt-get install -y -qq -t bookworm-backports qemu-system-x86 >/dev/null
  fi
fi
