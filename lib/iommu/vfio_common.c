/*
 * vfio_common.c - the pieces the VFIO-based backends share (vfio_common.h): the conservative
 * windows, the IOVA placement rule, trimming a long window list, opening group files, finding
 * a device's cdev, and the bookkeeping of mappings (checks, placement, the all-or-nothing map,
 * the partial-unmap rule) that vfio.c and iommufd.c run around their own ioctls.  Kernel
 * contract: Documentation/driver-api/vfio.rst (groups, the device cdev of Linux 6.6 and later).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/page.h"
#include "base/sysfs.h"
#include "iommu/vfio_common.h"

/*
 * Before any device is attached the real windows are unknown.  These hold on every x86 IOMMU:
 * 39 bits is the smallest VT-d address width (3-level tables) and AMD-Vi offers more; the MSI
 * window 0xfee00000-0xfeefffff and everything above it up to 4 GiB (interrupt and firmware
 * ranges) is left out, and so is the first MiB.  Allocation prefers addresses >= 4 GiB, far from
 * the reserved ranges of other platforms (the ARM SMMU's software MSI window is at 0x08000000).
 */
const struct iommu_window vfio_default_windows[VFIO_NDEFAULT_WINDOWS] = {
	{ UINT64_C(0x100000), UINT64_C(0xfedfffff) },
	{ UINT64_C(0x100000000), UINT64_C(0x7fffffffff) },
};

int vfio_have_iommu(void)
{
	DIR *d = opendir("/sys/class/iommu");
	struct dirent *de;
	int n = 0;

	if (!d)
		return 0;
	while (!n && (de = readdir(d)))
		n = de->d_name[0] != '.';
	closedir(d);
	return n;
}

/*
 * IOVA placement: IOVA and VA congruent modulo 2 MiB (modulo the page size for 1 GiB pages), for
 * every range, small ones too.  Then any alignment the VA has up to 2 MiB holds in IOVA space as
 * well, which bus_dma relies on (it aligns DMA memory and bounce pages by their VA), and ranges
 * of 2 MiB and more get 2 MiB leaves in the translation map and the IOMMU.  The cost is IOVA space:
 * a small range may land up to 2 MiB above the last one, 128 GiB at worst for 65535 mappings,
 * a quarter of the 39-bit space the emulated VT-d offers.
 */
uint64_t vfio_placement_modulus(size_t pgsz)
{
	return pgsz > PAGE_2M ? pgsz : PAGE_2M;
}

/*
 * Device MMIO as IOVA holes.  A DMA address that equals a PCI BAR or falls in a bridge's memory
 * window may never reach the IOMMU: a switch without ACS routes it to the peer device, a bridge
 * does not forward upstream what its window claims for downstream, and QEMU's NVMe refuses a data
 * pointer inside its own BAR 0 with Data Transfer Error (nvme_addr_is_iomem(), comparing the
 * untranslated address; seen when a firmware put that BAR at 4 GiB, the first IOVA the allocator
 * hands out: issue 18, docs/nvme.md).  Linux's DMA API keeps the host bridge windows out of every
 * IOMMU domain's IOVAs (iova_reserve_pci_windows() in drivers/iommu/dma-iommu.c); VFIO's IOVA
 * ranges do not, so the allocator keeps out of every memory resource sysfs lists for a PCI
 * function (its BARs, expansion ROM, SR-IOV BARs and, for a bridge, its windows).  sysfs gives
 * CPU addresses: the bus addresses where, as on x86, the host bridge does not translate.
 */
int vfio_mmio_ranges(const char *root, struct iommu_window **out, int *nout)
{
	DIR *d = opendir(root);
	struct iommu_window *w = NULL;
	struct dirent *de;
	int n = 0, cap = 0;

	*out = NULL;
	*nout = 0;
	if (!d)
		return errno ? errno : ENOENT;
	while ((de = readdir(d))) {
		char path[512];
		unsigned long long lo, hi, flags;
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s/resource", root, de->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		while (fscanf(f, "%llx %llx %llx", &lo, &hi, &flags) == 3) {
			/* IORESOURCE_MEM, assigned (not IORESOURCE_UNSET), not empty */
			if (!(flags & 0x200) || (flags & 0x20000000) || hi <= lo)
				continue;
			if (n == cap) {
				struct iommu_window *nw = realloc(w, (size_t)(cap = cap ? cap * 2 : 64) * sizeof(*w));
				if (!nw) {
					fclose(f);
					closedir(d);
					free(w);
					return ENOMEM;
				}
				w = nw;
			}
			w[n++] = (struct iommu_window){ lo, hi };
		}
		fclose(f);
	}
	closedir(d);
	*out = w;
	*nout = n;
	return 0;
}

