/*
 * monitor.c - the userfaultfd monitor of a registration cache: one thread per cache reading
 * the non-cooperative events (UNMAP, REMOVE, REMAP) of the ranges the cache registered, and
 * invalidating the entries they touch.
 *
 * What the kernel does (include/uapi/linux/userfaultfd.h, fs/userfaultfd.c; checked by
 * experiment on 6.18, docs/rcache.md lists the runs):
 *  - events come only for ranges registered with UFFDIO_REGISTER, whatever the mode; we
 *    register in write-protect mode and never write-protect a page, so no page fault is ever
 *    delivered to us and no fault ever blocks (missing mode would block a fault on a released
 *    page until we resolved it);
 *  - UNMAP (munmap, brk shrink, mmap MAP_FIXED over, mremap's old range) is queued after the
 *    pages are gone; REMOVE (madvise DONTNEED / DONTNEED_LOCKED / REMOVE) before they go; REMAP
 *    after the move.  In all three the caller sleeps until the event is read: munmap() does not
 *    return before our read() took its message;
 *  - a fork child does not inherit the registration (no UFFD_FEATURE_EVENT_FORK).
 * So a look-up that follows the unmap in program order must not overtake our processing: we
 * count a batch as begun before read() and as done after the invalidations, and a look-up
 * waits while the two differ (mon_sync()).  The monitor never takes a lock before it has read,
 * never allocates or frees (a free can trim the heap and unmap a watched range: the monitor
 * would wait for itself), and never blocks in anything a waiting unmapper holds.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/log.h"
#include "rcache/rcache_int.h"
#include "wire/wire.h"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif

#define EVENTS (UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_REMAP)

/* A userfaultfd: the system call (privileged, then user-mode-only), then /dev/userfaultfd. */
static int uffd_open(int *errp)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd >= 0)
		return fd;
	*errp = errno;
	if (errno == EPERM) {
		/* vm.unprivileged_userfaultfd=0 still allows user-mode-only handles (Linux >= 5.11) */
		if ((fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)) >= 0)
			return fd;
	}
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
		if (fd >= 0)
			return fd;
	}
	return -1;
}

/* The features this kernel offers: a handshake with none on a throw-away handle. */
static uint64_t uffd_features(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	int err = 0, fd = uffd_open(&err);
	uint64_t f = 0;

	if (fd < 0)
		return 0;
	if (ioctl(fd, UFFDIO_API, &api) == 0)
		f = api.features;
	close(fd);
	return f;
}

static void apply(struct rcache *rc, const struct uffd_msg *m)
{
	switch (m->event) {
	case UFFD_EVENT_UNMAP:
		__atomic_fetch_add(&rc->ev_unmap, 1, __ATOMIC_RELAXED);
		rc_invalidate_locked(rc, m->arg.remove.start, m->arg.remove.end, 0);
		break;
	case UFFD_EVENT_REMOVE:
		/* the range stays mapped: stop watching what no entry covers any more */
		__atomic_fetch_add(&rc->ev_remove, 1, __ATOMIC_RELAXED);
		rc_invalidate_locked(rc, m->arg.remove.start, m->arg.remove.end, 1);
		break;
	case UFFD_EVENT_REMAP: {
		uintptr_t from = m->arg.remap.from, to = m->arg.remap.to, len = m->arg.remap.len;
		__atomic_fetch_add(&rc->ev_remap, 1, __ATOMIC_RELAXED);
		rc_invalidate_locked(rc, from, from + len, 0);
		/* whatever was cached at the destination was replaced too; the registration and
		 * the mlock moved with the pages, to be dropped at the next reap */
		rc_invalidate_locked(rc, to, to + len, 0);
		mon_unregister(rc, to, to + len);
		rc_fixup_locked(rc, to, to + len);
		break;
	}
	default:
		__atomic_fetch_add(&rc->ev_other, 1, __ATOMIC_RELAXED);
		break;
	}
}

