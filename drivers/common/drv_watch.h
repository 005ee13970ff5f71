/*
 * drv_watch.h - the removal watcher every driver library of drivers/ runs the same way: one thread
 * a device, started at open, asleep in poll(2) on the kernel's request and error eventfds
 * (ubdma_pci_notify_fds()) and on a stop eventfd of its own.  It exists for the one case a
 * driver's periodic check cannot bound: a program that makes no driver call at all would hold the
 * kernel's remove of the device (vfio-pci waits for the device file's close, asking again every
 * 10 s) until its next call.  What to do when the kernel asks is the driver's (its check
 * callback: give the device back with ubdma_pci_release(), which BAR accesses of other threads
 * may race); this file owns only the thread: its start with the program's signals blocked and a
 * small stack, its loop, its stop at close (and that a fork's child, which has no such thread,
 * neither joins nor stops the parent's).  Static functions without data: include it wherever a
 * driver needs it (nvme_watch.c, e1000e.c); no symbol leaves either library.
 */
#ifndef UBDMA_DRV_WATCH_H
#define UBDMA_DRV_WATCH_H

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/types.h>
#include <unistd.h>

/* The thread sleeps in poll(2) and runs the driver's check; a small stack is plenty (glibc's
 * default is the stack rlimit, often 8 MiB of address space a device). */
#define DRV_WATCH_STACK (64u * 1024)

struct drv_watch {
	pthread_t thread;
	int stop_fd;		/* eventfd that ends the thread at close; -1 when none runs */
	int req_fd, err_fd;	/* the kernel's request and error eventfds (err_fd may be -1) */
	pid_t pid;		/* the process the thread runs in */
	/* a request or an error eventfd is readable: the driver reads it and acts; returns 1 once
	 * the device is gone (the watch ends), 0 to sleep again */
	int (*check)(void *arg);
	/* poll(2) failed with @err: the watch ends, the driver says what that costs */
	void (*lost)(void *arg, int err);
	void *arg;
};

/* Before drv_watch_start(), or instead of it: drv_watch_stop() then does nothing. */
static inline void drv_watch_init(struct drv_watch *w)
{
	w->stop_fd = -1;
	w->pid = 0;
}

static void *drv_watch_main(void *arg)
{
	struct drv_watch *w = arg;
	struct pollfd p[3] = {
		{ .fd = w->stop_fd, .events = POLLIN },
		{ .fd = w->req_fd, .events = POLLIN },
		{ .fd = w->err_fd, .events = POLLIN }, /* poll(2) ignores an entry whose fd is -1 */
	};

	for (;;) {
		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			w->lost(w->arg, errno);
			break;
		}
		if (p[0].revents)
			break; /* close */
		/* another thread's check may have read the eventfd first: the driver's read then
		 * finds nothing, and the thread sleeps again */
		if ((p[1].revents | p[2].revents) && w->check(w->arg))
			break;
	}
	return NULL;
}

/*
 * Start the watch of @req_fd and @err_fd (-1: none) with @check and @lost called on @arg from
 * the thread (named @name, at most 15 characters).  Without a request eventfd (@req_fd -1: the
 * kernel offers no request interrupt) there is nothing to wait on: 0, and no thread.
 * Return: 0; the errno of eventfd(2) (EMFILE, ENFILE, ENOMEM) or pthread_create(3) (EAGAIN ...);
 * on failure nothing stays open or running.
 */
static inline int drv_watch_start(struct drv_watch *w, int req_fd, int err_fd, const char *name,
				  int (*check)(void *), void (*lost)(void *, int), void *arg)
{
	pthread_attr_t attr;
	sigset_t all, old;
	int err;

	drv_watch_init(w);
	if (req_fd < 0)
		return 0;
	w->req_fd = req_fd;
	w->err_fd = err_fd;
	w->check = check;
	w->lost = lost;
	w->arg = arg;
	if ((w->stop_fd = eventfd(0, EFD_CLOEXEC)) < 0) {
		w->stop_fd = -1;
		return errno;
	}
	/* the program's signals are not for this thread: it starts with all of them blocked */
	sigfillset(&all);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, DRV_WATCH_STACK);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&w->thread, &attr, drv_watch_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (err) {
		close(w->stop_fd);
		w->stop_fd = -1;
		return err;
	}
	pthread_setname_np(w->thread, name);
	w->pid = getpid();
	return 0;
}

/*
 * End the watch and wait for the thread (it may be inside @check: the driver's check must not
 * wait for the caller of this).  Returns the errno of the stop write, 0 when it went (the driver
 * notes it); does nothing when no thread runs.
 */
static inline int drv_watch_stop(struct drv_watch *w)
{
	uint64_t one = 1;
	int err = 0;

	if (w->stop_fd < 0)
		return 0;
	/* a child of fork(2) has no such thread (only the caller of fork is copied): joining it would
	 * wait for ever, and the eventfd it shares would stop the parent's watcher */
	if (w->pid == getpid()) {
		/* an eventfd write of 1 cannot fail short of a counter at its maximum */
		if (write(w->stop_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
			err = errno;
		pthread_join(w->thread, NULL);
	}
	close(w->stop_fd);
	w->stop_fd = -1;
	return err;
}

#endif
