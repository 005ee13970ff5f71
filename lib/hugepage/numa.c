/*
 * numa.c - NUMA locality: binding memory to a node before it is faulted in (mbind(2) on a
 * range, set_mempolicy(2) around an allocator we do not control), and finding the node a PCI
 * device hangs off, with the one hwloc topology of the process that answers it (fork-safe, below).
 *
 * The policy calls go through syscall(2) so that the library does not need libnuma.  A device's
 * node comes from hwloc when the library has it: hwloc places the device under its first non-I/O
 * ancestor (a package, a NUMA group or the machine), whose nodeset is the device's locality; on
 * a machine with one node that is node 0 even when the firmware gives no _PXM (sysfs says -1).
 * Without hwloc, or when hwloc does not list the device, sysfs numa_node is the answer.
 */
#include <errno.h>
#include <pthread.h>
#include <linux/mempolicy.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef UBDMA_HAVE_HWLOC
#include <hwloc.h>
#endif

#include "base/bdf.h"
#include "base/log.h"
#include "base/sysfs.h"
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

#ifdef UBDMA_HAVE_HWLOC
/*
 * One topology for the process, loaded on first use: a load with I/O objects walks all of sysfs's
 * PCI tree (tens of milliseconds, seconds under sanitizers), and PCI locality does not change
 * while a process runs.  Queries on a loaded topology only read it, so threads may share it.
 *
 * fork(2).  The load runs under topo_lock, which pthread_atfork handlers take around every fork:
 * a fork waits for a load in progress, so that a child finds either no topology (and loads its
 * own) or a whole one.  A child forked in the middle of a load would otherwise inherit hwloc's
 * own process-wide mutex (held while hwloc_topology_init() loads hwloc's plugins) locked by a
 * thread it does not have, and hang in its first ubdma_numa_node_of_pci(): with the pthread_once()
 * this replaces, which glibc restarts in such a child, test_fork_calls saw 3 of the first 4
 * children hang there.  topo_lock is taken with no other lock held and nothing but hwloc is called
 * under it, so it cannot order against the library's other locks.
 */
static pthread_mutex_t topo_lock = PTHREAD_MUTEX_INITIALIZER;
static hwloc_topology_t topo_cached; /* written once under topo_lock, then only read */
static int topo_tried;		     /* under topo_lock: a failed load is not tried again */
static __thread int topo_loading;    /* this thread holds topo_lock for a load */
static __thread int topo_fork_held;  /* this thread's fork took topo_lock in the prepare handler */

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
	__atomic_store_n(&topo_cached, topo, __ATOMIC_RELEASE);
}

static hwloc_topology_t topo_get(void)
{
	hwloc_topology_t topo = __atomic_load_n(&topo_cached, __ATOMIC_ACQUIRE);

	if (topo)
		return topo;
	pthread_mutex_lock(&topo_lock);
	if (!topo_tried) {
		topo_tried = 1;
		topo_loading = 1;
		topo_load();
		topo_loading = 0;
	}
	topo = topo_cached;
	pthread_mutex_unlock(&topo_lock);
	return topo;
}

/* A fork from inside the load (hwloc's own doing) already holds the lock: it must not wait for
 * itself, and its child goes on with the load it was in. */
static void topo_fork_prepare(void)
{
	if (!topo_loading) {
		pthread_mutex_lock(&topo_lock);
		topo_fork_held = 1;
	}
}

/*
 * Parent and child both unlock, as the rationale of pthread_atfork() has it: the child's one
 * thread is the copy of the one that locked.  (Re-initialising the lock in the child instead
 * works with glibc, but ThreadSanitizer still counts the lock held afterwards and reported a
 * double lock when the child's threads next took it.)
 */
static void topo_fork_release(void)
{
	if (topo_fork_held) {
		topo_fork_held = 0;
		pthread_mutex_unlock(&topo_lock);
	}
}

/* At load time, not on first use: a first use racing a fork would register the handlers again in
 * the child (glibc restarts an interrupted pthread_once there), and a grandchild's fork would then
 * take topo_lock twice. */
__attribute__((constructor)) static void topo_fork_init(void)
{
	pthread_atfork(topo_fork_prepare, topo_fork_release, topo_fork_release);
}

/* The single node of the device's locality, UBDMA_NODE_ANY when it spans nodes, -2 if unknown. */
static int hwloc_node(unsigned dom, unsigned bus, unsigned dev, unsigned fn)
{
	hwloc_topology_t topo = topo_get();
	int node = -2;

	if (!topo)
		return -2;
	hwloc_obj_t o = hwloc_get_pcidev_by_busid(topo, dom, bus, dev, fn);
	hwloc_obj_t a = o ? hwloc_get_non_io_ancestor_obj(topo, o) : NULL;
	if (a && a->nodeset && !hwloc_bitmap_iszero(a->nodeset))
		node = hwloc_bitmap_weight(a->nodeset) == 1 ? hwloc_bitmap_first(a->nodeset) : UBDMA_NODE_ANY;
	return node;
}
#endif

int ubdma_numa_node_of_pci(const char *bdf, int *nodep)
{
	struct bdf b;
	char canon[BDF_STRLEN], path[128];
	struct stat st;
	int node = UBDMA_NODE_ANY, x;

	if (!bdf || !nodep)
		return uerr(EINVAL, "%s is NULL", bdf ? "nodep" : "bdf");
	if (bdf_parse(bdf, &b))
		return uerr(EINVAL, "'%s' is not a PCI address (DDDD:BB:DD.F or BB:DD.F, hexadecimal)", bdf);
	bdf_format(&b, canon, sizeof(canon));
	sysfs_pci_path(path, sizeof(path), canon, NULL);
	if (stat(path, &st))
		return uerr(ENODEV, "no PCI device %s (%s does not exist)", canon, path);
#ifdef UBDMA_HAVE_HWLOC
	int h = hwloc_node(b.dom, b.bus, b.dev, b.fn);
	if (h >= 0) {
		*nodep = h;
		return 0;
	}
#endif
	/* sysfs: -1 means the firmware did not say; it reads as a signed number */
	if (!sysfs_pci_read_int(canon, "numa_node", &x) && x >= 0)
		node = x;
	*nodep = node;
	return 0;
}
