/*
 * iommufd.c - the iommufd backend: one IOAS per context, devices through their VFIO cdev, IOVAs
 * from our own allocator.
 *
 * The kernel contract is include/uapi/linux/iommufd.h, Documentation/userspace-api/iommufd.rst
 * and, for the device side, the "VFIO device cdev" section of Documentation/driver-api/vfio.rst
 * (Linux 6.6 and later; the ABI is restated in iommufd_uapi.h):
 *  - /dev/iommu is an iommufd; IOMMU_IOAS_ALLOC makes an I/O address space (IOAS), an object
 *    holding mappings, which any number of devices attach to;
 *  - a device is opened through its cdev /dev/vfio/devices/vfioN, bound to the iommufd
 *    (VFIO_DEVICE_BIND_IOMMUFD; the group interface of the same device is blocked from then on,
 *    and a second bind of the device anywhere fails) and attached to the IOAS
 *    (VFIO_DEVICE_ATTACH_IOMMUFD_PT, which makes or reuses a hardware page table for it);
 *  - IOMMU_IOAS_MAP with IOMMU_IOAS_MAP_FIXED_IOVA maps [user_va, +length) at the IOVA we chose,
 *    READABLE and/or WRITEABLE, all or nothing; IOMMU_IOAS_UNMAP unmaps every mapping inside a
 *    range and says how much it unmapped;
 *  - IOMMU_IOAS_IOVA_RANGES lists the IOVAs the IOAS allows: the apertures of the attached
 *    devices' IOMMUs minus their reserved regions (the MSI window).  An IOAS can hold mappings
 *    before any device is attached (they are pinned when the first domain appears), and an
 *    attach whose reserved regions collide with a mapping fails (EADDRINUSE);
 *  - pinned pages are counted against RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK, by
 *    default per user (user->locked_vm, shared by all of the user's processes and separate from
 *    mlock's count), or per process (mm->locked_vm, as VFIO type1 does) once IOMMU_OPTION
 *    RLIMIT_MODE is set to 1, which needs CAP_SYS_RESOURCE.  We keep the kernel's default and
 *    report it (usable(), ubdma status, the ENOMEM message).
 *  - IOMMU_IOAS_MAP_FILE (Linux 6.13) maps a range of a memfd by file and offset instead of by
 *    address.  The seam hands a backend addresses, not files, and the test bed's kernel (6.12)
 *    lacks it, so memfd memory is mapped by address like all other memory (which pins the same
 *    pages); usable() says whether the kernel has it.
 *
 * Unlike type1 there is no entry limit (no dma_entry_limit) and nothing to record before the
 * first device: mappings go into the IOAS at once, inside the conservative default windows until
 * a device's IOMMU reports its own.  Later devices can only narrow the windows.  Everything else
 * -- placement, all or nothing, permissions, the partial-unmap rule -- is as in vfio.c, and
 * docs/vfio.md describes both.
 *
 * fork(2): as for vfio.c, the child must not use its parent's context: the iommufd file is
 * shared, so its calls would change the parent's mappings.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/page.h"
#include "iommu/iommu.h"
#include "iommu/iommufd_uapi.h"
#include "iommu/iova_alloc.h"
#include "base/sysfs.h"
#include "iommu/vfio_common.h"

struct ufd_dev {
	int fd;			/* the bound cdev: closing it unbinds the device */
	uint32_t devid, hwpt;
	char bdf[16];
	struct ufd_dev *next;
};

/* See vfio.c for the locking and fork rules, which are the same. */
struct ufd {
	struct iommu_sink sink;	 /* where the windows go (under lock) */
	pthread_mutex_t lock;	 /* everything below; held across the ioctls */
	int fd;			 /* /dev/iommu */
	uint32_t ioas;
	int rlimit_mode;	 /* 0 per user, 1 per process, -1 unknown */
	int ndevs;
	struct ufd_dev *devs;
	struct iova_space space; /* windows and records: IOVA, size, VA, prot of every mapping */
	struct vfio_kcalls kc;	 /* map_ioas / unmap_ioas, for the bookkeeping */
};

/* ---------------------------------------------------------------- probing */

static const char *rlimit_text(int mode)
{
	return mode == 0 ? "pins count per user (rlimit mode 0)"
	       : mode == 1 ? "pins count per process (rlimit mode 1)"
			   : "pin accounting unknown";
}

