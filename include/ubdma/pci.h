/*
 * ubdma/pci.h - PCI devices through VFIO: open by address, BARs, configuration space, bus
 * mastering, function reset, MSI-X interrupts as eventfds, the kernel's request and error
 * interrupts and the release of a device it wants back (hot-unplug), the device's DMA tag (its
 * IOVA ranges, NUMA node and lock function) and NUMA node.
 * Included by <ubdma/ubdma.h>.
 *
 * A device belongs to one context (one VFIO container, one IOMMU domain): every buffer locked in
 * the context is visible to every device opened in it, at the same IOVA.  The device must be
 * bound to vfio-pci first (`ubdma bind BDF`, or by hand through driver_override), and so must
 * every other device of its IOMMU group.  Errors follow the convention of ubdma/core.h.
 *
 * Threads: a device may be used from several threads.  ubdma_pci_bar(), the MSI-X calls and the
 * accessors are thread-safe (a lock per device); configuration space accesses are single
 * pread/pwrite calls, but ubdma_pci_bus_master() reads, changes and writes the command register,
 * so it races another thread's write of that register: the driver serialises those.
 * ubdma_pci_reset() must not run while another thread touches the device (its registers and
 * configuration space are being reset).  Opening devices in one context from several threads is
 * safe; ubdma_pci_close() must not race any other call on the device.  fork(2): the child must
 * not use or close its parent's devices (docs/reliability.md).
 */
#ifndef UBDMA_PCI_H
#define UBDMA_PCI_H

#include <stddef.h>
#include <stdint.h>

#include <ubdma/core.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * ubdma_pci_open() - open the PCI function @bdf in @ctx through VFIO.
 * @ctx:  a context on the vfio backend.
 * @bdf:  "DDDD:BB:DD.F" (domain, bus, device, function in hex, as lspci -D prints), or "BB:DD.F"
 *        for domain 0.
 * @devp: receives the device.
 *
 * Attaches the device's IOMMU group to the context's container (the first device of a context
 * fixes the IOMMU type, reads the usable IOVA windows and maps what was locked before it).
 *
 * Return: 0; EINVAL for NULL arguments or a malformed @bdf; ENOTSUP when @ctx is not on the vfio
 * backend or the device has no IOMMU group (no IOMMU: boot with intel_iommu=on / amd_iommu=on);
 * ENODEV when no such device exists; ENXIO when the device is bound to no driver and EBUSY when
 * it is bound to another driver than vfio-pci (ubdma_last_error() gives the commands that rebind
 * it); EBUSY also when the device is already open in @ctx, when the group is not viable (another
 * device of the group is bound to a host driver) or is held by another process or context;
 * EACCES / EPERM when /dev/vfio/<group> cannot be opened; ERANGE or ENOSPC when memory locked
 * before the first device does not fit that device's IOMMU (outside its IOVA ranges, or more
 * mappings than its entry limit); ENOMEM.  On failure nothing stays open or attached.
 */
int ubdma_pci_open(ubdma_ctx_t *ctx, const char *bdf, ubdma_pci_t **devp);

/**
 * ubdma_pci_close() - disable MSI-X and bus mastering, unmap the BARs, close the device, and
 * detach its IOMMU group when no other device of the context uses it.  When the last group of the
 * context goes, the IOMMU goes with it; memory still locked in the context stays registered and
 * is mapped again when a device is opened.  NULL is ignored.  ubdma_ctx_close() closes the
 * devices still open.
 */
void ubdma_pci_close(ubdma_pci_t *dev);

/**
 * ubdma_pci_bar() - map BAR @bar (0-5) of the device, uncached, read-write; the mapping is made
 * once and kept until ubdma_pci_close().
 * @lenp: receives the BAR's size (may be NULL).
 * Return: the address, or NULL with errno set as ubdma_pci_bar_map() returns it (and the
 * sentence).  Parts that VFIO does not let user space map (sparse mmap: typically the MSI-X table
 * on older kernels) are left inaccessible (PROT_NONE).
 */
void *ubdma_pci_bar(ubdma_pci_t *dev, int bar, size_t *lenp);

