/*
 * bench/rcache_verbs.c - the registration cache over verbs memory regions (libubdma_verbs) side
 * by side with UCX's ucs_rcache over the same ibv_reg_mr() / ibv_dereg_mr(), and with bare
 * ibv_reg_mr() / ibv_dereg_mr() per use, on soft-RoCE (rxe) in the guest (bench/rcache_verbs.sh).
 *
 * Rows (median and 99th percentile over samples):
 *  hit               ns: one get + put of a cached 4 KiB buffer (bare: reg + dereg).  A sample
 *                    is a batch of BATCH pairs, divided by BATCH.  The impls take turns in runs
 *                    of HIT_RUN samples (a random order each turn), each run after one untimed
 *                    batch, so that the ratio of two impls compares one host speed (it moves
 *                    between levels during a boot: docs/wire.md section 14).
 *  miss              ns: the call that registers a fresh 4 KiB buffer (bare: ibv_reg_mr alone),
 *                    each timed alone, on equal fresh pages of one region (the impls' pages
 *                    neighbours), in MISS_BLOCKS blocks of fresh regions and empty caches, after
 *                    an untimed warm-up block as large (the one-time growth of tables and pools,
 *                    ours, UCX's and rxe's, made the first miss row of a run 2-3% dearer for both
 *                    caches than the same row repeated); the samples of all blocks make the row.
 *                    Inside a block the impls take turns in runs of MISS_RUN misses (a random
 *                    order each turn), each run after one untimed miss that pays for the other
 *                    impls' code run just before it: every impl sees the host's speed of the same
 *                    moments, and each is timed after its own calls, as in a program that uses
 *                    one of them.
 *  miss_by_page      ns: the miss row as it was taken before: the impls take turns page by page
 *                    (one miss each, a random order each page), every miss timed, so each runs
 *                    after the others' calls; kept beside the miss row to compare the methods.
 *                    Two more impls, ubdma only,
 *                    say where a miss goes: ubdma-noop-pins (a registrar that registers nothing
 *                    and says it pins: the cache and its watch alone), ubdma-getppid-pins (the
 *                    same registrar making one getppid() where ibv_reg_mr enters the kernel: the
 *                    cache's work after a kernel entry) and ubdma-noop-wires (the same without
 *                    the flag: the cache with a full wiring), and ubdma-noop-pins-between (the
 *                    first, each miss after an untimed bare ibv_reg_mr of the next page, as the
 *                    miss_by_page row interleaves them: the cache's work as it runs there).
 *  syscall           ns: one getppid(), each timed alone (what the kernel entry costs by itself).
 *  miss_registrar    ns: the miss row again (in runs) with ubdma-mrkey in UCX's place: a
 *                    registrar of the bench's calling ibv_reg_mr() alike and keeping the MR as its
 *                    key, in a second context (ubdma - ubdma-mrkey: libubdma_verbs' own share of
 *                    a miss).
 *  cycle_working_set ns: one get + put of a buffer drawn at random from NBUF buffers of mixed
 *                    sizes (4 KiB - 4 MiB, 31 MiB in all) with the caches limited to 16 MiB.
 *  write_churn       ns: an application's step: malloc a 64 KiB buffer, register it (get, or
 *                    ibv_reg_mr), RDMA WRITE it to a peer queue pair, wait for the completion,
 *                    put (or ibv_dereg_mr), free.  Timed whole.
 *  write_churn_bw    MB/s: the same with 1 MiB buffers, bytes moved per step time.
 * Output: a table (default), --csv, or --json (name, impl, unit, median, p99, samples, note).
 * Without UCX at build time the ucx rows say skipped.  TCG runs the guest: read the ratios.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <ubdma/ubdma.h>
#include <ubdma/verbs.h>

#include "../tests/vm/guest/rxe.h"
#include "bench_time.h"

#ifdef UBDMA_BENCH_UCX
#include "ucx_rcache.h"
#endif

#define BATCH 64
#define MISS_BLOCKS 4 /* the miss rows: blocks of miss_samples interleaved misses each */
#define MISS_RUN 20   /* the miss rows' turns: runs of this many timed misses, after an untimed one */
#define HIT_RUN 20    /* the hit row's turns: runs of this many timed batches, after an untimed one */
#define PG 4096UL
#define NBUF 24
#define LIMIT (16UL << 20)
#define RW (UBDMA_UMEM_READ | UBDMA_UMEM_WRITE)
#define ACC (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ)

