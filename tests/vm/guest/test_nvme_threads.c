/*
 * test_nvme_threads - one controller, several threads each on its own queue pairs, and every
 * namespace of the controller exercised (issue 18).
 *
 * Runs in the test-bed guest with the NVMe on vfio-pci; drivers/nvme/test/vm-nvme.sh boots it
 * with extra QEMU nvme-ns namespaces and checks the bytes on the host's backing files afterwards.
 *   threads     4 threads, each creating its own queue pair (queue creation runs concurrently on
 *               the admin queue), QD 16, mixed random reads and writes of 4-64 KiB over its own
 *               2 MiB of namespace 1 at [52 MiB + 2 MiB t, +2 MiB): a range is written when any
 *               block of it was never written, else read and compared while the others run;
 *               threads 0 and 2 use registered buffers, 1 and 3 malloc'd ones (bounced by
 *               bus_dma from four threads at once).  At the end each region holds pat(o, 0x30 + t)
 *               everywhere, read back in full here and compared on the host.
 *   namespaces  every active namespace (--namespaces N of them must be there), one thread each
 *               at the same time: [0, 1 MiB) and the last 256 KiB written with pat(o, 0x40 + nsid),
 *               read back and compared; an I/O one block past the end gives ERANGE; the
 *               namespace's LBA size is the one the host set (--lba NSID:BYTES).  A namespace
 *               whose every command QEMU holds (--slow NSID, for test_nvme_recovery) gets one
 *               4 KiB write and read back instead.
 * The pattern: byte at namespace offset o is ((o * 2654435761) mod 2^32) >> 24 XOR seed.
 * Exit: 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <ubdma/ubdma.h>
#include <ubdma/nvme.h>

#include "check.h"
#include "nvme_pat.h"

#define NTHREADS 4
#define T_BASE (52ull * MiB)
#define T_REGION (2u * MiB)
#define T_QD 16
#define T_MAXBLK 16 /* 4 KiB blocks an I/O */
#define T_OPS 1500
#define MAXNS 8

static ubdma_ctx_t *ctx;
static ubdma_nvme_t *ctrl;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

/* checks from threads: one at a time on stdout */
static __attribute__((format(printf, 2, 3))) void tcheck(int ok, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&out_lock);
	check(ok, "%s", line);
	pthread_mutex_unlock(&out_lock);
}

/* ---------------------------------------------------------------- threads on namespace 1 */

struct tslot {
	struct tstate *ts;
	uint8_t *buf;
	uint32_t blk, nblk;
	int write, busy;
};

struct tstate {
	int t;
	uint32_t lbs;
	ubdma_nvme_qpair_t *qp;
	unsigned qid;
	uint8_t written[T_REGION / 4096], inflight[T_REGION / 4096];
	struct tslot slots[T_QD];
	uint64_t rng;
	unsigned reads, writes, bad, errors, done;
	int first_err;
	char why[160];
};

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t toff(const struct tstate *ts, uint32_t blk)
{
	return T_BASE + (uint64_t)ts->t * T_REGION + (uint64_t)blk * 4096;
}

static void tcb(void *arg, const struct ubdma_nvme_cpl *cpl)
{
	struct tslot *s = arg;
	struct tstate *ts = s->ts;

	if (cpl->error) {
		if (!ts->errors++) {
			ts->first_err = cpl->error;
			snprintf(ts->why, sizeof(ts->why), "%s of block %u: %s (status %#x)", s->write ? "write" : "read",
				 s->blk, strerror(cpl->error), cpl->status);
		}
	} else if (s->write) {
		for (uint32_t b = 0; b < s->nblk; b++)
			ts->written[s->blk + b] = 1;
	} else {
		long bad = first_bad(s->buf, toff(ts, s->blk), (size_t)s->nblk * 4096, (uint8_t)(0x30 + ts->t));
		if (bad >= 0 && !ts->bad++)
			snprintf(ts->why, sizeof(ts->why), "read of block %u: byte %ld of %u wrong", s->blk, bad,
				 s->nblk * 4096);
	}
	for (uint32_t b = 0; b < s->nblk; b++)
		ts->inflight[s->blk + b] = 0;
	s->busy = 0;
	ts->done++;
}

static int all_written(const struct tstate *ts)
{
	for (unsigned b = 0; b < T_REGION / 4096; b++)
		if (!ts->written[b])
			return 0;
	return 1;
}

