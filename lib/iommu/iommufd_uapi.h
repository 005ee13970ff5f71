/*
 * iommufd_uapi.h - the kernel ABI of iommufd and of the VFIO device cdev, for building on systems
 * whose kernel headers predate them (Debian 12's linux-libc-dev is 6.1: no <linux/iommufd.h>,
 * no VFIO_DEVICE_BIND_IOMMUFD).  Layouts and numbers are those of include/uapi/linux/iommufd.h
 * and include/uapi/linux/vfio.h (Linux 6.12; IOMMU_IOAS_MAP_FILE from 6.13); the names carry a
 * ufd_ prefix so that they never collide with a newer system header.
 */
#ifndef UBDMA_IOMMUFD_UAPI_H
#define UBDMA_IOMMUFD_UAPI_H

#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/vfio.h>

/* iommufd commands: _IO(';', 0x80 + n); the argument is a struct that starts with its size */
#define UFD_TYPE ';'
#define UFD_DESTROY _IO(UFD_TYPE, 0x80)
#define UFD_IOAS_ALLOC _IO(UFD_TYPE, 0x81)
#define UFD_IOAS_IOVA_RANGES _IO(UFD_TYPE, 0x84)
#define UFD_IOAS_MAP _IO(UFD_TYPE, 0x85)
#define UFD_IOAS_UNMAP _IO(UFD_TYPE, 0x86)
#define UFD_OPTION _IO(UFD_TYPE, 0x87)
#define UFD_IOAS_MAP_FILE _IO(UFD_TYPE, 0x8f) /* Linux 6.13 */

struct ufd_destroy {
	__u32 size;
	__u32 id;
};

struct ufd_ioas_alloc {
	__u32 size;
	__u32 flags;
	__u32 out_ioas_id;
};

struct ufd_iova_range {
	__aligned_u64 start;
	__aligned_u64 last; /* inclusive */
};

/* num_iovas: in, the room at allowed_iovas; out, how many there are (EMSGSIZE if more) */
struct ufd_ioas_iova_ranges {
	__u32 size;
	__u32 ioas_id;
	__u32 num_iovas;
	__u32 reserved;
	__aligned_u64 allowed_iovas; /* user pointer to struct ufd_iova_range[] */
	__aligned_u64 out_iova_alignment;
};

#define UFD_MAP_FIXED_IOVA (1u << 0)
#define UFD_MAP_WRITEABLE (1u << 1)
#define UFD_MAP_READABLE (1u << 2)

struct ufd_ioas_map {
	__u32 size;
	__u32 flags;
	__u32 ioas_id;
	__u32 reserved;
	__aligned_u64 user_va;
	__aligned_u64 length;
	__aligned_u64 iova; /* in with FIXED_IOVA, else out */
};

struct ufd_ioas_map_file {
	__u32 size;
	__u32 flags;
	__u32 ioas_id;
	__s32 fd;
	__aligned_u64 start;
	__aligned_u64 length;
	__aligned_u64 iova;
};

/* length: in, the range; out, what was unmapped */
struct ufd_ioas_unmap {
	__u32 size;
	__u32 ioas_id;
	__aligned_u64 iova;
	__aligned_u64 length;
};

#define UFD_OPTION_RLIMIT_MODE 0 /* val64: 0 per user (user->locked_vm), 1 per process (mm) */
#define UFD_OPTION_OP_SET 0
#define UFD_OPTION_OP_GET 1

struct ufd_option {
	__u32 size;
	__u32 option_id;
	__u16 op;
	__u16 reserved;
	__u32 object_id;
	__aligned_u64 val64;
};

/* the VFIO device cdev (/dev/vfio/devices/vfioN), Linux 6.6 */
#define UFD_VFIO_DEVICE_BIND_IOMMUFD _IO(VFIO_TYPE, VFIO_BASE + 18)
#define UFD_VFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 19)
#define UFD_VFIO_DEVICE_DETACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 20)

struct ufd_vfio_bind {
	__u32 argsz;
	__u32 flags;
	__s32 iommufd;
	__u32 out_devid;
};

struct ufd_vfio_attach_pt {
	__u32 argsz;
	__u32 flags;
	__u32 pt_id; /* in: the IOAS; out: the page table the kernel made for it */
};

struct ufd_vfio_detach_pt {
	__u32 argsz;
	__u32 flags;
};

#endif
