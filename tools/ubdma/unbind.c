/*
 * unbind.c - `ubdma unbind BDF...`: take PCI functions from vfio-pci (clear driver_override,
 * unbind) and let the kernel probe their host driver again.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static int unbind_one(const char *bdf, char *now, size_t len)
{
	char path[PATH_MAX], drv[64];
	int err;

	dev_driver(bdf, drv, sizeof(drv));
	sfmt(path, sizeof(path), PCI_DEVICES "/%s/driver_override", bdf);
	if ((err = write_str(path, "\n")))
		return fail("cannot write %s: %s%s", path, strerror(err), geteuid() ? " (run as root)" : "");
	if (!strcmp(drv, "vfio-pci")) {
		sfmt(path, sizeof(path), PCI_DRIVERS "/vfio-pci/unbind");
		if ((err = write_str(path, bdf)))
			return fail("cannot unbind %s from vfio-pci: %s (is it open by a program?)", bdf,
				    strerror(err));
		/* let the kernel find the host driver again */
		write_str("/sys/bus/pci/drivers_probe", bdf);
	}
	dev_driver(bdf, now, len);
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
