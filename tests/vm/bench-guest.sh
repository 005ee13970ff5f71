#!/bin/sh
# bench-guest.sh - runs in the test-bed guest (packed by bench-check.sh): `ubdma bench` on the
# NVMe, the e1000e and a virtio-net as a user runs it, and its refusals.  The guest boots with the
# devices on their kernel drivers (run-guest.sh -n -N) and three NVMe controllers:
#   00:02.0  blank (bench-check.sh checks afterwards that only --write-range was written)
#   00:04.0  a preformatted ext4 filesystem holding data.bin (must be refused, left intact)
#   00:05.0  reads of LBA 100000 fail (QEMU blkdebug): the failing workload
#   00:06.0  an MBR partition table whose partition 1 holds ext4 (refused, left intact)
#   00:07.0  a modern virtio-net (UBDMA_BENCH_VNET), moved here from vfio-pci to virtio_pci
# UBDMA_BENCH_FIO_ENGINE (ubdma's fio engine) adds the ubdma-fio rows of `bench nvme`.
# Each check prints "BENCH-CHECK ok|not-ok <what>"; the exit status is 1 when one failed.
U=/ubdma/bin/ubdma
NV=0000:00:02.0 EXT=0000:00:04.0 BAD=0000:00:05.0 PART=0000:00:06.0 NIC=${UBDMA_VM_NIC:-0000:00:03.0}
VN=${UBDMA_BENCH_VNET:-} ENG=${UBDMA_BENCH_FIO_ENGINE:-}
fails=0

check() {
	what=$1
	shift
	if "$@"; then
		echo "BENCH-CHECK ok $what"
	else
		echo "BENCH-CHECK not-ok $what"
		fails=$((fails + 1))
	fi
}
drv() { basename "$(readlink "/sys/bus/pci/devices/$1/driver" 2>/dev/null)" 2>/dev/null; }
on() { [ "$(drv "$1")" = "$2" ]; }
# on, within 10 s (a device given back by the detached shell of an interrupted run)
soon_on() {
	si=0
	while ! on "$1" "$2" && [ $si -lt 100 ]; do usleep 100000; si=$((si + 1)); done
	on "$1" "$2"
}
# (under native multipath the controller holds nvme<S>c<C>n<N> and the disk is nvme<S>n<N>)
blk_of() {
	ls "/sys/bus/pci/devices/$1/nvme/"nvme*/ 2>/dev/null | grep -E '^nvme[0-9]+(c[0-9]+)?n[0-9]+$' |
		sed 's/c[0-9]*n/n/' | head -n1
}
# a namespace's block device, waiting for the nvme driver's scan after a rebind
wait_blk() {
	wi=0
	while [ $wi -lt 300 ]; do
		wb=$(blk_of "$1")
		[ -n "$wb" ] && [ -b "/dev/$wb" ] && return 0
		usleep 100000
		wi=$((wi + 1))
	done
	return 1
}
show() { echo "--- $1"; cat "$1"; }
# wait_for TEXT FILE TENTHS: waits until FILE holds TEXT (a running workload names itself on
# stderr), TENTHS tenths of a second at the most
wait_for() {
	local i=0
	while ! grep -q "$1" "$2" && [ $i -lt "$3" ]; do usleep 100000; i=$((i + 1)); done
}
# bench_exits STATUS LABEL ARGS...: runs `ubdma bench ARGS` (stdout in /tmp/o, stderr in /tmp/e,
# shown) and checks that it exits with STATUS; $rc keeps the status for later checks
bench_exits() {
	local want=$1 label=$2
	shift 2
	$U bench "$@" >/tmp/o 2>/tmp/e
	rc=$?
	show /tmp/e
	check "$label (was $rc)" [ $rc = "$want" ]
}
# sigint_mid_run LABEL KIND DEV DRIVER TENTHS NAME: `ubdma bench KIND DEV` (stderr in /tmp/NAME.err)
# gets SIGINT in the middle of its ubdma workload (named on stderr within TENTHS tenths of a
# second): DEV was on vfio-pci then, the exit status is 130 and DEV is back on DRIVER
sigint_mid_run() {
	local label=$1 kind=$2 dev=$3 driver=$4 tenths=$5 err=/tmp/$6.err
	$U bench "$kind" "$dev" --time 4 --no-peer --out "/tmp/$6" >"/tmp/$6.txt" 2>"$err" &
	pid=$!
	wait_for "(ubdma)" "$err" "$tenths"
	usleep 500000
	check "$label: $dev was on vfio-pci mid-run" on "$dev" vfio-pci
	kill -INT $pid
	wait $pid
	rc=$?
	show "$err"
	check "$label: exit 130 (was $rc)" [ $rc = 130 ]
	check "$label: $dev back on $driver" on "$dev" "$driver"
}
# every workload of results.csv named in report.html, with its PNG and SVG when gnuplot drew them
html_names_all() {
	[ -s "$1/report.html" ] || return 1
	for w in $(tail -n +2 "$1/results.csv" | cut -d, -f1 | sort -u); do
		grep -q ">$w<" "$1/report.html" || { echo "report.html does not name $w"; return 1; }
		[ -s "$1/hist-$w.svg" ] && [ -s "$1/hist-$w.png" ] || { echo "no plot of $w"; return 1; }
	done
}

