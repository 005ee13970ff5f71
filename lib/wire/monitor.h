/*
 * monitor.h - the process's userfaultfd monitor, as the wire layer and its subscribers (the
 * registration caches) see it.  monitor.c says what it owns and why there is one per process.
 */
#ifndef UBDMA_WIRE_MONITOR_H
#define UBDMA_WIRE_MONITOR_H

#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdint.h>

/*
 * A subscriber: fn runs on the monitor thread after the wire layer applied a batch, with the
 * monitor's subscriber lock held, so it must not allocate, free, unmap, or take a lock whose
 * holder may wait for the monitor (wmon_wait()).
 */
struct wmon_sub {
	void (*fn)(void *arg, const struct uffd_msg *msg, int n);
	void *arg;
	struct wmon_sub *next;
};

void wmon_subscribe(struct wmon_sub *s);
void wmon_unsubscribe(struct wmon_sub *s);	/* after it returns, fn is not running */

/*
 * The late subscriber (lib/rcache/memevent.c: the public memory events): fn runs on the monitor
 * thread after a batch is applied and counted done, with no lock held, so that it may call into
 * the library.  One at most; NULL removes it.
 */
void wmon_set_late(void (*fn)(const struct uffd_msg *msg, int n));

/* 1 on the monitor's thread. */
int wmon_self(void);

/* 1 when the monitor runs (started on demand), 0 when this process cannot have one. */
int wmon_active(void);
const char *wmon_desc(void);

/*
 * Batches begun (bumped before each read()) and applied, and how many are in progress (up before
 * the read, down after the batch is applied): atomic, read through the helpers.  Hidden: the hit
 * paths read them directly, not through the GOT.
 */
extern uint64_t wmon_begun_, wmon_done_, wmon_pending_ __attribute__((visibility("hidden")));

static inline uint64_t wmon_epoch(void)
{
	return __atomic_load_n(&wmon_begun_, __ATOMIC_SEQ_CST);
}

/* Wait until every batch up to upto is applied.  Never call it with a library lock held. */
void wmon_wait(uint64_t upto);

/*
 * Everything the monitor has read before this call is applied when it returns: one load when
 * nothing is pending (the registration cache's hit path calls it).
 */
static inline void wmon_sync(void)
{
	if (__builtin_expect(__atomic_load_n(&wmon_pending_, __ATOMIC_SEQ_CST) != 0, 0))
		wmon_wait(__atomic_load_n(&wmon_begun_, __ATOMIC_SEQ_CST));
}

/* wire.c's side: under the wire lock. */
int wmon_start_locked(void);		/* the handle, or -1 */
/* -1 when not running.  Inline: every watch asks it, and under TCG a call is dear (issue 21). */
extern int wmon_fd1_ __attribute__((visibility("hidden"))); /* the handle + 1 once running, else 0 */
static inline int wmon_fd(void)
{
	return __atomic_load_n(&wmon_fd1_, __ATOMIC_ACQUIRE) - 1;
}
int wmon_watches_hugetlb(void);		/* 1 when hugetlb and shmem ranges can be registered */
int wmon_register(uintptr_t s, uintptr_t e); /* 0, or why not (EINVAL: regular file, EBUSY...) */
/* The same, and *hugetlbp (when not NULL) says whether a hugetlb mapping lies in [s, e): the
 * kernel's answer, so that no look at the mappings is needed */
int wmon_register_kind(uintptr_t s, uintptr_t e, int *hugetlbp);
void wmon_unregister(uintptr_t s, uintptr_t e);
/* 0 when every mapping in [s, e) is registered with the monitor (UFFDIO_WRITEPROTECT's check),
 * else why not (ENOENT: a mapping that is not; on a strict kernel also a hole or a second mapping) */
int wmon_registered(uintptr_t s, uintptr_t e);
/* 1 when that check refuses holes and ranges of more than one mapping (Linux 6.1); probed once */
int wmon_wp_strict(void);
void wmon_forget(void);			/* fork child */

#endif
