/*
 * ubdma.c - the set-up tool a DPDK or SPDK user expects beside the library: what the machine
 * offers for user-space DMA (`status`), handing PCI functions to vfio-pci and back (`bind`,
 * `unbind`), hugepage reservation and mounts (`hugepages`), the registration cache's counters
 * on a workload of the tool's own (`rcache`), and running the benchmarks into tables and plots
 * (`bench`).  Every command can answer in JSON (`--json`) for scripts.
 *
 * It reads sysfs directly for what the library has no reason to own (drivers, IOMMU groups) and
 * asks the library for the rest (hugepage counts, NUMA nodes, which backend AUTO picks and why),
 * so that `ubdma status` says exactly what a program linked with libubdma would see.
 *
 * Exit status: 0 done; 1 the operation failed (the message says why and what to change);
 * 2 bad usage or bad input (unknown PCI address, a size that is not a hugepage multiple).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/capability.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ubdma/ubdma.h>

#define EX_FAIL 1
#define EX_USAGE 2

#define PCI_DEVICES "/sys/bus/pci/devices"
#define PCI_DRIVERS "/sys/bus/pci/drivers"

static int json;

/* ------------------------------------------------------------------ output */

/*
 * snprintf() for paths and names built from sysfs: truncation yields a path that does not exist,
 * which every caller already handles, so it need not be reported.
 */
__attribute__((format(printf, 3, 4))) static void sfmt(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

/* A JSON writer with comma bookkeeping: one flag per open level says "nothing written yet". */
static int jfirst[32] = { 1 };
static int jdepth;

static void jstr(const char *s)
{
	putchar('"');
	for (; s && *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void jsep(const char *key)
{
	if (!jfirst[jdepth])
		putchar(',');
	jfirst[jdepth] = 0;
	if (key) {
		jstr(key);
		putchar(':');
	}
}

static void jopen(const char *key, char c)
{
	jsep(key);
	putchar(c);
	jfirst[++jdepth] = 1;
}

static void jclose(char c)
{
	jdepth--;
	putchar(c);
	if (jdepth == 0)
		putchar('\n');
}

static void jkstr(const char *key, const char *v)
{
	jsep(key);
	if (v)
		jstr(v);
	else
		fputs("null", stdout);
}

static void jkint(const char *key, long long v)
{
	jsep(key);
	printf("%lld", v);
}

static void jku64(const char *key, uint64_t v)
{
	jsep(key);
	printf("%" PRIu64, v);
}

static void jkbool(const char *key, int v)
{
	jsep(key);
	fputs(v ? "true" : "false", stdout);
}

static void jknull(const char *key)
{
	jsep(key);
	fputs("null", stdout);
}

/* Bad usage or bad input: one sentence on stderr, exit 2. */
__attribute__((format(printf, 1, 2), noreturn)) static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("ubdma: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(EX_USAGE);
}

__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs("ubdma: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EX_FAIL;
}

static const char *human(uint64_t bytes, char *buf, size_t len)
{
	static const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int i = 0;

	while (bytes >= 1024 && !(bytes & 1023) && i < 4) {
		bytes >>= 10;
		i++;
	}
	sfmt(buf, len, "%" PRIu64 " %s", bytes, u[i]);
	return buf;
}

/* "1G", "512M", "2048k", "4096": bytes; 0 on a malformed size. */
static uint64_t parse_size(const char *s)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)*s))
		return 0;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return 0;
	int sh = 0;
	switch (tolower((unsigned char)*end)) {
	case 'k': sh = 10; break;
	case 'm': sh = 20; break;
	case 'g': sh = 30; break;
	case 't': sh = 40; break;
	case '\0': return v;
	default: return 0;
	}
	end++;
	if (*end == 'i')
		end++;
	if (*end == 'b' || *end == 'B')
		end++;
	if (*end || v > (UINT64_MAX >> sh))
		return 0;
	return (uint64_t)v << sh;
}

/* ------------------------------------------------------------------- sysfs */

static int read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");

	buf[0] = '\0';
	if (!f)
		return -1;
	if (!fgets(buf, (int)len, f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return errno;
	n = write(fd, s, strlen(s));
	int err = n < 0 ? errno : 0;
	close(fd);
	return err;
}

/* The last component of a symlink's target ("vfio-pci", "12"), or "" when there is no link. */
static const char *link_base(const char *path, char *buf, size_t len)
{
	char t[PATH_MAX];
	ssize_t n = readlink(path, t, sizeof(t) - 1);

	buf[0] = '\0';
	if (n > 0) {
		t[n] = '\0';
		const char *b = strrchr(t, '/');
		sfmt(buf, len, "%s", b ? b + 1 : t);
	}
	return buf;
}

static int exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static int shape(const char *s, const char *pat)
{
	for (; *pat; s++, pat++)
		if (*pat == 'x' ? !isxdigit((unsigned char)*s) : *s != *pat)
			return 0;
	return *s == '\0';
}

/* Canonical "dddd:bb:dd.f" of a PCI address given in long or short form; exit 2 when malformed. */
static void canon_bdf(const char *s, char *out, size_t len)
{
	unsigned dom = 0, bus, dev, fn;

	if (shape(s, "xxxx:xx:xx.x"))
		sscanf(s, "%x:%x:%x.%x", &dom, &bus, &dev, &fn);
	else if (shape(s, "xx:xx.x"))
		sscanf(s, "%x:%x.%x", &bus, &dev, &fn);
	else
		usage_error("'%s' is not a PCI address: give DDDD:BB:DD.F or BB:DD.F in hexadecimal, as "
			    "lspci -D prints it",
			    s);
	if (dev > 0x1f || fn > 7)
		usage_error("'%s' is not a PCI address: device is 00-1f and function 0-7", s);
	sfmt(out, len, "%04x:%02x:%02x.%x", dom, bus, dev, fn);
}

/* canon_bdf() and the device must exist; exit 2 otherwise. */
static void device_bdf(const char *s, char *out, size_t len)
{
	char path[PATH_MAX];

	canon_bdf(s, out, len);
	sfmt(path, sizeof(path), PCI_DEVICES "/%s", out);
	if (!exists(path))
		usage_error("no PCI device %s on this machine (%s does not exist); `ubdma status` lists "
			    "the devices",
			    out, path);
}

static const char *dev_driver(const char *bdf, char *buf, size_t len)
{
	char path[PATH_MAX];

	sfmt(path, sizeof(path), PCI_DEVICES "/%s/driver", bdf);
	return link_base(path, buf, len);
}

static const char *dev_group(const char *bdf, char *buf, size_t len)
{
	char path[PATH_MAX];

	sfmt(path, sizeof(path), PCI_DEVICES "/%s/iommu_group", bdf);
	return link_base(path, buf, len);
}

/* Drivers that leave a group viable for VFIO (the kernel's own list: vfio_dev_driver_allowed). */
static int driver_viable(const char *drv)
{
	return !*drv || !strcmp(drv, "vfio-pci") || !strcmp(drv, "pci-stub") || !strcmp(drv, "pcieport");
}

/*
 * Whether IOMMU group grp is viable: every device in it is unbound or on a driver VFIO accepts.
 * The first device that is not goes to bad/baddrv.
 */
static int group_viable(const char *grp, char *bad, size_t blen, char *baddrv, size_t dlen)
{
	char path[PATH_MAX];
	DIR *d;
	struct dirent *de;
	int ok = 1;

	sfmt(path, sizeof(path), "/sys/kernel/iommu_groups/%s/devices", grp);
	if (!(d = opendir(path)))
		return 0;
	while (ok && (de = readdir(d))) {
		char drv[64];
		if (de->d_name[0] == '.')
			continue;
		dev_driver(de->d_name, drv, sizeof(drv));
		if (!driver_viable(drv)) {
			ok = 0;
			sfmt(bad, blen, "%s", de->d_name);
			sfmt(baddrv, dlen, "%s", drv);
		}
	}
	closedir(d);
	return ok;
}

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int n = 0;

	while (d && (de = readdir(d)))
		n += de->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The PCI addresses of the machine, sorted; free with free_list(). */
static char **pci_list(int *np)
{
	DIR *d = opendir(PCI_DEVICES);
	struct dirent *de;
	char **v = NULL;
	int n = 0;

	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char **nv = realloc(v, (size_t)(n + 1) * sizeof(*v));
		if (!nv)
			break;
		v = nv;
		if ((v[n] = strdup(de->d_name)))
			n++;
	}
	if (d)
		closedir(d);
	if (v)
		qsort(v, (size_t)n, sizeof(*v), cmp_str);
	*np = n;
	return v;
}

