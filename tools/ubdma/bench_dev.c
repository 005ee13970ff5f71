/*
 * bench_dev.c - the guard around the device `ubdma bench` measures: it refuses a device in use
 * before anything is bound or written, moves the device to vfio-pci, and gives it back to the
 * driver it had - at the end, after a failing workload, on SIGINT / SIGTERM / SIGHUP (the
 * workloads stop at their next operation and the normal path gives it back), and from the
 * handler of a crash or of a second signal (async-signal-safe: precomputed paths, open/write/
 * close only).  The machine is left as it was found.
 *
 * In-use checks (NVMe on the kernel nvme driver): every namespace and partition is looked at
 * with libmount (mounted, swap), libblkid (a filesystem, partition table, LVM or MD signature),
 * sysfs holders (device mapper, MD), /proc/PID/fd (open by another process) and an exclusive
 * open (the kernel's own claim); a NIC on its kernel driver with getifaddrs(3) and the routing
 * tables of /proc/net.  Each refusal names everything it found.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <blkid/blkid.h>
#include <libmount/libmount.h>

#include "base/sysfs.h"

#include "bench.h"
#include "cli.h"

volatile sig_atomic_t bench_stop;

/* ---------------------------------------------------------------- finding */

static unsigned long read_hex(const char *bdf, const char *attr)
{
	char path[PATH_MAX], line[64];

	sysfs_pci_path(path, sizeof(path), bdf, attr);
	if (sysfs_read_line(path, line, sizeof(line)))
		return 0;
	return strtoul(line, NULL, 0);
}

/* Whether the sysfs entry @path resolves below PCI function @bdf. */
static int below(const char *path, const char *bdf)
{
	char real[PATH_MAX], pat[32];

	if (!realpath(path, real))
		return 0;
	sfmt(pat, sizeof(pat), "/%s/", bdf);
	return strstr(real, pat) != NULL;
}

/* The entries of class directory @cls whose device is below @bdf, into names. */
static int class_below(const char *cls, const char *bdf, char (*names)[32], int max)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(cls);
	int n = 0;

	while (d && (de = readdir(d)) && n < max) {
		if (de->d_name[0] == '.')
			continue;
		sfmt(path, sizeof(path), "%s/%s", cls, de->d_name);
		if (below(path, bdf))
			sfmt(names[n++], sizeof(names[0]), "%s", de->d_name);
	}
	if (d)
		closedir(d);
	return n;
}

/*
 * Namespaces under native multipath: the controller's nvme<S>c<C>n<N> is hidden and the disk
 * is the subsystem's nvme<S>n<N> (and its partitions); add those.
 */
static void multipath_heads(struct bench_dev *d)
{
	char path[PATH_MAX], ctrl[32][32];
	int nc = class_below("/sys/class/nvme", d->bdf, ctrl, 32);

	for (int i = 0; i < nc; i++) {
		struct dirent *de;
		DIR *dir;
		sfmt(path, sizeof(path), "/sys/class/nvme/%s", ctrl[i]);
		if (!(dir = opendir(path)))
			continue;
		while ((de = readdir(dir)) && d->nblk < 16) {
			unsigned s, c, n;
			char head[32], ent[PATH_MAX];
			if (sscanf(de->d_name, "nvme%uc%un%u", &s, &c, &n) != 3)
				continue;
			sfmt(head, sizeof(head), "nvme%un%u", s, n);
			sfmt(ent, sizeof(ent), "/sys/class/block/%s", head);
			if (!exists(ent))
				continue;
			sfmt(d->blk[d->nblk++], sizeof(d->blk[0]), "%s", head);
			/* its partitions */
			DIR *pd = opendir(ent);
			struct dirent *pe;
			while (pd && (pe = readdir(pd)) && d->nblk < 16)
				if (!strncmp(pe->d_name, head, strlen(head)) && pe->d_name[strlen(head)] == 'p')
					sfmt(d->blk[d->nblk++], sizeof(d->blk[0]), "%s", pe->d_name);
			if (pd)
				closedir(pd);
		}
		closedir(dir);
	}
}

