#!/bin/sh
# check-man.sh - the man pages are complete and sound: every function the public headers declare
# has a page, every page lints clean under mandoc, every cross-reference to a ubdma page finds it,
# and every page is installed.  Fails (exit 1) on the first kind of trouble and lists them all.
#
# Usage: tools/check-man.sh [MANDIR [INCDIR]]
#        (defaults: docs/man and include/ubdma next to this script's folder)
#
# A function F of INCDIR/*.h is documented when MANDIR/F.3 exists: a page of its own that names
# it in a .Nm line, or a link page to the page that does (one that documents F with siblings).
# A cross-reference ".Xr NAME SECTION" whose NAME starts with "ubdma" must find MANDIR/NAME.SECTION;
# references to other systems' pages (mlock(2), FreeBSD's bus_dma(9), Solaris's ddi_umem_lock(9F))
# are not checked, as those pages are not on every machine that builds ubdma.
#
# Pages are linted from a scratch tree in which man3/ points at MANDIR, so that link pages
# holding ".so man3/other.3" resolve as they will once installed (mandoc then lints the
# target's text too).  Every .3 file is listed with its result; the exit status is 1 if any
# page has a warning or error, 0 otherwise.
#
# Link pages: a page that is one ".so man3/X.3" line is an alias of X.3.  mandoc warns that
# .so "is fragile, better use ln(1)" on every such page; that one message is expected and not
# counted.  Instead the alias must be a .Nm of the target's NAME section, so that apropos and
# the reader find it there.
set -u

here=$(cd "$(dirname "$0")" && pwd)
mandir=${1:-$here/../docs/man}
mandir=$(cd "$mandir" && pwd) || { echo "check-man: no directory $1" >&2; exit 1; }
incdir=${2:-$here/../include/ubdma}
incdir=$(cd "$incdir" && pwd) || { echo "check-man: no directory $2" >&2; exit 1; }

if ! command -v mandoc >/dev/null 2>&1; then
	echo "check-man: mandoc not found; install the Debian package 'mandoc'" \
	     "(apt-get install mandoc), which the project's setup script lists" >&2
	exit 1
fi

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
ln -s "$mandir" "$tmp/man3"

status=0
n=0
for page in "$mandir"/*.3; do
	[ -e "$page" ] || continue
	name=$(basename "$page")
	n=$((n + 1))
	out=$(cd "$tmp" && mandoc -T lint -W warning "man3/$name" 2>&1)
	rc=$?
	target=$(sed -n '1s|^\.so man3/\([^ ]*\.3\)$|\1|p' "$page")
	if [ -n "$target" ] && [ "$(wc -l < "$page")" -eq 1 ]; then
		# an alias: drop the expected .so warning, then check the target names it
		out=$(printf '%s\n' "$out" | grep -v ': WARNING: \.so is fragile, better use ln(1): ')
		[ $rc -eq 2 ] && [ -z "$out" ] && rc=0   # mandoc's status for "warnings only"
		alias=${name%.3}
		if [ ! -f "$mandir/$target" ]; then
			out="$out${out:+
}check-man: $name: .so target $target does not exist"
		elif ! grep -q "^\.Nm $alias\( ,\)\{0,1\}\$" "$mandir/$target"; then
			out="$out${out:+
}check-man: $name: $target has no '.Nm $alias' in its NAME section"
		fi
	fi
	if [ $rc -ne 0 ] || [ -n "$out" ]; then
		echo "FAIL $name"
		printf '%s\n' "$out" | sed 's/^/     /'
		status=1
	else
		echo "ok   $name"
	fi
done

if [ $n -eq 0 ]; then
	echo "check-man: no .3 pages in $mandir" >&2
	exit 1
fi
# every page must be installed: listed in docs/meson.build's man_pages
list=$mandir/../meson.build
for page in "$mandir"/*.[1-9]; do
	name=$(basename "$page")
	if [ -f "$list" ] && ! grep -q "'man/$name'" "$list"; then
		echo "FAIL $name is not in man_pages of $list: it would not be installed"
		status=1
	fi
done

# every public function has a page: the names declared in the headers, comments and
# preprocessor lines left out, typedefs (callback types) skipped
funcs=$(awk -v prefix=ubdma_ -f "$(dirname "$0")/public-functions.awk" "$incdir"/*.h | sort -u)
nf=0
for f in $funcs; do
	nf=$((nf + 1))
	page=$mandir/$f.3
	if [ ! -f "$page" ]; then
		echo "FAIL $f (declared in $(grep -l "\b$f *(" "$incdir"/*.h | xargs -n1 basename | paste -sd, -)) has no page: write $f.3, or name it in a sibling's page (.Nm $f) and add a link page $f.3 holding '.so man3/<page>.3'"
		status=1
	elif ! grep -q '^\.so ' "$page" && ! grep -q "^\.Nm $f\( ,\)\{0,1\}\$" "$page"; then
		echo "FAIL $f.3 does not name $f in a .Nm line"
		status=1
	fi
done
[ $nf -gt 0 ] || { echo "FAIL no function found in $incdir/*.h"; status=1; }

# every cross-reference to a ubdma page finds it (.Xr NAME SECTION, also inside a line)
for page in "$mandir"/*.[1-9]; do
	grep -q '^\.so ' "$page" && continue
	grep -o '\(^\.\|[[:space:]]\)Xr[[:space:]][[:space:]]*ubdma[A-Za-z0-9_]*[[:space:]][[:space:]]*[0-9][A-Za-z]*' "$page" |
	awk '{ print $(NF - 1) "." $NF }' | sort -u | while read -r ref; do
		[ -f "$mandir/$ref" ] || echo "FAIL $(basename "$page"): .Xr ${ref%.*} ${ref##*.} points to no page ($ref is not in $mandir)"
	done
done >"$tmp/xr"
if [ -s "$tmp/xr" ]; then
	cat "$tmp/xr"
	status=1
fi

echo "check-man: $n pages checked in $mandir; $nf functions declared in $incdir/*.h"
exit $status
