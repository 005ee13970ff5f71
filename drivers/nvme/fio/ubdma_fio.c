/*
 * ubdma_fio.c - libubdma_fio.so, fio's external ioengine "ubdma_nvme": fio jobs that drive an NVMe
 * controller through libubdma_nvme (include/ubdma/nvme.h) instead of a kernel block device.
 *
 *	fio --ioengine=external:/path/libubdma_fio.so --thread=1 --bdf=0000:00:02.0 --nsid=1 ...
 *
 * One controller per process and BDF, opened by the first job thread that asks for it and closed
 * by the last (a reference count under one mutex); each job thread makes its own queue pair and
 * owns it (the driver's rule: a queue pair belongs to one thread), so job threads share nothing on
 * the I/O path.  Job processes (fio's default, thread=0) work for one job; a second process cannot
 * open the same VFIO group, and the error says to use thread=1.
 *
 * fio sizes the "file" (the namespace) before any job starts, in its main thread
 * (get_file_size): a controller that is not open there is opened for that look-up and closed
 * again.  The I/O buffers come from iomem_alloc: anonymous memory (2 MiB hugepages when the
 * system has them) registered with ubdma_umem_lock(), so the driver uses them in place and never
 * bounces.  Queue puts the command in the submission queue without ringing the doorbell (the
 * queue pair is in batch mode); commit rings it once for what fio queued; getevents polls the
 * completion queue (completions=poll) or sleeps on the queue pair's MSI-X eventfd
 * (completions=irq) through ubdma_nvme_wait(), or, completions=hybrid, polls up to hybrid_polls
 * times and then sleeps: a completion that comes soon is taken without a system call, a late one
 * does not burn the CPU while the device works (the kernel's hybrid polling, the other way
 * round: spin first, then sleep; the MSI-X vector stays on, so each completion also costs an
 * interrupt in the kernel, which writes the eventfd).
 *
 * Polled, the engine counts the time of the passes whose poll found nothing (the thread waiting for the
 * device, not working) and at cleanup prints its share of the thread's time after fio's ramp,
 * "ubdma_nvme: polled idle share S" on stderr (bench/nvme_report.py reads it: the engine's work per I/O without the waiting, as
 * bench/nic.sh counts a driver's busy cycles).  TSC reads, no system call.
 *
 * Built against the headers of the fio that loads it (fio.h, optlib.h and the config-host.h of
 * its configure run): drivers/nvme/fio/meson.build finds the source tree tools/deps.sh unpacks.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#include "fio.h"
#include "optgroup.h"

#include <ubdma/ubdma.h>
#include <ubdma/nvme.h>

#define UBFIO_HUGE (2u << 20)
#define UBFIO_ENTRIES 256u /* queue pair entries by default, at least iodepth + 1 */

/* The engine's options (fio: the member at offset 0 must not be an option). */
struct ubfio_opts {
	void *pad;
	char *bdf;		/* controller address; default: the filename with '.' for ':' */
	unsigned int nsid;	/* namespace; 0: the first active one */
	unsigned int entries;	/* queue pair entries; 0: max(iodepth + 1, 256) */
	unsigned int irq;	/* completions: 0 poll, 1 irq (MSI-X eventfds), 2 hybrid */
	unsigned int hybrid_polls; /* hybrid: empty polls before sleeping on the eventfd */
	unsigned int io_queues; /* queue pairs asked of the controller at open; 0: 16 */
};

/* An open controller, shared by the job threads of this process that name its BDF. */
struct ubfio_ctrl {
	struct ubfio_ctrl *next;
	char bdf[32];
	ubdma_ctx_t *ctx;
	ubdma_nvme_t *nvme;
	int irq;
	unsigned refs;
};

static pthread_mutex_t ubfio_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ubfio_ctrl *ubfio_ctrls;

/* One job thread's state. */
struct ubfio_td {
	struct ubfio_ctrl *ctrl;
	ubdma_nvme_qpair_t *qp;
	uint32_t nsid;
	uint32_t lba_shift;
	int irq, hybrid;
	unsigned hybrid_polls;
	struct io_u **events;	/* completions reaped, not yet handed to fio beyond [0, given) */
	unsigned int nevents, maxevents, given;
	void *mem;		/* iomem_alloc's buffers, registered */
	size_t mem_len;
	ubdma_umem_t *umem;
	uint64_t t_init, idle; /* TSC when the ramp was over; TSC ticks of polls that found nothing since */
	unsigned long errors;	/* commands that completed with an error (the first few are told) */
};

