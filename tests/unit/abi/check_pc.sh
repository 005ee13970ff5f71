#!/bin/sh
# check_pc.sh PKG_CONFIG PCDIR NAME LIB - the pkg-config file NAME (as meson generated it, its
# uninstalled form in PCDIR) gives what a program of the driver library LIB needs.  TAP:
#   1 the file validates (pkg-config --validate)
#   2 it requires ubdma, so the library's own flags come from ubdma.pc and are written once
#   3 --libs links LIB and, through that, libubdma
#   4 --cflags finds <ubdma/...> (the include directory of the headers)
set -u
pc=$1 dir=$2 name=$3 lib=$4
export PKG_CONFIG_PATH="$dir"
unset PKG_CONFIG_DISABLE_UNINSTALLED
echo "1..4"
n=0
check() { # description, then a command whose success is the check
	n=$((n + 1))
	d=$1
	shift
	if "$@" >/dev/null 2>&1; then echo "ok $n - $d"; else echo "not ok $n - $d"; fi
}
check "$name.pc validates" "$pc" --validate "$name"
check "$name requires ubdma" sh -c "'$pc' --print-requires '$name' | grep -qx 'ubdma'"
check "$name links -l$lib and -lubdma" sh -c \
	"l=\$('$pc' --libs '$name'); case \" \$l \" in *' -l$lib '*' -lubdma '*) exit 0;; esac; exit 1"
check "$name's cflags find ubdma/ubdma.h" sh -c \
	"for f in \$('$pc' --cflags-only-I '$name'); do [ -f \"\${f#-I}/ubdma/ubdma.h\" ] && exit 0; done; exit 1"
