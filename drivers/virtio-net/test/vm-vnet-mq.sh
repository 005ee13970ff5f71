#!/bin/bash
# vm-vnet-mq.sh [-T] [-q QP] ASSETS OUTDIR PROG - the virtio-net driver's queue pairs and checksum
# offloads, judged by tshark: meson test 'virtio-net-mq' (suite vm).
#
# Runs in a network namespace of its own (unshare -n: nothing of the host's network is touched):
#   vn0  multi-queue tap with vnet headers, 10.20.0.1/24, MAC 02:00:00:00:00:10: the guest's
#        virtio-net (run-guest.sh -V 'tap,...,queues=QP mq=on'), the guest being 10.20.0.2;
#   vn1  plain tap (no vnet header, so no checksum offload), 10.20.1.1/24, 10.20.1.2 behind it:
#        the kernel completes the checksum of what it forwards there, and tshark captures it.
# drivers/virtio-net/test/tap_peer.py keeps vn1 open and sends the guest its UDP flows.  The
# first PROG (test_virtio_net_mq) gets "BDF QP M", the others (test_virtio_net_dmar) the BDF.
# Checks afterwards: sink.pcap (vn1) holds M datagrams a queue pair, to 10.20.1.2:9000+q, every
# UDP checksum good; vnet.pcap (captured on vn0, as the device handed them over: QEMU's
# filter-dump refuses multi-queue netdevs) shows the same datagrams with checksums not yet
# complete, so the guest did not compute them.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
TAP=0 QP=4 M=50
while getopts "Tq:" o; do
	case $o in T) TAP=1 ;; q) QP=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
