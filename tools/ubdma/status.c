/*
 * status.c - `ubdma status`: what the machine offers for user-space DMA.  IOMMU and VFIO (which of
 * its interfaces exist: the type1 container, iommufd with the device cdevs, no-IOMMU mode), the
 * PCI devices (driver, IOMMU group, viability, NUMA node), hugepages, locked-memory limits, the
 * backend UBDMA_BACKEND_AUTO picks and why, and the registration cache's monitor.  The library
 * answers what it owns (hugepages, NUMA nodes, backends), so that the tool says exactly what a
 * program linked with libubdma would see; sysfs.c reads the rest.
 *
 * Each section prints its text, or adds its member to the JSON document when there is one.
 */
#include <dirent.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ubdma/ubdma.h>

#include "base/sysfs.h"

#include "cli.h"

struct iommu_state {
	int vfio_dev;	   /* /dev/vfio/vfio */
	int iommufd;	   /* /dev/iommu */
	int cdevs;	   /* /dev/vfio/devices entries: VFIO device cdevs */
	const char *noiommu; /* no-IOMMU mode: "on", "off", or "absent" from the kernel */
	int noiommu_groups; /* /dev/vfio/noiommu-N files */
	int units;	   /* /sys/class/iommu entries */
	int groups;	   /* /sys/kernel/iommu_groups entries */
	int vfio_pci;	   /* the vfio-pci driver is registered */
	char summary[256];
};

static void iommu_probe(struct iommu_state *s)
{
	s->vfio_dev = exists("/dev/vfio/vfio");
	s->units = count_dir("/sys/class/iommu");
	s->groups = count_dir("/sys/kernel/iommu_groups");
	s->vfio_pci = exists(PCI_DRIVERS "/vfio-pci");
	s->iommufd = exists("/dev/iommu");
	s->cdevs = count_dir("/dev/vfio/devices");
	s->noiommu_groups = 0;
	{
		char v[8] = "";
		const char *param = "/sys/module/vfio/parameters/enable_unsafe_noiommu_mode";
		s->noiommu = !exists(param) ? "absent" : !sysfs_read_line(param, v, sizeof(v)) && v[0] == 'Y' ? "on" : "off";
		DIR *d = opendir("/dev/vfio");
		struct dirent *de;
		while (d && (de = readdir(d)))
			s->noiommu_groups += !strncmp(de->d_name, "noiommu-", 8);
		if (d)
			closedir(d);
	}
	if (!s->groups && !strcmp(s->noiommu, "on"))
		sfmt(s->summary, sizeof(s->summary),
		     "VFIO in no-IOMMU mode: devices bound to vfio-pci get no-IOMMU groups (%d now); "
		     "physical addresses and no isolation", s->noiommu_groups);
	else if (!s->groups)
		sfmt(s->summary, sizeof(s->summary),
		     "no VFIO: the IOMMU is off or absent (no IOMMU groups; boot with intel_iommu=on or "
		     "amd_iommu=on)%s",
		     s->vfio_dev ? "" : " and /dev/vfio/vfio does not exist (modprobe vfio-pci)");
	else if (!s->vfio_dev)
		sfmt(s->summary, sizeof(s->summary),
		     "no VFIO: %d IOMMU groups, but /dev/vfio/vfio does not exist (modprobe vfio-pci)",
		     s->groups);
	else
		sfmt(s->summary, sizeof(s->summary), "VFIO ready: %d IOMMU groups%s", s->groups,
		     s->vfio_pci ? ", vfio-pci loaded" : "; vfio-pci not loaded (modprobe vfio-pci)");
}

static void status_iommu(json_object *root, const struct iommu_state *s)
{
	if (root) {
		json_object *o = jadd_obj(root, "iommu");
		jadd_bool(o, "vfio", s->vfio_dev);
		jadd_int(o, "iommu_units", s->units);
		jadd_int(o, "iommu_groups", s->groups);
		jadd_bool(o, "vfio_pci_driver", s->vfio_pci);
		jadd_bool(o, "iommufd", s->iommufd);
		jadd_int(o, "vfio_cdevs", s->cdevs);
		jadd_str(o, "noiommu_mode", s->noiommu);
		jadd_int(o, "noiommu_groups", s->noiommu_groups);
		jadd_str(o, "summary", s->summary);
		return;
	}
	printf("IOMMU and VFIO\n  %s\n  IOMMU units %d, IOMMU groups %d, /dev/vfio/vfio %s, vfio-pci driver %s\n",
	       s->summary, s->units, s->groups, s->vfio_dev ? "present" : "absent",
	       s->vfio_pci ? "loaded" : "not loaded");
	printf("  interfaces: type1 container %s; iommufd /dev/iommu %s; VFIO device cdevs %d; "
	       "no-IOMMU mode %s%s\n\n",
	       s->vfio_dev ? "yes" : "no", s->iommufd ? "yes" : "no (CONFIG_IOMMUFD)", s->cdevs,
	       !strcmp(s->noiommu, "absent") ? "not in this kernel" : s->noiommu,
	       s->noiommu_groups ? " (no-IOMMU groups present)" : "");
}

