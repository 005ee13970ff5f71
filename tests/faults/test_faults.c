/*
 * test_faults.c - all or nothing under injected faults (issue 10).
 *
 * For every scenario (a public call, or a multi-step path: umem lock over several mappings,
 * overlapping cookies, tag create with ALLOCNOW, loads that bounce, mem_alloc, reg_get that merges,
 * unlock, ctx close with everything live) and every backend the host can run (va; vfio on the fake
 * container of fault.c, attached; phys on hugetlb memory), the walk makes the N-th allocation,
 * mmap, mlock, madvise, ioctl, pread or open fail, for N = 1, 2, 3 ... until the scenario runs
 * without reaching an N-th call.  After each injected failure:
 *   - a call that returns an error returned a positive errno, and left nothing behind: its pages
 *     are not wired (ubdma_wire_count, VmLck), not translated (UBDMA_BAD_IOVA), not mapped in the
 *     IOMMU (the fake container's mapping count), and what existed before is intact;
 *   - the same call, made again without a fault, works;
 *   - a void call (unlock, unload, free, close) still undid everything it owns;
 *   - after the context is closed, the books are back where they started: heap blocks, mapped
 *     bytes, VmLck, IOMMU mappings (and LSan checks the heap once more at exit in ASan builds).
 * The last line gives the number of injected faults survived (UBDMA_FAULTS_SUMMARY).
 * UBDMA_FAULTS_ONLY=name,name... walks only those scenarios (to narrow a failure down to one);
 * a name that is no scenario is an error.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include <ubdma/ubdma.h>

#include "fault.h"
#include "busdma/busdma_int.h" /* the cookie behind DMA memory */
#include "core/ctx.h" /* iommu_attach(): the fake container gets a group */

#define PG 4096UL
#define HP (2UL << 20)
#define NPG 12 /* pages of the test buffer: three mappings of 4 */

static long total_faults, total_absorbed, total_walks;

#define FAILF(...)                                                  \
	do {                                                        \
		print_error(__VA_ARGS__);                           \
		print_error("\n");                                  \
		fail();                                             \
	} while (0)
#define CHECKF(cond, ...)                                           \
	do {                                                        \
		if (!(cond)) {                                      \
			print_error("%s: ", #cond);                 \
			FAILF(__VA_ARGS__);                         \
		}                                                   \
	} while (0)

/* ------------------------------------------------------------ environment */

struct env {
	enum ubdma_backend be;
	int fake;		 /* vfio on the fake container */
	int huge;		 /* the buffer is 2 MiB hugetlb */
	int fired;		 /* a fault was injected in the op (a fallback may have absorbed it) */
	ubdma_ctx_t *ctx, *ctx2;
	void *grp;		 /* the fake group, attached as ubdma_pci_open() would */
	char *buf;		 /* NPG pages (or 2 hugepages), three mappings when 4 KiB */
	size_t len;
	ubdma_umem_t *u, *u2;
	uint64_t iova_u[NPG];	 /* translations of u's pages, to check they survive */
	long vmlck_mid;		 /* VmLck with only the first cookie */
	ubdma_tag_t *tag;
	ubdma_map_t *map;
	void *mem;
	ubdma_map_t *mmap_;
	ubdma_reg_t *reg;
	int cb_err, cb_nseg;
	ubdma_seg_t cb_segs[64];
	/* numbers taken before the op */
	long pre_vmlck, pre_nmaps;
};

struct scenario {
	const char *name;
	int is_void;		 /* op cannot report failure */
	int (*setup)(struct env *);
	int (*op)(struct env *);
	void (*after_fail)(struct env *);  /* extra checks after a failed op (returning) */
	void (*verify)(struct env *);	   /* after success (or after a void op) */
	void (*undo)(struct env *);	   /* undo a successful op */
	void (*teardown)(struct env *);
};

static char *map_buf(struct env *e)
{
	if (e->huge) {
		e->len = 2 * HP;
		char *p = mmap(NULL, e->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
		return p == MAP_FAILED ? NULL : p;
	}
	e->len = NPG * PG;
	char *p = mmap(NULL, e->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	/* three mappings: a read-only-then-writable middle makes the kernel keep them apart */
	madvise(p + 4 * PG, 4 * PG, MADV_DONTDUMP);
	madvise(p + 8 * PG, 4 * PG, MADV_HUGEPAGE);
	for (size_t i = 0; i < e->len; i++)
		p[i] = (char)(i * 7 + 1);
	return p;
}

static void check_not_registered(struct env *e, const char *p, size_t len, const char *what)
{
	for (size_t off = 0; off < len; off += PG)
		CHECKF(ubdma_vtoiova(e->ctx, p + off) == UBDMA_BAD_IOVA, "%s: page %zu still translates", what,
		       off / PG);
}

static void check_unwired(const char *p, size_t len, const char *what)
{
	for (size_t off = 0; off < len; off += PG)
		CHECKF(ubdma_wire_count(p + off) == 0, "%s: page %zu still wired (%u)", what, off / PG,
		       ubdma_wire_count(p + off));
}

/* The default after-failure rule: nothing of the buffer wired, translated or mapped. */
static void nothing_left(struct env *e)
{
	check_not_registered(e, e->buf, e->len, "failed call");
	check_unwired(e->buf, e->len, "failed call");
	CHECKF(fault_vmlck_kb() == e->pre_vmlck, "VmLck %ld kB, was %ld", fault_vmlck_kb(), e->pre_vmlck);
	CHECKF(fault_vfio_nmaps() == e->pre_nmaps, "IOMMU mappings %ld, were %ld", fault_vfio_nmaps(), e->pre_nmaps);
}

/* ------------------------------------------------------------ scenarios */

static int setup_buf(struct env *e)
{
	return (e->buf = map_buf(e)) ? 0 : ENOMEM;
}

static void teardown_buf(struct env *e)
{
	if (e->buf)
		munmap(e->buf, e->len);
}

/* ctx_open */
static int op_ctx_open(struct env *e)
{
	return ubdma_ctx_open(e->be, &e->ctx2);
}
static void fail_ctx_open(struct env *e)
{
	CHECKF(e->ctx2 == NULL, "ctx set on failure");
}
static void undo_ctx_open(struct env *e)
{
	ubdma_ctx_close(e->ctx2);
	e->ctx2 = NULL;
}

/* wire / unwire over three mappings, WRITE intent */
static int op_wire(struct env *e)
{
	return ubdma_wire(e->buf + 100, e->len - 200, UBDMA_WIRE_WRITE);
}
static void verify_wired(struct env *e)
{
	for (size_t off = 0; off < e->len; off += PG)
		CHECKF(ubdma_wire_count(e->buf + off) == 1, "page %zu count %u", off / PG, ubdma_wire_count(e->buf + off));
}
static void undo_wire(struct env *e)
{
	CHECKF(ubdma_unwire(e->buf + 100, e->len - 200, UBDMA_WIRE_WRITE) == 0, "unwire");
}
static int setup_wired(struct env *e)
{
	int err = setup_buf(e);
	return err ? err : op_wire(e);
}
static int op_unwire(struct env *e)
{
	return ubdma_unwire(e->buf + 100, e->len - 200, 0);
}
static void fail_unwire(struct env *e)
{
	verify_wired(e); /* on failure no count changed */
	CHECKF(fault_vmlck_kb() == e->pre_vmlck, "VmLck %ld, was %ld", fault_vmlck_kb(), e->pre_vmlck);
}
static void verify_unwired(struct env *e)
{
	check_unwired(e->buf, e->len, "unwire");
}
static void undo_unwire(struct env *e)
{
	CHECKF(op_wire(e) == 0, "rewire");
}
static void teardown_wired(struct env *e)
{
	ubdma_unwire(e->buf, e->len, UBDMA_WIRE_HOLESOK);
	teardown_buf(e);
}

/* Whether a cookie of e's buffer is only watched: the backend pins (the fake container with its
 * group) and the memory is 4 KiB pages (docs/wire.md section 13). */
static int watch_only(struct env *e)
{
	return !e->huge && iommu_pins(&e->ctx->iommu);
}

/* Whether the mapping that holds p stays out of a fork(2) child (VM_DONTCOPY, "dc" in smaps' VmFlags). */
static int dont_copy(const void *p)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	int in = 0, dc = 0;
	unsigned long s, t;

	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &s, &t) == 2)
			in = s <= (uintptr_t)p && (uintptr_t)p < t;
		else if (in && !strncmp(line, "VmFlags:", 8))
			dc = strstr(line, " dc") != NULL;
	}
	if (f)
		fclose(f);
	return dc;
}

