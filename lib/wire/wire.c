/*
 * wire.c - wiring VA ranges with vslock(9) / vm_map_wire(9) semantics on top of mlock(2), with
 * counts that belong to the mapping, not to the address.
 *
 * Linux's mlock does not nest: one munlock undoes any number of mlocks.  FreeBSD's vm_map_wire
 * keeps a wire count per map entry, and vslock/vsunlock pairs nest.  This file keeps the counts
 * itself, in a sorted array of runs [start, end) that share one count, and calls mlock only on
 * pages whose count leaves zero and munlock only on pages whose count returns to zero.
 *
 * A count lives as long as the mapping it was taken on.  mlock(2): pages are unlocked "implicitly
 * by a call to munmap()"; FreeBSD's wire count is in the map entry, which munmap deletes.  The
 * kernel tells us (monitor.c: every wired range is registered on the process's userfaultfd, and
 * munmap, mmap MAP_FIXED over it, brk, mremap and madvise DONTNEED_LOCKED / REMOVE send an event
 * before the caller returns) and wire_apply_events() ends the counts there.  An ended wiring
 * leaves a *tombstone*: the number of unwires still owed to it, so that a balanced ubdma_unwire()
 * after the munmap succeeds; every run also has a *generation*, and a ticket (what one
 * wire_range() call holds: cookies and cache entries keep one) releases only the runs of its own
 * generation, so an old registration's release never touches new memory at the same address.
 *
 * Rules (vslock(9), vm_map_wire(9), mlock(2)):
 *  - the range is rounded out to whole pages of each mapping (4 KiB, or the hugetlb page size);
 *  - a range that wraps around the address space is EINVAL; an empty one wires nothing (mlock);
 *  - an unmapped or inaccessible part is EFAULT unless HOLESOK (vm_map_wire's HOLESOK/NOHOLES),
 *    and so is a part of a file mapping past the end of its file;
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
#include <time.h>
#include <unistd.h>

#include <ubdma/core.h>

#include "base/lock.h"
#include "base/log.h"
#include "base/page.h"
#include "wire/monitor.h"
#include "wire/vma.h"
#include "wire/wire.h"
#include "wire/wire_int.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define TRUNC(x, a) ((x) & ~((uintptr_t)(a) - 1))
#define ROUND(x, a) (((x) + (a) - 1) & ~((uintptr_t)(a) - 1))

/* Free slots kept in both run arrays for the monitor thread, which must not allocate. */
#define SLACK 256

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

/* ------------------------------------------------------------------ run sets */

/*
 * A run: [start, end) with one count, page size, generation and watch state.  In the live set
 * count is the wire count, of which bare came from ubdma_wire() (the rest from tickets); in the
 * tombstone set count is the number of bare wirings the address space ended there and nobody has
 * unwired yet (gen, bare and watched unused); in the watch set bare is the number of watches
 * that keep the range out of a fork(2) child (hugetlb cookies, MADV_DONTFORK: fork_back()).
 * Bare and ticket counts are kept apart so that an
 * ubdma_unwire() meant for a wiring munmap ended never takes a count a cookie holds.
 */
struct wrun {
	uintptr_t start, end;
	unsigned count;
	unsigned bare;
	unsigned watched; /* registered with the monitor: its munmap will end it */
	size_t pgsz;
	uint64_t gen;
};

struct runset {
	struct wrun *r;
	size_t n, cap;
};

static struct ulock wire_lock = ULOCK_INIT; /* lock.h's: taken on every watch, inline */
static struct runset live, tomb;
static uint64_t gen_next = 1;
uint64_t wire_end_seq_; /* atomic: bumped whenever the address space ends some wiring */

