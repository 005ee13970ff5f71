/*
 * test_api_errors.c - every public call of libubdma follows one error convention
 * (docs/architecture.md, "Error convention"), checked through libubdma.so as a program links it:
 *   - an int call returns EINVAL, never crashes, for a NULL handle or result pointer, and leaves
 *     a sentence for ubdma_last_error();
 *   - a pointer call returns NULL with errno set; a value call (count, IOVA, node) returns its
 *     sentinel with errno EINVAL for a NULL handle; releases ignore NULL;
 *   - the void calls DESIGN.md fixes set errno on refusal and their int twins return it
 *     (ubdma_map_sync_checked() for PRE|POST mixed and for a map of another tag);
 *   - counts come back through a pointer (ubdma_ctx_iova_windows());
 *   - the one growing struct of libubdma, struct ubdma_rcache_stats, honours the size it is given.
 * The drivers' own convention is tests/unit/abi/test_driver_api.c.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <ubdma/ubdma.h>

/* rc is EINVAL and the thread's sentence was (re)written by the call. */
#define assert_einval(call)                                                                        \
	do {                                                                                       \
		ubdma_huge_free(NULL); /* no-op: must not touch the sentence */                     \
		int rc_ = (call);                                                                  \
		assert_int_equal(rc_, EINVAL);                                                     \
		assert_true(ubdma_last_error()[0] != '\0');                                        \
	} while (0)

/* The value/pointer call sets errno to EINVAL (cleared before). */
#define assert_errno_einval(expr, want)                                                            \
	do {                                                                                       \
		errno = 0;                                                                         \
		assert_true((expr) == (want));                                                     \
		assert_int_equal(errno, EINVAL);                                                   \
	} while (0)

static void nop_cb(void *arg, ubdma_seg_t *segs, int nseg, int error)
{
	(void)arg, (void)segs, (void)nseg, (void)error;
}

static void test_int_calls_null(void **state)
{
	(void)state;
	char buf[64];
	ubdma_tag_t *tag;
	ubdma_map_t *map;
	ubdma_umem_t *cookie;
	ubdma_reg_t *reg;
	ubdma_pci_t *dev;
	ubdma_seg_t segs[1];
	struct iovec iov = { buf, sizeof(buf) };
	struct ubdma_rcache_stats st;
	size_t sizes[4];
	int n, node;
	void *va;
	ubdma_iova_t lo[2], hi[2];

	/* core */
	assert_einval(ubdma_ctx_open(UBDMA_BACKEND_VA, NULL));
	assert_einval(ubdma_ctx_iova_windows(NULL, lo, hi, 2, &n));
	assert_einval(ubdma_umem_lock(NULL, buf, 4096, UBDMA_UMEM_READ, &cookie));
	/* busdma */
	assert_einval(ubdma_tag_create(NULL, 1, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, 4096, 1, 4096, 0, &tag));
	assert_einval(ubdma_tag_destroy(NULL));
	assert_einval(ubdma_tag_set_bounce_limit(NULL, 0));
	assert_einval(ubdma_tag_set_lockfunc(NULL, NULL, NULL));
	assert_einval(ubdma_map_create(NULL, 0, &map));
	assert_einval(ubdma_map_destroy(NULL, NULL));
	assert_einval(ubdma_map_load(NULL, NULL, buf, sizeof(buf), nop_cb, NULL, 0));
	assert_einval(ubdma_map_load_iov(NULL, NULL, &iov, 1, nop_cb, NULL, 0));
	assert_einval(ubdma_map_load_sg(NULL, NULL, buf, sizeof(buf), segs, &n, 0));
	assert_einval(ubdma_map_sync_checked(NULL, NULL, UBDMA_SYNC_PREWRITE));
	assert_einval(ubdma_mem_alloc(NULL, &va, 0, &map));
	/* rcache */
	assert_einval(ubdma_reg_get(NULL, buf, sizeof(buf), UBDMA_UMEM_READ, &reg));
	assert_einval(ubdma_reg_invalidate(NULL, buf, sizeof(buf)));
	assert_einval(ubdma_rcache_set_limits(NULL, 0, 0, 0));
	assert_einval(ubdma_rcache_set_monitor(NULL, UBDMA_RCACHE_MONITOR_EXPLICIT));
	assert_einval(ubdma_rcache_flush(NULL));
	assert_einval(ubdma_rcache_stats(NULL, &st, sizeof(st)));
	assert_einval(ubdma_rcache_stats_print(NULL, stdout));
	/* pci */
	assert_einval(ubdma_pci_open(NULL, "0000:00:00.0", &dev));
	assert_einval(ubdma_pci_bar_map(NULL, 0, &va, NULL));
	assert_einval(ubdma_pci_cfg_read(NULL, 0, buf, 4));
	assert_einval(ubdma_pci_cfg_write(NULL, 0, buf, 4));
	assert_einval(ubdma_pci_bus_master(NULL, 1));
	assert_einval(ubdma_pci_reset(NULL));
	assert_einval(ubdma_pci_msix_enable(NULL, 1, &n));
	assert_einval(ubdma_pci_msix_disable(NULL));
	assert_einval(ubdma_pci_notify_fds(NULL, &n, &n));
	assert_einval(ubdma_pci_release(NULL));
	/* hugepage */
	assert_einval(ubdma_huge_alloc(1 << 21, 0, UBDMA_NODE_ANY, 0, NULL));
	assert_einval(ubdma_huge_sizes(sizes, 4, NULL));
	assert_einval(ubdma_huge_info(NULL, 1, &n));
	assert_einval(ubdma_huge_mounts(NULL, 1, &n));
	assert_einval(ubdma_numa_node_of_pci(NULL, &node));
	assert_einval(ubdma_numa_node_of_pci("0000:00:00.0", NULL));
	assert_einval(ubdma_numa_nodes(NULL, 1, &n));
}

