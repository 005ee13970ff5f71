/*
 * test_umem.c - locked-memory cookies (ddi_umem_lock(9F) semantics) and contexts on the va and
 * phys backends: argument rules, EFAULT/ENOMEM/ENOTSUP with nothing left wired, translation
 * checked against the test's own pagemap read on 2 MiB hugepages, overlapping cookies, and
 * ctx_close cleaning up.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <cmocka.h>

#include <ubdma/ubdma.h>

#include "../testutil.h"

#define PG 4096
#define HP (2u << 20)

static void test_ctx_args(void **state)
{
	(void)state;
	ubdma_ctx_t *ctx = NULL;

	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, NULL), EINVAL);
	assert_int_equal(ubdma_ctx_open((enum ubdma_backend)42, &ctx), EINVAL);
	assert_null(ctx);
	if (access("/dev/vfio/vfio", F_OK))
		assert_int_not_equal(ubdma_ctx_open(UBDMA_BACKEND_VFIO, &ctx), 0);
	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_AUTO, &ctx), 0);
	assert_int_not_equal(ubdma_ctx_backend(ctx), UBDMA_BACKEND_AUTO);
	/* the reason names the backend it picked */
	assert_non_null(strstr(ubdma_ctx_backend_reason(ctx), ubdma_backend_name(ubdma_ctx_backend(ctx))));
	assert_non_null(ubdma_ctx_tag(ctx));
	uint64_t lo[4], hi[4];
	int nw;
	assert_int_equal(ubdma_ctx_iova_windows(ctx, lo, hi, 4, &nw), 0);
	assert_true(nw >= 1);
	assert_true(lo[0] < hi[0]);
	ubdma_ctx_close(ctx);
	ubdma_ctx_close(NULL);
}

static void test_umem_args(void **state)
{
	(void)state;
	ubdma_ctx_t *ctx;
	ubdma_umem_t *u = NULL;
	char *b = anon_map(4 * PG);

	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);
	assert_int_equal(ubdma_umem_lock(ctx, b, PG, 0, &u), EINVAL); /* neither READ nor WRITE */
	assert_int_equal(ubdma_umem_lock(ctx, b, PG, UBDMA_UMEM_READ | 0x40, &u), EINVAL);
	assert_int_equal(ubdma_umem_lock(ctx, b + 1, PG, UBDMA_UMEM_READ, &u), EINVAL);
	assert_int_equal(ubdma_umem_lock(ctx, b, PG + 1, UBDMA_UMEM_READ, &u), EINVAL);
	assert_int_equal(ubdma_umem_lock(ctx, b, 0, UBDMA_UMEM_READ, &u), EINVAL);
	assert_int_equal(ubdma_umem_lock(NULL, b, PG, UBDMA_UMEM_READ, &u), EINVAL);
	assert_int_equal(ubdma_umem_lock(ctx, b, PG, UBDMA_UMEM_READ, NULL), EINVAL);
	assert_int_equal(ubdma_umem_lock(ctx, (void *)(UINTPTR_MAX - PG + 1), 2 * PG, UBDMA_UMEM_READ, &u),
			 EINVAL);
	assert_null(u);
	assert_int_equal(ubdma_wire_count(b), 0);
	/* unmapped part: EFAULT and nothing wired or registered */
	assert_int_equal(munmap(b + 2 * PG, PG), 0);
	assert_int_equal(ubdma_umem_lock(ctx, b, 4 * PG, UBDMA_UMEM_WRITE, &u), EFAULT);
	assert_int_equal(ubdma_wire_count(b), 0);
	assert_int_equal(smaps_locked_kb(b, 4 * PG), 0);
	assert_int_equal(ubdma_vtoiova(ctx, b), UBDMA_BAD_IOVA);
	ubdma_ctx_close(ctx);
	munmap(b, 2 * PG);
	munmap(b + 3 * PG, PG);
}

