/*
 * pci.c - opening and closing PCI functions through VFIO, and the small services of an open
 * function: configuration space, bus mastering, reset, NUMA node, its DMA tag.
 *
 * Opening follows Documentation/driver-api/vfio.rst: the function must be bound to vfio-pci
 * (sysfs driver link) and have an IOMMU group (sysfs iommu_group link); the context's backend
 * attaches it (iommu_attach(): for a VFIO container, the group must be viable) and gives the
 * device file (iommu_device_fd()), whose regions (VFIO_DEVICE_GET_REGION_INFO) are the BARs and
 * the configuration space.  Each check names the fix in ubdma_last_error(), because "it does not
 * open" is the first thing a new user of VFIO meets.
 *
 * The layer's state in a context (CTX_LAYER_PCI) is the list of its open devices, made on the
 * first open; ubdma_ctx_close() closes them first (pci_layer.fini).
 *
 * The device's DMA tag is a child of the context's root tag made at open (busdma_device_tag_create()):
 * it carries the IOVA ranges the device may use, read once its group is attached (the container's
 * ranges then: the intersection over its groups, so never wider than this device's own), and the
 * device's NUMA node (ubdma_numa_node_of_pci(), the library's one answer to that question).
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/bdf.h"
#include "base/log.h"
#include "base/sysfs.h"
#include "busdma/busdma_int.h"
#include "core/ctx.h"
#include "pci/pcidev.h"

#define PCI_COMMAND 0x04	     /* PCI Local Bus spec 3.0, 6.2.2 Command register */
#define PCI_COMMAND_MASTER 0x0004 /* bit 2: Bus Master Enable */

/* The device exists, is bound to vfio-pci and has an IOMMU group: its number in *groupp. */
static int check_device(const char *bdf, int *groupp)
{
	char path[128], drv[64], grp[64], *end;
	struct stat st;

	sysfs_pci_path(path, sizeof(path), bdf, NULL); /* a canonical bdf: it fits */
	if (stat(path, &st))
		return uerr(ENODEV, "no PCI device %s (%s missing; lspci -D lists the devices)", bdf, path);
	int err = sysfs_pci_link_name(bdf, "driver", drv, sizeof(drv));
	if (err == ENOENT)
		return uerr(ENXIO,
			    "%s is bound to no driver; bind it to vfio-pci: echo vfio-pci > %s/"
			    "driver_override; echo %s > /sys/bus/pci/drivers_probe (or: ubdma bind %s)",
			    bdf, path, bdf, bdf);
	if (err)
		return uerr(err, "cannot read %s/driver: %s", path, strerror(err));
	if (strcmp(drv, "vfio-pci"))
		return uerr(EBUSY,
			    "%s is bound to %s, not vfio-pci; rebind it: echo vfio-pci > %s/"
			    "driver_override; echo %s > %s/driver/unbind; echo %s > "
			    "/sys/bus/pci/drivers_probe (or: ubdma bind %s)",
			    bdf, drv, path, bdf, path, bdf, bdf);
	if ((err = sysfs_pci_link_name(bdf, "iommu_group", grp, sizeof(grp))))
		return uerr(ENOTSUP, "%s has no IOMMU group: the IOMMU is off (boot with "
			    "intel_iommu=on or amd_iommu=on) or absent", bdf);
	long g = strtol(grp, &end, 10);
	if (*end || g < 0 || g > 0x7fffffff)
		return uerr(ENOTSUP, "%s is in IOMMU group '%s', which is not a number", bdf, grp);
	*groupp = (int)g;
	return 0;
}

/* Device, configuration region and MSI-X information from the device file. */
static int read_device_info(struct ubdma_pci *dev)
{
	struct vfio_device_info di = { .argsz = sizeof(di) };
	struct vfio_region_info cfg = { .argsz = sizeof(cfg), .index = VFIO_PCI_CONFIG_REGION_INDEX };
	struct vfio_irq_info irq = { .argsz = sizeof(irq), .index = VFIO_PCI_MSIX_IRQ_INDEX };

	if (ioctl(dev->fd, VFIO_DEVICE_GET_INFO, &di))
		return uerr(errno, "VFIO_DEVICE_GET_INFO on %s failed: %s", dev->bdf, strerror(errno));
	if (!(di.flags & VFIO_DEVICE_FLAGS_PCI) || di.num_regions <= VFIO_PCI_CONFIG_REGION_INDEX)
		return uerr(ENOTSUP, "%s is not a VFIO PCI device", dev->bdf);
	if (ioctl(dev->fd, VFIO_DEVICE_GET_REGION_INFO, &cfg))
		return uerr(errno, "VFIO_DEVICE_GET_REGION_INFO(config) on %s failed: %s", dev->bdf,
			    strerror(errno));
	dev->dev_flags = di.flags;
	dev->cfg_off = cfg.offset;
	dev->cfg_size = cfg.size;
	if (di.num_irqs > VFIO_PCI_MSIX_IRQ_INDEX && !ioctl(dev->fd, VFIO_DEVICE_GET_IRQ_INFO, &irq) &&
	    (irq.flags & VFIO_IRQ_INFO_EVENTFD))
		dev->msix_count = irq.count;
	return 0;
}