int vfio_space_holes(struct iova_space *s, const char *root)
{
	struct iommu_window *w;
	int n, err = vfio_mmio_ranges(root, &w, &n);

	if (err == ENOMEM || (!err && (err = iova_space_set_holes(s, w, n)) == ENOMEM)) {
		free(w);
		return uerr(ENOMEM, "out of memory");
	}
	if (err)
		ULOG_WARN("IOVAs not kept out of device MMIO: %s (%s)", n ? "holes not set" : root, strerror(err));
	else
		ULOG_DEBUG("IOVAs keep out of %d PCI memory resources (%d holes)", n, s->nhole);
	free(w);
	return 0;
}

/* Sort helper: larger windows first, to keep the biggest when there are too many. */
static int cmp_size_desc(const void *a, const void *b)
{
	const struct iommu_window *x = a, *y = b;
	uint64_t sx = x->hi - x->lo, sy = y->hi - y->lo;

	return sx > sy ? -1 : sx < sy;
}

int vfio_keep_largest(struct iommu_window *w, size_t n, const char *src)
{
	if (n <= IOMMU_MAX_WINDOWS)
		return (int)n;
	ULOG_WARN("%s reports %zu IOVA ranges; using the %d largest", src, n, IOMMU_MAX_WINDOWS);
	qsort(w, n, sizeof(*w), cmp_size_desc);
	return IOMMU_MAX_WINDOWS;
}

int vfio_group_open(const char *path, int num, int *fdp)
{
	struct vfio_group_status st = { .argsz = sizeof(st) };
	int fd;

	if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0) {
		int err = errno;
		if (err == EBUSY)
			return uerr(EBUSY, "%s is already open (another process, or another ubdma "
				    "context of this one, holds IOMMU group %d, or its device is bound "
				    "through its VFIO cdev)", path, num);
		return uerr(err, "cannot open %s: %s", path, strerror(err));
	}
	if (ioctl(fd, VFIO_GROUP_GET_STATUS, &st)) {
		int err = errno;
		close(fd);
		return uerr(err, "VFIO_GROUP_GET_STATUS on %s failed: %s", path, strerror(err));
	}
	if (!(st.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		close(fd);
		return uerr(EBUSY,
			    "IOMMU group %d is not viable: every device in "
			    "/sys/kernel/iommu_groups/%d/devices must be bound to vfio-pci (or to no "
			    "driver)", num, num);
	}
	*fdp = fd;
	return 0;
}

int vfio_group_device_fd(int group_fd, const char *bdf, int *fdp)
{
	int fd;

	if ((fd = ioctl(group_fd, VFIO_GROUP_GET_DEVICE_FD, bdf)) < 0)
		return uerr(errno, "VFIO_GROUP_GET_DEVICE_FD(%s) failed: %s", bdf, strerror(errno));
	*fdp = fd;
	return 0;
}

int vfio_device_cdev(const char *bdf, char *path, size_t len)
{
	char dir[128], node[160];
	struct dirent *de;
	struct stat st;
	DIR *d;

	sysfs_pci_path(dir, sizeof(dir), bdf, "vfio-dev");
	if (!(d = opendir(dir)))
		return uerr(ENODEV, "%s has no %s: it is not bound to vfio-pci", bdf, dir);
	while ((de = readdir(d)) && strncmp(de->d_name, "vfio", 4))
		;
	if (!de) {
		closedir(d);
		return uerr(ENODEV, "%s lists no vfioN device", dir);
	}
	snprintf(node, sizeof(node), "/dev/vfio/devices/%.40s", de->d_name);
	closedir(d);
	if (stat(node, &st) || !S_ISCHR(st.st_mode))
		return uerr(ENOTSUP, "%s has no VFIO device cdev %s: the kernel was built without "
			    "CONFIG_VFIO_DEVICE_CDEV (Linux 6.6 or later has it); use the vfio backend",
			    bdf, node);
	if (strlen(node) >= len)
		return uerr(ENAMETOOLONG, "path too long");
	strcpy(path, node);
	return 0;
}