/* IOMMU_OPTION_RLIMIT_MODE of an iommufd: 0, 1, or -1 when the kernel does not say. */
static int rlimit_mode(int fd)
{
	struct ufd_option o = { .size = sizeof(o), .option_id = UFD_OPTION_RLIMIT_MODE,
				.op = UFD_OPTION_OP_GET };

	return ioctl(fd, UFD_OPTION, &o) ? -1 : (int)o.val64;
}

/*
 * Whether the kernel knows IOMMU_IOAS_MAP_FILE: an unknown iommufd command is ENOTTY, a known one
 * with a bad file descriptor and IOAS something else.
 */
static int has_map_file(int fd)
{
	struct ufd_ioas_map_file m = { .size = sizeof(m), .fd = -1, .length = PAGE_4K };

	return !(ioctl(fd, UFD_IOAS_MAP_FILE, &m) && errno == ENOTTY);
}

/*
 * A kernel with CONFIG_VFIO_DEVICE_CDEV gives every VFIO device a node /dev/vfio/devices/<name>;
 * without it sysfs still lists the device in class vfio-dev.  1 cdevs, 0 none, -1 no device to
 * tell by.
 */
static int cdevs_present(void)
{
	DIR *d = opendir("/sys/class/vfio-dev");
	struct dirent *de;
	int seen = -1;

	if (!d)
		return -1;
	while (seen && (de = readdir(d))) {
		char node[300];
		if (de->d_name[0] == '.')
			continue;
		snprintf(node, sizeof(node), "/dev/vfio/devices/%s", de->d_name);
		seen = access(node, F_OK) == 0;
	}
	closedir(d);
	return seen;
}

/*
 * AUTO picks iommufd when /dev/iommu opens, an IOMMU exists, and devices bound to vfio-pci have
 * cdevs (or none is bound yet to tell).  The clause also states the pin accounting and whether
 * IOMMU_IOAS_MAP_FILE exists, for `ubdma status`.
 */
static int ufd_usable(char *why, size_t whylen)
{
	int fd, mode, mf, cdev;

	if ((fd = open("/dev/iommu", O_RDWR | O_CLOEXEC)) < 0) {
		if (errno == ENOENT)
			snprintf(why, whylen, "no /dev/iommu (kernel without CONFIG_IOMMUFD)");
		else
			snprintf(why, whylen, "/dev/iommu does not open (%s)", strerror(errno));
		return 0;
	}
	mode = rlimit_mode(fd);
	mf = has_map_file(fd);
	close(fd);
	if (!vfio_have_iommu()) {
		snprintf(why, whylen, "/dev/iommu exists, but no IOMMU (/sys/class/iommu is empty)");
		return 0;
	}
	if (!(cdev = cdevs_present())) {
		snprintf(why, whylen, "/dev/iommu exists, but VFIO devices have no cdev (kernel "
			 "without CONFIG_VFIO_DEVICE_CDEV)");
		return 0;
	}
	snprintf(why, whylen, "/dev/iommu exists%s; %s; %s", cdev < 0 ? " (no vfio-pci device yet to "
		 "check for VFIO cdevs)" : ", VFIO devices have cdevs", rlimit_text(mode),
		 mf ? "IOAS_MAP_FILE present (unused)" : "no IOAS_MAP_FILE (Linux < 6.13)");
	return 1;
}

/* ---------------------------------------------------------------- kernel calls */

static int enomem_reason(uint64_t size, uintptr_t va, int mode, const char *what)
{
	struct rlimit rl = { 0, 0 };

	getrlimit(RLIMIT_MEMLOCK, &rl);
	return uerr(ENOMEM,
		    "%s of %llu bytes at %p failed: iommufd pins the pages and counts them in "
		    "RLIMIT_MEMLOCK (%llu bytes) %s; raise the limit (ulimit -l, limits.conf "
		    "memlock) or grant CAP_IPC_LOCK",
		    what, (unsigned long long)size, (void *)va, (unsigned long long)rl.rlim_cur,
		    mode == 1 ? "per process, on top of the mlock wiring"
			      : "per user: every iommufd pin of this user's processes shares the limit");
}

static int map_ioas(void *arg, uintptr_t va, uint64_t iova, uint64_t size, uint32_t prot)
{
	struct ufd *u = arg;
	struct ufd_ioas_map m = {
		.size = sizeof(m),
		.flags = UFD_MAP_FIXED_IOVA | (prot & IOMMU_PROT_READ ? UFD_MAP_READABLE : 0) |
			 (prot & IOMMU_PROT_WRITE ? UFD_MAP_WRITEABLE : 0),
		.ioas_id = u->ioas,
		.user_va = va,
		.length = size,
		.iova = iova,
	};

	if (ioctl(u->fd, UFD_IOAS_MAP, &m) == 0)
		return 0;
	switch (errno) {
	case ENOMEM:
	case EPERM:
		return enomem_reason(size, va, u->rlimit_mode, "IOMMU_IOAS_MAP");
	default:
		return uerr(errno, "IOMMU_IOAS_MAP of %llu bytes at %p to IOVA %#llx failed: %s",
			    (unsigned long long)size, (void *)va, (unsigned long long)iova,
			    strerror(errno));
	}
}

