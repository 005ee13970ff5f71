/*
 * noiommu.c - VFIO's no-IOMMU mode: device files through VFIO, IOVA = physical address.
 *
 * For machines and VMs without an IOMMU, where DPDK and SPDK users run vfio-pci with
 * enable_unsafe_noiommu_mode.  The kernel contract (Documentation/driver-api/vfio.rst, "VFIO
 * no-IOMMU mode", and drivers/vfio/group.c):
 *  - only a kernel built with CONFIG_VFIO_NOIOMMU and with the vfio module parameter
 *    enable_unsafe_noiommu_mode set has it; the container then answers VFIO_CHECK_EXTENSION
 *    (VFIO_NOIOMMU_IOMMU) with 1, and the kernel is tainted when a group is used;
 *  - a device bound to vfio-pci that has no IOMMU gets a group of its own whose file is
 *    /dev/vfio/noiommu-N (N its iommu_group number, as sysfs shows it); opening it needs
 *    CAP_SYS_RAWIO;
 *  - the group joins a container (VFIO_GROUP_SET_CONTAINER) whose IOMMU is set to
 *    VFIO_NOIOMMU_IOMMU, which offers no mapping call at all: the device reaches every byte of
 *    physical memory, and the addresses it must be given are physical ones.
 *
 * So the addresses are those of the phys backend (pagemap.c: hugetlb memory only, because only
 * its frames stay put; anything else is refused with the reason), and devices attach as in
 * vfio.c, minus everything about mappings.  There is no isolation: a device can write anywhere,
 * whatever the cookie said.  AUTO tries it after the backends with an IOMMU.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "base/log.h"
#include "base/page.h"
#include "iommu/iommu.h"
#include "iommu/pagemap.h"
#include "iommu/vfio_common.h"

struct nogroup {
	int num, fd;
	unsigned refs;
	struct nogroup *next;
};

struct noiommu {
	pthread_mutex_t lock; /* groups and set */
	int container, pagemap;
	int set;	      /* VFIO_SET_IOMMU done: a group is in the container */
	struct nogroup *groups;
};

/* Open the container and check that it offers the no-IOMMU model.  0 and *fdp, or errno. */
static int open_container(int *fdp)
{
	int fd, ver;

	if ((fd = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC)) < 0) {
		int err = errno;
		if (err == ENOENT)
			return uerr(ENODEV, "no /dev/vfio/vfio: load vfio-pci");
		return uerr(err, "cannot open /dev/vfio/vfio: %s", strerror(err));
	}
	if ((ver = ioctl(fd, VFIO_GET_API_VERSION)) != VFIO_API_VERSION) {
		close(fd);
		return uerr(ENOTSUP, "VFIO API version %d, this library speaks %d", ver, VFIO_API_VERSION);
	}
	if (ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU) <= 0) {
		close(fd);
		return uerr(ENOTSUP, "VFIO no-IOMMU mode is off: it needs a kernel with "
			    "CONFIG_VFIO_NOIOMMU and the vfio parameter enable_unsafe_noiommu_mode=1 "
			    "(/sys/module/vfio/parameters/enable_unsafe_noiommu_mode)");
	}
	*fdp = fd;
	return 0;
}

/*
 * AUTO picks noiommu when the container offers the no-IOMMU model, pagemap gives frame numbers
 * and hugepages are configured (the phys backend's conditions, for the same reason).
 */
static int noiommu_usable(char *why, size_t whylen)
{
	char p[128];
	unsigned long huge;
	int fd;

	if (access("/dev/vfio/vfio", R_OK | W_OK)) {
		snprintf(why, whylen, "no VFIO no-IOMMU mode (no /dev/vfio/vfio)");
		return 0;
	}
	if (open_container(&fd)) {
		snprintf(why, whylen, "VFIO no-IOMMU mode off (enable_unsafe_noiommu_mode)");
		return 0;
	}
	close(fd);
	if (!pagemap_usable(p, sizeof(p))) {
		snprintf(why, whylen, "VFIO no-IOMMU mode on, but %s", p);
		return 0;
	}
	if (!(huge = pagemap_hugepages_total())) {
		snprintf(why, whylen, "VFIO no-IOMMU mode on, but no hugepages configured");
		return 0;
	}
	snprintf(why, whylen, "VFIO no-IOMMU mode on (no isolation); %s; %lu hugepages configured", p, huge);
	return 1;
}

static int noiommu_open(const struct iommu_sink *sink, void **privp)
{
	/* without an IOMMU the device sees all of physical memory: one window, page 0 excluded */
	static const struct iommu_window all = { PAGE_4K, UINT64_MAX };
	char why[128];
	struct noiommu *n;
	int err;

	if (!pagemap_usable(why, sizeof(why)))
		return uerr(ENODEV, "noiommu backend unusable: %s", why);
	if (!(n = calloc(1, sizeof(*n))))
		return uerr(ENOMEM, "out of memory");
	if ((err = open_container(&n->container))) {
		free(n);
		return err;
	}
	if ((n->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) < 0) {
		err = uerr(errno, "cannot open /proc/self/pagemap: %s", strerror(errno));
		close(n->container);
		free(n);
		return err;
	}
	pthread_mutex_init(&n->lock, NULL);
	sink->windows(sink->arg, &all, 1);
	*privp = n;
	return 0;
}

