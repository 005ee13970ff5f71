#!/usr/bin/env bash
# setup.sh - the README's first command: install what ubdma needs (Debian packages), reserve
# hugepages, build, and run the main job (tools/main-job.sh), which ends with a short report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
bash tools/hugepages.sh 640
# the test bed's own guest kernel (iommufd, no-IOMMU mode): built once a machine, 6 to 9 minutes
# on 2 cores, then reused from its cache (tests/vm/kernel/build.sh)
bash tests/vm/kernel/build.sh >/dev/null
[ -d build ] || meson setup build --buildtype=release >/dev/null
if ! meson compile -C build >build.compile.log 2>&1; then
  tail -40 build.compile.log
  echo "setup: the build failed (whole log: build.compile.log)" >&2
  exit 1
fi
exec bash tools/main-job.sh build
