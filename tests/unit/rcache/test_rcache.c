/*
 * test_rcache.c - the registration cache, one test a rule: hits and references, merging,
 * intent, CLOCK eviction under the byte / entry / IOMMU-entry limits, ENOMEM / ENOSPC instead
 * of a hang, invalidation by every kind of unmap the userfaultfd monitor sees (munmap, MAP_FIXED,
 * mremap, DONTNEED_LOCKED, brk), explicit invalidation, the stale-translation case on hugepages
 * with the phys backend, fork, a hit path without system calls, threads racing get / put /
 * munmap, and wired memory back where it started after churn.
 *
 * Built twice: as the unit test, and with RCACHE_SOAK as the long churn run of suite 'soak'.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/magic.h>
#include <sys/prctl.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <ubdma/ubdma.h>

#include "../testutil.h"

#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif

#define KB 1024UL
#define MB (1024UL * 1024UL)
#define RW (UBDMA_UMEM_READ | UBDMA_UMEM_WRITE)

static struct ubdma_rcache_stats stats(ubdma_ctx_t *ctx)
{
	struct ubdma_rcache_stats s;

	assert_int_equal(ubdma_rcache_stats(ctx, &s, sizeof(s)), 0);
	return s;
}

static int setup_va(void **state)
{
	ubdma_ctx_t *ctx;

	if (ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx))
		return -1;
	*state = ctx;
	return 0;
}

static int teardown(void **state)
{
	ubdma_ctx_close(*state);
	return 0;
}

/* The cache's monitor must be userfaultfd for the invalidation tests, else SKIP saying why. */
static int need_uffd(ubdma_ctx_t *ctx, void *probe)
{
	ubdma_reg_t *r;
	struct ubdma_rcache_stats s;

	assert_int_equal(ubdma_reg_get(ctx, probe, 4096, RW, &r), 0);
	ubdma_reg_put(r);
	s = stats(ctx);
	if (!s.monitor_active) {
		fprintf(stderr, "SKIP: no userfaultfd monitor: %s\n", s.monitor);
		return 0;
	}
	return 1;
}

/* ------------------------------------------------------------------ rules */

static void test_args(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon_map(4 * 4096);
	ubdma_reg_t *r = (ubdma_reg_t *)1;
	long lck = status_kb("VmLck");

	assert_non_null(p);
	assert_int_equal(ubdma_reg_get(NULL, p, 4096, RW, &r), EINVAL);
	assert_int_equal(ubdma_reg_get(ctx, p, 4096, RW, NULL), EINVAL);
	assert_int_equal(ubdma_reg_get(ctx, p, 0, RW, &r), EINVAL);
	assert_int_equal(ubdma_reg_get(ctx, p, 4096, 0, &r), EINVAL);
	assert_int_equal(ubdma_reg_get(ctx, p, 4096, RW | 0x100, &r), EINVAL);
	assert_int_equal(ubdma_reg_get(ctx, (void *)(UINTPTR_MAX - 4095), 8192, RW, &r), EINVAL);
	assert_ptr_equal(r, (ubdma_reg_t *)1); /* untouched on failure */
	assert_int_equal(ubdma_reg_invalidate(NULL, p, 4096), EINVAL);
	assert_int_equal(ubdma_reg_invalidate(ctx, p, 0), EINVAL);
	assert_int_equal(ubdma_rcache_set_limits(NULL, 0, 0, 0), EINVAL);
	assert_int_equal(ubdma_rcache_set_monitor(ctx, (enum ubdma_rcache_monitor)7), EINVAL);
	assert_int_equal(ubdma_rcache_stats(ctx, NULL, 0), EINVAL);
	assert_true(ubdma_reg_iova(NULL, p) == UBDMA_BAD_IOVA);
	ubdma_reg_put(NULL);
	/* a hole: EFAULT, and nothing stays wired or cached */
	assert_int_equal(munmap(p + 2 * 4096, 4096), 0);
	assert_int_equal(ubdma_reg_get(ctx, p, 4 * 4096, RW, &r), EFAULT);
	assert_int_equal(status_kb("VmLck"), lck);
	assert_int_equal(stats(ctx).entries, 0);
	munmap(p, 4 * 4096);
}

/* A miss wires and maps; a hit returns the same registration, referenced, with no new pin. */
static void test_hit_miss(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon_map(16 * 4096);
	ubdma_reg_t *r1, *r2, *r3;
	long lck0 = status_kb("VmLck");

	assert_int_equal(ubdma_reg_get(ctx, p + 100, 3 * 4096, RW, &r1), 0);
	assert_true(ubdma_reg_iova(r1, p + 100) == (uint64_t)(uintptr_t)(p + 100)); /* va backend */
	assert_true(ubdma_vtoiova(ctx, p) == (uint64_t)(uintptr_t)p);
	assert_true(ubdma_reg_iova(r1, p + 8 * 4096) == UBDMA_BAD_IOVA); /* rounded: 4 pages */
	assert_int_equal(status_kb("VmLck") - lck0, 16);
	assert_int_equal(ubdma_reg_get(ctx, p + 4096, 100, UBDMA_UMEM_READ, &r2), 0);
	assert_ptr_equal(r1, r2);
	struct ubdma_rcache_stats s = stats(ctx);
	assert_int_equal(s.hits, 1);
	assert_int_equal(s.misses, 1);
	assert_int_equal(s.bytes_pinned, 4 * 4096);
	ubdma_reg_put(r1);
	ubdma_reg_put(r2);
	/* unreferenced: still cached, still wired */
	assert_int_equal(stats(ctx).entries, 1);
	assert_int_equal(status_kb("VmLck") - lck0, 16);
	assert_int_equal(ubdma_reg_get(ctx, p, 4096, RW, &r3), 0);
	assert_ptr_equal(r3, r1);
	assert_int_equal(stats(ctx).hits, 2);
	ubdma_reg_put(r3);
	assert_int_equal(ubdma_rcache_flush(ctx), 0);
	assert_int_equal(stats(ctx).entries, 0);
	assert_int_equal(status_kb("VmLck"), lck0);
	munmap(p, 16 * 4096);
}

