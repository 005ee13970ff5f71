#!/bin/bash
# nvme-host-check.sh OUTDIR ASSETS TEST_NVME_IO [PROGRAM ...] - the NVMe driver's writes, checked
# from outside the guest by tools that are not ours (dd, cmp).
#
# 1. makes a fresh 64 MiB backing file and writes the host pattern (seed 0xc3) at [16 MiB, +1 MiB)
#    with dd, before boot;
# 2. boots the guest once (run-guest.sh -d) with 'TEST_NVME_IO --host-pattern' (which reads the
#    host pattern back through libubdma_nvme, writes its own regions with seed 0x5a, flushes and
#    shuts the controller down) and the other PROGRAMs;
# 3. after QEMU has exited, cuts each region out of the backing file with dd and compares it with
#    cmp(1) against the expected bytes; any byte wrong fails.
# The pattern: byte at namespace offset o is ((o * 2654435761) mod 2^32) >> 24 XOR seed; regions as
# in tests/vm/guest/test_nvme_io.c.  Prints TAP.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -ge 3 ] || { echo "usage: $0 OUTDIR ASSETS TEST_NVME_IO [PROGRAM ...]" >&2; exit 2; }
OUT=$1 ASSETS=$2 IO=$3
shift 3
mkdir -p "$OUT"
DISK=$OUT/nvme.img EXP=$OUT/expected
rm -rf "$DISK" "$EXP"
mkdir -p "$EXP"
truncate -s 64M "$DISK"

# region name, byte offset, length, seed (0: zeros)
REGIONS="prp1 1048576 4096 0x5a
prp2 2097152 8192 0x5a
bounced-prplist 3145728 65536 0x5a
prplist-offset 4194304 262144 0x5a
sgl-unaligned 5242880 12288 0x5a
max-transfer 6291456 MAXXFER 0x5a
write-zeroes 7340032 16384 0
qd32 8388608 1048576 0x5a"

gen() { # gen FILE OFFSET LENGTH SEED
	python3 - "$@" <<'PY'
import sys
f, off, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4], 0)
with open(f, "wb") as o:
    if seed == 0:
        o.write(bytes(n))
    else:
        o.write(bytes((((x * 2654435761) & 0xffffffff) >> 24) ^ seed for x in range(off, off + n)))
PY
}

gen "$EXP/host-pattern" 16777216 1048576 0xc3
dd if="$EXP/host-pattern" of="$DISK" bs=1M seek=16 conv=notrunc status=none || { echo "Bail out! dd"; exit 1; }

"$HERE/run-guest.sh" -o "$OUT" -a "$ASSETS" -d "$DISK" -t 300 -u 150 "$IO --host-pattern" "$@" >"$OUT/run.log" 2>&1
rc=$?
NPROG=$(grep -c '^' "$OUT/verdict.txt" 2>/dev/null || echo 0)
NREG=$(grep -c . <<<"$REGIONS")
echo "1..$((NPROG + NREG + 1))"
n=0
while read -r num res name rest; do
	n=$((n + 1))
	case $res in ok) echo "ok $n - guest: $name";; skip) echo "ok $n - guest: $name # SKIP";; *) echo "not ok $n - guest: $name $rest";; esac
done <"$OUT/verdict.txt"
[ $rc -eq 0 ] || { sed 's/^/# /' "$OUT/run.log" | tail -n 60; }

# the maximum transfer the driver used (Identify MDTS, capped at 1 MiB by the test)
mx=$(sed -n 's/.*(max transfer \([0-9]*\)).*/\1/p' "$OUT/console.log" | head -n1)
mx=${mx:-524288}
[ "$mx" -gt 1048576 ] && mx=1048576
# the host pattern must still be there (the guest only read it)
n=$((n + 1))
if dd if="$DISK" bs=1M skip=16 count=1 status=none | cmp -s - "$EXP/host-pattern"; then
	echo "ok $n - host: host pattern [16 MiB, +1 MiB) intact after the guest read it"
else
	echo "not ok $n - host: host pattern changed"
fi
while read -r name off len seed; do
	[ "$len" = MAXXFER ] && len=$mx
	gen "$EXP/$name" "$off" "$len" "$seed"
	n=$((n + 1))
	# dd with 4 KiB blocks (all offsets and lengths are multiples), then cmp byte for byte
	if out=$(dd if="$DISK" bs=4096 skip=$((off / 4096)) count=$((len / 4096)) status=none | cmp - "$EXP/$name" 2>&1); then
		echo "ok $n - host: $name [$off, +$len) matches byte for byte (cmp)"
	else
		echo "not ok $n - host: $name [$off, +$len): $out"
	fi
done <<<"$REGIONS"
sha256sum "$DISK" | sed 's/^/# /'
