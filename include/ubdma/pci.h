/*
 * ubdma/pci.h - PCI devices through VFIO.
 * Included by <ubdma/ubdma.h>.
 */
#ifndef UBDMA_PCI_H
#define UBDMA_PCI_H

#include <ubdma/core.h>

#ifdef __cplusplus
extern "C" {
#endif


int ubdma_pci_open(ubdma_ctx_t *ctx, const char *bdf, ubdma_pci_t **devp);
void ubdma_pci_close(ubdma_pci_t *dev);
void *ubdma_pci_bar(ubdma_pci_t *dev, int bar, size_t *lenp);
ubdma_tag_t *ubdma_pci_dma_tag(ubdma_pci_t *dev);


#ifdef __cplusplus
}
#endif
#endif /* UBDMA_PCI_H */