/* Result pointers: NULL ones are EINVAL on a real context too. */
static void test_int_calls_null_out(void **state)
{
	(void)state;
	ubdma_ctx_t *ctx;
	char buf[4096] __attribute__((aligned(4096)));
	ubdma_tag_t *root;
	int n;

	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);
	root = ubdma_ctx_tag(ctx);
	assert_einval(ubdma_ctx_iova_windows(ctx, NULL, NULL, 0, NULL));
	assert_einval(ubdma_ctx_iova_windows(ctx, NULL, NULL, 2, &n));
	assert_einval(ubdma_umem_lock(ctx, buf, sizeof(buf), UBDMA_UMEM_READ, NULL));
	assert_einval(ubdma_tag_create(root, 1, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, 4096, 1, 4096, 0, NULL));
	assert_einval(ubdma_map_create(root, 0, NULL));
	assert_einval(ubdma_mem_alloc(root, NULL, 0, NULL));
	assert_einval(ubdma_reg_get(ctx, buf, sizeof(buf), UBDMA_UMEM_READ, NULL));
	assert_einval(ubdma_rcache_stats(ctx, NULL, 0));
	assert_einval(ubdma_rcache_stats_print(ctx, NULL));
	/* the count comes back through the pointer; 0 is the return */
	n = -1;
	assert_int_equal(ubdma_ctx_iova_windows(ctx, NULL, NULL, 0, &n), 0);
	assert_true(n >= 1);
	ubdma_ctx_close(ctx);
}

static void test_pointer_and_value_calls(void **state)
{
	(void)state;
	size_t len = 77;

	assert_errno_einval(ubdma_ctx_tag(NULL), NULL);
	assert_errno_einval(ubdma_ctx_backend(NULL), UBDMA_BACKEND_AUTO);
	assert_errno_einval(ubdma_ctx_backend_reason(NULL) != NULL, 1);
	assert_errno_einval(ubdma_vtoiova(NULL, &len), UBDMA_BAD_IOVA);
	assert_errno_einval(ubdma_umem_iova(NULL, &len), UBDMA_BAD_IOVA);
	assert_errno_einval(ubdma_reg_iova(NULL, &len), UBDMA_BAD_IOVA);
	assert_errno_einval(ubdma_tag_bounce_limit(NULL), 0);
	assert_errno_einval(ubdma_pci_bar(NULL, 0, &len), NULL);
	assert_int_equal(len, 77); /* written only on success */
	assert_errno_einval(ubdma_pci_dma_tag(NULL), NULL);
	assert_errno_einval(ubdma_pci_bdf(NULL), NULL);
	assert_errno_einval(ubdma_pci_ctx(NULL), NULL);
	assert_errno_einval(ubdma_pci_numa_node(NULL), UBDMA_NODE_ANY);
	assert_errno_einval(ubdma_pci_msix_count(NULL), 0);
	assert_errno_einval(ubdma_huge_addr(NULL), NULL);
	assert_errno_einval(ubdma_huge_len(NULL), 0);
	assert_errno_einval(ubdma_huge_pgsz(NULL), 0);
	assert_errno_einval(ubdma_huge_node(NULL), UBDMA_NODE_ANY);
	assert_errno_einval(ubdma_huge_path(NULL), NULL);
}

