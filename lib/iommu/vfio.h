/*
 * vfio.h - what the VFIO backend offers the pci layer: attaching IOMMU groups to the context's
 * container.
 *
 * A VFIO container has no IOMMU until a group joins it (VFIO_SET_IOMMU needs one), yet a ubdma
 * context exists before any device is opened.  The backend therefore records the mappings made
 * before the first group arrives and replays them when ubdma_pci_open() attaches it; later groups
 * join the same container and see the same mappings.  When the last group leaves, the kernel drops
 * the IOMMU and its mappings, and the backend returns to recording (the next attach replays).
 */
#ifndef UBDMA_IOMMU_VFIO_H
#define UBDMA_IOMMU_VFIO_H

struct ubdma_ctx;
struct vfio_group;

/*
 * Attach IOMMU group number group to ctx's container (ctx on the vfio backend), or take one more
 * reference on it when it is attached already.  The first group sets the IOMMU type (type1v2),
 * reads the usable IOVA windows into ctx->windows and replays the mappings made so far.
 * Return: 0 and *gp; ENOENT when /dev/vfio/<group> does not exist; EBUSY when the group is not
 * viable (a device of the group is bound to a host driver) or is held by another container or
 * process; EACCES / EPERM when it cannot be opened; ERANGE when a mapping made before the attach
 * lies outside the group's usable IOVA ranges; ENOSPC when the mappings made before the attach
 * exceed the IOMMU's mapping entry limit; any errno of the VFIO ioctls.  The reason is in
 * ubdma_last_error().  On failure the group is not attached and the context is as before.
 */
int vfio_group_attach(struct ubdma_ctx *ctx, int group, struct vfio_group **gp);

/* Drop one reference; the last one detaches the group from the container and closes it. */
void vfio_group_detach(struct ubdma_ctx *ctx, struct vfio_group *g);

/* The group's file descriptor (for VFIO_GROUP_GET_DEVICE_FD). */
int vfio_group_fd(const struct vfio_group *g);

#endif
