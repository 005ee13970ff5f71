/*
 * test_load.c - the segment builder through ubdma_map_load, _iov and _sg: segments follow the
 * IOVAs of the pages, respect boundary and maxsegsz, coalesce only when contiguous, EFBIG, and
 * which pages bounce (unregistered, in the exclusion window, misaligned, STRICT).
 */
#include "helpers.h"

#define MAX UBDMA_MAXADDR

static ubdma_tag_t *mktag(struct fx *f, size_t align, uint64_t boundary, uint64_t lo, uint64_t hi, size_t maxsize,
			  int nseg, size_t maxsegsz, int flags)
{
	ubdma_tag_t *t;
	assert_int_equal(ubdma_tag_create(ubdma_ctx_tag(f->ctx), align, boundary, lo, hi, maxsize, nseg, maxsegsz,
					  flags, &t), 0);
	return t;
}

/* Segments follow hand-made, non-contiguous IOVAs and coalesce only where they are contiguous. */
static void t_follow_iovas(void **state)
{
	struct fx *f = FX_GET(state, 0);
	char *buf = mem_get(8 * PG, 0);
	/* pages 0-1 contiguous, 2 elsewhere, 3 right after 2, 4-7 contiguous with a gap before */
	uint64_t iovas[8] = { 0x100000, 0x101000, 0x200000, 0x201000, 0x300000, 0x301000, 0x302000, 0x303000 };
	ubdma_tag_t *t = mktag(f, 1, 0, MAX, MAX, 8 * PG, 16, 8 * PG, 0);
	ubdma_map_t *m;
	struct cbrec r = { 0 };

	fake_xlate(f->ctx, buf, 8, iovas);
	assert_int_equal(ubdma_map_create(t, 0, &m), 0);
	assert_int_equal(ubdma_map_load(t, m, buf + 16, 8 * PG - 32, rec_cb, &r, 0), 0);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.error, 0);
	assert_int_equal(r.nseg, 3);
	assert_int_equal(r.segs[0].ds_addr, 0x100010);
	assert_int_equal(r.segs[0].ds_len, 2 * PG - 16);
	assert_int_equal(r.segs[1].ds_addr, 0x200000);
	assert_int_equal(r.segs[1].ds_len, 2 * PG);
	assert_int_equal(r.segs[2].ds_addr, 0x300000);
	assert_int_equal(r.segs[2].ds_len, 4 * PG - 16);
	ubdma_map_unload(t, m);
	assert_int_equal(ubdma_map_destroy(t, m), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	fake_clear(f->ctx, buf, 8);
	munmap(buf, 8 * PG);
}

/* Boundary and maxsegsz split a contiguous buffer; coalescing stops at both limits. */
static void t_limits(void **state)
{
	struct fx *f = FX_GET(state, 1);
	struct rbuf b;
	rbuf_get(f, &b, 64 * PG, 0);
	uint64_t iova = ubdma_vtoiova(f->ctx, b.p);
	struct {
		uint64_t boundary;
		size_t maxsegsz;
	} cases[] = { { 0, 64 * PG }, { 8 * PG, 64 * PG }, { 0, 3 * PG + 100 }, { 16 * PG, 5 * PG }, { 2048, 1 << 20 } };

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		ubdma_tag_t *t = mktag(f, 1, cases[c].boundary, MAX, MAX, 64 * PG, 4096, cases[c].maxsegsz, 0);
		ubdma_map_t *m;
		struct cbrec r = { 0 };
		size_t off = 300, len = 40 * PG + 7;

		assert_int_equal(ubdma_map_create(t, 0, &m), 0);
		assert_int_equal(ubdma_map_load(t, m, b.p + off, len, rec_cb, &r, 0), 0);
		assert_int_equal(r.error, 0);
		check_segs(t, r.segs, r.nseg);
		/* contiguous in IOVA: consecutive, in order, covering the buffer; each split is forced */
		uint64_t a = iova + off;
		for (int i = 0; i < r.nseg; i++) {
			assert_int_equal(r.segs[i].ds_addr, a);
			a += r.segs[i].ds_len;
			if (i + 1 < r.nseg) {
				int at_max = r.segs[i].ds_len == t->maxsegsz;
				int at_boundary = t->boundary && !(a & (t->boundary - 1));
				assert_true(at_max || at_boundary);
			}
		}
		assert_int_equal(a, iova + off + len);
		ubdma_map_unload(t, m);
		assert_int_equal(ubdma_map_destroy(t, m), 0);
		assert_int_equal(ubdma_tag_destroy(t), 0);
	}
	rbuf_put(&b);
}