static void free_list(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* ------------------------------------------------------------------ status */

struct iommu_state {
	int vfio_dev;	   /* /dev/vfio/vfio */
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
	if (!s->groups)
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

struct dev_row {
	char bdf[16], id[16], cls[16], drv[64], grp[16];
	int node, viable;
};

static void dev_probe(const char *bdf, struct dev_row *r)
{
	char path[PATH_MAX], v[32], d[32], bad[32], baddrv[64];

	sfmt(r->bdf, sizeof(r->bdf), "%s", bdf);
	sfmt(path, sizeof(path), PCI_DEVICES "/%s/vendor", bdf);
	read_line(path, v, sizeof(v));
	sfmt(path, sizeof(path), PCI_DEVICES "/%s/device", bdf);
	read_line(path, d, sizeof(d));
	sfmt(r->id, sizeof(r->id), "%.4s:%.4s", v[0] ? v + 2 : "????", d[0] ? d + 2 : "????");
	sfmt(path, sizeof(path), PCI_DEVICES "/%s/class", bdf);
	read_line(path, r->cls, sizeof(r->cls));
	dev_driver(bdf, r->drv, sizeof(r->drv));
	dev_group(bdf, r->grp, sizeof(r->grp));
	r->viable = r->grp[0] ? group_viable(r->grp, bad, sizeof(bad), baddrv, sizeof(baddrv)) : -1;
	if (ubdma_numa_node_of_pci(bdf, &r->node))
		r->node = UBDMA_NODE_ANY;
}

static void status_iommu(const struct iommu_state *s)
{
	if (json) {
		jopen("iommu", '{');
		jkbool("vfio", s->vfio_dev);
		jkint("iommu_units", s->units);
		jkint("iommu_groups", s->groups);
		jkbool("vfio_pci_driver", s->vfio_pci);
		jkstr("summary", s->summary);
		jclose('}');
		return;
	}
	printf("IOMMU and VFIO\n  %s\n  IOMMU units %d, IOMMU groups %d, /dev/vfio/vfio %s, vfio-pci driver %s\n\n",
	       s->summary, s->units, s->groups, s->vfio_dev ? "present" : "absent",
	       s->vfio_pci ? "loaded" : "not loaded");
}

static void status_devices(void)
{
	int n;
	char **v = pci_list(&n);

	if (json)
		jopen("devices", '[');
	else
		printf("PCI devices\n  %-13s %-10s %-9s %-14s %-6s %-8s %s\n", "address", "id", "class",
		       "driver", "group", "viable", "node");
	for (int i = 0; i < n; i++) {
		struct dev_row r;
		dev_probe(v[i], &r);
		if (json) {
			jopen(NULL, '{');
			jkstr("bdf", r.bdf);
			jkstr("id", r.id);
			jkstr("class", r.cls);
			jkstr("driver", r.drv[0] ? r.drv : NULL);
			if (r.grp[0])
				jkint("iommu_group", atoi(r.grp));
			else
				jknull("iommu_group");
			if (r.viable < 0)
				jknull("viable");
			else
				jkbool("viable", r.viable);
			jkint("numa_node", r.node);
			jclose('}');
		} else {
			char node[8];
			sfmt(node, sizeof(node), "%d", r.node);
			printf("  %-13s %-10s %-9s %-14s %-6s %-8s %s\n", r.bdf, r.id, r.cls, r.drv[0] ? r.drv : "-",
			       r.grp[0] ? r.grp : "-", r.viable < 0 ? "-" : r.viable ? "yes" : "no",
			       r.node < 0 ? "-" : node);
		}
	}
	if (json)
		jclose(']');
	else
		printf("%s\n", n ? "" : "  none\n");
	free_list(v, n);
}

static void status_hugepages(void)
{
	struct ubdma_huge_info info[128];
	struct ubdma_huge_mount m[32];
	int n = 0, nm = 0;
	char b1[32];

	ubdma_huge_info(info, 128, &n);
	ubdma_huge_mounts(m, 32, &nm);
	n = n < 128 ? n : 128;
	nm = nm < 32 ? nm : 32;
	if (json) {
		jopen("hugepages", '{');
		jopen("sizes", '[');
		for (int i = 0; i < n; i++)
			if (info[i].node == UBDMA_NODE_ANY)
				jku64(NULL, info[i].pgsz);
		jclose(']');
		jopen("counts", '[');
		for (int i = 0; i < n; i++) {
			jopen(NULL, '{');
			jku64("pgsz", info[i].pgsz);
			if (info[i].node == UBDMA_NODE_ANY)
				jknull("node");
			else
				jkint("node", info[i].node);
			jku64("total", info[i].total);
			jku64("free", info[i].free);
			jku64("surplus", info[i].surplus);
			jku64("reserved", info[i].reserved);
			jclose('}');
		}
		jclose(']');
		jopen("mounts", '[');
		for (int i = 0; i < nm; i++) {
			jopen(NULL, '{');
			jkstr("path", m[i].path);
			jku64("pgsz", m[i].pgsz);
			jclose('}');
		}
		jclose(']');
		jclose('}');
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

static int has_cap_ipc_lock(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d))
		return 0;
	return !!(d[CAP_IPC_LOCK / 32].effective & (1u << (CAP_IPC_LOCK % 32)));
}

/* The value of the first "key: N kB" line of a /proc file (status, meminfo); -1 without one. */
static long proc_kb(const char *path, const char *key)
{
	FILE *f = fopen(path, "re");
	char line[128];
	long kb = -1;
	size_t kl = strlen(key);

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && line[kl] == ':') {
			kb = strtol(line + kl + 1, NULL, 10);
			break;
		}
	if (f)
		fclose(f);
	return kb;
}

static void status_memlock(void)
{
	struct rlimit rl;
	int cap = has_cap_ipc_lock();
	char b1[32], b2[32];

	getrlimit(RLIMIT_MEMLOCK, &rl);
	if (json) {
		jopen("memlock", '{');
		if (rl.rlim_cur == RLIM_INFINITY)
			jkstr("soft", "unlimited");
		else
			jku64("soft", rl.rlim_cur);
		if (rl.rlim_max == RLIM_INFINITY)
			jkstr("hard", "unlimited");
		else
			jku64("hard", rl.rlim_max);
		jkbool("cap_ipc_lock", cap);
		jkint("locked_kb", proc_kb("/proc/self/status", "VmLck"));
		jclose('}');
		return;
	}
	printf("Locked memory\n  RLIMIT_MEMLOCK %s soft, %s hard; CAP_IPC_LOCK %s\n\n",
	       rl.rlim_cur == RLIM_INFINITY ? "unlimited" : human(rl.rlim_cur, b1, sizeof(b1)),
	       rl.rlim_max == RLIM_INFINITY ? "unlimited" : human(rl.rlim_max, b2, sizeof(b2)),
	       cap ? "yes: the limit does not apply to this user"
		   : "no: every wired byte counts against the limit (raise it with ulimit -l, "
		     "/etc/security/limits.conf or systemd LimitMEMLOCK=)");
}

static void status_backend(void)
{
	ubdma_ctx_t *ctx;
	int err = ubdma_ctx_open(UBDMA_BACKEND_AUTO, &ctx);
	uint64_t lo[8], hi[8];
	int nw = 0;

	if (!err)
		nw = ubdma_ctx_iova_windows(ctx, lo, hi, 8);
	nw = nw < 8 ? nw : 8;
	if (json) {
		jopen("backend", '{');
		jkstr("auto", err ? NULL : ubdma_backend_name(ubdma_ctx_backend(ctx)));
		jkstr("reason", err ? NULL : ubdma_ctx_backend_reason(ctx));
		jkstr("error", err ? ubdma_last_error() : NULL);
		jopen("iova_windows", '[');
		for (int i = 0; i < nw; i++) {
			jopen(NULL, '[');
			jku64(NULL, lo[i]);
			jku64(NULL, hi[i]);
			jclose(']');
		}
		jclose(']');
		jclose('}');
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
static void status_rcache(void)
{
	struct ubdma_rcache_stats st = { 0 };
	ubdma_ctx_t *ctx = NULL;
	ubdma_reg_t *r = NULL;
	const char *why = NULL;
	int err = ubdma_ctx_open(UBDMA_BACKEND_AUTO, &ctx);
	int huge = !err && ubdma_ctx_backend(ctx) == UBDMA_BACKEND_PHYS; /* phys translates hugetlb only */
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
	if (json) {
		jopen("rcache", '{');
		if (why)
			jknull("monitor_active");
		else
			jkbool("monitor_active", st.monitor_active);
		jkstr("monitor", why ? NULL : st.monitor);
		jkstr("error", why);
		jclose('}');
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

static int cmd_status(int argc, char **argv)
{
	struct iommu_state s;

	if (argc > 1)
		usage_error("status takes no arguments (got '%s')", argv[1]);
	iommu_probe(&s);
	if (json)
		jopen(NULL, '{');
	status_iommu(&s);
	status_devices();
	status_hugepages();
	status_memlock();
	status_backend();
	status_rcache();
	if (json)
		jclose('}');
	return 0;
}

/* -------------------------------------------------------------- bind/unbind */

static int run(const char *prog, const char *arg)
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execlp(prog, prog, arg, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Hand bdf to vfio-pci: driver_override, unbind from the current driver, probe.  0 or exit status. */
static int bind_one(const char *bdf, char *grp, size_t glen)
{
	char path[PATH_MAX], drv[64], now[64];
	int err;

	dev_group(bdf, grp, glen);
	if (!grp[0])
		return fail("%s has no IOMMU group: the IOMMU is off or absent, so VFIO cannot isolate the "
			    "device; boot with intel_iommu=on (Intel) or amd_iommu=on (AMD) and check that "
			    "the firmware enables VT-d / AMD-Vi",
			    bdf);
	if (!exists(PCI_DRIVERS "/vfio-pci"))
		run("modprobe", "vfio-pci");
	if (!exists(PCI_DRIVERS "/vfio-pci"))
		return fail("the vfio-pci driver is not available: `modprobe vfio-pci` failed (is the "
			    "module installed for this kernel?)");
	dev_driver(bdf, drv, sizeof(drv));
	if (!strcmp(drv, "vfio-pci"))
		return 0;
	sfmt(path, sizeof(path), PCI_DEVICES "/%s/driver_override", bdf);
	if ((err = write_str(path, "vfio-pci")))
		return fail("cannot write %s: %s%s", path, strerror(err), geteuid() ? " (run as root)" : "");
	if (drv[0]) {
		sfmt(path, sizeof(path), PCI_DEVICES "/%s/driver/unbind", bdf);
		if ((err = write_str(path, bdf))) {
			sfmt(path, sizeof(path), PCI_DEVICES "/%s/driver_override", bdf);
			write_str(path, "\n");
			return fail("cannot unbind %s from %s: %s", bdf, drv, strerror(err));
		}
	}
	write_str("/sys/bus/pci/drivers_probe", bdf);
	if (strcmp(dev_driver(bdf, now, sizeof(now)), "vfio-pci")) {
		/* give the device back to where it was rather than leave it driverless */
		sfmt(path, sizeof(path), PCI_DEVICES "/%s/driver_override", bdf);
		write_str(path, "\n");
		write_str("/sys/bus/pci/drivers_probe", bdf);
		return fail("vfio-pci did not take %s (now on '%s'); see dmesg", bdf, now[0] ? now : "no driver");
	}
	return 0;
}

/*
 * The frame of bind and unbind: every address is checked before any device is touched, so that a
 * typo in the last one leaves the first ones where they were (exit 2 at the first bad one); then
 * one() acts on each in turn and reports it, into a JSON array with --json.  The exit status is
 * the first failure's, but a failure does not stop the others.
 */
static int each_device(int argc, char **argv, const char *usage, int (*one)(const char *bdf))
{
	char (*bdfs)[16];
	int rc = 0;

	if (argc < 2)
		usage_error("%s", usage);
	if (!(bdfs = calloc((size_t)argc, sizeof(*bdfs))))
		return fail("out of memory");
	for (int i = 1; i < argc; i++)
		device_bdf(argv[i], bdfs[i], sizeof(bdfs[i]));
	if (json)
		jopen(NULL, '[');
	for (int i = 1; i < argc; i++) {
		int r = one(bdfs[i]);
		rc = rc ? rc : r;
	}
	if (json)
		jclose(']');
	free(bdfs);
	return rc;
}

static int bind_report(const char *bdf)
{
	char grp[16], bad[32], baddrv[64];
	int r = bind_one(bdf, grp, sizeof(grp)), bound = r == 0;
	int viable = bound && group_viable(grp, bad, sizeof(bad), baddrv, sizeof(baddrv));

	if (!r && !viable) {
		/* bound, but VFIO will refuse to open the group: say which device blocks it */
		fprintf(stderr,
			"ubdma: %s is on vfio-pci, but IOMMU group %s is not viable: %s is bound to %s; "
			"bind every device of the group (`ubdma bind %s`) before opening it\n",
			bdf, grp, bad, baddrv, bad);
		r = EX_FAIL;
	}
	if (json) {
		jopen(NULL, '{');
		jkstr("bdf", bdf);
		jkbool("bound", bound);
		jkstr("iommu_group", grp[0] ? grp : NULL);
		jkbool("viable", viable);
		jclose('}');
	} else if (!r) {
		printf("%s: bound to vfio-pci (IOMMU group %s, viable)\n", bdf, grp);
	}
	return r;
}

static int cmd_bind(int argc, char **argv)
{
	return each_device(argc, argv, "bind needs a PCI address: ubdma bind DDDD:BB:DD.F ...", bind_report);
}

static int unbind_one(const char *bdf, char *now, size_t len)
{
	char path[PATH_MAX], drv[64];
	int err;

	dev_driver(bdf, drv, sizeof(drv));
	sfmt(path, sizeof(path), PCI_DEVICES "/%s/driver_override", bdf);
	if ((err = write_str(path, "\n")))
		return fail("cannot write %s: %s%s", path, strerror(err), geteuid() ? " (run as root)" : "");
	if (!strcmp(drv, "vfio-pci")) {
		sfmt(path, sizeof(path), PCI_DRIVERS "/vfio-pci/unbind");
		if ((err = write_str(path, bdf)))
			return fail("cannot unbind %s from vfio-pci: %s (is it open by a program?)", bdf,
				    strerror(err));
		/* let the kernel find the host driver again */
		write_str("/sys/bus/pci/drivers_probe", bdf);
	}
	dev_driver(bdf, now, len);
	return 0;
}

static int unbind_report(const char *bdf)
{
	char now[64];
	int r = unbind_one(bdf, now, sizeof(now));

	if (json) {
		jopen(NULL, '{');
		jkstr("bdf", bdf);
		jkbool("ok", r == 0);
		jkstr("driver", !r && now[0] ? now : NULL);
		jclose('}');
	} else if (!r) {
		printf("%s: %s%s\n", bdf, now[0] ? "now on " : "no driver took it back", now);
	}
	return r;
}

static int cmd_unbind(int argc, char **argv)
{
	return each_device(argc, argv, "unbind needs a PCI address: ubdma unbind DDDD:BB:DD.F ...",
			   unbind_report);
}

/* --------------------------------------------------------------- hugepages */

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
		if (!json)
			printf("unmounted %s\n", dir);
		return 0;
	}
	if (mkdir(dir, 0755) && errno != EEXIST)
		return fail("cannot create %s: %s", dir, strerror(errno));
	sfmt(opt, sizeof(opt), "pagesize=%" PRIu64, pgsz);
	if (mount("nodev", dir, "hugetlbfs", 0, opt))
		return fail("cannot mount hugetlbfs on %s: %s%s", dir, strerror(errno),
			    geteuid() ? " (run as root)" : "");
	if (!json)
		printf("mounted hugetlbfs with %s pages on %s\n", human(pgsz, b, sizeof(b)), dir);
	return 0;
}

static int cmd_hugepages(int argc, char **argv)
{
	const char *reserve = NULL, *mnt = NULL;
	uint64_t pgsz = 0, bytes = 0;
	int node = UBDMA_NODE_ANY, clear = 0, unmount = 0, rc = 0;
	char b1[32], b2[32];

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
			reserve = val;
		else if (!strcmp(a, "--pagesize") && !(pgsz = parse_size(val)))
			usage_error("hugepages: '%s' is not a size (e.g. 2M, 1G)", val);
		else if (!strcmp(a, "--node"))
			node = parse_node(val);
		else if (!strcmp(a, "--mount") || !strcmp(a, "--unmount")) {
			mnt = val;
			unmount = !strcmp(a, "--unmount");
		}
	}
	if (!pgsz) {
		size_t v[1];
		int n = 0;
		long kb = proc_kb("/proc/meminfo", "Hugepagesize");
		pgsz = kb > 0 ? (uint64_t)kb * 1024 : 0;
		if (!pgsz && !ubdma_huge_sizes(v, 1, &n) && n)
			pgsz = v[0];
	}
	if ((reserve || clear || (mnt && !unmount)) && !size_offered(pgsz))
		usage_error("hugepages: the kernel offers no %s hugepages (see `ubdma status`)",
			    pgsz ? human(pgsz, b1, sizeof(b1)) : "");
	if (reserve) {
		if (!(bytes = parse_size(reserve)) && strcmp(reserve, "0"))
			usage_error("hugepages: '%s' is not a size (e.g. 1G, 512M)", reserve);
		if (bytes % pgsz)
			usage_error("hugepages: %s is not a multiple of the %s page size; give a multiple "
				    "(or another --pagesize)",
				    reserve, human(pgsz, b1, sizeof(b1)));
		if (ubdma_huge_reserve(pgsz, node, bytes / pgsz))
			rc = fail("%s", ubdma_last_error());
		else if (!json)
			printf("reserved %" PRIu64 " pages of %s (%s)%s\n", bytes / pgsz, human(pgsz, b1, sizeof(b1)),
			       human(bytes, b2, sizeof(b2)), node == UBDMA_NODE_ANY ? "" : " on the node asked");
	}
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
	if (!rc && (json || (!reserve && !clear && !mnt))) {
		if (json)
			jopen(NULL, '{');
		status_hugepages();
		if (json)
			jclose('}');
	}
	return rc;
}

/* ------------------------------------------------------------------ rcache */

/* The counters as JSON members, every field of struct ubdma_rcache_stats. */
static void rcache_json_stats(const struct ubdma_rcache_stats *s)
{
	jopen("stats", '{');
	jku64("hits", s->hits);
	jku64("misses", s->misses);
	jku64("merges", s->merges);
	jku64("evictions", s->evictions);
	jku64("invalidations", s->invalidations);
	jku64("bytes_pinned", s->bytes_pinned);
	jku64("entries", s->entries);
	jku64("held_invalid", s->held_invalid);
	jku64("unmonitored", s->unmonitored);
	jku64("limit_failures", s->limit_failures);
	jku64("events_unmap", s->events_unmap);
	jku64("events_remove", s->events_remove);
	jku64("events_remap", s->events_remap);
	jku64("max_bytes", s->max_bytes);
	jku64("max_entries", s->max_entries);
	jku64("max_iommu", s->max_iommu);
	jkbool("monitor_active", s->monitor_active);
	jkstr("monitor", s->monitor);
	jclose('}');
}

static long parse_count(const char *opt, const char *v, long max)
{
	char *end;
	long n = strtol(v, &end, 10);

	if (!isdigit((unsigned char)*v) || *end || n < 1 || n > max)
		usage_error("rcache: %s wants a number from 1 to %ld (got '%s')", opt, max, v);
	return n;
}

/*
 * The cache's counters belong to the process that uses the cache, so the tool shows them on a
 * workload of its own: N buffers, each looked up and put K times in turn (a miss, then K - 1
 * hits), a guard gap between buffers unless --adjacent (then each miss merges with its
 * neighbour), optionally under a byte limit (evictions) and unmapped at the end while cached
 * (the monitor's invalidations).
 */
static int cmd_rcache(int argc, char **argv)
{
	long nbuf = 8, iters = 100;
	uint64_t size = 64 << 10, limit = 0;
	int adjacent = 0, unmap = 0, explicit_only = 0, huge = -1, err;
	enum ubdma_backend be = UBDMA_BACKEND_AUTO;
	char b1[32], b2[32], b3[32];

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--adjacent")) {
			adjacent = 1;
			continue;
		}
		if (!strcmp(a, "--unmap")) {
			unmap = 1;
			continue;
		}
		if (!strcmp(a, "--explicit")) {
			explicit_only = 1;
			continue;
		}
		if (strcmp(a, "--buffers") && strcmp(a, "--size") && strcmp(a, "--iterations") && strcmp(a, "--limit") &&
		    strcmp(a, "--backend") && strcmp(a, "--memory"))
			usage_error("rcache: unknown option '%s' (see ubdma help)", a);
		if (!val)
			usage_error("rcache: %s needs a value", a);
		i++;
		if (!strcmp(a, "--buffers"))
			nbuf = parse_count(a, val, 4096);
		else if (!strcmp(a, "--iterations"))
			iters = parse_count(a, val, 100000000);
		else if (!strcmp(a, "--size") && (!(size = parse_size(val)) || size > ((uint64_t)1 << 30)))
			usage_error("rcache: '%s' is not a size from 1 byte to 1G", val);
		else if (!strcmp(a, "--limit") && !(limit = parse_size(val)))
			usage_error("rcache: '%s' is not a size (e.g. 1M)", val);
		else if (!strcmp(a, "--memory")) {
			if (strcmp(val, "anon") && strcmp(val, "hugetlb"))
				usage_error("rcache: --memory is anon or hugetlb (got '%s')", val);
			huge = !strcmp(val, "hugetlb");
		} else if (!strcmp(a, "--backend")) {
			static const char *names[] = { "auto", "vfio", "phys", "va" };
			static const enum ubdma_backend bes[] = { UBDMA_BACKEND_AUTO, UBDMA_BACKEND_VFIO,
								  UBDMA_BACKEND_PHYS, UBDMA_BACKEND_VA };
			int k = 0;
			while (k < 4 && strcmp(val, names[k]))
				k++;
			if (k == 4)
				usage_error("rcache: --backend is auto, vfio, phys or va (got '%s')", val);
			be = bes[k];
		}
	}

	ubdma_ctx_t *ctx;
	if ((err = ubdma_ctx_open(be, &ctx)))
		return fail("rcache: cannot open a context: %s", ubdma_last_error());
	if (huge < 0)
		huge = ubdma_ctx_backend(ctx) == UBDMA_BACKEND_PHYS; /* phys translates hugetlb memory only */
	/* registrations are whole pages: a buffer takes pgsz-rounded room, a gap one more page */
	uint64_t pgsz = huge ? (uint64_t)2 << 20 : 4096, room = (size + pgsz - 1) & ~(pgsz - 1);
	uint64_t stride = room + (adjacent ? 0 : pgsz), total = stride * (uint64_t)nbuf;
	uint8_t *mem = mmap(NULL, total, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | (huge ? MAP_HUGETLB | (21 << MAP_HUGE_SHIFT) : 0),
			    -1, 0);
	if (mem == MAP_FAILED) {
		ubdma_ctx_close(ctx);
		return fail("rcache: cannot map %s of %s memory: %s%s", human(total, b1, sizeof(b1)),
			    huge ? "2 MiB hugetlb" : "anonymous", strerror(errno),
			    huge ? " (reserve hugepages: ubdma hugepages --reserve SIZE)" : "");
	}
	if ((limit && (err = ubdma_rcache_set_limits(ctx, limit, 0, 0))) ||
	    (explicit_only && (err = ubdma_rcache_set_monitor(ctx, UBDMA_RCACHE_MONITOR_EXPLICIT)))) {
		munmap(mem, total);
		ubdma_ctx_close(ctx);
		return fail("rcache: %s", ubdma_last_error());
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long k = 0; k < iters; k++)
		for (long b = 0; b < nbuf; b++) {
			ubdma_reg_t *r;
			if ((err = ubdma_reg_get(ctx, mem + (uint64_t)b * stride, size, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE,
						 &r))) {
				fail("rcache: ubdma_reg_get of buffer %ld (%s) in round %ld: %s", b,
				     human(size, b1, sizeof(b1)), k + 1, ubdma_last_error());
				munmap(mem, total);
				ubdma_ctx_close(ctx);
				return EX_FAIL;
			}
			ubdma_reg_put(r);
		}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) /
		    ((double)iters * (double)nbuf);
	if (unmap)
		munmap(mem, total); /* while cached: the monitor sees it (or, explicit-only, nobody) */
	struct ubdma_rcache_stats st;
	ubdma_rcache_stats(ctx, &st, sizeof(st));
	if (json) {
		jopen(NULL, '{');
		jkstr("backend", ubdma_backend_name(ubdma_ctx_backend(ctx)));
		jopen("workload", '{');
		jkint("buffers", nbuf);
		jku64("size", size);
		jku64("registered_per_buffer", room);
		jkint("iterations", iters);
		jkstr("memory", huge ? "hugetlb" : "anon");
		jkbool("adjacent", adjacent);
		jku64("limit", limit);
		jkbool("unmap", unmap);
		jkbool("explicit", explicit_only);
		jclose('}');
		rcache_json_stats(&st);
		jsep("ns_per_get_put");
		printf("%.1f", ns);
		jclose('}');
	} else {
		printf("Registration cache of this process, backend %s\n", ubdma_backend_name(ubdma_ctx_backend(ctx)));
		printf("  workload: %ld %s buffers of %s (%s registered each)%s, %ld get/put each in turn%s%s%s\n", nbuf,
		       huge ? "hugetlb" : "anonymous", human(size, b1, sizeof(b1)), human(room, b2, sizeof(b2)),
		       adjacent ? ", adjacent" : "", iters, limit ? ", byte limit " : "",
		       limit ? human(limit, b3, sizeof(b3)) : "", unmap ? ", unmapped at the end" : "");
		printf("  %.0f ns per get/put on average\n", ns);
		ubdma_rcache_stats_print(ctx, stdout);
	}
	if (!unmap)
		munmap(mem, total);
	ubdma_ctx_close(ctx);
	return 0;
}