#define UBFIO_TOLD_ERRORS 8u

/* The time stamp counter (0 where there is none: the idle share is then not reported). */
static inline uint64_t ubfio_ticks(void)
{
#if defined(__x86_64__) || defined(__i386__)
	return __rdtsc();
#else
	return 0;
#endif
}

static int ubfio_bdf(struct thread_data *td, const char *fname, char *out, size_t n)
{
	const struct ubfio_opts *o = td->eo;
	const char *src = o->bdf && *o->bdf ? o->bdf : fname;

	if (!src || !*src || strlen(src) >= n) {
		log_err("ubdma_nvme: no controller: set bdf= (e.g. bdf=0000:00:02.0) or filename=0000.00.02.0\n");
		return EINVAL;
	}
	/* filename: fio splits file names at ':', so 0000.00.02.0 stands for 0000:00:02.0 */
	snprintf(out, n, "%s", src);
	if (src != o->bdf)
		for (int i = 0, dots = 0; out[i] && dots < 2; i++)
			if (out[i] == '.') {
				out[i] = ':';
				dots++;
			}
	return 0;
}

/* Open (or share) the controller @bdf; the caller holds ubfio_lock. */
static int ctrl_get(struct thread_data *td, const char *bdf, int irq, struct ubfio_ctrl **cp)
{
	const struct ubfio_opts *o = td->eo;
	struct ubfio_ctrl *c;
	int err;

	for (c = ubfio_ctrls; c; c = c->next) {
		if (strcmp(c->bdf, bdf))
			continue;
		if (irq >= 0 && c->irq != (irq > 0)) {
			log_err("ubdma_nvme: %s is open %s interrupts (completions=%s); every job on it must use the same\n",
				bdf, c->irq ? "with" : "without", c->irq ? "irq or hybrid" : "poll");
			return EINVAL;
		}
		c->refs++;
		*cp = c;
		return 0;
	}
	if (!(c = calloc(1, sizeof(*c))))
		return ENOMEM;
	snprintf(c->bdf, sizeof(c->bdf), "%s", bdf);
	c->irq = irq > 0;
	if ((err = ubdma_ctx_open(UBDMA_BACKEND_VFIO, &c->ctx))) {
		log_err("ubdma_nvme: VFIO context: %s\n", ubdma_last_error());
		free(c);
		return err;
	}
	struct ubdma_nvme_opts no = { .size = sizeof(no), .ctx = c->ctx,
				      .io_queues = o->io_queues ? o->io_queues : 16, .interrupts = c->irq };
	if ((err = ubdma_nvme_open(bdf, &no, &c->nvme))) {
		log_err("ubdma_nvme: open %s: %s%s\n", bdf, ubdma_nvme_last_error(),
			err == EBUSY ? " (another process has it: run the jobs as threads, thread=1)" : "");
		ubdma_ctx_close(c->ctx);
		free(c);
		return err;
	}
	c->refs = 1;
	c->next = ubfio_ctrls;
	ubfio_ctrls = c;
	*cp = c;
	return 0;
}

