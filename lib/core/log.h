/*
 * log.h - switchable debug trace (UBDMA_LOG=error|warn|info|debug, default off) and the
 * per-thread message behind ubdma_last_error().  A trace that is off costs one load and a
 * branch: the arguments are not evaluated.
 */
#ifndef UBDMA_LOG_H
#define UBDMA_LOG_H

enum ubdma_log_level { UBDMA_LOG_OFF, UBDMA_LOG_ERROR, UBDMA_LOG_WARN, UBDMA_LOG_INFO, UBDMA_LOG_DEBUG };

extern int ubdma_log_level;

void ubdma_log_init(void);
void ubdma_log_emit(int level, const char *fn, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define ULOG(level, ...)                                                                   \
	do {                                                                               \
		if (__builtin_expect(ubdma_log_level >= (level), 0))                       \
			ubdma_log_emit((level), __func__, __VA_ARGS__);                    \
	} while (0)
#define ULOG_DEBUG(...) ULOG(UBDMA_LOG_DEBUG, __VA_ARGS__)
#define ULOG_INFO(...) ULOG(UBDMA_LOG_INFO, __VA_ARGS__)
#define ULOG_WARN(...) ULOG(UBDMA_LOG_WARN, __VA_ARGS__)

/*
 * Record why a public call fails (for ubdma_last_error()), trace it at the error level with the
 * function name, and return err so that `return uerr(EINVAL, "...")` reads naturally.
 */
int ubdma_seterr_(const char *fn, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define uerr(err, ...) ubdma_seterr_(__func__, (err), __VA_ARGS__)

#endif
