#!/bin/bash
# vm-nvme.sh [-T] ASSETS OUTDIR ENGINE THREADS_PROG LARGE_PROG [PROGRAM ...] - libubdma_nvme for
# production (issue 18), checked from both sides of the NVMe in one boot: meson test 'nvme-prod'
# (suite vm).  The fio engine (libubdma_fio.so), threads and namespaces (test_nvme_threads),
# transfers up to MDTS (test_nvme_large).
#
# The controller gets MDTS 11 (8 MiB; -global nvme.mdts=11) and two more namespaces (QEMU nvme-ns
# devices on backing files of their own): 2, 40 MiB of 512-byte blocks, and 3, 8 MiB of 4 KiB
# blocks; and namespace 4 on QEMU's null-co driver with a 2 s latency, whose every command the
# controller holds (test_nvme_recovery: timeouts, Abort, reset; give it as a PROGRAM).
#  1. on the host, Debian's fio (ioengine=psync) writes the hostpat job of
#     drivers/nvme/fio/jobs/verify.fio into a fresh 64 MiB backing file: fio verify headers with
#     crc32c;
#  2. boots the test bed once (tests/vm/run-guest.sh -d) and runs there, through the engine:
#     verify.fio (hostpat read back with verify_only at QD 16; guestqd32 and guestjobs4 written
#     and read back, 4 job threads on 4 queue pairs), guest-irq.fio (MSI-X completions, two
#     threads of mixed reads and writes), then the other PROGRAMs;
#     then test_nvme_threads (4 threads on namespace 1, every namespace at once), test_nvme_large
#     (8 MiB commands, PRP and SGL) and the other PROGRAMs;
#  3. on the host again, fio (psync) checks guestqd32 and guestjobs4 in the backing file with
#     verify_only: every block the guest wrote carries its offset, seed and a good crc32c; and
#     cmp(1) checks the threads' regions, each namespace's written ranges and the 8 MiB writes
#     against the pattern (byte at offset o: ((o * 2654435761) mod 2^32) >> 24 XOR seed).
# Prints TAP with -T, else "N passed, N failed".
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
JOBS=$HERE/../fio/jobs
TAP=0
while getopts "T" o; do
	case $o in T) TAP=1 ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
[ $# -ge 5 ] || { echo "usage: vm-nvme.sh [-T] ASSETS OUTDIR ENGINE THREADS_PROG LARGE_PROG [PROGRAM ...]" >&2; exit 2; }
ASSETS=$1 OUT=$2 ENGINE=$3 THREADS=$4 LARGE=$5
shift 5
FIO=$(command -v fio) || { echo "vm-nvme.sh: fio not found (apt-get install fio)" >&2; exit 2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DISK=$OUT/nvme.img NS2=$OUT/ns2.img NS3=$OUT/ns3.img
rm -f "$DISK" "$NS2" "$NS3"
truncate -s 64M "$DISK"
truncate -s 40M "$NS2"
truncate -s 8M "$NS3"
cat >"$OUT/qemu-nvme.args" <<ARGS
# MDTS 11: 4 KiB << 11 = 8 MiB a command
-global
nvme.mdts=11
-drive
file=$NS2,if=none,id=ns2,format=raw
-device
nvme-ns,drive=ns2,nsid=2
-drive
file=$NS3,if=none,id=ns3,format=raw
-device
nvme-ns,drive=ns3,nsid=3,logical_block_size=4096,physical_block_size=4096
# namespace 4: every command held 2 s (null-co with a latency; reads give zeroes), for the timeouts
-blockdev
driver=null-co,node-name=slow4,size=16777216,latency-ns=2000000000,read-zeroes=on
-device
nvme-ns,drive=slow4,nsid=4
ARGS

# gen FILE OFFSET LENGTH SEED: the pattern bytes of [OFFSET, OFFSET + LENGTH)
gen() {
	python3 - "$@" <<'PY'
import sys
f, off, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4], 0)
with open(f, "wb") as o:
    o.write(bytes((((x * 2654435761) & 0xffffffff) >> 24) ^ seed for x in range(off, off + n)))
PY
}
# cmp_region IMAGE NAME OFFSET LENGTH SEED: one TAP point, the image's bytes against the pattern
cmp_region() {
	gen "$OUT/expected" "$3" "$4" "$5"
	if out=$(dd if="$1" bs=4096 skip=$(($3 / 4096)) count=$(($4 / 4096)) status=none | cmp - "$OUT/expected" 2>&1); then
		point ok "host: $2 [$3, +$4) matches byte for byte (cmp)"
	else
		point fail "host: $2 [$3, +$4): $out"
	fi
}
# the host's 8 MiB that test_nvme_large reads in one command
gen "$OUT/expected" $((24 << 20)) $((8 << 20)) 0xc3
dd if="$OUT/expected" of="$NS2" bs=1M seek=24 conv=notrunc status=none