struct dev_row {
	char bdf[16], id[16], cls[16], drv[64], grp[16];
	int node, viable;
};

static void dev_probe(const char *bdf, struct dev_row *r)
{
	char path[PATH_MAX], v[32] = "", d[32] = "", bad[32], baddrv[64];

	sfmt(r->bdf, sizeof(r->bdf), "%s", bdf);
	r->cls[0] = '\0';
	/* a file that cannot be read leaves its buffer "": the row shows ???? or - for it */
	if (!sysfs_pci_path(path, sizeof(path), bdf, "vendor"))
		sysfs_read_line(path, v, sizeof(v));
	if (!sysfs_pci_path(path, sizeof(path), bdf, "device"))
		sysfs_read_line(path, d, sizeof(d));
	sfmt(r->id, sizeof(r->id), "%.4s:%.4s", v[0] ? v + 2 : "????", d[0] ? d + 2 : "????");
	if (!sysfs_pci_path(path, sizeof(path), bdf, "class"))
		sysfs_read_line(path, r->cls, sizeof(r->cls));
	sysfs_pci_link_name(bdf, "driver", r->drv, sizeof(r->drv));
	sysfs_pci_link_name(bdf, "iommu_group", r->grp, sizeof(r->grp));
	r->viable = r->grp[0] ? group_viable(r->grp, bad, sizeof(bad), baddrv, sizeof(baddrv)) : -1;
	if (ubdma_numa_node_of_pci(bdf, &r->node))
		r->node = UBDMA_NODE_ANY;
}

static void dev_json(json_object *arr, const struct dev_row *r)
{
	json_object *o = json_object_new_object();

	json_object_array_add(arr, o);
	jadd_str(o, "bdf", r->bdf);
	jadd_str(o, "id", r->id);
	jadd_str(o, "class", r->cls);
	jadd_str(o, "driver", r->drv[0] ? r->drv : NULL);
	if (r->grp[0])
		jadd_int(o, "iommu_group", atoi(r->grp));
	else
		jadd_null(o, "iommu_group");
	if (r->viable < 0)
		jadd_null(o, "viable");
	else
		jadd_bool(o, "viable", r->viable);
	jadd_int(o, "numa_node", r->node);
}

static void status_devices(json_object *root)
{
	int n;
	char **v = pci_list(&n);
	json_object *arr = root ? jadd_arr(root, "devices") : NULL;

	if (!root)
		printf("PCI devices\n  %-13s %-10s %-9s %-14s %-6s %-8s %s\n", "address", "id", "class",
		       "driver", "group", "viable", "node");
	for (int i = 0; i < n; i++) {
		struct dev_row r;
		char node[8];

		dev_probe(v[i], &r);
		if (arr) {
			dev_json(arr, &r);
			continue;
		}
		sfmt(node, sizeof(node), "%d", r.node);
		printf("  %-13s %-10s %-9s %-14s %-6s %-8s %s\n", r.bdf, r.id, r.cls, r.drv[0] ? r.drv : "-",
		       r.grp[0] ? r.grp : "-", r.viable < 0 ? "-" : r.viable ? "yes" : "no",
		       r.node < 0 ? "-" : node);
	}
	if (!root)
		printf("%s\n", n ? "" : "  none\n");
	free_list(v, n);
}

static int has_cap_ipc_lock(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d))
		return 0;
	return !!(d[CAP_IPC_LOCK / 32].effective & (1u << (CAP_IPC_LOCK % 32)));
}

static void status_memlock(json_object *root)
{
	struct rlimit rl;
	int cap = has_cap_ipc_lock();
	char b1[32], b2[32];

	getrlimit(RLIMIT_MEMLOCK, &rl);
	if (root) {
		json_object *o = jadd_obj(root, "memlock");
		if (rl.rlim_cur == RLIM_INFINITY)
			jadd_str(o, "soft", "unlimited");
		else
			jadd_u64(o, "soft", rl.rlim_cur);
		if (rl.rlim_max == RLIM_INFINITY)
			jadd_str(o, "hard", "unlimited");
		else
			jadd_u64(o, "hard", rl.rlim_max);
		jadd_bool(o, "cap_ipc_lock", cap);
		jadd_int(o, "locked_kb", proc_kb("/proc/self/status", "VmLck"));
		return;
	}
	printf("Locked memory\n  RLIMIT_MEMLOCK %s soft, %s hard; CAP_IPC_LOCK %s\n\n",
	       rl.rlim_cur == RLIM_INFINITY ? "unlimited" : human(rl.rlim_cur, b1, sizeof(b1)),
	       rl.rlim_max == RLIM_INFINITY ? "unlimited" : human(rl.rlim_max, b2, sizeof(b2)),
	       cap ? "yes: the limit does not apply to this user"
		   : "no: every wired byte counts against the limit (raise it with ulimit -l, "
		     "/etc/security/limits.conf or systemd LimitMEMLOCK=)");
}

