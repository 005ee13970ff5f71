/*
 * lock.h - the library's own mutex (struct ulock) and reader-writer lock (struct urwlock), for
 * the locks a registration cache miss takes: the cache's miss and index locks and the wire lock.
 *
 * Why not glibc's: lock and unlock here are inline, one compare-and-swap or exchange when nobody
 * waits, and the futex only when a thread must sleep (lock.c).  A pthread call is a jump through
 * the PLT, a call and a return, three or four jumps whose target is looked up at run time; under
 * TCG (the test bed's guest) each such look-up is dear, and after an ibv_reg_mr the look-up
 * table is cold: the three lock round trips of a miss were 14 of its 21 indirect jumps
 * (docs/rcache.md, "The miss's locks").  Neither lock records an owner, recurses or checks
 * errors; an unlock must come from the holder's side of the code (any thread: a fork child
 * re-initialises what its parent's threads held).  Both start zeroed (ULOCK_INIT, URWLOCK_INIT).
 */
#ifndef UBDMA_BASE_LOCK_H
#define UBDMA_BASE_LOCK_H

#include <errno.h>
#include <stdint.h>
#include <time.h>

struct ulock {
	uint32_t v; /* 0 free, 1 held, 2 held and perhaps waited for */
};
#define ULOCK_INIT { 0 }

struct urwlock {
	uint32_t v;	  /* 1 held for writing, else 2 x the readers */
	uint32_t waiters; /* threads asleep (or about to be) on v */
};
#define URWLOCK_INIT { 0, 0 }

/* lock.c: the waits and wakes. */
void ulock_lock_slow(struct ulock *l);
int ulock_timedlock_slow(struct ulock *l, const struct timespec *until);
void ulock_wake(struct ulock *l);
void urw_wrlock_slow(struct urwlock *l);
void urw_rdlock_slow(struct urwlock *l);
void urw_wake(struct urwlock *l);

static inline void ulock_init(struct ulock *l)
{
	__atomic_store_n(&l->v, 0, __ATOMIC_RELAXED);
}

static inline void ulock_lock(struct ulock *l)
{
	uint32_t z = 0;

	if (__builtin_expect(!__atomic_compare_exchange_n(&l->v, &z, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED), 0))
		ulock_lock_slow(l);
}

/* 0 when taken, EBUSY when held. */
static inline int ulock_trylock(struct ulock *l)
{
	uint32_t z = 0;

	return __atomic_compare_exchange_n(&l->v, &z, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED) ? 0 : EBUSY;
}

/* 0 when taken, ETIMEDOUT when still held at until (CLOCK_REALTIME). */
static inline int ulock_timedlock(struct ulock *l, const struct timespec *until)
{
	return ulock_trylock(l) ? ulock_timedlock_slow(l, until) : 0;
}

static inline void ulock_unlock(struct ulock *l)
{
	if (__builtin_expect(__atomic_exchange_n(&l->v, 0, __ATOMIC_RELEASE) != 1, 0))
		ulock_wake(l);
}

static inline void urw_init(struct urwlock *l)
{
	__atomic_store_n(&l->v, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&l->waiters, 0, __ATOMIC_RELAXED);
}

static inline void urw_wrlock(struct urwlock *l)
{
	uint32_t z = 0;

	if (__builtin_expect(!__atomic_compare_exchange_n(&l->v, &z, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED), 0))
		urw_wrlock_slow(l);
}

static inline void urw_rdlock(struct urwlock *l)
{
	uint32_t v = __atomic_load_n(&l->v, __ATOMIC_RELAXED);

	if (__builtin_expect((v & 1) || !__atomic_compare_exchange_n(&l->v, &v, v + 2, 0, __ATOMIC_ACQUIRE,
								      __ATOMIC_RELAXED), 0))
		urw_rdlock_slow(l);
}

/* Either mode: a writer holds it alone (v is 1), so v says which. */
static inline void urw_unlock(struct urwlock *l)
{
	uint32_t d = __atomic_load_n(&l->v, __ATOMIC_RELAXED) & 1 ? 1 : 2;

	/* the change, then the waiters: a waiter counts itself, then sleeps only while v is what it
	 * saw (the futex checks), so one of the two sees the other */
	__atomic_fetch_sub(&l->v, d, __ATOMIC_SEQ_CST);
	if (__builtin_expect(__atomic_load_n(&l->waiters, __ATOMIC_SEQ_CST) != 0, 0))
		urw_wake(l);
}

#endif
