/*
 * test_wire_follow.c - directed, single-threaded cases for "wiring follows the address space"
 * (issue 15): each case builds one sequence of mappings and calls that breaks one rule when the
 * library keeps its wire counts, cookies or cache entries by address instead of by mapping.
 *   rule1_*        munmap ends a wiring: new memory mapped at the same address starts with no
 *                  count and no translation, and a balanced wire/unwire on it leaves it neither
 *                  locked nor DONTFORK (bare ubdma_wire, a umem cookie, a cached registration);
 *   rule3_*        a cookie or registration held on hugetlb memory that is replaced by 4 KiB
 *                  pages (and the reverse): the new pages are wired by their own holder, and the
 *                  old holder's release leaves them wired exactly once;
 *   rule4_*        a wired range moved by mremap: after the balanced release (and ctx close)
 *                  nothing in the process is VM_LOCKED or VM_DONTFORK, also for more moved
 *                  registrations than a fixed-size fix-up table holds;
 *   rule5_*        a MAP_SHARED file mapping longer than its file: wiring past EOF is EFAULT and
 *                  leaves nothing locked (mlock locks the prefix before it fails);
 *   rule7_*        a zero-length wire succeeds and wires nothing; loads of a range that wraps
 *                  past 2^64, or of NULL with a length, are EINVAL.
 * Every case takes fresh addresses from one PROT_NONE reservation that is never given back, so
 * a count a failed case leaves behind by address cannot leak into the next one, and puts the
 * reservation back over its addresses at the end, so no VMA it locked outlives it.  A case keeps
 * going after a failed check and prints every one ("FAIL rule N: ..."): the printed lines are the
 * evidence of which rule today's code breaks.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include <ubdma/ubdma.h>

#include "vmcheck.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define PG 4096UL
#define HP (2UL << 20)
#define RESERVE (1024UL << 20) /* room for every case's fresh addresses, never reused */

static uintptr_t res_base, res_next, case_start;
static int have_huge;
static int failed;

/* A failed check prints its line and lets the case go on, so that one run shows every broken rule. */
#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			failed++;                                                                  \
			printf("FAIL %s:%d: ", __func__, __LINE__);                                \
			printf(__VA_ARGS__);                                                       \
			printf("\n");                                                              \
			fflush(stdout);                                                            \
		}                                                                                  \
	} while (0)

/* Fresh, 2 MiB aligned addresses of the reservation (PROT_NONE until a case maps there). */
static char *fresh(size_t len)
{
	uintptr_t a = res_next;

	res_next += (len + 2 * HP - 1) & ~(HP - 1); /* and a PROT_NONE gap after it */
	assert_true(res_next <= res_base + RESERVE);
	return (char *)a;
}

enum kind { ANON, HUGE };