static void *mon_main(void *arg)
{
	struct rcache *rc = arg;
	struct uffd_msg msg[32];

	for (;;) {
		struct pollfd pf[2] = { { rc->uffd, POLLIN, 0 }, { rc->efd, POLLIN, 0 } };
		if (poll(pf, 2, -1) < 0)
			continue;
		if (pf[1].revents) {
			pthread_mutex_lock(&rc->mon_lock);
			rc->mon_exiting = 1;
			pthread_cond_broadcast(&rc->mon_cv);
			pthread_mutex_unlock(&rc->mon_lock);
			break;
		}
		if (!pf[0].revents)
			continue;
		/* begun before read(): the unmapper wakes at read() and may look up at once */
		uint64_t seq = __atomic_add_fetch(&rc->mon_begun, 1, __ATOMIC_SEQ_CST);
		/* and for readers of the translation map (ctx_settle()); after mon_begun, so that a
		 * settle that sees this epoch also waits for this batch */
		__atomic_add_fetch(&rc->ctx->stale_epoch, 1, __ATOMIC_SEQ_CST);
		ssize_t n = read(rc->uffd, msg, sizeof(msg));
		int rerr = errno;
		if (n > 0) {
			pthread_rwlock_wrlock(&rc->lock);
			for (ssize_t i = 0; i < n / (ssize_t)sizeof(msg[0]); i++)
				apply(rc, &msg[i]);
			pthread_rwlock_unlock(&rc->lock);
		}
		pthread_mutex_lock(&rc->mon_lock);
		__atomic_store_n(&rc->mon_done, seq, __ATOMIC_RELEASE);
		pthread_cond_broadcast(&rc->mon_cv);
		pthread_mutex_unlock(&rc->mon_lock);
		if (n < 0 && rerr != EAGAIN && rerr != EINTR) {
			ULOG(UBDMA_LOG_ERROR, "read from userfaultfd failed: %s", strerror(rerr));
			usleep(1000);
		}
	}
	return NULL;
}

int mon_start(struct rcache *rc)
{
	uint64_t avail = uffd_features(), want = EVENTS;
	struct uffdio_api api = { .api = UFFD_API };
	sigset_t all, old;
	int err = 0;

	if ((avail & EVENTS) != EVENTS) {
		int fd = uffd_open(&err);
		if (fd >= 0)
			close(fd);
		snprintf(rc->mon_desc, sizeof(rc->mon_desc),
			 "explicit only: %s", fd < 0 ? "userfaultfd is not available (unprivileged_userfaultfd=0 "
			 "without CAP_SYS_PTRACE, no /dev/userfaultfd access, or no kernel support)" :
			 "the kernel offers no unmap/remove/remap events");
		ULOG_WARN("registration cache: %s", rc->mon_desc);
		return ENOTSUP;
	}
	want |= avail & UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	api.features = want;
	if ((rc->uffd = uffd_open(&err)) < 0 || ioctl(rc->uffd, UFFDIO_API, &api) < 0 ||
	    (rc->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		err = errno;
		snprintf(rc->mon_desc, sizeof(rc->mon_desc), "explicit only: userfaultfd set-up failed: %s",
			 strerror(err));
		goto fail;
	}
	/* the thread takes no signal: an application handler must not run on it */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&rc->thread, NULL, mon_main, rc);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		snprintf(rc->mon_desc, sizeof(rc->mon_desc), "explicit only: no monitor thread: %s",
			 strerror(err));
		goto fail;
	}
	rc->mon = MON_ON;
	snprintf(rc->mon_desc, sizeof(rc->mon_desc),
		 "userfaultfd: unmap, remove and remap events, write-protect registration%s",
		 avail & UFFD_FEATURE_WP_HUGETLBFS_SHMEM ? "" : " (anonymous memory only on this kernel)");
	return 0;
fail:
	ULOG_WARN("registration cache: %s", rc->mon_desc);
	if (rc->uffd >= 0)
		close(rc->uffd);
	if (rc->efd >= 0)
		close(rc->efd);
	rc->uffd = rc->efd = -1;
	return err ? err : ENOTSUP;
}