/* ------------------------------------------------------------------- bench */

/* A small JSON reader: enough for the benchmarks' arrays of flat rows with optional "hist". */
enum jt { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };
struct jv {
	enum jt t;
	double num;
	char *str;	   /* J_STR; the key in an object member */
	char *key;
	struct jv *kids;   /* J_ARR / J_OBJ */
	int n;
};

static const char *jp;

static void jws(void)
{
	while (isspace((unsigned char)*jp))
		jp++;
}

static char *jparse_str(void)
{
	size_t cap = 32, n = 0;
	char *s = malloc(cap);

	jp++;
	while (s && *jp && *jp != '"') {
		char c = *jp++;
		if (c == '\\' && *jp) {
			c = *jp++;
			c = c == 'n' ? '\n' : c == 't' ? '\t' : c;
			if (c == 'u') {
				c = '?';
				for (int i = 0; i < 4 && isxdigit((unsigned char)*jp); i++)
					jp++;
			}
		}
		if (n + 2 > cap) {
			char *ns = realloc(s, cap *= 2);
			if (!ns) {
				free(s);
				return NULL;
			}
			s = ns;
		}
		s[n++] = c;
	}
	if (!s || *jp != '"') {
		free(s);
		return NULL;
	}
	jp++;
	s[n] = '\0';
	return s;
}

