/*
 * ubdma/nvme.h - libubdma_nvme: a user-space NVMe driver on the public ubdma API.
 *
 * The driver opens an NVMe controller bound to vfio-pci (ubdma_pci_open()), brings it up as the
 * NVM Express Base Specification describes (CAP/VS/CC/CSTS, admin queues, Identify, Set Features
 * Number of Queues, I/O queue pairs) and moves data from any user buffer: the buffer is loaded
 * through a bus_dma tag whose constraints are the PRP rules (or the SGL rules when the controller
 * has SGLs and they are asked for), so memory that is not registered, or not aligned, is bounced
 * by ubdma, never copied by the driver.  Completions are polled (phase tags) or, optionally,
 * signalled through MSI-X eventfds.
 *
 * Threads: a queue pair belongs to one thread at a time (no lock on the I/O path); the controller
 * calls (open, close, queue pair create/destroy, info) may be made from any thread.
 *
 * Open, close and errors follow the convention of every ubdma driver library (ubdma_e1000e(3)
 * too):
 *  - ubdma_nvme_open(bdf, opts, &ctrl): @opts may be NULL (defaults), its @size is set by the
 *    caller (below), @ctx NULL makes the driver open a vfio context of its own; on failure
 *    *ctrlp is NULL and nothing stays open.  ubdma_nvme_close() returns int and frees
 *    everything even when it reports an error; closing NULL does nothing and returns 0.
 *  - Every function that returns int returns 0 or a positive errno value, never -1, and a NULL
 *    handle or result pointer gives EINVAL (close excepted).  Accessors (info, outstanding, qpair_id) return
 *    NULL or 0 for a NULL handle.
 *  - Every failure leaves a sentence for ubdma_nvme_last_error(), per thread like
 *    ubdma_last_error(); with UBDMA_LOG=error (or warn, info, debug) it is also written to stderr.
 * A command that reached the controller completes through its callback with an errno and the
 * NVMe status of its completion entry.  Link with -lubdma_nvme -lubdma (pkg-config ubdma-nvme).
 * See ubdma_nvme(3) and docs/nvme.md.
 */
#ifndef UBDMA_NVME_H
#define UBDMA_NVME_H

#include <stddef.h>
#include <stdint.h>

#include <ubdma/core.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ubdma_nvme ubdma_nvme_t;
typedef struct ubdma_nvme_qpair ubdma_nvme_qpair_t;

/* ubdma_nvme_opts.sgl */
#define UBDMA_NVME_SGL_AUTO 0 /* PRPs; SGLs only for buffers PRPs cannot describe (not dword aligned) */
#define UBDMA_NVME_SGL_OFF 1  /* PRPs only */
#define UBDMA_NVME_SGL_ON 2   /* SGLs for every transfer (ENOTSUP at open when the controller has none) */

/* ubdma_nvme_opts.reset_policy: what a controller reset does with the commands that were
 * outstanding and had not timed out themselves (those complete with ETIMEDOUT either way) */
#define UBDMA_NVME_RESET_FAIL 0	   /* complete them with ECANCELED */
#define UBDMA_NVME_RESET_REQUEUE 1 /* submit them again, same buffers and callbacks */

/* ubdma_nvme_opts.removal_watch: who answers the kernel's request for the device (a hot-unplug,
 * an unbind from vfio-pci) when the program makes no driver call */
#define UBDMA_NVME_WATCH_ON 0  /* a thread of the driver's, asleep in poll(2) until the request or close */
#define UBDMA_NVME_WATCH_OFF 1 /* none: the driver's next call does (or the program, polling
				* ubdma_pci_notify_fds() of ubdma_nvme_pci()) */

/*
 * Options of ubdma_nvme_open(); NULL gives the defaults, and so does each member left 0.
 * The struct may grow in later versions, so it carries its size: set @size to
 * sizeof(struct ubdma_nvme_opts) and zero the rest, as in
 *	struct ubdma_nvme_opts o = { .size = sizeof(o), .io_queues = 2 };
 * ubdma_nvme_open() refuses (EINVAL) a @size below that of the first version of the struct (all
 * the members below); members past @size take their defaults (a program built with an older
 * header); bytes past the members this library knows must be zero, else ENOTSUP (a program
 * built with a newer header, asking for an option this library does not have).
 */
