#!/usr/bin/env bash
# test_cli.sh UBDMA - the ubdma command-line tool on this host: `status` (text and --json, parsed
# and checked against sysfs), bad input exits 2 with a sentence, `bind` says the IOMMU is off when
# it is, `hugepages` shows and reserves, `rcache` counts what the registration cache did on its
# workload (hits, misses, merges, evictions, invalidations, bytes pinned: each to the number),
# `bench` turns a benchmark's JSON into tables and plots (its arguments passed on, escapes decoded,
# output that is no JSON array refused), `bench nvme|nic|iommu` refuse bad arguments before
# touching anything and `bench iommu` measures the backends that open here, `help` names every
# command, and --json goes before or after the command.
# TAP output, one line a check (meson reads it: protocol 'tap'; a skipped check says '# SKIP').
set -u
U=${1:?usage: test_cli.sh path/to/ubdma}
tmp=$(mktemp -d)
trap 'umount "$tmp/mnt" 2>/dev/null; rm -rf "$tmp"' EXIT
n=0 failed=0

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; sed 's/^/# /' "$tmp/err" 2>/dev/null | head -20; }
check() { # description, then a command whose success is the check
  local d=$1; shift
  if "$@"; then ok "$d"; else not_ok "$d"; fi
}
# expect_exit CODE PATTERN -- ARGS: run ubdma ARGS, want exit CODE and PATTERN in stderr
expect_exit() {
  local code=$1 pat=$2; shift 3
  "$U" "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ $rc -eq "$code" ] && { [ -z "$pat" ] || grep -q -- "$pat" "$tmp/err"; }; then ok "ubdma $* -> exit $code: $(head -1 "$tmp/err")"
  else echo "# got exit $rc"; not_ok "ubdma $* -> exit $code, stderr matching '$pat'"; fi
}

# --- status, JSON: parse it and compare with what sysfs says
if "$U" status --json >"$tmp/status.json" 2>"$tmp/err"; then ok "ubdma status --json exits 0"; else not_ok "ubdma status --json exits 0"; fi
check "status --json is valid and agrees with sysfs" python3 - "$tmp/status.json" <<'PY'
import json, os, sys
s = json.load(open(sys.argv[1]))
for k in ("iommu", "devices", "hugepages", "memlock", "backend", "rcache"):
    assert k in s, k
assert s["rcache"]["error"] is not None or s["rcache"]["monitor"], s["rcache"]
assert s["backend"]["auto"] in ("iommufd", "vfio", "noiommu", "phys", "va"), s["backend"]
assert s["backend"]["reason"].startswith(s["backend"]["auto"] + ":"), s["backend"]["reason"]
assert s["iommu"]["vfio"] == os.path.exists("/dev/vfio/vfio")
assert s["iommu"]["iommufd"] == os.path.exists("/dev/iommu")
assert s["iommu"]["noiommu_mode"] in ("on", "off", "absent"), s["iommu"]
assert s["iommu"]["vfio_cdevs"] == (len(os.listdir("/dev/vfio/devices")) if os.path.isdir("/dev/vfio/devices") else 0)
devs = sorted(os.listdir("/sys/bus/pci/devices"))
assert [d["bdf"] for d in s["devices"]] == devs, "device list"
for d in s["devices"]:
    link = "/sys/bus/pci/devices/%s/driver" % d["bdf"]
    drv = os.path.basename(os.readlink(link)) if os.path.islink(link) else None
    assert d["driver"] == drv, d
    g = "/sys/bus/pci/devices/%s/iommu_group" % d["bdf"]
    assert (d["iommu_group"] is None) == (not os.path.exists(g)), d