/* Map len bytes of kind at addr over whatever is there (MAP_FIXED), touched; NULL on failure. */
static char *map_at(void *addr, size_t len, enum kind k)
{
	int fl = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | (k == HUGE ? MAP_HUGETLB : 0);
	char *p = mmap(addr, len, PROT_READ | PROT_WRITE, fl, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	memset(p, 0x5a, len);
	return p;
}

/* Unmap [addr, addr + len) for real (munmap), then map new memory there only if the hole is free. */
static char *remap_fresh(void *addr, size_t len, enum kind k)
{
	int fl = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | (k == HUGE ? MAP_HUGETLB : 0);
	char *p;

	assert_int_equal(munmap(addr, len), 0);
	p = mmap(addr, len, PROT_READ | PROT_WRITE, fl, -1, 0);
	if (p == MAP_FAILED || p != addr)
		return NULL;
	memset(p, 0x3c, len);
	return p;
}

static unsigned count_max(const void *addr, size_t len)
{
	unsigned m = 0;

	for (size_t o = 0; o < len; o += PG) {
		unsigned c = ubdma_wire_count((const char *)addr + o);
		m = c > m ? c : m;
	}
	return m;
}

static unsigned count_min(const void *addr, size_t len)
{
	unsigned m = ~0u;

	for (size_t o = 0; o < len; o += PG) {
		unsigned c = ubdma_wire_count((const char *)addr + o);
		m = c < m ? c : m;
	}
	return m;
}

/* VMAs over [addr, addr + len) that are locked or DONTFORK, printed; 0 when clean. */
static long dirty(const void *addr, size_t len, const char *label)
{
	return vm_offenders((uintptr_t)addr, (uintptr_t)addr + len, 0, stdout, label, 8);
}

static int setup_group(void **state)
{
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
	void *p;

	(void)state;
	setvbuf(stdout, NULL, _IOLBF, 0);
	setrlimit(RLIMIT_MEMLOCK, &rl); /* root: no limit, so ENOMEM can only mean a bug */
	p = mmap(NULL, RESERVE + HP, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	res_base = res_next = ((uintptr_t)p + HP - 1) & ~(HP - 1);
	/* hugetlb cases need two free 2 MiB pages at once */
	void *h = mmap(NULL, 2 * HP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (h != MAP_FAILED) {
		memset(h, 0, 2 * HP);
		munmap(h, 2 * HP);
		have_huge = 1;
	}
	return 0;
}

static int setup_case(void **state)
{
	(void)state;
	failed = 0;
	case_start = res_next;
	return 0;
}

/* Put the reservation back over every address the case used: no VMA it locked survives it. */
static int teardown_case(void **state)
{
	(void)state;
	if (res_next > case_start)
		mmap((void *)case_start, res_next - case_start, PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	return 0;
}

/* ------------------------------------------------------------------ rule 1 */

static void rule1_wire(void **state)
{
	(void)state;
	size_t len = 16 * PG;
	char *a = map_at(fresh(len), len, ANON);
	assert_non_null(a);

	assert_int_equal(ubdma_wire(a, len, 0), 0);
	CHECK(count_min(a, len) == 1, "rule 1: wired pages count %u, want 1", count_min(a, len));
	a = remap_fresh(a, len, ANON);
	if (!a)
		skip(); /* another mapping took the hole: cannot happen inside the reservation */
	CHECK(count_max(a, len) == 0,
	      "rule 1: new memory at %p (mapped after munmap of a wired range) has wire count %u, want 0", a,
	      count_max(a, len));
	CHECK(dirty(a, len, "rule 1: new mapping, before any wire") == 0,
	      "rule 1: new memory is locked or DONTFORK before anyone wired it");
	assert_int_equal(ubdma_wire(a, len, 0), 0);
	CHECK(count_max(a, len) == 1, "rule 1: one wire of the new memory gives count %u, want 1",
	      count_max(a, len));
	int rc = ubdma_unwire(a, len, 0);
	CHECK(rc == 0, "rule 1: the balanced unwire of the new memory returned %d (%s)", rc, strerror(rc));
	CHECK(count_max(a, len) == 0, "rule 1: after a balanced wire/unwire the new memory counts %u, want 0",
	      count_max(a, len));
	CHECK(dirty(a, len, "rule 1: new mapping after a balanced wire/unwire") == 0,
	      "rule 1: a balanced wire/unwire of the new memory left it locked or DONTFORK");
	/* the first wiring's own unwire: munmap ended it, so it answers 0 and changes nothing */
	rc = ubdma_unwire(a, len, 0);
	CHECK(rc == 0, "rule 1: the unwire of a wiring munmap ended returned %d (%s), want 0", rc, strerror(rc));
	CHECK(count_max(a, len) == 0 && dirty(a, len, "rule 1: after the ended wiring's unwire") == 0,
	      "rule 1: the ended wiring's unwire left a count or a lock");
	assert_int_equal(failed, 0);
}

static void rule1_cookie(void **state)
{
	(void)state;
	size_t len = 16 * PG;
	ubdma_ctx_t *ctx;
	ubdma_umem_t *u;
	char *a = map_at(fresh(len), len, ANON);
	assert_non_null(a);
	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);

	assert_int_equal(ubdma_umem_lock(ctx, a, len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u), 0);
	CHECK(ubdma_vtoiova(ctx, a) == (uint64_t)(uintptr_t)a, "the va backend translates %p to %#llx", a,
	      (unsigned long long)ubdma_vtoiova(ctx, a));
	a = remap_fresh(a, len, ANON);
	if (!a)
		skip();
	CHECK(count_max(a, len) == 0, "rule 1: new memory under a held cookie's old range has wire count %u, want 0",
	      count_max(a, len));
	CHECK(ubdma_vtoiova(ctx, a) == UBDMA_BAD_IOVA,
	      "rule 1: new memory at %p translates to %#llx through the cookie of the unmapped memory, want "
	      "UBDMA_BAD_IOVA",
	      a, (unsigned long long)ubdma_vtoiova(ctx, a));
	CHECK(dirty(a, len, "rule 1 (cookie): new mapping") == 0, "rule 1: new memory is locked or DONTFORK");
	assert_int_equal(ubdma_wire(a, len, 0), 0);
	ubdma_umem_unlock(u); /* the old cookie goes: it must not take the new wiring with it */
	CHECK(count_min(a, len) == 1 && count_max(a, len) == 1,
	      "rule 1: after the old cookie's unlock the newly wired pages count %u..%u, want 1", count_min(a, len),
	      count_max(a, len));
	CHECK(vm_flag_at(a, "lo") == 1, "rule 1: the old cookie's unlock unlocked the new wiring (no lo on %p)", a);
	int rc = ubdma_unwire(a, len, 0);
	CHECK(rc == 0, "rule 1: the new memory's balanced unwire returned %d (%s)", rc, strerror(rc));
	CHECK(count_max(a, len) == 0 && dirty(a, len, "rule 1 (cookie): after the balanced unwire") == 0,
	      "rule 1: wired or locked after everything was released");
	ubdma_ctx_close(ctx);
	assert_int_equal(failed, 0);
}

static void rule1_reg(void **state)
{
	(void)state;
	size_t len = 16 * PG;
	ubdma_ctx_t *ctx;
	ubdma_reg_t *r;
	char *a = map_at(fresh(len), len, ANON);
	assert_non_null(a);
	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);

	assert_int_equal(ubdma_reg_get(ctx, a, len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &r), 0);
	ubdma_reg_put(r); /* cached, unreferenced */
	a = remap_fresh(a, len, ANON);
	if (!a)
		skip();
	CHECK(ubdma_vtoiova(ctx, a) == UBDMA_BAD_IOVA,
	      "rule 1: new memory at %p translates to %#llx through a cache entry of the unmapped memory", a,
	      (unsigned long long)ubdma_vtoiova(ctx, a));
	CHECK(count_max(a, len) == 0, "rule 1: new memory under an old cache entry has wire count %u, want 0",
	      count_max(a, len));
	CHECK(dirty(a, len, "rule 1 (reg): new mapping") == 0, "rule 1: new memory is locked or DONTFORK");
	assert_int_equal(ubdma_reg_get(ctx, a, len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &r), 0);
	CHECK(count_max(a, len) == 1, "rule 1: one registration of the new memory gives count %u, want 1",
	      count_max(a, len));
	ubdma_reg_put(r);
	assert_int_equal(ubdma_rcache_flush(ctx), 0);
	CHECK(count_max(a, len) == 0 && dirty(a, len, "rule 1 (reg): after put and flush") == 0,
	      "rule 1: wired or locked after the registration was put and the cache flushed (count %u)",
	      count_max(a, len));
	ubdma_ctx_close(ctx);
	assert_int_equal(failed, 0);
}

/* ------------------------------------------------------------------ rule 3 */

/*
 * A cookie (or registration) holds [a, a + 2 MiB) of kind from; the memory is replaced at the same
 * address by kind to; the new memory is wired (nlen bytes from a) with ubdma_wire; then the old
 * holder releases.  The new pages must count exactly 1 and stay locked throughout.
 */
static void rule3(enum kind from, enum kind to, int use_reg)
{
	ubdma_ctx_t *ctx;
	ubdma_umem_t *u = NULL;
	ubdma_reg_t *r = NULL;
	size_t nlen = to == HUGE ? HP : 16 * PG;
	const char *what = use_reg ? "registration" : "cookie";
	const char *names[] = { "4 KiB", "hugetlb" };

	if (!have_huge)
		skip();
	char *a = map_at(fresh(HP), HP, from);
	assert_non_null(a);
	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);
	if (use_reg)
		assert_int_equal(ubdma_reg_get(ctx, a, HP, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &r), 0);
	else
		assert_int_equal(ubdma_umem_lock(ctx, a, HP, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u), 0);
	CHECK(count_min(a, HP) == 1, "the %s's pages count %u, want 1", what, count_min(a, HP));

	if (!map_at(a, HP, to)) { /* no free hugepage at this moment */
		if (use_reg)
			ubdma_reg_put(r);
		else
			ubdma_umem_unlock(u);
		ubdma_ctx_close(ctx);
		skip();
	}
	CHECK(count_max(a, HP) == 0, "rule 3: %s memory that replaced %s memory under a held %s counts %u, want 0",
	      names[to], names[from], what, count_max(a, HP));
	CHECK(dirty(a, HP, "rule 3: the replacing mapping") == 0, "rule 3: the replacing memory is locked or DONTFORK");
	CHECK(ubdma_vtoiova(ctx, a) == UBDMA_BAD_IOVA, "rule 3: the replacing memory translates to %#llx via the old %s",
	      (unsigned long long)ubdma_vtoiova(ctx, a), what);

	assert_int_equal(ubdma_wire(a, nlen, 0), 0);
	CHECK(count_min(a, nlen) == 1 && count_max(a, nlen) == 1,
	      "rule 3: one wire of the new %s pages counts %u..%u, want 1", names[to], count_min(a, nlen),
	      count_max(a, nlen));
	if (use_reg)
		ubdma_reg_put(r);
	else
		ubdma_umem_unlock(u);
	assert_int_equal(ubdma_rcache_flush(ctx), 0);
	CHECK(count_min(a, nlen) == 1 && count_max(a, nlen) == 1,
	      "rule 3: after the old %s %s was released the new %s pages count %u..%u, want 1", names[from], what,
	      names[to], count_min(a, nlen), count_max(a, nlen));
	/* the kernel never sets VM_LOCKED on hugetlb mappings (mm/mlock.c, mlock_fixup()): there the
	 * wiring shows as VM_DONTFORK only */
	CHECK(vm_flag_at(a, to == HUGE ? "dc" : "lo") == 1, "rule 3: the old %s's release unwired the new %s pages at %p",
	      what, names[to], a);
	if (to == ANON) {
		CHECK(count_max(a + nlen, HP - nlen) == 0, "rule 3: pages past the new wiring count %u, want 0",
		      count_max(a + nlen, HP - nlen));
		CHECK(dirty(a + nlen, HP - nlen, "rule 3: past the new wiring") == 0,
		      "rule 3: pages nobody wires are locked or DONTFORK");
	}
	int rc = ubdma_unwire(a, nlen, 0);
	CHECK(rc == 0, "rule 3: the new holder's balanced unwire of its %s pages returned %d (%s), want 0", names[to],
	      rc, strerror(rc));
	CHECK(count_max(a, HP) == 0, "rule 3: after the new holder's unwire the pages count %u, want 0",
	      count_max(a, HP));
	CHECK(dirty(a, HP, "rule 3: after every release") == 0, "rule 3: locked or DONTFORK after every release");
	ubdma_ctx_close(ctx);
	assert_int_equal(failed, 0);
}

static void rule3_cookie_huge_to_4k(void **state)
{
	(void)state;
	rule3(HUGE, ANON, 0);
}

static void rule3_cookie_4k_to_huge(void **state)
{
	(void)state;
	rule3(ANON, HUGE, 0);
}

static void rule3_reg_huge_to_4k(void **state)
{
	(void)state;
	rule3(HUGE, ANON, 1);
}

static void rule3_reg_4k_to_huge(void **state)
{
	(void)state;
	rule3(ANON, HUGE, 1);
}

/* ------------------------------------------------------------------ rule 4 */

/* Move [from, from + len) to to, and put the reservation back where it was. */
static void move(char *from, char *to, size_t len)
{
	assert_ptr_equal(mremap(from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to), to);
	assert_ptr_equal(mmap(from, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE,
			      -1, 0),
			 from);
}

static void rule4_wire(void **state)
{
	(void)state;
	size_t len = 16 * PG;
	ubdma_ctx_t *ctx;
	char *a = map_at(fresh(len), len, ANON), *b = fresh(len);
	assert_non_null(a);
	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);

	assert_int_equal(ubdma_wire(a, len, 0), 0);
	move(a, b, len);
	int rc = ubdma_unwire(a, len, 0);
	CHECK(rc == 0, "rule 4: the unwire of a range that mremap moved away returned %d (%s), want 0", rc,
	      strerror(rc));
	ubdma_ctx_close(ctx);
	CHECK(count_max(a, len) == 0 && count_max(b, len) == 0,
	      "rule 4: after unwire and close the old range counts %u, the new one %u, want 0", count_max(a, len),
	      count_max(b, len));
	CHECK(vm_offenders(0, 0, 1, stdout, "rule 4 (wire): after unwire + ctx close", 8) == 0,
	      "rule 4: a VMA of the process is still VM_LOCKED or VM_DONTFORK after a moved wiring was released");
	assert_int_equal(failed, 0);
}

