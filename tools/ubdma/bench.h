/*
 * bench.h - what the files of `ubdma bench nvme|nic|iommu` share: the latency histogram every
 * workload records into (bench_stats.c), the row a workload or a peer becomes and the report
 * written from the rows (bench_report.c: text table, JSON, CSV, HTML page with gnuplot plots),
 * and the device guard (bench_dev.c): the checks that refuse a device in use, the binding to
 * vfio-pci and the return to the driver the device had, also on SIGINT, SIGTERM and crashes.
 * Each kind of benchmark is a file of its own (bench_nvme.c, bench_nic.c, bench_iommu.c),
 * reached from the dispatcher in bench.c.
 */
#ifndef UBDMA_TOOL_BENCH_H
#define UBDMA_TOOL_BENCH_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <ubdma/ubdma.h>

/* ------------------------------------------------------------ bench_stats.c */

/*
 * A log-linear histogram of nanosecond values: exact below 64 ns, then 32 buckets an octave
 * (about 3 % wide) up to 2^40 ns.  Recording is a few instructions and allocates nothing, so a
 * workload records every operation however long it runs, and percentiles come from the buckets.
 */
#define LH_SUB 32
#define LH_BUCKETS (38 * LH_SUB)
struct lhist {
	uint64_t n, sum, max;
	uint64_t c[LH_BUCKETS];
};

void lh_add(struct lhist *h, uint64_t ns);
/* The value below which fraction q of the samples lie (the bucket's middle, at most max). */
double lh_pct(const struct lhist *h, double q);
double lh_mean(const struct lhist *h);

/* Nanoseconds of CLOCK_MONOTONIC (vDSO: no system call) and of the calling thread's CPU time. */
uint64_t now_ns(void);
uint64_t thread_cpu_ns(void);

/* ----------------------------------------------------------- bench_report.c */

#define NPCT 5
extern const double bench_pcts[NPCT];	    /* 0.50 0.90 0.99 0.999 0.9999 */
extern const char *const bench_pct_names[NPCT]; /* "p50" ... "p99.99" */

/* One part of the time of an I/O (breakdown): ubdma's load, translation ... or the device's. */
struct bench_part {
	char name[64];
	char side[8]; /* "ubdma" or "device" */
	double median, p99;
};

/*
 * One workload run by one implementation (ubdma, or the kernel driver through fio, or testpmd),
 * or a peer that was skipped (@skipped says why) or a run that failed (@error says what).
 */
struct bench_row {
	char name[48]; /* the workload: "randread-4k-qd1" */
	char impl[32]; /* "ubdma", "kernel (fio io_uring)", "testpmd" */
	char target[48]; /* "0000:00:02.0 ns 1", "vfio" */
	char unit[8];	 /* "ns" */
	char skipped[200];
	char error[200];
	double secs, ops, bytes, cpu_s;
	double iops, mib_s, pps, cpu_ns_per_op, iops_per_cpu;
	double pct[NPCT], max, mean;
	int have_lat;
	/* the histogram, [value, count] pairs, coarsened for the plot */
	int nhist;
	double hist_v[LH_BUCKETS / 4];
	double hist_c[LH_BUCKETS / 4];
	int nparts;
	struct bench_part parts[10];
};

struct bench_report {
	const char *kind;   /* "nvme", "nic", "iommu" */
	const char *device; /* what was measured, one line */
	const char *outdir;
	int csv;
	int nrows, cap;
	struct bench_row *rows;
	char notes[8][256]; /* lines for the report (a peer skipped, a device given back ...) */
	int nnotes;
};

/* A new row of @r (zeroed; NULL when out of memory), named; its latency taken from @h (may be NULL). */
struct bench_row *report_row(struct bench_report *r, const char *name, const char *impl);
void row_from_hist(struct bench_row *row, const struct lhist *h);
void row_rates(struct bench_row *row, double secs, double ops, double bytes, double cpu_s);
void row_part(struct bench_row *row, const char *side, const char *name, const struct lhist *h);
__attribute__((format(printf, 2, 3))) void report_note(struct bench_report *r, const char *fmt, ...);
/*
 * Everything into r->outdir (results.json, results.csv, results.txt, report.html, a plot per
 * workload as .gp/.dat/.png/.svg) and onto stdout (the table, --json or --csv).  0 or EX_FAIL.
 */
int report_write(struct bench_report *r);
void report_free(struct bench_report *r);

/* Progress on stderr: "[3/7] randread-4k-qd32 (ubdma) 2 s left", rewritten in place on a tty. */
void progress(int i, int n, const char *name, const char *impl, double left_s);
/* In a workload's loop: on a terminal, the same line with the time left, once a second. */
void progress_tick(void);
void progress_done(void);
/* --quiet: no progress lines */
extern int progress_quiet;

