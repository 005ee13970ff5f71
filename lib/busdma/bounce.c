/*
 * bounce.c - a tag's bounce pool: slots of wired, IOVA-mapped memory that satisfies the tag, the
 * reservation of slots for a load, and the FIFO queue of loads waiting for slots (WAITOK).
 *
 * The pool grows on demand, in backings from dmamem_backing_alloc() whose IOVAs lie outside the
 * tag's exclusion window and start on the slot alignment; every slot is checked against the tag
 * before it enters the free list, so memory from an allocator that could not honour the request
 * fully is never handed to a device.  The pool's limit bounds the slots in use at once (not the
 * memory made: a 2 MiB hugepage backing holds 512 slots even when the limit is lower).  By default
 * it is BUSDMA_BOUNCE_MULT maxsize loads (FreeBSD sizes a bounce zone from maxsize the same way),
 * capped at BUSDMA_BOUNCE_DEFAULT_CAP slots; ubdma_tag_set_bounce_limit() changes it.
 *
 * Deferred loads: a WAITOK load that cannot have its slots now is queued and its load returns
 * EINPROGRESS, as FreeBSD's reserve_bounce_pages() queues on the bounce zone's waiting list.  The
 * queue is strictly first in, first out: while loads are waiting, a new load waits too (WAITOK)
 * or fails with ENOMEM (NOWAIT), so that small loads cannot starve a large one.  Whoever frees
 * slots (ubdma_map_unload(), ubdma_tag_set_bounce_limit()) runs the loads they make possible, in
 * queue order, in its own thread and after dropping the pool lock; FreeBSD hands them to a
 * software interrupt thread instead, which a library does not have.
 *
 * Running a queue ("draining") is a property of the pool: one thread at a time runs a pool's
 * queue, and a thread that frees slots while another drains leaves them to it (the drainer looks
 * at the queue again, under the pool lock, after every callback).  Each callback runs under its
 * tag's lock function (ubdma_tag_set_lockfunc()), as FreeBSD's busdma_swi() runs each deferred
 * load between the tag's BUS_DMA_LOCK and BUS_DMA_UNLOCK.  A callback never runs inside another:
 * when a callback's unload (of its own tag's map or another's) frees slots that waiting loads
 * can use, their pool goes on the thread's list of pending pools, which the thread drains once
 * the callback and its UBDMA_UNLOCK have returned, so that a driver's lock function is never
 * entered twice.  (The thread-local flag this replaces stopped every drain while any callback
 * ran, and left the queue of another tag undrained.)
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/page.h"
#include "busdma/busdma_int.h"

#define BUSDMA_BOUNCE_DEFAULT_CAP 32768 /* slots: 128 MiB of 4 KiB slots */
#define BUSDMA_BOUNCE_GROW_MIN 16	/* slots made at least per growth */

/* Slots one contiguous load of len bytes can need: each page piece takes one. */
static size_t pieces_for(size_t len)
{
	return len / PAGE_4K + 2;
}

size_t bounce_default_limit(const struct ubdma_tag *t)
{
	size_t one = pieces_for(t->maxsize);

	if (one > BUSDMA_BOUNCE_DEFAULT_CAP / BUSDMA_BOUNCE_MULT)
		return one > BUSDMA_BOUNCE_DEFAULT_CAP ? BUSDMA_BOUNCE_DEFAULT_CAP : one;
	return one * BUSDMA_BOUNCE_MULT;
}

static size_t pool_inuse(const struct bounce_pool *p)
{
	return p->total - p->nfree;
}

