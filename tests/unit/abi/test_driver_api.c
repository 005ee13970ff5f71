/*
 * test_driver_api.c - the driver libraries (libubdma_nvme, libubdma_e1000e, libubdma_virtio_net) open, close and
 * report errors the same way, checked on the host through their shared libraries, as a program
 * links them (no device is needed: every case fails before one is touched, or on a PCI address
 * that does not exist):
 *   - open(bdf, opts, &handle) and an int close, with the option struct's size first and the
 *     context second (checked at compile time);
 *   - NULL handles and result pointers give EINVAL, never a crash, and a sentence; closing
 *     NULL does nothing and returns 0, as free(NULL);
 *   - the options' size rule: too small EINVAL, larger with unknown bytes set ENOTSUP, larger
 *     with them zero accepted, a bad option EINVAL, *handle NULL after every failure;
 *   - the last-error sentence is per thread.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <ubdma/ubdma.h>
#include <ubdma/e1000e.h>
#include <ubdma/nvme.h>
#include <ubdma/virtio_net.h>

/* One shape for both drivers: a type error here is a convention broken. */
static int (*const nvme_open)(const char *, const struct ubdma_nvme_opts *, ubdma_nvme_t **) = ubdma_nvme_open;
static int (*const nvme_close)(ubdma_nvme_t *) = ubdma_nvme_close;
static const char *(*const nvme_last_error)(void) = ubdma_nvme_last_error;
static int (*const e1000e_open)(const char *, const struct ubdma_e1000e_opts *, ubdma_e1000e_t **) =
	ubdma_e1000e_open;
static int (*const e1000e_close)(ubdma_e1000e_t *) = ubdma_e1000e_close;
static const char *(*const e1000e_last_error)(void) = ubdma_e1000e_last_error;

static int (*const vnet_open)(const char *, const struct ubdma_virtio_net_opts *, ubdma_virtio_net_t **) =
	ubdma_virtio_net_open;
static int (*const vnet_close)(ubdma_virtio_net_t *) = ubdma_virtio_net_close;
static const char *(*const vnet_last_error)(void) = ubdma_virtio_net_last_error;
_Static_assert(offsetof(struct ubdma_virtio_net_opts, size) == 0, "size first");
_Static_assert(offsetof(struct ubdma_virtio_net_opts, ctx) == sizeof(size_t), "ctx second");
_Static_assert(offsetof(struct ubdma_nvme_opts, size) == 0, "size first");
_Static_assert(offsetof(struct ubdma_e1000e_opts, size) == 0, "size first");
_Static_assert(offsetof(struct ubdma_nvme_opts, ctx) == sizeof(size_t), "ctx second");
_Static_assert(offsetof(struct ubdma_e1000e_opts, ctx) == sizeof(size_t), "ctx second");

/* struct ubdma_e1000e_opts as the first header had it: a program built with it passes its sizeof,
 * padding included, so the second version's members must lie past that. */
struct e1000e_opts_v1 {
	size_t size;
	ubdma_ctx_t *ctx;
	unsigned rx_desc, tx_desc, pool_bufs, link_wait_ms;
	int promisc;
};
_Static_assert(offsetof(struct ubdma_e1000e_opts, removal_watch) >= sizeof(struct e1000e_opts_v1),
	       "the e1000e options' second version starts past the first's padding");

/* No such function on any machine: open gets past its own checks and fails on the device. */
#define ABSENT "0000:ff:1f.7"

/* rc is EINVAL and the calling thread's sentence says a pointer was NULL. */
#define assert_null_refused(rc, last)                                                              \
	do {                                                                                       \
		assert_int_equal((rc), EINVAL);                                                    \
		assert_non_null(strstr((last)(), "NULL"));                                         \
	} while (0)

static void nvme_cb(void *arg, const struct ubdma_nvme_cpl *cpl)
{
	(void)arg;
	(void)cpl;
}

