#!/usr/bin/env python3
"""nvme_report.py - the bench/nvme table, --json, --csv and latency plot from a guest console log.

Reads the "NVBENCH {json}" lines of bench_nvme and the fio JSON between "FIOBENCH-BEGIN name impl
round=R window_s=S busy_s=B" and "FIOBENCH-END" of bench/nvme-guest.sh (fio with the ubdma_nvme
engine, impls ubdma-fio and ubdma-fio-irq, and with io_uring on the kernel driver, the same jobs).  For every row: IOPS,
MiB/s, IOPS per guest CPU-second (busy guest CPU of all CPUs over the measured window) and total
latency percentiles (submission to completion) in microseconds, each the median over the rounds
(histograms are summed).  Ratios are ubdma over the best kernel configuration (fio io_uring, with
or without hipri) of the same workload, of the medians, with the spread of the per-round ratios,
twice: bench_nvme (the driver's own loop) and fio's ubdma_nvme engine (the same fio job as the
kernel's); device and CPU are emulated, so only ratios mean anything.

usage: nvme_report.py [--format table|json|csv] [--out DIR] CONSOLE_LOG
Writes DIR/nvme-bench.json, DIR/nvme-bench.csv, DIR/hist/*.dat and, with gnuplot,
DIR/nvme-latency.png and DIR/nvme-latency.svg.
"""
import argparse
import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys

WORKLOADS = ["randread_qd1", "randread_qd8", "randread_qd32", "randwrite_qd1", "randwrite_qd32",
             "randread_qd32_jobs2"]
IMPLS = ["ubdma", "ubdma-irq", "ubdma-hybrid", "ubdma-fio", "ubdma-fio-irq", "ubdma-fio-hybrid", "fio-io_uring",
         "fio-io_uring-poll"]
FIO_IMPLS = ["fio-io_uring", "fio-io_uring-poll"]  # the kernel's configurations
UBDMA_FIO_IMPLS = ["ubdma-fio", "ubdma-fio-irq", "ubdma-fio-hybrid"]
BENCH_NVME_WORKLOADS = WORKLOADS  # bench_nvme's _jobs rows: one thread a job, one queue pair each
GOAL = 2.0  # IOPS per guest CPU-second over the best kernel configuration (issue 18)
BIN = 1.12201845  # 20 log bins a decade, as bench_nvme


def parse(path):
    runs = {}  # (name, impl) -> one row per round
    text = open(path, errors="replace").read()
    for m in re.finditer(r"NVBENCH (\{.*\})", text):
        r = json.loads(m.group(1))
        runs.setdefault((r["name"], r["impl"]), []).append(r)
    for m in re.finditer(r"FIOBENCH-BEGIN (\S+) (\S+) (?:round=(\d+) )?window_s=([\d.]+) busy_s=([\d.]+)\n(.*?)FIOBENCH-END",
                         text, re.S):
        name, impl, window, busy, body = m.group(1), m.group(2), float(m.group(4)), float(m.group(5)), m.group(6)
        rnd = int(m.group(3) or 1)
        start = body.find("{")
        if start < 0:
            continue
        try:
            doc, _ = json.JSONDecoder().raw_decode(body[start:])
        except ValueError as e:
            print(f"nvme_report: fio output of {name} {impl} is not JSON: {e}", file=sys.stderr)
            continue
        job = doc["jobs"][0]
        d = job["read"] if "randread" in name else job["write"]
        lat = d.get("lat_ns") or {}
        if "percentile" not in lat:
            lat = d.get("clat_ns") or {}
        pc = lat.get("percentile", {})
        getp = lambda p: next((v / 1000.0 for k, v in pc.items() if abs(float(k) - p) < 1e-6), None)
        bins = lat.get("bins") or (d.get("clat_ns") or {}).get("bins") or {}
        hist = rebin({int(k) / 1000.0: v for k, v in bins.items()})
        iops = d["iops"]
        # as bench_nvme does for itself: the guest's busy time is at least what fio's own thread used
        # (its rusage, a rate over the job), should the idle clock and the window disagree
        busy = max(busy, (job.get("usr_cpu", 0) + job.get("sys_cpu", 0)) / 100.0 * window)
        # the polled engine's share of its thread's time in polls that found nothing (waiting)
        idle = re.search(r"ubdma_nvme: polled idle share ([\d.]+)", body)
        idle = float(idle.group(1)) if idle else None
        runs.setdefault((name, impl), []).append({
            "name": name, "impl": impl, "round": rnd, "unit": "IOPS", "qd": int(re.search(r"_qd(\d+)", name).group(1)),
            "ios": d.get("total_ios"), "iops": iops, "mib_s": d["bw_bytes"] / 1048576.0,
            "busy_s": busy, "window_s": window,
            "cpu_s": (job.get("usr_cpu", 0) + job.get("sys_cpu", 0)) / 100.0 * job.get("job_runtime", 0) / 1000.0,
            "iops_per_cpu": iops * window / busy if busy > 0 else None,
            "work_ns_per_io": busy * (1 - idle) / (iops * window) * 1e9 if idle is not None and iops > 0 else None,
            "lat_us": {"p50": getp(50), "p99": getp(99), "p99.9": getp(99.9), "p99.99": getp(99.99),
                       "mean": lat.get("mean", 0) / 1000.0, "max": lat.get("max", 0) / 1000.0},
            "hist": hist,
        })
    return runs