static void status_backend(json_object *root)
{
	ubdma_ctx_t *ctx;
	int err = ubdma_ctx_open(UBDMA_BACKEND_AUTO, &ctx);
	uint64_t lo[8], hi[8];
	int nw = 0;

	if (!err)
		ubdma_ctx_iova_windows(ctx, lo, hi, 8, &nw);
	nw = nw < 8 ? nw : 8;
	if (root) {
		json_object *o = jadd_obj(root, "backend"), *w;
		jadd_str(o, "auto", err ? NULL : ubdma_backend_name(ubdma_ctx_backend(ctx)));
		jadd_str(o, "reason", err ? NULL : ubdma_ctx_backend_reason(ctx));
		jadd_str(o, "error", err ? ubdma_last_error() : NULL);
		w = jadd_arr(o, "iova_windows");
		for (int i = 0; i < nw; i++) {
			json_object *pair = json_object_new_array();
			json_object_array_add(pair, json_object_new_uint64(lo[i]));
			json_object_array_add(pair, json_object_new_uint64(hi[i]));
			json_object_array_add(w, pair);
		}
	} else if (err) {
		printf("Backend\n  AUTO cannot open a context: %s (%s)\n", strerror(err), ubdma_last_error());
	} else {
		printf("Backend\n  AUTO picks %s\n  because %s\n", ubdma_backend_name(ubdma_ctx_backend(ctx)),
		       ubdma_ctx_backend_reason(ctx));
		for (int i = 0; i < nw; i++)
			printf("  usable IOVA window [%#" PRIx64 ", %#" PRIx64 "]\n", lo[i], hi[i]);
	}
	if (!err)
		ubdma_ctx_close(ctx);
}

/*
 * Which monitor the registration cache gets here (userfaultfd, or explicit invalidation only, and
 * why): a program's cache starts it on its first miss, so one registration of a page shows it.
 * The counters themselves are per process: `ubdma rcache` runs a workload to show them.
 */
static void status_rcache(json_object *root)
{
	struct ubdma_rcache_stats st = { 0 };
	ubdma_ctx_t *ctx = NULL;
	ubdma_reg_t *r = NULL;
	const char *why = NULL;
	int err = ubdma_ctx_open(UBDMA_BACKEND_AUTO, &ctx);
	/* phys and noiommu translate hugetlb memory only */
	int huge = !err && (ubdma_ctx_backend(ctx) == UBDMA_BACKEND_PHYS || ubdma_ctx_backend(ctx) == UBDMA_BACKEND_NOIOMMU);
	size_t len = huge ? (size_t)2 << 20 : 4096;
	void *p = err ? MAP_FAILED : mmap(NULL, len, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS | (huge ? MAP_HUGETLB : 0), -1, 0);

	if (err)
		why = ubdma_last_error();
	else if (p == MAP_FAILED)
		why = huge ? "no free 2 MiB hugepage to register" : "out of memory";
	else if (ubdma_reg_get(ctx, p, 4096, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &r))
		why = ubdma_last_error();
	else
		ubdma_reg_put(r);
	if (!why)
		ubdma_rcache_stats(ctx, &st, sizeof(st));
	if (root) {
		json_object *o = jadd_obj(root, "rcache");
		if (why)
			jadd_null(o, "monitor_active");
		else
			jadd_bool(o, "monitor_active", st.monitor_active);
		jadd_str(o, "monitor", why ? NULL : st.monitor);
		jadd_str(o, "error", why);
	} else if (why) {
		printf("\nRegistration cache\n  cannot try it on the AUTO backend: %s\n", why);
	} else {
		printf("\nRegistration cache\n  monitor: %s\n  counters are per process: `ubdma rcache` runs a "
		       "workload and prints them\n", st.monitor);
	}
	if (p != MAP_FAILED)
		munmap(p, len);
	if (ctx)
		ubdma_ctx_close(ctx);
}

int cmd_status(int argc, char **argv)
{
	struct iommu_state s;
	json_object *root;

	if (argc > 1)
		usage_error("status takes no arguments (got '%s')", argv[1]);
	root = opt_json ? json_object_new_object() : NULL;
	iommu_probe(&s);
	status_iommu(root, &s);
	status_devices(root);
	hugepages_show(root);
	status_memlock(root);
	status_backend(root);
	status_rcache(root);
	if (root)
		json_print(root);
	return 0;
}
