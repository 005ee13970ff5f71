/*
 * unbind.c - `ubdma unbind BDF...`: take PCI functions from vfio-pci (clear driver_override,
 * unbind) and let the kernel probe their host driver again.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/sysfs.h"

#include "cli.h"

static int unbind_one(const char *bdf, char *now, size_t len)
{
	char path[PATH_MAX], drv[64];
	int err;

	sysfs_pci_link_name(bdf, "driver", drv, sizeof(drv)); /* "" when none */
	sysfs_pci_path(path, sizeof(path), bdf, "driver_override");
	if ((err = sysfs_write(path, "\n")))
		return fail("cannot write %s: %s%s", path, strerror(err), geteuid() ? " (run as root)" : "");
	if (!strcmp(drv, "vfio-pci")) {
		sfmt(path, sizeof(path), PCI_DRIVERS "/vfio-pci/unbind");
		if ((err = sysfs_write(path, bdf)))
			return fail("cannot unbind %s from vfio-pci: %s (is it open by a program?)", bdf,
				    strerror(err));
		/* let the kernel find the host driver again */
		sysfs_write("/sys/bus/pci/drivers_probe", bdf);
	}
	sysfs_pci_link_name(bdf, "driver", now, len);
	return 0;
}

static int unbind_report(const char *bdf, json_object *arr)
{
	char now[64];
	int r = unbind_one(bdf, now, sizeof(now));

	if (arr) {
		json_object *o = json_object_new_object();
		json_object_array_add(arr, o);
		jadd_str(o, "bdf", bdf);
		jadd_bool(o, "ok", r == 0);
		jadd_str(o, "driver", !r && now[0] ? now : NULL);
	} else if (!r) {
		printf("%s: %s%s\n", bdf, now[0] ? "now on " : "no driver took it back", now);
	}
	return r;
}

int cmd_unbind(int argc, char **argv)
{
	return each_device(argc, argv, "unbind needs a PCI address: ubdma unbind DDDD:BB:DD.F ...",
			   unbind_report);
}
