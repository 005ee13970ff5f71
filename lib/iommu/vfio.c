/*
 * vfio.c - the VFIO type1v2 backend: one container per context, IOVAs from our own allocator.
 *
 * The kernel contract is include/uapi/linux/vfio.h and Documentation/driver-api/vfio.rst:
 *  - a container (/dev/vfio/vfio) speaks API version VFIO_API_VERSION and offers an IOMMU model
 *    through VFIO_CHECK_EXTENSION; we need VFIO_TYPE1v2_IOMMU, whose unmap never splits a mapping;
 *  - VFIO_SET_IOMMU is refused until a group is in the container (VFIO_GROUP_SET_CONTAINER), and
 *    when the last group leaves, the IOMMU and all its mappings go away;
 *  - VFIO_IOMMU_GET_INFO reports the page sizes and, in its capability chain, the usable IOVA
 *    ranges (VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: the aperture minus reserved regions such as the
 *    MSI window) and how many more mappings the container may hold (..._INFO_DMA_AVAIL, the
 *    vfio_iommu_type1 dma_entry_limit parameter, 65535 by default);
 *  - VFIO_IOMMU_MAP_DMA pins the pages and maps [vaddr, vaddr + size) at iova, READ and/or WRITE
 *    from the device's point of view; the pins count in RLIMIT_MEMLOCK (mm->locked_vm) unless
 *    the process has CAP_IPC_LOCK, on top of what mlock(2) counted for memory that is also wired
 *    (the pin is why 4 KiB memory locked with a device attached is only watched: pins());
 *  - VFIO_IOMMU_UNMAP_DMA writes back how much it unmapped, which may be less than asked.
 *
 * A context is opened before any device, yet VFIO_SET_IOMMU needs a group in the container.  So
 * until the first group arrives (vfio_attach(), from ubdma_pci_open()) mappings are only
 * recorded, at IOVAs chosen inside conservative default windows; the first attach sets the IOMMU,
 * reads the real windows (reported through the sink) and replays the records.  Later groups join
 * the same container and see the same mappings.  When the last group leaves, the kernel drops the
 * IOMMU and its mappings, and the backend returns to recording (the next attach replays).
 *
 * Every map() is one MAP_DMA over one contiguous IOVA range, so a registration costs one of the
 * container's dma_entry_limit entries whatever its size.  Adjacent registrations are not merged
 * in the kernel: type1v2 cannot unmap part of a mapping, so a merged entry could only be split
 * again by unmapping it whole while the device may be using the other part.  Merging belongs to
 * the callers that can see lifetimes (the registration cache); docs/vfio.md has the details.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/log.h"
#include "base/page.h"
#include "iommu/iommu.h"
#include "iommu/iova_alloc.h"
#include "base/sysfs.h"
#include "iommu/vfio_common.h"

/* The kernel's default dma_entry_limit, assumed until DMA_AVAIL is read (kernels >= 5.10). */
#define DEFAULT_ENTRY_LIMIT 65535u

struct vfio_group {
	int num, fd;
	unsigned refs;
	struct vfio_group *next;
};

/*
 * fork(2): the lock has no atfork handler, by design.  It is the context's own and may be held
 * across an ioctl when another thread forks; the child never takes it, because it must not use
 * or close its parent's context: the container file is shared with the parent, so the child's
 * calls would change the parent's IOMMU mappings (and its copy of the IOVA records would go
 * stale at once).  A context the child opens has a container and a lock of its own.  The
 * backend keeps no process-wide state (no registry of containers or groups).
 */
struct vfio {
	struct iommu_sink sink;	  /* where the windows go, each time they change (under lock) */
	pthread_mutex_t lock;	  /* everything below; held across the ioctls */
	int container;
	int live;		  /* the IOMMU is set: the records are mapped in the kernel (stored
				   * atomically: vfio_pins() reads it without the lock) */
	struct vfio_group *groups;
	struct iova_space space;  /* windows and records: IOVA, size, VA, prot of every mapping */
	struct vfio_kcalls kc;	  /* map_dma / unmap_dma on this container, for the bookkeeping */
	uint64_t pgsizes;	  /* iova_pgsizes of the IOMMU (4 KiB until known) */
	uint32_t limit;		  /* mapping entries the container may hold */
	size_t nentries;	  /* records that hold (or will hold at replay) a kernel entry */
};