static void test_umem_va(void **state)
{
	(void)state;
	ubdma_ctx_t *ctx;
	ubdma_umem_t *u;
	char *b = anon_map(16 * PG);

	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);
	assert_int_equal(ubdma_ctx_backend(ctx), UBDMA_BACKEND_VA);
	assert_int_equal(ubdma_umem_lock(ctx, b + 4 * PG, 8 * PG, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u), 0);
	assert_int_equal(ubdma_wire_count(b + 4 * PG), 1);
	assert_int_equal(smaps_locked_kb(b, 16 * PG), 32);
	for (int off = 4 * PG; off < 12 * PG; off += 777) {
		assert_int_equal(ubdma_umem_iova(u, b + off), (uintptr_t)(b + off));
		assert_int_equal(ubdma_vtoiova(ctx, b + off), (uintptr_t)(b + off));
	}
	/* outside the cookie */
	assert_int_equal(ubdma_umem_iova(u, b + 4 * PG - 1), UBDMA_BAD_IOVA);
	assert_int_equal(ubdma_umem_iova(u, b + 12 * PG), UBDMA_BAD_IOVA);
	assert_int_equal(ubdma_vtoiova(ctx, b + 12 * PG), UBDMA_BAD_IOVA);
	assert_int_equal(ubdma_vtoiova(ctx, b + 4 * PG - 1), UBDMA_BAD_IOVA);
	assert_int_equal(ubdma_vtoiova(NULL, b + 4 * PG), UBDMA_BAD_IOVA);
	/* cookies nest with ubdma_wire() */
	assert_int_equal(ubdma_wire(b + 4 * PG, PG, 0), 0);
	ubdma_umem_unlock(u);
	assert_int_equal(ubdma_wire_count(b + 4 * PG), 1);
	assert_int_equal(ubdma_wire_count(b + 5 * PG), 0);
	assert_int_equal(ubdma_vtoiova(ctx, b + 4 * PG), UBDMA_BAD_IOVA);
	assert_int_equal(ubdma_unwire(b + 4 * PG, PG, 0), 0);
	assert_int_equal(smaps_locked_kb(b, 16 * PG), 0);
	ubdma_umem_unlock(NULL);
	ubdma_ctx_close(ctx);
	munmap(b, 16 * PG);
}

/* Overlapping cookies: when one goes, pages still covered by the other keep translating. */
static void test_umem_overlap(void **state)
{
	(void)state;
	ubdma_ctx_t *ctx;
	ubdma_umem_t *a, *b2;
	char *b = anon_map(8 * PG);

	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);
	assert_int_equal(ubdma_umem_lock(ctx, b, 4 * PG, UBDMA_UMEM_READ, &a), 0);
	assert_int_equal(ubdma_umem_lock(ctx, b + 2 * PG, 4 * PG, UBDMA_UMEM_READ, &b2), 0);
	assert_int_equal(ubdma_wire_count(b + 3 * PG), 2);
	ubdma_umem_unlock(a);
	assert_int_equal(ubdma_vtoiova(ctx, b), UBDMA_BAD_IOVA);
	assert_int_equal(ubdma_vtoiova(ctx, b + 2 * PG), (uintptr_t)(b + 2 * PG));
	assert_int_equal(ubdma_vtoiova(ctx, b + 5 * PG + 9), (uintptr_t)(b + 5 * PG + 9));
	assert_int_equal(ubdma_wire_count(b + 3 * PG), 1);
	/* close with a live cookie unlocks it */
	ubdma_ctx_close(ctx);
	assert_int_equal(ubdma_wire_count(b + 3 * PG), 0);
	assert_int_equal(smaps_locked_kb(b, 8 * PG), 0);
	munmap(b, 8 * PG);
}

