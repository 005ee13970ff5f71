/*
 * verbs.c - a verbs protection domain as a registration domain of the cache: struct
 * ubdma_registrar over ibv_reg_mr() / ibv_dereg_mr().  Public ubdma API only; the cache does the
 * rest (wiring, monitor, limits, eviction, invalidation).
 *
 * The key of a registration is a small struct holding the memory region, marked so that
 * ubdma_verbs_mr() can tell a verbs registration from another domain's: the cache's key is
 * opaque, and handing a cookie of the IOMMU domain to ibv_post_send() as an MR would be a
 * quiet disaster.
 *
 * The keys come from a pool of slabs that lives as long as the process, not from malloc per
 * miss: in the guest a miss through this registrar cost 0.75-1.9 us more than through one whose
 * key is the MR itself (bench_rcache_verbs, row miss_registrar; docs/rcache.md), most of it
 * malloc's slow path on a heap that frees nothing while misses run.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include <ubdma/verbs.h>

#define VKEY_MAGIC 0x75766d72u /* "uvmr" */

struct vkey {
	uint32_t magic;
	struct ibv_mr *mr;
	struct vkey *next; /* in the pool's free list */
};

#define VKEY_SLAB 64

/* one pool for every protection domain: the keys are plain memory, and a registrar serves any
 * number of contexts, whose misses and releases run on any thread */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vkey *pool_free;

static struct vkey *vkey_get(void)
{
	struct vkey *k;

	pthread_mutex_lock(&pool_lock);
	if (!pool_free) {
		/* a slab is never returned: it is reached from the free list or from a live key */
		struct vkey *slab = malloc(VKEY_SLAB * sizeof(*slab));
		if (!slab) {
			pthread_mutex_unlock(&pool_lock);
			return NULL;
		}
		for (int i = 0; i < VKEY_SLAB; i++) {
			slab[i].magic = 0;
			slab[i].next = i + 1 < VKEY_SLAB ? &slab[i + 1] : NULL;
		}
		pool_free = slab;
	}
	k = pool_free;
	pool_free = k->next;
	pthread_mutex_unlock(&pool_lock);
	return k;
}

static void vkey_put(struct vkey *k)
{
	k->magic = 0;
	pthread_mutex_lock(&pool_lock);
	k->next = pool_free;
	pool_free = k;
	pthread_mutex_unlock(&pool_lock);
}

/* a fork while another thread holds the pool would leave the child's pool locked for good */
static void pool_prepare(void)
{
	pthread_mutex_lock(&pool_lock);
}

static void pool_resume(void)
{
	pthread_mutex_unlock(&pool_lock);
}

__attribute__((constructor)) static void pool_init(void)
{
	pthread_atfork(pool_prepare, pool_resume, pool_resume);
}

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
	struct vkey *k = vkey_get();

	if (!k)
		return ENOMEM;
	errno = 0;
	k->mr = ibv_reg_mr(pd, addr, len, access_of(flags));
	if (!k->mr) {
		int err = errno ? errno : EIO;
		vkey_put(k);
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
	vkey_put(k);
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
