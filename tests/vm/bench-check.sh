#!/bin/bash
# bench-check.sh OUTDIR ASSETS UBDMA [FIO [PMD...]] - `ubdma bench` in the test-bed guest, and its
# disks checked on the host afterwards (TAP on stdout).  PMD: DPDK's e1000, virtio and mempool_ring
# PMDs; with them (and dpdk-testpmd on PATH) testpmd runs as the NICs' peer in the guest.  With
# UBDMA_BENCH_FIO_ENGINE=libubdma_fio.so in the environment, `bench nvme` also runs its fio jobs
# through ubdma's fio engine in the guest (rows ubdma-fio).
#
# A modern virtio-net (1af4:1041) sits at 00:07.0 on QEMU's restricted user network (-V's slot
# 00:05.0 is the failing NVMe here); guest-init puts it on vfio-pci, and the guest script moves
# it to the kernel's virtio_pci / virtio_net (their modules taken from the kernel package like
# ext4's) so that `bench nic` must bind it and give it back, and refuse it with an address.
#
# The guest boots with the NVMe controllers and the e1000e on their kernel drivers (-n -N -M),
# so that every run must bind and give back, and with three controllers: 00:02.0 on a blank
# image, 00:04.0 on an ext4 image made here with mkfs.ext4 -d (a data.bin of random bytes), and
# 00:05.0 on an image behind QEMU's blkdebug that fails reads of sector 100000, and 00:06.0 on an
# image with an MBR partition table (written with printf) whose partition 1 holds ext4 (mkfs.ext4 -E offset).  The guest side
# is tests/vm/bench-guest.sh (its BENCH-CHECK lines become TAP points here).  Then, on the host:
# the ext4 image is byte for byte what it was, its data.bin reads back (debugfs), and the blank
# image was written inside --write-range 8192..16383 (512-byte blocks) only.
# The guest also needs ext4 (not in the test bed's modules): its modules are taken from the
# kernel package the assets keep (ASSETS/dl), put in order with modprobe --show-depends.
# Under QEMU 10 the controllers are multipath-capable: the disk is nvmeXn1, the controller's path
# nvmeXcYn1 (hidden); ubdma bench's checks and the guest script map one to the other.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:?usage: bench-check.sh OUTDIR ASSETS UBDMA [FIO]}
ASSETS=${2:?} UBDMA=${3:?} FIO=${4:-$(command -v fio || true)}
shift 3; shift || true
PMDS=("$@")
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else not_ok "$what"; fi; }
skip_all() { echo "1..0 # SKIP $*"; exit 77; }

for t in mkfs.ext4:e2fsprogs debugfs:e2fsprogs dpkg-deb:dpkg depmod:kmod modprobe:kmod gnuplot:gnuplot-nox; do
	command -v "${t%%:*}" >/dev/null || skip_all "${t%%:*} missing: install the Debian package ${t#*:} (tools/deps.sh)"
done
[ -n "$FIO" ] || skip_all "fio missing: install the Debian package fio (tools/deps.sh)"
"$HERE/build-guest.sh" "$ASSETS" >&2 || { echo "Bail out! build-guest.sh failed"; exit 1; }

# --- the ext4 modules of the guest's kernel ------------------------------------------------------
KREL=$(cat "$ASSETS/kernel-release")
MODS=$OUT/ext4-mods
if [ ! -s "$MODS/order" ] || [ "$(cat "$MODS/release" 2>/dev/null)" != "$KREL" ]; then
	rm -rf "$OUT/k" "$MODS"
	mkdir -p "$OUT/k" "$MODS"
	deb=$(ls "$ASSETS"/dl/linux-image-"$KREL"_*.deb | head -n1)
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$OUT/k" --wildcards './lib/modules/*/modules.*' \
		'./lib/modules/*/kernel/fs/*' './lib/modules/*/kernel/lib/*' './lib/modules/*/kernel/crypto/*'
	depmod -b "$OUT/k" "$KREL"
	modprobe -d "$OUT/k" -S "$KREL" --show-depends ext4 | while read -r word path _; do
		[ "$word" = insmod ] || continue
		cp "$path" "$MODS/"
		basename "$path" >>"$MODS/order"
	done
	echo "$KREL" >"$MODS/release"
	rm -rf "$OUT/k"
