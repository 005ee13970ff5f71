/*
 * bench.c - `ubdma bench`: run every bench_* program of a directory with --json, keep its JSON,
 * and turn its rows into a text table, a Markdown table and, for rows carrying a histogram
 * ("hist": [[value, count], ...]), a gnuplot script and its PNG.  The rows are read with json-c.
 * `ubdma bench nvme|nic|iommu` is the benchmark of a device of this machine: this file passes it
 * on (bench_nvme.c, bench_nic.c, bench_iommu.c) and parses the options they share.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "cli.h"

static void fmt_num(json_object *o, const char *key, char *buf, size_t len)
{
	double v;

	if (jget_num(o, key, &v))
		sfmt(buf, len, "%.3f", v);
	else
		sfmt(buf, len, "-");
}

/* The table of one benchmark, as text and as Markdown. */
static void bench_tables(json_object *rows, const char *dir, const char *name)
{
	char path[PATH_MAX];
	FILE *t, *md;
	size_t n = json_object_array_length(rows);

	sfmt(path, sizeof(path), "%s/%s.txt", dir, name);
	t = fopen(path, "we");
	sfmt(path, sizeof(path), "%s/%s.md", dir, name);
	md = fopen(path, "we");
	if (t)
		fprintf(t, "%-14s %-22s %-8s %-10s %10s %10s %10s  %s\n", "name", "impl", "backend", "unit", "median",
			"p99", "mean", "note");
	if (md)
		fprintf(md, "| name | impl | backend | unit | median | p99 | mean | note |\n|---|---|---|---|---:|---:|---:|---|\n");
	for (size_t i = 0; i < n; i++) {
		json_object *r = json_object_array_get_idx(rows, i);
		char med[32], p99[32], mean[32];
		fmt_num(r, "median", med, sizeof(med));
		fmt_num(r, "p99", p99, sizeof(p99));
		fmt_num(r, "mean", mean, sizeof(mean));
		if (t)
			fprintf(t, "%-14s %-22s %-8s %-10s %10s %10s %10s  %s\n", jget_str(r, "name"), jget_str(r, "impl"),
				jget_str(r, "backend"), jget_str(r, "unit"), med, p99, mean, jget_str(r, "note"));
		if (md)
			fprintf(md, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", jget_str(r, "name"), jget_str(r, "impl"),
				jget_str(r, "backend"), jget_str(r, "unit"), med, p99, mean, jget_str(r, "note"));
	}
	if (t)
		fclose(t);
	if (md)
		fclose(md);
}

/* The histogram's data file: one "value count" line for each [value, count] pair of @h. */
static int write_hist(json_object *h, const char *path)
{
	FILE *f = fopen(path, "we");
	size_t n = json_object_array_length(h);

	if (!f)
		return -1;
	for (size_t k = 0; k < n; k++) {
		json_object *p = json_object_array_get_idx(h, k);
		if (json_object_is_type(p, json_type_array) && json_object_array_length(p) == 2)
			fprintf(f, "%g %g\n", json_object_get_double(json_object_array_get_idx(p, 0)),
				json_object_get_double(json_object_array_get_idx(p, 1)));
	}
	fclose(f);
	return 0;
}

/*
 * A plot for every row that carries a histogram: the data file, the gnuplot script, and the PNG
 * when gnuplot is installed.  Returns the number of PNGs.
 */