/* Index of the first run with end > addr. */
static size_t run_find(const struct runset *rs, uintptr_t addr)
{
	size_t lo = 0, hi = rs->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (rs->r[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

#define TOMB_MARKS 65536 /* paid tombstones kept as marks, at most (then they are forgotten) */

/*
 * Room for more runs plus the monitor's slack.  Callers reserve before they change anything; the
 * monitor reserves when a batch of events used up the slack, and where even that fails it ends
 * whole runs or drops a tombstone (see end_range()).
 */
static int run_reserve_slow(struct runset *rs, size_t more)
{
	if (rs == &tomb && rs->n > TOMB_MARKS) {
		size_t k = 0;
		for (size_t i = 0; i < rs->n; i++)
			if (rs->r[i].count)
				rs->r[k++] = rs->r[i];
		rs->n = k;
	}
	if (rs->n + more + SLACK <= rs->cap)
		return 0;
	size_t cap = (rs->n + more + SLACK) * 2;
	struct wrun *n = realloc(rs->r, cap * sizeof(*n));
	if (!n)
		return ENOMEM;
	rs->r = n;
	rs->cap = cap;
	return 0;
}

/* The usual case, room already there, inline: a watch reserves in five sets (issue 21, TCG). */
static inline int run_reserve(struct runset *rs, size_t more)
{
	if (__builtin_expect(rs != &tomb && rs->n + more + SLACK <= rs->cap, 1))
		return 0;
	return run_reserve_slow(rs, more);
}

static int run_room(const struct runset *rs, size_t k)
{
	return rs->n + k <= rs->cap;
}

static void run_insert(struct runset *rs, size_t i, struct wrun r)
{
	memmove(&rs->r[i + 1], &rs->r[i], (rs->n - i) * sizeof(*rs->r));
	rs->r[i] = r;
	rs->n++;
}

static void run_remove(struct runset *rs, size_t i)
{
	if (i + 1 < rs->n) /* the last run (a lone watch's release) moves nothing: no call (issue 21) */
		memmove(&rs->r[i], &rs->r[i + 1], (rs->n - i - 1) * sizeof(*rs->r));
	rs->n--;
}

/* Make a run boundary fall on addr (one more run at most: the caller checked the room). */
static void run_split(struct runset *rs, uintptr_t addr)
{
	size_t i = run_find(rs, addr);

	if (i < rs->n && rs->r[i].start < addr) {
		struct wrun tail = rs->r[i];
		tail.start = addr;
		rs->r[i].end = addr;
		run_insert(rs, i + 1, tail);
	}
}

static int run_same(const struct wrun *a, const struct wrun *b)
{
	return a->end == b->start && a->count == b->count && a->bare == b->bare && a->pgsz == b->pgsz &&
	       a->gen == b->gen && a->watched == b->watched;
}

/* Merge equal neighbours in [s, e] and its edges. */
static void run_coalesce(struct runset *rs, uintptr_t s, uintptr_t e)
{
	size_t i = run_find(rs, s);

	i = i ? i - 1 : 0;
	while (i + 1 < rs->n && rs->r[i].start <= e) {
		if (run_same(&rs->r[i], &rs->r[i + 1])) {
			rs->r[i].end = rs->r[i + 1].end;
			run_remove(rs, i + 1);
		} else {
			i++;
		}
	}
}

/*
 * Add delta to the counts over [s, e) (and dbare to the bare counts).  With proto, gaps get a run
 * of proto (count delta); runs whose count reaches zero go.  Room: the caller reserved it.
 */
static void run_add(struct runset *rs, uintptr_t s, uintptr_t e, int delta, int dbare, const struct wrun *proto)
{
	run_split(rs, s);
	run_split(rs, e);
	size_t i = run_find(rs, s);
	uintptr_t cur = s;

	while (cur < e) {
		if (i < rs->n && rs->r[i].start <= cur) {
			if (delta < 0 && rs->r[i].count < (unsigned)-delta)
				rs->r[i].count = 0;
			else
				rs->r[i].count += (unsigned)delta;
			if (dbare < 0 && rs->r[i].bare < (unsigned)-dbare)
				rs->r[i].bare = 0;
			else
				rs->r[i].bare += (unsigned)dbare;
			cur = rs->r[i].end;
			/* a tombstone paid off stays as a mark: an ended wiring was here (see tomb_covers()) */
			if (rs->r[i].count == 0 && rs != &tomb)
				run_remove(rs, i);
			else
				i++;
			continue;
		}
		uintptr_t gap_end = (i < rs->n && rs->r[i].start < e) ? rs->r[i].start : e;
		if (delta > 0 && proto) {
			struct wrun r = *proto;
			r.start = cur;
			r.end = gap_end;
			r.count = (unsigned)delta;
			r.bare = dbare > 0 ? (unsigned)dbare : 0;
			run_insert(rs, i++, r);
		}
		cur = gap_end;
	}
	run_coalesce(rs, s, e);
}

/* Call fn on each sub-range of [s, e) that has no live run. */
static int for_each_unwired(uintptr_t s, uintptr_t e, int (*fn)(uintptr_t, uintptr_t, void *), void *arg)
{
	size_t i = run_find(&live, s);
	uintptr_t cur = s;

	while (cur < e) {
		if (i < live.n && live.r[i].start <= cur) {
			cur = live.r[i++].end;
			continue;
		}
		uintptr_t gap_end = (i < live.n && live.r[i].start < e) ? live.r[i].start : e;
		int err = fn(cur, gap_end, arg);
		if (err)
			return err;
		cur = gap_end;
	}
	return 0;
}

/*
 * Watch-only wirings (wire_watch(), for registrars that pin the pages themselves): counted in a
 * run set of their own, registered with the monitor and never locked.  Their generations carry
 * GEN_WATCH, so that a ticket says which set it belongs to.
 */
#define GEN_WATCH WIRE_GEN_WATCH
/* What a watch-only wiring asks the monitor to register around it (wire_watch()). */
#define WATCH_WINDOW PAGE_2M
static struct runset watch;
/* Windows known to be registered whole (watch_trust()): a watch inside one makes no system call. */
static struct runset wins;
/* Windows registered that the kernel would not vouch for (not one mapping): not asked again. */
static struct runset nots;
/*
 * Inside such a window (a region's edge beside another mapping or a hole) the part of the
 * range's own mapping is trusted instead (watch_sub()); ranges the kernel would not vouch for
 * even alone (they span mappings) are remembered here, not asked again until an event changes
 * them.
 */
static struct runset pieceno;
static void end_watch(uintptr_t s, uintptr_t e);
static void wins_cut(uintptr_t s, uintptr_t e);

/*
 * One-piece tickets (a watch of fresh memory: a cache miss's usual case) come from a pool and go
 * back to it on release, so that such a miss allocates nothing.  Made TPOOL_GROW at a time and
 * never freed, as the run sets.  Wire lock held.
 */
#define TPOOL_GROW 32
static struct wire_ticket *tpool;

static struct wire_ticket *tpool_get(void)
{
	struct wire_ticket *t = tpool;

	if (!t) {
		size_t sz = sizeof(*t) + sizeof(t->p[0]);
		char *block = malloc(TPOOL_GROW * sz);
		if (!block)
			return NULL;
		for (int i = TPOOL_GROW - 1; i >= 0; i--) {
			struct wire_ticket *x = (struct wire_ticket *)(void *)(block + (size_t)i * sz);
			x->next = t;
			t = x;
		}
	}
	tpool = t->next;
	t->pooled = 1;
	return t;
}

/*
 * Stop watching [s, e) except where the other set still needs the monitor: a range wired both
 * ways stays registered until both are gone.  No allocation.  Wire lock held.
 */
static void unwatch_except(const struct runset *keep, uintptr_t s, uintptr_t e)
{
	size_t i = run_find(keep, s);
	uintptr_t cur = s;

	wins_cut(s, e); /* no longer registered whole */

	while (cur < e) {
		if (i < keep->n && keep->r[i].start <= cur) {
			cur = keep->r[i++].end;
			continue;
		}
		uintptr_t gap_end = (i < keep->n && keep->r[i].start < e) ? keep->r[i].start : e;
		wmon_unregister(cur, gap_end);
		cur = gap_end;
	}
}

/*
 * [s, e) lost the last of one set's reasons to stay out of a fork(2) child: mark MADV_DOFORK
 * what the other set (keep) does not hold there: a wiring (any live run), or a watch that holds
 * it out (a watch run with a bare count: a hugetlb cookie, wire_watch_sized()).  Both sets keep
 * a range MADV_DONTFORK while either holds it, and only the last one to let go marks it back
 * (docs/wire.md section 13, "Hugetlb cookies watched").  One madvise over the gaps' span when
 * nothing is kept (it passes over holes).  No allocation.  Wire lock held.
 */
static void fork_back(uintptr_t s, uintptr_t e, const struct runset *keep)
{
	size_t i = run_find(keep, s);
	uintptr_t cur = s;

	while (cur < e) {
		while (i < keep->n && keep->r[i].start < e && keep == &watch && !keep->r[i].bare)
			i++;
		uintptr_t next = i < keep->n && keep->r[i].start < e ? keep->r[i].start : e;
		if (next > cur)
			madvise((void *)cur, next - cur, MADV_DOFORK);
		cur = next < e ? keep->r[i++].end : e;
	}
}

/* ------------------------------------------------------------ kernel state */

/* What unlock_range() undoes besides the lock. */
#define UNDO_FORK 1  /* MADV_DOFORK, where no hugetlb cookie's watch holds it (fork_back()) */
#define UNDO_WATCH 2 /* the registration with the monitor (unwatch_except(&watch, ...)) */

struct drop {
	int what;   /* UNDO_* */
	int missed; /* a piece could not be unlocked: it changed since the look, look again */
};

/* Unlock one mapped piece, and unmark and stop watching it as asked. */
static int drop_piece(uintptr_t s, uintptr_t e, void *arg)
{
	struct drop *d = arg;

	if (d->what & UNDO_FORK)
		fork_back(s, e, &watch);
	if (sys_munlock(s, e)) {
		d->missed = 1; /* part of it went since the look: what is left stays registered */
		return 0;
	}
	if (d->what & UNDO_WATCH)
		unwatch_except(&watch, s, e);
	return 0;
}

/*
 * Unlock whatever is mapped in [s, e) now (and mark it MADV_DOFORK, and unregister it, as what
 * says).  munlock(2) stops at the first hole and unlocks nothing at all when the range starts
 * with one, so a range with holes goes mapping by mapping; and a piece is unregistered only
 * once it is unlocked.  The order is the point: another thread may move part of a locked,
 * registered range away at any moment (the move is done at once; only the mover then sleeps
 * until the monitor reads its event), and a piece left locked after its registration was taken
 * would carry VM_LOCKED wherever it is moved next, with no event to say so (issue 21, the
 * narrowed race model's "lo dc, not registered" pieces; test_wire_race).  The look at the
 * mappings is made again while a piece changed under it (a few times: each change that can
 * come under the wire lock is a move or an unmap by another thread).  No allocation (the monitor
 * thread calls it).  Wire lock held.
 */
static void unlock_range(uintptr_t s, uintptr_t e, int what)
{
	struct drop d = { what, 1 };

	if (sys_munlock(s, e) == 0) {
		if (what & UNDO_FORK)
			fork_back(s, e, &watch);
		if (what & UNDO_WATCH)
			unwatch_except(&watch, s, e);
		return;
	}
	for (int pass = 0; pass < 4 && d.missed; pass++) {
		d.missed = 0;
		vma_each(s, e, drop_piece, &d);
	}
}

/*
 * The wiring of [s, e) ended (an event), or its 4 KiB count returned to zero (count_drop()):
 * undo what wiring did to whatever is mapped there now.  Wire lock held; no allocation.
 */
static void state_drop(uintptr_t s, uintptr_t e)
{
	unlock_range(s, e, UNDO_FORK | UNDO_WATCH);
}

/*
 * The count of [s, e), pages of pgsz, returned to zero by a release or an unwire: the memory is
 * still mapped.  hugetlb stays registered.  UFFDIO_UNREGISTER resolves write protection on its
 * way out, and hugetlb's version leaves a private mapping's entries read-only, so the next
 * wiring's mlock would take a write fault per huge page (measured on 6.18, where 4 KiB
 * anonymous memory keeps its entries writable: the resolve asks to, hugetlb's ignores it).  Only
 * the registration is kept, never the lock: what is moved away later is registered (its event
 * ends nothing: no count is there) and not locked.  docs/wire.md section 14 says what the
 * application sees.  Wire lock held.
 */
static void count_drop(uintptr_t s, uintptr_t e, size_t pgsz)
{
	unlock_range(s, e, UNDO_FORK | (pgsz > PAGE_4K ? 0 : UNDO_WATCH));
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

/* Whether locking [s, e) more would pass RLIMIT_MEMLOCK (CAP_IPC_LOCK: never). */
static int over_memlock(uintptr_t s, uintptr_t e)
{
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };

	getrlimit(RLIMIT_MEMLOCK, &rl);
	return !has_ipc_lock() && rl.rlim_cur != RLIM_INFINITY && vmlck_bytes() + (e - s) > rl.rlim_cur;
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

/*
 * Whether the process is near vm.max_map_count, the other reason mlock(2) and madvise(2) give
 * ENOMEM (each wired range can split a mapping).  Error paths only: it reads two files.
 */
static int near_map_limit(void)
{
	FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
	long max = 65530, n = 0;
	int c;

	if (f) {
		if (fscanf(f, "%ld", &max) != 1)
			max = 65530;
		fclose(f);
	}
	if (!(f = fopen("/proc/self/maps", "re")))
		return 0;
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n + 8 >= max;
}

/* Whether every page of [s, e) is mapped now (mincore says ENOMEM for a hole). */
static int mapped_now(uintptr_t s, uintptr_t e)
{
	unsigned char v[256];

	for (; s < e; s += sizeof(v) * PAGE_4K) {
		size_t n = (e - s) / PAGE_4K < sizeof(v) ? (e - s) / PAGE_4K : sizeof(v);
		if (mincore((void *)s, n * PAGE_4K, v) && errno == ENOMEM)
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
		if (undo)
			unlock_range(s, e, 0); /* a hole may have come after the lock */
		if (err == ENOMEM && (!mapped_now(s, e) || (again && !over_memlock(s, e) && !near_map_limit())))
			return uerr(EFAULT, "[%p, %p) was unmapped while it was being wired", (void *)s, (void *)e);
		if (err != ENOMEM || again)
			return err == EAGAIN || err == EPERM || err == ENOMEM ?
				       mlock_failed(s, e) :
				       uerr(err, "mlock of [%p, %p) failed", (void *)s, (void *)e);
	}
}

/* What this call locked, to undo on failure and to count on success. */
struct locked {
	uintptr_t s, e;
	unsigned watched;
};

struct undo {
	struct locked *v;
	size_t n, cap;
	size_t pgsz; /* of the segment being locked */
};

/*
 * The monitor refused [s, e): because the kernel cannot watch such memory (a regular file,
 * another userfaultfd's range), or because another thread replaced the mapping since we looked
 * (a hugetlb mapping where 4 KiB pages were: the bounds no longer fit).  Only the first may be
 * wired unwatched; the second would be a wiring no munmap could end.
 */
static int changed_since(uintptr_t s, uintptr_t e, size_t pgsz)
{
	struct vma *v;
	int nv, changed = 0, anon = 1;
	uintptr_t cur = s;

	if (vma_collect(s, e, &v, &nv))
		return 1;
	for (int i = 0; i < nv && !changed; i++) {
		changed = v[i].start > cur || !v[i].readable || v[i].pgsz != pgsz;
		anon &= !v[i].file;
		cur = v[i].end;
	}
	free(v);
	/* anonymous memory always registers: a refusal means it was something else a moment ago */
	return changed || cur < e || anon;
}

/*
 * Whether [s, e) is still mapped, without holes, in pages of pgsz: after the locks, the memory we
 * locked is the memory we looked at.  1 if not (or when the look-up fails).
 */
static int pages_changed(uintptr_t s, uintptr_t e, size_t pgsz)
{
	struct vma *v;
	int nv, changed = 0;
	uintptr_t cur = s;

	if (vma_collect(s, e, &v, &nv))
		return 1;
	for (int i = 0; i < nv && !changed; i++) {
		changed = v[i].start > cur || v[i].pgsz != pgsz;
		cur = v[i].end;
	}
	free(v);
	return changed || cur < e;
}

static int lock_one(uintptr_t s, uintptr_t e, void *arg)
{
	struct undo *u = arg;

	if (u->n == u->cap) {
		size_t cap = u->cap ? u->cap * 2 : 16;
		struct locked *nv = realloc(u->v, cap * sizeof(*nv));
		if (!nv)
			return uerr(ENOMEM, "out of memory");
		u->v = nv;
		u->cap = cap;
	}
	/* watched before it is locked: an unmap from now on makes an event, so a count taken on a
	 * mapping that goes away is always ended (one taken after a replacement included) */
	unsigned watched = wmon_register(s, e) == 0;
	/* a refusal can be a mapping caught in the middle of a replacement: ask once more before
	 * taking the range for one the kernel cannot watch (a shared file mapping looks the same) */
	if (!watched && wmon_fd() >= 0)
		watched = wmon_register(s, e) == 0;
	/* anonymous memory, and hugetlb where the kernel offers it, always registers: a refusal
	 * means the mapping changed under us, whatever the look-up says now.  Only what cannot be
	 * watched (a regular file, another userfaultfd's range) is wired unwatched. */
	if (!watched && wmon_fd() >= 0 &&
	    ((u->pgsz > PAGE_4K && wmon_watches_hugetlb()) || changed_since(s, e, u->pgsz)))
		return uerr(EFAULT, "[%p, %p) changed while it was being wired", (void *)s, (void *)e);
	/* every undo below goes through unlock_range(): part of [s, e) may have been moved away
	 * (registered, so its event is on the way), and munlock(s, e) would then unlock nothing */
	int undo = UNDO_FORK | (watched ? UNDO_WATCH : 0);
	int err = wire_mlock(s, e, 1);
	if (err) {
		if (watched)
			unwatch_except(&watch, s, e); /* wire_mlock() unlocked what it locked */
		return err;
	}
	if (madvise((void *)s, e - s, MADV_DONTFORK)) {
		err = errno;
		unlock_range(s, e, undo); /* the madvise marks the pieces it reaches before a hole */
		/* ENOMEM is vm.max_map_count, or a hole: the range was unmapped since the mlock by
		 * another thread (and maybe mapped again: what we locked is gone either way) */
		if (err == EINVAL || (err == ENOMEM && (!mapped_now(s, e) || !near_map_limit())))
			err = EFAULT;
		return uerr(err, "madvise(MADV_DONTFORK) of [%p, %p) failed", (void *)s, (void *)e);
	}
	/*
	 * The page size we looked at must be the one we locked.  hugetlb: another thread may have
	 * put 4 KiB pages there meanwhile; we would count them as huge pages (and the phys backend
	 * would take their frames for one contiguous page).  4 KiB: a hugetlb mapping may have
	 * replaced the 4 KiB one between the look-up and the locks; registration, mlock and madvise
	 * all succeed on it when [s, e) holds whole huge pages (they refuse to split one, so a range
	 * holding none cannot have locked one), and a 4 KiB count on a huge page is one no event
	 * ends: the unmap of the old mapping, unwatched, made none.  4 KiB pages in place of 4 KiB
	 * pages are just the memory there now, and wiring them is right.
	 */
	if ((u->pgsz > PAGE_4K && changed_since(s, e, u->pgsz)) ||
	    (u->pgsz == PAGE_4K && ROUND(s, PAGE_2M) + PAGE_2M <= e && pages_changed(s, e, u->pgsz))) {
		unlock_range(s, e, undo);
		return uerr(EFAULT, "[%p, %p) changed while it was being wired", (void *)s, (void *)e);
	}
	/*
	 * Registered once more, now that it is locked: another thread may have mapped new memory
	 * over [s, e) between the registration and the mlock, and the mlock then locked that, which
	 * no registration watches; were it moved with mremap, no event would say so and it would stay
	 * VM_LOCKED wherever it went (issue 21, docs/wire.md "Replaced while being wired").  The
	 * replacer sleeps until the monitor reads its event, which the monitor does only with the wire
	 * lock (wire_events_lock()), so what is at [s, e) now is what the mlock locked.  Registering a
	 * range registered already changes nothing; registered, the new memory's move is an event,
	 * and the replacement's own event ends this count and unlocks the memory where it is.
	 */
	if (watched && wmon_register(s, e)) {
		unlock_range(s, e, undo);
		return uerr(EFAULT, "[%p, %p) changed while it was being wired", (void *)s, (void *)e);
	}
	u->v[u->n++] = (struct locked){ s, e, watched };
	return 0;
}

static void undo_all(struct undo *u)
{
	for (size_t i = 0; i < u->n; i++)
		unlock_range(u->v[i].s, u->v[i].e, UNDO_FORK | (u->v[i].watched ? UNDO_WATCH : 0));
}

/*
 * Counted pages the monitor cannot watch (a regular file mapping, a range another userfaultfd
 * owns, no userfaultfd at all) may have been unmapped and replaced without our knowing: lock and
 * mark them again, which costs the kernel little when nothing changed.  Not undone on a later
 * failure: these pages are wired by an earlier call anyway.
 */
static int relock_unwatched(uintptr_t s, uintptr_t e)
{
	size_t i = run_find(&live, s);

	for (; i < live.n && live.r[i].start < e; i++) {
		if (live.r[i].watched)
			continue;
		uintptr_t a = live.r[i].start > s ? live.r[i].start : s, b = live.r[i].end < e ? live.r[i].end : e;
		int err = wire_mlock(a, b, 0);
		if (err)
			return err;
		if (madvise((void *)a, b - a, MADV_DONTFORK))
			return uerr(EFAULT, "madvise(MADV_DONTFORK) of [%p, %p) failed", (void *)a, (void *)b);
	}
	return 0;
}

/*
 * Whether this kernel has MADV_POPULATE_READ/WRITE (5.14): asked once, on a page of our own.  An
 * EINVAL on the caller's range must not be taken for "unsupported": madvise also says EINVAL for
 * a mapping that cannot be populated (PROT_NONE put there by another thread meanwhile), and
 * touching such pages by hand would fault in the library.
 */
static int populate_supported(void)
{
	static int known = -1;
	static char page[PAGE_4K] __attribute__((aligned(PAGE_4K)));
	int k = __atomic_load_n(&known, __ATOMIC_RELAXED);

	if (k < 0) {
		k = madvise(page, PAGE_4K, MADV_POPULATE_READ) == 0 || errno != EINVAL;
		__atomic_store_n(&known, k, __ATOMIC_RELAXED);
	}
	return k;
}

static int prefault(uintptr_t s, uintptr_t e, int write)
{
	if (madvise((void *)s, e - s, write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) == 0)
		return 0;
	int err = errno;
	if (err != EINVAL || populate_supported())
		return err == EFAULT || err == ENOMEM || err == EINVAL ? EFAULT : err;
	/* kernels before 5.14: touch each page for write without changing it (reads: nothing) */
	if (write)
		for (uintptr_t p = s; p < e; p += PAGE_4K)
			__atomic_fetch_add((volatile char *)p, 0, __ATOMIC_RELAXED);
	return 0;
}

/*
 * Where this call's mlock populates (wire_range(), cow_by_mlock): fault in only the pages that
 * hold a count already, which it will not lock again.
 */
static int prefault_wired(uintptr_t s, uintptr_t e, int write)
{
	for (size_t i = run_find(&live, s); i < live.n && live.r[i].start < e; i++) {
		uintptr_t a = live.r[i].start > s ? live.r[i].start : s, b = live.r[i].end < e ? live.r[i].end : e;
		int err = prefault(a, b, write);
		if (err)
			return err;
	}
	return 0;
}

/* ------------------------------------------------------------ fork and start */

/*
 * fork child: every wired page is MADV_DONTFORK, so the child has none of them; its counts
 * start at zero, and the monitor (a thread the child does not have, a handle on the parent's
 * address space) starts afresh on first use.  The arrays are left as they are (a thread of the
 * parent may have been moving them): a leak of two arrays, once per child.
 */
static void wire_atfork_child(void)
{
	live = (struct runset){ 0 };
	tomb = (struct runset){ 0 };
	watch = (struct runset){ 0 }; /* the child has copies, unwatched (docs/wire.md, watch-only) */
	wins = (struct runset){ 0 };
	nots = (struct runset){ 0 };
	tpool = NULL; /* a parent's thread may have been moving it */
	ulock_init(&wire_lock);
	wmon_forget();
	vma_forget();
}

/* At load time, not on first use: a fork racing the first use must find the handler in place. */
__attribute__((constructor)) static void wire_init(void)
{
	pthread_atfork(NULL, NULL, wire_atfork_child);
}

void wire_monitor_start(void)
{
	if (wmon_fd() >= 0)
		return;
	ulock_lock(&wire_lock);
	wmon_start_locked();
	ulock_unlock(&wire_lock);
}

/* Every entry point: the monitor runs, and what it read before this call is applied. */
static inline void wire_enter(void)
{
	if (__builtin_expect(wmon_fd() < 0, 0))
		wire_monitor_start();
	wmon_sync();
}

/* ------------------------------------------------------------ ending wirings */

/* The address space ended every wiring in [s, e): tombstones, kernel state undone.  Lock held. */
static void end_range(uintptr_t s, uintptr_t e)
{
	size_t i = run_find(&live, s);

	if (i >= live.n || live.r[i].start >= e)
		return;
	/* a huge page ends whole: an event of the 4 KiB mapping it replaced (late, docs/wire.md)
	 * must not leave a fragment, which no registration or madvise would take again */
	s = TRUNC(s, live.r[i].pgsz) > live.r[i].start ? TRUNC(s, live.r[i].pgsz) : live.r[i].start;
	size_t j = run_find(&live, e - 1);
	if (j < live.n && live.r[j].start < e)
		e = ROUND(e, live.r[j].pgsz) < live.r[j].end ? ROUND(e, live.r[j].pgsz) : live.r[j].end;
	/* without room to split (the slack used up by one batch and no memory for more) end whole runs */
	if (run_room(&live, 2) || !run_reserve(&live, 2)) {
		run_split(&live, s);
		run_split(&live, e);
		i = run_find(&live, s);
	}
	while (i < live.n && live.r[i].start < e) {
		struct wrun r = live.r[i];
		run_remove(&live, i);
		/* a tombstone needs at most two splits and one gap run per run it covers */
		size_t k = run_find(&tomb, r.start), need = 3;
		for (; k < tomb.n && tomb.r[k].start < r.end; k++)
			need++;
		if (!r.bare) {
			/* tickets know by their generation that their wiring ended */
		} else if (run_room(&tomb, need) || !run_reserve(&tomb, need)) {
			struct wrun t = { .pgsz = r.pgsz };
			run_add(&tomb, r.start, r.end, (int)r.bare, 0, &t);
		} else {
			ULOG_DEBUG("no room for the tombstone of [%#lx, %#lx)", (unsigned long)r.start,
				   (unsigned long)r.end);

		}
		/* the old mapping is gone; what is mapped there now was either never wired or wired
		 * between the unmap and its event (then that wiring ends too, docs/wire.md) */
		state_drop(r.start, r.end);
	}
	__atomic_add_fetch(&wire_end_seq_, 1, __ATOMIC_RELEASE);
}

/*
 * The monitor thread takes the wire lock before it read()s a batch and keeps it until the batch is
 * applied: the thread that unmapped, replaced or moved a watched range sleeps in the kernel until
 * that read, so nothing it does next can come between an event and its effect.  Without this a
 * wiring could lose track of memory it locked (issue 21, docs/wire.md "Replaced while being
 * wired"): wire_range() registers [s, e), another thread maps new memory over it (the UNMAP
 * event is queued; the new mapping is not registered), the mlock locks the new memory, the
 * monitor reads the event (the replacer wakes) and waits for the lock; the replacer then mremaps
 * the new memory elsewhere, which makes no event, before end_range() could unlock it in place:
 * VM_LOCKED with no count and no registration, for good.  With the read inside the lock the
 * replacer sleeps until end_range() unlocked the new memory where the wiring found it.
 *
 * The wait is bounded: a thread that holds the wire lock and itself unmaps a watched range (a
 * free() under the lock that returns heap memory the application wired to the kernel) sleeps
 * until the read, so after a second the monitor reads without the lock, as it did before.
 * 1 when the lock was taken.
 */
int wire_events_lock(void)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 1;
	if (ulock_timedlock(&wire_lock, &until) == 0)
		return 1;
	ULOG_WARN("wiring: the wire lock was held for a second; the monitor reads its events without it");
	return 0;
}

void wire_events_unlock(void)
{
	ulock_unlock(&wire_lock);
}

void wire_apply_events(const struct uffd_msg *msg, int n)
{
	ulock_lock(&wire_lock);
	wire_apply_events_locked(msg, n);
	ulock_unlock(&wire_lock);
}

void wire_apply_events_locked(const struct uffd_msg *msg, int n)
{
	for (int i = 0; i < n; i++) {
		const struct uffd_msg *m = &msg[i];
		switch (m->event) {
		case UFFD_EVENT_UNMAP:
		case UFFD_EVENT_REMOVE:
			/* REMOVE: the mapping stays but its pages go (DONTNEED_LOCKED, MADV_REMOVE):
			 * what a device was given is not what the process sees any more */
			end_watch(m->arg.remove.start, m->arg.remove.end);
			end_range(m->arg.remove.start, m->arg.remove.end);
			break;
		case UFFD_EVENT_REMAP: {
			uintptr_t from = m->arg.remap.from, to = m->arg.remap.to, len = m->arg.remap.len;
			end_watch(from, from + len);
			end_watch(to, to + len);
			end_range(from, from + len);
			end_range(to, to + len);
			/* VM_LOCKED, VM_DONTFORK and our registration moved with the pages */
			state_drop(to, to + len);
			break;
		}
		default:
			break;
		}
	}
}

/*
 * Counts of another page size inside a mapping belong to memory that mapping replaced: a mapping's
 * page size never changes.  Their end is known for certain now, whether its event is still on its
 * way (the kernel queues it after the new mapping exists) or never came (an unwatched range).
 */
static void end_other_sizes(uintptr_t s, uintptr_t e, size_t pgsz)
{
	for (size_t i = run_find(&live, s); i < live.n && live.r[i].start < e;) {
		if (live.r[i].pgsz == pgsz) {
			i++;
			continue;
		}
		/* a huge page cannot be partly replaced: the whole of it went */
		size_t pg = live.r[i].pgsz;
		uintptr_t a = TRUNC(s, pg) > live.r[i].start ? TRUNC(s, pg) : live.r[i].start;
		uintptr_t b = ROUND(e, pg) < live.r[i].end ? ROUND(e, pg) : live.r[i].end;
		end_range(a, b);
		i = run_find(&live, b); /* the next run, at whatever index the removal left it */
	}
}

uint64_t wire_end_seq(void)
{
	return __atomic_load_n(&wire_end_seq_, __ATOMIC_ACQUIRE);
}

/* ------------------------------------------------------------ wiring */

/* Check and round the range: EINVAL for a wrap or unknown flags. */
static int range_check(void *addr, size_t len, int flags, int allowed, uintptr_t *sp, uintptr_t *ep)
{
	uintptr_t a = (uintptr_t)addr, b = a + len;

	if (flags & ~allowed)
		return uerr(EINVAL, "unknown flags 0x%x", flags & ~allowed);
	if (b < a || ROUND(b, PAGE_4K) < b)
		return uerr(EINVAL, "range %p + %zu wraps around the address space", addr, len);
	*sp = a;
	*ep = b;
	return 0;
}

/*
 * A segment, whether it holds file pages (populated before locking: EOF is EFAULT), and whether
 * mlock's own population is a write fault there and the pre-fault can be left to it: private,
 * writable memory, anonymous or hugetlb (whose mappings are files, one mapping a segment: a page
 * past the end of the file fails that mlock, which reports population errors, and wire_mlock()
 * makes it EFAULT; test_write_intent_hugetlb).
 */
struct seg_info {
	int file;
	int cow_by_mlock;
};

/* Turn the mappings under [a, b) into rounded segments; EFAULT on a hole unless HOLESOK. */
static int build_segs(uintptr_t a, uintptr_t b, int flags, struct wire_seg **segsp, struct seg_info **infop,
		      int *nsegp)
{
	struct vma *v;
	int nv, err = vma_collect(TRUNC(a, PAGE_4K), ROUND(b, PAGE_4K), &v, &nv);
	uintptr_t cur = TRUNC(a, PAGE_4K), end = ROUND(b, PAGE_4K);
	struct wire_seg *segs;
	struct seg_info *info;
	int n = 0;

	if (err)
		return uerr(err, "cannot read /proc/self/maps");
	segs = calloc((size_t)nv + 1, sizeof(*segs));
	info = calloc((size_t)nv + 1, sizeof(*info));
	if (!segs || !info) {
		free(v);
		free(segs);
		free(info);
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
			int cow = !v[i].shared && v[i].writable && (!v[i].file || v[i].hugetlb);
			if (n && segs[n - 1].end == ss && segs[n - 1].pgsz == pg &&
			    segs[n - 1].hugetlb == v[i].hugetlb) {
				segs[n - 1].end = se;
				/* files of more than one mapping: each has an end, pre-fault them */
				info[n - 1].cow_by_mlock &= cow && !v[i].file && !info[n - 1].file;
				info[n - 1].file |= v[i].file;
			} else {
				info[n] = (struct seg_info){ v[i].file, cow };
				segs[n++] = (struct wire_seg){ ss, se, pg, v[i].hugetlb };
			}
		}
		cur = v[i].end;
	}
	if (!err && cur < end && !(flags & UBDMA_WIRE_HOLESOK))
		err = uerr(EFAULT, "[%p, %p) is not mapped", (void *)cur, (void *)end);
	free(v);
	if (err) {
		free(segs);
		free(info);
		return err;
	}
	*segsp = segs;
	*infop = info;
	*nsegp = n;
	return 0;
}

/* The ticket of segs: every live run over them and its generation, neighbours merged. */
static struct wire_ticket *ticket_make(const struct wire_seg *segs, int nseg)
{
	size_t cap = 0, n = 0;
	struct wire_ticket *t;

	for (int i = 0; i < nseg; i++)
		for (size_t k = run_find(&live, segs[i].start); k < live.n && live.r[k].start < segs[i].end; k++)
			cap++;
	if (!(t = malloc(sizeof(*t) + (cap + 1) * sizeof(t->p[0]))))
		return NULL;
	*t = (struct wire_ticket){ .watched = 1, .seq = wire_end_seq_ };
	for (int i = 0; i < nseg; i++)
		for (size_t k = run_find(&live, segs[i].start); k < live.n && live.r[k].start < segs[i].end; k++) {
			t->watched &= live.r[k].watched != 0;
			uintptr_t s = live.r[k].start > segs[i].start ? live.r[k].start : segs[i].start;
			uintptr_t e = live.r[k].end < segs[i].end ? live.r[k].end : segs[i].end;
			if (n && t->p[n - 1].e == s && t->p[n - 1].gen == live.r[k].gen)
				t->p[n - 1].e = e;
			else
				t->p[n++] = (struct wire_piece){ s, e, live.r[k].gen };
		}
	t->n = (int)n;
	return t;
}

int wire_range(void *addr, size_t len, int flags, struct wire_seg **segsp, int *nsegp,
	       struct wire_ticket **ticketp)
{
	uintptr_t a = 0, b = 0;
	struct wire_seg *segs = NULL;
	struct seg_info *info = NULL;
	struct wire_ticket *t = NULL;
	struct undo u = { 0 };
	int nseg = 0, err = range_check(addr, len, flags, UBDMA_WIRE_HOLESOK | UBDMA_WIRE_WRITE, &a, &b);
	int bare = ticketp == NULL; /* ubdma_wire(): unwired by address, not by ticket */

	if (err)
		return err;
	if (len == 0) {
		/* mlock(2) and vslock(9) accept an empty range and lock nothing */
		if (segsp) {
			*segsp = calloc(1, sizeof(**segsp));
			*nsegp = 0;
		}
		if (ticketp && (*ticketp = calloc(1, sizeof(**ticketp)))) {
			(*ticketp)->watched = 1; /* nothing wired, nothing unwatched */
			(*ticketp)->seq = wire_end_seq();
		}
		if ((segsp && !*segsp) || (ticketp && !*ticketp)) {
			if (segsp)
				free(*segsp);
			return uerr(ENOMEM, "out of memory");
		}
		return 0;
	}
	wire_enter();
	ulock_lock(&wire_lock);
	err = build_segs(a, b, flags, &segs, &info, &nseg);
	if (!err && (run_reserve(&live, 3 * (size_t)nseg + 4) || run_reserve(&tomb, 0)))
		err = uerr(ENOMEM, "out of memory");
	for (int i = 0; i < nseg && !err; i++)
		end_other_sizes(segs[i].start, segs[i].end, segs[i].pgsz);
	for (int i = 0; i < nseg && !err; i++) {
		if ((flags & UBDMA_WIRE_WRITE) || info[i].file) {
			/* WRITE: break copy-on-write before the frame is taken.  Files: a page past the
			 * end of the file would SIGBUS; mlock skips it silently and locks the rest.
			 * Private writable memory, anonymous or hugetlb: the mlock this call makes on
			 * pages without a count populates them with write faults
			 * (populate_vma_page_range(): FOLL_WRITE on a private writable mapping, to break
			 * COW), so only the pages it will not lock, those wired already, are faulted here
			 * (docs/wire.md section 4) */
			err = info[i].cow_by_mlock ?
				      prefault_wired(segs[i].start, segs[i].end, flags & UBDMA_WIRE_WRITE) :
				      prefault(segs[i].start, segs[i].end, flags & UBDMA_WIRE_WRITE);
			if (err) {
				uerr(err, "cannot fault [%p, %p) in%s", (void *)segs[i].start, (void *)segs[i].end,
				     err == EFAULT && info[i].file ? " (past the end of its file?)" :
				     flags & UBDMA_WIRE_WRITE ? " for write" : "");
				break;
			}
		}
		u.pgsz = segs[i].pgsz;
		err = for_each_unwired(segs[i].start, segs[i].end, lock_one, &u);
		if (!err)
			err = relock_unwatched(segs[i].start, segs[i].end);
	}
	if (!err) {
		/* u's pieces had no count: new runs of this call's generation; the rest nests */
		uint64_t gen = gen_next++;
		size_t more = 3 * (size_t)nseg + 4 * u.n + 4;
		if (run_reserve(&live, more)) {
			err = uerr(ENOMEM, "out of memory");
		} else {
			for (int i = 0; i < nseg; i++)
				run_add(&live, segs[i].start, segs[i].end, 1, bare, NULL);
			for (size_t k = 0; k < u.n; k++) {
				size_t pg = PAGE_4K;
				for (int i = 0; i < nseg; i++)
					if (u.v[k].s >= segs[i].start && u.v[k].s < segs[i].end)
						pg = segs[i].pgsz;
				struct wrun p = { .pgsz = pg, .gen = gen, .watched = u.v[k].watched };
				run_add(&live, u.v[k].s, u.v[k].e, 1, bare, &p);
			}
			if (ticketp && !(t = ticket_make(segs, nseg))) {
				/* take it all back: the counts just added, then the locks */
				for (int i = 0; i < nseg; i++)
					run_add(&live, segs[i].start, segs[i].end, -1, -bare, NULL);
				err = uerr(ENOMEM, "out of memory");
			}
		}
	}
	if (err)
		undo_all(&u);
	ulock_unlock(&wire_lock);
	free(u.v);
	free(info);
	if (err || !segsp) {
		free(segs);
	} else {
		*segsp = segs;
		*nsegp = nseg;
	}
	if (ticketp && !err)
		*ticketp = t;
	return err;
}

/* Drop one tombstone count over [s, e) where there is one.  Lock held, room reserved. */
static void tomb_consume(uintptr_t s, uintptr_t e)
{
	size_t i = run_find(&tomb, s);

	if (i >= tomb.n || tomb.r[i].start >= e)
		return;
	/* a tombstone of a huge page is paid whole, as its wiring was */
	size_t j = run_find(&tomb, e - 1);
	s = TRUNC(s, tomb.r[i].pgsz) > tomb.r[i].start ? TRUNC(s, tomb.r[i].pgsz) : tomb.r[i].start;
	if (j < tomb.n && tomb.r[j].start < e)
		e = ROUND(e, tomb.r[j].pgsz) < tomb.r[j].end ? ROUND(e, tomb.r[j].pgsz) : tomb.r[j].end;
	/* two splits at most; without room the tombstone stays (a later stray unwire passes) */
	if (run_room(&tomb, 2))
		run_add(&tomb, s, e, -1, 0, NULL);
}

/* One live run of [s, e) loses a count: unlock it when that was the last. */
static void live_drop(size_t i, uintptr_t s, uintptr_t e)
{
	uintptr_t a = live.r[i].start > s ? live.r[i].start : s, b = live.r[i].end < e ? live.r[i].end : e;

	if (live.r[i].count == 1)
		count_drop(a, b, live.r[i].pgsz);
}

void wire_release(struct wire_ticket *t)
{
	if (!t)
		return;
	/* a watch-only ticket's runs are in their own set, and its last count unlocks nothing: the
	 * range stays registered (a window split now is a split for the next range in it to pay;
	 * its events end nothing) */
	int watch_only = t->n && (t->p[0].gen & GEN_WATCH);
	struct runset *rs = watch_only ? &watch : &live;

	wire_enter();
	ulock_lock(&wire_lock);
	if (watch_only && t->n == 1) {
		/* a one-piece watch whose run is still its own, whole, with its last count (a cache
		 * miss's or a one-chunk cookie's usual case): the run goes, and with it no split, no
		 * reservation and no merge (the gap it leaves joins no neighbours) */
		size_t i = run_find(&watch, t->p[0].s);
		if (i < watch.n && watch.r[i].start == t->p[0].s && watch.r[i].end == t->p[0].e &&
		    watch.r[i].gen == t->p[0].gen && watch.r[i].count == 1) {
			run_remove(&watch, i);
			if (t->nofork) /* its last holder out of a child: back in, unless wired */
				fork_back(t->p[0].s, t->p[0].e, &live);
			goto done;
		}
	}
	/* without room to split, the release would be lost and the pages pinned for good: reserve
	 * what it needs now, and if even that fails use the slack (it exists for such moments) */
	if (run_reserve(rs, 2 * (size_t)t->n))
		ULOG_WARN("out of memory while releasing a wiring: using the reserve");
	for (int k = 0; k < t->n; k++) {
		uintptr_t s = t->p[k].s, e = t->p[k].e, cur = s;
		if (!run_room(rs, 2))
			break;
		run_split(rs, s);
		run_split(rs, e);
		size_t i = run_find(rs, s);
		while (cur < e) {
			if (i < rs->n && rs->r[i].start <= cur) {
				uintptr_t re = rs->r[i].end;
				if (rs->r[i].gen == t->p[k].gen) {
					uintptr_t a = rs->r[i].start > s ? rs->r[i].start : s, b = re < e ? re : e;
					if (!watch_only)
						live_drop(i, s, e);
					/* a hugetlb cookie's watch: the last one holding it out of a child lets go */
					int back = watch_only && t->nofork && rs->r[i].bare && --rs->r[i].bare == 0;
					if (--rs->r[i].count == 0)
						run_remove(rs, i);
					else
						i++;
					if (back)
						fork_back(a, b, &live);
				} else {
					i++; /* ended and wired again since: not ours */
				}
				cur = re;
				continue;
			}
			cur = (i < rs->n && rs->r[i].start < e) ? rs->r[i].start : e; /* ended */
		}
		run_coalesce(rs, s, e);
	}
done:
	if (t->pooled) {
		t->next = tpool;
		tpool = t;
		t = NULL;
	}
	ulock_unlock(&wire_lock);
	if (t) /* a pooled one went back: no free(NULL) call (issue 21) */
		free(t);
}

int wire_ticket_alive(const struct wire_ticket *t)
{
	int alive = 1;

	if (!t)
		return 0;
	ulock_lock(&wire_lock);
	const struct runset *rs = t->n && (t->p[0].gen & GEN_WATCH) ? &watch : &live;
	for (int k = 0; k < t->n && alive; k++) {
		uintptr_t cur = t->p[k].s;
		for (size_t i = run_find(rs, cur); cur < t->p[k].e; i++) {
			if (i >= rs->n || rs->r[i].start > cur || rs->r[i].gen != t->p[k].gen) {
				alive = 0;
				break;
			}
			cur = rs->r[i].end;
		}
	}
	ulock_unlock(&wire_lock);
	return alive;
}

/* Whether some tombstone, paid or not, lies in [s, e). */
static int tomb_any(uintptr_t s, uintptr_t e)
{
	size_t k = run_find(&tomb, s);

	return k < tomb.n && tomb.r[k].start < e;
}

/*
 * Whether [s, e) is covered by tombstones all through, paid or not: the address space ended a bare
 * wiring on every page of it.  An unwire there is a balanced one whose debt another unwire of the
 * same pages may already have paid (bare unwires name pages, not wirings): it succeeds.
 */
static int tomb_covers(uintptr_t s, uintptr_t e)
{
	for (size_t k = run_find(&tomb, s); s < e; k++) {
		if (k >= tomb.n || tomb.r[k].start > s)
			return 0;
		s = tomb.r[k].end;
	}
	return 1;
}



int unwire_range(void *addr, size_t len, int flags)
{
	uintptr_t a = 0, b = 0;
	int err = range_check(addr, len, flags, UBDMA_WIRE_HOLESOK | UBDMA_WIRE_WRITE, &a, &b);

	if (err || len == 0)
		return err;
	wire_enter();
	ulock_lock(&wire_lock);
	a = TRUNC(a, PAGE_4K);
	b = ROUND(b, PAGE_4K);

	/* without HOLESOK every page named must hold a bare count (one of ubdma_wire(), not a
	 * cookie's), or have held one until the address space ended it: a balanced unwire after
	 * munmap succeeds and pays that tombstone */
	uintptr_t cur = a;
	for (size_t i = run_find(&live, a); !(flags & UBDMA_WIRE_HOLESOK) && cur < b;) {
		uintptr_t next;
		int ok;
		if (i < live.n && live.r[i].start <= cur) {
			next = live.r[i].end < b ? live.r[i].end : b;
			ok = live.r[i++].bare > 0 || tomb_covers(cur, next);
		} else {
			next = (i < live.n && live.r[i].start < b) ? live.r[i].start : b;
			ok = tomb_covers(cur, next);
		}
		if (!ok) {
			err = uerr(EINVAL, "[%p, %p) is not wired by ubdma_wire()", (void *)cur, (void *)next);
			break;
		}
		cur = next;
	}
	/* room for two splits a run, reserved before anything changes, so that a void unlock never
	 * leaves pages pinned for want of memory */
	size_t nr = 0;
	for (size_t i = run_find(&live, a); i < live.n && live.r[i].start < b; i++)
		nr++;
	if (!err && (run_reserve(&live, 2 * nr + 4) || run_reserve(&tomb, 4 * nr + 4)))
		err = uerr(ENOMEM, "out of memory");
	/* HOLESOK: which gaps this caller's wiring had is unknown, and paying tombstones there would
	 * take other callers' (a HOLESOK wiring munmap ended leaves its tombstone unpaid) */
	int pay = !(flags & UBDMA_WIRE_HOLESOK);
	for (cur = a; !err && cur < b;) {
		size_t i = run_find(&live, cur);
		if (i >= live.n || live.r[i].start >= b) {
			if (pay)
				tomb_consume(cur, b);
			break;
		}
		if (live.r[i].start > cur) { /* a gap before the run */
			if (pay)
				tomb_consume(cur, live.r[i].start);
			cur = live.r[i].start;
			continue;
		}
		uintptr_t re = live.r[i].end < b ? live.r[i].end : b;
		if (!live.r[i].bare) {
			if (pay)
				tomb_consume(cur, re); /* a cookie's count: not ours to take */
			cur = re;
			continue;
		}
		/* the run's own pages: a hugetlb page is wired and unwired whole */
		size_t pg = live.r[i].pgsz;
		uintptr_t ds = TRUNC(cur, pg) > live.r[i].start ? TRUNC(cur, pg) : live.r[i].start;
		uintptr_t de = ROUND(re, pg) < live.r[i].end ? ROUND(re, pg) : live.r[i].end;
		if (tomb_any(ds, de) && run_room(&tomb, 4)) {
			/*
			 * Which wiring this unwire balances is ambiguous where the address space ended
			 * wirings before on these pages: it may be a stale one's (which had the pages,
			 * or a hole there, before the memory was replaced) taking the count of the
			 * memory wired since.  It takes the live count, of the whole huge page, and
			 * leaves a debt over it, so that the live wiring's own unwire, whatever bytes
			 * it names, still finds something to pay.  Debts left over cost nothing.
			 */
			struct wrun t = { .pgsz = pg };
			if (pay && tomb_covers(cur, re))
				tomb_consume(cur, re);
			run_add(&tomb, ds, de, 1, 0, &t);
		}
		run_split(&live, ds);
		run_split(&live, de);
		i = run_find(&live, ds);
		live_drop(i, ds, de);
		live.r[i].bare--;
		if (--live.r[i].count == 0)
			run_remove(&live, i);
		run_coalesce(&live, ds, de);
		cur = de > re ? de : re;
	}
	ulock_unlock(&wire_lock);
	return err;
}

unsigned ubdma_wire_count(const void *addr)
{
	uintptr_t a = (uintptr_t)addr;
	unsigned c = 0;

	wire_enter();
	ulock_lock(&wire_lock);
	size_t i = run_find(&live, a);
	if (i < live.n && live.r[i].start <= a)
		c = live.r[i].count;
	ulock_unlock(&wire_lock);
	return c;
}


int ubdma_wire(void *addr, size_t len, int flags)
{
	return wire_range(addr, len, flags, NULL, NULL, NULL);
}

int ubdma_unwire(void *addr, size_t len, int flags)
{
	return unwire_range(addr, len, flags);
}

/* ------------------------------------------------------------ watch-only wirings */

/*
 * A registrar that pins the pages itself (ibv_reg_mr's FOLL_LONGTERM pin, VFIO's MAP_DMA) needs
 * from us only what keeps its registration from going stale: the monitor's events for the range,
 * and a count that munmap, mremap or a REMOVE ends.  So the range is registered with the
 * userfaultfd and counted here, and nothing else: no mlock (the pin holds the frames), no
 * MADV_DONTFORK (fork(2) copies pinned anonymous pages into the child, since Linux 5.9), no look
 * at /proc/self/maps (its text is long and read per call on kernels before 6.11).  The
 * registration succeeds only on memory the monitor can watch in 4 KiB pages (anonymous and
 * shmem mappings; not hugetlb in parts, not regular files): anything else answers an errno and
 * the caller wires in full.  A hole or an access the registrar cannot pin is its own refusal
 * (EFAULT from ibv_reg_mr): the domain's contract, docs/wire.md.
 */
/*
 * Whether [s, e) lies in one trusted window; *hugep says whether the window's registration found a
 * hugetlb mapping there (the run's pgsz, PAGE_2M for "some hugetlb": WINDOW_HUGE).  Wire lock held.
 */
#define WINDOW_HUGE PAGE_2M
static size_t wins_last; /* the run that covered the last time: the next range is likely in it */

static int wins_cover(uintptr_t s, uintptr_t e, int *hugep)
{
	/* runs never overlap, so a run that holds [s, e) is the one the search would find: the last
	 * one is looked at first (a cache's misses go through a window one after the other), the
	 * search only when it does not hold the range (a loop of some 30 instructions a miss) */
	size_t i = wins_last;

	if (!(i < wins.n && wins.r[i].start <= s && wins.r[i].end >= e))
		i = run_find(&wins, s);
	if (i < wins.n && wins.r[i].start <= s && wins.r[i].end >= e) {
		wins_last = i;
		*hugep = wins.r[i].pgsz == WINDOW_HUGE;
		return 1;
	}
	return 0;
}

/*
 * A window whose registration no event has cut is forgotten where the address space changed
 * (or where a wiring's end unregistered it).  The monitor thread calls it: without room to
 * split, every window is forgotten, which costs only registrations.  Wire lock held.
 */
static void set_cut(struct runset *rs, uintptr_t s, uintptr_t e)
{
	size_t i = run_find(rs, s);

	if (i >= rs->n || rs->r[i].start >= e)
		return;
	if (!run_room(rs, 2)) {
		rs->n = 0;
		return;
	}
	run_split(rs, s);
	run_split(rs, e);
	for (i = run_find(rs, s); i < rs->n && rs->r[i].start < e;)
		run_remove(rs, i);
}

static void wins_cut(uintptr_t s, uintptr_t e)
{
	set_cut(&wins, s, e);
	set_cut(&nots, s, e); /* a window that changed may be one mapping now */
	set_cut(&pieceno, s, e);
}

/* Whether the kernel says [s, e) is one registered mapping with no hole (watch_trust()).  Wire lock held. */
static int vouched(uintptr_t s, uintptr_t e)
{
	struct vma *v;
	int nv, one;

	if (wmon_registered(s, e))
		return 0;
	if (wmon_wp_strict())
		return 1;
	if (!vma_uses_query() || vma_collect(s, e, &v, &nv))
		return 0;
	one = nv == 1 && v[0].start <= s && v[0].end >= e && vma_uses_query();
	free(v);
	return one;
}

/*
 * [wa, wb) was just registered: may later watches inside it skip the registration?  Only if no
 * part of it can be an unregistered mapping, now or later.  The registration covered every
 * mapping there was; a hole it passed over could take a new mapping, unregistered, without an
 * event.  So the window is trusted when the kernel says, after the registration, that it is one
 * registered mapping, with no hole: UFFDIO_WRITEPROTECT's range check does on 6.1 (one mapping,
 * else ENOENT; wmon_wp_strict()); later kernels accept holes there, and PROCMAP_QUERY (6.11) says
 * it instead, asked after the check.  From then on only an unmap, a move or our own
 * unregistration can change it, and each cuts the window (wins_cut()).  Wire lock held.
 */
static void watch_trust(uintptr_t wa, uintptr_t wb, int huge)
{
	struct wrun w = { .pgsz = huge ? WINDOW_HUGE : PAGE_4K, .watched = 1 };
	size_t i = run_find(&nots, wa);

	if (i < nots.n && nots.r[i].start <= wa && nots.r[i].end >= wb)
		return; /* asked before, and nothing changed there since */
	if (run_reserve(&wins, 4) || run_reserve(&nots, 4))
		return;
	int one = vouched(wa, wb);
	wins_cut(wa, wb);
	run_add(one ? &wins : &nots, wa, wb, 1, 0, &w);
}

/*
 * May [s, e), inside a window registered whole, be trusted: is it one registered mapping with no
 * hole?  Asked once until an event changes it (no remembers the refusals).  Wire lock held.
 */
static int watch_piece(uintptr_t s, uintptr_t e, struct runset *no, const struct wrun *w)
{
	size_t i = run_find(no, s);

	if (i < no->n && no->r[i].start <= s && no->r[i].end >= e)
		return 0;
	if (run_reserve(&wins, 4) || run_reserve(no, 4))
		return 0;
	int one = vouched(s, e);
	set_cut(&wins, s, e);
	set_cut(no, s, e);
	run_add(one ? &wins : no, s, e, 1, 0, w);
	return one;
}

/*
 * How far [a, b)'s mapping reaches towards lim (above b, or below a when down): the farthest
 * point the kernel vouches for with [a, b), to the page.  The whole way is asked first (a region
 * that goes on past the window: one question); else steps that double from the range's length
 * find a point past the mapping's end, and halving between the last vouched point and that one
 * finds the end itself.  About 2 log2(reach / length) questions, once per mapping and window
 * (on 6.1 each an UFFDIO_WRITEPROTECT check); a range that is its mapping costs two.  Wire lock
 * held.
 */
static uintptr_t span_reach(uintptr_t a, uintptr_t b, uintptr_t lim, int down)
{
	uintptr_t good = down ? a : b, bad = lim, step = b - a;

	if (good == lim || (down ? vouched(lim, b) : vouched(a, lim)))
		return lim;
	for (;;) { /* bad: a point known refused (lim), or the first step refused */
		uintptr_t c = down ? (good - lim > step ? good - step : lim) : (lim - good > step ? good + step : lim);
		if (c == lim || !(down ? vouched(c, b) : vouched(a, c))) {
			bad = c;
			break;
		}
		good = c;
		step *= 2;
	}
	while ((down ? good - bad : bad - good) > PAGE_4K) {
		uintptr_t mid = TRUNC(down ? bad + (good - bad) / 2 : good + (bad - good) / 2, PAGE_4K);
		if (mid == good || mid == bad)
			break;
		if (down ? vouched(mid, b) : vouched(a, mid))
			good = mid;
		else
			bad = mid;
	}
	return good;
}

/*
 * [a, b) lies in a window that was registered whole and that no event has cut since (nots covers
 * it), but which the kernel would not vouch for (a region's edge: another mapping or a hole
 * shares the window).  The part of the window that the range's own mapping covers is trusted
 * instead, when the kernel vouches for the range at all: found once (span_reach() both ways),
 * so that the later misses of a region's edge make no system call (before, each range there was
 * asked about alone: about 8% of a bench's misses, docs/rcache.md step 9).  A range the kernel
 * refuses (it spans mappings) is remembered in pieceno (watch_piece()).  1 when [a, b) now lies
 * in a trusted range.  Wire lock held.
 */
static int watch_sub(uintptr_t a, uintptr_t b, uintptr_t wa, uintptr_t wb, int *hugep)
{
	struct wrun w = { .pgsz = PAGE_4K, .watched = 1 };
	size_t i = run_find(&nots, wa);

	if (i >= nots.n || nots.r[i].start > wa || nots.r[i].end < wb)
		return 0; /* not registered whole, or changed since: register again */
	/* the span is of the window's kind: hugetlb if the window's registration met any */
	w.pgsz = nots.r[i].pgsz;
	*hugep = w.pgsz == WINDOW_HUGE;
	/* the range itself first (its refusal remembered, as for a range registered alone); then as
	 * far as its mapping reaches, which needs room in the sets again (without it, the range
	 * alone stays trusted) */
	if (!watch_piece(a, b, &pieceno, &w))
		return 0;
	uintptr_t s = span_reach(a, b, wa, 1), e = span_reach(a, b, wb, 0);
	if ((s < a || e > b) && !run_reserve(&wins, 4) && !run_reserve(&pieceno, 4)) {
		set_cut(&wins, s, e);
		set_cut(&pieceno, s, e);
		run_add(&wins, s, e, 1, 0, &w);
	}
	return 1;
}

/*
 * The page size of [a, b) for a caller that maps it in pages of that size (wire_watch_sized()):
 * one mapping's kind over the whole range, no hole, the bounds on its pages; else ENOTSUP and the
 * caller wires in full (section 13, "Hugetlb cookies watched").  Asked after the registration:
 * a mapping put there since unmapped a registered one, whose event ends the count this call
 * takes, so the caller's last check of the ticket fails.  Wire lock held.
 */
static int watch_pgsz(uintptr_t a, uintptr_t b, size_t *pgszp)
{
	struct vma *v;
	int nv, ok = 1;
	uintptr_t cur = a;

	if (vma_collect(a, b, &v, &nv))
		return ENOTSUP;
	size_t pg = nv ? v[0].pgsz : 0;
	for (int i = 0; i < nv && ok; i++) {
		ok = v[i].start <= cur && v[i].pgsz == pg && v[i].hugetlb == v[0].hugetlb;
		cur = v[i].end;
	}
	free(v);
	if (!ok || !pg || cur < b || (a | b) & (pg - 1))
		return ENOTSUP;
	*pgszp = pg;
	return 0;
}

/*
 * Where a watch of a range starting at a goes in the watch set: run_find(&watch, a), tried first
 * at the place after the last fresh watch.  A program's fresh buffers tend to lie above its last
 * ones (a heap, a region handed out page by page), and a cache's misses then watch one range
 * after the other: two comparisons instead of a binary search of every live watch (about 100
 * instructions a miss at 300 watches, host callgrind; the TCG guest pays each, docs/rcache.md
 * step 8).  The place is a guess checked against the set as it is now, so a stale one (runs
 * removed, inserted elsewhere, a fork child's empty set) only costs the search.  Wire lock held.
 */
static size_t watch_next;

static inline size_t watch_find(uintptr_t a)
{
	size_t h = watch_next;

	if (h <= watch.n && (h == 0 || watch.r[h - 1].end <= a) && (h == watch.n || watch.r[h].end > a))
		return h;
	return run_find(&watch, a);
}

int wire_watch_sized(void *addr, size_t len, int flags, struct wire_ticket **ticketp, uintptr_t *sp, uintptr_t *ep,
		     size_t *pgszp)
{
	uintptr_t a = 0, b = 0;
	size_t pg = PAGE_4K;
	struct wire_ticket *t;
	int huge = 0, err = range_check(addr, len, 0, 0, &a, &b);

	if (err)
		return err;
	if (len == 0)
		return uerr(EINVAL, "an empty range has nothing to watch");
	a = TRUNC(a, PAGE_4K);
	b = ROUND(b, PAGE_4K);
	wire_enter();
	ulock_lock(&wire_lock);
	if (wmon_fd() < 0) {
		ulock_unlock(&wire_lock);
		return ENOTSUP; /* no monitor: the full wiring says why, and relocks what it cannot watch */
	}
	/* one piece per run the range meets, at most: existing runs plus the gaps between them */
	size_t at = watch_find(a), cap = 1;
	int fresh = at >= watch.n || watch.r[at].start >= b;
	for (size_t i = at; !fresh && i < watch.n && watch.r[i].start < b; i++)
		cap += 2;
	/* the window sets too: all the tables are made on the first call and live as long as the
	 * process, as the wire counts do */
	if (run_reserve(&watch, 2 * cap + 4) || run_reserve(&wins, 4) || run_reserve(&nots, 4) ||
	    run_reserve(&pieceno, 4) ||
	    !(t = cap == 1 ? tpool_get() : malloc(sizeof(*t) + cap * sizeof(t->p[0])))) {
		ulock_unlock(&wire_lock);
		return uerr(ENOMEM, "out of memory");
	}
	if (cap > 1)
		t->pooled = 0;
	/*
	 * Registered before it is counted: from here on an unmap makes an event (applied after we
	 * unlock), so the count never outlives the mapping it was taken on.  The registration is
	 * asked for the whole WATCH_WINDOW around the range, which the kernel does by splitting
	 * mappings (the cost of a miss, on a slow machine as much as ibv_reg_mr's own); once a
	 * window is registered, the next range in it costs one look in the kernel and no split,
	 * and none at all once the kernel vouched that the window is one registered mapping
	 * (watch_trust(): a hole it had may hold a new, unwatched mapping now, so memory of a
	 * registration alone is not enough).
	 */
	uintptr_t wa = TRUNC(a, WATCH_WINDOW), wb = ROUND(b, WATCH_WINDOW);
	if (wins_cover(a, b, &huge))
		err = 0; /* registered whole, and no event has cut it since */
	else if (wb >= b && watch_sub(a, b, wa, wb, &huge))
		err = 0; /* the window is not one mapping, but the range's mapping there is */
	else if (wb < b || wmon_register_kind(wa, wb, &huge)) {
		/* a file, hugetlb or another handle's range is near: the range alone, registered whole
		 * now, is trusted if the kernel vouches that it is one mapping (asked once) */
		struct wrun w = { .pgsz = PAGE_4K, .watched = 1 };
		if (!(err = wmon_register_kind(a, b, &huge))) {
			w.pgsz = huge ? WINDOW_HUGE : PAGE_4K;
			watch_piece(a, b, &pieceno, &w);
		}
	} else
		watch_trust(wa, wb, huge);
	/* a caller that maps in 4 KiB pages must not get hugetlb memory watched as 4 KiB pages: the
	 * kernel said, when the window was registered, whether hugetlb lies in it (the registration
	 * stays: a hugetlb wiring registers it too, and keeps it, section 14) */
	if (!err && huge && pgszp)
		err = watch_pgsz(a, b, &pg);
	else if (!err && huge && (flags & WIRE_WATCH_NO_HUGETLB))
		err = ENOTSUP;
	/*
	 * A hugetlb cookie keeps the promise of section 5: its range is not in a fork(2) child.
	 * Without the mark the kernel would copy its pinned private huge pages into the child, one
	 * free huge page each (copy_hugetlb_page_range()), and fork would fail with ENOMEM when the
	 * pool has none.  Marked on every such watch (the call is idempotent; which watch was first
	 * would need a look at the set for nothing cheaper), taken back by the last one to end
	 * (fork_back()).  A refusal (the mapping went) leaves it to the full wiring, which says why.
	 */
	int nofork = !err && pg > PAGE_4K;
	if (nofork && madvise((void *)a, b - a, MADV_DONTFORK))
		err = ENOTSUP;
	if (err) {
		if (t->pooled) {
			t->next = tpool;
			tpool = t;
			t = NULL;
		}
		ulock_unlock(&wire_lock);
		free(t);
		return err;
	}
	struct wrun proto = { .start = a, .end = b, .count = 1, .bare = (unsigned)nofork, .pgsz = pg,
			      .gen = gen_next++ | GEN_WATCH, .watched = 1 };
	size_t n = 0;
	t->watched = 1;
	t->nofork = (uint8_t)nofork;
	t->seq = wire_end_seq_;
	if (fresh) {
		/* nothing counted there (a miss's usual case): one run, whose new generation merges
		 * with no neighbour */
		if (at == watch.n) /* past every run: nothing to move (no call, issue 21) */
			watch.r[watch.n++] = proto;
		else
			run_insert(&watch, at, proto);
		watch_next = at + 1;
		t->p[n++] = (struct wire_piece){ a, b, proto.gen };
	} else {
		run_add(&watch, a, b, 1, nofork, &proto);
	}
	for (size_t k = fresh ? watch.n : run_find(&watch, a); k < watch.n && watch.r[k].start < b; k++) {
		uintptr_t s = watch.r[k].start > a ? watch.r[k].start : a;
		uintptr_t e = watch.r[k].end < b ? watch.r[k].end : b;
		if (n && t->p[n - 1].e == s && t->p[n - 1].gen == watch.r[k].gen)
			t->p[n - 1].e = e;
		else
			t->p[n++] = (struct wire_piece){ s, e, watch.r[k].gen };
	}
	t->n = (int)n;
	ulock_unlock(&wire_lock);
	*ticketp = t;
	*sp = a;
	*ep = b;
	if (pgszp)
		*pgszp = pg;
	return 0;
}

/* The address space ended the watch-only wirings in [s, e) (monitor thread, wire lock held). */
static void end_watch(uintptr_t s, uintptr_t e)
{
	size_t i = run_find(&watch, s);

	wins_cut(s, e);

	if (i >= watch.n || watch.r[i].start >= e)
		return;
	/* without room to split, whole runs end: early, never late (the slack is for this) */
	if (run_room(&watch, 2) || !run_reserve(&watch, 2)) {
		run_split(&watch, s);
		run_split(&watch, e);
		i = run_find(&watch, s);
	}
	/* the registration goes with the mapping (a REMOVE keeps both: harmless); a hugetlb
	 * cookie's MADV_DONTFORK is taken back from what is mapped there now (a REMOVE's mapping,
	 * or a new one), as state_drop() does for a wiring, unless a wiring holds it */
	while (i < watch.n && watch.r[i].start < e) {
		struct wrun r = watch.r[i];
		run_remove(&watch, i);
		if (r.bare) /* the whole run: without room it ended past [s, e) too */
			fork_back(r.start, r.end, &live);
	}
	__atomic_add_fetch(&wire_end_seq_, 1, __ATOMIC_RELEASE);
}