static void *thread_main(void *arg)
{
	struct tstate *ts = arg;
	size_t blen = (size_t)T_QD * T_MAXBLK * 4096;
	ubdma_umem_t *umem = NULL;
	uint8_t *mem;
	int rc;

	/* its own queue pair, made from this thread while the others make theirs */
	if ((rc = ubdma_nvme_qpair_create(ctrl, 64, &ts->qp))) {
		tcheck(0, "thread %d: ubdma_nvme_qpair_create: %s", ts->t, ubdma_nvme_last_error());
		return NULL;
	}
	ts->qid = ubdma_nvme_qpair_id(ts->qp);
	if (ts->t % 2 == 0) {
		mem = mmap(NULL, blen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mem == MAP_FAILED || ubdma_umem_lock(ctx, mem, blen, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &umem)) {
			tcheck(0, "thread %d: registered buffers: %s", ts->t, ubdma_last_error());
			return NULL;
		}
	} else if (!(mem = malloc(blen + 64))) {
		tcheck(0, "thread %d: malloc", ts->t);
		return NULL;
	} else {
		mem += 64; /* not page aligned: every load bounces */
	}
	for (int i = 0; i < T_QD; i++)
		ts->slots[i] = (struct tslot){ .ts = ts, .buf = mem + (size_t)i * T_MAXBLK * 4096 };
	ts->rng = 0x9e3779b97f4a7c15ull * (uint64_t)(ts->t + 1);
	unsigned ops = 0;
	const uint32_t nb = T_REGION / 4096, per = 4096 / ts->lbs;
	while (ops < T_OPS || !all_written(ts)) {
		if (ts->errors || ts->bad)
			break;
		for (int i = 0; i < T_QD; i++) {
			struct tslot *s = &ts->slots[i];
			if (s->busy)
				continue;
			uint32_t n = 1 + (uint32_t)(rnd(&ts->rng) % T_MAXBLK), b = (uint32_t)(rnd(&ts->rng) % nb);
			if (b + n > nb)
				n = nb - b;
			int clash = 0, unwritten = 0;
			for (uint32_t k = 0; k < n; k++) {
				clash |= ts->inflight[b + k];
				unwritten |= !ts->written[b + k];
			}
			if (clash)
				continue;
			s->blk = b;
			s->nblk = n;
			s->write = unwritten || (rnd(&ts->rng) & 3) == 0;
			uint64_t lba = toff(ts, b) / ts->lbs;
			if (s->write) {
				fill(s->buf, toff(ts, b), (size_t)n * 4096, (uint8_t)(0x30 + ts->t));
				rc = ubdma_nvme_write(ts->qp, 1, s->buf, lba, n * per, tcb, s);
			} else {
				memset(s->buf, 0, (size_t)n * 4096);
				rc = ubdma_nvme_read(ts->qp, 1, s->buf, lba, n * per, tcb, s);
			}
			if (rc == EAGAIN || rc == ENOMEM)
				break; /* full: reap first */
			if (rc) {
				ts->errors++;
				snprintf(ts->why, sizeof(ts->why), "submit: %s", ubdma_nvme_last_error());
				break;
			}
			for (uint32_t k = 0; k < n; k++)
				ts->inflight[b + k] = 1;
			s->busy = 1;
			s->write ? ts->writes++ : ts->reads++;
			ops++;
		}
		if ((rc = ubdma_nvme_poll(ts->qp, 0, NULL))) {
			ts->errors++;
			snprintf(ts->why, sizeof(ts->why), "poll: %s", ubdma_nvme_last_error());
			break;
		}
	}
	rc = ubdma_nvme_drain(ts->qp, 20000);
	tcheck(!rc && !ts->errors && !ts->bad && all_written(ts),
	       "thread %d (queue %u, %s buffers): %u writes, %u reads checked in flight at QD %d%s%s", ts->t,
	       ubdma_nvme_qpair_id(ts->qp), ts->t % 2 ? "bounced" : "registered", ts->writes, ts->reads, T_QD,
	       ts->why[0] ? ": " : "", ts->why);
	/* the whole region back, 64 KiB at a time */
	long bad = -1;
	for (uint32_t b = 0; b < nb && bad < 0 && !rc; b += T_MAXBLK) {
		struct tslot *s = &ts->slots[0];
		s->blk = b;
		s->nblk = T_MAXBLK;
		s->write = 0;
		s->busy = 1;
		memset(s->buf, 0, T_MAXBLK * 4096);
		unsigned before = ts->bad;
		if ((rc = ubdma_nvme_read(ts->qp, 1, s->buf, toff(ts, b) / ts->lbs, T_MAXBLK * per, tcb, s)) ||
		    (rc = ubdma_nvme_drain(ts->qp, 10000)))
			break;
		if (ts->bad != before)
			bad = b;
	}
	tcheck(!rc && bad < 0, "thread %d: its 2 MiB at %" PRIu64 " MiB read back whole%s%s", ts->t,
	       toff(ts, 0) / MiB, rc ? ": " : "", rc ? ubdma_nvme_last_error() : "");
	tcheck(ubdma_nvme_qpair_destroy(ts->qp) == 0, "thread %d: queue pair destroyed", ts->t);
	ts->qp = NULL;
	if (umem)
		ubdma_umem_unlock(umem);
	if (ts->t % 2 == 0)
		munmap(mem, blen);
	else
		free(mem - 64);
	return NULL;
}

