/*
 * sysfs.h - reading and writing the small files of sysfs (and procfs): one value a file, one
 * line, symbolic links that name a driver or a group.  Every function returns 0 or a positive
 * errno and leaves messages to its caller, who knows what the file means.
 *
 * They go through stdio, as the library's sysfs reads always have: the fault-injection build
 * wraps open(2) for the VFIO files and must not see these.
 */
#ifndef UBDMA_BASE_SYSFS_H
#define UBDMA_BASE_SYSFS_H

#include <stddef.h>

#define SYSFS_PCI_DEVICES "/sys/bus/pci/devices"

/* The first line of path, without its newline, into buf ("" when the file is empty). */
int sysfs_read_line(const char *path, char *buf, size_t len);

/* The number path holds (decimal, leading blanks allowed): EIO when it holds none. */
int sysfs_read_ul(const char *path, unsigned long *vp);
int sysfs_read_int(const char *path, int *vp);

/* Write s to path as one value; a value the kernel refuses is reported (the flush's errno). */
int sysfs_write(const char *path, const char *s);

/* The last component of the target of the symbolic link path ("vfio-pci", "12"): ENOENT when
 * there is no link, ENAMETOOLONG when it does not fit buf. */
int sysfs_link_name(const char *path, char *buf, size_t len);

/* SYSFS_PCI_DEVICES/<bdf>[/<attr>] into buf (attr may be NULL); ENAMETOOLONG when it does not fit. */
int sysfs_pci_path(char *buf, size_t len, const char *bdf, const char *attr);

/* The same reads on an attribute of PCI function bdf (canonical, bdf.h): "driver", "numa_node". */
int sysfs_pci_link_name(const char *bdf, const char *attr, char *buf, size_t len);
int sysfs_pci_read_int(const char *bdf, const char *attr, int *vp);

#endif
