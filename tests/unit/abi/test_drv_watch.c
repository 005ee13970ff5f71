/*
 * test_drv_watch.c - the drivers' removal watcher thread (drivers/common/drv_watch.h, built into
 * libubdma_nvme and libubdma_e1000e) on the host, with plain eventfds standing in for VFIO's
 * request and error eventfds (the kernel's side is exercised in the guest: test_nvme_remove_idle,
 * test_e1000e_remove_idle).  Checks: no request eventfd, no thread; a request wakes the check on
 * a thread of the given name with every signal blocked, and its 1 ends the watch; an error whose
 * check says 0 leaves it asleep (the check ran once, no spin); stop ends a sleeping watch; a
 * fork's child neither joins nor stops the parent's watch.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../drivers/common/drv_watch.h"

struct dev {
	int req, err;
	int checks;		/* calls of check (atomic) */
	int gone;		/* check's answer once the request was read */
	int sigint_blocked;
	char name[16];
	int lost;
};

static int check(void *arg)
{
	struct dev *d = arg;
	sigset_t mask;
	uint64_t n;

	pthread_sigmask(SIG_BLOCK, NULL, &mask);
	d->sigint_blocked = sigismember(&mask, SIGINT) == 1 && sigismember(&mask, SIGTERM) == 1;
	pthread_getname_np(pthread_self(), d->name, sizeof(d->name));
	if (read(d->req, &n, sizeof(n)) == (ssize_t)sizeof(n))
		d->gone = 1;
	(void)!read(d->err, &n, sizeof(n));
	__atomic_add_fetch(&d->checks, 1, __ATOMIC_RELEASE);
	return d->gone;
}

static void lost(void *arg, int err)
{
	(void)err;
	((struct dev *)arg)->lost = 1;
}

static void signal_fd(int fd)
{
	uint64_t one = 1;

	assert_int_equal(write(fd, &one, sizeof(one)), sizeof(one));
}

/* Wait up to 2 s for @want checks. */
static int wait_checks(struct dev *d, int want)
{
	for (int i = 0; i < 2000 && __atomic_load_n(&d->checks, __ATOMIC_ACQUIRE) < want; i++)
		usleep(1000);
	return __atomic_load_n(&d->checks, __ATOMIC_ACQUIRE);
}

static void dev_open(struct dev *d)
{
	memset(d, 0, sizeof(*d));
	d->req = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	d->err = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(d->req >= 0 && d->err >= 0);
}

static void dev_close(struct dev *d)
{
	close(d->req);
	close(d->err);
}

static void test_no_request_fd(void **state)
{
	struct drv_watch w;

	(void)state;
	drv_watch_init(&w);
	assert_int_equal(drv_watch_stop(&w), 0); /* never started: nothing */
	assert_int_equal(drv_watch_start(&w, -1, -1, "t-watch", check, lost, NULL), 0);
	assert_int_equal(w.stop_fd, -1);
	assert_int_equal(drv_watch_stop(&w), 0);
}

static void test_request_ends_watch(void **state)
{
	struct drv_watch w;
	struct dev d;

	(void)state;
	dev_open(&d);
	assert_int_equal(drv_watch_start(&w, d.req, d.err, "t-watch", check, lost, &d), 0);
	usleep(20000);
	assert_int_equal(__atomic_load_n(&d.checks, __ATOMIC_ACQUIRE), 0); /* asleep: nothing to do */
	signal_fd(d.req);
	assert_int_equal(wait_checks(&d, 1), 1);
	assert_int_equal(d.gone, 1);
	assert_string_equal(d.name, "t-watch");
	assert_true(d.sigint_blocked);
	/* the watch ended on its own: a second request finds no one */
	signal_fd(d.req);
	usleep(20000);
	assert_int_equal(__atomic_load_n(&d.checks, __ATOMIC_ACQUIRE), 1);
	assert_int_equal(drv_watch_stop(&w), 0);
	assert_int_equal(w.stop_fd, -1);
	assert_int_equal(d.lost, 0);
	dev_close(&d);
}

static void test_error_sleeps_again(void **state)
{
	struct drv_watch w;
	struct dev d;

	(void)state;
	dev_open(&d);
	assert_int_equal(drv_watch_start(&w, d.req, d.err, "t-watch", check, lost, &d), 0);
	signal_fd(d.err);
	assert_int_equal(wait_checks(&d, 1), 1);
	usleep(50000);
	/* the check read the error and said 0: asleep again, not spinning */
	assert_int_equal(__atomic_load_n(&d.checks, __ATOMIC_ACQUIRE), 1);
	assert_int_equal(d.gone, 0);
	/* close while it sleeps: stop wakes and joins it */
	assert_int_equal(drv_watch_stop(&w), 0);
	signal_fd(d.req);
	usleep(20000);
	assert_int_equal(__atomic_load_n(&d.checks, __ATOMIC_ACQUIRE), 1);
	dev_close(&d);
}

static void test_fork_child_leaves_parent(void **state)
{
	struct drv_watch w;
	struct dev d;
	int status;
	pid_t pid;

	(void)state;
	dev_open(&d);
	assert_int_equal(drv_watch_start(&w, d.req, d.err, "t-watch", check, lost, &d), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* the child has no watcher thread: stop must neither wait for one nor wake the parent's */
		alarm(5);
		_exit(drv_watch_stop(&w) == 0 && w.stop_fd == -1 ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* the parent's watch still runs */
	signal_fd(d.req);
	assert_int_equal(wait_checks(&d, 1), 1);
	assert_int_equal(d.gone, 1);
	assert_int_equal(drv_watch_stop(&w), 0);
	dev_close(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_request_fd),
		cmocka_unit_test(test_request_ends_watch),
		cmocka_unit_test(test_error_sleeps_again),
		cmocka_unit_test(test_fork_child_leaves_parent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