/*
 * AUTO picks vfio when the container device is there and an IOMMU exists; whether the container
 * offers type1v2 is open's test.  Without an IOMMU (a VM with no virtual IOMMU, where VFIO runs
 * only in no-IOMMU mode) type1 has no group to attach, so AUTO passes over it.
 */
static int vfio_usable(char *why, size_t whylen)
{
	if (access("/dev/vfio/vfio", R_OK | W_OK)) {
		snprintf(why, whylen, "no /dev/vfio/vfio (no VFIO in this kernel)");
		return 0;
	}
	if (!vfio_have_iommu()) {
		snprintf(why, whylen, "/dev/vfio/vfio exists, but no IOMMU (/sys/class/iommu is empty)");
		return 0;
	}
	snprintf(why, whylen, "/dev/vfio/vfio exists");
	return 1;
}

/* ---------------------------------------------------------------- kernel calls */

static int map_dma(void *arg, uintptr_t va, uint64_t iova, uint64_t size, uint32_t prot)
{
	struct vfio *v = arg;
	struct vfio_iommu_type1_dma_map m = {
		.argsz = sizeof(m),
		.flags = (prot & IOMMU_PROT_READ ? VFIO_DMA_MAP_FLAG_READ : 0) |
			 (prot & IOMMU_PROT_WRITE ? VFIO_DMA_MAP_FLAG_WRITE : 0),
		.vaddr = va,
		.iova = iova,
		.size = size,
	};
	struct rlimit rl = { 0, 0 };

	if (ioctl(v->container, VFIO_IOMMU_MAP_DMA, &m) == 0)
		return 0;
	switch (errno) {
	case ENOMEM:
	case EPERM:
		getrlimit(RLIMIT_MEMLOCK, &rl);
		return uerr(ENOMEM,
			    "VFIO_IOMMU_MAP_DMA of %llu bytes at %p failed: VFIO pins the pages and counts "
			    "them in RLIMIT_MEMLOCK (%llu bytes), beside what mlock counts (memory locked "
			    "before a device was attached, and hugetlb memory not on its pages' bounds, is also "
			    "wired, so it counts twice); raise the limit (ulimit -l, limits.conf memlock) or grant "
			    "CAP_IPC_LOCK",
			    (unsigned long long)size, (void *)va, (unsigned long long)rl.rlim_cur);
	case ENOSPC:
		return uerr(ENOSPC,
			    "VFIO_IOMMU_MAP_DMA: the container holds its maximum number of mappings "
			    "(vfio_iommu_type1 dma_entry_limit); register larger ranges or raise the "
			    "module parameter");
	default:
		return uerr(errno, "VFIO_IOMMU_MAP_DMA of %llu bytes at %p to IOVA %#llx failed: %s",
			    (unsigned long long)size, (void *)va, (unsigned long long)iova,
			    strerror(errno));
	}
}

/* Unmap [iova, iova + size); *done receives what the kernel says it unmapped. */
static int unmap_dma(void *arg, uint64_t iova, uint64_t size, uint64_t *done)
{
	struct vfio *v = arg;
	struct vfio_iommu_type1_dma_unmap u = { .argsz = sizeof(u), .iova = iova, .size = size };

	*done = 0;
	if (ioctl(v->container, VFIO_IOMMU_UNMAP_DMA, &u))
		return errno;
	*done = u.size;
	return 0;
}

/* Keep the IOVA_RANGE capability's ranges (at most IOMMU_MAX_WINDOWS, the largest). */
static int take_ranges(const struct vfio_iommu_type1_info_cap_iova_range *cap, size_t room,
		       struct iommu_window *w)
{
	size_t n = cap->nr_iovas;
	struct iommu_window *r;
	int kept;

