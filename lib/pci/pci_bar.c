/*
 * pci_bar.c - mapping a device's BARs into the process, once each, kept until close.
 *
 * VFIO describes each BAR as a region of the device file (VFIO_DEVICE_GET_REGION_INFO, index
 * VFIO_PCI_BARn_REGION_INDEX): its size, its offset in the file, and whether it may be mmapped.
 * A region may also carry a sparse-mmap capability (VFIO_REGION_INFO_CAP_SPARSE_MMAP) listing the
 * only parts that may be mapped; older kernels use it to keep the MSI-X table out of user space.
 * Such a BAR is reserved whole as PROT_NONE and the allowed parts are mapped over it, so that the
 * driver still sees the BAR at one base address and a touch of the forbidden part faults.
 */
#include <errno.h>
#include <linux/vfio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/log.h"
#include "core/ctx.h"
#include "pci/pcidev.h"

/* VFIO_DEVICE_GET_REGION_INFO with room for the capability chain (argsz grows as asked). */
static struct vfio_region_info *region_info(struct ubdma_pci *dev, unsigned idx, int *errp)
{
	uint32_t argsz = sizeof(struct vfio_region_info);
	struct vfio_region_info *ri = NULL;

	for (int tries = 0; tries < 4; tries++) {
		free(ri);
		if (!(ri = calloc(1, argsz))) {
			*errp = uerr(ENOMEM, "out of memory");
			return NULL;
		}
		ri->argsz = argsz;
		ri->index = idx;
		if (ioctl(dev->fd, VFIO_DEVICE_GET_REGION_INFO, ri)) {
			*errp = uerr(errno, "%s: VFIO_DEVICE_GET_REGION_INFO(%u) failed: %s", dev->bdf,
				     idx, strerror(errno));
			free(ri);
			return NULL;
		}
		if (ri->argsz <= argsz)
			return ri;
		argsz = ri->argsz;
	}
	return ri;
}

/* The sparse-mmap capability of the region, or NULL. */
static const struct vfio_region_info_cap_sparse_mmap *sparse_cap(const struct vfio_region_info *ri)
{
	uint32_t off = ri->flags & VFIO_REGION_INFO_FLAG_CAPS ? ri->cap_offset : 0;

	for (int hops = 0; off && hops < 64; hops++) {
		if (off < sizeof(*ri) || off > ri->argsz - sizeof(struct vfio_region_info_cap_sparse_mmap))
			return NULL;
		const struct vfio_info_cap_header *h = (const void *)((const char *)ri + off);
		if (h->id == VFIO_REGION_INFO_CAP_SPARSE_MMAP) {
			const struct vfio_region_info_cap_sparse_mmap *sp = (const void *)h;
			if (off + sizeof(*sp) + (size_t)sp->nr_areas * sizeof(sp->areas[0]) > ri->argsz)
				return NULL;
			return sp;
		}
		off = h->next;
	}
	return NULL;
}

