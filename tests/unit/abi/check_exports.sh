#!/bin/sh
# check_exports.sh NM LIBRARY_SO PREFIX HEADER... - a shared library exports its public API and
# nothing else (its version script: lib/libubdma.map, drivers/*/libubdma_*.map).  The API is the
# functions named PREFIX* that HEADER declares, and the headers it includes as <ubdma/...>: for
# libubdma.so, prefix ubdma_ and ubdma.h; for a driver, prefix ubdma_nvme_ and nvme.h (whose
# include of <ubdma/core.h> brings no ubdma_nvme_ name).  TAP, one case a rule:
#   1 every defined dynamic symbol is named PREFIX*  (the rule of issue 16: nm -D --defined-only)
#   2 every exported name is declared in those headers (an internal function that happens to be
#     named PREFIX* would pass case 1 and still leak)
#   3 every function those headers declare is exported (a map or a visibility slip that hides
#     part of the API)
set -u
if [ $# -lt 4 ]; then
	echo "usage: check_exports.sh NM LIBRARY_SO PREFIX HEADER..." >&2
	exit 2
fi
nm=$1 so=$2 prefix=$3
shift 3
awkfile=$(dirname "$0")/../../../tools/public-functions.awk
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

if [ ! -r "$so" ]; then
	echo "1..0 # SKIP $so not built (default_library=static?)"
	exit 0
fi
echo "1..3"
lib=$(basename "$so")

# defined dynamic symbols, without version suffixes (name@@VER)
"$nm" -D --defined-only "$so" | awk 'NF >= 3 { sub(/@.*/, "", $3); print $3 }' | sort -u >"$tmp/exported"

# the headers, each followed by those it includes from <ubdma/...> (one level: ubdma.h is a list
# of includes), with comments removed so that a function named in prose is not taken for one
for h in "$@"; do
	echo "$h"
	sed -n 's|^#include <ubdma/\(.*\.h\)>.*|\1|p' "$h" | while read -r inc; do
		echo "$(dirname "$h")/$inc"
	done
done | sort -u >"$tmp/headers"
xargs awk -v prefix="$prefix" -f "$awkfile" <"$tmp/headers" | sort -u >"$tmp/declared"

report() { # n description file-of-offenders
	if [ -s "$3" ]; then
		echo "not ok $1 - $2"
		sed 's/^/#   /' "$3"
	else
		echo "ok $1 - $2"
	fi
}

grep -v "^${prefix}" "$tmp/exported" >"$tmp/foreign"
report 1 "only ${prefix}* names leave $lib ($(wc -l <"$tmp/exported") exported)" "$tmp/foreign"

grep "^${prefix}" "$tmp/exported" | comm -23 - "$tmp/declared" >"$tmp/undeclared"
report 2 "every name $lib exports is declared in $(xargs -n1 basename <"$tmp/headers" | paste -sd, -)" \
	"$tmp/undeclared"

comm -13 "$tmp/exported" "$tmp/declared" >"$tmp/missing"
report 3 "every ${prefix}* function declared there ($(wc -l <"$tmp/declared")) is exported by $lib" \
	"$tmp/missing"
