#!/bin/bash
# build-guest.sh OUTDIR — build the guest assets of the VFIO test bed from Debian packages.
#
# OUTDIR receives (see tests/vm/README.md):
#   vmlinuz          the kernel of Debian's linux-image-<ver>-amd64 package
#   base.cpio        newc archive: static busybox, the kernel modules under /lib/ubdma/modules,
#                    and /lib/ubdma/modules.order (the insmod order: one "FILE.ko GROUP[,GROUP]"
#                    a line; GROUP is vfio, nvme or e1000e, the device drivers that need it,
#                    so that /init loads nvme's stack only when the NVMe stays on nvme)
#   modules.order    the same list, for humans
#   kernel-release   e.g. 6.1.0-56-amd64
#   stamp            what the assets were built from; when it matches, nothing is redone
#   dl/              the downloaded .deb (kept, so a rebuild needs no network)
#
# The module order is computed from the package's own modules.dep (depmod -b), depth first, each
# module after the modules it needs; modules.softdep "pre:" entries are followed too.
set -euo pipefail

die() { echo "build-guest.sh: error: $*" >&2; exit 1; }
log() { echo "build-guest.sh: $*" >&2; }

[ $# -eq 1 ] || die "usage: build-guest.sh OUTDIR"
OUT=$1

# Host tools this script needs, and the Debian package of each (tools/deps.sh installs them).
need_tool() {
	command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] ||
		die "'$1' not found: install the Debian package '$2' (apt-get install -y $2)"
}
need_tool apt-get apt
need_tool apt-cache apt
need_tool dpkg-deb dpkg
need_tool cpio cpio
need_tool depmod kmod
need_tool flock util-linux
[ -x /bin/busybox ] && file_is_static=$(LC_ALL=C ldd /bin/busybox 2>&1 || true)
[ -x /bin/busybox ] && [[ ${file_is_static:-} == *"not a dynamic executable"* ]] ||
	die "/bin/busybox is missing or not static: install the Debian package 'busybox-static'"
PATH=$PATH:/usr/sbin:/sbin

# Modules the test bed needs, each with its group; their dependencies are added from modules.dep.
WANTED=(vfio:vfio vfio_iommu_type1:vfio vfio_virqfd:vfio vfio-pci-core:vfio vfio-pci:vfio
	irqbypass:vfio iommufd:vfio nvme:nvme e1000e:e1000e
	rdma_rxe:rdma ib_uverbs:rdma)  # soft-RoCE (run-guest.sh -r): the verbs registration cache's tests
# Crypto providers that crc-t10dif and crc64-rocksoft ask for at run time through request_module();
# the guest has no modprobe, so they are loaded explicitly (each only if the kernel has it).
PROVIDERS=(crct10dif_generic:nvme crc64_rocksoft_generic:nvme crc32_generic:rdma) # rdma_rxe: crc32 (ICRC)

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
exec 9>"$OUT/.lock"
flock 9

SCRIPT_SUM=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
BB_SUM=$(sha256sum /bin/busybox | cut -c1-16)
TOOLS="script=$SCRIPT_SUM busybox=$BB_SUM"

# Fast path: assets built by this script from this busybox are kept, whatever apt says now, so
# that a run needs neither apt nor the network. UBDMA_VM_REFRESH=1 asks apt for a newer kernel.
if [ "${UBDMA_VM_REFRESH:-0}" != 1 ] && [ -f "$OUT/stamp" ] && [ -f "$OUT/vmlinuz" ] &&
	[ -f "$OUT/base.cpio" ] && [[ $(cat "$OUT/stamp") == *" $TOOLS" ]]; then
	log "guest assets up to date in $OUT ($(sed 's/ script=.*//; s/^kernel=//' "$OUT/stamp"))"
	exit 0
fi

