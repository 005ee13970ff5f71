/*
 * test_pci_open - ubdma_pci_open()'s errors and the services of an open device, public API only.
 *
 * Runs in the test-bed guest: $UBDMA_VM_NVME is QEMU's NVMe (1b36:0010) and $UBDMA_VM_NIC the
 * e1000e, both bound to vfio-pci.  Errors: NULL arguments and malformed addresses (EINVAL), a
 * context not on vfio (ENOTSUP), an address with no device (ENODEV), a device bound to no driver
 * (ENXIO) or to its kernel driver (EBUSY), each with a message that names the rebinding commands;
 * the same device twice in a context, and its group from a second context (EBUSY).  Services:
 * canonical address, BAR mapping and its cache, BAR numbers without a BAR, configuration space
 * reads and bounds, bus mastering on and off, function reset, MSI-X enable/disable rules, NUMA
 * node, DMA tag; the request and error interrupts and a release (notify_release()).  The e1000e is rebound by the test and returned to vfio-pci at the end.
 * Exit status: 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ubdma/ubdma.h>

#include "backend.h"
#include "check.h"

#define EXIT_SKIP 77

static void sysfs_write(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY);

	if (fd < 0 || write(fd, val, strlen(val)) < 0)
		printf("# write '%s' to %s: %s\n", val, path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

static const char *driver_of(const char *bdf, char *buf, size_t len)
{
	char path[128], target[256];
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", bdf);
	if ((n = readlink(path, target, sizeof(target) - 1)) < 0)
		return "none";
	target[n] = '\0';
	snprintf(buf, len, "%s", basename(target));
	return buf;
}

/* Bind bdf to drv ("" = no driver), through driver_override as the guest's /init does. */
static void rebind(const char *bdf, const char *drv)
{
	char path[160], cur[64];

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver_override", bdf);
	sysfs_write(path, *drv ? drv : "\n");
	if (strcmp(driver_of(bdf, cur, sizeof(cur)), "none")) {
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver/unbind", bdf);
		sysfs_write(path, bdf);
	}
	if (*drv)
		sysfs_write("/sys/bus/pci/drivers_probe", bdf);
}

/* ubdma_pci_open(ctx, bdf) fails with want and a message holding each of the words. */
static void open_fails(ubdma_ctx_t *ctx, const char *bdf, int want, const char *w1, const char *w2)
{
	ubdma_pci_t *dev = NULL;
	int rc = ubdma_pci_open(ctx, bdf, &dev);
	const char *msg = ubdma_last_error();

	check(rc == want && !dev && (!w1 || strstr(msg, w1)) && (!w2 || strstr(msg, w2)),
	      "open('%s') -> %s (want %s): %s", bdf ? bdf : "(null)", strerror(rc), strerror(want), msg);
	if (dev)
		ubdma_pci_close(dev);
}

