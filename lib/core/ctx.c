/*
 * ctx.c - contexts: opening one on a backend (lib/iommu chooses and opens it), the windows the
 * backend reports, the layers above (their open, settle and fini hooks, in the order of ctx.h),
 * and tearing everything down.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "core/ctx.h"

/* The layers above, indexed by enum ctx_layer_id: ubdma_ctx_close() runs their fini in this order. */
static const struct ctx_layer *const layers[CTX_NLAYERS] = {
	[CTX_LAYER_PCI] = &pci_layer,
	[CTX_LAYER_RCACHE] = &rcache_layer,
	[CTX_LAYER_BUSDMA] = &busdma_layer,
};

/* The sentence itself is lib/base's (uerr()); this is its public door. */
const char *ubdma_last_error(void)
{
	return uerr_last();
}

/* The backend's sink: keep its windows for ctx_windows(). */
static void windows_report(void *arg, const struct iommu_window *w, int n)
{
	struct ubdma_ctx *ctx = arg;

	if (n > IOMMU_MAX_WINDOWS)
		n = IOMMU_MAX_WINDOWS;
	pthread_mutex_lock(&ctx->win_lock);
	if (n > 0)
		memcpy(ctx->windows, w, (size_t)n * sizeof(*w));
	ctx->nwindows = n > 0 ? n : 0;
	pthread_mutex_unlock(&ctx->win_lock);
}

int ctx_windows(const struct ubdma_ctx *ctx, struct iommu_window *w)
{
	/* the lock is the context's, not part of its value: a reader of a const context takes it */
	pthread_mutex_t *lock = (pthread_mutex_t *)&ctx->win_lock;
	int n;

	pthread_mutex_lock(lock);
	n = ctx->nwindows;
	memcpy(w, ctx->windows, (size_t)n * sizeof(*w));
	pthread_mutex_unlock(lock);
	return n;
}

/* Tear down layers [first, CTX_NLAYERS) in teardown order. */
static void layers_fini(struct ubdma_ctx *ctx, int first)
{
	for (int i = first; i < CTX_NLAYERS; i++) {
		void *state = ctx_layer_state(ctx, (enum ctx_layer_id)i);
		if (state)
			layers[i]->fini(ctx, state);
		ctx_layer_set(ctx, (enum ctx_layer_id)i, NULL);
	}
}

/* Open the layers that have an open hook, the last in teardown order first; all or nothing. */
static int layers_open(struct ubdma_ctx *ctx)
{
	for (int i = CTX_NLAYERS - 1; i >= 0; i--) {
		void *state = NULL;
		int err;
		if (!layers[i]->open)
			continue;
		if ((err = layers[i]->open(ctx, &state))) {
			layers_fini(ctx, i + 1);
			return err;
		}
		ctx_layer_set(ctx, (enum ctx_layer_id)i, state);
	}
	return 0;
}

void ctx_layers_settle(struct ubdma_ctx *ctx)
{
	for (int i = 0; i < CTX_NLAYERS; i++) {
		void *state = ctx_layer_state(ctx, (enum ctx_layer_id)i);
		if (state && layers[i]->settle)
			layers[i]->settle(ctx, state);
	}
}

static void ctx_free(struct ubdma_ctx *ctx)
{
	xlate_fini(&ctx->xlate);
	free(ctx->ix);
	free(ctx->umem_spare);
	pthread_mutex_destroy(&ctx->reg_lock);
	pthread_mutex_destroy(&ctx->win_lock);
	free(ctx);
}

