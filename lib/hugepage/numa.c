/*
 * numa.c - NUMA locality: binding memory to a node before it is faulted in (mbind(2) on a
 * range, set_mempolicy(2) around an allocator we do not control), and finding the node a PCI
 * device hangs off.
 *
 * The policy calls go through syscall(2) so that the library does not need libnuma.  A device's
 * node comes from hwloc when the library has it: hwloc places the device under its first non-I/O
 * ancestor (a package, a NUMA group or the machine), whose nodeset is the device's locality; on
 * a machine with one node that is node 0 even when the firmware gives no _PXM (sysfs says -1).
 * Without hwloc, or when hwloc does not list the device, sysfs numa_node is the answer.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <linux/mempolicy.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef UBDMA_HAVE_HWLOC
#include <hwloc.h>
#endif

#include "core/log.h"
#include "hugepage/huge.h"

#define MASK_BITS (16 * 8 * sizeof(unsigned long))

static void node_mask(unsigned long *mask, int node)
{
	memset(mask, 0, 16 * sizeof(unsigned long));
	mask[(unsigned)node / (8 * sizeof(unsigned long))] |= 1UL << ((unsigned)node % (8 * sizeof(unsigned long)));
}

int huge_mbind(void *addr, size_t len, int node, int preferred)
{
	unsigned long mask[16];

	if (node == UBDMA_NODE_ANY)
		return 0;
	if ((unsigned)node >= MASK_BITS)
		return EINVAL;
	node_mask(mask, node);
	/* maxnode counts one more than the bits the kernel reads, a historical quirk of the ABI */
	if (syscall(SYS_mbind, addr, len, preferred ? MPOL_PREFERRED : MPOL_BIND, mask, MASK_BITS + 1, 0))
		return errno == ENOSYS && node == 0 ? 0 : errno; /* no NUMA in the kernel: node 0 is all */
	return 0;
}

int huge_policy_push(int node, int preferred, struct huge_policy *saved)
{
	unsigned long mask[16];

	saved->set = 0;
	if (node == UBDMA_NODE_ANY)
		return 0;
	if ((unsigned)node >= MASK_BITS)
		return EINVAL;
	if (syscall(SYS_get_mempolicy, &saved->mode, saved->mask, MASK_BITS + 1, NULL, 0))
		return errno == ENOSYS && node == 0 ? 0 : errno;
	node_mask(mask, node);
	if (syscall(SYS_set_mempolicy, preferred ? MPOL_PREFERRED : MPOL_BIND, mask, MASK_BITS + 1))
		return errno;
	saved->set = 1;
	return 0;
}

void huge_policy_pop(const struct huge_policy *saved)
{
	if (!saved->set)
		return;
	/* the mode from get_mempolicy may carry MPOL_F_* mode flags; set_mempolicy accepts them */
	if (syscall(SYS_set_mempolicy, saved->mode, saved->mode == MPOL_DEFAULT ? NULL : saved->mask,
		    MASK_BITS + 1))
		ULOG_WARN("cannot restore the thread's memory policy: %s", strerror(errno));
}

/* Whether s matches pat, where 'x' stands for a hexadecimal digit and anything else for itself. */
static int shape(const char *s, const char *pat)
{
	for (; *pat; s++, pat++)
		if (*pat == 'x' ? !isxdigit((unsigned char)*s) : *s != *pat)
			return 0;
	return *s == '\0';
}

/* Parse "DDDD:BB:DD.F" or "BB:DD.F" strictly; writes the canonical form to out. */
static int parse_bdf(const char *s, unsigned *dom, unsigned *bus, unsigned *dev, unsigned *fn, char *out,
		     size_t outlen)
{
	*dom = 0;
	if (shape(s, "xxxx:xx:xx.x")) {
		if (sscanf(s, "%x:%x:%x.%x", dom, bus, dev, fn) != 4)
			return 0;
	} else if (shape(s, "xx:xx.x")) {
		if (sscanf(s, "%x:%x.%x", bus, dev, fn) != 3)
			return 0;
	} else {
		return 0;
	}
	if (*dev > 0x1f || *fn > 7)
		return 0;
	snprintf(out, outlen, "%04x:%02x:%02x.%x", *dom, *bus, *dev, *fn);
	return 1;
}

#ifdef UBDMA_HAVE_HWLOC
/* The single node of the device's locality, UBDMA_NODE_ANY when it spans nodes, -2 if unknown. */
/*
 * One topology for the process, loaded on first use: a load with I/O objects walks all of sysfs's
 * PCI tree (tens of milliseconds, seconds under sanitizers), and PCI locality does not change
 * while a process runs.  Queries on a loaded topology only read it, so threads may share it.
 */
static hwloc_topology_t topo_cached;
static pthread_once_t topo_once = PTHREAD_ONCE_INIT;

static void topo_load(void)
{
	hwloc_topology_t topo;

	if (hwloc_topology_init(&topo))
		return;
	hwloc_topology_set_io_types_filter(topo, HWLOC_TYPE_FILTER_KEEP_ALL);
	if (hwloc_topology_load(topo)) {
		hwloc_topology_destroy(topo);
		return;
	}
	topo_cached = topo;
}

static int hwloc_node(unsigned dom, unsigned bus, unsigned dev, unsigned fn)
{
	int node = -2;

	pthread_once(&topo_once, topo_load);
	if (!topo_cached)
		return -2;
	hwloc_obj_t o = hwloc_get_pcidev_by_busid(topo_cached, dom, bus, dev, fn);
	hwloc_obj_t a = o ? hwloc_get_non_io_ancestor_obj(topo_cached, o) : NULL;
	if (a && a->nodeset && !hwloc_bitmap_iszero(a->nodeset))
		node = hwloc_bitmap_weight(a->nodeset) == 1 ? hwloc_bitmap_first(a->nodeset) : UBDMA_NODE_ANY;
	return node;
}
#endif

int ubdma_numa_node_of_pci(const char *bdf, int *nodep)
{
	unsigned dom, bus, dev, fn;
	char canon[16], path[128];
	struct stat st;
	FILE *f;
	int node = UBDMA_NODE_ANY;

	if (!bdf || !nodep)
		return uerr(EINVAL, "%s is NULL", bdf ? "nodep" : "bdf");
	if (!parse_bdf(bdf, &dom, &bus, &dev, &fn, canon, sizeof(canon)))
		return uerr(EINVAL, "'%s' is not a PCI address (DDDD:BB:DD.F or BB:DD.F, hexadecimal)", bdf);
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", canon);
	if (stat(path, &st))
		return uerr(ENODEV, "no PCI device %s (%s does not exist)", canon, path);
#ifdef UBDMA_HAVE_HWLOC
	int h = hwloc_node(dom, bus, dev, fn);
	if (h >= 0) {
		*nodep = h;
		return 0;
	}
#endif
	/* sysfs: -1 means the firmware did not say; it reads as a signed number */
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/numa_node", canon);
	if ((f = fopen(path, "re"))) {
		int x;
		if (fscanf(f, "%d", &x) == 1 && x >= 0)
			node = x;
		fclose(f);
	}
	*nodep = node;
	return 0;
}
