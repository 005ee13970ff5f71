/*
 * bench_report.c - what `ubdma bench` makes of its rows: the table on stdout (or --json, an
 * array of row objects with name, impl, unit, median, p99 and the rates, as every benchmark of
 * bench/ prints; or --csv), and in the output folder the same three forms plus one HTML page a
 * person can open: the table, the peers skipped and why, the breakdown of an I/O's time and a
 * latency histogram per workload drawn by gnuplot as PNG and SVG (every implementation of the
 * workload on one plot).  JSON through json-c.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

const double bench_pcts[NPCT] = { 0.50, 0.90, 0.99, 0.999, 0.9999 };
const char *const bench_pct_names[NPCT] = { "p50", "p90", "p99", "p99.9", "p99.99" };
/* JSON and CSV keys: "median" as bench/ spells it, dots left out */
static const char *const pct_keys[NPCT] = { "median", "p90", "p99", "p99_9", "p99_99" };

struct bench_row *report_row(struct bench_report *r, const char *name, const char *impl)
{
	if (r->nrows == r->cap) {
		int cap = r->cap ? 2 * r->cap : 16;
		struct bench_row *nr = realloc(r->rows, (size_t)cap * sizeof(*nr));
		if (!nr)
			return NULL;
		r->rows = nr;
		r->cap = cap;
	}
	struct bench_row *row = &r->rows[r->nrows++];
	memset(row, 0, sizeof(*row));
	sfmt(row->name, sizeof(row->name), "%s", name);
	sfmt(row->impl, sizeof(row->impl), "%s", impl);
	sfmt(row->unit, sizeof(row->unit), "ns");
	return row;
}

void row_rates(struct bench_row *row, double secs, double ops, double bytes, double cpu_s)
{
	row->secs = secs;
	row->ops = ops;
	row->bytes = bytes;
	row->cpu_s = cpu_s;
	if (secs > 0) {
		row->iops = ops / secs;
		row->mib_s = bytes / secs / (1024.0 * 1024.0);
	}
	if (ops > 0)
		row->cpu_ns_per_op = cpu_s * 1e9 / ops;
	if (cpu_s > 0)
		row->iops_per_cpu = ops / cpu_s;
}

void row_part(struct bench_row *row, const char *side, const char *name, const struct lhist *h)
{
	if (!h->n || row->nparts == (int)(sizeof(row->parts) / sizeof(row->parts[0])))
		return;
	struct bench_part *p = &row->parts[row->nparts++];
	sfmt(p->name, sizeof(p->name), "%s", name);
	sfmt(p->side, sizeof(p->side), "%s", side);
	p->median = lh_pct(h, 0.5);
	p->p99 = lh_pct(h, 0.99);
}

void report_note(struct bench_report *r, const char *fmt, ...)
{
	va_list ap;

	if (r->nnotes == (int)(sizeof(r->notes) / sizeof(r->notes[0])))
		return;
	va_start(ap, fmt);
	vsnprintf(r->notes[r->nnotes++], sizeof(r->notes[0]), fmt, ap);
	va_end(ap);
}

void report_free(struct bench_report *r)
{
	free(r->rows);
	r->rows = NULL;
	r->nrows = r->cap = 0;
}

/* ------------------------------------------------------------------ progress */

static int progress_tty = -1, progress_open;
static int last_i, last_n; /* the line progress_tick() rewrites */
static char last_name[48], last_impl[48];
static uint64_t progress_end, progress_next; /* the workload's end, the next rewrite */
int progress_quiet;

static void progress_line(int i, int n, const char *name, const char *impl, double left_s)
{
	if (progress_tty) {
		fprintf(stderr, "\r\033[K[%d/%d] %s (%s): %.0f s left", i, n, name, impl, left_s);
		progress_open = 1;
	} else {
		/* a log gets one line a workload, not one a second */
		fprintf(stderr, "ubdma bench: [%d/%d] %s (%s), %.1f s\n", i, n, name, impl, left_s);
	}
	fflush(stderr);
}