/*
 * A cookie's pages: watched and not wired where watch_only(), or where the backend pins and the
 * cookie lies on its huge pages' bounds (docs/wire.md section 13, "Hugetlb cookies watched"),
 * wired otherwise, or wired all the same when a fault in the watch was absorbed by the fallback
 * to the full wiring.
 */
static void check_cookie_pages(struct env *e, const struct ubdma_umem *u, const void *p, const char *what)
{
	unsigned c = ubdma_wire_count(p);
	int watched = c == 0 && wire_ticket_watched(u->ticket) && wire_ticket_alive(u->ticket);
	int huge_watched = e->huge && iommu_pins(&e->ctx->iommu) && !((u->start | u->end) & (HP - 1));

	if (!watch_only(e) && !huge_watched)
		CHECKF(c >= 1, "%s: not wired", what);
	else if (!e->fired)
		CHECKF(watched, "%s: wired (count %u) or not watched where the backend pins", what, c);
	else
		CHECKF(watched || c >= 1, "%s: neither watched nor wired after an absorbed fault", what);
	/* hugetlb, watched or wired, stays out of a fork child (docs/wire.md sections 5 and 13) */
	if (e->huge)
		CHECKF(dont_copy(p), "%s: a hugetlb cookie's page would be in a fork child", what);
}

/* umem_lock of the whole buffer (several mappings or hugepages) */
static int op_lock(struct env *e)
{
	return ubdma_umem_lock(e->ctx, e->buf, e->len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &e->u);
}
static void fail_lock(struct env *e)
{
	CHECKF(e->u == NULL, "cookie set on failure");
	nothing_left(e);
}
static void verify_lock(struct env *e)
{
	for (size_t off = 0; off < e->len; off += PG) {
		uint64_t a = ubdma_vtoiova(e->ctx, e->buf + off);
		CHECKF(a != UBDMA_BAD_IOVA && a == ubdma_umem_iova(e->u, e->buf + off), "page %zu: %#llx", off / PG,
		       (unsigned long long)a);
		/* where the backend pins (the fake container with its group), 4 KiB memory is
		 * watched, not wired (docs/wire.md section 13): no count, a ticket the monitor ends */
		check_cookie_pages(e, e->u, e->buf + off, "a locked page");
	}
	if (e->be == UBDMA_BACKEND_VFIO)
		CHECKF(fault_vfio_nmaps() > e->pre_nmaps, "no IOMMU mapping made");
}
static void undo_lock(struct env *e)
{
	ubdma_umem_unlock(e->u);
	e->u = NULL;
}

