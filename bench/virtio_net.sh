#!/bin/bash
# virtio_net.sh [--json] [-s SECONDS] [-r REPS] [-R ROWS] [BUILD] - libubdma_virtio_net beside
# DPDK 22.11 testpmd (net_virtio PMD, --forward-mode=txonly / rxonly), both in the same QEMU
# guest on the same modern virtio-net devices (disable-legacy=on, iommu_platform=on, behind the
# emulated VT-d): TX-only and RX-only packet rates for 64- and 1514-byte frames and guest CPU time
# per packet.  Prints a side-by-side table (the median over repetitions of ubdma / testpmd, and
# the ratio of each repetition), or with --json the rows [{name, impl, unit, median, p99, pps, cpu_ns_per_pkt},
# ...] for tx64 tx1514 rx64 rx1514 x ubdma testpmd.  -R takes a comma-separated subset of the
# rows (e.g. -R rx64).  TCG emulation bounds both drivers: read the ratios, not the rates.
#
# Guest set-up (tests/vm/run-guest.sh): TX on a virtio-net at 0000:00:06.0 (-q extra QEMU
# arguments) on QEMU's restricted user network without capture; RX on the one of -V
# (0000:00:05.0) whose socket netdev connects to drivers/e1000e/test/nic_peer.py on 127.0.0.1,
# which floods frames of the size the guest asks for.  testpmd and the virtio / mempool_ring PMDs
# are packed with their ldd closure.  Each side as its users run it: ubdma with the device's queue
# size (256), its default pool and bursts of 32; testpmd with its defaults (burst 32, the virtio
# PMD's queue size = the device's, default thresholds), one forwarding lcore.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
JSON=0 SECS=3 REPS=1 ROWS=tx64,tx1514,rx64,rx1514
while [ $# -gt 0 ]; do
	case $1 in
	--json) JSON=1 ;;
	-s) SECS=$2; shift ;;
	-r) REPS=$2; shift ;;
	-R) ROWS=$2; shift ;;
	-h | --help) sed -n '2,18p' "$0"; exit 0 ;;
	*) break ;;
	esac
	shift
done
B=${1:-build}
B=$(cd "$B" && pwd)
BENCH=$B/bench/bench_virtio_net
[ -x "$BENCH" ] || { echo "virtio_net.sh: $BENCH not built" >&2; exit 2; }
OUT=$B/bench-virtio-net
mkdir -p "$OUT"
ASSETS=${UBDMA_VM_ASSETS:-$B/tests/vm/guest-assets}

TESTPMD=$(command -v dpdk-testpmd || true)
PMDDIR=$(ls -d /usr/lib/x86_64-linux-gnu/dpdk/pmds-* 2>/dev/null | tail -n1)
EXTRA=() TPARGS=()
if [ -n "$TESTPMD" ] && [ -n "$PMDDIR" ]; then
	EXTRA+=(-i "$TESTPMD")
	TPARGS+=(--testpmd "$TESTPMD")
	for so in librte_net_virtio.so librte_mempool_ring.so; do
		f=$(readlink -f "$PMDDIR/$so")
		EXTRA+=(-i "$f")
		TPARGS+=(--pmd "$f")
	done
else
	echo "virtio_net.sh: dpdk-testpmd not found (Debian package dpdk-dev): testpmd rows skipped" >&2
fi

rm -f "$OUT/peer.port"
python3 "$ROOT/drivers/e1000e/test/nic_peer.py" --mode bench --timeout 900 \
	--port-file "$OUT/peer.port" 2>"$OUT/peer.log" &
PEER=$!
trap 'kill $PEER 2>/dev/null' EXIT
for _ in $(seq 100); do [ -s "$OUT/peer.port" ] && break; sleep 0.1; done
PORT=$(cat "$OUT/peer.port")
cat >"$OUT/qemu.args" <<ARGS
-netdev
user,id=vn2,restrict=on
-device
virtio-net-pci,netdev=vn2,addr=0x6,disable-legacy=on,iommu_platform=on,romfile=,mac=52:54:00:12:34:61
ARGS
"$ROOT/tests/vm/run-guest.sh" -t 900 -a "$ASSETS" -o "$OUT/guest" -q "$OUT/qemu.args" "${EXTRA[@]}" \
	-V "socket,connect=127.0.0.1:$PORT" \
	"$BENCH --tx 0000:00:06.0 --rx 0000:00:05.0 --seconds $SECS --reps $REPS --rows $ROWS ${TPARGS[*]}" \
	>"$OUT/guest.out" 2>"$OUT/guest.err"
