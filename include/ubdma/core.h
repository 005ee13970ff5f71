/*
 * ubdma/core.h - types, constants, contexts, wiring, locked-memory cookies and translation.
 *
 * ubdma wires application buffers (vslock(9) / vm_map_wire(9) semantics), hands out locked-memory
 * cookies (ddi_umem_lock(9F)), translates wired addresses to I/O virtual addresses through an IOMMU
 * backend (VFIO), or to physical addresses where there is none, and offers the bus_dma(9) model on
 * top.
 *
 * Errors, for every public call of libubdma (docs/architecture.md, "Error convention"; ubdma(3)):
 *  - a call returning int returns 0 or a positive errno value, never -1; a NULL handle or result
 *    pointer is EINVAL, never a crash; errno is not part of its answer (system calls inside may
 *    change it, even when the call succeeds);
 *  - a call returning a pointer returns NULL on failure and sets errno;
 *  - a call returning a value (a count, size, IOVA, node) answers a NULL handle with the
 *    sentinel its comment names (0, UBDMA_BAD_IOVA, UBDMA_NODE_ANY) and sets errno to EINVAL; a
 *    sentinel for a valid handle (an address that is not registered) is an answer, not a failure;
 *  - a void call never fails on valid input; it ignores NULL where it releases (closes, frees,
 *    puts, as free(3)), and sets errno on other invalid input (ubdma_map_sync() on a map of another
 *    tag).  ubdma_map_sync_checked() and ubdma_pci_bar_map() are the int twins of the two calls
 *    whose void or pointer signature DESIGN.md fixes and that refuse valid-looking input;
 *  - closing NULL does nothing (and returns 0 where the close returns int, as the drivers' do);
 *  - every failure leaves a sentence for ubdma_last_error() in the calling thread.
 *
 * Threads: contexts, tags, cookies and registrations are shared: any thread may use them
 * concurrently, except that nothing may run on an object while it is being closed, destroyed,
 * unlocked or put for the last time, nor on a context during ubdma_ctx_close().  A map is used by
 * one thread at a time (load, unload, sync, destroy: the caller serialises, as FreeBSD's busdma);
 * different maps of one tag are independent.  A device (ubdma/pci.h) and a hugepage region
 * (ubdma/hugepage.h) say their own rules.  ubdma_wire()/ubdma_unwire() are thread-safe, also
 * on overlapping ranges.  Translation (ubdma_vtoiova(), ubdma_umem_iova(), ubdma_reg_iova())
 * takes no lock and may run while other threads register and unregister.  fork(2): a child may
 * use ubdma on objects it makes itself, never on its parent's (docs/reliability.md, "fork and
 * library locks").
 *
 * The objects are opaque: their sizes are not part of the ABI.
 */
#ifndef UBDMA_CORE_H
#define UBDMA_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UBDMA_VERSION_MAJOR 0
#define UBDMA_VERSION_MINOR 1

typedef struct ubdma_ctx ubdma_ctx_t;
typedef struct ubdma_tag ubdma_tag_t;
typedef struct ubdma_map ubdma_map_t;
typedef struct ubdma_umem ubdma_umem_t;
typedef struct ubdma_reg ubdma_reg_t;
typedef struct ubdma_pci ubdma_pci_t;

/*
 * An I/O virtual address: what a device puts on the bus to reach memory, through the IOMMU (vfio),
 * or the physical address where there is none (phys), or the process's own address (va).  Never a
 * pointer the CPU may dereference.  64 bits whatever the backend (FreeBSD's bus_addr_t).
 */
typedef uint64_t ubdma_iova_t;

/* The IOVA returned for an address that is not registered in the context. */
#define UBDMA_BAD_IOVA UINT64_MAX

/* Address limits for tags, as BUS_SPACE_MAXADDR and BUS_SPACE_MAXADDR_32BIT. */
#define UBDMA_MAXADDR UINT64_MAX
#define UBDMA_MAXADDR_32BIT UINT64_C(0xffffffff)

/* ubdma_wire() flags, after vm_map_wire(9): NOHOLES (the default) fails on any unmapped part. */
#define UBDMA_WIRE_NOHOLES 0x0
#define UBDMA_WIRE_HOLESOK 0x1
#define UBDMA_WIRE_WRITE 0x2 /* the device will write: break copy-on-write before wiring */

/* ubdma_umem_lock() flags, after ddi_umem_lock(9F): at least one is required. */
#define UBDMA_UMEM_READ 0x1  /* the device reads the memory */
#define UBDMA_UMEM_WRITE 0x2 /* the device writes the memory */

/* bus_dma flags (tag_create, map_create, load, mem_alloc). */
#define UBDMA_WAITOK 0x0
#define UBDMA_NOWAIT 0x1
#define UBDMA_ALLOCNOW 0x2
#define UBDMA_COHERENT 0x4
#define UBDMA_ZERO 0x8
#define UBDMA_STRICT 0x10 /* tag: bounce any buffer that does not own its whole pages */
#define UBDMA_KEEP_PG_OFFSET 0x20 /* tag: a bounced piece keeps its offset in the 4 KiB page */

