/*
 * cli.h - what the files of the ubdma tool share: the command table, the --json switch and the
 * JSON helpers over json-c (json.c), messages, sizes and child processes (util.c), and the sysfs
 * and procfs readers (sysfs.c).  Each subcommand lives in a file of its own and is reached only
 * through its entry in the table of main.c.
 *
 * Exit status of every command: 0 done; EX_FAIL the operation failed (the message says why and
 * what to change); EX_USAGE bad usage or bad input (unknown PCI address, a size that is not a
 * hugepage multiple).
 */
#ifndef UBDMA_TOOL_CLI_H
#define UBDMA_TOOL_CLI_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define EX_FAIL 1
#define EX_USAGE 2

#define PCI_DRIVERS "/sys/bus/pci/drivers"

/* One subcommand: argv[0] is its name; it returns the exit status. */
struct ubdma_cmd {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help; /* its lines of `ubdma help`, already indented */
};

/* --json was given: commands print one JSON document on stdout instead of text. */
extern int opt_json;

/* The subcommands (one file each). */
int cmd_status(int argc, char **argv);
int cmd_bind(int argc, char **argv);
int cmd_unbind(int argc, char **argv);
int cmd_hugepages(int argc, char **argv);
int cmd_rcache(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* bind.c: the frame bind and unbind share (check every address, then act on each in turn). */
int each_device(int argc, char **argv, const char *usage, int (*one)(const char *bdf, json_object *arr));
/* bind.c: hand one device to vfio-pci (its IOMMU group into grp); 0 or EX_FAIL after a message. */
int bind_one(const char *bdf, char *grp, size_t glen);

/* hugepages.c: the hugepage table of `status` and `hugepages`, or its "hugepages" member. */
void hugepages_show(json_object *root);

/* ---------------------------------------------------------------- util.c */

/* Bad usage or bad input: "ubdma: <sentence>" on stderr, exit EX_USAGE. */
__attribute__((format(printf, 1, 2), noreturn)) void usage_error(const char *fmt, ...);
/* The operation failed: "ubdma: <sentence>" on stderr; returns EX_FAIL. */
__attribute__((format(printf, 1, 2))) int fail(const char *fmt, ...);
/* snprintf() whose truncation needs no report (see util.c). */
__attribute__((format(printf, 3, 4))) void sfmt(char *buf, size_t len, const char *fmt, ...);
/* "2 MiB", "4096 B": the largest unit that divides bytes. */
const char *human(uint64_t bytes, char *buf, size_t len);
/* "1G", "512M", "2048k", "4096": bytes; 0 on a malformed size. */
uint64_t parse_size(const char *s);
/* Run prog arg with stdout and stderr on /dev/null; its exit status, -1 when it could not run. */
int run(const char *prog, const char *arg);
/* qsort() comparison of two char * */
int cmp_str(const void *a, const void *b);

/* ---------------------------------------------------------------- json.c */

/* Print @v on stdout as one compact line (the tool's JSON form), then drop the reference. */
void json_print(json_object *v);
/* Add members to an object; a NULL string becomes null. */
void jadd_str(json_object *o, const char *key, const char *s);
void jadd_int(json_object *o, const char *key, long long v);
void jadd_u64(json_object *o, const char *key, uint64_t v);
void jadd_bool(json_object *o, const char *key, int v);
void jadd_null(json_object *o, const char *key);
/* A new member object or array of @o, to fill. */
json_object *jadd_obj(json_object *o, const char *key);
json_object *jadd_arr(json_object *o, const char *key);
/* A member's string ("" when absent or not a string) and whether it is a number. */
const char *jget_str(json_object *o, const char *key);
int jget_num(json_object *o, const char *key, double *v);

/* --------------------------------------------------------------- sysfs.c */

/* One file of sysfs is read or written with lib/base's sysfs.h (sysfs_read_line(),
 * sysfs_write(), sysfs_pci_link_name() for a device's "driver" or "iommu_group"), a PCI address
 * parsed with its bdf.h. */
int exists(const char *path);
/* Entries of a directory, "." ones left out; 0 when it cannot be read. */
int count_dir(const char *path);
/* The value of the first "key: N kB" line of a /proc file (status, meminfo); -1 without one. */
long proc_kb(const char *path, const char *key);
/* Canonical "dddd:bb:dd.f" of a PCI address in long or short form (bdf.h), of a device
 * that exists; exit 2 with a sentence otherwise. */
void device_bdf(const char *s, char *out, size_t len);
/* Whether IOMMU group @grp is viable for VFIO; the first device that is not goes to bad/baddrv. */
int group_viable(const char *grp, char *bad, size_t blen, char *baddrv, size_t dlen);
/* The PCI addresses of the machine, sorted; free with free_list(). */
char **pci_list(int *np);
void free_list(char **v, int n);

#endif /* UBDMA_TOOL_CLI_H */
