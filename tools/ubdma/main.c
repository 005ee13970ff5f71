/*
 * main.c - the set-up tool a DPDK or SPDK user expects beside the library: the global options,
 * the command table and `ubdma help`.  A command is one file of this folder and one line of
 * the table below; cli.h says what they share.  Every command can answer in JSON (--json, given
 * before or after the command name) for scripts.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int opt_json;

static int cmd_help(int argc, char **argv);

static const struct ubdma_cmd commands[] = {
	{ "status", cmd_status,
	  "  status                      IOMMU and VFIO, PCI devices (driver, IOMMU group, viability,\n"
	  "                              NUMA node), hugepages per size and node, locked-memory limits,\n"
	  "                              the backend UBDMA_BACKEND_AUTO picks and why, the\n"
	  "                              registration cache's monitor\n" },
	{ "bind", cmd_bind, "  bind BDF...                 hand PCI functions to vfio-pci (driver_override)\n" },
	{ "unbind", cmd_unbind, "  unbind BDF...               give them back to their host driver\n" },
	{ "hugepages", cmd_hugepages,
	  "  hugepages [--show] [--reserve SIZE] [--pagesize SIZE] [--node N] [--clear]\n"
	  "            [--mount DIR | --unmount DIR]\n"
	  "                              show, reserve (total SIZE in pages of --pagesize, default\n"
	  "                              the default hugepage size) or clear hugepages; mount hugetlbfs\n" },
	{ "rcache", cmd_rcache,
	  "  rcache [--buffers N] [--size SIZE] [--iterations K] [--limit SIZE] [--adjacent] [--unmap]\n"
	  "         [--explicit] [--backend auto|iommufd|vfio|noiommu|phys|va] [--memory anon|hugetlb]\n"
	  "                              the registration cache's counters (hits, misses, merges,\n"
	  "                              evictions, invalidations, bytes pinned) on a workload of its own:\n"
	  "                              N buffers (default 8 of 64K), each got and put K times (100)\n" },
	{ "bench", cmd_bench,
	  "  bench nvme BDF [--time SECS] [--out DIR] [--csv] [--read-range LBA..LBA]\n"
	  "             [--write-range LBA..LBA] [--workloads NAME,...] [--ns NSID] [--no-peer]\n"
	  "             [--fio-engine PATH]\n"
	  "                              NVMe latency and IOPS, ubdma beside the kernel driver (fio)\n"
	  "                              and ubdma's fio engine; reads only unless --write-range;\n"
	  "                              refuses a namespace in use\n"
	  "  bench nic BDF [--time SECS] [--out DIR] [--csv] [--ping IPV4] [--force] [--no-peer]\n"
	  "            [--dpdk-arg ARG]...\n"
	  "                              e1000e or virtio-net transmit rate and latency beside\n"
	  "                              testpmd; refuses a NIC\n"
	  "                              with an address or a default route unless --force\n"
	  "  bench iommu [--dev BDF] [--time SECS] [--out DIR] [--csv]\n"
	  "                              map/unmap, translation, load and bounce costs of each backend\n"
	  "                              (the device goes back to its driver at the end, also on SIGINT)\n"
	  "  bench [all] [--out DIR] [--bench-dir DIR] [-- ARGS]\n"
	  "                              run every bench_* with --json; tables (.txt, .md) and plots\n" },
	{ "help", cmd_help, "  help                        this text\n" },
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void help(FILE *f)
{
	fputs("usage: ubdma [--json] COMMAND [ARGS]\n", f);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fputs(commands[i].help, f);
	fputs("Exit status: 0 done, 1 failed, 2 bad usage or input.  See ubdma(8).\n", f);
}

static int cmd_help(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	help(stdout);
	return 0;
}

/* "unknown command" names them all, in the table's order. */
static __attribute__((noreturn)) void unknown_command(const char *cmd)
{
	char list[256] = "";
	size_t len = 0;

	for (size_t i = 0; i < NCOMMANDS; i++)
		len += (size_t)snprintf(list + len, len < sizeof(list) ? sizeof(list) - len : 0, "%s%s",
					i ? ", " : "", commands[i].name);
	usage_error("unknown command '%s' (%s)", cmd, list);
}

int main(int argc, char **argv)
{
	int i = 1;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--json"))
			opt_json = 1;
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return help(stdout), 0;
		else
			usage_error("unknown option '%s' (see ubdma help)", argv[i]);
	}
	if (i == argc) {
		help(stderr);
		return EX_USAGE;
	}
	const char *cmd = argv[i];
	argc -= i;
	argv += i;
	/* a trailing --json is accepted too, as scripts tend to add it last */
	for (int k = 1; k < argc && strcmp(argv[k], "--"); k++)
		if (!strcmp(argv[k], "--json")) {
			opt_json = 1;
			memmove(argv + k, argv + k + 1, (size_t)(argc - k) * sizeof(*argv));
			argc--;
			break;
		}
	for (size_t k = 0; k < NCOMMANDS; k++)
		if (!strcmp(cmd, commands[k].name))
			return commands[k].run(argc, argv);
	unknown_command(cmd);
}
