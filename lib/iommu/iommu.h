/*
 * iommu.h - the one interface between the library and the backends that turn wired VA ranges
 * into IOVAs, in the manner of FreeBSD's struct bus_dma_impl and libvfn's struct iommu_ctx_ops.
 *
 * A backend is a const struct iommu_ops in a file of its own in lib/iommu, listed in the table
 * of backend.c; nothing outside lib/iommu names one.  Callers hold a struct iommu (ops and the
 * backend's private state) and go through the iommu_*() functions below.  What differs between
 * backends and matters above is said by capabilities (IOMMU_CAP_*), never by asking which
 * backend it is.
 *
 * A backend maps memory that the caller has already wired.  map() either maps the whole range
 * or nothing (all or nothing is the backend's job); unmap() of what map() returned never fails
 * silently: a partial unmap is reported.  The IOVA windows a backend allows are not its to
 * publish: it reports them through the sink it was opened with, whenever they change, and the
 * owner (the context) keeps the copy that readers see.
 */
#ifndef UBDMA_IOMMU_H
#define UBDMA_IOMMU_H

#include <stddef.h>
#include <stdint.h>

#include <ubdma/core.h>

/* An inclusive IOVA range. */
struct iommu_window {
	uint64_t lo, hi;
};

#define IOMMU_MAX_WINDOWS 8

#define IOMMU_PROT_READ 0x1  /* the device reads */
#define IOMMU_PROT_WRITE 0x2 /* the device writes */

/*
 * Capabilities: what the layers above must do differently on a backend.
 * IOVA_IS_VA    the IOVA of a byte is its virtual address, so memory that must have IOVAs in a
 *               window must be mapped at virtual addresses in that window.
 * HUGETLB_ONLY  only hugetlb memory can be mapped (its address is stable); memory the library
 *               makes for devices must be hugetlb, and there is no falling back to 4 KiB pages.
 * DEVICES       devices can be attached (attach, device_fd and detach are set).
 */
#define IOMMU_CAP_IOVA_IS_VA 0x1u
#define IOMMU_CAP_HUGETLB_ONLY 0x2u
#define IOMMU_CAP_DEVICES 0x4u

/*
 * Where a backend reports the IOVA windows it allows: at open, and again each time they change
 * (a device's IOMMU narrows them).  Called with the backend's own lock held, if it has one, so
 * that reports reach the owner in the order the windows changed; the owner must not call back
 * into the backend from it.  n is at most IOMMU_MAX_WINDOWS.
 */
struct iommu_sink {
	void (*windows)(void *arg, const struct iommu_window *w, int n);
	void *arg;
};

/* A device to attach, as the pci layer found it in sysfs. */
struct iommu_dev {
	const char *bdf;	/* "dddd:bb:dd.f" */
	int group;		/* its IOMMU group number (the iommu_group link) */
};

struct iommu_ops {
	const char *name;
	enum ubdma_backend backend; /* the public name users ask for it by */
	unsigned caps;		    /* IOMMU_CAP_*; DEVICES is implied by attach */
	/*
	 * Whether AUTO may pick the backend on this machine.  Writes one clause on why (or why
	 * not) to why, "" when there is nothing to say.  Return: 1 usable, 0 not.
	 */
	int (*usable)(char *why, size_t whylen);
	/* Set up; report the windows through sink (kept until close).  0 or errno. */
	int (*open)(const struct iommu_sink *sink, void **privp);
	void (*close)(void *priv);
	/*
	 * Map wired [va, va + npages * pgsz) (va aligned to pgsz, pgsz the mapping's page size) for
	 * the device with prot; write the IOVA of page i to iovas[i].  When lim is not NULL every
	 * IOVA must lie inside it (ERANGE if the backend cannot choose).  0 or errno; on error nothing
	 * is mapped.
	 */
	int (*map)(void *priv, uintptr_t va, size_t npages, size_t pgsz, int prot,
		   const struct iommu_window *lim, uint64_t *iovas);
	/*
	 * 1 when a map() made now pins the pages itself for as long as they stay mapped (a long-term
	 * pin, FOLL_LONGTERM: VFIO type1's MAP_DMA and iommufd's IOAS_MAP once a device's IOMMU
	 * domain exists), so the caller need not lock them (docs/wire.md section 13).  May change
	 * when devices come and go.  NULL: never (the pages must be wired).
	 */
	int (*pins)(void *priv);
	/* Undo one successful map() with the same arguments; of a linear range (iovas[i] =
	 * iovas[0] + i * pgsz) only iovas[0] may be read.  0 or errno (logged by the caller).
	 * NULL for backends that map nothing. */
	int (*unmap)(void *priv, uintptr_t va, size_t npages, size_t pgsz, const uint64_t *iovas);
	/*
	 * Put dev's IOMMU isolation unit into this domain (or take one more reference on it); may
	 * narrow the windows (reported through the sink before it returns).  0 and *hp, or errno
	 * with the domain as before.  NULL for backends without devices.
	 */
	int (*attach)(void *priv, const struct iommu_dev *dev, void **hp);
	/* The device file of bdf, attached as h: 0 and *fdp (the caller closes it before detach). */
	int (*device_fd)(void *priv, void *h, const char *bdf, int *fdp);
	/* Drop what one successful attach() took. */
	void (*detach)(void *priv, void *h);
};