/* ---------------------------------------------------------------- namespaces */

struct nsstate {
	uint32_t nsid;
	int slow;
	struct ubdma_nvme_ns_info info;
	int ok;
	char why[200];
};

static int ns_io(ubdma_nvme_qpair_t *qp, uint32_t nsid, int write, void *buf, uint64_t slba, uint32_t nlb)
{
	struct done d = { 0 };
	int rc = write ? ubdma_nvme_write(qp, nsid, buf, slba, nlb, cb, &d) : ubdma_nvme_read(qp, nsid, buf, slba, nlb, cb, &d);

	if (rc)
		return rc;
	if ((rc = ubdma_nvme_drain(qp, 10000)))
		return rc;
	return d.err;
}

static void *ns_main(void *arg)
{
	struct nsstate *ns = arg;
	uint32_t lbs = ns->info.lba_size;
	uint64_t size = ns->info.size;
	const uint64_t offs[2] = { 0, size - 256 * KiB };
	const size_t lens[2] = { MiB, 256 * KiB };
	uint8_t seed = (uint8_t)(0x40 + ns->nsid);
	ubdma_nvme_qpair_t *qp;
	int rc;

	if ((rc = ubdma_nvme_qpair_create(ctrl, 16, &qp))) {
		snprintf(ns->why, sizeof(ns->why), "queue pair: %s", ubdma_nvme_last_error());
		return NULL;
	}
	uint8_t *buf = aligned_alloc(4096, MiB);
	if (ns->slow && buf) {
		/* every command held 2 s: one block of 4 KiB, written and read back */
		fill(buf, 0, 4096, seed);
		if ((rc = ns_io(qp, ns->nsid, 1, buf, 0, 4096 / lbs))) {
			snprintf(ns->why, sizeof(ns->why), "write: %s", strerror(rc));
			goto out;
		}
		memset(buf, 0xff, 4096);
		if ((rc = ns_io(qp, ns->nsid, 0, buf, 0, 4096 / lbs))) {
			snprintf(ns->why, sizeof(ns->why), "read: %s", strerror(rc));
			goto out;
		}
		ns->ok = 1;
		goto out;
	}
	for (int r = 0; r < 2 && buf; r++) {
		/* 128 KiB commands (the default maximum transfer is more) */
		fill(buf, offs[r], lens[r], seed);
		for (size_t o = 0; o < lens[r]; o += 128 * KiB)
			if ((rc = ns_io(qp, ns->nsid, 1, buf + o, (offs[r] + o) / lbs, (uint32_t)(128 * KiB / lbs)))) {
				snprintf(ns->why, sizeof(ns->why), "write at %" PRIu64 ": %s", offs[r] + o, strerror(rc));
				goto out;
			}
		memset(buf, 0, lens[r]);
		for (size_t o = 0; o < lens[r]; o += 128 * KiB)
			if ((rc = ns_io(qp, ns->nsid, 0, buf + o, (offs[r] + o) / lbs, (uint32_t)(128 * KiB / lbs)))) {
				snprintf(ns->why, sizeof(ns->why), "read at %" PRIu64 ": %s", offs[r] + o, strerror(rc));
				goto out;
			}
		long bad = first_bad(buf, offs[r], lens[r], seed);
		if (bad >= 0) {
			snprintf(ns->why, sizeof(ns->why), "byte %" PRIu64 " read back wrong", offs[r] + (uint64_t)bad);
			goto out;
		}
	}
	/* one block past the end: refused before it reaches the controller */
	struct done d = { 0 };
	rc = ubdma_nvme_read(qp, ns->nsid, buf, ns->info.nsze, 1, cb, &d);
	if (rc != ERANGE) {
		snprintf(ns->why, sizeof(ns->why), "read of LBA %" PRIu64 " (the end) gave %d, not ERANGE", ns->info.nsze, rc);
		ubdma_nvme_drain(qp, 10000);
		goto out;
	}
	ns->ok = 1;
out:
	free(buf);
	if (ubdma_nvme_qpair_destroy(qp))
		ns->ok = 0;
	return NULL;
}