/**
 * ubdma_pci_bar_map() - ubdma_pci_bar() with an int result (its pointer return is DESIGN.md's).
 * @addrp: receives the address (NULL on failure).
 * @lenp:  receives the BAR's size (may be NULL).
 * Return: 0; EINVAL for a NULL @dev or @addrp, a @bar outside 0-5, or a BAR that is not
 * implemented (or the upper half of a 64-bit BAR); ENOTSUP for an I/O-port BAR or one VFIO does
 * not let user space map; EIO when mmap(2) fails; any errno of VFIO_DEVICE_GET_REGION_INFO.
 */
int ubdma_pci_bar_map(ubdma_pci_t *dev, int bar, void **addrp, size_t *lenp);

/**
 * ubdma_pci_dma_tag() - the DMA tag of the device, like bus_get_dma_tag(dev): create the driver's
 * tags under it.  A child of the context's root tag made by ubdma_pci_open() and destroyed by
 * ubdma_pci_close() (ubdma_tag_destroy() refuses it with EINVAL), it carries the device's IOVA
 * ranges (read at open: what lies above them is its excluded window, and its bounce pages and DMA
 * memory lie inside them), its NUMA node (ubdma_pci_numa_node(): bounce pages and
 * ubdma_mem_alloc() memory of the tags under it are allocated there, preferably) and, once the
 * driver sets one with ubdma_tag_set_lockfunc(), the lock function of every deferred callback of
 * the tags under it.  Tags under it inherit the ranges and the node.
 * Return: the tag, never NULL for an open device; NULL with errno EINVAL for a NULL @dev.
 */
ubdma_tag_t *ubdma_pci_dma_tag(ubdma_pci_t *dev);

/**
 * ubdma_pci_bdf() - the device's address, "DDDD:BB:DD.F" in lower case; NULL with errno EINVAL
 * for a NULL @dev.
 */
const char *ubdma_pci_bdf(const ubdma_pci_t *dev);

/** ubdma_pci_ctx() - the context the device was opened in; NULL with errno EINVAL for NULL. */
ubdma_ctx_t *ubdma_pci_ctx(const ubdma_pci_t *dev);

/**
 * ubdma_pci_numa_node() - the NUMA node the device is attached to, as ubdma_numa_node_of_pci()
 * answered at open (hwloc's locality, else sysfs numa_node), or UBDMA_NODE_ANY (-1) when the
 * platform does not say.  The node the device's DMA tag allocates on.  UBDMA_NODE_ANY with errno
 * EINVAL for a NULL @dev (clear errno first to tell it from a device without a node).
 */
int ubdma_pci_numa_node(const ubdma_pci_t *dev);

/**
 * ubdma_pci_cfg_read() - read @len bytes of configuration space at offset @off into @buf.
 * Accesses of 1, 2 or 4 naturally aligned bytes are single accesses; values are little endian,
 * as the bus has them.
 * Return: 0; EINVAL for NULL arguments or a range outside the configuration space; EIO when VFIO
 * returns less than asked; any errno of pread(2).
 */
int ubdma_pci_cfg_read(ubdma_pci_t *dev, unsigned off, void *buf, size_t len);

/**
 * ubdma_pci_cfg_write() - write @len bytes of @buf to configuration space at offset @off.
 * VFIO virtualises some registers (BARs, MSI/MSI-X capabilities, parts of the command register):
 * a write there may be filtered.
 * Return: 0; EINVAL for NULL arguments or a range outside the configuration space; EIO when VFIO
 * accepts less than asked; any errno of pwrite(2).
 */
int ubdma_pci_cfg_write(ubdma_pci_t *dev, unsigned off, const void *buf, size_t len);

/**
 * ubdma_pci_bus_master() - turn bus mastering (the command register's Bus Master Enable bit,
 * which lets the device start DMA) on (@enable != 0) or off.
 * Return: 0; EINVAL for a NULL @dev; EIO / any errno of the configuration space access.
 */
int ubdma_pci_bus_master(ubdma_pci_t *dev, int enable);

/**
 * ubdma_pci_reset() - reset the function (VFIO_DEVICE_RESET: FLR, PM or bus reset, whichever the
 * kernel finds for it).  The kernel saves the configuration space before and restores it after
 * (bus mastering and the MSI-X set-up included); BAR mappings stay valid, but device registers
 * return to their reset values, so the driver initialises the device again.
 * Return: 0; EINVAL for a NULL @dev; ENOTSUP when the device offers no reset VFIO can use; any
 * errno of the ioctl.
 */