void mon_stop(struct rcache *rc)
{
	uint64_t one = 1;

	if (rc->mon != MON_ON)
		return;
	if (write(rc->efd, &one, sizeof(one)) != sizeof(one))
		ULOG_WARN("cannot wake the monitor: %s", strerror(errno));
	/*
	 * Close the handle (which unregisters every range and releases any waiting unmapper)
	 * once the monitor is out of poll() but before joining it: the join may unmap the
	 * monitor's stack, and if that stack lay in a registered range the unmap would wait for
	 * the monitor we are joining.
	 */
	pthread_mutex_lock(&rc->mon_lock);
	while (!rc->mon_exiting)
		pthread_cond_wait(&rc->mon_cv, &rc->mon_lock);
	pthread_mutex_unlock(&rc->mon_lock);
	close(rc->uffd);
	pthread_join(rc->thread, NULL);
	close(rc->efd);
	rc->uffd = rc->efd = -1;
	pthread_mutex_lock(&rc->mon_lock);
	rc->mon_exiting = 0;
	__atomic_store_n(&rc->mon_done, __atomic_load_n(&rc->mon_begun, __ATOMIC_SEQ_CST), __ATOMIC_RELEASE);
	pthread_cond_broadcast(&rc->mon_cv);
	pthread_mutex_unlock(&rc->mon_lock);
	rc->mon = MON_OFF;
}

void mon_forget(struct rcache *rc)
{
	if (rc->uffd >= 0)
		close(rc->uffd);
	if (rc->efd >= 0)
		close(rc->efd);
	rc->uffd = rc->efd = -1;
	rc->mon_begun = rc->mon_done = 0;
	pthread_mutex_init(&rc->mon_lock, NULL);
	pthread_cond_init(&rc->mon_cv, NULL);
	rc->mon = rc->want_monitor == UBDMA_RCACHE_MONITOR_UFFD ? MON_START : MON_OFF;
	snprintf(rc->mon_desc, sizeof(rc->mon_desc), "%s",
		 rc->mon == MON_START ? "userfaultfd (not started yet)" : "explicit only: asked for");
}

static int reg_range(int fd, uintptr_t s, uintptr_t e)
{
	struct uffdio_register r = { .range = { s, e - s }, .mode = UFFDIO_REGISTER_MODE_WP };

	return ioctl(fd, UFFDIO_REGISTER, &r) ? errno : 0;
}

int mon_register(struct rcache *rc, uintptr_t s, uintptr_t e, uintptr_t *ulo, uintptr_t *uhi)
{
	int err = reg_range(rc->uffd, s, e);

	if (err == EINVAL) {
		/* hugetlb ranges must be registered in whole huge pages; widen only over hugetlb,
		 * never over other mappings (a thread stack registered by mistake would make its
		 * munmap wait for us) */
		size_t ps = wire_pagesize((void *)s), pe = wire_pagesize((void *)(e - 1));
		size_t a = ps > pe ? ps : pe;
		if (a > 4096 && ps == pe) {
			uintptr_t as = s & ~(uintptr_t)(a - 1), ae = (e + a - 1) & ~(uintptr_t)(a - 1);
			if ((err = reg_range(rc->uffd, as, ae)) == 0) {
				s = as;
				e = ae;
			}
		}
	}
	if (err) {
		ULOG_DEBUG("[%#lx, %#lx) cannot be watched (%s): explicit invalidation only",
			   (unsigned long)s, (unsigned long)e, strerror(err));
		return err;
	}
	*ulo = s;
	*uhi = e;
	return 0;
}

void mon_unregister(struct rcache *rc, uintptr_t s, uintptr_t e)
{
	struct uffdio_range r = { s, e - s };

	if (rc->uffd >= 0 && s < e && ioctl(rc->uffd, UFFDIO_UNREGISTER, &r))
		ULOG_DEBUG("unregister [%#lx, %#lx): %s", (unsigned long)s, (unsigned long)e, strerror(errno));
}

void mon_wait(struct rcache *rc)
{
	uint64_t s = __atomic_load_n(&rc->mon_begun, __ATOMIC_SEQ_CST);

	pthread_mutex_lock(&rc->mon_lock);
	while (__atomic_load_n(&rc->mon_done, __ATOMIC_ACQUIRE) < s)
		pthread_cond_wait(&rc->mon_cv, &rc->mon_lock);
	pthread_mutex_unlock(&rc->mon_lock);
}