fi
[ -s "$MODS/order" ] || { echo "Bail out! no ext4 modules for $KREL"; exit 1; }
# the kernel's virtio-net (virtio_pci, then virtio_net), the same way
VMODS=$OUT/virtio-mods
if [ ! -s "$VMODS/order" ] || [ "$(cat "$VMODS/release" 2>/dev/null)" != "$KREL" ]; then
	rm -rf "$OUT/k" "$VMODS"
	mkdir -p "$OUT/k" "$VMODS"
	deb=$(ls "$ASSETS"/dl/linux-image-"$KREL"_*.deb | head -n1)
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$OUT/k" --wildcards './lib/modules/*/modules.*' \
		'./lib/modules/*/kernel/drivers/virtio/*' './lib/modules/*/kernel/drivers/net/*' \
		'./lib/modules/*/kernel/net/core/*'
	depmod -b "$OUT/k" "$KREL"
	for m in virtio_pci virtio_net; do
		modprobe -d "$OUT/k" -S "$KREL" --show-depends $m | while read -r word path _; do
			[ "$word" = insmod ] || continue
			grep -qx "$(basename "$path")" "$VMODS/order" 2>/dev/null && continue
			cp "$path" "$VMODS/"
			basename "$path" >>"$VMODS/order"
		done
	done
	echo "$KREL" >"$VMODS/release"
	rm -rf "$OUT/k"
fi
[ -s "$VMODS/order" ] || { echo "Bail out! no virtio-net modules for $KREL"; exit 1; }

# --- the three disks --------------------------------------------------------------------------------
rm -rf "$OUT/ext4-src" "$OUT/blank.img" "$OUT/ext4.img" "$OUT/bad.img" "$OUT/part.img"
mkdir -p "$OUT/ext4-src"
head -c 3M /dev/urandom >"$OUT/ext4-src/data.bin"
mkfs.ext4 -q -F -L ubdma-bench -d "$OUT/ext4-src" "$OUT/ext4.img" 32M >&2
cp "$OUT/ext4.img" "$OUT/ext4.orig"
truncate -s 64M "$OUT/blank.img" "$OUT/bad.img" "$OUT/part.img"
# one MBR entry (bootable 0, type 0x83 Linux, first LBA 2048, 40960 sectors) and the 0x55aa mark
printf '\x00\x00\x00\x00\x83\x00\x00\x00\x00\x08\x00\x00\x00\xa0\x00\x00' |
	dd of="$OUT/part.img" bs=1 seek=446 conv=notrunc status=none
printf '\x55\xaa' | dd of="$OUT/part.img" bs=1 seek=510 conv=notrunc status=none
mkfs.ext4 -q -F -E offset=$((2048 * 512)) -d "$OUT/ext4-src" "$OUT/part.img" 20M >&2
cp "$OUT/part.img" "$OUT/part.orig"
cat >"$OUT/blkdebug.conf" <<CONF
[inject-error]
event = "read_aio"
errno = "5"
sector = "100000"
CONF
cat >"$OUT/disks.qemu" <<QEMU
-drive
file=$OUT/ext4.img,if=none,id=nvext,format=raw
-device
nvme,drive=nvext,serial=ext4disk,addr=0x4
-drive
driver=raw,if=none,id=nvbad,file.driver=blkdebug,file.config=$OUT/blkdebug.conf,file.image.filename=$OUT/bad.img
-device
nvme,drive=nvbad,serial=baddisk,addr=0x5
-drive
file=$OUT/part.img,if=none,id=nvpart,format=raw
-device
nvme,drive=nvpart,serial=partdisk,addr=0x6
-netdev
user,id=vnb,restrict=on
-device
virtio-net-pci,netdev=vnb,addr=0x7,disable-legacy=on,iommu_platform=on,romfile=,mac=52:54:00:12:34:62
QEMU

