/*
 * domain.c - the domains a registration cache registers into, behind struct rc_domain: the
 * context's IOMMU (a locked-memory cookie per entry, umem.c), and a registrar the application
 * gives (struct ubdma_registrar: a verbs protection domain, a libfabric domain...).
 *
 * Both wire what they register, so that the process's monitor watches it (a wiring registers its
 * range with the userfaultfd) and an unmap ends it (wire_ticket_alive() turns false); that is
 * what keeps every domain's entries from going stale.  A registrar that pins the pages itself
 * (UBDMA_REGISTRAR_PINS) gets the watch without the lock (wire_watch()): mlock and
 * MADV_DONTFORK would add nothing to its pin but system calls and split mappings.  A registrar's range is the wired one:
 * whole pages, whole hugetlb pages on hugetlb memory.  Release deregisters first and unwires
 * last: the memory stays wired (and watched) until the domain no longer reaches it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "core/ctx.h"
#include "rcache/rcache_int.h"
#include "wire/wire.h"

/* ------------------------------------------------------------ the IOMMU */

static int iommu_reg(struct rcache *rc, uintptr_t lo, uintptr_t hi, int flags, struct rc_key *k)
{
	struct ubdma_umem *u;
	int err = umem_lock(rc->ctx, (void *)lo, hi - lo, flags, NULL, &u);

	if (err)
		return err;
	const struct umem_chunk *last = &u->chunks[u->nchunks - 1];
	u->internal = 1;
	*k = (struct rc_key){ .lo = u->chunks[0].va, .hi = last->va + last->npages * last->pgsz,
			      .key = u, .umem = u, .ticket = u->ticket, .nchunks = u->nchunks };
	return 0;
}

static void iommu_rel(struct rcache *rc, const struct ubdma_registrar *ops, void *arg, const struct rc_key *k)
{
	(void)rc, (void)ops, (void)arg;
	ubdma_umem_unlock(k->umem);
}

/* ------------------------------------------------------------ a registrar */

/* The registrar's refusal: the watch or wiring goes, the error is the registrar's. */
int rc_regr_reg_failed(struct rcache *rc, struct wire_ticket *t, uintptr_t s, uintptr_t e, int err)
{
	wire_release(t);
	err = err < 0 ? -err : err; /* a registrar that answers -errno */
	return uerr(err, "%s registration of [%#lx, %#lx) failed: %s", rc->dom_name, (unsigned long)s,
		    (unsigned long)e, strerror(err));
}

/*
 * rc_regr_reg() where no watch was taken (err: the watch's refusal, ENOTSUP for a registrar that
 * does not pin): what cannot be watched in 4 KiB pages (hugetlb in parts, a regular file) is
 * wired in full, as for any registrar.
 */
int rc_regr_reg_wired(struct rcache *rc, uintptr_t lo, uintptr_t hi, int flags, struct rc_key *k, int err)
{
	struct wire_seg *segs = NULL;
	struct wire_ticket *t = NULL;
	void *key = NULL;
	uintptr_t s, e;
	int nseg = 0;

	if (err == ENOMEM)
		return err; /* out of memory (or of mappings): a full wiring needs more of both */
	err = wire_range((void *)lo, hi - lo, flags & UBDMA_UMEM_WRITE ? UBDMA_WIRE_WRITE : 0, &segs, &nseg, &t);
	if (err)
		return err;
	s = segs[0].start;
	e = segs[nseg - 1].end;
	free(segs);
	if ((err = rc->ops->reg(rc->ops_arg, (void *)s, e - s, flags, &key)))
		return rc_regr_reg_failed(rc, t, s, e, err);
	*k = (struct rc_key){ .lo = s, .hi = e, .key = key, .umem = NULL, .ticket = t, .nchunks = 1 };
	return 0;
}

/* rc_dom_registrar.reg (the miss calls rc_regr_reg() inline) */
static int regr_reg(struct rcache *rc, uintptr_t lo, uintptr_t hi, int flags, struct rc_key *k)
{
	return rc_regr_reg(rc, lo, hi, flags, k);
}

static void regr_rel(struct rcache *rc, const struct ubdma_registrar *ops, void *arg, const struct rc_key *k)
{
	int err = ops->dereg(arg, k->key);

	if (err) {
		/* nothing better to do: the key is the registrar's, and the entry is going */
		__atomic_fetch_add(&rc->dereg_failures, 1, __ATOMIC_RELAXED);
		ULOG(UBDMA_LOG_ERROR, "%s deregistration of [%#lx, %#lx) failed: %s", ops->name ? ops->name : "registrar",
		     (unsigned long)k->lo, (unsigned long)k->hi, strerror(err < 0 ? -err : err));
	}
	wire_release(k->ticket);
}

const struct rc_domain rc_dom_iommu = { .name = "iommu", .reg = iommu_reg, .rel = iommu_rel };
const struct rc_domain rc_dom_registrar = { .name = "registrar", .reg = regr_reg, .rel = regr_rel };

void rc_key_release(struct rcache *rc, const struct rc_key *k)
{
	rc->dom->rel(rc, rc->ops, rc->ops_arg, k);
}
