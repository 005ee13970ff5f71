/*
 * memevent.c - the public memory events (ubdma/memevent.h): the monitor's unmap, remap and
 * remove events, passed on to the application's subscriptions for the ranges they name.
 *
 * The callbacks run on the monitor's thread as its late subscriber (wmon_set_late()): after the
 * batch was applied and counted done, with no lock of the library held, so that they may call
 * into it (a registration-cache look-up waits for batches in progress; this one is over).  The
 * list is walked under ev_lock, which is dropped around each call; a subscription being called
 * is marked busy, and unsubscribing waits for it, except on the monitor's thread itself (from a
 * callback), where the walk frees it afterwards.  Freed subscriptions go to a list emptied by
 * the next subscribe or unsubscribe from another thread: the monitor's thread never frees (a
 * free() may trim the heap and unmap watched memory, which would wait for that very thread).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/log.h"
#include "base/queue.h"
#include "rcache/rcache_int.h"

struct ubdma_memevent_sub {
	uintptr_t s, e;
	int types;
	ubdma_memevent_fn *fn;
	void *arg;
	int busy;	/* the monitor's thread is calling fn */
	int gone;	/* unsubscribed */
	int orphan;	/* unsubscribed by its own callback: the walk unlinks it */
	TAILQ_ENTRY(ubdma_memevent_sub) link;
};

static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ev_cv = PTHREAD_COND_INITIALIZER;
static TAILQ_HEAD(, ubdma_memevent_sub) ev_subs = TAILQ_HEAD_INITIALIZER(ev_subs);
static struct ubdma_memevent_sub *ev_zombies; /* to free, linked through arg */
static int ev_hooked;

static int ev_touches(const struct ubdma_memevent_sub *x, const struct ubdma_memevent *ev)
{
	uintptr_t a = (uintptr_t)ev->addr, t = (uintptr_t)ev->to;

	if (!(x->types & ev->type))
		return 0;
	if (a < x->e && x->s < a + ev->len)
		return 1;
	return ev->type == UBDMA_MEMEVENT_REMAP && t < x->e && x->s < t + ev->len;
}

static int ev_convert(const struct uffd_msg *m, struct ubdma_memevent *ev)
{
	switch (m->event) {
	case UFFD_EVENT_UNMAP:
	case UFFD_EVENT_REMOVE:
		ev->type = m->event == UFFD_EVENT_UNMAP ? UBDMA_MEMEVENT_UNMAP : UBDMA_MEMEVENT_REMOVE;
		ev->addr = (void *)(uintptr_t)m->arg.remove.start;
		ev->len = (size_t)(m->arg.remove.end - m->arg.remove.start);
		ev->to = NULL;
		return 1;
	case UFFD_EVENT_REMAP:
		ev->type = UBDMA_MEMEVENT_REMAP;
		ev->addr = (void *)(uintptr_t)m->arg.remap.from;
		ev->len = (size_t)m->arg.remap.len;
		ev->to = (void *)(uintptr_t)m->arg.remap.to;
		return 1;
	default:
		return 0;
	}
}

/* The monitor's thread, no lock held: each event to each subscription it touches. */
static void ev_deliver(const struct uffd_msg *msg, int n)
{
	for (int i = 0; i < n; i++) {
		struct ubdma_memevent ev;
		if (!ev_convert(&msg[i], &ev))
			continue;
		pthread_mutex_lock(&ev_lock);
		struct ubdma_memevent_sub *x = TAILQ_FIRST(&ev_subs);
		while (x) {
			if (x->gone || !ev_touches(x, &ev)) {
				x = TAILQ_NEXT(x, link);
				continue;
			}
			x->busy = 1;
			pthread_mutex_unlock(&ev_lock);
			x->fn(x->arg, &ev);
			pthread_mutex_lock(&ev_lock);
			x->busy = 0;
			struct ubdma_memevent_sub *next = TAILQ_NEXT(x, link);
			if (x->orphan) {
				/* unsubscribed by its own callback: ours to unlink, a user thread's to free */
				TAILQ_REMOVE(&ev_subs, x, link);
				x->arg = ev_zombies;
				ev_zombies = x;
			}
			pthread_cond_broadcast(&ev_cv);
			x = next;
		}
		pthread_mutex_unlock(&ev_lock);
	}
}