/* Drop a reference; the last one closes the controller.  The caller holds ubfio_lock. */
static void ctrl_put(struct ubfio_ctrl *c)
{
	if (--c->refs)
		return;
	for (struct ubfio_ctrl **pp = &ubfio_ctrls; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	int err = ubdma_nvme_close(c->nvme);
	if (err)
		log_err("ubdma_nvme: close %s: %s\n", c->bdf, ubdma_nvme_last_error());
	ubdma_ctx_close(c->ctx);
	free(c);
}

/* The namespace the job names (or the first active one) and its format. */
static int pick_ns(struct thread_data *td, ubdma_nvme_t *nvme, struct ubdma_nvme_ns_info *ns)
{
	const struct ubfio_opts *o = td->eo;
	uint32_t nsid = o->nsid;
	int err;

	if (!nsid && (err = ubdma_nvme_ns_next(nvme, 0, &nsid)))
		goto fail;
	if ((err = ubdma_nvme_ns(nvme, nsid, ns)))
		goto fail;
	if (ns->ms) {
		log_err("ubdma_nvme: namespace %u has %u metadata bytes per block: not supported\n", nsid, ns->ms);
		return ENOTSUP;
	}
	return 0;
fail:
	log_err("ubdma_nvme: namespace %u: %s\n", nsid, ubdma_nvme_last_error());
	return err;
}

static int ubfio_get_file_size(struct thread_data *td, struct fio_file *f)
{
	struct ubdma_nvme_ns_info ns;
	struct ubfio_ctrl *c;
	char bdf[32];
	int err;

	if (fio_file_size_known(f))
		return 0;
	if ((err = ubfio_bdf(td, f->file_name, bdf, sizeof(bdf))))
		return err;
	/* fio's main thread asks before the jobs start: open for the look-up, close again (-1: any
	 * completion mode will do) */
	pthread_mutex_lock(&ubfio_lock);
	if (!(err = ctrl_get(td, bdf, -1, &c))) {
		err = pick_ns(td, c->nvme, &ns);
		ctrl_put(c);
	}
	pthread_mutex_unlock(&ubfio_lock);
	if (err)
		return err;
	f->real_file_size = ns.size;
	f->filetype = FIO_TYPE_BLOCK;
	fio_file_set_size_known(f);
	return 0;
}

static int ubfio_init(struct thread_data *td)
{
	const struct ubfio_opts *o = td->eo;
	struct ubdma_nvme_ns_info ns;
	struct ubfio_td *u;
	char bdf[32];
	int err;

	if (td->o.nr_files != 1) {
		log_err("ubdma_nvme: one controller and namespace a job (nrfiles=1), not %u\n", td->o.nr_files);
		return 1;
	}
	if ((err = ubfio_bdf(td, td->files[0]->file_name, bdf, sizeof(bdf))))
		return 1;
	if (!(u = calloc(1, sizeof(*u))) || !(u->events = calloc(td->o.iodepth, sizeof(*u->events)))) {
		free(u);
		return 1;
	}
	u->maxevents = td->o.iodepth;
	u->irq = o->irq == 1;
	u->hybrid = o->irq == 2;
	u->hybrid_polls = o->hybrid_polls;
	pthread_mutex_lock(&ubfio_lock);
	err = ctrl_get(td, bdf, (int)o->irq, &u->ctrl);
	pthread_mutex_unlock(&ubfio_lock);
	if (err)
		goto fail;
	if ((err = pick_ns(td, u->ctrl->nvme, &ns)))
		goto fail_put;
	u->nsid = ns.nsid;
	u->lba_shift = (uint32_t)__builtin_ctz(ns.lba_size);
	/* the driver writes the CQ head doorbell once a quarter of the CQ is consumed: iodepth + 1
	 * entries at QD 1 would make that an MMIO write (under QEMU an exit into the device model)
	 * per command, beside the tail's; 256, as bench_nvme, makes it one in 64 */
	unsigned entries = o->entries;
	if (!entries)
		entries = td->o.iodepth + 1 > UBFIO_ENTRIES ? td->o.iodepth + 1 : UBFIO_ENTRIES;
	if (entries < td->o.iodepth + 1) {
		log_err("ubdma_nvme: queue_entries=%u holds %u commands, fewer than iodepth=%u\n", entries,
			entries - 1, td->o.iodepth);
		err = EINVAL;
		goto fail_put;
	}
	if ((err = ubdma_nvme_qpair_create(u->ctrl->nvme, entries, &u->qp))) {
		log_err("ubdma_nvme: queue pair of %u entries on %s: %s\n", entries, bdf, ubdma_nvme_last_error());
		goto fail_put;
	}
	if (ubdma_nvme_qpair_batch(u->qp, 1))
		goto fail_qp;
	td->io_ops_data = u;
	return 0;
fail_qp:
	ubdma_nvme_qpair_destroy(u->qp);
fail_put:
	pthread_mutex_lock(&ubfio_lock);
	ctrl_put(u->ctrl);
	pthread_mutex_unlock(&ubfio_lock);
fail:
	td_verror(td, err, "ubdma_nvme init");
	free(u->events);
	free(u);
	return 1;
}

static void ubfio_cleanup(struct thread_data *td)
{
	struct ubfio_td *u = td->io_ops_data;

	if (!u)
		return;
	uint64_t life = ubfio_ticks() - u->t_init;
	/* on stderr: log_info() writes into fio's --output file, whose JSON a reader parses whole
	 * (ubdma bench nvme does) */
	if (!u->irq && !u->hybrid && life && u->t_init)
		fprintf(stderr, "ubdma_nvme: polled idle share %.4f (%llu of %llu TSC ticks in polls that found nothing)\n",
			(double)u->idle / (double)life, (unsigned long long)u->idle, (unsigned long long)life);
	if (u->errors > UBFIO_TOLD_ERRORS)
		log_err("ubdma_nvme: %lu commands on queue %u failed in all (the first %u told above)\n", u->errors,
			ubdma_nvme_qpair_id(u->qp), UBFIO_TOLD_ERRORS);
	if (ubdma_nvme_outstanding(u->qp) && ubdma_nvme_drain(u->qp, 10000))
		log_err("ubdma_nvme: %u commands still outstanding at cleanup: %s\n",
			ubdma_nvme_outstanding(u->qp), ubdma_nvme_last_error());
	if (ubdma_nvme_qpair_destroy(u->qp))
		log_err("ubdma_nvme: queue pair: %s\n", ubdma_nvme_last_error());
	pthread_mutex_lock(&ubfio_lock);
	ctrl_put(u->ctrl);
	pthread_mutex_unlock(&ubfio_lock);
	free(u->events);
	free(u);
	td->io_ops_data = NULL;
}

/* Buffers the device reaches in place: hugepages when there are, else 4 KiB pages, registered. */
static int ubfio_iomem_alloc(struct thread_data *td, size_t len)
{
	struct ubfio_td *u = td->io_ops_data;
	size_t hlen = (len + UBFIO_HUGE - 1) & ~(size_t)(UBFIO_HUGE - 1);
	void *m = mmap(NULL, hlen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	int err;

	if (m == MAP_FAILED) {
		hlen = (len + 4095) & ~(size_t)4095;
		m = mmap(NULL, hlen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			return errno;
	}
	if ((err = ubdma_umem_lock(u->ctrl->ctx, m, hlen, UBDMA_UMEM_READ | UBDMA_UMEM_WRITE, &u->umem))) {
		log_err("ubdma_nvme: registering %zu bytes of buffers: %s\n", hlen, ubdma_last_error());
		munmap(m, hlen);
		return err;
	}
	u->mem = m;
	u->mem_len = hlen;
	td->orig_buffer = m;
	return 0;
}

static void ubfio_iomem_free(struct thread_data *td)
{
	struct ubfio_td *u = td->io_ops_data;

	if (!u || !u->mem)
		return;
	ubdma_umem_unlock(u->umem);
	munmap(u->mem, u->mem_len);
	u->mem = NULL;
	u->umem = NULL;
	td->orig_buffer = NULL;
}

static int ubfio_open_file(struct thread_data *td, struct fio_file *f)
{
	(void)td;
	(void)f;
	return 0;
}

static int ubfio_close_file(struct thread_data *td, struct fio_file *f)
{
	(void)td;
	(void)f;
	return 0;
}

/* The driver's callback: the io_u joins the events the current getevents returns. */
static void ubfio_done(void *arg, const struct ubdma_nvme_cpl *cpl)
{
	struct io_u *io_u = arg;
	struct ubfio_td *u = io_u->engine_data;

	io_u->error = cpl->error;
	if (cpl->error) {
		io_u->resid = io_u->xfer_buflen;
		/* fio says only "Input/output error": the driver's sentence names the command and its
		 * status (set by the completion of an error status, before this callback) */
		if (u->errors++ < UBFIO_TOLD_ERRORS)
			log_err("ubdma_nvme: %s %llu+%llu on queue %u failed (%s): %s\n",
				io_ddir_name(io_u->ddir), (unsigned long long)io_u->offset,
				(unsigned long long)io_u->xfer_buflen, ubdma_nvme_qpair_id(u->qp), strerror(cpl->error),
				cpl->status ? ubdma_nvme_last_error() : "ended by the driver");
	}
	u->events[u->nevents++] = io_u;
}

static enum fio_q_status ubfio_queue(struct thread_data *td, struct io_u *io_u)
{
	struct ubfio_td *u = td->io_ops_data;
	uint64_t mask = (1ull << u->lba_shift) - 1;
	int err;

	fio_ro_check(td, io_u);
	io_u->engine_data = u;
	if (ddir_rw(io_u->ddir) || io_u->ddir == DDIR_TRIM) {
		if ((io_u->offset | io_u->xfer_buflen) & mask) {
			io_u->error = EINVAL;
			return FIO_Q_COMPLETED;
		}
	}
	uint64_t slba = io_u->offset >> u->lba_shift;
	uint32_t nlb = (uint32_t)(io_u->xfer_buflen >> u->lba_shift);
	switch (io_u->ddir) {
	case DDIR_READ:
		err = ubdma_nvme_read(u->qp, u->nsid, io_u->xfer_buf, slba, nlb, ubfio_done, io_u);
		break;
	case DDIR_WRITE:
		err = ubdma_nvme_write(u->qp, u->nsid, io_u->xfer_buf, slba, nlb, ubfio_done, io_u);
		break;
	case DDIR_TRIM:
		err = ubdma_nvme_deallocate(u->qp, u->nsid, slba, nlb, ubfio_done, io_u);
		break;
	case DDIR_SYNC:
	case DDIR_DATASYNC:
		err = ubdma_nvme_flush(u->qp, u->nsid, ubfio_done, io_u);
		break;
	default:
		err = ENOTSUP;
		break;
	}
	if (err == EAGAIN || err == ENOMEM)
		return FIO_Q_BUSY; /* the queue or the bounce pool is full: fio reaps, then retries */
	if (err) {
		io_u->error = err;
		return FIO_Q_COMPLETED;
	}
	return FIO_Q_QUEUED;
}

static int ubfio_commit(struct thread_data *td)
{
	struct ubfio_td *u = td->io_ops_data;

	return -ubdma_nvme_ring(u->qp);
}

static int ubfio_getevents(struct thread_data *td, unsigned int min, unsigned int max, const struct timespec *t)
{
	struct ubfio_td *u = td->io_ops_data;
	struct timespec now, end = { 0, 0 };
	unsigned n;
	int err;

	/* what the last call handed out is fio's now; keep the rest (a recovery may complete more
	 * commands at once than fio asked for) */
	memmove(u->events, u->events + u->given, (u->nevents - u->given) * sizeof(*u->events));
	u->nevents -= u->given;
	u->given = 0;
	if (max > u->maxevents)
		max = u->maxevents;
	/* a zero timeout (fio reaping what is there): one pass, no clock (in a guest whose clock is
	 * the HPET, every clock read is a system call) */
	int once = t && !t->tv_sec && !t->tv_nsec;
	if (t && !once) {
		clock_gettime(CLOCK_MONOTONIC, &end);
		end.tv_sec += t->tv_sec;
		end.tv_nsec += t->tv_nsec;
		if (end.tv_nsec >= 1000000000L) {
			end.tv_sec++;
			end.tv_nsec -= 1000000000L;
		}
	}
	unsigned empty = 0; /* polls in a row that found nothing (hybrid: then sleep) */
	uint64_t t_empty = 0; /* TSC at the start of the last pass, when its poll found nothing */
	for (unsigned spins = 0;; spins++) {
		if (u->nevents >= min && (u->nevents >= max || spins))
			break;
		if ((u->irq || (u->hybrid && empty >= u->hybrid_polls)) && !u->nevents && min && !once) {
			if (t_empty)
				u->idle += ubfio_ticks() - t_empty;
			t_empty = 0;
			err = ubdma_nvme_wait(u->qp, t ? (int)(t->tv_sec * 1000 + t->tv_nsec / 1000000) : -1, &n);
			empty = 0;
		} else {
			/* a pass whose poll found nothing is waiting, the loop around the poll included
			 * (as bench_nvme counts its passes): one TSC read a pass */
			uint64_t k0 = ubfio_ticks();
			if (t_empty)
				u->idle += k0 - t_empty;
			err = ubdma_nvme_poll(u->qp, u->nevents < max ? max - u->nevents : 1, &n);
			t_empty = 0;
			if (!n) {
				/* counted from the end of fio's ramp_time, as the benchmark's window */
				if (u->t_init)
					t_empty = k0;
				else if (td->ramp_time_over || !td->o.ramp_time)
					u->t_init = k0;
				empty++;
			}
		}
		if (err) {
			log_err("ubdma_nvme: completions: %s\n", ubdma_nvme_last_error());
			return -err;
		}
		if (u->nevents >= min || once)
			break;
		if (t && (spins & 255) == 255) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec))
				break;
		}
	}
	if (t_empty)
		u->idle += ubfio_ticks() - t_empty;
	u->given = u->nevents < max ? u->nevents : max;
	return (int)u->given;
}

