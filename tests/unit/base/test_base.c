/*
 * test_base.c - lib/base on its own: PCI address parsing and printing, the sysfs small-file
 * helpers on files the test makes (so that every errno path is reached without a PCI device),
 * the _FOREACH_SAFE walks base/queue.h adds to <sys/queue.h>, the page constants against the
 * running kernel, and the last-error sentence through its public door.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <ubdma/ubdma.h>

#include "base/bdf.h"
#include "base/log.h"
#include "base/page.h"
#include "base/queue.h"
#include "base/sysfs.h"

static void test_bdf_parse(void **state)
{
	(void)state;
	struct bdf b;
	char s[BDF_STRLEN];

	assert_int_equal(bdf_parse("0000:00:02.0", &b), 0);
	assert_int_equal(b.dom, 0);
	assert_int_equal(b.bus, 0);
	assert_int_equal(b.dev, 2);
	assert_int_equal(b.fn, 0);
	assert_int_equal(bdf_parse("ABCD:Ef:1F.7", &b), 0);
	assert_int_equal(b.dom, 0xabcd);
	assert_int_equal(b.bus, 0xef);
	assert_int_equal(b.dev, 0x1f);
	assert_int_equal(b.fn, 7);
	assert_string_equal(bdf_format(&b, s, sizeof(s)), "abcd:ef:1f.7");
	/* the short form is domain 0 */
	assert_int_equal(bdf_canon("3a:00.1", s, sizeof(s)), 0);
	assert_string_equal(s, "0000:3a:00.1");
}

static void test_bdf_refused(void **state)
{
	(void)state;
	static const char *const bad[] = { "", "0:2.0", "00:2.0", "0000:00:02", "0000:00:02.", " 0000:00:02.0",
					   "0000:00:02.0 ", "00000:00:02.0", "0000-00:02.0", "0000:00:1g.0",
					   "0000:00:02:0", "0x00:02.0", "+000:00:02.0", "0000:00:02.00" };
	static const char *const range[] = { "0000:00:20.0", "00:ff.0", "0000:00:02.8", "00:00.f" };
	char s[BDF_STRLEN] = "untouched";
	struct bdf b = { 9, 9, 9, 9 };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (bdf_parse(bad[i], &b) != EINVAL)
			fail_msg("'%s' parsed", bad[i]);
	}
	for (size_t i = 0; i < sizeof(range) / sizeof(range[0]); i++) {
		if (bdf_parse(range[i], &b) != ERANGE)
			fail_msg("'%s' is not ERANGE", range[i]);
	}
	assert_int_equal(b.dom, 9); /* nothing written on failure */
	assert_int_equal(bdf_canon("0000:00:20.0", s, sizeof(s)), ERANGE);
	assert_string_equal(s, "untouched");
}

/* A scratch directory for the sysfs cases, removed by the teardown. */
static char dir[64];

static int dir_setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/ubdma-base-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int dir_teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *put(const char *name, const char *content)
{
	static char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_non_null(f = fopen(path, "we"));
	fputs(content, f);
	assert_int_equal(fclose(f), 0);
	return path;
}

static void test_sysfs_read(void **state)
{
	(void)state;
	char buf[16], missing[128];
	unsigned long ul = 7;
	int v = 7;

	assert_int_equal(sysfs_read_ul(put("n", "42\n"), &ul), 0);
	assert_int_equal(ul, 42);
	assert_int_equal(sysfs_read_int(put("neg", "-1\n"), &v), 0);
	assert_int_equal(v, -1);
	assert_int_equal(sysfs_read_ul(put("word", "vfio-pci\n"), &ul), EIO);
	assert_int_equal(sysfs_read_int(put("empty", ""), &v), EIO);
	assert_int_equal(sysfs_read_line(put("line", "0-1,3\nsecond\n"), buf, sizeof(buf)), 0);
	assert_string_equal(buf, "0-1,3");
	assert_int_equal(sysfs_read_line(put("empty", ""), buf, sizeof(buf)), 0);
	assert_string_equal(buf, "");
	assert_int_equal(sysfs_read_line(put("long", "0123456789abcdefXYZ\n"), buf, 8), 0);
	assert_string_equal(buf, "0123456"); /* truncated, terminated */
	snprintf(missing, sizeof(missing), "%s/missing", dir);
	strcpy(buf, "stale");
	assert_int_equal(sysfs_read_line(missing, buf, sizeof(buf)), ENOENT);
	assert_string_equal(buf, "");
	assert_int_equal(sysfs_read_ul(missing, &ul), ENOENT);
	assert_int_equal(sysfs_read_int(missing, &v), ENOENT);
	/* a directory opens but does not read */
	assert_int_equal(sysfs_read_line(dir, buf, sizeof(buf)), EISDIR);
}

static void test_sysfs_write(void **state)
{
	(void)state;
	char path[128];
	unsigned long ul = 0;

	snprintf(path, sizeof(path), "%s/nr", dir);
	assert_int_equal(sysfs_write(path, "128\n"), 0);
	assert_int_equal(sysfs_read_ul(path, &ul), 0);
	assert_int_equal(ul, 128);
	snprintf(path, sizeof(path), "%s/no/such/dir", dir);
	assert_int_equal(sysfs_write(path, "1"), ENOENT);
	/* a full device: the error comes with the flush, and is reported */
	if (!access("/dev/full", W_OK))
		assert_int_equal(sysfs_write("/dev/full", "1\n"), ENOSPC);
}