/* Unmap [iova, iova + size); *done receives what the kernel says it unmapped. */
static int unmap_ioas(void *arg, uint64_t iova, uint64_t size, uint64_t *done)
{
	struct ufd *u = arg;
	struct ufd_ioas_unmap m = { .size = sizeof(m), .ioas_id = u->ioas, .iova = iova, .length = size };

	*done = 0;
	if (ioctl(u->fd, UFD_IOAS_UNMAP, &m))
		return errno;
	*done = m.length;
	return 0;
}

/* IOMMU_IOAS_IOVA_RANGES: the allowed ranges, the largest IOMMU_MAX_WINDOWS of them. */
static int read_ranges(struct ufd *u, struct iommu_window *w, int *nw)
{
	struct ufd_iova_range small[IOMMU_MAX_WINDOWS * 2], *r = small;
	struct ufd_ioas_iova_ranges q = { .size = sizeof(q), .ioas_id = u->ioas,
					  .num_iovas = IOMMU_MAX_WINDOWS * 2 };
	struct iommu_window *all;
	int err = 0;

	q.allowed_iovas = (uintptr_t)r;
	while (ioctl(u->fd, UFD_IOAS_IOVA_RANGES, &q)) {
		/* EMSGSIZE: more ranges than room; num_iovas says how many */
		if (errno != EMSGSIZE || r != small) {
			err = uerr(errno, "IOMMU_IOAS_IOVA_RANGES failed: %s", strerror(errno));
			if (r != small)
				free(r);
			return err;
		}
		if (!(r = calloc(q.num_iovas, sizeof(*r))))
			return uerr(ENOMEM, "out of memory");
		q.allowed_iovas = (uintptr_t)r;
	}
	if (!q.num_iovas) {
		err = uerr(ENOSPC, "the IOAS allows no IOVA at all");
	} else if (!(all = calloc(q.num_iovas, sizeof(*all)))) {
		err = uerr(ENOMEM, "out of memory");
	} else {
		for (uint32_t i = 0; i < q.num_iovas; i++)
			all[i] = (struct iommu_window){ r[i].start, r[i].last };
		*nw = vfio_keep_largest(all, q.num_iovas, "the IOAS");
		memcpy(w, all, (size_t)*nw * sizeof(*w));
		free(all);
	}
	if (r != small)
		free(r);
	return err;
}

static void publish_windows(struct ufd *u)
{
	u->sink.windows(u->sink.arg, u->space.win, u->space.nwin);
}

/* ---------------------------------------------------------------- devices */

/* Bind the cdev to our iommufd and attach it to the IOAS; errors name the usual causes. */
static int bind_attach(struct ufd *u, struct ufd_dev *d, const char *node)
{
	struct ufd_vfio_bind b = { .argsz = sizeof(b), .iommufd = u->fd };
	struct ufd_vfio_attach_pt a = { .argsz = sizeof(a), .pt_id = u->ioas };

	if (ioctl(d->fd, UFD_VFIO_DEVICE_BIND_IOMMUFD, &b)) {
		if (errno == EBUSY)
			return uerr(EBUSY, "VFIO_DEVICE_BIND_IOMMUFD(%s) failed: the device is already "
				    "open through its VFIO group (a vfio backend context, here or in "
				    "another process)", node);
		if (errno == EINVAL)
			return uerr(EBUSY, "VFIO_DEVICE_BIND_IOMMUFD(%s) failed: the device is already "
				    "open through its cdev (another iommufd context, here or in another "
				    "process)", node);
		return uerr(errno, "VFIO_DEVICE_BIND_IOMMUFD(%s) failed: %s", node, strerror(errno));
	}
	d->devid = b.out_devid;
	if (ioctl(d->fd, UFD_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &a)) {
		if (errno == EADDRINUSE)
			return uerr(ERANGE, "attaching %s to the IOAS failed: memory registered before the "
				    "device was opened sits at IOVAs its IOMMU reserves or cannot reach; "
				    "open the device first, or unlock that memory", d->bdf);
		if (errno == ENOMEM)
			return uerr(ENOMEM, "attaching %s pins the memory registered before it, which "
				    "exceeds RLIMIT_MEMLOCK (%s); raise the limit or grant CAP_IPC_LOCK",
				    d->bdf, rlimit_text(u->rlimit_mode));
		return uerr(errno, "VFIO_DEVICE_ATTACH_IOMMUFD_PT(%s) failed: %s", node, strerror(errno));
	}
	d->hwpt = a.pt_id;
	return 0;
}

