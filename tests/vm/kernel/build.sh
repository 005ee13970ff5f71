#!/bin/bash
# build.sh [--cached] — print the path of the test bed's own guest kernel, building it first when no
# cached build matches.
#
# Debian's kernels have neither CONFIG_IOMMUFD nor CONFIG_VFIO_NOIOMMU, so the iommufd and no-IOMMU
# variants of the vm suite boot a kernel built here: Debian's kernel source package
# ($UBDMA_KERNEL_PKG, default linux-source-6.12), `make tinyconfig`, config.fragment merged in,
# everything built in (no modules), `make bzImage`.  About 9 minutes of two cores, once a machine.
#
# The bzImage is cached in $UBDMA_KERNEL_CACHE (default /var/cache/ubdma/kernel, or
# ~/.cache/ubdma/kernel when that is not writable) under a hash of the source package's version,
# config.fragment and this script: a fresh clone on the same machine finds it, and changing any of
# the three builds a new one.  The source package's .deb is kept in dl/ there, so a rebuild needs
# no network.  Concurrent callers serialise on a lock per hash; the second one waits and reuses.
#
# stdout: the bzImage's path, nothing else.  --cached: print it only if it is built (exit 1 if not).
# Next to the bzImage: config (the full .config), source (package and version), release, build.log.
set -euo pipefail

die() { echo "kernel/build.sh: error: $*" >&2; exit 2; }
log() { echo "kernel/build.sh: $*" >&2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FRAG=$HERE/config.fragment
SELF=$HERE/build.sh
PKG=${UBDMA_KERNEL_PKG:-linux-source-6.12}
ONLY_CACHED=0
[ "${1:-}" = --cached ] && ONLY_CACHED=1

if [ -n "${UBDMA_KERNEL_CACHE:-}" ]; then
	CACHE=$UBDMA_KERNEL_CACHE
elif mkdir -p /var/cache/ubdma/kernel 2>/dev/null && [ -w /var/cache/ubdma/kernel ]; then
	CACHE=/var/cache/ubdma/kernel
else
	CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/ubdma/kernel
fi
mkdir -p "$CACHE" || die "cannot create the cache folder $CACHE (set UBDMA_KERNEL_CACHE)"
CACHE=$(cd "$CACHE" && pwd)

# --- which source ----------------------------------------------------------------------------
candidate() { apt-cache policy "$PKG" 2>/dev/null | sed -n 's/^ *Candidate: //p'; }
VER=$(candidate)
if [ -z "$VER" ] || [ "$VER" = "(none)" ]; then
	[ $ONLY_CACHED = 1 ] && exit 1
	log "apt-cache does not know $PKG: running apt-get update"
	apt-get update -qq >&2 || die "apt-get update failed"
	VER=$(candidate)
fi
[ -n "$VER" ] && [ "$VER" != "(none)" ] ||
	die "no Debian package $PKG: tools/deps.sh adds bookworm-backports (it and bookworm-security serve it)"

HASH=$( { echo "$PKG=$VER"; cat "$FRAG" "$SELF"; } | sha256sum | cut -c1-16)
DIR=$CACHE/$HASH
if [ -f "$DIR/bzImage" ]; then
	echo "$DIR/bzImage"
	exit 0
fi
[ $ONLY_CACHED = 1 ] && exit 1

exec 9>"$CACHE/$HASH.lock"
if ! flock -n 9; then
	log "another build of $HASH is running: waiting for it"
	flock 9
fi
if [ -f "$DIR/bzImage" ]; then # built while we waited
	echo "$DIR/bzImage"
	exit 0
fi

for t in flex:flex bison:bison bc:bc make:make gcc:gcc xz:xz-utils; do
	command -v "${t%%:*}" >/dev/null || die "'${t%%:*}' not found: run tools/deps.sh (Debian package ${t#*:})"
done
[ -f /usr/include/libelf.h ] || die "libelf.h not found: run tools/deps.sh (Debian package libelf-dev)"

# --- download ----------------------------------------------------------------------------------
mkdir -p "$CACHE/dl"
DEB=$CACHE/dl/${PKG}_${VER//:/%3a}_all.deb
if [ ! -f "$DEB" ]; then
	log "downloading $PKG $VER"
	# apt drops privileges to _apt for downloads: give it a folder it can write to
	tmpdl=$(mktemp -d)
	chmod 777 "$tmpdl"
	(cd "$tmpdl" && apt-get download -q "$PKG=$VER" >&2) || {
		rm -rf "$tmpdl"
		die "apt-get download $PKG=$VER failed (apt-get update, or check the network)"
	}
	find "$CACHE/dl" -name "${PKG}_*.deb" -delete # older versions: their builds stay cached
	mv "$tmpdl"/*.deb "$DEB"
	rm -rf "$tmpdl"
fi

# --- configure and build -----------------------------------------------------------------------
WORK=$(mktemp -d "$CACHE/$HASH.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
BLOG=$WORK/build.log
start=$(date +%s)
log "building $PKG $VER in $WORK (log: $BLOG); about 9 minutes on 2 cores"
dpkg-deb -x "$DEB" "$WORK/deb"
TAR=$(find "$WORK/deb/usr/src" -maxdepth 1 -name 'linux-source-*.tar.*' | head -n1)
[ -n "$TAR" ] || die "no linux-source tarball in $DEB"
tar -xaf "$TAR" -C "$WORK"
rm -rf "$WORK/deb"
SRC=$(find "$WORK" -mindepth 1 -maxdepth 1 -type d -name 'linux-source-*' | head -n1)
[ -n "$SRC" ] || die "the tarball of $DEB holds no linux-source-* folder"

run() { "$@" >>"$BLOG" 2>&1 || { tail -n 40 "$BLOG" >&2; cp "$BLOG" "$CACHE/$HASH.failed.log"; die "'$*' failed (log: $CACHE/$HASH.failed.log)"; }; }
K=(make -C "$SRC" ARCH=x86_64)
run "${K[@]}" tinyconfig
run env -C "$SRC" ARCH=x86_64 scripts/kconfig/merge_config.sh -m .config "$FRAG"
run "${K[@]}" olddefconfig
# merge_config only warns when Kconfig drops an option (an unmet dependency): refuse instead.
dropped=()
while read -r line; do
	grep -qxF "$line" "$SRC/.config" || dropped+=("${line%%=*}")
done < <(grep -E '^CONFIG_[A-Z0-9_]+=' "$FRAG")
((${#dropped[@]} == 0)) || die "config.fragment options that did not come out as asked: ${dropped[*]}"
run "${K[@]}" -j"${UBDMA_KERNEL_JOBS:-$(nproc)}" bzImage

mkdir -p "$WORK/out"
cp "$SRC/arch/x86/boot/bzImage" "$WORK/out/bzImage"
cp "$SRC/.config" "$WORK/out/config"
"${K[@]}" -s kernelrelease >"$WORK/out/release" 2>/dev/null
echo "$PKG $VER" >"$WORK/out/source"
secs=$(($(date +%s) - start))
echo "# built in ${secs}s with ${UBDMA_KERNEL_JOBS:-$(nproc)} jobs on $(nproc) cpus" >>"$BLOG"
cp "$BLOG" "$WORK/out/build.log"
rm -rf "$DIR"
mv "$WORK/out" "$DIR"
log "built $(cat "$DIR/release") in ${secs}s: $DIR/bzImage"
echo "$DIR/bzImage"
