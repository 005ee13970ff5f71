/*
 * huge.h - what the hugepage layer shares between its files: the region object, sysfs queries,
 * the NUMA policy calls, and the human-readable page size used in messages.
 */
#ifndef UBDMA_HUGE_H
#define UBDMA_HUGE_H

#include <stddef.h>

#include <ubdma/ubdma.h>

#define HUGE_SYSFS "/sys/kernel/mm/hugepages"
#define NODE_SYSFS "/sys/devices/system/node"

enum huge_kind { HUGE_MEMFD, HUGE_FILE, HUGE_LIBHUGETLBFS, HUGE_ANON };

struct ubdma_huge {
	void *addr;
	size_t len;
	size_t pgsz;	/* what the region got: the asked size, or PAGE_4K after fallback */
	int node;
	enum huge_kind kind;
	char *path;	/* HUGE_FILE: the file on the hugetlbfs mount, unlinked at free */
};

/* The default hugepage size (Hugepagesize of /proc/meminfo), or 0 when there is none. */
size_t huge_default_pgsz(void);

/* Whether the kernel offers hugepages of pgsz (a hugepages-<kB>kB directory exists). */
int huge_size_offered(size_t pgsz);

/* Whether node exists and has memory. */
int huge_node_valid(int node);

/* Free pages of pgsz on node (UBDMA_NODE_ANY: system free minus reserved), or 0. */
unsigned long huge_free_pages(size_t pgsz, int node);

/* "2 MiB", "1 GiB", "64 KiB": pgsz for messages. */
const char *huge_pgsz_str(size_t pgsz, char *buf, size_t len);

/*
 * Apply a NUMA policy to [addr, addr + len) (MPOL_BIND, or MPOL_PREFERRED when preferred) before
 * its pages are faulted in; node UBDMA_NODE_ANY is a no-op.  0 or errno.
 */
int huge_mbind(void *addr, size_t len, int node, int preferred);

/* Set the calling thread's policy to node (saving the old one in *saved) and put it back. */
struct huge_policy {
	int mode;
	unsigned long mask[16];
	int set;
};
int huge_policy_push(int node, int preferred, struct huge_policy *saved);
void huge_policy_pop(const struct huge_policy *saved);

#endif