for m in $(cat /ubdma/ext4/order); do insmod "/ubdma/ext4/$m" 2>/dev/null; done
for b in $NV $EXT $BAD $PART; do wait_blk "$b" || echo "no block device for $b"; done
NVB=$(blk_of $NV) EXTB=$(blk_of $EXT) PARTB=$(blk_of $PART)
echo "devices: $NV=$NVB $EXT=$EXTB $BAD=$(blk_of $BAD) nic $NIC=$(drv $NIC)"

# --- a namespace with a mounted ext4 is refused, nothing bound -----------------------------------
mkdir -p /mnt
check "ext4 of $EXT mounts" mount -t ext4 -o ro "/dev/$EXTB" /mnt
sum0=$(md5sum /mnt/data.bin | cut -d' ' -f1)
bench_exits 1 "mounted namespace refused with exit 1" nvme $EXT --time 0.5 --out /tmp/r-mounted
check "the refusal names the mount" grep -q "mounted on /mnt (ext4)" /tmp/e
check "the refusal names the ext4 signature" grep -q "ext4 signature" /tmp/e
check "mounted: $EXT still on nvme" on $EXT nvme
check "mounted: no report written" [ ! -e /tmp/r-mounted/report.html ]
check "mounted: data.bin intact" [ "$(md5sum /mnt/data.bin | cut -d' ' -f1)" = "$sum0" ]
umount /mnt
bench_exits 1 "unmounted ext4 refused with exit 1" nvme $EXT --time 0.5 --out /tmp/r-ext4
check "the refusal names the filesystem" grep -q "holds an ext4 signature (a filesystem)" /tmp/e
check "unmounted: $EXT still on nvme" on $EXT nvme

# --- a mounted partition: the partition and the table are named --------------------------------
mkdir -p /mnt2
check "ext4 in partition 1 of $PART mounts" mount -t ext4 "/dev/${PARTB}p1" /mnt2
bench_exits 1 "mounted partition refused with exit 1" nvme $PART --time 0.5 --out /tmp/r-part
check "the refusal names the mounted partition" grep -q "/dev/${PARTB}p1 is mounted on /mnt2 (ext4)" /tmp/e
check "the refusal names the partition table" grep -q "/dev/$PARTB holds a dos partition table" /tmp/e
check "partition: $PART still on nvme" on $PART nvme
umount /mnt2

# --- a namespace open by another process is refused ---------------------------------------------
(exec 3<"/dev/$NVB"; sleep 30) &
holder=$!
usleep 300000
$U bench nvme $NV --time 0.5 --out /tmp/r-open >/tmp/o 2>/tmp/e
rc=$?
kill $holder
wait $holder 2>/dev/null
show /tmp/e
check "namespace open elsewhere refused with exit 1 (was $rc)" [ $rc = 1 ]
check "the refusal names the process" grep -q "/dev/$NVB is open by process" /tmp/e