/* Overlapping entries merge whatever their intent; touching ones only with the same intent. */
static void test_merge(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon_map(32 * 4096);
	ubdma_reg_t *a, *b, *c, *d, *e;

	assert_int_equal(ubdma_reg_get(ctx, p, 2 * 4096, UBDMA_UMEM_READ, &a), 0);
	assert_int_equal(ubdma_reg_get(ctx, p + 4096, 4 * 4096, UBDMA_UMEM_WRITE, &b), 0);
	assert_ptr_not_equal(a, b);
	struct ubdma_rcache_stats s = stats(ctx);
	assert_int_equal(s.merges, 1);
	assert_int_equal(s.entries, 1);
	assert_int_equal(s.held_invalid, 1); /* a: out of the cache, valid for its holder */
	assert_true(ubdma_reg_iova(a, p) == (uint64_t)(uintptr_t)p);
	/* the merged entry serves both intents over the union */
	assert_int_equal(ubdma_reg_get(ctx, p, 5 * 4096, RW, &c), 0);
	assert_ptr_equal(c, b);
	/* touching, same intent (RW): merged */
	assert_int_equal(ubdma_reg_get(ctx, p + 5 * 4096, 4096, RW, &d), 0);
	assert_int_equal(stats(ctx).merges, 2);
	assert_int_equal(stats(ctx).entries, 1);
	/* touching, other intent: a separate entry */
	assert_int_equal(ubdma_reg_get(ctx, p + 6 * 4096, 4096, UBDMA_UMEM_READ, &e), 0);
	assert_int_equal(stats(ctx).entries, 2);
	assert_int_equal(stats(ctx).merges, 2);
	ubdma_reg_put(a);
	assert_int_equal(stats(ctx).held_invalid, 1); /* b (= c): replaced when d merged */
	ubdma_reg_put(b);
	ubdma_reg_put(c);
	assert_int_equal(stats(ctx).held_invalid, 0);
	ubdma_reg_put(d);
	ubdma_reg_put(e);
	/* touching the request's start from below ([p, p + 6), RW), behind an entry that starts
	 * there ([p + 6, p + 7), READ): both merged (the miss's plan looks below the entry at the
	 * start only when that entry starts where the request does) */
	ubdma_reg_t *f;
	void *fa = NULL;
	size_t fl = 0;
	assert_int_equal(ubdma_reg_get(ctx, p + 6 * 4096, 2 * 4096, RW, &f), 0);
	assert_int_equal(ubdma_reg_range(f, &fa, &fl), 0);
	assert_ptr_equal(fa, p);
	assert_int_equal(fl, 8 * 4096);
	assert_int_equal(stats(ctx).merges, 4);
	assert_int_equal(stats(ctx).entries, 1);
	ubdma_reg_put(f);
	ubdma_rcache_flush(ctx);
	munmap(p, 32 * 4096);
}

/*
 * The look-up's guess: a range at or above the last entry's start skips the search (a miss's
 * usual place).  Hits below the last entry, a range past the last entry's end, one overlapping
 * it, one below every entry and one the last entry holds with too little intent each get the
 * answer the search gives; each fails if the guess is taken unchecked.
 */
static void test_lookup_order(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon_map(64 * 4096);
	ubdma_reg_t *r[8], *h, *m, *lo, *ro;
	void *ma = NULL;
	size_t ml = 0;

	for (int i = 0; i < 8; i++) /* one page each, a page apart: nothing touches */
		assert_int_equal(ubdma_reg_get(ctx, p + (4 + 2 * i) * 4096, 4096, RW, &r[i]), 0);
	assert_int_equal(stats(ctx).entries, 8);
	for (int i = 7; i >= 0; i--) { /* down, then up: every one a hit on its own entry */
		assert_int_equal(ubdma_reg_get(ctx, p + (4 + 2 * i) * 4096 + 100, 8, RW, &h), 0);
		assert_ptr_equal(h, r[i]);
		ubdma_reg_put(h);
	}
	for (int i = 0; i < 8; i++) {
		assert_int_equal(ubdma_reg_get(ctx, p + (4 + 2 * i) * 4096, 4096, UBDMA_UMEM_READ, &h), 0);
		assert_ptr_equal(h, r[i]);
		ubdma_reg_put(h);
	}
	struct ubdma_rcache_stats s = stats(ctx);
	assert_int_equal(s.hits, 16);
	assert_int_equal(s.misses, 8);
	/* at the last entry's start but past its end: a miss, merged with it */
	assert_int_equal(ubdma_reg_get(ctx, p + 18 * 4096, 2 * 4096, RW, &m), 0);
	assert_ptr_not_equal(m, r[7]);
	assert_int_equal(ubdma_reg_range(m, &ma, &ml), 0);
	assert_ptr_equal(ma, p + 18 * 4096);
	assert_int_equal(ml, 2 * 4096);
	s = stats(ctx);
	assert_int_equal(s.misses, 9);
	assert_int_equal(s.merges, 1);
	assert_int_equal(s.entries, 8);
	/* the new last entry answers inside it, and the one before is still found */
	assert_int_equal(ubdma_reg_get(ctx, p + 19 * 4096, 4096, RW, &h), 0);
	assert_ptr_equal(h, m);
	ubdma_reg_put(h);
	assert_int_equal(ubdma_reg_get(ctx, p + 16 * 4096, 4096, RW, &h), 0);
	assert_ptr_equal(h, r[6]);
	ubdma_reg_put(h);
	/* below every entry: a miss at the front, then a hit there */
	assert_int_equal(ubdma_reg_get(ctx, p, 4096, RW, &lo), 0);
	assert_int_equal(ubdma_reg_get(ctx, p, 4096, RW, &h), 0);
	assert_ptr_equal(h, lo);
	ubdma_reg_put(h);
	/* a READ entry last: a WRITE request at it is a miss (the union, RW, replaces it) */
	assert_int_equal(ubdma_reg_get(ctx, p + 40 * 4096, 4096, UBDMA_UMEM_READ, &ro), 0);
	assert_int_equal(ubdma_reg_get(ctx, p + 40 * 4096, 4096, UBDMA_UMEM_WRITE, &h), 0);
	assert_ptr_not_equal(h, ro);
	s = stats(ctx);
	assert_int_equal(s.hits, 19);
	assert_int_equal(s.misses, 12);
	assert_int_equal(s.entries, 10);
	ubdma_reg_put(h);
	ubdma_reg_put(ro);
	ubdma_reg_put(lo);
	ubdma_reg_put(m);
	for (int i = 0; i < 8; i++)
		ubdma_reg_put(r[i]);
	ubdma_rcache_flush(ctx);
	munmap(p, 64 * 4096);
}

