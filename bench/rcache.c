/*
 * bench/rcache.c - the registration cache side by side with UCX's (Debian libucx 1.13,
 * ucs_rcache_*) and with no cache at all, in one process, on the same backing work.
 *
 * The backing work is the same everywhere: ubdma_umem_lock() wires and maps a range into the
 * context (va backend unless --backend says otherwise), ubdma_umem_unlock() undoes it.  UCX's
 * cache calls them from its mem_reg / mem_dereg callbacks; "nocache" calls them directly.
 *
 * Rows (unit ns, median and 99th percentile over samples):
 *  hit               one get + put of a cached 4 KiB buffer (nocache: lock + unlock).  A sample
 *                    is a batch of BATCH pairs timed with clock_gettime, divided by BATCH.
 *  miss              the call that registers an uncached 4 KiB buffer (nocache: the bare
 *                    umem_lock), each timed alone; buffers are fresh pages with gaps between
 *                    them so that no cache merges them.
 *  cycle_working_set one get + put of a buffer drawn at random from NBUF buffers of mixed sizes
 *                    (4 KiB - 64 MiB, 256 MiB in all) with the caches limited to 128 MiB, so that
 *                    they evict and miss; each timed alone (nocache: lock + unlock).
 * Output: a table (default), --csv, or --json (one object per row: name, impl, unit, median,
 * p99, samples, note).  Without UCX at build time the ucx rows say skipped.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <ubdma/ubdma.h>
#include "bench_time.h"

#ifdef UBDMA_BENCH_UCX
#include "ucx_rcache.h"
#endif

#define BATCH 256
#define HIT_SAMPLES 2000
#define MISS_SAMPLES 2000
#define NBUF 24
#define LIMIT (128UL << 20)
#define PG 4096UL
#define RW (UBDMA_UMEM_READ | UBDMA_UMEM_WRITE)

struct row {
	const char *name, *impl;
	double median, p99;
	int samples;
	char note[160];
};

static struct row rows[16];
static int nrows;
static ubdma_ctx_t *ctx;

static void add_row(const char *name, const char *impl, double *s, int n, const char *note)
{
	struct row *r = &rows[nrows++];

	r->name = name;
	r->impl = impl;
	r->samples = n;
	snprintf(r->note, sizeof(r->note), "%s", note ? note : "");
	if (n > 0) {
		qsort(s, (size_t)n, sizeof(*s), bench_cmp_double);
		r->median = s[n / 2];
		r->p99 = s[(size_t)n * 99 / 100 < (size_t)n ? (size_t)n * 99 / 100 : (size_t)n - 1];
	}
}

static void die(const char *what, int err)
{
	fprintf(stderr, "bench_rcache: %s: %s (%s)\n", what, strerror(err), ubdma_last_error());
	exit(1);
}

/* One implementation behind three calls. */
struct impl {
	const char *name;
	unsigned long (*misses)(void);
	int (*get)(void *addr, size_t len, void **h);
	void (*put)(void *h);
	void (*set_limit)(size_t bytes);
	void (*drop_all)(void);
};

/* ------------------------------------------------------------ ubdma */

static int u_get(void *addr, size_t len, void **h)
{
	return ubdma_reg_get(ctx, addr, len, RW, (ubdma_reg_t **)h);
}

static void u_put(void *h)
{
	ubdma_reg_put(h);
}

static void u_limit(size_t bytes)
{
	ubdma_rcache_set_limits(ctx, bytes, 0, 0);
}

static void u_drop(void)
{
	ubdma_rcache_flush(ctx);
}

static unsigned long u_misses(void)
{
	struct ubdma_rcache_stats st;

	ubdma_rcache_stats(ctx, &st, sizeof(st));
	return (unsigned long)st.misses;
}

static unsigned long n_count;
static unsigned long n_misses(void)
{
	return n_count;
}

/* ----------------------------------------------------------- nocache */

static int n_get(void *addr, size_t len, void **h)
{
	n_count++;
	return ubdma_umem_lock(ctx, addr, len, RW, (ubdma_umem_t **)h);
}

static void n_put(void *h)
{
	ubdma_umem_unlock(h);
}

static void n_limit(size_t bytes)
{
	(void)bytes;
}

static void n_drop(void)
{
}

/* --------------------------------------------------------------- UCX */

#ifdef UBDMA_BENCH_UCX
/* UCX's miss does what ours does: ubdma_umem_lock() of the region (bench/ucx_rcache.h) */
static int ucx_umem_lock(void *arg, void *addr, size_t len, void **handlep)
{
	(void)arg;
	return ubdma_umem_lock(ctx, addr, len, RW, (ubdma_umem_t **)handlep);
}

