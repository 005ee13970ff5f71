/*
 * sysfs.c - what the tool reads and writes in sysfs and procfs itself: PCI addresses (BDF) and
 * their canonical form, a device's driver and IOMMU group, group viability, the device list,
 * attribute files, and "key: N kB" lines of /proc files.  The library owns the rest (hugepage
 * counts, NUMA nodes, backends).  Parsing a BDF and reading or writing one sysfs file are the
 * library's own helpers (lib/base: bdf.h, sysfs.h, linked from the static libubdma_base), so
 * that the tool accepts exactly the addresses the library does; what is here is what only the
 * tool needs: whole directories, group viability and the exit-2 sentences.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/bdf.h"
#include "base/sysfs.h"

#include "cli.h"

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

void device_bdf(const char *s, char *out, size_t len)
{
	char path[PATH_MAX];
	struct bdf b;
	int err = bdf_parse(s, &b);

	if (err == ERANGE)
		usage_error("'%s' is not a PCI address: device is 00-1f and function 0-7", s);
	if (err)
		usage_error("'%s' is not a PCI address: give DDDD:BB:DD.F or BB:DD.F in hexadecimal, as "
			    "lspci -D prints it",
			    s);
	bdf_format(&b, out, len);
	if (sysfs_pci_path(path, sizeof(path), out, NULL) || !exists(path))
		usage_error("no PCI device %s on this machine (%s does not exist); `ubdma status` lists "
			    "the devices",
			    out, path);
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
		sysfs_pci_link_name(de->d_name, "driver", drv, sizeof(drv)); /* "" when none */
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
	DIR *d = opendir(SYSFS_PCI_DEVICES);
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