struct row {
	const char *name, *impl, *unit;
	double median, p99;
	int samples;
	char note[160];
};

static struct row rows[32];
static int nrows;
static ubdma_ctx_t *ctx;
static struct rxe R;
static int hit_samples = 400, miss_samples = 400, cycle_iters = 200, churn_iters = 200;

static void add_row(const char *name, const char *impl, const char *unit, double *s, int n, const char *note)
{
	struct row *r = &rows[nrows++];

	r->name = name;
	r->impl = impl;
	r->unit = unit;
	r->samples = n;
	snprintf(r->note, sizeof(r->note), "%s", note ? note : "");
	if (n > 0) {
		qsort(s, (size_t)n, sizeof(*s), bench_cmp_double);
		r->median = s[n / 2];
		/* the 99th percentile of a rate is its low end: the slow steps */
		size_t i99 = (size_t)n * 99 / 100 < (size_t)n ? (size_t)n * 99 / 100 : (size_t)n - 1;
		r->p99 = strcmp(unit, "ns") ? s[(size_t)n - 1 - i99] : s[i99];
	}
}

static void die(const char *what, int err)
{
	fprintf(stderr, "bench_rcache_verbs: %s: %s (%s)\n", what, strerror(err), ubdma_last_error());
	exit(1);
}