/* a second cookie overlapping the first: the first's translations must survive a failure */
static int setup_first(struct env *e)
{
	int err = setup_buf(e);
	if (err)
		return err;
	err = ubdma_umem_lock(e->ctx, e->buf, 8 * PG, UBDMA_UMEM_READ, &e->u2);
	for (int i = 0; i < 8 && !err; i++)
		e->iova_u[i] = ubdma_vtoiova(e->ctx, e->buf + i * PG);
	e->vmlck_mid = fault_vmlck_kb();
	return err;
}
static int op_lock_over(struct env *e)
{
	return ubdma_umem_lock(e->ctx, e->buf + 4 * PG, 8 * PG, UBDMA_UMEM_WRITE, &e->u);
}
static void first_intact(struct env *e, int from, int to)
{
	for (int i = from; i < to; i++)
		CHECKF(ubdma_vtoiova(e->ctx, e->buf + i * PG) == e->iova_u[i], "page %d of the first cookie now %#llx", i,
		       (unsigned long long)ubdma_vtoiova(e->ctx, e->buf + i * PG));
}
static void fail_lock_over(struct env *e)
{
	CHECKF(e->u == NULL, "cookie set on failure");
	first_intact(e, 0, 8);
	check_not_registered(e, e->buf + 8 * PG, 4 * PG, "failed overlapping lock");
	check_unwired(e->buf + 8 * PG, 4 * PG, "failed overlapping lock");
	for (int i = 4; i < 8; i++)
		CHECKF(ubdma_wire_count(e->buf + i * PG) == (watch_only(e) ? 0u : 1u), "shared page %d count %u", i,
		       ubdma_wire_count(e->buf + i * PG)); /* the first cookie's: no fault was armed then */
	CHECKF(fault_vmlck_kb() == e->pre_vmlck, "VmLck %ld, was %ld", fault_vmlck_kb(), e->pre_vmlck);
	CHECKF(fault_vfio_nmaps() == e->pre_nmaps, "IOMMU mappings %ld, were %ld", fault_vfio_nmaps(), e->pre_nmaps);
}
static void verify_lock_over(struct env *e)
{
	first_intact(e, 0, 4); /* pages 0-3 keep the first cookie */
	for (int i = 4; i < 12; i++) {
		uint64_t a = ubdma_vtoiova(e->ctx, e->buf + i * PG);
		CHECKF(a == ubdma_umem_iova(e->u, e->buf + i * PG), "page %d shows %#llx, not the WRITE cookie", i,
		       (unsigned long long)a);
	}
}
static void teardown_cookies(struct env *e)
{
	ubdma_umem_unlock(e->u);
	ubdma_umem_unlock(e->u2);
	e->u = e->u2 = NULL;
	teardown_buf(e);
}

/* unlock of the overlapping cookie (void): the first comes back whole */
static int setup_two(struct env *e)
{
	int err = setup_first(e);
	return err ? err : op_lock_over(e);
}
static int op_unlock(struct env *e)
{
	ubdma_umem_unlock(e->u);
	e->u = NULL;
	return 0;
}
static void verify_unlocked(struct env *e)
{
	first_intact(e, 0, 8);
	check_not_registered(e, e->buf + 8 * PG, 4 * PG, "after unlock");
	check_unwired(e->buf + 8 * PG, 4 * PG, "after unlock");
	/* the UNMAP ioctl itself may be the call that failed: then the mapping stays (retired) until
	 * the context closes, which the final books check; a real VFIO counts its pins in VmLck */
	if (fault_hit_class() != F_IOCTL)
		CHECKF(fault_vmlck_kb() == e->vmlck_mid, "VmLck %ld kB, %ld with the first cookie only",
		       fault_vmlck_kb(), e->vmlck_mid);
	if (fault_hit_class() != F_IOCTL && e->be == UBDMA_BACKEND_VFIO)
		CHECKF(fault_vfio_nmaps() == 1, "IOMMU mappings %ld after unlock, want 1 (fault class %#x)",
		       fault_vfio_nmaps(), fault_hit_class());
}

/* tag_create with ALLOCNOW: the pool is made now, or nothing */
static int op_tag_allocnow(struct env *e)
{
	return ubdma_tag_create(ubdma_ctx_tag(e->ctx), 1, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, 8 * PG, 16, 8 * PG,
				UBDMA_ALLOCNOW, &e->tag);
}
static void fail_tag(struct env *e)
{
	CHECKF(e->tag == NULL, "tag set on failure");
	nothing_left(e);
}
static void verify_tag(struct env *e)
{
	/* where the backend pins, the pool's 4 KiB pages are watched, not wired (no VmLck of
	 * mlock's; type1 counts its pins there, iommufd per user, the fake nowhere): the pool's
	 * memory is made, locked in the context and translated */
	const struct bounce_pool *bp = e->tag->pool;
	CHECKF(bp && bp->total >= 8 && bp->mem && ubdma_vtoiova(e->ctx, bp->mem->va) != UBDMA_BAD_IOVA,
	       "ALLOCNOW made no bounce pages");
	if (!iommu_pins(&e->ctx->iommu))
		CHECKF(fault_vmlck_kb() > e->pre_vmlck, "ALLOCNOW wired no bounce pages");
}
static void undo_tag(struct env *e)
{
	CHECKF(ubdma_tag_destroy(e->tag) == 0, "tag destroy");
	e->tag = NULL;
}

