/*
 * queue.h - the library's intrusive lists: BSD's <sys/queue.h> (LIST for unordered sets with O(1)
 * removal, TAILQ where order matters), plus the _FOREACH_SAFE walks that glibc's copy of the
 * header lacks and FreeBSD's has: a walk whose body may remove the element it is on.
 *
 * glibc's LIST_REMOVE and TAILQ_REMOVE leave the removed element's links as they were: nothing
 * may ask an element whether it is on a list; the owner knows.
 */
#ifndef UBDMA_BASE_QUEUE_H
#define UBDMA_BASE_QUEUE_H

#include <sys/queue.h>

#ifndef LIST_FOREACH_SAFE
#define LIST_FOREACH_SAFE(var, head, field, tvar)                                          \
	for ((var) = LIST_FIRST(head); (var) && ((tvar) = LIST_NEXT((var), field), 1); (var) = (tvar))
#endif

#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                                         \
	for ((var) = TAILQ_FIRST(head); (var) && ((tvar) = TAILQ_NEXT((var), field), 1); (var) = (tvar))
#endif

#endif