/* Releases ignore NULL, as free(3): no crash, no errno, no sentence. */
static void test_releases_ignore_null(void **state)
{
	(void)state;
	ubdma_ctx_t *ctx;

	/* a failure first, so that a release that wrote the sentence would show */
	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, NULL), EINVAL);
	const char *before = ubdma_last_error();
	char copy[256];
	strncpy(copy, before, sizeof(copy) - 1);
	copy[sizeof(copy) - 1] = '\0';
	errno = 0;
	ubdma_ctx_close(NULL);
	ubdma_pci_close(NULL);
	ubdma_umem_unlock(NULL);
	ubdma_reg_put(NULL);
	ubdma_huge_free(NULL);
	assert_int_equal(errno, 0);
	assert_string_equal(ubdma_last_error(), copy);
	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);
	ubdma_ctx_close(ctx);
}

/* The void calls DESIGN.md fixes set errno when they refuse; their int twins return it. */
static void test_sync_refusals(void **state)
{
	(void)state;
	ubdma_ctx_t *ctx;
	ubdma_tag_t *tag, *other;
	ubdma_map_t *map;
	ubdma_seg_t segs[1];
	static char buf[4096] __attribute__((aligned(4096)));
	int n;

	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);
	assert_int_equal(ubdma_tag_create(ubdma_ctx_tag(ctx), 1, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, 4096, 1,
					  4096, 0, &tag), 0);
	assert_int_equal(ubdma_tag_create(ubdma_ctx_tag(ctx), 1, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, 4096, 1,
					  4096, 0, &other), 0);
	assert_int_equal(ubdma_map_create(tag, 0, &map), 0);
	assert_int_equal(ubdma_map_load_sg(tag, map, buf, sizeof(buf), segs, &n, 0), 0);

	assert_int_equal(ubdma_map_sync_checked(tag, map, UBDMA_SYNC_PREWRITE), 0);
	assert_int_equal(ubdma_map_sync_checked(tag, map, UBDMA_SYNC_POSTREAD | UBDMA_SYNC_POSTWRITE), 0);
	assert_einval(ubdma_map_sync_checked(tag, map, UBDMA_SYNC_PREWRITE | UBDMA_SYNC_POSTREAD));
	assert_einval(ubdma_map_sync_checked(tag, map, UBDMA_SYNC_PREREAD | UBDMA_SYNC_POSTWRITE));
	assert_einval(ubdma_map_sync_checked(tag, map, 0x100));
	assert_einval(ubdma_map_sync_checked(other, map, UBDMA_SYNC_PREWRITE));

	errno = 0;
	ubdma_map_sync(tag, map, UBDMA_SYNC_PREWRITE | UBDMA_SYNC_POSTREAD);
	assert_int_equal(errno, EINVAL);
	assert_non_null(strstr(ubdma_last_error(), "mixed"));
	errno = 0;
	ubdma_map_sync(other, map, UBDMA_SYNC_POSTREAD);
	assert_int_equal(errno, EINVAL);
	errno = 0;
	ubdma_map_unload(other, map); /* refused: the map stays loaded */
	assert_int_equal(errno, EINVAL);
	assert_int_equal(ubdma_map_destroy(tag, map), EBUSY);
	errno = 0;
	ubdma_mem_free(tag, buf, map); /* not memory from ubdma_mem_alloc() */
	assert_int_equal(errno, EINVAL);

	ubdma_map_unload(tag, map);
	assert_int_equal(ubdma_map_destroy(tag, map), 0);
	assert_int_equal(ubdma_tag_destroy(other), 0);
	assert_int_equal(ubdma_tag_destroy(tag), 0);
	ubdma_ctx_close(ctx);
}

/*
 * libubdma takes no input option struct (docs/architecture.md, "Option structs"); its growing
 * output struct takes its size: only the first @size bytes are written.
 */
static void test_stats_size(void **state)
{
	(void)state;
	ubdma_ctx_t *ctx;
	struct ubdma_rcache_stats st;
	size_t part = offsetof(struct ubdma_rcache_stats, misses);

	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);
	memset(&st, 0xa5, sizeof(st));
	assert_int_equal(ubdma_rcache_stats(ctx, &st, part), 0);
	assert_int_equal(st.hits, 0);
	for (size_t i = part; i < sizeof(st); i++)
		assert_int_equal(((unsigned char *)&st)[i], 0xa5);
	assert_int_equal(ubdma_rcache_stats(ctx, &st, sizeof(st)), 0);
	assert_int_equal(st.misses, 0);
	ubdma_ctx_close(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_int_calls_null),
		cmocka_unit_test(test_int_calls_null_out),
		cmocka_unit_test(test_pointer_and_value_calls),
		cmocka_unit_test(test_releases_ignore_null),
		cmocka_unit_test(test_sync_refusals),
		cmocka_unit_test(test_stats_size),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
