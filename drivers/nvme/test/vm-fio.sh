#!/bin/bash
# vm-fio.sh [-T] ASSETS OUTDIR ENGINE [PROGRAM ...] - the ubdma_nvme fio engine (libubdma_fio.so)
# checked from both sides of the NVMe: meson test 'nvme-fio' (suite vm).
#
#  1. on the host, Debian's fio (ioengine=psync) writes the hostpat job of
#     drivers/nvme/fio/jobs/verify.fio into a fresh 64 MiB backing file: fio verify headers with
#     crc32c;
#  2. boots the test bed once (tests/vm/run-guest.sh -d) and runs there, through the engine:
#     verify.fio (hostpat read back with verify_only at QD 16; guestqd32 and guestjobs4 written
#     and read back, 4 job threads on 4 queue pairs), guest-irq.fio (MSI-X completions, two
#     threads of mixed reads and writes), then the other PROGRAMs;
#  3. on the host again, fio (psync) checks guestqd32 and guestjobs4 in the backing file with
#     verify_only: every block the guest wrote carries its offset, seed and a good crc32c.
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
[ $# -ge 3 ] || { echo "usage: vm-fio.sh [-T] ASSETS OUTDIR ENGINE [PROGRAM ...]" >&2; exit 2; }
ASSETS=$1 OUT=$2 ENGINE=$3
shift 3
FIO=$(command -v fio) || { echo "vm-fio.sh: fio not found (apt-get install fio)" >&2; exit 2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DISK=$OUT/nvme.img
rm -f "$DISK"
truncate -s 64M "$DISK"

n=0 fails=0
point() { # point ok|fail TEXT
	n=$((n + 1))
	if [ "$1" = ok ]; then r=ok; else r="not ok"; fails=$((fails + 1)); fi
	[ "$TAP" = 1 ] && echo "$r $n - $2" || echo "$([ "$1" = ok ] && echo PASS || echo FAIL) $2"
}

E=psync F=$DISK VA=0 VB=0 "$FIO" --section=hostpat "$JOBS/verify.fio" >"$OUT/host-write.log" 2>&1
hw=$?

GE="E=external:/ubdma/lib/libubdma_fio.so"
"$ROOT/tests/vm/run-guest.sh" -o "$OUT" -a "$ASSETS" -d "$DISK" -t 500 -u 240 \
	-i "$ENGINE=/ubdma/lib/libubdma_fio.so" -i "$JOBS=/ubdma/jobs" \
	-e "$GE" -e F=0000.00.02.0 -e VA=1 -e VB=0 \
	"fio /ubdma/jobs/verify.fio" "fio /ubdma/jobs/guest-irq.fio" "$@" \
	>"$OUT/run.log" 2>&1
rc=$?

E=psync F=$DISK VA=1 VB=1 "$FIO" --section=guestqd32 --section=guestjobs4 "$JOBS/verify.fio" \
	>"$OUT/host-verify.log" 2>&1
hv=$?

NPROG=$(grep -c '^' "$OUT/verdict.txt" 2>/dev/null || echo 0)
[ "$TAP" = 1 ] && echo "1..$((NPROG + 2))"
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
[ $rc -eq 0 ] || tail -n 40 "$OUT/run.log" | sed 's/^/# /'
[ "$TAP" = 1 ] || echo "$((n - fails)) passed, $fails failed"
[ $fails -eq 0 ]