static int bench_plots(json_object *rows, const char *dir, const char *name, int have_gnuplot)
{
	size_t n = json_object_array_length(rows);
	int pngs = 0;

	for (size_t i = 0; i < n; i++) {
		json_object *r = json_object_array_get_idx(rows, i), *h;
		char base[PATH_MAX], path[PATH_MAX + 8];
		FILE *f;

		if (!json_object_object_get_ex(r, "hist", &h) || !json_object_is_type(h, json_type_array) ||
		    !json_object_array_length(h))
			continue;
		sfmt(base, sizeof(base), "%s/%s-%s-%s", dir, name, jget_str(r, "name"), jget_str(r, "impl"));
		for (char *c = base + strlen(dir) + 1; *c; c++)
			if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_')
				*c = '_';
		sfmt(path, sizeof(path), "%s.dat", base);
		if (write_hist(h, path))
			continue;
		sfmt(path, sizeof(path), "%s.gp", base);
		if (!(f = fopen(path, "we")))
			continue;
		fprintf(f,
			"set terminal pngcairo size 800,500 noenhanced\nset output '%s.png'\n"
			"set title '%s: %s (%s)'\nset xlabel '%s'\nset ylabel 'samples'\nset logscale y\n"
			"set style fill solid 0.6\nplot '%s.dat' using 1:2 with boxes notitle\n",
			base, name, jget_str(r, "name"), jget_str(r, "impl"), jget_str(r, "unit"), base);
		fclose(f);
		if (have_gnuplot && run("gnuplot", path) == 0)
			pngs++;
	}
	return pngs;
}

static int is_bench(const char *dir, const char *name)
{
	char path[PATH_MAX];
	struct stat st;

	if (strncmp(name, "bench_", 6))
		return 0;
	sfmt(path, sizeof(path), "%s/%s", dir, name);
	return !stat(path, &st) && S_ISREG(st.st_mode) && (st.st_mode & 0111);
}

/* Run one benchmark with --json (and the extra arguments); its stdout into out.  Exit status. */
static int bench_run(const char *exe, char **extra, int nextra, const char *out, const char *log)
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		char **av = calloc((size_t)nextra + 3, sizeof(*av));
		int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		int fl = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (!av || fo < 0 || fl < 0)
			_exit(126);
		dup2(fo, 1);
		dup2(fl, 2);
		av[0] = (char *)exe;
		av[1] = "--json";
		for (int i = 0; i < nextra; i++)
			av[2 + i] = extra[i];
		execv(exe, av);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The bench_* programs of @dir, sorted; NULL and 0 when there are none. */
static char **bench_list(DIR *d, const char *dir, int *np)
{
	char **names = NULL;
	struct dirent *de;
	int nb = 0;

	while ((de = readdir(d)))
		if (is_bench(dir, de->d_name)) {
			char **nn = realloc(names, (size_t)(nb + 1) * sizeof(*nn));
			if (!nn || !(nn[nb] = strdup(de->d_name))) {
				names = nn ? nn : names;
				break;
			}
			names = nn;
			nb++;
		}
	if (names)
		qsort(names, (size_t)nb, sizeof(*names), cmp_str);
	*np = nb;
	return names;
}

/* Run one benchmark into @out and report it (text, or one element of @arr).  0 or EX_FAIL. */
static int bench_one(const char *dir, const char *name, const char *out, char **extra, int nextra,
		     int have_gnuplot, json_object *arr)
{
	char exe[PATH_MAX], jpath[PATH_MAX], lpath[PATH_MAX];
	json_object *rows = NULL;
	int st, pngs = 0, ok = 0, nrows = 0, rc = 0;

	sfmt(exe, sizeof(exe), "%s/%s", dir, name);
	sfmt(jpath, sizeof(jpath), "%s/%s.json", out, name);
	sfmt(lpath, sizeof(lpath), "%s/%s.log", out, name);
	if (!arr)
		fprintf(stderr, "ubdma bench: running %s\n", name);
	st = bench_run(exe, extra, nextra, jpath, lpath);
	if (st == 0)
		rows = json_object_from_file(jpath);
	if (rows && json_object_is_type(rows, json_type_array)) {
		nrows = (int)json_object_array_length(rows);
		bench_tables(rows, out, name);
		pngs = bench_plots(rows, out, name, have_gnuplot);
		ok = 1;
	}
	if (!ok)
		rc = fail("%s %s (see %s)", name, st ? "failed" : "printed no JSON array", lpath);
	if (arr) {
		json_object *o = json_object_new_object();
		json_object_array_add(arr, o);
		jadd_str(o, "bench", name);
		jadd_bool(o, "ok", ok);
		jadd_int(o, "rows", nrows);
		jadd_int(o, "plots", pngs);
		jadd_str(o, "json", jpath);
	} else if (ok) {
		printf("%s: %d rows -> %s/%s.{json,txt,md}%s\n", name, nrows, out, name, pngs ? ", plots as PNG" : "");
	}
	json_object_put(rows);
	return rc;
}