/* loads that bounce: an unregistered buffer (NOWAIT, callback), a scatter list (WAITOK) */
static void cb(void *arg, ubdma_seg_t *segs, int nseg, int error)
{
	struct env *e = arg;
	e->cb_err = error;
	e->cb_nseg = nseg;
	if (nseg > 0 && nseg <= 64)
		memcpy(e->cb_segs, segs, (size_t)nseg * sizeof(*segs));
}
static int setup_tagmap(struct env *e, int flags)
{
	int err = setup_buf(e);
	if (!err)
		err = ubdma_tag_create(ubdma_ctx_tag(e->ctx), 1, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, 8 * PG, 16, 8 * PG,
				       flags, &e->tag);
	if (!err)
		err = ubdma_map_create(e->tag, 0, &e->map);
	return err;
}
static int setup_load(struct env *e)
{
	return setup_tagmap(e, 0);
}
static int op_load(struct env *e)
{
	e->cb_err = -1;
	int rc = ubdma_map_load(e->tag, e->map, e->buf + 100, 3 * PG, cb, e, UBDMA_NOWAIT);
	if (!rc && e->cb_err) /* EFBIG reaches only the callback */
		rc = e->cb_err;
	return rc;
}
static void fail_load(struct env *e)
{
	CHECKF(e->cb_err > 0, "the callback got %d", e->cb_err);
	CHECKF(ubdma_map_destroy(e->tag, e->map) == 0 && ubdma_map_create(e->tag, 0, &e->map) == 0,
	       "the map is idle after a failed load");
	check_unwired(e->buf, e->len, "failed load");
	CHECKF(fault_vfio_nmaps() == e->pre_nmaps, "IOMMU mappings %ld, were %ld", fault_vfio_nmaps(), e->pre_nmaps);
	CHECKF(fault_vmlck_kb() == e->pre_vmlck, "VmLck %ld, was %ld", fault_vmlck_kb(), e->pre_vmlck);
}
static void verify_load(struct env *e)
{
	size_t total = 0;
	CHECKF(e->cb_err == 0 && e->cb_nseg > 0, "callback %d nseg %d", e->cb_err, e->cb_nseg);
	ubdma_map_sync(e->tag, e->map, UBDMA_SYNC_PREWRITE);
	for (int i = 0; i < e->cb_nseg; i++) {
		/* on va, IOVA = VA: the device's view is readable */
		if (e->be == UBDMA_BACKEND_VA)
			CHECKF(!memcmp((void *)(uintptr_t)e->cb_segs[i].ds_addr, e->buf + 100 + total, e->cb_segs[i].ds_len),
			       "segment %d bytes differ", i);
		total += e->cb_segs[i].ds_len;
	}
	CHECKF(total == 3 * PG, "segments cover %zu bytes", total);
}
static void undo_load(struct env *e)
{
	ubdma_map_unload(e->tag, e->map);
}
static void teardown_tagmap(struct env *e)
{
	if (e->map)
		ubdma_map_destroy(e->tag, e->map);
	if (e->tag)
		ubdma_tag_destroy(e->tag);
	e->map = NULL;
	e->tag = NULL;
	teardown_buf(e);
}
static int op_load_iov(struct env *e)
{
	struct iovec v[3] = { { e->buf + 10, 100 }, { e->buf + 5 * PG + 7, PG }, { e->buf + 9 * PG, 2 * PG } };
	e->cb_err = -1;
	int rc = ubdma_map_load_iov(e->tag, e->map, v, 3, cb, e, 0);
	if (!rc && e->cb_err)
		rc = e->cb_err;
	return rc;
}
static void verify_load_iov(struct env *e)
{
	size_t total = 0;
	CHECKF(e->cb_err == 0, "callback %d", e->cb_err);
	for (int i = 0; i < e->cb_nseg; i++)
		total += e->cb_segs[i].ds_len;
	CHECKF(total == 100 + PG + 2 * PG, "segments cover %zu bytes", total);
}

/* load_sg of a partly registered buffer on a STRICT tag: the partial pages bounce */
static int setup_strict(struct env *e)
{
	int err = setup_tagmap(e, UBDMA_STRICT);
	if (!err)
		err = ubdma_umem_lock(e->ctx, e->buf, 8 * PG, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &e->u2);
	return err;
}
static int op_load_sg(struct env *e)
{
	int n = 0;
	int rc = ubdma_map_load_sg(e->tag, e->map, e->buf + 200, 6 * PG, e->cb_segs, &n, UBDMA_NOWAIT);
	e->cb_nseg = n;
	e->cb_err = rc;
	return rc;
}
static void fail_load_sg(struct env *e)
{
	CHECKF(e->cb_nseg == 0, "nsegs %d on failure", e->cb_nseg);
	CHECKF(ubdma_map_destroy(e->tag, e->map) == 0 && ubdma_map_create(e->tag, 0, &e->map) == 0,
	       "the map is idle after a failed load");
	CHECKF(fault_vfio_nmaps() == e->pre_nmaps, "IOMMU mappings %ld, were %ld", fault_vfio_nmaps(), e->pre_nmaps);
	CHECKF(fault_vmlck_kb() == e->pre_vmlck, "VmLck %ld, was %ld", fault_vmlck_kb(), e->pre_vmlck);
}
static void verify_load_sg(struct env *e)
{
	size_t total = 0;
	for (int i = 0; i < e->cb_nseg; i++) {
		uint64_t a = e->cb_segs[i].ds_addr;
		/* a segment is either whole registered pages of the buffer or a bounce slot */
		int in_place = a == ubdma_vtoiova(e->ctx, e->buf + 200 + total);
		CHECKF(!in_place || (!((200 + total) & (PG - 1)) && !(e->cb_segs[i].ds_len & (PG - 1))),
		       "STRICT: segment %d in place but not whole pages", i);
		total += e->cb_segs[i].ds_len;
	}
	CHECKF(total == 6 * PG, "segments cover %zu", total);
}
static void teardown_strict(struct env *e)
{
	ubdma_umem_unlock(e->u2);
	e->u2 = NULL;
	teardown_tagmap(e);
}