static void test_nvme_null(void **state)
{
	(void)state;
	ubdma_nvme_qpair_t *qp = (void *)1;
	ubdma_nvme_t *c = (void *)1;
	struct ubdma_nvme_ns_info ns;
	unsigned done = 7;
	uint32_t next;
	char buf[512];
	int fd;

	assert_null_refused(nvme_open(NULL, NULL, &c), nvme_last_error);
	assert_null(c);
	assert_null_refused(nvme_open(ABSENT, NULL, NULL), nvme_last_error);
	assert_int_equal(nvme_close(NULL), 0); /* as free(NULL): every close of ubdma */
	assert_null_refused(ubdma_nvme_shutdown(NULL), nvme_last_error);
	assert_null_refused(ubdma_nvme_ns(NULL, 1, &ns), nvme_last_error);
	assert_null_refused(ubdma_nvme_ns_next(NULL, 0, &next), nvme_last_error);
	assert_null_refused(ubdma_nvme_qpair_create(NULL, 0, &qp), nvme_last_error);
	assert_null(qp);
	assert_null_refused(ubdma_nvme_qpair_destroy(NULL), nvme_last_error);
	assert_null_refused(ubdma_nvme_read(NULL, 1, buf, 0, 1, nvme_cb, NULL), nvme_last_error);
	assert_null_refused(ubdma_nvme_write(NULL, 1, buf, 0, 1, nvme_cb, NULL), nvme_last_error);
	assert_null_refused(ubdma_nvme_flush(NULL, 1, nvme_cb, NULL), nvme_last_error);
	assert_null_refused(ubdma_nvme_deallocate(NULL, 1, 0, 1, nvme_cb, NULL), nvme_last_error);
	assert_null_refused(ubdma_nvme_write_zeroes(NULL, 1, 0, 1, nvme_cb, NULL), nvme_last_error);
	assert_null_refused(ubdma_nvme_qpair_batch(NULL, 1), nvme_last_error);
	assert_null_refused(ubdma_nvme_ring(NULL), nvme_last_error);
	assert_null_refused(ubdma_nvme_poll(NULL, 0, &done), nvme_last_error);
	assert_int_equal(done, 0);
	assert_null_refused(ubdma_nvme_wait(NULL, 0, NULL), nvme_last_error);
	assert_null_refused(ubdma_nvme_drain(NULL, 0), nvme_last_error);
	assert_null_refused(ubdma_nvme_qpair_fd(NULL, &fd), nvme_last_error);
	/* accessors answer NULL or 0 */
	assert_null_refused(ubdma_nvme_qpair_set_timeout(NULL, 100), nvme_last_error);
	struct ubdma_nvme_recovery rec;
	assert_null_refused(ubdma_nvme_recovery(NULL, &rec), nvme_last_error);
	assert_null(ubdma_nvme_info(NULL));
	assert_int_equal(ubdma_nvme_outstanding(NULL), 0);
	assert_int_equal(ubdma_nvme_qpair_id(NULL), 0);
	assert_null(ubdma_nvme_pci(NULL));
	assert_string_equal(ubdma_nvme_strstatus(0), "Successful Completion");
}

static void test_nvme_opts_size(void **state)
{
	(void)state;
	struct {
		struct ubdma_nvme_opts o;
		unsigned char newer[16]; /* what a later version of the struct might add */
	} big;
	struct ubdma_nvme_opts o = { .io_queues = 1 };
	ubdma_nvme_t *c = (void *)1;
	int rc;

	/* the size left out: refused, whatever the rest says */
	assert_int_equal(nvme_open(ABSENT, &o, &c), EINVAL);
	assert_null(c);
	assert_non_null(strstr(nvme_last_error(), "size"));
	o.size = offsetof(struct ubdma_nvme_opts, max_transfer); /* the first version, cut short */
	assert_int_equal(nvme_open(ABSENT, &o, &c), EINVAL);
	/* the first version whole (all of today's members): accepted, then no such device */
	o.size = offsetof(struct ubdma_nvme_opts, max_transfer) + sizeof(o.max_transfer);
	c = (void *)1;
	rc = nvme_open(ABSENT, &o, &c);
	assert_true(rc != 0 && rc != EINVAL && rc != ENOTSUP);
	assert_null(c);
	/* a bigger struct from a newer header: accepted while what this library cannot know is 0 */
	memset(&big, 0, sizeof(big));
	big.o.size = sizeof(big);
	rc = nvme_open(ABSENT, &big.o, &c);
	assert_true(rc != 0 && rc != EINVAL && rc != ENOTSUP);
	big.newer[3] = 1;
	assert_int_equal(nvme_open(ABSENT, &big.o, &c), ENOTSUP);
	assert_null(c);
	/* a sized struct with an option out of range */
	o = (struct ubdma_nvme_opts){ .size = sizeof(o), .sgl = 7 };
	assert_int_equal(nvme_open(ABSENT, &o, &c), EINVAL);
	o = (struct ubdma_nvme_opts){ .size = sizeof(o), .queue_entries = 1 };
	assert_int_equal(nvme_open(ABSENT, &o, &c), EINVAL);
	o = (struct ubdma_nvme_opts){ .size = sizeof(o), .reset_policy = 7 };
	assert_int_equal(nvme_open(ABSENT, &o, &c), EINVAL);
	assert_non_null(strstr(nvme_last_error(), "reset_policy"));
	o = (struct ubdma_nvme_opts){ .size = sizeof(o), .removal_watch = 2 };
	assert_int_equal(nvme_open(ABSENT, &o, &c), EINVAL);
	assert_non_null(strstr(nvme_last_error(), "removal_watch"));
	assert_null(c);
	/* the second version (up to reset_policy) whole: removal_watch takes its default */
	o = (struct ubdma_nvme_opts){ .size = offsetof(struct ubdma_nvme_opts, removal_watch), .removal_watch = 2 };
	rc = nvme_open(ABSENT, &o, &c);
	assert_true(rc != 0 && rc != EINVAL && rc != ENOTSUP);
	assert_null(c);
}

