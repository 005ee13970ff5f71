/*
 * test_rcache_domain.c - registration domains and memory events on the host, with a fake
 * registrar that keeps a table of its live keys: counts of reg / dereg calls, limits that evict
 * through dereg, invalidation that deregisters before the address is registered again, a held
 * entry that keeps its key until put, fault injection on reg and dereg (all or nothing: nothing
 * registered, wired or cached after a failure), switching domains, and the public memory events
 * (unmap, remap, remove; unsubscribing from a callback; calling the cache from one).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <ubdma/ubdma.h>

#include "../testutil.h"

#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif

#define PG 4096UL
#define RW (UBDMA_UMEM_READ | UBDMA_UMEM_WRITE)
#define MAXKEYS 256

/* ------------------------------------------------------------ the fake */

struct fkey {
	uintptr_t s, e;
	int flags;
	int live;
};

static struct fake {
	struct fkey k[MAXKEYS];
	int nreg, ndereg;
	int fail_reg_at;	/* reg call number (1-based) that fails, 0: none */
	int fail_reg_err;
	int fail_dereg_at;
	int overlap_at_reg;	/* a reg call found a live key over its range (stale reuse) */
	long locked_at_reg;	/* smaps Locked: kB of the range at the last reg call */
} F;

static int f_reg(void *arg, void *addr, size_t len, int flags, void **keyp)
{
	uintptr_t s = (uintptr_t)addr, e = s + len;

	assert_ptr_equal(arg, &F);
	F.nreg++;
	if (F.fail_reg_at && F.nreg == F.fail_reg_at)
		return F.fail_reg_err;
	for (int i = 0; i < MAXKEYS; i++)
		if (F.k[i].live && F.k[i].s < e && s < F.k[i].e)
			F.overlap_at_reg++;
	F.locked_at_reg = smaps_locked_kb(addr, len);
	for (int i = 0; i < MAXKEYS; i++)
		if (!F.k[i].live) {
			F.k[i] = (struct fkey){ s, e, flags, 1 };
			*keyp = &F.k[i];
			return 0;
		}
	return ENOSPC;
}

static int f_dereg(void *arg, void *key)
{
	struct fkey *k = key;

	assert_ptr_equal(arg, &F);
	assert_true(k >= F.k && k < F.k + MAXKEYS && k->live);
	F.ndereg++;
	k->live = 0; /* forgotten even when it "fails", as the cache does */
	if (F.fail_dereg_at && F.ndereg == F.fail_dereg_at)
		return EBUSY;
	return 0;
}

static int live_keys(void)
{
	int n = 0;

	for (int i = 0; i < MAXKEYS; i++)
		n += F.k[i].live;
	return n;
}

static const struct ubdma_registrar fake_ops = { .name = "fake", .reg = f_reg, .dereg = f_dereg };
/* The same fake claiming to pin, as ibv_reg_mr does: the cache only watches (docs/wire.md) */
static const struct ubdma_registrar fake_pins = { .name = "fake-pins", .reg = f_reg, .dereg = f_dereg,
						  .flags = UBDMA_REGISTRAR_PINS };

static struct ubdma_rcache_stats stats(ubdma_ctx_t *ctx)
{
	struct ubdma_rcache_stats s;

	assert_int_equal(ubdma_rcache_stats(ctx, &s, sizeof(s)), 0);
	return s;
}

static void *anon(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	memset(p, 0x5a, len);
	return p;
}

static int setup(void **state)
{
	ubdma_ctx_t *ctx;

	memset(&F, 0, sizeof(F));
	if (ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx))
		return -1;
	if (ubdma_rcache_set_registrar(ctx, &fake_ops, &F))
		return -1;
	*state = ctx;
	return 0;
}

static int setup_pins(void **state)
{
	ubdma_ctx_t *ctx;

	memset(&F, 0, sizeof(F));
	if (ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx))
		return -1;
	if (ubdma_rcache_set_registrar(ctx, &fake_pins, &F))
		return -1;
	*state = ctx;
	return 0;
}

static int teardown(void **state)
{
	ubdma_ctx_close(*state);
	/* closing the context deregisters whatever was left */
	assert_int_equal(live_keys(), 0);
	return 0;
}

static int uffd_or_skip(ubdma_ctx_t *ctx)
{
	struct ubdma_rcache_stats s = stats(ctx);

	if (!s.monitor_active) {
		fprintf(stderr, "SKIP: no userfaultfd monitor: %s\n", s.monitor);
		return 0;
	}
	return 1;
}

/* ------------------------------------------------------------ tests */