/* A READ entry does not answer a WRITE request. */
static void test_intent(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon_map(4 * 4096);
	ubdma_reg_t *r, *w, *r2;

	assert_int_equal(ubdma_reg_get(ctx, p, 4096, UBDMA_UMEM_READ, &r), 0);
	assert_int_equal(ubdma_reg_get(ctx, p, 4096, UBDMA_UMEM_WRITE, &w), 0);
	assert_ptr_not_equal(r, w);
	assert_int_equal(stats(ctx).misses, 2);
	assert_int_equal(ubdma_reg_get(ctx, p, 4096, UBDMA_UMEM_READ, &r2), 0);
	assert_ptr_equal(r2, w);
	ubdma_reg_put(r);
	ubdma_reg_put(w);
	ubdma_reg_put(r2);
	ubdma_rcache_flush(ctx);
	munmap(p, 4 * 4096);
}

/* Entry limit: the least recently used unreferenced entry goes (CLOCK gives hits a chance). */
static void test_evict_lru(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon_map(16 * 4096);
	ubdma_reg_t *r;
	char *A = p, *B = p + 2 * 4096, *C = p + 4 * 4096, *D = p + 6 * 4096;

	assert_int_equal(ubdma_rcache_set_limits(ctx, 0, 3, 0), 0);
	char *bufs[] = { A, B, C };
	for (int i = 0; i < 3; i++) {
		assert_int_equal(ubdma_reg_get(ctx, bufs[i], 4096, RW, &r), 0);
		ubdma_reg_put(r);
	}
	assert_int_equal(ubdma_reg_get(ctx, A, 4096, RW, &r), 0); /* A used again */
	ubdma_reg_put(r);
	assert_int_equal(ubdma_reg_get(ctx, D, 4096, RW, &r), 0); /* evicts B */
	ubdma_reg_put(r);
	struct ubdma_rcache_stats s = stats(ctx);
	assert_int_equal(s.evictions, 1);
	assert_int_equal(s.entries, 3);
	uint64_t m = s.misses;
	assert_int_equal(ubdma_reg_get(ctx, A, 4096, RW, &r), 0);
	ubdma_reg_put(r);
	assert_int_equal(ubdma_reg_get(ctx, C, 4096, RW, &r), 0);
	ubdma_reg_put(r);
	assert_int_equal(stats(ctx).misses, m); /* A and C stayed */
	assert_int_equal(ubdma_reg_get(ctx, B, 4096, RW, &r), 0);
	ubdma_reg_put(r);
	assert_int_equal(stats(ctx).misses, m + 1); /* B was the one evicted */
	ubdma_rcache_set_limits(ctx, 0, 0, 0);
	ubdma_rcache_flush(ctx);
	munmap(p, 16 * 4096);
}

/* Byte limit: eviction; with everything referenced ENOMEM at once, not a hang. */
static void test_limit_bytes(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon_map(64 * 4096);
	ubdma_reg_t *r[4], *x;
	long lck0 = status_kb("VmLck");

	assert_int_equal(ubdma_rcache_set_limits(ctx, 8 * 4096, 0, 0), 0);
	assert_int_equal(ubdma_reg_get(ctx, p, 9 * 4096, RW, &x), ENOMEM); /* larger than the limit */
	for (int i = 0; i < 4; i++)
		assert_int_equal(ubdma_reg_get(ctx, p + i * 3 * 4096, 2 * 4096, RW, &r[i]), 0);
	assert_int_equal(ubdma_reg_get(ctx, p + 20 * 4096, 4096, RW, &x), ENOMEM);
	assert_int_equal(stats(ctx).limit_failures, 2);
	assert_int_equal(stats(ctx).bytes_pinned, 8 * 4096);
	ubdma_reg_put(r[1]);
	assert_int_equal(ubdma_reg_get(ctx, p + 20 * 4096, 4096, RW, &x), 0); /* evicts r[1] */
	assert_int_equal(stats(ctx).evictions, 1);
	assert_true(stats(ctx).bytes_pinned <= 8 * 4096);
	ubdma_reg_put(x);
	ubdma_reg_put(r[0]);
	ubdma_reg_put(r[2]);
	ubdma_reg_put(r[3]);
	/* lowering the limit evicts what is unreferenced at once */
	assert_int_equal(ubdma_rcache_set_limits(ctx, 4096, 0, 0), 0);
	assert_true(stats(ctx).bytes_pinned <= 4096);
	ubdma_rcache_set_limits(ctx, 0, 0, 0);
	ubdma_rcache_flush(ctx);
	assert_int_equal(status_kb("VmLck"), lck0);
	munmap(p, 64 * 4096);
}

/*
 * A limit lowered while entries are held is met as they are put (issue 15, rule 8): each put that
 * returns an entry to the cache alone evicts until the cache fits, without waiting for a miss.
 */
static void test_limit_lowered_while_held(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon_map(32 * 4096);
	ubdma_reg_t *r[4];

	for (int i = 0; i < 4; i++)
		assert_int_equal(ubdma_reg_get(ctx, p + i * 4 * 4096, 2 * 4096, RW, &r[i]), 0);
	assert_int_equal(stats(ctx).bytes_pinned, 8 * 4096);
	/* all held: nothing can go yet */
	assert_int_equal(ubdma_rcache_set_limits(ctx, 2 * 4096, 2, 0), 0);
	assert_int_equal(stats(ctx).bytes_pinned, 8 * 4096);
	assert_int_equal(stats(ctx).entries, 4);
	ubdma_reg_put(r[0]);
	assert_true(stats(ctx).bytes_pinned <= 6 * 4096); /* r[0] went at its put */
	ubdma_reg_put(r[1]);
	ubdma_reg_put(r[2]);
	assert_true(stats(ctx).bytes_pinned <= 2 * 4096);
	assert_true(stats(ctx).entries <= 2);
	assert_int_equal(ubdma_wire_count(p), 0);
	ubdma_reg_put(r[3]);
	assert_true(stats(ctx).bytes_pinned <= 2 * 4096);
	ubdma_rcache_set_limits(ctx, 0, 0, 0);
	ubdma_rcache_flush(ctx);
	munmap(p, 32 * 4096);
}

/* IOMMU-entry limit: ENOSPC when every entry is referenced. */
static void test_limit_iommu(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon_map(16 * 4096);
	ubdma_reg_t *a, *b, *c;

	assert_int_equal(ubdma_rcache_set_limits(ctx, 0, 0, 2), 0);
	assert_int_equal(ubdma_reg_get(ctx, p, 4096, RW, &a), 0);
	assert_int_equal(ubdma_reg_get(ctx, p + 2 * 4096, 4096, RW, &b), 0);
	assert_int_equal(ubdma_reg_get(ctx, p + 4 * 4096, 4096, RW, &c), ENOSPC);
	ubdma_reg_put(a);
	assert_int_equal(ubdma_reg_get(ctx, p + 4 * 4096, 4096, RW, &c), 0);
	assert_int_equal(stats(ctx).evictions, 1);
	ubdma_reg_put(b);
	ubdma_reg_put(c);
	ubdma_rcache_set_limits(ctx, 0, 0, 0);
	ubdma_rcache_flush(ctx);
	munmap(p, 16 * 4096);
}