static void errors(ubdma_ctx_t *ctx, const char *nvme, const char *nic)
{
	static const char *bad[] = { "", "zz", "0000:00:02", "0000:00:20.0", "0000:00:02.8",
				     "0000:00:02.0x", "g000:00:02.0", "0000-00:02.0", "00:02" };
	ubdma_pci_t *dev = NULL;
	ubdma_ctx_t *va = NULL;
	char path[128], drv[64];

	check(ubdma_pci_open(NULL, nvme, &dev) == EINVAL, "open(NULL ctx) -> EINVAL");
	check(ubdma_pci_open(ctx, NULL, &dev) == EINVAL, "open(NULL bdf) -> EINVAL");
	check(ubdma_pci_open(ctx, nvme, NULL) == EINVAL, "open(NULL devp) -> EINVAL");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		open_fails(ctx, bad[i], EINVAL, "DDDD:BB:DD.F", NULL);

	/* an address with no device: the first free device number on bus 0 */
	for (int d = 0x1e; d > 4; d--) {
		char bdf[16];
		snprintf(bdf, sizeof(bdf), "0000:00:%02x.0", d);
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", bdf);
		if (access(path, F_OK)) {
			open_fails(ctx, bdf, ENODEV, "no PCI device", NULL);
			break;
		}
	}

	if (!ubdma_ctx_open(UBDMA_BACKEND_VA, &va)) {
		open_fails(va, nvme, ENOTSUP, "vfio", NULL);
		ubdma_ctx_close(va);
	}

	if (!nic || !*nic) {
		printf("# SKIP: no e1000e for the driver-binding cases\n");
		return;
	}
	rebind(nic, "");
	const char *now = driver_of(nic, drv, sizeof(drv));
	check(!strcmp(now, "none"), "%s unbound (driver %s)", nic, now);
	open_fails(ctx, nic, ENXIO, "vfio-pci", "drivers_probe");
	rebind(nic, "e1000e");
	if (!strcmp(driver_of(nic, drv, sizeof(drv)), "e1000e"))
		open_fails(ctx, nic, EBUSY, "bound to e1000e", "driver_override");
	else
		printf("# SKIP: could not bind %s to e1000e (driver %s)\n", nic, drv);
	rebind(nic, "vfio-pci");
	check(!strcmp(driver_of(nic, drv, sizeof(drv)), "vfio-pci"), "%s back on vfio-pci", nic);
}

/*
 * The device's DMA tag: a tag of its own under the context's root, which only ubdma_pci_close()
 * destroys; the driver's tags under it get DMA memory whose IOVAs lie in the context's windows.
 */
static void device_tag(ubdma_ctx_t *ctx, ubdma_pci_t *dev)
{
	ubdma_tag_t *dt = ubdma_pci_dma_tag(dev), *t;
	ubdma_iova_t lo[8], hi[8];
	ubdma_map_t *m;
	void *p;
	int n = 0, in = 0;

	check(ubdma_ctx_iova_windows(ctx, lo, hi, 8, &n) == 0, "ubdma_ctx_iova_windows() -> 0");
	check(dt && dt != ubdma_ctx_tag(ctx), "device DMA tag is a tag of its own");
	check(ubdma_tag_destroy(dt) == EINVAL, "ubdma_tag_destroy(device tag) -> EINVAL");
	check(ubdma_tag_set_lockfunc(dt, NULL, NULL) == 0, "ubdma_tag_set_lockfunc(device tag) -> 0");
	if (ubdma_tag_create(dt, 4096, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, 8192, 1, 8192, 0, &t)) {
		check(0, "tag under the device tag: %s", ubdma_last_error());
		return;
	}
	int rc = ubdma_mem_alloc(t, &p, UBDMA_ZERO, &m);
	check(rc == 0, "DMA memory under the device tag -> %s", rc ? ubdma_last_error() : "0");
	if (!rc) {
		ubdma_iova_t iova = ubdma_vtoiova(ctx, p);
		for (int i = 0; i < n && i < 8; i++)
			in |= iova >= lo[i] && iova + 8191 <= hi[i];
		check(in, "its IOVA %#llx lies in the context's windows", (unsigned long long)iova);
		ubdma_mem_free(t, p, m);
	}
	check(ubdma_tag_destroy(t) == 0, "tag under the device tag destroyed");
}

