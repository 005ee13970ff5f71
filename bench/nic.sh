#!/bin/bash
# nic.sh e1000e|virtio-net [--json] [-s SECONDS] [-r REPS] [-R ROWS] [-I ICOUNT] [-P] [BUILD] - the
# NIC benchmark of bench/e1000e.sh and bench/virtio_net.sh: libubdma's driver beside DPDK 22.11
# testpmd (txonly / rxonly) in the same QEMU guest on the same devices, TX-only and RX-only
# packet rates for 64- and 1514-byte frames and guest CPU time per packet.  Prints a
# side-by-side table (the median over repetitions of ubdma / testpmd and the ratio of each
# repetition; the row's ratio is the median of those), or with --json the rows [{name, impl,
# unit, median, p99, pps, cpu_ns_per_pkt, ...}, ...] for tx64 tx1514 rx64 rx1514 x ubdma
# testpmd.  -R takes a comma-separated subset of the rows (e.g. -R rx64).
#
# Guest clock (-I, docs/virtio-net.md "Benchmark"): by default the guest runs one CPU under
# QEMU's -icount shift=2,sleep=off, so guest time is the count of instructions the guest ran
# (4 ns each) and sleeps take none: both peers are timed in instructions, whatever the host's
# load; the transmit virtio-net then runs tx=timer (its flushes on the guest's clock).  -I off
# boots the test bed's usual two CPUs on the host's clock; -I SUBOPTS passes other -icount
# sub-options (e.g. shift=5,align=on).
#
# Guest set-up (tests/vm/run-guest.sh): TX on a NIC on QEMU's restricted user network without
# capture; RX on one that shares a QEMU hub with a third NIC, an 82574L at 00:07.0 that
# bench/nic_gen.c drives from the guest: 4 M frames a second of guest time, sent inside one
# register write a millisecond, so the offered load is on the guest's clock and above what
# either peer takes (docs/e1000e.md, "Receive on the guest's clock").  -P feeds RX from the host
# instead, as before: a socket netdev to drivers/e1000e/test/nic_peer.py on 127.0.0.1, which
# floods frames of the size the guest asks for, at the host's pace.  testpmd and the device's /
# mempool_ring PMDs are packed with their ldd closure.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
NIC=${1:-}
shift || true
JSON=0 SECS=3 REPS=1 ROWS=tx64,tx1514,rx64,rx1514 ICOUNT=shift=2,sleep=off PEERFEED=0
while [ $# -gt 0 ]; do
	case $1 in
	--json) JSON=1 ;;
	-s) SECS=$2; shift ;;
	-r) REPS=$2; shift ;;
	-R) ROWS=$2; shift ;;
	-I) ICOUNT=$2; shift ;;
	-P) PEERFEED=1 ;;
	-h | --help) sed -n '2,25p' "$0"; exit 0 ;;
	*) break ;;
	esac
	shift
done
B=${1:-build}
B=$(cd "$B" && pwd)
ASSETS=${UBDMA_VM_ASSETS:-$B/tests/vm/guest-assets}
case $NIC in
e1000e)
	ME=e1000e.sh BENCH=$B/bench/bench_e1000e OUT=$B/bench-e1000e PMD=librte_net_e1000.so
	TXBDF=0000:00:04.0 RXBDF=0000:00:05.0 VNET=()
	# two more 82574Ls: TX at 00:04.0, RX at 00:05.0 on the peer (port filled in below)
	QARGS='-netdev
user,id=n2,restrict=on
-device
e1000e,netdev=n2,addr=0x4,romfile=,mac=52:54:00:12:34:58
-netdev
socket,id=n3,connect=127.0.0.1:@PORT@
-device
e1000e,netdev=n3,addr=0x5,romfile=,mac=52:54:00:12:34:59' ;;
virtio-net)
	ME=virtio_net.sh BENCH=$B/bench/bench_virtio_net OUT=$B/bench-virtio-net PMD=librte_net_virtio.so
	TXBDF=0000:00:06.0 RXBDF=0000:00:05.0 VNET=(-V "socket,connect=127.0.0.1:@PORT@")
	# TX on a virtio-net at 00:06.0; RX on run-guest.sh's -V one (00:05.0) on the peer
	QARGS='-netdev
