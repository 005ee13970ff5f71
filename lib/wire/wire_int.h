/*
 * wire_int.h - what the wire layer's own files share: the monitor thread hands its batches to
 * wire.c.
 */
#ifndef UBDMA_WIRE_INT_H
#define UBDMA_WIRE_INT_H

#include <linux/userfaultfd.h>

/* Monitor thread: end the wirings the events touch.  Takes the wire lock; never allocates. */
void wire_apply_events(const struct uffd_msg *msg, int n);

#endif