/* One implementation behind these calls; lkey of the handle for the write rows. */
struct impl {
	const char *name;
	int (*get)(void *addr, size_t len, void **h);
	void (*put)(void *h);
	uint32_t (*lkey)(void *h);
	void (*set_limit)(size_t bytes);
	void (*drop_all)(void);
	unsigned long (*regs)(void);
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

static uint32_t u_lkey(void *h)
{
	return ubdma_verbs_lkey(h);
}

static void u_limit(size_t bytes)
{
	ubdma_rcache_set_limits(ctx, bytes, 0, 0);
}

static void u_drop(void)
{
	ubdma_rcache_flush(ctx);
}

static unsigned long u_regs(void)
{
	struct ubdma_rcache_stats st;

	ubdma_rcache_stats(ctx, &st, sizeof(st));
	return (unsigned long)st.misses;
}

/* ------------------------------------------------------------ bare verbs */

static unsigned long b_count;

static int b_get(void *addr, size_t len, void **h)
{
	b_count++;
	*h = ibv_reg_mr(R.pd, addr, len, ACC);
	return *h ? 0 : errno;
}

static void b_put(void *h)
{
	ibv_dereg_mr(h);
}

static uint32_t b_lkey(void *h)
{
	return ((struct ibv_mr *)h)->lkey;
}

static void b_nop(void)
{
}

static void b_limit(size_t bytes)
{
	(void)bytes;
}

static unsigned long b_regs(void)
{
	return b_count;
}

/* -------------------------------------- ubdma, a registrar without a key of its own */

/*
 * The verbs registrar's own share of a miss: a registrar that calls ibv_reg_mr() the same way
 * and keeps the MR itself as the key (no malloc of a marked key, no access mapping), in a second
 * context; the miss_registrar row interleaves it with libubdma_verbs' registrar and bare.
 */
static ubdma_ctx_t *ctx_mk;

static int mk_reg(void *arg, void *addr, size_t len, int flags, void **keyp)
{
	(void)arg, (void)flags;
	*keyp = ibv_reg_mr(R.pd, addr, len, ACC);
	return *keyp ? 0 : errno ? errno : EIO;
}

static int mk_dereg(void *arg, void *key)
{
	(void)arg;
	return ibv_dereg_mr(key);
}

static int mk_get(void *addr, size_t len, void **h)
{
	return ubdma_reg_get(ctx_mk, addr, len, RW, (ubdma_reg_t **)h);
}

static void mk_drop(void)
{
	ubdma_rcache_flush(ctx_mk);
}

/* --------------------------------------------------------------- UCX */

#ifdef UBDMA_BENCH_UCX
/* UCX's miss does what bare does: ibv_reg_mr() of the region (bench/ucx_rcache.h) */
static int ucx_reg_mr(void *arg, void *addr, size_t len, void **handlep)
{
	(void)arg;
	*handlep = ibv_reg_mr(R.pd, addr, len, ACC);
	return *handlep ? 0 : EIO;
}

static void ucx_dereg_mr(void *arg, void *handle)
{
	(void)arg;
	ibv_dereg_mr(handle);
}

static struct ucxb ucx = { ucx_reg_mr, ucx_dereg_mr, NULL, "ibv mr", NULL, 0, 0 };

static int x_get(void *addr, size_t len, void **h)
{
	return ucxb_get(&ucx, addr, len, h);
}

static void x_put(void *h)
{
	ucxb_put(&ucx, h);
}

static uint32_t x_lkey(void *h)
{
	return ((struct ibv_mr *)ucxb_handle(h))->lkey;
}

static void x_limit(size_t bytes)
{
	char why[128];

	if (ucxb_set_limit(&ucx, bytes, why, sizeof(why)))
		die(why, EIO);
}

static void x_drop(void)
{
	x_limit(ucx.limit);
}

static unsigned long x_regs(void)
{
	return ucx.regs;
}
#endif

/* ------------------------------------------------------------- rows */

/* A random order of the three impls for one turn (Fisher-Yates; seeded, so runs repeat it). */
static void shuffle3(int order[3], unsigned *seed)
{
	for (int j = 0; j < 3; j++)
		order[j] = j;
	for (int j = 2; j > 0; j--) {
		int r = rand_r(seed) % (j + 1), t = order[j];
		order[j] = order[r];
		order[r] = t;
	}
}

/* One batch of hit pairs on buf: ns a pair. */
static double hit_batch(const struct impl *im, char *buf)
{
	uint64_t t0 = bench_now_ns();
	void *h;
	int err;

	for (int j = 0; j < BATCH; j++) {
		if ((err = im->get(buf, PG, &h)))
			die("hit", err);
		im->put(h);
	}
	return (double)(bench_now_ns() - t0) / BATCH;
}

/*
 * The hit rows, the impls taking turns in runs of HIT_RUN batches (each on a buffer of its own),
 * each run after one untimed batch that pays for the other impls' code run just before it, as
 * the miss rows' runs do.  Rows of an impl that is missing (NULL) say why.
 */
static void row_hit(struct impl **impls, const char **names, const char *why)
{
	char *buf[3] = { NULL, NULL, NULL };
	double *s[3] = { NULL, NULL, NULL };
	unsigned seed = 4243;
	void *h;
	int err;

	for (int k = 0; k < 3; k++) {
		if (!impls[k])
			continue;
		buf[k] = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (buf[k] == MAP_FAILED)
			die("mmap", errno);
		if (!(s[k] = malloc((size_t)hit_samples * sizeof(*s[k]))))
			die("malloc", ENOMEM);
		memset(buf[k], 1, PG);
		if ((err = impls[k]->get(buf[k], PG, &h)))
			die("hit warm-up", err);
		impls[k]->put(h);
	}
	for (int i = 0; i < hit_samples; i += HIT_RUN) {
		int order[3], m = hit_samples - i < HIT_RUN ? hit_samples - i : HIT_RUN;
		shuffle3(order, &seed);
		for (int kk = 0; kk < 3; kk++) {
			int k = order[kk];
			if (!impls[k])
				continue;
			hit_batch(impls[k], buf[k]);
			for (int j = 0; j < m; j++)
				s[k][i + j] = hit_batch(impls[k], buf[k]);
		}
	}
	char note[160];
	snprintf(note, sizeof(note), "4 KiB buffer, get + put (impls in turns of %d batches after an untimed one)",
		 HIT_RUN);
	for (int k = 0; k < 3; k++) {
		if (!impls[k]) {
			add_row("hit", names[k], "ns", NULL, 0, why);
			continue;
		}
		add_row("hit", impls[k]->name, "ns", s[k], hit_samples, note);
		impls[k]->drop_all();
		munmap(buf[k], PG);
		free(s[k]);
	}
}

/*
 * One block of the miss rows: n timed misses of each impl on fresh pages of one region, the
 * impls' pages neighbours (page p of impl k at slot p * nimpl + k), so that no impl has the
 * better positions.  run > 0: the impls take turns in runs of `run` timed misses, each run after
 * one untimed miss (on a page of its own), in a random order each turn (seeded by *seed, so
 * runs repeat it).  Why runs: the shared host's speed moves between levels during a boot, and
 * turns make the impls see the same moments; what runs just before a call also changes its cost
 * under TCG (a cache's work right after a bare ibv_reg_mr is 1.2-1.4 times its warm cost, row
 * ubdma-noop-pins-between), and in a run each impl is timed after its own calls, as in a program
 * that uses one of them, with the untimed first miss paying for the switch, as bench/iommu_map
 * does.  run == 0: page by page, every miss timed, each after whichever impl the random order put
 * before it (the miss_by_page row: how the miss row was taken before).  The samples go to
 * s[k][off...] (s NULL: a warm-up, untimed).  Everything is put and the caches emptied at the
 * end: each block starts from empty caches.
 */
static void miss_block(struct impl **impls, int nimpl, int n, int run, double **s, int off, unsigned *seed)
{
	int per = run ? run : 1, turns = (n + per - 1) / per, npg = run ? n + turns : n;
	size_t span = 2 * PG * (size_t)npg * (size_t)nimpl;
	char *base = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void **h[3];
	int used[3] = { 0, 0, 0 }, done[3] = { 0, 0, 0 }, err;

	if (base == MAP_FAILED)
		die("mmap", errno);
	memset(base, 1, span);
	for (int k = 0; k < nimpl; k++)
		if (!(h[k] = calloc((size_t)npg, sizeof(*h[k]))))
			die("calloc", ENOMEM);
	for (int t = 0; t < turns; t++) {
		int order[3];
		shuffle3(order, seed);
		for (int kk = 0; kk < nimpl; kk++) {
			int k = order[kk];
			if (!impls[k])
				continue;
			int m = n - done[k] < per ? n - done[k] : per;
			for (int j = run ? -1 : 0; j < m; j++) {
				char *b = base + ((size_t)used[k] * (size_t)nimpl + (size_t)k) * 2 * PG;
				uint64_t t0 = bench_now_ns();
				if ((err = impls[k]->get(b, PG, &h[k][used[k]++])))
					die("miss", err);
				double ns = (double)(bench_now_ns() - t0);
				if (j < 0)
					continue;
				if (s)
					s[k][off + done[k]] = ns;
				done[k]++;
			}
		}
	}
	for (int k = 0; k < nimpl; k++) {
		if (impls[k]) {
			for (int i = 0; i < used[k]; i++)
				impls[k]->put(h[k][i]);
			impls[k]->drop_all();
		}
		free(h[k]);
	}
	munmap(base, span);
}

static void row_miss(const char *name, struct impl **impls, int nimpl, int run)
{
	int n = miss_samples * MISS_BLOCKS;
	unsigned seed = 4242;
	double *s[3];
	char note[160];

	/* the untimed warm-up block is as large as a timed one: the one-time growth of a cache's
	 * tables (for ubdma the watch runs, the index, the entry slabs and the ticket pool: on the
	 * host some 37 000 instructions and 47 page faults in the first block of 400 misses of a
	 * process, next to none in later blocks, docs/rcache.md step 8) then happens at the sizes the
	 * timed blocks reach, which a warm-up of 64 misses did not.  Untimed for the three alike. */
	miss_block(impls, nimpl, miss_samples, run, NULL, 0, &seed);
	for (int k = 0; k < nimpl; k++)
		if (!(s[k] = malloc((size_t)n * sizeof(*s[k]))))
			die("malloc", ENOMEM);
	for (int blk = 0; blk < MISS_BLOCKS; blk++)
		miss_block(impls, nimpl, miss_samples, run, s, blk * miss_samples, &seed);
	if (run)
		snprintf(note, sizeof(note),
			 "fresh 4 KiB buffer: the registering call (impls in turns of %d after an untimed one, %d blocks after a warm-up)",
			 run, MISS_BLOCKS);
	else
		snprintf(note, sizeof(note),
			 "fresh 4 KiB buffer: the registering call (impls in turns page by page, %d blocks after a warm-up)",
			 MISS_BLOCKS);
	for (int k = 0; k < nimpl; k++) {
		if (impls[k])
			add_row(name, impls[k]->name, "ns", s[k], n, note);
		free(s[k]);
	}
}

static void row_cycle(const struct impl *im, char **bufs, const size_t *lens)
{
	double *s = malloc((size_t)cycle_iters * sizeof(*s));
	unsigned seed = 12345;
	void *h;
	int err;

	im->set_limit(LIMIT);
	unsigned long m0 = im->regs();
	for (int i = 0; i < cycle_iters; i++) {
		int k = rand_r(&seed) % NBUF;
		uint64_t t0 = bench_now_ns();
		if ((err = im->get(bufs[k], lens[k], &h)))
			die("cycle", err);
		im->put(h);
		s[i] = (double)(bench_now_ns() - t0);
	}
	char note[160];
	snprintf(note, sizeof(note), "24 buffers 4 KiB-4 MiB, 31 MiB over a 16 MiB limit; %lu registrations",
		 im->regs() - m0);
	add_row("cycle_working_set", im->name, "ns", s, cycle_iters, note);
	im->set_limit(0);
	im->drop_all();
	free(s);
}

/* A registrar that registers nothing: what a miss costs in the cache itself. */
static int n_reg(void *arg, void *addr, size_t len, int flags, void **keyp)
{
	(void)arg, (void)addr, (void)len, (void)flags;
	*keyp = &n_reg;
	return 0;
}

/* The same with one cheap system call, where ibv_reg_mr enters the kernel: what the kernel entry
 * does to the cache's work after it (TCG's software TLB) */
static int s_reg(void *arg, void *addr, size_t len, int flags, void **keyp)
{
	(void)arg, (void)addr, (void)len, (void)flags;
	*keyp = (void *)(uintptr_t)syscall(SYS_getppid);
	return 0;
}

static int n_dereg(void *arg, void *key)
{
	(void)arg, (void)key;
	return 0;
}

/*
 * Where a miss goes: the same fresh-page get into a registrar that registers nothing, pinning
 * (the cache and its watch: the overhead over ibv_reg_mr), the same with one getppid() system
 * call in its place (the kernel entry's effect on the cache's work), and not pinning (the cache
 * wires in full); and getppid() alone.
 */
static void row_miss_parts(void)
{
	static const struct ubdma_registrar pins = { "noop-pins", n_reg, n_dereg, UBDMA_REGISTRAR_PINS };
	static const struct ubdma_registrar sys = { "syscall-pins", s_reg, n_dereg, UBDMA_REGISTRAR_PINS };
	static const struct ubdma_registrar wires = { "noop-wires", n_reg, n_dereg, 0 };
	const struct ubdma_registrar *ops[3] = { &pins, &sys, &wires };
	static const char *impl[4] = { "ubdma-noop-pins", "ubdma-getppid-pins", "ubdma-noop-wires",
				       "ubdma-noop-pins-between" };
	static const char *note[4] = {
		"fresh 4 KiB buffer, a registrar that registers nothing: the cache and its watch alone",
		"fresh 4 KiB buffer, a registrar that makes one getppid() system call: the cache after a kernel entry",
		"fresh 4 KiB buffer, a registrar that registers nothing: the cache with a full wiring",
		"the same as noop-pins, each miss after a bare ibv_reg_mr of the next page (untimed): the cache as in the miss row",
	};
	size_t span = 2 * PG * (size_t)miss_samples;
	struct ibv_mr **mr = calloc((size_t)miss_samples, sizeof(*mr));
	double *s = malloc((size_t)miss_samples * sizeof(*s));
	ubdma_reg_t **h = calloc((size_t)miss_samples, sizeof(*h));
	int err;

	for (int i = 0; i < miss_samples; i++) {
		uint64_t t0 = bench_now_ns();
		if (syscall(SYS_getppid) < 0)
			die("getppid", errno);
		s[i] = (double)(bench_now_ns() - t0);
	}
	add_row("syscall", "getppid", "ns", s, miss_samples, "one getppid() system call, each timed alone");
	for (int k = 0; k < 4; k++) {
		ubdma_ctx_t *c;
		char *base = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		memset(base, 1, span);
		if ((err = ubdma_ctx_open(UBDMA_BACKEND_VA, &c)) ||
		    (err = ubdma_rcache_set_registrar(c, ops[k < 3 ? k : 0], NULL)))
			die("no-op registrar", err);
		for (int i = 0; i < miss_samples; i++) {
			if (k == 3 && !(mr[i] = ibv_reg_mr(R.pd, base + (size_t)i * 2 * PG + PG, PG, ACC)))
				die("ibv_reg_mr", errno);
			uint64_t t0 = bench_now_ns();
			if ((err = ubdma_reg_get(c, base + (size_t)i * 2 * PG, PG, RW, &h[i])))
				die("miss (no-op registrar)", err);
			s[i] = (double)(bench_now_ns() - t0);
		}
		for (int i = 0; i < miss_samples; i++) {
			ubdma_reg_put(h[i]);
			if (k == 3)
				ibv_dereg_mr(mr[i]);
		}
		add_row("miss", impl[k], "ns", s, miss_samples, note[k]);
		ubdma_ctx_close(c);
		munmap(base, span);
	}
	free(s);
	free(h);
	free(mr);
}

/* The application's step, buffers that churn through malloc / free; the peer is qb's MR. */
static void row_churn(const struct impl *im, size_t len, const char *name, int bw, struct ibv_mr *dst)
{
	double *s = malloc((size_t)churn_iters * sizeof(*s));
	void *h;
	int err;

	for (int i = -4; i < churn_iters; i++) {
		uint64_t t0 = bench_now_ns();
		char *b = malloc(len);
		if (!b)
			die("malloc", ENOMEM);
		memset(b, i & 0xff, len);
		if ((err = im->get(b, len, &h)))
			die("churn get", err);
		int st = rxe_rdma(&R, IBV_WR_RDMA_WRITE, b, im->lkey(h), len, (uintptr_t)dst->addr, dst->rkey);
		im->put(h);
		free(b);
		if (st)
			die("RDMA WRITE", EIO);
		double ns = (double)(bench_now_ns() - t0);
		if (i >= 0)
			s[i] = bw ? (double)len * 1e3 / ns : ns; /* bytes/ns * 1e3 = MB/s */
		if ((unsigned char)((char *)dst->addr)[len - 1] != (unsigned char)(i & 0xff))
			die("RDMA WRITE data", EIO);
	}
	char note[160];
	snprintf(note, sizeof(note), "malloc %zu KiB, register, RDMA WRITE, wait, release, free", len >> 10);
	add_row(name, im->name, bw ? "MB/s" : "ns", s, churn_iters, note);
	im->drop_all();
	free(s);
}

static void print_rows(int fmt)
{
	if (fmt == 'j') {
		printf("[\n");
		for (int i = 0; i < nrows; i++)
			printf("  {\"name\": \"%s\", \"impl\": \"%s\", \"unit\": \"%s\", \"median\": %.1f, \"p99\": %.1f, "
			       "\"samples\": %d, \"note\": \"%s\"%s}%s\n",
			       rows[i].name, rows[i].impl, rows[i].unit, rows[i].median, rows[i].p99, rows[i].samples,
			       rows[i].note, rows[i].samples ? "" : ", \"skipped\": true", i + 1 < nrows ? "," : "");
		printf("]\n");
	} else if (fmt == 'c') {
		printf("name,impl,unit,median,p99,samples,note\n");
		for (int i = 0; i < nrows; i++)
			printf("%s,%s,%s,%.1f,%.1f,%d,\"%s\"\n", rows[i].name, rows[i].impl, rows[i].unit,
			       rows[i].median, rows[i].p99, rows[i].samples, rows[i].note);
	} else {
		printf("%-18s %-7s %-5s %12s %12s %7s  %s\n", "row", "impl", "unit", "median", "p99", "samples", "note");
		for (int i = 0; i < nrows; i++) {
			if (!rows[i].samples)
				printf("%-18s %-7s %-5s %12s %12s %7s  %s\n", rows[i].name, rows[i].impl, rows[i].unit,
				       "skipped", "-", "-", rows[i].note);
			else
				printf("%-18s %-7s %-5s %12.1f %12.1f %7d  %s\n", rows[i].name, rows[i].impl,
				       rows[i].unit, rows[i].median, rows[i].p99, rows[i].samples, rows[i].note);
		}
	}
}

int main(int argc, char **argv)
{
	int fmt = 't', err;
	char ucx_why[160] = "built without UCX (libucx-dev)";

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			fmt = 'j';
		else if (!strcmp(argv[i], "--csv"))
			fmt = 'c';
		else if (!strcmp(argv[i], "--quick"))
			hit_samples = miss_samples = cycle_iters = churn_iters = 20;
		else {
			fprintf(stderr, "usage: %s [--json|--csv] [--quick]\n", argv[0]);
			return 2;
		}
	}
	if (rxe_open(&R)) {
		fprintf(stderr, "bench_rcache_verbs: soft-RoCE: %s\n", R.why);
		return 77;
	}
	if ((err = ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx)) || (err = ubdma_verbs_registrar(ctx, R.pd)))
		die("context", err);

	struct impl u = { "ubdma", u_get, u_put, u_lkey, u_limit, u_drop, u_regs };
	struct impl b = { "bare", b_get, b_put, b_lkey, b_limit, b_nop, b_regs };
	struct impl *impls[3] = { &u, NULL, &b };
	static const char *names[3] = { "ubdma", "ucx", "bare" };