struct ubdma_nvme_opts {
	size_t size;		 /* sizeof(struct ubdma_nvme_opts) */
	ubdma_ctx_t *ctx;	 /* a context on the vfio backend; NULL: the driver opens its own */
	unsigned io_queues;	 /* I/O queue pairs to ask for (Set Features, Number of Queues); 0: 1 */
	unsigned queue_entries;	 /* default entries of an I/O queue (capped by CAP.MQES); 0: 256 */
	int interrupts;		 /* 1: MSI-X, one eventfd a queue pair (ubdma_nvme_qpair_fd()) */
	int sgl;		 /* UBDMA_NVME_SGL_AUTO, _OFF or _ON */
	unsigned admin_timeout_ms; /* admin commands and ready waits; 0: from CAP.TO, at least 5 s */
	size_t max_transfer;	 /* largest transfer per command, bytes; 0: MDTS, at most 512 KiB.
				  * Larger (up to MDTS) gives each command slot chained PRP list pages
				  * (and SGL segments): 8 MiB takes 5 pages a slot with PRPs, 9 with SGLs */
	/* second version (issue 18): timeouts and recovery */
	unsigned io_timeout_ms;	 /* per-command timeout of I/O queue pairs; 0: 30 s (the usual host
				  * default; the specification sets none for I/O) */
	int reset_policy;	 /* UBDMA_NVME_RESET_FAIL (0) or UBDMA_NVME_RESET_REQUEUE */
	/* third version (issue 18): surprise removal without driver calls */
	int removal_watch;	 /* UBDMA_NVME_WATCH_ON (0) or UBDMA_NVME_WATCH_OFF */
};

/* What Identify Controller (and the registers) said, and what the driver chose. */
struct ubdma_nvme_info {
	char sn[21], mn[41], fr[9]; /* serial, model, firmware revision, blanks trimmed */
	uint16_t vid, ssvid;
	uint32_t vs;		/* VS: major << 16 | minor << 8 | tertiary */
	uint64_t cap;		/* CAP */
	uint32_t nn;		/* number of namespaces */
	unsigned mdts;		/* MDTS as reported (0: no limit) */
	size_t max_transfer;	/* bytes per command the driver allows */
	uint32_t sgls;		/* SGLS */
	uint16_t oncs;		/* ONCS: bit 2 Dataset Management, bit 3 Write Zeroes */
	uint8_t vwc;		/* VWC: bit 0, a volatile write cache is present */
	unsigned max_entries;	/* CAP.MQES + 1 */
	unsigned dstrd;		/* CAP.DSTRD: doorbell stride is 4 << dstrd bytes */
	unsigned io_queues;	/* I/O queue pairs the controller granted (the driver's ceiling) */
	int interrupts;		/* MSI-X in use */
	int sgl;		/* the SGL policy in force (UBDMA_NVME_SGL_*; OFF when none) */
	/* limits of one command (appended in 0.x: the struct is only read through the pointer) */
	size_t mdts_bytes;	/* MDTS in bytes (4 KiB << MDTS), 0: the controller sets none */
	unsigned max_segments;	/* memory segments a command may have (max_transfer / 4 KiB + 1) */
	unsigned list_pages;	/* 4 KiB PRP list / SGL segment pages a command slot has, chained */
};

/* A namespace (Identify Namespace, NVM command set). */
struct ubdma_nvme_ns_info {
	uint32_t nsid;
	uint64_t nsze, ncap, nuse; /* in logical blocks */
	uint32_t lba_size;	   /* bytes of the formatted LBA format */
	uint16_t ms;		   /* metadata bytes per block (the driver refuses I/O when not 0) */
	uint64_t size;		   /* nsze * lba_size */
};

/*
 * A completion.  @status is the Status Field of the completion queue entry (NVMe 1.4, 4.6.1:
 * bits 7:0 Status Code, 10:8 Status Code Type, 13 More, 14 Do Not Retry), 0 on success; @error
 * is 0 or the errno the driver maps it to (EIO for most; ERANGE LBA out of range; ENOSPC
 * capacity exceeded; EINVAL invalid field; ENOTSUP invalid opcode; EROFS write protected), or
 * ECANCELED for a command the controller never completed (the queue was torn down).
 */
struct ubdma_nvme_cpl {
	int error;
	uint16_t status;
	uint16_t cid;
	uint32_t dw0;
};
#define UBDMA_NVME_SC(status) ((status) & 0xff)
#define UBDMA_NVME_SCT(status) (((status) >> 8) & 0x7)

typedef void ubdma_nvme_cb_t(void *arg, const struct ubdma_nvme_cpl *cpl);