/* More than nsegments: EFBIG to the callback with nseg 0, the load returns 0, the map stays unloaded. */
static void t_efbig(void **state)
{
	struct fx *f = FX_GET(state, 1);
	struct rbuf b;
	rbuf_get(f, &b, 16 * PG, 0);
	ubdma_tag_t *t = mktag(f, 1, PG, MAX, MAX, 16 * PG, 3, PG, 0);
	ubdma_map_t *m;
	struct cbrec r = { 0 };
	ubdma_seg_t segs[3];
	int n = -1;

	assert_int_equal(ubdma_map_create(t, 0, &m), 0);
	assert_int_equal(ubdma_map_load(t, m, b.p, 4 * PG, rec_cb, &r, 0), 0);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.error, EFBIG);
	assert_int_equal(r.nseg, 0);
	assert_int_equal(m->state, MAP_IDLE);
	assert_int_equal(ubdma_map_load_sg(t, m, b.p, 4 * PG, segs, &n, 0), EFBIG);
	assert_int_equal(n, 0);
	/* exactly nsegments fits */
	assert_int_equal(ubdma_map_load_sg(t, m, b.p, 3 * PG, segs, &n, 0), 0);
	assert_int_equal(n, 3);
	ubdma_map_unload(t, m);
	/* EFBIG with bounce pages involved: none is held afterwards */
	char *u = mem_get(8 * PG, 0);
	memset(&r, 0, sizeof(r));
	assert_int_equal(ubdma_map_load(t, m, u, 8 * PG, rec_cb, &r, UBDMA_NOWAIT), 0);
	assert_int_equal(r.error, EFBIG);
	assert_int_equal(pool_inuse_of(t), 0);
	assert_int_equal(m->state, MAP_IDLE);
	assert_int_equal(ubdma_map_destroy(t, m), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	munmap(u, 8 * PG);
	rbuf_put(&b);
}

