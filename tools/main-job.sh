#!/usr/bin/env bash
# main-job.sh BUILD - ubdma on this machine, end to end, with a short report at the end:
#  1. host: a hugepage buffer locked and translated (phys backend: physical addresses, checked
#     against the kernel's pagemap by the benchmark), and the translation cost beside DPDK's;
#  2. guest: the QEMU test bed with a real IOMMU, where ubdma drives VFIO devices.
set -uo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
report=()
add() { report+=("$(printf '%-28s %s' "$1" "$2")"); }

echo "== 1. host: lock and translate a hugepage buffer (examples/umem_basic)"
if out=$("$B/examples/umem_basic" 8 2>&1); then
  echo "$out"
  add "host backend" "$(sed -n 's/^backend: \([a-z]*\).*/\1/p' <<<"$out")"
  add "host umem_lock 8 MiB" "ok, $(grep -c -- '-> iova' <<<"$out") hugepages translated"
else
  echo "$out"; add "host umem_lock" "FAILED"
fi

echo
echo "== 2. host: translation cost, ubdma beside DPDK 22.11 (bench/xlate, 1 GiB of 2 MiB pages)"
if [ -x "$B/bench/bench_xlate" ]; then
  "$B/bench/bench_xlate" --json > "$B/bench_xlate.json" 2> "$B/bench_xlate.err" || true
  grep -v '^$' "$B/bench_xlate.err" | sed 's/^/  /'
  add "vtoiova median (ns)" "$(python3 - "$B/bench_xlate.json" <<'PY'
import json, sys
try:
    rows = json.load(open(sys.argv[1]))
except Exception:
    print("no result"); sys.exit()
for r in rows:
    med = r.get("median"); p99 = r.get("p99")
    fmt = lambda v: "skipped" if v is None else f"{v:.2f}"
    print(f"    {r['name']:<14}{r['impl']:<20}{r.get('unit',''):<11} median {fmt(med):>10}  p99 {fmt(p99):>10}", file=sys.stderr)
get = lambda i: next((r for r in rows if r["name"] == "vtoiova" and r["impl"] == i and r.get("median") is not None), None)
u, d = get("ubdma"), get("dpdk-memseg")
s = f"ubdma {u['median']:.2f}" if u else "ubdma n/a"
if u and d:
    s += f", dpdk-memseg {d['median']:.2f} (ubdma/dpdk = {u['median']/d['median']:.2f}x)"
print(s)
PY
)"
else
  add "translation benchmark" "not built"
fi

echo
echo "== 3. guest: VFIO devices behind an emulated Intel IOMMU (tests/vm)"
if [ -x tests/vm/main-job.sh ]; then
  if bash tests/vm/main-job.sh "$B"; then add "guest (VFIO)" "ok: see above"; else add "guest (VFIO)" "FAILED"; fi
  # NVMe through libubdma_nvme (examples/nvme_rw in that boot): its REPORT line, or why not
  nv=$(sed -n 's/\r$//; s/^.*REPORT nvme_rw: //p' "$B/tests/vm/main-job/console.log" 2>/dev/null | head -n1)
  add "guest NVMe (drivers/nvme)" "${nv:-no result: see above}"
  # NIC through libubdma_e1000e (examples/e1000e_ping in that boot: ARP + ping of QEMU's gateway)
  nic=$(sed -n 's/\r$//; s/^.*REPORT e1000e: ping /ping /p' "$B/tests/vm/main-job/console.log" 2>/dev/null | head -n1)
  add "guest NIC (drivers/e1000e)" "${nic:-no result: see above}"
else
  add "guest (VFIO)" "test bed not wired into the main job yet"
fi

echo
echo "== report"
printf '%s\n' "${report[@]}"
