/*
 * test_wire.c - ubdma_wire()/ubdma_unwire(): vslock(9) rounding, EINVAL/EFAULT/ENOMEM, nested
 * counts checked through smaps Locked:, HOLESOK/NOHOLES, WRITE intent, MADV_DONTFORK, hugetlb
 * rounding, all or nothing.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include <cmocka.h>

#include <ubdma/ubdma.h>

#include "../testutil.h"
#include "wire/monitor.h"
#include "wire/vma.h"
#include "wire/wire.h"

#define PG 4096

static void test_rounding(void **state)
{
	(void)state;
	char *b = anon_map(4 * PG);
	assert_non_null(b);
	/* [b + 100, b + 5100) touches pages 0 and 1, not 2 */
	assert_int_equal(ubdma_wire(b + 100, 5000, 0), 0);
	assert_int_equal(ubdma_wire_count(b), 1);
	assert_int_equal(ubdma_wire_count(b + PG + PG - 1), 1);
	assert_int_equal(ubdma_wire_count(b + 2 * PG), 0);
	assert_int_equal(smaps_locked_kb(b, 4 * PG), 8);
	assert_int_equal(ubdma_unwire(b + 100, 5000, 0), 0);
	assert_int_equal(ubdma_wire_count(b), 0);
	assert_int_equal(smaps_locked_kb(b, 4 * PG), 0);
	/* one byte wires one page */
	assert_int_equal(ubdma_wire(b + 3 * PG + 17, 1, 0), 0);
	assert_int_equal(smaps_locked_kb(b, 4 * PG), 4);
	assert_int_equal(ubdma_unwire(b + 3 * PG + 17, 1, 0), 0);
	munmap(b, 4 * PG);
}

static void test_nesting(void **state)
{
	(void)state;
	char *b = anon_map(8 * PG);
	assert_non_null(b);
	assert_int_equal(ubdma_wire(b, 8 * PG, 0), 0);
	assert_int_equal(ubdma_wire(b + 2 * PG, 2 * PG, 0), 0);
	assert_int_equal(ubdma_wire_count(b + 2 * PG), 2);
	assert_int_equal(smaps_locked_kb(b, 8 * PG), 32);
	/* Linux mlock would unlock everything here; ubdma keeps the inner range locked */
	assert_int_equal(ubdma_unwire(b, 8 * PG, 0), 0);
	assert_int_equal(smaps_locked_kb(b, 8 * PG), 8);
	assert_int_equal(ubdma_wire_count(b), 0);
	assert_int_equal(ubdma_wire_count(b + 3 * PG), 1);
	assert_int_equal(ubdma_unwire(b + 2 * PG, 2 * PG, 0), 0);
	assert_int_equal(smaps_locked_kb(b, 8 * PG), 0);
	munmap(b, 8 * PG);
}

static void test_einval(void **state)
{
	(void)state;
	char *b = anon_map(PG);
	/* wrap-around */
	assert_int_equal(ubdma_wire((void *)(UINTPTR_MAX - 100), 200, 0), EINVAL);
	assert_int_equal(ubdma_wire((void *)(UINTPTR_MAX - 100), 50, 0), EINVAL); /* rounding wraps */
	/* an empty range wires nothing and succeeds, as mlock(2) and vslock(9) do (rule 7) */
	assert_int_equal(ubdma_wire(b, 0, 0), 0);
	assert_int_equal(ubdma_wire(NULL, 0, 0), 0);
	assert_int_equal(ubdma_unwire(b, 0, 0), 0);
	assert_int_equal(ubdma_wire(b, PG, 0x100), EINVAL);
	assert_int_equal(ubdma_wire_count(b), 0);
	/* unwire of what is not wired changes nothing */
	assert_int_equal(ubdma_unwire(b, PG, 0), EINVAL);
	assert_int_equal(ubdma_unwire(b, PG, UBDMA_WIRE_HOLESOK), 0);
	assert_int_equal(ubdma_wire_count(b), 0);
	assert_string_not_equal(ubdma_last_error(), "");
	munmap(b, PG);
}