/* The default benchmark directory: the build tree keeps tools/ubdma beside bench/. */
static const char *default_dir(char *buf, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	self[n > 0 ? n : 0] = '\0';
	if ((slash = strrchr(self, '/')))
		*slash = '\0';
	sfmt(buf, len, "%s/../bench", self);
	return buf;
}

int mkdir_p(const char *dir)
{
	char p[PATH_MAX];

	sfmt(p, sizeof(p), "%s", dir);
	for (char *s = p + 1; *s; s++)
		if (*s == '/') {
			*s = '\0';
			if (mkdir(p, 0755) && errno != EEXIST)
				return -1;
			*s = '/';
		}
	return mkdir(p, 0755) && errno != EEXIST ? -1 : 0;
}

int bench_common_opts(int argc, char **argv, struct bench_opts *o, char **rest, const char *kind)
{
	static char outbuf[64];
	int n = 0;

	memset(o, 0, sizeof(*o));
	o->secs = 5;
	bench_guard();
	sfmt(outbuf, sizeof(outbuf), "ubdma-bench-%s", kind);
	o->out = outbuf;
	rest[n++] = argv[0];
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--time") && i + 1 < argc) {
			char *end;
			o->secs = strtod(argv[++i], &end);
			if (*end || !(o->secs >= 0.1 && o->secs <= 3600))
				usage_error("bench %s: --time wants seconds between 0.1 and 3600, not '%s'", kind, argv[i]);
		} else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
			o->out = argv[++i];
		} else if (!strcmp(argv[i], "--csv")) {
			o->csv = 1;
		} else if (!strcmp(argv[i], "--quiet")) {
			progress_quiet = 1;
		} else if (!strcmp(argv[i], "--force")) {
			o->force = 1;
		} else if (n < 63) {
			rest[n++] = argv[i];
		} else {
			usage_error("bench %s: too many arguments", kind);
		}
	}
	rest[n] = NULL;
	return n;
}

int cmd_bench(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "nvme"))
		return bench_nvme(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "nic"))
		return bench_nic(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "iommu"))
		return bench_iommu(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "all")) {
		argc--;
		argv++;
	} else if (argc > 1 && argv[1][0] != '-') {
		usage_error("bench: unknown kind '%s' (nvme, nic, iommu, or all for the bench_* programs)", argv[1]);
	}

	const char *out = "ubdma-bench", *dir = NULL;
	char defdir[PATH_MAX], **extra = NULL, **names;
	int nextra = 0, rc = 0, nb = 0;
	json_object *arr = NULL;
	DIR *d;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			extra = argv + i + 1;
			nextra = argc - i - 1;
			break;
		}
		if ((strcmp(argv[i], "--out") && strcmp(argv[i], "--bench-dir")) || i + 1 >= argc)
			usage_error("bench: usage: ubdma bench [--out DIR] [--bench-dir DIR] [-- BENCH-ARGS]");
		if (!strcmp(argv[i], "--out"))
			out = argv[++i];
		else
			dir = argv[++i];
	}
	if (!dir)
		dir = default_dir(defdir, sizeof(defdir));
	if (!(d = opendir(dir)))
		usage_error("bench: no benchmark directory %s (give --bench-dir DIR)", dir);
	if (mkdir(out, 0755) && errno != EEXIST) {
		closedir(d);
		return fail("cannot create %s: %s", out, strerror(errno));
	}
	int have_gnuplot = run("gnuplot", "--version") == 0;
	names = bench_list(d, dir, &nb);
	closedir(d);
	if (!nb)
		rc = fail("no bench_* executables in %s", dir);
	if (opt_json)
		arr = json_object_new_array();
	for (int i = 0; i < nb; i++) {
		int r = bench_one(dir, names[i], out, extra, nextra, have_gnuplot, arr);
		rc = rc ? rc : r;
		free(names[i]);
	}
	if (arr)
		json_print(arr);
	free(names);
	return rc;
}
