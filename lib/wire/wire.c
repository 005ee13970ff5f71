/*
 * wire.c - wiring VA ranges with vslock(9) / vm_map_wire(9) semantics on top of mlock(2).
 *
 * Linux's mlock does not nest: one munlock undoes any number of mlocks.  FreeBSD's vm_map_wire
 * keeps a wire count per map entry, and vslock/vsunlock pairs nest.  This file keeps the counts
 * itself, in a sorted array of runs [start, end) that share one count, and calls mlock only on
 * pages whose count leaves zero and munlock only on pages whose count returns to zero.
 *
 * Rules (vslock(9), vm_map_wire(9), mlock(2)):
 *  - the range is rounded out to whole pages of each mapping (4 KiB, or the hugetlb page size);
 *  - a range that wraps around the address space is EINVAL;
 *  - an unmapped or inaccessible part is EFAULT unless HOLESOK (vm_map_wire's HOLESOK/NOHOLES);
 *  - over RLIMIT_MEMLOCK is ENOMEM (mlock says ENOMEM, EAGAIN or EPERM: all mean "no more");
 *  - all or nothing: on any failure the pages this call locked are unlocked again, and no count
 *    changes.
 * Pages whose count leaves zero are marked MADV_DONTFORK so that a fork(2) child, which would
 * share them copy-on-write, cannot make the parent's pinned pages diverge from what the device
 * sees; WRITE intent faults the pages in for write first (MADV_POPULATE_WRITE) so that
 * copy-on-write is broken before the physical address is taken.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ubdma/core.h>

#include "core/log.h"
#include "wire/vma.h"
#include "wire/wire.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define PG 4096UL

/*
 * The sanitizer runtimes intercept mlock/munlock and turn them into no-ops (they would lock
 * shadow memory too); wiring must really happen under ASan/TSan builds, so go to the kernel.
 */
static int sys_mlock(uintptr_t s, uintptr_t e)
{
	return (int)syscall(SYS_mlock, (void *)s, (size_t)(e - s));
}

static int sys_munlock(uintptr_t s, uintptr_t e)
{
	return (int)syscall(SYS_munlock, (void *)s, (size_t)(e - s));
}
#define TRUNC(x, a) ((x) & ~((uintptr_t)(a) - 1))
#define ROUND(x, a) (((x) + (a) - 1) & ~((uintptr_t)(a) - 1))

struct wrun {
	uintptr_t start, end;
	unsigned count;
	size_t pgsz;
};

static pthread_mutex_t wire_lock = PTHREAD_MUTEX_INITIALIZER;
static struct wrun *runs;
static size_t nruns, capruns;

