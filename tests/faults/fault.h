/*
 * fault.h - fault injection at the kernel and libc boundary of the library, for tests.
 *
 * The test executables are linked with -Wl,--wrap=malloc,... (tests/faults/meson.build), so every
 * call the statically linked library makes to malloc, calloc, realloc, mmap, madvise, ioctl,
 * pread, open, syscall(SYS_mlock) lands in fault.c first.  There each call of an armed class is
 * counted and the N-th fails with the errno the kernel or libc would give (ENOMEM for memory,
 * EAGAIN for mlock, EIO for pagemap reads...).  The same wrappers keep books that the tests
 * compare before and after: live heap blocks, mapped bytes, and, for the fake VFIO below, the
 * number of IOMMU mappings.
 *
 * Fake VFIO (host only, fault_fake_vfio(1)): the host kernel has no VFIO, so open("/dev/vfio/vfio")
 * and open("/dev/vfio/N") return descriptors of /dev/null that the ioctl wrapper answers as a
 * type1v2 container and a viable group would: API version, extension check, SET_IOMMU, GET_INFO
 * with the IOVA-range and DMA-avail capabilities, and MAP_DMA / UNMAP_DMA on a table with the
 * kernel's rules (EEXIST on overlap, EINVAL for an unmap that would split a mapping, all mappings
 * dropped when the last group leaves or the container closes).  fault_vfio_nmaps() is then the
 * exact number of mappings "in the IOMMU".  In the guest (real VFIO) fault_vfio_nmaps() reads the
 * kernel's count instead: dma_entry_limit minus the DMA_AVAIL capability of the container.
 */
#ifndef UBDMA_TEST_FAULT_H
#define UBDMA_TEST_FAULT_H

#include <stddef.h>
#include <stdint.h>

/* Classes of calls that can be made to fail. */
#define F_ALLOC 0x01   /* malloc, calloc, realloc: ENOMEM */
#define F_MMAP 0x02    /* mmap: ENOMEM */
#define F_MLOCK 0x04   /* syscall(SYS_mlock): EAGAIN (the RLIMIT / out-of-memory answer) */
#define F_MADVISE 0x08 /* madvise: ENOMEM (vm.max_map_count), EINVAL for POPULATE on old kernels */
#define F_IOCTL 0x10   /* ioctl: MAP_DMA ENOMEM, UNMAP_DMA EINVAL, others EIO */
#define F_PREAD 0x20   /* pread (pagemap): EIO */
#define F_OPEN 0x40    /* open: EMFILE */
#define F_ALL 0x7f

/* Fail the n-th (1-based) call of any class in mask from now on; counting starts at 0. */
void fault_arm(unsigned mask, long n);
/* Stop failing.  Return: 1 when a failure was injected since fault_arm(), 0 when the n-th call
 * never came (the walk is over). */
int fault_disarm(void);
/* Which class the injected failure hit (0 if none), and how many calls were counted. */
unsigned fault_hit_class(void);
long fault_calls(void);

/* Books kept by the wrappers: heap blocks live, bytes mapped by mmap and not yet unmapped. */
long fault_live_blocks(void);
long fault_mapped_bytes(void);

/* Fake VFIO on the host (see above); 0 turns it off (the default). */
void fault_fake_vfio(int on);
/* Mappings in the (fake or real) IOMMU of the open containers; -1 when unknown. */
long fault_vfio_nmaps(void);

/* Fake VFIO: the virtual address the IOMMU maps iova to (what the device reaches), 0 if none,
 * 1 when the mapping is stale (the page frame pinned at MAP_DMA is no longer the one at that
 * address: as root, from /proc/self/pagemap). */
uintptr_t fault_vfio_lookup(uint64_t iova);
/* Fake VFIO: a line on the mapping of iova for a failure report (its frames then and now, their
 * /proc/kpageflags, the pagemap entry); ENOENT when iova is not mapped. */
int fault_vfio_explain(uint64_t iova, char *buf, size_t len);

/*
 * A hook the wrappers call right after some kernel calls of the library, in the calling thread
 * (which may hold library locks): a race test uses it to let "another thread" act at exactly
 * that point.  s and len are the call's range.  NULL removes it.
 */
enum fault_point {
	FP_UFFD_REGISTER, /* ioctl(UFFDIO_REGISTER) that succeeded */
	FP_MLOCK,	  /* syscall(SYS_mlock), whatever its result */
};
void fault_set_hook(void (*fn)(enum fault_point at, uintptr_t s, size_t len));

/* VmLck of the process, kB. */
long fault_vmlck_kb(void);

#endif
