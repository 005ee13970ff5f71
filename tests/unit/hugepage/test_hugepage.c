/*
 * test_hugepage.c - the hugepage layer against what the kernel says on its own: page sizes and
 * counts from sysfs, page sizes of mappings from smaps, the node of each page from
 * get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR) and move_pages(2), the file on a hugetlbfs mount we
 * mount ourselves, and the shortage policy (strict: ENOMEM with a sentence; fallback: 4 KiB pages
 * that the phys backend refuses).  Each case runs for every hugepage size the host offers and
 * SKIPs, saying why, where a size, root or a mount is missing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <linux/mempolicy.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <ubdma/ubdma.h>

#include "../testutil.h"
#include "hugepage/hugemem.h"

#define MB (1UL << 20)

static unsigned long sys_ul(const char *fmt, ...)
{
	char path[256];
	unsigned long v = 0;
	va_list ap;
	FILE *f;

	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	if ((f = fopen(path, "re"))) {
		if (fscanf(f, "%lu", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v;
}

/* Free pages of a size not promised to a mapping yet: what an allocation can still get. */
static unsigned long avail(size_t pgsz)
{
	return sys_ul("/sys/kernel/mm/hugepages/hugepages-%zukB/free_hugepages", pgsz / 1024) -
	       sys_ul("/sys/kernel/mm/hugepages/hugepages-%zukB/resv_hugepages", pgsz / 1024);
}

/* smaps KernelPageSize (bytes) of the mapping at addr. */
static size_t kernel_pgsz(const void *addr)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	size_t kb = 0;
	int in = 0;

	while (f && fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' '))
			in = (uintptr_t)addr >= s && (uintptr_t)addr < e;
		else if (in && sscanf(line, "KernelPageSize: %zu kB", &kb) == 1)
			break;
	}
	if (f)
		fclose(f);
	return kb * 1024;
}

/*
 * Mappings of hugetlb or memfd memory, the only kinds the allocator makes: what a failed allocation
 * must not leave behind.  Not every line of the maps file: a sanitizer runtime maps memory of its
 * own at any time (TSan's shadow and traces), which would make a total count flaky.
 */
static int count_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	int n = 0;

	while (f && fgets(line, sizeof(line), f))
		n += strstr(line, "anon_hugepage") || strstr(line, "/memfd:") || strstr(line, "hugetlbfs") != NULL;
	if (f)
		fclose(f);
	return n;
}

/* Mappings that overlap [lo, hi]: what a placed allocation must not leave behind. */
static int count_maps_in(uintptr_t lo, uintptr_t hi)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	int n = 0;

	while (f && fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx", &s, &e) == 2 && s <= hi && e > lo)
			n++;
	}
	if (f)
		fclose(f);
	return n;
}

/* The sizes this host offers, read straight from sysfs. */
static int host_sizes(size_t *v, int max)
{
	DIR *d = opendir("/sys/kernel/mm/hugepages");
	struct dirent *de;
	int n = 0;
	unsigned long kb;

	while (d && (de = readdir(d)))
		if (sscanf(de->d_name, "hugepages-%lukB", &kb) == 1 && n < max)
			v[n++] = kb * 1024;
	if (d)
		closedir(d);
	return n;
}

static int offered(size_t pgsz)
{
	size_t v[8];
	int n = host_sizes(v, 8);

	for (int i = 0; i < n; i++)
		if (v[i] == pgsz)
			return 1;
	return 0;
}

/* --------------------------------------------------------------- discovery */

static void test_sizes(void **state)
{
	size_t want[8], got[8];
	int nw = host_sizes(want, 8), n = -1;

	(void)state;
	assert_int_equal(ubdma_huge_sizes(got, 8, &n), 0);
	assert_int_equal(n, nw);
	for (int i = 0; i < nw; i++) {
		int found = 0;
		for (int j = 0; j < n; j++)
			found |= got[j] == want[i];
		assert_true(found);
	}
	for (int j = 1; j < n; j++)
		assert_true(got[j - 1] < got[j]);
	assert_int_equal(ubdma_huge_sizes(NULL, 0, &n), 0);
	assert_int_equal(n, nw);
	assert_int_equal(ubdma_huge_sizes(NULL, 1, &n), EINVAL);
	assert_int_equal(ubdma_huge_sizes(got, 8, NULL), EINVAL);
}

