/*
 * test_aer - the error interrupt (issue 18): a device reports an uncorrectable error through its
 * AER capability, the guest kernel's AER driver calls vfio-pci's error_detected(), which signals
 * the VFIO error eventfd (VFIO_PCI_ERR_IRQ_INDEX) the driver asked for at open.
 *
 * run-guest.sh -R puts a second NVMe (QEMU id hpnvme) and a second e1000e (hpnic) behind
 * pcie-root-ports (hprp1, hprp2), the only devices of the test bed with a root port above them.
 * QEMU 7.2's nvme has no AER capability (printed below), and the guest kernel ignores an error
 * message whose source has none (aer_get_device_error_info() returns 0 for it); the e1000e has
 * one, but an error injected at it never reached the guest (QEMU answered "OK", the device's
 * TOTAL_ERR_NONFATAL stayed 0 for 20 s; its error-reporting enables are presumably off under
 * vfio-pci).  So each error is injected at the device's root port: when this program prints
 * "UBDMA-VM-QMP: aer hprp1 POISON_TLP", tests/vm/qmp-helper.py has QEMU run
 * pcie_aer_inject_error hprp1 POISON_TLP (HMP, through QMP's human-monitor-command).  A Poisoned TLP is uncorrectable and non-fatal by the
 * default severity (PCIe Base 3.0, 7.10.5), so the kernel neither resets the link nor takes the
 * device away; its recovery (pcie_do_recovery()) calls error_detected() of every driver below
 * the port, vfio-pci's among them, which signals the error eventfd.  Passes when:
 *   - NVMe: the kernel counted the error (the port's aer_dev_nonfatal TOTAL_ERR_NONFATAL went up)
 *     and the driver, at its periodic check, reset the controller because of it (one reset
 *     counted, nothing timed out), and the queue pair then writes and reads back 64 KiB; nothing
 *     stays loaded;
 *   - e1000e: the kernel counted it and the driver reported it (its last-error sentence names the
 *     error interrupt) while bursts go on succeeding, and a frame is still sent.
 * A driver that does not read the error eventfd fails both (no reset; no sentence).  Runs before
 * the remove programs of the same boot (they unplug these devices).  Exit: 0 pass, 1 fail, 77 skip
 * (no -R, or a kernel without AER: the own kernel of the iommufd boot has no CONFIG_PCIEAER).
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <ubdma/ubdma.h>
#include <ubdma/e1000e.h>
#include <ubdma/nvme.h>

#include "backend.h"
#include "check.h"
#include "hotplug.h"

#define BLEN (64u * 1024)
#define LIMIT_MS 20000

/* The root port above @bdf (its parent in sysfs) into @out; 0, or -1. */
static int port_of(const char *bdf, char *out, size_t n)
{
	char path[96], real[PATH_MAX];

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", bdf);
	if (!realpath(path, real))
		return -1;
	char *slash = strrchr(real, '/');
	if (!slash)
		return -1;
	*slash = 0;
	slash = strrchr(real, '/');
	if (!slash || strlen(slash + 1) != 12)
		return -1;
	snprintf(out, n, "%s", slash + 1);
	return 0;
}

/* 1 when @bdf's extended configuration space lists an AER capability (ID 0001h), else 0. */
static int has_aer(const char *bdf)
{
	char path[96];
	uint8_t cfg[4096];

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/config", bdf);
	FILE *f = fopen(path, "rb");
	size_t got = f ? fread(cfg, 1, sizeof(cfg), f) : 0;
	if (f)
		fclose(f);
	for (unsigned off = 0x100, k = 0; off >= 0x100 && off + 4 <= got && k < 64; k++) {
		uint32_t h = (uint32_t)cfg[off] | (uint32_t)cfg[off + 1] << 8 | (uint32_t)cfg[off + 2] << 16 |
			     (uint32_t)cfg[off + 3] << 24;
		if ((h & 0xffff) == 0x0001)
			return 1;
		off = h >> 20;
	}
	return 0;
}

/* TOTAL_ERR_NONFATAL of the kernel's AER statistics for @bdf; -1 when the kernel keeps none. */
static long aer_nonfatal(const char *bdf)
{
	char path[128], line[128];
	long v = -1;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/aer_dev_nonfatal", bdf);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "TOTAL_ERR_NONFATAL %ld", &v) == 1)
			break;
	fclose(f);
	return v;
}

struct tally {
	int ok, err, last_err;
};