/* The device's tag under the context's root: its aperture and node (dev->numa, set before). */
static int make_dma_tag(struct ubdma_pci *dev)
{
	struct iommu_window win[IOMMU_MAX_WINDOWS];
	ubdma_iova_t lo[IOMMU_MAX_WINDOWS], hi[IOMMU_MAX_WINDOWS];
	int n;
	int err = ubdma_ctx_iova_windows(dev->ctx, lo, hi, IOMMU_MAX_WINDOWS, &n);

	if (err)
		return err;
	n = n < IOMMU_MAX_WINDOWS ? n : IOMMU_MAX_WINDOWS;
	for (int i = 0; i < n; i++)
		win[i] = (struct iommu_window){ lo[i], hi[i] };
	const struct busdma_device bd = { .windows = win, .nwindows = n, .node = dev->numa };
	err = busdma_device_tag_create(ubdma_ctx_tag(dev->ctx), &bd, &dev->tag);
	if (err)
		return err;
	ULOG_DEBUG("%s: DMA tag %p, %d IOVA ranges up to %#llx, node %d", dev->bdf, (void *)dev->tag, n,
		   (unsigned long long)dev->tag->lowaddr, dev->numa);
	return 0;
}

/* The layer's state in a context: its open devices, linked and unlinked under ctx->reg_lock. */
struct pci_devs {
	LIST_HEAD(, ubdma_pci) head;
};

static struct ubdma_pci *list_find(struct ubdma_ctx *ctx, const char *bdf)
{
	struct pci_devs *devs = ctx_layer_state(ctx, CTX_LAYER_PCI);
	struct ubdma_pci *d;

	if (!devs)
		return NULL;
	LIST_FOREACH(d, &devs->head, link)
		if (!strcmp(d->bdf, bdf))
			return d;
	return NULL;
}

/*
 * Link dev into the context's list, unless the same function is open there already (EBUSY); the
 * first device makes the list (ENOMEM when it cannot).
 */
static int list_insert(struct ubdma_ctx *ctx, struct ubdma_pci *dev)
{
	struct pci_devs *devs;

	pthread_mutex_lock(&ctx->reg_lock);
	if (list_find(ctx, dev->bdf)) {
		pthread_mutex_unlock(&ctx->reg_lock);
		return EBUSY;
	}
	if (!(devs = ctx_layer_state(ctx, CTX_LAYER_PCI))) {
		if (!(devs = calloc(1, sizeof(*devs)))) {
			pthread_mutex_unlock(&ctx->reg_lock);
			return ENOMEM;
		}
		LIST_INIT(&devs->head);
		ctx_layer_set(ctx, CTX_LAYER_PCI, devs); /* from now on ubdma_ctx_close() runs pci_fini() */
	}
	LIST_INSERT_HEAD(&devs->head, dev, link);
	pthread_mutex_unlock(&ctx->reg_lock);
	return 0;
}

static void list_remove(struct ubdma_ctx *ctx, struct ubdma_pci *dev)
{
	pthread_mutex_lock(&ctx->reg_lock);
	LIST_REMOVE(dev, link);
	pthread_mutex_unlock(&ctx->reg_lock);
}