static void test_holes(void **state)
{
	(void)state;
	char *b = anon_map(3 * PG);
	assert_non_null(b);
	assert_int_equal(munmap(b + PG, PG), 0);
	/* NOHOLES (default): EFAULT and nothing wired, not even the first page */
	assert_int_equal(ubdma_wire(b, 3 * PG, UBDMA_WIRE_NOHOLES), EFAULT);
	assert_int_equal(ubdma_wire_count(b), 0);
	assert_int_equal(smaps_locked_kb(b, 3 * PG), 0);
	assert_non_null(strstr(ubdma_last_error(), "not mapped"));
	/* HOLESOK: the mapped pages are wired */
	assert_int_equal(ubdma_wire(b, 3 * PG, UBDMA_WIRE_HOLESOK), 0);
	assert_int_equal(ubdma_wire_count(b), 1);
	assert_int_equal(ubdma_wire_count(b + 2 * PG), 1);
	assert_int_equal(smaps_locked_kb(b, 3 * PG), 8);
	/* unwire without HOLESOK refuses the hole; with it, works */
	assert_int_equal(ubdma_unwire(b, 3 * PG, 0), EINVAL);
	assert_int_equal(ubdma_wire_count(b), 1);
	assert_int_equal(ubdma_unwire(b, 3 * PG, UBDMA_WIRE_HOLESOK), 0);
	assert_int_equal(smaps_locked_kb(b, 3 * PG), 0);
	/* PROT_NONE counts as a hole; a range entirely beyond user space faults */
	assert_int_equal(mprotect(b, PG, PROT_NONE), 0);
	assert_int_equal(ubdma_wire(b, PG, 0), EFAULT);
	assert_int_equal(ubdma_wire((void *)((uintptr_t)1 << 50), PG, 0), EFAULT);
	munmap(b, PG);
	munmap(b + 2 * PG, PG);
}

static void test_write_intent(void **state)
{
	(void)state;
	char path[] = "/tmp/ubdma-wire-XXXXXX";
	int fd = mkstemp(path);
	char page[PG];

	assert_true(fd >= 0);
	unlink(path);
	memset(page, 'f', sizeof(page));
	assert_int_equal(write(fd, page, PG), PG);
	/* read-only mapping: WRITE intent is EFAULT, read intent works */
	char *ro = mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(ro != MAP_FAILED);
	assert_int_equal(ubdma_wire(ro, PG, UBDMA_WIRE_WRITE), EFAULT);
	assert_int_equal(ubdma_wire_count(ro), 0);
	assert_int_equal(ubdma_wire(ro, PG, 0), 0);
	assert_int_equal(ubdma_unwire(ro, PG, 0), 0);
	munmap(ro, PG);
	/* private file mapping: after a read the page is the page cache's (pagemap bit 61 "file
	 * page or shared"); WRITE intent must break copy-on-write before wiring */
	char *pv = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	assert_true(pv != MAP_FAILED);
	assert_int_equal(*(volatile char *)pv, 'f');
	assert_true(pagemap_entry(pv) >> 61 & 1);
	assert_int_equal(ubdma_wire(pv, PG, UBDMA_WIRE_WRITE), 0);
	assert_false(pagemap_entry(pv) >> 61 & 1);
	assert_int_equal(pv[0], 'f'); /* content unchanged */
	assert_int_equal(ubdma_unwire(pv, PG, 0), 0);
	munmap(pv, PG);
	close(fd);
}

/*
 * WRITE intent on private anonymous memory (issue 21: the wire layer no longer populates such
 * pages itself when its mlock does, so this checks that the kernel's mlock breaks copy-on-write):
 * a page shared copy-on-write with a live child, and a page that was only read (the shared zero
 * page), are the process's own after the wiring (pagemap bit 56, "exclusively mapped"), and a
 * write keeps their frame.  Also when part of the range was wired before without write intent.
 */