user,id=vn2,restrict=on
-device
virtio-net-pci,netdev=vn2,addr=0x6,disable-legacy=on,iommu_platform=on,romfile=,mac=52:54:00:12:34:61' ;;
*) echo "usage: nic.sh e1000e|virtio-net [options] [BUILD] (nic.sh e1000e --help)" >&2; exit 2 ;;
esac
# the receive NIC's feed: the generator's hub, or (-P) the host peer's socket
GEN=$B/bench/bench_nic_gen GENARGS=() EXTRA_GEN=()
if [ $PEERFEED = 0 ]; then
	[ -x "$GEN" ] || { echo "$ME: $GEN not built" >&2; exit 2; }
	QARGS=${QARGS//socket,id=n3,connect=127.0.0.1:@PORT@/hubport,id=n3,hubid=1}
	VNET=()
	[ "$NIC" = e1000e ] || QARGS+='
-netdev
hubport,id=vn0,hubid=1
-device
virtio-net-pci,netdev=vn0,addr=0x5,disable-legacy=on,iommu_platform=on,romfile=,mac=52:54:00:12:34:60,ioeventfd=off'
	QARGS+='
-netdev
hubport,id=gen0,hubid=1
-device
e1000e,netdev=gen0,addr=0x7,romfile=,mac=52:54:00:12:34:5a'
	GENARGS=(--gen 0000:00:07.0 --gen-prog "$GEN")
	EXTRA_GEN=(-i "$GEN")
fi
[ -x "$BENCH" ] || { echo "$ME: $BENCH not built" >&2; exit 2; }
mkdir -p "$OUT"

TESTPMD=$(command -v dpdk-testpmd || true)
PMDDIR=$(ls -d /usr/lib/x86_64-linux-gnu/dpdk/pmds-* 2>/dev/null | tail -n1)
EXTRA=() TPARGS=()
if [ -n "$TESTPMD" ] && [ -n "$PMDDIR" ]; then
	EXTRA+=(-i "$TESTPMD")
	TPARGS+=(--testpmd "$TESTPMD")
	for so in $PMD librte_mempool_ring.so; do
		f=$(readlink -f "$PMDDIR/$so")
		EXTRA+=(-i "$f")
		TPARGS+=(--pmd "$f")
	done
else
	echo "$ME: dpdk-testpmd not found (Debian package dpdk-dev): testpmd rows skipped" >&2
fi

PEER='' PORT=0
if [ $PEERFEED = 1 ]; then
	rm -f "$OUT/peer.port"
	python3 "$ROOT/drivers/e1000e/test/nic_peer.py" --mode bench --timeout 900 \
		--port-file "$OUT/peer.port" 2>"$OUT/peer.log" &
	PEER=$!
	trap 'kill $PEER 2>/dev/null' EXIT
	for _ in $(seq 100); do [ -s "$OUT/peer.port" ] && break; sleep 0.1; done
	PORT=$(cat "$OUT/peer.port")
fi
# Under -icount the virtio-net transmits on its timer (tx=timer: QEMU_CLOCK_VIRTUAL, so guest
# time) instead of a bottom half of the main loop (tx=bh, the default), which runs at the host's
# pace: transmit rows then measure the drivers, not the host (docs/virtio-net.md, "Benchmark").
# Both virtio-nets take their notifications in the vCPU's thread (ioeventfd=off): QEMU's default
# hands a notification to the main loop through an eventfd, even under TCG, so that a refilled
# receive ring (or a transmit timer) waited for the host's main loop; all but 2% of ubdma's
# receive polls then found nothing.
[ "$ICOUNT" = off ] || QARGS=${QARGS/mac=52:54:00:12:34:61/mac=52:54:00:12:34:61,tx=timer,ioeventfd=off}
echo "${QARGS//@PORT@/$PORT}" >"$OUT/qemu.args"
# QEMU 7.2's -icount hangs an x86 guest of two CPUs in the kernel's bring-up of the second
# ("x86: Booting SMP configuration:"): one CPU (the later -smp wins over run-guest.sh's)
[ "$ICOUNT" = off ] || printf -- '-smp\n1\n-icount\n%s\n' "$ICOUNT" >>"$OUT/qemu.args"
"$ROOT/tests/vm/run-guest.sh" -t 1800 -a "$ASSETS" -o "$OUT/guest" -q "$OUT/qemu.args" "${EXTRA[@]}" \
	${EXTRA_GEN[@]+"${EXTRA_GEN[@]}"} ${VNET[@]+"${VNET[@]//@PORT@/$PORT}"} \
	"$BENCH --tx $TXBDF --rx $RXBDF --seconds $SECS --reps $REPS --rows $ROWS ${TPARGS[*]} ${GENARGS[*]}" \
	>"$OUT/guest.out" 2>"$OUT/guest.err"
grc=$?
[ -z "$PEER" ] || kill $PEER 2>/dev/null
trap - EXIT
grep -h '^testpmd: \|^bench:' "$OUT/guest/console.log" | sort | uniq -c | head -5 | sed 's/^/  guest: /' >&2
[ $grc -eq 0 ] || { echo "$ME: guest run failed (status $grc): $OUT/guest/console.log" >&2; tail -5 "$OUT/guest.err" >&2; }
python3 "$HERE/nic_report.py" "$OUT/guest/console.log" "$JSON" "$OUT/bench.json" "$ICOUNT"
