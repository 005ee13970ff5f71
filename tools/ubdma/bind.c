/*
 * bind.c - `ubdma bind BDF...`: hand PCI functions to vfio-pci through driver_override, and say
 * whether their IOMMU group is then viable (every device of it on a driver VFIO accepts).  Also
 * the frame bind and unbind share (each_device).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/sysfs.h"

#include "cli.h"

/*
 * Every address is checked before any device is touched, so that a typo in the last one leaves
 * the first ones where they were (exit 2 at the first bad one); then one() acts on each in turn
 * and reports it, into a JSON array with --json.  The exit status is the first failure's, but a
 * failure does not stop the others.
 */
int each_device(int argc, char **argv, const char *usage, int (*one)(const char *bdf, json_object *arr))
{
	char (*bdfs)[16];
	json_object *arr = NULL;
	int rc = 0;

	if (argc < 2)
		usage_error("%s", usage);
	if (!(bdfs = calloc((size_t)argc, sizeof(*bdfs))))
		return fail("out of memory");
	for (int i = 1; i < argc; i++)
		device_bdf(argv[i], bdfs[i], sizeof(bdfs[i]));
	if (opt_json)
		arr = json_object_new_array();
	for (int i = 1; i < argc; i++) {
		int r = one(bdfs[i], arr);
		rc = rc ? rc : r;
	}
	if (arr)
		json_print(arr);
	free(bdfs);
	return rc;
}

/* Hand bdf to vfio-pci: driver_override, unbind from the current driver, probe.  0 or exit status.
 * Also `ubdma bench`'s way to take a device (bench_dev.c). */
int bind_one(const char *bdf, char *grp, size_t glen)
{
	char path[PATH_MAX], drv[64], now[64];
	int err;

	sysfs_pci_link_name(bdf, "iommu_group", grp, glen); /* "" when none */
	if (!grp[0])
		return fail("%s has no IOMMU group: the IOMMU is off or absent, so VFIO cannot isolate the "
			    "device; boot with intel_iommu=on (Intel) or amd_iommu=on (AMD) and check that "
			    "the firmware enables VT-d / AMD-Vi",
			    bdf);
	if (!exists(PCI_DRIVERS "/vfio-pci"))
		run("modprobe", "vfio-pci");
	if (!exists(PCI_DRIVERS "/vfio-pci"))
		return fail("the vfio-pci driver is not available: `modprobe vfio-pci` failed (is the "
			    "module installed for this kernel?)");
	sysfs_pci_link_name(bdf, "driver", drv, sizeof(drv));
	if (!strcmp(drv, "vfio-pci"))
		return 0;
	sysfs_pci_path(path, sizeof(path), bdf, "driver_override");
	if ((err = sysfs_write(path, "vfio-pci")))
		return fail("cannot write %s: %s%s", path, strerror(err), geteuid() ? " (run as root)" : "");
	if (drv[0]) {
		sysfs_pci_path(path, sizeof(path), bdf, "driver/unbind");
		if ((err = sysfs_write(path, bdf))) {
			sysfs_pci_path(path, sizeof(path), bdf, "driver_override");
			sysfs_write(path, "\n");
			return fail("cannot unbind %s from %s: %s", bdf, drv, strerror(err));
		}
	}
	sysfs_write("/sys/bus/pci/drivers_probe", bdf);
	sysfs_pci_link_name(bdf, "driver", now, sizeof(now));
	if (strcmp(now, "vfio-pci")) {
		/* give the device back to where it was rather than leave it driverless */
		sysfs_pci_path(path, sizeof(path), bdf, "driver_override");
		sysfs_write(path, "\n");
		sysfs_write("/sys/bus/pci/drivers_probe", bdf);
		return fail("vfio-pci did not take %s (now on '%s'); see dmesg", bdf, now[0] ? now : "no driver");
	}
	return 0;
}

static int bind_report(const char *bdf, json_object *arr)
{
	char grp[16], bad[32], baddrv[64];
	int r = bind_one(bdf, grp, sizeof(grp)), bound = r == 0;
	int viable = bound && group_viable(grp, bad, sizeof(bad), baddrv, sizeof(baddrv));

	if (!r && !viable) {
		/* bound, but VFIO will refuse to open the group: say which device blocks it */
		fprintf(stderr,
			"ubdma: %s is on vfio-pci, but IOMMU group %s is not viable: %s is bound to %s; "
			"bind every device of the group (`ubdma bind %s`) before opening it\n",
			bdf, grp, bad, baddrv, bad);
		r = EX_FAIL;
	}
	if (arr) {
		json_object *o = json_object_new_object();
		json_object_array_add(arr, o);
		jadd_str(o, "bdf", bdf);
		jadd_bool(o, "bound", bound);
		jadd_str(o, "iommu_group", grp[0] ? grp : NULL);
		jadd_bool(o, "viable", viable);
	} else if (!r) {
		printf("%s: bound to vfio-pci (IOMMU group %s, viable)\n", bdf, grp);
	}
	return r;
}

int cmd_bind(int argc, char **argv)
{
	return each_device(argc, argv, "bind needs a PCI address: ubdma bind DDDD:BB:DD.F ...", bind_report);
}
