/*
 * ubdma/verbs.h - the registration cache over verbs memory regions (libubdma_verbs,
 * pkg-config ubdma-verbs).  Not included by <ubdma/ubdma.h>: it needs <infiniband/verbs.h>.
 *
 * HPC codes register buffers with their network card (ibv_reg_mr), and a registration cache is
 * where their worst bugs live (a stale MR after munmap sends RDMA to freed frames).  This makes
 * a context's registration cache register into a verbs protection domain: each cache entry is a
 * memory region, with the lkey and rkey of ubdma_verbs_lkey() / ubdma_verbs_rkey(), and the
 * cache's rules hold (docs/rcache.md, "Domains"): never stale, limits with ibv_dereg_mr() for the
 * evicted, a held entry keeps its MR until put.
 *
 *	ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx);    // no IOMMU needed: the NIC translates
 *	ubdma_verbs_registrar(ctx, pd);
 *	ubdma_reg_get(ctx, buf, len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &reg);
 *	sge.lkey = ubdma_verbs_lkey(reg);           // or send ubdma_verbs_rkey(reg) to a peer
 *	...
 *	ubdma_reg_put(reg);
 *	ubdma_ctx_close(ctx);                       // before ibv_dealloc_pd(pd)
 */
#ifndef UBDMA_VERBS_H
#define UBDMA_VERBS_H

#include <stdint.h>

#include <infiniband/verbs.h>
#include <ubdma/ubdma.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * ubdma_verbs_registrar() - make @ctx's registration cache register with ibv_reg_mr() on @pd.
 * The access flags follow the intent of ubdma_reg_get(): UBDMA_UMEM_READ (the device reads the
 * memory) gives IBV_ACCESS_REMOTE_READ, UBDMA_UMEM_WRITE (the device writes it) gives
 * IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE.  @pd must outlive the context's
 * registrations (close the context, or flush it with nothing held, before ibv_dealloc_pd()).
 *
 * Return: 0; EINVAL for a NULL @ctx or @pd; EBUSY while the cache holds registrations; ENOMEM
 * when the cache cannot be made.
 */
int ubdma_verbs_registrar(ubdma_ctx_t *ctx, struct ibv_pd *pd);

/*
 * The verbs registrar's mark in struct ubdma_registrar.flags (one of UBDMA_REGISTRAR_DOMAIN_FLAGS):
 * its keys are the struct ibv_mr * that ibv_reg_mr() returned.  A wrapper of ubdma_verbs_ops()
 * whose reg and dereg pass the keys through copies the flags (ubdma_verbs_ops()->flags), and the
 * accessors below then serve its registrations too.
 */
#define UBDMA_VERBS_MR_KEYS 0x00010000u

/**
 * ubdma_verbs_ops() - the verbs registrar itself (its arg is the struct ibv_pd *), for a program
 * that wraps it in a registrar of its own (tracing, fault injection) and gives that to
 * ubdma_rcache_set_registrar().  The wrapper keeps the registrar's flags (UBDMA_REGISTRAR_PINS,
 * UBDMA_VERBS_MR_KEYS) and passes its keys through unchanged.
 */
const struct ubdma_registrar *ubdma_verbs_ops(void);

/**
 * ubdma_verbs_mr() - the memory region of a registration made in a verbs domain, valid until
 * ubdma_reg_put(); NULL (errno EINVAL) for NULL or a registration of another domain (the IOMMU's,
 * or a registrar's without UBDMA_VERBS_MR_KEYS: ubdma_reg_registrar() says which).
 */
struct ibv_mr *ubdma_verbs_mr(const ubdma_reg_t *reg);

/**
 * ubdma_verbs_lkey(), ubdma_verbs_rkey() - its local and remote keys; 0 (errno EINVAL) for NULL
 * or a registration of another domain.
 */
uint32_t ubdma_verbs_lkey(const ubdma_reg_t *reg);
uint32_t ubdma_verbs_rkey(const ubdma_reg_t *reg);

#ifdef __cplusplus
}
#endif
#endif /* UBDMA_VERBS_H */