static void rule4_cookie(void **state)
{
	(void)state;
	size_t len = 16 * PG;
	ubdma_ctx_t *ctx;
	ubdma_umem_t *u;
	char *a = map_at(fresh(len), len, ANON), *b = fresh(len);
	assert_non_null(a);
	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);

	assert_int_equal(ubdma_umem_lock(ctx, a, len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u), 0);
	move(a, b, len);
	ubdma_umem_unlock(u);
	ubdma_ctx_close(ctx);
	CHECK(count_max(a, len) == 0 && count_max(b, len) == 0,
	      "rule 4: after unlock and close the old range counts %u, the new one %u, want 0", count_max(a, len),
	      count_max(b, len));
	CHECK(vm_offenders(0, 0, 1, stdout, "rule 4 (cookie): after unlock + ctx close", 8) == 0,
	      "rule 4: a VMA of the process is still VM_LOCKED or VM_DONTFORK after a moved cookie was unlocked");
	assert_int_equal(failed, 0);
}

/* More moved registrations than a fixed table of pending fix-ups can hold (today's holds 32). */
static void rule4_reg_many(void **state)
{
	(void)state;
	enum { N = 48 };
	size_t len = 4 * PG;
	ubdma_ctx_t *ctx;
	char *a = fresh(N * 2 * len), *b = fresh(N * 2 * len);
	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);

	for (int i = 0; i < N; i++) {
		ubdma_reg_t *r;
		char *p = map_at(a + (size_t)i * 2 * len, len, ANON);
		assert_non_null(p);
		assert_int_equal(ubdma_reg_get(ctx, p, len, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &r), 0);
		ubdma_reg_put(r); /* cached while it moves */
	}
	for (int i = 0; i < N; i++)
		move(a + (size_t)i * 2 * len, b + (size_t)i * 2 * len, len);
	assert_int_equal(ubdma_rcache_flush(ctx), 0);
	ubdma_ctx_close(ctx);
	CHECK(count_max(a, N * 2 * len) == 0 && count_max(b, N * 2 * len) == 0,
	      "rule 4: after flush and close the old ranges count %u, the moved ones %u, want 0",
	      count_max(a, N * 2 * len), count_max(b, N * 2 * len));
	CHECK(vm_offenders(0, 0, 1, stdout, "rule 4 (48 moved registrations): after flush + ctx close", 8) == 0,
	      "rule 4: moved registrations stay VM_LOCKED or VM_DONTFORK after the cache was flushed and closed");
	assert_int_equal(failed, 0);
}

