/*
 * test_sync.c - ubdma_map_sync(): PREWRITE copies to the bounce pages, POSTREAD copies back,
 * PREREAD and POSTWRITE copy nothing, PRE|POST mixed is refused with nothing copied, and unload
 * does no implicit sync; UBDMA_KEEP_PG_OFFSET keeps a bounced piece's page offset.  (IOVA = VA on va; on phys the bounce page is read through its own VA.)
 */
#include "helpers.h"

#define MAX UBDMA_MAXADDR

/* The CPU view of a bounce segment: the slot whose IOVA it is. */
static char *slot_va(const ubdma_tag_t *t, uint64_t iova)
{
	for (const struct backing *b = t->pool->mem; b; b = b->next)
		for (size_t off = 0; off < b->len; off += PG) {
			uint64_t lo = ubdma_umem_iova(b->cookie, (char *)b->va + off);
			if (iova >= lo && iova < lo + PG)
				return (char *)b->va + off + (iova - lo);
		}
	fail();
	return NULL;
}

static void t_sync_copies(void **state)
{
	struct fx *f = FX_GET(state, (f_->backend == UBDMA_BACKEND_PHYS) * 1);
	char *u = mem_get(4 * PG, 0);
	ubdma_tag_t *t;
	ubdma_map_t *m;
	struct cbrec r = { 0 };
	const size_t off = 123, len = 2 * PG + 77;

	assert_int_equal(ubdma_tag_create(ubdma_ctx_tag(f->ctx), 1, 0, MAX, MAX, 4 * PG, 8, 4 * PG, 0, &t), 0);
	assert_int_equal(ubdma_map_create(t, 0, &m), 0);
	for (size_t i = 0; i < 4 * PG; i++)
		u[i] = (char)(i * 7 + 1);
	assert_int_equal(ubdma_map_load(t, m, u + off, len, rec_cb, &r, 0), 0);
	assert_int_equal(r.nseg, 3);

	/* PREREAD copies nothing */
	ubdma_map_sync(t, m, UBDMA_SYNC_PREREAD);
	for (int s = 0; s < r.nseg; s++)
		for (size_t i = 0; i < r.segs[s].ds_len; i++)
			assert_int_equal(slot_va(t, r.segs[s].ds_addr)[i], 0);
	/* mixed PRE and POST: refused, nothing copied */
	ubdma_map_sync(t, m, UBDMA_SYNC_PREWRITE | UBDMA_SYNC_POSTREAD);
	assert_non_null(strstr(ubdma_last_error(), "mixed"));
	assert_int_equal(slot_va(t, r.segs[0].ds_addr)[0], 0);
	/* PREWRITE: client -> bounce, piece by piece */
	ubdma_map_sync(t, m, UBDMA_SYNC_PREWRITE);
	size_t pos = off;
	for (int s = 0; s < r.nseg; s++) {
		assert_memory_equal(slot_va(t, r.segs[s].ds_addr), u + pos, r.segs[s].ds_len);
		pos += r.segs[s].ds_len;
	}
	/* the "device" writes the bounce pages; POSTWRITE copies nothing, POSTREAD copies back */
	for (int s = 0; s < r.nseg; s++)
		memset(slot_va(t, r.segs[s].ds_addr), 0x5a + s, r.segs[s].ds_len);
	ubdma_map_sync(t, m, UBDMA_SYNC_POSTWRITE);
	assert_int_equal(u[off], (char)(off * 7 + 1));
	ubdma_map_sync(t, m, UBDMA_SYNC_POSTREAD);
	pos = off;
	for (int s = 0; s < r.nseg; s++)
		for (size_t i = 0; i < r.segs[s].ds_len; i++)
			assert_int_equal(u[pos++], (char)(0x5a + s));
	/* bytes around the buffer are untouched */
	assert_int_equal(u[off - 1], (char)((off - 1) * 7 + 1));
	assert_int_equal(u[off + len], (char)((off + len) * 7 + 1));
	/* unload does no implicit sync */
	memset(slot_va(t, r.segs[0].ds_addr), 0x11, r.segs[0].ds_len);
	ubdma_map_unload(t, m);
	assert_int_equal(u[off], (char)0x5a);
	assert_int_equal(ubdma_map_destroy(t, m), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	munmap(u, 4 * PG);
}

/* Without bounce pages a sync copies nothing and the buffer is used in place. */
static void t_sync_in_place(void **state)
{
	struct fx *f = FX_GET(state, (f_->backend == UBDMA_BACKEND_PHYS) * 1);
	struct rbuf b;
	rbuf_get(f, &b, 2 * PG, 0);
	ubdma_tag_t *t;
	ubdma_map_t *m;
	struct cbrec r = { 0 };

	assert_int_equal(ubdma_tag_create(ubdma_ctx_tag(f->ctx), 1, 0, MAX, MAX, 2 * PG, 8, 2 * PG, 0, &t), 0);
	assert_int_equal(ubdma_map_create(t, 0, &m), 0);
	assert_int_equal(ubdma_map_load(t, m, b.p, 2 * PG, rec_cb, &r, 0), 0);
	assert_null(m->bpages);
	ubdma_map_sync(t, m, UBDMA_SYNC_PREREAD | UBDMA_SYNC_PREWRITE);
	ubdma_map_sync(t, m, UBDMA_SYNC_POSTREAD | UBDMA_SYNC_POSTWRITE);
	assert_int_equal(r.segs[0].ds_addr, ubdma_vtoiova(f->ctx, b.p));
	ubdma_map_unload(t, m);
	assert_int_equal(ubdma_map_destroy(t, m), 0);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	rbuf_put(&b);
}

/*
 * UBDMA_KEEP_PG_OFFSET (FreeBSD's BUS_DMA_KEEP_PG_OFFSET): a bounced piece sits at the same offset
 * in its 4 KiB bounce page as in the client's page, so with a one-page boundary and maxsegsz a
 * load is a PRP-shaped list (NVMe 1.4, 4.3): the first segment keeps the buffer's offset, every
 * later one starts a page, every one but the last ends one.  Without the flag the first piece
 * starts its slot.  Data still round-trips through sync.
 */
static void t_keep_pg_offset(void **state)
{
	struct fx *f = FX_GET(state, (f_->backend == UBDMA_BACKEND_PHYS) * 1);
	char *u = mem_get(4 * PG, 0);
	const size_t off = 0x234, len = 2 * PG + 100;
	struct cbrec r = { 0 };
	ubdma_map_t *m;

	for (int keep = 0; keep <= 1; keep++) {
		ubdma_tag_t *t;
		assert_int_equal(ubdma_tag_create(ubdma_ctx_tag(f->ctx), 4, PG, MAX, MAX, 4 * PG, 8, PG,
						  keep ? UBDMA_KEEP_PG_OFFSET : 0, &t), 0);
		assert_int_equal(ubdma_map_create(t, 0, &m), 0);
		for (size_t i = 0; i < 4 * PG; i++)
			u[i] = (char)(i * 13 + keep);
		memset(&r, 0, sizeof(r));
		assert_int_equal(ubdma_map_load(t, m, u + off, len, rec_cb, &r, 0), 0);
		check_segs(t, r.segs, r.nseg);
		size_t total = 0;
		for (int s = 0; s < r.nseg; s++) {
			assert_true(is_bounce(t, r.segs[s].ds_addr));
			total += r.segs[s].ds_len;
		}
		assert_int_equal(total, len);
		if (keep) {
			/* PRP shape: 3 pieces, offset kept, then page starts, all but the last end a page */
			assert_int_equal(r.nseg, 3);
			assert_int_equal(r.segs[0].ds_addr & (PG - 1), off);
			for (int s = 1; s < r.nseg; s++)
				assert_int_equal(r.segs[s].ds_addr & (PG - 1), 0);
			for (int s = 0; s + 1 < r.nseg; s++)
				assert_int_equal((r.segs[s].ds_addr + r.segs[s].ds_len) & (PG - 1), 0);
			assert_int_equal(r.segs[0].ds_len, PG - off);
		} else {
			assert_int_equal(r.segs[0].ds_addr & (PG - 1), 0);
		}
		ubdma_map_sync(t, m, UBDMA_SYNC_PREWRITE);
		size_t pos = off;
		for (int s = 0; s < r.nseg; s++) {
			assert_memory_equal(slot_va(t, r.segs[s].ds_addr), u + pos, r.segs[s].ds_len);
			pos += r.segs[s].ds_len;
		}
		ubdma_map_unload(t, m);
		assert_int_equal(ubdma_map_destroy(t, m), 0);
		assert_int_equal(ubdma_tag_destroy(t), 0);
	}
	munmap(u, 4 * PG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		BACKEND_TESTS(t_keep_pg_offset),
		BACKEND_TESTS(t_sync_copies),
		BACKEND_TESTS(t_sync_in_place),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
