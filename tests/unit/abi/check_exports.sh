#!/bin/sh
# check_exports.sh NM LIBUBDMA_SO INCLUDE_DIR - the shared library exports the public API and
# nothing else (lib/libubdma.map).  TAP, one case a rule:
#   1 every defined dynamic symbol is named ubdma_*  (the rule of issue 16: nm -D --defined-only)
#   2 every exported ubdma_* name is declared in a header <ubdma/ubdma.h> includes (an internal
#     function named ubdma_* would pass case 1 and still leak)
#   3 every function those headers declare is exported (a map or a visibility slip that hides
#     part of the API)
set -u
nm=$1 so=$2 inc=$3
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

if [ ! -r "$so" ]; then
	echo "1..0 # SKIP $so not built (default_library=static?)"
	exit 0
fi
echo "1..3"

# defined dynamic symbols, without version suffixes (name@@VER)
"$nm" -D --defined-only "$so" | awk 'NF >= 3 { sub(/@.*/, "", $3); print $3 }' | sort -u >"$tmp/exported"

# public declarations: the headers ubdma.h includes (not the drivers' nvme.h and e1000e.h, which
# belong to libraries of their own); a name followed by "(" that is not a type
headers=$(sed -n 's|^#include <ubdma/\(.*\.h\)>.*|\1|p' "$inc/ubdma/ubdma.h")
for h in $headers; do
	cat "$inc/ubdma/$h"
done | grep -oE '\bubdma_[a-z0-9_]+[[:space:]]*\(' | sed 's/[[:space:](]//g' | grep -v '_t$' |
	sort -u >"$tmp/declared"

report() { # n description file-of-offenders
	if [ -s "$3" ]; then
		echo "not ok $1 - $2"
		sed 's/^/#   /' "$3"
	else
		echo "ok $1 - $2"
	fi
}

grep -v '^ubdma_' "$tmp/exported" >"$tmp/foreign"
report 1 "only ubdma_* names leave $(basename "$so") ($(wc -l <"$tmp/exported") exported)" "$tmp/foreign"

grep '^ubdma_' "$tmp/exported" | comm -23 - "$tmp/declared" >"$tmp/undeclared"
report 2 "every exported ubdma_* name is declared in a public header" "$tmp/undeclared"

comm -13 "$tmp/exported" "$tmp/declared" >"$tmp/missing"
report 3 "every public function ($(wc -l <"$tmp/declared") declared) is exported" "$tmp/missing"
