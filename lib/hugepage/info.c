/*
 * info.c - what the kernel says about hugepages and NUMA nodes: the page sizes it offers
 * (/sys/kernel/mm/hugepages/hugepages-<kB>kB), their counts system-wide and per node
 * (/sys/devices/system/node/node<N>/hugepages), the hugetlbfs mounts, the nodes with memory,
 * and setting nr_hugepages.  Everything is read fresh on each call: the counts move under us as
 * other processes allocate, and a cache would only make `ubdma status` lie.
 */
#include <dirent.h>
#include <errno.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/page.h"
#include "base/sysfs.h"
#include "hugepage/huge.h"

size_t huge_default_pgsz(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[128];
	unsigned long kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Hugepagesize: %lu kB", &kb) == 1)
			break;
	fclose(f);
	return (size_t)kb * 1024;
}

static void size_dir(char *buf, size_t len, size_t pgsz)
{
	snprintf(buf, len, "hugepages-%zukB", pgsz / 1024);
}

int huge_size_offered(size_t pgsz)
{
	char d[64], path[160];

	size_dir(d, sizeof(d), pgsz);
	snprintf(path, sizeof(path), HUGE_SYSFS "/%s", d);
	return access(path, F_OK) == 0;
}

const char *huge_pgsz_str(size_t pgsz, char *buf, size_t len)
{
	if (pgsz >= (1UL << 30) && !(pgsz & ((1UL << 30) - 1)))
		snprintf(buf, len, "%zu GiB", pgsz >> 30);
	else if (pgsz >= (1UL << 20) && !(pgsz & ((1UL << 20) - 1)))
		snprintf(buf, len, "%zu MiB", pgsz >> 20);
	else
		snprintf(buf, len, "%zu KiB", pgsz >> 10);
	return buf;
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

/* All offered sizes, sorted, into a malloc'd array (NULL with *n 0 when there are none). */
static size_t *sizes_all(int *n)
{
	DIR *d = opendir(HUGE_SYSFS);
	struct dirent *de;
	size_t *v = NULL;
	int cnt = 0, cap = 0;

	*n = 0;
	if (!d)
		return NULL;
	while ((de = readdir(d))) {
		unsigned long kb;
		if (sscanf(de->d_name, "hugepages-%lukB", &kb) != 1)
			continue;
		if (cnt == cap) {
			size_t *nv = realloc(v, (size_t)(cap = cap ? cap * 2 : 4) * sizeof(*v));
			if (!nv)
				break;
			v = nv;
		}
		v[cnt++] = (size_t)kb * 1024;
	}
	closedir(d);
	if (v)
		qsort(v, (size_t)cnt, sizeof(*v), cmp_size);
	*n = cnt;
	return v;
}

int ubdma_huge_sizes(size_t *sizes, int max, int *nump)
{
	int n;
	size_t *v;

	if (!nump || (!sizes && max > 0))
		return uerr(EINVAL, "%s is NULL", nump ? "sizes" : "nump");
	v = sizes_all(&n);
	for (int i = 0; i < n && i < max; i++)
		sizes[i] = v[i];
	free(v);
	*nump = n;
	return 0;
}

/* Parse a sysfs node list ("0-1,3") into nodes[]; returns the count (may exceed max). */
static int parse_nodelist(const char *s, int *nodes, int max)
{
	int n = 0;

	while (*s && *s != '\n') {
		char *end;
		long a = strtol(s, &end, 10), b = a;
		if (end == s)
			break;
		if (*end == '-')
			b = strtol(end + 1, &end, 10);
		for (long i = a; i <= b; i++, n++)
			if (n < max)
				nodes[n] = (int)i;
		s = *end == ',' ? end + 1 : end;
	}
	return n;
}

int ubdma_numa_nodes(int *nodes, int max, int *nump)
{
	char buf[1024];
	int n = 0;

	if (!nump || (!nodes && max > 0))
		return uerr(EINVAL, "%s is NULL", nump ? "nodes" : "nump");
	if (!sysfs_read_line(NODE_SYSFS "/has_memory", buf, sizeof(buf)))
		n = parse_nodelist(buf, nodes, max);
	if (n == 0) {
		/* a kernel without NUMA: everything is node 0 */
		if (max > 0)
			nodes[0] = 0;
		n = 1;
	}
	*nump = n;
	return 0;
}

int huge_node_valid(int node)
{
	int nodes[256], n;

	if (node < 0 || ubdma_numa_nodes(nodes, 256, &n))
		return 0;
	for (int i = 0; i < n && i < 256; i++)
		if (nodes[i] == node)
			return 1;
	return 0;
}

static void counts_path(char *buf, size_t len, size_t pgsz, int node, const char *what)
{
	char d[64];

	size_dir(d, sizeof(d), pgsz);
	if (node == UBDMA_NODE_ANY)
		snprintf(buf, len, HUGE_SYSFS "/%s/%s", d, what);
	else
		snprintf(buf, len, NODE_SYSFS "/node%d/hugepages/%s/%s", node, d, what);
}

static unsigned long count_of(size_t pgsz, int node, const char *what)
{
	char path[256];
	unsigned long v = 0;

	counts_path(path, sizeof(path), pgsz, node, what);
	if (sysfs_read_ul(path, &v))
		v = 0;
	return v;
}

unsigned long huge_free_pages(size_t pgsz, int node)
{
	char path[256];
	unsigned long f;

	counts_path(path, sizeof(path), pgsz, node, "free_hugepages");
	if (node != UBDMA_NODE_ANY && access(path, F_OK))
		node = UBDMA_NODE_ANY; /* a kernel without NUMA has no node directories */
	f = count_of(pgsz, node, "free_hugepages");

	if (node == UBDMA_NODE_ANY) {
		/* free counts pages promised to existing mappings that have not faulted yet */
		unsigned long r = count_of(pgsz, node, "resv_hugepages");
		f = f > r ? f - r : 0;
	}
	return f;
}

static void fill_row(struct ubdma_huge_info *r, size_t pgsz, int node)
{
	r->pgsz = pgsz;
	r->node = node;
	r->total = count_of(pgsz, node, "nr_hugepages");
	r->free = count_of(pgsz, node, "free_hugepages");
	r->surplus = count_of(pgsz, node, "surplus_hugepages");
	r->reserved = node == UBDMA_NODE_ANY ? count_of(pgsz, node, "resv_hugepages") : 0;
}

int ubdma_huge_info(struct ubdma_huge_info *info, int max, int *nump)
{
	int nsz, nnodes, nodes[256], row = 0;
	size_t *sz;

	if (!nump || (!info && max > 0))
		return uerr(EINVAL, "%s is NULL", nump ? "info" : "nump");
	sz = sizes_all(&nsz);
	ubdma_numa_nodes(nodes, 256, &nnodes);
	nnodes = nnodes < 256 ? nnodes : 256;
	for (int i = 0; i < nsz; i++, row++)
		if (row < max)
			fill_row(&info[row], sz[i], UBDMA_NODE_ANY);
	for (int i = 0; i < nsz; i++)
		for (int j = 0; j < nnodes; j++, row++)
			if (row < max)
				fill_row(&info[row], sz[i], nodes[j]);
	free(sz);
	*nump = row;
	return 0;
}

/* The pagesize= option of a hugetlbfs mount ("2M", "1G", "2097152"), else the default size. */
static size_t mount_pgsz(const char *opts)
{
	const char *p = strstr(opts, "pagesize=");
	char *end;
	unsigned long long v;

	if (!p)
		return huge_default_pgsz();
	v = strtoull(p + 9, &end, 10);
	switch (*end) {
	case 'k': case 'K': v <<= 10; break;
	case 'm': case 'M': v <<= 20; break;
	case 'g': case 'G': v <<= 30; break;
	default: break;
	}
	return (size_t)v;
}

int ubdma_huge_mounts(struct ubdma_huge_mount *mounts, int max, int *nump)
{
	FILE *f;
	struct mntent me, *m;
	char buf[4096];
	int n = 0;

	if (!nump || (!mounts && max > 0))
		return uerr(EINVAL, "%s is NULL", nump ? "mounts" : "nump");
	if (!(f = setmntent("/proc/self/mounts", "re")))
		return uerr(errno, "cannot read /proc/self/mounts");
	while ((m = getmntent_r(f, &me, buf, sizeof(buf)))) {
		if (strcmp(m->mnt_type, "hugetlbfs"))
			continue;
		if (n < max) {
			snprintf(mounts[n].path, sizeof(mounts[n].path), "%s", m->mnt_dir);
			mounts[n].pgsz = mount_pgsz(m->mnt_opts);
		}
		n++;
	}
	endmntent(f);
	*nump = n;
	return 0;
}

int ubdma_huge_reserve(size_t pgsz, int node, unsigned long count)
{
	char path[256], sz[32], val[32];
	unsigned long got = 0;
	int err;

	if (pgsz < PAGE_4K || (pgsz & (pgsz - 1)))
		return uerr(EINVAL, "page size %zu is not a power of two of at least 4096", pgsz);
	huge_pgsz_str(pgsz, sz, sizeof(sz));
	if (!huge_size_offered(pgsz))
		return uerr(ENOTSUP, "the kernel offers no %s hugepages (no %s/hugepages-%zukB)", sz,
			    HUGE_SYSFS, pgsz / 1024);
	if (node != UBDMA_NODE_ANY && !huge_node_valid(node))
		return uerr(ENODEV, "NUMA node %d does not exist or has no memory", node);
	counts_path(path, sizeof(path), pgsz, node, "nr_hugepages");
	snprintf(val, sizeof(val), "%lu\n", count);
	if ((err = sysfs_write(path, val)))
		return err == EACCES || err == EPERM
			       ? uerr(err, "cannot open %s for writing (%s): run as root", path, strerror(err))
			       : uerr(err, "writing %lu to %s failed: %s", count, path, strerror(err));
	if ((err = sysfs_read_ul(path, &got)))
		return uerr(err, "cannot read back %s", path);
	if (got < count) {
		char where[32] = "";
		if (node != UBDMA_NODE_ANY)
			snprintf(where, sizeof(where), " on node %d", node);
		return uerr(ENOMEM,
			    "asked for %lu %s hugepages%s, the kernel found %lu: memory is too fragmented "
			    "or short; try early after boot or with hugepages= on the kernel command line",
			    count, sz, where, got);
	}
	return 0;
}