static void test_args(void **state)
{
	ubdma_ctx_t *ctx = *state;
	static const struct ubdma_registrar no_dereg = { .name = "half", .reg = f_reg };
	char *p = anon(4 * PG);
	ubdma_reg_t *r;

	assert_int_equal(ubdma_rcache_set_registrar(NULL, &fake_ops, &F), EINVAL);
	assert_int_equal(ubdma_rcache_set_registrar(ctx, &no_dereg, &F), EINVAL);
	assert_null(ubdma_reg_key(NULL));
	assert_null(ubdma_reg_registrar(NULL));
	assert_int_equal(ubdma_reg_range(NULL, NULL, NULL), EINVAL);
	/* busy while an entry is cached, and while an invalidated one is still held */
	assert_int_equal(ubdma_reg_get(ctx, p, PG, RW, &r), 0);
	assert_int_equal(ubdma_rcache_set_registrar(ctx, NULL, NULL), EBUSY);
	assert_int_equal(ubdma_reg_invalidate(ctx, p, PG), 0);
	assert_int_equal(ubdma_rcache_set_registrar(ctx, NULL, NULL), EBUSY);
	ubdma_reg_put(r);
	assert_int_equal(live_keys(), 0);
	/* empty: back to the IOMMU domain, whose key is a cookie with an IOVA */
	assert_int_equal(ubdma_rcache_set_registrar(ctx, NULL, NULL), 0);
	assert_string_equal(stats(ctx).domain, "iommu");
	assert_int_equal(ubdma_reg_get(ctx, p, PG, RW, &r), 0);
	assert_int_equal(F.nreg, 1);
	assert_true(ubdma_umem_iova(ubdma_reg_key(r), p) == ubdma_reg_iova(r, p));
	assert_null(ubdma_reg_registrar(r));
	ubdma_reg_put(r);
	assert_int_equal(ubdma_rcache_set_registrar(ctx, &fake_ops, &F), EBUSY);
	assert_int_equal(ubdma_rcache_flush(ctx), 0);
	assert_int_equal(ubdma_rcache_set_registrar(ctx, &fake_ops, &F), 0);
	assert_string_equal(stats(ctx).domain, "fake");
	assert_int_equal(ubdma_reg_get(ctx, p, PG, RW, &r), 0);
	assert_ptr_equal(ubdma_reg_registrar(r), &fake_ops);
	ubdma_reg_put(r);
	munmap(p, 4 * PG);
}

static void test_hit_miss_counts(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon(16 * PG);
	ubdma_reg_t *r, *r2;
	void *a;
	size_t len;

	assert_int_equal(ubdma_reg_get(ctx, p + 100, 2 * PG, UBDMA_UMEM_READ, &r), 0);
	assert_int_equal(F.nreg, 1);
	struct fkey *k = ubdma_reg_key(r);
	assert_non_null(k);
	/* rounded to pages, wired when the registrar is called, registered with the intent */
	assert_int_equal(k->s, (uintptr_t)p);
	assert_int_equal(k->e, (uintptr_t)p + 3 * PG);
	assert_int_equal(k->flags, UBDMA_UMEM_READ);
	assert_int_equal(F.locked_at_reg, 12);
	assert_int_equal(ubdma_reg_range(r, &a, &len), 0);
	assert_ptr_equal(a, p);
	assert_int_equal(len, 3 * PG);
	/* the address is its own IOVA in a registrar's domain */
	assert_true(ubdma_reg_iova(r, p + 5) == (uintptr_t)p + 5);
	assert_true(ubdma_reg_iova(r, p + 3 * PG) == UBDMA_BAD_IOVA);
	/* a hit: same registration, no reg call */
	assert_int_equal(ubdma_reg_get(ctx, p + PG, 10, UBDMA_UMEM_READ, &r2), 0);
	assert_ptr_equal(r2, r);
	assert_int_equal(F.nreg, 1);
	ubdma_reg_put(r2);
	ubdma_reg_put(r);
	assert_int_equal(live_keys(), 1); /* cached */
	/* more rights: a new registration over the union, the old one deregistered */
	assert_int_equal(ubdma_reg_get(ctx, p, PG, RW, &r), 0);
	assert_int_equal(F.nreg, 2);
	assert_int_equal(F.ndereg, 1);
	assert_int_equal(live_keys(), 1);
	assert_int_equal(((struct fkey *)ubdma_reg_key(r))->flags, RW);
	ubdma_reg_put(r);
	struct ubdma_rcache_stats s = stats(ctx);
	assert_int_equal(s.misses, 2);
	assert_int_equal(s.hits, 1);
	assert_int_equal(s.merges, 1);
	assert_int_equal(s.entries, 1);
	assert_int_equal(s.bytes_pinned, 3 * PG);
	assert_int_equal(ubdma_rcache_flush(ctx), 0);
	assert_int_equal(live_keys(), 0);
	assert_int_equal(smaps_locked_kb(p, 16 * PG), 0); /* unwired after dereg */
	munmap(p, 16 * PG);
}

/* Entry, byte and registration limits: eviction calls dereg, the cache never holds more. */
static void test_limits(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon(64 * PG);
	ubdma_reg_t *r;

	assert_int_equal(ubdma_rcache_set_limits(ctx, 0, 4, 0), 0);
	for (int i = 0; i < 16; i++) {
		/* every other page: no two entries touch, so none merge */
		assert_int_equal(ubdma_reg_get(ctx, p + 2 * i * PG, PG, RW, &r), 0);
		ubdma_reg_put(r);
		assert_true(live_keys() <= 4);
		assert_true(stats(ctx).entries <= 4);
	}
	assert_int_equal(F.nreg, 16);
	assert_int_equal(F.ndereg, 12);
	assert_int_equal(stats(ctx).evictions, 12);
	/* bytes: 3 pages */
	assert_int_equal(ubdma_rcache_set_limits(ctx, 3 * PG, 0, 0), 0);
	assert_int_equal(live_keys(), 3);
	assert_true(stats(ctx).bytes_pinned <= 3 * PG);
	/* registrations (max_iommu): 2 */
	assert_int_equal(ubdma_rcache_set_limits(ctx, 0, 0, 2), 0);
	assert_int_equal(live_keys(), 2);
	/* all held: the next one is refused, with nothing registered for it */
	ubdma_reg_t *h[2];
	assert_int_equal(ubdma_reg_get(ctx, p + 40 * PG, PG, RW, &h[0]), 0);
	assert_int_equal(ubdma_reg_get(ctx, p + 44 * PG, PG, RW, &h[1]), 0);
	int nreg = F.nreg;
	assert_int_equal(ubdma_reg_get(ctx, p + 48 * PG, PG, RW, &r), ENOSPC);
	assert_int_equal(F.nreg, nreg);
	assert_int_equal(live_keys(), 2);
	assert_int_equal(smaps_locked_kb(p + 48 * PG, PG), 0);
	ubdma_reg_put(h[0]);
	ubdma_reg_put(h[1]);
	assert_int_equal(ubdma_reg_get(ctx, p + 48 * PG, PG, RW, &r), 0);
	ubdma_reg_put(r);
	assert_int_equal(live_keys(), 2);
	munmap(p, 64 * PG);
}