/* Get, put, then change the memory with op; the entry must be gone before the next look-up. */
static void check_invalidated_by(ubdma_ctx_t *ctx, const char *what, char *p, size_t len,
				 int (*op)(char *p, size_t len))
{
	ubdma_reg_t *r;
	struct ubdma_rcache_stats s0, s1;

	assert_int_equal(ubdma_reg_get(ctx, p, len, RW, &r), 0);
	ubdma_reg_put(r);
	s0 = stats(ctx);
	assert_int_equal(op(p, len), 0);
	s1 = stats(ctx); /* no sleep: the look-up after op must already see it */
	if (s1.invalidations != s0.invalidations + 1)
		fail_msg("%s: %llu invalidations, expected %llu", what, (unsigned long long)s1.invalidations,
			 (unsigned long long)s0.invalidations + 1);
	assert_int_equal(s1.entries, s0.entries - 1);
}

static int op_munmap(char *p, size_t len)
{
	return munmap(p, len);
}

static int op_map_fixed(char *p, size_t len)
{
	return mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == p ? 0 : -1;
}

static char *remap_target;
static int op_mremap(char *p, size_t len)
{
	return mremap(p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, remap_target) == remap_target ? 0 : -1;
}

static int op_dontneed_locked(char *p, size_t len)
{
	return madvise(p, len, MADV_DONTNEED_LOCKED);
}

static void test_invalidate_uffd(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon_map(64 * 4096);
	long lck0 = status_kb("VmLck");

	if (!need_uffd(ctx, p + 60 * 4096)) {
		munmap(p, 64 * 4096);
		skip();
	}
	ubdma_rcache_flush(ctx);
	check_invalidated_by(ctx, "munmap", p, 4 * 4096, op_munmap);
	check_invalidated_by(ctx, "mmap MAP_FIXED", p + 8 * 4096, 4 * 4096, op_map_fixed);
	remap_target = p + 40 * 4096;
	check_invalidated_by(ctx, "mremap", p + 16 * 4096, 4 * 4096, op_mremap);
	check_invalidated_by(ctx, "madvise(MADV_DONTNEED_LOCKED)", p + 24 * 4096, 4 * 4096, op_dontneed_locked);
	struct ubdma_rcache_stats s = stats(ctx);
	assert_true(s.events_unmap >= 2 && s.events_remap == 1 && s.events_remove == 1);
	/* plain DONTNEED and FREE are refused on wired (mlocked) memory: nothing is released */
	ubdma_reg_t *r;
	assert_int_equal(ubdma_reg_get(ctx, p + 28 * 4096, 4096, RW, &r), 0);
	assert_int_equal(madvise(p + 28 * 4096, 4096, MADV_DONTNEED), -1);
	assert_int_equal(errno, EINVAL);
	ubdma_reg_put(r);
	/* the moved pages do not stay locked once the cache let go */
	ubdma_rcache_flush(ctx);
	assert_int_equal(smaps_locked_kb(remap_target, 4 * 4096), 0);
	assert_int_equal(status_kb("VmLck"), lck0);
	munmap(p, 64 * 4096);
}

/* The heap shrinking under a cached buffer (brk) is an unmap. */
static void test_invalidate_brk(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *top = sbrk(0), *p;

	if (!need_uffd(ctx, anon_map(4096)))
		skip();
	/* malloc must not move the break while we own its top: give its heap slack first */
	mallopt(M_TOP_PAD, 64 * MB);
	free(malloc(64));
	top = sbrk(0);
	if (sbrk(1 * MB) == (void *)-1)
		skip();
	p = (char *)(((uintptr_t)top + 4095) & ~4095UL);
	memset(p, 1, 256 * KB);
	ubdma_reg_t *r;
	assert_int_equal(ubdma_reg_get(ctx, p, 256 * KB, RW, &r), 0);
	ubdma_reg_put(r);
	uint64_t inv = stats(ctx).invalidations;
	assert_true(sbrk(-(intptr_t)MB) != (void *)-1);
	assert_int_equal(stats(ctx).invalidations, inv + 1);
}

/* Invalidated while referenced: valid for the holder until put, never handed out again. */
static void test_invalidated_held(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon_map(8 * 4096);
	ubdma_reg_t *r, *r2;

	if (!need_uffd(ctx, p + 7 * 4096))
		skip();
	assert_int_equal(ubdma_reg_get(ctx, p, 4 * 4096, RW, &r), 0);
	assert_int_equal(op_map_fixed(p, 4 * 4096), 0);
	assert_true(ubdma_reg_iova(r, p + 4096) == (uint64_t)(uintptr_t)(p + 4096));
	struct ubdma_rcache_stats s = stats(ctx);
	assert_int_equal(s.held_invalid, 1);
	assert_int_equal(ubdma_reg_get(ctx, p, 4 * 4096, RW, &r2), 0);
	assert_ptr_not_equal(r2, r);
	ubdma_reg_put(r);
	assert_int_equal(stats(ctx).held_invalid, 0);
	ubdma_reg_put(r2);
	ubdma_rcache_flush(ctx);
	munmap(p, 8 * 4096);
}

/*
 * The soak's case (issue 10): neighbouring buffers A and B, one entry merged over both (touching,
 * same intent) and held for B; the application invalidates A and maps other memory there.  A's
 * pages leave the translation map at once, though B's holder keeps every IOVA of the entry: under
 * vfio or phys the new memory would otherwise translate to A's old frames.
 */
static void test_invalidate_merged_held(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon_map(8 * 4096), *a = p, *b = p + 4 * 4096;
	ubdma_reg_t *ra, *rb;
	long lck0 = status_kb("VmLck");

	assert_int_equal(ubdma_reg_get(ctx, a, 4 * 4096, RW, &ra), 0);
	ubdma_reg_put(ra);
	assert_int_equal(ubdma_reg_get(ctx, b, 4 * 4096, RW, &rb), 0);
	assert_int_equal(stats(ctx).merges, 1);
	assert_true(ubdma_reg_iova(rb, a) != UBDMA_BAD_IOVA); /* the entry covers A too */
	assert_int_equal(ubdma_reg_invalidate(ctx, a, 4 * 4096), 0);
	assert_int_equal(op_map_fixed(a, 4 * 4096), 0);
	assert_true(ubdma_vtoiova(ctx, a) == UBDMA_BAD_IOVA);
	assert_true(ubdma_vtoiova(ctx, a + 3 * 4096) == UBDMA_BAD_IOVA);
	assert_true(ubdma_reg_iova(rb, b) == (uint64_t)(uintptr_t)b); /* the holder's view */
	assert_int_equal(stats(ctx).held_invalid, 1);
	ubdma_reg_put(rb);
	assert_int_equal(stats(ctx).held_invalid, 0);
	ubdma_rcache_flush(ctx);
	assert_int_equal(status_kb("VmLck"), lck0);
	munmap(p, 8 * 4096);
}

