/*
 * nvme_int.h - the driver's private state: the controller, its queue pairs and their per-command
 * slots.  Shared by nvme_ctrl.c (bring-up, admin commands, queue creation, shutdown),
 * nvme_io.c (the submission and completion path) and nvme_util.c (errors, time, status codes).
 */
#ifndef UBDMA_DRIVERS_NVME_INT_H
#define UBDMA_DRIVERS_NVME_INT_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include <ubdma/ubdma.h>
#include <ubdma/nvme.h>

#include "nvme_spec.h"
#include "../common/drv_watch.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define NVME_ADMIN_ENTRIES 32
#define NVME_MAX_NS 1024	      /* namespaces the driver tracks (one Active NS list) */
#define NVME_DEFAULT_ENTRIES 256
#define NVME_DEFAULT_MAX_XFER (512u * 1024)

#define NVME_DEFAULT_IO_TIMEOUT_MS 30000u
#define NVME_TICKS_PER_TIMEOUT 4u  /* a command times out after 4 to 5 ticks of its queue pair */
#define NVME_CHECK_POLLS 1024u	   /* polls between two timeout checks (one clock read) */
/* ms between two looks of the periodic check (any pair of the controller) at the device: the
 * kernel's request and error eventfds (a system call each) and CSTS (a read across the link), which
 * would otherwise come every 1024 polls (issue 18, docs/nvme.md "Surprise removal") */
#define NVME_NOTIFY_MS 10u

enum nvme_state { NVME_LIVE, NVME_SHUTDOWN, NVME_FAILED, NVME_RESETTING };

/* One command slot of a queue pair; its index is the command identifier (CID). */
struct nvme_req {
	ubdma_nvme_cb_t *cb;
	void *arg;
	ubdma_map_t *map;	  /* the loaded map (of tag), NULL for commands without data */
	ubdma_tag_t *tag;
	int sync_post;		  /* UBDMA_SYNC_POSTREAD / POSTWRITE at completion */
	uint16_t busy;
	uint8_t list_contig;	  /* the list pages are IOVA-contiguous: SGLs need no chain */
	uint8_t pad;
	void *list;		  /* list pages (ctrl->list_pages, VA contiguous): PRP list, SGL
				   * segments or DSM range */
	uint64_t list_iova;	  /* IOVA of the first page */
	const uint64_t *list_iovas; /* IOVA of each page (not contiguous: chained, 4.3 / 4.4) */
	ubdma_map_t *map_prp;	  /* pre-created maps, one per data tag in use */
	ubdma_map_t *map_sgl;
	uint32_t stamp;		  /* the queue pair's tick at submission (nvme_recover.c) */
	uint8_t timed_out;	  /* found past its timeout: completes with ETIMEDOUT */
	uint8_t abort_sent;	  /* an Abort was sent for it */
	struct nvme_sqe sqe;	  /* the command as submitted, for a requeue after a reset */
};

struct ubdma_nvme_qpair {
	struct ubdma_nvme *ctrl;
	uint16_t qid;
	uint16_t entries;
	uint16_t sq_tail;
	uint16_t cq_head;
	uint8_t phase;
	uint8_t batch;		  /* ubdma_nvme_qpair_batch(): tail doorbell rung by poll/ring */
	uint8_t db_pending;	  /* entries written since the last tail doorbell */
	unsigned outstanding;
	unsigned cq_unacked;	  /* entries consumed since the last head doorbell */
	struct nvme_sqe *sq;
	volatile struct nvme_cqe *cq;
	volatile uint32_t *sq_db;
	volatile uint32_t *cq_db;
	struct nvme_req *reqs;	  /* entries - 1 slots */
	uint16_t *free;		  /* stack of free CIDs */
	unsigned nfree;
	ubdma_seg_t *segs;	  /* scratch segment list of one load */
	/* DMA memory: the queues (one segment) and the list pages */
	ubdma_tag_t *qtag, *ltag;
	void *qmem, *lmem;
	ubdma_map_t *qmap, *lmap;
	uint64_t *list_iovas;	  /* entries - 1 slots x list_pages */
	uint64_t sq_iova, cq_iova;
	int fd;			  /* MSI-X eventfd, or -1 */
	unsigned vector;
	/* timeouts and recovery (nvme_recover.c), touched by the owner thread only */
	uint32_t tick;		  /* coarse clock: advanced by the timeout check, read at submission */
	uint8_t tick_stale;	  /* the queue was idle: restart the clock before judging */
	unsigned polls;		  /* polls since the last timeout check */
	unsigned timeout_ms;	  /* per-command timeout of this pair */
	uint64_t tick_ms;	  /* when the current tick began */
	unsigned gen;		  /* the controller's reset generation the queues were made in */
};

struct nvme_ns {
	uint64_t nsze, ncap, nuse;
	uint32_t lba_shift;
	uint16_t ms;
	uint8_t active;
};