/* -------------------------------------------------------------- bench_dev.c */

/* SIGINT / SIGTERM / SIGHUP received (its number): workloads stop at their next operation. */
extern volatile sig_atomic_t bench_stop;

struct bench_dev {
	char bdf[16];
	unsigned vendor, device, class_code;
	char orig_drv[64]; /* the driver the device had when we found it ("" none) */
	int bound;	   /* we moved it to vfio-pci */
	/* NVMe on the nvme driver: its namespaces' block devices ("nvme0n1") */
	char blk[16][32];
	int nblk;
	char chr[16][32]; /* its character devices (nvme0, ng0n1) */
	int nchr;
	uint64_t ns_lbas; /* first namespace, from sysfs when on nvme (0: unknown) */
	unsigned ns_lba_size;
	char netdev[32]; /* NIC on its kernel driver */
};

/* Device classes (sysfs "class" >> 8 for nvme: 0x0108 with prog-if 02). */
#define CLASS_NVME 0x010802
#define CLASS_ETHERNET 0x0200

/*
 * Find the device (exit 2 for an unknown address or a device of another class than @want, given
 * as the class code, or with @want_mask applied), and note its driver and kernel-side devices.
 */
void dev_find(const char *arg, unsigned want, unsigned want_mask, const char *what, struct bench_dev *d);
/*
 * The NVMe checks: every namespace and partition is free (not mounted, no swap, no filesystem,
 * partition table, LVM or MD signature, no holders, not open by another process).  Returns 0, or
 * EX_FAIL after a message naming everything found.
 */
int dev_check_nvme(const struct bench_dev *d);
/* The NIC checks: no IPv4 or global IPv6 address and no default route on its interface. */
int dev_check_nic(const struct bench_dev *d, int force);
/*
 * A namespace read through ubdma (a device already on vfio-pci, before --write-range writes):
 * @fd, a sparse file of the namespace's size, holds its first and last MiB at their offsets;
 * the same libblkid probe.  0, or EX_FAIL after a message naming the signature.
 */
int dev_check_image(int fd, const char *what, const char *bdf);
/* Nothing else has the device's VFIO group open (a device already on vfio-pci). */
int dev_check_vfio_free(const struct bench_dev *d);
/* The signal and crash handlers and the exit hook, before anything runs (peers included). */
void bench_guard(void);
/*
 * Install the guard (signals, crash handlers, atexit) and bind the device to vfio-pci when it is
 * not there.  0 or EX_FAIL (the device is left where it was).
 */
int dev_take(struct bench_dev *d);
/* Give the device back to its original driver (idempotent).  0 or EX_FAIL with a message. */
int dev_give_back(struct bench_dev *d);

/* Run @argv with stdout into @out (NULL: /dev/null) and stderr into @err; killed when bench_stop
 * is set.  Its exit status, 128 + signal, or -1 when it could not run. */
int bench_spawn(char *const argv[], const char *out, const char *err);
/*
 * Run @argv (stdout into @out), wait until a line of its output holds @ready, let it run @secs
 * more, then SIGINT (SIGKILL 20 s later).  Its exit status; -2 when @ready never came (within
 * 120 s); -1 when it could not run.
 */
int bench_spawn_until(char *const argv[], const char *out, const char *err, const char *ready, double secs);
/* @prog is on PATH. */
int have_prog(const char *prog);

/* -------------------------------------------------------- the three kinds */

int bench_nvme(int argc, char **argv);
int bench_nic(int argc, char **argv);
int bench_iommu(int argc, char **argv);

/*
 * bench_iommu.c: the map/unmap (ubdma_umem_lock/unlock), translation (ubdma_vtoiova), load
 * and bounce rows of one context, for @secs seconds each; also run by `bench nvme` on its
 * context.  @first, @total: numbering for the progress line.  0, or an errno (a row says it).
 */
struct iommu_parts {
	struct lhist xlate, load, copy; /* for the breakdown of `bench nvme` */
};
int iommu_rows(struct bench_report *r, ubdma_ctx_t *ctx, const char *target, double secs, int first, int total,
	       struct iommu_parts *parts);
#define IOMMU_NROWS 7

/* Common options: --time SECS, --out DIR, --csv, --quiet; consumed from argv (others kept). */
struct bench_opts {
	double secs;
	const char *out;
	int csv, force;
};
/* mkdir -p; 0 or -1 with errno. */
int mkdir_p(const char *dir);
/* Parse the common options; the rest in order in @rest (argv[0] kept).  Returns the count. */
int bench_common_opts(int argc, char **argv, struct bench_opts *o, char **rest, const char *kind);

#endif /* UBDMA_TOOL_BENCH_H */