/* Explicit invalidation, and memory userfaultfd cannot watch (a file mapping). */
static void test_invalidate_explicit(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char path[] = "/var/tmp/ubdma-rcache-XXXXXX";
	int fd = mkstemp(path);
	ubdma_reg_t *r, *r2;
	struct statfs sfs;

	if (fd < 0)
		SKIP_WHY("no /var/tmp for a file mapping");
	unlink(path);
	/* tmpfs files are shmem, which userfaultfd watches: only a disk file is unmonitored */
	int on_tmpfs = fstatfs(fd, &sfs) == 0 && sfs.f_type == TMPFS_MAGIC;
	assert_int_equal(ftruncate(fd, 4 * 4096), 0);
	char *f = mmap(NULL, 4 * 4096, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(f != MAP_FAILED);
	assert_int_equal(ubdma_reg_get(ctx, f, 4 * 4096, UBDMA_UMEM_READ, &r), 0);
	ubdma_reg_put(r);
	struct ubdma_rcache_stats s = stats(ctx);
	if (s.monitor_active && !on_tmpfs && s.unmonitored != 1)
		fail_msg("a file mapping should be unmonitored (%s)", s.monitor);
	assert_int_equal(ubdma_reg_invalidate(ctx, f + 4096, 1), 0);
	s = stats(ctx);
	assert_int_equal(s.entries, 0);
	assert_int_equal(s.unmonitored, 0);
	assert_int_equal(ubdma_reg_get(ctx, f, 4096, UBDMA_UMEM_READ, &r2), 0);
	assert_int_equal(stats(ctx).misses, s.misses + 1);
	ubdma_reg_put(r2);
	ubdma_rcache_flush(ctx);
	munmap(f, 4 * 4096);
	close(fd);
}

/* The explicit-only monitor: chosen by the API, EBUSY while entries are cached. */
static void test_monitor_choice(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon_map(4 * 4096);
	ubdma_reg_t *r;

	assert_int_equal(ubdma_reg_get(ctx, p, 4096, RW, &r), 0);
	ubdma_reg_put(r);
	assert_int_equal(ubdma_rcache_set_monitor(ctx, UBDMA_RCACHE_MONITOR_EXPLICIT), EBUSY);
	ubdma_rcache_flush(ctx);
	assert_int_equal(ubdma_rcache_set_monitor(ctx, UBDMA_RCACHE_MONITOR_EXPLICIT), 0);
	assert_int_equal(ubdma_reg_get(ctx, p, 4096, RW, &r), 0);
	ubdma_reg_put(r);
	struct ubdma_rcache_stats s = stats(ctx);
	assert_int_equal(s.monitor_active, 0);
	assert_non_null(strstr(s.monitor, "explicit"));
	assert_int_equal(s.unmonitored, 1);
	/* unwatched: munmap is not seen, only ubdma_reg_invalidate() */
	assert_int_equal(op_map_fixed(p, 4096), 0);
	assert_int_equal(stats(ctx).entries, 1);
	assert_int_equal(ubdma_reg_invalidate(ctx, p, 4096), 0);
	assert_int_equal(stats(ctx).entries, 0);
	assert_int_equal(ubdma_rcache_set_monitor(ctx, UBDMA_RCACHE_MONITOR_UFFD), 0);
	char buf[4096];
	FILE *m = fmemopen(buf, sizeof(buf), "w");
	assert_int_equal(ubdma_rcache_stats_print(ctx, m), 0);
	fclose(m);
	assert_non_null(strstr(buf, "rcache hits:"));
	munmap(p, 4 * 4096);
}

/*
 * The classic bug: register, munmap, map other pages at the same address, look up again.  The
 * translation must be the new pages' (phys backend: the physical address, read from pagemap).
 * The old pages stay allocated (their memfd is open), so the two addresses must differ.
 */
static void stale_case(int explicit_monitor)
{
	ubdma_ctx_t *ctx;
	ubdma_reg_t *r;
	size_t len = 2 * MB;

	if (!hugepages_ensure(2048, 2))
		SKIP_WHY("no two free 2 MiB hugepages");
	if (ubdma_ctx_open(UBDMA_BACKEND_PHYS, &ctx))
		SKIP_WHY("no phys backend: %s", ubdma_last_error());
	if (explicit_monitor)
		assert_int_equal(ubdma_rcache_set_monitor(ctx, UBDMA_RCACHE_MONITOR_EXPLICIT), 0);
	int fa = memfd_create("old", MFD_HUGETLB | MFD_CLOEXEC), fb = memfd_create("new", MFD_HUGETLB | MFD_CLOEXEC);
	assert_true(fa >= 0 && fb >= 0);
	assert_int_equal(ftruncate(fa, (off_t)len), 0);
	assert_int_equal(ftruncate(fb, (off_t)len), 0);
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fa, 0);
	assert_true(p != MAP_FAILED);
	memset(p, 1, len);
	assert_int_equal(ubdma_reg_get(ctx, p + 4096, 8192, RW, &r), 0);
	uint64_t old_pa = pagemap_pa(p + 4096);
	assert_true(old_pa != 0);
	assert_true(ubdma_reg_iova(r, p + 4096) == old_pa);
	ubdma_reg_put(r);
	if (!explicit_monitor && !stats(ctx).monitor_active)
		SKIP_WHY("no userfaultfd monitor: %s", stats(ctx).monitor);
	assert_int_equal(munmap(p, len), 0);
	char *q = mmap(p, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fb, 0);
	assert_ptr_equal(q, p);
	memset(q, 2, len);
	uint64_t new_pa = pagemap_pa(q + 4096);
	assert_true(new_pa != 0 && new_pa != old_pa);
	assert_int_equal(ubdma_reg_get(ctx, q + 4096, 8192, RW, &r), 0);
	uint64_t got = ubdma_reg_iova(r, q + 4096);
	ubdma_reg_put(r);
	if (explicit_monitor) {
		/* without a monitor the cache cannot know: stale until told */
		assert_true(got == old_pa);
		assert_int_equal(ubdma_reg_invalidate(ctx, q, len), 0);
		assert_int_equal(ubdma_reg_get(ctx, q + 4096, 8192, RW, &r), 0);
		got = ubdma_reg_iova(r, q + 4096);
		ubdma_reg_put(r);
	}
	assert_true(got == new_pa);
	ubdma_ctx_close(ctx);
	munmap(q, len);
	close(fa);
	close(fb);
}

