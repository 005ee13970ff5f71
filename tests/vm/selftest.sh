#!/bin/bash
# selftest.sh OUTDIR ASSETS VFIO_SMOKE — tests run-guest.sh's verdicts in one boot.
#
# Programs with a known outcome run in one guest; run-guest.sh must fail the run as a whole and
# judge each program as listed below. Prints TAP.
set -uo pipefail

[ $# -eq 3 ] || { echo "usage: selftest.sh OUTDIR ASSETS VFIO_SMOKE" >&2; exit 2; }
OUT=$1 ASSETS=$2 SMOKE=$3
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# program operand | expected verdict line in results.txt (an extended regex)
CASES=(
	"$SMOKE --no-expect|^FAIL 1 vfio_smoke .*unexpected DMAR fault at 0x80000000"
	"echo UBDMA-EXPECT-DMAR-FAULT 0x90000123|^FAIL 2 echo .*announced DMAR fault at page 0x90000000 not seen"
	"false|^FAIL 3 false .*exit status 1"
	"true|^PASS 4 true status=0"
	"env -u UBDMA_VM_NVME vfio_smoke|^SKIP 5 env status=77"
	"echo UBDMA-EXPECT-DMAR-FAULT any|^FAIL 6 echo .*announced a DMAR fault, none seen"
)
ops=()
for c in "${CASES[@]}"; do ops+=("${c%%|*}"); done

echo "1..$((${#CASES[@]} + 2))"
"$HERE/run-guest.sh" -t 300 -a "$ASSETS" -o "$OUT" "${ops[@]}" >"$OUT.stdout" 2>"$OUT.stderr"
rc=$?
if [ $rc -eq 1 ]; then
	echo "ok 1 - run-guest.sh exits 1 when a program fails"
else
	echo "not ok 1 - run-guest.sh exits 1 when a program fails (it exited $rc)"
	sed 's/^/# /' "$OUT.stderr" | tail -n 40
fi
if grep -q '^PASS 0 guest' "$OUT/results.txt" 2>/dev/null; then
	echo "ok 2 - guest booted and powered off"
else
	echo "not ok 2 - guest booted and powered off"
fi
n=2
for c in "${CASES[@]}"; do
	n=$((n + 1))
	if grep -Eq "${c#*|}" "$OUT/results.txt" 2>/dev/null; then
		echo "ok $n - '${c%%|*}' judged as expected"
	else
		echo "not ok $n - '${c%%|*}': no line matching '${c#*|}' in $OUT/results.txt"
		sed 's/^/# /' "$OUT/results.txt" 2>/dev/null
	fi
done
