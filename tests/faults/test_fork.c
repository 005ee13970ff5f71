/*
 * test_fork.c - fork(2) and exec while registrations and maps are live (issue 10).
 *
 * Wired ranges are MADV_DONTFORK (lib/wire), so that a child of fork(2) never shares a pinned page
 * copy-on-write with the parent: if it did, the first write by either side after the fork would
 * give the *parent* a fresh page while the device keeps the old, pinned one.  Cases:
 *   child_sees_nothing  the child has no mapping at the registered and DMA-memory addresses
 *                       (/proc/self/maps), a write there kills it with SIGSEGV, and it can open a
 *                       context and register memory of its own;
 *   parent_pins_hold    after the fork, the parent writes its registered pages: the physical pages
 *                       (pagemap, as root) are the ones pinned before the fork, the translations
 *                       and the bytes are unchanged, and the wire counts too;
 *   child_writes_shared a child writes memory the parent shares with it copy-on-write right next
 *                       to a registered page, and exits: the parent's registered neighbours keep
 *                       their physical pages;
 *   exec                a child execs: the new image has nothing locked (VmLck 0), and the
 *                       parent's registrations are intact afterwards.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <ubdma/ubdma.h>

#define PG 4096UL
#define NPG 16

static uint64_t pfn_of(const void *p)
{
	uint64_t e = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	if (pread(fd, &e, 8, (off_t)((uintptr_t)p / PG * 8)) != 8)
		e = 0;
	close(fd);
	return (e >> 63) ? (e & ((1ULL << 55) - 1)) : 0;
}

/* Whether [p, p + len) overlaps a mapping of this process. */
static int is_mapped(const void *p, size_t len)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	int hit = 0;
	uintptr_t a = (uintptr_t)p, b = a + len;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx", &s, &e) == 2 && s < b && e > a)
			hit = 1;
	}
	fclose(f);
	return hit;
}

struct live {
	ubdma_ctx_t *ctx;
	char *buf;	     /* NPG pages; pages 4..11 locked in a cookie */
	ubdma_umem_t *u;
	ubdma_tag_t *tag;
	ubdma_map_t *map;
	void *mem;	     /* DMA memory */
	ubdma_map_t *mmap_;
	ubdma_reg_t *reg;    /* registration of pages 12..15 */
	uint64_t iova[NPG], pfn[NPG];
};

static void cb(void *arg, ubdma_seg_t *segs, int nseg, int error)
{
	(void)segs;
	*(int *)arg = error ? -error : nseg;
}