void progress(int i, int n, const char *name, const char *impl, double left_s)
{
	if (progress_quiet)
		return;
	if (progress_tty < 0)
		progress_tty = isatty(2);
	progress_end = now_ns() + (uint64_t)(left_s * 1e9);
	progress_next = now_ns() + 1000000000u;
	last_i = i;
	last_n = n;
	sfmt(last_name, sizeof(last_name), "%s", name);
	sfmt(last_impl, sizeof(last_impl), "%s", impl);
	progress_line(i, n, name, impl, left_s);
}

void progress_tick(void)
{
	/* a log keeps its one line a workload; a terminal's line is rewritten once a second */
	if (progress_tty != 1 || progress_quiet)
		return;
	uint64_t t = now_ns();
	if (t < progress_next)
		return;
	progress_next = t + 1000000000u;
	progress_line(last_i, last_n, last_name, last_impl, t < progress_end ? (double)(progress_end - t) / 1e9 : 0);
}

void progress_done(void)
{
	if (progress_open)
		fputs("\r\033[K", stderr);
	progress_open = 0;
}

/* ------------------------------------------------------------------- formats */

static const char *row_status(const struct bench_row *w, char *buf, size_t len)
{
	if (w->skipped[0])
		sfmt(buf, len, "skipped: %s", w->skipped);
	else if (w->error[0])
		sfmt(buf, len, "failed: %s", w->error);
	else
		sfmt(buf, len, "ok");
	return buf;
}

/* A figure to one decimal, as the tool's other JSON (json.c). */
static json_object *jnum(double v)
{
	char buf[48];

	sfmt(buf, sizeof(buf), "%.1f", v);
	return json_object_new_double_s(v, buf);
}

static json_object *row_json(const struct bench_row *w)
{
	json_object *o = json_object_new_object();

	jadd_str(o, "name", w->name);
	jadd_str(o, "impl", w->impl);
	jadd_str(o, "target", w->target);
	jadd_str(o, "unit", w->unit);
	if (w->skipped[0])
		jadd_str(o, "skipped", w->skipped);
	if (w->error[0])
		jadd_str(o, "error", w->error);
	if (w->have_lat) {
		for (int k = 0; k < NPCT; k++)
			json_object_object_add(o, pct_keys[k], jnum(w->pct[k]));
		json_object_object_add(o, "max", jnum(w->max));
		json_object_object_add(o, "mean", jnum(w->mean));
	}
	if (w->ops > 0) {
		json_object_object_add(o, "ops", jnum(w->ops));
		json_object_object_add(o, "secs", jnum(w->secs));
		json_object_object_add(o, w->pps > 0 ? "pps" : "iops", jnum(w->pps > 0 ? w->pps : w->iops));
		json_object_object_add(o, "mib_s", jnum(w->mib_s));
		json_object_object_add(o, "cpu_ns_per_op", jnum(w->cpu_ns_per_op));
		json_object_object_add(o, "iops_per_cpu", jnum(w->iops_per_cpu));
	}
	if (w->nhist) {
		json_object *h = jadd_arr(o, "hist");
		for (int k = 0; k < w->nhist; k++) {
			json_object *p = json_object_new_array();
			json_object_array_add(p, jnum(w->hist_v[k]));
			json_object_array_add(p, jnum(w->hist_c[k]));
			json_object_array_add(h, p);
		}
	}
	if (w->nparts) {
		json_object *b = jadd_arr(o, "breakdown");
		for (int k = 0; k < w->nparts; k++) {
			json_object *p = json_object_new_object();
			jadd_str(p, "part", w->parts[k].name);
			jadd_str(p, "side", w->parts[k].side);
			json_object_object_add(p, "median", jnum(w->parts[k].median));
			json_object_object_add(p, "p99", jnum(w->parts[k].p99));
			json_object_array_add(b, p);
		}
	}
	return o;
}