#ifdef UBDMA_BENCH_UCX
	struct impl x = { "ucx", x_get, x_put, x_lkey, x_limit, x_drop, x_regs };
	if (ucxb_create(&ucx, 0, ucx_why, sizeof(ucx_why)) == 0)
		impls[1] = &x;
#endif
	static const size_t sz[] = { 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20 };
	char *bufs[NBUF];
	size_t lens[NBUF];
	for (int i = 0; i < NBUF; i++) {
		lens[i] = sz[i % 6];
		bufs[i] = mmap(NULL, lens[i] + PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (bufs[i] == MAP_FAILED)
			die("mmap", errno);
		memset(bufs[i], 1, lens[i]);
	}
	/* the peer's target: a plain MR of 1 MiB */
	char *dbuf = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct ibv_mr *dst = ibv_reg_mr(R.pd, dbuf, 1 << 20, ACC);
	if (!dst)
		die("target MR", errno);

	row_hit(impls, names, ucx_why);
	row_miss("miss", impls, 3, MISS_RUN);
	if (!impls[1])
		add_row("miss", "ucx", "ns", NULL, 0, ucx_why);
	row_miss("miss_by_page", impls, 3, 0);
	if (!impls[1])
		add_row("miss_by_page", "ucx", "ns", NULL, 0, ucx_why);
	row_miss_parts();
	static const struct ubdma_registrar mk_ops = { "mr-key", mk_reg, mk_dereg, UBDMA_REGISTRAR_PINS };
	if ((err = ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx_mk)) || (err = ubdma_rcache_set_registrar(ctx_mk, &mk_ops, NULL)))
		die("mr-key context", err);
	struct impl mk = { "ubdma-mrkey", mk_get, u_put, NULL, u_limit, mk_drop, u_regs };
	struct impl *impls_mk[3] = { &u, &mk, &b };
	row_miss("miss_registrar", impls_mk, 3, MISS_RUN);
	ubdma_ctx_close(ctx_mk);
	for (int k = 0; k < 3; k++)
		impls[k] ? row_cycle(impls[k], bufs, lens) : add_row("cycle_working_set", names[k], "ns", NULL, 0, ucx_why);
	for (int k = 0; k < 3; k++)
		impls[k] ? row_churn(impls[k], 64 << 10, "write_churn", 0, dst)
			 : add_row("write_churn", names[k], "ns", NULL, 0, ucx_why);
	for (int k = 0; k < 3; k++)
		impls[k] ? row_churn(impls[k], 1 << 20, "write_churn_bw", 1, dst)
			 : add_row("write_churn_bw", names[k], "MB/s", NULL, 0, ucx_why);
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
	ibv_dereg_mr(dst);
	rxe_close(&R);
	return 0;
}