/* An open backend. */
struct iommu {
	const struct iommu_ops *ops;
	void *priv;
};

/*
 * Open the backend asked for; UBDMA_BACKEND_AUTO tries the table's backends in order (vfio,
 * phys, va), skipping those that are not usable here and stepping down to the next when one
 * fails to open.  Writes why this backend to reason ("<name>: ...").  Before each try the sink
 * hears an empty set of windows, so a failed try leaves none behind.
 * Return: 0; EINVAL for an unknown backend; the open's errno when the backend asked for by name
 * (or, for AUTO, the last one) fails.
 */
int iommu_open(struct iommu *io, enum ubdma_backend want, const struct iommu_sink *sink, char *reason,
	       size_t reasonlen);

/* Open one given backend, table or not (the tests' own backends).  0 or the open's errno. */
int iommu_open_ops(struct iommu *io, const struct iommu_ops *ops, const struct iommu_sink *sink);

void iommu_close(struct iommu *io);

static inline const char *iommu_name(const struct iommu *io)
{
	return io->ops->name;
}

static inline enum ubdma_backend iommu_backend(const struct iommu *io)
{
	return io->ops->backend;
}

static inline unsigned iommu_caps(const struct iommu *io)
{
	return io->ops->caps | (io->ops->attach ? IOMMU_CAP_DEVICES : 0);
}

static inline int iommu_map(const struct iommu *io, uintptr_t va, size_t npages, size_t pgsz, int prot,
			    const struct iommu_window *lim, uint64_t *iovas)
{
	return io->ops->map(io->priv, va, npages, pgsz, prot, lim, iovas);
}

/* Whether a map() made now pins the pages itself (ops->pins). */
static inline int iommu_pins(const struct iommu *io)
{
	return io->ops->pins ? io->ops->pins(io->priv) : 0;
}

/* Whether a map() leaves anything to undo: 0 when the backend maps nothing anywhere. */
static inline int iommu_has_unmap(const struct iommu *io)
{
	return io->ops->unmap != NULL;
}

static inline int iommu_unmap(const struct iommu *io, uintptr_t va, size_t npages, size_t pgsz,
			      const uint64_t *iovas)
{
	return io->ops->unmap ? io->ops->unmap(io->priv, va, npages, pgsz, iovas) : 0;
}

/*
 * Attach a device (ops->attach).  Return: 0 and *hp; ENOTSUP when the backend has no devices;
 * else the backend's errno, the reason in ubdma_last_error().
 */
int iommu_attach(const struct iommu *io, const struct iommu_dev *dev, void **hp);
/* The names of the backends that attach devices, ", "-separated, for messages. */
void iommu_device_backends(char *names, size_t len);
int iommu_device_fd(const struct iommu *io, void *h, const char *bdf, int *fdp);
void iommu_detach(const struct iommu *io, void *h);

#endif