# --- the guest ---------------------------------------------------------------------------------------
DPDK=()
if [ ${#PMDS[@]} -gt 0 ] && command -v dpdk-testpmd >/dev/null; then
	DPDK=(-i "$(command -v dpdk-testpmd)=/ubdma/bin/dpdk-testpmd" -e "UBDMA_BENCH_PMDS=${PMDS[*]}")
	for p in "${PMDS[@]}"; do DPDK+=(-i "$p"); done
fi
ENGINE=()
if [ -n "${UBDMA_BENCH_FIO_ENGINE:-}" ]; then
	[ -r "$UBDMA_BENCH_FIO_ENGINE" ] || { echo "Bail out! UBDMA_BENCH_FIO_ENGINE=$UBDMA_BENCH_FIO_ENGINE cannot be read"; exit 1; }
	ENGINE=(-i "$UBDMA_BENCH_FIO_ENGINE=/ubdma/lib/libubdma_fio.so" -e "UBDMA_BENCH_FIO_ENGINE=/ubdma/lib/libubdma_fio.so")
fi
rc=0
"$HERE/run-guest.sh" -n -N -M -t 900 -u 600 -a "$ASSETS" -o "$OUT/vm" -d "$OUT/blank.img" -q "$OUT/disks.qemu" \
	-i "$UBDMA=/ubdma/bin/ubdma" -i "$FIO=/ubdma/bin/fio" -i "$(readlink -f "$(command -v gnuplot)")=/ubdma/bin/gnuplot" \
	-i "$MODS=/ubdma/ext4" -i "$VMODS=/ubdma/virtio" -e "UBDMA_BENCH_VNET=0000:00:07.0" "${ENGINE[@]}" "${DPDK[@]}" \
	"$HERE/bench-guest.sh" >"$OUT/run-guest.out" 2>"$OUT/run-guest.err" || rc=$?
check "guest ran bench-guest.sh (run-guest.sh status $rc; $OUT/vm/results.txt)" grep -q '^PASS 1 bench-guest.sh' "$OUT/vm/results.txt"
while read -r res what; do
	if [ "$res" = ok ]; then ok "guest: $what"; else not_ok "guest: $what"; fi
done < <(sed -n 's/^BENCH-CHECK \(ok\|not-ok\) /\1 /p' "$OUT/vm/console.log")
grep -q '^bench-guest: [0-9]* check(s) failed' "$OUT/vm/console.log" ||
	not_ok "guest: bench-guest.sh stopped before its end ($(grep -c '^BENCH-CHECK' "$OUT/vm/console.log") checks ran)"

# --- the disks, on the host ------------------------------------------------------------------------
check "ext4 image byte for byte as it was made" cmp -s "$OUT/ext4.img" "$OUT/ext4.orig"
# the partitioned disk was mounted read-write in the guest: its table and the data are checked
check "partitioned disk: the partition table as it was made" cmp -s -n 1048576 "$OUT/part.img" "$OUT/part.orig"
dd if="$OUT/part.img" of="$OUT/part1.img" bs=1M skip=1 count=20 2>/dev/null
debugfs -R "dump /data.bin $OUT/part-data.back" "$OUT/part1.img" >/dev/null 2>&1 || true
check "partitioned disk: data.bin intact in partition 1" cmp -s "$OUT/part-data.back" "$OUT/ext4-src/data.bin"
debugfs -R "dump /data.bin $OUT/data.back" "$OUT/ext4.img" >/dev/null 2>&1 || true
check "ext4: data.bin reads back intact (debugfs)" cmp -s "$OUT/data.back" "$OUT/ext4-src/data.bin"
fsck_clean() { e2fsck -fn "$OUT/ext4.img" >&2; }
check "ext4: e2fsck finds it clean" fsck_clean
# reads only outside --write-range 8192..16383: bytes [4 MiB, 8 MiB) written, the rest still zero
zero_outside() {
	cmp -s -n $((4 << 20)) "$OUT/blank.img" /dev/zero &&
		cmp -s -i $((8 << 20)):0 -n $((56 << 20)) "$OUT/blank.img" /dev/zero
}
check "blank disk: nothing written outside --write-range" zero_outside
written() { [ "$(dd if="$OUT/blank.img" bs=1M skip=4 count=4 2>/dev/null | tr -d '\000' | wc -c)" -gt 0 ]; }
check "blank disk: the write workloads wrote inside it" written
echo "1..$n"
[ $failed = 0 ]