static void jfree(struct jv *v)
{
	for (int i = 0; i < v->n; i++)
		jfree(&v->kids[i]);
	free(v->kids);
	free(v->str);
	free(v->key);
}

static int jparse(struct jv *v, int depth)
{
	memset(v, 0, sizeof(*v));
	jws();
	if (depth > 16)
		return -1;
	if (*jp == '"')
		return (v->t = J_STR, v->str = jparse_str()) ? 0 : -1;
	if (*jp == '[' || *jp == '{') {
		char close = *jp == '[' ? ']' : '}';
		v->t = *jp == '[' ? J_ARR : J_OBJ;
		jp++;
		jws();
		while (*jp && *jp != close) {
			char *key = NULL;
			if (v->t == J_OBJ) {
				if (*jp != '"' || !(key = jparse_str()))
					return -1;
				jws();
				if (*jp++ != ':') {
					free(key);
					return -1;
				}
			}
			struct jv *nk = realloc(v->kids, (size_t)(v->n + 1) * sizeof(*nk));
			if (!nk) {
				free(key);
				return -1;
			}
			v->kids = nk;
			int err = jparse(&v->kids[v->n], depth + 1);
			v->kids[v->n++].key = key;
			if (err)
				return -1;
			jws();
			if (*jp == ',')
				jp++, jws();
			else if (*jp != close)
				return -1;
		}
		if (*jp++ != close)
			return -1;
		return 0;
	}
	if (!strncmp(jp, "null", 4))
		return jp += 4, v->t = J_NULL, 0;
	if (!strncmp(jp, "true", 4) || !strncmp(jp, "false", 5)) {
		v->t = J_BOOL;
		v->num = *jp == 't';
		jp += *jp == 't' ? 4 : 5;
		return 0;
	}
	char *end;
	v->t = J_NUM;
	v->num = strtod(jp, &end);
	if (end == jp)
		return -1;
	jp = end;
	return 0;
}

