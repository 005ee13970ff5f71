#!/bin/sh
# nvme-guest.sh SECS [RANGE_MIB] - the kernel's side of bench/nvme, run INSIDE the test-bed guest
# (bench/nvme.sh packs it after bench_nvme): hands the NVMe from vfio-pci to the kernel nvme
# driver loaded with poll queues, then runs Debian's fio on the namespace for each workload with
#   fio-io_uring       ioengine=io_uring (interrupt completions)
#   fio-io_uring-poll  ioengine=io_uring, hipri (polled completions on the nvme.poll_queues queue)
# both with direct I/O, fixed buffers and registered files, 4 KiB, one job pinned to CPU 0, over
# the same LBA range as bench_nvme.  Each run's JSON is printed between "FIOBENCH-BEGIN name impl
# window_s=S busy_s=B" and "FIOBENCH-END name impl" (B: guest CPU seconds of every CPU, from
# /proc/stat, over a window of S seconds inside the run).
SECS=${1:-3} RANGE=${2:-32}
BDF=${UBDMA_VM_NVME:?no NVMe}
FIO=${FIO:-/usr/bin/fio}
D=/sys/bus/pci/devices/$BDF
say() { echo "# nvme-guest: $*"; }
busy() { awk '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / 100 }' /proc/stat; }

# 1. vfio-pci -> nvme with one poll queue (a module parameter: reload nvme with it)
[ -e "$D/driver" ] && echo "$BDF" >"$D/driver/unbind"
echo >"$D/driver_override"
if grep -q '^nvme ' /proc/modules; then rmmod nvme || { say "rmmod nvme failed"; exit 1; }; fi
for m in crct10dif_common crct10dif_generic crc-t10dif crc64 crc64_rocksoft_generic crc64-rocksoft t10-pi nvme-core; do
	grep -q "^$(echo $m | tr - _) " /proc/modules || insmod /lib/ubdma/modules/$m.ko 2>/dev/null
done
insmod /lib/ubdma/modules/nvme.ko poll_queues=1 || { say "insmod nvme poll_queues=1 failed"; exit 1; }
echo "$BDF" >/sys/bus/pci/drivers_probe 2>/dev/null
i=0 dev=
while [ $i -lt 100 ]; do
	ns=$(ls -d $D/nvme/nvme*/nvme*n1 2>/dev/null | head -n1)
	[ -n "$ns" ] && [ -b "/dev/${ns##*/}" ] && dev=/dev/${ns##*/} && break
	usleep 100000
	i=$((i + 1))
done
[ -n "$dev" ] || { say "no block device after binding $BDF to nvme"; exit 1; }
say "$BDF on $(basename "$(readlink "$D/driver")"), $dev, poll_queues=$(cat /sys/module/nvme/parameters/poll_queues)," \
	"queues: $(cat /sys/block/${dev#/dev/}/queue/nr_requests 2>/dev/null) requests, io_poll=$(cat /sys/block/${dev#/dev/}/queue/io_poll 2>/dev/null)"

fails=0
for w in randread_qd1 randread_qd8 randread_qd32 randwrite_qd1 randwrite_qd32; do
	rw=${w%_qd*} qd=${w#*_qd}
	for impl in fio-io_uring fio-io_uring-poll; do
		extra=
		[ $impl = fio-io_uring-poll ] && extra=--hipri=1
		# fio runs 1 s of ramp + SECS + 2 s; guest CPU is sampled over [2 s, SECS + 2 s] of it, so that fio's
		# start (loading its libraries) and exit are not counted, as bench_nvme counts only its loop
		out=/tmp/fio-$w-$impl.json
		$FIO --name=$w --filename=$dev --ioengine=io_uring --direct=1 --rw=$rw --bs=4k \
			--iodepth=$qd --iodepth_batch_submit=1 --iodepth_batch_complete_max=$qd --numjobs=1 \
			--cpus_allowed=0 --size=${RANGE}M --time_based --runtime=$((SECS + 2)) --ramp_time=1 \
			--fixedbufs=1 --registerfiles=1 --norandommap --randrepeat=1 $extra \
			--lat_percentiles=1 --percentile_list=50:99:99.9:99.99 --output-format=json+ >$out 2>&1 &
		pid=$!
		sleep 2
		b0=$(busy)
		sleep $SECS
		b1=$(busy)
		wait $pid || { fails=$((fails + 1)); say "fio $w $impl failed"; }
		echo "FIOBENCH-BEGIN $w $impl window_s=$SECS busy_s=$(awk -v a=$b0 -v b=$b1 'BEGIN { printf "%.2f", b - a }')"
		cat $out
		echo "FIOBENCH-END $w $impl"
	done
done
exit $fails
