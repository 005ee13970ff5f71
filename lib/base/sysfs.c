/*
 * sysfs.c - the small-file reads and writes of sysfs.h.  A value file of sysfs is read in one go
 * by the kernel's show() and written by one store(): a line buffer and one fputs() a value are
 * all either direction needs.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/sysfs.h"

int sysfs_read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	int err = 0;

	if (len)
		buf[0] = '\0';
	if (!f)
		return errno;
	if (len > 1) {
		if (fgets(buf, len > INT_MAX ? INT_MAX : (int)len, f))
			buf[strcspn(buf, "\n")] = '\0';
		else if (ferror(f))
			err = errno ? errno : EIO;
		else
			buf[0] = '\0';
	}
	fclose(f);
	if (err)
		buf[0] = '\0';
	return err;
}

int sysfs_read_ul(const char *path, unsigned long *vp)
{
	FILE *f = fopen(path, "re");
	int ok;

	if (!f)
		return errno;
	ok = fscanf(f, "%lu", vp) == 1;
	fclose(f);
	return ok ? 0 : EIO;
}

int sysfs_read_int(const char *path, int *vp)
{
	FILE *f = fopen(path, "re");
	int ok;

	if (!f)
		return errno;
	ok = fscanf(f, "%d", vp) == 1;
	fclose(f);
	return ok ? 0 : EIO;
}

int sysfs_write(const char *path, const char *s)
{
	FILE *f = fopen(path, "we");
	int err = 0;

	if (!f)
		return errno;
	if (fputs(s, f) == EOF)
		err = errno;
	/* sysfs reports a refused value when the buffer reaches it: at the flush in fclose() */
	if (fclose(f) && !err)
		err = errno;
	return err;
}

int sysfs_link_name(const char *path, char *buf, size_t len)
{
	char t[PATH_MAX];
	ssize_t n = readlink(path, t, sizeof(t) - 1);

	if (len)
		buf[0] = '\0';
	if (n < 0)
		return errno;
	t[n] = '\0';
	const char *b = strrchr(t, '/');
	int w = snprintf(buf, len, "%s", b ? b + 1 : t);
	return w < 0 || (size_t)w >= len ? ENAMETOOLONG : 0;
}

int sysfs_pci_path(char *buf, size_t len, const char *bdf, const char *attr)
{
	int w = snprintf(buf, len, SYSFS_PCI_DEVICES "/%s%s%s", bdf, attr ? "/" : "", attr ? attr : "");

	return w < 0 || (size_t)w >= len ? ENAMETOOLONG : 0;
}

int sysfs_pci_link_name(const char *bdf, const char *attr, char *buf, size_t len)
{
	char path[PATH_MAX];
	int err = sysfs_pci_path(path, sizeof(path), bdf, attr);

	if (err && len)
		buf[0] = '\0';
	return err ? err : sysfs_link_name(path, buf, len);
}

int sysfs_pci_read_int(const char *bdf, const char *attr, int *vp)
{
	char path[PATH_MAX];
	int err = sysfs_pci_path(path, sizeof(path), bdf, attr);

	return err ? err : sysfs_read_int(path, vp);
}
