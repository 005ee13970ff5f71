#!/usr/bin/env bash
# main-job.sh BUILD - the main job's guest part: boot the test bed once and run the demo programs
# on the VFIO devices; print each program's REPORT lines.  Demo programs are listed below (one
# line each: the path under BUILD and its arguments); the drivers add theirs.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${1:-build}
out=$B/tests/vm/main-job
assets=$B/tests/vm/guest-assets
demos=(
  "$B/tests/vm/demo/demo_vfio"
  "$B/examples/nvme_identify"
  "$B/examples/nvme_rw 2048 64"
  "$B/examples/e1000e_ping"
)
progs=()
for d in "${demos[@]}"; do
  exe=${d%% *}
  if [ -x "$exe" ]; then progs+=("$d"); else echo "main-job: $exe not built: skipped"; fi
done
((${#progs[@]})) || { echo "main-job: nothing to run"; exit 1; }
mkdir -p "$out"
bash tests/vm/build-guest.sh "$assets" >/dev/null || { echo "main-job: guest assets failed"; exit 1; }
t0=$(date +%s)
bash tests/vm/run-guest.sh -o "$out" -a "$assets" -t 300 -u 150 "${progs[@]}" >"$out/run.log" 2>&1
rc=$?
echo "guest boot + programs: $(( $(date +%s) - t0 )) s (TCG), results in $out"
sed -n 's/\r$//; s/^.*REPORT /  /p' "$out/console.log"
sed 's/^/  /' "$out/results.txt" 2>/dev/null
exit $rc