/* ------------------------------------------------------------------ rule 5 */

/* A MAP_SHARED mapping of 4 pages over a file of 1 page, in a real file system (not tmpfs). */
static char *file_past_eof(size_t len)
{
	/* /var/tmp is on disk on a host; the test-bed guest has only its initramfs (/tmp there) */
	char path[] = "/var/tmp/ubdma-wire-follow-XXXXXX", alt[] = "/tmp/ubdma-wire-follow-XXXXXX";
	int fd = mkstemp(path);
	char *a = fresh(len), *p;

	if (fd < 0 && errno == ENOENT && (fd = mkstemp(alt)) >= 0)
		memcpy(path, alt, sizeof(alt));

	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(ftruncate(fd, (off_t)PG), 0);
	p = mmap(a, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
	close(fd);
	assert_ptr_equal(p, a);
	memset(p, 1, PG); /* the one page the file has */
	return p;
}

static void rule5_file_past_eof(void **state)
{
	(void)state;
	size_t len = 4 * PG;
	static const int flags[] = { 0, UBDMA_WIRE_WRITE, UBDMA_WIRE_HOLESOK };

	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		char *a = file_past_eof(len);
		int rc = ubdma_wire(a, len, flags[i]);
		/* HOLESOK may also take the pages past EOF for holes and wire the one page the file has */
		int holes_ok = flags[i] == UBDMA_WIRE_HOLESOK && rc == 0 && ubdma_wire_count(a) == 1 &&
			       count_max(a + PG, len - PG) == 0;
		CHECK(rc == EFAULT || holes_ok,
		      "rule 5: wiring a shared file mapping past EOF (flags %#x) returned %d (%s), want EFAULT%s",
		      flags[i], rc, strerror(rc), flags[i] == UBDMA_WIRE_HOLESOK ? " (or 0 with only page 0 wired)" : "");
		if (holes_ok)
			CHECK(vm_locked_kb((uintptr_t)a + PG, (uintptr_t)a + len) <= 0,
			      "rule 5: HOLESOK wired page 0 but the kernel has pages past EOF locked");
		if (rc == 0)
			ubdma_unwire(a, len, flags[i]);
		CHECK(count_max(a, len) == 0, "rule 5: the failed wire left count %u", count_max(a, len));
		CHECK(dirty(a, len, "rule 5: after the failed wire") == 0,
		      "rule 5: the failed wire (flags %#x) left the prefix locked or DONTFORK", flags[i]);
	}

	ubdma_ctx_t *ctx;
	ubdma_umem_t *u = NULL;
	char *a = file_past_eof(len);
	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);
	int rc = ubdma_umem_lock(ctx, a, len, UBDMA_UMEM_READ, &u);
	CHECK(rc == EFAULT, "rule 5: umem_lock past EOF returned %d (%s), want EFAULT", rc, strerror(rc));
	if (rc == 0)
		ubdma_umem_unlock(u);
	CHECK(count_max(a, len) == 0 && dirty(a, len, "rule 5: after the failed umem_lock") == 0,
	      "rule 5: the failed umem_lock left a count (%u) or a lock", count_max(a, len));
	ubdma_ctx_close(ctx);
	assert_int_equal(failed, 0);
}