grc=$?
kill $PEER 2>/dev/null
trap - EXIT
grep -h '^testpmd: \|^bench:' "$OUT/guest/console.log" | sort | uniq -c | head -5 | sed 's/^/  guest: /' >&2
[ $grc -eq 0 ] || { echo "virtio_net.sh: guest run failed (status $grc): $OUT/guest/console.log" >&2; tail -5 "$OUT/guest.err" >&2; }

python3 - "$OUT/guest/console.log" "$JSON" "$OUT/bench.json" <<'PY'
import json, re, statistics, sys
rows = {}
for line in open(sys.argv[1], errors="replace"):
    i = line.find("UBDMA-BENCH ")
    if i < 0:
        continue
    kv = dict(w.split("=", 1) for w in line[i + 12:].split() if "=" in w)
    if kv.get("windows", "0") == "0":
        continue
    rows.setdefault((kv["name"], kv["impl"]), []).append(kv)
out = []
names = ["tx64", "tx1514", "rx64", "rx1514"]
for n in names:
    for impl in ["ubdma", "testpmd"]:
        rs = rows.get((n, impl))
        if not rs:
            out.append({"name": n, "impl": impl, "unit": "pps", "median": None, "p99": None,
                        "pps": None, "cpu_ns_per_pkt": None, "skipped": "no result"})
            continue
        med = lambda k: statistics.median(float(r[k]) for r in rs)
        out.append({"name": n, "impl": impl, "unit": "pps", "median": med("pps"), "p99": med("pps_p99"),
                    "pps": med("pps"), "cpu_ns_per_pkt": med("cpu_ns_per_pkt"),
                    "cpu_ns_per_pkt_p99": med("cpu_p99"), "reps": len(rs)})
# The two peers of a repetition run some 15 s apart; on a loaded host the rates swing more than
# that between repetitions, so each ubdma row also carries the ratio of every repetition and
# their median, the figure to compare (docs/virtio-net.md).
for r in out:
    if r["impl"] != "ubdma":
        continue
    each = [float(a["pps"]) / float(b["pps"]) for a, b in
            zip(rows.get((r["name"], "ubdma"), []), rows.get((r["name"], "testpmd"), []))]
    if each:
        r["ratio_reps"] = [round(x, 3) for x in each]
        r["ratio_median"] = round(statistics.median(each), 3)
        r["ratio_min"], r["ratio_max"] = round(min(each), 3), round(max(each), 3)
json.dump(out, open(sys.argv[3], "w"), indent=1)
if sys.argv[2] == "1":
    print(json.dumps(out, indent=1))
    sys.exit()
get = {(r["name"], r["impl"]): r for r in out}
f = lambda v, d=0: "-" if v is None else f"{v:,.{d}f}"
print(f"{'row':<8}{'ubdma pps':>12}{'testpmd pps':>13}{'ratio':>8}   {'ubdma ns/pkt':>13}{'testpmd ns/pkt':>15}"
      "   ratio of each repetition")
for n in names:
    u, t = get[(n, "ubdma")], get[(n, "testpmd")]
    each = [float(a["pps"]) / float(b["pps"]) for a, b in zip(rows.get((n, "ubdma"), []), rows.get((n, "testpmd"), []))]
    # paired repetitions: the median of their ratios, not the ratio of the medians
    ratio = statistics.median(each) if each else None
    print(f"{n:<8}{f(u['pps']):>12}{f(t['pps']):>13}{f(ratio, 2) + ('x' if ratio else ''):>8}   "
          f"{f(u['cpu_ns_per_pkt']):>13}{f(t['cpu_ns_per_pkt']):>15}   " + " ".join(f"{r:.2f}" for r in each))
print("(guest under QEMU TCG: rates are the emulator's, compare the ratios; CPU = guest CPU time per packet)")
PY