/* mem_alloc, small (4 KiB pages) and large (2 MiB hugepages where there are some) */
static int setup_tag_small(struct env *e)
{
	int err = setup_buf(e);
	return err ? err : ubdma_tag_create(ubdma_ctx_tag(e->ctx), PG, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, 5 * PG, 1,
					    5 * PG, 0, &e->tag);
}
static int setup_tag_large(struct env *e)
{
	int err = setup_buf(e);
	return err ? err : ubdma_tag_create(ubdma_ctx_tag(e->ctx), PG, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, 2 * HP, 4,
					    HP, 0, &e->tag);
}
static int op_mem_alloc(struct env *e)
{
	return ubdma_mem_alloc(e->tag, &e->mem, UBDMA_ZERO, &e->mmap_);
}
static void fail_mem_alloc(struct env *e)
{
	CHECKF(fault_vmlck_kb() == e->pre_vmlck, "VmLck %ld, was %ld", fault_vmlck_kb(), e->pre_vmlck);
	CHECKF(fault_vfio_nmaps() == e->pre_nmaps, "IOMMU mappings %ld, were %ld", fault_vfio_nmaps(), e->pre_nmaps);
}
static void verify_mem_alloc(struct env *e)
{
	CHECKF(ubdma_vtoiova(e->ctx, e->mem) != UBDMA_BAD_IOVA, "DMA memory not translated");
	const struct backing *b = &e->mmap_->mem->b;
	/* hugetlb too: on its huge pages' bounds it is watched where the backend pins (docs/wire.md
	 * section 13, "Hugetlb cookies watched"), wired elsewhere */
	check_cookie_pages(e, b->cookie, e->mem, "DMA memory");
	CHECKF(((char *)e->mem)[0] == 0, "not zeroed");
}
static void undo_mem_alloc(struct env *e)
{
	ubdma_mem_free(e->tag, e->mem, e->mmap_);
	e->mem = NULL;
}
static void teardown_tag(struct env *e)
{
	if (e->tag)
		ubdma_tag_destroy(e->tag);
	e->tag = NULL;
	teardown_buf(e);
}

#ifdef HAVE_RCACHE
/* reg_get that merges two cached registrations with a new range */
static int setup_regs(struct env *e)
{
	int err = setup_buf(e);
	ubdma_reg_t *r;

	if (!err && !(err = ubdma_reg_get(e->ctx, e->buf, 3 * PG, UBDMA_UMEM_READ, &r)))
		ubdma_reg_put(r);
	if (!err && !(err = ubdma_reg_get(e->ctx, e->buf + 7 * PG, 3 * PG, UBDMA_UMEM_READ, &r)))
		ubdma_reg_put(r);
	return err;
}
static int op_reg_merge(struct env *e)
{
	return ubdma_reg_get(e->ctx, e->buf + 2 * PG, 6 * PG, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &e->reg);
}
static void fail_reg(struct env *e)
{
	/* the gap between the cached entries was never registered; cached entries may be dropped */
	check_not_registered(e, e->buf + 3 * PG, 4 * PG, "failed reg_get");
	check_unwired(e->buf + 3 * PG, 4 * PG, "failed reg_get");
	CHECKF(fault_vmlck_kb() <= e->pre_vmlck, "VmLck %ld, was %ld", fault_vmlck_kb(), e->pre_vmlck);
	CHECKF(fault_vfio_nmaps() <= e->pre_nmaps, "IOMMU mappings %ld, were %ld", fault_vfio_nmaps(), e->pre_nmaps);
}
static void verify_reg(struct env *e)
{
	for (int i = 2; i < 8; i++) {
		uint64_t a = ubdma_reg_iova(e->reg, e->buf + i * PG);
		CHECKF(a != UBDMA_BAD_IOVA && a == ubdma_vtoiova(e->ctx, e->buf + i * PG), "page %d: reg %#llx", i,
		       (unsigned long long)a);
	}
}
static void undo_reg(struct env *e)
{
	ubdma_reg_put(e->reg);
	e->reg = NULL;
}
static void teardown_regs(struct env *e)
{
	ubdma_rcache_flush(e->ctx);
	teardown_buf(e);
}


/*
 * The same merge in a registrar's domain (issue 19): a fake registrar whose keys are heap blocks,
 * so that the walk fails its allocations too (ENOMEM from a registrar makes the cache evict and
 * try again).  All or nothing: after a failure no key more than before, nothing of the gap wired.
 */
static int fk_live;
static int fk_reg(void *arg, void *addr, size_t len, int flags, void **keyp)
{
	(void)arg, (void)addr, (void)len, (void)flags;
	if (!(*keyp = malloc(16)))
		return ENOMEM;
	fk_live++;
	return 0;
}
static int fk_dereg(void *arg, void *key)
{
	(void)arg;
	free(key);
	fk_live--;
	return 0;
}
static const struct ubdma_registrar fk_ops = { .name = "fault-fake", .reg = fk_reg, .dereg = fk_dereg };
static int setup_regs_registrar(struct env *e)
{
	int err = ubdma_rcache_set_registrar(e->ctx, &fk_ops, NULL);
	return err ? err : setup_regs(e);
}
/* the same registrar saying it pins (watch only: the walk fails wire_watch()'s allocations too) */
static const struct ubdma_registrar fk_pins = { .name = "fault-fake-pins", .reg = fk_reg, .dereg = fk_dereg,
						.flags = UBDMA_REGISTRAR_PINS };