static void ucx_umem_unlock(void *arg, void *handle)
{
	(void)arg;
	ubdma_umem_unlock(handle);
}

static struct ucxb ucx = { ucx_umem_lock, ucx_umem_unlock, NULL, "ubdma umem", NULL, 0, 0 };

static int x_get(void *addr, size_t len, void **h)
{
	return ucxb_get(&ucx, addr, len, h);
}

static void x_put(void *h)
{
	ucxb_put(&ucx, h);
}

static void x_limit(size_t bytes)
{
	char why[128];

	if (ucxb_set_limit(&ucx, bytes, why, sizeof(why)))
		die(why, EIO);
}

static unsigned long x_misses(void)
{
	return ucx.regs;
}

static void x_drop(void)
{
	x_limit(ucx.limit);
}
#endif

/* ------------------------------------------------------------- rows */

static void row_hit(const struct impl *im)
{
	char *buf = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	double *s = malloc(HIT_SAMPLES * sizeof(*s));
	void *h;
	int err;

	memset(buf, 1, PG);
	if ((err = im->get(buf, PG, &h)))
		die("hit warm-up", err);
	im->put(h);
	for (int i = 0; i < HIT_SAMPLES; i++) {
		uint64_t t0 = bench_now_ns();
		for (int j = 0; j < BATCH; j++) {
			if ((err = im->get(buf, PG, &h)))
				die("hit", err);
			im->put(h);
		}
		s[i] = (double)(bench_now_ns() - t0) / BATCH;
	}
	add_row("hit", im->name, s, HIT_SAMPLES, "4 KiB buffer, get + put");
	im->drop_all();
	munmap(buf, PG);
	free(s);
}

/*
 * Misses of the three side by side: sample i registers a fresh page for each in turn, so that
 * all of them see the same process (a miss reads /proc/self/maps, whose length grows with every
 * registration: timing one after the other would favour the first).
 */
static void row_miss(struct impl **impls, int nimpl)
{
	/* one region, the three taking pages in turn: a miss reads /proc/self/maps up to its
	 * range, so each must sit at the same place in it */
	size_t span = 2 * PG * MISS_SAMPLES * (size_t)nimpl;
	char *base = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	double *s[3];
	void **h[3];
	int err;

	memset(base, 1, span);
	for (int k = 0; k < nimpl; k++) {
		s[k] = malloc(MISS_SAMPLES * sizeof(*s[k]));
		h[k] = calloc(MISS_SAMPLES, sizeof(*h[k]));
	}
	for (int i = 0; i < MISS_SAMPLES; i++)
		for (int kk = 0; kk < nimpl; kk++) {
			int k = (i + kk) % nimpl; /* each goes first in turn */
			if (!impls[k])
				continue;
			/* a gap after each page: nothing to merge */
			char *b = base + ((size_t)i * (size_t)nimpl + (size_t)k) * 2 * PG;
			uint64_t t0 = bench_now_ns();
			if ((err = impls[k]->get(b, PG, &h[k][i])))
				die("miss", err);
			s[k][i] = (double)(bench_now_ns() - t0);
		}
	for (int k = 0; k < nimpl; k++) {
		if (impls[k]) {
			for (int i = 0; i < MISS_SAMPLES; i++)
				impls[k]->put(h[k][i]);
			add_row("miss", impls[k]->name, s[k], MISS_SAMPLES,
				"fresh 4 KiB buffer: the registering call (interleaved)");
			impls[k]->drop_all();
		}
		free(s[k]);
		free(h[k]);
	}
	munmap(base, span);
}

static void row_cycle(const struct impl *im, char **bufs, const size_t *lens, int iters)
{
	double *s = malloc((size_t)iters * sizeof(*s));
	unsigned seed = 12345;
	void *h;
	int err;

	im->set_limit(LIMIT);
	unsigned long m0 = im->misses();
	for (int i = 0; i < iters; i++) {
		int k = rand_r(&seed) % NBUF;
		uint64_t t0 = bench_now_ns();
		if ((err = im->get(bufs[k], lens[k], &h)))
			die("cycle", err);
		im->put(h);
		s[i] = (double)(bench_now_ns() - t0);
	}
	char note[160];
	snprintf(note, sizeof(note), "24 buffers 4 KiB-64 MiB, 256 MiB over a 128 MiB limit; %lu registrations",
		 im->misses() - m0);
	add_row("cycle_working_set", im->name, s, iters, note);
	im->set_limit(0);
	im->drop_all();
	free(s);
}