/* Make at least want more slots.  Pool lock held (growth is the slow path). 0 or errno. */
static int pool_grow(struct ubdma_tag *t, struct bounce_pool *p, size_t want)
{
	struct iommu_window lim;
	struct backing *b;
	struct bounce_page *pages;
	int err;

	if (want < BUSDMA_BOUNCE_GROW_MIN)
		want = BUSDMA_BOUNCE_GROW_MIN;
	if ((err = busdma_tag_allowed(t, want * p->slot, &lim)))
		return uerr(err, "the tag's window (%#llx, %#llx] leaves no IOVA for bounce pages",
			    (unsigned long long)t->lowaddr, (unsigned long long)t->highaddr);
	if (!(b = calloc(1, sizeof(*b))))
		return uerr(ENOMEM, "out of memory");
	void **nv = realloc(p->pagev, (p->npagev + 1) * sizeof(*p->pagev));
	if (!nv) {
		free(b);
		return uerr(ENOMEM, "out of memory");
	}
	p->pagev = (struct bounce_page **)nv;
	if ((err = dmamem_backing_alloc(t->ctx, want * p->slot, p->slot, &lim, -1, t->node, b))) {
		free(b);
		return err;
	}
	size_t n = b->len / p->slot, good = 0;
	if (!(pages = calloc(n, sizeof(*pages)))) {
		dmamem_backing_free(b);
		free(b);
		return uerr(ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		char *va = (char *)b->va + i * p->slot;
		uint64_t iova = ubdma_umem_iova(b->cookie, va);
		/* the slot itself must satisfy the tag, or bouncing would not help */
		if (iova == UBDMA_BAD_IOVA || (iova & (p->slot - 1)) || !busdma_iova_ok(t, iova, p->slot))
			continue;
		pages[good] = (struct bounce_page){ .next = p->free, .vaddr = va, .iova = iova };
		p->free = &pages[good++];
	}
	if (!good) {
		free(pages);
		dmamem_backing_free(b);
		free(b);
		return uerr(ENOMEM, "no bounce memory the tag can use: IOVAs outside (%#llx, %#llx] on "
			    "%zu-byte alignment", (unsigned long long)t->lowaddr, (unsigned long long)t->highaddr,
			    p->slot);
	}
	p->pagev[p->npagev++] = pages;
	b->next = p->mem;
	p->mem = b;
	p->nfree += good;
	p->total += good;
	ULOG_DEBUG("tag %p bounce pool grew by %zu slots of %zu bytes (%zu in all, limit %zu)", (void *)t, good,
		   p->slot, p->total, p->limit);
	return 0;
}

static struct bounce_page *pool_take(struct bounce_pool *p, size_t n)
{
	struct bounce_page *list = NULL;

	for (size_t i = 0; i < n; i++) {
		struct bounce_page *pg = p->free;
		p->free = pg->next;
		pg->next = list;
		list = pg;
	}
	p->nfree -= n;
	return list;
}

int bounce_pool_get(struct ubdma_tag *t, struct bounce_pool **poolp)
{
	struct bounce_pool *p = __atomic_load_n(&t->pool, __ATOMIC_ACQUIRE);
	int err = 0;

	if (p) {
		*poolp = p;
		return 0;
	}
	pthread_mutex_lock(&t->root->lock);
	if (!(p = t->pool)) {
		if (!(p = calloc(1, sizeof(*p)))) {
			pthread_mutex_unlock(&t->root->lock);
			return uerr(ENOMEM, "out of memory");
		}
		pthread_mutex_init(&p->lock, NULL);
		p->tag = t;
		p->slot = t->alignment > PAGE_4K ? t->alignment : PAGE_4K;
		p->limit = t->bounce_limit_set ? (t->bounce_limit + p->slot - 1) / p->slot : bounce_default_limit(t);
		if (t->flags & UBDMA_ALLOCNOW) {
			/* bus_dma(9) ALLOCNOW: the slots of one maxsize load, made now */
			size_t one = pieces_for(t->maxsize);
			pthread_mutex_lock(&p->lock);
			err = one <= p->limit ? pool_grow(t, p, one) : ENOMEM;
			pthread_mutex_unlock(&p->lock);
			if (err) {
				bounce_pool_free(p);
				pthread_mutex_unlock(&t->root->lock);
				return uerr(err, "ALLOCNOW: cannot make %zu bounce pages for a %zu-byte load", one,
					    t->maxsize);
			}
		}
		__atomic_store_n(&t->pool, p, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&t->root->lock);
	*poolp = p;
	return 0;
}

int bounce_reserve(struct ubdma_tag *t, struct ubdma_map *m, size_t n, int flags, struct bounce_page **pagesp)
{
	struct bounce_pool *p;
	int err;

	if ((err = bounce_pool_get(t, &p)))
		return err;
	pthread_mutex_lock(&p->lock);
	if (n > p->limit) {
		size_t limit = p->limit;
		pthread_mutex_unlock(&p->lock);
		return uerr(ENOMEM, "the load needs %zu bounce pages and the tag's pool is limited to %zu "
			    "(ubdma_tag_set_bounce_limit())", n, limit);
	}
	if (!p->wait_head && pool_inuse(p) + n <= p->limit) {
		if (p->nfree < n)
			err = pool_grow(t, p, n - p->nfree);
		if (p->nfree >= n) {
			*pagesp = pool_take(p, n);
			pthread_mutex_unlock(&p->lock);
			return 0;
		}
	}
	/* nothing in use and no growth possible: nobody would ever wake a waiter */
	if ((flags & UBDMA_NOWAIT) || (!pool_inuse(p) && !p->wait_head)) {
		size_t inuse = pool_inuse(p), limit = p->limit;
		int waiting = p->wait_head != NULL;
		pthread_mutex_unlock(&p->lock);
		/* when growth failed, ubdma_last_error() already says why; the caller sees ENOMEM */
		if (!err)
			uerr(ENOMEM, "%zu bounce pages needed: %zu of the limit %zu in use%s", n, inuse, limit,
			     waiting ? ", and earlier loads are waiting" : "");
		return ENOMEM;
	}
	m->wait_pages = n;
	m->wait_next = NULL;
	m->state = MAP_PENDING;
	if (p->wait_tail)
		p->wait_tail->wait_next = m;
	else
		p->wait_head = m;
	p->wait_tail = m;
	pthread_mutex_unlock(&p->lock);
	ULOG_DEBUG("map %p on tag %p waits for %zu bounce pages", (void *)m, (void *)t, n);
	return EINPROGRESS;
}

static void queue_pop(struct bounce_pool *p)
{
	struct ubdma_map *m = p->wait_head;

	p->wait_head = m->wait_next;
	if (!p->wait_head)
		p->wait_tail = NULL;
	m->wait_next = NULL;
}

/*
 * Deferred callbacks this thread is inside (0 or 1: they never nest), and the pools whose queues
 * it runs when the callback has returned.  A child forked from inside a callback inherits both,
 * with the rest of the parent's state, and must not return from the callback into the library
 * (docs/reliability.md, "fork and library locks").
 */
static _Thread_local int in_callback;
static _Thread_local LIST_HEAD(, bounce_pool) pending_pools; /* zero: empty */

/* Run one deferred load that left the queue (or fail it: fail is its error), under its tag's lock. */
static void run_deferred(struct ubdma_map *m, struct bounce_page *pages, int fail)
{
	ubdma_lockfunc_t *lf;
	void *lfarg;

	busdma_tag_lockfunc(m->tag, &lf, &lfarg);
	in_callback = 1;
	if (lf)
		lf(lfarg, UBDMA_LOCK);
	if (fail) {
		ubdma_callback_t *cb = m->wait_cb;
		void *arg = m->wait_arg;
		if (m->wait_iov != &m->wait_iov1)
			free(m->wait_iov);
		m->wait_iov = NULL;
		m->state = MAP_IDLE;
		cb(arg, m->segs, 0, fail);
	} else {
		busdma_load_deferred(m, pages);
	}
	if (lf)
		lf(lfarg, UBDMA_UNLOCK);
	in_callback = 0;
}

static void pool_drain(struct bounce_pool *p);
static void pool_free_now(struct bounce_pool *p);

/* Drain the pools that callbacks of this thread left pending, oldest first. */
static void run_pending(void)
{
	struct bounce_pool *p;

	while ((p = LIST_FIRST(&pending_pools))) {
		LIST_REMOVE(p, pend_link);
		pthread_mutex_lock(&p->lock);
		int orphan = p->orphan;
		p->pending = 0;
		pthread_mutex_unlock(&p->lock);
		if (orphan)
			pool_free_now(p); /* its tag went while the pool waited here */
		else
			pool_drain(p);
	}
}

/*
 * Run the pool's queue as far as slots allow.  Returns at once when another thread (or an outer
 * frame of this one) drains the pool already; inside a callback it only puts the pool on the
 * thread's pending list.
 */
static void pool_drain(struct bounce_pool *p)
{
	struct ubdma_tag *t = p->tag;

	pthread_mutex_lock(&p->lock);
	if (p->draining || !p->wait_head) {
		pthread_mutex_unlock(&p->lock);
		return;
	}
	if (in_callback) {
		/* at the tail: pools are drained in the order their slots were freed.  A pool pending
		 * in another thread is left to it; outside a callback a thread drains it regardless. */
		if (!p->pending) {
			struct bounce_pool *q, *last = NULL;
			LIST_FOREACH(q, &pending_pools, pend_link)
				last = q;
			if (last)
				LIST_INSERT_AFTER(last, p, pend_link);
			else
				LIST_INSERT_HEAD(&pending_pools, p, pend_link);
			p->pending = 1;
		}
		pthread_mutex_unlock(&p->lock);
		return;
	}
	p->draining = 1;
	while (p->wait_head) {
		struct ubdma_map *m = p->wait_head;
		size_t n = m->wait_pages;
		struct bounce_page *pages = NULL;
		int fail = 0;

		if (n > p->limit) {
			fail = 1; /* the limit went down below what the load needs */
		} else if (pool_inuse(p) + n > p->limit) {
			break;
		} else if (p->nfree < n && pool_grow(t, p, n - p->nfree) && p->nfree < n) {
			if (pool_inuse(p))
				break; /* a later release will retry */
			fail = 1;
		}
		queue_pop(p);
		if (!fail)
			pages = pool_take(p, n);
		pthread_mutex_unlock(&p->lock);
		run_deferred(m, pages, fail ? ENOMEM : 0);
		run_pending();
		pthread_mutex_lock(&p->lock);
	}
	/* cleared under the same lock hold as the last look at the queue: a release that came
	 * after it sees the pool idle and drains it itself */
	p->draining = 0;
	pthread_mutex_unlock(&p->lock);
}

int bounce_draining(struct bounce_pool *p)
{
	pthread_mutex_lock(&p->lock);
	int d = p->draining;
	pthread_mutex_unlock(&p->lock);
	return d;
}

void bounce_drain(struct ubdma_tag *t)
{
	if (t->pool)
		pool_drain(t->pool);
}

void bounce_release(struct ubdma_tag *t, struct bounce_page *pages)
{
	struct bounce_pool *p = t->pool;
	size_t n = 0;
	int waiters;

	pthread_mutex_lock(&p->lock);
	while (pages) {
		struct bounce_page *pg = pages;
		pages = pg->next;
		pg->next = p->free;
		p->free = pg;
		n++;
	}
	p->nfree += n;
	waiters = p->wait_head != NULL;
	pthread_mutex_unlock(&p->lock);
	if (waiters)
		bounce_drain(t);
}

int bounce_cancel(struct ubdma_tag *t, struct ubdma_map *m)
{
	struct bounce_pool *p = t->pool;
	struct ubdma_map **pp, *prev = NULL;
	int found = 0;

	if (!p)
		return 0;
	pthread_mutex_lock(&p->lock);
	for (pp = &p->wait_head; *pp; prev = *pp, pp = &(*pp)->wait_next) {
		if (*pp == m) {
			*pp = m->wait_next;
			if (p->wait_tail == m)
				p->wait_tail = prev;
			m->wait_next = NULL;
			found = 1;
			break;
		}
	}
	pthread_mutex_unlock(&p->lock);
	/* the head may have been the blocker of smaller loads behind it */
	if (found)
		bounce_drain(t);
	return found;
}

static void pool_free_now(struct bounce_pool *p)
{
	while (p->mem) {
		struct backing *b = p->mem;
		p->mem = b->next;
		dmamem_backing_free(b);
		free(b);
	}
	for (size_t i = 0; i < p->npagev; i++)
		free(p->pagev[i]);
	free(p->pagev);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

void bounce_pool_free(struct bounce_pool *p)
{
	/* A tag can go while its pool waits on a thread's pending list (a callback unloaded one of
	 * its maps, then the tag's owner destroyed it).  This thread's list forgets it; another
	 * thread's frees it when it gets to it, without touching the tag. */
	pthread_mutex_lock(&p->lock);
	if (p->pending) {
		struct bounce_pool *q;
		LIST_FOREACH(q, &pending_pools, pend_link)
			if (q == p)
				break;
		if (!q) {
			p->orphan = 1;
			p->tag = NULL;
			pthread_mutex_unlock(&p->lock);
			return;
		}
		LIST_REMOVE(p, pend_link);
	}
	pthread_mutex_unlock(&p->lock);
	pool_free_now(p);
}