/* Unregistered memory is bounced, never pinned: segments point into the tag's bounce pool. */
static void t_unregistered_bounces(void **state)
{
	struct fx *f = FX_GET(state, 1);
	char *u = mem_get(4 * PG, 0);
	ubdma_tag_t *t = mktag(f, 1, 0, MAX, MAX, 4 * PG, 8, 4 * PG, 0);
	ubdma_map_t *m;
	struct cbrec r = { 0 };

	assert_int_equal(ubdma_map_create(t, 0, &m), 0);
	assert_int_equal(ubdma_map_load(t, m, u + 100, 2 * PG, rec_cb, &r, 0), 0);
	assert_int_equal(r.error, 0);
	/* pieces: 4096-100, 4096, 100 bytes; each its own segment (bounced pieces never merge) */
	assert_int_equal(r.nseg, 3);
	assert_int_equal(r.segs[0].ds_len, PG - 100);
	assert_int_equal(r.segs[1].ds_len, PG);
	assert_int_equal(r.segs[2].ds_len, 100);
	for (int i = 0; i < 3; i++)
		assert_true(is_bounce(t, r.segs[i].ds_addr));
	assert_int_equal(ubdma_wire_count(u), 0); /* nothing pinned behind our back */
	assert_int_equal(pool_inuse_of(t), 3);
	ubdma_map_unload(t, m);
	assert_int_equal(pool_inuse_of(t), 0);
	assert_int_equal(ubdma_map_destroy(t, m), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	munmap(u, 4 * PG);
}

/* Pages whose IOVA is in (lowaddr, highaddr] bounce, the others are used in place.  Hand-made IOVAs
 * far above physical memory, so that phys finds bounce pages below the window. */
#define B UINT64_C(0x100000000000)
static void t_window(void **state)
{
	struct fx *f = FX_GET(state, 0);
	char *buf = mem_get(4 * PG, 0);
	uint64_t iovas[4] = { B + 0x0000, B + 0x1000, B + 0x2000, B + 0x3000 };
	/* exclude exactly the third page: (B + 0x1fff, B + 0x2fff] */
	ubdma_tag_t *t = mktag(f, 1, 0, B + 0x1fff, B + 0x2fff, 4 * PG, 8, 4 * PG, 0);
	ubdma_map_t *m;
	struct cbrec r = { 0 };

	fake_xlate(f->ctx, buf, 4, iovas);
	assert_int_equal(ubdma_map_create(t, 0, &m), 0);
	assert_int_equal(ubdma_map_load(t, m, buf, 4 * PG, rec_cb, &r, 0), 0);
	assert_int_equal(r.nseg, 3);
	assert_int_equal(r.segs[0].ds_addr, B);
	assert_int_equal(r.segs[0].ds_len, 2 * PG);
	assert_true(is_bounce(t, r.segs[1].ds_addr));
	assert_true(r.segs[1].ds_addr <= B + 0x1fff || r.segs[1].ds_addr > B + 0x2fff);
	assert_int_equal(r.segs[2].ds_addr, B + 0x3000);
	ubdma_map_unload(t, m);
	/* a byte-precise window edge: lowaddr inside page 1 makes page 1 bounce too */
	ubdma_tag_t *t2 = mktag(f, 1, 0, B + 0x1800, B + 0x1900, 4 * PG, 8, 4 * PG, 0);
	ubdma_map_t *m2;
	memset(&r, 0, sizeof(r));
	assert_int_equal(ubdma_map_create(t2, 0, &m2), 0);
	assert_int_equal(ubdma_map_load(t2, m2, buf, 4 * PG, rec_cb, &r, 0), 0);
	assert_int_equal(r.nseg, 3);
	assert_int_equal(r.segs[0].ds_len, PG);
	assert_true(is_bounce(t2, r.segs[1].ds_addr));
	assert_int_equal(r.segs[2].ds_addr, B + 0x2000);
	assert_int_equal(r.segs[2].ds_len, 2 * PG);
	ubdma_map_unload(t2, m2);
	assert_int_equal(ubdma_map_destroy(t2, m2), 0);
	assert_int_equal(ubdma_tag_destroy(t2), 0);
	assert_int_equal(ubdma_map_destroy(t, m), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	fake_clear(f->ctx, buf, 4);
	munmap(buf, 4 * PG);
}

/* A page piece that starts off the alignment bounces into an aligned slot. */
static void t_alignment(void **state)
{
	struct fx *f = FX_GET(state, 1);
	struct rbuf b;
	rbuf_get(f, &b, 4 * PG, 0);
	ubdma_tag_t *t = mktag(f, 512, 0, MAX, MAX, 4 * PG, 8, 4 * PG, 0);
	ubdma_map_t *m;
	struct cbrec r = { 0 };
	uint64_t iova = ubdma_vtoiova(f->ctx, b.p);

	assert_int_equal(ubdma_map_create(t, 0, &m), 0);
	assert_int_equal(ubdma_map_load(t, m, b.p + 1000, 2 * PG, rec_cb, &r, 0), 0);
	assert_int_equal(r.nseg, 2);
	assert_true(is_bounce(t, r.segs[0].ds_addr));
	assert_int_equal(r.segs[0].ds_addr & 511, 0);
	assert_int_equal(r.segs[0].ds_len, PG - 1000);
	assert_int_equal(r.segs[1].ds_addr, iova + PG);
	assert_int_equal(r.segs[1].ds_len, PG + 1000);
	ubdma_map_unload(t, m);
	/* aligned start: nothing bounces */
	memset(&r, 0, sizeof(r));
	assert_int_equal(ubdma_map_load(t, m, b.p + 512, 2 * PG, rec_cb, &r, 0), 0);
	assert_int_equal(r.nseg, 1);
	assert_int_equal(r.segs[0].ds_addr, iova + 512);
	ubdma_map_unload(t, m);
	assert_int_equal(ubdma_map_destroy(t, m), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	rbuf_put(&b);
}

/* STRICT bounces the partial first and last pages only. */
static void t_strict(void **state)
{
	struct fx *f = FX_GET(state, 1);
	struct rbuf b;
	rbuf_get(f, &b, 4 * PG, 0);
	ubdma_tag_t *t = mktag(f, 1, 0, MAX, MAX, 4 * PG, 8, 4 * PG, UBDMA_STRICT);
	ubdma_map_t *m;
	struct cbrec r = { 0 };

	assert_int_equal(ubdma_map_create(t, 0, &m), 0);
	assert_int_equal(ubdma_map_load(t, m, b.p + 8, 3 * PG - 16, rec_cb, &r, 0), 0);
	assert_int_equal(r.nseg, 3);
	assert_true(is_bounce(t, r.segs[0].ds_addr));
	assert_int_equal(r.segs[1].ds_addr, ubdma_vtoiova(f->ctx, b.p + PG));
	assert_true(is_bounce(t, r.segs[2].ds_addr));
	ubdma_map_unload(t, m);
	assert_int_equal(ubdma_map_destroy(t, m), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	rbuf_put(&b);
}

/* load_iov: pieces coalesce when their IOVAs touch; argument errors are EINVAL without callback. */
static void t_iov_and_einval(void **state)
{
	struct fx *f = FX_GET(state, 1);
	struct rbuf b;
	rbuf_get(f, &b, 32 * PG, 0);
	ubdma_tag_t *t = mktag(f, 1, 0, MAX, MAX, 32 * PG, 32, 32 * PG, 0);
	ubdma_map_t *m, *other;
	struct cbrec r = { 0 };
	struct iovec iov[16];

	for (int i = 0; i < 16; i++)
		iov[i] = (struct iovec){ b.p + (size_t)i * 2 * PG, i % 2 ? 2 * PG : PG };
	assert_int_equal(ubdma_map_create(t, 0, &m), 0);
	assert_int_equal(ubdma_map_load_iov(t, m, iov, 16, rec_cb, &r, 0), 0);
	/* odd pieces end where the next even piece starts: pairs (1,2), (3,4)... merge */
	int expect = 0;
	uint64_t end = 0;
	for (int i = 0; i < 16; i++) {
		uint64_t a = ubdma_vtoiova(f->ctx, iov[i].iov_base);
		if (i == 0 || a != end)
			expect++;
		end = a + iov[i].iov_len;
	}
	assert_int_equal(r.nseg, expect);
	check_segs(t, r.segs, r.nseg);
	/* loading a loaded map, too long a buffer, unknown flags, foreign map: EINVAL, no callback */
	r.calls = 0;
	assert_int_equal(ubdma_map_load(t, m, b.p, PG, rec_cb, &r, 0), EINVAL);
	ubdma_map_unload(t, m);
	assert_int_equal(ubdma_map_load(t, m, b.p, 32 * PG + 1, rec_cb, &r, 0), EINVAL);
	assert_int_equal(ubdma_map_load(t, m, b.p, PG, rec_cb, &r, 0x40), EINVAL);
	assert_int_equal(ubdma_map_load(t, m, b.p, PG, NULL, &r, 0), EINVAL);
	assert_int_equal(ubdma_map_create(ubdma_ctx_tag(f->ctx), 0, &other), 0);
	assert_int_equal(ubdma_map_load(t, other, b.p, PG, rec_cb, &r, 0), EINVAL);
	assert_int_equal(ubdma_map_load_iov(t, m, NULL, 2, rec_cb, &r, 0), EINVAL);
	assert_int_equal(r.calls, 0);
	assert_int_equal(ubdma_map_destroy(ubdma_ctx_tag(f->ctx), other), 0);
	/* a loaded map cannot be destroyed */
	assert_int_equal(ubdma_map_load(t, m, b.p, PG, rec_cb, &r, 0), 0);
	assert_int_equal(ubdma_map_destroy(t, m), EBUSY);
	ubdma_map_unload(t, m);
	/* zero length: no segment, no error */
	memset(&r, 0, sizeof(r));
	assert_int_equal(ubdma_map_load(t, m, b.p, 0, rec_cb, &r, 0), 0);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.nseg, 0);
	ubdma_map_unload(t, m);
	assert_int_equal(ubdma_map_destroy(t, m), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	rbuf_put(&b);
}

/* 2 MiB backing: one translation run gives long segments. */
static void t_hugepage_runs(void **state)
{
	struct fx *f = FX_GET(state, 1);
	struct rbuf b;
	rbuf_get(f, &b, HUGE, 1);
	ubdma_tag_t *t = mktag(f, 1, 0, MAX, MAX, HUGE, 4, HUGE, 0);
	ubdma_map_t *m;
	struct cbrec r = { 0 };

	assert_int_equal(ubdma_map_create(t, 0, &m), 0);
	assert_int_equal(ubdma_map_load(t, m, b.p + 4096, HUGE - 8192, rec_cb, &r, 0), 0);
	assert_int_equal(r.nseg, 1);
	assert_int_equal(r.segs[0].ds_addr, ubdma_vtoiova(f->ctx, b.p) + 4096);
	assert_int_equal(r.segs[0].ds_len, HUGE - 8192);
	ubdma_map_unload(t, m);
	assert_int_equal(ubdma_map_destroy(t, m), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	rbuf_put(&b);
}

/* A refused load: EINVAL, no callback, the map still unloaded, no bounce page held, no segment. */
#define ASSERT_REFUSED(call, t, m, r, why)                                                                  \
	do {                                                                                                \
		(r).calls = 0;                                                                              \
		assert_int_equal((call), EINVAL);                                                           \
		assert_int_equal((r).calls, 0);                                                             \
		assert_int_equal((m)->state, MAP_IDLE);                                                     \
		assert_int_equal((m)->nseg, 0);                                                             \
		assert_int_equal(pool_inuse_of(t), 0);                                                      \
		if (!strstr(ubdma_last_error(), (why)))                                                     \
			fail_msg("last error \"%s\" does not say \"%s\"", ubdma_last_error(), (why));       \
	} while (0)

/*
 * Ranges that wrap past 2^64, or end exactly there, are EINVAL for every variant: the builder
 * would walk none of their bytes and report success with zero segments.
 */
static void t_wrap_refused(void **state)
{
	struct fx *f = FX_GET(state, 1);
	struct rbuf b;
	rbuf_get(f, &b, 4 * PG, 0);
	ubdma_tag_t *t = mktag(f, 1, 0, MAX, MAX, 4 * PG, 8, 4 * PG, 0);
	ubdma_map_t *m;
	struct cbrec r = { 0 };
	ubdma_seg_t segs[8];
	int n = -1;
	/* the last page of the address space: never mapped, so nothing can be loaded there */
	char *top = (char *)(uintptr_t)(UINTPTR_MAX - PG + 1);

	assert_int_equal(ubdma_map_create(t, 0, &m), 0);
	ASSERT_REFUSED(ubdma_map_load(t, m, top, 2 * PG, rec_cb, &r, 0), t, m, r, "wraps");
	ASSERT_REFUSED(ubdma_map_load(t, m, top, PG, rec_cb, &r, UBDMA_NOWAIT), t, m, r, "wraps");
	ASSERT_REFUSED(ubdma_map_load(t, m, top + PG - 1, 1, rec_cb, &r, 0), t, m, r, "wraps");
	ASSERT_REFUSED(ubdma_map_load_sg(t, m, top, 2 * PG, segs, &n, 0), t, m, r, "wraps");
	assert_int_equal(n, 0);
	n = -1;
	ASSERT_REFUSED(ubdma_map_load_sg(t, m, top, PG, segs, &n, 0), t, m, r, "wraps");
	assert_int_equal(n, 0);
	/* in a scatter list: a good piece first must not be loaded alone */
	struct iovec iov[3] = { { b.p, PG }, { top, 2 * PG }, { b.p + PG, PG } };
	ASSERT_REFUSED(ubdma_map_load_iov(t, m, iov, 3, rec_cb, &r, 0), t, m, r, "piece 1 ");
	iov[1] = (struct iovec){ top + PG - 1, 1 };
	ASSERT_REFUSED(ubdma_map_load_iov(t, m, iov, 3, rec_cb, &r, 0), t, m, r, "wraps");
	/* the map is as good as new */
	memset(&r, 0, sizeof(r));
	iov[1] = (struct iovec){ b.p + 2 * PG, PG };
	assert_int_equal(ubdma_map_load_iov(t, m, iov, 3, rec_cb, &r, 0), 0);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.error, 0);
	assert_true(r.nseg >= 1);
	ubdma_map_unload(t, m);
	assert_int_equal(ubdma_map_destroy(t, m), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	rbuf_put(&b);
}

/*
 * A NULL buffer with bytes is EINVAL (it would bounce, and the first sync would copy from address
 * 0); so are a NULL list with pieces and a negative count.
 */
static void t_null_refused(void **state)
{
	struct fx *f = FX_GET(state, 1);
	struct rbuf b;
	rbuf_get(f, &b, 4 * PG, 0);
	ubdma_tag_t *t = mktag(f, 1, 0, MAX, MAX, 4 * PG, 8, 4 * PG, 0);
	ubdma_map_t *m;
	struct cbrec r = { 0 };
	ubdma_seg_t segs[8];
	int n = -1;

	assert_int_equal(ubdma_map_create(t, 0, &m), 0);
	ASSERT_REFUSED(ubdma_map_load(t, m, NULL, PG, rec_cb, &r, UBDMA_NOWAIT), t, m, r, "NULL");
	ASSERT_REFUSED(ubdma_map_load(t, m, NULL, 1, rec_cb, &r, 0), t, m, r, "NULL");
	ASSERT_REFUSED(ubdma_map_load_sg(t, m, NULL, PG, segs, &n, 0), t, m, r, "NULL");
	assert_int_equal(n, 0);
	struct iovec iov[2] = { { b.p, PG }, { NULL, PG } };
	ASSERT_REFUSED(ubdma_map_load_iov(t, m, iov, 2, rec_cb, &r, UBDMA_NOWAIT), t, m, r, "piece 1 is NULL");
	ASSERT_REFUSED(ubdma_map_load_iov(t, m, NULL, 1, rec_cb, &r, 0), t, m, r, "scatter list");
	ASSERT_REFUSED(ubdma_map_load_iov(t, m, iov, -1, rec_cb, &r, 0), t, m, r, "scatter list");
	ASSERT_REFUSED(ubdma_map_load_iov(t, m, iov, INT32_MIN, rec_cb, &r, 0), t, m, r, "scatter list");
	/* the map is as good as new */
	memset(&r, 0, sizeof(r));
	assert_int_equal(ubdma_map_load(t, m, b.p, PG, rec_cb, &r, 0), 0);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.nseg, 1);
	ubdma_map_unload(t, m);
	assert_int_equal(ubdma_map_destroy(t, m), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	rbuf_put(&b);
}

/* Load an empty range and check what bus_dmamap_load(9) gives: callback with no segment, error 0. */
static void empty_ok(ubdma_tag_t *t, ubdma_map_t *m, int ret)
{
	assert_int_equal(ret, 0);
	/* a load that succeeded, like any other: the map is loaded until it is unloaded */
	assert_int_equal(m->state, MAP_LOADED);
	assert_int_equal(m->nseg, 0);
	assert_int_equal(pool_inuse_of(t), 0);
	assert_int_equal(ubdma_map_destroy(t, m), EBUSY);
	ubdma_map_sync(t, m, UBDMA_SYNC_PREWRITE);
	ubdma_map_sync(t, m, UBDMA_SYNC_POSTREAD);
	ubdma_map_unload(t, m);
	assert_int_equal(m->state, MAP_IDLE);
}

/*
 * Empty loads succeed with zero segments wherever the empty range points (NULL, the top of the
 * address space): the callback runs with nseg 0 and error 0, load_sg gives *nsegs 0, and the map
 * must be unloaded as after any load.  Empty pieces of a list are skipped whatever their base.
 */
static void t_empty_loads(void **state)
{
	struct fx *f = FX_GET(state, 1);
	struct rbuf b;
	rbuf_get(f, &b, 4 * PG, 0);
	ubdma_tag_t *t = mktag(f, 1, 0, MAX, MAX, 4 * PG, 8, 4 * PG, 0);
	ubdma_map_t *m;
	ubdma_seg_t segs[8];
	char *top = (char *)(uintptr_t)(UINTPTR_MAX - PG + 1);
	void *bases[] = { b.p, NULL, top, top + PG - 1 };

	assert_int_equal(ubdma_map_create(t, 0, &m), 0);
	for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
		struct cbrec r = { .nseg = -1, .error = -1 };
		int n = -1;

		empty_ok(t, m, ubdma_map_load(t, m, bases[i], 0, rec_cb, &r, 0));
		assert_int_equal(r.calls, 1);
		assert_int_equal(r.nseg, 0);
		assert_int_equal(r.error, 0);
		empty_ok(t, m, ubdma_map_load_sg(t, m, bases[i], 0, segs, &n, 0));
		assert_int_equal(n, 0);
		struct iovec iov[2] = { { bases[i], 0 }, { b.p, 0 } };
		memset(&r, 0, sizeof(r));
		r.nseg = r.error = -1;
		empty_ok(t, m, ubdma_map_load_iov(t, m, iov, 2, rec_cb, &r, UBDMA_NOWAIT));
		assert_int_equal(r.calls, 1);
		assert_int_equal(r.nseg, 0);
		assert_int_equal(r.error, 0);
		/* an empty piece beside a real one adds nothing */
		iov[1].iov_len = PG;
		memset(&r, 0, sizeof(r));
		assert_int_equal(ubdma_map_load_iov(t, m, iov, 2, rec_cb, &r, 0), 0);
		assert_int_equal(r.nseg, 1);
		assert_int_equal(r.segs[0].ds_addr, ubdma_vtoiova(f->ctx, b.p));
		assert_int_equal(r.segs[0].ds_len, PG);
		ubdma_map_unload(t, m);
	}
	/* no list at all */
	struct cbrec r = { .nseg = -1, .error = -1 };
	empty_ok(t, m, ubdma_map_load_iov(t, m, NULL, 0, rec_cb, &r, 0));
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.nseg, 0);
	assert_int_equal(r.error, 0);
	assert_int_equal(ubdma_map_destroy(t, m), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	rbuf_put(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		BACKEND_TESTS(t_follow_iovas),
		BACKEND_TESTS(t_limits),
		BACKEND_TESTS(t_efbig),
		BACKEND_TESTS(t_unregistered_bounces),
		BACKEND_TESTS(t_window),
		BACKEND_TESTS(t_alignment),
		BACKEND_TESTS(t_strict),
		BACKEND_TESTS(t_iov_and_einval),
		BACKEND_TESTS(t_hugepage_runs),
		BACKEND_TESTS(t_wrap_refused),
		BACKEND_TESTS(t_null_refused),
		BACKEND_TESTS(t_empty_loads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