static void noiommu_close(void *priv)
{
	struct noiommu *n = priv;

	while (n->groups) {
		struct nogroup *g = n->groups;
		n->groups = g->next;
		ULOG_WARN("no-IOMMU group %d still attached at close", g->num);
		close(g->fd);
		free(g);
	}
	close(n->container);
	close(n->pagemap);
	pthread_mutex_destroy(&n->lock);
	free(n);
}

static int noiommu_map(void *priv, uintptr_t va, size_t npages, size_t pgsz, int prot,
		       const struct iommu_window *lim, uint64_t *iovas)
{
	struct noiommu *n = priv;

	(void)prot; /* nothing enforces it: there is no IOMMU */
	return pagemap_translate(n->pagemap, "noiommu", va, npages, pgsz, lim, iovas);
}

/*
 * Put the device's no-IOMMU group into the container (the first one sets the no-IOMMU model), or
 * take one more reference on it.  Return: 0 and *hp; ENOENT when /dev/vfio/noiommu-N does not
 * exist (the device has an IOMMU group: use the vfio or iommufd backend); EPERM without
 * CAP_SYS_RAWIO; EBUSY when the group is held elsewhere; any errno of the VFIO ioctls.
 */
static int noiommu_attach(void *priv, const struct iommu_dev *dev, void **hp)
{
	struct noiommu *n = priv;
	struct nogroup *g;
	char path[64];
	int err;

	pthread_mutex_lock(&n->lock);
	for (g = n->groups; g; g = g->next) {
		if (g->num == dev->group) {
			g->refs++;
			pthread_mutex_unlock(&n->lock);
			*hp = g;
			return 0;
		}
	}
	if (!(g = calloc(1, sizeof(*g)))) {
		pthread_mutex_unlock(&n->lock);
		return uerr(ENOMEM, "out of memory");
	}
	g->num = dev->group;
	g->refs = 1;
	snprintf(path, sizeof(path), "/dev/vfio/noiommu-%d", dev->group);
	if (access(path, F_OK)) {
		err = uerr(ENOENT, "%s has no no-IOMMU group (no %s): it is behind an IOMMU, so use the "
			   "vfio or iommufd backend", dev->bdf, path);
		goto fail_free;
	}
	if ((err = vfio_group_open(path, dev->group, &g->fd))) {
		if (err == EPERM || err == EACCES)
			err = uerr(err, "cannot open %s: VFIO no-IOMMU groups need CAP_SYS_RAWIO", path);
		goto fail_free;
	}
	if (ioctl(g->fd, VFIO_GROUP_SET_CONTAINER, &n->container)) {
		err = uerr(errno, "VFIO_GROUP_SET_CONTAINER for %s failed: %s", path, strerror(errno));
		goto fail_close;
	}
	if (!n->set && ioctl(n->container, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU)) {
		err = uerr(errno, "VFIO_SET_IOMMU(VFIO_NOIOMMU_IOMMU) failed: %s", strerror(errno));
		ioctl(g->fd, VFIO_GROUP_UNSET_CONTAINER);
		goto fail_close;
	}
	n->set = 1;
	g->next = n->groups;
	n->groups = g;
	pthread_mutex_unlock(&n->lock);
	ULOG_INFO("%s: no-IOMMU group %d attached: the device can reach all of memory", dev->bdf, g->num);
	*hp = g;
	return 0;

fail_close:
	close(g->fd);
fail_free:
	free(g);
	pthread_mutex_unlock(&n->lock);
	return err;
}

static int noiommu_device_fd(void *priv, void *h, const char *bdf, int *fdp)
{
	const struct nogroup *g = h;

	(void)priv;
	return vfio_group_device_fd(g->fd, bdf, fdp);
}

/* Drop one reference; the last one takes the group out of the container and closes it. */
static void noiommu_detach(void *priv, void *h)
{
	struct noiommu *n = priv;
	struct nogroup *g = h, **pp;

	pthread_mutex_lock(&n->lock);
	if (--g->refs) {
		pthread_mutex_unlock(&n->lock);
		return;
	}
	for (pp = &n->groups; *pp != g; pp = &(*pp)->next)
		;
	*pp = g->next;
	if (ioctl(g->fd, VFIO_GROUP_UNSET_CONTAINER))
		ULOG_WARN("VFIO_GROUP_UNSET_CONTAINER for no-IOMMU group %d failed: %s", g->num,
			  strerror(errno));
	close(g->fd);
	/* the last group out drops the container's IOMMU model: the next one sets it again */
	if (!n->groups)
		n->set = 0;
	pthread_mutex_unlock(&n->lock);
	free(g);
}

const struct iommu_ops iommu_noiommu_ops = {
	.name = "noiommu",
	.backend = UBDMA_BACKEND_NOIOMMU,
	.caps = IOMMU_CAP_HUGETLB_ONLY,
	.usable = noiommu_usable,
	.open = noiommu_open,
	.close = noiommu_close,
	.map = noiommu_map,
	.attach = noiommu_attach,
	.device_fd = noiommu_device_fd,
	.detach = noiommu_detach,
};