static void services(ubdma_ctx_t *ctx, const char *nvme)
{
	ubdma_pci_t *dev = NULL, *dev2 = NULL;
	ubdma_ctx_t *ctx2 = NULL;
	char shortname[16], upper[16];
	uint16_t vid = 0, did = 0, cmd = 0;
	uint32_t dw;
	size_t len = 0, len2 = 0;
	int rc, fds[4];

	/* "BB:DD.F" and upper case name the same device; the name comes back canonical */
	snprintf(shortname, sizeof(shortname), "%s", nvme + 5);
	for (size_t i = 0; i <= strlen(nvme); i++)
		upper[i] = (char)(nvme[i] >= 'a' && nvme[i] <= 'f' ? nvme[i] - 32 : nvme[i]);
	rc = ubdma_pci_open(ctx, shortname, &dev);
	check(rc == 0 && !strcmp(ubdma_pci_bdf(dev), nvme), "open('%s') -> %s, name '%s'", shortname,
	      rc ? ubdma_last_error() : "0", rc ? "" : ubdma_pci_bdf(dev));
	if (rc)
		return;
	check(ubdma_pci_ctx(dev) == ctx, "device knows its context");
	open_fails(ctx, upper, EBUSY, "already open", NULL);
	if (!ubdma_ctx_open(guest_backend(), &ctx2)) {
		open_fails(ctx2, nvme, EBUSY, "already open", NULL);
		ubdma_ctx_close(ctx2);
	}

	void *bar0 = ubdma_pci_bar(dev, 0, &len);
	check(bar0 && len >= 0x2000, "BAR0 at %p, %#zx bytes", bar0, len);
	check(ubdma_pci_bar(dev, 0, &len2) == bar0 && len2 == len, "BAR0 mapped once (cached)");
	check(!ubdma_pci_bar(dev, 1, NULL), "BAR1 (upper half of the 64-bit BAR0) -> NULL: %s",
	      ubdma_last_error());
	check(!ubdma_pci_bar(dev, 6, NULL) && !ubdma_pci_bar(dev, -1, NULL), "BAR 6 and -1 -> NULL");
	check(!ubdma_pci_bar(NULL, 0, NULL), "BAR of NULL device -> NULL");

	rc = ubdma_pci_cfg_read(dev, 0, &vid, 2) | ubdma_pci_cfg_read(dev, 2, &did, 2);
	check(rc == 0 && vid == 0x1b36 && did == 0x0010, "config: vendor %04x device %04x", vid, did);
	check(ubdma_pci_cfg_read(dev, 4095, &dw, 4) == EINVAL, "config read past the end -> EINVAL");
	check(ubdma_pci_cfg_read(dev, 0, &dw, 0) == EINVAL, "config read of 0 bytes -> EINVAL");
	check(ubdma_pci_cfg_read(dev, 0, NULL, 4) == EINVAL, "config read into NULL -> EINVAL");

	rc = ubdma_pci_bus_master(dev, 1) || ubdma_pci_cfg_read(dev, 4, &cmd, 2);
	check(!rc && (cmd & 4), "bus master on: command %#06x", cmd);
	rc = ubdma_pci_bus_master(dev, 0) || ubdma_pci_cfg_read(dev, 4, &cmd, 2);
	check(!rc && !(cmd & 4), "bus master off: command %#06x", cmd);

	rc = ubdma_pci_reset(dev);
	check(rc == 0 || rc == ENOTSUP, "reset -> %s %s", strerror(rc), rc ? ubdma_last_error() : "");
	vid = 0;
	check(!ubdma_pci_cfg_read(dev, 0, &vid, 2) && vid == 0x1b36, "device answers after reset");
	check(*(volatile uint32_t *)((char *)bar0 + 8) != 0xffffffff, "BAR0 still mapped after reset "
	      "(VS %#x)", *(volatile uint32_t *)((char *)bar0 + 8));

	unsigned nv = ubdma_pci_msix_count(dev);
	check(nv > 0, "MSI-X vectors: %u", nv);
	check(ubdma_pci_msix_enable(dev, 0, fds) == EINVAL, "MSI-X enable of 0 vectors -> EINVAL");
	check(ubdma_pci_msix_enable(dev, nv + 1, fds) == EINVAL, "MSI-X enable of %u -> EINVAL", nv + 1);
	rc = ubdma_pci_msix_enable(dev, nv < 4 ? nv : 4, fds);
	check(rc == 0 && fcntl(fds[0], F_GETFD) >= 0, "MSI-X enable -> %s", rc ? ubdma_last_error() : "0");
	check(ubdma_pci_msix_enable(dev, 1, fds) == EBUSY, "MSI-X enable twice -> EBUSY");
	int keep = fds[0];
	check(ubdma_pci_msix_disable(dev) == 0 && fcntl(keep, F_GETFD) < 0,
	      "MSI-X disable closes the eventfds");
	check(ubdma_pci_msix_disable(dev) == 0, "MSI-X disable when off -> 0");
	check(ubdma_pci_msix_enable(dev, 1, fds) == 0, "MSI-X enable again (left on for close)");

	int node = ubdma_pci_numa_node(dev), node2 = -2;
	check(node >= -1, "NUMA node %d", node);
	rc = ubdma_numa_node_of_pci(nvme, &node2);
	check(!rc && node2 == node, "NUMA node as ubdma_numa_node_of_pci: %d", node2);
	device_tag(ctx, dev);

	/* a second device in the same context (its own group) */
	const char *nic = getenv("UBDMA_VM_NIC");
	if (nic && *nic) {
		rc = ubdma_pci_open(ctx, nic, &dev2);
		check(rc == 0, "second device %s in the same container -> %s", nic,
		      rc ? ubdma_last_error() : "0");
		ubdma_pci_close(dev2);
	}
	ubdma_pci_close(dev);
	ubdma_pci_close(NULL);

	/* closed for real: another context can take the group now */
	if (!ubdma_ctx_open(guest_backend(), &ctx2)) {
		rc = ubdma_pci_open(ctx2, nvme, &dev);
		check(rc == 0, "after close another context opens it -> %s", rc ? ubdma_last_error() : "0");
		/* left open: ubdma_ctx_close() must close it */
		ubdma_ctx_close(ctx2);
	}
}

