/*
 * wire.h - process-wide wiring of VA ranges with nested per-page counts that follow the kernel's
 * mappings (docs/wire.md).
 */
#ifndef UBDMA_WIRE_H
#define UBDMA_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "wire/monitor.h" /* wmon_pending_, for wire_ticket_alive_watch() */

/* One run of a wired range that lies in one mapping: [start, end), pages of pgsz bytes. */
struct wire_seg {
	uintptr_t start, end;
	size_t pgsz;
	int hugetlb; /* 1 if the mapping is hugetlb (stable physical address) */
};

/*
 * What one wire_range() call holds: the runs it counted on and the generation of each.  A
 * wiring ended by the address space (munmap, mremap, MAP_FIXED over it) gives its pages a new
 * generation when they are wired again, so releasing an old ticket never touches new memory.
 */
struct wire_piece {
	uintptr_t s, e;
	uint64_t gen;
};

struct wire_ticket {
	int n;
	uint8_t watched;	/* every run it counted on was registered with the monitor */
	uint8_t pooled;		/* from the wire layer's pool of one-piece tickets (wire_release()) */
	uint8_t nofork;		/* a watch that holds its range MADV_DONTFORK (a hugetlb cookie) */
	uint64_t seq;		/* wire_end_seq() when it was made */
	struct wire_ticket *next; /* in the pool */
	struct wire_piece p[];
};

/*
 * Wire [addr, addr + len) as ubdma_wire() does.  When segsp is not NULL, return the wired runs
 * (malloc'd array, *nsegp entries; free() it); when ticketp is not NULL, the ticket that
 * wire_release() takes back.  flags: UBDMA_WIRE_*.
 */
int wire_range(void *addr, size_t len, int flags, struct wire_seg **segsp, int *nsegp,
	       struct wire_ticket **ticketp);

/*
 * Watch-only wiring, for a domain that pins the pages itself (struct ubdma_registrar with
 * UBDMA_REGISTRAR_PINS): [addr, addr + len), rounded to 4 KiB pages ([*sp, *ep)), is registered
 * with the monitor and counted under a ticket that wire_release() takes back and
 * wire_ticket_alive() checks, as wire_range()'s; nothing is locked, marked or looked up.
 * Return: 0; EINVAL for an empty or wrapping range; ENOMEM; ENOTSUP without a monitor, or the
 * monitor's refusal (EINVAL: hugetlb not in whole pages, a regular file; EBUSY...), or ENOTSUP
 * for hugetlb memory with WIRE_WATCH_NO_HUGETLB in flags (a caller that needs the page size: the
 * window remembers what its registration found, so a watch in a trusted window still makes no
 * system call): then the caller wires with wire_range(), which knows what to do with such memory.
 */
#define WIRE_WATCH_NO_HUGETLB 0x1 /* refuse hugetlb memory (ENOTSUP), known without a look-up */
static inline int wire_watch(void *addr, size_t len, int flags, struct wire_ticket **ticketp, uintptr_t *sp,
			     uintptr_t *ep);
/*
 * wire_watch() for a caller that maps the range in its pages (a cookie): hugetlb memory is
 * watched too, its page size (*pgszp) looked up once (PROCMAP_QUERY) when the registration says
 * hugetlb lies near; ENOTSUP unless the range is one kind of page, without a hole, on its pages'
 * bounds (the caller wires in full).  *pgszp is PAGE_4K for other memory.  A hugetlb range is
 * also marked MADV_DONTFORK (a wired one is: docs/wire.md section 5), and marked back by the
 * last watch or wiring of it to end.  flags: as wire_watch()'s, WIRE_WATCH_NO_HUGETLB ignored.
 */
int wire_watch_sized(void *addr, size_t len, int flags, struct wire_ticket **ticketp, uintptr_t *sp, uintptr_t *ep,
		     size_t *pgszp);

/* inline: a call that only added an argument was one call more on every cache miss (a call and
 * its return cost some 25-30 ns under TCG, docs/rcache.md) */
static inline int wire_watch(void *addr, size_t len, int flags, struct wire_ticket **ticketp, uintptr_t *sp,
			     uintptr_t *ep)
{
	return wire_watch_sized(addr, len, flags, ticketp, sp, ep, NULL);
}

/* Drop the counts a ticket holds where its wiring still exists; frees the ticket.  NULL is a no-op. */
void wire_release(struct wire_ticket *t);

/* 1 while every page of the ticket is still wired by it (no munmap, mremap... ended it). */
int wire_ticket_alive(const struct wire_ticket *t);

/*
 * 1 when no wiring at all has ended since t was made, so t is alive, without the wire lock (a
 * miss's check); 0 says nothing: ask wire_ticket_alive().
 */
extern uint64_t wire_end_seq_ __attribute__((visibility("hidden"))); /* wire_end_seq()'s */
static inline int wire_ticket_unchanged(const struct wire_ticket *t)
{
	return t && __atomic_load_n(&wire_end_seq_, __ATOMIC_ACQUIRE) == t->seq;
}
/*
 * wire_ticket_alive() of a ticket, without the wire lock when the answer is sure (issue 21: the
 * lock's last check of a watched cookie, whose round trip is dear under TCG); only for a
 * watch-only ticket (wire_watch()), the full wiring's tickets always ask under the lock.
 *
 * Why it answers as the locked check would: a watch run leaves its set only by the monitor's
 * end_watch(), which bumps wire_end_seq_ in the same batch (the owner's own release aside), and
 * t->seq was read under the wire lock after its runs were counted.  The locked check also waits
 * for a batch the monitor is applying; the monitor raises wmon_pending_ (seq_cst) before its
 * read() and lowers it after the batch is applied, so pending 0 here means every batch read
 * before this load is applied and its bump is seen by the acquire load that follows (the
 * lowering is a release), and a batch not yet read can have woken no unmapper: the check is
 * linearised before that unmap, as the locked check would be when it took the lock first.
 * A batch in flight or an end since t was made: the locked check decides.
 */
#define WIRE_GEN_WATCH (1ULL << 63) /* in a watch-only ticket's generations */
static inline int wire_ticket_alive_watch(const struct wire_ticket *t)
{
	if (t && t->n && (t->p[0].gen & WIRE_GEN_WATCH) && __atomic_load_n(&wmon_pending_, __ATOMIC_SEQ_CST) == 0 &&
	    __atomic_load_n(&wire_end_seq_, __ATOMIC_ACQUIRE) == t->seq)
		return 1;
	return wire_ticket_alive(t);
}

/* 1 when the monitor watched every page the ticket counted on when it was made (its munmap ends
 * the wiring). */
static inline int wire_ticket_watched(const struct wire_ticket *t)
{
	return t && t->watched;
}

/* Bumped whenever the address space ends some wiring (atomic; readers compare it). */
uint64_t wire_end_seq(void);

/* ubdma_unwire(): drop one count on each page, by address (the mapping there now). */
int unwire_range(void *addr, size_t len, int flags);

/* Start the process's userfaultfd monitor if it is not running (a no-op where it cannot). */
void wire_monitor_start(void);

#endif