int ubdma_ctx_open(enum ubdma_backend backend, ubdma_ctx_t **ctxp)
{
	struct ubdma_ctx *ctx;
	int err;

	if (!ctxp)
		return uerr(EINVAL, "ctxp is NULL");
	if (!(ctx = calloc(1, sizeof(*ctx))))
		return uerr(ENOMEM, "out of memory");
	pthread_mutex_init(&ctx->reg_lock, NULL);
	pthread_mutex_init(&ctx->win_lock, NULL);
	LIST_INIT(&ctx->umems);
	ctx->sink = (struct iommu_sink){ windows_report, ctx };
	if ((err = xlate_init(&ctx->xlate))) {
		pthread_mutex_destroy(&ctx->reg_lock);
		pthread_mutex_destroy(&ctx->win_lock);
		free(ctx);
		return uerr(err, "cannot allocate the translation map");
	}
	if ((err = iommu_open(&ctx->iommu, backend, &ctx->sink, ctx->reason, sizeof(ctx->reason)))) {
		ctx_free(ctx);
		return err;
	}
	if ((err = layers_open(ctx))) {
		iommu_close(&ctx->iommu);
		ctx_free(ctx);
		return err;
	}
	ULOG_INFO("context %p on backend %s (%s)", (void *)ctx, iommu_name(&ctx->iommu), ctx->reason);
	*ctxp = ctx;
	return 0;
}

void ubdma_ctx_close(ubdma_ctx_t *ctx)
{
	if (!ctx)
		return;
	layers_fini(ctx, 0);
	for (struct ubdma_umem *u; (u = LIST_FIRST(&ctx->umems));) {
		ULOG_WARN("cookie %p [%#lx, %#lx) still locked at close: unlocking", (void *)u,
			  (unsigned long)u->start, (unsigned long)u->end);
		ubdma_umem_unlock(u);
	}
	iommu_close(&ctx->iommu);
	ctx_free(ctx);
}

ubdma_tag_t *ubdma_ctx_tag(ubdma_ctx_t *ctx)
{
	if (!ctx) {
		errno = uerr(EINVAL, "NULL context");
		return NULL;
	}
	return ctx_layer_state(ctx, CTX_LAYER_BUSDMA);
}

enum ubdma_backend ubdma_ctx_backend(const ubdma_ctx_t *ctx)
{
	if (!ctx) {
		errno = uerr(EINVAL, "NULL context");
		return UBDMA_BACKEND_AUTO;
	}
	return iommu_backend(&ctx->iommu);
}

const char *ubdma_ctx_backend_reason(const ubdma_ctx_t *ctx)
{
	if (!ctx) {
		errno = uerr(EINVAL, "NULL context");
		return "no context";
	}
	return ctx->reason;
}

/*
 * The count goes out through *nump, as ubdma_huge_sizes() and its siblings do, so that the return
 * value is 0 or an errno like every other int call (docs/architecture.md, "Error convention").
 */
int ubdma_ctx_iova_windows(const ubdma_ctx_t *ctx, ubdma_iova_t *lo, ubdma_iova_t *hi, int max, int *nump)
{
	struct iommu_window w[IOMMU_MAX_WINDOWS];
	int n;

	if (nump)
		*nump = 0;
	if (!ctx || !nump || max < 0 || (max > 0 && (!lo || !hi)))
		return uerr(EINVAL, "NULL context or count pointer, a negative max (%d), or NULL arrays "
			    "with max > 0", max);
	n = ctx_windows(ctx, w);
	for (int i = 0; i < n && i < max; i++) {
		lo[i] = w[i].lo;
		hi[i] = w[i].hi;
	}
	*nump = n;
	return 0;
}

/* Out of line, so that the look-up's fast path keeps no frame for a varargs call it never makes. */
static __attribute__((cold, noinline)) ubdma_iova_t vtoiova_null(void)
{
	errno = uerr_at("ubdma_vtoiova", EINVAL, "NULL context");
	return UBDMA_BAD_IOVA;
}

ubdma_iova_t ubdma_vtoiova(ubdma_ctx_t *ctx, const void *addr)
{
	if (__builtin_expect(ctx == NULL, 0))
		return vtoiova_null();
	ctx_settle(ctx);
	return xlate_lookup(&ctx->xlate, (uintptr_t)addr);
}