static int setup_regs_pins(struct env *e)
{
	int err = ubdma_rcache_set_registrar(e->ctx, &fk_pins, NULL);
	return err ? err : setup_regs(e);
}
static void fail_reg_registrar(struct env *e)
{
	fail_reg(e);
	CHECKF(fk_live <= 2, "%d registrar keys live after a failed reg_get (2 before)", fk_live);
}
static void verify_reg_registrar(struct env *e)
{
	void *a;
	size_t len;

	CHECKF(ubdma_reg_range(e->reg, &a, &len) == 0 && (char *)a <= e->buf + 2 * PG &&
	       (char *)a + len >= e->buf + 8 * PG, "the registration does not cover the request");
	CHECKF(ubdma_reg_key(e->reg) != NULL && fk_live >= 1, "no key (%d live)", fk_live);
}
static void teardown_regs_registrar(struct env *e)
{
	teardown_regs(e);
	CHECKF(fk_live == 0, "%d registrar keys live after the flush", fk_live);
	CHECKF(ubdma_rcache_set_registrar(e->ctx, NULL, NULL) == 0, "back to the IOMMU domain");
}

#endif

/* ctx_close with everything live: cookie, ALLOCNOW tag, loaded bounced map, DMA memory, regs */
static int setup_everything(struct env *e)
{
#ifdef HAVE_RCACHE
	int err = setup_regs(e);
	if (!err)
		err = op_reg_merge(e);
#else
	int err = setup_buf(e);
#endif
	if (!err)
		err = ubdma_umem_lock(e->ctx, e->buf, 4 * PG, UBDMA_UMEM_READ, &e->u);
	if (!err)
		err = op_tag_allocnow(e);
	if (!err)
		err = ubdma_map_create(e->tag, 0, &e->map);
	if (!err)
		err = op_load(e);
	if (!err)
		err = ubdma_mem_alloc(e->tag, &e->mem, 0, &e->mmap_);
	return err;
}
static int op_close(struct env *e)
{
	ubdma_ctx_close(e->ctx);
	e->ctx = NULL;
	return 0;
}
static void verify_closed(struct env *e)
{
	check_unwired(e->buf, e->len, "after close");
	CHECKF(fault_vfio_nmaps() == 0, "IOMMU mappings %ld after close", fault_vfio_nmaps());
}

static const struct scenario scenarios[] = {
	{ "ctx_open", 0, setup_buf, op_ctx_open, fail_ctx_open, NULL, undo_ctx_open, teardown_buf },
	{ "wire", 0, setup_buf, op_wire, nothing_left, verify_wired, undo_wire, teardown_wired },
	{ "unwire", 0, setup_wired, op_unwire, fail_unwire, verify_unwired, undo_unwire, teardown_wired },
	{ "umem_lock", 0, setup_buf, op_lock, fail_lock, verify_lock, undo_lock, teardown_cookies },
	{ "umem_lock_overlap", 0, setup_first, op_lock_over, fail_lock_over, verify_lock_over, undo_lock,
	  teardown_cookies },
	{ "umem_unlock", 1, setup_two, op_unlock, NULL, verify_unlocked, NULL, teardown_cookies },
	{ "tag_create_allocnow", 0, setup_buf, op_tag_allocnow, fail_tag, verify_tag, undo_tag, teardown_tag },
	{ "map_load_bounce", 0, setup_load, op_load, fail_load, verify_load, undo_load, teardown_tagmap },
	{ "map_load_iov_waitok", 0, setup_load, op_load_iov, fail_load, verify_load_iov, undo_load, teardown_tagmap },
	{ "map_load_sg_strict", 0, setup_strict, op_load_sg, fail_load_sg, verify_load_sg, undo_load, teardown_strict },
	{ "mem_alloc_small", 0, setup_tag_small, op_mem_alloc, fail_mem_alloc, verify_mem_alloc, undo_mem_alloc, teardown_tag },
	{ "mem_alloc_large", 0, setup_tag_large, op_mem_alloc, fail_mem_alloc, verify_mem_alloc, undo_mem_alloc, teardown_tag },
#ifdef HAVE_RCACHE
	{ "reg_get_merge", 0, setup_regs, op_reg_merge, fail_reg, verify_reg, undo_reg, teardown_regs },
	{ "reg_get_merge_registrar", 0, setup_regs_registrar, op_reg_merge, fail_reg_registrar, verify_reg_registrar,
	  undo_reg, teardown_regs_registrar },
	{ "reg_get_merge_registrar_pins", 0, setup_regs_pins, op_reg_merge, fail_reg_registrar, verify_reg_registrar,
	  undo_reg, teardown_regs_registrar },
#endif
	{ "ctx_close", 1, setup_everything, op_close, NULL, verify_closed, NULL, teardown_buf },
};

/* ------------------------------------------------------------ the walk */

/*
 * In the test-bed guest: the real VFIO container with the NVMe, its mapping count from the kernel;
 * or, in the vm suite's iommufd mode (UBDMA_BACKEND=iommufd), the NVMe on an iommufd IOAS, which
 * has no mapping count to read (the walk checks everything else).
 */
static const char *guest_bdf;
static ubdma_pci_t *guest_dev;
static enum ubdma_backend guest_be = UBDMA_BACKEND_VFIO;

static int open_ctx(struct env *e)
{
	int err = ubdma_ctx_open(e->be, &e->ctx);
	if (!err && guest_bdf && e->be == guest_be && (err = ubdma_pci_open(e->ctx, guest_bdf, &guest_dev))) {
		ubdma_ctx_close(e->ctx);
		e->ctx = NULL;
	}
	if (!err && e->fake && (err = iommu_attach(&e->ctx->iommu, &(struct iommu_dev){ "0000:00:07.0", 7 }, &e->grp))) {
		ubdma_ctx_close(e->ctx);
		e->ctx = NULL;
	}
	return err;
}