/* munmap, then new memory at the same address: the old key is gone before the new reg call. */
static void test_invalidate_before_reuse(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon(8 * PG);
	ubdma_reg_t *r;

	assert_int_equal(ubdma_reg_get(ctx, p, 8 * PG, RW, &r), 0);
	ubdma_reg_put(r);
	if (!uffd_or_skip(ctx)) {
		munmap(p, 8 * PG);
		skip();
	}
	struct fkey *old = ubdma_reg_key(r);
	assert_int_equal(munmap(p, 8 * PG), 0);
	char *q = mmap(p, 8 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	assert_ptr_equal(q, p);
	assert_int_equal(ubdma_reg_get(ctx, q, 8 * PG, RW, &r), 0);
	assert_int_equal(F.nreg, 2);
	assert_int_equal(F.overlap_at_reg, 0); /* dereg came first */
	assert_int_equal(F.ndereg, 1);
	assert_false(old->live && old != ubdma_reg_key(r));
	assert_int_equal(stats(ctx).invalidations, 1);
	ubdma_reg_put(r);
	/* each kind of change, through the cache's own monitor */
	assert_int_equal(madvise(q, 8 * PG, MADV_DONTNEED_LOCKED), 0);
	assert_int_equal(ubdma_reg_get(ctx, q, 8 * PG, RW, &r), 0); /* one VMA: mremap below moves it whole */
	assert_int_equal(F.nreg, 3);
	assert_int_equal(F.overlap_at_reg, 0);
	ubdma_reg_put(r);
	char *t = anon(8 * PG);
	assert_ptr_equal(mremap(q, 8 * PG, 8 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, t), t);
	assert_int_equal(ubdma_rcache_flush(ctx), 0);
	assert_int_equal(live_keys(), 0);
	assert_int_equal(stats(ctx).invalidations, 3);
	munmap(t, 8 * PG);
}

/*
 * Watch only (a registrar that pins): nothing locked, nothing MADV_DONTFORK'd (a fork child has
 * the range), and still never stale: munmap and a plain MADV_DONTNEED end the registration.  A
 * window the cache trusted as registered whole stops being trusted where an unmap cut it: a new
 * mapping put in the hole is registered (and its own munmap seen), not taken for watched.
 */
static void test_watch_only(void **state)
{
	static const struct ubdma_registrar bad = { .name = "bad", .reg = f_reg, .dereg = f_dereg, .flags = 0x80 };
	ubdma_ctx_t *ctx = *state;
	size_t big = 8UL << 20;
	char *m = anon(big);
	uintptr_t w = ((uintptr_t)m + (2UL << 20) - 1) & ~((2UL << 20) - 1); /* a 2 MiB window inside m */
	char *a = (char *)w + 16 * PG, *b = (char *)w + 64 * PG;
	ubdma_reg_t *r;
	long lck = status_kb("VmLck");

	assert_int_equal(ubdma_rcache_set_registrar(ctx, &bad, &F), EINVAL);
	/* a registrar library's own marks are accepted and kept (ubdma_reg_registrar()) */
	static const struct ubdma_registrar marked = { .name = "marked", .reg = f_reg, .dereg = f_dereg,
						       .flags = UBDMA_REGISTRAR_PINS | 0x00010000u };
	void *mb = anon(PG);
	assert_int_equal(ubdma_rcache_flush(ctx), 0);
	assert_int_equal(ubdma_rcache_set_registrar(ctx, &marked, &F), 0);
	assert_int_equal(ubdma_reg_get(ctx, mb, PG, RW, &r), 0);
	assert_ptr_equal(ubdma_reg_registrar(r), &marked);
	ubdma_reg_put(r);
	assert_int_equal(ubdma_rcache_flush(ctx), 0);
	assert_int_equal(ubdma_rcache_set_registrar(ctx, &fake_pins, &F), 0);
	munmap(mb, PG);
	assert_int_equal(ubdma_reg_get(ctx, a, PG, RW, &r), 0);
	if (!uffd_or_skip(ctx)) {
		ubdma_reg_put(r);
		munmap(m, big);
		skip();
	}
	assert_int_equal(F.locked_at_reg, 0);
	assert_int_equal(smaps_locked_kb(a, PG), 0);
	assert_int_equal(status_kb("VmLck"), lck);
	pid_t pid = fork();
	if (pid == 0) {
		unsigned char v;
		/* the child has the range (no MADV_DONTFORK) and writes its own copy */
		int ok = mincore(a, PG, &v) == 0;
		memset(a, 'c', PG);
		_exit(ok ? 0 : 1);
	}
	int st = -1;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(a[0], 0x5a);
	ubdma_reg_put(r);

	/* a hole cut in the trusted window, and new memory mapped in it */
	assert_int_equal(munmap(b, PG), 0);
	assert_ptr_equal(mmap(b, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0), b);
	int n0 = F.nreg;
	uint64_t inv0 = stats(ctx).invalidations;
	assert_int_equal(ubdma_reg_get(ctx, b, PG, RW, &r), 0);
	assert_int_equal(F.nreg, n0 + 1);
	ubdma_reg_put(r);
	assert_int_equal(munmap(b, PG), 0); /* seen: the new mapping was registered with the monitor */
	assert_ptr_equal(mmap(b, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0), b);
	assert_int_equal(ubdma_reg_get(ctx, b, PG, RW, &r), 0);
	assert_int_equal(F.nreg, n0 + 2); /* a miss, not the stale entry */
	assert_int_equal(stats(ctx).invalidations, inv0 + 1);
	ubdma_reg_put(r);

	/* a plain MADV_DONTNEED works on unlocked memory, and ends the registration */
	assert_int_equal(ubdma_reg_get(ctx, a, PG, RW, &r), 0);
	ubdma_reg_put(r);
	n0 = F.nreg;
	assert_int_equal(madvise(a, PG, MADV_DONTNEED), 0);
	assert_int_equal(ubdma_reg_get(ctx, a, PG, RW, &r), 0);
	assert_int_equal(F.nreg, n0 + 1);
	assert_int_equal(F.overlap_at_reg, 0); /* the old key went first */
	ubdma_reg_put(r);
	assert_int_equal(ubdma_rcache_flush(ctx), 0);
	assert_int_equal(live_keys(), 0);
	munmap(m, big);
}

/* An entry held across munmap keeps its key (and wiring) until put, and is never handed out. */
static void test_held_keeps_key(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon(4 * PG);
	ubdma_reg_t *held, *r;

	assert_int_equal(ubdma_reg_get(ctx, p, 4 * PG, RW, &held), 0);
	if (!uffd_or_skip(ctx)) {
		ubdma_reg_put(held);
		munmap(p, 4 * PG);
		skip();
	}
	struct fkey *k = ubdma_reg_key(held);
	assert_int_equal(munmap(p, 4 * PG), 0);
	char *q = mmap(p, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	assert_ptr_equal(q, p);
	assert_int_equal(ubdma_reg_get(ctx, q, 4 * PG, RW, &r), 0);
	assert_ptr_not_equal(r, held);
	assert_true(k->live); /* still the holder's */
	assert_ptr_equal(ubdma_reg_key(held), k);
	assert_int_equal(F.ndereg, 0);
	assert_int_equal(stats(ctx).held_invalid, 1);
	ubdma_reg_put(held);
	assert_false(k->live);
	assert_int_equal(F.ndereg, 1);
	ubdma_reg_put(r);
	munmap(q, 4 * PG);
}

/* reg failing: nothing registered, wired or cached; ENOMEM from the registrar evicts and retries. */
static void test_fault_reg(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon(32 * PG);
	ubdma_reg_t *r = (ubdma_reg_t *)1;
	long lck = status_kb("VmLck");

	F.fail_reg_at = 1;
	F.fail_reg_err = EIO;
	assert_int_equal(ubdma_reg_get(ctx, p, 4 * PG, RW, &r), EIO);
	assert_ptr_equal(r, (ubdma_reg_t *)1);
	assert_int_equal(live_keys(), 0);
	assert_int_equal(status_kb("VmLck"), lck);
	assert_int_equal(stats(ctx).entries, 0);
	assert_int_equal(stats(ctx).bytes_pinned, 0);
	assert_non_null(strstr(ubdma_last_error(), "fake"));
	/* -errno is taken as errno */
	F.fail_reg_at = 2;
	F.fail_reg_err = -EPERM;
	assert_int_equal(ubdma_reg_get(ctx, p, 4 * PG, RW, &r), EPERM);
	assert_int_equal(status_kb("VmLck"), lck);
	/* out of registrations with something evictable: evict, retry, succeed */
	F.fail_reg_at = 0;
	assert_int_equal(ubdma_reg_get(ctx, p, PG, RW, &r), 0);
	ubdma_reg_put(r);
	F.fail_reg_at = F.nreg + 1;
	F.fail_reg_err = ENOMEM;
	assert_int_equal(ubdma_reg_get(ctx, p + 8 * PG, PG, RW, &r), 0);
	assert_int_equal(stats(ctx).evictions, 1);
	assert_int_equal(live_keys(), 1);
	/* out of registrations with everything held: ENOMEM, nothing left behind */
	F.fail_reg_at = F.nreg + 1;
	ubdma_reg_t *r2;
	assert_int_equal(ubdma_reg_get(ctx, p + 16 * PG, PG, RW, &r2), ENOMEM);
	assert_int_equal(live_keys(), 1);
	assert_int_equal(smaps_locked_kb(p + 16 * PG, PG), 0);
	ubdma_reg_put(r);
	munmap(p, 32 * PG);
}

/* dereg failing: counted, the wiring released all the same. */
static void test_fault_dereg(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon(4 * PG);
	ubdma_reg_t *r;
	long lck = status_kb("VmLck");

	F.fail_dereg_at = 1;
	assert_int_equal(ubdma_reg_get(ctx, p, 4 * PG, RW, &r), 0);
	ubdma_reg_put(r);
	assert_int_equal(ubdma_rcache_flush(ctx), 0);
	assert_int_equal(F.ndereg, 1);
	assert_int_equal(stats(ctx).dereg_failures, 1);
	assert_int_equal(stats(ctx).entries, 0);
	assert_int_equal(status_kb("VmLck"), lck);
	munmap(p, 4 * PG);
}

/* ------------------------------------------------------------ memory events */

static struct {
	int n[8];
	struct ubdma_memevent last[8]; /* by type */
	ubdma_memevent_sub_t *self;	/* unsubscribed by its own callback */
	ubdma_ctx_t *ctx;		/* the callback calls the cache */
	int cache_err;
} E;

/* The callbacks run on the monitor's thread: E is read and written under E_lock. */
static pthread_mutex_t E_lock = PTHREAD_MUTEX_INITIALIZER;
static int self_calls;

static int count_of(int type)
{
	pthread_mutex_lock(&E_lock);
	int n = type < 0 ? self_calls : E.n[type];
	pthread_mutex_unlock(&E_lock);
	return n;
}

static struct ubdma_memevent last_of(int type)
{
	pthread_mutex_lock(&E_lock);
	struct ubdma_memevent ev = E.last[type];
	pthread_mutex_unlock(&E_lock);
	return ev;
}

static void set_e(ubdma_ctx_t *ctx, ubdma_memevent_sub_t *self)
{
	pthread_mutex_lock(&E_lock);
	E.ctx = ctx;
	E.self = self;
	pthread_mutex_unlock(&E_lock);
}

static void on_ev(void *arg, const struct ubdma_memevent *ev)
{
	assert_ptr_equal(arg, &E);
	if (getenv("EVDEBUG"))
		fprintf(stderr, "event %d %p +%zu -> %p\n", ev->type, ev->addr, ev->len, ev->to);
	pthread_mutex_lock(&E_lock);
	E.last[ev->type] = *ev;
	ubdma_ctx_t *cctx = E.ctx;
	pthread_mutex_unlock(&E_lock);
	if (cctx) {
		/* a look-up from the callback: no library lock held, no deadlock */
		static char page[4096] __attribute__((aligned(4096)));
		ubdma_reg_t *r;
		int err = ubdma_reg_get(cctx, page, sizeof(page), RW, &r);
		pthread_mutex_lock(&E_lock);
		E.cache_err = err;
		pthread_mutex_unlock(&E_lock);
		if (!err)
			ubdma_reg_put(r);
		else
			fprintf(stderr, "cache from callback: %s\n", ubdma_last_error());
	}
	pthread_mutex_lock(&E_lock);
	E.n[ev->type]++;
	pthread_mutex_unlock(&E_lock);
}

/* A subscription that ends itself from its own callback. */
static void on_self(void *arg, const struct ubdma_memevent *ev)
{
	(void)ev;
	assert_ptr_equal(arg, &E.self);
	pthread_mutex_lock(&E_lock);
	ubdma_memevent_sub_t *me = E.self;
	E.self = NULL;
	self_calls++;
	pthread_mutex_unlock(&E_lock);
	assert_int_equal(ubdma_memevent_unsubscribe(me), 0);
}

/* The unmapper may return before the callback ran: wait a little for it. */
static int wait_n(int type, int want)
{
	for (int i = 0; i < 2000; i++) {
		if (count_of(type) >= want)
			return 1;
		usleep(1000);
	}
	return 0;
}

static void test_memevents(void **state)
{
	ubdma_ctx_t *ctx = *state;
	char *p = anon(16 * PG), *other = anon(4 * PG);
	ubdma_memevent_sub_t *sub, *sub2;

	pthread_mutex_lock(&E_lock);
	memset(&E, 0, sizeof(E));
	self_calls = 0;
	pthread_mutex_unlock(&E_lock);
	assert_int_equal(ubdma_memevent_subscribe((void *)(UINTPTR_MAX - PG + 1), 2 * PG, UBDMA_MEMEVENT_ALL, on_ev,
						  &E, &sub), EINVAL);
	assert_int_equal(ubdma_memevent_subscribe(p, 0, UBDMA_MEMEVENT_ALL, on_ev, &E, &sub), EINVAL);
	assert_int_equal(ubdma_memevent_subscribe(p, PG, UBDMA_MEMEVENT_ALL, on_ev, &E, NULL), EINVAL);
	assert_int_equal(ubdma_memevent_subscribe(p, PG, 0, on_ev, &E, &sub), EINVAL);
	assert_int_equal(ubdma_memevent_subscribe(p, PG, 0x10, on_ev, &E, &sub), EINVAL);
	assert_int_equal(ubdma_memevent_subscribe(p, PG, UBDMA_MEMEVENT_ALL, NULL, &E, &sub), EINVAL);
	int err = ubdma_memevent_subscribe(p, 16 * PG, UBDMA_MEMEVENT_ALL, on_ev, &E, &sub);
	if (err == ENOTSUP) {
		fprintf(stderr, "SKIP: %s\n", ubdma_last_error());
		skip();
	}
	assert_int_equal(err, 0);
	/* memory of our own, watched because it is wired */
	assert_int_equal(ubdma_wire(p, 16 * PG, 0), 0);
	assert_int_equal(ubdma_wire(other, 4 * PG, 0), 0);
	/* remove */
	assert_int_equal(madvise(p, 2 * PG, MADV_DONTNEED_LOCKED), 0);
	assert_true(wait_n(UBDMA_MEMEVENT_REMOVE, 1));
	assert_ptr_equal(last_of(UBDMA_MEMEVENT_REMOVE).addr, p);
	assert_int_equal(last_of(UBDMA_MEMEVENT_REMOVE).len, 2 * PG);
	/* an event elsewhere is not ours */
	assert_int_equal(munmap(other, 4 * PG), 0);
	usleep(20000);
	assert_int_equal(count_of(UBDMA_MEMEVENT_UNMAP), 0); /* other's munmap was not reported */
	/* remap: the new address is in the event; the kernel then reports the old range unmapped */
	char *m = mremap(p + 12 * PG, 4 * PG, 4 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, other);
	assert_ptr_equal(m, other);
	assert_true(wait_n(UBDMA_MEMEVENT_REMAP, 1));
	assert_ptr_equal(last_of(UBDMA_MEMEVENT_REMAP).addr, p + 12 * PG);
	assert_ptr_equal(last_of(UBDMA_MEMEVENT_REMAP).to, other);
	assert_int_equal(last_of(UBDMA_MEMEVENT_REMAP).len, 4 * PG);
	assert_true(wait_n(UBDMA_MEMEVENT_UNMAP, 1));
	assert_ptr_equal(last_of(UBDMA_MEMEVENT_UNMAP).addr, p + 12 * PG);
	/* unmap, with the cache called from the callback */
	set_e(ctx, NULL);
	assert_int_equal(munmap(p + 4 * PG, 4 * PG), 0);
	assert_true(wait_n(UBDMA_MEMEVENT_UNMAP, 2));
	assert_ptr_equal(last_of(UBDMA_MEMEVENT_UNMAP).addr, p + 4 * PG);
	pthread_mutex_lock(&E_lock);
	int cache_err = E.cache_err;
	pthread_mutex_unlock(&E_lock);
	assert_int_equal(cache_err, 0);
	set_e(NULL, NULL);
	/* a second subscription that removes itself from its callback; the first one stays */
	assert_int_equal(ubdma_memevent_subscribe(p, 16 * PG, UBDMA_MEMEVENT_UNMAP, on_self, &E.self, &sub2), 0);
	set_e(NULL, sub2);
	assert_int_equal(munmap(p + 8 * PG, PG), 0);
	assert_true(wait_n(UBDMA_MEMEVENT_UNMAP, 3));
	for (int i = 0; i < 2000 && !count_of(-1); i++)
		usleep(1000);
	assert_int_equal(count_of(-1), 1);
	pthread_mutex_lock(&E_lock);
	ubdma_memevent_sub_t *left = E.self;
	pthread_mutex_unlock(&E_lock);
	assert_null(left);
	assert_int_equal(ubdma_memevent_unsubscribe(sub2), EINVAL); /* gone already */
	assert_int_equal(munmap(p + 9 * PG, PG), 0);
	assert_true(wait_n(UBDMA_MEMEVENT_UNMAP, 4));
	usleep(20000);
	assert_int_equal(count_of(-1), 1); /* sub2 no more */
	assert_int_equal(ubdma_memevent_unsubscribe(sub), 0);
	assert_int_equal(ubdma_memevent_unsubscribe(NULL), 0);
	assert_int_equal(munmap(p + 10 * PG, PG), 0);
	usleep(20000);
	assert_int_equal(count_of(UBDMA_MEMEVENT_UNMAP), 4);
	munmap(p, 16 * PG);
	munmap(other, 4 * PG);
}

/*
 * A miss in a window the cache already trusts makes no system call of its own (issue 19): over
 * verbs the registrar's ibv_reg_mr is then the only one a miss pays.  A registrar that makes none
 * itself, and syscall user dispatch, which turns any system call of this thread into SIGSYS (the
 * call is not made; the handler notes its number).  Warm-up misses first: the first registers the
 * window, and entries, tickets and tables come in batches.
 */
#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#endif
static volatile char sud_selector;
static volatile int sud_calls, sud_nr[8];
static int q_keys;
static void sud_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)uc;
	sud_selector = 0; /* allow: rt_sigreturn is a system call too */
	if (sud_calls < 8)
		sud_nr[sud_calls] = si->si_syscall;
	sud_calls++;
}
static int q_reg(void *arg, void *addr, size_t len, int flags, void **keyp)
{
	(void)arg, (void)addr, (void)len, (void)flags;
	q_keys++;
	*keyp = &q_keys;
	return 0;
}
static int q_dereg(void *arg, void *key)
{
	(void)arg, (void)key;
	q_keys--;
	return 0;
}

