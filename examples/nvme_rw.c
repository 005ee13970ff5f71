/*
 * nvme_rw - write a buffer to an NVMe namespace and read it back, with libubdma_nvme.
 *
 *     nvme_rw [BDF] [LBA [BLOCKS]]    (default LBA 0, 8 blocks; the controller on vfio-pci;
 *                                      no BDF: $UBDMA_VM_NVME, as in the test-bed guest)
 *
 * Shows the three things a newcomer needs: a queue pair, submissions with a completion callback,
 * and polling.  The buffers are plain malloc() memory: the driver loads them through a bus_dma tag
 * that knows the NVMe PRP rules, and ubdma bounces what the device cannot reach in place (memory
 * that is not registered).  For speed, register long-lived buffers with ubdma_umem_lock() in the
 * driver's context (pass your own context in ubdma_nvme_opts.ctx): they are then used in place.
 * Exit status 0 when the data read back is the data written.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ubdma/nvme.h>

struct result {
	int done;
	int error;
	uint16_t status;
};

/* Runs from ubdma_nvme_poll(), in the polling thread. */
static void on_complete(void *arg, const struct ubdma_nvme_cpl *cpl)
{
	struct result *r = arg;

	r->done = 1;
	r->error = cpl->error;
	r->status = cpl->status;
}

/* Submit, then poll until the callback has run. */
static int wait_for(ubdma_nvme_qpair_t *qp, struct result *r, const char *what)
{
	while (!r->done) {
		int rc = ubdma_nvme_poll(qp, 0, NULL);
		if (rc) {
			fprintf(stderr, "%s: poll: %s\n", what, strerror(rc));
			return rc;
		}
	}
	if (r->error)
		fprintf(stderr, "%s: %s (NVMe status %#x: %s)\n", what, strerror(r->error), r->status,
			ubdma_nvme_strstatus(r->status));
	return r->error;
}

int main(int argc, char **argv)
{
	/* the BDF may be left out (then $UBDMA_VM_NVME, as in the test-bed guest) */
	int a = argc > 1 && strchr(argv[1], ':') ? 2 : 1;
	const char *bdf = a == 2 ? argv[1] : getenv("UBDMA_VM_NVME");
	unsigned long long lba = argc > a ? strtoull(argv[a], NULL, 0) : 0;
	unsigned nlb = argc > a + 1 ? (unsigned)strtoul(argv[a + 1], NULL, 0) : 8;
	ubdma_nvme_t *ctrl;
	ubdma_nvme_qpair_t *qp;
	struct ubdma_nvme_ns_info ns;
	uint32_t nsid;
	int rc;

	if (!bdf || !*bdf) {
		fprintf(stderr, "usage: %s [BDF] [LBA [BLOCKS]]\n", argv[0]);
		return 2;
	}
	if ((rc = ubdma_nvme_open(bdf, NULL, &ctrl))) {
		fprintf(stderr, "ubdma_nvme_open(%s): %s\n  %s\n", bdf, strerror(rc), ubdma_nvme_last_error());
		return 1;
	}
	if ((rc = ubdma_nvme_ns_next(ctrl, 0, &nsid)) || (rc = ubdma_nvme_ns(ctrl, nsid, &ns)) ||
	    (rc = ubdma_nvme_qpair_create(ctrl, 0, &qp))) {
		fprintf(stderr, "no namespace or queue pair: %s\n", ubdma_nvme_last_error());
		ubdma_nvme_close(ctrl);
		return 1;
	}
	size_t len = (size_t)nlb * ns.lba_size;
	unsigned char *out = malloc(len), *in = calloc(1, len);
	if (!out || !in)
		return 1;
	for (size_t i = 0; i < len; i++)
		out[i] = (unsigned char)(i * 31 + lba);

	/* the write: rc is about the submission (bad LBA range, too long, queue full ...) */
	struct result w = { 0 }, r = { 0 }, f = { 0 };
	rc = ubdma_nvme_write(qp, nsid, out, lba, nlb, on_complete, &w);
	if (rc) {
		fprintf(stderr, "write: %s: %s\n", strerror(rc), ubdma_nvme_last_error());
		goto out;
	}
	if ((rc = wait_for(qp, &w, "write")))
		goto out;
	/* make it durable: the controller may have a volatile write cache */
	if ((rc = ubdma_nvme_flush(qp, nsid, on_complete, &f)) || (rc = wait_for(qp, &f, "flush")))
		goto out;
	/* read it back */
	if ((rc = ubdma_nvme_read(qp, nsid, in, lba, nlb, on_complete, &r))) {
		fprintf(stderr, "read: %s: %s\n", strerror(rc), ubdma_nvme_last_error());
		goto out;
	}
	if ((rc = wait_for(qp, &r, "read")))
		goto out;
	rc = memcmp(in, out, len) ? EIO : 0;
	/* (a line starting "REPORT " is what the main job's summary shows) */
	printf("REPORT nvme_rw: %s namespace %u: wrote, flushed and read back %u blocks (%zu bytes, malloc'd "
	       "buffers) at LBA %llu: %s\n", bdf, nsid, nlb, len, lba, rc ? "MISMATCH" : "identical");
out:
	ubdma_nvme_qpair_destroy(qp);
	ubdma_nvme_close(ctrl);
	free(out);
	free(in);
	return rc ? 1 : 0;
}