static void test_sysfs_link(void **state)
{
	(void)state;
	char link[128], buf[32], small[4];

	snprintf(link, sizeof(link), "%s/driver", dir);
	assert_int_equal(symlink("../../../../bus/pci/drivers/vfio-pci", link), 0);
	assert_int_equal(sysfs_link_name(link, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "vfio-pci");
	assert_int_equal(sysfs_link_name(link, small, sizeof(small)), ENAMETOOLONG);
	snprintf(link, sizeof(link), "%s/iommu_group", dir);
	assert_int_equal(symlink("12", link), 0); /* a target without a slash is its own name */
	assert_int_equal(sysfs_link_name(link, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "12");
	snprintf(link, sizeof(link), "%s/none", dir);
	assert_int_equal(sysfs_link_name(link, buf, sizeof(buf)), ENOENT);
	assert_string_equal(buf, "");
	assert_int_equal(sysfs_link_name(put("plain", "x"), buf, sizeof(buf)), EINVAL);
}

static void test_sysfs_pci(void **state)
{
	(void)state;
	char path[64], tiny[20], name[32];
	int v;

	assert_int_equal(sysfs_pci_path(path, sizeof(path), "0000:00:02.0", "numa_node"), 0);
	assert_string_equal(path, "/sys/bus/pci/devices/0000:00:02.0/numa_node");
	assert_int_equal(sysfs_pci_path(path, sizeof(path), "0000:00:02.0", NULL), 0);
	assert_string_equal(path, "/sys/bus/pci/devices/0000:00:02.0");
	assert_int_equal(sysfs_pci_path(tiny, sizeof(tiny), "0000:00:02.0", NULL), ENAMETOOLONG);
	/* a function no machine has: the reads say so and write nothing */
	strcpy(name, "stale");
	assert_int_equal(sysfs_pci_link_name("ffff:ff:1f.7", "driver", name, sizeof(name)), ENOENT);
	assert_string_equal(name, "");
	assert_int_equal(sysfs_pci_read_int("ffff:ff:1f.7", "numa_node", &v), ENOENT);
}

struct item {
	int v;
	LIST_ENTRY(item) l;
	TAILQ_ENTRY(item) t;
};

static void test_queue_safe(void **state)
{
	(void)state;
	struct item it[6], *p, *tmp;
	LIST_HEAD(, item) lh = LIST_HEAD_INITIALIZER(lh);
	TAILQ_HEAD(, item) th = TAILQ_HEAD_INITIALIZER(th);
	int seen = 0;

	for (int i = 0; i < 6; i++) {
		it[i].v = i;
		LIST_INSERT_HEAD(&lh, &it[i], l);
		TAILQ_INSERT_TAIL(&th, &it[i], t);
	}
	/* remove every element during the walk: each is visited once, the list ends empty */
	LIST_FOREACH_SAFE(p, &lh, l, tmp) {
		seen |= 1 << p->v;
		LIST_REMOVE(p, l);
	}
	assert_int_equal(seen, 0x3f);
	assert_true(LIST_EMPTY(&lh));
	/* remove the odd ones; the even ones stay, in order */
	TAILQ_FOREACH_SAFE(p, &th, t, tmp)
		if (p->v & 1)
			TAILQ_REMOVE(&th, p, t);
	int want = 0;
	TAILQ_FOREACH(p, &th, t) {
		assert_int_equal(p->v, want);
		want += 2;
	}
	assert_int_equal(want, 6);
	/* an empty list: the body never runs */
	LIST_FOREACH_SAFE(p, &lh, l, tmp)
		fail();
}

static void test_page(void **state)
{
	(void)state;
	assert_int_equal(PAGE_4K, 4096);
	assert_int_equal(PAGE_4K_MASK, 4095);
	assert_int_equal(1UL << PAGE_4K_SHIFT, PAGE_4K);
	assert_int_equal(PAGE_2M, 2UL << 20);
	assert_int_equal(PAGE_2M % PAGE_4K, 0);
	/* the library's structures assume the kernel's base page is 4 KiB (base/page.h) */
	assert_int_equal(sysconf(_SC_PAGESIZE), PAGE_4K);
}

/* The public IOVA type is the 64-bit integer every signature used before it had a name. */
_Static_assert(sizeof(ubdma_iova_t) == sizeof(uint64_t) && (ubdma_iova_t)-1 > 0, "ubdma_iova_t is uint64_t");

static void test_last_error(void **state)
{
	(void)state;
	assert_int_equal(uerr(EBUSY, "held by %s", "someone"), EBUSY);
	assert_string_equal(ubdma_last_error(), "test_last_error: held by someone");
	assert_int_equal(uerr_at("ubdma_thing", ENOMEM, "out of %d", 3), ENOMEM);
	assert_string_equal(ubdma_last_error(), "ubdma_thing: out of 3");
	assert_ptr_equal(uerr_last(), ubdma_last_error());
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bdf_parse),
		cmocka_unit_test(test_bdf_refused),
		cmocka_unit_test_setup_teardown(test_sysfs_read, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_sysfs_write, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_sysfs_link, dir_setup, dir_teardown),
		cmocka_unit_test(test_sysfs_pci),
		cmocka_unit_test(test_queue_safe),
		cmocka_unit_test(test_page),
		cmocka_unit_test(test_last_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
