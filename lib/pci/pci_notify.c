/*
 * pci_notify.c - the kernel telling a driver that its device is going away or has failed, and
 * the driver letting go of it.
 *
 * vfio-pci has two interrupts besides INTx/MSI/MSI-X (include/uapi/linux/vfio.h): the device
 * request, VFIO_PCI_REQ_IRQ_INDEX, which the kernel signals when it wants the device back (its
 * remove: a hot-unplug, an unbind) and signals again, every 10 s, until user space has closed the
 * device (vfio_unregister_group_dev() waits for that: a program that does not listen holds the
 * remove, and the unplug, for ever); and the error interrupt, VFIO_PCI_ERR_IRQ_INDEX, signalled
 * from the AER error_detected callback (PCI Express devices only).  Both are set up as MSI-X is,
 * VFIO_DEVICE_SET_IRQS with DATA_EVENTFD | ACTION_TRIGGER, one eventfd each, made and owned by
 * the library (a close can never leave the kernel signalling a reused descriptor number).
 *
 * ubdma_pci_release() is the answer to a request: it stops the device (interrupts, bus
 * mastering), closes the device file and detaches the group, so that the kernel's remove
 * proceeds, but keeps the handle, and every BAR mapping stays valid at its address: each is
 * replaced in one step (mremap(2) of ready-made anonymous memory over it) by memory that reads
 * all ones, which is what a read of a removed device returns on a real bus.  Another thread that
 * is writing a doorbell or reading a status register at that moment touches either the device or
 * that memory, never a hole: the driver needs no lock on its I/O path to survive the release.
 */
#include <errno.h>
#include <linux/vfio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/log.h"
#include "core/ctx.h"
#include "pci/pcidev.h"

/* All ones in at most this much of a replaced BAR (the rest reads zeroes): a BAR of gigabytes
 * must not cost as much memory. */
#define ORPHAN_FILL_MAX (16u << 20)

int pci_check_released(const struct ubdma_pci *dev, const char *fn)
{
	if (!dev->released)
		return 0;
	return uerr_at(fn, ENODEV, "%s was released (ubdma_pci_release(): given back to the kernel); only "
		       "ubdma_pci_close() and the BAR addresses mapped before remain", dev->bdf);
}

/* VFIO_DEVICE_GET_IRQ_INFO: the interrupts at @index (0 when the kernel or device has none). */
static unsigned irq_count(const struct ubdma_pci *dev, unsigned index)
{
	struct vfio_irq_info irq = { .argsz = sizeof(irq), .index = index };

	if (ioctl(dev->fd, VFIO_DEVICE_GET_IRQ_INFO, &irq) || !(irq.flags & VFIO_IRQ_INFO_EVENTFD))
		return 0;
	return irq.count;
}

/* One eventfd on interrupt @index, or (fd -1) none. */
static int set_one(const struct ubdma_pci *dev, unsigned index, int fd)
{
	_Alignas(struct vfio_irq_set) unsigned char buf[sizeof(struct vfio_irq_set) + sizeof(int32_t)];
	struct vfio_irq_set *set = (struct vfio_irq_set *)buf;
	int32_t efd = fd;

	*set = (struct vfio_irq_set){ .argsz = sizeof(buf), .index = index, .start = 0, .count = fd >= 0 ? 1 : 0,
				      .flags = VFIO_IRQ_SET_ACTION_TRIGGER |
					       (fd >= 0 ? VFIO_IRQ_SET_DATA_EVENTFD : VFIO_IRQ_SET_DATA_NONE) };
	memcpy(set->data, &efd, sizeof(efd));
	return ioctl(dev->fd, VFIO_DEVICE_SET_IRQS, set) ? errno : 0;
}