static void csv_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

static void write_csv(FILE *f, const struct bench_report *r)
{
	char st[256];

	fputs("name,impl,target,unit,iops,mib_s,pps,cpu_ns_per_op,iops_per_cpu,median,p90,p99,p99_9,p99_99,max,mean,"
	      "status\n",
	      f);
	for (int i = 0; i < r->nrows; i++) {
		const struct bench_row *w = &r->rows[i];
		fprintf(f, "%s,%s,", w->name, w->impl);
		csv_str(f, w->target);
		fprintf(f, ",%s,", w->unit);
		if (w->ops > 0)
			fprintf(f, "%.1f,%.2f,%.1f,%.1f,%.1f,", w->pps > 0 ? 0 : w->iops, w->mib_s, w->pps, w->cpu_ns_per_op,
				w->iops_per_cpu);
		else
			fputs(",,,,,", f);
		if (w->have_lat) {
			for (int k = 0; k < NPCT; k++)
				fprintf(f, "%.1f,", w->pct[k]);
			fprintf(f, "%.1f,%.1f,", w->max, w->mean);
		} else {
			fputs(",,,,,,,", f);
		}
		csv_str(f, row_status(w, st, sizeof(st)));
		fputc('\n', f);
	}
}

/* Latency as a person reads it: ns below 10 us, then us, then ms. */
static const char *lat(double ns, char *buf, size_t len)
{
	if (ns < 10000)
		sfmt(buf, len, "%.0fns", ns);
	else if (ns < 10e6)
		sfmt(buf, len, "%.1fus", ns / 1e3);
	else
		sfmt(buf, len, "%.1fms", ns / 1e6);
	return buf;
}

static void write_text(FILE *f, const struct bench_report *r)
{
	char b[NPCT + 1][24];

	fprintf(f, "ubdma bench %s: %s\n", r->kind, r->device);
	fprintf(f, "%-22s %-22s %11s %9s %9s %8s %8s %8s %8s %8s %8s\n", "workload", "impl", "IOPS/pps", "MiB/s",
		"CPU/op", "p50", "p90", "p99", "p99.9", "p99.99", "max");
	for (int i = 0; i < r->nrows; i++) {
		const struct bench_row *w = &r->rows[i];
		if (w->skipped[0] || (w->error[0] && !w->ops)) {
			fprintf(f, "%-22s %-22s %s: %s\n", w->name, w->impl, w->skipped[0] ? "skipped" : "FAILED",
				w->skipped[0] ? w->skipped : w->error);
			continue;
		}
		for (int k = 0; k < NPCT; k++)
			lat(w->pct[k], b[k], sizeof(b[k]));
		lat(w->max, b[NPCT], sizeof(b[NPCT]));
		char cpu[24], mib[24];
		/* map, translate and load rows move no data */
		if (w->bytes > 0)
			sfmt(mib, sizeof(mib), "%.2f", w->mib_s);
		else
			sfmt(mib, sizeof(mib), "-");
		fprintf(f, "%-22s %-22s %11.0f %9s %9s %8s %8s %8s %8s %8s %8s\n", w->name, w->impl,
			w->pps > 0 ? w->pps : w->iops, mib, lat(w->cpu_ns_per_op, cpu, sizeof(cpu)),
			w->have_lat ? b[0] : "-", w->have_lat ? b[1] : "-", w->have_lat ? b[2] : "-",
			w->have_lat ? b[3] : "-", w->have_lat ? b[4] : "-", w->have_lat ? b[5] : "-");
		if (w->error[0])
			fprintf(f, "%-22s %-22s FAILED after %.0f ops: %s\n", "", "", w->ops, w->error);
	}
	int head = 0;
	for (int i = 0; i < r->nrows; i++) {
		const struct bench_row *w = &r->rows[i];
		if (!w->nparts)
			continue;
		if (!head++)
			fprintf(f, "\nwhere the time of one operation goes (median / p99):\n");
		fprintf(f, "  %s (%s):\n", w->name, w->impl);
		for (int k = 0; k < w->nparts; k++)
			fprintf(f, "    %-6s %-58s %9s / %s\n", w->parts[k].side, w->parts[k].name,
				lat(w->parts[k].median, b[0], sizeof(b[0])), lat(w->parts[k].p99, b[1], sizeof(b[1])));
	}
	for (int i = 0; i < r->nnotes; i++)
		fprintf(f, "%s%s\n", i ? "" : "\n", r->notes[i]);
}