def median(v):
    v = sorted(x for x in v if x is not None)
    if not v:
        return None
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2.0


def aggregate(runs):
    """One row per (name, impl): medians over the rounds, histograms summed."""
    rows = {}
    for key, rs in runs.items():
        r = dict(rs[0])
        for f in ("iops", "mib_s", "iops_per_cpu", "busy_s", "cpu_s", "work_ns_per_io"):
            r[f] = median([x.get(f) for x in rs])
        r["lat_us"] = {p: median([x["lat_us"].get(p) for x in rs]) for p in rs[0]["lat_us"]}
        h = {}
        for x in rs:
            for ub, n in x.get("hist") or []:
                h[ub] = h.get(ub, 0) + n
        r["hist"] = [[ub, h[ub]] for ub in sorted(h)]
        r["rounds"] = len(rs)
        r["per_round"] = {x.get("round", 1): x.get("iops_per_cpu") for x in rs}
        rows[key] = r
    return rows


def round_ratios(rows, name, impl):
    """ubdma's IOPS per CPU-s over the best fio configuration's, round by round."""
    u = rows.get((name, impl))
    if not u:
        return []
    out = []
    for rnd, v in sorted(u["per_round"].items()):
        f = [rows[(name, i)]["per_round"].get(rnd) for i in FIO_IMPLS if (name, i) in rows]
        f = [x for x in f if x]
        if v and f:
            out.append(v / max(f))
    return out


def spread(rr):
    return f" (rounds: {min(rr):.2f}x-{max(rr):.2f}x)" if len(rr) > 1 else ""


def rebin(us_counts):
    """fio's bins (value in us -> count) into bench_nvme's log bins [[upper bound, count]]."""
    out = {}
    for v, n in us_counts.items():
        k = 0 if v <= 1 else math.ceil(math.log(v) / math.log(BIN) - 1e-9)
        out[k] = out.get(k, 0) + n
    return [[round(BIN ** k, 2), n] for k, n in sorted(out.items())]


def best_fio(rows, name):
    c = [rows[(name, i)] for i in FIO_IMPLS if (name, i) in rows and rows[(name, i)].get("iops_per_cpu")]
    return max(c, key=lambda r: r["iops_per_cpu"]) if c else None


def flat(rows):
    out = []
    for name in WORKLOADS:
        for impl in IMPLS:
            r = rows.get((name, impl))
            if not r:
                continue
            l = r["lat_us"]
            out.append({"name": name, "impl": impl, "unit": "us", "rounds": r["rounds"], "iops": round(r["iops"], 1),
                        "mib_s": round(r["mib_s"], 2), "iops_per_cpu": round(r["iops_per_cpu"] or 0, 1),
                        "busy_s": r.get("busy_s"), "median": l["p50"], "p99": l["p99"],
                        "p99.9": l["p99.9"], "p99.99": l["p99.99"]})
            if r.get("work_ns_per_io") is not None and r["work_ns_per_io"] >= 0:
                out[-1]["work_ns_per_io"] = round(r["work_ns_per_io"], 1)
    return out


def parse_poll(path):
    """bench_nvme's poll_idle lines ("NVPOLL {json}"), in order."""
    text = open(path, errors="replace").read()
    return [json.loads(m.group(1)) for m in re.finditer(r"NVPOLL (\{.*\})", text)]


def fmt(v, w, p=1):
    return f"{'-':>{w}}" if v is None else f"{v:>{w}.{p}f}"


