/*
 * drv_common.h - what every driver library of drivers/ does the same way on the public API: the
 * thread's last-error record and its UBDMA_LOG trace, the versioned options struct, and opening
 * a PCI function (the caller's context or one of the driver's own) and checking its IDs.  Static
 * definitions: each driver includes it in exactly one file, so each library keeps its own
 * record and exports nothing more.  Define DRV_LIB (the library's name in traces, e.g.
 * "ubdma_e1000e") before including it.
 */
#ifndef UBDMA_DRV_COMMON_H
#define UBDMA_DRV_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ubdma/ubdma.h>

#ifndef DRV_LIB
#error "define DRV_LIB before including drv_common.h"
#endif

static _Thread_local char drv_last_error[256];
static _Thread_local const char *drv_last_fixed; /* a constant sentence, when the last failure had one */
static int drv_trace; /* UBDMA_LOG asks for errors at least; read once, before any call */

/* The library's levels (error, warn, info, debug) all include errors, which is all that is
 * traced here. */
__attribute__((constructor)) static void drv_trace_init(void)
{
	static const char *levels[] = { "error", "warn", "info", "debug" };
	const char *v = getenv("UBDMA_LOG");

	for (unsigned i = 0; v && i < sizeof(levels) / sizeof(levels[0]); i++)
		drv_trace |= !strcmp(v, levels[i]);
}

/* Record why a call fails, trace it, and return err: `return drv_err(EINVAL, "...")`. */
static inline int drv_err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int drv_err(int err, const char *fmt, ...)
{
	va_list ap;

	drv_last_fixed = NULL;
	va_start(ap, fmt);
	vsnprintf(drv_last_error, sizeof(drv_last_error), fmt, ap);
	va_end(ap);
	if (__builtin_expect(drv_trace, 0))
		fprintf(stderr, DRV_LIB " error: %s (%s)\n", drv_last_error, strerror(err));
	return err;
}

/*
 * Back-pressure the caller meets at line rate (a full ring, an empty pool) is not a fault: its
 * sentence is a constant, recorded with one store instead of a vsnprintf on the data path.
 */
static inline int drv_err_fixed(int err, const char *msg)
{
	drv_last_fixed = msg;
	if (__builtin_expect(drv_trace, 0))
		fprintf(stderr, DRV_LIB " error: %s (%s)\n", msg, strerror(err));
	return err;
}

static inline const char *drv_last_error_msg(void)
{
	return drv_last_fixed ? drv_last_fixed : drv_last_error;
}

/* Waits and deadlines of the control paths (reset, link, flush): the monotonic clock. */
static inline void sleep_us(unsigned us)
{
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

static inline uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/*
 * Copy the caller's options (@opts, NULL for all defaults; its first member is its size_t size)
 * into @c of @known bytes, zeroed first.  A size below @v1 (the first version's) is a caller
 * that did not set it; bytes beyond what this library knows must be zero, else the caller asks
 * for something a newer library would do.
 */
static inline int drv_opts_copy(const void *opts, size_t v1, void *c, size_t known, const char *type)
{
	const unsigned char *b = opts;
	size_t size = 0;

	memset(c, 0, known);
	if (!opts)
		return 0;
	memcpy(&size, opts, sizeof(size));
	if (size < v1)
		return drv_err(EINVAL, "opts->size is %zu: set it to sizeof(struct %s), %zu", size, type, known);
	for (size_t i = known; i < size; i++)
		if (b[i])
			return drv_err(ENOTSUP, "opts->size is %zu and byte %zu is set: this library knows %zu "
				       "bytes of options, so it cannot honour a newer one", size, i, known);
	memcpy(c, opts, size < known ? size : known);
	return 0;
}

/*
 * The context (@ctx, the caller's, or one of the driver's own: *@own set) and the PCI function
 * @bdf, whose vendor and device IDs go to @id.  On failure what was opened is in *@ctxp and
 * *@pcip for drv_pci_close() (*@pcip NULL when the open failed).
 */
static inline int drv_pci_open(ubdma_ctx_t *ctx, const char *bdf, ubdma_ctx_t **ctxp, int *own,
			       ubdma_pci_t **pcip, uint16_t id[2])
{
	int err;

	*pcip = NULL;
	*own = 0;
	if (!(*ctxp = ctx)) {
		if ((err = ubdma_ctx_open(UBDMA_BACKEND_VFIO, ctxp))) {
			*ctxp = NULL;
			return drv_err(err, "VFIO context: %s", ubdma_last_error());
		}
		*own = 1;
	}
	if ((err = ubdma_pci_open(*ctxp, bdf, pcip))) {
		*pcip = NULL;
		return drv_err(err, "ubdma_pci_open(%s): %s (%s)", bdf, strerror(err), ubdma_last_error());
	}
	if ((err = ubdma_pci_cfg_read(*pcip, 0, id, 2 * sizeof(*id))))
		return drv_err(err, "%s: reading the IDs: %s", bdf, strerror(err));
	return 0;
}

static inline void drv_pci_close(ubdma_ctx_t *ctx, int own, ubdma_pci_t *pci)
{
	if (pci)
		ubdma_pci_close(pci);
	if (own)
		ubdma_ctx_close(ctx);
}

#endif