/* Index of the first run with end > addr. */
static size_t run_find(uintptr_t addr)
{
	size_t lo = 0, hi = nruns;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (runs[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int run_reserve(size_t more)
{
	if (nruns + more <= capruns)
		return 0;
	size_t cap = (nruns + more) * 2;
	struct wrun *n = realloc(runs, cap * sizeof(*n));
	if (!n)
		return ENOMEM;
	runs = n;
	capruns = cap;
	return 0;
}

static void run_insert(size_t i, struct wrun r)
{
	memmove(&runs[i + 1], &runs[i], (nruns - i) * sizeof(*runs));
	runs[i] = r;
	nruns++;
}

static void run_remove(size_t i)
{
	memmove(&runs[i], &runs[i + 1], (nruns - i - 1) * sizeof(*runs));
	nruns--;
}

/* Split the run containing addr strictly inside it, so that a run boundary falls on addr. */
static void run_split(uintptr_t addr)
{
	size_t i = run_find(addr);

	if (i < nruns && runs[i].start < addr) {
		struct wrun tail = runs[i];
		tail.start = addr;
		runs[i].end = addr;
		run_insert(i + 1, tail);
	}
}

static void run_coalesce(void)
{
	size_t i = 0;

	while (i + 1 < nruns) {
		if (runs[i].end == runs[i + 1].start && runs[i].count == runs[i + 1].count &&
		    runs[i].pgsz == runs[i + 1].pgsz) {
			runs[i].end = runs[i + 1].end;
			run_remove(i + 1);
		} else {
			i++;
		}
	}
}

/* Add delta to the counts over [s, e); runs for uncounted gaps are created (delta > 0 only). */
static void run_add(uintptr_t s, uintptr_t e, int delta, size_t pgsz)
{
	run_split(s);
	run_split(e);
	size_t i = run_find(s);
	uintptr_t cur = s;

	while (cur < e) {
		if (i < nruns && runs[i].start <= cur) {
			runs[i].count += (unsigned)delta;
			cur = runs[i].end;
			if (runs[i].count == 0)
				run_remove(i);
			else
				i++;
			continue;
		}
		uintptr_t gap_end = (i < nruns && runs[i].start < e) ? runs[i].start : e;
		if (delta > 0)
			run_insert(i++, (struct wrun){ cur, gap_end, (unsigned)delta, pgsz });
		cur = gap_end;
	}
	run_coalesce();
}

/* Call fn on each sub-range of [s, e) whose wire count is zero. */
static int for_each_unwired(uintptr_t s, uintptr_t e, int (*fn)(uintptr_t, uintptr_t, void *), void *arg)
{
	size_t i = run_find(s);
	uintptr_t cur = s;

	while (cur < e) {
		if (i < nruns && runs[i].start <= cur) {
			cur = runs[i++].end;
			continue;
		}
		uintptr_t gap_end = (i < nruns && runs[i].start < e) ? runs[i].start : e;
		int err = fn(cur, gap_end, arg);
		if (err)
			return err;
		cur = gap_end;
	}
	return 0;
}

static unsigned long long vmlck_bytes(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	unsigned long long kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmLck: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}

static int has_ipc_lock(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d))
		return 0;
	return (d[CAP_IPC_LOCK / 32].effective >> (CAP_IPC_LOCK % 32)) & 1;
}

/* mlock said "no more": tell the user which limit it was and how to raise it. */
static int mlock_failed(uintptr_t s, uintptr_t e)
{
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
	unsigned long long locked = vmlck_bytes();

	getrlimit(RLIMIT_MEMLOCK, &rl);
	if (!has_ipc_lock() && rl.rlim_cur != RLIM_INFINITY && locked + (e - s) > rl.rlim_cur)
		return uerr(ENOMEM,
			    "wiring %zu bytes at %p would exceed RLIMIT_MEMLOCK: the limit is %llu "
			    "bytes and %llu are locked already; raise it (ulimit -l, memlock in "
			    "/etc/security/limits.conf, LimitMEMLOCK= for a systemd unit) or grant "
			    "CAP_IPC_LOCK",
			    (size_t)(e - s), (void *)s, (unsigned long long)rl.rlim_cur, locked);
	return uerr(ENOMEM,
		    "mlock of %zu bytes at %p failed: out of memory, or the process reached "
		    "vm.max_map_count mappings (each wired range can split a mapping)",
		    (size_t)(e - s), (void *)s);
}

/* Whether every page of [s, e) is mapped now (mincore says ENOMEM for a hole). */
static int mapped_now(uintptr_t s, uintptr_t e)
{
	unsigned char v[256];

	for (; s < e; s += sizeof(v) * PG) {
		size_t n = (e - s) / PG < sizeof(v) ? (e - s) / PG : sizeof(v);
		if (mincore((void *)s, n * PG, v) && errno == ENOMEM)
			return 0;
	}
	return 1;
}

/*
 * mlock [s, e), which build_segs() saw mapped.  mlock(2) says ENOMEM for "no more" and also for
 * a range that is no longer mapped: another thread may have unmapped it since, and perhaps mapped
 * something else there.  A hole is EFAULT, as it would have been had the munmap come first; a
 * range mapped again is tried once more.  undo: the pages had no wire count, so what a failed
 * mlock locked before the hole is ours to unlock.
 */
static int wire_mlock(uintptr_t s, uintptr_t e, int undo)
{
	for (int again = 0;; again = 1) {
		if (sys_mlock(s, e) == 0)
			return 0;
		int err = errno;
		if (err != ENOMEM || again)
			return err == EAGAIN || err == EPERM || err == ENOMEM ?
				       mlock_failed(s, e) :
				       uerr(err, "mlock of [%p, %p) failed", (void *)s, (void *)e);
		if (undo)
			sys_munlock(s, e);
		if (!mapped_now(s, e))
			return uerr(EFAULT, "[%p, %p) was unmapped while it was being wired", (void *)s, (void *)e);
	}
}

/* What this call locked, to undo on failure. */
struct undo {
	uintptr_t s[64], e[64];
	int n;
	struct undo *more;
	size_t asked;
};

static int lock_one(uintptr_t s, uintptr_t e, void *arg)
{
	struct undo *u = arg;

	while (u->n == 64) {
		if (!u->more && !(u->more = calloc(1, sizeof(*u))))
			return ENOMEM;
		u = u->more;
	}
	int err = wire_mlock(s, e, 1);
	if (err)
		return err;
	if (madvise((void *)s, e - s, MADV_DONTFORK)) {
		err = errno;
		sys_munlock(s, e);
		/* ENOMEM is vm.max_map_count, or a range unmapped since the mlock (another thread) */
		if (err == EINVAL || (err == ENOMEM && !mapped_now(s, e)))
			err = EFAULT;
		return uerr(err, "madvise(MADV_DONTFORK) of [%p, %p) failed", (void *)s, (void *)e);
	}
	u->s[u->n] = s;
	u->e[u->n++] = e;
	return 0;
}

static void undo_all(struct undo *u)
{
	for (struct undo *c = u; c; c = c->more)
		for (int i = 0; i < c->n; i++) {
			madvise((void *)c->s[i], c->e[i] - c->s[i], MADV_DOFORK);
			sys_munlock(c->s[i], c->e[i]);
		}
}

static void undo_free(struct undo *u)
{
	struct undo *c = u->more;
	while (c) {
		struct undo *n = c->more;
		free(c);
		c = n;
	}
}

/* Whether some page of [s, e) has a wire count already. */
static int has_counted(uintptr_t s, uintptr_t e)
{
	size_t i = run_find(s);

	return i < nruns && runs[i].start < e;
}

/*
 * Counted pages are normally locked already, but the application may have unmapped and mapped
 * new memory at the same address since (the counts are by address): lock and mark the whole
 * run again, which costs the kernel little when nothing changed.  Not undone on a later failure:
 * these pages are wired by an earlier call anyway.
 */
static int relock(uintptr_t s, uintptr_t e)
{
	int err = wire_mlock(s, e, 0);

	if (err)
		return err;
	if (madvise((void *)s, e - s, MADV_DONTFORK))
		return uerr(EFAULT, "madvise(MADV_DONTFORK) of [%p, %p) failed", (void *)s, (void *)e);
	return 0;
}

static int prefault_write(uintptr_t s, uintptr_t e)
{
	if (madvise((void *)s, e - s, MADV_POPULATE_WRITE) == 0)
		return 0;
	if (errno != EINVAL)
		return errno == EFAULT || errno == ENOMEM ? EFAULT : errno;
	/* kernels before 5.14: touch each page for write without changing it */
	for (uintptr_t p = s; p < e; p += PG)
		__atomic_fetch_add((volatile char *)p, 0, __ATOMIC_RELAXED);
	return 0;
}

/* Check and round the range: EINVAL for a wrap, unknown flags or an empty range. */
static int range_check(void *addr, size_t len, int flags, int allowed, uintptr_t *sp, uintptr_t *ep)
{
	uintptr_t a = (uintptr_t)addr, b = a + len;

	if (flags & ~allowed)
		return uerr(EINVAL, "unknown flags 0x%x", flags & ~allowed);
	if (len == 0)
		return uerr(EINVAL, "empty range at %p", addr);
	if (b < a || ROUND(b, PG) < b)
		return uerr(EINVAL, "range %p + %zu wraps around the address space", addr, len);
	*sp = a;
	*ep = b;
	return 0;
}

/* Turn the mappings under [a, b) into rounded segments; EFAULT on a hole unless HOLESOK. */
static int build_segs(uintptr_t a, uintptr_t b, int flags, struct wire_seg **segsp, int *nsegp)
{
	struct vma *v;
	int nv, err = vma_collect(TRUNC(a, PG), ROUND(b, PG), &v, &nv);
	uintptr_t cur = TRUNC(a, PG), end = ROUND(b, PG);
	struct wire_seg *segs;
	int n = 0;

	if (err)
		return uerr(err, "cannot read /proc/self/maps");
	segs = calloc((size_t)nv + 1, sizeof(*segs));
	if (!segs) {
		free(v);
		return uerr(ENOMEM, "out of memory");
	}
	for (int i = 0; i < nv && !err; i++) {
		int usable = v[i].readable && (!(flags & UBDMA_WIRE_WRITE) || v[i].writable);
		if (v[i].start > cur || !usable) {
			if (!(flags & UBDMA_WIRE_HOLESOK))
				err = uerr(EFAULT, "[%p, %p) is %s", (void *)(v[i].start > cur ? cur : v[i].start),
					   (void *)(v[i].start > cur ? v[i].start : v[i].end),
					   v[i].start > cur ? "not mapped" :
					   !v[i].readable ? "not accessible" : "read-only and WRITE was asked");
		}
		if (usable && !err) {
			size_t pg = v[i].pgsz;
			uintptr_t ss = TRUNC(a, pg) > v[i].start ? TRUNC(a, pg) : v[i].start;
			uintptr_t se = ROUND(b, pg) < v[i].end ? ROUND(b, pg) : v[i].end;
			/* mappings split by earlier mlocks are one run for the caller */
			if (n && segs[n - 1].end == ss && segs[n - 1].pgsz == pg &&
			    segs[n - 1].hugetlb == v[i].hugetlb)
				segs[n - 1].end = se;
			else
				segs[n++] = (struct wire_seg){ ss, se, pg, v[i].hugetlb };
		}
		cur = v[i].end;
	}
	if (!err && cur < end && !(flags & UBDMA_WIRE_HOLESOK))
		err = uerr(EFAULT, "[%p, %p) is not mapped", (void *)cur, (void *)end);
	free(v);
	if (err) {
		free(segs);
		return err;
	}
	*segsp = segs;
	*nsegp = n;
	return 0;
}

int wire_range(void *addr, size_t len, int flags, struct wire_seg **segsp, int *nsegp)
{
	uintptr_t a = 0, b = 0;
	struct wire_seg *segs = NULL;
	struct undo u = { .n = 0 };
	int nseg = 0, err = range_check(addr, len, flags, UBDMA_WIRE_HOLESOK | UBDMA_WIRE_WRITE, &a, &b);

	if (err)
		return err;
	pthread_mutex_lock(&wire_lock);
	err = build_segs(a, b, flags, &segs, &nseg);
	if (!err)
		err = run_reserve(3 * (size_t)nseg + nruns + 4) ? uerr(ENOMEM, "out of memory") : 0;
	for (int i = 0; i < nseg && !err; i++) {
		if (flags & UBDMA_WIRE_WRITE) {
			err = prefault_write(segs[i].start, segs[i].end);
			if (err) {
				uerr(err, "cannot fault [%p, %p) in for write", (void *)segs[i].start,
				     (void *)segs[i].end);
				break;
			}
		}
		err = for_each_unwired(segs[i].start, segs[i].end, lock_one, &u);
		if (!err && has_counted(segs[i].start, segs[i].end))
			err = relock(segs[i].start, segs[i].end);
	}
	if (err) {
		undo_all(&u);
	} else {
		for (int i = 0; i < nseg; i++)
			run_add(segs[i].start, segs[i].end, 1, segs[i].pgsz);
	}
	pthread_mutex_unlock(&wire_lock);
	undo_free(&u);
	if (err || !segsp) {
		free(segs);
	} else {
		*segsp = segs;
		*nsegp = nseg;
	}
	return err;
}

int unwire_range(void *addr, size_t len, int flags)
{
	uintptr_t a = 0, b = 0;
	int err = range_check(addr, len, flags, UBDMA_WIRE_HOLESOK | UBDMA_WIRE_WRITE, &a, &b);

	if (err)
		return err;
	pthread_mutex_lock(&wire_lock);
	/* Round with the page size the range was wired with, which survives an munmap. */
	size_t i = run_find(TRUNC(a, PG));
	if (i < nruns && runs[i].start <= a)
		a = TRUNC(a, runs[i].pgsz);
	a = TRUNC(a, PG);
	i = run_find(b - 1);
	if (i < nruns && runs[i].start <= b - 1)
		b = ROUND(b, runs[i].pgsz);
	b = ROUND(b, PG);

	/* without HOLESOK every page must be wired */
	uintptr_t cur = a;
	for (i = run_find(a); !(flags & UBDMA_WIRE_HOLESOK) && cur < b; i++) {
		if (i >= nruns || runs[i].start > cur) {
			err = uerr(EINVAL, "[%p, %p) is not wired", (void *)cur,
				   (void *)(i < nruns && runs[i].start < b ? runs[i].start : b));
			break;
		}
		cur = runs[i].end;
	}
	/* the runs whose count drops to zero are unlocked before the counts change, without
	 * allocating: an unwire that runs out of memory would leave the pages pinned for good when
	 * it serves a void unlock (ubdma_umem_unlock) */
	if (!err && run_reserve(4))
		err = uerr(ENOMEM, "out of memory");
	for (i = run_find(a); !err && i < nruns && runs[i].start < b; i++) {
		if (runs[i].count != 1)
			continue;
		uintptr_t s = runs[i].start > a ? runs[i].start : a;
		uintptr_t e = runs[i].end < b ? runs[i].end : b;
		/* ENOMEM from these means the pages were unmapped while wired: nothing to undo */
		madvise((void *)s, e - s, MADV_DOFORK);
		sys_munlock(s, e);
	}
	if (!err)
		run_add(a, b, -1, PG);
	pthread_mutex_unlock(&wire_lock);
	return err;
}

unsigned ubdma_wire_count(const void *addr)
{
	uintptr_t a = (uintptr_t)addr;
	unsigned c = 0;

	pthread_mutex_lock(&wire_lock);
	size_t i = run_find(a);
	if (i < nruns && runs[i].start <= a)
		c = runs[i].count;
	pthread_mutex_unlock(&wire_lock);
	return c;
}

size_t wire_pagesize(const void *addr)
{
	struct vma *v;
	int nv;
	size_t ps = PG;
	uintptr_t a = TRUNC((uintptr_t)addr, PG);

	if (vma_collect(a, a + PG, &v, &nv) == 0) {
		if (nv > 0 && v[0].start <= a)
			ps = v[0].pgsz;
		free(v);
	}
	return ps;
}

int ubdma_wire(void *addr, size_t len, int flags)
{
	return wire_range(addr, len, flags, NULL, NULL);
}

int ubdma_unwire(void *addr, size_t len, int flags)
{
	return unwire_range(addr, len, flags);
}
