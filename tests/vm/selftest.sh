#!/bin/bash
# selftest.sh OUTDIR ASSETS VFIO_SMOKE — tests run-guest.sh's verdicts in one boot.
#
# Programs with a known outcome run in one guest; run-guest.sh must fail the run as a whole and
# judge each program as listed below.  Then an emulator that crashes (a stand-in for
# qemu-system-x86_64 that aborts) once and twice, and once of SIGSEGV without a word: one crash
# gets one more boot, two fail.  Prints TAP.
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

echo "1..$((${#CASES[@]} + 5))"
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

# A QEMU that dies of a signal: the stand-in aborts on its first N calls, then runs the real one;
# in the case "segv" it dies once of SIGSEGV saying nothing, as 7.2's crash does.
fake=$OUT.fakeqemu
mkdir -p "$fake"
real=$(command -v qemu-system-x86_64)
cat >"$fake/qemu-system-x86_64" <<EOF
#!/bin/bash
n=\$(cat "$fake/calls" 2>/dev/null || echo 0); echo \$((n + 1)) >"$fake/calls"
if [ "\$n" -lt "\$(cat "$fake/crashes")" ]; then
	[ -e "$fake/segv" ] && kill -SEGV \$\$
	echo "stand-in: Assertion 'crash \$n' failed." >&2; kill -ABRT \$\$
fi
exec "$real" "\$@"
EOF
chmod +x "$fake/qemu-system-x86_64"
for crashes in 1 2 segv; do
	n=$((n + 1))
	rm -f "$fake/calls" "$fake/segv"
	if [ $crashes = segv ]; then echo 1 >"$fake/crashes"; touch "$fake/segv"; else echo "$crashes" >"$fake/crashes"; fi
	PATH=$fake:$PATH "$HERE/run-guest.sh" -t 300 -a "$ASSETS" -o "$OUT-crash$crashes" true \
		>"$OUT-crash$crashes.stdout" 2>"$OUT-crash$crashes.stderr"
	rc=$? r=$OUT-crash$crashes/results.txt
	if [ $crashes = 1 ] && [ $rc = 0 ] && grep -q "^# booted twice: .*signal 6.*crash 0" "$r" && grep -q '^PASS 1 true' "$r"; then
		echo "ok $n - a QEMU that crashes once gets one more boot, and the results say so"
	elif [ $crashes = 2 ] && [ $rc = 1 ] && grep -q "^# booted twice: .*crash 0" "$r" &&
		grep -q '^FAIL 0 guest .*qemu status 134' "$r" && [ "$(cat "$fake/calls")" = 2 ]; then
		echo "ok $n - a QEMU that crashes twice fails the run, after exactly two boots"
	elif [ $crashes = segv ] && [ $rc = 0 ] && grep -q "^# booted twice: .*signal 11" "$r" && grep -q '^PASS 1 true' "$r"; then
		echo "ok $n - a QEMU that dies of SIGSEGV with nothing on its stderr also gets one more boot"
	else
		echo "not ok $n - QEMU crashing $crashes time(s): run-guest.sh exited $rc"
		sed 's/^/# /' "$r" "$OUT-crash$crashes.stderr" 2>/dev/null | tail -n 20
	fi
done
