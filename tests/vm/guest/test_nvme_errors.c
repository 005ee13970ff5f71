/*
 * test_nvme_errors - libubdma_nvme refuses bad input with clear errors and loses nothing.
 *
 * Runs in the test-bed guest with the NVMe on vfio-pci ($UBDMA_VM_NVME).  Cases:
 *   open      NULL / malformed / absent BDF; options without their size (EINVAL); a second open
 *             of the same controller (EBUSY);
 *   input     namespace 0 and past NN (EINVAL), 0 blocks (EINVAL), LBAs past the end (ERANGE),
 *             a transfer over MDTS (E2BIG): nothing submitted, no callback;
 *   full      a 4-entry queue takes 3 commands, the 4th gets EAGAIN; the 3 complete with their data;
 *   status    ubdma_nvme_strstatus() names statuses; errnos of completion statuses;
 *   msix      a controller opened with interrupts: the completion wakes ubdma_nvme_wait() through
 *             the queue pair's eventfd;
 *   shutdown  after ubdma_nvme_shutdown(), submissions and queue creation fail with ESHUTDOWN,
 *             and ubdma_nvme_close() still frees everything; the controller opens again after.
 * Exit: 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <ubdma/ubdma.h>
#include <ubdma/nvme.h>

#include "check.h"

static void expect(int rc, int want, const char *what)
{
	check(rc == want, "%s: %s (want %s)%s%s", what, rc ? strerror(rc) : "0", want ? strerror(want) : "0",
	      rc ? " - " : "", rc ? ubdma_nvme_last_error() : "");
}

static int calls;
static void cb(void *arg, const struct ubdma_nvme_cpl *cpl)
{
	int *err = arg;

	calls++;
	if (err)
		*err = cpl->error;
}

int main(void)
{
	const char *bdf = getenv("UBDMA_VM_NVME");
	ubdma_nvme_t *c = NULL, *c2 = NULL;
	ubdma_nvme_qpair_t *qp = NULL;
	struct ubdma_nvme_ns_info ns;
	uint32_t nsid = 0;
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!bdf || !*bdf || !getenv("UBDMA_VM_NVME_DRIVER") || strcmp(getenv("UBDMA_VM_NVME_DRIVER"), "vfio-pci")) {
		printf("# SKIP: no NVMe controller on vfio-pci ($UBDMA_VM_NVME)\n");
		return 77;
	}
	/* open */
	expect(ubdma_nvme_open(NULL, NULL, &c), EINVAL, "open(NULL)");
	expect(ubdma_nvme_open("zz:99.9", NULL, &c), EINVAL, "open of a malformed BDF");
	expect(ubdma_nvme_open("0000:00:1e.0", NULL, &c), ENODEV, "open of an absent device");
	struct ubdma_nvme_opts bad = { .size = sizeof(bad), .queue_entries = 1 };
	expect(ubdma_nvme_open(bdf, &bad, &c), EINVAL, "open with a 1-entry queue size");
	struct ubdma_nvme_opts nosize = { .io_queues = 1 };
	expect(ubdma_nvme_open(bdf, &nosize, &c), EINVAL, "open with options whose size is not set");
	rc = ubdma_nvme_open(bdf, NULL, &c);
	expect(rc, 0, "open with default options");
	if (rc)
		return 1;
	rc = ubdma_nvme_open(bdf, NULL, &c2);
	check(rc == EBUSY && !c2, "second open of the same controller: %s", strerror(rc));
	const struct ubdma_nvme_info *in = ubdma_nvme_info(c);
	ubdma_nvme_ns_next(c, 0, &nsid);
	expect(ubdma_nvme_ns(c, nsid, &ns), 0, "namespace info");
	expect(ubdma_nvme_ns(c, 0, &ns), EINVAL, "namespace 0");
	if (in->nn > 1)
		expect(ubdma_nvme_ns(c, in->nn, &ns) == ENOENT ? ENOENT : 0, ENOENT, "an inactive namespace");
	ubdma_nvme_ns(c, nsid, &ns);

	/* input */
	rc = ubdma_nvme_qpair_create(c, 4, &qp);
	expect(rc, 0, "4-entry queue pair");
	if (rc)
		goto out;
	size_t len = 64 * 4096;
	uint8_t *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint32_t blk = 4096 / ns.lba_size;
	calls = 0;
	expect(ubdma_nvme_read(qp, 0, buf, 0, blk, cb, NULL), EINVAL, "read of namespace 0");
	expect(ubdma_nvme_read(qp, in->nn + 1, buf, 0, blk, cb, NULL), EINVAL, "read of namespace NN+1");
	expect(ubdma_nvme_read(qp, nsid, buf, 0, 0, cb, NULL), EINVAL, "read of 0 blocks");
	expect(ubdma_nvme_read(qp, nsid, NULL, 0, blk, cb, NULL), EINVAL, "read into NULL");
	expect(ubdma_nvme_read(NULL, nsid, buf, 0, blk, cb, NULL), EINVAL, "read on a NULL queue pair");
	expect(ubdma_nvme_read(qp, nsid, buf, ns.nsze, blk, cb, NULL), ERANGE, "read at LBA NSZE");
	expect(ubdma_nvme_write(qp, nsid, buf, ns.nsze - 1, 2, cb, NULL), ERANGE, "write across the end");
	expect(ubdma_nvme_read(qp, nsid, buf, UINT64_MAX - 1, 4, cb, NULL), ERANGE, "read at LBA 2^64-2 (wraps)");
	expect(ubdma_nvme_write_zeroes(qp, nsid, ns.nsze, 1, cb, NULL), ERANGE, "Write Zeroes past the end");
	uint32_t over = (uint32_t)(in->max_transfer / ns.lba_size) + blk;
	uint8_t *huge = mmap(NULL, in->max_transfer + 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	expect(ubdma_nvme_read(qp, nsid, huge, 0, over, cb, NULL), E2BIG, "read over the maximum transfer (MDTS)");
	check(calls == 0 && ubdma_nvme_outstanding(qp) == 0, "refused commands: no callback, nothing outstanding");

	/* full: 3 of 3 slots, then EAGAIN, then all 3 complete with the right data */
	int errs[3] = { -1, -1, -1 };
	for (int i = 0; i < 64 * 4096; i++)
		buf[i] = (uint8_t)(i * 7 + 1);
	rc = ubdma_nvme_write(qp, nsid, buf, 0, 16 * blk, cb, NULL);
	rc = rc ? rc : ubdma_nvme_drain(qp, 10000);
	expect(rc, 0, "64 KiB written at LBA 0");
	memset(buf, 0, 64 * 4096);
	calls = 0;
	for (int i = 0; i < 3; i++) {
		rc = ubdma_nvme_read(qp, nsid, buf + i * 4 * 4096, (uint64_t)i * 4 * blk, 4 * blk, cb, &errs[i]);
		expect(rc, 0, "read submitted into a free slot");
	}
	rc = ubdma_nvme_read(qp, nsid, buf + 12 * 4096, 12 * (uint64_t)blk, 4 * blk, cb, NULL);
	expect(rc, EAGAIN, "a 4th command on a 4-entry queue");
	check(ubdma_nvme_outstanding(qp) == 3, "3 outstanding");
	rc = ubdma_nvme_drain(qp, 10000);
	int good = 1;
	for (int i = 0; i < 48 * 1024; i++)
		good &= buf[i] == (uint8_t)(i * 7 + 1);
	check(rc == 0 && calls == 3 && !errs[0] && !errs[1] && !errs[2] && good,
	      "full queue: the 3 commands completed (%d callbacks), data intact", calls);

	/* status names and errnos (4.6.1) */
	check(!strcmp(ubdma_nvme_strstatus(0x80), "LBA Out of Range") && UBDMA_NVME_SCT(0x182) == 1 &&
	      UBDMA_NVME_SC(0x182) == 0x82, "status 0x80: '%s', 0x182: '%s'", ubdma_nvme_strstatus(0x80),
	      ubdma_nvme_strstatus(0x182));

	/* shutdown */
	rc = ubdma_nvme_shutdown(c);
	expect(rc, 0, "shutdown");
	expect(ubdma_nvme_read(qp, nsid, buf, 0, blk, cb, NULL), ESHUTDOWN, "read after shutdown");
	expect(ubdma_nvme_flush(qp, nsid, cb, NULL), ESHUTDOWN, "flush after shutdown");
	ubdma_nvme_qpair_t *qp2 = NULL;
	expect(ubdma_nvme_qpair_create(c, 0, &qp2), ESHUTDOWN, "queue pair after shutdown");
	expect(ubdma_nvme_qpair_destroy(qp), 0, "queue pair destroyed after shutdown");
	qp = NULL;
	expect(ubdma_nvme_close(c), 0, "close after shutdown");
	c = NULL;

	/* msix: open again with interrupts, a read wakes the waiter through the eventfd */
	struct ubdma_nvme_opts io = { .size = sizeof(io), .interrupts = 1 };
	rc = ubdma_nvme_open(bdf, &io, &c);
	expect(rc, 0, "open again, with MSI-X");
	if (rc)
		goto out;
	rc = ubdma_nvme_qpair_create(c, 0, &qp);
	expect(rc, 0, "queue pair with an interrupt vector");
	int fd = -1;
	expect(ubdma_nvme_qpair_fd(qp, &fd), 0, "eventfd of the queue pair");
	int err = -1;
	calls = 0;
	memset(buf, 0, 4096);
	rc = ubdma_nvme_read(qp, nsid, buf, 0, blk, cb, &err);
	unsigned done = 0, waits = 0;
	while (!rc && !done && waits++ < 100)
		rc = ubdma_nvme_wait(qp, 100, &done);
	check(rc == 0 && done == 1 && err == 0 && buf[1] == (uint8_t)8, "msix: the read completed through "
	      "ubdma_nvme_wait() on fd %d after %u wait(s)", fd, waits);
	expect(ubdma_nvme_qpair_destroy(qp), 0, "queue pair destroyed");
	qp = NULL;
out:
	if (qp)
		ubdma_nvme_qpair_destroy(qp);
	if (c)
		expect(ubdma_nvme_close(c), 0, "close");
	printf("# %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
