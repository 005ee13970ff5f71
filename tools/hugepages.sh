#!/usr/bin/env bash
# hugepages.sh [N] - make sure at least N free 2 MiB hugepages exist (default 640: the
# translation benchmark registers 1 GiB, the tests a few more).  Needs root; a no-op otherwise.
set -u
want=${1:-640}
d=/sys/kernel/mm/hugepages/hugepages-2048kB
[ -w "$d/nr_hugepages" ] || { echo "hugepages: not root or no 2 MiB size: skipped"; exit 0; }
free=$(cat "$d/free_hugepages"); total=$(cat "$d/nr_hugepages")
if [ "$free" -lt "$want" ]; then
  echo $((total + want - free)) > "$d/nr_hugepages"
fi
echo "hugepages: $(cat "$d/free_hugepages") of $(cat "$d/nr_hugepages") 2 MiB pages free"
