/*
 * ctx.c - contexts: choosing and opening a backend, the root tag, and tearing everything down.
 *
 * AUTO picks vfio when /dev/vfio/vfio exists; else phys when pagemap gives page frame numbers
 * (root) and hugepages are configured, since phys can only translate hugetlb memory; else va.
 * The reason for the pick is kept for ubdma_ctx_backend_reason() and `ubdma status`.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/sysfs.h"
#include "core/ctx.h"

static const struct iommu_ops *backend_ops(enum ubdma_backend b)
{
	switch (b) {
	case UBDMA_BACKEND_VFIO:
		return &iommu_vfio_ops;
	case UBDMA_BACKEND_PHYS:
		return &iommu_phys_ops;
	case UBDMA_BACKEND_VA:
		return &iommu_va_ops;
	default:
		return NULL;
	}
}

const char *ubdma_backend_name(enum ubdma_backend b)
{
	static const char *names[] = { "auto", "vfio", "phys", "va" };

	return (unsigned)b < 4 ? names[b] : "unknown";
}

/* The sentence itself is lib/base's (uerr()); this is its public door. */
const char *ubdma_last_error(void)
{
	return uerr_last();
}

/* Total hugepages configured, of any size. */
static unsigned long hugepages_total(void)
{
	DIR *d = opendir("/sys/kernel/mm/hugepages");
	struct dirent *de;
	unsigned long total = 0;

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		char path[300];
		unsigned long n = 0;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/%s/nr_hugepages", de->d_name);
		if (!sysfs_read_ul(path, &n))
			total += n;
	}
	closedir(d);
	return total;
}

static enum ubdma_backend auto_pick(char *why, size_t whylen)
{
	char v[160], p[160];

	if (iommu_vfio_present(v, sizeof(v))) {
		snprintf(why, whylen, "vfio: %.100s", v);
		return UBDMA_BACKEND_VFIO;
	}
	int phys = iommu_phys_usable(p, sizeof(p));
	unsigned long huge = hugepages_total();
	if (phys && huge) {
		snprintf(why, whylen, "phys: %.80s; %.80s; %lu hugepages configured", v, p, huge);
		return UBDMA_BACKEND_PHYS;
	}
	snprintf(why, whylen, "va: %.100s; %.100s", v, phys ? "no hugepages configured" : p);
	return UBDMA_BACKEND_VA;
}

/*
 * AUTO's pick failed to open (say VFIO is there but has no type1v2): step down to va, the one
 * backend that always opens, and keep both reasons.  Return: 1 to try again.
 */
static int auto_fallback(struct ubdma_ctx *ctx, int err)
{
	char prev[sizeof(ctx->reason)];

	if (!ctx->is_auto || ctx->backend == UBDMA_BACKEND_VA)
		return 0;
	snprintf(prev, sizeof(prev), "%s", ctx->reason);
	snprintf(ctx->reason, sizeof(ctx->reason), "va: %.40s failed to open (%.20s: %.120s); before: %.60s",
		 ubdma_backend_name(ctx->backend), strerror(err), ubdma_last_error(), prev);
	ctx->backend = UBDMA_BACKEND_VA;
	ctx->ops = &iommu_va_ops;
	ctx->nwindows = 0;
	return 1;
}

int ubdma_ctx_open(enum ubdma_backend backend, ubdma_ctx_t **ctxp)
{
	struct ubdma_ctx *ctx;
	int err;

	if (!ctxp)
		return uerr(EINVAL, "ctxp is NULL");
	if ((unsigned)backend > UBDMA_BACKEND_VA)
		return uerr(EINVAL, "unknown backend %d", (int)backend);
	if (!(ctx = calloc(1, sizeof(*ctx))))
		return uerr(ENOMEM, "out of memory");
	if (backend == UBDMA_BACKEND_AUTO) {
		ctx->is_auto = 1;
		backend = auto_pick(ctx->reason, sizeof(ctx->reason));
	} else {
		snprintf(ctx->reason, sizeof(ctx->reason), "%s: asked for", ubdma_backend_name(backend));
	}
	ctx->backend = backend;
	ctx->ops = backend_ops(backend);
	pthread_mutex_init(&ctx->reg_lock, NULL);
	LIST_INIT(&ctx->umems);
	LIST_INIT(&ctx->pci);
	if ((err = xlate_init(&ctx->xlate))) {
		free(ctx);
		return uerr(err, "cannot allocate the translation map");
	}
	err = ctx->ops->open(ctx, &ctx->priv);
	while (err && auto_fallback(ctx, err)) /* AUTO: the next backend in line */
		err = ctx->ops->open(ctx, &ctx->priv);
	if (err) {
		xlate_fini(&ctx->xlate);
		free(ctx);
		return err;
	}
	if ((err = busdma_root_create(ctx, &ctx->root))) {
		ctx->ops->close(ctx->priv);
		xlate_fini(&ctx->xlate);
		free(ctx);
		return err;
	}
	ULOG_INFO("context %p on backend %s (%s)", (void *)ctx, ctx->ops->name, ctx->reason);
	*ctxp = ctx;
	return 0;
}

void ubdma_ctx_close(ubdma_ctx_t *ctx)
{
	if (!ctx)
		return;
	if (ctx->pci_fini)
		ctx->pci_fini(ctx);
	if (ctx->rcache_fini)
		ctx->rcache_fini(ctx);
	busdma_root_destroy(ctx->root);
	for (struct ubdma_umem *u; (u = LIST_FIRST(&ctx->umems));) {
		ULOG_WARN("cookie %p [%#lx, %#lx) still locked at close: unlocking", (void *)u,
			  (unsigned long)u->start, (unsigned long)u->end);
		ubdma_umem_unlock(u);
	}
	ctx->ops->close(ctx->priv);
	xlate_fini(&ctx->xlate);
	pthread_mutex_destroy(&ctx->reg_lock);
	free(ctx);
}

ubdma_tag_t *ubdma_ctx_tag(ubdma_ctx_t *ctx)
{
	return ctx ? ctx->root : NULL;
}

enum ubdma_backend ubdma_ctx_backend(const ubdma_ctx_t *ctx)
{
	return ctx ? ctx->backend : UBDMA_BACKEND_AUTO;
}

const char *ubdma_ctx_backend_reason(const ubdma_ctx_t *ctx)
{
	return ctx ? ctx->reason : "no context";
}

int ubdma_ctx_iova_windows(const ubdma_ctx_t *ctx, ubdma_iova_t *lo, ubdma_iova_t *hi, int max)
{
	if (!ctx)
		return 0;
	for (int i = 0; i < ctx->nwindows && i < max; i++) {
		lo[i] = ctx->windows[i].lo;
		hi[i] = ctx->windows[i].hi;
	}
	return ctx->nwindows;
}

ubdma_iova_t ubdma_vtoiova(ubdma_ctx_t *ctx, const void *addr)
{
	if (__builtin_expect(ctx == NULL, 0))
		return UBDMA_BAD_IOVA;
	ctx_settle(ctx);
	return xlate_lookup(&ctx->xlate, (uintptr_t)addr);
}
