/*
 * lock.c - the sleeping halves of lock.h's mutex and reader-writer lock: a thread that finds the
 * lock held waits on its word with the futex (private: the locks are never shared between
 * processes), and an unlock that saw waiters wakes them.  errno is left as the caller had it.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/lock.h"

static long futex(uint32_t *w, int op, uint32_t val, const struct timespec *ts, uint32_t bits)
{
	return syscall(SYS_futex, w, op, val, ts, NULL, bits);
}

/* Drepper's "Futexes Are Tricky", mutex 2: 2 says a waiter may sleep, so the unlock wakes one. */
void ulock_lock_slow(struct ulock *l)
{
	int saved = errno;

	while (__atomic_exchange_n(&l->v, 2, __ATOMIC_ACQUIRE) != 0)
		futex(&l->v, FUTEX_WAIT_PRIVATE, 2, NULL, 0);
	errno = saved;
}

int ulock_timedlock_slow(struct ulock *l, const struct timespec *until)
{
	int saved = errno, err = 0;

	while (__atomic_exchange_n(&l->v, 2, __ATOMIC_ACQUIRE) != 0)
		if (futex(&l->v, FUTEX_WAIT_BITSET_PRIVATE | FUTEX_CLOCK_REALTIME, 2, until,
			  FUTEX_BITSET_MATCH_ANY) && errno == ETIMEDOUT) {
			err = ETIMEDOUT;
			break;
		}
	errno = saved;
	return err;
}

void ulock_wake(struct ulock *l)
{
	int saved = errno;

	futex(&l->v, FUTEX_WAKE_PRIVATE, 1, NULL, 0);
	errno = saved;
}

void urw_wrlock_slow(struct urwlock *l)
{
	int saved = errno;

	for (;;) {
		uint32_t v = 0;
		if (__atomic_compare_exchange_n(&l->v, &v, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
			break;
		__atomic_fetch_add(&l->waiters, 1, __ATOMIC_SEQ_CST);
		futex(&l->v, FUTEX_WAIT_PRIVATE, v, NULL, 0); /* returns at once if v moved */
		__atomic_fetch_sub(&l->waiters, 1, __ATOMIC_RELAXED);
	}
	errno = saved;
}

void urw_rdlock_slow(struct urwlock *l)
{
	int saved = errno;

	for (;;) {
		uint32_t v = __atomic_load_n(&l->v, __ATOMIC_RELAXED);
		if (!(v & 1)) {
			if (__atomic_compare_exchange_n(&l->v, &v, v + 2, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
				break;
			continue; /* another reader came or went */
		}
		__atomic_fetch_add(&l->waiters, 1, __ATOMIC_SEQ_CST);
		futex(&l->v, FUTEX_WAIT_PRIVATE, v, NULL, 0);
		__atomic_fetch_sub(&l->waiters, 1, __ATOMIC_RELAXED);
	}
	errno = saved;
}

/* Every waiter: readers may all go in, and a writer that loses the race sleeps again. */
void urw_wake(struct urwlock *l)
{
	int saved = errno;

	futex(&l->v, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, 0);
	errno = saved;
}
