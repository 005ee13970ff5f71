/*
 * nvme_identify - open an NVMe controller with libubdma_nvme and print what Identify says.
 *
 * The controller must be bound to vfio-pci first (`ubdma bind BDF`, or by hand through
 * /sys/bus/pci/devices/BDF/driver_override).  Then, as root:
 *     nvme_identify 0000:00:02.0
 * prints the model, serial, firmware, the limits the driver will honour (MDTS, queues, SGLs) and
 * every active namespace with its size and block size.  Build: cc nvme_identify.c -lubdma_nvme -lubdma
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ubdma/nvme.h>

int main(int argc, char **argv)
{
	const char *bdf = argc > 1 ? argv[1] : getenv("UBDMA_VM_NVME");
	ubdma_nvme_t *ctrl;
	int rc;

	if (!bdf || !*bdf) {
		fprintf(stderr, "usage: %s BDF   (e.g. 0000:00:02.0, bound to vfio-pci)\n", argv[0]);
		return 2;
	}
	/* NULL options: the driver opens its own VFIO context, one I/O queue pair, polled */
	rc = ubdma_nvme_open(bdf, NULL, &ctrl);
	if (rc) {
		fprintf(stderr, "ubdma_nvme_open(%s): %s\n  %s\n", bdf, strerror(rc), ubdma_nvme_last_error());
		return 1;
	}
	const struct ubdma_nvme_info *in = ubdma_nvme_info(ctrl);
	printf("controller %s\n", bdf);
	printf("  model        %s\n  serial       %s\n  firmware     %s\n", in->mn, in->sn, in->fr);
	printf("  version      %u.%u.%u\n", in->vs >> 16, (in->vs >> 8) & 0xff, in->vs & 0xff);
	printf("  PCI vendor   %04x (subsystem %04x)\n", in->vid, in->ssvid);
	printf("  queues       %u I/O pair(s) granted, up to %u entries each, doorbell stride %u bytes\n",
	       in->io_queues, in->max_entries, 4u << in->dstrd);
	printf("  transfers    MDTS %u -> %zu KiB per command, SGLs %s, volatile write cache %s\n", in->mdts,
	       in->max_transfer / 1024, in->sgls & 3 ? "yes" : "no", in->vwc & 1 ? "yes" : "no");
	printf("  optional     Dataset Management %s, Write Zeroes %s\n", in->oncs & 4 ? "yes" : "no",
	       in->oncs & 8 ? "yes" : "no");
	printf("  namespaces   %u\n", in->nn);
	/* (a line starting "REPORT " is what the main job's summary shows) */
	printf("REPORT nvme_identify: %s '%s' fr %s, NVMe %u.%u, MDTS %zu KiB, %u I/O queue pair(s), SGLs %s\n",
	       bdf, in->mn, in->fr, in->vs >> 16, (in->vs >> 8) & 0xff, in->max_transfer / 1024, in->io_queues,
	       in->sgls & 3 ? "yes" : "no");
	uint32_t nsid = 0;
	while (ubdma_nvme_ns_next(ctrl, nsid, &nsid) == 0) {
		struct ubdma_nvme_ns_info ns;
		if (ubdma_nvme_ns(ctrl, nsid, &ns) == 0)
			printf("    nsid %-4u %llu blocks of %u bytes = %llu MiB%s\n", nsid, (unsigned long long)ns.nsze,
			       ns.lba_size, (unsigned long long)(ns.size >> 20), ns.ms ? " (with metadata)" : "");
	}
	/* shutdown notification, controller reset, device and context closed */
	rc = ubdma_nvme_close(ctrl);
	return rc ? 1 : 0;
}