/**
 * ubdma_nvme_open() - open and bring up the NVMe controller at @bdf (bound to vfio-pci).
 * Resets the controller (CC.EN 1 -> 0), makes the admin queues, reads Identify Controller and
 * the active namespaces, asks for @opts->io_queues queue pairs, and enables bus mastering.
 * Return: 0; EINVAL for NULL @bdf or @ctrlp, @opts->size too small, or an option out of range;
 * ENOTSUP when the device is not an NVMe controller with the NVM command set and 4 KiB pages, SGLs
 * were required and are missing, interrupts were asked and there is no MSI-X, or @opts sets bytes
 * this library does not know; ENXIO when CAP or CSTS reads all ones (the device is gone);
 * ETIMEDOUT when the controller does not become ready within CAP.TO or an admin command does not
 * complete in time; EIO when it reports a fatal status (CSTS.CFS); the errno a failed admin
 * command's status maps to (struct ubdma_nvme_cpl: EIO, EINVAL, ENOTSUP, ...); any errno of
 * ubdma_ctx_open() / ubdma_pci_open() (ENODEV, EBUSY, ...) and of the DMA memory calls; ENOMEM;
 * EAGAIN (or EMFILE) when the removal watcher thread (or its eventfd) cannot be made.
 * Unless @opts->removal_watch is UBDMA_NVME_WATCH_OFF, a thread of the driver's sleeps until the
 * kernel asks for the device back (then gives it back) or until close.
 * On failure *@ctrlp is NULL and nothing stays open.
 */
int ubdma_nvme_open(const char *bdf, const struct ubdma_nvme_opts *opts, ubdma_nvme_t **ctrlp);

/**
 * ubdma_nvme_close() - destroy the queue pairs (commands still outstanding complete with
 * ECANCELED), delete the I/O queues, shut the controller down (CC.SHN, normal shutdown), reset it
 * (CC.EN 0), close the device, and the context when the driver opened it.
 * Return: 0 (also for NULL, which does nothing, as free(3)); ETIMEDOUT when the shutdown did not
 * complete in time (everything is freed anyway).
 */
int ubdma_nvme_close(ubdma_nvme_t *ctrl);

/**
 * ubdma_nvme_shutdown() - stop the controller but keep the handle: queue pairs wait for their
 * outstanding commands (up to the admin timeout; the rest complete with ECANCELED), the I/O
 * queues are deleted and the controller is shut down.  Later submissions fail with ESHUTDOWN;
 * ubdma_nvme_close() frees the rest.
 * Return: 0; EINVAL for NULL; ETIMEDOUT when the controller did not finish in time.
 */
int ubdma_nvme_shutdown(ubdma_nvme_t *ctrl);

/** ubdma_nvme_info() - the controller's identity and limits; NULL for a NULL @ctrl. */
const struct ubdma_nvme_info *ubdma_nvme_info(const ubdma_nvme_t *ctrl);

/**
 * ubdma_nvme_ns() - namespace @nsid's size and format.
 * Return: 0; EINVAL for NULL or nsid 0 / above NN; ENOENT when the namespace is not active.
 */
int ubdma_nvme_ns(const ubdma_nvme_t *ctrl, uint32_t nsid, struct ubdma_nvme_ns_info *info);

/**
 * ubdma_nvme_ns_next() - the active namespace after @nsid (0 for the first) in *@next.
 * Return: 0; ENOENT when there is none; EINVAL for NULL.
 */
int ubdma_nvme_ns_next(const ubdma_nvme_t *ctrl, uint32_t nsid, uint32_t *next);

/**
 * ubdma_nvme_qpair_create() - create an I/O completion and submission queue pair (Create I/O
 * Completion Queue, Create I/O Submission Queue) of @entries entries (0: the opened default;
 * capped by CAP.MQES + 1); entries - 1 commands may be outstanding at once.  The queue memory,
 * the per-command DMA maps and PRP/SGL list pages are made now, so I/O allocates nothing.
 * Return: 0; EINVAL for NULL or @entries 1; ENOSPC when every granted queue pair is in use;
 * ESHUTDOWN after ubdma_nvme_shutdown(); ENXIO when the controller is gone or failed (removed,
 * all ones, a reset that failed); the errno a failed Create I/O CQ / SQ command's status maps to (EIO for most, EINVAL ...);
 * ETIMEDOUT when one does not complete in time; any errno of the DMA memory calls; ENOMEM.
 * On failure *@qpp is NULL.
 */
int ubdma_nvme_qpair_create(ubdma_nvme_t *ctrl, unsigned entries, ubdma_nvme_qpair_t **qpp);

/**
 * ubdma_nvme_qpair_destroy() - delete the queue pair; its id can be used again.
 * Return: 0; EINVAL for NULL; EBUSY while commands are outstanding (poll them first).
 */