static void test_write_intent_anon(void **state)
{
	(void)state;
	char *b = anon_map(4 * PG);
	int pfd[2], st;

	memset(b, 7, 2 * PG);	       /* pages 0-1 written, 2-3 only read: the zero page */
	(void)*(volatile char *)(b + 2 * PG);
	(void)*(volatile char *)(b + 3 * PG);
	assert_int_equal(ubdma_wire(b + 3 * PG, PG, 0), 0); /* wired before, read intent only */
	assert_int_equal(pipe(pfd), 0);
	pid_t pid = fork();
	if (pid == 0) { /* holds pages 0-2 copy-on-write until the parent is done */
		char c;
		close(pfd[1]);
		_exit(read(pfd[0], &c, 1) < 0);
	}
	close(pfd[0]);
	assert_false(pagemap_entry(b) >> 56 & 1); /* shared with the child */
	assert_int_equal(ubdma_wire(b, 4 * PG, UBDMA_WIRE_WRITE), 0);
	for (int i = 0; i < 4; i++) {
		uint64_t pa = pagemap_pa(b + i * PG);
		assert_true(pagemap_entry(b + i * PG) >> 56 & 1);
		b[i * PG] = 9;
		if (pa) /* frames read as 0 without CAP_SYS_ADMIN */
			assert_true(pagemap_pa(b + i * PG) == pa);
	}
	assert_int_equal(b[1], 7); /* content kept */
	close(pfd[1]);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_int_equal(ubdma_unwire(b, 4 * PG, 0), 0);
	assert_int_equal(ubdma_unwire(b + 3 * PG, PG, 0), 0);
	assert_int_equal(ubdma_wire_count(b + 3 * PG), 0);
	munmap(b, 4 * PG);
}

/*
 * A private mapping of a 2 MiB hugetlb memfd (issue 21: mlock's own population is its write
 * fault, and the end of the file is checked after the lock): a page only read is the file's page
 * (the shared mapping's frame); after a WRITE wiring it is a copy of its own, with the same bytes,
 * and a write through it does not reach the file.  Past the end of the file: a shared mapping
 * is EFAULT with nothing wired or locked, for READ and WRITE intent; a private one is EFAULT
 * where the kernel raises SIGBUS there (probed on a third mapping: so does 6.18).
 */
