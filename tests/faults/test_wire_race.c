/*
 * test_wire_race.c - a wiring whose mapping is replaced between its userfaultfd registration and
 * its mlock, and the new memory then moved away by mremap (issue 21: the race-model-guest failure
 * "violations: a 0 b 4", VMAs in the spare regions still VM_LOCKED after every holder released).
 *
 * The race model meets this interleaving once in many runs; here the fault.h hook plays the other
 * thread at the exact points, in the wiring thread, while it holds the wire lock:
 *  1. right after wire.c registered the range on the process's userfaultfd, a replacer thread maps
 *     fresh memory over it (mmap MAP_FIXED: the old, registered mapping goes, an UNMAP event is
 *     queued and the replacer sleeps until the monitor thread has read it); the hook waits until
 *     smaps shows the new mapping (no "uw" flag: not registered), so the mlock that follows locks
 *     memory nobody watches;
 *  2. right after that mlock, the hook lets the replacer, as soon as its mmap returned, move the
 *     new memory into a spare region with mremap (no event: it is not registered), and waits for
 *     the move for a while.
 * What must hold afterwards (docs/wire.md, "Replaced while being wired"): once the call returned
 * and the wiring was released, nothing in the slot or the spare is locked or DONTFORK and the
 * process's VmLck is back where it was.  Before the fix the replacer's mmap returned at the
 * monitor's read(), the move came before the event was applied, and the spare kept VM_LOCKED.
 * Flags 0 and UBDMA_WIRE_WRITE (whose pre-fault is mlock's own population) both run.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <ubdma/ubdma.h>

#include "fault.h"
#include "vmcheck.h"

#define SPAN (4UL << 20)
#define LEN (64UL << 10)

static uintptr_t slot, spare;

/* The replacer's state, under mu: what it was told and what it did. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int go_replace, go_move, replaced, moved, move_err;
static int stage; /* hook: 0 waits for the registration, 1 for the mlock, 2 done */
/* for the failure report: when each step happened (CLOCK_MONOTONIC) and how the hook's wait ended */
static int hook2_rc;
static double t_mmap_ret, t_moved, t_wire_ret, t_hook2;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *replacer(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	while (!go_replace)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	void *p = mmap((void *)slot, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	t_mmap_ret = now();
	pthread_mutex_lock(&mu);
	replaced = p == (void *)slot ? 1 : -1;
	while (!go_move)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	p = mremap((void *)slot, LEN, LEN, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)spare);
	pthread_mutex_lock(&mu);
	move_err = p == MAP_FAILED ? errno : 0;
	t_moved = now();
	moved = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	return NULL;
}

static void hook(enum fault_point at, uintptr_t s, size_t len)
{
	if (s >= slot + LEN || s + len <= slot)
		return;
	if (at == FP_UFFD_REGISTER && stage == 0) {
		stage = 1;
		pthread_mutex_lock(&mu);
		go_replace = 1;
		pthread_cond_broadcast(&cv);
		pthread_mutex_unlock(&mu);
		/* the new mapping is in place once the slot is no longer registered ("uw") */
		for (double t0 = now(); vm_flag_at((void *)slot, "uw") == 1 && now() - t0 < 10;)
			usleep(1000);
	} else if (at == FP_MLOCK && stage == 1) {
		stage = 2;
		pthread_mutex_lock(&mu);
		go_move = 1;
		pthread_cond_broadcast(&cv);
		/* fixed: the replacer sleeps in its mmap until this call released the wire lock and the
		 * monitor applied the event, so the move cannot come now; give it time to show it can */
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 300 * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		int wr = 0;
		while (!moved && (wr = pthread_cond_timedwait(&cv, &mu, &until)) == 0)
			;
		hook2_rc = wr;
		pthread_mutex_unlock(&mu);
		t_hook2 = now();
	}
}

static void run_case(int flags)
{
	uintptr_t area;
	pthread_t th;
	long vmlck0 = fault_vmlck_kb();

	/* the monitor must run before the hook is set: its start registers nothing */
	assert_int_equal(ubdma_wire_count(&area), 0);
	area = (uintptr_t)mmap(NULL, 2 * SPAN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(area != (uintptr_t)MAP_FAILED);
	slot = area;
	spare = area + SPAN;
	assert_ptr_equal(mmap((void *)slot, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0),
			 (void *)slot);
	memset((void *)slot, 1, LEN);
	go_replace = go_move = replaced = moved = move_err = 0;
	stage = 0;
	assert_int_equal(pthread_create(&th, NULL, replacer, NULL), 0);

	fault_set_hook(hook);
	int rc = ubdma_wire((void *)slot, LEN, flags);
	fault_set_hook(NULL);
	t_wire_ret = now();
	/* either answer is right: 0 (the wiring took the new memory and the event ended it) or
	 * EFAULT (the memory went while it was being wired) */
	assert_true(rc == 0 || rc == EFAULT);
	if (rc == 0)
		assert_int_equal(ubdma_unwire((void *)slot, LEN, 0), 0); /* balanced: succeeds, ended or not */
	pthread_mutex_lock(&mu);
	go_replace = go_move = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	pthread_join(th, NULL);
	/* the interleaving happened: registered, replaced, locked, then moved */
	assert_int_equal(stage, 2);
	assert_int_equal(replaced, 1);
	assert_int_equal(move_err, 0);

	/* every event applied (each entry point syncs with the monitor) */
	assert_int_equal(ubdma_wire_count((void *)spare), 0);
	long bad = vm_offenders(area, area + 2 * SPAN, 0, stdout, "  locked after release", 8);
	if (bad)
		printf("  flags 0x%x: ubdma_wire answered %d; %ld VMAs of the slot (%#lx) and spare (%#lx) are "
		       "locked or DONTFORK\n",
		       flags, rc, bad, (unsigned long)slot, (unsigned long)spare);
	if (bad)
		printf("  hook after mlock returned at %.6f (wait: %s), replacer's mmap returned at %.6f, "
		       "ubdma_wire at %.6f, the move at %.6f\n",
		       t_hook2, hook2_rc ? "timed out" : "the move came", t_mmap_ret, t_wire_ret, t_moved);
	assert_int_equal(bad, 0);
	assert_int_equal(fault_vmlck_kb(), vmlck0);
	munmap((void *)area, 2 * SPAN);
}

static void test_replaced_then_moved(void **state)
{
	(void)state;
	run_case(0);
}

static void test_replaced_then_moved_write(void **state)
{
	(void)state;
	run_case(UBDMA_WIRE_WRITE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replaced_then_moved),
		cmocka_unit_test(test_replaced_then_moved_write),
	};

	setvbuf(stdout, NULL, _IOLBF, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
