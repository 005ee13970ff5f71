/*
 * verbs.c - a verbs protection domain as a registration domain of the cache: struct
 * ubdma_registrar over ibv_reg_mr() / ibv_dereg_mr().  Public ubdma API only; the cache does the
 * rest (wiring, monitor, limits, eviction, invalidation).
 *
 * The key of a registration is a small struct holding the memory region, marked so that
 * ubdma_verbs_mr() can tell a verbs registration from another domain's: the cache's key is
 * opaque, and handing a cookie of the IOMMU domain to ibv_post_send() as an MR would be a
 * quiet disaster.
 */
#include <errno.h>
#include <stdlib.h>

#include <ubdma/verbs.h>

#define VKEY_MAGIC 0x75766d72u /* "uvmr" */

struct vkey {
	uint32_t magic;
	struct ibv_mr *mr;
};

/* READ: the device reads the memory (a peer's RDMA READ, our sends); WRITE: it writes it. */
static int access_of(int flags)
{
	int acc = 0;

	if (flags & UBDMA_UMEM_READ)
		acc |= IBV_ACCESS_REMOTE_READ;
	if (flags & UBDMA_UMEM_WRITE)
		acc |= IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
	return acc;
}

static int v_reg(void *arg, void *addr, size_t len, int flags, void **keyp)
{
	struct ibv_pd *pd = arg;
	struct vkey *k = malloc(sizeof(*k));

	if (!k)
		return ENOMEM;
	errno = 0;
	k->mr = ibv_reg_mr(pd, addr, len, access_of(flags));
	if (!k->mr) {
		int err = errno ? errno : EIO;
		free(k);
		/* a provider out of MRs or over the pinned limit says ENOMEM: the cache evicts */
		return err;
	}
	k->magic = VKEY_MAGIC;
	*keyp = k;
	return 0;
}

static int v_dereg(void *arg, void *key)
{
	struct vkey *k = key;
	int err;

	(void)arg;
	err = ibv_dereg_mr(k->mr);
	k->magic = 0;
	free(k);
	return err;
}

/* ibv_reg_mr pins the pages (FOLL_LONGTERM) and fails with EFAULT where it cannot: the cache
 * need only watch the range */
static const struct ubdma_registrar verbs_ops = { .name = "verbs", .reg = v_reg, .dereg = v_dereg,
						  .flags = UBDMA_REGISTRAR_PINS };

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
	const struct vkey *k = ubdma_reg_key(reg);

	/* read as a vkey's mark: the IOMMU domain's key is a cookie, larger than a vkey, that never
	 * holds it (verbs.h asks that other registrars' keys point to memory too) */
	if (!k || k->magic != VKEY_MAGIC) {
		errno = EINVAL;
		return NULL;
	}
	return k->mr;
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