def table(rows):
    s = io.StringIO()
    n = max((r["rounds"] for r in rows.values()), default=1)
    s.write("4 KiB random I/O, one core (CPU 0; _jobs2: two job threads, CPUs 0 and 1), same guest and boot;\n"
            "guest time: the host's clock, or under -icount (bench/nvme.sh -I) the guest's instructions;\n"
            "latency submission -> completion, us.\n")
    s.write(f"Each figure is the median of {n} round(s); ubdma and the kernel alternate within every round.\n")
    s.write("QEMU TCG emulates the CPU and the NVMe: read the ratios, not the absolute numbers.\n\n")
    hdr = f"{'workload':<20}{'impl':<19}{'IOPS':>9}{'MiB/s':>8}{'IOPS/CPU-s':>11}{'p50':>9}{'p99':>9}{'p99.9':>9}{'p99.99':>9}{'x best kernel/CPU':>15}\n"
    s.write(hdr)
    s.write("-" * (len(hdr) - 1) + "\n")
    for name in WORKLOADS:
        bf = best_fio(rows, name)
        for impl in IMPLS:
            r = rows.get((name, impl))
            if not r:
                continue
            l = r["lat_us"]
            ratio = (r["iops_per_cpu"] / bf["iops_per_cpu"]) if (bf and r.get("iops_per_cpu") and impl.startswith("ubdma")) else None
            s.write(f"{name:<20}{impl:<19}{fmt(r['iops'], 9, 0)}{fmt(r['mib_s'], 8, 1)}{fmt(r['iops_per_cpu'], 11, 0)}"
                    f"{fmt(l['p50'], 9)}{fmt(l['p99'], 9)}{fmt(l['p99.9'], 9)}{fmt(l['p99.99'], 9)}"
                    f"{(f'{ratio:>14.2f}x') if ratio else '':>15}\n")
        s.write("\n")
    s.write(f"Goals: IOPS per guest CPU-second >= {GOAL:g}x the best kernel configuration at QD1 and QD32, for bench_nvme\n"
            "polled and through fio (the ubdma_nvme engine, the same fio job as the kernel's); p99 at QD1 <= the kernel's.\n")
    s.write("Each side is judged by its best configuration: the kernel's better of io_uring and io_uring + hipri, the\n"
            "driver's better of polled and MSI-X completions; the polled figure is also given on its own.\n")
    for title, impls, polled in (("bench_nvme (the driver's own loop)", ("ubdma", "ubdma-irq", "ubdma-hybrid"), "ubdma"),
                                 ("fio, ubdma_nvme engine vs io_uring (same job file)", tuple(UBDMA_FIO_IMPLS), "ubdma-fio")):
        s.write(f"{title}:\n")
        for name in WORKLOADS:
            bf = best_fio(rows, name)
            us = [rows[(name, i)] for i in impls if (name, i) in rows and rows[(name, i)].get("iops_per_cpu")]
            if not bf or not us:
                continue
            u = max(us, key=lambda r: r["iops_per_cpu"])
            ratio = u["iops_per_cpu"] / bf["iops_per_cpu"]
            line = (f"  {name:<19} {u['impl']} / {bf['impl']} IOPS per CPU-s = {ratio:.2f}x"
                    + spread(round_ratios(rows, name, u["impl"])))
            p = rows.get((name, polled))
            if name.endswith("_qd1") or name.endswith("_qd32"):
                pr = p["iops_per_cpu"] / bf["iops_per_cpu"] if p and p.get("iops_per_cpu") else 0
                line += f" [goal {GOAL:g}x polled: " + ("met" if pr >= GOAL else "NOT met") + "]"
            if p and p is not u and p.get("iops_per_cpu"):
                line += f"; polled {p['iops_per_cpu'] / bf['iops_per_cpu']:.2f}x" + spread(round_ratios(rows, name, polled))
            if name.endswith("_qd1"):
                kp = [rows[(name, i)]["lat_us"]["p99"] for i in FIO_IMPLS if (name, i) in rows and rows[(name, i)]["lat_us"]["p99"]]
                if kp and u["lat_us"]["p99"]:
                    k = min(kp)
                    line += (f"; p99 {u['lat_us']['p99']:.1f} us vs kernel best {k:.1f} us = {u['lat_us']['p99'] / k:.2f}x"
                             + " [goal <= 1: " + ("met" if u["lat_us"]["p99"] <= k else "NOT met") + "]")
            s.write(line + "\n")
    work = [(n, i, rows[(n, i)]) for n in WORKLOADS for i in ("ubdma", "ubdma-fio") if (n, i) in rows
            and (rows[(n, i)].get("work_ns_per_io") or -1) > 0]
    if work:
        s.write("Polled, the work per I/O: guest CPU time less the polls that found the queue empty (waiting for the\n"
                "device; as bench/nic.sh counts busy cycles), against the kernel's best configuration's guest CPU per\n"
                "I/O (1 / IOPS per CPU-s, where a wait asleep costs nothing):\n")
        for name, impl, u in work:
            bf = best_fio(rows, name)
            k = 1e9 / bf["iops_per_cpu"] if bf else None
            s.write(f"  {name:<19} {impl:<10} {u['work_ns_per_io']:9.0f} ns" +
                    (f" vs {bf['impl']} {k:9.0f} ns: {k / u['work_ns_per_io']:.2f}x the IOPS per CPU-s" if k else "") + "\n")
    return s.getvalue()