# --- writes without --write-range, a range past the end, a device of another class ---------------
bench_exits 2 "write workload without --write-range: exit 2" nvme $NV --workloads randwrite-4k-qd1
check "it asks for --write-range" grep -q "with --write-range LBA..LBA; nothing was bound or written" /tmp/e
bench_exits 2 "range past the namespace: exit 2" nvme $NV --write-range 0..99999999
check "it says the range is past the end" grep -q "is past the end of the namespace" /tmp/e
$U bench nvme $NIC >/tmp/o 2>/tmp/e
rc=$?
check "a NIC given to bench nvme: exit 2 (was $rc)" [ $rc = 2 ]
bench_exits 2 "a --fio-engine that is not there: exit 2" nvme $NV --fio-engine /nonexistent/libubdma_fio.so
check "it names the missing engine" grep -q -- "--fio-engine /nonexistent/libubdma_fio.so: No such file" /tmp/e
$U bench nvme 0000:00:1f.7 >/tmp/o 2>/tmp/e
rc=$?
check "an unknown BDF: exit 2 (was $rc)" [ $rc = 2 ]
check "bad arguments: $NV still on nvme" on $NV nvme

# --- the full command: fio on nvme, then ubdma on vfio-pci, given back ---------------------------
$U bench nvme $NV --time 1 --write-range 8192..16383 ${ENG:+--fio-engine $ENG} --out /tmp/full >/tmp/full.txt 2>/tmp/full.err
rc=$?
show /tmp/full.err
show /tmp/full.txt
check "full run exits 0 (was $rc)" [ $rc = 0 ]
check "full run: $NV back on nvme" on $NV nvme
check "full run: its namespace is back" wait_blk $NV
check "full run: every workload named in report.html, with PNG and SVG" html_names_all /tmp/full
for w in randread-4k-qd1 randread-4k-qd32 seqread-128k-qd8 randread-4k-qd1-bounce randwrite-4k-qd1 randwrite-4k-qd32; do
	check "full run: $w by ubdma" grep -q "^$w,ubdma,.*,\"ok\"$" /tmp/full/results.csv
done
for w in randread-4k-qd1 randread-4k-qd32 seqread-128k-qd8 randwrite-4k-qd1 randwrite-4k-qd32; do
	check "full run: $w by fio on the kernel driver" grep -q "^$w,kernel (fio io_uring),.*,\"ok\"$" /tmp/full/results.csv
done
if [ -n "$ENG" ]; then
	for w in randread-4k-qd1 randread-4k-qd32 seqread-128k-qd8 randwrite-4k-qd1 randwrite-4k-qd32; do
		check "full run: $w by fio with ubdma's engine" grep -q "^$w,ubdma-fio,.*$NV ns 1.*,\"ok\"$" /tmp/full/results.csv
	done
	check "full run: the bounce workload has no engine row, and says why" \
		grep -q '^randread-4k-qd1-bounce,ubdma-fio,.*"skipped: the fio engine has no bounce-buffer mode' /tmp/full/results.csv
	check "full run: the engine's fio loaded libubdma_fio.so" grep -q 'external:.*libubdma_fio.so' /tmp/full/ubdma-fio-randread-4k-qd32.json
	check "full run: ubdma-fio named in the table" grep -q "randread-4k-qd32 *ubdma-fio" /tmp/full.txt
else
	check "full run: the engine rows say why they were skipped" \
		grep -q '^randread-4k-qd1,ubdma-fio,.*"skipped: ' /tmp/full/results.csv
fi
check "full run: the IOMMU map/unmap rows" grep -q '^iommu-unmap-4k,ubdma vfio,.*"ok"$' /tmp/full/results.csv
check "full run: the breakdown names the device's part" grep -q "doorbell to completion" /tmp/full.txt
$U --json bench nvme $NV --time 0.5 --no-peer --workloads randread-4k-qd1 --out /tmp/js >/tmp/js.json 2>/tmp/js.err
rc=$?
check "--json exits 0 (was $rc)" [ $rc = 0 ]
check "--json prints an array of rows" grep -q '^\[{"name":"randread-4k-qd1",.*{"name":"randread-4k-qd1","impl":"ubdma","target":"[^"]*","unit":"ns","median":[0-9.]*,"p90"' /tmp/js.json
$U bench nvme $NV --time 0.5 --no-peer --workloads randread-4k-qd1 --csv --out /tmp/csv >/tmp/csv.out 2>/dev/null
check "--csv prints the CSV" grep -q '^randread-4k-qd1,ubdma,' /tmp/csv.out

# --- SIGINT in the middle of a ubdma workload -------------------------------------------------------
sigint_mid_run SIGINT nvme $NV nvme 100 int
check "SIGINT: its namespace is back" wait_blk $NV

