/*
 * nvme_watch.c - the removal watcher: one thread per controller, started at open, asleep in
 * poll(2) on the kernel's request and error eventfds (ubdma_pci_notify_fds()) and on a stop
 * eventfd of its own.  It exists for the one case the periodic check cannot bound: a program that
 * makes no driver call at all (no poll, no wait, no submission) would otherwise hold the kernel's
 * remove of the device (vfio-pci waits for the device file's close) until its next call.  When
 * the kernel asks, the watcher does what a poll's check does (nvme_check_notify()): the
 * controller is gone, the device is released under admin_lock, BAR0 replaced in one step by
 * memory that reads all ones, so a thread inside the I/O path at that moment touches the device
 * or that memory, never a hole, and the I/O path keeps taking no lock and making no system call.
 * The thread takes no part in I/O; it ends when the device is gone or at close (the stop eventfd).
 * Opt out with ubdma_nvme_opts.removal_watch = UBDMA_NVME_WATCH_OFF (docs/nvme.md, "Surprise
 * removal").
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "nvme_int.h"

/* The thread sleeps in poll(2) and runs the check; a small stack is plenty (glibc's default is
 * the stack rlimit, often 8 MiB of address space a controller). */
#define NVME_WATCH_STACK (64u * 1024)

static void *watch_main(void *arg)
{
	struct ubdma_nvme *c = arg;
	struct pollfd p[3] = {
		{ .fd = c->watch_fd, .events = POLLIN },
		{ .fd = c->req_fd, .events = POLLIN }, /* poll(2) ignores an entry whose fd is -1 */
		{ .fd = c->err_fd, .events = POLLIN },
	};

	while (!__atomic_load_n(&c->gone, __ATOMIC_ACQUIRE)) {
		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			nvme_note("%s: removal watcher: poll failed (%s): a removal is seen at the next driver call only",
				  ubdma_pci_bdf(c->dev), strerror(errno));
			break;
		}
		if (p[0].revents)
			break; /* close */
		/* another thread's check may have read the eventfd first: the read then finds nothing.
		 * A controller that failed otherwise (a reset that failed) still owes the kernel its
		 * device when asked, so only "gone" ends the loop */
		if (p[1].revents | p[2].revents)
			nvme_check_notify(c, 0);
	}
	return NULL;
}

int nvme_watch_start(struct ubdma_nvme *c)
{
	pthread_attr_t attr;
	sigset_t all, old;
	int err;

	if (c->req_fd < 0)
		return 0; /* no request interrupt: nothing to wait on (nvme_notify_setup() said so) */
	if ((c->watch_fd = eventfd(0, EFD_CLOEXEC)) < 0)
		return nvme_err(errno, "removal watcher: eventfd: %s", strerror(errno));
	/* the program's signals are not for this thread: it starts with all of them blocked */
	sigfillset(&all);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, NVME_WATCH_STACK);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&c->watcher, &attr, watch_main, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (err) {
		close(c->watch_fd);
		c->watch_fd = -1;
		return nvme_err(err, "removal watcher: pthread_create: %s (open with removal_watch = "
				"UBDMA_NVME_WATCH_OFF to do without)", strerror(err));
	}
	pthread_setname_np(c->watcher, "ubdma-nvme-rm");
	c->watch_pid = getpid();
	c->watching = 1;
	return 0;
}

void nvme_watch_stop(struct ubdma_nvme *c)
{
	uint64_t one = 1;

	/* a child of fork(2) has no such thread (only the caller of fork is copied): joining it would
	 * wait for ever, and the eventfd it shares would stop the parent's watcher */
	if (c->watching && c->watch_pid == getpid()) {
		/* an eventfd write of 1 cannot fail short of a counter at its maximum */
		if (write(c->watch_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
			nvme_note("removal watcher: stop: %s", strerror(errno));
		pthread_join(c->watcher, NULL);
	}
	c->watching = 0;
	if (c->watch_fd >= 0)
		close(c->watch_fd);
	c->watch_fd = -1;
}
