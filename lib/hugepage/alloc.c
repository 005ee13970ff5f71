/*
 * alloc.c - hugepage regions: allocation on a page size and a NUMA node, the shortage policy,
 * and freeing.  The mapping itself (placement, NUMA policy, faulting in) is map.c's, shared with
 * the busdma layer's DMA memory.
 *
 * Shortage.  A shared hugetlb mapping reserves its pages system-wide at mmap() time, but not per
 * node, so a node that runs short shows up only when map.c faults the pages in: we count free
 * pages on the node before we start so that the usual shortage gets a precise message, and still
 * handle the race where another process took them in between.
 *
 * Policy on shortage: STRICT fails with ENOMEM; FALLBACK maps 4 KiB anonymous pages (THP off,
 * so that they really are 4 KiB) on the same node and warns.  Every failure path unmaps, closes
 * and unlinks what it made: nothing is left half done.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef UBDMA_HAVE_LIBHUGETLBFS
#include <hugetlbfs.h>
#endif

#include "base/log.h"
#include "base/page.h"
#include "hugepage/huge.h"
#include "hugepage/hugemem.h"

/* Errors are reported as the public function's: the caller knows no helper names. */
#define herr(err, ...) uerr_at("ubdma_huge_alloc", (err), __VA_ARGS__)

#define BACKINGS (UBDMA_HUGE_HUGETLBFS | UBDMA_HUGE_LIBHUGETLBFS)
#define ALL_FLAGS (UBDMA_HUGE_FALLBACK | BACKINGS | UBDMA_HUGE_PREFERRED)

/* What a region asks of the allocator: its length and page size, placed anywhere on its node. */
static struct huge_req region_req(const struct ubdma_huge *r, int node, int preferred)
{
	return (struct huge_req){ .len = r->len, .pgsz = r->pgsz, .node = node, .preferred = preferred };
}

static int alloc_memfd(struct ubdma_huge *r, int node, int preferred)
{
	const struct huge_req rq = region_req(r, node, preferred);
	char sz[32];
	int err = huge_map(&rq, &r->addr);

	r->kind = HUGE_MEMFD;
	if (err == ENOTSUP)
		return herr(ENOTSUP, "memfd_create refuses %s hugepages", huge_pgsz_str(r->pgsz, sz, sizeof(sz)));
	return err;
}

/* The first hugetlbfs mount of page size pgsz, into dir; 0 or ENOTSUP. */
static int find_mount(size_t pgsz, char *dir, size_t len)
{
	struct ubdma_huge_mount m[32];
	int n;

	if (ubdma_huge_mounts(m, 32, &n))
		return ENOTSUP;
	for (int i = 0; i < n && i < 32; i++)
		if (m[i].pgsz == pgsz) {
			snprintf(dir, len, "%s", m[i].path);
			return 0;
		}
	return ENOTSUP;
}

static int alloc_file(struct ubdma_huge *r, int node, int preferred)
{
	char dir[256], sz[32];
	int fd, err;

	if (find_mount(r->pgsz, dir, sizeof(dir)))
		return herr(ENOTSUP, "no hugetlbfs mount with %s pages in /proc/self/mounts: mount -t "
			    "hugetlbfs -o pagesize=%s nodev DIR", huge_pgsz_str(r->pgsz, sz, sizeof(sz)),
			    r->pgsz >= (1UL << 30) ? "1G" : "2M");
	if (!(r->path = malloc(strlen(dir) + 40)))
		return herr(ENOMEM, "out of memory");
	sprintf(r->path, "%s/ubdma.%d.XXXXXX", dir, (int)getpid());
	if ((fd = mkostemp(r->path, O_CLOEXEC)) < 0) {
		err = errno;
		free(r->path);
		r->path = NULL;
		return herr(err, "cannot create a file in %s: %s", dir, strerror(err));
	}
	const struct huge_req rq = region_req(r, node, preferred);
	err = huge_map_fd(fd, &rq, &r->addr);
	close(fd);
	if (err) {
		unlink(r->path);
		free(r->path);
		r->path = NULL;
	}
	r->kind = HUGE_FILE;
	return err;
}

