/*
 * vfio_common.h - what the VFIO-based backends share: the type1 container (vfio.c), the iommufd
 * IOAS with the device cdev (iommufd.c) and the no-IOMMU container (noiommu.c).  The conservative
 * windows used before a device has shown its IOMMU, the IOVA placement rule, keeping the largest
 * windows of a long list, opening a VFIO group file and the device file through it, and finding a
 * device's cdev.  Nothing here keeps state.
 */
#ifndef UBDMA_VFIO_COMMON_H
#define UBDMA_VFIO_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "iommu/iommu.h"

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

#endif
