/*
 * log.c - the debug trace switched by UBDMA_LOG and the per-thread last-error sentence
 * (ubdma_last_error() in lib/core hands it out).
 *
 * No lock of its own.  The trace goes to stderr with one fprintf() a line: stdio's lock on
 * stderr is glibc's to handle across fork(2) (it resets every stream's lock in the child).
 * The level is read once, by a constructor; last_error is per thread (a child starts with the
 * forking thread's).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

int ulog_level;

static _Thread_local char last_error[512];

__attribute__((constructor)) void ulog_init(void)
{
	static const char *names[] = { "off", "error", "warn", "info", "debug" };
	const char *v = getenv("UBDMA_LOG");

	if (!v)
		return;
	for (int i = 0; i < 5; i++)
		if (!strcmp(v, names[i]))
			ulog_level = i;
}

void ulog_emit(int level, const char *fn, const char *fmt, ...)
{
	static const char *tags[] = { "", "error", "warn", "info", "debug" };
	char buf[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "ubdma %s: %s: %s\n", tags[level], fn, buf);
}

int uerr_at(const char *fn, int err, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(last_error, sizeof(last_error), "%s: ", fn);

	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < sizeof(last_error))
		vsnprintf(last_error + n, sizeof(last_error) - (size_t)n, fmt, ap);
	va_end(ap);
	if (ulog_level >= UBDMA_LOG_ERROR)
		ulog_emit(UBDMA_LOG_ERROR, fn, "%s (%s)", last_error + n, strerror(err));
	return err;
}

const char *uerr_last(void)
{
	return last_error;
}