static void cb(void *arg, const struct ubdma_nvme_cpl *cpl)
{
	struct tally *t = arg;

	if (!cpl->error)
		t->ok++;
	else {
		t->err++;
		t->last_err = cpl->error;
	}
}

/* One command through @qp, polled to its completion; 0 when it succeeded. */
static int io(ubdma_nvme_qpair_t *qp, uint32_t nsid, int write, void *buf, uint32_t nlb)
{
	struct tally t = { 0 };
	int rc = write ? ubdma_nvme_write(qp, nsid, buf, 0, nlb, cb, &t) : ubdma_nvme_read(qp, nsid, buf, 0, nlb, cb, &t);

	for (uint64_t end = hp_now_ms() + 10000; !rc && t.ok + t.err == 0 && hp_now_ms() < end;)
		rc = ubdma_nvme_poll(qp, 0, NULL);
	return rc ? rc : t.ok == 1 ? 0 : t.err ? t.last_err : ETIMEDOUT;
}

/* Writes a pattern of @seed and reads it back: 0 when the bytes match. */
static int roundtrip(ubdma_nvme_qpair_t *qp, uint32_t nsid, uint32_t lbs, uint8_t *w, uint8_t *r, int seed)
{
	for (unsigned i = 0; i < BLEN; i++)
		w[i] = (uint8_t)(i * 31 + (unsigned)seed);
	memset(r, 0, BLEN);
	int rc = io(qp, nsid, 1, w, BLEN / lbs);
	rc = rc ? rc : io(qp, nsid, 0, r, BLEN / lbs);
	return rc ? rc : memcmp(w, r, BLEN) ? EIO : 0;
}

static void nvme_aer(ubdma_ctx_t *ctx, const char *bdf, const char *port)
{
	struct ubdma_nvme_opts o = { .size = sizeof(o), .ctx = ctx, .queue_entries = 64 };
	ubdma_nvme_t *ctrl;
	ubdma_nvme_qpair_t *qp;
	struct ubdma_nvme_ns_info ns;
	struct ubdma_nvme_recovery st;
	uint32_t nsid;
	uint8_t *w = NULL, *r = NULL;
	int rc = ubdma_nvme_open(bdf, &o, &ctrl);

	check(rc == 0, "nvme: open %s: %s", bdf, rc ? ubdma_nvme_last_error() : "ok");
	if (rc)
		return;
	rc = ubdma_nvme_ns_next(ctrl, 0, &nsid);
	rc = rc ? rc : ubdma_nvme_ns(ctrl, nsid, &ns);
	rc = rc ? rc : ubdma_nvme_qpair_create(ctrl, 0, &qp);
	rc = rc ? rc : posix_memalign((void **)&w, 4096, BLEN);
	rc = rc ? rc : posix_memalign((void **)&r, 4096, BLEN);
	check(rc == 0, "nvme: namespace, queue pair, buffers: %s", rc ? ubdma_nvme_last_error() : "ok");
	if (rc)
		goto out;
	rc = roundtrip(qp, nsid, ns.lba_size, w, r, 1);
	check(rc == 0, "nvme: 64 KiB written and read back before the error (%s)", strerror(rc));

	long before = aer_nonfatal(port);
	uint64_t asked = hp_ask("aer", "hprp1 POISON_TLP");
	/* an idle pair's polls: the periodic check reads the error eventfd and resets */
	while (hp_now_ms() - asked < LIMIT_MS) {
		if ((rc = ubdma_nvme_poll(qp, 0, NULL)))
			break;
		if (!ubdma_nvme_recovery(ctrl, &st) && st.resets >= 1)
			break;
	}
	uint64_t took = hp_now_ms() - asked;
	long after = aer_nonfatal(port);
	check(after > before, "nvme: the kernel's AER driver counted the non-fatal error at %s (TOTAL_ERR_NONFATAL %ld "
	      "-> %ld)", port, before, after);
	rc = rc ? rc : ubdma_nvme_recovery(ctrl, &st);
	check(rc == 0 && st.resets == 1 && st.timeouts == 0,
	      "nvme: the error interrupt led to one controller reset, %llu ms after the injection was asked "
	      "(%llu resets, %llu timeouts; %s)", (unsigned long long)took, (unsigned long long)st.resets,
	      (unsigned long long)st.timeouts, rc ? ubdma_nvme_last_error() : "ok");
	rc = roundtrip(qp, nsid, ns.lba_size, w, r, 2);
	check(rc == 0, "nvme: after the reset the pair writes and reads back 64 KiB (%s)", strerror(rc));
	rc = ubdma_nvme_recovery(ctrl, &st);
	check(rc == 0 && st.maps_loaded == 0 && st.resets == 1, "nvme: nothing stays loaded (%u), still one reset",
	      st.maps_loaded);
	ubdma_nvme_qpair_destroy(qp);
out:
	rc = ubdma_nvme_close(ctrl);
	check(rc == 0, "nvme: close: %s", rc ? strerror(rc) : "0");
	free(w);
	free(r);
}

