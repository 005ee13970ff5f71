#!/bin/busybox sh
# shellcheck shell=dash disable=SC2155
# /init of the test-bed guest (packed by run-guest.sh; runs as PID 1 under busybox sh).
#
# 1. mounts proc, sys, devtmpfs, tmpfs and hugetlbfs, reserves 2 MiB hugepages;
# 2. insmods the modules listed in /lib/ubdma/modules.order (dependency order, from build-guest.sh):
#    vfio's always, nvme's and e1000e's only when a device stays on that kernel driver;
# 3. binds every NVMe (1b36:0010) and e1000e (8086:10d3) to vfio-pci through driver_override
#    (set before the modules load), unless /ubdma/config leaves one on its kernel driver;
# 4. exports UBDMA_VM_* with the BDFs and IOMMU groups, runs /ubdma/tests.sh (one run_test line a
#    program) and prints, for each program, markers with its exit status and the dmesg it caused;
# 5. powers off.
# The console protocol (all lines start with "UBDMA-VM: ") is read by run-guest.sh; see README.md.

/bin/busybox --install -s
export PATH=/ubdma/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

mark() { echo "UBDMA-VM: $*"; }
setup_fail() { mark "SETUP-FAILED $*"; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /dev/pts /dev/shm /dev/hugepages
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
# DPDK's EAL (examples/dpdk_extmem, bench/e1000e) keeps its runtime files under /var/run as root,
# and refuses -d plugins below a world-writable directory: the initramfs root is tmpfs, 1777.
chmod 755 /
mkdir -p /var
[ -e /var/run ] || ln -s /run /var/run

UBDMA_CFG_NVME_DRIVER=vfio-pci
UBDMA_CFG_NIC_DRIVER=vfio-pci
UBDMA_CFG_HUGEPAGES=64
UBDMA_CFG_VERBOSE=0
UBDMA_CFG_PROG_TIMEOUT=0
UBDMA_CFG_ALL_MODULES=0
UBDMA_CFG_BUILTIN=0
UBDMA_CFG_MODE=type1
. /ubdma/config

# Console: keep kernel messages off it while tests print (they are dumped from dmesg instead),
# unless the runner asked for a verbose console.
[ "$UBDMA_CFG_VERBOSE" = 1 ] || echo "1 4 1 7" >/proc/sys/kernel/printk

mark "INIT kernel=$(uname -r) uptime=$(cut -d' ' -f1 /proc/uptime)"

# --- hugepages ---------------------------------------------------------------------------------
hp=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
[ "$(cat $hp)" -ge "$UBDMA_CFG_HUGEPAGES" ] 2>/dev/null || echo "$UBDMA_CFG_HUGEPAGES" >$hp
mount -t hugetlbfs -o pagesize=2M hugetlbfs /dev/hugepages ||
	setup_fail "mount hugetlbfs"
export UBDMA_VM_HUGETLBFS=/dev/hugepages
export UBDMA_VM_HUGEPAGES_2M="$(cat $hp)"

mark "MOUNTED uptime=$(cut -d' ' -f1 /proc/uptime)"

# --- devices -----------------------------------------------------------------------------------
# drv_of BDF: the driver a device is bound to, or "none".
drv_of() {
	if [ -e "/sys/bus/pci/devices/$1/driver" ]; then
		basename "$(readlink "/sys/bus/pci/devices/$1/driver")"
	else
		echo none
	fi
}

# bind BDF DRIVER: make sure the device is bound to DRIVER. Drivers probe asynchronously (nvme),
# so wait a little for the kernel's own binding first; else (re)bind through driver_override.
bind() {
	d=/sys/bus/pci/devices/$1
	i=0
	# the test bed's own kernel has every driver built in: nothing more will bind by itself
	[ "$UBDMA_CFG_BUILTIN" = 1 ] && i=30
	while [ "$(drv_of "$1")" != "$2" ] && [ $i -lt 30 ]; do usleep 100000; i=$((i + 1)); done
	[ "$(drv_of "$1")" = "$2" ] && return 0
	echo "$2" >"$d/driver_override"
	[ -e "$d/driver" ] && echo "$1" >"$d/driver/unbind"
	echo "$1" >/sys/bus/pci/drivers_probe
	[ "$(drv_of "$1")" = "$2" ] || { setup_fail "bind $1 to $2 (driver is $(drv_of "$1"))"; return 1; }
}

# pci_find VENDOR DEVICE: the BDFs with these IDs, in bus order.
pci_find() {
	for d in /sys/bus/pci/devices/*; do
		[ "$(cat "$d/vendor")" = "$1" ] && [ "$(cat "$d/device")" = "$2" ] && basename "$d"
	done
}

group_of() {
	if [ -e "/sys/bus/pci/devices/$1/iommu_group" ]; then
		basename "$(readlink "/sys/bus/pci/devices/$1/iommu_group")"
	else
		echo none
	fi
}

NVMES=$(pci_find 0x1b36 0x0010)
NICS=$(pci_find 0x8086 0x10d3)
[ -n "$NVMES" ] || setup_fail "no NVMe controller 1b36:0010"
[ -n "$NICS" ] || setup_fail "no e1000e 8086:10d3"
# virtio-net, modern (1af4:1041; run-guest.sh -V): always for vfio-pci (drivers/virtio-net)
VNETS=$(pci_find 0x1af4 0x1041)
for b in $VNETS; do echo vfio-pci >"/sys/bus/pci/devices/$b/driver_override"; done

# Devices meant for vfio-pci get their driver_override before any module is loaded: vfio-pci
# then takes them when it registers, and nvme / e1000e never probe them (which saves about 1 s
# of TCG time and leaves no kernel-driver state behind in the device).
[ "$UBDMA_CFG_NVME_DRIVER" = vfio-pci ] &&
	for b in $NVMES; do echo vfio-pci >"/sys/bus/pci/devices/$b/driver_override"; done
[ "$UBDMA_CFG_NIC_DRIVER" = vfio-pci ] &&
	for b in $NICS; do echo vfio-pci >"/sys/bus/pci/devices/$b/driver_override"; done

# --- modules -----------------------------------------------------------------------------------
# Each line: FILE.ko GROUP[,GROUP]. vfio is always loaded; nvme's and e1000e's stacks only when a
# device stays on that driver.
need=",vfio,"
[ "$UBDMA_CFG_NVME_DRIVER" = nvme ] && need="${need}nvme,"
[ "$UBDMA_CFG_NIC_DRIVER" = e1000e ] && need="${need}e1000e,"
[ "$UBDMA_CFG_ALL_MODULES" = 1 ] && need=",vfio,nvme,e1000e,"
[ "${UBDMA_CFG_RDMA:-0}" = 1 ] && need="${need}rdma," # soft-RoCE (run-guest.sh -r)
while read -r m groups; do
	load=0
	for g in $(echo "${groups:-vfio}" | tr , ' '); do
		case $need in *",$g,"*) load=1 ;; esac
	done
	[ $load = 1 ] || continue
	[ "$UBDMA_CFG_BUILTIN" = 1 ] && continue # the own kernel has it built in
	insmod "/lib/ubdma/modules/$m" || setup_fail "insmod $m"
done </lib/ubdma/modules.order

mark "MODULES-LOADED uptime=$(cut -d' ' -f1 /proc/uptime)"
for b in $NVMES; do bind "$b" "$UBDMA_CFG_NVME_DRIVER"; done
for b in $NICS; do bind "$b" "$UBDMA_CFG_NIC_DRIVER"; done
for b in $VNETS; do bind "$b" vfio-pci; done
mark "DEVICES-BOUND uptime=$(cut -d' ' -f1 /proc/uptime)"

set -- $NVMES
export UBDMA_VM=1
export UBDMA_VM_MODE="$UBDMA_CFG_MODE"
export UBDMA_VM_NVME="${1:-}"
export UBDMA_VM_NVME_ALL="$(echo $NVMES)"
export UBDMA_VM_NVME_GROUP="$(group_of "${1:-none}")"
export UBDMA_VM_NVME_DRIVER="$UBDMA_CFG_NVME_DRIVER"
set -- $NICS
export UBDMA_VM_NIC="${1:-}"
export UBDMA_VM_NIC_ALL="$(echo $NICS)"
export UBDMA_VM_NIC_GROUP="$(group_of "${1:-none}")"
export UBDMA_VM_NIC_DRIVER="$UBDMA_CFG_NIC_DRIVER"
set -- $VNETS
export UBDMA_VM_VNET="${1:-}"
export UBDMA_VM_VNET_ALL="$(echo $VNETS)"
export UBDMA_VM_VNET_GROUP="$(group_of "${1:-none}")"

if [ "$UBDMA_CFG_NVME_DRIVER" = nvme ] && [ -n "$UBDMA_VM_NVME" ]; then
	# The namespace's block device appears once the controller's scan has finished; take the
	# first namespace of the first controller (its name need not be nvme0n1).
	i=0 ns=
	while [ $i -lt 100 ]; do
		ns=$(ls -d /sys/bus/pci/devices/$UBDMA_VM_NVME/nvme/nvme*/nvme*n1 2>/dev/null | head -n1)
		# QEMU 10's controller is multipath-capable: the kernel names the controller's path
		# nvmeXcYn1 (hidden, no /dev node) and the disk nvmeXn1
		ns=$(echo "$ns" | sed 's/\(nvme[0-9]*\)c[0-9]*\(n[0-9]*\)$/\1\2/')
		[ -n "$ns" ] && [ -b "/dev/${ns##*/}" ] && break
		usleep 100000
		i=$((i + 1))
	done
	if [ -n "$ns" ] && [ -b "/dev/${ns##*/}" ]; then
		export UBDMA_VM_NVME_BLKDEV="/dev/${ns##*/}"
	else
		setup_fail "no namespace block device for $UBDMA_VM_NVME on the kernel nvme driver"
	fi
fi
if [ "$UBDMA_CFG_NIC_DRIVER" = e1000e ] && [ -n "$UBDMA_VM_NIC" ]; then
	export UBDMA_VM_NIC_NETDEV="$(ls "/sys/bus/pci/devices/$UBDMA_VM_NIC/net" 2>/dev/null | head -n1)"
fi

env | grep '^UBDMA_VM' | sort | sed 's/^/UBDMA-VM: ENV /'
for b in $NVMES $NICS $VNETS; do
	mark "DEVICE $b $(cat /sys/bus/pci/devices/$b/vendor):$(cat /sys/bus/pci/devices/$b/device)" \
		"driver=$(drv_of "$b") group=$(group_of "$b")"
done

mark "DMESG-BEGIN 0 boot"
dmesg -c
mark "DMESG-END 0 boot"

# --- tests -------------------------------------------------------------------------------------
# run_test N NAME ARGV...: one program, its markers and the dmesg it caused.
run_test() {
	n=$1 name=$2
	shift 2
	mark "BEGIN $n $name"
	t0=$(cut -d' ' -f1 /proc/uptime)
	if [ "$UBDMA_CFG_PROG_TIMEOUT" -gt 0 ]; then
		(cd /ubdma/work && exec timeout -s KILL "$UBDMA_CFG_PROG_TIMEOUT" "$@" </dev/null)
	else
		(cd /ubdma/work && exec "$@" </dev/null)
	fi
	rc=$?
	t1=$(cut -d' ' -f1 /proc/uptime)
	# A DMAR fault is reported by an interrupt; give its handler a moment to log.
	usleep 200000
	echo
	mark "END $n $name status=$rc time=$(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }")"
	mark "DMESG-BEGIN $n $name"
	dmesg -c >/ubdma/last-dmesg
	cat /ubdma/last-dmesg
	mark "DMESG-END $n $name"
	# The kernel logs DMAR faults through a rate limit of 10 calls in 5 s (dmar_fault() in
	# drivers/iommu/intel/dmar.c); a later program's announced faults would go unlogged.
	# After a program that faulted, wait the window out.
	if grep -q "DMAR" /ubdma/last-dmesg; then
		sleep 6
	fi
}

mkdir -p /ubdma/work
mark "TESTS-BEGIN uptime=$(cut -d' ' -f1 /proc/uptime)"
. /ubdma/tests.sh
mark "DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
