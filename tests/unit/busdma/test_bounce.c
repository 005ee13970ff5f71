/*
 * test_bounce.c - the bounce pool: memory that satisfies the tag, ALLOCNOW, the limit, NOWAIT ->
 * ENOMEM, WAITOK -> EINPROGRESS and FIFO callbacks from the unloading thread, cancel, and that a
 * failure holds no page.
 */
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
