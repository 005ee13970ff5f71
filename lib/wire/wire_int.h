/*
 * wire_int.h - what the wire layer's own files share: the monitor thread hands its batches to
 * wire.c.
 */
#ifndef UBDMA_WIRE_INT_H
#define UBDMA_WIRE_INT_H

#include <linux/userfaultfd.h>

/* Monitor thread: end the wirings the events touch.  Takes the wire lock; never allocates. */
void wire_apply_events(const struct uffd_msg *msg, int n);

/*
 * Monitor thread: the wire lock around read() and the apply (wire.c says why).  wire_events_lock()
 * answers 1 when it took the lock, 0 when it gave up waiting; then wire_apply_events_locked(),
 * wire_events_unlock().
 */
int wire_events_lock(void);
void wire_events_unlock(void);
void wire_apply_events_locked(const struct uffd_msg *msg, int n);

#endif