static void test_info(void **state)
{
	struct ubdma_huge_info info[64];
	int n, nodes[8], nn, nsz;
	size_t sz[8];

	(void)state;
	assert_int_equal(ubdma_numa_nodes(nodes, 8, &nn), 0);
	assert_true(nn >= 1);
	assert_int_equal(nodes[0], 0);
	assert_int_equal(ubdma_huge_sizes(sz, 8, &nsz), 0);
	assert_int_equal(ubdma_huge_info(info, 64, &n), 0);
	assert_int_equal(n, nsz * (1 + nn));
	for (int i = 0; i < nsz; i++) {
		const struct ubdma_huge_info *r = &info[i];
		assert_int_equal(r->node, UBDMA_NODE_ANY);
		assert_int_equal(r->pgsz, sz[i]);
		assert_int_equal(r->total, sys_ul("/sys/kernel/mm/hugepages/hugepages-%zukB/nr_hugepages", sz[i] / 1024));
	}
	for (int i = nsz; i < n && i < 64; i++) {
		const struct ubdma_huge_info *r = &info[i];
		assert_true(r->node >= 0);
		assert_int_equal(r->total, sys_ul("/sys/devices/system/node/node%d/hugepages/hugepages-%zukB/nr_hugepages",
						  r->node, r->pgsz / 1024));
		assert_true(r->free <= r->total + r->surplus);
	}
	assert_int_equal(ubdma_huge_info(NULL, 0, &n), 0);
	assert_int_equal(ubdma_huge_info(info, 1, NULL), EINVAL);
}

/* ------------------------------------------------------------- allocation */

static void alloc_one(size_t pgsz)
{
	ubdma_huge_t *r;
	int err;

	if (!hugepages_ensure(pgsz / 1024, 2)) {
		fprintf(stderr, "SKIP part: cannot get 2 free %zu kB hugepages\n", pgsz / 1024);
		return;
	}
	err = ubdma_huge_alloc(pgsz + 1, pgsz, UBDMA_NODE_ANY, UBDMA_HUGE_STRICT, &r);
	assert_int_equal(err, 0);
	char *p = ubdma_huge_addr(r);
	assert_int_equal(ubdma_huge_len(r), 2 * pgsz); /* rounded up */
	assert_int_equal(ubdma_huge_pgsz(r), pgsz);
	assert_int_equal(ubdma_huge_node(r), UBDMA_NODE_ANY);
	assert_null(ubdma_huge_path(r));
	assert_int_equal((uintptr_t)p % pgsz, 0);
	assert_int_equal(kernel_pgsz(p), pgsz);
	/* faulted in and zero: pagemap shows the pages present without touching them */
	assert_true(pagemap_entry(p) >> 63);
	assert_true(pagemap_entry(p + pgsz) >> 63);
	assert_int_equal(p[0], 0);
	assert_int_equal(p[2 * pgsz - 1], 0);
	memset(p, 0xa5, 2 * pgsz);
	ubdma_huge_free(r);
}

static void test_alloc_each_size(void **state)
{
	size_t sz[8];
	int n = host_sizes(sz, 8);

	(void)state;
	if (n == 0)
		SKIP_WHY("the kernel offers no hugepages");
	for (int i = 0; i < n; i++)
		alloc_one(sz[i]);
	/* 0 picks the default size */
	ubdma_huge_t *r;
	if (hugepages_ensure(2048, 1) && ubdma_huge_alloc(4096, 0, UBDMA_NODE_ANY, 0, &r) == 0) {
		assert_true(ubdma_huge_pgsz(r) >= 2 * MB);
		ubdma_huge_free(r);
	}
}

