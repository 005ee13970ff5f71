/*
 * test_windows.c - the backend seam as the context sees it: backends report their IOVA windows
 * through the sink and the context hands out consistent copies, on any thread, while a device
 * attach narrows them (the race of a second device opened while a bounce pool grows); AUTO's
 * reason; a backend without devices refuses attach.
 *
 * The vfio backend needs the guest, so the attach that changes the windows comes from a test
 * backend of this file, swapped into one context through iommu_open_ops(): the same interface
 * vfio reports through.  Under TSan (tools/test.sh runs suite unit there) an unguarded window
 * read is a reported race; elsewhere a torn copy fails the consistency check.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "busdma/busdma_int.h"
#include "core/ctx.h"

#define PG 4096ul
#define ROUNDS 4000

/* Before any device: one window.  With one: three, narrower (the kind of change VFIO reports). */
static const struct iommu_window set_open[] = { { 0x1000, (UINT64_C(1) << 47) - 1 } };
static const struct iommu_window set_dev[] = {
	{ 0x1000, UINT64_C(0xfedfffff) },
	{ UINT64_C(0x100000000), (UINT64_C(1) << 46) - 1 },
	{ UINT64_C(1) << 46, (UINT64_C(1) << 47) - 1 },
};

/* ------------------------------------------------------------ the test backend: IOVA = VA, devices */

struct flip {
	struct iommu_sink sink;
	pthread_mutex_t lock; /* as a real backend: reports go out under it, in order */
	int attached;
};

static int flip_open(const struct iommu_sink *sink, void **privp)
{
	struct flip *f = calloc(1, sizeof(*f));

	if (!f)
		return ENOMEM;
	f->sink = *sink;
	pthread_mutex_init(&f->lock, NULL);
	f->sink.windows(f->sink.arg, set_open, 1);
	*privp = f;
	return 0;
}

static void flip_close(void *priv)
{
	struct flip *f = priv;

	pthread_mutex_destroy(&f->lock);
	free(f);
}

static int flip_map(void *priv, uintptr_t va, size_t npages, size_t pgsz, int prot,
		    const struct iommu_window *lim, uint64_t *iovas)
{
	(void)priv, (void)prot;
	if (lim && (va < lim->lo || va + npages * pgsz - 1 > lim->hi))
		return ERANGE;
	for (size_t i = 0; i < npages; i++)
		iovas[i] = va + i * pgsz;
	return 0;
}

static int flip_attach(void *priv, const struct iommu_dev *dev, void **hp)
{
	struct flip *f = priv;

	pthread_mutex_lock(&f->lock);
	if (!f->attached++)
		f->sink.windows(f->sink.arg, set_dev, 3);
	pthread_mutex_unlock(&f->lock);
	*hp = (void *)dev->bdf;
	return 0;
}

static int flip_device_fd(void *priv, void *h, const char *bdf, int *fdp)
{
	(void)priv, (void)h, (void)bdf, (void)fdp;
	return ENOTSUP;
}

static void flip_detach(void *priv, void *h)
{
	struct flip *f = priv;

	(void)h;
	pthread_mutex_lock(&f->lock);
	if (!--f->attached)
		f->sink.windows(f->sink.arg, set_open, 1);
	pthread_mutex_unlock(&f->lock);
}

static const struct iommu_ops flip_ops = {
	.name = "flip",
	.backend = UBDMA_BACKEND_VA, /* a public name is needed; the test's backend borrows va's */
	.caps = IOMMU_CAP_IOVA_IS_VA,
	.open = flip_open,
	.close = flip_close,
	.map = flip_map,
	.attach = flip_attach,
	.device_fd = flip_device_fd,
	.detach = flip_detach,
};

static ubdma_ctx_t *flip_ctx(void)
{
	ubdma_ctx_t *ctx;

	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);
	iommu_close(&ctx->iommu);
	assert_int_equal(iommu_open_ops(&ctx->iommu, &flip_ops, &ctx->sink), 0);
	return ctx;
}

/* ------------------------------------------------------------ the cases */

static int same_set(const uint64_t *lo, const uint64_t *hi, int n, const struct iommu_window *w, int nw)
{
	if (n != nw)
		return 0;
	for (int i = 0; i < n; i++)
		if (lo[i] != w[i].lo || hi[i] != w[i].hi)
			return 0;
	return 1;
}

