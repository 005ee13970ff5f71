#!/bin/bash
# vm-vnet.sh [-T] [-n N] ASSETS OUTDIR PROG [PROG...] - the virtio-net driver's tests in one guest
# boot, judged from outside: meson test 'virtio-net' (suite vm).
#
#  1. starts the host peer of the e1000e tests (drivers/e1000e/test/nic_peer.py, rx-test mode)
#     listening on 127.0.0.1 only;
#  2. boots the test bed (tests/vm/run-guest.sh -V) with a modern virtio-net at 0000:00:05.0
#     whose netdev is a socket connected to that peer, and its filter-dump OUTDIR/guest/vnet.pcap;
#  3. runs the first PROG with "BDF N K" (test_virtio_net_txrx: it transmits N frames, then takes
#     the N the peer injects), the others with the BDF only;
#  4. tshark (drivers/e1000e/test/check_pcap.py): vnet.pcap must hold the N transmitted frames in
#     order byte for byte, and the N injected broadcast frames.
# Prints TAP with -T (one point a guest program, one a pcap check), else "N passed, N failed".
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
PEERDIR=$ROOT/drivers/e1000e/test
TAP=0 N=1000 K=20
while getopts "Tn:" o; do
	case $o in T) TAP=1 ;; n) N=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
[ $# -ge 3 ] || { echo "usage: vm-vnet.sh [-T] [-n N] ASSETS OUTDIR PROG [PROG...]" >&2; exit 2; }
ASSETS=$1 OUT=$2 FIRST=$3
shift 3
BDF=0000:00:05.0
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
. "$ROOT/drivers/common/vm-test-lib.sh"
nic_peer_start vm-vnet.sh rx-test --frames "$N" --foreign "$K" --timeout 400
trap 'kill $PEER 2>/dev/null' EXIT
mkdir -p "$OUT/guest"
progs=("$FIRST $BDF $N $K")
for p in "$@"; do progs+=("$p $BDF"); done
"$ROOT/tests/vm/run-guest.sh" -T -t 400 -u 200 -a "$ASSETS" -o "$OUT/guest" \
	-V "socket,connect=127.0.0.1:$PORT" "${progs[@]}" >"$OUT/guest.tap" 2>"$OUT/guest.stderr"
grc=$?
# the peer ends on the guest's DONE; if the guest never sent it, do not wait for its timeout
for _ in $(seq 50); do kill -0 $PEER 2>/dev/null || break; sleep 0.1; done
kill $PEER 2>/dev/null
wait $PEER; prc=$?
trap - EXIT

MAC=$(sed -n 's/.*UBDMA-VNET-TX frames=[0-9]* mac=\([0-9a-f:]*\).*/\1/p' "$OUT/guest/console.log" | head -n1)
python3 "$PEERDIR/check_pcap.py" --label "tshark vnet.pcap (guest TX)" --frames "$N" ${MAC:+--src "$MAC"} \
	--only-dst "$OUT/guest/vnet.pcap" >"$OUT/check-tx.txt" 2>&1; c1=$?
python3 "$PEERDIR/check_pcap.py" --label "tshark vnet.pcap (host injection)" --frames "$N" \
	--dst ff:ff:ff:ff:ff:ff --src 02:00:00:00:00:02 --only-dst --max-len 1514 \
	"$OUT/guest/vnet.pcap" >"$OUT/check-rx.txt" 2>&1; c2=$?

nic_verdict test_virtio_net