static int alloc_libhugetlbfs(struct ubdma_huge *r, int node, int preferred)
{
#ifdef UBDMA_HAVE_LIBHUGETLBFS
	struct huge_policy saved;
	char sz[32];
	int err;

	if ((size_t)gethugepagesize() != r->pgsz)
		return herr(ENOTSUP, "libhugetlbfs allocates only its default page size (%ld bytes), not %s",
			    gethugepagesize(), huge_pgsz_str(r->pgsz, sz, sizeof(sz)));
	if (!hugetlbfs_find_path_for_size((long)r->pgsz))
		return herr(ENOTSUP, "libhugetlbfs finds no hugetlbfs mount for %s pages",
			    huge_pgsz_str(r->pgsz, sz, sizeof(sz)));
	/* get_huge_pages() faults the pages in itself: the thread's policy must be set around it */
	if ((err = huge_policy_push(node, preferred, &saved)))
		return herr(err, "set_mempolicy(node %d) failed: %s", node, strerror(err));
	r->addr = get_huge_pages(r->len, GHP_DEFAULT);
	err = r->addr ? 0 : HUGE_SHORT;
	huge_policy_pop(&saved);
	r->kind = HUGE_LIBHUGETLBFS;
	return err;
#else
	(void)node;
	(void)preferred;
	(void)r;
	return herr(ENOTSUP, "libubdma was built without libhugetlbfs (Debian libhugetlbfs-dev)");
#endif
}

static int alloc_anon(struct ubdma_huge *r, int node, int preferred)
{
	int err;

	r->len = (r->len + PAGE_4K_MASK) & ~PAGE_4K_MASK;
	r->pgsz = PAGE_4K;
	const struct huge_req rq = region_req(r, node, preferred);
	if ((err = huge_map(&rq, &r->addr)))
		return herr(err, "cannot map %zu bytes of 4 KiB pages on node %d: %s", r->len, node, strerror(err));
	r->kind = HUGE_ANON;
	return 0;
}

/* The shortage sentence: what is needed where, what is free, and how to get more. */
static int shortage(const struct ubdma_huge *r, int node, int preferred, const char *what)
{
	char sz[32], where[32] = "", opt[32] = "";
	unsigned long need = r->len / r->pgsz;
	int n = preferred ? UBDMA_NODE_ANY : node;
	struct ubdma_huge_info info[64];
	unsigned long total = 0, have = huge_free_pages(r->pgsz, n);
	int rows = 0;

	if (n != UBDMA_NODE_ANY) {
		snprintf(where, sizeof(where), " on node %d", n);
		snprintf(opt, sizeof(opt), " --node %d", n);
	}
	ubdma_huge_info(info, 64, &rows);
	for (int i = 0; i < rows && i < 64; i++)
		if (info[i].pgsz == r->pgsz && info[i].node == n)
			total = info[i].total;
	/* the reservation is a total: what is there now plus what is missing */
	unsigned long target = total + (need > have ? need - have : 0);
	return herr(ENOMEM,
		    "not enough %s hugepages%s: need %lu, %lu free (%s); reserve more with `ubdma hugepages "
		    "--reserve %luM --pagesize %zuM%s` or pass UBDMA_HUGE_FALLBACK",
		    huge_pgsz_str(r->pgsz, sz, sizeof(sz)), where, need, have, what,
		    (unsigned long)((target * r->pgsz) >> 20), r->pgsz >> 20, opt);
}

static void fallback_warn(const struct ubdma_huge *r, size_t asked, int node, const char *why)
{
	const char *lv = getenv("UBDMA_LOG");
	char sz[32], where[32] = "";

	/* the caller asked for this policy, but should still hear about it unless it silenced us */
	if (lv && (!strcmp(lv, "off") || !strcmp(lv, "error")))
		return;
	if (node != UBDMA_NODE_ANY)
		snprintf(where, sizeof(where), " on node %d", node);
	ulog_emit(UBDMA_LOG_WARN, "ubdma_huge_alloc",
		  "%s hugepages unavailable (%s): using %zu bytes of 4 KiB pages%s; the phys backend "
		  "cannot translate them (ENOTSUP) and an IOMMU maps them one 4 KiB page at a time",
		  huge_pgsz_str(asked, sz, sizeof(sz)), why, r->len, where);
}

static int check_args(size_t size, size_t *pgsz, int node, int flags, ubdma_huge_t **regionp)
{
	if (!regionp)
		return herr(EINVAL, "regionp is NULL");
	if (size == 0)
		return herr(EINVAL, "size is 0");
	if (flags & ~ALL_FLAGS)
		return herr(EINVAL, "unknown flags 0x%x", flags & ~ALL_FLAGS);
	if ((flags & BACKINGS) == BACKINGS)
		return herr(EINVAL, "UBDMA_HUGE_HUGETLBFS and UBDMA_HUGE_LIBHUGETLBFS exclude each other");
	if (node < UBDMA_NODE_ANY)
		return herr(EINVAL, "node %d: a node number or UBDMA_NODE_ANY (-1)", node);
	if (*pgsz == 0 && !(*pgsz = huge_default_pgsz()))
		*pgsz = PAGE_2M; /* no hugepage support at all: the policy below decides */
	if (*pgsz < PAGE_4K || (*pgsz & (*pgsz - 1)))
		return herr(EINVAL, "page size %zu is not a power of two of at least 4096", *pgsz);
	if (size > SIZE_MAX - *pgsz)
		return herr(EINVAL, "size %zu is too large", size);
	if (node != UBDMA_NODE_ANY && !huge_node_valid(node))
		return herr(ENODEV, "NUMA node %d does not exist or has no memory", node);
	return 0;
}

