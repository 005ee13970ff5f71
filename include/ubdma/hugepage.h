/*
 * ubdma/hugepage.h - hugepages and NUMA locality: which hugepage sizes the kernel offers and how
 * many are free on each node, hugetlbfs mounts, hugepage regions placed on a NUMA node, and the
 * node a PCI device is attached to.  Included by <ubdma/ubdma.h>.
 *
 * A region is memory ubdma allocated for DMA: by default a memfd(MFD_HUGETLB) of the asked page
 * size, mapped shared and faulted in on the asked node.  Lock it with ubdma_umem_lock() (or load
 * it through a tag) to give it IOVAs; the phys backend translates only hugepage memory, so a
 * region that fell back to 4 KiB pages is refused there with ENOTSUP.  See docs/hugepages.md for
 * the policy and ubdma_huge_alloc(3) for the details.  Errors follow the convention of
 * ubdma/core.h.
 *
 * Threads: every call is thread-safe; a region's accessors may run in any thread until
 * ubdma_huge_free(), which must not race them.  ubdma_huge_reserve() writes sysfs, which another
 * process may change at the same time: it checks the count the kernel reached.  fork(2): the child
 * inherits the mapping of a region nobody wired (ubdma_wire(), ubdma_umem_lock() and loads mark
 * what they wire MADV_DONTFORK), but must not free its parent's regions (docs/reliability.md).
 */
#ifndef UBDMA_HUGEPAGE_H
#define UBDMA_HUGEPAGE_H

#include <stddef.h>
#include <stdint.h>

#include <ubdma/core.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ubdma_huge ubdma_huge_t;

/* "Any node": no NUMA placement, the kernel's default policy applies. */
#define UBDMA_NODE_ANY (-1)

/*
 * ubdma_huge_alloc() flags.  The shortage policy is STRICT (the default, 0) or FALLBACK; the
 * backing is a memfd (default), a file on a hugetlbfs mount (HUGETLBFS) or libhugetlbfs
 * (LIBHUGETLBFS, only when the library was built with it); at most one backing flag.
 */
#define UBDMA_HUGE_STRICT 0x0	     /* fail with ENOMEM when hugepages are short */
#define UBDMA_HUGE_FALLBACK 0x1	     /* use 4 KiB pages instead, with a warning */
#define UBDMA_HUGE_HUGETLBFS 0x2     /* back with a file on a hugetlbfs mount of that page size */
#define UBDMA_HUGE_LIBHUGETLBFS 0x4  /* allocate with libhugetlbfs get_huge_pages() */
#define UBDMA_HUGE_PREFERRED 0x8     /* node is a preference (MPOL_PREFERRED), not a binding */

/* Hugepage counts of one page size, on one node or (node == UBDMA_NODE_ANY) the whole system. */
struct ubdma_huge_info {
	size_t pgsz;		 /* bytes: 2097152, 1073741824, ... */
	int node;		 /* NUMA node, or UBDMA_NODE_ANY for the system totals */
	unsigned long total;	 /* nr_hugepages */
	unsigned long free;	 /* free_hugepages (includes reserved ones) */
	unsigned long surplus;	 /* surplus_hugepages */
	unsigned long reserved;	 /* resv_hugepages (system rows only; 0 on node rows) */
};

/* A hugetlbfs mount. */
struct ubdma_huge_mount {
	char path[256];
	size_t pgsz; /* its pagesize= option, or the default hugepage size */
};

/**
 * ubdma_huge_alloc() - allocate @size bytes in pages of @pgsz bytes, optionally on NUMA node @node.
 * @size:    bytes; rounded up to a multiple of the page size.  0 -> EINVAL.
 * @pgsz:    2097152, 1073741824 or another size the kernel offers; 0 picks the default hugepage
 *           size (Hugepagesize in /proc/meminfo).
 * @node:    a NUMA node with memory, or UBDMA_NODE_ANY.  The pages are bound to it (MPOL_BIND)
 *           before they are faulted in, or preferred with UBDMA_HUGE_PREFERRED.
 * @flags:   UBDMA_HUGE_* above.
 * @regionp: receives the region; its memory is faulted in (present, zero-filled) and mapped
 *           read-write, shared (private with LIBHUGETLBFS and 4 KiB fallback).
 *
 * With UBDMA_HUGE_FALLBACK, when hugepages of @pgsz are short, not offered by the kernel, or (for
 * HUGETLBFS / LIBHUGETLBFS) have no mount, the region is made of 4 KiB anonymous pages on the
 * same node instead, a warning is printed on stderr (silenced by UBDMA_LOG=off or error) and
 * ubdma_huge_pgsz() returns 4096.  Such memory has no stable physical address: the phys backend
 * refuses it (ubdma_umem_lock() gives ENOTSUP).
 *
 * Return: 0; EINVAL for a zero @size, a @pgsz that is not a power of two of at least 4096,
 * @node below -1, several backing flags or unknown flags, or a NULL @regionp; ENODEV when @node
 * does not exist or has no memory; ENOTSUP (STRICT) when the kernel offers no hugepages of
 * @pgsz, when HUGETLBFS finds no hugetlbfs mount of that size, or when LIBHUGETLBFS was not
 * built in or does not use @pgsz; ENOMEM (STRICT) when there are not enough free hugepages of
 * that size (on @node when one is given): ubdma_last_error() names the size, the node, the
 * number needed and free, and the command that reserves more; any errno of memfd_create(2),
 * mkstemp(3), ftruncate(2), mmap(2) or mbind(2).  On failure nothing stays allocated.
 */