/* ubdma_map_sync() operations; values as FreeBSD's BUS_DMASYNC_*. */
#define UBDMA_SYNC_PREREAD 0x1
#define UBDMA_SYNC_POSTREAD 0x2
#define UBDMA_SYNC_PREWRITE 0x4
#define UBDMA_SYNC_POSTWRITE 0x8

/* ---------------------------------------------------------------- context */

/*
 * The backends (docs/backends.md).  VFIO: a VFIO type1 container with an IOMMU.  IOMMUFD: an
 * iommufd I/O address space with devices through their VFIO cdev (Linux 6.6+; same guarantees as
 * VFIO).  NOIOMMU: VFIO's no-IOMMU mode, device files but physical addresses and no isolation
 * (hugetlb memory only).  PHYS: physical addresses, no devices.  VA: IOVA = virtual address.
 * New values are added at the end.
 */
enum ubdma_backend {
	UBDMA_BACKEND_AUTO,
	UBDMA_BACKEND_VFIO,
	UBDMA_BACKEND_PHYS,
	UBDMA_BACKEND_VA,
	UBDMA_BACKEND_IOMMUFD,
	UBDMA_BACKEND_NOIOMMU,
};

/**
 * ubdma_ctx_open() - open a DMA context: one IOMMU domain (a VFIO container) or the phys / va backend.
 * @backend: UBDMA_BACKEND_AUTO picks iommufd when /dev/iommu opens and VFIO devices have cdevs,
 *           else vfio when /dev/vfio/vfio exists (both need an IOMMU), else noiommu when VFIO's
 *           no-IOMMU mode is on, else phys (these two when the process can read physical frame
 *           numbers and hugepages are configured), else va; if the pick then fails to open, AUTO
 *           steps down that order (va always opens).  ubdma_ctx_backend() and
 *           ubdma_ctx_backend_reason() tell which one and why.
 * @ctxp:    receives the context.
 *
 * Return: 0; EINVAL for an unknown backend or a NULL @ctxp; ENODEV when the asked backend is not
 * available on this machine (no /dev/vfio/vfio, no /dev/iommu, or no pagemap PFNs for phys and
 * noiommu: needs CAP_SYS_ADMIN); ENOTSUP when VFIO lacks what the backend needs (type1v2, or
 * no-IOMMU mode); ENOMEM when memory runs out; any errno the VFIO or iommufd set-up gives.
 */
int ubdma_ctx_open(enum ubdma_backend backend, ubdma_ctx_t **ctxp);

/**
 * ubdma_ctx_close() - unmap, unwire and free everything the context still holds, then the context.
 * In order: devices still open are closed (bus mastering off first), each with a warning; every
 * registration of the cache is released, held or not, and its ubdma_reg_t freed (a warning for
 * each one still held); tags, maps (loaded ones without a sync; queued loads never call back) and
 * DMA memory are freed, each with a warning; cookies still locked are unlocked, each with a
 * warning. Every handle of the context, a ubdma_reg_t still held included, is freed memory
 * afterwards: no call may be made on it, not even to release it. Wiring by ubdma_wire() is not the
 * context's and stays. No other thread may use the context during the call. NULL is ignored.
 */
void ubdma_ctx_close(ubdma_ctx_t *ctx);

/**
 * ubdma_ctx_tag() - the root DMA tag of the context, like bus_get_dma_tag().  Never NULL for a
 * context; NULL with errno EINVAL for a NULL @ctx.
 */
ubdma_tag_t *ubdma_ctx_tag(ubdma_ctx_t *ctx);

/**
 * ubdma_ctx_backend() - the backend the context runs on; UBDMA_BACKEND_AUTO, with errno EINVAL,
 * only for a NULL @ctx.
 */
enum ubdma_backend ubdma_ctx_backend(const ubdma_ctx_t *ctx);

/** ubdma_backend_name() - "auto", "vfio", "iommufd", "noiommu", "phys" or "va"; "unknown" else. */
const char *ubdma_backend_name(enum ubdma_backend backend);

/**
 * ubdma_ctx_backend_reason() - a sentence on why AUTO picked the backend it did.  Never NULL:
 * "no context", with errno EINVAL, for a NULL @ctx.
 */
const char *ubdma_ctx_backend_reason(const ubdma_ctx_t *ctx);

/**
 * ubdma_ctx_iova_windows() - the IOVA ranges the context can hand to devices.
 * @lo, @hi: arrays of @max entries receiving inclusive bounds of each usable range (may be NULL
 *           when @max is 0).
 * @nump:    receives the number of ranges, which may exceed @max (only @max are written), as
 *           ubdma_huge_sizes() does.
 * Thread-safe: the windows change under the context's lock when a device is opened or closed,
 * and the copy is one consistent set.
 * Return: 0; EINVAL for a NULL @ctx or @nump, a negative @max, or NULL arrays with @max > 0.
 */
int ubdma_ctx_iova_windows(const ubdma_ctx_t *ctx, ubdma_iova_t *lo, ubdma_iova_t *hi, int max,
			   int *nump);