static void close_ctx(struct env *e)
{
	if (guest_dev)
		ubdma_pci_close(guest_dev);
	guest_dev = NULL;
	if (e->grp && e->ctx)
		iommu_detach(&e->ctx->iommu, e->grp);
	ubdma_ctx_close(e->ctx);
}

/* One scenario on one backend: N = 1, 2, ... until no N-th call comes. */
static void walk(const struct scenario *s, enum ubdma_backend be, int fake, int huge)
{
	long faults = 0, absorbed = 0;

	for (long n = 1;; n++) {
		struct env e = { .be = be, .fake = fake, .huge = huge };
		long blocks0 = fault_live_blocks(), mapped0 = fault_mapped_bytes(), lck0 = fault_vmlck_kb();
		int rc;

		CHECKF(open_ctx(&e) == 0, "%s: context: %s", s->name, ubdma_last_error());
		rc = s->setup(&e);
		CHECKF(rc == 0, "%s: set-up failed: %s", s->name, ubdma_last_error());
		e.pre_vmlck = fault_vmlck_kb();
		e.pre_nmaps = fault_vfio_nmaps();
		fault_arm(F_ALL, n);
		rc = s->op(&e);
		int fired = fault_disarm();
		unsigned cls = fault_hit_class();
		e.fired = fired;
		if (!fired) {
			CHECKF(rc == 0, "%s: without a fault: %d (%s)", s->name, rc, ubdma_last_error());
			if (s->verify)
				s->verify(&e);
		} else if (s->is_void || rc == 0) {
			if (!s->is_void)
				absorbed++;
			if (s->verify)
				s->verify(&e);
		} else {
			CHECKF(rc > 0 && rc < 4096, "%s: fault %ld (class %#x): returned %d", s->name, n, cls, rc);
			if (s->after_fail)
				s->after_fail(&e);
			rc = s->op(&e);
			CHECKF(rc == 0, "%s: the call after fault %ld (class %#x) failed: %d %s", s->name, n, cls, rc,
			       ubdma_last_error());
			if (s->verify)
				s->verify(&e);
		}
		if (!s->is_void && s->undo)
			s->undo(&e);
		s->teardown(&e);
		if (e.ctx)
			close_ctx(&e);
		CHECKF(fault_vfio_nmaps() == 0, "%s: fault %ld (class %#x): %ld IOMMU mappings after close", s->name, n,
		       cls, fault_vfio_nmaps());
		CHECKF(fault_vmlck_kb() == lck0, "%s: fault %ld (class %#x): VmLck %ld kB after close, %ld before",
		       s->name, n, cls, fault_vmlck_kb(), lck0);
		CHECKF(fault_live_blocks() == blocks0, "%s: fault %ld (class %#x): %ld heap blocks after close, %ld before",
		       s->name, n, cls, fault_live_blocks(), blocks0);
		CHECKF(fault_mapped_bytes() == mapped0, "%s: fault %ld (class %#x): %ld bytes mapped after close, %ld before",
		       s->name, n, cls, fault_mapped_bytes(), mapped0);
		if (!fired)
			break;
		faults++;
	}
	print_message("# %-22s %-5s%s: %ld faults injected and survived (%ld absorbed by a fallback)\n", s->name,
		      fake ? "vfio" : ubdma_backend_name(be), huge ? " huge" : "", faults, absorbed);
	total_faults += faults;
	total_absorbed += absorbed;
	total_walks++;
}

static int have_hugepages(size_t n)
{
	void *p = mmap(NULL, n * HP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (p == MAP_FAILED)
		return 0;
	munmap(p, n * HP);
	return 1;
}

#define NSCEN (sizeof(scenarios) / sizeof(scenarios[0]))

/* UBDMA_FAULTS_ONLY: whether scenario s is chosen (all are when the variable is unset). */
static int chosen(const char *s)
{
	const char *only = getenv("UBDMA_FAULTS_ONLY");
	size_t n = strlen(s);

	for (const char *p = only; p && *p; p += strcspn(p, ","), p += *p == ',')
		if (!strncmp(p, s, n) && (p[n] == ',' || !p[n]))
			return 1;
	return !only || !*only;
}

static void run_all(enum ubdma_backend be, int fake, int huge)
{
	fault_fake_vfio(fake);
	for (size_t i = 0; i < NSCEN; i++) {
		if (!chosen(scenarios[i].name))
			continue;
		if (be == UBDMA_BACKEND_PHYS && strncmp(scenarios[i].name, "umem_lock", 9) &&
		    strcmp(scenarios[i].name, "mem_alloc_large"))
			continue; /* phys: only hugetlb memory translates; its pread path is what counts */
		walk(&scenarios[i], be, fake, huge);
	}
	fault_fake_vfio(0);
}

static void test_va(void **state)
{
	(void)state;
	run_all(UBDMA_BACKEND_VA, 0, 0);
}

static void test_vfio_fake(void **state)
{
	(void)state;
	run_all(UBDMA_BACKEND_VFIO, 1, 0);
}

static void test_huge(void **state)
{
	(void)state;
	if (!have_hugepages(8) || !chosen(scenarios[3].name))
		skip();
	walk(&scenarios[3], UBDMA_BACKEND_VA, 0, 1);
	fault_fake_vfio(1);
	walk(&scenarios[3], UBDMA_BACKEND_VFIO, 1, 1);
	fault_fake_vfio(0);
}

static void test_phys(void **state)
{
	(void)state;
	ubdma_ctx_t *ctx = NULL;
	if (!have_hugepages(8) || ubdma_ctx_open(UBDMA_BACKEND_PHYS, &ctx))
		skip();
	ubdma_ctx_close(ctx);
	if (chosen(scenarios[3].name))
		walk(&scenarios[3], UBDMA_BACKEND_PHYS, 0, 1);
	if (chosen(scenarios[11].name))
		walk(&scenarios[11], UBDMA_BACKEND_PHYS, 0, 0); /* mem_alloc_large */
}

/*
 * ubdma_pci_notify_fds() on the guest's real device (issue 18): a failure (an injected ioctl:
 * GET_IRQ_INFO, or SET_IRQS of the request or the error interrupt, after which the request one
 * must go off again) leaves no eventfd open, and the call made again works.  The eventfds live
 * until the device's close (close_ctx()).
 */
static int notify_fds0, notify_req, notify_err;

static int count_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");

	for (struct dirent *de; d && (de = readdir(d));)
		n += de->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}
