/*
 * nvme_pat.h - what the guest tests of the NVMe driver share (review finding D8): the byte
 * pattern that the host side computes too (tests/vm/nvme-host-check.sh, drivers/nvme/test/
 * vm-nvme.sh: byte at namespace offset o is ((o * 2654435761) mod 2^32) >> 24 XOR seed, so a
 * shifted or misplaced byte never matches), and one read or write submitted and waited for.
 * Public API only (ubdma/nvme.h).
 */
#ifndef UBDMA_GUEST_NVME_PAT_H
#define UBDMA_GUEST_NVME_PAT_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <ubdma/nvme.h>

#define MiB (1u << 20)
#define KiB 1024u

static __attribute__((unused)) uint8_t pat(uint64_t o, uint8_t seed)
{
	return (uint8_t)(((uint32_t)(o * 2654435761u)) >> 24) ^ seed;
}

static __attribute__((unused)) void fill(uint8_t *p, uint64_t off, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = pat(off + i, seed);
}

/* The index of the first byte of p that is not the pattern of [off, off + len), or -1. */
static __attribute__((unused)) long first_bad(const uint8_t *p, uint64_t off, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != pat(off + i, seed))
			return (long)i;
	return -1;
}

/* Completions counted, the first error and its status kept. */
struct done {
	int n, err;
	uint16_t status;
};

static __attribute__((unused)) void cb(void *arg, const struct ubdma_nvme_cpl *cpl)
{
	struct done *d = arg;

	d->n++;
	if (cpl->error && !d->err) {
		d->err = cpl->error;
		d->status = cpl->status;
	}
}

/*
 * One command of @len bytes at byte @off of namespace @nsid (@lbs-byte blocks), drained within
 * @timeout_ms; 0, or the errno of the submission, the drain or the completion (EIO when it did
 * not complete exactly once).  A failure says why on stdout as a TAP comment.
 */
static __attribute__((unused)) int io1_ns(ubdma_nvme_qpair_t *qp, uint32_t nsid, uint32_t lbs, int write,
					  void *buf, uint64_t off, size_t len, int timeout_ms)
{
	struct done d = { 0 };
	int rc = write ? ubdma_nvme_write(qp, nsid, buf, off / lbs, (uint32_t)(len / lbs), cb, &d)
		       : ubdma_nvme_read(qp, nsid, buf, off / lbs, (uint32_t)(len / lbs), cb, &d);

	if (rc) {
		printf("# submit: %s: %s\n", strerror(rc), ubdma_nvme_last_error());
		return rc;
	}
	if ((rc = ubdma_nvme_drain(qp, timeout_ms)))
		return rc;
	if (d.err)
		printf("# completion: %s, status %#x %s\n", strerror(d.err), d.status, ubdma_nvme_strstatus(d.status));
	return d.n == 1 ? d.err : EIO;
}

#endif
