/*
 * test_rcache_stale - the registration cache is never stale, proved by NVMe DMA through VFIO.
 *
 * The classic bug of every pin-down cache: register a buffer, unmap it, map other pages at the
 * same address, look it up again - and get the old registration, whose IOVA leads the device to
 * the old frames.  Here the device says where its writes land.  Each round maps a memfd twice:
 * at the address under test (a) and once more elsewhere (keep), so the old frames stay alive and
 * visible after a is unmapped.  The old registration's IOVA is proved first (an Identify
 * Controller lands at a and in keep).  Then a is replaced by new anonymous pages at the same
 * address (MAP_FIXED_NOREPLACE: same VA, checked), filled with a marker while keep is refilled
 * with the old marker, and the device is aimed at what the cache (or a bus_dma load) gives for a
 * now: the 4 KiB must land in the new pages and keep must not change.  Rounds, for shmem 4 KiB
 * pages and for a 2 MiB hugetlb page:
 *   munmap    the userfaultfd monitor saw the unmap: ubdma_reg_get() misses (one invalidation,
 *             one miss, no hit) and its IOVA reaches the new pages;
 *   mremap    the old pages moved away (MREMAP_FIXED): the same at a, and a look-up at their new
 *             address is a miss too whose IOVA reaches the old frames (seen through keep);
 *   held      the old registration is still referenced across the unmap: a look-up returns a new
 *             one, reaching the new pages, while the holder's IOVA still reaches the old frames;
 *   load      no cache call after the unmap: a bus_dma load on the device's tag (and then
 *             ubdma_vtoiova()) must not hand out the old IOVA; the Identify goes through the
 *             load's segment and POSTREAD, and lands in the new pages;
 *   explicit  the control: with the explicit-only monitor the cache cannot know, and the same
 *             look-up is a hit on the old registration whose IOVA reaches keep, not a - what the
 *             checks above would see if invalidation failed; then ubdma_reg_invalidate() and the
 *             look-up misses and reaches the new pages.
 * Without an IOMMU (noiommu) a stale IOVA is the old frame's physical address, so the same rounds
 * matter there; they run for the hugetlb kind, and the 4 KiB kind must be refused.
 * Exit status: 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ubdma/ubdma.h>

#include "backend.h"
#include "check.h"
#include "nvme_admin.h"

#define EXIT_SKIP 77
#define PG 4096u
#define SZ_2M (2u << 20)
#define RW (UBDMA_UMEM_READ | UBDMA_UMEM_WRITE)
#define OLD_FILL 0x0d
#define NEW_FILL 0x4e

static ubdma_ctx_t *ctx;
static struct nvme_admin nv;
static ubdma_tag_t *dtag; /* the NVMe's DMA tag */
static int monitored;	  /* the userfaultfd monitor runs */

struct kind {
	const char *name;
	int huge;
	size_t len;
};

static const struct kind kinds[] = {
	{ "shmem 4 KiB", 0, 16 * PG },
	{ "hugetlb 2 MiB", 1, SZ_2M },
};

/* One round's memory: a is the address under test, keep a second view of the old frames. */
struct buf {
	const struct kind *k;
	int fd;
	uint8_t *a, *keep;
	uint64_t old_iova;
};

static struct ubdma_rcache_stats stats(void)
{
	struct ubdma_rcache_stats s;

	if (ubdma_rcache_stats(ctx, &s, sizeof(s)))
		memset(&s, 0, sizeof(s));
	return s;
}

static int all(const uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return 0;
	return 1;
}

/* The 4 KiB at page 1 of p hold the Identify data, every other byte of p is fill. */
static int holds_identify(const uint8_t *p, size_t len, uint8_t fill)
{
	return all(p, PG, fill) && nvme_admin_is_identify(p + PG) && all(p + 2 * PG, len - 2 * PG, fill);
}

/* The old pages: a memfd mapped twice, filled with OLD_FILL.  0, or -1 when it cannot be made. */
static int buf_old(struct buf *b, const struct kind *k)
{
	*b = (struct buf){ .k = k, .fd = -1 };
	b->fd = memfd_create("ubdma-rcache-old", MFD_CLOEXEC | (k->huge ? MFD_HUGETLB : 0));
	if (b->fd < 0 || ftruncate(b->fd, (off_t)k->len))
		return -1;
	b->keep = mmap(NULL, k->len, PROT_READ | PROT_WRITE, MAP_SHARED, b->fd, 0);
	b->a = mmap(NULL, k->len, PROT_READ | PROT_WRITE, MAP_SHARED, b->fd, 0);
	if (b->keep == MAP_FAILED || b->a == MAP_FAILED)
		return -1;
	memset(b->keep, OLD_FILL, k->len);
	return 0;
}