static int setup_notify(struct env *e)
{
	(void)e;
	notify_fds0 = count_fds();
	notify_req = notify_err = -2;
	return guest_dev ? 0 : ENODEV;
}
static int op_notify(struct env *e)
{
	(void)e;
	return ubdma_pci_notify_fds(guest_dev, &notify_req, &notify_err);
}
static void fail_notify(struct env *e)
{
	(void)e;
	CHECKF(count_fds() == notify_fds0, "%d descriptors open after a failed notify_fds, %d before", count_fds(),
	       notify_fds0);
}
static void verify_notify(struct env *e)
{
	(void)e;
	CHECKF(notify_req >= 0 && count_fds() == notify_fds0 + 1 + (notify_err >= 0),
	       "notify_fds: request %d, error %d, %d descriptors (%d before)", notify_req, notify_err, count_fds(),
	       notify_fds0);
}
static void no_teardown(struct env *e)
{
	(void)e;
}

static const struct scenario guest_scenarios[] = {
	{ "pci_notify_fds", 0, setup_notify, op_notify, fail_notify, verify_notify, NULL, no_teardown },
};

#define NGUEST (sizeof(guest_scenarios) / sizeof(guest_scenarios[0]))

static void test_guest_vfio(void **state)
{
	(void)state;
	run_all(guest_be, 0, 0);
	for (size_t i = 0; i < NGUEST; i++)
		if (chosen(guest_scenarios[i].name))
			walk(&guest_scenarios[i], guest_be, 0, 0);
}

static int is_scenario(const struct scenario *sc, size_t n, const char *p, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(sc[i].name) == len && !strncmp(p, sc[i].name, len))
			return 1;
	return 0;
}

/* Every name in UBDMA_FAULTS_ONLY is a scenario: a typo must not pass as an empty walk. */
static int only_valid(void)
{
	const char *only = getenv("UBDMA_FAULTS_ONLY");

	for (const char *p = only; p && *p; p += strcspn(p, ","), p += *p == ',') {
		size_t len = strcspn(p, ",");
		if (!is_scenario(scenarios, NSCEN, p, len) && !is_scenario(guest_scenarios, NGUEST, p, len)) {
			fprintf(stderr, "UBDMA_FAULTS_ONLY: no scenario '%.*s'\n", (int)len, p);
			return 0;
		}
	}
	return 1;
}

static void test_summary(void **state)
{
	(void)state;
	print_message("UBDMA_FAULTS_SUMMARY walks=%ld injected=%ld survived=%ld absorbed=%ld leaks=0\n", total_walks,
		      total_faults, total_faults, total_absorbed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_va),
		cmocka_unit_test(test_vfio_fake),
		cmocka_unit_test(test_huge),
		cmocka_unit_test(test_phys),
		cmocka_unit_test(test_summary),
	};

	setenv("UBDMA_RCACHE_MONITOR", "explicit", 0);
	if (!only_valid())
		return 2;
	guest_bdf = getenv("UBDMA_VM_NVME");
	if (guest_bdf && (!getenv("UBDMA_VM_NVME_DRIVER") || strcmp(getenv("UBDMA_VM_NVME_DRIVER"), "vfio-pci")))
		guest_bdf = NULL;
	if (getenv("UBDMA_BACKEND") && !strcmp(getenv("UBDMA_BACKEND"), "iommufd"))
		guest_be = UBDMA_BACKEND_IOMMUFD;
	/* warm-up: the library's process-wide tables (the wire counts) are made on first use and
	 * live as long as the process; make them before the books are first read */
	char *p = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED || ubdma_wire(p, 4 * PG, 0) || ubdma_unwire(p, 4 * PG, 0))
		return 1;
#ifdef HAVE_RCACHE
	/* and the watch-only tables (a registrar that pins) */
	ubdma_ctx_t *wctx;
	ubdma_reg_t *wr;
	if (ubdma_ctx_open(UBDMA_BACKEND_VA, &wctx) || ubdma_rcache_set_registrar(wctx, &fk_pins, NULL) ||
	    ubdma_reg_get(wctx, p, 4 * PG, UBDMA_UMEM_READ, &wr))
		return 1;
	ubdma_reg_put(wr);
	ubdma_ctx_close(wctx);
#endif
	munmap(p, 4 * PG);
	const struct CMUnitTest guest[] = {
		cmocka_unit_test(test_guest_vfio),
		cmocka_unit_test(test_summary),
	};
	if (guest_bdf) /* the test-bed guest: the walk on real VFIO, the NVMe's container */
		return cmocka_run_group_tests(guest, NULL, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
