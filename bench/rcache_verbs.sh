#!/bin/bash
# rcache_verbs.sh [--json | --csv] [--quick] [BUILD] - bench_rcache_verbs (bench/rcache_verbs.c) in
# the test bed's guest on soft-RoCE: rdma_rxe on the e1000e (run-guest.sh -r -N), the rxe provider
# and iproute2's rdma tool packed.  ubdma's cache over ibv_reg_mr beside UCX's ucs_rcache over the
# same calls and bare ibv_reg_mr / ibv_dereg_mr, in one process.  Prints the bench's table, or
# its --json / --csv; the console log stays in BUILD/bench-rcache-verbs.
# TCG runs the guest and rxe is software: read the ratios, not the absolute times.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ARGS=''
while [ $# -gt 0 ]; do
	case $1 in
	--json | --csv | --quick) ARGS="$ARGS $1" ;;
	-h | --help) sed -n '2,7p' "$0"; exit 0 ;;
	*) break ;;
	esac
	shift
done
B=$(cd "${1:-build}" && pwd)
BENCH=$B/bench/bench_rcache_verbs
[ -x "$BENCH" ] || { echo "rcache_verbs.sh: $BENCH not built (libibverbs-dev, option verbs)" >&2; exit 2; }
RXE=$(ls /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav*.so 2>/dev/null | head -n1)
RDMA=$(command -v rdma || true)
[ -n "$RXE" ] && [ -n "$RDMA" ] && [ -f /etc/libibverbs.d/rxe.driver ] ||
	{ echo "rcache_verbs.sh: the rxe provider or the rdma tool is missing (ibverbs-providers, iproute2)" >&2; exit 2; }
OUT=$B/bench-rcache-verbs
"$HERE/../tests/vm/run-guest.sh" -r -N -o "$OUT" -a "${UBDMA_VM_ASSETS:-$B/tests/vm/guest-assets}" -t 900 \
	-i "$RXE" -i /etc/libibverbs.d/rxe.driver -i "$RDMA" "$BENCH$ARGS" >&2 || {
	echo "rcache_verbs.sh: the guest run failed (see $OUT/console.log)" >&2
	exit 1
}
awk '/UBDMA-VM: BEGIN [0-9]+ bench_rcache_verbs/ { on = 1; next } /UBDMA-VM: END / { on = 0 } on' \
	"$OUT/console.log" | tr -d '\r'