# --- SIGINT while fio runs (the kernel peer): fio stopped, the device never left nvme ---------------
$U bench nvme $NV --time 4 --workloads randread-4k-qd1 --out /tmp/intfio >/dev/null 2>/tmp/intfio.err &
pid=$!
wait_for "(kernel (fio io_uring))" /tmp/intfio.err 100
usleep 800000
check "SIGINT during fio: fio was running" pidof fio
kill -INT $pid
wait $pid
rc=$?
usleep 300000
check "SIGINT during fio: exit 130 (was $rc)" [ $rc = 130 ]
check "SIGINT during fio: fio is gone" sh -c '! pidof fio'
check "SIGINT during fio: $NV on nvme" on $NV nvme

# --- SIGINT while fio runs ubdma's engine: fio stopped, the device back on nvme -------------------
if [ -n "$ENG" ]; then
	# (fio on nvme, ubdma, the IOMMU rows, then the engine: some 25 s before it starts)
	$U bench nvme $NV --time 3 --workloads randread-4k-qd1 --fio-engine $ENG --out /tmp/inteng >/dev/null 2>/tmp/inteng.err &
	pid=$!
	wait_for "(ubdma-fio)" /tmp/inteng.err 900
	usleep 1500000
	check "SIGINT during the engine's fio: $NV was on vfio-pci" on $NV vfio-pci
	check "SIGINT during the engine's fio: fio was running" pidof fio
	kill -INT $pid
	wait $pid
	rc=$?
	usleep 300000
	show /tmp/inteng.err
	check "SIGINT during the engine's fio: exit 130 (was $rc)" [ $rc = 130 ]
	check "SIGINT during the engine's fio: fio is gone" sh -c '! pidof fio'
	check "SIGINT during the engine's fio: $NV back on nvme" on $NV nvme
	check "SIGINT during the engine's fio: its namespace is back" wait_blk $NV
fi

# --- a crash mid-workload: the handler leaves the device to a shell that waits for the end -------
$U bench nvme $NV --time 6 --no-peer --workloads randread-4k-qd32 --out /tmp/crash >/dev/null 2>/tmp/crash.err &
pid=$!
wait_for "(ubdma)" /tmp/crash.err 100
usleep 500000
kill -SEGV $pid
wait $pid
rc=$?
show /tmp/crash.err
check "crash: the process died of SIGSEGV (status $rc)" [ $rc = 139 ]
check "crash: the handler said the device goes back" grep -q "the device goes back to its driver as this process ends" /tmp/crash.err
check "crash: $NV back on nvme" soon_on $NV nvme
check "crash: its namespace is back" wait_blk $NV

# --- SIGTERM likewise -----------------------------------------------------------------------------
$U bench nvme $NV --time 4 --no-peer --workloads randread-4k-qd32 --out /tmp/term >/dev/null 2>/tmp/term.err &
pid=$!
wait_for "(ubdma)" /tmp/term.err 100
usleep 500000
kill -TERM $pid
wait $pid
rc=$?
check "SIGTERM: exit 143 (was $rc)" [ $rc = 143 ]
check "SIGTERM: $NV back on nvme" on $NV nvme

# --- a controller found on vfio-pci stays there; its namespace is probed before any write ----------
$U bind $EXT >/dev/null
check "$EXT bound to vfio-pci by ubdma bind" on $EXT vfio-pci
bench_exits 1 "ext4 read through ubdma refused before writing, exit 1" nvme $EXT --time 0.5 --write-range 8192..8199 --workloads randwrite-4k-qd1 --out /tmp/r-vfio
check "the refusal names the ext4 signature of the namespace" grep -q "refusing to write to $EXT: namespace 1 holds an ext4 signature" /tmp/e
check "refused: $EXT still on vfio-pci" on $EXT vfio-pci
UBDMA_FIO_ENGINE=/nonexistent/libubdma_fio.so $U bench nvme $EXT --time 0.5 --workloads randread-4k-qd1 \
	--out /tmp/r-vfio2 >/tmp/o 2>/tmp/e
rc=$?
show /tmp/e
check "reads of a controller found on vfio-pci: exit 0 (was $rc)" [ $rc = 0 ]
check "no engine: the ubdma-fio row says why it was skipped" \
	grep -q '^randread-4k-qd1,ubdma-fio,.*"skipped: UBDMA_FIO_ENGINE=/nonexistent/libubdma_fio.so cannot be read"$' /tmp/r-vfio2/results.csv