/* New anonymous pages at b->a, filled with NEW_FILL; the old frames refilled.  0 or -1. */
static int buf_new(struct buf *b, const char *round)
{
	int huge = b->k->huge ? MAP_HUGETLB | MAP_HUGE_2MB : 0;
	uint8_t *n = mmap(b->a, b->k->len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | huge, -1, 0);

	check(n == b->a, "%s, %s: new pages mapped at the same address %p (got %p: %s)", round, b->k->name,
	      (void *)b->a, (void *)n, n == MAP_FAILED ? strerror(errno) : "ok");
	if (n != b->a) {
		if (n != MAP_FAILED)
			munmap(n, b->k->len);
		b->a = NULL;
		return -1;
	}
	memset(b->a, NEW_FILL, b->k->len);
	memset(b->keep, OLD_FILL, b->k->len);
	return 0;
}

static void buf_free(struct buf *b)
{
	if (b->a && b->a != MAP_FAILED)
		munmap(b->a, b->k->len);
	if (b->keep && b->keep != MAP_FAILED)
		munmap(b->keep, b->k->len);
	if (b->fd >= 0)
		close(b->fd);
}

/* Identify at iova; where it must land: 'n' the new pages at a, 'o' the old frames (keep). */
static void dma_lands(struct buf *b, const char *what, uint64_t iova, char where)
{
	size_t len = b->k->len;
	int rc = nvme_admin_identify(&nv, iova);
	int in_new = holds_identify(b->a, len, NEW_FILL), new_clean = all(b->a, len, NEW_FILL);
	int in_old = holds_identify(b->keep, len, OLD_FILL), old_clean = all(b->keep, len, OLD_FILL);

	if (where == 'n')
		check(rc == 0 && in_new && old_clean, "%s, %s: Identify at IOVA %#" PRIx64 " landed in the new "
		      "pages%s", what, b->k->name, iova, in_old ? "" : old_clean ? ", none in the old frames" :
		      ", but the OLD frames changed too");
	else
		check(rc == 0 && in_old && new_clean, "%s, %s: Identify at IOVA %#" PRIx64 " landed in the old "
		      "frames%s", what, b->k->name, iova, in_new ? " AND the new pages" : ", not in the new pages");
	if (!(where == 'n' ? in_new && old_clean : in_old && new_clean))
		printf("# command %s; new pages: %s; old frames: %s\n", rc ? "timed out" : "completed",
		       in_new ? "Identify" : new_clean ? "untouched" : "changed otherwise",
		       in_old ? "Identify" : old_clean ? "untouched" : "changed otherwise");
	memset(b->a, NEW_FILL, len);
	memset(b->keep, OLD_FILL, len);
}

/*
 * Register the old pages through the cache and prove the IOVA of page 1 (it lands at a, which is
 * keep's frame) and that a bus_dma load of that page goes in place at that IOVA.  The whole
 * mapping, so that wiring does not split it (mremap moves one mapping only).  The registration
 * is put unless heldp.  0 or -1.
 */
static int register_old(struct buf *b, const char *round, ubdma_reg_t **heldp)
{
	ubdma_reg_t *r;
	ubdma_map_t *map = NULL;
	ubdma_seg_t seg[2];
	int nseg = 0;
	int rc = ubdma_reg_get(ctx, b->a, b->k->len, RW, &r);

	check(rc == 0, "%s, %s: ubdma_reg_get of the old pages: %s", round, b->k->name, rc ? ubdma_last_error() : "0");
	if (rc)
		return -1;
	b->old_iova = ubdma_reg_iova(r, b->a + PG);
	rc = nvme_admin_identify(&nv, b->old_iova);
	check(rc == 0 && holds_identify(b->keep, b->k->len, OLD_FILL), "%s, %s: the old registration's IOVA %#"
	      PRIx64 " reaches the old frames", round, b->k->name, b->old_iova);
	memset(b->keep, OLD_FILL, b->k->len);
	rc = ubdma_map_create(dtag, 0, &map);
	rc = rc ? rc : ubdma_map_load_sg(dtag, map, b->a + PG, PG, seg, &nseg, UBDMA_NOWAIT);
	check(rc == 0 && nseg == 1 && seg[0].ds_addr == b->old_iova, "%s, %s: a bus_dma load of it goes in place "
	      "(%#" PRIx64 ")", round, b->k->name, nseg ? seg[0].ds_addr : 0);
	if (rc == 0)
		ubdma_map_unload(dtag, map);
	if (map)
		ubdma_map_destroy(dtag, map);
	if (heldp)
		*heldp = r;
	else
		ubdma_reg_put(r);
	return 0;
}