/*
 * Open the device's cdev, bind it to the iommufd, attach it to the IOAS, and narrow the windows
 * to what the IOAS now allows.
 * Return: 0 and *hp; ENODEV (not bound to vfio-pci), ENOTSUP (no cdev: CONFIG_VFIO_DEVICE_CDEV
 * off); EBUSY when the device is held through its group or its cdev elsewhere; EACCES / EPERM when
 * the cdev cannot be opened; ERANGE when a mapping made before lies where the device's IOMMU
 * cannot map; ENOMEM when pinning those mappings exceeds RLIMIT_MEMLOCK; any errno of the ioctls.
 * On failure the device is not bound and the IOAS and windows are as before.
 */
static int ufd_attach(void *priv, const struct iommu_dev *dev, void **hp)
{
	struct ufd *u = priv;
	struct iommu_window w[IOMMU_MAX_WINDOWS];
	char node[64];
	struct ufd_dev *d;
	int nw = 0, err;

	if ((err = vfio_device_cdev(dev->bdf, node, sizeof(node))))
		return err;
	if (!(d = calloc(1, sizeof(*d))))
		return uerr(ENOMEM, "out of memory");
	snprintf(d->bdf, sizeof(d->bdf), "%s", dev->bdf);
	if ((d->fd = open(node, O_RDWR | O_CLOEXEC)) < 0) {
		err = uerr(errno, "cannot open %s (the VFIO cdev of %s): %s", node, dev->bdf, strerror(errno));
		free(d);
		return err;
	}
	pthread_mutex_lock(&u->lock);
	if ((err = bind_attach(u, d, node)) || (err = read_ranges(u, w, &nw)))
		goto fail;
	if (iova_space_set_windows(&u->space, w, nw)) {
		err = uerr(ERANGE, "memory registered before %s was opened lies outside the IOVA ranges "
			   "its IOMMU allows; open the device first, or unlock that memory", dev->bdf);
		goto fail;
	}
	d->next = u->devs;
	u->devs = d;
	__atomic_store_n(&u->ndevs, u->ndevs + 1, __ATOMIC_RELEASE); /* ufd_pins() reads it unlocked */
	publish_windows(u);
	pthread_mutex_unlock(&u->lock);
	ULOG_INFO("%s: bound to iommufd (device %u), attached to IOAS %u (page table %u); %d IOVA "
		  "windows", dev->bdf, d->devid, u->ioas, d->hwpt, u->space.nwin);
	*hp = d;
	return 0;

fail:
	pthread_mutex_unlock(&u->lock);
	close(d->fd); /* unbinds, and detaches when the attach was made */
	free(d);
	return err;
}

static void ufd_detach(void *priv, void *h)
{
	struct ufd *u = priv;
	struct ufd_dev *d = h, **pp;
	struct ufd_vfio_detach_pt x = { .argsz = sizeof(x) };

	pthread_mutex_lock(&u->lock);
	for (pp = &u->devs; *pp != d; pp = &(*pp)->next)
		;
	*pp = d->next;
	__atomic_store_n(&u->ndevs, u->ndevs - 1, __ATOMIC_RELEASE);
	/* the windows stay as they are: they only ever narrow, so IOVAs given out stay valid */
	if (ioctl(d->fd, UFD_VFIO_DEVICE_DETACH_IOMMUFD_PT, &x))
		ULOG_WARN("VFIO_DEVICE_DETACH_IOMMUFD_PT(%s) failed: %s", d->bdf, strerror(errno));
	close(d->fd);
	pthread_mutex_unlock(&u->lock);
	free(d);
}