/* The first entry of folder dir that is not "." or "..", or nothing (out unchanged). */
static void first_entry(const char *dir, char *out, size_t size)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	while (d && (de = readdir(d)))
		if (de->d_name[0] != '.') {
			sfmt(out, size, "%s", de->d_name);
			break;
		}
	if (d)
		closedir(d);
}

void dev_find(const char *arg, unsigned want, unsigned want_mask, const char *what, struct bench_dev *d)
{
	char path[PATH_MAX];

	memset(d, 0, sizeof(*d));
	device_bdf(arg, d->bdf, sizeof(d->bdf)); /* exit 2 for an unknown address */
	d->vendor = (unsigned)read_hex(d->bdf, "vendor");
	d->device = (unsigned)read_hex(d->bdf, "device");
	d->class_code = (unsigned)read_hex(d->bdf, "class");
	if ((d->class_code & want_mask) != want)
		usage_error("bench: %s is not %s: its PCI class is 0x%06x (%04x:%04x); nothing was touched", d->bdf, what,
			    d->class_code, d->vendor, d->device);
	sysfs_pci_link_name(d->bdf, "driver", d->orig_drv, sizeof(d->orig_drv));
	d->nblk = class_below("/sys/class/block", d->bdf, d->blk, 16);
	/* the hidden path devices of native multipath have no node: their head disk stands for them */
	for (int i = 0; i < d->nblk; i++) {
		char line[8] = "";
		sfmt(path, sizeof(path), "/sys/class/block/%s/hidden", d->blk[i]);
		if (!sysfs_read_line(path, line, sizeof(line)) && !strcmp(line, "1")) {
			memmove(d->blk + i, d->blk + i + 1, (size_t)(d->nblk - i - 1) * sizeof(d->blk[0]));
			d->nblk--;
			i--;
		}
	}
	multipath_heads(d);
	d->nchr = class_below("/sys/class/nvme", d->bdf, d->chr, 8);
	d->nchr += class_below("/sys/class/nvme-generic", d->bdf, d->chr + d->nchr, 16 - d->nchr);
	/* the first namespace's size, for --write-range before anything is bound */
	for (int i = 0; i < d->nblk; i++) {
		unsigned long sectors, lbs;
		sfmt(path, sizeof(path), "/sys/class/block/%s/partition", d->blk[i]);
		if (exists(path))
			continue;
		sfmt(path, sizeof(path), "/sys/class/block/%s/size", d->blk[i]);
		if (sysfs_read_ul(path, &sectors))
			continue;
		sfmt(path, sizeof(path), "/sys/class/block/%s/queue/logical_block_size", d->blk[i]);
		if (sysfs_read_ul(path, &lbs) || !lbs)
			continue;
		d->ns_lbas = (uint64_t)sectors * 512 / lbs;
		d->ns_lba_size = (unsigned)lbs;
		break;
	}
	sfmt(path, sizeof(path), "%s/%s/net", SYSFS_PCI_DEVICES, d->bdf);
	first_entry(path, d->netdev, sizeof(d->netdev));
	/* virtio-net on the kernel's virtio_pci: the netdev hangs below the virtio device */
	sfmt(path, sizeof(path), "%s/%s", SYSFS_PCI_DEVICES, d->bdf);
	DIR *pd = d->netdev[0] ? NULL : opendir(path);
	struct dirent *de;
	while (pd && (de = readdir(pd))) {
		char sub[PATH_MAX];
		if (strncmp(de->d_name, "virtio", 6))
			continue;
		sfmt(sub, sizeof(sub), "%s/%s/net", path, de->d_name);
		first_entry(sub, d->netdev, sizeof(d->netdev));
	}
	if (pd)
		closedir(pd);
}

/* ----------------------------------------------------------------- checks */

struct finding {
	char text[1024];
	size_t len;
	int n;
};

__attribute__((format(printf, 2, 3))) static void found(struct finding *f, const char *fmt, ...)
{
	va_list ap;

	if (f->len + 4 >= sizeof(f->text))
		return;
	if (f->n++)
		f->len += (size_t)snprintf(f->text + f->len, sizeof(f->text) - f->len, "; ");
	va_start(ap, fmt);
	int w = vsnprintf(f->text + f->len, sizeof(f->text) - f->len, fmt, ap);
	va_end(ap);
	if (w > 0)
		f->len = f->len + (size_t)w < sizeof(f->text) ? f->len + (size_t)w : sizeof(f->text) - 1;
}