static void test_bad_args(void **state)
{
	ubdma_huge_t *r = NULL;

	(void)state;
	assert_int_equal(ubdma_huge_alloc(0, 2 * MB, -1, 0, &r), EINVAL);
	assert_int_equal(ubdma_huge_alloc(2 * MB, 3000, -1, 0, &r), EINVAL);
	assert_int_equal(ubdma_huge_alloc(2 * MB, 3 * MB, -1, 0, &r), EINVAL);
	assert_int_equal(ubdma_huge_alloc(2 * MB, 2 * MB, -2, 0, &r), EINVAL);
	assert_int_equal(ubdma_huge_alloc(2 * MB, 2 * MB, -1, 0x100, &r), EINVAL);
	assert_int_equal(ubdma_huge_alloc(2 * MB, 2 * MB, -1, UBDMA_HUGE_HUGETLBFS | UBDMA_HUGE_LIBHUGETLBFS, &r),
			 EINVAL);
	assert_int_equal(ubdma_huge_alloc(2 * MB, 2 * MB, -1, 0, NULL), EINVAL);
	assert_int_equal(ubdma_huge_alloc(2 * MB, 2 * MB, 999, 0, &r), ENODEV);
	assert_non_null(strstr(ubdma_last_error(), "node 999"));
	assert_null(r);
	ubdma_huge_free(NULL);
}

/* A size the kernel does not offer: ENOTSUP under STRICT, 4 KiB pages under FALLBACK. */
static void test_size_not_offered(void **state)
{
	size_t pgsz = offered(1UL << 30) ? (16UL << 30) : (1UL << 30);
	ubdma_huge_t *r;

	(void)state;
	assert_int_equal(ubdma_huge_alloc(pgsz, pgsz, -1, UBDMA_HUGE_STRICT, &r), ENOTSUP);
	assert_non_null(strstr(ubdma_last_error(), "offers no"));
	assert_int_equal(ubdma_huge_alloc(8 * MB, pgsz, -1, UBDMA_HUGE_FALLBACK, &r), 0);
	assert_int_equal(ubdma_huge_pgsz(r), 4096);
	assert_int_equal(ubdma_huge_len(r), 8 * MB);
	ubdma_huge_free(r);
}

/* STRICT: one page more than is free -> ENOMEM naming the shortage; nothing left behind. */
static void test_strict_shortage(void **state)
{
	ubdma_huge_t *r = NULL;
	char want[64];

	(void)state;
	if (!offered(2 * MB))
		SKIP_WHY("no 2 MiB hugepages on this kernel");
	unsigned long before = avail(2 * MB), need = before + 1;
	int maps = count_maps();
	assert_int_equal(ubdma_huge_alloc(need * 2 * MB, 2 * MB, UBDMA_NODE_ANY, UBDMA_HUGE_STRICT, &r), ENOMEM);
	assert_null(r);
	const char *msg = ubdma_last_error();
	fprintf(stderr, "message: %s\n", msg);
	assert_non_null(strstr(msg, "not enough 2 MiB hugepages"));
	snprintf(want, sizeof(want), "need %lu, %lu free", need, before);
	assert_non_null(strstr(msg, want));
	assert_non_null(strstr(msg, "ubdma hugepages --reserve"));
	assert_int_equal(avail(2 * MB), before);
	assert_int_equal(count_maps(), maps);
	/* the same on node 0 */
	unsigned long n0 = sys_ul("/sys/devices/system/node/node0/hugepages/hugepages-2048kB/free_hugepages");
	assert_int_equal(ubdma_huge_alloc((n0 + 1) * 2 * MB, 2 * MB, 0, UBDMA_HUGE_STRICT, &r), ENOMEM);
	assert_non_null(strstr(ubdma_last_error(), "on node 0"));
}