int ubdma_pci_reset(ubdma_pci_t *dev);

/**
 * ubdma_pci_msix_count() - the number of MSI-X vectors of the device (0: no MSI-X; 0 with errno
 * EINVAL for a NULL @dev).
 */
unsigned ubdma_pci_msix_count(const ubdma_pci_t *dev);

/**
 * ubdma_pci_msix_enable() - enable MSI-X vectors 0 to @nvec - 1, each signalling an eventfd.
 * @fds: receives @nvec eventfds (non-blocking, close-on-exec), owned by the library: read(2) or
 *       poll(2) them, never close them; they live until ubdma_pci_msix_disable() or
 *       ubdma_pci_close().
 * Return: 0; EINVAL when @nvec is 0 or above ubdma_pci_msix_count() or @fds is NULL; ENOTSUP when
 * the device has no MSI-X; EBUSY when MSI-X is already enabled (disable it first); EMFILE /
 * ENFILE / ENOMEM when the eventfds cannot be made; any errno of VFIO_DEVICE_SET_IRQS.  On
 * failure MSI-X stays disabled and no eventfd is left open.
 */
int ubdma_pci_msix_enable(ubdma_pci_t *dev, unsigned nvec, int *fds);

/**
 * ubdma_pci_msix_disable() - disable MSI-X and close its eventfds.
 * Return: 0 (also when MSI-X was not enabled); EINVAL for a NULL @dev; any errno of
 * VFIO_DEVICE_SET_IRQS.
 */
int ubdma_pci_msix_disable(ubdma_pci_t *dev);

/**
 * ubdma_pci_notify_fds() - listen to the kernel's device request and error interrupts.
 * @req_fd: receives an eventfd (non-blocking, close-on-exec) that becomes readable when the kernel
 *          wants the device back: a hot-unplug (device_del, a surprise removal the platform
 *          reports), an unbind from vfio-pci.  The kernel's remove then waits until the device
 *          file is closed, and signals again every 10 s: answer with ubdma_pci_release() (or
 *          ubdma_pci_close()).
 * @err_fd: receives an eventfd signalled when AER reports an error of the device
 *          (error_detected), or -1 when the device has no error interrupt (VFIO offers it for PCI
 *          Express devices only); may be NULL.
 * Both are owned by the library, as the MSI-X eventfds are: read(2) or poll(2) them, never close
 * them; they stay open until ubdma_pci_close(), also after a release.  A second call gives the
 * same descriptors.  The interrupts go off at release and close.
 * Return: 0; EINVAL for a NULL @dev or @req_fd; ENOTSUP when the kernel offers no request
 * interrupt; ENODEV after ubdma_pci_release(); EMFILE / ENFILE / ENOMEM when the eventfds cannot
 * be made; any errno of VFIO_DEVICE_SET_IRQS.  On failure neither interrupt is left on.
 */
int ubdma_pci_notify_fds(ubdma_pci_t *dev, int *req_fd, int *err_fd);

/**
 * ubdma_pci_release() - give the device back to the kernel but keep the handle: the answer to a
 * device request (ubdma_pci_notify_fds()).  MSI-X (its eventfds are signalled once, so that a
 * thread asleep on one wakes up), the request and error interrupts and bus mastering go off, the
 * device file is closed and the IOMMU group detached (when no other device of the context uses
 * it): the kernel's remove or unbind proceeds.  Every BAR mapped so far stays at its address,
 * replaced in one step by process memory that reads all ones (the first 16 MiB of a BAR; zeroes
 * beyond), as a removed device reads on a real bus, so that another thread that touches a
 * register at that moment neither faults nor reaches the device; writes land in that memory.
 * Afterwards the configuration space, reset, MSI-X enable, ubdma_pci_notify_fds() and mapping
 * another BAR fail with ENODEV; the DMA tag stays (free the driver's tags and maps as usual);
 * ubdma_pci_close() frees the handle.  Must not race a configuration-space access, reset or
 * close on another thread; BAR accesses may race it.
 * Return: 0, also when the device was released already; EINVAL for a NULL @dev.
 */
int ubdma_pci_release(ubdma_pci_t *dev);

#ifdef __cplusplus
}
#endif
#endif /* UBDMA_PCI_H */
