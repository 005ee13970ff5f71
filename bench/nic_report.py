#!/usr/bin/env python3
"""nic_report.py CONSOLE JSON(0|1) OUT.json ICOUNT - the report of bench/nic.sh.

Reads the guest's UBDMA-BENCH lines (bench/nic_bench.c), writes OUT.json (the rows
[{name, impl, unit, median, p99, pps, cpu_ns_per_pkt, ...}]) and prints it (JSON 1) or a table.
The two peers of a repetition run one after the other, so each ubdma row also carries the ratio
ubdma / testpmd of every repetition, paired, and their median, minimum and maximum: the median of
the paired ratios is the row's figure (docs/virtio-net.md, "Benchmark").
"""
import json
import statistics
import sys

console, as_json, out_path = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
clock = sys.argv[4] if len(sys.argv) > 4 else "off"
rows = {}
for line in open(console, errors="replace"):
    i = line.find("UBDMA-BENCH ")
    if i < 0:
        continue
    kv = dict(w.split("=", 1) for w in line[i + 12:].split() if "=" in w)
    if kv.get("windows", "0") == "0":
        continue
    rows.setdefault((kv["name"], kv["impl"]), []).append(kv)
names = ["tx64", "tx1514", "rx64", "rx1514"]
out = []
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
                    "cpu_ns_per_pkt_p99": med("cpu_p99"), "reps": len(rs), "icount": clock})
        busy = [float(r["busy_cyc_per_pkt"]) for r in rs if float(r.get("busy_cyc_per_pkt", -1)) > 0]
        out[-1]["busy_cycles_per_pkt"] = statistics.median(busy) if busy else None


def paired(name, key):
    """ubdma / testpmd of each repetition, in the order they ran."""
    return [float(a[key]) / float(b[key]) for a, b in
            zip(rows.get((name, "ubdma"), []), rows.get((name, "testpmd"), []))
            if float(a.get(key, -1)) > 0 and float(b.get(key, -1)) > 0]


for r in out:
    if r["impl"] != "ubdma":
        continue
    each = paired(r["name"], "pps")
    if each:
        r["ratio_reps"] = [round(x, 3) for x in each]
        r["ratio_median"] = round(statistics.median(each), 3)
        r["ratio_min"], r["ratio_max"] = round(min(each), 3), round(max(each), 3)
        cpu = paired(r["name"], "cpu_ns_per_pkt")
        r["cpu_ratio_median"] = round(statistics.median(cpu), 3)
    busy = paired(r["name"], "busy_cyc_per_pkt")
    if busy:
        r["busy_ratio_reps"] = [round(x, 3) for x in busy]
        r["busy_ratio_median"] = round(statistics.median(busy), 3)
json.dump(out, open(out_path, "w"), indent=1)
if as_json:
    print(json.dumps(out, indent=1))
    sys.exit()
get = {(r["name"], r["impl"]): r for r in out}
f = lambda v, d=0: "-" if v is None else f"{v:,.{d}f}"
print(f"{'row':<8}{'ubdma pps':>11}{'testpmd pps':>12}{'ratio':>7}  {'ubdma ns/pkt':>12}{'testpmd ns/pkt':>15}"
      f"  {'ubdma cyc/pkt':>13}{'testpmd cyc/pkt':>16}{'ratio':>7}   pps ratios | cycle ratios of each repetition")
for n in names:
    u, t = get[(n, "ubdma")], get[(n, "testpmd")]
    ratio, bratio = u.get("ratio_median"), u.get("busy_ratio_median")
    print(f"{n:<8}{f(u['pps']):>11}{f(t['pps']):>12}{f(ratio, 2) + ('x' if ratio else ''):>7}  "
          f"{f(u['cpu_ns_per_pkt']):>12}{f(t['cpu_ns_per_pkt']):>15}  "
          f"{f(u.get('busy_cycles_per_pkt')):>13}{f(t.get('busy_cycles_per_pkt')):>16}"
          f"{f(bratio, 2) + ('x' if bratio else ''):>7}   " +
          " ".join(f"{x:.2f}" for x in u.get("ratio_reps", [])) + " | " +
          " ".join(f"{x:.2f}" for x in u.get("busy_ratio_reps", [])))
if clock == "off":
    print("(guest under QEMU TCG on the host's clock: rates are the emulator's and move with the host's load)")
else:
    print(f"(guest under QEMU TCG with -icount {clock}: guest time counts guest instructions; "
          "ns/pkt = guest CPU time per packet; cyc/pkt = busy TSC cycles per packet as testpmd's "
          "--record-core-cycles counts them, ubdma / testpmd <= 1 is cheaper)")
