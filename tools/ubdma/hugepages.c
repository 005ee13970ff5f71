/*
 * hugepages.c - `ubdma hugepages`: show the hugepages per size and NUMA node and the hugetlbfs
 * mounts (also the hugepages section of `ubdma status`), reserve or clear them through the
 * library (ubdma_huge_reserve()), and mount or unmount hugetlbfs.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ubdma/ubdma.h>

#include "cli.h"

static void hugepages_json(json_object *root, const struct ubdma_huge_info *info, int n,
			   const struct ubdma_huge_mount *m, int nm)
{
	json_object *o = jadd_obj(root, "hugepages");
	json_object *sizes = jadd_arr(o, "sizes"), *counts = jadd_arr(o, "counts"), *mounts = jadd_arr(o, "mounts");

	for (int i = 0; i < n; i++)
		if (info[i].node == UBDMA_NODE_ANY)
			json_object_array_add(sizes, json_object_new_uint64(info[i].pgsz));
	for (int i = 0; i < n; i++) {
		json_object *c = json_object_new_object();
		json_object_array_add(counts, c);
		jadd_u64(c, "pgsz", info[i].pgsz);
		if (info[i].node == UBDMA_NODE_ANY)
			jadd_null(c, "node");
		else
			jadd_int(c, "node", info[i].node);
		jadd_u64(c, "total", info[i].total);
		jadd_u64(c, "free", info[i].free);
		jadd_u64(c, "surplus", info[i].surplus);
		jadd_u64(c, "reserved", info[i].reserved);
	}
	for (int i = 0; i < nm; i++) {
		json_object *mo = json_object_new_object();
		json_object_array_add(mounts, mo);
		jadd_str(mo, "path", m[i].path);
		jadd_u64(mo, "pgsz", m[i].pgsz);
	}
}

void hugepages_show(json_object *root)
{
	struct ubdma_huge_info info[128];
	struct ubdma_huge_mount m[32];
	int n = 0, nm = 0;
	char b1[32];

	ubdma_huge_info(info, 128, &n);
	ubdma_huge_mounts(m, 32, &nm);
	n = n < 128 ? n : 128;
	nm = nm < 32 ? nm : 32;
	if (root) {
		hugepages_json(root, info, n, m, nm);
		return;
	}
	printf("Hugepages\n");
	if (!n)
		printf("  none: the kernel offers no hugepages\n");
	else
		printf("  %-8s %-6s %8s %8s %8s %8s\n", "size", "node", "total", "free", "surplus", "reserved");
	for (int i = 0; i < n; i++) {
		char node[8];
		sfmt(node, sizeof(node), "%d", info[i].node);
		printf("  %-8s %-6s %8lu %8lu %8lu %8s\n", human(info[i].pgsz, b1, sizeof(b1)),
		       info[i].node == UBDMA_NODE_ANY ? "all" : node, info[i].total, info[i].free, info[i].surplus,
		       info[i].node == UBDMA_NODE_ANY ? (sfmt(node, sizeof(node), "%lu", info[i].reserved), node)
						      : "-");
	}
	printf("  hugetlbfs mounts:%s", nm ? "\n" : " none (memfd needs none; `ubdma hugepages --mount DIR` "
						    "for files)\n");
	for (int i = 0; i < nm; i++)
		printf("    %s (%s pages)\n", m[i].path, human(m[i].pgsz, b1, sizeof(b1)));
	printf("\n");
}

static int size_offered(uint64_t pgsz)
{
	size_t v[16];
	int n = 0;

	ubdma_huge_sizes(v, 16, &n);
	for (int i = 0; i < n && i < 16; i++)
		if (v[i] == pgsz)
			return 1;
	return 0;
}

static int parse_node(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	int nodes[256], n;

	if (!*s || *end || v < 0 || v > 4095)
		usage_error("'%s' is not a NUMA node number", s);
	ubdma_numa_nodes(nodes, 256, &n);
	for (int i = 0; i < n && i < 256; i++)
		if (nodes[i] == v)
			return (int)v;
	usage_error("NUMA node %ld does not exist or has no memory on this machine", v);
}

static int hp_mount(const char *dir, uint64_t pgsz, int un)
{
	char opt[64], b[32];

	if (un) {
		if (umount(dir))
			return fail("cannot unmount %s: %s", dir, strerror(errno));
		if (!opt_json)
			printf("unmounted %s\n", dir);
		return 0;
	}
	if (mkdir(dir, 0755) && errno != EEXIST)
		return fail("cannot create %s: %s", dir, strerror(errno));
	sfmt(opt, sizeof(opt), "pagesize=%" PRIu64, pgsz);
	if (mount("nodev", dir, "hugetlbfs", 0, opt))
		return fail("cannot mount hugetlbfs on %s: %s%s", dir, strerror(errno),
			    geteuid() ? " (run as root)" : "");
	if (!opt_json)
		printf("mounted hugetlbfs with %s pages on %s\n", human(pgsz, b, sizeof(b)), dir);
	return 0;
}

/* The page size to work in when --pagesize is not given: the kernel's default hugepage size. */
static uint64_t default_pgsz(void)
{
	size_t v[1];
	int n = 0;
	long kb = proc_kb("/proc/meminfo", "Hugepagesize");
	uint64_t pgsz = kb > 0 ? (uint64_t)kb * 1024 : 0;

	if (!pgsz && !ubdma_huge_sizes(v, 1, &n) && n)
		pgsz = v[0];
	return pgsz;
}

