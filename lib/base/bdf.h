/*
 * bdf.h - PCI function addresses as lspci -D prints them and sysfs names them: domain (PCI
 * segment), bus, device and function, "dddd:bb:dd.f" in lower-case hexadecimal.  One parser for
 * the library (pci, hugepage) and the tool, so that all three accept the same spellings.
 */
#ifndef UBDMA_BASE_BDF_H
#define UBDMA_BASE_BDF_H

#include <stddef.h>

#define BDF_STRLEN 13 /* "dddd:bb:dd.f" and its NUL */

struct bdf {
	unsigned dom, bus, dev, fn;
};

/*
 * Parse "DDDD:BB:DD.F" or the short "BB:DD.F" (domain 0): exactly that many hexadecimal digits
 * of either case, nothing before or after.  Return: 0; EINVAL when s has another shape; ERANGE
 * when the shape is right but the device is above 1f or the function above 7.
 */
int bdf_parse(const char *s, struct bdf *b);

/* The canonical form of b into buf (BDF_STRLEN bytes suffice; shorter truncates); returns buf. */
char *bdf_format(const struct bdf *b, char *buf, size_t len);

/* bdf_parse() then bdf_format(): the canonical spelling of s into out.  0, EINVAL or ERANGE. */
int bdf_canon(const char *s, char *out, size_t outlen);

#endif
