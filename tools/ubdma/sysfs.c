/*
 * sysfs.c - what the tool reads and writes in sysfs and procfs itself: PCI addresses (BDF) and
 * their canonical form, a device's driver and IOMMU group, group viability, the device list,
 * attribute files, and "key: N kB" lines of /proc files.  The library owns the rest (hugepage
 * counts, NUMA nodes, backends).  Every BDF and sysfs helper of the tool is here, so that they
 * can move to the library's lib/base in one place.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");

	buf[0] = '\0';
	if (!f)
		return -1;
	if (!fgets(buf, (int)len, f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;
	int err;

	if (fd < 0)
		return errno;
	n = write(fd, s, strlen(s));
	err = n < 0 ? errno : 0;
	close(fd);
	return err;
}

/* The last component of a symlink's target ("vfio-pci", "12"), or "" when there is no link. */
static const char *link_base(const char *path, char *buf, size_t len)
{
	char t[PATH_MAX];
	ssize_t n = readlink(path, t, sizeof(t) - 1);

	buf[0] = '\0';
	if (n > 0) {
		t[n] = '\0';
		const char *b = strrchr(t, '/');
		sfmt(buf, len, "%s", b ? b + 1 : t);
	}
	return buf;
}

int exists(const char *path)
{
	return access(path, F_OK) == 0;
}

int count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int n = 0;

	while (d && (de = readdir(d)))
		n += de->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

long proc_kb(const char *path, const char *key)
{
	FILE *f = fopen(path, "re");
	char line[128];
	long kb = -1;
	size_t kl = strlen(key);

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && line[kl] == ':') {
			kb = strtol(line + kl + 1, NULL, 10);
			break;
		}
	if (f)
		fclose(f);
	return kb;
}

/* Whether @s has the shape @pat, where 'x' stands for one hex digit. */
static int shape(const char *s, const char *pat)
{
	for (; *pat; s++, pat++)
		if (*pat == 'x' ? !isxdigit((unsigned char)*s) : *s != *pat)
			return 0;
	return *s == '\0';
}

void canon_bdf(const char *s, char *out, size_t len)
{
	unsigned dom = 0, bus, dev, fn;

	if (shape(s, "xxxx:xx:xx.x"))
		sscanf(s, "%x:%x:%x.%x", &dom, &bus, &dev, &fn);
	else if (shape(s, "xx:xx.x"))
		sscanf(s, "%x:%x.%x", &bus, &dev, &fn);
	else
		usage_error("'%s' is not a PCI address: give DDDD:BB:DD.F or BB:DD.F in hexadecimal, as "
			    "lspci -D prints it",
			    s);
	if (dev > 0x1f || fn > 7)
		usage_error("'%s' is not a PCI address: device is 00-1f and function 0-7", s);
	sfmt(out, len, "%04x:%02x:%02x.%x", dom, bus, dev, fn);
}

void device_bdf(const char *s, char *out, size_t len)
{
	char path[PATH_MAX];

	canon_bdf(s, out, len);
	sfmt(path, sizeof(path), PCI_DEVICES "/%s", out);
	if (!exists(path))
		usage_error("no PCI device %s on this machine (%s does not exist); `ubdma status` lists "
			    "the devices",
			    out, path);
}

const char *dev_driver(const char *bdf, char *buf, size_t len)
{
	char path[PATH_MAX];

	sfmt(path, sizeof(path), PCI_DEVICES "/%s/driver", bdf);
	return link_base(path, buf, len);
}

const char *dev_group(const char *bdf, char *buf, size_t len)
{
	char path[PATH_MAX];

	sfmt(path, sizeof(path), PCI_DEVICES "/%s/iommu_group", bdf);
	return link_base(path, buf, len);
}

/* Drivers that leave a group viable for VFIO (the kernel's own list: vfio_dev_driver_allowed). */
static int driver_viable(const char *drv)
{
	return !*drv || !strcmp(drv, "vfio-pci") || !strcmp(drv, "pci-stub") || !strcmp(drv, "pcieport");
}

int group_viable(const char *grp, char *bad, size_t blen, char *baddrv, size_t dlen)
{
	char path[PATH_MAX];
	DIR *d;
	struct dirent *de;
	int ok = 1;

	sfmt(path, sizeof(path), "/sys/kernel/iommu_groups/%s/devices", grp);
	if (!(d = opendir(path)))
		return 0;
	while (ok && (de = readdir(d))) {
		char drv[64];
		if (de->d_name[0] == '.')
			continue;
		dev_driver(de->d_name, drv, sizeof(drv));
		if (!driver_viable(drv)) {
			ok = 0;
			sfmt(bad, blen, "%s", de->d_name);
			sfmt(baddrv, dlen, "%s", drv);
		}
	}
	closedir(d);
	return ok;
}

char **pci_list(int *np)
{
	DIR *d = opendir(PCI_DEVICES);
	struct dirent *de;
	char **v = NULL;
	int n = 0;

	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char **nv = realloc(v, (size_t)(n + 1) * sizeof(*v));
		if (!nv)
			break;
		v = nv;
		if ((v[n] = strdup(de->d_name)))
			n++;
	}
	if (d)
		closedir(d);
	if (v)
		qsort(v, (size_t)n, sizeof(*v), cmp_str);
	*np = n;
	return v;
}

void free_list(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}
