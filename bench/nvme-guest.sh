#!/bin/sh
# nvme-guest.sh SECS ROUNDS IRQ BENCH [RANGE_MIB] - bench/nvme INSIDE the test-bed guest: the ubdma
# driver and the kernel's nvme driver + Debian's fio on the same controller, interleaved.
#
# For each round and each workload (4 KiB random I/O, bench/nvme-fio/workloads.fio: randread QD
# 1/8/32, randwrite QD 1/32 on CPU 0, randread QD 32 with two job threads on CPUs 0 and 1):
#   ubdma              BENCH (bench_nvme), polled completions, the NVMe on vfio-pci (_jobs2: two threads)
#   ubdma-irq          BENCH --irq, MSI-X eventfd completions (IRQ=1 only)
#   ubdma-fio          fio with the ubdma_nvme engine (libubdma_fio.so), polled, on vfio-pci
#   ubdma-fio-irq      the same with completions=irq (IRQ=1 only)
#   ubdma-hybrid       BENCH --hybrid H: polls, after H empty polls sleeps on the eventfd (IRQ=1, H > 0)
#   ubdma-fio-hybrid   fio with the engine's completions=hybrid hybrid_polls=H, the same
# (H: $UBDMA_NVME_HYBRID, bench/nvme.sh -H; 0: no hybrid rows)
#   fio-io_uring       the NVMe on the kernel nvme driver (poll_queues=1), fio ioengine=io_uring
#   fio-io_uring-poll  the same with hipri (polled completions on the poll queue)
# Every fio row runs the SAME job: IMPL.fio (only the engine and the target) followed by
# workloads.fio in one job file, fio --section=W.  The engine and job folder come from UBDMA_FIO_ENGINE and
# UBDMA_FIO_JOBS; without the engine the ubdma-fio rows are not run (and the report says so).
# Odd rounds run ubdma first, even rounds the kernel first, and every workload switches drivers,
# so that the host's load, which drifts over minutes on a shared machine, falls on both sides
# alike.  fio runs with direct I/O, fixed buffers and registered files over the same LBA range as
# bench_nvme, and times with the TSC (clocksource=cpu) as bench_nvme does: the guest's
# clocksource is the HPET, whose every read is a system call and an exit into QEMU.  Each fio run's JSON is printed between "FIOBENCH-BEGIN name impl round=R
# window_s=S busy_s=B" and "FIOBENCH-END name impl" (B: busy guest CPU seconds of every CPU, CPUs x
# wall - idle, over a window of S seconds inside the run); bench_nvme prints "NVBENCH {json}".
SECS=${1:-3} ROUNDS=${2:-3} IRQ=${3:-1} BENCH=${4:?usage: nvme-guest.sh SECS ROUNDS IRQ BENCH [RANGE_MIB]} RANGE=${5:-32}
BDF=${UBDMA_VM_NVME:?no NVMe}
FIO=${FIO:-/usr/bin/fio}
D=/sys/bus/pci/devices/$BDF
WORKLOADS=${UBDMA_NVME_WORKLOADS:-randread_qd1 randread_qd8 randread_qd32 randwrite_qd1 randwrite_qd32 randread_qd32_jobs2}
ENGINE=${UBDMA_FIO_ENGINE:-} JOBS=${UBDMA_FIO_JOBS:-} HYBRID=${UBDMA_NVME_HYBRID:-0}
GTOD=${UBDMA_FIO_GTOD_REDUCE:-1}
BDF_DOTS=$(echo "$BDF" | sed 's/:/./g')
say() { echo "# nvme-guest: $*"; }
[ -f "$JOBS/workloads.fio" ] || { say "no fio job files (UBDMA_FIO_JOBS=$JOBS)"; exit 1; }

# Busy CPU seconds of the guest so far: CPUs x uptime - idle - iowait.  The idle columns come from
# the NO_HZ idle clock; user/system are tick samples, which under TCG missed half of fio's own CPU
# time (its rusage).  bench_nvme counts the same way.
busy() {
	awk -v up="$(cut -d' ' -f1 /proc/uptime)" '/^cpu / { idle = ($5 + $6) / 100 } /^cpu[0-9]/ { n++ }
		END { printf "%.2f", n * up - idle }' /proc/stat
}

# the kernel side needs nvme loaded with one poll queue (a module parameter)
if grep -q '^nvme ' /proc/modules; then rmmod nvme || { say "rmmod nvme failed"; exit 1; }; fi
for m in crct10dif_common crct10dif_generic crc-t10dif crc64 crc64_rocksoft_generic crc64-rocksoft t10-pi nvme-core; do
	grep -q "^$(echo $m | tr - _) " /proc/modules || insmod /lib/ubdma/modules/$m.ko 2>/dev/null
done