int ubdma_huge_alloc(size_t size, size_t pgsz, int node, int flags, ubdma_huge_t **regionp)
{
	int preferred = !!(flags & UBDMA_HUGE_PREFERRED);
	struct ubdma_huge *r;
	char sz[32], why[96];
	int err;

	if ((err = check_args(size, &pgsz, node, flags, regionp)))
		return err;
	if (!(r = calloc(1, sizeof(*r))))
		return herr(ENOMEM, "out of memory");
	r->pgsz = pgsz;
	r->len = (size + pgsz - 1) & ~(pgsz - 1);
	r->node = node;
	huge_pgsz_str(pgsz, sz, sizeof(sz));

	unsigned long need = r->len / pgsz, have = huge_free_pages(pgsz, preferred ? UBDMA_NODE_ANY : node);
	if (!huge_size_offered(pgsz) && pgsz != PAGE_4K) {
		snprintf(why, sizeof(why), "the kernel offers no %s pages", sz);
		err = herr(ENOTSUP, "the kernel offers no %s hugepages (no %s/hugepages-%zukB)", sz, HUGE_SYSFS,
			   pgsz / 1024);
	} else if (pgsz != PAGE_4K && have < need) {
		snprintf(why, sizeof(why), "%lu needed, %lu free", need, have);
		err = shortage(r, node, preferred, "checked before allocating");
	} else {
		err = flags & UBDMA_HUGE_HUGETLBFS	 ? alloc_file(r, node, preferred)
		      : flags & UBDMA_HUGE_LIBHUGETLBFS ? alloc_libhugetlbfs(r, node, preferred)
		      : pgsz == PAGE_4K			? alloc_anon(r, node, preferred)
							 : alloc_memfd(r, node, preferred);
		if (err == HUGE_SHORT) {
			snprintf(why, sizeof(why), "the kernel could not supply %lu pages", need);
			err = shortage(r, node, preferred, "another user took them, or they are on other nodes");
		} else if (err == ENOTSUP) {
			snprintf(why, sizeof(why), "%s", ubdma_last_error());
		} else if (err) {
			snprintf(why, sizeof(why), "%s", strerror(err));
			err = herr(err, "%s hugepage allocation failed: %s", sz, strerror(err));
		}
	}
	if (err && (flags & UBDMA_HUGE_FALLBACK) && (err == ENOMEM || err == ENOTSUP)) {
		r->len = size;
		if (!(err = alloc_anon(r, node, preferred)))
			fallback_warn(r, pgsz, node, why);
	}
	if (err) {
		free(r);
		return err;
	}
	ULOG_DEBUG("region %p: %zu bytes of %zu-byte pages at %p, node %d, kind %d", (void *)r, r->len, r->pgsz,
		   r->addr, r->node, (int)r->kind);
	*regionp = r;
	return 0;
}

void ubdma_huge_free(ubdma_huge_t *r)
{
	if (!r)
		return;
	switch (r->kind) {
	case HUGE_LIBHUGETLBFS:
#ifdef UBDMA_HAVE_LIBHUGETLBFS
		free_huge_pages(r->addr);
#endif
		break;
	case HUGE_FILE:
		huge_unmap(r->addr, r->len);
		if (unlink(r->path))
			ULOG_WARN("cannot remove %s: %s", r->path, strerror(errno));
		free(r->path);
		break;
	default:
		huge_unmap(r->addr, r->len);
		break;
	}
	free(r);
}

/* The accessors answer NULL / 0 / UBDMA_NODE_ANY for a NULL region, with errno and the sentence. */
static int null_region(const char *fn)
{
	return errno = uerr_at(fn, EINVAL, "NULL region");
}

void *ubdma_huge_addr(const ubdma_huge_t *r)
{
	return r ? r->addr : (null_region(__func__), NULL);
}

size_t ubdma_huge_len(const ubdma_huge_t *r)
{
	return r ? r->len : (null_region(__func__), 0);
}

size_t ubdma_huge_pgsz(const ubdma_huge_t *r)
{
	return r ? r->pgsz : (null_region(__func__), 0);
}

int ubdma_huge_node(const ubdma_huge_t *r)
{
	return r ? r->node : (null_region(__func__), UBDMA_NODE_ANY);
}

const char *ubdma_huge_path(const ubdma_huge_t *r)
{
	if (!r)
		return null_region(__func__), NULL;
	return r->kind == HUGE_FILE ? r->path : NULL;
}