int ubdma_nvme_qpair_destroy(ubdma_nvme_qpair_t *qp);

/**
 * ubdma_nvme_read() / ubdma_nvme_write() - submit a Read / Write of @nlb logical blocks at @slba
 * of namespace @nsid to or from @buf (nlb * lba_size bytes, any user memory); @cb runs from
 * ubdma_nvme_poll() with the completion.  No system call, lock or allocation unless the buffer
 * bounces (bounce pages are taken under the tag's lock).  @buf must not be touched until @cb.
 * Return: 0 when submitted; EINVAL for NULL, nlb 0 or an unknown / inactive namespace; ERANGE
 * when [slba, slba + nlb) is past the namespace's size; E2BIG over the controller's maximum
 * transfer (ubdma_nvme_info()->max_transfer); EAGAIN when the queue is full (poll, then retry);
 * ENOMEM when the bounce pool is short (poll, then retry); ENOTSUP for a buffer that is not dword
 * aligned when SGLs are off or absent, or a namespace with metadata; ESHUTDOWN after
 * ubdma_nvme_shutdown(); ENXIO when the controller is gone (removed: the kernel asked for it
 * back, ubdma_pci_notify_fds()) or failed (all ones, a reset that failed).  On failure nothing
 * was submitted and @cb will not run.
 */
int ubdma_nvme_read(ubdma_nvme_qpair_t *qp, uint32_t nsid, void *buf, uint64_t slba, uint32_t nlb,
		    ubdma_nvme_cb_t *cb, void *arg);
int ubdma_nvme_write(ubdma_nvme_qpair_t *qp, uint32_t nsid, const void *buf, uint64_t slba,
		     uint32_t nlb, ubdma_nvme_cb_t *cb, void *arg);

/**
 * ubdma_nvme_qpair_batch() - batch mode on (@on != 0) or off for the queue pair: submissions write
 * their SQ entries but do not ring the tail doorbell (one MMIO write each); ubdma_nvme_ring(),
 * ubdma_nvme_poll() (and wait/drain, which poll) ring it once for all of them.  Turning it off rings.
 * Return: 0; EINVAL for NULL.
 */
int ubdma_nvme_qpair_batch(ubdma_nvme_qpair_t *qp, int on);

/** ubdma_nvme_ring() - ring the tail doorbell for entries submitted in batch mode.  0; EINVAL. */
int ubdma_nvme_ring(ubdma_nvme_qpair_t *qp);

/**
 * ubdma_nvme_flush() - submit a Flush of namespace @nsid (commits the volatile write cache).
 * Return: as ubdma_nvme_read() (EINVAL, EAGAIN, ESHUTDOWN, ENXIO).
 */
int ubdma_nvme_flush(ubdma_nvme_qpair_t *qp, uint32_t nsid, ubdma_nvme_cb_t *cb, void *arg);

/**
 * ubdma_nvme_deallocate() - submit a Dataset Management command with the Deallocate attribute
 * for one range [slba, slba + nlb).  Return: as ubdma_nvme_read(); ENOTSUP when ONCS says the
 * controller has no Dataset Management.
 */
int ubdma_nvme_deallocate(ubdma_nvme_qpair_t *qp, uint32_t nsid, uint64_t slba, uint32_t nlb,
			  ubdma_nvme_cb_t *cb, void *arg);

/**
 * ubdma_nvme_write_zeroes() - submit a Write Zeroes of [slba, slba + nlb) (nlb at most 65536).
 * Return: as ubdma_nvme_read(); ENOTSUP when ONCS says the controller has no Write Zeroes.
 */
int ubdma_nvme_write_zeroes(ubdma_nvme_qpair_t *qp, uint32_t nsid, uint64_t slba, uint32_t nlb,
			    ubdma_nvme_cb_t *cb, void *arg);

/**
 * ubdma_nvme_poll() - reap up to @max completions (0: all there are) and run their callbacks;
 * *@done (may be NULL) receives how many.  No system call, lock or allocation (a bounced read
 * copies its data back).
 * Every 1024th poll (busy or idle) also checks, off the hot path, for timeouts (a coarse clock
 * read, no system call) and, at most every 10 ms, for the kernel's request for the device and
 * its error interrupt (non-blocking reads), CSTS all ones (gone) and CSTS.CFS (reset).
 * Return: 0; EINVAL for NULL; ENXIO when the controller is gone or failed (outstanding commands
 * then complete with ENXIO, in this call).
 */
int ubdma_nvme_poll(ubdma_nvme_qpair_t *qp, unsigned max, unsigned *done);