n=0 fails=0
point() { # point ok|fail TEXT
	n=$((n + 1))
	if [ "$1" = ok ]; then r=ok; else r="not ok"; fails=$((fails + 1)); fi
	[ "$TAP" = 1 ] && echo "$r $n - $2" || echo "$([ "$1" = ok ] && echo PASS || echo FAIL) $2"
}

E=psync F=$DISK VA=0 VB=0 "$FIO" --verify_state_save=0 --section=hostpat "$JOBS/verify.fio" >"$OUT/host-write.log" 2>&1
hw=$?

GE="E=external:/ubdma/lib/libubdma_fio.so"
"$ROOT/tests/vm/run-guest.sh" -o "$OUT" -a "$ASSETS" -d "$DISK" -t 700 -u 240 -q "$OUT/qemu-nvme.args" \
	-i "$ENGINE=/ubdma/lib/libubdma_fio.so" -i "$JOBS=/ubdma/jobs" \
	-e "$GE" -e F=0000.00.02.0 -e VA=1 -e VB=0 \
	"fio /ubdma/jobs/verify.fio" "fio /ubdma/jobs/guest-irq.fio" \
	"$THREADS --namespaces 4 --slow 4 --lba 1:512 --lba 2:512 --lba 3:4096" "$LARGE" "$@" \
	>"$OUT/run.log" 2>&1
rc=$?

E=psync F=$DISK VA=1 VB=1 "$FIO" --verify_state_save=0 --section=guestqd32 --section=guestjobs4 "$JOBS/verify.fio" \
	>"$OUT/host-verify.log" 2>&1
hv=$?

NPROG=$(grep -c '^' "$OUT/verdict.txt" 2>/dev/null || echo 0)
NREG=14
[ "$TAP" = 1 ] && echo "1..$((NPROG + 2 + NREG))"
[ $hw -eq 0 ] && point ok "host: fio psync wrote hostpat [0, 8 MiB) with crc32c headers" ||
	point fail "host: fio psync write of hostpat failed (status $hw, $OUT/host-write.log)"
while read -r num res name rest; do
	case $res in
	ok) point ok "guest: $name $rest" ;;
	skip) point fail "guest: $name skipped: $rest" ;; # the engine's test may not skip
	*) point fail "guest: $name $rest" ;;
	esac
done <"$OUT/verdict.txt"
if [ $hv -eq 0 ] && grep -q 'guestjobs4' "$OUT/host-verify.log"; then
	point ok "host: fio psync verify_only of guestqd32 [16, 32 MiB) and guestjobs4 [32, 48 MiB): every block good"
else
	point fail "host: fio psync verify_only of the guest's writes failed (status $hv)"
	grep -m5 -i 'verify\|bad\|err' "$OUT/host-verify.log" | sed 's/^/# /'
fi
# test_nvme_threads: 4 regions of 2 MiB at 52 MiB of namespace 1, seed 0x30 + thread
for t in 0 1 2 3; do
	cmp_region "$DISK" "namespace 1 thread $t" $(((52 + 2 * t) << 20)) $((2 << 20)) $((0x30 + t))
done
# every namespace: [0, 1 MiB) and the last 256 KiB, seed 0x40 + nsid
cmp_region "$NS2" "namespace 2 first MiB" 0 $((1 << 20)) 0x42
cmp_region "$NS2" "namespace 2 last 256 KiB" $(((40 << 20) - (256 << 10))) $((256 << 10)) 0x42
cmp_region "$NS3" "namespace 3 (4 KiB blocks) first MiB" 0 $((1 << 20)) 0x43
cmp_region "$NS3" "namespace 3 last 256 KiB" $(((8 << 20) - (256 << 10))) $((256 << 10)) 0x43
cmp_region "$DISK" "namespace 1 first MiB (after fio read hostpat)" 0 $((1 << 20)) 0x41
cmp_region "$DISK" "namespace 1 last 256 KiB" $(((64 << 20) - (256 << 10))) $((256 << 10)) 0x41
# test_nvme_large: 4 MiB through chained PRP lists, 8 MiB through SGLs, 2 MiB through chained
# SGL segments (QEMU 7.2 takes at most 1024 ranges a command); the host's 8 MiB untouched
cmp_region "$NS2" "namespace 2 4 MiB PRP write" $((8 << 20)) $((4 << 20)) 0x61
cmp_region "$NS2" "namespace 2 2 MiB chained-SGL write" $((12 << 20)) $((2 << 20)) 0x63
cmp_region "$NS2" "namespace 2 8 MiB SGL write" $((16 << 20)) $((8 << 20)) 0x62
cmp_region "$NS2" "namespace 2 host's 8 MiB (only read)" $((24 << 20)) $((8 << 20)) 0xc3
[ $rc -eq 0 ] || tail -n 40 "$OUT/run.log" | sed 's/^/# /'
[ "$TAP" = 1 ] || echo "$((n - fails)) passed, $fails failed"
[ $fails -eq 0 ]