/* Skip where misses cannot be made without system calls, or not checked for them. */
static void need_quiet_misses(void)
{
	struct utsname u;
	int maj = 0, min = 0;

	if (SANITIZED)
		SKIP_WHY("sanitizer runtimes make system calls of their own");
	uname(&u);
	sscanf(u.release, "%d.%d", &maj, &min);
	if (maj < 6 || (maj == 6 && min < 1))
		SKIP_WHY("Linux %s: no way to trust a window registered whole (6.1's write-protect check, or PROCMAP_QUERY)", u.release);
}

/*
 * Misses of one page at base + i * step, i from *n up to end (or the first error, returned),
 * with every system call trapped by syscall user dispatch: sud_calls counts them.
 */
static int misses_trapped_at(ubdma_ctx_t *ctx, char *base, long step, int *n, int end, ubdma_reg_t **r)
{
	struct sigaction sa = { .sa_sigaction = sud_handler, .sa_flags = SA_SIGINFO }, old;
	int err = 0;

	sigaction(SIGSYS, &sa, &old);
	if (prctl(PR_SET_SYSCALL_USER_DISPATCH, 1, 0, 0, &sud_selector)) {
		sigaction(SIGSYS, &old, NULL);
		SKIP_WHY("no syscall user dispatch (Linux >= 5.11)");
	}
	sud_calls = 0;
	for (; *n < end && !err; (*n)++) {
		sud_selector = 1; /* block */
		err = ubdma_reg_get(ctx, base + (long)*n * step, PG, RW, &r[*n]);
		sud_selector = 0;
	}
	prctl(PR_SET_SYSCALL_USER_DISPATCH, 0, 0, 0, 0);
	sigaction(SIGSYS, &old, NULL);
	return err;
}

