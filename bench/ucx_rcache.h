/*
 * bench/ucx_rcache.h - UCX's registration cache (Debian libucx 1.13, ucs_rcache_*) set up the way
 * the benches compare it with ubdma's: the peer's miss calls the same registration the ubdma rows
 * make (a reg / dereg pair the bench gives: ubdma_umem_lock() in bench/rcache.c, ibv_reg_mr() in
 * bench/rcache_verbs.c), 4 KiB alignment, libucm's unmap hooks as its monitor, no PFN check, and
 * limits fixed at creation (UCX cannot change them later: ucxb_set_limit() makes a new cache).
 * Header only, included by the benches built with UBDMA_BENCH_UCX.
 */
#ifndef UBDMA_BENCH_UCX_RCACHE_H
#define UBDMA_BENCH_UCX_RCACHE_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <ucm/api/ucm.h>
#include <ucs/memory/rcache.h>

/* The registration under the cache: 0 and *handlep, or an errno. */
typedef int ucxb_reg_fn(void *arg, void *addr, size_t len, void **handlep);
typedef void ucxb_dereg_fn(void *arg, void *handle);

struct ucxb {
	ucxb_reg_fn *reg;
	ucxb_dereg_fn *dereg;
	void *arg;
	const char *what;      /* what a region holds, for UCX's dump */
	ucs_rcache_t *rc;
	unsigned long regs;    /* reg calls: UCX's misses */
	size_t limit;	       /* bytes (0: none), as created */
};

struct ucxb_region {
	ucs_rcache_region_t super;
	void *handle;
};

static ucs_status_t ucxb_mem_reg(void *context, ucs_rcache_t *rcache, void *arg, ucs_rcache_region_t *region,
				 uint16_t flags)
{
	struct ucxb *u = context;
	struct ucxb_region *r = (struct ucxb_region *)region;

	(void)rcache, (void)arg, (void)flags;
	u->regs++;
	return u->reg(u->arg, (void *)region->super.start, region->super.end - region->super.start, &r->handle) ?
		       UCS_ERR_IO_ERROR : UCS_OK;
}

static void ucxb_mem_dereg(void *context, ucs_rcache_t *rcache, ucs_rcache_region_t *region)
{
	struct ucxb *u = context;

	(void)rcache;
	u->dereg(u->arg, ((struct ucxb_region *)region)->handle);
}

static void ucxb_dump(void *context, ucs_rcache_t *rcache, ucs_rcache_region_t *region, char *buf, size_t max)
{
	(void)rcache, (void)region;
	snprintf(buf, max, "%s", ((struct ucxb *)context)->what);
}

static const ucs_rcache_ops_t ucxb_ops = { ucxb_mem_reg, ucxb_mem_dereg, ucxb_dump };

/* Make u's cache with a byte limit (0: none); 0, or -1 with why. */
static inline int ucxb_create(struct ucxb *u, size_t limit, char *why, size_t whylen)
{
	ucs_rcache_params_t p;

	memset(&p, 0, sizeof(p));
	p.region_struct_size = sizeof(struct ucxb_region);
	p.alignment = 4096;
	p.max_alignment = 4096;
	p.ucm_events = UCM_EVENT_VM_UNMAPPED; /* its monitor: the unmap hooks of libucm */
	p.ucm_event_priority = 1000;
	p.ops = &ucxb_ops;
	p.context = u;
	p.flags = UCS_RCACHE_FLAG_NO_PFN_CHECK;
	p.max_regions = limit ? 65536 : ULONG_MAX;
	p.max_size = limit ? limit : SIZE_MAX;
	p.max_unreleased = SIZE_MAX;
	ucs_status_t st = ucs_rcache_create(&p, "bench", NULL, &u->rc);
	if (st != UCS_OK) {
		snprintf(why, whylen, "ucs_rcache_create failed: status %d", (int)st);
		u->rc = NULL;
		return -1;
	}
	u->limit = limit;
	return 0;
}

static inline void ucxb_destroy(struct ucxb *u)
{
	if (u->rc)
		ucs_rcache_destroy(u->rc);
	u->rc = NULL;
}

/* UCX fixes its limits at creation: a new cache (which also drops every region). */
static inline int ucxb_set_limit(struct ucxb *u, size_t limit, char *why, size_t whylen)
{
	ucxb_destroy(u);
	return ucxb_create(u, limit, why, whylen);
}

/* A region covering [addr, addr + len) for read and write: 0 and *regionp, or EIO. */
static inline int ucxb_get(struct ucxb *u, void *addr, size_t len, void **regionp)
{
	return ucs_rcache_get(u->rc, addr, len, PROT_READ | PROT_WRITE, NULL, (ucs_rcache_region_t **)regionp) ==
			       UCS_OK ?
		       0 :
		       EIO;
}

static inline void ucxb_put(struct ucxb *u, void *region)
{
	ucs_rcache_region_put(u->rc, region);
}

/* What the reg call made for the region. */
static inline void *ucxb_handle(void *region)
{
	return ((struct ucxb_region *)region)->handle;
}

#endif