/* A look-up after the change: a miss that invalidated one entry, reaching the new pages. */
static void lookup_new(struct buf *b, const char *round, const struct ubdma_rcache_stats *s0)
{
	ubdma_reg_t *r;
	int rc = ubdma_reg_get(ctx, b->a + PG, PG, RW, &r);
	struct ubdma_rcache_stats s = stats();

	check(rc == 0, "%s, %s: ubdma_reg_get of the new pages: %s", round, b->k->name, rc ? ubdma_last_error() : "0");
	if (rc)
		return;
	check(s.misses == s0->misses + 1 && s.hits == s0->hits && s.invalidations == s0->invalidations + 1,
	      "%s, %s: a new registration: +%" PRIu64 " miss, +%" PRIu64 " hit, +%" PRIu64 " invalidation",
	      round, b->k->name, s.misses - s0->misses, s.hits - s0->hits, s.invalidations - s0->invalidations);
	uint64_t iova = ubdma_reg_iova(r, b->a + PG);
	check(iova != UBDMA_BAD_IOVA && iova != b->old_iova, "%s, %s: its IOVA %#" PRIx64 " is not the old "
	      "one (%#" PRIx64 ")", round, b->k->name, iova, b->old_iova);
	dma_lands(b, round, iova, 'n');
	ubdma_reg_put(r);
}

static void round_munmap(const struct kind *k)
{
	struct buf b;

	if (buf_old(&b, k) == 0 && register_old(&b, "munmap", NULL) == 0) {
		struct ubdma_rcache_stats s0 = stats();
		munmap(b.a, k->len);
		if (buf_new(&b, "munmap") == 0)
			lookup_new(&b, "munmap", &s0);
	}
	buf_free(&b);
}

