/*
 * monitor.c - how a registration cache hears that memory changed: it subscribes to the process's
 * userfaultfd monitor (lib/wire/monitor.c), which watches every wired range, and invalidates the
 * entries each event touches.
 *
 * There is one userfaultfd per process because the kernel lets a mapping be registered with one
 * handle only; the wire layer registers every range it wires, so a cache entry (always wired) is
 * watched from the moment its wiring starts.  The events come on the monitor thread after the
 * wire layer has ended the wirings they touch; the callback here takes the cache's lock and
 * invalidates, and never allocates, frees or unmaps (monitor.h says why).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "rcache/rcache_int.h"

static void on_events(void *arg, const struct uffd_msg *msg, int n)
{
	struct rcache *rc = arg;

	urw_wrlock(&rc->lock);
	for (int i = 0; i < n; i++) {
		const struct uffd_msg *m = &msg[i];
		switch (m->event) {
		case UFFD_EVENT_UNMAP:
			__atomic_fetch_add(&rc->ev_unmap, 1, __ATOMIC_RELAXED);
			rc_invalidate_locked(rc, m->arg.remove.start, m->arg.remove.end);
			break;
		case UFFD_EVENT_REMOVE:
			__atomic_fetch_add(&rc->ev_remove, 1, __ATOMIC_RELAXED);
			rc_invalidate_locked(rc, m->arg.remove.start, m->arg.remove.end);
			break;
		case UFFD_EVENT_REMAP: {
			uintptr_t from = m->arg.remap.from, to = m->arg.remap.to, len = m->arg.remap.len;
			__atomic_fetch_add(&rc->ev_remap, 1, __ATOMIC_RELAXED);
			/* the wire layer ended both ends and dropped the locks that moved along */
			rc_invalidate_locked(rc, from, from + len);
			rc_invalidate_locked(rc, to, to + len);
			break;
		}
		default:
			__atomic_fetch_add(&rc->ev_other, 1, __ATOMIC_RELAXED);
			break;
		}
	}
	urw_unlock(&rc->lock);
}

int mon_start(struct rcache *rc)
{
	if (!wmon_active()) {
		snprintf(rc->mon_desc, sizeof(rc->mon_desc), "explicit only: %s", wmon_desc());
		ULOG_WARN("registration cache: %s", rc->mon_desc);
		return ENOTSUP;
	}
	rc->sub.fn = on_events;
	rc->sub.arg = rc;
	wmon_subscribe(&rc->sub);
	rc->mon = MON_ON;
	snprintf(rc->mon_desc, sizeof(rc->mon_desc), "%.150s", wmon_desc());
	return 0;
}

void mon_stop(struct rcache *rc)
{
	if (rc->mon != MON_ON)
		return;
	wmon_unsubscribe(&rc->sub);
	rc->mon = MON_OFF;
}

void mon_forget(struct rcache *rc)
{
	/* the child's monitor list starts empty (wire.c's fork handler): nothing to unsubscribe */
	rc->mon = rc->want_monitor == UBDMA_RCACHE_MONITOR_UFFD ? MON_START : MON_OFF;
	snprintf(rc->mon_desc, sizeof(rc->mon_desc), "%s",
		 rc->mon == MON_START ? "userfaultfd (not started yet)" : "explicit only: asked for");
}