static void test_stale_translation_phys(void **state)
{
	(void)state;
	stale_case(0);
}

static void test_stale_translation_explicit(void **state)
{
	(void)state;
	stale_case(1);
}

/* A load of [p + 4096, +8192) on the root tag: its first segment's address. */
static uint64_t load_addr(ubdma_ctx_t *ctx, char *p)
{
	ubdma_tag_t *tag = ubdma_ctx_tag(ctx);
	ubdma_map_t *map;
	ubdma_seg_t segs[4];
	int nseg = 0;

	assert_int_equal(ubdma_map_create(tag, 0, &map), 0);
	assert_int_equal(ubdma_map_load_sg(tag, map, p + 4096, 8192, segs, &nseg, UBDMA_NOWAIT), 0);
	assert_true(nseg >= 1);
	ubdma_map_unload(tag, map);
	assert_int_equal(ubdma_map_destroy(tag, map), 0);
	return segs[0].ds_addr;
}

/*
 * The same case, read through the translation map (ubdma_vtoiova(), bus_dma loads) instead of
 * ubdma_reg_get(), with no call into the cache between the unmap and the read: the map must not
 * show the old frame, neither for a cached entry nor for one invalidated while held (the holder
 * keeps its IOVA through ubdma_reg_iova(), but new memory at the address is not its memory).
 */
static void stale_xlate_case(int held)
{
	ubdma_ctx_t *ctx;
	ubdma_reg_t *r;
	size_t len = 2 * MB;

	if (!hugepages_ensure(2048, 2))
		SKIP_WHY("no two free 2 MiB hugepages");
	if (ubdma_ctx_open(UBDMA_BACKEND_PHYS, &ctx))
		SKIP_WHY("no phys backend: %s", ubdma_last_error());
	int fa = memfd_create("old", MFD_HUGETLB | MFD_CLOEXEC), fb = memfd_create("new", MFD_HUGETLB | MFD_CLOEXEC);
	assert_true(fa >= 0 && fb >= 0);
	assert_int_equal(ftruncate(fa, (off_t)len), 0);
	assert_int_equal(ftruncate(fb, (off_t)len), 0);
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fa, 0);
	assert_true(p != MAP_FAILED);
	memset(p, 1, len);
	assert_int_equal(ubdma_reg_get(ctx, p + 4096, 8192, RW, &r), 0);
	uint64_t old_pa = pagemap_pa(p + 4096);
	assert_true(ubdma_vtoiova(ctx, p + 4096) == old_pa);
	assert_true(load_addr(ctx, p) == old_pa);
	if (!held)
		ubdma_reg_put(r);
	if (!stats(ctx).monitor_active)
		SKIP_WHY("no userfaultfd monitor: %s", stats(ctx).monitor);
	assert_int_equal(munmap(p, len), 0);
	char *q = mmap(p, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fb, 0);
	assert_ptr_equal(q, p);
	memset(q, 2, len);
	uint64_t new_pa = pagemap_pa(q + 4096);
	assert_true(new_pa != 0 && new_pa != old_pa);
	/* nothing registers the new pages: the load bounces, ubdma_vtoiova() says unregistered;
	 * never the old frame (the load first: each must settle on its own) */
	uint64_t v = load_addr(ctx, q);
	if (v == old_pa)
		fail_msg("bus_dma load after munmap: the old frame %#llx", (unsigned long long)old_pa);
	v = ubdma_vtoiova(ctx, q + 4096);
	if (v != UBDMA_BAD_IOVA)
		fail_msg("ubdma_vtoiova after munmap: %#llx (old frame %#llx)", (unsigned long long)v,
			 (unsigned long long)old_pa);
	if (held) {
		assert_true(ubdma_reg_iova(r, q + 4096) == old_pa); /* the holder's view is unchanged */
		ubdma_reg_put(r);
	}
	assert_int_equal(stats(ctx).held_invalid, 0);
	ubdma_ctx_close(ctx);
	munmap(q, len);
	close(fa);
	close(fb);
}

static void test_stale_xlate_cached(void **state)
{
	(void)state;
	stale_xlate_case(0);
}

static void test_stale_xlate_held(void **state)
{
	(void)state;
	stale_xlate_case(1);
}

/* fork: the child has none of the parent's registrations (nor their memory), an empty cache. */
static void test_fork(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon_map(4 * 4096);
	ubdma_reg_t *r;

	assert_int_equal(ubdma_reg_get(ctx, p, 4 * 4096, RW, &r), 0);
	pid_t pid = fork();
	if (pid == 0) {
		struct ubdma_rcache_stats s;
		unsigned char v;
		char *c = anon_map(4096);
		int bad = 0;
		ubdma_rcache_stats(ctx, &s, sizeof(s));
		bad |= s.entries != 0 || s.bytes_pinned != 0;			/* nothing inherited */
		if (SANITIZED) /* TSan cannot start threads after a multi-threaded fork */
			bad |= ubdma_rcache_set_monitor(ctx, UBDMA_RCACHE_MONITOR_EXPLICIT) << 5;
		bad |= (mincore(p, 4096, &v) == 0) << 1;			/* not even the memory */
		bad |= (status_kb("VmLck") != 0) << 2;
		bad |= (ubdma_reg_get(ctx, c, 4096, RW, &r) != 0) << 3;	/* works for its own */
		bad |= (!bad && ubdma_reg_iova(r, c) != (uint64_t)(uintptr_t)c) << 4;
		_exit(bad);
	}
	int st = 0;
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(stats(ctx).entries, 1); /* the parent's cache is intact */
	ubdma_reg_put(r);
	ubdma_rcache_flush(ctx);
	munmap(p, 4 * 4096);
}

/* The hit path makes no system call: syscall user dispatch turns any into SIGSYS. */
#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#endif
static volatile char sud_selector;
static volatile int sud_calls;
static void sud_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	sud_selector = 0; /* allow: rt_sigreturn is a system call too */
	sud_calls++;
}