static void round_mremap(const struct kind *k)
{
	struct buf b = { .k = k, .fd = -1 };
	size_t len = k->len, al = k->huge ? SZ_2M : PG;
	uint8_t *res = mmap(NULL, 2 * len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t *to = (uint8_t *)(((uintptr_t)res + al - 1) & ~(uintptr_t)(al - 1)), *moved;

	if (res == MAP_FAILED || buf_old(&b, k) || register_old(&b, "mremap", NULL))
		goto out;
	struct ubdma_rcache_stats s0 = stats();
	moved = mremap(b.a, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to);
	check(moved == to, "mremap, %s: old pages moved to %p: %s", k->name, (void *)to,
	      moved == to ? "ok" : strerror(errno));
	if (moved != to || buf_new(&b, "mremap"))
		goto out;
	lookup_new(&b, "mremap", &s0);
	/* the moved pages: at their new address a new registration, reaching the old frames */
	struct ubdma_rcache_stats s1 = stats();
	ubdma_reg_t *r;
	int rc = ubdma_reg_get(ctx, to + PG, PG, RW, &r);
	struct ubdma_rcache_stats s2 = stats();
	check(rc == 0 && s2.misses == s1.misses + 1 && s2.hits == s1.hits && s2.events_remap > s0.events_remap,
	      "mremap, %s: the moved pages register anew (%" PRIu64 " remap events)", k->name, s2.events_remap);
	if (rc == 0) {
		dma_lands(&b, "mremap: the moved pages", ubdma_reg_iova(r, to + PG), 'o');
		ubdma_reg_put(r);
	}
out:
	if (res != MAP_FAILED)
		munmap(res, 2 * len); /* the moved pages with it */
	buf_free(&b);
}

static void round_held(const struct kind *k)
{
	struct buf b;
	ubdma_reg_t *old = NULL;

	if (buf_old(&b, k) == 0 && register_old(&b, "held", &old) == 0) {
		struct ubdma_rcache_stats s0 = stats();
		munmap(b.a, k->len);
		if (buf_new(&b, "held") == 0) {
			check(stats().held_invalid == 1, "held, %s: the old registration is invalidated but held",
			      k->name);
			lookup_new(&b, "held", &s0);
			uint64_t iova = ubdma_reg_iova(old, b.a + PG);
			check(iova == b.old_iova, "held, %s: the holder's IOVA is unchanged (%#" PRIx64 ")", k->name,
			      iova);
			dma_lands(&b, "held: the holder's IOVA", iova, 'o');
		}
		ubdma_reg_put(old);
		check(stats().held_invalid == 0, "held, %s: released at the last put", k->name);
	}
	buf_free(&b);
}

/* bus_dma load and ubdma_vtoiova() right after the unmap, with no cache call in between. */
static void round_load(const struct kind *k)
{
	struct buf b;
	ubdma_map_t *map = NULL;
	ubdma_seg_t seg[2];
	int nseg = 0, rc;

	if (buf_old(&b, k) || register_old(&b, "load", NULL))
		goto out;
	munmap(b.a, k->len);
	if (buf_new(&b, "load"))
		goto out;
	rc = ubdma_map_create(dtag, 0, &map);
	rc = rc ? rc : ubdma_map_load_sg(dtag, map, b.a + PG, PG, seg, &nseg, UBDMA_NOWAIT);
	check(rc == 0 && nseg == 1 && seg[0].ds_addr != b.old_iova && !(seg[0].ds_addr & (PG - 1)),
	      "load, %s: a bus_dma load of the new pages does not get the old IOVA (segment %#" PRIx64
	      ", old %#" PRIx64 ")%s%s", k->name, nseg ? seg[0].ds_addr : 0, b.old_iova, rc ? ": " : "",
	      rc ? ubdma_last_error() : "");
	if (rc == 0 && nseg == 1 && !(seg[0].ds_addr & (PG - 1))) {
		/* the DMA goes where the load says, stale or not: the bytes tell */
		ubdma_map_sync(dtag, map, UBDMA_SYNC_PREREAD);
		rc = nvme_admin_identify(&nv, seg[0].ds_addr);
		ubdma_map_sync(dtag, map, UBDMA_SYNC_POSTREAD);
		int in_new = holds_identify(b.a, k->len, NEW_FILL), old_clean = all(b.keep, k->len, OLD_FILL);
		check(rc == 0 && in_new && old_clean, "load, %s: Identify into the segment, after POSTREAD, is in "
		      "the new pages%s", k->name, old_clean ? ", none in the old frames" : ", OLD frames changed");
		ubdma_map_unload(dtag, map);
	}
	uint64_t v = ubdma_vtoiova(ctx, b.a + PG);
	check(v == UBDMA_BAD_IOVA, "load, %s: ubdma_vtoiova() of the new pages: unregistered (%#" PRIx64 ")",
	      k->name, v);
out:
	if (map)
		ubdma_map_destroy(dtag, map);
	buf_free(&b);
}

/* The control: without a monitor the stale registration comes back; then the explicit call. */
static void round_explicit(const struct kind *k)
{
	struct buf b = { .k = k, .fd = -1 };
	ubdma_reg_t *r;
	int rc;

	ubdma_rcache_flush(ctx);
	rc = ubdma_rcache_set_monitor(ctx, UBDMA_RCACHE_MONITOR_EXPLICIT);
	check(rc == 0, "explicit, %s: monitor set to explicit-only: %s", k->name, rc ? ubdma_last_error() : "0");
	if (rc || buf_old(&b, k) || register_old(&b, "explicit", NULL))
		goto out;
	struct ubdma_rcache_stats s0 = stats();
	munmap(b.a, k->len);
	if (buf_new(&b, "explicit"))
		goto out;
	rc = ubdma_reg_get(ctx, b.a + PG, PG, RW, &r);
	struct ubdma_rcache_stats s1 = stats();
	check(rc == 0 && s1.hits == s0.hits + 1 && s1.misses == s0.misses, "explicit, %s: unmonitored, the cache "
	      "answers with the old registration (a hit)", k->name);
	if (rc == 0) {
		check(ubdma_reg_iova(r, b.a + PG) == b.old_iova, "explicit, %s: the old IOVA", k->name);
		dma_lands(&b, "explicit, stale", ubdma_reg_iova(r, b.a + PG), 'o');
		ubdma_reg_put(r);
	}
	s0 = stats();
	rc = ubdma_reg_invalidate(ctx, b.a, k->len);
	check(rc == 0, "explicit, %s: ubdma_reg_invalidate: %s", k->name, rc ? ubdma_last_error() : "0");
	lookup_new(&b, "explicit, after ubdma_reg_invalidate", &s0);
out:
	buf_free(&b);
	ubdma_rcache_flush(ctx);
	rc = ubdma_rcache_set_monitor(ctx, UBDMA_RCACHE_MONITOR_UFFD);
	check(rc == 0, "explicit, %s: monitor back to userfaultfd: %s", k->name, rc ? ubdma_last_error() : "0");
}

/* The cache's monitor, and whether this kind of memory can be had and is watched. */
static int kind_ok(const struct kind *k)
{
	struct buf b;
	ubdma_reg_t *r;
	int ok = buf_old(&b, k) == 0 && ubdma_reg_get(ctx, b.a + PG, PG, RW, &r) == 0;

	if (!ok) {
		printf("# SKIP %s: %s\n", k->name, b.fd < 0 ? strerror(errno) : ubdma_last_error());
		buf_free(&b);
		return 0;
	}
	ubdma_reg_put(r);
	struct ubdma_rcache_stats s = stats();
	monitored = s.monitor_active;
	printf("# %s: monitor: %s; unmonitored entries %" PRIu64 "\n", k->name, s.monitor, s.unmonitored);
	if (monitored)
		check(s.unmonitored == 0, "%s: the monitor watches this memory", k->name);
	buf_free(&b);
	return 1;
}

/* Without an IOMMU (noiommu) only hugetlb memory registers: 4 KiB pages are refused, saying so. */
static void refused(const struct kind *k)
{
	struct buf b;
	ubdma_reg_t *r = NULL;
	int rc = buf_old(&b, k) ? -1 : ubdma_reg_get(ctx, b.a + PG, PG, RW, &r);

	check(rc == ENOTSUP && !r && strstr(ubdma_last_error(), "hugetlb"),
	      "%s: refused without an IOMMU (%d: %s)", k->name, rc, ubdma_last_error());
	printf("# SKIP %s: its rounds (only hugetlb memory registers without an IOMMU)\n", k->name);
	if (r)
		ubdma_reg_put(r);
	buf_free(&b);
}

int main(void)
{
	const char *bdf = getenv("UBDMA_VM_NVME"), *why = "";
	const char *drv = getenv("UBDMA_VM_NVME_DRIVER");
	ubdma_pci_t *dev = NULL;
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!bdf || !*bdf || !drv || strcmp(drv, "vfio-pci")) {
		printf("# SKIP: no NVMe controller on vfio-pci ($UBDMA_VM_NVME)\n");
		return EXIT_SKIP;
	}
	if ((rc = ubdma_ctx_open(guest_backend(), &ctx))) {
		check(0, "ubdma_ctx_open(VFIO): %s", ubdma_last_error());
		return 1;
	}
	rc = ubdma_pci_open(ctx, bdf, &dev);
	check(rc == 0, "ubdma_pci_open(%s): %s", bdf, rc ? ubdma_last_error() : "0");
	if (rc || nvme_admin_init(&nv, ctx, dev, &why)) {
		check(0, "NVMe admin queues: %s", why);
		goto out;
	}
	dtag = ubdma_pci_dma_tag(dev);
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		const struct kind *k = &kinds[i];
		if (!guest_isolates() && !k->huge) {
			refused(k);
			continue;
		}
		if (!kind_ok(k))
			continue;
		if (monitored) {
			round_munmap(k);
			round_mremap(k);
			round_held(k);
			round_load(k);
		} else {
			printf("# SKIP %s: munmap, mremap, held, load: no userfaultfd monitor\n", k->name);
		}
		round_explicit(k);
	}
	ubdma_rcache_flush(ctx);
	struct ubdma_rcache_stats s = stats();
	printf("# cache: hits %" PRIu64 " misses %" PRIu64 " invalidations %" PRIu64 " events unmap %" PRIu64
	       " remap %" PRIu64 "\n", s.hits, s.misses, s.invalidations, s.events_unmap, s.events_remap);
	check(s.entries == 0 && s.held_invalid == 0 && s.bytes_pinned == 0, "everything released after the "
	      "flush (%" PRIu64 " entries, %" PRIu64 " bytes pinned)", s.entries, s.bytes_pinned);
	nvme_admin_fini(&nv);
out:
	ubdma_pci_close(dev);
	ubdma_ctx_close(ctx);
	printf("# %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
