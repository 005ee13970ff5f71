/*
 * pcidev.h - an open PCI function of the pci layer: its VFIO device file, group, regions, BAR
 * mappings and MSI-X state, as pci.c, pci_bar.c and pci_irq.c share them.
 *
 * The context's open devices form a list, the layer's state in the context (CTX_LAYER_PCI),
 * linked and unlinked under ctx->reg_lock; dev->lock serialises the lazy BAR mappings and the
 * MSI-X state of one device.
 *
 * fork(2): neither lock has an atfork handler, by design.  Both belong to one context (the list
 * under the context's reg_lock, dev->lock to one device), and a child must not use a device or
 * a context its parent opened: the VFIO device and group files are shared with the parent.  Nor
 * can it open the device again in a context of its own while the parent holds it: VFIO refuses a
 * second open of a group that is in use.  The layer keeps no process-wide state.
 */
#ifndef UBDMA_PCIDEV_H
#define UBDMA_PCIDEV_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <ubdma/ubdma.h>

#include "base/queue.h"

#define PCI_NUM_BARS 6

struct pci_bar {
	void *addr;	/* NULL until ubdma_pci_bar() maps it */
	size_t len;	/* the BAR's size */
	size_t maplen;	/* what was mapped: len rounded up to pages */
};

struct ubdma_pci {
	struct ubdma_ctx *ctx;
	char bdf[16];		/* "dddd:bb:dd.f" */
	int fd;			/* VFIO device file */
	void *attach;		/* the backend's handle of the attachment (iommu_attach()) */
	uint32_t dev_flags;	/* VFIO_DEVICE_FLAGS_* */
	uint64_t cfg_off, cfg_size; /* configuration space region in fd */
	int numa;		/* ubdma_numa_node_of_pci() at open */
	struct ubdma_tag *tag;	/* its DMA tag (busdma_device_tag_create()) */
	unsigned msix_count;
	pthread_mutex_t lock;	/* bars[], msix_fds, msix_n */
	struct pci_bar bars[PCI_NUM_BARS];
	int *msix_fds;
	unsigned msix_n;	/* vectors enabled, 0 when MSI-X is off */
	int req_fd, err_fd;	/* VFIO request / error eventfds (pci_notify.c), -1 when off */
	volatile int released;	/* ubdma_pci_release(): fd closed, BARs replaced, group detached */
	LIST_ENTRY(ubdma_pci) link; /* the context's open devices (pci.c, struct pci_devs) */
};

/* Unmap every BAR mapped so far (at close). */
void pci_bars_unmap(struct ubdma_pci *dev);

/* Disable MSI-X if it is on; caller holds dev->lock. */
int pci_msix_disable_locked(struct ubdma_pci *dev);

/* MSI-X off in the device, its eventfds kept open and signalled once (at release). */
void pci_msix_quiesce_locked(struct ubdma_pci *dev);

/* Replace every mapped BAR, in place, with anonymous memory that reads all ones (at release). */
void pci_bars_orphan(struct ubdma_pci *dev);

/* Turn the request / error interrupts off (caller holds dev->lock); the eventfds stay open. */
void pci_notify_off_locked(struct ubdma_pci *dev);

/* Close the request / error eventfds (at close, after the device file). */
void pci_notify_close(struct ubdma_pci *dev);

/* ENODEV with the sentence when the device was released (ubdma_pci_release()), else 0. */
int pci_check_released(const struct ubdma_pci *dev, const char *fn);

#endif