[ $# -ge 3 ] || { echo "usage: vm-vnet-mq.sh [-T] [-q QP] ASSETS OUTDIR PROG [PROG...]" >&2; exit 2; }
if [ -z "${VNET_MQ_NETNS:-}" ]; then
	command -v unshare >/dev/null && command -v ip >/dev/null ||
		{ echo "1..0 # SKIP unshare/ip missing (util-linux, iproute2)"; exit 0; }
	topt=()
	[ "$TAP" = 1 ] && topt=(-T)
	exec env VNET_MQ_NETNS=1 unshare -n "$0" "${topt[@]}" -q "$QP" "$@"
fi
ASSETS=$1 OUT=$2 PROG=$3
shift 3
mkdir -p "$OUT/guest"
OUT=$(cd "$OUT" && pwd)
BDF=0000:00:05.0

set -e
ip link set lo up
ip tuntap add dev vn0 mode tap multi_queue vnet_hdr
ip link set vn0 address 02:00:00:00:00:10 txqueuelen 5000 mtu 4000
ip tuntap add dev vn1 mode tap
for d in vn0 vn1; do echo 1 >/proc/sys/net/ipv6/conf/$d/disable_ipv6; done
ip link set vn0 up
ip link set vn1 up
ip addr add 10.20.0.1/24 dev vn0
ip addr add 10.20.1.1/24 dev vn1
ip neigh replace 10.20.0.2 lladdr 52:54:00:12:34:60 dev vn0 nud permanent
ip neigh replace 10.20.1.2 lladdr 02:00:00:00:00:22 dev vn1 nud permanent
echo 1 >/proc/sys/net/ipv4/ip_forward
for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 >"$f"; done
set +e

# The host side (peer, captures) follows one boot: when QEMU crashed and run-guest.sh booted the
# guest a second time, the captures hold both boots' traffic, so the whole run is made once more.
for attempt in 1 2; do
	rm -f "$OUT/sink.pcap" "$OUT/peer.log"
	rm -f "$OUT/mon.sock"
	printf '%s\n' -monitor "unix:$OUT/mon.sock,server=on,wait=off" >"$OUT/qemu-mon.args"
	exec 3< <(python3 "$HERE/tap_peer.py" --sink vn1 --timeout 400 --linger 300 --monitor "$OUT/mon.sock" \
		2>"$OUT/peer.log")
	PEER=$!
	read -r -t 10 _ <&3 || { echo "vm-vnet-mq.sh: the peer did not start" >&2; cat "$OUT/peer.log" >&2; exit 2; }
	# QEMU's filter-dump refuses a multi-queue netdev: the guest's side is captured on vn0 instead
	# (what the tap hands the host, before any checksum is completed)
	tshark -q -i vn1 -w "$OUT/sink.pcap" 2>"$OUT/tshark.log" &
	SHARK=$!
	tshark -q -i vn0 -w "$OUT/vnet.pcap" 2>"$OUT/tshark0.log" &
	SHARK0=$!
	for _ in $(seq 50); do grep -q "Capturing on" "$OUT/tshark.log" && grep -q "Capturing on" "$OUT/tshark0.log" && break; sleep 0.2; done
	"$ROOT/tests/vm/run-guest.sh" -T -t 400 -u 200 -a "$ASSETS" -o "$OUT/guest" -q "$OUT/qemu-mon.args" \
		-V "tap,ifname=vn0,script=no,downscript=no,vnet_hdr=on,queues=$QP mq=on,vectors=$((2 * QP + 2))" \
		"$PROG $BDF $QP $M" "${@/%/ $BDF}" >"$OUT/guest.tap" 2>"$OUT/guest.stderr"
	grc=$?
	sleep 1
	kill -INT $SHARK $SHARK0 2>/dev/null; wait $SHARK $SHARK0 2>/dev/null
	kill $PEER 2>/dev/null
	grep -q "^# booted twice" "$OUT/guest/results.txt" 2>/dev/null && [ $attempt = 1 ] || break
	echo "vm-vnet-mq.sh: QEMU crashed during the run (see $OUT/guest/results.txt): running it all once more" >&2
done

# sink.pcap: datagrams to 10.20.1.2:9000+q, checksum status as tshark computes it (1 good, 0 bad)
fields() { tshark -r "$1" -o udp.check_checksum:TRUE -Y "ip.dst==10.20.1.2 && udp.dstport>=9000 && udp.dstport<$((9000 + QP))" \
	-T fields -e udp.dstport -e udp.checksum.status 2>/dev/null; }
fields "$OUT/sink.pcap" >"$OUT/sink.txt"
fields "$OUT/vnet.pcap" >"$OUT/vnet.txt"
c1=0 msg1="tshark sink.pcap: per queue pair"
for q in $(seq 0 $((QP - 1))); do
	good=$(awk -v p=$((9000 + q)) '$1 == p && $2 == 1' "$OUT/sink.txt" | wc -l)
	msg1+=" $q:$good"
	[ "$good" -eq "$M" ] || c1=1
done
bad=$(awk '$2 != 1' "$OUT/sink.txt" | wc -l)
[ "$bad" -eq 0 ] || c1=1
msg1+=" datagrams with good UDP checksums (want $M each), $bad not good, after the host completed them"
vtotal=$(wc -l <"$OUT/vnet.txt")
vgood=$(awk '$2 == 1' "$OUT/vnet.txt" | wc -l)
c2=0
[ "$vtotal" -eq $((QP * M)) ] && [ "$vgood" -eq 0 ] || c2=1
msg2="tshark vn0 (vnet.pcap): $vtotal datagrams as the device handed them to the host, $vgood with a complete checksum (want $((QP * M)), 0: the device completed them)"

# test_virtio_net_dmar: the device's read of the unmapped canary page must not have carried the
# canary's bytes (0xa5) onto the wire
leak=$(tshark -r "$OUT/vnet.pcap" -Y 'frame contains a5:a5:a5:a5:a5:a5:a5:a5:a5:a5:a5:a5:a5:a5:a5:a5' 2>/dev/null | wc -l)
frames=$(tshark -r "$OUT/vnet.pcap" 2>/dev/null | wc -l)
c3=0
[ "$leak" -eq 0 ] && [ "$frames" -gt 0 ] || c3=1
msg3="tshark vn0 (vnet.pcap): $leak of $frames frames carry the canary page's bytes (want 0)"

. "$ROOT/drivers/common/vm-test-lib.sh"
{
	echo "guest run: status $grc; results: $OUT/guest/results.txt"
	cat "$OUT/guest/results.txt" 2>/dev/null
	sed 's/^/peer: /' "$OUT/peer.log"
	true # a missing file leaves a line less, not a failed verdict (pipefail)
} | vm_verdict test_virtio_net "$c1 $msg1" "$c2 $msg2" "$c3 $msg3"
