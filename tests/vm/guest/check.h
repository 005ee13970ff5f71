/*
 * check.h - the TAP line every guest test prints per check: "ok - ..." or "not ok - ...";
 * failures counts the "not ok" ones for the program's exit status.
 */
#ifndef UBDMA_GUEST_CHECK_H
#define UBDMA_GUEST_CHECK_H

#include <stdarg.h>
#include <stdio.h>

static int failures;

static __attribute__((format(printf, 2, 3), unused)) void check(int ok, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("%s - ", ok ? "ok" : "not ok");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	/* out before whatever comes next: a fork would copy a pending line, a kill would lose it */
	fflush(stdout);
	failures += !ok;
}

#endif