	if (sizeof(*cap) + n * sizeof(cap->iova_ranges[0]) > room)
		return 0;
	if (!(r = malloc(n * sizeof(*r) + 1)))
		return 0;
	for (size_t i = 0; i < n; i++)
		r[i] = (struct iommu_window){ cap->iova_ranges[i].start, cap->iova_ranges[i].end };
	kept = vfio_keep_largest(r, n, "the IOMMU");
	memcpy(w, r, (size_t)kept * sizeof(*w));
	free(r);
	return kept;
}

struct vfio_info {
	struct iommu_window win[IOMMU_MAX_WINDOWS];
	int nwin;	   /* 0: no IOVA_RANGE capability (kernel < 5.4) */
	uint64_t pgsizes;
	uint32_t avail;
	int have_avail;	   /* DMA_AVAIL capability present (kernel >= 5.10) */
};

/*
 * VFIO_IOMMU_GET_INFO with its capability chain: the kernel raises argsz when the chain does
 * not fit, so ask again with that size; cap_offset and each header's next are offsets from the
 * start of the info structure, 0 ending the chain.
 */
static int read_info(struct vfio *v, struct vfio_info *out)
{
	uint32_t argsz = sizeof(struct vfio_iommu_type1_info);
	struct vfio_iommu_type1_info *info = NULL;

	memset(out, 0, sizeof(*out));
	for (int tries = 0; tries < 4; tries++) {
		free(info);
		if (!(info = calloc(1, argsz)))
			return uerr(ENOMEM, "out of memory");
		info->argsz = argsz;
		if (ioctl(v->container, VFIO_IOMMU_GET_INFO, info)) {
			int err = errno;
			free(info);
			return uerr(err, "VFIO_IOMMU_GET_INFO failed: %s", strerror(err));
		}
		if (info->argsz <= argsz)
			break;
		argsz = info->argsz;
	}
	out->pgsizes = info->flags & VFIO_IOMMU_INFO_PGSIZES ? info->iova_pgsizes : PAGE_4K;
	uint32_t off = info->flags & VFIO_IOMMU_INFO_CAPS ? info->cap_offset : 0;
	for (int hops = 0; off && hops < 64; hops++) {
		if (off < sizeof(*info) || off > argsz - sizeof(struct vfio_info_cap_header))
			break;
		const struct vfio_info_cap_header *h = (const void *)((const char *)info + off);
		if (h->id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE)
			out->nwin = take_ranges((const void *)h, argsz - off, out->win);
		else if (h->id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL &&
			 off + sizeof(struct vfio_iommu_type1_info_dma_avail) <= argsz) {
			out->avail = ((const struct vfio_iommu_type1_info_dma_avail *)h)->avail;
			out->have_avail = 1;
		}
		off = h->next;
	}
	free(info);
	return 0;
}

/* ---------------------------------------------------------------- attach / replay */

/* Report the windows to the owner; caller holds v->lock (or owns v alone, at open). */
static void publish_windows(struct vfio *v)
{
	v->sink.windows(v->sink.arg, v->space.win, v->space.nwin);
}

/* Adopt the windows, page sizes and entry limit of the IOMMU (after SET_IOMMU or a new group). */
static int adopt_info(struct vfio *v, const struct vfio_info *in, size_t live_entries)
{
	if (in->nwin && iova_space_set_windows(&v->space, in->win, in->nwin)) {
		for (size_t i = 0; i < v->space.n; i++) {
			const struct iova_rec *r = &v->space.rec[i];
			int ok = 0;
			for (int w = 0; w < in->nwin; w++)
				ok |= r->lo >= in->win[w].lo && r->lo + r->size - 1 <= in->win[w].hi;
			if (!ok)
				return uerr(ERANGE,
					    "memory registered before the device was opened sits at IOVA "
					    "[%#llx, +%#llx), outside the usable IOVA ranges of its IOMMU; "
					    "open the device first, or unlock that memory",
					    (unsigned long long)r->lo, (unsigned long long)r->size);
		}
		return uerr(ERANGE, "the IOMMU's IOVA ranges exclude memory registered before");
	}
	if (in->have_avail) {
		uint64_t lim = (uint64_t)in->avail + live_entries;
		v->limit = lim > UINT32_MAX ? UINT32_MAX : (uint32_t)lim;
	}
	v->pgsizes = in->pgsizes;
	publish_windows(v);
	return 0;
}

