/*
 * nvme_util.c - what both halves of the driver use: the thread's last error sentence and its
 * UBDMA_LOG trace (the convention of nvme.h, which e1000e.c follows too), the monotonic clock in milliseconds, the check for a controller that reported
 * a fatal status (CSTS.CFS, or all ones: gone), and what a completion's Status Field (NVMe 1.4,
 * 4.6.1) means, as an errno and as the specification's words.  nvme_ctrl.c and nvme_io.c call in
 * here; this file calls neither, so the driver's files depend one way: ctrl -> io -> util.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nvme_int.h"

static _Thread_local char last_error[256];
static int trace; /* UBDMA_LOG asks for errors at least; read once, before any call */
static int notes; /* UBDMA_LOG asks for warnings at least: the recovery steps */

/* The library's levels (error, warn, info, debug) all include errors, which is all that is
 * traced here. */
__attribute__((constructor)) static void nvme_trace_init(void)
{
	static const char *levels[] = { "error", "warn", "info", "debug" };
	const char *v = getenv("UBDMA_LOG");

	for (unsigned i = 0; v && i < sizeof(levels) / sizeof(levels[0]); i++) {
		trace |= !strcmp(v, levels[i]);
		notes |= i > 0 && !strcmp(v, levels[i]);
	}
}

void nvme_note(const char *fmt, ...)
{
	va_list ap;

	if (!notes)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "ubdma_nvme: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

int nvme_err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	if (unlikely(trace))
		fprintf(stderr, "ubdma_nvme error: %s (%s)\n", last_error, strerror(err));
	return err;
}

const char *ubdma_nvme_last_error(void)
{
	return last_error;
}

uint64_t nvme_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * The periodic check's clock: CLOCK_MONOTONIC_COARSE (a kernel tick's resolution, 1-10 ms) is
 * read by the vDSO from its data page alone, never through the clocksource, so it is neither a
 * system call nor a device read whatever the clocksource (under TCG the HPET, which the vDSO cannot
 * read: CLOCK_MONOTONIC there is a system call and an exit into QEMU; bench_nvme's poll_idle shows
 * both).  Timeouts are counted in ticks of at least a quarter of 1 ms-granular timeouts: a tick's
 * resolution is enough.
 */
uint64_t nvme_coarse_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* CSTS read once: all ones (the device is gone: a surprise removal, a failed link) marks the
 * controller failed; CFS marks it for a reset at the next check (9.5: "host software should
 * attempt to reset and then re-initialize the controller").  Returns what CSTS read. */
uint32_t nvme_check_fatal(struct ubdma_nvme *c)
{
	uint32_t csts = nvme_rd32(c, NVME_REG_CSTS);

	if (csts == UINT32_MAX)
		c->state = NVME_FAILED;
	else if (csts & NVME_CSTS_CFS)
		c->fatal = 1;
	return csts;
}

int nvme_status_errno(uint16_t sf)
{
	unsigned sc = NVME_SF_SC(sf), sct = NVME_SF_SCT(sf);

	if (!sc && !sct)
		return 0;
	if (sct == NVME_SCT_GENERIC) {
		switch (sc) {
		case NVME_SC_INVALID_OPCODE: return ENOTSUP;
		case NVME_SC_INVALID_FIELD: case NVME_SC_INVALID_NS: return EINVAL;
		case NVME_SC_ABORT_REQ: case NVME_SC_ABORT_SQ_DELETION: return ECANCELED;
		case NVME_SC_LBA_RANGE: return ERANGE;
		case NVME_SC_CAP_EXCEEDED: return ENOSPC;
		case NVME_SC_NS_NOT_READY: case NVME_SC_RESERVATION: return EBUSY;
		default: return EIO;
		}
	}
	if (sct == NVME_SCT_CMD_SPECIFIC && sc == NVME_SC_WRITE_TO_RO)
		return EROFS;
	return EIO;
}

const char *ubdma_nvme_strstatus(uint16_t sf)
{
	unsigned sc = NVME_SF_SC(sf), sct = NVME_SF_SCT(sf);

	if (sct == NVME_SCT_GENERIC) {
		switch (sc) {
		case NVME_SC_SUCCESS: return "Successful Completion";
		case NVME_SC_INVALID_OPCODE: return "Invalid Command Opcode";
		case NVME_SC_INVALID_FIELD: return "Invalid Field in Command";
		case NVME_SC_CID_CONFLICT: return "Command ID Conflict";
		case NVME_SC_DATA_XFER_ERROR: return "Data Transfer Error";
		case NVME_SC_ABORTED_POWER_LOSS: return "Commands Aborted due to Power Loss Notification";
		case NVME_SC_INTERNAL: return "Internal Error";
		case NVME_SC_ABORT_REQ: return "Command Abort Requested";
		case NVME_SC_ABORT_SQ_DELETION: return "Command Aborted due to SQ Deletion";
		case NVME_SC_INVALID_NS: return "Invalid Namespace or Format";
		case NVME_SC_INVALID_SGL_COUNT: return "Invalid Number of SGL Descriptors";
		case NVME_SC_SGL_LENGTH_INVALID: return "Data SGL Length Invalid";
		case NVME_SC_SGL_TYPE_INVALID: return "SGL Descriptor Type Invalid";
		case NVME_SC_PRP_OFFSET_INVALID: return "PRP Offset Invalid";
		case NVME_SC_LBA_RANGE: return "LBA Out of Range";
		case NVME_SC_CAP_EXCEEDED: return "Capacity Exceeded";
		case NVME_SC_NS_NOT_READY: return "Namespace Not Ready";
		case NVME_SC_RESERVATION: return "Reservation Conflict";
		default: return "Generic Command Status";
		}
	}
	if (sct == NVME_SCT_CMD_SPECIFIC) {
		if (sc == NVME_SC_INVALID_QID)
			return "Invalid Queue Identifier";
		if (sc == NVME_SC_INVALID_QSIZE)
			return "Invalid Queue Size";
		if (sc == NVME_SC_WRITE_TO_RO)
			return "Attempted Write to Read Only Range";
		return "Command Specific Status";
	}
	if (sct == NVME_SCT_MEDIA)
		return "Media and Data Integrity Error";
	if (sct == NVME_SCT_PATH)
		return "Path Related Status";
	return "Vendor Specific or Reserved Status";
}
