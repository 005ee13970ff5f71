/*
 * busdma.c - benchmark of the bus_dma hot paths: load + unload of a registered 4 KiB, 64 KiB and
 * 1 MiB buffer (4 KiB and 2 MiB backing), load_iov of 16 pieces, sync with and without bounce
 * pages, on the va and phys backends; and beside them, in the same run, the same work done by
 * hand with DPDK 22.11: rte_mem_virt2iova() per 4 KiB page of rte_malloc'd memory and a segment
 * list built (coalesced, maxsegsz-split) in a loop, a memcpy and a fence for a bounced sync.
 *
 * Timing: a sample is a batch of BATCH calls timed with clock_gettime(CLOCK_MONOTONIC) (vDSO);
 * median and p99 are over the samples' per-call times (so p99 is that of a batch's average).
 * Output: a table (default), --json (one JSON array of objects: name, impl, unit, median, p99,
 * backend, backing, note), or --csv.
 *
 * The tag of every row: alignment 1, no boundary, no window, maxsize 2 MiB, 512 segments, maxsegsz
 * 64 KiB (a typical NIC / NVMe limit); the DPDK loop applies the same maxsegsz.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <ubdma/ubdma.h>
#include "bench_time.h"

#ifdef UBDMA_BENCH_DPDK
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_malloc.h>
#include <rte_memory.h>
#endif

#define BATCH 64
#define SAMPLES 3000
#define HUGE (2UL << 20)
#define MAXSEGSZ (64UL * 1024)

struct row {
	char name[32], impl[16], backend[16], backing[8], note[200];
	double median, p99;
	int skipped;
};

static struct row rows[64];
static int nrows;

static struct row *row_add(const char *name, const char *impl, const char *backend, const char *backing)
{
	struct row *r = &rows[nrows++];
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	snprintf(r->impl, sizeof(r->impl), "%s", impl);
	snprintf(r->backend, sizeof(r->backend), "%s", backend);
	snprintf(r->backing, sizeof(r->backing), "%s", backing);
	return r;
}

static double samples[SAMPLES];

static void finish(struct row *r)
{
	qsort(samples, SAMPLES, sizeof(double), bench_cmp_double);
	r->median = samples[SAMPLES / 2];
	r->p99 = samples[SAMPLES * 99 / 100];
}

/* Time BODY, BATCH times per sample, SAMPLES samples (after a warm-up). */
#define TIME(r, BODY)                                                                      \
	do {                                                                               \
		for (int b_ = 0; b_ < 1000; b_++) {                                        \
			BODY;                                                              \
		}                                                                          \
		for (int s_ = 0; s_ < SAMPLES; s_++) {                                     \
			double t0_ = bench_now_ns();                                             \
			for (int b_ = 0; b_ < BATCH; b_++) {                               \
				BODY;                                                      \
			}                                                                  \
			samples[s_] = (bench_now_ns() - t0_) / BATCH;                            \
		}                                                                          \
		finish(r);                                                         \
	} while (0)

static volatile int sink;

static void cb_nop(void *arg, ubdma_seg_t *segs, int nseg, int error)
{
	(void)arg;
	(void)error;
	sink = nseg ? (int)segs[0].ds_len : 0;
}

/* ---------------------------------------------------------------- ubdma rows */