/* ---------------------------------------------------------------- mapping bookkeeping */

int vfio_map_check(uintptr_t va, size_t npages, size_t pgsz, int prot, uint64_t minpg, const char *what)
{
	uint64_t size;

	if (!npages || !pgsz || (pgsz & (pgsz - 1)) || npages > UINT64_MAX / pgsz)
		return uerr(EINVAL, "bad range: %zu pages of %zu bytes", npages, pgsz);
	if (!(prot & (IOMMU_PROT_READ | IOMMU_PROT_WRITE)))
		return uerr(EINVAL, "%s needs READ and/or WRITE", what);
	size = (uint64_t)npages * pgsz;
	if ((va | size) & (minpg - 1))
		return uerr(EINVAL, "[%p, +%#llx) is not aligned to the IOMMU's smallest page (%#llx)",
			    (void *)va, (unsigned long long)size, (unsigned long long)minpg);
	return 0;
}

int vfio_space_map(struct iova_space *s, const struct vfio_kcalls *k, uintptr_t va, size_t npages,
		   size_t pgsz, int prot, const struct iommu_window *lim, uint64_t *iovas)
{
	uint64_t size = (uint64_t)npages * pgsz, modulus = vfio_placement_modulus(pgsz), iova;
	int err;

	err = iova_alloc(s, size, modulus, va & (modulus - 1), lim, va, (uint32_t)prot, &iova);
	if (err == ERANGE)
		return uerr(ERANGE, "no free IOVA range of %#llx bytes inside [%#llx, %#llx]",
			    (unsigned long long)size, (unsigned long long)lim->lo, (unsigned long long)lim->hi);
	if (err == ENOSPC)
		return uerr(ENOSPC, "no free IOVA range of %#llx bytes in the usable windows",
			    (unsigned long long)size);
	if (err)
		return uerr(err, "out of memory");
	if (k && (err = k->map(k->arg, va, iova, size, (uint32_t)prot))) {
		iova_free_rec(s, iova_find(s, iova));
		return err;
	}
	ULOG_DEBUG("mapped %p +%#llx at IOVA %#llx%s", (void *)va, (unsigned long long)size,
		   (unsigned long long)iova, k ? "" : " (recorded: no device yet)");
	for (size_t i = 0; i < npages; i++)
		iovas[i] = iova + i * pgsz;
	return 0;
}

int vfio_space_unmap(struct iova_space *s, const struct vfio_kcalls *k, uintptr_t va, uint64_t size,
		     uint64_t iova)
{
	struct iova_rec *r = iova_find(s, iova);
	uint64_t done = 0;
	int err;

	if (!r || r->size != size || r->va != va || (r->flags & VFIO_REC_POISON))
		return uerr(EINVAL, "no mapping of %p +%#llx at IOVA %#llx", (void *)va,
			    (unsigned long long)size, (unsigned long long)iova);
	if (k && (err = k->unmap(k->arg, iova, size, &done)))
		return uerr(err, "%s of IOVA [%#llx, +%#llx) failed: %s; it stays mapped", k->unmap_name,
			    (unsigned long long)iova, (unsigned long long)size, strerror(err));
	if (k && done != size) {
		/* keep the range allocated so that nothing reuses an IOVA that may still map */
		r->flags |= VFIO_REC_POISON;
		return uerr(EIO, "%s of IOVA [%#llx, +%#llx) unmapped %#llx bytes: partial unmap; the "
			    "IOVA range is retired", k->unmap_name, (unsigned long long)iova,
			    (unsigned long long)size, (unsigned long long)done);
	}
	iova_free_rec(s, r);
	return 0;
}

void vfio_space_unmap_all(const struct iova_space *s, const struct vfio_kcalls *k)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct iova_rec *r = &s->rec[i];
		uint64_t done;
		int err = k->unmap(k->arg, r->lo, r->size, &done);
		if (err || (done != r->size && !(r->flags & VFIO_REC_POISON)))
			ULOG(UBDMA_LOG_ERROR, "%s of IOVA [%#llx, +%#llx) at close: %s, %llu bytes unmapped",
			     k->unmap_name, (unsigned long long)r->lo, (unsigned long long)r->size,
			     err ? strerror(err) : "ok", (unsigned long long)done);
	}
}