int main(int argc, char **argv)
{
	const char *bdf = getenv("UBDMA_VM_NVME");
	unsigned want_ns = 1, slow_ns = 0;
	uint32_t lba_ns[MAXNS + 1] = { 0 };
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--namespaces") && i + 1 < argc) {
			want_ns = (unsigned)atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--slow") && i + 1 < argc) {
			slow_ns = (unsigned)atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--lba") && i + 1 < argc) {
			unsigned n, b;
			if (sscanf(argv[++i], "%u:%u", &n, &b) == 2 && n >= 1 && n <= MAXNS)
				lba_ns[n] = b;
		} else {
			fprintf(stderr, "usage: test_nvme_threads [--namespaces N] [--slow NSID] [--lba NSID:BYTES]...\n");
			return 2;
		}
	}
	if (!bdf || strcmp(getenv("UBDMA_VM_NVME_DRIVER") ? getenv("UBDMA_VM_NVME_DRIVER") : "", "vfio-pci")) {
		printf("# skip: no NVMe on vfio-pci (UBDMA_VM_NVME / UBDMA_VM_NVME_DRIVER)\n");
		return 77;
	}
	if ((rc = ubdma_ctx_open(UBDMA_BACKEND_VFIO, &ctx))) {
		printf("not ok - ubdma_ctx_open: %s\n", ubdma_last_error());
		return 1;
	}
	struct ubdma_nvme_opts o = { .size = sizeof(o), .ctx = ctx, .io_queues = NTHREADS + MAXNS };
	if ((rc = ubdma_nvme_open(bdf, &o, &ctrl))) {
		printf("not ok - ubdma_nvme_open(%s): %s\n", bdf, ubdma_nvme_last_error());
		return 1;
	}
	const struct ubdma_nvme_info *in = ubdma_nvme_info(ctrl);
	check(in->io_queues >= NTHREADS, "controller granted %u I/O queue pairs (asked %u)", in->io_queues, o.io_queues);

	/* 4 threads, each its own queue pair, mixed I/O on namespace 1 */
	struct ubdma_nvme_ns_info ns1;
	check(ubdma_nvme_ns(ctrl, 1, &ns1) == 0 && ns1.size >= T_BASE + NTHREADS * T_REGION,
	      "namespace 1: %" PRIu64 " bytes, %u-byte blocks", ns1.size, ns1.lba_size);
	static struct tstate ts[NTHREADS];
	pthread_t th[NTHREADS];
	for (int t = 0; t < NTHREADS; t++) {
		ts[t] = (struct tstate){ .t = t, .lbs = ns1.lba_size };
		if (pthread_create(&th[t], NULL, thread_main, &ts[t]))
			check(0, "pthread_create");
	}
	for (int t = 0; t < NTHREADS; t++)
		pthread_join(th[t], NULL);
	unsigned qids = 0;
	for (int t = 0; t < NTHREADS; t++)
		for (int u = t + 1; u < NTHREADS; u++)
			qids += !ts[t].qid || ts[t].qid == ts[u].qid;
	check(qids == 0, "the %d threads had %d distinct queue pairs (%u %u %u %u)", NTHREADS, NTHREADS, ts[0].qid,
	      ts[1].qid, ts[2].qid, ts[3].qid);

	/* every namespace, one thread each, at once */
	static struct nsstate nss[MAXNS];
	unsigned nns = 0;
	for (uint32_t id = 0; nns < MAXNS && ubdma_nvme_ns_next(ctrl, id, &id) == 0; nns++) {
		nss[nns] = (struct nsstate){ .nsid = id, .slow = id == slow_ns };
		ubdma_nvme_ns(ctrl, id, &nss[nns].info);
	}
	check(nns == want_ns, "%u active namespaces (NN %u), %u expected", nns, in->nn, want_ns);
	pthread_t nth[MAXNS];
	for (unsigned i = 0; i < nns; i++)
		pthread_create(&nth[i], NULL, ns_main, &nss[i]);
	for (unsigned i = 0; i < nns; i++) {
		pthread_join(nth[i], NULL);
		struct nsstate *n = &nss[i];
		check(n->ok, "namespace %u (%" PRIu64 " MiB, %u-byte blocks): %s%s%s", n->nsid, n->info.size / MiB,
		      n->info.lba_size, n->slow ? "held 2 s a command: 4 KiB written and read back" :
		      "[0, 1 MiB) and the last 256 KiB written, read back, the end refused with ERANGE",
		      n->why[0] ? ": " : "", n->why);
		if (n->nsid <= MAXNS && lba_ns[n->nsid])
			check(n->info.lba_size == lba_ns[n->nsid], "namespace %u has the %u-byte blocks the host set (%u)",
			      n->nsid, lba_ns[n->nsid], n->info.lba_size);
		printf("# ns %u size %" PRIu64 "\n", n->nsid, n->info.size);
	}
	rc = ubdma_nvme_close(ctrl);
	check(rc == 0, "ubdma_nvme_close: %s", rc ? ubdma_nvme_last_error() : "0");
	ubdma_ctx_close(ctx);
	printf("# test_nvme_threads: %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