/*
 * The kernel's request and error interrupts, and a release: the handle stays, BAR0 stays mapped
 * and reads all ones, MSI-X eventfds are signalled, the configuration space and the other
 * services give ENODEV, the device file is closed and the group detached (another context can
 * open the device), and the eventfds stay open until the close.
 */
static void notify_release(const char *nvme)
{
	ubdma_ctx_t *ctx, *ctx2;
	ubdma_pci_t *dev, *dev2;
	int req = -2, err = -2, req2 = -2, err2 = -2, mfd = -1, rc;
	size_t len = 0;
	uint32_t dw;
	uint64_t n = 0;
	void *addr;

	if (ubdma_ctx_open(guest_backend(), &ctx))
		return;
	if ((rc = ubdma_pci_open(ctx, nvme, &dev))) {
		check(0, "open %s for the release: %s", nvme, ubdma_last_error());
		ubdma_ctx_close(ctx);
		return;
	}
	volatile uint32_t *bar0 = ubdma_pci_bar(dev, 0, &len);
	check(bar0 && bar0[2] != 0xffffffff, "BAR0 mapped: VS %#x", bar0 ? bar0[2] : 0);
	check(ubdma_pci_notify_fds(NULL, &req, &err) == EINVAL, "notify_fds(NULL device) -> EINVAL");
	check(ubdma_pci_notify_fds(dev, NULL, &err) == EINVAL, "notify_fds(NULL req_fd) -> EINVAL");
	rc = ubdma_pci_notify_fds(dev, &req, &err);
	check(rc == 0 && fcntl(req, F_GETFD) >= 0 && (err == -1 || fcntl(err, F_GETFD) >= 0),
	      "notify_fds -> request eventfd %d, error eventfd %d: %s", req, err, rc ? ubdma_last_error() : "0");
	rc = ubdma_pci_notify_fds(dev, &req2, NULL);
	check(rc == 0 && req2 == req, "notify_fds again -> the same eventfd (%d)", req2);
	check(read(req, &n, sizeof(n)) < 0 && errno == EAGAIN, "no request yet: the eventfd is empty");
	check(ubdma_pci_msix_enable(dev, 1, &mfd) == 0, "MSI-X on: one vector");

	check(ubdma_pci_release(NULL) == EINVAL, "release(NULL) -> EINVAL");
	rc = ubdma_pci_release(dev);
	check(rc == 0, "release -> %s", rc ? ubdma_last_error() : "0");
	check(bar0[2] == 0xffffffff && bar0[7] == 0xffffffff, "BAR0 still at its address, reading all ones "
	      "(VS %#x, CSTS %#x)", bar0[2], bar0[7]);
	bar0[0x1000 / 4] = 1; /* a doorbell written after the release lands in process memory */
	check(1, "a write to BAR0 after the release does not fault");
	ssize_t got = read(mfd, &n, sizeof(n));
	check(got == sizeof(n) && n >= 1, "the MSI-X eventfd was signalled (%llu)", (unsigned long long)n);
	check(fcntl(req, F_GETFD) >= 0 && fcntl(mfd, F_GETFD) >= 0, "the eventfds stay open until close");
	check(ubdma_pci_cfg_read(dev, 0, &dw, 4) == ENODEV, "config read after release -> ENODEV: %s",
	      ubdma_last_error());
	check(ubdma_pci_cfg_write(dev, 0x40, &dw, 4) == ENODEV, "config write after release -> ENODEV");
	check(ubdma_pci_bus_master(dev, 1) == ENODEV, "bus master after release -> ENODEV");
	check(ubdma_pci_reset(dev) == ENODEV, "reset after release -> ENODEV");
	check(ubdma_pci_msix_enable(dev, 1, &mfd) == ENODEV, "MSI-X enable after release -> ENODEV");
	check(ubdma_pci_notify_fds(dev, &req2, &err2) == ENODEV, "notify_fds after release -> ENODEV");
	check(ubdma_pci_bar_map(dev, 2, &addr, NULL) == ENODEV && !addr, "a BAR not mapped before -> ENODEV");
	check(ubdma_pci_bar(dev, 0, NULL) == (void *)bar0, "BAR0 is still given (the all-ones memory)");
	check(ubdma_pci_dma_tag(dev) != NULL, "the DMA tag stays");
	check(ubdma_pci_release(dev) == 0, "release twice -> 0");
	/* given back: the group is free, another context opens the device */
	if (!ubdma_ctx_open(guest_backend(), &ctx2)) {
		rc = ubdma_pci_open(ctx2, nvme, &dev2);
		check(rc == 0, "after the release another context opens %s -> %s", nvme, rc ? ubdma_last_error() : "0");
		if (!rc)
			ubdma_pci_close(dev2);
		ubdma_ctx_close(ctx2);
	}
	ubdma_pci_close(dev);
	check(fcntl(req, F_GETFD) < 0 && fcntl(mfd, F_GETFD) < 0, "close closes the eventfds");
	ubdma_ctx_close(ctx);
}

int main(void)
{
	const char *nvme = getenv("UBDMA_VM_NVME"), *nic = getenv("UBDMA_VM_NIC");
	ubdma_ctx_t *ctx = NULL;
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!nvme || !*nvme || !getenv("UBDMA_VM_NVME_DRIVER") ||
	    strcmp(getenv("UBDMA_VM_NVME_DRIVER"), "vfio-pci")) {
		printf("# SKIP: no NVMe controller on vfio-pci ($UBDMA_VM_NVME)\n");
		return EXIT_SKIP;
	}
	if ((rc = ubdma_ctx_open(guest_backend(), &ctx))) {
		check(0, "ubdma_ctx_open(VFIO): %s", ubdma_last_error());
		return 1;
	}
	errors(ctx, nvme, nic);
	services(ctx, nvme);
	ubdma_ctx_close(ctx);
	notify_release(nvme);
	printf("# %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
