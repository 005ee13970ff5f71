/*
 * test_huge_numa - the hugepage layer in the test-bed guest: hugepage regions placed on each NUMA
 * node (checked page by page with get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR) and move_pages(2)),
 * the strict policy when one node runs short while the system as a whole does not, the preferred
 * policy spilling to the other node, the hugetlbfs file backing on the guest's /dev/hugepages,
 * the NUMA node of the test bed's devices, and a hugepage region locked on the vfio backend with
 * a device attached.
 *
 * It runs in both boots: the default one (one node) and the two-node one (-numa node x2, see
 * meson.build), where the per-node cases really choose between nodes.
 * Exit status: 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <linux/mempolicy.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ubdma/ubdma.h>

#include "check.h"

#define MIB (1ul << 20)

static unsigned long node_free(int node)
{
	char path[160];
	unsigned long v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/hugepages/hugepages-2048kB/free_hugepages",
		 node);
	if ((f = fopen(path, "re"))) {
		if (fscanf(f, "%lu", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v;
}

/* How many pages of [p, p + len) sit on node, asked of the kernel two ways; -1 if they disagree. */
static long pages_on(char *p, size_t len, int node)
{
	long n = 0;

	for (size_t off = 0; off < len; off += 2 * MIB) {
		int a = -1, b = -1;
		void *page = p + off;
		if (syscall(SYS_get_mempolicy, &a, NULL, 0, page, MPOL_F_NODE | MPOL_F_ADDR) ||
		    syscall(SYS_move_pages, 0, 1ul, &page, NULL, &b, 0) || a != b)
			return -1;
		n += a == node;
	}
	return n;
}

static void per_node(const int *nodes, int nn)
{
	for (int i = 0; i < nn; i++) {
		ubdma_huge_t *r;
		int err = ubdma_huge_alloc(4 * MIB, 2 * MIB, nodes[i], 0, &r);
		check(!err, "4 MiB of 2 MiB pages bound to node %d: %s", nodes[i], err ? ubdma_last_error() : "0");
		if (err)
			continue;
		check(pages_on(ubdma_huge_addr(r), 4 * MIB, nodes[i]) == 2, "both pages are on node %d", nodes[i]);
		ubdma_huge_free(r);
	}
}

/* Node n short, the others not: STRICT fails naming the node; PREFERRED takes pages elsewhere. */
static void node_shortage(int n)
{
	unsigned long fr = node_free(n), all = 0;
	ubdma_huge_t *r = NULL;
	int err;

	for (int k = 0; k < 8; k++)
		all += node_free(k);
	if (all < fr + 1) {
		printf("# skip node shortage: no other node has free pages\n");
		return;
	}
	err = ubdma_huge_alloc((fr + 1) * 2 * MIB, 2 * MIB, n, UBDMA_HUGE_STRICT, &r);
	check(err == ENOMEM && strstr(ubdma_last_error(), "node"), "node %d short (%lu free, %lu in all): %s", n, fr,
	      all, ubdma_last_error());
	check(node_free(n) == fr, "nothing taken from node %d", n);
	err = ubdma_huge_alloc((fr + 1) * 2 * MIB, 2 * MIB, n, UBDMA_HUGE_PREFERRED, &r);
	check(!err, "PREFERRED node %d with %lu pages: %s", n, fr + 1, err ? ubdma_last_error() : "0");
	if (!err) {
		long on = pages_on(ubdma_huge_addr(r), ubdma_huge_len(r), n);
		check(on == (long)fr, "%ld pages on node %d, 1 elsewhere", on, n);
		ubdma_huge_free(r);
	}
}

static void device_nodes(void)
{
	const char *envs[] = { "UBDMA_VM_NVME", "UBDMA_VM_NIC" };

	for (int i = 0; i < 2; i++) {
		const char *bdf = getenv(envs[i]);
		int node = 42, err;
		if (!bdf)
			continue;
		err = ubdma_numa_node_of_pci(bdf, &node);
		check(!err && node >= UBDMA_NODE_ANY && node < 8, "%s %s is on node %d", envs[i], bdf, node);
	}
}

static void hugetlbfs_file(void)
{
	ubdma_huge_t *r;
	int err = ubdma_huge_alloc(2 * MIB, 2 * MIB, UBDMA_NODE_ANY, UBDMA_HUGE_HUGETLBFS, &r);
	const char *mnt = getenv("UBDMA_VM_HUGETLBFS");

	check(!err, "hugetlbfs-backed region: %s", err ? ubdma_last_error() : "0");
	if (err)
		return;
	check(mnt && !strncmp(ubdma_huge_path(r), mnt, strlen(mnt)), "its file %s is on %s", ubdma_huge_path(r),
	      mnt ? mnt : "(unset)");
	ubdma_huge_free(r);
}

/* A region locked on vfio with the NVMe attached: one IOVA run a hugepage. */
static void vfio_lock(void)
{
	const char *bdf = getenv("UBDMA_VM_NVME");
	ubdma_ctx_t *ctx;
	ubdma_pci_t *dev;
	ubdma_huge_t *r;
	ubdma_umem_t *c;
	int node = UBDMA_NODE_ANY;

	if (!bdf || ubdma_ctx_open(UBDMA_BACKEND_AUTO, &ctx)) {
		printf("# skip vfio lock: no NVMe or no context\n");
		return;
	}
	check(ubdma_ctx_backend(ctx) == UBDMA_BACKEND_VFIO, "AUTO picks vfio here: %s", ubdma_ctx_backend_reason(ctx));
	if (ubdma_pci_open(ctx, bdf, &dev)) {
		printf("# skip vfio lock: %s\n", ubdma_last_error());
		ubdma_ctx_close(ctx);
		return;
	}
	ubdma_numa_node_of_pci(bdf, &node);
	int err = ubdma_huge_alloc(8 * MIB, 2 * MIB, node, 0, &r);
	check(!err, "region on the device's node %d: %s", node, err ? ubdma_last_error() : "0");
	if (!err) {
		char *p = ubdma_huge_addr(r);
		err = ubdma_umem_lock(ctx, p, 8 * MIB, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &c);
		check(!err, "umem_lock on vfio: %s", err ? ubdma_last_error() : "0");
		if (!err) {
			uint64_t i0 = ubdma_umem_iova(c, p);
			check(i0 != UBDMA_BAD_IOVA && ubdma_umem_iova(c, p + 2 * MIB - 1) == i0 + 2 * MIB - 1,
			      "IOVA %#llx, linear across the hugepage", (unsigned long long)i0);
			ubdma_umem_unlock(c);
		}
		ubdma_huge_free(r);
	}
	ubdma_pci_close(dev);
	ubdma_ctx_close(ctx);
}

int main(void)
{
	int nodes[8], nn = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	ubdma_numa_nodes(nodes, 8, &nn);
	nn = nn < 8 ? nn : 8;
	printf("# %d NUMA node(s) with memory\n", nn);
	per_node(nodes, nn);
	if (nn > 1)
		node_shortage(nodes[nn - 1]);
	device_nodes();
	hugetlbfs_file();
	vfio_lock();
	printf("# %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
