/*
 * pci_irq.c - MSI-X interrupts of a device as eventfds.
 *
 * VFIO_DEVICE_SET_IRQS on VFIO_PCI_MSIX_IRQ_INDEX with DATA_EVENTFD | ACTION_TRIGGER and count n
 * enables MSI-X with n vectors, each signalling its eventfd; DATA_NONE | ACTION_TRIGGER with
 * count 0 disables it (include/uapi/linux/vfio.h, VFIO_DEVICE_SET_IRQS).  The library makes and
 * owns the eventfds, so that a disable or a close can never leave the kernel signalling a file
 * descriptor number the application has since reused.
 */
#include <errno.h>
#include <linux/vfio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "base/log.h"
#include "core/ctx.h"
#include "pci/pcidev.h"

unsigned ubdma_pci_msix_count(const ubdma_pci_t *dev)
{
	if (!dev) {
		errno = uerr(EINVAL, "NULL device");
		return 0;
	}
	return dev->msix_count;
}

static void close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		close(fds[i]);
}

static int set_irqs(struct ubdma_pci *dev, const int *fds, unsigned n)
{
	size_t sz = sizeof(struct vfio_irq_set) + (size_t)n * sizeof(int32_t);
	struct vfio_irq_set *set = calloc(1, sz);
	int err = 0;

	if (!set)
		return ENOMEM;
	set->argsz = (uint32_t)sz;
	set->flags = VFIO_IRQ_SET_ACTION_TRIGGER | (n ? VFIO_IRQ_SET_DATA_EVENTFD : VFIO_IRQ_SET_DATA_NONE);
	set->index = VFIO_PCI_MSIX_IRQ_INDEX;
	set->start = 0;
	set->count = n;
	for (unsigned i = 0; i < n; i++) {
		int32_t fd = fds[i];
		memcpy(set->data + i * sizeof(fd), &fd, sizeof(fd));
	}
	if (ioctl(dev->fd, VFIO_DEVICE_SET_IRQS, set))
		err = errno;
	free(set);
	return err;
}

int ubdma_pci_msix_enable(ubdma_pci_t *dev, unsigned nvec, int *fds)
{
	int *efd;
	int err;

	if (!dev || !fds)
		return uerr(EINVAL, "NULL argument");
	if (dev->released)
		return pci_check_released(dev, __func__);
	if (!dev->msix_count)
		return uerr(ENOTSUP, "%s has no MSI-X", dev->bdf);
	if (!nvec || nvec > dev->msix_count)
		return uerr(EINVAL, "%s: %u MSI-X vectors asked, the device has %u", dev->bdf, nvec,
			    dev->msix_count);
	if (!(efd = malloc(nvec * sizeof(*efd))))
		return uerr(ENOMEM, "out of memory");
	for (unsigned i = 0; i < nvec; i++) {
		if ((efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
			err = uerr(errno, "eventfd for MSI-X vector %u failed: %s", i, strerror(errno));
			close_fds(efd, i);
			free(efd);
			return err;
		}
	}
	pthread_mutex_lock(&dev->lock);
	if (dev->msix_n) {
		err = uerr(EBUSY, "%s: MSI-X is already enabled (%u vectors)", dev->bdf, dev->msix_n);
	} else if ((err = set_irqs(dev, efd, nvec))) {
		err = uerr(err, "%s: VFIO_DEVICE_SET_IRQS (MSI-X, %u vectors) failed: %s", dev->bdf,
			   nvec, strerror(err));
	} else {
		dev->msix_fds = efd;
		dev->msix_n = nvec;
		memcpy(fds, efd, nvec * sizeof(*fds));
	}
	pthread_mutex_unlock(&dev->lock);
	if (err) {
		close_fds(efd, nvec);
		free(efd);
	}
	return err;
}

int pci_msix_disable_locked(struct ubdma_pci *dev)
{
	int err;

	if (!dev->msix_n)
		return 0;
	/* released: the device file is closed, and its interrupts went with it */
	if (!dev->released && (err = set_irqs(dev, NULL, 0)))
		return uerr(err, "%s: VFIO_DEVICE_SET_IRQS (MSI-X off) failed: %s", dev->bdf,
			    strerror(err));
	close_fds(dev->msix_fds, dev->msix_n);
	free(dev->msix_fds);
	dev->msix_fds = NULL;
	dev->msix_n = 0;
	return 0;
}

void pci_msix_quiesce_locked(struct ubdma_pci *dev)
{
	int err;

	if (!dev->msix_n)
		return;
	if ((err = set_irqs(dev, NULL, 0)))
		ULOG_WARN("%s: VFIO_DEVICE_SET_IRQS (MSI-X off) failed: %s", dev->bdf, strerror(err));
	/* a thread asleep on a vector wakes up, and finds the device released */
	for (unsigned i = 0; i < dev->msix_n; i++)
		if (eventfd_write(dev->msix_fds[i], 1))
			ULOG_WARN("%s: signalling MSI-X eventfd %u failed: %s", dev->bdf, i, strerror(errno));
}

int ubdma_pci_msix_disable(ubdma_pci_t *dev)
{
	int err;

	if (!dev)
		return uerr(EINVAL, "NULL device");
	pthread_mutex_lock(&dev->lock);
	err = pci_msix_disable_locked(dev);
	pthread_mutex_unlock(&dev->lock);
	return err;
}
