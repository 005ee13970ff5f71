#!/bin/bash
# iommu_map.sh [--json | --csv] [-n ITERS] [BUILD] - bench_iommu_map (bench/iommu_map.c) in the test
# bed's guest on its own kernel (tests/vm/kernel: VFIO's type1 container and iommufd both there),
# so that type1, iommufd and DPDK's rte_vfio_container_dma_map map the same memory for the same
# NVMe in one boot.  The guest gets 5 GiB and two 1 GiB hugepages for the 1 GiB rows (with 3 GiB
# the boot-time reservation of a 1 GiB page failed).  Prints the bench's table, or its --json /
# --csv; the console log stays in BUILD/bench-iommu-map.
# TCG emulates the IOMMU: read the ratios, not the absolute times.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FMT='' ITERS=400
while [ $# -gt 0 ]; do
	case $1 in
	--json | --csv) FMT=$1 ;;
	-n) ITERS=$2; shift ;;
	-h | --help) sed -n '2,7p' "$0"; exit 0 ;;
	*) break ;;
	esac
	shift
done
B=$(cd "${1:-build}" && pwd)
BENCH=$B/bench/bench_iommu_map
[ -x "$BENCH" ] || { echo "iommu_map.sh: $BENCH not built" >&2; exit 2; }
OUT=$B/bench-iommu-map
"$HERE/../tests/vm/run-guest.sh" -x iommufd -o "$OUT" -a "${UBDMA_VM_ASSETS:-$B/tests/vm/guest-assets}" \
	-m 5G -K "hugepagesz=1G hugepages=2" -t 900 "$BENCH --iters $ITERS $FMT" >&2 || {
	echo "iommu_map.sh: the guest run failed (see $OUT/console.log)" >&2
	exit 1
}
# the program's stdout is in the console log between its BEGIN and END markers
awk '/UBDMA-VM: BEGIN [0-9]+ bench_iommu_map/ { on = 1; next } /UBDMA-VM: END / { on = 0 } on' \
	"$OUT/console.log" | tr -d '\r'