/**
 * ubdma_last_error() - a sentence describing the last failure of the calling thread: which limit,
 * which address, what to change.  Never NULL; "" when nothing failed yet.
 */
const char *ubdma_last_error(void);

/* ----------------------------------------------------------------- wiring */

/**
 * ubdma_wire() - wire (lock in memory) the pages of [addr, addr + len), vslock(9) semantics.
 * The range is rounded out to whole pages of each mapping (4 KiB, or the hugetlb page size).
 * Wire counts nest per page: wiring twice needs two ubdma_unwire() calls before the pages can be
 * paged out again.  Wired ranges are marked MADV_DONTFORK: a child of fork(2) does not share them.
 * A count belongs to the mapping: munmap, mmap MAP_FIXED over it, mremap and MADV_DONTNEED_LOCKED
 * end it, and new memory at the address starts unwired (docs/wire.md section 12).  len 0 wires
 * nothing and returns 0, as mlock(2).
 * @flags: UBDMA_WIRE_NOHOLES (default) or UBDMA_WIRE_HOLESOK, optionally | UBDMA_WIRE_WRITE.
 *
 * Return: 0; EINVAL when the range wraps around the address space or flags are unknown; EFAULT
 * when part of the range is not mapped (with NOHOLES; also when another thread unmaps it during
 * the call), not accessible (WRITE on read-only memory) or a file mapping past the end of its
 * file; ENOMEM when wiring would exceed RLIMIT_MEMLOCK (ubdma_last_error() names the limit and the
 * amount) or memory runs out.  On failure nothing is wired and no count changed.
 */
int ubdma_wire(void *addr, size_t len, int flags);

/**
 * ubdma_unwire() - drop one wire count of each page of [addr, addr + len), rounded as ubdma_wire().
 * Pages whose count reaches zero are unlocked and may be inherited by fork(2) again.
 * It acts on the mapping there now; where munmap & co. ended the wiring it balances, it succeeds
 * and changes nothing.  len 0 returns 0.
 * @flags: UBDMA_WIRE_HOLESOK lets the range include pages that were never wired.
 * Return: 0; EINVAL for a wrapping range, unknown flags, or (without HOLESOK) a page that is not
 * wired and whose wiring the address space did not end.  On failure no count changed.
 */
int ubdma_unwire(void *addr, size_t len, int flags);

/**
 * ubdma_wire_count() - the wire count of the page holding @addr (0 when not wired).  For tests and
 * diagnostics.
 */
unsigned ubdma_wire_count(const void *addr);

/* --------------------------------------------------- locked-memory cookies */

/**
 * ubdma_umem_lock() - wire [addr, addr + len) and map it into the context's IOMMU domain,
 * ddi_umem_lock(9F) semantics; the pages enter the context's translation map (ubdma_vtoiova()).
 * @flags: UBDMA_UMEM_READ and/or UBDMA_UMEM_WRITE (the device's access); WRITE pre-faults for write.
 *
 * Return: 0; EINVAL when flags hold neither READ nor WRITE (or unknown bits), addr or len is not
 * 4 KiB aligned, len is 0 or the range wraps; EFAULT when part of the range is unmapped (also by
 * another thread during the call); ENOMEM over RLIMIT_MEMLOCK or out of memory; ENOTSUP when the
 * backend cannot translate that memory (phys: memory that is not hugetlb has no stable physical
 * address); ENOSPC when the IOMMU has no IOVA space or mapping entries left.  On failure nothing
 * stays wired or mapped.
 */
int ubdma_umem_lock(ubdma_ctx_t *ctx, void *addr, size_t len, int flags, ubdma_umem_t **cookiep);

/**
 * ubdma_umem_iova() - the IOVA of @addr inside the cookie's range, or UBDMA_BAD_IOVA when @addr is
 * outside it (and, with errno EINVAL, for a NULL @cookie).  No system call; constant time for a range in one mapping (a range that spans
 * mappings of different page sizes costs one step per mapping).
 */
ubdma_iova_t ubdma_umem_iova(const ubdma_umem_t *cookie, const void *addr);

/** ubdma_umem_unlock() - remove the mapping, drop the wire counts and free the cookie. NULL ok. */
void ubdma_umem_unlock(ubdma_umem_t *cookie);

/* ------------------------------------------------------------ translation */

/**
 * ubdma_vtoiova() - the IOVA of any registered address of the context, or UBDMA_BAD_IOVA (with
 * errno EINVAL for a NULL @ctx; not for an address that is not registered, which is an answer).
 * O(1), no lock, no system call, no allocation; safe while other threads register and unregister.
 * The one exception: the first call after the registration cache's monitor learnt that memory
 * under cached entries went away first retires their translations (so memory unmapped before the
 * call never translates to its old frames); ubdma_vtoiova(3) says more.
 * Under an IOMMU this is an I/O virtual address, not a physical one.
 */
ubdma_iova_t ubdma_vtoiova(ubdma_ctx_t *ctx, const void *addr);

#ifdef __cplusplus
}
#endif
#endif /* UBDMA_CORE_H */
