/*
 * test_nosyscall.c - the hot paths make no system call: load + unload of registered buffers
 * (4 KiB, 64 KiB, 1 MiB; 4 KiB and, with hugepages, 2 MiB backing), load_iov of 16 pieces, load_sg,
 * sync with and without bounce pages.  A child process sets everything up, then installs a
 * seccomp filter that traps every system call but exit_group; a trapped call records its number
 * in shared memory and the child exits with status 3.  The parent checks the child's status.
 */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "helpers.h"

#define MAX UBDMA_MAXADDR

static volatile long *trapped; /* shared with the parent */

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	trapped[0] = si->si_syscall;
	syscall(SYS_exit_group, 3); /* exit_group is the one call allowed */
}

static void cb_count(void *arg, ubdma_seg_t *segs, int nseg, int error)
{
	(void)segs;
	*(int *)arg += error ? -1000 : nseg;
}

static int seccomp_trap_all(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_exit_group, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };
	struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };

	sigaction(SIGSYS, &sa, NULL);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

/* The child: set up on the fixture's backend, then run the hot paths under the filter. */
static int child(struct fx *pf, int huge)
{
	/* a context of its own: the parent's phys context reads the parent's pagemap */
	struct fx cf = { .backend = pf->backend }, *f = &cf;
	struct rbuf b;
	ubdma_tag_t *t;
	ubdma_map_t *m, *mb;
	ubdma_seg_t segs[512];
	struct iovec iov[16];
	int n = 0, cnt = 0;
	char *u = mem_get(PG, 0);

	if (ubdma_ctx_open(f->backend, &f->ctx))
		return 9;
	rbuf_get(f, &b, 2 * HUGE, huge);
	if (ubdma_tag_create(ubdma_ctx_tag(f->ctx), 1, 0, MAX, MAX, 1 << 20, 512, 1 << 20, 0, &t) ||
	    ubdma_map_create(t, 0, &m) || ubdma_map_create(t, 0, &mb))
		return 4;
	for (int i = 0; i < 16; i++)
		iov[i] = (struct iovec){ b.p + (size_t)i * 2 * PG, PG };
	/* the bounce map is loaded before the filter: its pool is made then */
	if (ubdma_map_load(t, mb, u, PG, cb_count, &cnt, UBDMA_NOWAIT) || !mb->bpages)
		return 5;
	if (seccomp_trap_all())
		return 6;
	for (int rep = 0; rep < 1000; rep++) {
		static const size_t lens[] = { PG, 64 * 1024, 1 << 20 };
		for (int i = 0; i < 3; i++) {
			ubdma_map_load(t, m, b.p, lens[i], cb_count, &cnt, UBDMA_NOWAIT);
			ubdma_map_unload(t, m);
		}
		ubdma_map_load_iov(t, m, iov, 16, cb_count, &cnt, UBDMA_NOWAIT);
		ubdma_map_sync(t, m, UBDMA_SYNC_PREWRITE);
		ubdma_map_sync(t, m, UBDMA_SYNC_POSTREAD);
		ubdma_map_unload(t, m);
		ubdma_map_load_sg(t, m, b.p + 100, 8 * PG, segs, &n, UBDMA_NOWAIT);
		ubdma_map_unload(t, m);
		ubdma_map_sync(t, mb, UBDMA_SYNC_PREWRITE);
		ubdma_map_sync(t, mb, UBDMA_SYNC_POSTREAD);
		(void)ubdma_vtoiova(f->ctx, b.p);
	}
	syscall(SYS_exit_group, cnt > 0 ? 0 : 7);
	return 8;
}

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

static void run(void **state, int huge)
{
#ifdef UNDER_TSAN
	/* TSan's runtime makes system calls of its own (shadow memory, its background thread) on
	 * instrumented accesses; the rule is proven by the gcc, clang and ASan builds */
	(void)state;
	(void)huge;
	(void)child;
	print_message("SKIP: under ThreadSanitizer the runtime itself makes system calls\n");
	skip();
#else
	struct fx *f = FX_GET(state, huge ? 2 : 0);

	trapped = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(trapped != MAP_FAILED);
	trapped[0] = -1;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(child(f, huge));
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 3)
		print_message("a hot path made system call %ld\n", trapped[0]);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	munmap((void *)trapped, PG);
#endif
}

static void t_nosyscall_4k(void **state)
{
	struct fx *f = *state;
	run(state, f->backend == UBDMA_BACKEND_PHYS);
}

static void t_nosyscall_2m(void **state)
{
	run(state, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		BACKEND_TESTS(t_nosyscall_4k),
		BACKEND_TESTS(t_nosyscall_2m),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