int ubdma_huge_alloc(size_t size, size_t pgsz, int node, int flags, ubdma_huge_t **regionp);

/** ubdma_huge_free() - unmap the region, release its pages and file, free it.  NULL is ignored. */
void ubdma_huge_free(ubdma_huge_t *region);

/*
 * The accessors below answer a NULL @region with NULL, 0 or UBDMA_NODE_ANY and set errno to
 * EINVAL and the sentence.
 */

/** ubdma_huge_addr() - the start of the region's memory, aligned to its page size. */
void *ubdma_huge_addr(const ubdma_huge_t *region);

/** ubdma_huge_len() - the region's length in bytes (the size asked, rounded up to pages). */
size_t ubdma_huge_len(const ubdma_huge_t *region);

/** ubdma_huge_pgsz() - the page size the region really got: the asked one, or 4096 after fallback. */
size_t ubdma_huge_pgsz(const ubdma_huge_t *region);

/** ubdma_huge_node() - the node the region was placed on, or UBDMA_NODE_ANY. */
int ubdma_huge_node(const ubdma_huge_t *region);

/**
 * ubdma_huge_path() - the hugetlbfs file behind the region (UBDMA_HUGE_HUGETLBFS), which exists
 * until ubdma_huge_free() so that another process can map it; NULL for other backings.
 */
const char *ubdma_huge_path(const ubdma_huge_t *region);

/**
 * ubdma_huge_sizes() - the hugepage sizes the kernel offers (/sys/kernel/mm/hugepages), smallest
 * first.
 * @sizes: array of @max entries (may be NULL when @max is 0); @nump receives the number of sizes,
 *         which may exceed @max (only @max are written).
 * Return: 0 (with *@nump 0 when the kernel has no hugepage support); EINVAL for a NULL @nump or
 * a NULL @sizes with @max > 0.
 */
int ubdma_huge_sizes(size_t *sizes, int max, int *nump);

/**
 * ubdma_huge_info() - hugepage counts for every size: first one system row per size
 * (node UBDMA_NODE_ANY), then one row per size and NUMA node, sizes smallest first, nodes in order.
 * @info: array of @max entries (may be NULL when @max is 0); @nump receives the number of rows,
 *        which may exceed @max.
 * Return: 0; EINVAL for a NULL @nump or a NULL @info with @max > 0.
 */
int ubdma_huge_info(struct ubdma_huge_info *info, int max, int *nump);

/**
 * ubdma_huge_mounts() - the hugetlbfs mounts of /proc/self/mounts, in mount order.
 * Return: 0; EINVAL for a NULL @nump or a NULL @mounts with @max > 0; any errno of opening
 * /proc/self/mounts.
 */
int ubdma_huge_mounts(struct ubdma_huge_mount *mounts, int max, int *nump);

/**
 * ubdma_huge_reserve() - set the number of persistent hugepages of @pgsz to @count, on @node or
 * (UBDMA_NODE_ANY) system-wide, through nr_hugepages in sysfs, as dpdk-hugepages.py does.
 * The kernel may find fewer contiguous free pages than asked; the count reached is checked.
 * Return: 0; EINVAL for a @pgsz that is not a power of two; ENOTSUP when the kernel offers no
 * hugepages of @pgsz; ENODEV for a node that does not exist; EACCES / EPERM when not root;
 * ENOMEM when the kernel reached fewer than @count pages (ubdma_last_error() says how many; the
 * pages it did get stay reserved).
 */
int ubdma_huge_reserve(size_t pgsz, int node, unsigned long count);

/**
 * ubdma_numa_node_of_pci() - the NUMA node PCI function @bdf is attached to.
 * @bdf:   "DDDD:BB:DD.F" or "BB:DD.F" (domain 0), hexadecimal.
 * @nodep: receives the node, or UBDMA_NODE_ANY when the platform does not say (no NUMA, or the
 *         device's locality spans every node).
 * When the library has hwloc, the device's first non-I/O ancestor in the topology (a package,
 * a NUMA group or the machine) and its nodeset give the node; without hwloc, or when hwloc does
 * not list the device, sysfs numa_node does.
 * Return: 0; EINVAL for a NULL argument or a malformed @bdf; ENODEV when no such device exists.
 */
int ubdma_numa_node_of_pci(const char *bdf, int *nodep);

/**
 * ubdma_numa_nodes() - the NUMA nodes that have memory (N_MEMORY), in order.
 * @nodes: array of @max entries (may be NULL when @max is 0); @nump receives the count (1 with
 *         node 0 on a machine without NUMA).
 * Return: 0; EINVAL for a NULL @nump or a NULL @nodes with @max > 0.
 */
int ubdma_numa_nodes(int *nodes, int max, int *nump);

#ifdef __cplusplus
}
#endif
#endif /* UBDMA_HUGEPAGE_H */