struct ubdma_nvme {
	ubdma_ctx_t *ctx;
	int own_ctx;
	ubdma_pci_t *dev;
	volatile uint8_t *bar;
	size_t bar_len;
	uint64_t cap;
	unsigned dstrd;
	unsigned timeout_ms;
	volatile int state;	  /* enum nvme_state */
	struct ubdma_nvme_info info;
	unsigned default_entries;
	/* admin queue pair, its lock and a 4 KiB data page for Identify */
	struct ubdma_nvme_qpair *admin;
	pthread_mutex_t admin_lock;
	ubdma_tag_t *dtag;
	void *dbuf;
	ubdma_map_t *dmap;
	uint64_t dbuf_iova;
	/* data tags: PRP rules, and SGL rules when the controller has SGLs */
	ubdma_tag_t *prp_tag, *sgl_tag;
	int sgl_policy;
	unsigned max_segs;	  /* nsegments of the data tags */
	unsigned list_pages;	  /* list pages a command slot has (chained PRP lists, SGL segments) */
	/* namespaces 1 .. nns */
	struct nvme_ns *ns;
	uint32_t nns;
	/* I/O queue pairs: used[qid] for qid 1 .. info.io_queues */
	struct ubdma_nvme_qpair **qps;
	int *fds;
	unsigned nvec;
	/* timeouts, Abort and reset (nvme_recover.c) */
	unsigned io_timeout_ms;	  /* default per-command timeout of new queue pairs */
	int reset_policy;	  /* UBDMA_NVME_RESET_FAIL or _REQUEUE */
	volatile unsigned gen;	  /* bumped by every controller reset (under admin_lock) */
	unsigned io_queues_asked;
	struct ubdma_nvme_recovery rec; /* counters, updated with atomic adds */
	/* surprise removal (nvme_recover.c): the kernel's request and error eventfds
	 * (ubdma_pci_notify_fds(); -1 without), read by the periodic check, never on the I/O path */
	int req_fd, err_fd;
	uint64_t notify_ms;	  /* coarse ms of their last read by the periodic check (relaxed atomics) */
	int gone;		  /* the device was given back (ubdma_pci_release()); set once, atomically */
	int fatal;		  /* CSTS.CFS or an error interrupt seen: the next check resets */
	/* the removal watcher (nvme_watch.c, drivers/common/drv_watch.h): a thread asleep on
	 * req_fd and err_fd until close */
	struct drv_watch watch;
};

/*
 * The files depend one way: nvme_recover.c calls nvme_ctrl.c, nvme_ctrl.c calls nvme_io.c and
 * nvme_util.c, nvme_io.c calls nvme_util.c, nvme_util.c calls none; the one way back is
 * nvme_io.c's entry into nvme_recover.c on its slow path (a timeout check, a queue pair whose
 * controller was reset).
 */

/* nvme_util.c */
int nvme_err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int nvme_status_errno(uint16_t sf);
uint32_t nvme_check_fatal(struct ubdma_nvme *c);
uint64_t nvme_now_ms(void);
uint64_t nvme_coarse_ms(void);

/* nvme_io.c */
int nvme_submit_raw(struct ubdma_nvme_qpair *qp, const struct nvme_sqe *cmd, ubdma_nvme_cb_t *cb, void *arg);
void nvme_qpair_cancel_all(struct ubdma_nvme_qpair *qp);
unsigned nvme_qpair_reap(struct ubdma_nvme_qpair *qp, unsigned max);
void nvme_req_finish(struct ubdma_nvme_qpair *qp, uint16_t cid, int error);
void nvme_req_resubmit(struct ubdma_nvme_qpair *qp, uint16_t cid);
void nvme_qpair_ring(struct ubdma_nvme_qpair *qp);

/* nvme_ctrl.c (for nvme_recover.c) */
int nvme_admin_exec(struct ubdma_nvme *c, struct nvme_sqe *cmd, uint32_t *dw0, uint16_t *sfp);
int nvme_admin_exec_locked(struct ubdma_nvme *c, struct nvme_sqe *cmd, uint32_t *dw0, uint16_t *sfp);
int nvme_qpair_create_queues(struct ubdma_nvme_qpair *qp);
int nvme_ctrl_reenable_locked(struct ubdma_nvme *c);

/* nvme_recover.c: the slow path nvme_io.c enters every NVME_CHECK_POLLS polls, and when the
 * controller was reset under a queue pair; nvme_ctrl.c's admin loop reads the kernel's request
 * there too (nvme_check_notify(), admin_lock held: locked = 1) */
void nvme_qpair_check(struct ubdma_nvme_qpair *qp);
int nvme_qpair_recover(struct ubdma_nvme_qpair *qp);
int nvme_check_notify(struct ubdma_nvme *c, int locked);
void nvme_notify_setup(struct ubdma_nvme *c);
void nvme_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* nvme_watch.c: the removal watcher thread, started at open (unless opted out), stopped at close
 * before anything it touches is freed */
int nvme_watch_start(struct ubdma_nvme *c);
void nvme_watch_stop(struct ubdma_nvme *c);

static inline uint32_t nvme_rd32(const struct ubdma_nvme *c, uint32_t off)
{
	return *(volatile const uint32_t *)(c->bar + off);
}

static inline void nvme_wr32(struct ubdma_nvme *c, uint32_t off, uint32_t v)
{
	*(volatile uint32_t *)(c->bar + off) = v;
}

/* 64-bit registers as two 32-bit accesses, low first (3.1: the host may access them so). */
static inline uint64_t nvme_rd64(const struct ubdma_nvme *c, uint32_t off)
{
	return nvme_rd32(c, off) | (uint64_t)nvme_rd32(c, off + 4) << 32;
}

static inline void nvme_wr64(struct ubdma_nvme *c, uint32_t off, uint64_t v)
{
	nvme_wr32(c, off, (uint32_t)v);
	nvme_wr32(c, off + 4, (uint32_t)(v >> 32));
}

#endif /* UBDMA_DRIVERS_NVME_INT_H */