static void *map_sparse(struct ubdma_pci *dev, int bar, const struct vfio_region_info *ri,
			const struct vfio_region_info_cap_sparse_mmap *sp, size_t maplen, int prot)
{
	void *base = mmap(NULL, maplen, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (base == MAP_FAILED) {
		uerr(errno, "%s: cannot reserve %zu bytes for BAR %d", dev->bdf, maplen, bar);
		return NULL;
	}
	for (uint32_t i = 0; i < sp->nr_areas; i++) {
		const struct vfio_region_sparse_mmap_area *a = &sp->areas[i];
		if (!a->size)
			continue;
		int err = 0;
		if (a->offset > maplen || a->size > maplen - a->offset)
			err = EINVAL;
		else if (mmap((char *)base + a->offset, a->size, prot, MAP_SHARED | MAP_FIXED, dev->fd,
			      (off_t)(ri->offset + a->offset)) == MAP_FAILED)
			err = errno;
		if (err) {
			munmap(base, maplen);
			uerr(err, "%s: cannot map part [%#llx, +%#llx) of BAR %d: %s", dev->bdf,
			     (unsigned long long)a->offset, (unsigned long long)a->size, bar,
			     strerror(err));
			return NULL;
		}
	}
	return base;
}

/* Map BAR bar into dev->bars[bar]; caller holds dev->lock.  0 or errno. */
static int bar_map(struct ubdma_pci *dev, int bar)
{
	struct vfio_region_info *ri;
	const struct vfio_region_info_cap_sparse_mmap *sp;
	size_t pg = (size_t)sysconf(_SC_PAGESIZE), maplen;
	int err = 0, prot;
	void *addr;

	if (!(ri = region_info(dev, VFIO_PCI_BAR0_REGION_INDEX + (unsigned)bar, &err)))
		return err;
	if (!ri->size) {
		err = uerr(EINVAL, "%s: BAR %d is not implemented (or is the upper half of a 64-bit "
			   "BAR)", dev->bdf, bar);
		goto out;
	}
	if (!(ri->flags & VFIO_REGION_INFO_FLAG_MMAP)) {
		err = uerr(ENOTSUP, "%s: BAR %d cannot be mapped (an I/O-port BAR, or VFIO refuses "
			   "mmap for it)", dev->bdf, bar);
		goto out;
	}
	prot = (ri->flags & VFIO_REGION_INFO_FLAG_READ ? PROT_READ : 0) |
	       (ri->flags & VFIO_REGION_INFO_FLAG_WRITE ? PROT_WRITE : 0);
	maplen = (ri->size + pg - 1) & ~(pg - 1);
	if ((sp = sparse_cap(ri))) {
		addr = map_sparse(dev, bar, ri, sp, maplen, prot);
	} else {
		addr = mmap(NULL, maplen, prot, MAP_SHARED, dev->fd, (off_t)ri->offset);
		if (addr == MAP_FAILED) {
			uerr(errno, "%s: mmap of BAR %d (%#llx bytes) failed: %s", dev->bdf, bar,
			     (unsigned long long)ri->size, strerror(errno));
			addr = NULL;
		}
	}
	if (!addr) {
		err = EIO;
		goto out;
	}
	dev->bars[bar] = (struct pci_bar){ addr, ri->size, maplen };
	ULOG_DEBUG("%s: BAR %d (%#llx bytes%s) at %p", dev->bdf, bar, (unsigned long long)ri->size,
		   sp ? ", sparse" : "", addr);
out:
	free(ri);
	return err;
}

int ubdma_pci_bar_map(ubdma_pci_t *dev, int bar, void **addrp, size_t *lenp)
{
	int err = 0;

	if (addrp)
		*addrp = NULL;
	if (!dev || !addrp)
		return uerr(EINVAL, "NULL %s", dev ? "addrp" : "device");
	if (bar < 0 || bar >= PCI_NUM_BARS)
		return uerr(EINVAL, "%s: BAR %d does not exist (0-5)", dev->bdf, bar);
	pthread_mutex_lock(&dev->lock);
	if (!dev->bars[bar].addr)
		err = dev->released ? pci_check_released(dev, __func__) : bar_map(dev, bar);
	if (!err) {
		*addrp = dev->bars[bar].addr;
		if (lenp)
			*lenp = dev->bars[bar].len;
	}
	pthread_mutex_unlock(&dev->lock);
	return err;
}

/* DESIGN.md fixes its pointer return: a failure is NULL with errno and the sentence. */
void *ubdma_pci_bar(ubdma_pci_t *dev, int bar, size_t *lenp)
{
	void *addr;
	int err = ubdma_pci_bar_map(dev, bar, &addr, lenp);

	if (err)
		errno = err;
	return addr;
}

void pci_bars_unmap(struct ubdma_pci *dev)
{
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		if (dev->bars[i].addr)
			munmap(dev->bars[i].addr, dev->bars[i].maplen);
		dev->bars[i] = (struct pci_bar){ NULL, 0, 0 };
	}
}