/* FALLBACK: the same shortage gives 4 KiB pages, and the phys backend refuses them. */
static void test_fallback_phys_refuses(void **state)
{
	ubdma_huge_t *r = NULL;
	ubdma_ctx_t *ctx;
	ubdma_umem_t *c;

	(void)state;
	if (!offered(2 * MB))
		SKIP_WHY("no 2 MiB hugepages on this kernel");
	unsigned long need = avail(2 * MB) + 1;
	assert_int_equal(ubdma_huge_alloc(need * 2 * MB, 2 * MB, 0, UBDMA_HUGE_FALLBACK, &r), 0);
	char *p = ubdma_huge_addr(r);
	assert_int_equal(ubdma_huge_pgsz(r), 4096);
	assert_int_equal(ubdma_huge_node(r), 0);
	assert_int_equal(kernel_pgsz(p), 4096);
	assert_true(pagemap_entry(p + ubdma_huge_len(r) - 1) >> 63);
	if (ubdma_ctx_open(UBDMA_BACKEND_PHYS, &ctx) == 0) {
		assert_int_equal(ubdma_umem_lock(ctx, p, 2 * MB, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &c), ENOTSUP);
		assert_non_null(strstr(ubdma_last_error(), "only hugetlb memory"));
		ubdma_ctx_close(ctx);
	} else {
		fprintf(stderr, "SKIP part: phys backend unavailable (%s)\n", ubdma_last_error());
	}
	ubdma_huge_free(r);
}

/* A hugepage region locks on phys, and its IOVAs are the physical addresses pagemap gives. */
static void test_phys_accepts_huge(void **state)
{
	ubdma_huge_t *r;
	ubdma_ctx_t *ctx;
	ubdma_umem_t *c;

	(void)state;
	if (!hugepages_ensure(2048, 4))
		SKIP_WHY("cannot get 4 free 2 MiB hugepages");
	if (ubdma_ctx_open(UBDMA_BACKEND_PHYS, &ctx))
		SKIP_WHY("phys backend unavailable: %s", ubdma_last_error());
	assert_int_equal(ubdma_huge_alloc(8 * MB, 2 * MB, UBDMA_NODE_ANY, 0, &r), 0);
	char *p = ubdma_huge_addr(r);
	assert_int_equal(ubdma_umem_lock(ctx, p, 8 * MB, UBDMA_UMEM_WRITE, &c), 0);
	for (size_t off = 0; off < 8 * MB; off += 2 * MB)
		assert_int_equal(ubdma_umem_iova(c, p + off + 123), pagemap_pa(p + off + 123));
	ubdma_umem_unlock(c);
	ubdma_ctx_close(ctx);
	ubdma_huge_free(r);
}

/* ------------------------------------------------------------------- NUMA */

/* The node of each page, asked two ways, and the policy on the mapping. */
static void check_on_node(char *p, size_t len, size_t pgsz, int node)
{
	int mode = -1;
	unsigned long mask[16] = { 0 };

	assert_int_equal(syscall(SYS_get_mempolicy, &mode, mask, 16 * 64 + 1, p, MPOL_F_ADDR), 0);
	assert_int_equal(mode, MPOL_BIND);
	assert_int_equal(mask[0], 1UL << node);
	for (size_t off = 0; off < len; off += pgsz) {
		int n = -1, status = -1;
		void *page = p + off;
		assert_int_equal(syscall(SYS_get_mempolicy, &n, NULL, 0, page, MPOL_F_NODE | MPOL_F_ADDR), 0);
		assert_int_equal(n, node);
		/* move_pages with no target nodes only reports where each page is */
		assert_int_equal(syscall(SYS_move_pages, 0, 1UL, &page, NULL, &status, 0), 0);
		assert_int_equal(status, node);
	}
}