def plot(rows, out):
    hd = os.path.join(out, "hist")
    os.makedirs(hd, exist_ok=True)
    panels = []
    for name in WORKLOADS:
        series = []
        for impl in IMPLS:
            r = rows.get((name, impl))
            if not r or not r.get("hist"):
                continue
            total = sum(n for _, n in r["hist"]) or 1
            f = os.path.join(hd, f"{name}_{impl}.dat")
            with open(f, "w") as o:
                o.write(f"# {name} {impl}: upper bound of the latency bin (us), fraction of I/Os\n")
                for ub, n in r["hist"]:
                    o.write(f"{ub} {n / total:.6f}\n")
            series.append((impl, f))
        if series:
            panels.append((name, series))
    if not panels or not shutil.which("gnuplot"):
        return None
    made = []
    for term, ext in (("pngcairo size 1400,1600 font 'sans,10'", "png"), ("svg size 1400,1600 dynamic", "svg")):
        path = os.path.join(out, f"nvme-latency.{ext}")
        g = [f"set terminal {term}", "set termoption noenhanced", f"set output '{path}'",
             f"set multiplot layout {len(panels)},1 title 'bench/nvme: 4 KiB latency histograms (QEMU TCG guest; compare shapes and ratios)'",
             "set logscale x", "set xlabel 'latency, us (log)'", "set ylabel 'fraction of I/Os'", "set grid",
             "set key top right", "set style data histeps"]
        for name, series in panels:
            g.append(f"set title '{name}'")
            g.append("plot " + ", ".join(f"'{f}' using 1:2 title '{impl}' lw 2" for impl, f in series))
        g.append("unset multiplot")
        r = subprocess.run(["gnuplot"], input="\n".join(g) + "\n", text=True, capture_output=True)
        if r.returncode == 0:
            made.append(path)
        else:
            print(f"nvme_report: gnuplot ({ext}) failed: {r.stderr.strip()}", file=sys.stderr)
    return made


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--format", choices=["table", "json", "csv"], default="table")
    ap.add_argument("--out", default=".")
    ap.add_argument("console")
    a = ap.parse_args()
    rows = aggregate(parse(a.console))
    polls = parse_poll(a.console)
    if not rows:
        print(f"nvme_report: no benchmark rows in {a.console}", file=sys.stderr)
        return 1
    fl = flat(rows)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "nvme-bench.json"), "w") as o:
        json.dump(fl, o, indent=1)
    with open(os.path.join(a.out, "nvme-bench-full.json"), "w") as o:
        json.dump(list(rows.values()), o, indent=1)
    cols = ["name", "impl", "unit", "rounds", "iops", "mib_s", "iops_per_cpu", "busy_s", "median", "p99", "p99.9", "p99.99",
            "work_ns_per_io"]
    with open(os.path.join(a.out, "nvme-bench.csv"), "w", newline="") as o:
        w = csv.DictWriter(o, fieldnames=cols, restval="")
        w.writeheader()
        w.writerows(fl)
    with open(os.path.join(a.out, "nvme-bench.txt"), "w") as o:
        o.write(table(rows))
    made = plot(rows, a.out)
    if a.format == "json":
        json.dump(fl, sys.stdout, indent=1)
        print()
    elif a.format == "csv":
        sys.stdout.write(open(os.path.join(a.out, "nvme-bench.csv")).read())
    else:
        sys.stdout.write(table(rows))
        for p in polls:
            sys.stdout.write(f"poll_idle (round {p['round']}): an idle pair's poll {p['median']:.0f} ns median, {p['mean']:.1f} ns mean; "
                             f"the periodic check adds {p['check_per_poll']:.2f} ns a poll ({100 * p['check_share']:.2f}%; "
                             f"the polls that ran it {p['check_calls_mean']:.0f} ns); CLOCK_MONOTONIC {p['clock_monotonic']:.0f} ns, "
                             f"_COARSE {p['clock_monotonic_coarse']:.0f} ns, an empty eventfd read {p['eventfd_read']:.0f} ns\n")
    if made:
        print("plot: " + ", ".join(made), file=sys.stderr)
    # the workloads run (bench/nvme.sh -w, or -icount's one CPU, leaves some out)
    ran = {n for n, _ in rows}
    missing = [f"{n}/{i}" for n in WORKLOADS if n in ran for i in ["ubdma-fio"] + FIO_IMPLS if (n, i) not in rows]
    missing += [f"{n}/ubdma" for n in BENCH_NVME_WORKLOADS if n in ran and (n, "ubdma") not in rows]
    if missing:
        print("nvme_report: rows missing: " + " ".join(missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