/* Free what callbacks unsubscribed.  ev_lock held, not on the monitor's thread. */
static void ev_reap_locked(void)
{
	while (ev_zombies) {
		struct ubdma_memevent_sub *z = ev_zombies;
		ev_zombies = z->arg;
		free(z);
	}
}

static void ev_atfork_prepare(void)
{
	pthread_mutex_lock(&ev_lock);
}

static void ev_atfork_parent(void)
{
	pthread_mutex_unlock(&ev_lock);
}

static void ev_atfork_child(void)
{
	/* the parent's subscriptions are not the child's (the header says so): forgotten, not freed */
	TAILQ_INIT(&ev_subs);
	ev_zombies = NULL;
	pthread_mutex_unlock(&ev_lock);
}

__attribute__((constructor)) static void ev_atfork_init(void)
{
	pthread_atfork(ev_atfork_prepare, ev_atfork_parent, ev_atfork_child);
}

int ubdma_memevent_subscribe(void *addr, size_t len, int types, ubdma_memevent_fn *fn, void *arg,
			     ubdma_memevent_sub_t **subp)
{
	uintptr_t a = (uintptr_t)addr;
	struct ubdma_memevent_sub *x;

	if (!fn || !subp)
		return uerr(EINVAL, "%s is NULL", fn ? "subp" : "fn");
	if (!len || a + len < a)
		return uerr(EINVAL, "range %p + %zu is empty or wraps around the address space", addr, len);
	if (!types || (types & ~UBDMA_MEMEVENT_ALL))
		return uerr(EINVAL, "types 0x%x: need UBDMA_MEMEVENT_* bits, nothing else", types);
	if (!wmon_active())
		return uerr(ENOTSUP, "no userfaultfd monitor in this process: %s", wmon_desc());
	if (!(x = calloc(1, sizeof(*x))))
		return uerr(ENOMEM, "out of memory");
	x->s = a;
	x->e = a + len;
	x->types = types;
	x->fn = fn;
	x->arg = arg;
	pthread_mutex_lock(&ev_lock);
	if (!wmon_self())
		ev_reap_locked();
	TAILQ_INSERT_TAIL(&ev_subs, x, link);
	if (!ev_hooked) {
		wmon_set_late(ev_deliver);
		ev_hooked = 1;
	}
	pthread_mutex_unlock(&ev_lock);
	*subp = x;
	return 0;
}

int ubdma_memevent_unsubscribe(ubdma_memevent_sub_t *sub)
{
	struct ubdma_memevent_sub *x;
	int self = wmon_self();

	if (!sub)
		return 0;
	pthread_mutex_lock(&ev_lock);
	TAILQ_FOREACH(x, &ev_subs, link)
		if (x == sub && !x->gone)
			break;
	if (!x) {
		pthread_mutex_unlock(&ev_lock);
		return uerr(EINVAL, "%p is not a live memory-event subscription", (void *)sub);
	}
	x->gone = 1;
	if (x->busy && self) {
		/* from its own callback: the walk unlinks it */
		x->orphan = 1;
		pthread_mutex_unlock(&ev_lock);
		return 0;
	}
	while (x->busy)
		pthread_cond_wait(&ev_cv, &ev_lock);
	TAILQ_REMOVE(&ev_subs, x, link);
	if (self) {
		x->arg = ev_zombies;
		ev_zombies = x;
	} else {
		ev_reap_locked();
		free(x);
	}
	pthread_mutex_unlock(&ev_lock);
	return 0;
}