static void test_node_placement(void **state)
{
	int nodes[64], nn;
	ubdma_huge_t *r;

	(void)state;
	assert_int_equal(ubdma_numa_nodes(nodes, 64, &nn), 0);
	for (int i = 0; i < nn && i < 64; i++) {
		int node = nodes[i];
		if (sys_ul("/sys/devices/system/node/node%d/hugepages/hugepages-2048kB/free_hugepages", node) < 2) {
			fprintf(stderr, "SKIP part: node %d has fewer than 2 free 2 MiB hugepages\n", node);
			continue;
		}
		assert_int_equal(ubdma_huge_alloc(4 * MB, 2 * MB, node, 0, &r), 0);
		assert_int_equal(ubdma_huge_node(r), node);
		check_on_node(ubdma_huge_addr(r), 4 * MB, 2 * MB, node);
		ubdma_huge_free(r);
		/* 4 KiB pages on the node, too */
		assert_int_equal(ubdma_huge_alloc(64 * 1024, 4096, node, 0, &r), 0);
		assert_int_equal(ubdma_huge_pgsz(r), 4096);
		check_on_node(ubdma_huge_addr(r), 64 * 1024, 4096, node);
		ubdma_huge_free(r);
	}
	fprintf(stderr, "checked %d node(s)\n", nn);
}

/*
 * The allocator under every DMA allocation (hugemem.h), as the busdma layer calls it: an address
 * inside a range on an alignment, literal 4 KiB pages, a preferred node, hugetlb shortage as
 * HUGE_SHORT and a range with no room as EADDRNOTAVAIL, nothing left mapped on failure.
 */
static void test_map_internal(void **state)
{
	const uintptr_t lo = 1UL << 30, hi = (3UL << 29) - 1; /* low, and clear of ASan's shadow */
	struct huge_req rq = { .len = 16 * 4096, .pgsz = 4096, .align = 64 * 1024, .node = 0, .preferred = 1,
			       .place = 1, .lo = lo, .hi = hi };
	int maps = count_maps(), mode = -1;
	unsigned long mask[16] = { 0 };
	void *p;

	(void)state;
	assert_int_equal(huge_map(&rq, &p), 0);
	assert_true((uintptr_t)p >= lo && (uintptr_t)p + rq.len - 1 <= hi);
	assert_int_equal((uintptr_t)p & (64 * 1024 - 1), 0);
	assert_int_equal(kernel_pgsz(p), 4096);
	for (size_t i = 0; i < rq.len; i++)
		assert_int_equal(((char *)p)[i], 0);
	assert_int_equal(syscall(SYS_get_mempolicy, &mode, mask, 16 * 64 + 1, p, MPOL_F_ADDR), 0);
	assert_int_equal(mode, MPOL_PREFERRED);
	assert_int_equal(mask[0], 1UL);
	huge_unmap(p, rq.len);

	/* no room: a range of one page for two */
	rq.lo = lo;
	rq.hi = lo + 4096 - 1;
	rq.len = 2 * 4096;
	rq.align = 0;
	assert_int_equal(huge_map(&rq, &p), EADDRNOTAVAIL);
	assert_int_equal(count_maps_in(lo, hi), 0);
	assert_int_equal(count_maps(), maps);

	if (!avail(2 * MB)) {
		fprintf(stderr, "SKIP part: no free 2 MiB hugepages\n");
		return;
	}
	rq = (struct huge_req){ .len = 2 * MB, .pgsz = 2 * MB, .node = UBDMA_NODE_ANY };
	assert_int_equal(huge_map(&rq, &p), 0);
	assert_int_equal(kernel_pgsz(p), 2 * MB);
	huge_unmap(p, rq.len);
	/* far more than exist: the reservation fails at mmap */
	rq.len = (size_t)1 << 40;
	assert_int_equal(huge_map(&rq, &p), HUGE_SHORT);
	assert_int_equal(count_maps(), maps);
}