static void live_up(struct live *l)
{
	int nseg = 0;

	assert_int_equal(ubdma_ctx_open(UBDMA_BACKEND_VA, &l->ctx), 0);
	l->buf = mmap(NULL, NPG * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(l->buf != MAP_FAILED);
	memset(l->buf, 0x5a, NPG * PG);
	assert_int_equal(ubdma_umem_lock(l->ctx, l->buf + 4 * PG, 8 * PG, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &l->u), 0);
#ifdef HAVE_RCACHE
	assert_int_equal(ubdma_reg_get(l->ctx, l->buf + 12 * PG, 4 * PG, UBDMA_UMEM_WRITE, &l->reg), 0);
#else
	assert_int_equal(ubdma_umem_lock(l->ctx, l->buf + 12 * PG, 4 * PG, UBDMA_UMEM_WRITE, (ubdma_umem_t **)&l->reg), 0);
#endif
	assert_int_equal(ubdma_tag_create(ubdma_ctx_tag(l->ctx), 1, 0, UBDMA_MAXADDR, UBDMA_MAXADDR, 4 * PG, 8, 4 * PG,
					  UBDMA_ALLOCNOW, &l->tag), 0);
	assert_int_equal(ubdma_map_create(l->tag, 0, &l->map), 0);
	assert_int_equal(ubdma_map_load(l->tag, l->map, l->buf + 100, 2 * PG, cb, &nseg, UBDMA_NOWAIT), 0);
	assert_true(nseg > 0);
	assert_int_equal(ubdma_mem_alloc(l->tag, &l->mem, UBDMA_ZERO, &l->mmap_), 0);
	for (int i = 4; i < NPG; i++) {
		l->iova[i] = ubdma_vtoiova(l->ctx, l->buf + i * PG);
		l->pfn[i] = pfn_of(l->buf + i * PG);
		assert_int_not_equal(l->iova[i], UBDMA_BAD_IOVA);
	}
}

static void live_check(struct live *l, unsigned char byte)
{
	for (int i = 4; i < NPG; i++) {
		assert_int_equal(ubdma_vtoiova(l->ctx, l->buf + i * PG), l->iova[i]);
		assert_true(ubdma_wire_count(l->buf + i * PG) >= 1);
		/* the page pinned before the fork is still the parent's page */
		assert_int_equal(pfn_of(l->buf + i * PG), l->pfn[i]);
		assert_int_equal((unsigned char)l->buf[i * PG + 17], byte);
	}
}

static void live_down(struct live *l)
{
	ubdma_map_unload(l->tag, l->map);
	assert_int_equal(ubdma_map_destroy(l->tag, l->map), 0);
	ubdma_mem_free(l->tag, l->mem, l->mmap_);
	assert_int_equal(ubdma_tag_destroy(l->tag), 0);
#ifdef HAVE_RCACHE
	ubdma_reg_put(l->reg);
#else
	ubdma_umem_unlock((ubdma_umem_t *)l->reg);
#endif
	ubdma_umem_unlock(l->u);
	ubdma_ctx_close(l->ctx);
	for (int i = 0; i < NPG; i++)
		assert_int_equal(ubdma_wire_count(l->buf + i * PG), 0);
	munmap(l->buf, NPG * PG);
}

static int wait_child(pid_t pid)
{
	int st = 0;

	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return st;
}

/* The child: none of the parent's wired memory, SIGSEGV on a write there, a context of its own. */
static void test_child_sees_nothing(void **state)
{
	(void)state;
	struct live l = { 0 };

	live_up(&l);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int bad = 0;
		bad |= is_mapped(l.buf + 4 * PG, 12 * PG) != 0;	/* cookie + registration */
		bad |= (is_mapped(l.mem, 4 * PG) != 0) << 1;	/* DMA memory */
		bad |= (is_mapped(l.buf, 4 * PG) != 1) << 2;	/* the unwired head is shared as usual */
		/* a context and a registration of the child's own work */
		ubdma_ctx_t *c;
		ubdma_umem_t *u;
		char *m = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (ubdma_ctx_open(UBDMA_BACKEND_VA, &c) || ubdma_umem_lock(c, m, 4 * PG, UBDMA_UMEM_READ, &u) ||
		    ubdma_vtoiova(c, m) == UBDMA_BAD_IOVA)
			bad |= 8;
		else {
			ubdma_umem_unlock(u);
			ubdma_ctx_close(c);
		}
		/* and a write to the parent's registered page kills it */
		pid_t g = fork();
		if (g == 0) {
			signal(SIGSEGV, SIG_DFL); /* not cmocka's handler */
			l.buf[5 * PG] = 1;
			_exit(0);
		}
		int st = wait_child(g);
		bad |= !(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV) << 4;
		_exit(bad);
	}
	int st = wait_child(pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		fail_msg("child: status %#x (bits: 1 registered range mapped, 2 DMA memory mapped, 4 head not "
			 "shared, 8 own context failed, 16 no SIGSEGV on a write)", st);
	live_check(&l, 0x5a);
	live_down(&l);
}

/* After the fork the parent writes its registered pages: no copy-on-write, the pins hold. */
static void test_parent_pins_hold(void **state)
{
	(void)state;
	struct live l = { 0 };
	int p[2];
	char c = 0;

	live_up(&l);
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[1]);
		/* stay alive while the parent writes */
		_exit(read(p[0], &c, 1) == 1 ? 0 : 1);
	}
	close(p[0]);
	memset(l.buf + 4 * PG, 0xc3, 12 * PG);
	live_check(&l, 0xc3);
	assert_int_equal(write(p[1], "x", 1), 1);
	close(p[1]);
	assert_int_equal(wait_child(pid), 0);
	live_check(&l, 0xc3);
	live_down(&l);
}

/* A child writes the unregistered pages it shares with the parent, right beside registered ones. */
static void test_child_writes_shared(void **state)
{
	(void)state;
	struct live l = { 0 };

	live_up(&l);
	uint64_t head_pfn = pfn_of(l.buf + 3 * PG);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		memset(l.buf, 0x11, 4 * PG); /* copy-on-write in the child only */
		_exit(0);
	}
	assert_int_equal(wait_child(pid), 0);
	live_check(&l, 0x5a);
	assert_int_equal((unsigned char)l.buf[3 * PG], 0x5a);
	if (head_pfn)
		assert_int_equal(pfn_of(l.buf + 3 * PG), head_pfn);
	live_down(&l);
}

/* exec after fork: the new image starts with nothing locked. */
static void test_exec(void **state)
{
	(void)state;
	struct live l = { 0 };

	live_up(&l);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl("/proc/self/exe", "test_fork", "--exec-child", (char *)NULL);
		_exit(126);
	}
	int st = wait_child(pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		fail_msg("exec'd child: status %#x (1: VmLck not 0)", st);
	live_check(&l, 0x5a);
	live_down(&l);
}

static int exec_child(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	long kb = -1;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmLck: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	printf("# exec'd child: VmLck %ld kB\n", kb);
	return kb == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_child_sees_nothing),
		cmocka_unit_test(test_parent_pins_hold),
		cmocka_unit_test(test_child_writes_shared),
		cmocka_unit_test(test_exec),
	};

	if (argc > 1 && !strcmp(argv[1], "--exec-child"))
		return exec_child();
	setenv("UBDMA_RCACHE_MONITOR", "explicit", 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