bind() { # driver: hand the controller to vfio-pci or nvme (loading nvme the first time)
	cur=$(basename "$(readlink "$D/driver" 2>/dev/null)" 2>/dev/null)
	[ "$cur" = "$1" ] && return 0
	[ -e "$D/driver" ] && echo "$BDF" >"$D/driver/unbind"
	if [ "$1" = nvme ]; then
		echo >"$D/driver_override"
		if ! grep -q '^nvme ' /proc/modules; then
			insmod /lib/ubdma/modules/nvme.ko poll_queues=1 || { say "insmod nvme poll_queues=1 failed"; return 1; }
		fi
	else
		echo vfio-pci >"$D/driver_override"
	fi
	echo "$BDF" >/sys/bus/pci/drivers_probe 2>/dev/null
	[ "$(basename "$(readlink "$D/driver" 2>/dev/null)" 2>/dev/null)" = "$1" ] || { say "$BDF did not bind to $1"; return 1; }
	[ "$1" = nvme ] || return 0
	i=0 dev=
	while [ $i -lt 100 ]; do
		ns=$(ls -d $D/nvme/nvme*/nvme*n1 2>/dev/null | head -n1)
		# a multipath-capable controller (QEMU 10): its path is nvmeXcYn1, the disk nvmeXn1
		ns=$(echo "$ns" | sed 's/\(nvme[0-9]*\)c[0-9]*\(n[0-9]*\)$/\1\2/')
		[ -n "$ns" ] && [ -b "/dev/${ns##*/}" ] && dev=/dev/${ns##*/} && return 0
		usleep 100000
		i=$((i + 1))
	done
	say "no block device after binding $BDF to nvme"
	return 1
}

fails=0
# fio_one IMPL WORKLOAD ROUND TARGET: one fio run of the shared job, its JSON between markers
fio_one() {
	# fio runs 1 s of ramp + SECS + 2 s; guest CPU is sampled over [2 s, SECS + 2 s] of it, so that fio's
	# start (loading its libraries) and exit are not counted, as bench_nvme counts only its loop
	out=/tmp/fio-$2-$1.json
	cat "$JOBS/$1.fio" "$JOBS/workloads.fio" >/tmp/job-$1.fio
	ENGINE=$ENGINE F=$4 RANGE=${RANGE}M RUNTIME=$((SECS + 2)) HYBRID=$HYBRID GTOD_REDUCE=$GTOD $FIO --output-format=json+ --section=$2 \
		/tmp/job-$1.fio >$out 2>&1 &
	pid=$!
	sleep 2
	b0=$(busy)
	sleep $SECS
	b1=$(busy)
	wait $pid || { fails=$((fails + 1)); say "fio $2 $1 failed"; tail -n 5 $out; }
	echo "FIOBENCH-BEGIN $2 $1 round=$3 window_s=$SECS busy_s=$(awk -v a=$b0 -v b=$b1 'BEGIN { printf "%.2f", b - a }')"
	cat $out
	echo "FIOBENCH-END $2 $1"
}

run_ubdma() { # workload round
	bind vfio-pci || return 1
	# _jobsJ: bench_nvme's J threads, one a CPU, each its own queue pair
	$BENCH --time "$SECS" --range "$RANGE" --workloads "$1" --round "$2" || { fails=$((fails + 1)); say "bench_nvme $1 failed"; }
	if [ "$IRQ" = 1 ]; then
		$BENCH --time "$SECS" --range "$RANGE" --workloads "$1" --round "$2" --irq ||
			{ fails=$((fails + 1)); say "bench_nvme --irq $1 failed"; }
		[ "$HYBRID" -gt 0 ] && { $BENCH --time "$SECS" --range "$RANGE" --workloads "$1" --round "$2" \
			--hybrid "$HYBRID" || { fails=$((fails + 1)); say "bench_nvme --hybrid $1 failed"; }; }
	fi
	if [ -n "$ENGINE" ]; then
		fio_one ubdma-fio "$1" "$2" "$BDF_DOTS"
		[ "$IRQ" = 1 ] && fio_one ubdma-fio-irq "$1" "$2" "$BDF_DOTS"
		[ "$IRQ" = 1 ] && [ "$HYBRID" -gt 0 ] && fio_one ubdma-fio-hybrid "$1" "$2" "$BDF_DOTS"
	fi
	return 0
}
run_fio() { # workload round
	bind nvme || return 1
	for impl in fio-io_uring fio-io_uring-poll; do
		fio_one $impl "$1" "$2" "$dev"
	done
	return 0
}

say "namespace on ${UBDMA_NVME_DEV:-file}; fio gtod_reduce=$GTOD"
# what an idle pair's poll and its periodic check cost (bench_nvme poll_idle: "NVPOLL {json}")
bind vfio-pci && { $BENCH --workloads poll_idle --round 0 || say "bench_nvme poll_idle failed"; }
r=1
while [ $r -le "$ROUNDS" ]; do
	say "round $r of $ROUNDS: $([ $((r % 2)) = 1 ] && echo "ubdma first" || echo "kernel first")"
	for w in $WORKLOADS; do
		if [ $((r % 2)) = 1 ]; then
			run_ubdma $w $r && run_fio $w $r || fails=$((fails + 1))
		else
			run_fio $w $r && run_ubdma $w $r || fails=$((fails + 1))
		fi
	done
	r=$((r + 1))
done
bind vfio-pci
exit $fails