/* ------------------------------------------------------------------ rule 7 */

static void rule7_zero_length_wire(void **state)
{
	(void)state;
	char *a = map_at(fresh(PG), PG, ANON);
	assert_non_null(a);

	int rc = ubdma_wire(a, 0, 0);
	CHECK(rc == 0, "rule 7: ubdma_wire(p, 0, 0) returned %d (%s), want 0 (as mlock(2) and vslock(9))", rc,
	      strerror(rc));
	CHECK(ubdma_wire_count(a) == 0, "rule 7: a zero-length wire counts %u", ubdma_wire_count(a));
	CHECK(dirty(a, PG, "rule 7: after a zero-length wire") == 0, "rule 7: a zero-length wire locked a page");
	assert_int_equal(failed, 0);
}

static void cb_count(void *arg, ubdma_seg_t *segs, int nseg, int error)
{
	(void)segs;
	(void)error;
	*(int *)arg = nseg + 1;
}

static void rule7_bad_loads(void **state)
{
	(void)state;
	ubdma_ctx_t *ctx;
	ubdma_tag_t *tag;
	ubdma_map_t *map;
	ubdma_seg_t segs[16];
	int nseg = -1, ran = 0, rc;
	void *wrap = (void *)(UINTPTR_MAX - 100);
	struct iovec iov = { wrap, 4096 };

	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx), 0);
	assert_int_equal(ubdma_tag_create(ubdma_ctx_tag(ctx), 1, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, 65536, 16, 65536, 0,
					  &tag),
			 0);
	assert_int_equal(ubdma_map_create(tag, 0, &map), 0);

	rc = ubdma_map_load_sg(tag, map, wrap, 4096, segs, &nseg, UBDMA_NOWAIT);
	CHECK(rc == EINVAL, "rule 7: load_sg of %p + 4096 (wraps past 2^64) returned %d (%s) with %d segments, want "
			    "EINVAL", wrap, rc, strerror(rc), nseg);
	if (rc == 0)
		ubdma_map_unload(tag, map);
	nseg = -1;
	rc = ubdma_map_load_sg(tag, map, NULL, 4096, segs, &nseg, UBDMA_NOWAIT);
	CHECK(rc == EINVAL, "rule 7: load_sg of NULL + 4096 returned %d (%s) with %d segments, want EINVAL", rc,
	      strerror(rc), nseg);
	if (rc == 0)
		ubdma_map_unload(tag, map);
	rc = ubdma_map_load(tag, map, wrap, 4096, cb_count, &ran, UBDMA_NOWAIT);
	CHECK(rc == EINVAL && !ran, "rule 7: load of a wrapping range returned %d (%s), callback %s, want EINVAL and "
				    "no callback", rc, strerror(rc), ran ? "ran" : "did not run");
	if (rc == 0)
		ubdma_map_unload(tag, map);
	ran = 0;
	rc = ubdma_map_load(tag, map, NULL, 4096, cb_count, &ran, UBDMA_NOWAIT);
	CHECK(rc == EINVAL && !ran, "rule 7: load of NULL + 4096 returned %d (%s), want EINVAL", rc, strerror(rc));
	if (rc == 0)
		ubdma_map_unload(tag, map);
	ran = 0;
	rc = ubdma_map_load_iov(tag, map, &iov, 1, cb_count, &ran, UBDMA_NOWAIT);
	CHECK(rc == EINVAL && !ran, "rule 7: load_iov of a wrapping piece returned %d (%s), want EINVAL", rc,
	      strerror(rc));
	if (rc == 0)
		ubdma_map_unload(tag, map);

	assert_int_equal(ubdma_map_destroy(tag, map), 0);
	assert_int_equal(ubdma_tag_destroy(tag), 0);
	ubdma_ctx_close(ctx);
	assert_int_equal(failed, 0);
}

#define CASE(f) cmocka_unit_test_setup_teardown(f, setup_case, teardown_case)

int main(void)
{
	const struct CMUnitTest tests[] = {
		CASE(rule1_wire),
		CASE(rule1_cookie),
		CASE(rule1_reg),
		CASE(rule3_cookie_huge_to_4k),
		CASE(rule3_cookie_4k_to_huge),
		CASE(rule3_reg_huge_to_4k),
		CASE(rule3_reg_4k_to_huge),
		CASE(rule4_wire),
		CASE(rule4_cookie),
		CASE(rule4_reg_many),
		CASE(rule5_file_past_eof),
		CASE(rule7_zero_length_wire),
		CASE(rule7_bad_loads),
	};
	return cmocka_run_group_tests(tests, setup_group, NULL);
}