static dev_t class_devno(const char *cls, const char *name)
{
	char path[PATH_MAX], line[32];
	unsigned ma, mi;

	sfmt(path, sizeof(path), "/sys/class/%s/%s/dev", cls, name);
	if (sysfs_read_line(path, line, sizeof(line)) || sscanf(line, "%u:%u", &ma, &mi) != 2)
		return 0;
	return makedev(ma, mi);
}

/* Processes other than this one that hold one of @devs (block or character) open. */
static void open_by_others(const dev_t *devs, const char *const *names, int n, struct finding *f)
{
	DIR *proc = opendir("/proc");
	struct dirent *pe;
	pid_t self = getpid();

	while (proc && (pe = readdir(proc))) {
		char path[PATH_MAX], comm[64] = "?";
		struct dirent *fe;
		DIR *fds;
		pid_t pid = (pid_t)atoi(pe->d_name);
		if (pid <= 0 || pid == self)
			continue;
		sfmt(path, sizeof(path), "/proc/%d/fd", (int)pid);
		if (!(fds = opendir(path)))
			continue;
		while ((fe = readdir(fds))) {
			struct stat st;
			char fp[PATH_MAX];
			if (fe->d_name[0] == '.')
				continue;
			sfmt(fp, sizeof(fp), "/proc/%d/fd/%s", (int)pid, fe->d_name);
			if (stat(fp, &st) || !(S_ISBLK(st.st_mode) || S_ISCHR(st.st_mode)))
				continue;
			for (int i = 0; i < n; i++)
				if (devs[i] && st.st_rdev == devs[i]) {
					sfmt(fp, sizeof(fp), "/proc/%d/comm", (int)pid);
					sysfs_read_line(fp, comm, sizeof(comm));
					found(f, "%s is open by process %d (%s)", names[i], (int)pid, comm);
				}
		}
		closedir(fds);
	}
	if (proc)
		closedir(proc);
}

/* What libblkid's low-level probe of @pr finds: a filesystem, RAID/LVM member or partition table. */
static void probe_found(blkid_probe pr, const char *what, struct finding *f)
{
	const char *type = NULL, *pttype = NULL, *usage = NULL;
	int rc;

	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_USAGE);
	blkid_probe_enable_partitions(pr, 1);
	rc = blkid_do_safeprobe(pr);
	if (rc == -2) {
		found(f, "%s holds several conflicting signatures (blkid)", what);
	} else if (rc == 0) {
		blkid_probe_lookup_value(pr, "TYPE", &type, NULL);
		blkid_probe_lookup_value(pr, "USAGE", &usage, NULL);
		blkid_probe_lookup_value(pr, "PTTYPE", &pttype, NULL);
		if (type)
			found(f, "%s holds a%s %s signature (%s)", what, strchr("aeiou", type[0]) ? "n" : "", type,
			      !usage                       ? "blkid"
			      : !strcmp(usage, "raid")     ? "an LVM or MD member"
			      : !strcmp(usage, "filesystem") ? "a filesystem"
							   : usage);
		if (pttype)
			found(f, "%s holds a %s partition table", what, pttype);
	} else if (rc < 0) {
		found(f, "%s: blkid could not read it: refusing rather than guessing", what);
	}
}

static void probe_signatures(const char *name, struct finding *f)
{
	char dev[64];
	blkid_probe pr;

	sfmt(dev, sizeof(dev), "/dev/%s", name);
	if (!(pr = blkid_new_probe_from_filename(dev))) {
		found(f, "%s cannot be probed for signatures (%s): refusing rather than guessing", dev, strerror(errno));
		return;
	}
	probe_found(pr, dev, f);
	blkid_free_probe(pr);
}