/* Undo the replay of records [0, n). */
static void unreplay(struct vfio *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t done;
		if (!(v->space.rec[i].flags & VFIO_REC_POISON))
			unmap_dma(v, v->space.rec[i].lo, v->space.rec[i].size, &done);
	}
}

/* The first group is in the container: set the IOMMU type, read its limits, replay the records. */
static int go_live(struct vfio *v)
{
	struct iova_space saved = v->space;
	uint32_t saved_limit = v->limit;
	uint64_t saved_pgsizes = v->pgsizes;
	struct vfio_info in;
	int err;

	if (ioctl(v->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		return uerr(errno, "VFIO_SET_IOMMU(VFIO_TYPE1v2_IOMMU) failed: %s", strerror(errno));
	if ((err = read_info(v, &in)))
		return err;
	if ((err = adopt_info(v, &in, 0)))
		return err;
	if (v->nentries > v->limit) {
		err = uerr(ENOSPC,
			   "%zu mappings were made before the device was opened, more than the "
			   "IOMMU's %u entries (vfio_iommu_type1 dma_entry_limit)",
			   v->nentries, v->limit);
		goto restore;
	}
	for (size_t i = 0; i < v->space.n; i++) {
		const struct iova_rec *r = &v->space.rec[i];
		if ((err = map_dma(v, r->va, r->lo, r->size, r->flags & 3))) {
			unreplay(v, i);
			goto restore;
		}
	}
	ULOG_INFO("container %d live: %zu mappings replayed, %d IOVA windows, %u entries",
		  v->container, v->space.n, v->space.nwin, v->limit);
	__atomic_store_n(&v->live, 1, __ATOMIC_RELEASE);
	return 0;

restore:
	/* the caller's UNSET_CONTAINER drops the IOMMU; the records are unchanged */
	memcpy(v->space.win, saved.win, sizeof(saved.win));
	v->space.nwin = saved.nwin;
	v->limit = saved_limit;
	v->pgsizes = saved_pgsizes;
	publish_windows(v);
	return err;
}

static int open_group(int num, int *fdp)
{
	char path[64];

	snprintf(path, sizeof(path), "/dev/vfio/%d", num);
	return vfio_group_open(path, num, fdp);
}

/*
 * Attach the device's IOMMU group to the container, or take one more reference on it when it is
 * attached already.  The first group sets the IOMMU type (type1v2), reads the usable IOVA
 * windows and replays the mappings made so far.
 * Return: 0 and *hp; ENOENT when /dev/vfio/<group> does not exist; EBUSY when the group is not
 * viable (a device of the group is bound to a host driver) or is held by another container or
 * process; EACCES / EPERM when it cannot be opened; ERANGE when a mapping made before the attach
 * lies outside the group's usable IOVA ranges; ENOSPC when the mappings made before the attach
 * exceed the IOMMU's mapping entry limit; any errno of the VFIO ioctls.  The reason is in
 * ubdma_last_error().  On failure the group is not attached and the container is as before.
 */
static int vfio_attach(void *priv, const struct iommu_dev *dev, void **hp)
{
	struct vfio *v = priv;
	struct vfio_group *g;
	int num = dev->group, err;

	pthread_mutex_lock(&v->lock);
	for (g = v->groups; g; g = g->next) {
		if (g->num == num) {
			g->refs++;
			pthread_mutex_unlock(&v->lock);
			*hp = g;
			return 0;
		}
	}
	if (!(g = calloc(1, sizeof(*g)))) {
		pthread_mutex_unlock(&v->lock);
		return uerr(ENOMEM, "out of memory");
	}
	g->num = num;
	g->refs = 1;
	if ((err = open_group(num, &g->fd)))
		goto fail_free;
	if (ioctl(g->fd, VFIO_GROUP_SET_CONTAINER, &v->container)) {
		err = uerr(errno, "VFIO_GROUP_SET_CONTAINER for group %d failed: %s%s", num,
			   strerror(errno),
			   v->live ? " (the group cannot share this container's IOMMU domain, or its "
				     "reserved ranges collide with existing mappings)" : "");
		goto fail_close;
	}
	if (!v->live) {
		err = go_live(v);
	} else {
		/* a new group can only narrow the windows; the kernel refused conflicts already */
		struct vfio_info in;
		if (!(err = read_info(v, &in)))
			err = adopt_info(v, &in, v->nentries);
	}
	if (err) {
		ioctl(g->fd, VFIO_GROUP_UNSET_CONTAINER);
		goto fail_close;
	}
	g->next = v->groups;
	v->groups = g;
	pthread_mutex_unlock(&v->lock);
	*hp = g;
	return 0;

fail_close:
	close(g->fd);
fail_free:
	free(g);
	pthread_mutex_unlock(&v->lock);
	return err;
}

/* The IOMMU went away with the last group: poisoned records have nothing left to unmap. */
static void go_offline(struct vfio *v)
{
	__atomic_store_n(&v->live, 0, __ATOMIC_RELEASE);
	for (size_t i = v->space.n; i-- > 0;) {
		if (v->space.rec[i].flags & VFIO_REC_POISON) {
			iova_free_rec(&v->space, &v->space.rec[i]);
			v->nentries--;
		}
	}
}

/* Drop one reference; the last one detaches the group from the container and closes it. */
static void vfio_detach(void *priv, void *h)
{
	struct vfio *v = priv;
	struct vfio_group *g = h, **pp;

	pthread_mutex_lock(&v->lock);
	if (--g->refs) {
		pthread_mutex_unlock(&v->lock);
		return;
	}
	for (pp = &v->groups; *pp != g; pp = &(*pp)->next)
		;
	*pp = g->next;
	if (ioctl(g->fd, VFIO_GROUP_UNSET_CONTAINER))
		ULOG_WARN("VFIO_GROUP_UNSET_CONTAINER for group %d failed: %s", g->num, strerror(errno));
	close(g->fd);
	if (!v->groups && v->live)
		go_offline(v);
	pthread_mutex_unlock(&v->lock);
	free(g);
}

/* The device file: VFIO_GROUP_GET_DEVICE_FD on its group's file, by PCI address. */
static int vfio_device_fd(void *priv, void *h, const char *bdf, int *fdp)
{
	const struct vfio_group *g = h;

	(void)priv;
	return vfio_group_device_fd(g->fd, bdf, fdp);
}

/* ---------------------------------------------------------------- ops */

static int vfio_open(const struct iommu_sink *sink, void **privp)
{
	struct vfio *v;
	int err, ver, ext;

	if (!(v = calloc(1, sizeof(*v))))
		return uerr(ENOMEM, "out of memory");
	if ((v->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC)) < 0) {
		err = errno;
		free(v);
		if (err == ENOENT)
			return uerr(ENODEV, "no /dev/vfio/vfio: load the vfio and vfio_iommu_type1 "
				    "modules (modprobe vfio-pci)");
		return uerr(err, "cannot open /dev/vfio/vfio: %s", strerror(err));
	}
	if ((ver = ioctl(v->container, VFIO_GET_API_VERSION)) != VFIO_API_VERSION) {
		err = uerr(ENOTSUP, "VFIO API version %d, this library speaks %d", ver, VFIO_API_VERSION);
		goto fail;
	}
	if ((ext = ioctl(v->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU)) <= 0) {
		err = uerr(ENOTSUP, "the VFIO container offers no type1v2 IOMMU (modprobe "
			   "vfio_iommu_type1)");
		goto fail;
	}
	pthread_mutex_init(&v->lock, NULL);
	v->sink = *sink;
	v->pgsizes = PAGE_4K;
	v->limit = DEFAULT_ENTRY_LIMIT;
	v->kc = (struct vfio_kcalls){ v, "VFIO_IOMMU_UNMAP_DMA", map_dma, unmap_dma };
	iova_space_init(&v->space, vfio_default_windows, VFIO_NDEFAULT_WINDOWS);
	if ((err = vfio_space_holes(&v->space, SYSFS_PCI_DEVICES))) { /* no IOVA on device MMIO */
		iova_space_fini(&v->space);
		pthread_mutex_destroy(&v->lock);
		goto fail;
	}
	publish_windows(v);
	*privp = v;
	return 0;

fail:
	close(v->container);
	free(v);
	return err;
}

static void vfio_close(void *priv)
{
	struct vfio *v = priv;

	pthread_mutex_lock(&v->lock);
	if (v->live)
		vfio_space_unmap_all(&v->space, &v->kc);
	/* groups are normally gone (the pci layer closes its devices first); closing one detaches it */
	while (v->groups) {
		struct vfio_group *g = v->groups;
		v->groups = g->next;
		ULOG_WARN("IOMMU group %d still attached at close", g->num);
		ioctl(g->fd, VFIO_GROUP_UNSET_CONTAINER);
		close(g->fd);
		free(g);
	}
	close(v->container);
	iova_space_fini(&v->space);
	pthread_mutex_unlock(&v->lock);
	pthread_mutex_destroy(&v->lock);
	free(v);
}

static int vfio_map(void *priv, uintptr_t va, size_t npages, size_t pgsz, int prot,
		    const struct iommu_window *lim, uint64_t *iovas)
{
	struct vfio *v = priv;
	int err;

	pthread_mutex_lock(&v->lock);
	if ((err = vfio_map_check(va, npages, pgsz, prot, v->pgsizes ? v->pgsizes & -v->pgsizes : PAGE_4K,
				  "a VFIO mapping"))) {
		pthread_mutex_unlock(&v->lock);
		return err;
	}
	if (v->nentries >= v->limit) {
		pthread_mutex_unlock(&v->lock);
		return uerr(ENOSPC,
			    "all %u mapping entries of the VFIO container are in use "
			    "(vfio_iommu_type1 dma_entry_limit): register fewer, larger ranges, or "
			    "raise the module parameter", v->limit);
	}
	/* until the first group makes the IOMMU live, the mapping is only recorded (replayed then) */
	if (!(err = vfio_space_map(&v->space, v->live ? &v->kc : NULL, va, npages, pgsz, prot, lim, iovas)))
		v->nentries++;
	pthread_mutex_unlock(&v->lock);
	return err;
}

/*
 * MAP_DMA pins each page with a long-term pin (vfio_iommu_type1.c, vaddr_get_pfns(): FOLL_LONGTERM,
 * and FOLL_WRITE for a writable mapping) while the IOMMU is set; before the first group (or after
 * the last) a map is only recorded and pins nothing until the replay.
 */
static int vfio_pins(void *priv)
{
	struct vfio *v = priv;

	/* without the lock (issue 21: a watched lock's round trips are dear under TCG): the answer
	 * is a snapshot either way, which an attach or detach may change as soon as the lock is
	 * dropped; umem_lock() takes what it finds (docs/wire.md section 13, "When devices come
	 * and go") */
	return __atomic_load_n(&v->live, __ATOMIC_ACQUIRE);
}

static int vfio_unmap(void *priv, uintptr_t va, size_t npages, size_t pgsz, const uint64_t *iovas)
{
	struct vfio *v = priv;
	int err;

	pthread_mutex_lock(&v->lock);
	if (!(err = vfio_space_unmap(&v->space, v->live ? &v->kc : NULL, va, (uint64_t)npages * pgsz, iovas[0])))
		v->nentries--;
	pthread_mutex_unlock(&v->lock);
	return err;
}

const struct iommu_ops iommu_vfio_ops = {
	.name = "vfio",
	.backend = UBDMA_BACKEND_VFIO,
	.usable = vfio_usable,
	.open = vfio_open,
	.close = vfio_close,
	.map = vfio_map,
	.pins = vfio_pins,
	.unmap = vfio_unmap,
	.attach = vfio_attach,
	.device_fd = vfio_device_fd,
	.detach = vfio_detach,
};