static void test_umem_memlock(void **state)
{
	(void)state;
	int st;
	pid_t pid = fork();

	if (pid == 0) {
		struct rlimit rl = { 16 * PG, 16 * PG };
		char *b = anon_map(64 * PG);
		ubdma_ctx_t *ctx;
		ubdma_umem_t *u;
		if (ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx) || setrlimit(RLIMIT_MEMLOCK, &rl) || drop_ipc_lock())
			_exit(10);
		if (ubdma_umem_lock(ctx, b, 32 * PG, UBDMA_UMEM_READ, &u) != ENOMEM)
			_exit(11);
		if (ubdma_wire_count(b) || status_kb("VmLck") != 0 || ubdma_vtoiova(ctx, b) != UBDMA_BAD_IOVA)
			_exit(12);
		if (!strstr(ubdma_last_error(), "RLIMIT_MEMLOCK"))
			_exit(13);
		if (ubdma_umem_lock(ctx, b, 16 * PG, UBDMA_UMEM_READ, &u))
			_exit(14);
		ubdma_umem_unlock(u);
		ubdma_ctx_close(ctx);
		_exit(status_kb("VmLck") == 0 ? 0 : 15);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static ubdma_ctx_t *phys_ctx(void)
{
	ubdma_ctx_t *ctx;
	int err = ubdma_ctx_open(UBDMA_BACKEND_PHYS, &ctx);

	if (err == ENODEV)
		SKIP_WHY("phys backend unusable here: %s (run as root)", ubdma_last_error());
	assert_int_equal(err, 0);
	return ctx;
}

/* phys refuses memory whose physical address is not stable, leaving nothing wired */
static void test_phys_refuses_4k(void **state)
{
	(void)state;
	ubdma_ctx_t *ctx = phys_ctx();
	ubdma_umem_t *u = NULL;
	char *b = anon_map(4 * PG);

	b[0] = 1;
	assert_int_equal(ubdma_umem_lock(ctx, b, 4 * PG, UBDMA_UMEM_READ, &u), ENOTSUP);
	assert_non_null(strstr(ubdma_last_error(), "hugetlb"));
	assert_null(u);
	assert_int_equal(ubdma_wire_count(b), 0);
	assert_int_equal(smaps_locked_kb(b, 4 * PG), 0);
	assert_int_equal(ubdma_vtoiova(ctx, b), UBDMA_BAD_IOVA);
	ubdma_ctx_close(ctx);
	munmap(b, 4 * PG);
}

/* phys on 2 MiB hugepages: every translation equals the test's own pagemap read */
static void test_phys_hugetlb(void **state)
{
	(void)state;
	ubdma_ctx_t *ctx = phys_ctx();
	ubdma_umem_t *u;
	const size_t len = 8 * HP;
	char *h = huge_alloc(len, 2048);

	if (!h) {
		ubdma_ctx_close(ctx);
		SKIP_WHY("no 2 MiB hugepages available (reserve some: nr_hugepages)");
	}
	assert_int_equal(ubdma_umem_lock(ctx, h, len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u), 0);
	srand(7);
	for (int i = 0; i < 4096; i++) {
		size_t off = ((size_t)rand() * 4099u) % len;
		uint64_t pa = pagemap_pa(h + off);
		assert_int_not_equal(pa, 0);
		assert_int_equal(ubdma_vtoiova(ctx, h + off), pa);
		assert_int_equal(ubdma_umem_iova(u, h + off), pa);
	}
	/* the ends of each hugepage */
	for (size_t p = 0; p < len; p += HP) {
		assert_int_equal(ubdma_vtoiova(ctx, h + p), pagemap_pa(h + p));
		assert_int_equal(ubdma_vtoiova(ctx, h + p + HP - 1), pagemap_pa(h + p + HP - 1));
	}
	/* a sub-range cookie inside a hugepage rounds out to the whole hugepage */
	ubdma_umem_t *v;
	assert_int_equal(ubdma_umem_lock(ctx, h + HP + PG, PG, UBDMA_UMEM_READ, &v), 0);
	assert_int_equal(ubdma_wire_count(h + HP), 2);
	ubdma_umem_unlock(u);
	assert_int_equal(ubdma_vtoiova(ctx, h), UBDMA_BAD_IOVA);
	assert_int_equal(ubdma_vtoiova(ctx, h + HP + 5), pagemap_pa(h + HP + 5));
	ubdma_umem_unlock(v);
	assert_int_equal(ubdma_vtoiova(ctx, h + HP + 5), UBDMA_BAD_IOVA);
	assert_int_equal(ubdma_wire_count(h + HP), 0);
	ubdma_ctx_close(ctx);
	munmap(h, len);
}

/* Lookups racing lock/unlock of an overlapping cookie: a page covered by a cookie that stays is
 * never seen unregistered, and no lookup ever returns a wrong IOVA. */
static ubdma_ctx_t *race_ctx;
static char *race_buf;
static volatile int race_stop;

static void *race_reader(void *arg)
{
	unsigned long wrong = 0;

	(void)arg;
	while (!__atomic_load_n(&race_stop, __ATOMIC_RELAXED)) {
		for (int p = 0; p < 6; p++) {
			uint64_t v = ubdma_vtoiova(race_ctx, race_buf + p * PG + 8);
			if (p < 4)
				wrong += v != (uintptr_t)(race_buf + p * PG + 8);
			else
				wrong += v != UBDMA_BAD_IOVA && v != (uintptr_t)(race_buf + p * PG + 8);
		}
	}
	return (void *)wrong;
}

static void test_umem_race(void **state)
{
	(void)state;
	ubdma_umem_t *a, *b;
	pthread_t th;
	void *wrong;

	race_buf = anon_map(8 * PG);
	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &race_ctx), 0);
	assert_int_equal(ubdma_umem_lock(race_ctx, race_buf, 4 * PG, UBDMA_UMEM_READ, &a), 0);
	assert_int_equal(pthread_create(&th, NULL, race_reader, NULL), 0);
	for (int i = 0; i < 10000; i++) {
		assert_int_equal(ubdma_umem_lock(race_ctx, race_buf + 2 * PG, 4 * PG, UBDMA_UMEM_READ, &b), 0);
		ubdma_umem_unlock(b);
	}
	__atomic_store_n(&race_stop, 1, __ATOMIC_RELAXED);
	pthread_join(th, &wrong);
	assert_int_equal((uintptr_t)wrong, 0);
	ubdma_umem_unlock(a);
	ubdma_ctx_close(race_ctx);
	munmap(race_buf, 8 * PG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ctx_args),
		cmocka_unit_test(test_umem_args),
		cmocka_unit_test(test_umem_va),
		cmocka_unit_test(test_umem_overlap),
		cmocka_unit_test(test_umem_memlock),
		cmocka_unit_test(test_phys_refuses_4k),
		cmocka_unit_test(test_phys_hugetlb),
		cmocka_unit_test(test_umem_race),
	};
	return cmocka_run_group_tests_name("umem", tests, NULL, NULL);
}
