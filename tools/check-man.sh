#!/bin/sh
# check-man.sh - lint every section-3 man page under docs/man with mandoc; fail on any warning.
#
# Usage: tools/check-man.sh [MANDIR]   (default: docs/man next to this script)
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
echo "check-man: $n pages checked in $mandir"
exit $status