static void test_e1000e_null(void **state)
{
	(void)state;
	struct ubdma_e1000e_pkt *pkts[1];
	struct ubdma_e1000e_stats st;
	struct ubdma_e1000e_link link;
	ubdma_e1000e_t *nic = (void *)1;
	struct iovec iov = { 0 };
	unsigned n = 7;
	uint8_t mac[6];

	assert_null_refused(e1000e_open(NULL, NULL, &nic), e1000e_last_error);
	assert_null(nic);
	assert_null_refused(e1000e_open(ABSENT, NULL, NULL), e1000e_last_error);
	assert_int_equal(e1000e_close(NULL), 0);
	assert_null_refused(ubdma_e1000e_stop(NULL), e1000e_last_error);
	assert_null_refused(ubdma_e1000e_start(NULL), e1000e_last_error);
	assert_null_refused(ubdma_e1000e_pkt_alloc(NULL, pkts, 1), e1000e_last_error);
	assert_null_refused(ubdma_e1000e_pkt_free(NULL, pkts, 1), e1000e_last_error);
	assert_null_refused(ubdma_e1000e_tx_burst(NULL, pkts, 1, &n), e1000e_last_error);
	assert_int_equal(n, 0);
	n = 7;
	assert_null_refused(ubdma_e1000e_rx_burst(NULL, pkts, 1, &n), e1000e_last_error);
	assert_int_equal(n, 0);
	assert_null_refused(ubdma_e1000e_send(NULL, &iov, 1, &n), e1000e_last_error);
	assert_null_refused(ubdma_e1000e_recv(NULL, &iov, 1, &n), e1000e_last_error);
	assert_null_refused(ubdma_e1000e_tx_flush(NULL, 0, &n), e1000e_last_error);
	assert_null_refused(ubdma_e1000e_mac(NULL, mac), e1000e_last_error);
	assert_null_refused(ubdma_e1000e_link(NULL, &link), e1000e_last_error);
	assert_null_refused(ubdma_e1000e_wait_link(NULL, 0), e1000e_last_error);
	assert_null_refused(ubdma_e1000e_set_promisc(NULL, 1), e1000e_last_error);
	assert_null_refused(ubdma_e1000e_stats(NULL, &st), e1000e_last_error);
	assert_int_equal(ubdma_e1000e_pool_free(NULL), 0);
	assert_null(ubdma_e1000e_pci(NULL));
}