static void test_hit_no_syscall(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon_map(4 * 4096);
	ubdma_reg_t *r;
	struct sigaction sa = { .sa_sigaction = sud_handler, .sa_flags = SA_SIGINFO }, old;

	if (SANITIZED)
		SKIP_WHY("sanitizer runtimes make system calls of their own");
	assert_int_equal(ubdma_reg_get(ctx, p, 4 * 4096, RW, &r), 0);
	ubdma_reg_put(r);
	sigaction(SIGSYS, &sa, &old);
	if (prctl(PR_SET_SYSCALL_USER_DISPATCH, 1, 0, 0, &sud_selector))
		SKIP_WHY("no syscall user dispatch (Linux >= 5.11)");
	sud_calls = 0;
	for (int i = 0; i < 1000; i++) {
		sud_selector = 1; /* block */
		int err = ubdma_reg_get(ctx, p + 4096, 4096, RW, &r);
		if (!err)
			ubdma_reg_put(r);
		sud_selector = 0;
		if (err)
			break;
	}
	prctl(PR_SET_SYSCALL_USER_DISPATCH, 0, 0, 0, 0);
	sigaction(SIGSYS, &old, NULL);
	assert_int_equal(sud_calls, 0);
	ubdma_rcache_flush(ctx);
	munmap(p, 4 * 4096);
}

/* --------------------------------------------------- threads and churn */

#define NBUF 16
struct race {
	ubdma_ctx_t *ctx;
	char *base;
	size_t bufsz;
	long iters;
	int stop;
	long errors, gets, efaults, eagains;
	int first_err;
	char why[300]; /* ubdma_last_error() of an unexpected failure */
};

static void *race_worker(void *arg)
{
	struct race *rs = arg;
	unsigned seed = (unsigned)(uintptr_t)&seed;

	for (long i = 0; i < rs->iters && !__atomic_load_n(&rs->stop, __ATOMIC_RELAXED); i++) {
		char *b = rs->base + (size_t)(rand_r(&seed) % NBUF) * rs->bufsz;
		size_t off = (size_t)(rand_r(&seed) % 8) * 512;
		ubdma_reg_t *r;
		int err = ubdma_reg_get(rs->ctx, b + off, rs->bufsz - off, RW, &r);
		if (err == 0) {
			if (ubdma_reg_iova(r, b + off) != (uint64_t)(uintptr_t)(b + off))
				__atomic_fetch_add(&rs->errors, 1, __ATOMIC_RELAXED);
			ubdma_reg_put(r);
			__atomic_fetch_add(&rs->gets, 1, __ATOMIC_RELAXED);
		} else if (err == EFAULT) {
			__atomic_fetch_add(&rs->efaults, 1, __ATOMIC_RELAXED);
		} else if (err == EAGAIN) {
			__atomic_fetch_add(&rs->eagains, 1, __ATOMIC_RELAXED);
		} else {
			/* documented for a range another thread unmaps meanwhile: EFAULT (seen unmapped),
			 * EAGAIN (kept changing); nothing else fits these limits (docs/rcache.md) */
			if (__atomic_fetch_add(&rs->errors, 1, __ATOMIC_RELAXED) == 0) {
				snprintf(rs->why, sizeof(rs->why), "%s", ubdma_last_error());
				__atomic_store_n(&rs->first_err, err, __ATOMIC_RELEASE);
			}
		}
	}
	return NULL;
}

/*
 * A translation-map reader (ubdma_vtoiova(), bus_dma loads) settling the monitor's news, holding
 * a registration of the buffer it reads now and then (so that some are invalidated while held).
 */
static void *race_reader(void *arg)
{
	struct race *rs = arg;
	ubdma_tag_t *tag = NULL;
	unsigned seed = 11;
	ubdma_map_t *map;
	ubdma_seg_t seg[2];
	int nseg;

	/* a tag of its own: its bounce pages go with it, so VmLck comes back */
	if (ubdma_tag_create(ubdma_ctx_tag(rs->ctx), 1, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, 4096, 2, 4096, 0, &tag) ||
	    ubdma_map_create(tag, 0, &map)) {
		__atomic_fetch_add(&rs->errors, 1, __ATOMIC_RELAXED);
		return NULL;
	}
	while (!__atomic_load_n(&rs->stop, __ATOMIC_RELAXED)) {
		char *b = rs->base + (size_t)(rand_r(&seed) % NBUF) * rs->bufsz + 4096;
		ubdma_reg_t *r = NULL;
		if (rand_r(&seed) % 2 && ubdma_reg_get(rs->ctx, b, 4096, RW, &r))
			r = NULL; /* unmapped meanwhile, or no room: read unregistered */
		uint64_t v = ubdma_vtoiova(rs->ctx, b);
		if (v != UBDMA_BAD_IOVA && v != (uint64_t)(uintptr_t)b)
			__atomic_fetch_add(&rs->errors, 1, __ATOMIC_RELAXED);
		/* the buffer may be unmapped under the bounce copy-in: load, never sync */
		if (ubdma_map_load_sg(tag, map, b, 4096, seg, &nseg, UBDMA_NOWAIT) == 0)
			ubdma_map_unload(tag, map);
		ubdma_reg_put(r);
	}
	ubdma_map_destroy(tag, map);
	ubdma_tag_destroy(tag);
	return NULL;
}

static void *race_churn(void *arg)
{
	struct race *rs = arg;
	unsigned seed = 7;

	while (!__atomic_load_n(&rs->stop, __ATOMIC_RELAXED)) {
		char *b = rs->base + (size_t)(rand_r(&seed) % NBUF) * rs->bufsz;
		if (rand_r(&seed) & 1) {
			op_map_fixed(b, rs->bufsz); /* replace in one step */
		} else {
			munmap(b, rs->bufsz); /* a gap: gets may see EFAULT */
			op_map_fixed(b, rs->bufsz);
		}
		usleep(100);
	}
	return NULL;
}