static const struct jv *jget(const struct jv *o, const char *key)
{
	for (int i = 0; o->t == J_OBJ && i < o->n; i++)
		if (!strcmp(o->kids[i].key, key))
			return &o->kids[i];
	return NULL;
}

static const char *jgets(const struct jv *o, const char *key)
{
	const struct jv *v = jget(o, key);
	return v && v->t == J_STR ? v->str : "";
}

static void fmt_num(const struct jv *o, const char *key, char *buf, size_t len)
{
	const struct jv *v = jget(o, key);

	if (v && v->t == J_NUM)
		sfmt(buf, len, "%.3f", v->num);
	else
		sfmt(buf, len, "-");
}

/* The table of one benchmark, as text and as Markdown. */
static void bench_tables(const struct jv *rows, const char *dir, const char *name)
{
	char path[PATH_MAX];
	FILE *t, *md;

	sfmt(path, sizeof(path), "%s/%s.txt", dir, name);
	t = fopen(path, "we");
	sfmt(path, sizeof(path), "%s/%s.md", dir, name);
	md = fopen(path, "we");
	if (t)
		fprintf(t, "%-14s %-22s %-8s %-10s %10s %10s %10s  %s\n", "name", "impl", "backend", "unit", "median",
			"p99", "mean", "note");
	if (md)
		fprintf(md, "| name | impl | backend | unit | median | p99 | mean | note |\n|---|---|---|---|---:|---:|---:|---|\n");
	for (int i = 0; i < rows->n; i++) {
		const struct jv *r = &rows->kids[i];
		char med[32], p99[32], mean[32];
		fmt_num(r, "median", med, sizeof(med));
		fmt_num(r, "p99", p99, sizeof(p99));
		fmt_num(r, "mean", mean, sizeof(mean));
		if (t)
			fprintf(t, "%-14s %-22s %-8s %-10s %10s %10s %10s  %s\n", jgets(r, "name"), jgets(r, "impl"),
				jgets(r, "backend"), jgets(r, "unit"), med, p99, mean, jgets(r, "note"));
		if (md)
			fprintf(md, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", jgets(r, "name"), jgets(r, "impl"),
				jgets(r, "backend"), jgets(r, "unit"), med, p99, mean, jgets(r, "note"));
	}
	if (t)
		fclose(t);
	if (md)
		fclose(md);
}

