/*
 * monitor.c - the process's one userfaultfd: how the wire layer learns that a wired mapping went
 * away (munmap, mmap MAP_FIXED over it, brk shrink, mremap, madvise DONTNEED_LOCKED / REMOVE).
 *
 * Every range the wire layer wires is registered on this handle (write-protect mode, and no page
 * is ever write-protected, so no fault ever comes to us: the registration only asks for the
 * non-cooperative events UNMAP, REMOVE and REMAP).  One thread reads them, has the wire layer end
 * the wirings they touch (wire.c, wire_apply_events()), then passes the batch to the subscribers
 * (the registration caches).  A VMA can be registered with only one userfaultfd, so there is one
 * per process, not one per cache.
 *
 * What the kernel does (fs/userfaultfd.c, mm/mmap.c, mm/mremap.c; checked on 6.18 and 6.1, see
 * docs/rcache.md): the event is queued after the mapping changed and the caller sleeps until our
 * read() took it, so a call that follows an munmap in program order can wait for its effect:
 * the thread counts a batch as begun before read() and done after everything was applied, and
 * wmon_sync() waits while the two differ.  The thread never allocates or frees (a free() may
 * trim the heap and unmap a watched range: the unmapper would wait for us while we wait for it).
 * It takes the wire lock before read(), so that an unmapper wakes only once its event is applied
 * (wire.c, wire_events_lock(): the race of issue 21), but waits for it a second at most: a holder
 * of the wire lock that unmaps a watched range waits for the read.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/log.h"
#include "wire/monitor.h"
#include "wire/wire.h"
#include "wire/wire_int.h"

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

enum { WMON_OFF, WMON_ON, WMON_FAILED };

uint64_t wmon_begun_, wmon_done_, wmon_pending_; /* monitor.h */
/* mon.fd + 1 for wmon_fd() once the state is WMON_ON, 0 before and in a fork child: zero when
 * not running, so that it sits beside the counters above rather than in initialised data. */
int wmon_fd1_;

static struct {
	int state;	      /* under wire_lock; read atomically */
	int hugetlb;	      /* the kernel registers hugetlb and shmem ranges (WP_HUGETLBFS_SHMEM) */
	int fd;
	pthread_t thread;
	pthread_mutex_t lock; /* done's waiters */
	pthread_cond_t cv;
	pthread_mutex_t sub_lock; /* the subscribers; the thread holds it while it calls them */
	struct wmon_sub *subs;
	char desc[200];
} mon = {
	.fd = -1,
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cv = PTHREAD_COND_INITIALIZER,
	.sub_lock = PTHREAD_MUTEX_INITIALIZER,
	.desc = "userfaultfd (not started yet)",
};

/* A userfaultfd: the system call (privileged, then user-mode-only), then /dev/userfaultfd. */
static int uffd_open(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd >= 0)
		return fd;
	/* vm.unprivileged_userfaultfd=0 still allows user-mode-only handles (Linux >= 5.11) */
	if (errno == EPERM && (fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)) >= 0)
		return fd;
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
	}
	return fd;
}

/* The features this kernel offers: a handshake with none on a throw-away handle. */
static uint64_t uffd_features(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	int fd = uffd_open();
	uint64_t f = 0;

	if (fd < 0)
		return 0;
	if (ioctl(fd, UFFDIO_API, &api) == 0)
		f = api.features;
	close(fd);
	return f;
}


static void (*mon_late)(const struct uffd_msg *, int); /* wmon_set_late() */

void wmon_set_late(void (*fn)(const struct uffd_msg *msg, int n))
{
	__atomic_store_n(&mon_late, fn, __ATOMIC_RELEASE);
}

int wmon_self(void)
{
	int state = __atomic_load_n(&mon.state, __ATOMIC_ACQUIRE);

	return state == WMON_ON && pthread_equal(pthread_self(), mon.thread);
}

