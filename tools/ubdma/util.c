/*
 * util.c - what every command of the tool needs besides JSON and sysfs: its two kinds of error
 * message (bad usage, exit 2; a failed operation, exit 1), sizes read and printed the way the
 * kernel's hugepage names spell them, and running a helper program (modprobe, gnuplot) quietly.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

/*
 * Paths and names built from sysfs: truncation yields a path that does not exist, which every
 * caller already handles, so it need not be reported.
 */
void sfmt(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

/* The one printer behind usage_error() and fail(): "ubdma: <message>\n" on stderr. */
static void complain(const char *fmt, va_list ap)
{
	fputs("ubdma: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	complain(fmt, ap);
	va_end(ap);
	exit(EX_USAGE);
}

int fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	complain(fmt, ap);
	va_end(ap);
	return EX_FAIL;
}

const char *human(uint64_t bytes, char *buf, size_t len)
{
	static const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int i = 0;

	while (bytes >= 1024 && !(bytes & 1023) && i < 4) {
		bytes >>= 10;
		i++;
	}
	sfmt(buf, len, "%" PRIu64 " %s", bytes, u[i]);
	return buf;
}

uint64_t parse_size(const char *s)
{
	char *end;
	unsigned long long v;
	int sh;

	if (!isdigit((unsigned char)*s))
		return 0;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return 0;
	switch (tolower((unsigned char)*end)) {
	case 'k': sh = 10; break;
	case 'm': sh = 20; break;
	case 'g': sh = 30; break;
	case 't': sh = 40; break;
	case '\0': return v;
	default: return 0;
	}
	end++;
	if (*end == 'i')
		end++;
	if (*end == 'b' || *end == 'B')
		end++;
	if (*end || v > (UINT64_MAX >> sh))
		return 0;
	return (uint64_t)v << sh;
}

int run(const char *prog, const char *arg)
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execlp(prog, prog, arg, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}
