/*
 * ubdma/memevent.h - memory events for everyone: what the library's userfaultfd monitor sees
 * (an unmap, a move, a release of pages), delivered to the application for the ranges it
 * subscribed to.  Included by <ubdma/ubdma.h>.
 *
 * A runtime that keeps state about memory (its own registration cache, a table of remote keys)
 * learns here that the memory changed, without installing malloc or mmap hooks of its own.  The
 * events are those of the monitor: it watches the memory ubdma wires (ubdma_wire(),
 * ubdma_umem_lock(), registration-cache entries of every domain), so a range is watched while
 * something of it is wired; wire it (ubdma_wire()) to watch memory of your own.
 * docs/rcache.md ("Memory events") says what each event means and the rules below at length.
 *
 * Rules: a callback runs on the monitor's thread, after the library applied the batch (cache
 * entries over the range are invalidated, wirings ended), with no library lock held: it may call
 * any ubdma function, ubdma_memevent_unsubscribe() of its own subscription included.  It must not
 * unmap, move or release (madvise DONTNEED / REMOVE) memory the monitor watches: the kernel makes
 * such a call wait until the monitor's thread reads the event, and that thread is the caller.
 * Callbacks run one at a time, in subscription order; while one runs, no further event is read,
 * so a thread that unmaps watched memory waits for it: keep them short.  The unmapper may already
 * have returned when the callback runs (the kernel releases it when the event is read).  A child
 * of fork(2) has no subscriptions (its handles are the parent's: do not unsubscribe them there).
 */
#ifndef UBDMA_MEMEVENT_H
#define UBDMA_MEMEVENT_H

#include <stddef.h>

#include <ubdma/core.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Event types, a mask for ubdma_memevent_subscribe(). */
#define UBDMA_MEMEVENT_UNMAP  0x1 /* munmap, mmap MAP_FIXED over it, brk shrinking */
#define UBDMA_MEMEVENT_REMAP  0x2 /* mremap: [addr, addr + len) moved to [to, to + len) */
#define UBDMA_MEMEVENT_REMOVE 0x4 /* madvise DONTNEED / DONTNEED_LOCKED / REMOVE: pages released */
#define UBDMA_MEMEVENT_ALL    0x7

struct ubdma_memevent {
	int type;	/* one UBDMA_MEMEVENT_* */
	void *addr;	/* the range that changed (REMAP: where it was) */
	size_t len;
	void *to;	/* REMAP: where it is now; NULL otherwise */
};

typedef void ubdma_memevent_fn(void *arg, const struct ubdma_memevent *ev);
typedef struct ubdma_memevent_sub ubdma_memevent_sub_t;

/**
 * ubdma_memevent_subscribe() - call @fn(@arg, event) for every event of a type in @types that
 * touches [addr, addr + len) (a REMAP touches it when its old or its new range does).  The event
 * gives the whole range that changed, which may reach beyond the subscription's.
 *
 * Return: 0 and *@subp; EINVAL for a NULL @fn or @subp, len 0, a range that wraps, or @types
 * empty or with other bits; ENOTSUP when this process cannot have a userfaultfd monitor
 * (ubdma_rcache_stats() of a cache says why: its monitor field); ENOMEM when out of memory.
 */
int ubdma_memevent_subscribe(void *addr, size_t len, int types, ubdma_memevent_fn *fn, void *arg,
			     ubdma_memevent_sub_t **subp);

/**
 * ubdma_memevent_unsubscribe() - end a subscription.  When it returns, @sub's callback is not
 * running and will not run again (from within the callback itself: after the callback returns).
 * NULL is ignored.
 * Return: 0; EINVAL when @sub is not a live subscription.
 */
int ubdma_memevent_unsubscribe(ubdma_memevent_sub_t *sub);

#ifdef __cplusplus
}
#endif
#endif /* UBDMA_MEMEVENT_H */