static void test_reported_windows(void **state)
{
	(void)state;
	ubdma_ctx_t *ctx = flip_ctx();
	uint64_t lo[IOMMU_MAX_WINDOWS], hi[IOMMU_MAX_WINDOWS];
	void *h;
	int n;

	assert_true(ubdma_ctx_iova_windows(ctx, lo, hi, IOMMU_MAX_WINDOWS, &n) == 0 && same_set(lo, hi, n, set_open, 1));
	assert_int_equal(iommu_attach(&ctx->iommu, &(struct iommu_dev){ "0000:00:01.0", 1 }, &h), 0);
	assert_true(ubdma_ctx_iova_windows(ctx, lo, hi, IOMMU_MAX_WINDOWS, &n) == 0 && same_set(lo, hi, n, set_dev, 3));
	/* max bounds what is written, not what is counted */
	lo[1] = hi[1] = 77;
	assert_int_equal(ubdma_ctx_iova_windows(ctx, lo, hi, 1, &n), 0);
	assert_int_equal(n, 3);
	assert_true(lo[1] == 77 && hi[1] == 77 && lo[0] == set_dev[0].lo);
	iommu_detach(&ctx->iommu, h);
	assert_true(ubdma_ctx_iova_windows(ctx, lo, hi, IOMMU_MAX_WINDOWS, &n) == 0 && same_set(lo, hi, n, set_open, 1));
	ubdma_ctx_close(ctx);
}

struct race {
	ubdma_ctx_t *ctx;
	ubdma_tag_t *tag;
	int bad_copies, bad_allocs, done;
};

/* A device comes and goes: each attach narrows the windows, each detach widens them again. */
static void *attacher(void *arg)
{
	struct race *r = arg;

	for (int i = 0; i < ROUNDS; i++) {
		void *h;
		if (iommu_attach(&r->ctx->iommu, &(struct iommu_dev){ "0000:00:01.0", 1 }, &h))
			break;
		iommu_detach(&r->ctx->iommu, h);
	}
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Readers: ubdma_ctx_iova_windows() and busdma's window reader (a bounce pool growing, DMA memory). */
static void *reader(void *arg)
{
	struct race *r = arg;
	uint64_t lo[IOMMU_MAX_WINDOWS], hi[IOMMU_MAX_WINDOWS];

	for (int i = 0; !__atomic_load_n(&r->done, __ATOMIC_ACQUIRE) || i < 16; i++) {
		int n = 0;
		ubdma_ctx_iova_windows(r->ctx, lo, hi, IOMMU_MAX_WINDOWS, &n);
		if (!same_set(lo, hi, n, set_open, 1) && !same_set(lo, hi, n, set_dev, 3))
			__atomic_fetch_add(&r->bad_copies, 1, __ATOMIC_RELAXED);
		if (i % 64 == 0) {
			void *va;
			ubdma_map_t *m;
			if (ubdma_mem_alloc(r->tag, &va, 0, &m)) {
				__atomic_fetch_add(&r->bad_allocs, 1, __ATOMIC_RELAXED);
				continue;
			}
			ubdma_mem_free(r->tag, va, m);
		}
	}
	return NULL;
}

static void test_windows_race(void **state)
{
	(void)state;
	struct race r = { .ctx = flip_ctx() };
	pthread_t a, b, c;

	assert_int_equal(ubdma_tag_create(ubdma_ctx_tag(r.ctx), PG, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, PG, 1, PG, 0,
					  &r.tag), 0);
	assert_int_equal(pthread_create(&b, NULL, reader, &r), 0);
	assert_int_equal(pthread_create(&c, NULL, reader, &r), 0);
	assert_int_equal(pthread_create(&a, NULL, attacher, &r), 0);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	pthread_join(c, NULL);
	assert_int_equal(r.bad_copies, 0);
	assert_int_equal(r.bad_allocs, 0);
	assert_int_equal(ubdma_tag_destroy(r.tag), 0);
	ubdma_ctx_close(r.ctx);
}

/* Each window of the context is what the backend reported; a 32-bit tag gets memory in the first. */
static void test_tag_window_copy(void **state)
{
	(void)state;
	ubdma_ctx_t *ctx = flip_ctx();
	ubdma_tag_t *t;
	struct iommu_window w;
	void *h;

	assert_int_equal(iommu_attach(&ctx->iommu, &(struct iommu_dev){ "0000:00:01.0", 1 }, &h), 0);
	assert_int_equal(ubdma_tag_create(ubdma_ctx_tag(ctx), 1, 0, UBDMA_MAXADDR_32BIT, UBDMA_MAXADDR, PG, 1, PG, 0,
					  &t), 0);
	assert_int_equal(busdma_tag_allowed(t, PG, &w), 0);
	assert_true(w.lo == set_dev[0].lo && w.hi == set_dev[0].hi);
	iommu_detach(&ctx->iommu, h);
	assert_int_equal(busdma_tag_allowed(t, PG, &w), 0);
	assert_true(w.lo == set_open[0].lo && w.hi == UBDMA_MAXADDR_32BIT);
	assert_int_equal(ubdma_tag_destroy(t), 0);
	ubdma_ctx_close(ctx);
}

/* A backend without devices refuses attach, and ubdma_pci_open() says so before looking at sysfs. */
static void test_no_devices(void **state)
{
	(void)state;
	ubdma_ctx_t *ctx;
	ubdma_pci_t *dev;
	void *h;

	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);
	assert_false(iommu_caps(&ctx->iommu) & IOMMU_CAP_DEVICES);
	assert_true(iommu_caps(&ctx->iommu) & IOMMU_CAP_IOVA_IS_VA);
	assert_int_equal(iommu_attach(&ctx->iommu, &(struct iommu_dev){ "0000:00:01.0", 1 }, &h), ENOTSUP);
	assert_int_equal(ubdma_pci_open(ctx, "0000:00:01.0", &dev), ENOTSUP);
	assert_non_null(strstr(ubdma_last_error(), "va backend"));
	assert_non_null(strstr(ubdma_last_error(), "need one of: iommufd, vfio, noiommu")); /* the table says which can */
	ubdma_ctx_close(ctx);
}