int dev_check_image(int fd, const char *what, const char *bdf)
{
	struct finding f = { .n = 0 };
	blkid_probe pr = blkid_new_probe();

	if (!pr || blkid_probe_set_device(pr, fd, 0, 0))
		found(&f, "%s cannot be probed for signatures: refusing rather than guessing", what);
	else
		probe_found(pr, what, &f);
	blkid_free_probe(pr);
	if (f.n)
		return fail("bench: refusing to write to %s: %s.  Nothing was written; wipe its signatures (wipefs) if "
			    "its content is not needed",
			    bdf, f.text);
	return 0;
}

int dev_check_nvme(const struct bench_dev *d)
{
	struct finding f = { .n = 0 };
	struct libmnt_table *mt = mnt_new_table_from_file("/proc/self/mountinfo");
	struct libmnt_table *sw = mnt_new_table();
	dev_t devs[40];
	const char *names[40];
	char dn[40][40];
	int n = 0;

	if (sw && mnt_table_parse_swaps(sw, NULL)) {
		mnt_unref_table(sw);
		sw = NULL;
	}
	for (int i = 0; i < d->nblk; i++) {
		char path[PATH_MAX], dev[64];
		dev_t no = class_devno("block", d->blk[i]);
		struct libmnt_fs *fs;

		sfmt(dev, sizeof(dev), "/dev/%s", d->blk[i]);
		if (mt && no && (fs = mnt_table_find_devno(mt, no, MNT_ITER_FORWARD)))
			found(&f, "%s is mounted on %s (%s)", dev, mnt_fs_get_target(fs), mnt_fs_get_fstype(fs));
		if (sw) {
			struct libmnt_iter *it = mnt_new_iter(MNT_ITER_FORWARD);
			struct stat st;
			while (it && mnt_table_next_fs(sw, it, &fs) == 0)
				if (!stat(mnt_fs_get_source(fs), &st) && S_ISBLK(st.st_mode) && st.st_rdev == no)
					found(&f, "%s is in use as swap", dev);
			mnt_free_iter(it);
		}
		sfmt(path, sizeof(path), "/sys/class/block/%s/holders", d->blk[i]);
		DIR *h = opendir(path);
		struct dirent *de;
		while (h && (de = readdir(h)))
			if (de->d_name[0] != '.')
				found(&f, "%s is held by %s (device mapper, MD or another stacked device)", dev, de->d_name);
		if (h)
			closedir(h);
		probe_signatures(d->blk[i], &f);
		int fd = open(dev, O_RDONLY | O_EXCL | O_CLOEXEC);
		if (fd < 0 && errno == EBUSY)
			found(&f, "%s is claimed by the kernel (an exclusive open failed: mounted, swap or stacked)", dev);
		if (fd >= 0)
			close(fd);
		if (n < 40) {
			devs[n] = no;
			sfmt(dn[n], sizeof(dn[n]), "%s", dev);
			names[n] = dn[n];
			n++;
		}
	}
	for (int i = 0; i < d->nchr && n < 40; i++) {
		dev_t no = class_devno("nvme", d->chr[i]);
		if (!no)
			no = class_devno("nvme-generic", d->chr[i]);
		devs[n] = no;
		sfmt(dn[n], sizeof(dn[n]), "/dev/%s", d->chr[i]);
		names[n] = dn[n];
		n++;
	}
	open_by_others(devs, names, n, &f);
	mnt_unref_table(mt);
	mnt_unref_table(sw);
	if (f.n)
		return fail("bench: refusing %s, it is in use: %s.  Nothing was bound or written; unmount it, free it, "
			    "or wipe its signatures (wipefs) if its content is not needed",
			    d->bdf, f.text);
	return 0;
}

int dev_check_vfio_free(const struct bench_dev *d)
{
	char grp[16], path[64], name[64];
	struct finding f = { .n = 0 };
	struct stat st;

	if (sysfs_pci_link_name(d->bdf, "iommu_group", grp, sizeof(grp)))
		return 0;
	sfmt(path, sizeof(path), "/dev/vfio/%s", grp);
	if (stat(path, &st))
		return 0;
	dev_t no = st.st_rdev;
	const char *names[1] = { name };
	sfmt(name, sizeof(name), "%s", path);
	open_by_others(&no, names, 1, &f);
	if (f.n)
		return fail("bench: refusing %s, its VFIO group is in use: %s.  Nothing was touched", d->bdf, f.text);
	return 0;
}