/*
 * A plot for every row that carries a histogram ("hist": [[value, count], ...]): the data file,
 * the gnuplot script, and the PNG when gnuplot is installed.  Returns the number of PNGs.
 */
static int bench_plots(const struct jv *rows, const char *dir, const char *name, int have_gnuplot)
{
	int pngs = 0;

	for (int i = 0; i < rows->n; i++) {
		const struct jv *r = &rows->kids[i], *h = jget(r, "hist");
		char base[PATH_MAX], path[PATH_MAX + 8];
		FILE *f;

		if (!h || h->t != J_ARR || !h->n)
			continue;
		sfmt(base, sizeof(base), "%s/%s-%s-%s", dir, name, jgets(r, "name"), jgets(r, "impl"));
		for (char *c = base + strlen(dir) + 1; *c; c++)
			if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_')
				*c = '_';
		sfmt(path, sizeof(path), "%s.dat", base);
		if (!(f = fopen(path, "we")))
			continue;
		for (int k = 0; k < h->n; k++)
			if (h->kids[k].t == J_ARR && h->kids[k].n == 2)
				fprintf(f, "%g %g\n", h->kids[k].kids[0].num, h->kids[k].kids[1].num);
		fclose(f);
		sfmt(path, sizeof(path), "%s.gp", base);
		if (!(f = fopen(path, "we")))
			continue;
		fprintf(f,
			"set terminal pngcairo size 800,500 noenhanced\nset output '%s.png'\n"
			"set title '%s: %s (%s)'\nset xlabel '%s'\nset ylabel 'samples'\nset logscale y\n"
			"set style fill solid 0.6\nplot '%s.dat' using 1:2 with boxes notitle\n",
			base, name, jgets(r, "name"), jgets(r, "impl"), jgets(r, "unit"), base);
		fclose(f);
		if (have_gnuplot && run("gnuplot", path) == 0)
			pngs++;
	}
	return pngs;
}