# --- which kernel package ------------------------------------------------------------------
kpkg_name() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1
}
KPKG=$(kpkg_name)
if [ -z "$KPKG" ]; then
	log "apt-cache does not know linux-image-amd64: running apt-get update"
	apt-get update -qq >&2 || die "apt-get update failed"
	KPKG=$(kpkg_name)
fi
[ -n "$KPKG" ] || die "cannot find the kernel package that linux-image-amd64 depends on"
KVER=$(apt-cache policy "$KPKG" | sed -n 's/^ *Candidate: //p')
KREL=${KPKG#linux-image-}

STAMP="kernel=$KPKG $KVER $TOOLS"
if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$STAMP" ] &&
	[ -f "$OUT/vmlinuz" ] && [ -f "$OUT/base.cpio" ]; then
	log "guest assets up to date in $OUT ($KPKG $KVER)"
	exit 0
fi
rm -f "$OUT/stamp"

# --- download and unpack -------------------------------------------------------------------
mkdir -p "$OUT/dl"
DEB=$(ls "$OUT"/dl/"${KPKG}"_"${KVER//:/%3a}"_amd64.deb 2>/dev/null || true)
if [ -z "$DEB" ]; then
	log "downloading $KPKG $KVER"
	rm -f "$OUT"/dl/*.deb
	# apt drops privileges to _apt for downloads; a private temporary folder it can write to
	# avoids the "download is performed unsandboxed" warning.
	tmpdl=$(mktemp -d)
	chmod 777 "$tmpdl"
	if ! (cd "$tmpdl" && apt-get download -q "$KPKG=$KVER" >&2); then
		# The package lists may name a version the mirror no longer has: refresh, retry once.
		log "download failed: running apt-get update and retrying"
		apt-get update -qq >&2 || die "apt-get update failed"
		KPKG=$(kpkg_name)
		KVER=$(apt-cache policy "$KPKG" | sed -n 's/^ *Candidate: //p')
		KREL=${KPKG#linux-image-}
		STAMP="kernel=$KPKG $KVER $TOOLS"
		(cd "$tmpdl" && apt-get download -q "$KPKG=$KVER" >&2) ||
			die "apt-get download $KPKG=$KVER failed"
	fi
	mv "$tmpdl"/*.deb "$OUT/dl/"
	rmdir "$tmpdl"
	DEB=$(ls "$OUT"/dl/*.deb)
fi

WORK=$(mktemp -d "$OUT/work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
log "unpacking $(basename "$DEB")"
dpkg-deb -x "$DEB" "$WORK/k"
MODDIR=$WORK/k/lib/modules/$KREL
[ -d "$MODDIR" ] || die "no /lib/modules/$KREL in $DEB"
depmod -b "$WORK/k" "$KREL"

# --- module order from modules.dep ---------------------------------------------------------
# path_of[name] = path relative to MODDIR; name is the file name without .ko, '-' as '_'.
declare -A path_of deps_of softdeps_of state
while IFS= read -r line; do
	mod=${line%%:*}
	n=${mod##*/}; n=${n%.ko}; n=${n//-/_}
	path_of[$n]=$mod
	deps_of[$n]=${line#*:}
done <"$MODDIR/modules.dep"
while read -r kw mod rest; do
	[ "$kw" = softdep ] || continue
	pre=${rest#pre: }; pre=${pre%%post:*}
	[ "$pre" != "$rest" ] && softdeps_of[${mod//-/_}]=$pre
done <"$MODDIR/modules.softdep"

# A softdep may name an alias (e.g. crct10dif): prefer a module of that name, else the alias's
# *_generic provider, else its first provider.
resolve_name() {
	local n=${1//-/_} cand
	if [ -n "${path_of[$n]:-}" ]; then echo "$n"; return; fi
	cand=$(awk -v a="$1" '$1 == "alias" && ($2 == a || $2 == "crypto-" a) { print $3 }' \
		"$MODDIR/modules.alias" | sort -u)
	[ -n "$cand" ] || return 0
	{ grep '_generic$' <<<"$cand" || head -n1 <<<"$cand"; } | head -n1 | tr - _
}

ORDER=()
visit() {
	local n=$1 d dn s sn
	case ${state[$n]:-} in
	done) return ;;
	active) die "dependency cycle at module $n" ;;
	esac
	state[$n]=active
	for s in ${softdeps_of[$n]:-}; do
		sn=$(resolve_name "$s")
		[ -n "$sn" ] && [ -n "${path_of[$sn]:-}" ] && visit "$sn"
	done
	for d in ${deps_of[$n]}; do
		dn=${d##*/}; dn=${dn%.ko}; dn=${dn//-/_}
		visit "$dn"
	done
	state[$n]="done"
	ORDER+=("$n")
}
# tag NAME GROUP: NAME and everything it needs are in GROUP.
declare -A groups_of
tag() {
	local n=$1 g=$2 d dn s sn
	[[ " ${groups_of[$n]:-} " == *" $g "* ]] && return
	groups_of[$n]="${groups_of[$n]:-} $g"
	for s in ${softdeps_of[$n]:-}; do
		sn=$(resolve_name "$s")
		[ -n "$sn" ] && [ -n "${path_of[$sn]:-}" ] && tag "$sn" "$g"
	done
	for d in ${deps_of[$n]}; do
		dn=${d##*/}; dn=${dn%.ko}; dn=${dn//-/_}
		tag "$dn" "$g"
	done
}
for wg in "${PROVIDERS[@]}" "${WANTED[@]}"; do
	w=${wg%%:*}
	n=${w//-/_}
	if [ -z "${path_of[$n]:-}" ]; then
		# vfio_virqfd, iommufd and the crypto providers are optional (built in, or absent in
		# other kernel versions); the rest are not.
		case $n in
		iommufd | vfio_virqfd | rdma_rxe | ib_uverbs | *_generic) log "module $w not in $KREL: skipped"; continue ;;
		*) grep -q "/${w}.ko\$\|/${w//_/-}.ko\$" "$MODDIR/modules.builtin" 2>/dev/null &&
			{ log "module $w is built in"; continue; }
			die "module $w not found in $KREL" ;;
		esac
	fi
	visit "$n"
	tag "$n" "${wg#*:}"
done

# --- the base initramfs --------------------------------------------------------------------
ROOT=$WORK/root
mkdir -p "$ROOT"/{bin,sbin,dev,proc,sys,tmp,run,etc,mnt,root,lib/ubdma/modules,usr/bin,usr/sbin}
cp /bin/busybox "$ROOT/bin/busybox"
: >"$ROOT/lib/ubdma/modules.order"
for n in "${ORDER[@]}"; do
	f=$(basename "${path_of[$n]}")
	cp "$MODDIR/${path_of[$n]}" "$ROOT/lib/ubdma/modules/$f"
	g=$(echo ${groups_of[$n]}); echo "$f ${g// /,}" >>"$ROOT/lib/ubdma/modules.order"
done
echo "$KREL" >"$ROOT/lib/ubdma/kernel-release"
# The device nodes the kernel needs before devtmpfs is mounted.
mknod -m 600 "$ROOT/dev/console" c 5 1 2>/dev/null || true
mknod -m 666 "$ROOT/dev/null" c 1 3 2>/dev/null || true
(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) \
	>"$WORK/base.cpio"

cp "$WORK/k/boot/vmlinuz-$KREL" "$OUT/vmlinuz"
cp "$ROOT/lib/ubdma/modules.order" "$OUT/modules.order"
echo "$KREL" >"$OUT/kernel-release"
mv "$WORK/base.cpio" "$OUT/base.cpio"
echo "$STAMP" >"$OUT/stamp"
log "built guest assets in $OUT: $KREL, $(wc -l <"$OUT/modules.order") modules:" \
	"$(cut -d' ' -f1 "$OUT/modules.order" | tr '\n' ' ')"