int dev_check_nic(const struct bench_dev *d, int force)
{
	struct finding f = { .n = 0 };
	struct ifaddrs *ifa = NULL;
	char line[512];
	FILE *rt;

	if (!d->netdev[0])
		return 0;
	if (!getifaddrs(&ifa)) {
		for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
			if (!i->ifa_addr || strcmp(i->ifa_name, d->netdev))
				continue;
			if (i->ifa_addr->sa_family == AF_INET) {
				const unsigned char *a = (const unsigned char *)&((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr;
				found(&f, "%s has the address %u.%u.%u.%u", d->netdev, a[0], a[1], a[2], a[3]);
			} else if (i->ifa_addr->sa_family == AF_INET6) {
				const unsigned char *a = ((struct sockaddr_in6 *)(void *)i->ifa_addr)->sin6_addr.s6_addr;
				/* a link-local address comes with every interface that is up; it carries no traffic of its own */
				if (!(a[0] == 0xfe && (a[1] & 0xc0) == 0x80))
					found(&f, "%s has an IPv6 address %02x%02x:%02x%02x:...", d->netdev, a[0], a[1], a[2], a[3]);
			}
		}
		freeifaddrs(ifa);
	}
	if ((rt = fopen("/proc/net/route", "re"))) {
		while (fgets(line, sizeof(line), rt)) {
			char ifn[64], dst[16], gw[16], mask[16];
			unsigned flags;
			if (sscanf(line, "%63s %15s %15s %x %*s %*s %*s %15s", ifn, dst, gw, &flags, mask) == 5 &&
			    !strcmp(ifn, d->netdev) && !strcmp(dst, "00000000") && !strcmp(mask, "00000000"))
				found(&f, "%s carries the default route", d->netdev);
		}
		fclose(rt);
	}
	if ((rt = fopen("/proc/net/ipv6_route", "re"))) {
		while (fgets(line, sizeof(line), rt)) {
			char dst[40], len[4], ifn[64];
			if (sscanf(line, "%39s %3s %*s %*s %*s %*s %*s %*s %*s %63s", dst, len, ifn) == 3 &&
			    !strcmp(ifn, d->netdev) && !strcmp(len, "00") && strspn(dst, "0") == strlen(dst))
				found(&f, "%s carries the IPv6 default route", d->netdev);
		}
		fclose(rt);
	}
	if (f.n && !force)
		return fail("bench: refusing %s, its interface is in use: %s.  Nothing was touched; take the address "
			    "and routes off it, or give --force to take the interface away anyway",
			    d->bdf, f.text);
	if (f.n)
		fprintf(stderr, "ubdma bench: --force: taking %s although %s\n", d->bdf, f.text);
	return 0;
}

/* --------------------------------------------------------- taking, giving */

/* What the handlers need, computed beforehand: they may only use async-signal-safe calls. */
static struct bench_dev *guarded;
static char p_override[PATH_MAX], p_unbind[PATH_MAX], p_bind[PATH_MAX], p_probe[] = "/sys/bus/pci/drivers_probe";
static char later_script[2048];

/*
 * From a signal handler or exit(): the device cannot be unbound from here, since vfio-pci's
 * unbind waits until the device's last user lets go, and this process holds it (descriptors,
 * and BAR mappings that closing descriptors does not end).  A detached shell waits until this
 * process is gone (a zombie has no mappings left) and gives the device back then.
 */
static void give_back_later(void)
{
	if (!guarded || !guarded->bound)
		return;
	guarded->bound = 0;
	pid_t c = fork();
	if (c == 0) {
		char *argv[] = { "sh", "-c", later_script, NULL };
		char *envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL };
		for (int fd = 3; fd < 4096; fd++)
			close(fd);
		setsid(); /* out of the terminal's process group: ^C again does not stop it */
		execve("/bin/sh", argv, envp);
		_exit(127);
	}
	static const char msg[] = "ubdma bench: interrupted: the device goes back to its driver as this process ends\n";
	ssize_t w = write(2, msg, sizeof(msg) - 1);
	(void)w;
}

