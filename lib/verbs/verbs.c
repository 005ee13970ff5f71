/*
 * verbs.c - a verbs protection domain as a registration domain of the cache: struct
 * ubdma_registrar over ibv_reg_mr() / ibv_dereg_mr().  Public ubdma API only; the cache does the
 * rest (wiring, monitor, limits, eviction, invalidation).
 *
 * The key of a registration is the struct ibv_mr * itself.  ubdma_verbs_mr() tells a verbs
 * registration from another domain's by the registrar the cache made it through
 * (ubdma_reg_registrar(): ours, or a wrapper's that carries our UBDMA_VERBS_MR_KEYS flag), not by
 * a mark in the key: handing a cookie of the IOMMU domain to ibv_post_send() as an MR would be a
 * quiet disaster, and a marked key of our own cost a miss an allocation (a pool since, with its
 * mutex: 0.3-0.7 us a miss in the guest, docs/rcache.md) for nothing but the mark.
 */
#include <errno.h>
#include <stdlib.h>

#include <ubdma/verbs.h>

static int access_of(int flags)
{
	int acc = 0;

	if (flags & UBDMA_UMEM_READ)
		acc |= IBV_ACCESS_REMOTE_READ;
	if (flags & UBDMA_UMEM_WRITE)
		acc |= IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
	return acc;
}

/*
 * A failed ibv_reg_mr() tried once more with errno cleared first, so that the error returned is
 * the call's own and not a value left in errno by an earlier call (a provider may fail without
 * setting errno: EIO then).  Clearing errno before every call instead cost each miss a call of
 * __errno_location() that a bare ibv_reg_mr() does not make (docs/rcache.md, issue 19); the
 * second attempt is on the failure path only, and a failed ibv_reg_mr() leaves nothing behind.
 */
static __attribute__((noinline, cold)) int v_reg_failed(struct ibv_pd *pd, void *addr, size_t len, int acc,
							 void **keyp)
{
	struct ibv_mr *mr;

	errno = 0;
	mr = ibv_reg_mr(pd, addr, len, acc);
	if (!mr)
		/* a provider out of MRs or over the pinned limit says ENOMEM: the cache evicts */
		return errno ? errno : EIO;
	*keyp = mr;
	return 0;
}

static int v_reg(void *arg, void *addr, size_t len, int flags, void **keyp)
{
	struct ibv_pd *pd = arg;
	struct ibv_mr *mr = ibv_reg_mr(pd, addr, len, access_of(flags));

	if (!mr)
		return v_reg_failed(pd, addr, len, access_of(flags), keyp);
	*keyp = mr;
	return 0;
}

static int v_dereg(void *arg, void *key)
{
	(void)arg;
	return ibv_dereg_mr(key);
}

static const struct ubdma_registrar verbs_ops = { .name = "verbs", .reg = v_reg, .dereg = v_dereg,
						  .flags = UBDMA_REGISTRAR_PINS | UBDMA_VERBS_MR_KEYS };

const struct ubdma_registrar *ubdma_verbs_ops(void)
{
	return &verbs_ops;
}

int ubdma_verbs_registrar(ubdma_ctx_t *ctx, struct ibv_pd *pd)
{
	if (!ctx || !pd)
		return EINVAL;
	return ubdma_rcache_set_registrar(ctx, &verbs_ops, pd);
}

struct ibv_mr *ubdma_verbs_mr(const ubdma_reg_t *reg)
{
	const struct ubdma_registrar *ops = ubdma_reg_registrar(reg);

	if (!ops || !(ops->flags & UBDMA_VERBS_MR_KEYS)) {
		errno = EINVAL;
		return NULL;
	}
	return ubdma_reg_key(reg);
}

uint32_t ubdma_verbs_lkey(const ubdma_reg_t *reg)
{
	struct ibv_mr *mr = ubdma_verbs_mr(reg);

	return mr ? mr->lkey : 0;
}

uint32_t ubdma_verbs_rkey(const ubdma_reg_t *reg)
{
	struct ibv_mr *mr = ubdma_verbs_mr(reg);

	return mr ? mr->rkey : 0;
}
