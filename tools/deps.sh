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
  libaio-dev libnuma-dev libibverbs-dev librdmacm-dev zlib1g-dev  # fio's configure: engine ABI (below)
  ibverbs-providers rdma-core iproute2          # soft-RoCE in the guest: rxe provider, rdma link add (lib/verbs tests)
  openmpi-bin libopenmpi-dev                     # examples/rdma_mpi: mpirun -np 2 in the guest
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
# QEMU: bookworm's 7.2, not backports' 10.0.  Both crash now and then under TCG with the emulated
# VT-d (7.2: a general protection fault, about one vm-suite run in five; run-guest.sh boots once
# more after a crash), but 10.0 also hung the whole guest in the fault walk (2 of 3 CI runs on
# 2026-12-05) besides aborting in iotlb_to_section: worse here.  A machine that got 10.0 from an
# earlier version of this script is taken back to 7.2.
qemu_ok=1
v=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || true)
if [ -z "$v" ] || dpkg --compare-versions "$v" ge 1:10; then qemu_ok=0; fi
if ((${#missing[@]})) || [ "${UBDMA_APT_UPDATE:-0}" = 1 ] || [ $qemu_ok = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  if ((${#missing[@]})); then
    echo "deps: installing ${missing[*]}"
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ $qemu_ok = 0 ]; then
    echo "deps: installing bookworm's qemu-system-x86 (7.2)"
    qv=$(apt-cache madison qemu-system-x86 | awk -F'|' '$2 ~ /:7\.2/ { gsub(/ /, "", $2); print $2; exit }')
    apt-get install -y -qq --allow-downgrades "qemu-system-x86=$qv" "qemu-system-common=$qv" \
      "qemu-system-data=${qv%+b*}" "qemu-utils=$qv" >/dev/null
  fi
fi

# fio's source tree, for the external ioengine drivers/nvme/fio (libubdma_fio.so): fio installs no
# headers, and an engine is built against the fio.h, optlib.h and config-host.h of the very fio
# that loads it (struct thread_data's layout follows the configure result).  Debian's source
# package of the installed version, through a deb-src entry, configured with Debian's own flags
# (debian/rules), into /usr/local/src/ubdma/fio-VERSION (the path drivers/nvme/fio/meson.build
# looks in; UBDMA_FIO_SRC overrides it).
FIO_SRC_ROOT=${UBDMA_FIO_SRC_ROOT:-/usr/local/src/ubdma}
fio_ver=$(dpkg-query -W -f='${Version}' fio 2>/dev/null || true)
fio_up=${fio_ver#*:}; fio_up=${fio_up%-*}
if [ -n "$fio_ver" ] && [ ! -f "$FIO_SRC_ROOT/fio-$fio_up/.ubdma-configured" ]; then
  if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src ' /etc/apt/sources.list; then
    echo "deps: adding deb-src for bookworm (fio's source package)"
    printf '%s\n' 'Types: deb-src' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm bookworm-updates' \
      'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
      >/etc/apt/sources.list.d/ubdma-deb-src.sources
    apt-get update -qq
  fi
  dpkg-query -W -f='${Status}' dpkg-dev 2>/dev/null | grep -q 'install ok installed' ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg-dev >/dev/null
  mkdir -p "$FIO_SRC_ROOT"
  (cd "$FIO_SRC_ROOT" && rm -rf "fio-$fio_up" && apt-get source -qq "fio=$fio_ver" >/dev/null 2>&1 ||
     apt-get source -qq fio >/dev/null)
  [ -d "$FIO_SRC_ROOT/fio-$fio_up" ] || { echo "deps: fio source fio-$fio_up not unpacked" >&2; exit 1; }
  # Debian's configure flags (debian/rules: override_dh_auto_configure) less --enable-gfio and
  # --enable-libnbd, which only add the GTK front end and an engine of their own (GTK is large);
  # the -dev packages above give the CONFIG_LIBAIO / LIBNUMA / RDMA that size struct io_u and
  # struct thread_data as in Debian's binary.  Only config-host.h is used.
  flags=$(sed -n 's/.*\.\/configure[[:space:]]*\(.*\)$/\1/p' "$FIO_SRC_ROOT/fio-$fio_up/debian/rules" | head -n1)
  flags=$(echo " $flags " | sed 's/ --enable-gfio / /; s/ --enable-libnbd / /')
  (cd "$FIO_SRC_ROOT/fio-$fio_up" && ./configure $flags >configure.log 2>&1) ||
    { echo "deps: fio's ./configure failed: $FIO_SRC_ROOT/fio-$fio_up/configure.log" >&2; exit 1; }
  touch "$FIO_SRC_ROOT/fio-$fio_up/.ubdma-configured"
  echo "deps: fio $fio_ver source configured in $FIO_SRC_ROOT/fio-$fio_up"
fi