static void test_pci_node(void **state)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *de;
	int node = 42, n = 0, nn, nodes[64];

	(void)state;
	ubdma_numa_nodes(nodes, 64, &nn);
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		assert_int_equal(ubdma_numa_node_of_pci(de->d_name, &node), 0);
		/* on one node, hwloc puts every device there; the sysfs fallback may not know (-1) */
		assert_true(node == UBDMA_NODE_ANY || (node >= 0 && node < 64));
		if (nn == 1)
			assert_true(node == 0 || node == UBDMA_NODE_ANY);
		if (n++ == 0) {
			/* the short form of the same device */
			int node2;
			assert_int_equal(ubdma_numa_node_of_pci(de->d_name + 5, &node2), de->d_name[0] == '0' ? 0 : ENODEV);
		}
		fprintf(stderr, "%s: node %d\n", de->d_name, node);
	}
	if (d)
		closedir(d);
	assert_int_equal(ubdma_numa_node_of_pci("0000:ff:1f.7", &node), ENODEV);
	assert_non_null(strstr(ubdma_last_error(), "no PCI device 0000:ff:1f.7"));
	assert_int_equal(ubdma_numa_node_of_pci("0000:00:20.0", &node), EINVAL); /* device > 0x1f */
	assert_int_equal(ubdma_numa_node_of_pci("00:1f.8", &node), EINVAL);
	assert_int_equal(ubdma_numa_node_of_pci("garbage", &node), EINVAL);
	assert_int_equal(ubdma_numa_node_of_pci("+000:00:00.0", &node), EINVAL);
	assert_int_equal(ubdma_numa_node_of_pci(NULL, &node), EINVAL);
	assert_int_equal(ubdma_numa_node_of_pci("00:00.0", NULL), EINVAL);
}

/* -------------------------------------------------------- other backings */

static char mnt[64];

static void test_hugetlbfs_file(void **state)
{
	ubdma_huge_t *r;
	struct stat st;

	(void)state;
	if (!hugepages_ensure(2048, 4))
		SKIP_WHY("cannot get 4 free 2 MiB hugepages");
	/* no mount of our size yet: ENOTSUP naming the fix; FALLBACK turns it into 4 KiB pages */
	struct ubdma_huge_mount m[16];
	int nm = 0, have = 0;
	ubdma_huge_mounts(m, 16, &nm);
	for (int i = 0; i < nm && i < 16; i++)
		have |= m[i].pgsz == 2 * MB;
	if (!have) {
		assert_int_equal(ubdma_huge_alloc(2 * MB, 2 * MB, -1, UBDMA_HUGE_HUGETLBFS, &r), ENOTSUP);
		assert_non_null(strstr(ubdma_last_error(), "mount -t hugetlbfs"));
	}
	snprintf(mnt, sizeof(mnt), "/tmp/ubdma-hugetlbfs-XXXXXX");
	if (!mkdtemp(mnt))
		SKIP_WHY("mkdtemp: %s", strerror(errno));
	if (mount("nodev", mnt, "hugetlbfs", 0, "pagesize=2M")) {
		rmdir(mnt);
		SKIP_WHY("cannot mount hugetlbfs on %s: %s (needs root)", mnt, strerror(errno));
	}
	assert_int_equal(ubdma_huge_mounts(m, 16, &nm), 0);
	int found = 0;
	for (int i = 0; i < nm && i < 16; i++)
		found |= !strcmp(m[i].path, mnt) && m[i].pgsz == 2 * MB;
	assert_true(found);

	int err = ubdma_huge_alloc(4 * MB, 2 * MB, 0, UBDMA_HUGE_HUGETLBFS, &r);
	assert_int_equal(err, 0);
	const char *path = ubdma_huge_path(r);
	assert_non_null(path);
	char *p = ubdma_huge_addr(r);
	assert_int_equal(kernel_pgsz(p), 2 * MB);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 4 * MB);
	check_on_node(p, 4 * MB, 2 * MB, 0);
	/* another mapping of the file sees the same memory: it is shareable by path */
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	char *q = mmap(NULL, 2 * MB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 2 * MB);
	close(fd);
	assert_true(q != MAP_FAILED);
	p[2 * MB + 7] = 0x3c;
	assert_int_equal(q[7], 0x3c);
	munmap(q, 2 * MB);
	char *saved = strdup(path);
	ubdma_huge_free(r);
	assert_int_equal(stat(saved, &st), -1); /* removed at free */
	free(saved);
	/*
	 * libhugetlbfs reads the mount table once, when it is loaded: a mount made since is
	 * invisible to it in this process, so its case runs in a fresh one (this program again).
	 */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl("/proc/self/exe", "test_hugepage", "--libhugetlbfs", (char *)NULL);
		_exit(127);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		fprintf(stderr, "SKIP part: libhugetlbfs not built in\n");
	else
		assert_int_equal(WEXITSTATUS(status), 0);
}