/* --reserve SIZE: SIZE bytes in pages of @pgsz, on @node or spread by the kernel. */
static int reserve(const char *arg, uint64_t pgsz, int node)
{
	char b1[32], b2[32];
	uint64_t bytes;

	if (!(bytes = parse_size(arg)) && strcmp(arg, "0"))
		usage_error("hugepages: '%s' is not a size (e.g. 1G, 512M)", arg);
	if (bytes % pgsz)
		usage_error("hugepages: %s is not a multiple of the %s page size; give a multiple "
			    "(or another --pagesize)",
			    arg, human(pgsz, b1, sizeof(b1)));
	if (ubdma_huge_reserve(pgsz, node, bytes / pgsz))
		return fail("%s", ubdma_last_error());
	if (!opt_json)
		printf("reserved %" PRIu64 " pages of %s (%s)%s\n", bytes / pgsz, human(pgsz, b1, sizeof(b1)),
		       human(bytes, b2, sizeof(b2)), node == UBDMA_NODE_ANY ? "" : " on the node asked");
	return 0;
}

int cmd_hugepages(int argc, char **argv)
{
	const char *rsv = NULL, *mnt = NULL;
	uint64_t pgsz = 0;
	int node = UBDMA_NODE_ANY, clear = 0, unmount = 0, rc = 0;
	char b1[32];

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--show"))
			continue;
		if (!strcmp(a, "--clear")) {
			clear = 1;
			continue;
		}
		if (strcmp(a, "--reserve") && strcmp(a, "--pagesize") && strcmp(a, "--node") && strcmp(a, "--mount") &&
		    strcmp(a, "--unmount"))
			usage_error("hugepages: unknown option '%s' (see ubdma help)", a);
		if (!val)
			usage_error("hugepages: %s needs a value", a);
		i++;
		if (!strcmp(a, "--reserve"))
			rsv = val;
		else if (!strcmp(a, "--pagesize") && !(pgsz = parse_size(val)))
			usage_error("hugepages: '%s' is not a size (e.g. 2M, 1G)", val);
		else if (!strcmp(a, "--node"))
			node = parse_node(val);
		else if (!strcmp(a, "--mount") || !strcmp(a, "--unmount")) {
			mnt = val;
			unmount = !strcmp(a, "--unmount");
		}
	}
	if (!pgsz)
		pgsz = default_pgsz();
	if ((rsv || clear || (mnt && !unmount)) && !size_offered(pgsz))
		usage_error("hugepages: the kernel offers no %s hugepages (see `ubdma status`)",
			    pgsz ? human(pgsz, b1, sizeof(b1)) : "");
	if (rsv)
		rc = reserve(rsv, pgsz, node);
	if (clear) {
		size_t v[16];
		int n = 0;
		ubdma_huge_sizes(v, 16, &n);
		for (int i = 0; i < n && i < 16 && !rc; i++)
			if (ubdma_huge_reserve(v[i], node, 0))
				rc = fail("%s", ubdma_last_error());
	}
	if (mnt && !rc)
		rc = hp_mount(mnt, pgsz, unmount);
	if (!rc && opt_json) {
		json_object *root = json_object_new_object();
		hugepages_show(root);
		json_print(root);
	} else if (!rc && !rsv && !clear && !mnt) {
		hugepages_show(NULL);
	}
	return rc;
}