static void html_esc(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '"': fputs("&quot;", f); break;
		default: fputc(*s, f);
		}
	}
}

/* A file name of a workload name: letters, digits, '-', '_', '.'. */
static void slug(char *out, size_t len, const char *s)
{
	size_t i = 0;

	for (; *s && i + 1 < len; s++)
		out[i++] = (char)((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
					  *s == '-' || *s == '_' || *s == '.'
				  ? *s
				  : '_');
	out[i] = '\0';
}

/* Whether row @i is the first of its workload name. */
static int first_of_name(const struct bench_report *r, int i)
{
	for (int j = 0; j < i; j++)
		if (!strcmp(r->rows[j].name, r->rows[i].name))
			return 0;
	return 1;
}

/*
 * One gnuplot script a workload, every implementation's histogram as a line (latency on a log
 * axis, samples on a log axis), drawn as SVG and PNG (pngcairo where gnuplot has it, else
 * libgd's png).  Returns 1 when both pictures were drawn.
 */
static int plot_workload(const struct bench_report *r, int i, int have_gnuplot)
{
	char s[64], dat[PATH_MAX], gp[PATH_MAX];
	int lines = 0;
	FILE *f;

	slug(s, sizeof(s), r->rows[i].name);
	sfmt(gp, sizeof(gp), "%s/hist-%s.gp", r->outdir, s);
	if (!(f = fopen(gp, "we")))
		return 0;
	fprintf(f, "# ubdma bench %s: latency histogram of %s\n", r->kind, r->rows[i].name);
	fprintf(f, "set title '%s: %s' noenhanced\nset xlabel 'latency (us)'\nset ylabel 'operations'\n"
		   "set logscale x\nset logscale y\nset grid\nset key outside below noenhanced\n",
		r->kind, r->rows[i].name);
	fprintf(f, "set terminal svg size 900,500 dynamic noenhanced\nset output 'hist-%s.svg'\n", s);
	fputs("plot ", f);
	for (int j = i; j < r->nrows; j++) {
		const struct bench_row *w = &r->rows[j];
		char is[40];
		FILE *d;
		if (strcmp(w->name, r->rows[i].name) || !w->nhist)
			continue;
		slug(is, sizeof(is), w->impl);
		sfmt(dat, sizeof(dat), "%s/hist-%s-%s.dat", r->outdir, s, is);
		if (!(d = fopen(dat, "we")))
			continue;
		for (int k = 0; k < w->nhist; k++)
			fprintf(d, "%.3f %.0f\n", w->hist_v[k] / 1e3, w->hist_c[k]);
		fclose(d);
		fprintf(f, "%s'hist-%s-%s.dat' using 1:2 with steps lw 2 title '%s'", lines++ ? ", " : "", s, is, w->impl);
	}
	if (!lines) {
		fclose(f);
		unlink(gp);
		return 0;
	}
	fprintf(f, "\nif (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
		   "  set terminal pngcairo size 900,500 noenhanced\n} else {\n  set terminal png size 900,500\n}\n"
		   "set output 'hist-%s.png'\nreplot\n",
		s);
	fclose(f);
	if (!have_gnuplot)
		return 0;
	/* gnuplot runs in the output folder, so that the page's links are relative */
	char *argv[] = { "sh", "-c", "cd \"$0\" && exec gnuplot \"$1\"", (char *)r->outdir, gp, NULL };
	char err[PATH_MAX];
	sfmt(err, sizeof(err), "%s/hist-%s.log", r->outdir, s);
	if (bench_spawn(argv, NULL, err) != 0)
		return 0;
	sfmt(dat, sizeof(dat), "%s/hist-%s.png", r->outdir, s);
	sfmt(gp, sizeof(gp), "%s/hist-%s.svg", r->outdir, s);
	return exists(dat) && exists(gp);
}

static void write_html(FILE *f, const struct bench_report *r, const int *plotted, int have_gnuplot)
{
	struct utsname u;
	char b[24], st[256];
	time_t t = time(NULL);

	uname(&u);
	fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>ubdma bench ", f);
	html_esc(f, r->kind);
	fputs("</title>\n<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
	      "td,th{border:1px solid #999;padding:3px 8px;text-align:right}td.l,th.l{text-align:left}"
	      ".skip{color:#777}.fail{color:#b00}</style></head><body>\n",
	      f);
	fprintf(f, "<h1>ubdma bench %s</h1>\n<p>", r->kind);
	html_esc(f, r->device);
	fprintf(f, "<br>%s %s %s, %s", u.nodename, u.sysname, u.release, u.machine);
	fprintf(f, "<br>%s</p>\n", asctime(gmtime(&t)));
	fputs("<h2>Workloads</h2>\n<table><tr><th class=l>workload</th><th class=l>implementation</th>"
	      "<th>IOPS / pps</th><th>MiB/s</th><th>CPU / op</th>",
	      f);
	for (int k = 0; k < NPCT; k++)
		fprintf(f, "<th>%s</th>", bench_pct_names[k]);
	fputs("<th>max</th><th class=l>status</th></tr>\n", f);
	for (int i = 0; i < r->nrows; i++) {
		const struct bench_row *w = &r->rows[i];
		fprintf(f, "<tr class=\"%s\"><td class=l><a href=\"#w-", w->skipped[0] ? "skip" : w->error[0] ? "fail" : "ok");
		slug(st, sizeof(st), w->name);
		fprintf(f, "%s\">", st);
		html_esc(f, w->name);
		fputs("</a></td><td class=l>", f);
		html_esc(f, w->impl);
		fputs("</td>", f);
		if (w->ops > 0)
			fprintf(f, "<td>%.0f</td><td>%.2f</td><td>%s</td>", w->pps > 0 ? w->pps : w->iops, w->mib_s,
				lat(w->cpu_ns_per_op, b, sizeof(b)));
		else
			fputs("<td></td><td></td><td></td>", f);
		for (int k = 0; k <= NPCT; k++)
			fprintf(f, "<td>%s</td>", w->have_lat ? lat(k < NPCT ? w->pct[k] : w->max, b, sizeof(b)) : "");
		fputs("<td class=l>", f);
		html_esc(f, row_status(w, st, sizeof(st)));
		fputs("</td></tr>\n", f);
	}
	fputs("</table>\n", f);
	if (r->nnotes) {
		fputs("<ul>\n", f);
		for (int i = 0; i < r->nnotes; i++) {
			fputs("<li>", f);
			html_esc(f, r->notes[i]);
			fputs("</li>\n", f);
		}
		fputs("</ul>\n", f);
	}
	fputs("<h2>Where the time of one operation goes</h2>\n<p>Timed from the public API around the calls: "
	      "ubdma's part (load, translation, bounce copy, the whole submission call) against the "
	      "device's (doorbell to completion seen by polling).</p>\n",
	      f);
	for (int i = 0; i < r->nrows; i++) {
		const struct bench_row *w = &r->rows[i];
		if (!w->nparts)
			continue;
		fputs("<h3>", f);
		html_esc(f, w->name);
		fputs(" (", f);
		html_esc(f, w->impl);
		fputs(")</h3>\n<table><tr><th class=l>side</th><th class=l>part</th><th>median</th><th>p99</th></tr>\n", f);
		for (int k = 0; k < w->nparts; k++) {
			fprintf(f, "<tr><td class=l>%s</td><td class=l>", w->parts[k].side);
			html_esc(f, w->parts[k].name);
			fprintf(f, "</td><td>%s</td>", lat(w->parts[k].median, b, sizeof(b)));
			fprintf(f, "<td>%s</td></tr>\n", lat(w->parts[k].p99, b, sizeof(b)));
		}
		fputs("</table>\n", f);
	}
	fputs("<h2>Latency histograms</h2>\n", f);
	if (!have_gnuplot)
		fputs("<p>gnuplot is not installed: no pictures (apt install gnuplot-nox); the data and the gnuplot "
		      "scripts are in this folder (hist-*.dat, hist-*.gp).</p>\n",
		      f);
	for (int i = 0; i < r->nrows; i++) {
		if (!first_of_name(r, i))
			continue;
		slug(st, sizeof(st), r->rows[i].name);
		fprintf(f, "<h3 id=\"w-%s\">", st);
		html_esc(f, r->rows[i].name);
		fputs("</h3>\n", f);
		if (plotted[i])
			fprintf(f, "<p><img src=\"hist-%s.svg\" alt=\"latency histogram of %s\"><br>"
				   "<a href=\"hist-%s.png\">PNG</a> <a href=\"hist-%s.svg\">SVG</a></p>\n",
				st, st, st, st);
		else
			fputs("<p>no plot (no latency samples, or gnuplot missing or failed).</p>\n", f);
	}
	fputs("<p>Data: <a href=\"results.json\">results.json</a>, <a href=\"results.csv\">results.csv</a>, "
	      "<a href=\"results.txt\">results.txt</a>.</p>\n</body></html>\n",
	      f);
}

int report_write(struct bench_report *r)
{
	char path[PATH_MAX];
	json_object *arr = json_object_new_array();
	int rc = 0, *plotted = calloc((size_t)r->nrows + 1, sizeof(int));
	FILE *f;

	for (int i = 0; i < r->nrows; i++)
		json_object_array_add(arr, row_json(&r->rows[i]));
	if (mkdir(r->outdir, 0755) && errno != EEXIST)
		rc = fail("cannot create %s: %s", r->outdir, strerror(errno));
	if (!rc && plotted) {
		char *gv[] = { "gnuplot", "--version", NULL };
		int have_gnuplot = have_prog("gnuplot") && bench_spawn(gv, NULL, NULL) == 0;
		for (int i = 0; i < r->nrows; i++)
			if (first_of_name(r, i))
				plotted[i] = plot_workload(r, i, have_gnuplot);
		sfmt(path, sizeof(path), "%s/results.json", r->outdir);
		if (json_object_to_file_ext(path, arr, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE))
			rc = fail("cannot write %s", path);
		sfmt(path, sizeof(path), "%s/results.csv", r->outdir);
		if ((f = fopen(path, "we"))) {
			write_csv(f, r);
			rc = fclose(f) ? fail("cannot write %s", path) : rc;
		}
		sfmt(path, sizeof(path), "%s/results.txt", r->outdir);
		if ((f = fopen(path, "we"))) {
			write_text(f, r);
			rc = fclose(f) ? fail("cannot write %s", path) : rc;
		}
		sfmt(path, sizeof(path), "%s/report.html", r->outdir);
		if ((f = fopen(path, "we"))) {
			write_html(f, r, plotted, have_gnuplot);
			rc = fclose(f) ? fail("cannot write %s", path) : rc;
		} else {
			rc = fail("cannot write %s: %s", path, strerror(errno));
		}
	}
	free(plotted);
	if (opt_json) {
		json_print(arr);
	} else {
		json_object_put(arr);
		if (r->csv)
			write_csv(stdout, r);
		else
			write_text(stdout, r);
	}
	if (!opt_json && !r->csv && !rc)
		printf("report: %s/report.html\n", r->outdir);
	fflush(stdout);
	return rc;
}