static struct io_u *ubfio_event(struct thread_data *td, int ev)
{
	struct ubfio_td *u = td->io_ops_data;

	return u->events[ev];
}

static struct fio_option ubfio_options[] = {
	{
		.name = "bdf",
		.lname = "ubdma_nvme controller",
		.type = FIO_OPT_STR_STORE,
		.off1 = offsetof(struct ubfio_opts, bdf),
		.help = "PCI address of the NVMe controller bound to vfio-pci (default: the filename, '.' for ':')",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = "nsid",
		.lname = "ubdma_nvme namespace",
		.type = FIO_OPT_INT,
		.off1 = offsetof(struct ubfio_opts, nsid),
		.def = "0",
		.help = "Namespace to use (0: the first active one)",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = "queue_entries",
		.lname = "ubdma_nvme queue pair entries",
		.type = FIO_OPT_INT,
		.off1 = offsetof(struct ubfio_opts, entries),
		.def = "0",
		.help = "Entries of each job's queue pair (0: the larger of iodepth + 1 and 256; capped by CAP.MQES)",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = "completions",
		.lname = "ubdma_nvme completions",
		.type = FIO_OPT_STR,
		.off1 = offsetof(struct ubfio_opts, irq),
		.def = "poll",
		.help = "How completions are waited for",
		.posval = {
			{ .ival = "poll", .oval = 0, .help = "poll the completion queue (no system call)" },
			{ .ival = "irq", .oval = 1, .help = "sleep on the queue pair's MSI-X eventfd" },
			{ .ival = "hybrid", .oval = 2, .help = "poll hybrid_polls times, then sleep on the MSI-X eventfd" },
		},
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = "hybrid_polls",
		.lname = "ubdma_nvme hybrid polls",
		.type = FIO_OPT_INT,
		.off1 = offsetof(struct ubfio_opts, hybrid_polls),
		.def = "64",
		.help = "completions=hybrid: polls that find nothing before the job sleeps on the interrupt",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = "io_queues",
		.lname = "ubdma_nvme I/O queue pairs",
		.type = FIO_OPT_INT,
		.off1 = offsetof(struct ubfio_opts, io_queues),
		.def = "0",
		.help = "I/O queue pairs asked of the controller when it is opened (0: 16); one a job thread",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{ .name = NULL },
};

/* fio looks the engine up by its name ("ubdma_nvme" in the job) or by this symbol. */
__attribute__((visibility("default"))) struct ioengine_ops ioengine = {
	.name = "ubdma_nvme",
	.version = FIO_IOOPS_VERSION,
	.flags = FIO_DISKLESSIO | FIO_NODISKUTIL | FIO_NOEXTEND | FIO_RAWIO | FIO_MEMALIGN,
	.init = ubfio_init,
	.cleanup = ubfio_cleanup,
	.queue = ubfio_queue,
	.commit = ubfio_commit,
	.getevents = ubfio_getevents,
	.event = ubfio_event,
	.open_file = ubfio_open_file,
	.close_file = ubfio_close_file,
	.get_file_size = ubfio_get_file_size,
	.iomem_alloc = ubfio_iomem_alloc,
	.iomem_free = ubfio_iomem_free,
	.options = ubfio_options,
	.option_struct_size = sizeof(struct ubfio_opts),
};
