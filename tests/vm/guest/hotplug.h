/*
 * hotplug.h - the guest's side of run-guest.sh -R: asking the host for a hot-unplug (the
 * "UBDMA-VM-QMP:" marker that tests/vm/qmp-helper.py turns into a QMP command) and waiting for
 * the kernel's remove to finish (the device leaving /sys/bus/pci/devices).  Shared by
 * test_nvme_remove, test_e1000e_remove, the idle-removal tests and the AER tests (review finding: the remove tests had
 * one copy each).
 */
#ifndef UBDMA_GUEST_HOTPLUG_H
#define UBDMA_GUEST_HOTPLUG_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static __attribute__((unused)) uint64_t hp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static __attribute__((unused)) int hp_in_sysfs(const char *bdf)
{
	char path[96];
	struct stat st;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", bdf);
	return stat(path, &st) == 0;
}

/*
 * Has the host's QEMU run "CMD ARG" (qmp-helper.py: device_del ID, or aer NAME ID ...); returns
 * when the marker is out, not when QEMU has acted: the time of asking, in ms.
 */
static __attribute__((unused)) uint64_t hp_ask(const char *cmd, const char *arg)
{
	printf("UBDMA-VM-QMP: %s %s\n", cmd, arg);
	/* the helper reads the console: the whole line must be out before anything else happens */
	fflush(stdout);
	return hp_now_ms();
}

/*
 * After the program let go of BDF (close), the kernel's remove completes: checks that the device
 * leaves sysfs within 30 s, and prints how long after the close and after the unplug was asked.
 */
static __attribute__((unused)) void hp_check_gone(const char *bdf, uint64_t asked)
{
	uint64_t t0 = hp_now_ms();

	while (hp_in_sysfs(bdf) && hp_now_ms() - t0 < 30000)
		usleep(50000);
	check(!hp_in_sysfs(bdf), "%s left /sys/bus/pci/devices %llu ms after close (%llu ms after device_del "
	      "was asked)", bdf, (unsigned long long)(hp_now_ms() - t0), (unsigned long long)(hp_now_ms() - asked));
}

/* The remove asked by an unbind from vfio-pci (the idle-removal tests): a thread whose write
 * returns when the kernel's remove did. */
struct hp_unbind {
	const char *bdf;
	pthread_t thread;
	int err;		/* the write's errno, 0 when it succeeded */
	uint64_t start, done;	/* ms; done is 0 until the write returned */
};

static __attribute__((unused)) int hp_sysfs_write(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY), err = 0;

	if (fd < 0)
		return errno;
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		err = errno ? errno : EIO;
	close(fd);
	return err;
}

static __attribute__((unused)) void *hp_unbind_main(void *arg)
{
	struct hp_unbind *u = arg;

	u->err = hp_sysfs_write("/sys/bus/pci/drivers/vfio-pci/unbind", u->bdf);
	__atomic_store_n(&u->done, hp_now_ms(), __ATOMIC_RELEASE);
	return NULL;
}

static __attribute__((unused)) int hp_bound_to_vfio(const char *bdf)
{
	char path[128], link[256];
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", bdf);
	if ((n = readlink(path, link, sizeof(link) - 1)) < 0)
		return 0;
	link[n] = 0;
	return strstr(link, "/vfio-pci") != NULL;
}

/* Unbind @bdf from vfio-pci on a thread of its own and wait up to @limit_ms (the caller makes no
 * driver call meanwhile) for the kernel's remove; the time it returned (ms), 0 while it still
 * waits.  The caller joins u->thread later (with the watcher off, it returns only after close). */
static __attribute__((unused)) uint64_t hp_unbind_wait(struct hp_unbind *u, const char *bdf, uint64_t limit_ms)
{
	uint64_t done;

	*u = (struct hp_unbind){ .bdf = bdf, .start = hp_now_ms() };
	pthread_create(&u->thread, NULL, hp_unbind_main, u);
	while (!(done = __atomic_load_n(&u->done, __ATOMIC_ACQUIRE)) && hp_now_ms() - u->start < limit_ms)
		usleep(20000);
	return done;
}

/* Back on vfio-pci after an unbind (driver_override still names it), for whatever runs next. */
static __attribute__((unused)) void hp_rebind_vfio(const char *bdf)
{
	int rc = hp_sysfs_write("/sys/bus/pci/drivers_probe", bdf);

	check(rc == 0 && hp_bound_to_vfio(bdf), "%s bound to vfio-pci again (%s)", bdf, rc ? strerror(rc) : "ok");
}

#endif