check "found on vfio-pci: the kernel row says why it was skipped" grep -q '^randread-4k-qd1,kernel (fio io_uring),.*"skipped: the controller was on vfio-pci' /tmp/r-vfio2/results.csv
check "found on vfio-pci: still on vfio-pci" on $EXT vfio-pci
$U unbind $EXT >/dev/null
check "$EXT back on nvme after ubdma unbind" wait_blk $EXT

# --- a failing workload (the device fails the reads) ------------------------------------------------
$U bench nvme $BAD --time 1 --read-range 100000..100007 --workloads randread-4k-qd1 --out /tmp/fail >/tmp/fail.txt 2>/tmp/fail.err
rc=$?
show /tmp/fail.err
check "failing workload: exit 1 (was $rc)" [ $rc = 1 ]
check "failing workload: the device's error named" grep -q "randread-4k-qd1 failed: the device failed a read" /tmp/fail.err
check "failing workload: $BAD back on nvme" on $BAD nvme

# --- the e1000e ---------------------------------------------------------------------------------------
check "$NIC starts on e1000e" on $NIC e1000e
DPDK=
for p in ${UBDMA_BENCH_PMDS:-}; do DPDK="$DPDK --dpdk-arg -d --dpdk-arg $p"; done
$U bench nic $NIC --time 1 --ping 10.0.2.2 $DPDK --out /tmp/nic >/tmp/nic.txt 2>/tmp/nic.err
rc=$?
show /tmp/nic.err
show /tmp/nic.txt
check "nic run exits 0 (was $rc)" [ $rc = 0 ]
check "nic run: $NIC back on e1000e" on $NIC e1000e
check "nic run: every workload named in report.html, with PNG and SVG" html_names_all /tmp/nic
for w in tx-64B-burst32 tx-64B-qd1 arp-rtt; do
	check "nic run: $w by ubdma" grep -q "^$w,ubdma,.*,\"ok\"$" /tmp/nic/results.csv
done
if [ -n "${UBDMA_BENCH_PMDS:-}" ]; then
	[ -s /tmp/nic/testpmd.log ] && show /tmp/nic/testpmd.log
	check "nic run: testpmd beside it" grep -q '^tx-64B-burst32,testpmd (DPDK txonly),.*,"ok"$' /tmp/nic/results.csv
else
	check "nic run: the testpmd row says why it did not run" grep -q '^tx-64B-burst32,testpmd (DPDK txonly),.*"skipped: ' /tmp/nic/results.csv
fi
ND=$(ls /sys/bus/pci/devices/$NIC/net | head -n1)
ip link set "$ND" up
ip addr add 10.0.2.15/24 dev "$ND"
bench_exits 1 "NIC with an address refused with exit 1" nic $NIC --time 0.5 --out /tmp/nic2
check "the refusal names the address" grep -q "$ND has the address 10.0.2.15" /tmp/e
check "refused: $NIC still on e1000e" on $NIC e1000e
ip addr del 10.0.2.15/24 dev "$ND"
ip link set "$ND" down