static void bench_ubdma(enum ubdma_backend be)
{
	const char *bn = ubdma_backend_name(be);
	ubdma_ctx_t *ctx;
	ubdma_tag_t *t;
	ubdma_map_t *m;

	if (ubdma_ctx_open(be, &ctx)) {
		struct row *r = row_add("load_unload_4k", "ubdma", bn, "-");
		r->skipped = 1;
		snprintf(r->note, sizeof(r->note), "backend unavailable: %.140s", ubdma_last_error());
		return;
	}
	if (ubdma_tag_create(ubdma_ctx_tag(ctx), 1, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, HUGE, 512, MAXSEGSZ, 0, &t) ||
	    ubdma_map_create(t, 0, &m)) {
		fprintf(stderr, "bench_busdma: tag/map: %s\n", ubdma_last_error());
		exit(1);
	}
	for (int huge = 0; huge < 2; huge++) {
		const char *backing = huge ? "2m" : "4k";
		if (!huge && be == UBDMA_BACKEND_PHYS)
			continue; /* phys translates hugetlb memory only */
		size_t len = 2 * HUGE;
		char *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | (huge ? MAP_HUGETLB : 0),
				 -1, 0);
		ubdma_umem_t *u;
		if (buf == MAP_FAILED || ubdma_umem_lock(ctx, buf, len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u)) {
			struct row *r = row_add("load_unload_4k", "ubdma", bn, backing);
			r->skipped = 1;
			snprintf(r->note, sizeof(r->note), "no %s memory: %.120s", backing,
				 buf == MAP_FAILED ? strerror(errno) : ubdma_last_error());
			if (buf != MAP_FAILED)
				munmap(buf, len);
			continue;
		}
		static const struct { const char *name; size_t len; } sizes[] = {
			{ "load_unload_4k", 4096 }, { "load_unload_64k", 65536 }, { "load_unload_1m", 1 << 20 } };
		for (int i = 0; i < 3; i++) {
			struct row *r = row_add(sizes[i].name, "ubdma", bn, backing);
			TIME(r, {
				ubdma_map_load(t, m, buf, sizes[i].len, cb_nop, NULL, UBDMA_NOWAIT);
				ubdma_map_unload(t, m);
			});
		}
		struct iovec iov[16];
		for (int i = 0; i < 16; i++)
			iov[i] = (struct iovec){ buf + (size_t)i * 8192, 4096 };
		struct row *r = row_add("load_iov_16", "ubdma", bn, backing);
		TIME(r, {
			ubdma_map_load_iov(t, m, iov, 16, cb_nop, NULL, UBDMA_NOWAIT);
			ubdma_map_unload(t, m);
		});
		ubdma_map_load(t, m, buf, 4096, cb_nop, NULL, UBDMA_NOWAIT);
		r = row_add("sync_4k", "ubdma", bn, backing);
		snprintf(r->note, sizeof(r->note), "PREWRITE then POSTREAD, per call; nothing to copy");
		TIME(r, {
			ubdma_map_sync(t, m, (b_ & 1) ? UBDMA_SYNC_POSTREAD : UBDMA_SYNC_PREWRITE);
		});
		ubdma_map_unload(t, m);
		ubdma_umem_unlock(u);
		munmap(buf, len);
	}
	/* an unregistered 4 KiB page: bounced */
	char *ub = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(ub, 1, 4096);
	struct row *r = row_add("sync_bounce_4k", "ubdma", bn, "4k");
	snprintf(r->note, sizeof(r->note), "PREWRITE then POSTREAD, per call; 4 KiB copied each");
	if (ubdma_map_load(t, m, ub, 4096, cb_nop, NULL, UBDMA_NOWAIT)) {
		r->skipped = 1;
		snprintf(r->note, sizeof(r->note), "no bounce pages: %.140s", ubdma_last_error());
	} else {
		TIME(r, { ubdma_map_sync(t, m, (b_ & 1) ? UBDMA_SYNC_POSTREAD : UBDMA_SYNC_PREWRITE); });
		ubdma_map_unload(t, m);
	}
	munmap(ub, 4096);
	ubdma_map_destroy(t, m);
	ubdma_tag_destroy(t);
	ubdma_ctx_close(ctx);
}

/* ---------------------------------------------------------------- DPDK by hand */

#ifdef UBDMA_BENCH_DPDK
struct seg {
	uint64_t addr, len;
};
static struct seg segs[512];

/* What a DPDK application writes itself: translate each page, coalesce, split at maxsegsz. */
static int __attribute__((noinline)) dpdk_load(const void *buf, size_t len)
{
	uintptr_t va = (uintptr_t)buf, end = va + len;
	int n = 0;
	while (va < end) {
		size_t chunk = 4096 - (va & 4095);
		if (chunk > end - va)
			chunk = end - va;
		uint64_t iova = rte_mem_virt2iova((void *)va);
		if (iova == RTE_BAD_IOVA)
			return -1;
		while (chunk) {
			if (n && segs[n - 1].addr + segs[n - 1].len == iova && segs[n - 1].len < MAXSEGSZ) {
				size_t k = MAXSEGSZ - segs[n - 1].len;
				k = k < chunk ? k : chunk;
				segs[n - 1].len += k;
				iova += k;
				chunk -= k;
				va += k;
			} else {
				if (n == 512)
					return -1;
				size_t k = chunk < MAXSEGSZ ? chunk : MAXSEGSZ;
				segs[n++] = (struct seg){ iova, k };
				iova += k;
				chunk -= k;
				va += k;
			}
		}
	}
	sink = n;
	return n;
}