/* The reason names the backend; by name it is "asked for"; AUTO says why it passed over others. */
static void test_reasons(void **state)
{
	(void)state;
	ubdma_ctx_t *ctx;
	char want[64];

	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);
	assert_string_equal(ubdma_ctx_backend_reason(ctx), "va: asked for");
	ubdma_ctx_close(ctx);
	assert_int_equal(ubdma_ctx_open((enum ubdma_backend)42, &ctx), EINVAL);
	assert_string_equal(ubdma_backend_name((enum ubdma_backend)42), "unknown");
	assert_string_equal(ubdma_backend_name(UBDMA_BACKEND_AUTO), "auto");
	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_AUTO, &ctx), 0);
	snprintf(want, sizeof(want), "%s: ", ubdma_backend_name(ubdma_ctx_backend(ctx)));
	assert_memory_equal(ubdma_ctx_backend_reason(ctx), want, strlen(want));
	if (ubdma_ctx_backend(ctx) != UBDMA_BACKEND_VFIO) /* it was passed over, and the reason says why */
		assert_non_null(strstr(ubdma_ctx_backend_reason(ctx), "/dev/vfio/vfio"));
	ubdma_ctx_close(ctx);
}

/*
 * The iommufd and noiommu backends are in the table under their names; on a machine without
 * their device files (the host that runs the unit suite has neither /dev/iommu nor a VFIO
 * container; the vm suite runs them for real) opening them by name fails with ENODEV and says
 * what is missing, and AUTO's reason says why it passed over iommufd.
 */
static void test_vfio_family_absent(void **state)
{
	(void)state;
	ubdma_ctx_t *ctx = NULL;

	assert_string_equal(ubdma_backend_name(UBDMA_BACKEND_IOMMUFD), "iommufd");
	assert_string_equal(ubdma_backend_name(UBDMA_BACKEND_NOIOMMU), "noiommu");
	if (access("/dev/iommu", F_OK) == 0 || access("/dev/vfio/vfio", F_OK) == 0)
		skip(); /* a machine with VFIO: the vm suite's matrix covers it */
	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_IOMMUFD, &ctx), ENODEV);
	assert_null(ctx);
	assert_non_null(strstr(ubdma_last_error(), "no /dev/iommu"));
	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_NOIOMMU, &ctx), ENODEV);
	assert_null(ctx);
	assert_true(strstr(ubdma_last_error(), "/dev/vfio/vfio") || strstr(ubdma_last_error(), "pagemap"));
	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_AUTO, &ctx), 0);
	assert_non_null(strstr(ubdma_ctx_backend_reason(ctx), "no /dev/iommu (kernel without CONFIG_IOMMUFD)"));
	assert_non_null(strstr(ubdma_ctx_backend_reason(ctx), "no VFIO no-IOMMU mode"));
	ubdma_ctx_close(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reported_windows),
		cmocka_unit_test(test_windows_race),
		cmocka_unit_test(test_tag_window_copy),
		cmocka_unit_test(test_no_devices),
		cmocka_unit_test(test_reasons),
		cmocka_unit_test(test_vfio_family_absent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