/* The device file: a second descriptor of the bound cdev (the caller closes it before detach). */
static int ufd_device_fd(void *priv, void *h, const char *bdf, int *fdp)
{
	const struct ufd_dev *d = h;
	int fd;

	(void)priv;
	if ((fd = fcntl(d->fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return uerr(errno, "dup of the VFIO cdev of %s failed: %s", bdf, strerror(errno));
	*fdp = fd;
	return 0;
}

/* ---------------------------------------------------------------- ops */

static int ufd_open(const struct iommu_sink *sink, void **privp)
{
	struct ufd_ioas_alloc a = { .size = sizeof(a) };
	struct ufd *u;
	int err;

	if (!(u = calloc(1, sizeof(*u))))
		return uerr(ENOMEM, "out of memory");
	if ((u->fd = open("/dev/iommu", O_RDWR | O_CLOEXEC)) < 0) {
		err = errno;
		free(u);
		if (err == ENOENT)
			return uerr(ENODEV, "no /dev/iommu: the kernel has no iommufd (CONFIG_IOMMUFD, "
				    "Linux 6.2 or later; modprobe iommufd)");
		return uerr(err, "cannot open /dev/iommu: %s", strerror(err));
	}
	if (ioctl(u->fd, UFD_IOAS_ALLOC, &a)) {
		err = uerr(errno, "IOMMU_IOAS_ALLOC failed: %s", strerror(errno));
		close(u->fd);
		free(u);
		return err;
	}
	u->ioas = a.out_ioas_id;
	u->rlimit_mode = rlimit_mode(u->fd);
	pthread_mutex_init(&u->lock, NULL);
	u->sink = *sink;
	u->kc = (struct vfio_kcalls){ u, "IOMMU_IOAS_UNMAP", map_ioas, unmap_ioas };
	/* the IOAS allows everything until a device's IOMMU is attached: use the safe subset */
	iova_space_init(&u->space, vfio_default_windows, VFIO_NDEFAULT_WINDOWS);
	if ((err = vfio_space_holes(&u->space, SYSFS_PCI_DEVICES))) { /* no IOVA on device MMIO */
		iova_space_fini(&u->space);
		pthread_mutex_destroy(&u->lock);
		close(u->fd);
		free(u);
		return err;
	}
	publish_windows(u);
	ULOG_INFO("iommufd %d: IOAS %u, %s", u->fd, u->ioas, rlimit_text(u->rlimit_mode));
	*privp = u;
	return 0;
}

static void ufd_close(void *priv)
{
	struct ufd *u = priv;

	pthread_mutex_lock(&u->lock);
	/* devices are normally gone (the pci layer closes its devices first) */
	while (u->devs) {
		struct ufd_dev *d = u->devs;
		u->devs = d->next;
		ULOG_WARN("%s still attached at close", d->bdf);
		close(d->fd);
		free(d);
	}
	vfio_space_unmap_all(&u->space, &u->kc);
	/* closing the iommufd destroys the IOAS and anything left in it */
	close(u->fd);
	iova_space_fini(&u->space);
	pthread_mutex_unlock(&u->lock);
	pthread_mutex_destroy(&u->lock);
	free(u);
}

static int ufd_map(void *priv, uintptr_t va, size_t npages, size_t pgsz, int prot,
		   const struct iommu_window *lim, uint64_t *iovas)
{
	struct ufd *u = priv;
	int err;

	if ((err = vfio_map_check(va, npages, pgsz, prot, PAGE_4K, "an IOAS mapping")))
		return err;
	pthread_mutex_lock(&u->lock);
	err = vfio_space_map(&u->space, &u->kc, va, npages, pgsz, prot, lim, iovas);
	pthread_mutex_unlock(&u->lock);
	return err;
}

/*
 * IOAS_MAP pins the pages long-term (iommufd/pages.c: pin_user_pages_fast() with FOLL_LONGTERM)
 * when it fills a domain; an IOAS with no device attached has none and pins nothing until the
 * first attach.
 */
static int ufd_pins(void *priv)
{
	struct ufd *u = priv;

	/* without the lock, as vfio_pins() (vfio.c says why) */
	return __atomic_load_n(&u->ndevs, __ATOMIC_ACQUIRE) > 0;
}

static int ufd_unmap(void *priv, uintptr_t va, size_t npages, size_t pgsz, const uint64_t *iovas)
{
	struct ufd *u = priv;
	int err;

	pthread_mutex_lock(&u->lock);
	err = vfio_space_unmap(&u->space, &u->kc, va, (uint64_t)npages * pgsz, iovas[0]);
	pthread_mutex_unlock(&u->lock);
	return err;
}

const struct iommu_ops iommu_iommufd_ops = {
	.name = "iommufd",
	.backend = UBDMA_BACKEND_IOMMUFD,
	.usable = ufd_usable,
	.open = ufd_open,
	.close = ufd_close,
	.map = ufd_map,
	.pins = ufd_pins,
	.unmap = ufd_unmap,
	.attach = ufd_attach,
	.device_fd = ufd_device_fd,
	.detach = ufd_detach,
};
