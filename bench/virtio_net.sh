#!/bin/bash
# virtio_net.sh [--json] [-s SECONDS] [-r REPS] [-R ROWS] [-I ICOUNT|off] [BUILD] -
# libubdma_virtio_net beside DPDK 22.11 testpmd (net_virtio PMD) in the test-bed guest, on modern
# virtio-net devices (disable-legacy=on, iommu_platform=on, behind the emulated VT-d): TX at
# 0000:00:06.0 on QEMU's user network, RX at 0000:00:05.0 (run-guest.sh -V) fed by the host peer.
# The benchmark is bench/nic.sh's (options and output there; method in docs/virtio-net.md).
exec "$(dirname "${BASH_SOURCE[0]}")/nic.sh" virtio-net "$@"