static void *mon_main(void *arg)
{
	struct uffd_msg msg[32];
	int fd = (int)(intptr_t)arg;

	for (;;) {
		struct pollfd pf = { fd, POLLIN, 0 };
		if (poll(&pf, 1, -1) < 0 || !(pf.revents & POLLIN))
			continue;
		/* the wire lock before read(), held until the batch is applied: the unmapper wakes at
		 * read(), and what it does next must find the batch applied (wire.c,
		 * wire_events_lock()) */
		int held = wire_events_lock();
		/* begun before read(): the unmapper wakes at read() and may call us at once */
		__atomic_add_fetch(&wmon_pending_, 1, __ATOMIC_SEQ_CST);
		uint64_t seq = __atomic_add_fetch(&wmon_begun_, 1, __ATOMIC_SEQ_CST);
		ssize_t r = read(fd, msg, sizeof(msg));
		int rerr = errno;
		if (held) {
			if (r > 0)
				wire_apply_events_locked(msg, (int)(r / (ssize_t)sizeof(msg[0])));
			wire_events_unlock();
		}
		if (r > 0) {
			int n = (int)(r / (ssize_t)sizeof(msg[0]));
			if (!held)
				wire_apply_events(msg, n);
			pthread_mutex_lock(&mon.sub_lock);
			for (struct wmon_sub *s = mon.subs; s; s = s->next)
				s->fn(s->arg, msg, n);
			pthread_mutex_unlock(&mon.sub_lock);
		}
		pthread_mutex_lock(&mon.lock);
		__atomic_store_n(&wmon_done_, seq, __ATOMIC_RELEASE);
		__atomic_sub_fetch(&wmon_pending_, 1, __ATOMIC_SEQ_CST);
		pthread_cond_broadcast(&mon.cv);
		pthread_mutex_unlock(&mon.lock);
		void (*late)(const struct uffd_msg *, int) = __atomic_load_n(&mon_late, __ATOMIC_ACQUIRE);
		if (r > 0 && late)
			late(msg, (int)(r / (ssize_t)sizeof(msg[0])));
		if (r < 0 && rerr != EAGAIN && rerr != EINTR) {
			ULOG(UBDMA_LOG_ERROR, "read from userfaultfd failed: %s", strerror(rerr));
			usleep(1000);
		}
	}
	return NULL;
}

int wmon_start_locked(void)
{
	uint64_t avail;
	struct uffdio_api api = { .api = UFFD_API };
	sigset_t all, old;
	int fd, err;

	if (mon.state == WMON_ON)
		return mon.fd;
	if (mon.state == WMON_FAILED)
		return -1;
	avail = uffd_features();
	if ((avail & EVENTS) != EVENTS) {
		snprintf(mon.desc, sizeof(mon.desc), "none: %s",
			 avail ? "the kernel offers no unmap/remove/remap events" :
				 "userfaultfd is not available (vm.unprivileged_userfaultfd=0 without "
				 "CAP_SYS_PTRACE, no /dev/userfaultfd access, or no kernel support)");
		goto failed;
	}
	api.features = EVENTS | (avail & UFFD_FEATURE_WP_HUGETLBFS_SHMEM);
	if ((fd = uffd_open()) < 0 || ioctl(fd, UFFDIO_API, &api) < 0) {
		snprintf(mon.desc, sizeof(mon.desc), "none: userfaultfd set-up failed: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		goto failed;
	}
	/* the thread takes no signal: an application handler must not run on it */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&mon.thread, NULL, mon_main, (void *)(intptr_t)fd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		close(fd);
		snprintf(mon.desc, sizeof(mon.desc), "none: no monitor thread: %s", strerror(err));
		goto failed;
	}
	pthread_detach(mon.thread);
	mon.fd = fd;
	mon.hugetlb = !!(avail & UFFD_FEATURE_WP_HUGETLBFS_SHMEM);
	snprintf(mon.desc, sizeof(mon.desc), "userfaultfd: unmap, remove and remap events%s",
		 avail & UFFD_FEATURE_WP_HUGETLBFS_SHMEM ? "" : " (anonymous memory only on this kernel)");
	__atomic_store_n(&mon.state, WMON_ON, __ATOMIC_RELEASE);
	__atomic_store_n(&wmon_fd1_, fd + 1, __ATOMIC_RELEASE);
	return fd;
failed:
	ULOG_WARN("wiring: %s; munmap cannot end a wiring by itself (docs/wire.md)", mon.desc);
	__atomic_store_n(&mon.state, WMON_FAILED, __ATOMIC_RELEASE);
	return -1;
}


int wmon_active(void)
{
	wire_monitor_start();
	return wmon_fd() >= 0;
}

int wmon_watches_hugetlb(void)
{
	return wmon_fd() >= 0 && mon.hugetlb;
}

const char *wmon_desc(void)
{
	return mon.desc;
}


void wmon_wait(uint64_t upto)
{
	pthread_mutex_lock(&mon.lock);
	while (__atomic_load_n(&wmon_done_, __ATOMIC_ACQUIRE) < upto)
		pthread_cond_wait(&mon.cv, &mon.lock);
	pthread_mutex_unlock(&mon.lock);
}

void wmon_subscribe(struct wmon_sub *s)
{
	pthread_mutex_lock(&mon.sub_lock);
	s->next = mon.subs;
	mon.subs = s;
	pthread_mutex_unlock(&mon.sub_lock);
}