static int is_bench(const char *dir, const char *name)
{
	char path[PATH_MAX];
	struct stat st;

	if (strncmp(name, "bench_", 6))
		return 0;
	sfmt(path, sizeof(path), "%s/%s", dir, name);
	return !stat(path, &st) && S_ISREG(st.st_mode) && (st.st_mode & 0111);
}

/* Run one benchmark with --json (and the extra arguments); its stdout into out.  Exit status. */
static int bench_run(const char *exe, char **extra, int nextra, const char *out, const char *log)
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		char **av = calloc((size_t)nextra + 3, sizeof(*av));
		int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		int fl = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (!av || fo < 0 || fl < 0)
			_exit(126);
		dup2(fo, 1);
		dup2(fl, 2);
		av[0] = (char *)exe;
		av[1] = "--json";
		for (int i = 0; i < nextra; i++)
			av[2 + i] = extra[i];
		execv(exe, av);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (!fseek(f, 0, SEEK_END) && (n = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET) && (buf = malloc((size_t)n + 1))) {
		size_t got = fread(buf, 1, (size_t)n, f);
		buf[got] = '\0';
	}
	fclose(f);
	return buf;
}

static int cmd_bench(int argc, char **argv)
{
	const char *out = "ubdma-bench", *dir = NULL;
	char self[PATH_MAX], defdir[PATH_MAX], **extra = NULL;
	int nextra = 0, rc = 0, nb = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			extra = argv + i + 1;
			nextra = argc - i - 1;
			break;
		}
		if ((strcmp(argv[i], "--out") && strcmp(argv[i], "--bench-dir")) || i + 1 >= argc)
			usage_error("bench: usage: ubdma bench [--out DIR] [--bench-dir DIR] [-- BENCH-ARGS]");
		if (!strcmp(argv[i], "--out"))
			out = argv[++i];
		else
			dir = argv[++i];
	}
	if (!dir) {
		/* the build tree keeps tools/ubdma beside bench/; an installed one looks in libexec */
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		self[n > 0 ? n : 0] = '\0';
		char *slash = strrchr(self, '/');
		if (slash)
			*slash = '\0';
		sfmt(defdir, sizeof(defdir), "%s/../bench", self);
		dir = defdir;
	}
	DIR *d = opendir(dir);
	if (!d)
		usage_error("bench: no benchmark directory %s (give --bench-dir DIR)", dir);
	if (mkdir(out, 0755) && errno != EEXIST) {
		closedir(d);
		return fail("cannot create %s: %s", out, strerror(errno));
	}
	int have_gnuplot = run("gnuplot", "--version") == 0;
	char **names = NULL;
	struct dirent *de;
	while ((de = readdir(d)))
		if (is_bench(dir, de->d_name)) {
			char **nn = realloc(names, (size_t)(nb + 1) * sizeof(*nn));
			if (!nn || !(nn[nb] = strdup(de->d_name))) {
				names = nn ? nn : names;
				break;
			}
			names = nn;
			nb++;
		}
	closedir(d);
	if (names)
		qsort(names, (size_t)nb, sizeof(*names), cmp_str);
	if (!nb)
		rc = fail("no bench_* executables in %s", dir);
	if (json)
		jopen(NULL, '[');
	for (int i = 0; i < nb; i++) {
		char exe[PATH_MAX], jpath[PATH_MAX], lpath[PATH_MAX];
		struct jv rows = { 0 };
		sfmt(exe, sizeof(exe), "%s/%s", dir, names[i]);
		sfmt(jpath, sizeof(jpath), "%s/%s.json", out, names[i]);
		sfmt(lpath, sizeof(lpath), "%s/%s.log", out, names[i]);
		if (!json)
			fprintf(stderr, "ubdma bench: running %s\n", names[i]);
		int st = bench_run(exe, extra, nextra, jpath, lpath), pngs = 0, ok = 0;
		char *text = st == 0 ? slurp(jpath) : NULL;
		if (text && (jp = text, jparse(&rows, 0) == 0) && rows.t == J_ARR) {
			bench_tables(&rows, out, names[i]);
			pngs = bench_plots(&rows, out, names[i], have_gnuplot);
			ok = 1;
		}
		if (!ok)
			rc = fail("%s %s (see %s)", names[i], st ? "failed" : "printed no JSON array", lpath);
		if (json) {
			jopen(NULL, '{');
			jkstr("bench", names[i]);
			jkbool("ok", ok);
			jkint("rows", ok ? rows.n : 0);
			jkint("plots", pngs);
			jkstr("json", jpath);
			jclose('}');
		} else if (ok) {
			printf("%s: %d rows -> %s/%s.{json,txt,md}%s\n", names[i], rows.n, out, names[i],
			       pngs ? ", plots as PNG" : "");
		}
		jfree(&rows);
		free(text);
		free(names[i]);
	}
	if (json)
		jclose(']');
	free(names);
	return rc;
}