static void test_e1000e_opts_size(void **state)
{
	(void)state;
	struct {
		struct ubdma_e1000e_opts o;
		unsigned char newer[16];
	} big;
	struct ubdma_e1000e_opts o = { .rx_desc = 64 };
	ubdma_e1000e_t *nic = (void *)1;
	int rc;

	assert_int_equal(e1000e_open(ABSENT, &o, &nic), EINVAL);
	assert_null(nic);
	assert_non_null(strstr(e1000e_last_error(), "size"));
	o.size = offsetof(struct ubdma_e1000e_opts, promisc);
	assert_int_equal(e1000e_open(ABSENT, &o, &nic), EINVAL);
	o.size = offsetof(struct ubdma_e1000e_opts, promisc) + sizeof(o.promisc);
	nic = (void *)1;
	rc = e1000e_open(ABSENT, &o, &nic);
	assert_true(rc != 0 && rc != EINVAL && rc != ENOTSUP);
	assert_null(nic);
	memset(&big, 0, sizeof(big));
	big.o.size = sizeof(big);
	rc = e1000e_open(ABSENT, &big.o, &nic);
	assert_true(rc != 0 && rc != EINVAL && rc != ENOTSUP);
	big.newer[0] = 1;
	assert_int_equal(e1000e_open(ABSENT, &big.o, &nic), ENOTSUP);
	assert_null(nic);
	o = (struct ubdma_e1000e_opts){ .size = sizeof(o), .rx_desc = 3 };
	assert_int_equal(e1000e_open(ABSENT, &o, &nic), EINVAL);
	assert_non_null(strstr(e1000e_last_error(), "rx_desc"));
	o = (struct ubdma_e1000e_opts){ .size = sizeof(o), .rx_desc = 64, .pool_bufs = 64 };
	assert_int_equal(e1000e_open(ABSENT, &o, &nic), EINVAL);
	o = (struct ubdma_e1000e_opts){ .size = sizeof(o), .removal_watch = 2 };
	assert_int_equal(e1000e_open(ABSENT, &o, &nic), EINVAL);
	assert_non_null(strstr(e1000e_last_error(), "removal_watch"));
	assert_null(nic);
	/* a program built with the first header: its sizeof, the padding (now reserved) left unset,
	 * is accepted, and what lies past it takes its default */
	o = (struct ubdma_e1000e_opts){ .size = sizeof(struct e1000e_opts_v1), .reserved = 0x5a5a5a5a,
					.removal_watch = 2 };
	nic = (void *)1;
	rc = e1000e_open(ABSENT, &o, &nic);
	assert_true(rc != 0 && rc != EINVAL && rc != ENOTSUP);
	assert_null(nic);
	/* reserved is never read by this version either */
	o = (struct ubdma_e1000e_opts){ .size = sizeof(o), .reserved = -1,
					.removal_watch = UBDMA_E1000E_WATCH_OFF };
	rc = e1000e_open(ABSENT, &o, &nic);
	assert_true(rc != 0 && rc != EINVAL && rc != ENOTSUP);
}

static void test_virtio_net_null(void **state)
{
	(void)state;
	struct ubdma_virtio_net_pkt *pkts[1];
	struct ubdma_virtio_net_stats st;
	struct ubdma_virtio_net_link link;
	ubdma_virtio_net_t *nic = (void *)1;
	unsigned n = 7;
	uint8_t mac[6];

	assert_null_refused(vnet_open(NULL, NULL, &nic), vnet_last_error);
	assert_null(nic);
	assert_null_refused(vnet_open(ABSENT, NULL, NULL), vnet_last_error);
	assert_int_equal(vnet_close(NULL), 0);
	assert_null_refused(ubdma_virtio_net_pkt_alloc(NULL, 0, pkts, 1), vnet_last_error);
	assert_null_refused(ubdma_virtio_net_pkt_free(NULL, pkts, 1), vnet_last_error);
	assert_null_refused(ubdma_virtio_net_tx_burst(NULL, 0, pkts, 1, &n), vnet_last_error);
	assert_int_equal(n, 0);
	n = 7;
	assert_null_refused(ubdma_virtio_net_rx_burst(NULL, 0, pkts, 1, &n), vnet_last_error);
	assert_int_equal(n, 0);
	assert_null_refused(ubdma_virtio_net_tx_flush(NULL, 0, 0, &n), vnet_last_error);
	assert_null_refused(ubdma_virtio_net_rx_wait(NULL, 0, 0), vnet_last_error);
	assert_null_refused(ubdma_virtio_net_mac(NULL, mac), vnet_last_error);
	assert_null_refused(ubdma_virtio_net_link(NULL, &link), vnet_last_error);
	assert_null_refused(ubdma_virtio_net_set_promisc(NULL, 1), vnet_last_error);
	assert_null_refused(ubdma_virtio_net_stats(NULL, &st), vnet_last_error);
	assert_int_equal(ubdma_virtio_net_pool_free(NULL, 0), 0);
	assert_int_equal(ubdma_virtio_net_features(NULL), 0);
	assert_int_equal(ubdma_virtio_net_queue_pairs(NULL), 0);
	assert_null(ubdma_virtio_net_pci(NULL));
}