static void run_race(ubdma_ctx_t *ctx, long iters, int nworkers)
{
	struct race rs = { .ctx = ctx, .bufsz = 64 * KB, .iters = iters };
	pthread_t w[4], c, rd;
	long lck0 = status_kb("VmLck");

	rs.base = anon_map(NBUF * rs.bufsz);
	assert_non_null(rs.base);
	assert_int_equal(ubdma_rcache_set_limits(ctx, 8 * rs.bufsz, 0, 0), 0); /* evictions too */
	pthread_create(&c, NULL, race_churn, &rs);
	pthread_create(&rd, NULL, race_reader, &rs);
	for (int i = 0; i < nworkers; i++)
		pthread_create(&w[i], NULL, race_worker, &rs);
	for (int i = 0; i < nworkers; i++)
		pthread_join(w[i], NULL);
	__atomic_store_n(&rs.stop, 1, __ATOMIC_RELAXED);
	pthread_join(c, NULL);
	pthread_join(rd, NULL);
	if (rs.errors) {
		struct ubdma_rcache_stats e = stats(ctx);
		fail_msg("%ld failed look-ups, the first with %s (%s); %llu bytes pinned, %llu entries, %llu "
			 "held invalid", rs.errors, strerror(rs.first_err), rs.why, (unsigned long long)e.bytes_pinned,
			 (unsigned long long)e.entries, (unsigned long long)e.held_invalid);
	}
	assert_true(rs.gets > 0);
	struct ubdma_rcache_stats s = stats(ctx);
	/* the soak's figures for the notes: look-ups that found the buffer, and the documented
	 * answers for one unmapped under them */
	print_message("UBDMA_RCACHE_RACE look-ups=%ld ok=%ld efault=%ld eagain=%ld evictions=%llu invalidations=%llu\n",
		      rs.gets + rs.efaults + rs.eagains, rs.gets, rs.efaults, rs.eagains,
		      (unsigned long long)s.evictions, (unsigned long long)s.invalidations);
	assert_int_equal(s.held_invalid, 0);
	assert_true(s.bytes_pinned <= 8 * rs.bufsz);
	ubdma_rcache_flush(ctx);
	ubdma_rcache_set_limits(ctx, 0, 0, 0);
	munmap(rs.base, NBUF * rs.bufsz);
	assert_int_equal(stats(ctx).bytes_pinned, 0);
	assert_int_equal(status_kb("VmLck"), lck0);
}

static void test_threads_get_put_munmap(void **state)
{
	run_race(*state, 20000, 3);
}

/*
 * Churn: get / put cycles over buffers of mixed sizes (4 KiB - 1 MiB) with a working set
 * larger than the byte limit, the buffers unmapped and mapped again now and then.  Afterwards
 * VmLck and VmPin are where they started.
 */
static void churn(ubdma_ctx_t *ctx, long cycles)
{
	enum { N = 24 };
	static const size_t sizes[] = { 4 * KB, 16 * KB, 64 * KB, 256 * KB, 1 * MB };
	char *buf[N];
	size_t len[N];
	long lck0 = status_kb("VmLck"), pin0 = status_kb("VmPin");
	unsigned seed = 42;
	ubdma_reg_t *held[4] = { 0 };

	for (int i = 0; i < N; i++) {
		len[i] = sizes[i % 5];
		buf[i] = anon_map(len[i]);
		assert_non_null(buf[i]);
	}
	assert_int_equal(ubdma_rcache_set_limits(ctx, 2 * MB, 0, 0), 0);
	for (long c = 0; c < cycles; c++) {
		int i = rand_r(&seed) % N;
		ubdma_reg_t *r;
		if (rand_r(&seed) % 1000 == 0) {
			munmap(buf[i], len[i]);
			buf[i] = anon_map(len[i]);
		}
		int err = ubdma_reg_get(ctx, buf[i], len[i], (c & 1) ? RW : UBDMA_UMEM_READ, &r);
		if (err == ENOMEM)
			continue; /* everything referenced: allowed */
		assert_int_equal(err, 0);
		/* keep a few references across cycles so eviction meets referenced entries */
		int h = rand_r(&seed) % 4;
		ubdma_reg_put(held[h]);
		held[h] = r;
	}
	for (int h = 0; h < 4; h++)
		ubdma_reg_put(held[h]);
	struct ubdma_rcache_stats s = stats(ctx);
	assert_true(s.hits > 0 && s.misses > 0 && s.evictions > 0);
	ubdma_rcache_flush(ctx);
	for (int i = 0; i < N; i++)
		munmap(buf[i], len[i]);
	ubdma_rcache_set_limits(ctx, 0, 0, 0);
	assert_int_equal(stats(ctx).bytes_pinned, 0);
	assert_int_equal(status_kb("VmLck"), lck0);
	assert_int_equal(status_kb("VmPin"), pin0);
}

static void test_churn(void **state)
{
	churn(*state, 100000);
}

#ifdef RCACHE_SOAK
static void test_soak_churn(void **state)
{
	churn(*state, 1000000);
}

static void test_soak_threads(void **state)
{
	run_race(*state, 300000, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_soak_churn, setup_va, teardown),
		cmocka_unit_test_setup_teardown(test_soak_threads, setup_va, teardown),
	};
	return cmocka_run_group_tests_name("rcache_soak", tests, NULL, NULL);
}
#else
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_args, setup_va, teardown),
		cmocka_unit_test_setup_teardown(test_hit_miss, setup_va, teardown),
		cmocka_unit_test_setup_teardown(test_merge, setup_va, teardown),
		cmocka_unit_test_setup_teardown(test_lookup_order, setup_va, teardown),
		cmocka_unit_test_setup_teardown(test_intent, setup_va, teardown),
		cmocka_unit_test_setup_teardown(test_evict_lru, setup_va, teardown),
		cmocka_unit_test_setup_teardown(test_limit_bytes, setup_va, teardown),
		cmocka_unit_test_setup_teardown(test_limit_lowered_while_held, setup_va, teardown),
		cmocka_unit_test_setup_teardown(test_limit_iommu, setup_va, teardown),
		cmocka_unit_test_setup_teardown(test_invalidate_uffd, setup_va, teardown),
		cmocka_unit_test_setup_teardown(test_invalidate_brk, setup_va, teardown),
		cmocka_unit_test_setup_teardown(test_invalidated_held, setup_va, teardown),
		cmocka_unit_test_setup_teardown(test_invalidate_merged_held, setup_va, teardown),
		cmocka_unit_test_setup_teardown(test_invalidate_explicit, setup_va, teardown),
		cmocka_unit_test_setup_teardown(test_monitor_choice, setup_va, teardown),
		cmocka_unit_test(test_stale_translation_phys),
		cmocka_unit_test(test_stale_translation_explicit),
		cmocka_unit_test(test_stale_xlate_cached),
		cmocka_unit_test(test_stale_xlate_held),
		cmocka_unit_test_setup_teardown(test_fork, setup_va, teardown),
		cmocka_unit_test_setup_teardown(test_hit_no_syscall, setup_va, teardown),
		cmocka_unit_test_setup_teardown(test_threads_get_put_munmap, setup_va, teardown),
		cmocka_unit_test_setup_teardown(test_churn, setup_va, teardown),
	};
	return cmocka_run_group_tests_name("rcache", tests, NULL, NULL);
}
#endif