static void on_stop(int sig)
{
	if (bench_stop) {
		/* a second signal: the workload did not stop in time */
		give_back_later();
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	bench_stop = sig;
}

static void on_crash(int sig)
{
	give_back_later();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void at_exit(void)
{
	/* an exit() the normal path did not foresee: ubdma may still hold the device */
	give_back_later();
}

void bench_guard(void)
{
	static const int stops[] = { SIGINT, SIGTERM, SIGHUP };
	static const int crashes[] = { SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL };
	static int once;
	struct sigaction sa;

	if (once++)
		return;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_stop; /* no SA_RESTART: waits return EINTR and look at bench_stop */
	for (size_t i = 0; i < sizeof(stops) / sizeof(stops[0]); i++)
		sigaction(stops[i], &sa, NULL);
	sa.sa_handler = on_crash;
	sa.sa_flags = SA_RESETHAND;
	for (size_t i = 0; i < sizeof(crashes) / sizeof(crashes[0]); i++)
		sigaction(crashes[i], &sa, NULL);
	atexit(at_exit);
}

int dev_take(struct bench_dev *d)
{
	char grp[16];

	bench_guard();
	guarded = d;
	sysfs_pci_path(p_override, sizeof(p_override), d->bdf, "driver_override");
	sfmt(p_unbind, sizeof(p_unbind), PCI_DRIVERS "/vfio-pci/unbind");
	p_bind[0] = '\0';
	if (d->orig_drv[0] && strcmp(d->orig_drv, "vfio-pci"))
		sfmt(p_bind, sizeof(p_bind), PCI_DRIVERS "/%s/bind", d->orig_drv);
	sfmt(later_script, sizeof(later_script),
	     "while grep -q . /proc/%d/maps 2>/dev/null; do sleep 0.1 2>/dev/null || sleep 1; done; "
	     "echo > %s; case $(readlink %s/%s/driver) in */vfio-pci) echo %s > %s;; esac; echo %s > %s",
	     (int)getpid(), p_override, SYSFS_PCI_DEVICES, d->bdf, d->bdf, p_unbind, d->bdf, p_bind[0] ? p_bind : p_probe);
	if (!strcmp(d->orig_drv, "vfio-pci"))
		return 0;
	if (bench_stop)
		return EX_FAIL;
	/* marked before the bind: a signal during it must still give the device back */
	d->bound = 1;
	if (bind_one(d->bdf, grp, sizeof(grp))) {
		d->bound = 0;
		return EX_FAIL;
	}
	char bad[32], baddrv[64];
	if (!group_viable(grp, bad, sizeof(bad), baddrv, sizeof(baddrv))) {
		dev_give_back(d);
		return fail("bench: IOMMU group %s of %s is not viable (%s is on %s); %s was given back to %s", grp, d->bdf,
			    bad, baddrv, d->bdf, d->orig_drv[0] ? d->orig_drv : "no driver");
	}
	if (!d->orig_drv[0])
		fprintf(stderr, "ubdma bench: %s had no driver; bound to vfio-pci for the run\n", d->bdf);
	return 0;
}

/* VFIO descriptors this process still holds: vfio-pci's unbind would wait for them forever. */
static void close_vfio_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int dfd = d ? dirfd(d) : -1;

	while (d && (de = readdir(d))) {
		char path[64], tgt[128];
		int fd = atoi(de->d_name);
		ssize_t n;
		if (de->d_name[0] == '.' || fd == dfd)
			continue;
		sfmt(path, sizeof(path), "/proc/self/fd/%d", fd);
		if ((n = readlink(path, tgt, sizeof(tgt) - 1)) <= 0)
			continue;
		tgt[n] = '\0';
		if (!strncmp(tgt, "/dev/vfio/", 10) || strstr(tgt, "[vfio-device]")) {
			fprintf(stderr, "ubdma bench: warning: descriptor %d (%s) still open; closed before unbinding\n", fd,
				tgt);
			close(fd);
		}
	}
	if (d)
		closedir(d);
}

int dev_give_back(struct bench_dev *d)
{
	char now[64] = "";
	int err = 0;

	if (!d->bound)
		return 0;
	close_vfio_fds();
	if ((err = sysfs_write(p_override, "\n")))
		fprintf(stderr, "ubdma bench: cannot clear %s: %s\n", p_override, strerror(err));
	sysfs_pci_link_name(d->bdf, "driver", now, sizeof(now));
	if (!strcmp(now, "vfio-pci") && (err = sysfs_write(p_unbind, d->bdf)))
		fprintf(stderr, "ubdma bench: cannot unbind %s from vfio-pci: %s\n", d->bdf, strerror(err));
	if (p_bind[0] && (err = sysfs_write(p_bind, d->bdf)))
		sysfs_write(p_probe, d->bdf);
	/* drivers may probe asynchronously (nvme): wait for the link, up to 10 s */
	for (int i = 0; i < 200; i++) {
		now[0] = '\0';
		sysfs_pci_link_name(d->bdf, "driver", now, sizeof(now));
		if (!strcmp(now, d->orig_drv))
			break;
		usleep(50000);
	}
	d->bound = 0;
	if (strcmp(now, d->orig_drv))
		return fail("bench: %s could not be given back to %s (it is on %s): `ubdma unbind %s` or a reboot puts it "
			    "back",
			    d->bdf, d->orig_drv[0] ? d->orig_drv : "no driver", now[0] ? now : "no driver", d->bdf);
	fprintf(stderr, "ubdma bench: %s given back to %s\n", d->bdf, d->orig_drv[0] ? d->orig_drv : "no driver");
	return 0;
}

/* ------------------------------------------------------------ processes */

int have_prog(const char *prog)
{
	const char *p = getenv("PATH");
	char path[PATH_MAX];

	if (strchr(prog, '/'))
		return access(prog, X_OK) == 0;
	while (p && *p) {
		size_t n = strcspn(p, ":");
		sfmt(path, sizeof(path), "%.*s/%s", (int)n, p, prog);
		if (n && access(path, X_OK) == 0)
			return 1;
		p += n + (p[n] == ':');
	}
	return 0;
}

/* Forks and runs argv with stdin from /dev/null and stdout/stderr into the files given (NULL:
 * /dev/null); the parent gets the child's pid or -1. */
static pid_t start_child(char *const argv[], const char *out, const char *err)
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	int fo = open(out ? out : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int fe = open(err ? err : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int fi = open("/dev/null", O_RDONLY);
	if (fo < 0 || fe < 0 || fi < 0)
		_exit(126);
	dup2(fi, 0);
	dup2(fo, 1);
	dup2(fe, 2);
	execvp(argv[0], argv);
	_exit(127);
}

int bench_spawn(char *const argv[], const char *out, const char *err)
{
	int st, killed = 0;
	pid_t pid = start_child(argv, out, err);

	if (pid < 0)
		return -1;
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
			return -1;
		if (bench_stop && !killed++)
			kill(pid, SIGTERM);
		progress_tick();
		usleep(20000);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int bench_spawn_until(char *const argv[], const char *out, const char *err, const char *ready, double secs)
{
	uint64_t started = 0, deadline = now_ns() + 120000000000ull, stop_at = 0;
	int st, sent = 0;
	pid_t pid = start_child(argv, out, err);

	if (pid < 0)
		return -1;
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
			return -1;
		uint64_t t = now_ns();
		if (!started) {
			/* the clock starts when the program says it runs (its start-up is not measured) */
			FILE *f = fopen(out, "re");
			char line[512];
			while (f && fgets(line, sizeof(line), f))
				if (strstr(line, ready))
					started = t;
			if (f)
				fclose(f);
			if (started)
				stop_at = started + (uint64_t)(secs * 1e9);
		}
		if (!sent && (bench_stop || (stop_at && t >= stop_at) || t >= deadline)) {
			kill(pid, SIGINT);
			sent = 1;
			deadline = t + 20000000000ull;
		} else if (sent == 1 && t >= deadline) {
			kill(pid, SIGKILL);
			sent = 2;
		}
		progress_tick();
		usleep(50000);
	}
	if (!started)
		return -2;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
