/*
 * ubdma.h - the whole public API of libubdma.
 *
 * ubdma wires application buffers (vslock(9) / vm_map_wire(9) semantics), hands out locked-memory
 * cookies (ddi_umem_lock(9F)), translates wired addresses to I/O virtual addresses through an IOMMU
 * backend (VFIO), or to physical addresses where there is none, and offers the bus_dma(9) model on
 * top.  Every function that can fail returns 0 or a positive errno value; ubdma_last_error() gives
 * a sentence about the last failure of the calling thread.
 */
#ifndef UBDMA_UBDMA_H
#define UBDMA_UBDMA_H

#include <ubdma/core.h>
#include <ubdma/busdma.h>
#include <ubdma/rcache.h>
#include <ubdma/memevent.h>
#include <ubdma/pci.h>
#include <ubdma/hugepage.h>

#endif /* UBDMA_UBDMA_H */