static void test_write_intent_hugetlb(void **state)
{
	(void)state;
	const size_t HP = 2 << 20;
	int fd = memfd_create("ubdma-wire-huge", MFD_HUGETLB | MFD_HUGE_2MB);

	if (fd < 0 || !hugepages_ensure(2048, 4) || ftruncate(fd, (off_t)(2 * HP))) {
		if (fd >= 0)
			close(fd);
		SKIP_WHY("no 2 MiB hugetlb memfd (needs free hugepages, root to reserve them)");
	}
	char *sh = mmap(NULL, 2 * HP, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	char *pv = mmap(NULL, 2 * HP, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	char *probe = mmap(NULL, 2 * HP, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	assert_true(sh != MAP_FAILED && pv != MAP_FAILED && probe != MAP_FAILED);
	/* hugetlbfs grows a file to a writable mapping's length at mmap: shrink it afterwards */
	assert_int_equal(ftruncate(fd, (off_t)HP), 0);
	memset(sh, 5, 64);
	assert_int_equal(*(volatile char *)pv, 5); /* a read: the file's page, mapped read-only */
	uint64_t file_pa = pagemap_pa(sh);
	if (file_pa)
		assert_true(pagemap_pa(pv) == file_pa);
	/* past the end of the file */
	assert_int_equal(ubdma_wire(sh, 2 * HP, UBDMA_WIRE_WRITE), EFAULT);
	assert_int_equal(ubdma_wire(sh, 2 * HP, 0), EFAULT);
	assert_int_equal(ubdma_wire_count(sh), 0);
	assert_int_equal(smaps_locked_kb(sh, 2 * HP), 0);
	int private_ok = madvise(probe, 2 * HP, MADV_POPULATE_WRITE) == 0;
	munmap(probe, 2 * HP);
	assert_int_equal(ubdma_wire(pv + HP, HP, UBDMA_WIRE_WRITE), private_ok ? 0 : EFAULT);
	if (private_ok)
		assert_int_equal(ubdma_unwire(pv + HP, HP, 0), 0);
	assert_int_equal(ubdma_wire_count(pv + HP), 0);
	assert_int_equal(smaps_locked_kb(pv, 2 * HP), 0);
	/* inside it: the private page is a copy of its own */
	assert_int_equal(ubdma_wire(pv, HP, UBDMA_WIRE_WRITE), 0);
	uint64_t own = pagemap_pa(pv);
	if (file_pa)
		assert_true(own && own != file_pa);
	assert_int_equal(pv[1], 5);
	pv[1] = 7;
	assert_int_equal(sh[1], 5);
	if (own)
		assert_true(pagemap_pa(pv) == own);
	assert_int_equal(ubdma_unwire(pv, HP, 0), 0);
	munmap(pv, 2 * HP);
	munmap(sh, 2 * HP);
	close(fd);
}

static void test_dontfork(void **state)
{
	(void)state;
	char *b = anon_map(2 * PG);
	int st;

	b[0] = 1;
	b[PG] = 2;
	assert_int_equal(ubdma_wire(b, PG, 0), 0);
	pid_t pid = fork();
	if (pid == 0) {
		/* the unwired page is inherited, the wired one is not mapped in the child */
		signal(SIGSEGV, SIG_DFL); /* cmocka's handler would catch it */
		if (b[PG] != 2)
			_exit(3);
		(void)*(volatile char *)b;
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (!WIFSIGNALED(st))
		fprintf(stderr, "child status %#x\n", st);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGSEGV);
	/* after the last unwire the page is inherited again */
	assert_int_equal(ubdma_unwire(b, PG, 0), 0);
	pid = fork();
	if (pid == 0)
		_exit(*(volatile char *)b == 1 ? 0 : 3);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	munmap(b, 2 * PG);
}

/* In a child without CAP_IPC_LOCK and a 64 KiB limit: ENOMEM, message, all or nothing. */
static void test_memlock_limit(void **state)
{
	(void)state;
	int st;
	pid_t pid = fork();

	if (pid == 0) {
		struct rlimit rl = { 64 * 1024, 64 * 1024 };
		char *b = anon_map(64 * PG);
		if (setrlimit(RLIMIT_MEMLOCK, &rl) || drop_ipc_lock())
			_exit(10);
		if (ubdma_wire(b, 8 * PG, 0))
			_exit(11);
		/* 8 pages wired, 16 more would exceed the 16-page limit: refused, counts unchanged */
		int err = ubdma_wire(b, 24 * PG, 0);
		if (err != ENOMEM)
			_exit(12);
		if (!strstr(ubdma_last_error(), "RLIMIT_MEMLOCK") || !strstr(ubdma_last_error(), "65536"))
			_exit(13);
		if (ubdma_wire_count(b) != 1 || ubdma_wire_count(b + 8 * PG) != 0)
			_exit(14);
		if (status_kb("VmLck") != 32)
			_exit(15);
		/* a second call past the end with a partial overlap: also all or nothing */
		if (ubdma_wire(b + 4 * PG, 60 * PG, 0) != ENOMEM || ubdma_wire_count(b + 4 * PG) != 1)
			_exit(16);
		if (ubdma_unwire(b, 8 * PG, 0) || status_kb("VmLck") != 0)
			_exit(17);
		/* exactly at the limit works */
		if (ubdma_wire(b, 16 * PG, 0))
			_exit(18);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void hugetlb_case(unsigned long kb)
{
	size_t hp = kb * 1024;
	char *h = huge_alloc(2 * hp, kb);

	if (!h) {
		char dir[96];
		snprintf(dir, sizeof(dir), "/sys/kernel/mm/hugepages/hugepages-%lukB", kb);
		if (access(dir, F_OK))
			SKIP_WHY("this kernel/CPU offers no %lu kB hugepage size (%s is missing); "
				 "hugetlb rounding is proven on the other size", kb, dir);
		SKIP_WHY("cannot get %lu kB hugepages: none free and none could be reserved (needs root "
			 "and a free, physically contiguous %lu MiB)", kb, kb / 1024);
	}
	/* a few bytes in the middle wire the whole hugepage, and only that one */
	assert_int_equal(ubdma_wire(h + 4096 + 5, 10, 0), 0);
	assert_int_equal(ubdma_wire_count(h), 1);
	assert_int_equal(ubdma_wire_count(h + hp - 1), 1);
	assert_int_equal(ubdma_wire_count(h + hp), 0);
	assert_int_equal(ubdma_wire(h + hp - 1, 2, UBDMA_WIRE_WRITE), 0);
	assert_int_equal(ubdma_wire_count(h), 2);
	assert_int_equal(ubdma_wire_count(h + 2 * hp - 1), 1);
	/* unwire rounds the same way, even from another offset in the page */
	assert_int_equal(ubdma_unwire(h + hp - 1, 2, 0), 0);
	assert_int_equal(ubdma_wire_count(h + hp), 0);
	assert_int_equal(ubdma_unwire(h + 12345, 1, 0), 0);
	assert_int_equal(ubdma_wire_count(h), 0);
	munmap(h, 2 * hp);
}

static void test_hugetlb_2m(void **state)
{
	(void)state;
	hugetlb_case(2048);
}

static void test_hugetlb_1g(void **state)
{
	(void)state;
	hugetlb_case(1048576);
}

/* Minor faults this thread took since the last call. */
static long thread_minflt(void)
{
	static long last;
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	long d = ru.ru_minflt - last;
	last = ru.ru_minflt;
	return d;
}

/*
 * A private hugetlb range whose count returned to zero stays registered with the monitor
 * (docs/wire.md section 14): unlocked, inherited by fork again, and refused to the
 * application's own userfaultfd (EBUSY); the next wiring's mlock finds its entries writable and
 * takes no write fault (an unregistration left them read-only: one fault a huge page).  Its
 * munmap returns (the monitor reads the event, which ends nothing) and nothing stays counted.
 */
static void test_hugetlb_kept_registered(void **state)
{
	(void)state;
	const size_t HP = 2 << 20, N = 8;

	if (!hugepages_ensure(2048, N))
		SKIP_WHY("no %zu free 2 MiB hugepages (needs root to reserve them)", N);
	char *h = mmap(NULL, N * HP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (h == MAP_FAILED)
		SKIP_WHY("cannot map %zu private 2 MiB hugepages: %s", N, strerror(errno));
	memset(h, 3, N * HP);
	/* two rounds: the first registers, the second warms the library's own allocations */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(ubdma_wire(h, N * HP, UBDMA_WIRE_WRITE), 0);
		assert_int_equal(ubdma_unwire(h, N * HP, 0), 0);
	}
	if (!wmon_watches_hugetlb()) {
		munmap(h, N * HP);
		SKIP_WHY("the monitor cannot register hugetlb here (%s)", wmon_desc());
	}
	assert_int_equal(ubdma_wire_count(h), 0);

	/* the application's own userfaultfd: the range has one already */
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	struct uffdio_api api = { .api = UFFD_API };
	if (fd >= 0 && ioctl(fd, UFFDIO_API, &api) == 0) {
		struct uffdio_register r = { .range = { (uintptr_t)h, N * HP }, .mode = UFFDIO_REGISTER_MODE_MISSING };
		assert_int_equal(ioctl(fd, UFFDIO_REGISTER, &r), -1);
		assert_int_equal(errno, EBUSY);
	}
	if (fd >= 0)
		close(fd);

	/* DONTFORK was undone: a child sees the bytes */
	int st;
	pid_t pid = fork();
	if (pid == 0)
		_exit(h[HP + 1] == 3 ? 0 : 3);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);

	/* the fork write-protected nothing of ours (the child's copy is its own); wire once more
	 * and measure the one after */
	assert_int_equal(ubdma_wire(h, N * HP, UBDMA_WIRE_WRITE), 0);
	assert_int_equal(ubdma_unwire(h, N * HP, 0), 0);
	thread_minflt();
	assert_int_equal(ubdma_wire(h, N * HP, UBDMA_WIRE_WRITE), 0);
	long faults = thread_minflt();
	assert_int_equal(ubdma_wire_count(h + (N - 1) * HP), 1);
	assert_int_equal(ubdma_unwire(h, N * HP, 0), 0);
	if (faults >= (long)N)
		fprintf(stderr, "the wiring took %ld minor faults on %zu huge pages\n", faults, N);
	/* a sanitizer's runtime faults in its own shadow and allocator pages on this thread: the
	 * count is checked in the builds without one (gcc, clang, release in CI) */
	if (!SANITIZED)
		assert_true(faults < (long)N);

	assert_int_equal(munmap(h, N * HP), 0);
	assert_int_equal(ubdma_wire_count(h), 0);
	assert_int_equal(ubdma_wire_count(h + (N - 1) * HP), 0);
}

/*
 * The mappings of a range, asked per mapping (PROCMAP_QUERY, Linux >= 6.11) and read from the
 * text of /proc/self/maps, agree: bounds, access, page size, hugetlb.  In an 8 MiB reservation:
 * read-write, read-only and inaccessible anonymous pages, a hole, a file mapping, a memfd and a
 * 2 MiB hugetlb page when the pool has one.
 */
static void same_vmas(uintptr_t a, uintptr_t b)
{
	struct vma *q = NULL, *t = NULL;
	int nq = -1, nt = -1;

	assert_int_equal(vma_collect(a, b, &q, &nq), 0);
	assert_int_equal(vma_collect_text(a, b, &t, &nt), 0);
	assert_int_equal(nq, nt);
	for (int i = 0; i < nq; i++) {
		assert_int_equal(q[i].start, t[i].start);
		assert_int_equal(q[i].end, t[i].end);
		assert_int_equal(q[i].readable, t[i].readable);
		assert_int_equal(q[i].writable, t[i].writable);
		assert_int_equal(q[i].pgsz, t[i].pgsz);
		assert_int_equal(q[i].hugetlb, t[i].hugetlb);
		assert_int_equal(q[i].shared, t[i].shared);
	}
	free(q);
	free(t);
}

static void test_vma_query_matches_text(void **state)
{
	(void)state;
	const size_t HP = 2 << 20;
	char *r = mmap(NULL, 4 * HP, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(r != MAP_FAILED);
	char *base = (char *)(((uintptr_t)r + HP - 1) & ~(uintptr_t)(HP - 1)); /* 3 aligned 2 MiB */
	struct vma *v;
	int nv, huge = 0;

	assert_true(mmap(base, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == base);
	assert_int_equal(mprotect(base + 4 * PG, PG, PROT_READ), 0);
	assert_int_equal(mprotect(base + 6 * PG, PG, PROT_NONE), 0);
	assert_int_equal(munmap(base + 9 * PG, 2 * PG), 0);
	int fd = open("/proc/self/exe", O_RDONLY);
	assert_true(fd >= 0);
	assert_true(mmap(base + 16 * PG, PG, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0) == base + 16 * PG);
	close(fd);
	int mfd = memfd_create("ubdma-vma", 0);
	assert_true(mfd >= 0);
	assert_int_equal(ftruncate(mfd, 4 * PG), 0);
	assert_true(mmap(base + 20 * PG, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, mfd, 0) == base + 20 * PG);
	close(mfd);
	int hfd = memfd_create("ubdma-vma-huge", MFD_HUGETLB | MFD_HUGE_2MB);
	if (hfd >= 0 && ftruncate(hfd, HP) == 0 &&
	    mmap(base + HP, HP, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, hfd, 0) == base + HP)
		huge = 1;
	if (hfd >= 0)
		close(hfd);

	/* the whole reservation, each piece, sub-page and unaligned ends, a hole alone */
	same_vmas((uintptr_t)r, (uintptr_t)r + 4 * HP);
	for (int i = 0; i < 24; i++)
		same_vmas((uintptr_t)base + (size_t)i * PG, (uintptr_t)base + (size_t)(i + 1) * PG);
	same_vmas((uintptr_t)base + 3 * PG, (uintptr_t)base + 12 * PG);
	same_vmas((uintptr_t)base + HP - PG, (uintptr_t)base + 2 * HP + PG);

	/* and they say what was mapped */
	assert_int_equal(vma_collect((uintptr_t)base, (uintptr_t)base + 24 * PG, &v, &nv), 0);
	assert_int_equal(nv, 9); /* rw, ro, rw, none, rw | hole | rw, file, reserved, memfd */
	assert_true(v[1].readable && !v[1].writable && v[1].start == (uintptr_t)base + 4 * PG);
	assert_true(!v[3].readable && !v[3].writable);
	assert_int_equal(v[4].end, (uintptr_t)base + 9 * PG);
	assert_int_equal(v[5].start, (uintptr_t)base + 11 * PG);
	assert_true(v[6].readable && !v[6].writable && v[6].start == (uintptr_t)base + 16 * PG);
	assert_true(!v[7].readable && v[7].end == (uintptr_t)base + 20 * PG);
	assert_true(v[8].writable && v[8].start == (uintptr_t)base + 20 * PG && v[8].pgsz == PG && !v[8].hugetlb);
	assert_true(v[8].shared && v[8].file && !v[0].shared && !v[0].file && !v[6].shared && v[6].file);
	free(v);
	if (huge) {
		assert_int_equal(vma_collect((uintptr_t)base + HP + 5 * PG, (uintptr_t)base + HP + 6 * PG, &v, &nv), 0);
		assert_int_equal(nv, 1);
		assert_true(v[0].hugetlb && v[0].pgsz == HP && v[0].start == (uintptr_t)base + HP);
		free(v);
	}
	/* beyond every mapping: none, and no error */
	assert_int_equal(vma_collect(UINTPTR_MAX - 2 * PG + 1, UINTPTR_MAX - PG + 1, &v, &nv), 0);
	assert_int_equal(nv, 0);
	free(v);

	/* a kernel with PROCMAP_QUERY must have been asked (6.11 and later) */
	struct utsname u;
	int major = 0, minor = 0;
	assert_int_equal(uname(&u), 0);
	sscanf(u.release, "%d.%d", &major, &minor);
	if (major > 6 || (major == 6 && minor >= 11))
		assert_int_equal(vma_uses_query(), 1);
	munmap(r, 4 * HP);
	if (!huge)
		SKIP_WHY("no free 2 MiB hugepage: the hugetlb mapping was not compared");
}

/* munmap of a wired range, then unwire: counts drop, nothing else to undo */
static void test_unmapped_while_wired(void **state)
{
	(void)state;
	char *b = anon_map(4 * PG);
	assert_int_equal(ubdma_wire(b, 4 * PG, 0), 0);
	assert_int_equal(munmap(b, 4 * PG), 0);
	assert_int_equal(ubdma_unwire(b, 4 * PG, 0), 0);
	assert_int_equal(ubdma_wire_count(b), 0);
}

/*
 * Watches taken out of address order: wire_watch() tries the place after the last fresh watch
 * first (a cache miss's usual case, docs/rcache.md step 8) and must fall back to the search when
 * that place is wrong.  Every watch is alive, an munmap ends its own and no other, a new watch
 * where one ended is alive, and the releases leave the others alive until their own.
 */
static void test_watch_order(void **state)
{
	(void)state;
	enum { N = 12 };
	static const int order[N] = { 5, 6, 7, 2, 1, 9, 0, 11, 3, 10, 4, 8 };
	char *m = anon_map(2 * N * PG);
	struct wire_ticket *t[N] = { 0 }, *again = NULL;
	uintptr_t s, e;

	for (int k = 0; k < N; k++) {
		int i = order[k], err = wire_watch(m + 2 * i * PG, PG, 0, &t[i], &s, &e);
		if (err == ENOTSUP && k == 0) {
			munmap(m, 2 * N * PG);
			SKIP_WHY("no monitor to watch with: %s", wmon_desc());
		}
		assert_int_equal(err, 0);
		assert_true(s == (uintptr_t)(m + 2 * i * PG) && e == s + PG);
	}
	for (int i = 0; i < N; i++)
		assert_true(wire_ticket_alive(t[i]));
	/* page 3's mapping goes (the monitor has read the event when munmap returns) */
	assert_int_equal(munmap(m + 6 * PG, PG), 0);
	wmon_sync();
	for (int i = 0; i < N; i++)
		assert_int_equal(wire_ticket_alive(t[i]), i != 3);
	assert_ptr_equal(mmap(m + 6 * PG, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
			      -1, 0), m + 6 * PG);
	assert_int_equal(wire_watch(m + 6 * PG, PG, 0, &again, &s, &e), 0);
	assert_true(wire_ticket_alive(again));
	/* released in another order: the rest stay alive */
	for (int k = N - 1; k >= 0; k--) {
		wire_release(t[order[k]]);
		t[order[k]] = NULL;
		for (int i = 0; i < N; i++)
			if (t[i] && i != 3)
				assert_true(wire_ticket_alive(t[i]));
		assert_true(wire_ticket_alive(again));
	}
	wire_release(again);
	munmap(m, 2 * N * PG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rounding),
		cmocka_unit_test(test_nesting),
		cmocka_unit_test(test_einval),
		cmocka_unit_test(test_holes),
		cmocka_unit_test(test_write_intent),
		cmocka_unit_test(test_write_intent_anon),
		cmocka_unit_test(test_write_intent_hugetlb),
		cmocka_unit_test(test_dontfork),
		cmocka_unit_test(test_memlock_limit),
		cmocka_unit_test(test_hugetlb_2m),
		cmocka_unit_test(test_hugetlb_1g),
		cmocka_unit_test(test_hugetlb_kept_registered),
		cmocka_unit_test(test_unmapped_while_wired),
		cmocka_unit_test(test_watch_order),
		cmocka_unit_test(test_vma_query_matches_text),
	};
	return cmocka_run_group_tests_name("wire", tests, NULL, NULL);
}
