/*
 * nvme_watch.c - the removal watcher of a controller: the thread of drivers/common/drv_watch.h,
 * started at open, asleep until the kernel's request or error eventfd (ubdma_pci_notify_fds())
 * or close.  It exists for the one case the periodic check cannot bound: a program that makes no
 * driver call at all (no poll, no wait, no submission) would otherwise hold the kernel's remove
 * of the device (vfio-pci waits for the device file's close) until its next call.  When the
 * kernel asks, the watcher does what a poll's check does (nvme_check_notify()): the controller is
 * gone, the device is released under admin_lock, BAR0 replaced in one step by memory that reads
 * all ones, so a thread inside the I/O path at that moment touches the device or that memory,
 * never a hole, and the I/O path keeps taking no lock and making no system call.  The thread
 * takes no part in I/O; it ends when the device is gone or at close.  Opt out with
 * ubdma_nvme_opts.removal_watch = UBDMA_NVME_WATCH_OFF (docs/nvme.md, "Surprise removal").
 */
#include <errno.h>
#include <string.h>

#include "nvme_int.h"
#include "../common/drv_watch.h"

/* A request or an error: what a poll's check does.  A controller that failed otherwise (a reset
 * that failed) still owes the kernel its device when asked, so only "gone" ends the watch. */
static int watch_check(void *arg)
{
	struct ubdma_nvme *c = arg;

	nvme_check_notify(c, 0);
	return __atomic_load_n(&c->gone, __ATOMIC_ACQUIRE);
}

static void watch_lost(void *arg, int err)
{
	struct ubdma_nvme *c = arg;

	nvme_note("%s: removal watcher: poll failed (%s): a removal is seen at the next driver call only",
		  ubdma_pci_bdf(c->dev), strerror(err));
}

int nvme_watch_start(struct ubdma_nvme *c)
{
	/* no request interrupt (nvme_notify_setup() said so): nothing to wait on, no thread */
	int err = drv_watch_start(&c->watch, c->req_fd, c->err_fd, "ubdma-nvme-rm", watch_check, watch_lost, c);

	if (err)
		return nvme_err(err, "removal watcher: %s (open with removal_watch = UBDMA_NVME_WATCH_OFF to do "
				"without)", strerror(err));
	return 0;
}

void nvme_watch_stop(struct ubdma_nvme *c)
{
	int err = drv_watch_stop(&c->watch);

	if (err)
		nvme_note("removal watcher: stop: %s", strerror(err));
}