/* -------------------------------------------------------------------- main */

static void help(FILE *f)
{
	fprintf(f,
		"usage: ubdma [--json] COMMAND [ARGS]\n"
		"  status                      IOMMU and VFIO, PCI devices (driver, IOMMU group, viability,\n"
		"                              NUMA node), hugepages per size and node, locked-memory limits,\n"
		"                              the backend UBDMA_BACKEND_AUTO picks and why, the\n"
		"                              registration cache's monitor\n"
		"  bind BDF...                 hand PCI functions to vfio-pci (driver_override)\n"
		"  unbind BDF...               give them back to their host driver\n"
		"  hugepages [--show] [--reserve SIZE] [--pagesize SIZE] [--node N] [--clear]\n"
		"            [--mount DIR | --unmount DIR]\n"
		"                              show, reserve (total SIZE in pages of --pagesize, default\n"
		"                              the default hugepage size) or clear hugepages; mount hugetlbfs\n"
		"  rcache [--buffers N] [--size SIZE] [--iterations K] [--limit SIZE] [--adjacent] [--unmap]\n"
		"         [--explicit] [--backend auto|vfio|phys|va] [--memory anon|hugetlb]\n"
		"                              the registration cache's counters (hits, misses, merges,\n"
		"                              evictions, invalidations, bytes pinned) on a workload of its own:\n"
		"                              N buffers (default 8 of 64K), each got and put K times (100)\n"
		"  bench [--out DIR] [--bench-dir DIR] [-- ARGS]\n"
		"                              run every bench_* with --json; tables (.txt, .md) and plots\n"
		"  help                        this text\n"
		"Exit status: 0 done, 1 failed, 2 bad usage or input.  See ubdma(8).\n");
}

int main(int argc, char **argv)
{
	int i = 1;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--json"))
			json = 1;
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return help(stdout), 0;
		else
			usage_error("unknown option '%s' (see ubdma help)", argv[i]);
	}
	if (i == argc) {
		help(stderr);
		return EX_USAGE;
	}
	const char *cmd = argv[i];
	argc -= i;
	argv += i;
	/* a trailing --json is accepted too, as scripts tend to add it last */
	for (int k = 1; k < argc && strcmp(argv[k], "--"); k++)
		if (!strcmp(argv[k], "--json")) {
			json = 1;
			memmove(argv + k, argv + k + 1, (size_t)(argc - k) * sizeof(*argv));
			argc--;
			break;
		}
	if (!strcmp(cmd, "status"))
		return cmd_status(argc, argv);
	if (!strcmp(cmd, "bind"))
		return cmd_bind(argc, argv);
	if (!strcmp(cmd, "unbind"))
		return cmd_unbind(argc, argv);
	if (!strcmp(cmd, "hugepages"))
		return cmd_hugepages(argc, argv);
	if (!strcmp(cmd, "bench"))
		return cmd_bench(argc, argv);
	if (!strcmp(cmd, "rcache"))
		return cmd_rcache(argc, argv);
	if (!strcmp(cmd, "help"))
		return help(stdout), 0;
	usage_error("unknown command '%s' (status, bind, unbind, hugepages, rcache, bench, help)", cmd);
}
