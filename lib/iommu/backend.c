/*
 * backend.c - the table of backends, and choosing and opening one of them.
 *
 * The table is the only place that lists the backends.  Its order is AUTO's order of preference:
 * a backend with a real IOMMU first, then physical addresses, then IOVA = VA, which always opens.
 * AUTO skips a backend whose usable() says no, and steps down to the next one when an open fails
 * (VFIO present without type1v2, say); each skip and each failure goes into the reason, which
 * ubdma_ctx_backend_reason() and `ubdma status` show.
 *
 * Adding a backend: its file here (a const struct iommu_ops named iommu_NAME_ops) and its line in
 * the table of lib/iommu/meson.build, at the place AUTO should try it; the build hands the table to
 * this file as the X-macro UBDMA_IOMMU_BACKENDS.  Users name a backend through a value of enum
 * ubdma_backend (include/ubdma/core.h), which is public API, not part of the seam.  Nothing outside
 * lib/iommu changes: the layers above ask iommu_caps() what to do differently.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "iommu/iommu.h"

#include "iommu/iommu_table.h" /* generated from lib/iommu/meson.build */

#define X(name) extern const struct iommu_ops iommu_##name##_ops;
UBDMA_IOMMU_BACKENDS
#undef X

static const struct iommu_ops *const backends[] = {
#define X(name) &iommu_##name##_ops,
	UBDMA_IOMMU_BACKENDS
#undef X
};

#define NBACKENDS (sizeof(backends) / sizeof(backends[0]))

static const struct iommu_ops *find(enum ubdma_backend b)
{
	for (size_t i = 0; i < NBACKENDS; i++)
		if (backends[i]->backend == b)
			return backends[i];
	return NULL;
}

const char *ubdma_backend_name(enum ubdma_backend b)
{
	const struct iommu_ops *ops = find(b);

	return b == UBDMA_BACKEND_AUTO ? "auto" : ops ? ops->name : "unknown";
}

int iommu_open_ops(struct iommu *io, const struct iommu_ops *ops, const struct iommu_sink *sink)
{
	void *priv = NULL;
	int err;

	sink->windows(sink->arg, NULL, 0); /* nothing of an earlier try stays */
	if ((err = ops->open(sink, &priv)))
		return err;
	io->ops = ops;
	io->priv = priv;
	return 0;
}

/* Append "; clause" (or the clause alone when s is empty) to s, cut to its size. */
static void add_clause(char *s, size_t len, const char *clause)
{
	size_t n = strlen(s);

	if (*clause && n + 1 < len)
		snprintf(s + n, len - n, "%s%s", n ? "; " : "", clause);
}

/*
 * AUTO: the first backend in the table that is usable and opens.  notes collects, in order, why
 * each earlier one was passed over; the reason is "<name>: <notes>; <why this one>".
 */
static int open_auto(struct iommu *io, const struct iommu_sink *sink, char *reason, size_t reasonlen)
{
	char notes[384] = "", why[160], clause[320];
	int err = ENODEV;

	for (size_t i = 0; i < NBACKENDS; i++) {
		const struct iommu_ops *ops = backends[i];

		why[0] = '\0';
		if (!ops->usable(why, sizeof(why))) {
			add_clause(notes, sizeof(notes), why);
			continue;
		}
		if (!(err = iommu_open_ops(io, ops, sink))) {
			add_clause(notes, sizeof(notes), why);
			snprintf(reason, reasonlen, "%s: %s", ops->name, *notes ? notes : "always opens");
			return 0;
		}
		snprintf(clause, sizeof(clause), "%.100s%s%s failed to open (%.20s: %.160s)", why, *why ? ", but " : "",
			 ops->name, strerror(err), uerr_last());
		add_clause(notes, sizeof(notes), clause);
		ULOG_INFO("AUTO steps down: %s", clause);
	}
	snprintf(reason, reasonlen, "none: %s", notes);
	return uerr(err, "no backend opens: %s", notes);
}

int iommu_open(struct iommu *io, enum ubdma_backend want, const struct iommu_sink *sink, char *reason,
	       size_t reasonlen)
{
	const struct iommu_ops *ops;

	if (want == UBDMA_BACKEND_AUTO)
		return open_auto(io, sink, reason, reasonlen);
	if (!(ops = find(want)))
		return uerr(EINVAL, "unknown backend %d", (int)want);
	snprintf(reason, reasonlen, "%s: asked for", ops->name);
	return iommu_open_ops(io, ops, sink);
}

void iommu_close(struct iommu *io)
{
	if (io->ops)
		io->ops->close(io->priv);
	io->ops = NULL;
	io->priv = NULL;
}

void iommu_device_backends(char *names, size_t len)
{
	names[0] = '\0';
	for (size_t i = 0; i < NBACKENDS; i++) {
		size_t n = strlen(names);
		if (backends[i]->attach && n + 1 < len)
			snprintf(names + n, len - n, "%s%s", n ? ", " : "", backends[i]->name);
	}
}

int iommu_attach(const struct iommu *io, const struct iommu_dev *dev, void **hp)
{
	char names[64];

	if (!io->ops->attach) {
		iommu_device_backends(names, sizeof(names));
		return uerr(ENOTSUP, "the %s backend cannot attach devices; these can: %s", io->ops->name, names);
	}
	return io->ops->attach(io->priv, dev, hp);
}

int iommu_device_fd(const struct iommu *io, void *h, const char *bdf, int *fdp)
{
	return io->ops->device_fd(io->priv, h, bdf, fdp);
}

void iommu_detach(const struct iommu *io, void *h)
{
	io->ops->detach(io->priv, h);
}