/* A new eventfd on @index into *fdp; 0 or the errno, with the sentence. */
static int enable_one(struct ubdma_pci *dev, unsigned index, const char *what, int *fdp)
{
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), err;

	if (fd < 0)
		return uerr(errno, "%s: eventfd for the %s interrupt: %s", dev->bdf, what, strerror(errno));
	if ((err = set_one(dev, index, fd))) {
		close(fd);
		return uerr(err, "%s: VFIO_DEVICE_SET_IRQS (%s interrupt) failed: %s", dev->bdf, what,
			    strerror(err));
	}
	*fdp = fd;
	return 0;
}

int ubdma_pci_notify_fds(ubdma_pci_t *dev, int *req_fd, int *err_fd)
{
	int err = 0;

	if (!dev || !req_fd)
		return uerr(EINVAL, "NULL %s", dev ? "req_fd" : "device");
	if ((err = pci_check_released(dev, __func__)))
		return err;
	pthread_mutex_lock(&dev->lock);
	if (dev->req_fd < 0) {
		if (!irq_count(dev, VFIO_PCI_REQ_IRQ_INDEX)) {
			err = uerr(ENOTSUP, "%s: the kernel offers no device request interrupt "
				   "(VFIO_PCI_REQ_IRQ_INDEX: Linux 4.0 or later)", dev->bdf);
		} else if (!(err = enable_one(dev, VFIO_PCI_REQ_IRQ_INDEX, "request", &dev->req_fd)) &&
			   irq_count(dev, VFIO_PCI_ERR_IRQ_INDEX) &&
			   (err = enable_one(dev, VFIO_PCI_ERR_IRQ_INDEX, "error", &dev->err_fd))) {
			/* all or nothing: the request interrupt goes off again */
			set_one(dev, VFIO_PCI_REQ_IRQ_INDEX, -1);
			close(dev->req_fd);
			dev->req_fd = -1;
		}
	}
	if (!err) {
		*req_fd = dev->req_fd;
		if (err_fd)
			*err_fd = dev->err_fd;
	}
	pthread_mutex_unlock(&dev->lock);
	return err;
}

void pci_notify_off_locked(struct ubdma_pci *dev)
{
	if (dev->released || dev->fd < 0)
		return;
	if (dev->err_fd >= 0 && set_one(dev, VFIO_PCI_ERR_IRQ_INDEX, -1))
		ULOG_WARN("%s: error interrupt off failed: %s", dev->bdf, strerror(errno));
	if (dev->req_fd >= 0 && set_one(dev, VFIO_PCI_REQ_IRQ_INDEX, -1))
		ULOG_WARN("%s: request interrupt off failed: %s", dev->bdf, strerror(errno));
}

void pci_notify_close(struct ubdma_pci *dev)
{
	if (dev->req_fd >= 0)
		close(dev->req_fd);
	if (dev->err_fd >= 0)
		close(dev->err_fd);
	dev->req_fd = dev->err_fd = -1;
}

/* Anonymous memory of @len bytes whose first ORPHAN_FILL_MAX bytes read all ones; NULL on failure. */
static void *ones_alloc(size_t len)
{
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (m == MAP_FAILED)
		return NULL;
	memset(m, 0xff, len < ORPHAN_FILL_MAX ? len : ORPHAN_FILL_MAX);
	return m;
}

void pci_bars_orphan(struct ubdma_pci *dev)
{
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &dev->bars[i];
		void *m;
		if (!b->addr)
			continue;
		/* mremap moves the whole filled mapping over the BAR's in one step (the old one is
		 * unmapped by it): a concurrent access sees the device or all ones, never a hole */
		if ((m = ones_alloc(b->maplen)) &&
		    mremap(m, b->maplen, b->maplen, MREMAP_MAYMOVE | MREMAP_FIXED, b->addr) != MAP_FAILED)
			continue;
		ULOG_WARN("%s: BAR %d cannot be replaced by anonymous memory (%s): unmapped; an access now "
			  "faults", dev->bdf, i, strerror(errno));
		if (m)
			munmap(m, b->maplen);
		munmap(b->addr, b->maplen);
		*b = (struct pci_bar){ NULL, 0, 0 };
	}
}
