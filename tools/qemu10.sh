#!/usr/bin/env bash
# qemu10.sh [DIR] - QEMU 10.0 from bookworm-backports unpacked into a folder of its own (default
# /var/cache/ubdma/qemu10), the system's QEMU 7.2 left as it is; prints the path of its
# qemu-system-x86_64.  bench/nvme.sh -Q 10 calls it: the randread_qd32_jobs2 row needs two guest
# CPUs under -icount, which QEMU 7.2 hangs and 10.0 boots (docs/nvme.md, "Two guest CPUs under
# -icount").  The test bed's QEMU stays 7.2 (tools/deps.sh says why).  Every library 10.0 links
# is in bookworm, so the three packages are unpacked, not installed (no dependency resolution,
# nothing of the system's replaced).  Idempotent: a working copy is reused.  Needs root (apt).
set -euo pipefail
DEST=${1:-/var/cache/ubdma/qemu10}
BIN=$DEST/usr/bin/qemu-system-x86_64
if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then echo "$BIN"; exit 0; fi
PKGS=(qemu-system-x86/bookworm-backports qemu-system-common/bookworm-backports
      qemu-system-data/bookworm-backports)
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "deb http://deb.debian.org/debian bookworm-backports main" >/etc/apt/sources.list.d/ubdma-backports.list
  apt-get update -qq >&2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# (as root: apt's _apt user cannot write a mktemp folder)
dl() { (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "${PKGS[@]}" >&2); }
dl || { apt-get update -qq >&2; dl; }
rm -rf "$DEST.new"
mkdir -p "$DEST.new"
for d in "$tmp"/*.deb; do dpkg -x "$d" "$DEST.new"; done
"$DEST.new/usr/bin/qemu-system-x86_64" --version >&2
rm -rf "$DEST"
mv "$DEST.new" "$DEST"
echo "$BIN"
