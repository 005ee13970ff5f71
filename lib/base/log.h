/*
 * log.h - the library's switchable debug trace (UBDMA_LOG=error|warn|info|debug, default off) and
 * the per-thread sentence behind ubdma_last_error().  A trace that is off costs one load and a
 * branch: the arguments are not evaluated.
 *
 * Nothing here is public: the names are not ubdma_* so that the version script keeps them out of
 * libubdma.so, and a program that links libubdma_base beside the shared library gets a copy of
 * its own instead of interposing the library's.
 */
#ifndef UBDMA_BASE_LOG_H
#define UBDMA_BASE_LOG_H

enum ubdma_log_level { UBDMA_LOG_OFF, UBDMA_LOG_ERROR, UBDMA_LOG_WARN, UBDMA_LOG_INFO, UBDMA_LOG_DEBUG };

extern int ulog_level;

void ulog_init(void);
void ulog_emit(int level, const char *fn, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define ULOG(level, ...)                                                                   \
	do {                                                                               \
		if (__builtin_expect(ulog_level >= (level), 0))                            \
			ulog_emit((level), __func__, __VA_ARGS__);                         \
	} while (0)
#define ULOG_DEBUG(...) ULOG(UBDMA_LOG_DEBUG, __VA_ARGS__)
#define ULOG_INFO(...) ULOG(UBDMA_LOG_INFO, __VA_ARGS__)
#define ULOG_WARN(...) ULOG(UBDMA_LOG_WARN, __VA_ARGS__)

/*
 * Record why a public call fails (for ubdma_last_error()), trace it at the error level under the
 * name fn, and return err so that `return uerr(EINVAL, "...")` reads naturally.  uerr_at() is for
 * a helper that reports on behalf of the public function that called it.
 */
int uerr_at(const char *fn, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define uerr(err, ...) uerr_at(__func__, (err), __VA_ARGS__)

/* The calling thread's last sentence ("" before the first failure). */
const char *uerr_last(void);

#endif
