/*
 * test_bounce.c - the bounce pool: memory that satisfies the tag, ALLOCNOW, the limit, NOWAIT ->
 * ENOMEM, WAITOK -> EINPROGRESS and FIFO callbacks from the unloading thread, cancel, that a
 * failure holds no page, that each pool's queue drains on its own (a callback that unloads a map
 * of another tag runs that tag's waiting loads), and the lock function around deferred callbacks.
 */
#include <pthread.h>
#include <semaphore.h>

#include "helpers.h"

#define MAX UBDMA_MAXADDR

static ubdma_tag_t *mktag(struct fx *f, uint64_t lo, uint64_t hi, size_t maxsize, int flags)
{
	ubdma_tag_t *t;
	assert_int_equal(ubdma_tag_create(ubdma_ctx_tag(f->ctx), 1, 0, lo, hi, maxsize, 64, maxsize, flags, &t), 0);
	return t;
}

/* Bounce slots of a 32-bit tag lie below 4 GiB (va: placed there; phys: skipped if RAM is higher). */
static void t_pool_satisfies_tag(void **state)
{
	struct fx *f = FX_GET(state, 0);
	char *u = mem_get(4 * PG, 0);
	ubdma_tag_t *t = mktag(f, UBDMA_MAXADDR_32BIT, MAX, 4 * PG, 0);
	ubdma_map_t *m;
	struct cbrec r = { 0 };

	assert_int_equal(ubdma_map_create(t, 0, &m), 0);
	int err = ubdma_map_load(t, m, u, 4 * PG, rec_cb, &r, UBDMA_NOWAIT);
	if (err == ENOMEM && f->backend == UBDMA_BACKEND_PHYS) {
		print_message("SKIP: no hugepage below 4 GiB of physical memory here (%s)\n", ubdma_last_error());
		assert_int_equal(ubdma_map_destroy(t, m), 0);
		assert_int_equal(ubdma_tag_destroy(t), 0);
		munmap(u, 4 * PG);
		skip();
	}
	assert_int_equal(err, 0);
	assert_int_equal(r.nseg, 4);
	for (int i = 0; i < r.nseg; i++) {
		assert_true(r.segs[i].ds_addr + r.segs[i].ds_len - 1 <= UBDMA_MAXADDR_32BIT);
		assert_true(is_bounce(t, r.segs[i].ds_addr));
	}
	ubdma_map_unload(t, m);
	assert_int_equal(ubdma_map_destroy(t, m), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	munmap(u, 4 * PG);
}

static void t_allocnow(void **state)
{
	struct fx *f = FX_GET(state, (f_->backend == UBDMA_BACKEND_PHYS) * 1);
	ubdma_tag_t *t = mktag(f, MAX, MAX, 16 * PG, UBDMA_ALLOCNOW);

	assert_non_null(t->pool);
	assert_true(t->pool->total >= 16 + 2); /* one maxsize load, whatever its page offset */
	assert_int_equal(pool_inuse_of(t), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	/* without ALLOCNOW nothing is made until a load needs it */
	t = mktag(f, MAX, MAX, 16 * PG, 0);
	assert_null(t->pool);
	assert_int_equal(ubdma_tag_destroy(t), 0);
}

/* NOWAIT and no page: ENOMEM returned and given to the callback; nothing held, map unchanged. */
static void t_nowait_enomem(void **state)
{
	struct fx *f = FX_GET(state, (f_->backend == UBDMA_BACKEND_PHYS) * 1);
	char *u = mem_get(8 * PG, 0);
	ubdma_tag_t *t = mktag(f, MAX, MAX, 8 * PG, 0);
	ubdma_map_t *a, *b;
	struct cbrec ra = { 0 }, rb = { 0 };

	assert_int_equal(ubdma_tag_set_bounce_limit(t, 4 * PG), 0);
	assert_int_equal(ubdma_map_create(t, 0, &a), 0);
	assert_int_equal(ubdma_map_create(t, 0, &b), 0);
	assert_int_equal(ubdma_map_load(t, a, u, 3 * PG, rec_cb, &ra, UBDMA_NOWAIT), 0);
	assert_int_equal(pool_inuse_of(t), 3);
	assert_int_equal(ubdma_map_load(t, b, u + 4 * PG, 2 * PG, rec_cb, &rb, UBDMA_NOWAIT), ENOMEM);
	assert_int_equal(rb.calls, 1);
	assert_int_equal(rb.error, ENOMEM);
	assert_int_equal(rb.nseg, 0);
	assert_int_equal(b->state, MAP_IDLE);
	assert_int_equal(pool_inuse_of(t), 3);
	/* load_sg is never deferred */
	ubdma_seg_t segs[64];
	int n = 5;
	assert_int_equal(ubdma_map_load_sg(t, b, u + 4 * PG, 2 * PG, segs, &n, 0), ENOMEM);
	assert_int_equal(n, 0);
	/* more than the limit can ever give: ENOMEM even with WAITOK */
	memset(&rb, 0, sizeof(rb));
	assert_int_equal(ubdma_map_load(t, b, u, 8 * PG, rec_cb, &rb, 0), ENOMEM);
	assert_int_equal(rb.error, ENOMEM);
	/* limit 0 forbids bouncing */
	ubdma_map_unload(t, a);
	assert_int_equal(ubdma_tag_set_bounce_limit(t, 0), 0);
	assert_int_equal(ubdma_map_load(t, a, u, PG, rec_cb, &ra, UBDMA_NOWAIT), ENOMEM);
	assert_int_equal(pool_inuse_of(t), 0);
	assert_int_equal(ubdma_map_destroy(t, a), 0);
	assert_int_equal(ubdma_map_destroy(t, b), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	munmap(u, 8 * PG);
}

/* WAITOK: EINPROGRESS, then callbacks in FIFO order from the thread that unloads. */
static void t_waitok_fifo(void **state)
{
	struct fx *f = FX_GET(state, (f_->backend == UBDMA_BACKEND_PHYS) * 1);
	char *u = mem_get(16 * PG, 0);
	ubdma_tag_t *t = mktag(f, MAX, MAX, 8 * PG, 0);
	ubdma_map_t *m[4];
	struct cbrec r[4] = { 0 };
	struct cbrec rn = { 0 };

	assert_int_equal(ubdma_tag_set_bounce_limit(t, 4 * PG), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(ubdma_map_create(t, 0, &m[i]), 0);
	assert_int_equal(ubdma_map_load(t, m[0], u, 4 * PG, rec_cb, &r[0], 0), 0);
	assert_int_equal(ubdma_map_load(t, m[1], u + 4 * PG, 2 * PG, rec_cb, &r[1], 0), EINPROGRESS);
	assert_int_equal(ubdma_map_load(t, m[2], u + 8 * PG, PG, rec_cb, &r[2], 0), EINPROGRESS);
	assert_int_equal(r[1].calls + r[2].calls, 0);
	assert_int_equal(m[1]->state, MAP_PENDING);
	/* strict FIFO: a NOWAIT load does not jump the queue */
	assert_int_equal(ubdma_map_load(t, m[3], u + 12 * PG, PG, rec_cb, &rn, UBDMA_NOWAIT), ENOMEM);
	/* the unload frees 4 pages: both waiting loads run, in order, in this thread */
	ubdma_map_unload(t, m[0]);
	assert_int_equal(r[1].calls, 1);
	assert_int_equal(r[2].calls, 1);
	assert_true(r[1].order < r[2].order);
	assert_int_equal(r[1].error, 0);
	assert_int_equal(r[1].nseg, 2);
	assert_int_equal(r[2].nseg, 1);
	assert_int_equal(m[1]->state, MAP_LOADED);
	assert_int_equal(pool_inuse_of(t), 3);
	ubdma_map_unload(t, m[1]);
	ubdma_map_unload(t, m[2]);
	assert_int_equal(pool_inuse_of(t), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(ubdma_map_destroy(t, m[i]), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	munmap(u, 16 * PG);
}

/* Unloading a waiting map cancels it; a tag with a waiting map is busy; raising the limit drains. */
static void t_cancel_and_limit(void **state)
{
	struct fx *f = FX_GET(state, (f_->backend == UBDMA_BACKEND_PHYS) * 1);
	char *u = mem_get(8 * PG, 0);
	ubdma_tag_t *t = mktag(f, MAX, MAX, 8 * PG, 0);
	ubdma_map_t *a, *b, *c;
	struct cbrec ra = { 0 }, rb = { 0 }, rc = { 0 };

	assert_int_equal(ubdma_tag_set_bounce_limit(t, 2 * PG), 0);
	assert_int_equal(ubdma_map_create(t, 0, &a), 0);
	assert_int_equal(ubdma_map_create(t, 0, &b), 0);
	assert_int_equal(ubdma_map_create(t, 0, &c), 0);
	assert_int_equal(ubdma_map_load(t, a, u, 2 * PG, rec_cb, &ra, 0), 0);
	assert_int_equal(ubdma_map_load(t, b, u + 2 * PG, 2 * PG, rec_cb, &rb, 0), EINPROGRESS);
	assert_int_equal(ubdma_map_load(t, c, u + 4 * PG, PG, rec_cb, &rc, 0), EINPROGRESS);
	assert_int_equal(ubdma_map_destroy(t, b), EBUSY);
	ubdma_map_unload(t, b); /* cancel: its callback never runs */
	assert_int_equal(b->state, MAP_IDLE);
	assert_int_equal(rb.calls, 0);
	assert_int_equal(rc.calls, 0);
	/* a larger limit lets the waiting load run, in this thread */
	assert_int_equal(ubdma_tag_set_bounce_limit(t, 3 * PG), 0);
	assert_int_equal(rc.calls, 1);
	assert_int_equal(rc.error, 0);
	ubdma_map_unload(t, a);
	ubdma_map_unload(t, c);
	assert_int_equal(rb.calls, 0);
	assert_int_equal(pool_inuse_of(t), 0);
	assert_int_equal(ubdma_map_destroy(t, a), 0);
	assert_int_equal(ubdma_map_destroy(t, b), 0);
	assert_int_equal(ubdma_map_destroy(t, c), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	munmap(u, 8 * PG);
}

/* A window that leaves no usable IOVA: the load fails, nothing is held. */
static void t_no_window(void **state)
{
	struct fx *f = FX_GET(state, 0);
	char *u = mem_get(PG, 0);
	ubdma_tag_t *t = mktag(f, 0, MAX, PG, 0);
	ubdma_map_t *m;
	struct cbrec r = { 0 };

	assert_int_equal(ubdma_map_create(t, 0, &m), 0);
	assert_int_equal(ubdma_map_load(t, m, u, PG, rec_cb, &r, UBDMA_NOWAIT), ENOMEM);
	assert_int_equal(r.error, ENOMEM);
	assert_int_equal(m->state, MAP_IDLE);
	assert_int_equal(pool_inuse_of(t), 0);
	/* WAITOK with nothing in use would wait forever: ENOMEM too */
	assert_int_equal(ubdma_map_load(t, m, u, PG, rec_cb, &r, 0), ENOMEM);
	assert_int_equal(ubdma_map_destroy(t, m), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	munmap(u, PG);
}

/* Deferred load_iov: the scatter list is saved and replayed. */
static void t_waitok_iov(void **state)
{
	struct fx *f = FX_GET(state, (f_->backend == UBDMA_BACKEND_PHYS) * 1);
	char *u = mem_get(8 * PG, 0);
	ubdma_tag_t *t = mktag(f, MAX, MAX, 8 * PG, 0);
	ubdma_map_t *a, *b;
	struct cbrec ra = { 0 }, rb = { 0 };
	struct iovec iov[3] = { { u + 4 * PG, 100 }, { u + 5 * PG, PG }, { u + 6 * PG + 8, 50 } };

	assert_int_equal(ubdma_tag_set_bounce_limit(t, 3 * PG), 0);
	assert_int_equal(ubdma_map_create(t, 0, &a), 0);
	assert_int_equal(ubdma_map_create(t, 0, &b), 0);
	assert_int_equal(ubdma_map_load(t, a, u, 2 * PG, rec_cb, &ra, 0), 0);
	assert_int_equal(ubdma_map_load_iov(t, b, iov, 3, rec_cb, &rb, 0), EINPROGRESS);
	memset(iov, 0, sizeof(iov)); /* the caller's list may go away */
	ubdma_map_unload(t, a);
	assert_int_equal(rb.calls, 1);
	assert_int_equal(rb.nseg, 3);
	assert_int_equal(rb.segs[0].ds_len, 100);
	assert_int_equal(rb.segs[1].ds_len, PG);
	assert_int_equal(rb.segs[2].ds_len, 50);
	ubdma_map_unload(t, b);
	assert_int_equal(ubdma_map_destroy(t, a), 0);
	assert_int_equal(ubdma_map_destroy(t, b), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	munmap(u, 8 * PG);
}

/*
 * A lock function that checks what it is asked: UBDMA_LOCK only when not held, UBDMA_UNLOCK only
 * when held (a second LOCK would be the self-deadlock of a driver's mutex).
 */
struct lockrec {
	int held, locks, unlocks, misuse;
};

static void rec_lock(void *arg, ubdma_lock_op_t op)
{
	struct lockrec *l = arg;

	if (op == UBDMA_LOCK) {
		l->misuse += l->held;
		l->held = 1;
		l->locks++;
	} else {
		l->misuse += !l->held || op != UBDMA_UNLOCK;
		l->held = 0;
		l->unlocks++;
	}
}

/* A callback that records, checks its lock is held, and unloads another map (of any tag). */
struct unloader {
	struct cbrec r;
	struct lockrec *lock;	/* must be held during the call (NULL: no check) */
	int held_in_cb;
	ubdma_tag_t *tag;	/* unload this map from inside the callback */
	ubdma_map_t *map;
	int running;		/* set while the callback runs: nothing may run inside it */
	int nested;		/* another callback ran inside this one */
};

static struct unloader *cur_running;

static void unload_cb(void *arg, ubdma_seg_t *segs, int nseg, int error)
{
	struct unloader *u = arg;

	if (cur_running)
		cur_running->nested++;
	rec_cb(&u->r, segs, nseg, error);
	u->held_in_cb = u->lock ? u->lock->held : -1;
	cur_running = u;
	if (u->map)
		ubdma_map_unload(u->tag, u->map);
	cur_running = NULL;
}

/*
 * Tag A's deferred callback unloads a map of tag B whose queue holds a waiting load: B's load must
 * run (the thread-local "draining" flag this replaced skipped B's queue, leaving its load waiting
 * until the next unload of a B map), after A's callback has returned, and each callback under its
 * own tag's lock, taken once.  Both tags share one lock function, as one driver's tags do.
 */
static void t_cross_tag_drain(void **state)
{
	struct fx *f = FX_GET(state, (f_->backend == UBDMA_BACKEND_PHYS) * 1);
	char *u = mem_get(8 * PG, 0);
	ubdma_tag_t *a = mktag(f, MAX, MAX, PG, 0), *b = mktag(f, MAX, MAX, PG, 0);
	ubdma_map_t *a1, *a2, *b1, *b2;
	struct lockrec lk = { 0 };
	struct unloader ua1 = { 0 }, ua2 = { .lock = &lk }, ub1 = { 0 }, ub2 = { .lock = &lk };

	assert_int_equal(ubdma_tag_set_lockfunc(a, rec_lock, &lk), 0);
	assert_int_equal(ubdma_tag_set_lockfunc(b, rec_lock, &lk), 0);
	assert_int_equal(ubdma_tag_set_bounce_limit(a, PG), 0);
	assert_int_equal(ubdma_tag_set_bounce_limit(b, PG), 0);
	assert_int_equal(ubdma_map_create(a, 0, &a1), 0);
	assert_int_equal(ubdma_map_create(a, 0, &a2), 0);
	assert_int_equal(ubdma_map_create(b, 0, &b1), 0);
	assert_int_equal(ubdma_map_create(b, 0, &b2), 0);
	/* each tag: one load holds the pool's only page, a second waits for it */
	assert_int_equal(ubdma_map_load(b, b1, u, PG, unload_cb, &ub1, 0), 0);
	assert_int_equal(ubdma_map_load(b, b2, u + PG, PG, unload_cb, &ub2, 0), EINPROGRESS);
	assert_int_equal(ubdma_map_load(a, a1, u + 2 * PG, PG, unload_cb, &ua1, 0), 0);
	ua2.tag = b;
	ua2.map = b1; /* A's deferred callback unloads B's loaded map */
	assert_int_equal(ubdma_map_load(a, a2, u + 3 * PG, PG, unload_cb, &ua2, 0), EINPROGRESS);
	assert_int_equal(lk.locks, 0); /* loads that ran at once are not wrapped */

	ubdma_map_unload(a, a1);
	assert_int_equal(ua2.r.calls, 1);
	assert_int_equal(ua2.r.error, 0);
	assert_int_equal(ub2.r.calls, 1); /* B's queue drained too */
	assert_int_equal(ub2.r.error, 0);
	assert_int_equal(ub2.r.nseg, 1);
	assert_true(ua2.r.order < ub2.r.order);
	assert_int_equal(b2->state, MAP_LOADED);
	/* never nested, each under the lock taken once */
	assert_int_equal(ua2.nested + ub2.nested, 0);
	assert_int_equal(ua2.held_in_cb, 1);
	assert_int_equal(ub2.held_in_cb, 1);
	assert_int_equal(lk.locks, 2);
	assert_int_equal(lk.unlocks, 2);
	assert_int_equal(lk.misuse, 0);
	assert_int_equal(lk.held, 0);

	ubdma_map_unload(a, a2);
	ubdma_map_unload(b, b2);
	assert_int_equal(pool_inuse_of(a) + pool_inuse_of(b), 0);
	assert_int_equal(ubdma_map_destroy(a, a1), 0);
	assert_int_equal(ubdma_map_destroy(a, a2), 0);
	assert_int_equal(ubdma_map_destroy(b, b1), 0);
	assert_int_equal(ubdma_map_destroy(b, b2), 0);
	assert_int_equal(ubdma_tag_destroy(a), 0);
	assert_int_equal(ubdma_tag_destroy(b), 0);
	munmap(u, 8 * PG);
}

/*
 * A chain: A's callback unloads a B map, whose waiting load's callback unloads a C map, whose
 * waiting load must run too; and a callback that unloads a map of its own tag lets the next
 * waiter of that tag run, after it, in FIFO order.
 */
static void t_drain_chain(void **state)
{
	struct fx *f = FX_GET(state, (f_->backend == UBDMA_BACKEND_PHYS) * 1);
	char *u = mem_get(16 * PG, 0);
	ubdma_tag_t *t[3];
	ubdma_map_t *held[3], *wait[3], *a3;
	struct unloader uh[3] = { 0 }, uw[3] = { 0 }, u3 = { 0 };

	for (int i = 0; i < 3; i++) {
		t[i] = mktag(f, MAX, MAX, PG, 0);
		assert_int_equal(ubdma_tag_set_bounce_limit(t[i], PG), 0);
		assert_int_equal(ubdma_map_create(t[i], 0, &held[i]), 0);
		assert_int_equal(ubdma_map_create(t[i], 0, &wait[i]), 0);
		assert_int_equal(ubdma_map_load(t[i], held[i], u + (size_t)i * 2 * PG, PG, unload_cb, &uh[i], 0), 0);
	}
	assert_int_equal(ubdma_map_create(t[0], 0, &a3), 0);
	/* wait[0]'s callback unloads held[1], wait[1]'s unloads held[2], and wait[2]'s unloads
	 * wait[0] itself, whose page a3, queued on t[0] behind wait[0], is waiting for: t[0] is being
	 * drained by the outermost frame when that unload comes */
	uw[0].tag = t[1];
	uw[0].map = held[1];
	uw[1].tag = t[2];
	uw[1].map = held[2];
	uw[2].tag = t[0];
	uw[2].map = wait[0];
	for (int i = 0; i < 3; i++)
		assert_int_equal(ubdma_map_load(t[i], wait[i], u + (size_t)i * 2 * PG + PG, PG, unload_cb, &uw[i], 0),
				 EINPROGRESS);
	assert_int_equal(ubdma_map_load(t[0], a3, u + 6 * PG, PG, unload_cb, &u3, 0), EINPROGRESS);

	ubdma_map_unload(t[0], held[0]);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(uw[i].r.calls, 1);
		assert_int_equal(uw[i].r.error, 0);
		assert_int_equal(uw[i].nested, 0);
	}
	assert_true(uw[0].r.order < uw[1].r.order && uw[1].r.order < uw[2].r.order);
	assert_int_equal(u3.r.calls, 1); /* t[0]'s queue, drained again after wait[2]'s callback */
	assert_int_equal(u3.r.error, 0);
	assert_true(uw[2].r.order < u3.r.order);

	ubdma_map_unload(t[0], a3);
	ubdma_map_unload(t[1], wait[1]);
	ubdma_map_unload(t[2], wait[2]);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(pool_inuse_of(t[i]), 0);
		assert_int_equal(ubdma_map_destroy(t[i], held[i]), 0);
		assert_int_equal(ubdma_map_destroy(t[i], wait[i]), 0);
	}
	assert_int_equal(ubdma_map_destroy(t[0], a3), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(ubdma_tag_destroy(t[i]), 0);
	munmap(u, 16 * PG);
}

/* What a callback tears down, and what it got back. */
struct teardown {
	struct cbrec r;
	ubdma_tag_t *own;		/* its own tag: destroy its map, then try the tag */
	ubdma_map_t *own_map;
	int own_destroy;		/* ubdma_tag_destroy(own) from inside the callback */
	ubdma_tag_t *other;		/* another tag: unload its maps (one loaded, one waiting), */
	ubdma_map_t *other_maps[2];	/* destroy them and the tag */
	int other_destroy;
};

static void teardown_cb(void *arg, ubdma_seg_t *segs, int nseg, int error)
{
	struct teardown *d = arg;

	rec_cb(&d->r, segs, nseg, error);
	if (d->other) {
		/* the first unload puts the other pool on this thread's pending list (its waiter
		 * could run now); the second cancels that waiter; the tag then goes */
		for (int i = 0; i < 2; i++)
			ubdma_map_unload(d->other, d->other_maps[i]);
		for (int i = 0; i < 2; i++)
			assert_int_equal(ubdma_map_destroy(d->other, d->other_maps[i]), 0);
		d->other_destroy = ubdma_tag_destroy(d->other);
	}
	if (d->own) {
		ubdma_map_unload(d->own, d->own_map);
		assert_int_equal(ubdma_map_destroy(d->own, d->own_map), 0);
		d->own_destroy = ubdma_tag_destroy(d->own);
	}
}

/*
 * Tags that go from inside a deferred callback: another tag whose pool this thread was about to
 * drain (it leaves the pending list; ASan builds see no use after free), and the callback's own
 * tag, which its draining loop still holds (EBUSY until the callback returns).
 */
static void t_destroy_in_callback(void **state)
{
	struct fx *f = FX_GET(state, (f_->backend == UBDMA_BACKEND_PHYS) * 1);
	char *u = mem_get(8 * PG, 0);
	ubdma_tag_t *a = mktag(f, MAX, MAX, PG, 0), *b = mktag(f, MAX, MAX, PG, 0);
	ubdma_map_t *a1, *a2, *b1, *b2;
	struct teardown d = { 0 }, nop = { 0 };

	assert_int_equal(ubdma_tag_set_bounce_limit(a, PG), 0);
	assert_int_equal(ubdma_tag_set_bounce_limit(b, PG), 0);
	assert_int_equal(ubdma_map_create(a, 0, &a1), 0);
	assert_int_equal(ubdma_map_create(a, 0, &a2), 0);
	assert_int_equal(ubdma_map_create(b, 0, &b1), 0);
	assert_int_equal(ubdma_map_create(b, 0, &b2), 0);
	assert_int_equal(ubdma_map_load(b, b1, u, PG, teardown_cb, &nop, 0), 0);
	assert_int_equal(ubdma_map_load(b, b2, u + PG, PG, teardown_cb, &nop, 0), EINPROGRESS);
	assert_int_equal(ubdma_map_load(a, a1, u + 2 * PG, PG, teardown_cb, &nop, 0), 0);
	d.other = b;
	d.other_maps[0] = b1;
	d.other_maps[1] = b2;
	d.own = a;
	d.own_map = a2;
	assert_int_equal(ubdma_map_load(a, a2, u + 3 * PG, PG, teardown_cb, &d, 0), EINPROGRESS);
	assert_int_equal(ubdma_map_destroy(a, a1), EBUSY);
	ubdma_map_unload(a, a1);
	assert_int_equal(ubdma_map_destroy(a, a1), 0);

	assert_int_equal(d.r.calls, 1);
	assert_int_equal(d.other_destroy, 0);
	assert_int_equal(d.own_destroy, EBUSY);
	assert_int_equal(nop.r.calls, 2); /* b1 and a1 at load time; b2 was cancelled */
	assert_int_equal(ubdma_tag_destroy(a), 0);
	munmap(u, 8 * PG);
}

/* A callback in thread X that unloads a map of tag B, then lets the main thread go on. */
struct handoff {
	struct cbrec r;
	ubdma_tag_t *other, *own;
	ubdma_map_t *other_map, *own_map;
	sem_t unloaded, resume;
};

static void handoff_cb(void *arg, ubdma_seg_t *segs, int nseg, int error)
{
	struct handoff *h = arg;

	rec_cb(&h->r, segs, nseg, error);
	ubdma_map_unload(h->other, h->other_map); /* B's waiter could run: B waits on X's list */
	sem_post(&h->unloaded);
	sem_wait(&h->resume);
}

static void *thread_x(void *arg)
{
	struct handoff *h = arg;

	ubdma_map_unload(h->own, h->own_map); /* runs A's waiter, handoff_cb, here */
	return NULL;
}

/*
 * A tag whose pool waits on another thread's pending list goes: that thread frees the pool when
 * it gets there, without touching the tag (ASan builds check).
 */
static void t_destroy_pending_elsewhere(void **state)
{
	struct fx *f = FX_GET(state, (f_->backend == UBDMA_BACKEND_PHYS) * 1);
	char *u = mem_get(8 * PG, 0);
	ubdma_tag_t *a = mktag(f, MAX, MAX, PG, 0), *b = mktag(f, MAX, MAX, PG, 0);
	ubdma_map_t *a1, *a2, *b1, *b2;
	struct cbrec r = { 0 }, rb2 = { 0 };
	struct handoff h = { .other = b, .own = a };
	pthread_t x;

	sem_init(&h.unloaded, 0, 0);
	sem_init(&h.resume, 0, 0);
	assert_int_equal(ubdma_tag_set_bounce_limit(a, PG), 0);
	assert_int_equal(ubdma_tag_set_bounce_limit(b, PG), 0);
	assert_int_equal(ubdma_map_create(a, 0, &a1), 0);
	assert_int_equal(ubdma_map_create(a, 0, &a2), 0);
	assert_int_equal(ubdma_map_create(b, 0, &b1), 0);
	assert_int_equal(ubdma_map_create(b, 0, &b2), 0);
	assert_int_equal(ubdma_map_load(b, b1, u, PG, rec_cb, &r, 0), 0);
	assert_int_equal(ubdma_map_load(b, b2, u + PG, PG, rec_cb, &rb2, 0), EINPROGRESS);
	assert_int_equal(ubdma_map_load(a, a1, u + 2 * PG, PG, rec_cb, &r, 0), 0);
	assert_int_equal(ubdma_map_load(a, a2, u + 3 * PG, PG, handoff_cb, &h, 0), EINPROGRESS);
	h.other_map = b1;
	h.own_map = a1;
	assert_int_equal(pthread_create(&x, NULL, thread_x, &h), 0);
	sem_wait(&h.unloaded);
	/* B's pool is on X's list; its owner cancels the waiter and destroys everything */
	assert_true(b->pool->pending);
	ubdma_map_unload(b, b2);
	assert_int_equal(ubdma_map_destroy(b, b1), 0);
	assert_int_equal(ubdma_map_destroy(b, b2), 0);
	assert_int_equal(ubdma_tag_destroy(b), 0);
	sem_post(&h.resume);
	assert_int_equal(pthread_join(x, NULL), 0);
	assert_int_equal(h.r.calls, 1);
	assert_int_equal(rb2.calls, 0);
	ubdma_map_unload(a, a2);
	assert_int_equal(ubdma_map_destroy(a, a1), 0);
	assert_int_equal(ubdma_map_destroy(a, a2), 0);
	assert_int_equal(ubdma_tag_destroy(a), 0);
	sem_destroy(&h.unloaded);
	sem_destroy(&h.resume);
	munmap(u, 8 * PG);
}

/*
 * The lock function: inherited from the nearest ancestor that has one, called around deferred
 * callbacks only (also one that fails with ENOMEM), changed or removed at any time.
 */
static void t_lockfunc(void **state)
{
	struct fx *f = FX_GET(state, (f_->backend == UBDMA_BACKEND_PHYS) * 1);
	char *u = mem_get(8 * PG, 0);
	ubdma_tag_t *p, *t;
	ubdma_map_t *m1, *m2;
	struct lockrec lp = { 0 }, lt = { 0 };
	struct unloader r1 = { 0 }, r2 = { .lock = &lp };

	assert_int_equal(ubdma_tag_set_lockfunc(NULL, rec_lock, &lp), EINVAL);
	assert_int_equal(ubdma_tag_create(ubdma_ctx_tag(f->ctx), 1, 0, MAX, MAX, 4 * PG, 4, 4 * PG, 0, &p), 0);
	assert_int_equal(ubdma_tag_set_lockfunc(p, rec_lock, &lp), 0);
	t = mktag(f, MAX, MAX, 2 * PG, 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	assert_int_equal(ubdma_tag_create(p, 1, 0, MAX, MAX, 2 * PG, 4, 2 * PG, 0, &t), 0); /* inherits p's */
	assert_int_equal(ubdma_tag_set_bounce_limit(t, 2 * PG), 0);
	assert_int_equal(ubdma_map_create(t, 0, &m1), 0);
	assert_int_equal(ubdma_map_create(t, 0, &m2), 0);

	assert_int_equal(ubdma_map_load(t, m1, u, 2 * PG, unload_cb, &r1, 0), 0);
	assert_int_equal(r1.r.calls, 1);
	assert_int_equal(lp.locks, 0); /* at once: not wrapped */
	assert_int_equal(ubdma_map_load(t, m2, u + 2 * PG, PG, unload_cb, &r2, 0), EINPROGRESS);
	ubdma_map_unload(t, m1);
	assert_int_equal(r2.r.calls, 1);
	assert_int_equal(r2.held_in_cb, 1);
	assert_int_equal(lp.locks, 1);
	assert_int_equal(lp.unlocks, 1);
	assert_int_equal(lp.misuse, 0);
	ubdma_map_unload(t, m2);

	/* the tag's own function wins over its parent's */
	assert_int_equal(ubdma_tag_set_lockfunc(t, rec_lock, &lt), 0);
	r2 = (struct unloader){ .lock = &lt };
	assert_int_equal(ubdma_map_load(t, m1, u, 2 * PG, unload_cb, &r1, 0), 0);
	assert_int_equal(ubdma_map_load(t, m2, u + 2 * PG, PG, unload_cb, &r2, 0), EINPROGRESS);
	ubdma_map_unload(t, m1);
	assert_int_equal(r2.held_in_cb, 1);
	assert_int_equal(lt.locks, 1);
	assert_int_equal(lp.locks, 1);
	ubdma_map_unload(t, m2);

	/* a deferred load that fails (the limit went below it) runs under the lock too */
	r2 = (struct unloader){ .lock = &lt };
	assert_int_equal(ubdma_map_load(t, m1, u, 2 * PG, unload_cb, &r1, 0), 0);
	assert_int_equal(ubdma_map_load(t, m2, u + 2 * PG, 2 * PG, unload_cb, &r2, 0), EINPROGRESS);
	assert_int_equal(ubdma_tag_set_bounce_limit(t, PG), 0);
	ubdma_map_unload(t, m1);
	assert_int_equal(r2.r.calls, 1);
	assert_int_equal(r2.r.error, ENOMEM);
	assert_int_equal(r2.held_in_cb, 1);
	assert_int_equal(lt.locks, 2);
	assert_int_equal(lt.misuse, 0);

	/* removed: none of its own, the parent's applies again; removed there too: none */
	assert_int_equal(ubdma_tag_set_lockfunc(t, NULL, &lt), 0);
	assert_int_equal(ubdma_tag_set_lockfunc(p, NULL, NULL), 0);
	assert_int_equal(ubdma_tag_set_bounce_limit(t, 2 * PG), 0);
	r2 = (struct unloader){ 0 };
	assert_int_equal(ubdma_map_load(t, m1, u, 2 * PG, unload_cb, &r1, 0), 0);
	assert_int_equal(ubdma_map_load(t, m2, u + 2 * PG, PG, unload_cb, &r2, 0), EINPROGRESS);
	ubdma_map_unload(t, m1);
	assert_int_equal(r2.r.calls, 1);
	assert_int_equal(lt.locks + lp.locks, 3);
	ubdma_map_unload(t, m2);

	assert_int_equal(ubdma_map_destroy(t, m1), 0);
	assert_int_equal(ubdma_map_destroy(t, m2), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	assert_int_equal(ubdma_tag_destroy(p), 0);
	munmap(u, 8 * PG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		BACKEND_TESTS(t_pool_satisfies_tag),
		BACKEND_TESTS(t_allocnow),
		BACKEND_TESTS(t_nowait_enomem),
		BACKEND_TESTS(t_waitok_fifo),
		BACKEND_TESTS(t_cancel_and_limit),
		BACKEND_TESTS(t_no_window),
		BACKEND_TESTS(t_waitok_iov),
		BACKEND_TESTS(t_cross_tag_drain),
		BACKEND_TESTS(t_drain_chain),
		BACKEND_TESTS(t_lockfunc),
		BACKEND_TESTS(t_destroy_in_callback),
		BACKEND_TESTS(t_destroy_pending_elsewhere),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
