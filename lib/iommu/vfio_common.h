/*
 * vfio_common.h - what the VFIO-based backends share: the type1 container (vfio.c), the iommufd
 * IOAS with the device cdev (iommufd.c) and the no-IOMMU container (noiommu.c).  The conservative
 * windows used before a device has shown its IOMMU, the IOVA placement rule, keeping the largest
 * windows of a long list, opening a VFIO group file and the device file through it, finding a
 * device's cdev, and the bookkeeping of mappings in an iova_space that the type1 container and
 * the iommufd IOAS share (the kernel calls differ; the rules do not).  Nothing here keeps state.
 */
#ifndef UBDMA_VFIO_COMMON_H
#define UBDMA_VFIO_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "iommu/iommu.h"
#include "iommu/iova_alloc.h"

/* Whether an IOMMU driver has registered a unit (an entry in /sys/class/iommu). */
int vfio_have_iommu(void);

/* Windows every x86 IOMMU accepts, used until a device's IOMMU reports its own (vfio_common.c). */
#define VFIO_NDEFAULT_WINDOWS 2
extern const struct iommu_window vfio_default_windows[VFIO_NDEFAULT_WINDOWS];

/* The modulus IOVA and VA are kept congruent by, for a mapping in pages of pgsz. */
uint64_t vfio_placement_modulus(size_t pgsz);

/*
 * Keep at most IOMMU_MAX_WINDOWS of the n ranges in w (sorted by start, or not): the largest,
 * with a warning naming src when some are dropped; w is rewritten in place.  Returns the count.
 */
int vfio_keep_largest(struct iommu_window *w, size_t n, const char *src);

/*
 * The memory resources of every PCI function under root (SYSFS_PCI_DEVICES; a test's own folder):
 * each assigned IORESOURCE_MEM line of root/ * /resource (BARs, ROM, SR-IOV BARs, bridge windows),
 * as inclusive ranges in *out (malloc'd, the caller frees; NULL when none).  0 and *nout;
 * the errno of opendir(root), or ENOMEM.
 */
int vfio_mmio_ranges(const char *root, struct iommu_window **out, int *nout);

/* Make those ranges the holes of s (iova_space_set_holes(): IOVAs never alias device MMIO).  0;
 * ENOMEM; any other failure (no sysfs) is logged and leaves s as it was. */
int vfio_space_holes(struct iova_space *s, const char *root);

/*
 * Open the VFIO group file path (/dev/vfio/N or /dev/vfio/noiommu-N) of IOMMU group num and
 * check that the group is viable.  0 and *fdp; ENOENT, EBUSY (held elsewhere, or not viable),
 * EACCES / EPERM, or the errno of VFIO_GROUP_GET_STATUS, the reason in ubdma_last_error().
 */
int vfio_group_open(const char *path, int num, int *fdp);

/* The device file of bdf through its group's file: VFIO_GROUP_GET_DEVICE_FD.  0 and *fdp. */
int vfio_group_device_fd(int group_fd, const char *bdf, int *fdp);

/*
 * The VFIO device cdev of bdf, /dev/vfio/devices/vfioN, from the vfio-dev/vfioN folder sysfs has
 * for a device bound to a VFIO driver.  0 and the path; ENODEV when sysfs has no vfio-dev entry
 * (not bound to vfio-pci); ENOTSUP when the entry has no device node (a kernel without
 * CONFIG_VFIO_DEVICE_CDEV).
 */
int vfio_device_cdev(const char *bdf, char *path, size_t len);

/* ---------------------------------------------------------------- mapping bookkeeping */

/* record flag, beside IOMMU_PROT_*: the kernel unmapped only part; the IOVA range is retired */
#define VFIO_REC_POISON 0x100u

/* A backend's kernel calls, for the bookkeeping below. */
struct vfio_kcalls {
	void *arg;
	const char *unmap_name; /* the unmap ioctl, for messages */
	/* map [va, +size) at iova with IOMMU_PROT_* prot: 0, or a positive errno with the reason set */
	int (*map)(void *arg, uintptr_t va, uint64_t iova, uint64_t size, uint32_t prot);
	/* unmap [iova, +size): 0 and *done what the kernel unmapped, or the ioctl's errno */
	int (*unmap)(void *arg, uint64_t iova, uint64_t size, uint64_t *done);
};

/*
 * Check a map request: npages pages of pgsz bytes (a power of two), READ and/or WRITE, va and
 * the length aligned to minpg (the IOMMU's smallest page).  0, or EINVAL with the reason; what
 * names the kind of mapping in the message ("a VFIO mapping").
 */
int vfio_map_check(uintptr_t va, size_t npages, size_t pgsz, int prot, uint64_t minpg, const char *what);

/*
 * Place [va, +npages * pgsz) in s by the placement rule, inside lim, record it with prot, and map
 * it through k (NULL: only record, for a container with no IOMMU yet).  0 and iovas[i] for every
 * page; ERANGE (nothing free inside lim), ENOSPC (nothing free in the windows), ENOMEM, or k's
 * error, with the reason set.  On failure nothing is recorded or mapped.
 */
int vfio_space_map(struct iova_space *s, const struct vfio_kcalls *k, uintptr_t va, size_t npages,
		   size_t pgsz, int prot, const struct iommu_window *lim, uint64_t *iovas);

/*
 * Unmap the mapping of [va, +size) at iova through k (NULL: nothing is mapped in the kernel,
 * only forget it) and free its record.  0; EINVAL when no live record is exactly that; the ioctl's
 * errno when it failed (the mapping stays, recorded); EIO when the kernel unmapped only part (the
 * record stays, poisoned, so that its IOVAs are never handed out again).
 */
int vfio_space_unmap(struct iova_space *s, const struct vfio_kcalls *k, uintptr_t va, uint64_t size,
		     uint64_t iova);

/* At close: unmap every record through k; failures are logged (there is no one to tell). */
void vfio_space_unmap_all(const struct iova_space *s, const struct vfio_kcalls *k);

#endif