static void e1000e_aer(ubdma_ctx_t *ctx, const char *bdf, const char *port)
{
	struct ubdma_e1000e_opts o = { .size = sizeof(o), .ctx = ctx };
	struct ubdma_e1000e_pkt *rx[32];
	ubdma_e1000e_t *nic;
	unsigned n;
	int rc = ubdma_e1000e_open(bdf, &o, &nic);

	check(rc == 0, "e1000e: open %s: %s", bdf, rc ? ubdma_e1000e_last_error() : "ok");
	if (rc)
		return;
	long before = aer_nonfatal(port);
	uint64_t asked = hp_ask("aer", "hprp2 POISON_TLP");
	unsigned long bursts = 0;
	int reported = 0;
	rc = 0;
	while (!reported && hp_now_ms() - asked < LIMIT_MS) {
		if ((rc = ubdma_e1000e_rx_burst(nic, rx, 32, &n)))
			break;
		if (n)
			ubdma_e1000e_pkt_free(nic, rx, n);
		bursts++;
		reported = strstr(ubdma_e1000e_last_error(), "error interrupt") != NULL;
	}
	long after = aer_nonfatal(port);
	check(after > before, "e1000e: the kernel's AER driver counted the non-fatal error at %s (TOTAL_ERR_NONFATAL %ld "
	      "-> %ld)", port, before, after);
	check(rc == 0 && reported, "e1000e: the driver reported the error interrupt after %lu bursts, %llu ms after the "
	      "injection was asked, and bursts went on (%s): \"%s\"", bursts, (unsigned long long)(hp_now_ms() - asked),
	      strerror(rc), ubdma_e1000e_last_error());
	uint8_t frame[60] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	struct iovec f = { .iov_base = frame, .iov_len = sizeof(frame) };
	unsigned pend = 1;
	rc = ubdma_e1000e_send(nic, &f, 1, &n);
	rc = rc ? rc : ubdma_e1000e_tx_flush(nic, 1000, &pend);
	check(rc == 0 && n == 1 && pend == 0, "e1000e: a frame is still sent after the error (%s)", strerror(rc));
	rc = ubdma_e1000e_close(nic);
	check(rc == 0, "e1000e: close: %s", rc ? strerror(rc) : "0");
}

int main(void)
{
	const char *nvme = getenv("UBDMA_VM_HP_NVME"), *nic = getenv("UBDMA_VM_HP_NIC");
	ubdma_ctx_t *ctx;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!nvme || !nic || !hp_in_sysfs(nvme) || !hp_in_sysfs(nic)) {
		printf("# SKIP: no devices behind root ports (UBDMA_VM_HP_NVME / _NIC; run-guest.sh -R makes them)\n");
		return 77;
	}
	char pn[32], pc[32];
	if (port_of(nvme, pn, sizeof(pn)) || port_of(nic, pc, sizeof(pc))) {
		printf("# no root port above %s / %s\n", nvme, nic);
		return 1;
	}
	printf("# AER capability: %s %s, %s %s, port %s %s, port %s %s\n", nvme, has_aer(nvme) ? "yes" : "no", nic,
	       has_aer(nic) ? "yes" : "no", pn, has_aer(pn) ? "yes" : "no", pc, has_aer(pc) ? "yes" : "no");
	if (aer_nonfatal(pn) < 0 || aer_nonfatal(pc) < 0) {
		printf("# SKIP: the kernel keeps no AER statistics for the root ports %s / %s (no CONFIG_PCIEAER, "
		       "or AER not granted to the OS): the error interrupt cannot come\n", pn, pc);
		return 77;
	}
	int rc = ubdma_ctx_open(guest_backend(), &ctx);
	if (rc) {
		printf("# context: %s\n", ubdma_last_error());
		return 1;
	}
	nvme_aer(ctx, nvme, pn);
	e1000e_aer(ctx, nic, pc);
	ubdma_ctx_close(ctx);
	return failures ? 1 : 0;
}