int ubdma_pci_open(ubdma_ctx_t *ctx, const char *bdf, ubdma_pci_t **devp)
{
	struct ubdma_pci *dev;
	int group = -1, err; /* set by check_device(); gcc -O2 cannot see it on every path */

	if (!ctx || !bdf || !devp)
		return uerr(EINVAL, "NULL argument");
	if (!(dev = calloc(1, sizeof(*dev))))
		return uerr(ENOMEM, "out of memory");
	if (bdf_canon(bdf, dev->bdf, sizeof(dev->bdf))) {
		free(dev);
		return uerr(EINVAL, "'%.40s' is not a PCI address: want DDDD:BB:DD.F, e.g. 0000:00:02.0",
			    bdf);
	}
	if (!(iommu_caps(&ctx->iommu) & IOMMU_CAP_DEVICES)) {
		char names[64];
		iommu_device_backends(names, sizeof(names));
		err = uerr(ENOTSUP, "cannot open %s: the context is on the %s backend, which cannot "
			   "attach devices; PCI devices need one of: %s", dev->bdf, iommu_name(&ctx->iommu),
			   names);
		goto fail_free;
	}
	pthread_mutex_lock(&ctx->reg_lock);
	int dup = list_find(ctx, dev->bdf) != NULL;
	pthread_mutex_unlock(&ctx->reg_lock);
	if (dup) {
		err = uerr(EBUSY, "%s is already open in this context", dev->bdf);
		goto fail_free;
	}
	if ((err = check_device(dev->bdf, &group)))
		goto fail_free;
	if ((err = iommu_attach(&ctx->iommu, &(struct iommu_dev){ dev->bdf, group }, &dev->attach)))
		goto fail_free;
	if ((err = iommu_device_fd(&ctx->iommu, dev->attach, dev->bdf, &dev->fd)))
		goto fail_detach;
	if ((err = read_device_info(dev)))
		goto fail_close;
	dev->ctx = ctx;
	dev->req_fd = dev->err_fd = -1;
	if (ubdma_numa_node_of_pci(dev->bdf, &dev->numa))
		dev->numa = UBDMA_NODE_ANY;
	if ((err = make_dma_tag(dev)))
		goto fail_close;
	pthread_mutex_init(&dev->lock, NULL);
	if ((err = list_insert(ctx, dev))) {
		err = err == EBUSY ? uerr(EBUSY, "%s is already open in this context", dev->bdf)
				   : uerr(err, "out of memory");
		pthread_mutex_destroy(&dev->lock);
		goto fail_tag;
	}
	ULOG_INFO("opened %s (group %d, fd %d, %u MSI-X vectors, NUMA node %d)", dev->bdf, group,
		  dev->fd, dev->msix_count, dev->numa);
	*devp = dev;
	return 0;

fail_tag:
	busdma_tag_destroy_internal(dev->tag);
fail_close:
	close(dev->fd);
fail_detach:
	iommu_detach(&ctx->iommu, dev->attach);
fail_free:
	free(dev);
	return err;
}

/*
 * Stop the device and let go of it: MSI-X, the request and error interrupts and bus mastering
 * off, the BARs unmapped (@release: replaced by memory that reads all ones, pci_notify.c), the
 * device file closed (the kernel may now remove the device) and the group detached.  The
 * eventfds stay open at a release (a thread may be polling them: each MSI-X one is signalled so
 * that it wakes up); ubdma_pci_close() closes them.
 */
static void let_go(struct ubdma_pci *dev, int release)
{
	int err;

	pthread_mutex_lock(&dev->lock);
	if (release)
		pci_msix_quiesce_locked(dev);
	else if ((err = pci_msix_disable_locked(dev)))
		ULOG_WARN("%s: disabling MSI-X failed: %s", dev->bdf, strerror(err));
	pci_notify_off_locked(dev);
	pthread_mutex_unlock(&dev->lock);
	/* stop DMA before the group (and with the last one, the IOMMU mappings) goes away */
	if ((err = ubdma_pci_bus_master(dev, 0)))
		ULOG_WARN("%s: clearing Bus Master Enable failed: %s", dev->bdf, strerror(err));
	if (release)
		pci_bars_orphan(dev);
	else
		pci_bars_unmap(dev);
	close(dev->fd); /* releases the device's interrupts, if disabling them failed above */
	dev->fd = -1;
	iommu_detach(&dev->ctx->iommu, dev->attach);
	dev->attach = NULL;
}

int ubdma_pci_release(ubdma_pci_t *dev)
{
	if (!dev)
		return uerr(EINVAL, "NULL device");
	if (dev->released)
		return 0;
	let_go(dev, 1);
	dev->released = 1;
	ULOG_INFO("%s released: the device file is closed, its BARs read all ones", dev->bdf);
	return 0;
}

void ubdma_pci_close(ubdma_pci_t *dev)
{
	if (!dev)
		return;
	list_remove(dev->ctx, dev);
	if (!dev->released)
		let_go(dev, 0);
	else
		pci_bars_unmap(dev); /* the all-ones memory */
	for (unsigned i = 0; i < dev->msix_n; i++)
		close(dev->msix_fds[i]);
	free(dev->msix_fds);
	pci_notify_close(dev);
	/* the driver destroys its tags first; those it left go with the context, and so does then
	 * the device's tag, their parent */
	if (busdma_tag_destroy_internal(dev->tag))
		ULOG_WARN("%s: tags under the device's DMA tag still exist: ubdma_ctx_close() frees them",
			  dev->bdf);
	pthread_mutex_destroy(&dev->lock);
	free(dev);
}