static void print_rows(int fmt)
{
	if (fmt == 'j') {
		printf("[\n");
		for (int i = 0; i < nrows; i++)
			printf("  {\"name\": \"%s\", \"impl\": \"%s\", \"unit\": \"ns\", \"median\": %.1f, \"p99\": %.1f, "
			       "\"samples\": %d, \"note\": \"%s\"%s}%s\n",
			       rows[i].name, rows[i].impl, rows[i].median, rows[i].p99, rows[i].samples, rows[i].note,
			       rows[i].samples ? "" : ", \"skipped\": true", i + 1 < nrows ? "," : "");
		printf("]\n");
	} else if (fmt == 'c') {
		printf("name,impl,unit,median,p99,samples,note\n");
		for (int i = 0; i < nrows; i++)
			printf("%s,%s,ns,%.1f,%.1f,%d,\"%s\"\n", rows[i].name, rows[i].impl, rows[i].median,
			       rows[i].p99, rows[i].samples, rows[i].note);
	} else {
		printf("%-18s %-8s %14s %14s %8s  %s\n", "row", "impl", "median ns", "p99 ns", "samples", "note");
		for (int i = 0; i < nrows; i++) {
			if (!rows[i].samples)
				printf("%-18s %-8s %14s %14s %8s  %s\n", rows[i].name, rows[i].impl, "skipped", "-", "-",
				       rows[i].note);
			else
				printf("%-18s %-8s %14.1f %14.1f %8d  %s\n", rows[i].name, rows[i].impl, rows[i].median,
				       rows[i].p99, rows[i].samples, rows[i].note);
		}
	}
}

int main(int argc, char **argv)
{
	enum ubdma_backend be = UBDMA_BACKEND_VA;
	int fmt = 't', iters = 400, err;
	char ucx_why[160] = "built without UCX (libucx-dev)";

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			fmt = 'j';
		else if (!strcmp(argv[i], "--csv"))
			fmt = 'c';
		else if (!strcmp(argv[i], "--quick"))
			iters = 40;
		else if (!strcmp(argv[i], "--backend") && i + 1 < argc)
			be = !strcmp(argv[++i], "auto") ? UBDMA_BACKEND_AUTO : UBDMA_BACKEND_VA;
		else {
			fprintf(stderr, "usage: %s [--json|--csv] [--quick] [--backend va|auto]\n", argv[0]);
			return 2;
		}
	}
	if ((err = ubdma_ctx_open(be, &ctx)))
		die("ubdma_ctx_open", err);

	struct impl u = { "ubdma", u_misses, u_get, u_put, u_limit, u_drop };
	struct impl n = { "nocache", n_misses, n_get, n_put, n_limit, n_drop };
	struct impl *impls[3] = { &u, NULL, &n };
#ifdef UBDMA_BENCH_UCX
	struct impl x = { "ucx", x_misses, x_get, x_put, x_limit, x_drop };
	if (ucxb_create(&ucx, 0, ucx_why, sizeof(ucx_why)) == 0)
		impls[1] = &x;
#endif
	/* the working set: sizes 4 KiB .. 64 MiB, three of each, 256 MiB in all */
	static const size_t sz[] = { 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20 };
	char *bufs[NBUF];
	size_t lens[NBUF];
	for (int i = 0; i < NBUF; i++) {
		lens[i] = sz[i % 8];
		bufs[i] = mmap(NULL, lens[i] + PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (bufs[i] == MAP_FAILED)
			die("mmap", errno);
		memset(bufs[i], 1, lens[i]);
	}
	for (int k = 0; k < 3; k++) {
		if (impls[k])
			row_hit(impls[k]);
		else
			add_row("hit", "ucx", NULL, 0, ucx_why);
	}
	row_miss(impls, 3);
	if (!impls[1])
		add_row("miss", "ucx", NULL, 0, ucx_why);
	for (int k = 0; k < 3; k++) {
		if (impls[k])
			row_cycle(impls[k], bufs, lens, iters);
		else
			add_row("cycle_working_set", "ucx", NULL, 0, ucx_why);
	}
	print_rows(fmt);
	if (fmt == 't') {
		printf("\n");
		ubdma_rcache_stats_print(ctx, stdout);
	}
#ifdef UBDMA_BENCH_UCX
	if (impls[1])
		ucxb_destroy(&ucx);
#endif
	ubdma_ctx_close(ctx);
	return 0;
}