static int misses_trapped(ubdma_ctx_t *ctx, char *base, int *n, int end, ubdma_reg_t **r)
{
	return misses_trapped_at(ctx, base, 2 * PG, n, end, r);
}

static void test_miss_no_syscall(void **state)
{
	static const struct ubdma_registrar quiet = { .name = "quiet-pins", .reg = q_reg, .dereg = q_dereg,
						      .flags = UBDMA_REGISTRAR_PINS };
	ubdma_ctx_t *ctx;
	ubdma_reg_t *r[24];
	int err, n = 0;

	(void)state;
	need_quiet_misses();
	char *m = anon(8UL << 20);
	char *w = (char *)(((uintptr_t)m + (2UL << 20) - 1) & ~((2UL << 20) - 1));
	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);
	assert_int_equal(ubdma_rcache_set_registrar(ctx, &quiet, NULL), 0);
	for (; n < 16; n++)
		assert_int_equal(ubdma_reg_get(ctx, w + (size_t)n * 2 * PG, PG, RW, &r[n]), 0);
	err = misses_trapped(ctx, w, &n, 24, r);
	if (sud_calls)
		fail_msg("%d system calls in 8 misses (the first: %d %d %d)", sud_calls, sud_nr[0], sud_nr[1], sud_nr[2]);
	assert_int_equal(err, 0);
	assert_int_equal(stats(ctx).misses, 24);
	assert_int_equal(q_keys, 24);
	for (int i = 0; i < n; i++)
		ubdma_reg_put(r[i]);
	ubdma_ctx_close(ctx);
	assert_int_equal(q_keys, 0);
	munmap(m, 8UL << 20);
}