static void pci_fini(struct ubdma_ctx *ctx, void *state)
{
	struct pci_devs *devs = state;

	(void)ctx;
	for (struct ubdma_pci *dev; (dev = LIST_FIRST(&devs->head));) {
		ULOG_WARN("%s still open at context close: closing it", dev->bdf);
		ubdma_pci_close(dev);
	}
	free(devs);
}

const struct ctx_layer pci_layer = {
	.name = "pci",
	.fini = pci_fini,
};

/* The accessors below answer NULL / -1 for a NULL device, with errno and the sentence set. */
static int null_dev(const char *fn)
{
	return errno = uerr_at(fn, EINVAL, "NULL device");
}

ubdma_tag_t *ubdma_pci_dma_tag(ubdma_pci_t *dev)
{
	return dev ? dev->tag : (null_dev(__func__), NULL);
}

const char *ubdma_pci_bdf(const ubdma_pci_t *dev)
{
	return dev ? dev->bdf : (null_dev(__func__), NULL);
}

ubdma_ctx_t *ubdma_pci_ctx(const ubdma_pci_t *dev)
{
	return dev ? dev->ctx : (null_dev(__func__), NULL);
}

int ubdma_pci_numa_node(const ubdma_pci_t *dev)
{
	return dev ? dev->numa : (null_dev(__func__), UBDMA_NODE_ANY);
}

/* The range [off, off + len) lies in the configuration space region. */
static int cfg_range_ok(const struct ubdma_pci *dev, unsigned off, size_t len)
{
	return len && off < dev->cfg_size && len <= dev->cfg_size - off;
}

int ubdma_pci_cfg_read(ubdma_pci_t *dev, unsigned off, void *buf, size_t len)
{
	ssize_t n;

	if (!dev || !buf)
		return uerr(EINVAL, "NULL argument");
	if (dev->released)
		return pci_check_released(dev, __func__);
	if (!cfg_range_ok(dev, off, len))
		return uerr(EINVAL, "%s: config read of %zu bytes at %#x is outside the %#llx-byte "
			    "configuration space", dev->bdf, len, off, (unsigned long long)dev->cfg_size);
	if ((n = pread(dev->fd, buf, len, (off_t)(dev->cfg_off + off))) == (ssize_t)len)
		return 0;
	return n < 0 ? uerr(errno, "%s: config read at %#x failed: %s", dev->bdf, off, strerror(errno))
		     : uerr(EIO, "%s: config read at %#x returned %zd of %zu bytes", dev->bdf, off, n, len);
}

int ubdma_pci_cfg_write(ubdma_pci_t *dev, unsigned off, const void *buf, size_t len)
{
	ssize_t n;

	if (!dev || !buf)
		return uerr(EINVAL, "NULL argument");
	if (dev->released)
		return pci_check_released(dev, __func__);
	if (!cfg_range_ok(dev, off, len))
		return uerr(EINVAL, "%s: config write of %zu bytes at %#x is outside the %#llx-byte "
			    "configuration space", dev->bdf, len, off, (unsigned long long)dev->cfg_size);
	if ((n = pwrite(dev->fd, buf, len, (off_t)(dev->cfg_off + off))) == (ssize_t)len)
		return 0;
	return n < 0 ? uerr(errno, "%s: config write at %#x failed: %s", dev->bdf, off, strerror(errno))
		     : uerr(EIO, "%s: config write at %#x took %zd of %zu bytes", dev->bdf, off, n, len);
}

int ubdma_pci_bus_master(ubdma_pci_t *dev, int enable)
{
	uint16_t cmd, want;
	int err;

	if (!dev)
		return uerr(EINVAL, "NULL device");
	if ((err = ubdma_pci_cfg_read(dev, PCI_COMMAND, &cmd, sizeof(cmd))))
		return err;
	cmd = le16toh(cmd); /* configuration space is little endian */
	want = enable ? cmd | PCI_COMMAND_MASTER : cmd & (uint16_t)~PCI_COMMAND_MASTER;
	if (want == cmd)
		return 0;
	want = htole16(want);
	return ubdma_pci_cfg_write(dev, PCI_COMMAND, &want, sizeof(want));
}

int ubdma_pci_reset(ubdma_pci_t *dev)
{
	if (!dev)
		return uerr(EINVAL, "NULL device");
	if (dev->released)
		return pci_check_released(dev, __func__);
	if (!(dev->dev_flags & VFIO_DEVICE_FLAGS_RESET))
		return uerr(ENOTSUP, "%s offers no reset VFIO can use (no FLR, PM or bus reset)",
			    dev->bdf);
	if (ioctl(dev->fd, VFIO_DEVICE_RESET))
		return uerr(errno, "VFIO_DEVICE_RESET on %s failed: %s", dev->bdf, strerror(errno));
	return 0;
}