/* Runs after test_hugetlbfs_file, also when one of its assertions failed. */
static int unmount_ours(void **state)
{
	(void)state;
	if (mnt[0] && umount(mnt) == 0)
		rmdir(mnt);
	mnt[0] = '\0';
	return 0;
}

/* ------------------------------------------------------------ reservation */

static void test_reserve(void **state)
{
	(void)state;
	assert_int_equal(ubdma_huge_reserve(3000, -1, 1), EINVAL);
	if (!offered(1UL << 30))
		assert_int_equal(ubdma_huge_reserve(1UL << 30, -1, 1), ENOTSUP);
	if (!offered(2 * MB))
		SKIP_WHY("no 2 MiB hugepages on this kernel");
	assert_int_equal(ubdma_huge_reserve(2 * MB, 999, 1), ENODEV);
	if (geteuid())
		SKIP_WHY("not root: nr_hugepages is not writable");
	unsigned long total = sys_ul("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages");
	unsigned long n0 = sys_ul("/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages");
	assert_int_equal(ubdma_huge_reserve(2 * MB, -1, total + 1), 0);
	assert_int_equal(sys_ul("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"), total + 1);
	assert_int_equal(ubdma_huge_reserve(2 * MB, 0, n0 + 2), 0);
	assert_int_equal(sys_ul("/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages"), n0 + 2);
	assert_int_equal(ubdma_huge_reserve(2 * MB, -1, total), 0);
	assert_int_equal(sys_ul("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"), total);
}

/* The libhugetlbfs backing, in a process started after the mount: exit 0, 77 (not built), 1. */
static int libhugetlbfs_child(void)
{
	ubdma_huge_t *r;
	int n = -1;
#ifdef UBDMA_HAVE_LIBHUGETLBFS
	int err = ubdma_huge_alloc(4 * MB, 2 * MB, 0, UBDMA_HUGE_LIBHUGETLBFS, &r);
	if (err) {
		fprintf(stderr, "libhugetlbfs allocation failed: %s (%s)\n", strerror(err), ubdma_last_error());
		return 1;
	}
	char *p = ubdma_huge_addr(r);
	if (kernel_pgsz(p) != 2 * MB || ubdma_huge_pgsz(r) != 2 * MB ||
	    syscall(SYS_get_mempolicy, &n, NULL, 0, p, MPOL_F_NODE | MPOL_F_ADDR) || n != 0) {
		fprintf(stderr, "libhugetlbfs region: page size %zu, node %d\n", kernel_pgsz(p), n);
		return 1;
	}
	p[4 * MB - 1] = 1;
	ubdma_huge_free(r);
	fprintf(stderr, "libhugetlbfs: 4 MiB of 2 MiB pages on node 0\n");
	return 0;
#else
	(void)n;
	return ubdma_huge_alloc(4 * MB, 2 * MB, 0, UBDMA_HUGE_LIBHUGETLBFS, &r) == ENOTSUP ? 77 : 1;
#endif
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--libhugetlbfs"))
		return libhugetlbfs_child();

	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_info),
		cmocka_unit_test(test_alloc_each_size),
		cmocka_unit_test(test_bad_args),
		cmocka_unit_test(test_size_not_offered),
		cmocka_unit_test(test_strict_shortage),
		cmocka_unit_test(test_fallback_phys_refuses),
		cmocka_unit_test(test_phys_accepts_huge),
		cmocka_unit_test(test_node_placement),
		cmocka_unit_test(test_map_internal),
		cmocka_unit_test(test_pci_node),
		cmocka_unit_test_teardown(test_hugetlbfs_file, unmount_ours),
		cmocka_unit_test(test_reserve),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