/*
 * A window that is not one mapping (a region beside a hole: never trusted whole) still gives
 * system-call-free misses once the 256 KiB around them is vouched for, and memory mapped into the
 * hole later (no event) is registered with the monitor when a miss meets it: its munmap
 * invalidates.
 */
static void test_edge_window(void **state)
{
	static const struct ubdma_registrar quiet = { .name = "quiet-pins", .reg = q_reg, .dereg = q_dereg,
						      .flags = UBDMA_REGISTRAR_PINS };
	size_t MB = 1UL << 20;
	ubdma_ctx_t *ctx;
	ubdma_reg_t *r[16], *h;
	int err, n = 0;

	(void)state;
	need_quiet_misses();
	char *m = anon(8 * MB);
	char *w = (char *)(((uintptr_t)m + 2 * MB - 1) & ~(2 * MB - 1));
	char *e = w + MB; /* the region's edge: [w, w + 1 MiB) becomes a hole */
	assert_int_equal(munmap(w, MB), 0);
	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);
	assert_int_equal(ubdma_rcache_set_registrar(ctx, &quiet, NULL), 0);
	for (; n < 2; n++) /* the window registered, then the 256 KiB around e vouched for */
		assert_int_equal(ubdma_reg_get(ctx, e + (size_t)n * 2 * PG, PG, RW, &r[n]), 0);
	err = misses_trapped(ctx, e, &n, 10, r);
	if (sud_calls)
		fail_msg("%d system calls in 8 misses beside a hole (the first: %d %d)", sud_calls, sud_nr[0], sud_nr[1]);
	assert_int_equal(err, 0);
	/* new memory in the hole, which no event announced: a miss there must have it watched */
	char *f = mmap(w + 64 * PG, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	assert_ptr_equal(f, w + 64 * PG);
	memset(f, 1, 4 * PG);
	assert_int_equal(ubdma_reg_get(ctx, f, PG, RW, &h), 0);
	ubdma_reg_put(h);
	uint64_t inv = stats(ctx).invalidations;
	assert_int_equal(munmap(f, 4 * PG), 0);
	assert_int_equal(stats(ctx).invalidations, inv + 1); /* watched: its munmap was seen */
	for (int i = 0; i < n; i++)
		ubdma_reg_put(r[i]);
	ubdma_ctx_close(ctx);
	assert_int_equal(q_keys, 0);
	munmap(m, 8 * MB);
}