void wmon_unsubscribe(struct wmon_sub *s)
{
	/* the thread calls subscribers under sub_lock: once we have it, s is not being called */
	pthread_mutex_lock(&mon.sub_lock);
	for (struct wmon_sub **pp = &mon.subs; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	pthread_mutex_unlock(&mon.sub_lock);
}

int wmon_register(uintptr_t s, uintptr_t e)
{
	return wmon_register_kind(s, e, NULL);
}

int wmon_register_kind(uintptr_t s, uintptr_t e, int *hugetlbp)
{
	struct uffdio_register r = { .range = { s, e - s }, .mode = UFFDIO_REGISTER_MODE_WP };
	int fd = wmon_fd();

	if (fd < 0)
		return ENOTSUP;
	if (ioctl(fd, UFFDIO_REGISTER, &r))
		return errno;
	/* the kernel offers a range with a hugetlb mapping in it only its basic ioctls, without
	 * UFFDIO_ZEROPAGE (fs/userfaultfd.c, userfaultfd_register(): "Note vmas containing huge
	 * pages"; checked on 6.1 and 6.18: 0x17c for anonymous and shmem, 0x14c for hugetlb) */
	if (hugetlbp)
		*hugetlbp = !(r.ioctls & ((__u64)1 << _UFFDIO_ZEROPAGE));
	return 0;
}

int wmon_registered(uintptr_t s, uintptr_t e)
{
	/* mode 0 resolves write protection, of which there is none: only the kernel's check of
	 * the range is wanted (on 6.1 it also makes the writable PTEs read-only: each page's next
	 * write takes a minor fault that keeps the page, docs/wire.md) */
	struct uffdio_writeprotect w = { .range = { s, e - s }, .mode = 0 };
	int fd = wmon_fd();

	if (fd < 0)
		return ENOTSUP;
	return ioctl(fd, UFFDIO_WRITEPROTECT, &w) ? errno : 0;
}

int wmon_wp_strict(void)
{
	static int strict = -1;
	int k = __atomic_load_n(&strict, __ATOMIC_RELAXED);

	if (k >= 0)
		return k;
	/* a throw-away handle without events, on a scratch mapping with a hole in the middle */
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	int fd = uffd_open();
	char *p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int hole = 0;
	k = 0;
	if (fd >= 0 && p != MAP_FAILED && ioctl(fd, UFFDIO_API, &api) == 0) {
		struct uffdio_register r = { .range = { (uintptr_t)p, 3 * 4096 }, .mode = UFFDIO_REGISTER_MODE_WP };
		struct uffdio_writeprotect w = { .range = { (uintptr_t)p, 3 * 4096 }, .mode = 0 };
		if (ioctl(fd, UFFDIO_REGISTER, &r) == 0 && (hole = munmap(p + 4096, 4096) == 0))
			k = ioctl(fd, UFFDIO_WRITEPROTECT, &w) != 0 && errno == ENOENT;
	}
	/* each page that is still mapped, once: an munmap over the hole would do too, but the fault
	 * harness (tests/faults) counts the bytes every munmap names */
	if (p != MAP_FAILED && hole) {
		munmap(p, 4096);
		munmap(p + 2 * 4096, 4096);
	} else if (p != MAP_FAILED) {
		munmap(p, 3 * 4096);
	}
	if (fd >= 0)
		close(fd);
	__atomic_store_n(&strict, k, __ATOMIC_RELAXED);
	return k;
}

void wmon_unregister(uintptr_t s, uintptr_t e)
{
	struct uffdio_range r = { s, e - s };
	int fd = wmon_fd();

	if (fd >= 0 && s < e)
		ioctl(fd, UFFDIO_UNREGISTER, &r); /* EINVAL/ENOMEM on holes and foreign VMAs: nothing to do */
}

/*
 * fork child: the parent's thread is not here, and the handle still watches the parent's
 * address space.  Drop it (the parent keeps its own copy) and start afresh on first use.
 */
void wmon_forget(void)
{
	if (mon.fd >= 0)
		close(mon.fd);
	mon.fd = -1;
	wmon_fd1_ = 0;
	mon.state = WMON_OFF;
	wmon_begun_ = wmon_done_ = wmon_pending_ = 0;
	mon.subs = NULL;
	pthread_mutex_init(&mon.lock, NULL);
	pthread_cond_init(&mon.cv, NULL);
	pthread_mutex_init(&mon.sub_lock, NULL);
	snprintf(mon.desc, sizeof(mon.desc), "userfaultfd (not started yet)");
}