/**
 * ubdma_nvme_wait() - with interrupts: sleep until the queue pair's MSI-X vector fires or
 * @timeout_ms passes (-1: no limit), then poll as ubdma_nvme_poll(qp, 0, done).  Without
 * interrupts it polls until something completes or the time is up.
 * Return: 0 (also when the time ran out: *@done is then 0); EINVAL; ENXIO; EINTR.
 */
int ubdma_nvme_wait(ubdma_nvme_qpair_t *qp, int timeout_ms, unsigned *done);

/**
 * ubdma_nvme_drain() - poll until no command of the queue pair is outstanding.
 * Return: 0; ETIMEDOUT after @timeout_ms (-1: no limit) with commands still outstanding; ENXIO.
 */
int ubdma_nvme_drain(ubdma_nvme_qpair_t *qp, int timeout_ms);

/** ubdma_nvme_outstanding() - commands submitted on the queue pair and not completed yet. */
unsigned ubdma_nvme_outstanding(const ubdma_nvme_qpair_t *qp);

/**
 * ubdma_nvme_qpair_fd() - the eventfd of the queue pair's MSI-X vector, for poll(2)/epoll, in
 * *@fdp (owned by the driver: never close it; read(2) it before polling the queue pair).
 * Return: 0; EINVAL for NULL; ENOTSUP when the controller was opened without interrupts.
 */
int ubdma_nvme_qpair_fd(const ubdma_nvme_qpair_t *qp, int *fdp);

/**
 * ubdma_nvme_qpair_set_timeout() - the per-command timeout of the queue pair's commands submitted
 * from now on, @ms milliseconds (0: the controller's, ubdma_nvme_opts.io_timeout_ms).  A command
 * outstanding longer is found by the pair's polls (every 1024th poll reads the clock; a command
 * is judged 4 to 5 quarters of its timeout after submission): an Abort is sent for it (5.1); if
 * the controller does not abort it, or its completion does not come within another timeout, the
 * controller is reset (7.3.2) and its queue pairs made again, each by its owner at its next poll
 * or submission.  The command completes with ETIMEDOUT; the others that were outstanding complete
 * with ECANCELED or are submitted again (ubdma_nvme_opts.reset_policy).  While a reset runs,
 * submissions on any pair return EAGAIN.  Return: 0; EINVAL for NULL.
 */
int ubdma_nvme_qpair_set_timeout(ubdma_nvme_qpair_t *qp, unsigned ms);

/* What the recovery did so far (ubdma_nvme_recovery()). */
struct ubdma_nvme_recovery {
	uint64_t timeouts;	/* commands found past their timeout */
	uint64_t aborts;	/* Abort commands sent */
	uint64_t aborted;	/* ... that the controller said it aborted (CDW0 bit 0 clear) */
	uint64_t resets;	/* controller resets */
	uint64_t requeued;	/* commands submitted again after a reset */
	uint64_t failed;	/* commands the recovery completed with an error (ETIMEDOUT, ECANCELED) */
	unsigned maps_loaded;	/* commands whose buffer is loaded now (outstanding data commands) */
};

/**
 * ubdma_nvme_recovery() - the recovery counters and how many data buffers are loaded right now
 * (a snapshot; pairs other threads use may move on meanwhile).  With UBDMA_LOG=warn (or info,
 * debug) each step is also written to stderr as it happens.  Return: 0; EINVAL for NULL.
 */
int ubdma_nvme_recovery(const ubdma_nvme_t *ctrl, struct ubdma_nvme_recovery *st);

/** ubdma_nvme_qpair_id() - the queue identifier (1 ...) of the pair. */
unsigned ubdma_nvme_qpair_id(const ubdma_nvme_qpair_t *qp);

/**
 * ubdma_nvme_pci() - the controller's PCI function (BDF, NUMA node, BAR0 for diagnostics and
 * fault injection: a register written behind the driver's back is the caller's business); NULL
 * for NULL.  After a surprise removal it is released (ubdma_pci_release()).
 */
ubdma_pci_t *ubdma_nvme_pci(const ubdma_nvme_t *ctrl);

/** ubdma_nvme_strstatus() - a short name for an NVMe status (generic and command specific). */
const char *ubdma_nvme_strstatus(uint16_t status);

/**
 * ubdma_nvme_last_error() - a sentence about the last failure of a ubdma_nvme_* call in the
 * calling thread, or "" before the first.  A successful call leaves it as it was.
 */
const char *ubdma_nvme_last_error(void);

#ifdef __cplusplus
}
#endif
#endif /* UBDMA_NVME_H */