static void test_virtio_net_opts_size(void **state)
{
	(void)state;
	struct {
		struct ubdma_virtio_net_opts o;
		unsigned char newer[16];
	} big;
	struct ubdma_virtio_net_opts o = { .queue_pairs = 1 };
	ubdma_virtio_net_t *nic = (void *)1;
	int rc;

	assert_int_equal(vnet_open(ABSENT, &o, &nic), EINVAL);
	assert_null(nic);
	assert_non_null(strstr(vnet_last_error(), "size"));
	o.size = offsetof(struct ubdma_virtio_net_opts, promisc) + sizeof(o.promisc);
	nic = (void *)1;
	rc = vnet_open(ABSENT, &o, &nic);
	assert_true(rc != 0 && rc != EINVAL && rc != ENOTSUP);
	assert_null(nic);
	memset(&big, 0, sizeof(big));
	big.o.size = sizeof(big);
	rc = vnet_open(ABSENT, &big.o, &nic);
	assert_true(rc != 0 && rc != EINVAL && rc != ENOTSUP);
	big.newer[0] = 1;
	assert_int_equal(vnet_open(ABSENT, &big.o, &nic), ENOTSUP);
	assert_null(nic);
	o = (struct ubdma_virtio_net_opts){ .size = sizeof(o), .queue_size = 100 };
	assert_int_equal(vnet_open(ABSENT, &o, &nic), EINVAL);
	assert_non_null(strstr(vnet_last_error(), "queue_size"));
	o = (struct ubdma_virtio_net_opts){ .size = sizeof(o), .queue_pairs = UBDMA_VIRTIO_NET_MAX_QP + 1 };
	assert_int_equal(vnet_open(ABSENT, &o, &nic), EINVAL);
	o = (struct ubdma_virtio_net_opts){ .size = sizeof(o), .features_off = 1ull << UBDMA_VIRTIO_F_VERSION_1 };
	assert_int_equal(vnet_open(ABSENT, &o, &nic), EINVAL);
	o = (struct ubdma_virtio_net_opts){ .size = sizeof(o), .queue_size = 64, .pool_bufs = 64 };
	assert_int_equal(vnet_open(ABSENT, &o, &nic), EINVAL);
	assert_null(nic);
}

/* Another thread's failures do not touch this thread's sentences. */
static void *fail_elsewhere(void *arg)
{
	(void)arg;
	ubdma_nvme_shutdown(NULL);
	ubdma_e1000e_stop(NULL);
	return NULL;
}

static void test_last_error_per_thread(void **state)
{
	(void)state;
	struct ubdma_nvme_opts no = { 0 };
	struct ubdma_e1000e_opts eo = { 0 };
	ubdma_nvme_t *c;
	ubdma_e1000e_t *nic;
	pthread_t t;

	assert_int_equal(nvme_open(ABSENT, &no, &c), EINVAL);
	assert_int_equal(e1000e_open(ABSENT, &eo, &nic), EINVAL);
	assert_int_equal(pthread_create(&t, NULL, fail_elsewhere, NULL), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_non_null(strstr(nvme_last_error(), "size"));
	assert_non_null(strstr(e1000e_last_error(), "size"));
	/* and each library keeps its own */
	ubdma_nvme_shutdown(NULL);
	assert_non_null(strstr(e1000e_last_error(), "size"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nvme_null),
		cmocka_unit_test(test_virtio_net_null),
		cmocka_unit_test(test_virtio_net_opts_size),
		cmocka_unit_test(test_nvme_opts_size),
		cmocka_unit_test(test_e1000e_null),
		cmocka_unit_test(test_e1000e_opts_size),
		cmocka_unit_test(test_last_error_per_thread),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