# --- the virtio-net ----------------------------------------------------------------------------------
# guest-init gave it to vfio-pci; here it goes to the kernel's virtio_pci / virtio_net, so that
# `bench nic` must check its netdev, bind it and give it back
vnd() { ls /sys/bus/pci/devices/$VN/virtio*/net 2>/dev/null | head -n1; }
wait_vnd() {
	vi=0
	while [ -z "$(vnd)" ] && [ $vi -lt 100 ]; do usleep 100000; vi=$((vi + 1)); done
	[ -n "$(vnd)" ]
}
if [ -n "$VN" ]; then
	for m in $(cat /ubdma/virtio/order); do insmod "/ubdma/virtio/$m" 2>/dev/null; done
	check "$VN starts on vfio-pci (guest-init)" on $VN vfio-pci
	echo >/sys/bus/pci/devices/$VN/driver_override
	echo $VN >/sys/bus/pci/drivers/vfio-pci/unbind
	echo $VN >/sys/bus/pci/drivers_probe
	check "$VN moved to virtio-pci" on $VN virtio-pci
	check "$VN has a netdev (virtio_net)" wait_vnd
	$U bench nic $VN --time 1 --ping 10.0.2.2 $DPDK --out /tmp/vnic >/tmp/vnic.txt 2>/tmp/vnic.err
	rc=$?
	show /tmp/vnic.err
	show /tmp/vnic.txt
	check "virtio-net run exits 0 (was $rc)" [ $rc = 0 ]
	check "virtio-net run: the report names the device" grep -q "^ubdma bench nic: $VN (1af4:1041, virtio-net), found on virtio-pci as " /tmp/vnic.txt
	check "virtio-net run: $VN back on virtio-pci" on $VN virtio-pci
	check "virtio-net run: its netdev is back" wait_vnd
	check "virtio-net run: every workload named in report.html, with PNG and SVG" html_names_all /tmp/vnic
	for w in tx-64B-burst32 tx-64B-qd1 arp-rtt; do
		check "virtio-net run: $w by ubdma" grep -q "^$w,ubdma,.*$VN.*,\"ok\"$" /tmp/vnic/results.csv
	done
	check "virtio-net run: the breakdown names the virtio-net driver's call" grep -q "ubdma_virtio_net_tx_burst() of 1 frame" /tmp/vnic.txt
	check "virtio-net run: and the device's part" grep -q "doorbell to used-ring entry" /tmp/vnic.txt
	if [ -n "${UBDMA_BENCH_PMDS:-}" ]; then
		[ -s /tmp/vnic/testpmd.log ] && show /tmp/vnic/testpmd.log
		check "virtio-net run: testpmd (net_virtio) beside it" grep -q "^tx-64B-burst32,testpmd (DPDK txonly),.*$VN.*,\"ok\"$" /tmp/vnic/results.csv
	else
		check "virtio-net run: the testpmd row says why it did not run" grep -q '^tx-64B-burst32,testpmd (DPDK txonly),.*"skipped: ' /tmp/vnic/results.csv
	fi
	# an address on its netdev: refused, then run with --force
	VND=$(vnd)
	ip link set "$VND" up
	ip addr add 10.0.3.15/24 dev "$VND"
	bench_exits 1 "virtio-net with an address refused with exit 1" nic $VN --time 0.5 --out /tmp/vnic2
	check "the refusal names the virtio-net's address" grep -q "$VND has the address 10.0.3.15" /tmp/e
	check "refused: $VN still on virtio-pci" on $VN virtio-pci
	bench_exits 0 "virtio-net with an address and --force: exit 0" nic $VN --force --no-peer --time 0.5 --out /tmp/vnic3
	check "--force: $VN back on virtio-pci" on $VN virtio-pci
	check "--force: its netdev is back" wait_vnd
	# SIGINT in the middle of a ubdma workload on it
	sigint_mid_run "virtio-net SIGINT" nic $VN virtio-pci 200 vint
	# found on vfio-pci: used there and left there
	$U bind $VN >/dev/null
	check "$VN bound to vfio-pci by ubdma bind" on $VN vfio-pci
	bench_exits 0 "virtio-net found on vfio-pci: exit 0" nic $VN --time 0.5 --no-peer --out /tmp/vnic4
	check "virtio-net found on vfio-pci: tx-64B-qd1 by ubdma" grep -q "^tx-64B-qd1,ubdma,.*$VN.*,\"ok\"$" /tmp/vnic4/results.csv
	check "virtio-net found on vfio-pci: still on vfio-pci" on $VN vfio-pci
	$U unbind $VN >/dev/null
	check "$VN back on virtio-pci after ubdma unbind" on $VN virtio-pci
else
	check "a virtio-net in the guest (UBDMA_BENCH_VNET is not set)" false
fi

# --- the IOMMU --------------------------------------------------------------------------------------
$U bench iommu --dev $NV --time 0.3 --out /tmp/iommu >/tmp/iommu.txt 2>/tmp/iommu.err
rc=$?
show /tmp/iommu.err
show /tmp/iommu.txt
check "iommu run exits 0 (was $rc)" [ $rc = 0 ]
check "iommu run: vfio map rows measured" grep -q '^iommu-map-4k,ubdma vfio,.*"ok"$' /tmp/iommu/results.csv
check "iommu run: va rows measured" grep -q '^translate,ubdma va,.*"ok"$' /tmp/iommu/results.csv
check "iommu run: every workload named in report.html, with PNG and SVG" html_names_all /tmp/iommu
check "iommu run: $NV back on nvme" on $NV nvme

echo "bench-guest: $fails check(s) failed"
[ $fails = 0 ]