/*
 * A region's edges, neither on a 2 MiB nor a 256 KiB bound, in one window with a hole below and
 * another mapping above (VM_DONTDUMP: a mapping of its own, writable alike): once the second miss
 * found how far the range's mapping reaches in the window, every later miss in it, going up
 * from the bottom edge or down from the top one, makes no system call (before, each 256 KiB of
 * the edge's window and each range beside the other mapping asked the kernel again); the other
 * mapping is still registered when a miss meets it (its munmap invalidates), and so is memory
 * mapped into the hole later.
 */
static void test_edge_span(void **state)
{
	static const struct ubdma_registrar quiet = { .name = "quiet-pins", .reg = q_reg, .dereg = q_dereg,
						      .flags = UBDMA_REGISTRAR_PINS };
	size_t KB = 1024, MB = 1024 * KB;
	ubdma_ctx_t *ctx;
	ubdma_reg_t *r[64], *d[64], *h;
	int err, n = 0;

	(void)state;
	need_quiet_misses();
	char *m = anon(16 * MB);
	char *w = (char *)(((uintptr_t)m + 2 * MB - 1) & ~(2 * MB - 1)), *w2 = w + 4 * MB;
	char *lo = w + 500 * KB, *hi = w + 1500 * KB; /* the region: [lo, hi) */
	assert_int_equal(munmap(w, 500 * KB), 0);
	assert_int_equal(madvise(hi, 2 * MB - 1500 * KB, MADV_DONTDUMP), 0);
	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);
	assert_int_equal(ubdma_rcache_set_registrar(ctx, &quiet, NULL), 0);
	/* up from the bottom edge, 24 KiB apart (a bench's stride): the first registers the window
	 * (the kernel will not vouch for it whole), the second finds its mapping's reach */
	for (; n < 2; n++)
		assert_int_equal(ubdma_reg_get(ctx, lo + (size_t)n * 6 * PG, PG, RW, &r[n]), 0);
	err = misses_trapped_at(ctx, lo, 6 * PG, &n, 41, r);
	if (sud_calls)
		fail_msg("%d system calls in 39 misses up a region's edge window (the first: %d %d)", sud_calls,
			 sud_nr[0], sud_nr[1]);
	assert_int_equal(err, 0);
	/* the other mapping above: not trusted with the region, registered when met */
	assert_int_equal(ubdma_reg_get(ctx, hi + 8 * PG, PG, RW, &h), 0);
	ubdma_reg_put(h);
	uint64_t inv = stats(ctx).invalidations;
	assert_int_equal(munmap(hi + 8 * PG, PG), 0);
	assert_int_equal(stats(ctx).invalidations, inv + 1);
	/* memory mapped into the hole later, which no event announced: watched when met */
	char *f = mmap(w + 64 * PG, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	assert_ptr_equal(f, w + 64 * PG);
	memset(f, 1, 4 * PG);
	assert_int_equal(ubdma_reg_get(ctx, f, PG, RW, &h), 0);
	ubdma_reg_put(h);
	inv = stats(ctx).invalidations;
	assert_int_equal(munmap(f, 4 * PG), 0);
	assert_int_equal(stats(ctx).invalidations, inv + 1);
	/* down from the top edge of a second such region (a hole above it this time) */
	char *top = w2 + 1300 * KB;
	int k = 0;
	assert_int_equal(munmap(top, 2 * MB - 1300 * KB), 0);
	for (; k < 2; k++)
		assert_int_equal(ubdma_reg_get(ctx, top - (size_t)(k + 1) * 6 * PG, PG, RW, &d[k]), 0);
	err = misses_trapped_at(ctx, top - 6 * PG, -6 * (long)PG, &k, 41, d);
	if (sud_calls)
		fail_msg("%d system calls in 39 misses down a region's edge window (the first: %d %d)", sud_calls,
			 sud_nr[0], sud_nr[1]);
	assert_int_equal(err, 0);
	/* the trusted span ends where the mapping does: an munmap of one of its pages invalidates */
	inv = stats(ctx).invalidations;
	assert_int_equal(munmap(top - 6 * PG, PG), 0);
	assert_int_equal(stats(ctx).invalidations, inv + 1);
	for (int i = 0; i < n; i++)
		ubdma_reg_put(r[i]);
	for (int i = 0; i < k; i++)
		ubdma_reg_put(d[i]);
	ubdma_ctx_close(ctx);
	assert_int_equal(q_keys, 0);
	munmap(m, 16 * MB);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_args, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hit_miss_counts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalidate_before_reuse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_held_keeps_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fault_reg, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fault_dereg, setup, teardown),
		cmocka_unit_test_setup_teardown(test_memevents, setup, teardown),
		/* watch only: the registrar pins, the cache does not wire */
		cmocka_unit_test_setup_teardown(test_watch_only, setup_pins, teardown),
		cmocka_unit_test_setup_teardown(test_limits, setup_pins, teardown),
		cmocka_unit_test_setup_teardown(test_invalidate_before_reuse, setup_pins, teardown),
		cmocka_unit_test_setup_teardown(test_held_keeps_key, setup_pins, teardown),
		cmocka_unit_test_setup_teardown(test_fault_reg, setup_pins, teardown),
		cmocka_unit_test_setup_teardown(test_fault_dereg, setup_pins, teardown),
		cmocka_unit_test_setup_teardown(test_memevents, setup_pins, teardown),
		cmocka_unit_test(test_miss_no_syscall),
		cmocka_unit_test(test_edge_window),
		cmocka_unit_test(test_edge_span),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
