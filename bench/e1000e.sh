#!/bin/bash
# e1000e.sh [--json] [-s SECONDS] [-r REPS] [-R ROWS] [-I ICOUNT|off] [BUILD] - libubdma_e1000e
# beside DPDK 22.11 testpmd (e1000 PMD) in the test-bed guest, on two more emulated 82574Ls: TX
# at 0000:00:04.0 on QEMU's user network, RX at 0000:00:05.0 fed by the host peer.  The
# benchmark is bench/nic.sh's (options and output there; method in docs/e1000e.md).
exec "$(dirname "${BASH_SOURCE[0]}")/nic.sh" e1000e "$@"
