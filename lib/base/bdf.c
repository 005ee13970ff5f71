/*
 * bdf.c - parsing and printing PCI function addresses (bdf.h).  Strict on purpose: "0:2.0" or
 * " 00:02.0" are refused rather than guessed at, because the answer names a sysfs directory and a
 * device the caller is about to hand to VFIO.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/bdf.h"

/* Exactly n hexadecimal digits at *p into *v; advances *p.  1 on success. */
static int hexn(const char **p, int n, unsigned *v)
{
	*v = 0;
	for (int i = 0; i < n; i++, (*p)++) {
		int c = (unsigned char)**p;
		if (!isxdigit(c))
			return 0;
		*v = *v * 16 + (unsigned)(isdigit(c) ? c - '0' : tolower(c) - 'a' + 10);
	}
	return 1;
}

int bdf_parse(const char *s, struct bdf *b)
{
	const char *p = s;
	size_t n = strlen(s);
	struct bdf r = { 0 };

	if (n != 12 && n != 7) /* "dddd:bb:dd.f", "bb:dd.f" */
		return EINVAL;
	if (n == 12 && (!hexn(&p, 4, &r.dom) || *p++ != ':'))
		return EINVAL;
	if (!hexn(&p, 2, &r.bus) || *p++ != ':' || !hexn(&p, 2, &r.dev) || *p++ != '.' || !hexn(&p, 1, &r.fn) ||
	    *p)
		return EINVAL;
	if (r.dev > 0x1f || r.fn > 7)
		return ERANGE;
	*b = r;
	return 0;
}

char *bdf_format(const struct bdf *b, char *buf, size_t len)
{
	snprintf(buf, len, "%04x:%02x:%02x.%x", b->dom, b->bus, b->dev, b->fn);
	return buf;
}

int bdf_canon(const char *s, char *out, size_t outlen)
{
	struct bdf b;
	int err = bdf_parse(s, &b);

	if (!err)
		bdf_format(&b, out, outlen);
	return err;
}
