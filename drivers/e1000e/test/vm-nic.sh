#!/bin/bash
# vm-nic.sh [-T] [-n N] ASSETS OUTDIR TX_PROG RX_PROG - the e1000e driver's tests in one guest boot,
# judged from outside: meson test 'e1000e' (suite vm).
#
#  1. starts the host peer (nic_peer.py, rx-test mode) listening on 127.0.0.1 only;
#  2. boots the test bed (tests/vm/run-guest.sh) with one more e1000e at 0000:00:04.0 whose
#     netdev is a socket connected to that peer (-q: the runner's extra QEMU arguments), with its
#     own filter-dump (OUTDIR/guest/rx.pcap); the first e1000e (0000:00:03.0) stays on QEMU's
#     restricted user network, its pcap is OUTDIR/guest/net.pcap;
#  3. runs TX_PROG on 0000:00:03.0 (N frames) and RX_PROG on 0000:00:04.0 (N frames injected);
#  4. tshark (check_pcap.py): net.pcap must hold the N transmitted frames in order byte for byte,
#     rx.pcap the N injected broadcast frames.
# Prints TAP with -T (one point a guest program, one a pcap check), else "N passed, N failed".
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
TAP=0 N=1000 K=20
while getopts "Tn:" o; do
	case $o in T) TAP=1 ;; n) N=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
[ $# -eq 4 ] || { echo "usage: vm-nic.sh [-T] [-n N] ASSETS OUTDIR TX_PROG RX_PROG" >&2; exit 2; }
ASSETS=$1 OUT=$2 TX=$3 RX=$4
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
. "$HERE/../../common/vm-test-lib.sh"
nic_peer_start vm-nic.sh rx-test --frames "$N" --foreign "$K" --timeout 400
trap 'kill $PEER 2>/dev/null' EXIT
mkdir -p "$OUT/guest"
cat >"$OUT/qemu-nic.args" <<ARGS
# second e1000e: socket to the host peer on the loopback
-netdev
socket,id=n1,connect=127.0.0.1:$PORT
-device
e1000e,netdev=n1,addr=0x4,romfile=,mac=52:54:00:12:34:57
-object
filter-dump,id=f1,netdev=n1,file=$OUT/guest/rx.pcap
ARGS

rm -f "$OUT/guest/rx.pcap"
"$ROOT/tests/vm/run-guest.sh" -T -t 400 -u 180 -a "$ASSETS" -o "$OUT/guest" -q "$OUT/qemu-nic.args" \
	"$TX 0000:00:03.0 $N" "$RX 0000:00:04.0 $N $K" >"$OUT/guest.tap" 2>"$OUT/guest.stderr"
grc=$?
wait $PEER; prc=$?
trap - EXIT

MAC=$(sed -n 's/.*UBDMA-E1000E-TX frames=[0-9]* mac=\([0-9a-f:]*\).*/\1/p' "$OUT/guest/console.log" | head -n1)
python3 "$HERE/check_pcap.py" --label "tshark net.pcap (guest TX)" --frames "$N" ${MAC:+--src "$MAC"} \
	"$OUT/guest/net.pcap" >"$OUT/check-tx.txt" 2>&1; c1=$?
python3 "$HERE/check_pcap.py" --label "tshark rx.pcap (host injection)" --frames "$N" \
	--dst ff:ff:ff:ff:ff:ff --src 02:00:00:00:00:02 --only-dst --max-len 1514 \
	"$OUT/guest/rx.pcap" >"$OUT/check-rx.txt" 2>&1; c2=$?

nic_verdict test_e1000e