static void bench_dpdk(void)
{
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "--file-prefix=ubdma_busdma_%d", (int)getpid());
	/* IOVA as VA: in PA mode rte_mem_virt2iova() reads /proc/self/pagemap (a system call per
	 * page), which would compare a syscall loop with a table lookup */
	char *argv_huge[] = { "bench_busdma", "--no-pci", "-l", "0", "--in-memory", prefix, "-m", "16",
			      "--iova-mode=va", "--log-level=lib.eal:error", "--no-telemetry", NULL };
	char *argv_nohuge[] = { "bench_busdma", "--no-pci", "-l", "0", "--no-huge", "-m", "16", prefix,
				"--iova-mode=va", "--log-level=lib.eal:error", "--no-telemetry", NULL };
	const char *backing = "2m";
	if (rte_eal_init(11, argv_huge) < 0) {
		backing = "4k";
		if (rte_eal_init(11, argv_nohuge) < 0) {
			struct row *r = row_add("load_unload_4k", "dpdk-by-hand", "dpdk", "-");
			r->skipped = 1;
			snprintf(r->note, sizeof(r->note), "rte_eal_init failed: %s", rte_strerror(rte_errno));
			return;
		}
	}
	char backend[16];
	snprintf(backend, sizeof(backend), "dpdk-%s", rte_eal_iova_mode() == RTE_IOVA_PA ? "pa" : "va");
	char *buf = rte_malloc("bench_busdma", 2 * HUGE, 4096);
	char *bounce = rte_malloc("bench_busdma_bounce", 4096, 4096);
	if (!buf || !bounce) {
		struct row *r = row_add("load_unload_4k", "dpdk-by-hand", backend, backing);
		r->skipped = 1;
		snprintf(r->note, sizeof(r->note), "rte_malloc failed");
		return;
	}
	memset(buf, 0, 2 * HUGE);
	static const struct { const char *name; size_t len; } sizes[] = {
		{ "load_unload_4k", 4096 }, { "load_unload_64k", 65536 }, { "load_unload_1m", 1 << 20 } };
	for (int i = 0; i < 3; i++) {
		struct row *r = row_add(sizes[i].name, "dpdk-by-hand", backend, backing);
		snprintf(r->note, sizeof(r->note), "rte_mem_virt2iova per 4 KiB page, list built by hand; no unload");
		TIME(r, { dpdk_load(buf, sizes[i].len); });
	}
	struct row *r = row_add("load_iov_16", "dpdk-by-hand", backend, backing);
	TIME(r, {
		for (int p = 0; p < 16; p++)
			dpdk_load(buf + (size_t)p * 8192, 4096);
	});
	r = row_add("sync_4k", "dpdk-by-hand", backend, backing);
	snprintf(r->note, sizeof(r->note), "a fence (rte_wmb / rte_rmb) per call");
	TIME(r, {
		if (b_ & 1)
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
		else
			__atomic_thread_fence(__ATOMIC_RELEASE);
	});
	r = row_add("sync_bounce_4k", "dpdk-by-hand", backend, backing);
	snprintf(r->note, sizeof(r->note), "memcpy of 4 KiB and a fence per call");
	static char client[4096];
	TIME(r, {
		if (b_ & 1)
			memcpy(client, bounce, 4096);
		else
			memcpy(bounce, client, 4096);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	});
	rte_free(buf);
	rte_free(bounce);
	rte_eal_cleanup();
}
#endif

/* ---------------------------------------------------------------- output */

static void print_table(void)
{
	printf("%-16s %-13s %-8s %-7s %10s %10s  %s\n", "name", "impl", "backend", "backing", "median_ns", "p99_ns", "note");
	for (int i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		if (r->skipped)
			printf("%-16s %-13s %-8s %-7s %10s %10s  %s\n", r->name, r->impl, r->backend, r->backing, "skipped",
			       "-", r->note);
		else
			printf("%-16s %-13s %-8s %-7s %10.1f %10.1f  %s\n", r->name, r->impl, r->backend, r->backing,
			       r->median, r->p99, r->note);
	}
}

static void print_json(void)
{
	printf("[");
	for (int i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		printf("%s\n  {\"name\": \"%s\", \"impl\": \"%s\", \"unit\": \"ns\", ", i ? "," : "", r->name, r->impl);
		if (r->skipped)
			printf("\"median\": null, \"p99\": null, \"skipped\": true, ");
		else
			printf("\"median\": %.2f, \"p99\": %.2f, \"skipped\": false, ", r->median, r->p99);
		printf("\"backend\": \"%s\", \"backing\": \"%s\", \"note\": \"%s\"}", r->backend, r->backing, r->note);
	}
	printf("\n]\n");
}

static void print_csv(void)
{
	printf("name,impl,unit,median,p99,backend,backing,skipped,note\n");
	for (int i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		printf("%s,%s,ns,%.2f,%.2f,%s,%s,%d,\"%s\"\n", r->name, r->impl, r->skipped ? 0 : r->median,
		       r->skipped ? 0 : r->p99, r->backend, r->backing, r->skipped, r->note);
	}
}

int main(int argc, char **argv)
{
	int json = 0, csv = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = 1;
		else if (!strcmp(argv[i], "--csv"))
			csv = 1;
		else {
			fprintf(stderr, "usage: bench_busdma [--json | --csv]\n");
			return 2;
		}
	}
	bench_ubdma(UBDMA_BACKEND_VA);
	bench_ubdma(UBDMA_BACKEND_PHYS);
#ifdef UBDMA_BENCH_DPDK
	bench_dpdk();
#else
	struct row *r = row_add("load_unload_4k", "dpdk-by-hand", "dpdk", "-");
	r->skipped = 1;
	snprintf(r->note, sizeof(r->note), "built without DPDK (meson option dpdk)");
#endif
	if (json)
		print_json();
	else if (csv)
		print_csv();
	else
		print_table();
	return 0;
}