sizes = sorted(int(x.split("-")[1][:-2]) * 1024 for x in os.listdir("/sys/kernel/mm/hugepages"))
assert s["hugepages"]["sizes"] == sizes, (s["hugepages"]["sizes"], sizes)
for c in s["hugepages"]["counts"]:
    if c["node"] is None:
        want = int(open("/sys/kernel/mm/hugepages/hugepages-%dkB/nr_hugepages" % (c["pgsz"] // 1024)).read())
        assert c["total"] == want, c
for lo, hi in s["backend"]["iova_windows"]:
    assert isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi < 2**64, (lo, hi)
m = s["memlock"]
assert m["soft"] == "unlimited" or isinstance(m["soft"], int)
print("# backend:", s["backend"]["auto"], "-", s["backend"]["reason"])
PY

# --- status, text
"$U" status >"$tmp/status.txt" 2>"$tmp/err"
check "ubdma status prints the backend AUTO picks and why" grep -q "AUTO picks" "$tmp/status.txt"
check "ubdma status prints hugepages and locked memory" grep -q "RLIMIT_MEMLOCK" "$tmp/status.txt"
if [ ! -e /dev/vfio/vfio ]; then
  check "ubdma status says there is no VFIO here" grep -q "no VFIO" "$tmp/status.txt"
fi

# --- bad input: exit 2 with a clear sentence
expect_exit 2 "no PCI device 0000:ff:1f.7" -- bind 0000:ff:1f.7
expect_exit 2 "no PCI device 0000:ff:1f.7" -- unbind ff:1f.7
expect_exit 2 "is not a PCI address" -- bind 0000:00:1g.0
expect_exit 2 "is not a PCI address" -- bind 0000:00:20.0
expect_exit 2 "needs a PCI address" -- bind
expect_exit 2 "not a multiple of the" -- hugepages --reserve 3M
expect_exit 2 "is not a size" -- hugepages --reserve lots
expect_exit 2 "offers no" -- hugepages --reserve 3M --pagesize 3M
expect_exit 2 "NUMA node 4000 does not exist" -- hugepages --reserve 2M --node 4000
expect_exit 2 "unknown option" -- hugepages --frobnicate
expect_exit 2 "unknown command 'frobnicate' (status, bind, unbind, hugepages, rcache, bench, help)" -- frobnicate
expect_exit 2 "usage" --
expect_exit 2 "takes no arguments" -- status extra
expect_exit 2 "wants a number from 1" -- rcache --buffers 0
expect_exit 2 "is not a size" -- rcache --size lots
expect_exit 2 "is auto, iommufd, vfio, noiommu, phys or va" -- rcache --backend foo
expect_exit 2 "unknown option" -- rcache --frobnicate

# --- help: every command of the table, on stdout with exit 0; on stderr with exit 2 without one
help_names() { for c in status bind unbind hugepages rcache bench help; do grep -q "^  $c\b" "$1" || return 1; done; }
"$U" help >"$tmp/help" 2>"$tmp/err"; rc=$?
check "ubdma help exits 0 and prints the usage" sh -c "[ $rc -eq 0 ] && grep -q '^usage: ubdma' '$tmp/help'"
check "help names status, bind, unbind, hugepages, rcache, bench and help" help_names "$tmp/help"
check "ubdma --help prints the same text" sh -c "'$U' --help | cmp -s - '$tmp/help'"
"$U" >/dev/null 2>"$tmp/help2"
check "ubdma without a command prints the help on stderr" cmp -s "$tmp/help" "$tmp/help2"

# --- bind on a machine whose IOMMU is off: a clear message, nothing touched
dev=""
for d in /sys/bus/pci/devices/*; do [ -e "$d/iommu_group" ] || { dev=$(basename "$d"); break; }; done
if [ -n "$dev" ]; then
  before=$(readlink "/sys/bus/pci/devices/$dev/driver" || true)
  expect_exit 1 "the IOMMU is off" -- bind "$dev"
  check "bind left $dev on its driver" test "$(readlink "/sys/bus/pci/devices/$dev/driver" || true)" = "$before"
  "$U" bind --json "$dev" >"$tmp/bind.json" 2>"$tmp/err"; rc=$?
  check "bind --json: exit 1 and one element, not bound, no group" python3 -c "
import json, sys; r = json.load(open('$tmp/bind.json'))
assert $rc == 1 and r == [{'bdf': '$dev', 'bound': False, 'iommu_group': None, 'viable': False}], r"
else
  ok "# SKIP every device has an IOMMU group: the IOMMU-off message is tested in the guest"
fi

# --- hugepages: show, and reserve what is already there (no change) as root
check "ubdma hugepages --json parses" sh -c "'$U' hugepages --json | python3 -c 'import json,sys; json.load(sys.stdin)'"
check "--json before the command gives the same document" sh -c \
  "'$U' --json hugepages | python3 -c 'import json,sys; d=json.load(sys.stdin); assert list(d) == [\"hugepages\"] and list(d[\"hugepages\"]) == [\"sizes\", \"counts\", \"mounts\"], d'"
"$U" hugepages >"$tmp/hp.txt" 2>"$tmp/err"
check "ubdma hugepages prints the table and the mounts" sh -c "grep -q '^Hugepages' '$tmp/hp.txt' && grep -q 'hugetlbfs mounts:' '$tmp/hp.txt'"
d2=/sys/kernel/mm/hugepages/hugepages-2048kB
if [ -w "$d2/nr_hugepages" ]; then
  total=$(cat "$d2/nr_hugepages")
  expect_exit 0 "" -- hugepages --reserve $((total * 2))M --pagesize 2M
  check "reserve kept nr_hugepages at $total" test "$(cat "$d2/nr_hugepages")" -eq "$total"
  n0=/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages
  if [ -e "$n0" ]; then
    t0=$(cat "$n0")
    expect_exit 0 "" -- hugepages --reserve $(((t0 + 1) * 2))M --pagesize 2M --node 0
    check "node 0 got one more page" test "$(cat "$n0")" -eq $((t0 + 1))
    expect_exit 0 "" -- hugepages --reserve $((t0 * 2))M --pagesize 2M --node 0
  fi
  # hugetlbfs mounted on a directory of our own, then unmounted
  if "$U" hugepages --mount "$tmp/mnt" --pagesize 2M >"$tmp/out" 2>"$tmp/err"; then
    check "hugepages --mount: hugetlbfs with 2 MiB pages on $tmp/mnt" sh -c \
      "grep -q '^mounted hugetlbfs with 2 MiB pages on $tmp/mnt\$' '$tmp/out' && grep -q ' $tmp/mnt hugetlbfs .*pagesize=2M' /proc/mounts"
    check "the mount is listed by ubdma hugepages --json" sh -c \
      "'$U' hugepages --json | python3 -c 'import json,sys; assert {\"path\": \"$tmp/mnt\", \"pgsz\": 2097152} in json.load(sys.stdin)[\"hugepages\"][\"mounts\"]'"
    expect_exit 0 "" -- hugepages --unmount "$tmp/mnt"
    check "hugepages --unmount removed it" sh -c "! grep -q ' $tmp/mnt ' /proc/mounts"
  else
    ok "# SKIP hugetlbfs cannot be mounted here: $(head -1 "$tmp/err")"
  fi
else
  ok "# SKIP not root or no 2 MiB hugepages: reservation and mounts not tried"
fi

# --- rcache: the counters of the tool's own workload, on the va backend (any memory, any host).
# 4 buffers of 64 KiB (4 KiB guard gaps), each got and put 10 times in turn.
# rcache_expect DESCRIPTION PYTHON-CONDITION -- ARGS: the condition over w (workload), s (stats)
rcache_expect() {
  local d=$1 cond=$2; shift 3
  if "$U" rcache --json --backend va --buffers 4 --size 64K --iterations 10 "$@" >"$tmp/rc.json" 2>"$tmp/err" &&
     python3 - "$tmp/rc.json" "$cond" <<'PY' >>"$tmp/err" 2>&1
import json, sys
d = json.load(open(sys.argv[1])); w, s = d["workload"], d["stats"]
ok = eval(sys.argv[2])
print("# stats:", {k: s[k] for k in ("hits", "misses", "merges", "evictions", "invalidations", "bytes_pinned", "entries")})
sys.exit(0 if ok else 1)
PY
  then ok "rcache${*:+ $*}: $d"; else not_ok "rcache${*:+ $*}: $d"; fi
}
rcache_expect "one miss then 9 hits per buffer, nothing merged, evicted or invalidated, 256 KiB pinned" \
  's["hits"] == 36 and s["misses"] == 4 and s["merges"] == 0 and s["evictions"] == 0 and s["invalidations"] == 0 and s["bytes_pinned"] == 4 * 65536 and s["entries"] == 4 and s["limit_failures"] == 0 and w["registered_per_buffer"] == 65536' --
rcache_expect "adjacent buffers merge into one entry (3 merges)" \
  's["hits"] == 36 and s["misses"] == 4 and s["merges"] == 3 and s["entries"] == 1 and s["bytes_pinned"] == 4 * 65536' -- --adjacent
rcache_expect "a 128 KiB limit under a 256 KiB working set evicts and stays within it" \
  's["evictions"] > 0 and s["hits"] + s["misses"] == 40 and s["misses"] > 4 and s["bytes_pinned"] <= 131072 and s["max_bytes"] == 131072' -- --limit 128K
rcache_expect "unmapped while cached: 4 invalidations by the monitor, nothing left pinned (or no monitor here)" \
  '(s["invalidations"] == 4 and s["events_unmap"] >= 1 and s["bytes_pinned"] == 0 and s["entries"] == 0) if s["monitor_active"] else s["invalidations"] == 0' -- --unmap
rcache_expect "unmapped with the explicit-only monitor: nothing invalidated, the 4 entries stay" \
  's["invalidations"] == 0 and s["entries"] == 4 and not s["monitor_active"]' -- --unmap --explicit
# the text form, on the backend AUTO picks (phys on a host with hugepages: hugetlb buffers)
if "$U" rcache --iterations 5 >"$tmp/rc.txt" 2>"$tmp/err"; then
  check "rcache text: 8 buffers x 5: 32 hits, 8 misses, and every counter printed" sh -c \
    "grep -q '^rcache hits: 32$' '$tmp/rc.txt' && grep -q '^rcache misses: 8$' '$tmp/rc.txt' &&
     grep -q '^rcache merges: 0$' '$tmp/rc.txt' && grep -q '^rcache evictions: 0$' '$tmp/rc.txt' &&
     grep -q '^rcache invalidations: 0$' '$tmp/rc.txt' && grep -q '^rcache bytes pinned: [1-9]' '$tmp/rc.txt'"
else
  ok "# SKIP rcache on the AUTO backend failed here: $(head -1 "$tmp/err")"
fi

# --- bench: a stand-in benchmark with a histogram row, and one that fails
mkdir -p "$tmp/bench"
cat >"$tmp/bench/bench_fake" <<'SH'
#!/bin/sh
[ "$1" = "--json" ] || exit 3
echo '[{"name": "lat", "impl": "ubdma", "unit": "ns", "median": 1.5, "p99": 3, "mean": 1.7,'
echo '  "backend": "va", "skipped": false, "note": "", "hist": [[1, 10], [2, 5], [3, 1]]},'
echo ' {"name": "lat", "impl": "peer", "unit": "ns", "median": null, "p99": null, "mean": null,'
echo '  "backend": "va", "skipped": true, "note": "not here \"quoted\" caf\u00e9"},'
echo " {\"name\": \"args\", \"impl\": \"ubdma\", \"unit\": \"ns\", \"median\": 2, \"note\": \"$*\"}]"
SH
chmod +x "$tmp/bench/bench_fake"
if "$U" bench --bench-dir "$tmp/bench" --out "$tmp/res" --json >"$tmp/out" 2>"$tmp/err"; then ok "ubdma bench exits 0"; else not_ok "ubdma bench exits 0"; fi
check "bench wrote the JSON, text and Markdown tables" test -s "$tmp/res/bench_fake.json" -a -s "$tmp/res/bench_fake.txt" -a -s "$tmp/res/bench_fake.md"
check "the table holds both rows" test "$(grep -c '^lat ' "$tmp/res/bench_fake.txt")" -eq 2
check "the Markdown table has its header and the 3 rows" test "$(grep -c '^| ' "$tmp/res/bench_fake.md")" -eq 4
check "numbers to 3 decimals, absent ones '-', escapes decoded" sh -c \
  "grep -q '^| lat | ubdma | va | ns | 1.500 | 3.000 | 1.700 |  |\$' '$tmp/res/bench_fake.md' &&
   grep -q '^| lat | peer | va | ns | - | - | - | not here \"quoted\" café |\$' '$tmp/res/bench_fake.md'"
check "the benchmark ran with --json only" grep -q '^| args | ubdma |  | ns | 2.000 | - | - | --json |$' "$tmp/res/bench_fake.md"
check "the histogram row has its data and gnuplot script" test -s "$tmp/res/bench_fake-lat-ubdma.dat" -a -s "$tmp/res/bench_fake-lat-ubdma.gp"
if command -v gnuplot >/dev/null; then
  check "gnuplot drew the PNG" test -s "$tmp/res/bench_fake-lat-ubdma.png"
fi
check "bench --json reports one bench, 3 rows" python3 -c "
import json,sys; r=json.load(open('$tmp/out')); assert r[0]['bench']=='bench_fake' and r[0]['rows']==3 and r[0]['ok'], r"
"$U" bench --bench-dir "$tmp/bench" --out "$tmp/res3" -- --quick --n 5 >"$tmp/out" 2>"$tmp/err"
check "arguments after -- reach the benchmark" grep -q '^| args | ubdma |  | ns | 2.000 | - | - | --json --quick --n 5 |$' "$tmp/res3/bench_fake.md"
printf '#!/bin/sh\nexit 1\n' >"$tmp/bench/bench_zbroken"; chmod +x "$tmp/bench/bench_zbroken"
expect_exit 1 "bench_zbroken failed" -- bench --bench-dir "$tmp/bench" --out "$tmp/res2"
expect_exit 2 "no benchmark directory" -- bench --bench-dir "$tmp/nowhere"
mkdir -p "$tmp/bench_obj" "$tmp/empty"
printf '#!/bin/sh\necho "{\\"rows\\": []}"\n' >"$tmp/bench_obj/bench_obj"; chmod +x "$tmp/bench_obj/bench_obj"
expect_exit 1 "bench_obj printed no JSON array" -- bench --bench-dir "$tmp/bench_obj" --out "$tmp/res4"
expect_exit 1 "no bench_\* executables in" -- bench --bench-dir "$tmp/empty" --out "$tmp/res5"

# --- bench nvme|nic|iommu on this host: bad arguments before anything is touched, and the
# iommu rows of the backends that open here (vfio without a device is a row saying why)
expect_exit 2 "unknown kind 'frob'" -- bench frob
expect_exit 2 "no PCI device 0000:ff:1f.7" -- bench nvme 0000:ff:1f.7
expect_exit 2 "usage: ubdma bench nvme BDF" -- bench nvme
expect_exit 2 "wants LBA..LBA with the first <= the last, not '9..3'" -- bench nvme 0000:ff:1f.7 --write-range 9..3
expect_exit 2 "wants LBA..LBA (first and last block, inclusive), not 'all'" -- bench nvme 0000:ff:1f.7 --read-range all
expect_exit 2 "randwrite-4k-qd32 writes to the namespace: name the blocks it may overwrite with --write-range" -- \
  bench nvme 0000:ff:1f.7 --workloads randread-4k-qd1,randwrite-4k-qd32
expect_exit 2 "no workload 'randfrob'" -- bench nvme 0000:ff:1f.7 --workloads randfrob
expect_exit 2 "--fio-engine /nonexistent/libubdma_fio.so: No such file or directory; nothing was bound" -- \
  bench nvme 0000:ff:1f.7 --fio-engine /nonexistent/libubdma_fio.so
expect_exit 2 "--time wants seconds between 0.1 and 3600" -- bench iommu --time 0
expect_exit 2 "--ping wants an IPv4 address" -- bench nic 0000:ff:1f.7 --ping nowhere
# a device of another class: the first PCI function that is not an NVMe controller / not Ethernet
other=$(for d in /sys/bus/pci/devices/*; do c=$(cat "$d/class"); [ "${c:0:6}" != 0x0108 ] && [ "${c:0:6}" != 0x0200 ] && basename "$d" && break; done)
if [ -n "$other" ]; then
  before=$(readlink "/sys/bus/pci/devices/$other/driver" 2>/dev/null)
  expect_exit 2 "$other is not an NVMe controller (class 0x010802): its PCI class is" -- bench nvme "$other"
  expect_exit 2 "$other is not an Ethernet controller (class 0x0200)" -- bench nic "$other"
  check "$other kept its driver (${before##*/})" test "$(readlink "/sys/bus/pci/devices/$other/driver" 2>/dev/null)" = "$before"
else
  ok "# SKIP no PCI function of another class on this host"
fi
if "$U" --json bench iommu --time 0.2 --quiet --out "$tmp/iommu" >"$tmp/iommu.json" 2>"$tmp/err"; then ok "bench iommu exits 0"; else not_ok "bench iommu exits 0"; fi
check "bench iommu: JSON rows, measured or saying why not" python3 - "$tmp/iommu.json" "$tmp/iommu" <<'PY'
import json, os, sys
rows = json.load(open(sys.argv[1]))
names = ["iommu-map-4k", "iommu-unmap-4k", "iommu-map-2m", "iommu-unmap-2m", "translate", "busdma-load-4k", "bounce-4k"]
for b in ("vfio", "phys", "va"):
    mine = [r for r in rows if r["impl"] == "ubdma " + b]
    assert [r["name"] for r in mine] == names, (b, [r["name"] for r in mine])
    for r in mine:
        assert ("skipped" in r) != ("median" in r), r
        if "median" in r:
            assert 0 < r["median"] <= r["p99"] <= r["p99_99"] <= r["max"], r
            assert r["iops"] > 0 and r["cpu_ns_per_op"] > 0 and r["hist"], r
vfio = [r for r in rows if r["impl"] == "ubdma vfio"]
assert all("no device given" in r["skipped"] for r in vfio), vfio[0]
assert all("median" in r for r in rows if r["impl"] == "ubdma va"), "va always opens"
html = open(os.path.join(sys.argv[2], "report.html")).read()
for n in names:
    assert ">%s<" % n in html, n
csv = open(os.path.join(sys.argv[2], "results.csv")).read().splitlines()
assert csv[0].startswith("name,impl,target,unit,iops") and len(csv) == 1 + len(rows), csv[:2]
PY
if command -v gnuplot >/dev/null; then
  check "bench iommu drew every workload as PNG and SVG" sh -c 'for w in iommu-map-4k iommu-unmap-4k iommu-map-2m iommu-unmap-2m translate busdma-load-4k bounce-4k; do test -s "$0/hist-$w.png" -a -s "$0/hist-$w.svg" || exit 1; done' "$tmp/iommu"
fi
"$U" bench iommu --time 0.2 --quiet --csv --out "$tmp/iommu2" >"$tmp/out" 2>"$tmp/err"
check "bench iommu --csv prints the CSV" grep -q '^translate,ubdma va,' "$tmp/out"
"$U" bench iommu --time 0.2 --quiet --out "$tmp/iommu3" >"$tmp/out" 2>"$tmp/err"
check "bench iommu prints the table and the report's path" grep -q "report: $tmp/iommu3/report.html" "$tmp/out"

echo "1..$n"
[ $failed -eq 0 ]
