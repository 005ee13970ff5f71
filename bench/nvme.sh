#!/bin/bash
# bench/nvme.sh - libubdma_nvme beside the kernel's nvme driver + Debian's fio, in ONE guest boot.
#
# Boots the test-bed guest (tests/vm/run-guest.sh) with its NVMe's namespace on QEMU's null-co
# block driver (-D file: a 64 MiB backing file of random bytes) and runs bench/nvme-guest.sh there: for each round, for 4 KiB randread at QD 1, 8, 32 and
# randwrite at QD 1, 32, one core (CPU 0), and randread QD 32 in two job threads on two CPUs, the
# ubdma driver polled ("ubdma", bench_nvme) and with MSI-X eventfds ("ubdma-irq"; -P: not run),
# Debian's fio with the ubdma_nvme engine ("ubdma-fio", "ubdma-fio-irq"; libubdma_fio.so from
# BUILD), then the NVMe handed to the kernel nvme driver (poll_queues=1) and the same fio jobs
# (bench/nvme-fio/workloads.fio) with io_uring ("fio-io_uring") and io_uring + hipri
# ("fio-io_uring-poll"); odd rounds start with ubdma, even rounds with the kernel.  Then, on the
# host, bench/nvme_report.py reads the console log and prints the side-by-side table of medians
# over the rounds (or --json / --csv) and gnuplot draws the latency histograms
# (OUT/nvme-latency.png and .svg).
#
# usage: bench/nvme.sh [-B BUILD] [-o OUT] [-t SECS] [-r ROUNDS] [-P] [-I ICOUNT] [-w WORKLOADS]
#                      [-H POLLS] [-D null|file] [-L] [-Q QEMU] [-N NICE] [-S one[:CPU]|free]
#                      [--json | --csv]
#   -B BUILD  meson build folder with bench/bench_nvme (default: build)
#   -o OUT    output folder (default: BUILD/bench/nvme-out)
#   -t SECS   seconds a workload (default 3)
#   -r ROUNDS rounds (default 3)
#   -P        polled ubdma only: skip the ubdma-irq run
#   -I ICOUNT guest clock (default off: two CPUs on the host's clock); QEMU -icount sub-options,
#             e.g. shift=2,sleep=off: one guest CPU whose time counts instructions, as bench/nic.sh;
#             with -D null the kernel's rows run clean (docs/nvme.md, "Benchmark"); with -D file
#             QEMU 7.2's NVMe left the kernel's nvme driver waiting for 30 s I/O timeouts at QD 32
#   -w LIST   comma-separated workloads (default: all; randread_qd32_jobs2 needs -I off, or -Q 10:
#             two guest CPUs under -icount, booted by qboot: docs/nvme.md)
#   -H POLLS  the hybrid rows (ubdma-hybrid, ubdma-fio-hybrid) poll, and after POLLS polls that
#             found nothing sleep on the MSI-X eventfd (default 64; 0: no hybrid rows)
#   -D DEV    the namespace both sides use: null (default) QEMU's null-co block driver (reads give
#             zeroes, writes are dropped, no host file I/O: the device completes in QEMU's main
#             loop, so the rows measure the drivers' CPU per I/O, not the host's disk and load), or
#             file: a 64 MiB backing file of random bytes (the device's latency is then the host's
#             file I/O on shared cores; docs/nvme.md, "Benchmark")
#   -L        fio keeps its latency percentiles (gtod_reduce=0) on every fio row; by default the
#             job files set gtod_reduce=1, as SPDK's fio perf jobs do, on both sides alike
#   -Q QEMU   boot the guest with this qemu-system-x86_64 instead of the one in PATH
#             (run-guest.sh's UBDMA_QEMU); OUT/qemu-version.txt says which ran.  -Q 10: QEMU 10.0
#             from bookworm-backports, unpacked by tools/qemu10.sh into /var/cache/ubdma/qemu10
#             (docs/nvme.md, "QEMU 10.0"); under -I it boots two guest CPUs and adds the
#             randread_qd32_jobs2 workload to the default list
#   -N NICE   run QEMU's main-loop thread (the emulated NVMe's: it does each command's work
#             there) at this nice value, e.g. -10 (root), its vCPU thread left as it is: on a
#             loaded host the scheduler otherwise leaves the device's work waiting for
#             milliseconds while a polling vCPU spins (docs/nvme.md, "The host's scheduler")
#   -S PLACE  where QEMU's threads run on the host.  one[:CPU] (the default under -I): every thread
#             of QEMU on one host CPU (default 0), and every thread but the main loop's (the vCPU,
#             QEMU's RCU and worker threads) SCHED_IDLE, so that the emulated NVMe's work in the
#             main loop runs at once and while it runs the vCPU does not, in the ubdma and the
#             kernel rows alike: the null device then completes in no guest time, and the rows
#             count the drivers' instructions, not the host's wake-ups (docs/nvme.md, "One host
#             CPU").  free (the default on the host's clock, -I off): as the host's scheduler
#             places them (on the host's clock a descheduled vCPU's time passes in the guest)
# Device and CPU are both emulated (QEMU TCG): compare ratios between rows, not absolute numbers.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B=build OUT= SECS=3 ROUNDS=3 IRQ=1 FMT=table ICOUNT=off WL= HYBRID=64
DEV=null GTOD=1 NICE= PLACE=
while [ $# -gt 0 ]; do
	case $1 in
	-B) B=$2; shift ;;
	-o) OUT=$2; shift ;;
	-t) SECS=$2; shift ;;
	-r) ROUNDS=$2; shift ;;
	-P) IRQ=0 ;;
	-I) ICOUNT=$2; shift ;;
	-w) WL=$2; shift ;;
	-H) HYBRID=$2; shift ;;
	-D) DEV=$2; shift ;;
	-L) GTOD=0 ;;
	-N) NICE=$2; shift ;;
	-S) PLACE=$2; shift ;;
	-Q) q=$2
		[ "$q" = 10 ] && q=$(bash "$ROOT/tools/qemu10.sh")
		[ -x "$q" ] || { echo "nvme.sh: -Q $2: not an executable" >&2; exit 2; }
		UBDMA_QEMU=$(readlink -f "$q"); export UBDMA_QEMU; shift ;;
	--json) FMT=json ;;
	--csv) FMT=csv ;;
	-h|--help) sed -n '2,56p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "nvme.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done
[[ $SECS =~ ^[0-9]+$ ]] && [ "$SECS" -ge 1 ] || { echo "nvme.sh: -t wants whole seconds" >&2; exit 2; }
[[ $ROUNDS =~ ^[0-9]+$ ]] && [ "$ROUNDS" -ge 1 ] || { echo "nvme.sh: -r wants a count of rounds" >&2; exit 2; }
[[ $HYBRID =~ ^[0-9]+$ ]] || { echo "nvme.sh: -H wants a count of polls" >&2; exit 2; }
case $DEV in null | file) ;; *) echo "nvme.sh: -D wants null or file" >&2; exit 2 ;; esac
[ -z "$NICE" ] || [[ $NICE =~ ^-?[0-9]+$ ]] && [ "${NICE:-0}" -ge -20 ] && [ "${NICE:-0}" -le 19 ] ||
	{ echo "nvme.sh: -N wants a nice value, -20..19" >&2; exit 2; }
[ -n "$PLACE" ] || { [ "$ICOUNT" = off ] && PLACE=free || PLACE=one; }
[ "$PLACE" = one ] && PLACE=one:0
[[ $PLACE =~ ^(free|one:[0-9]+)$ ]] || { echo "nvme.sh: -S wants one, one:CPU or free" >&2; exit 2; }
PCPU=${PLACE#one:}
[ "$PLACE" = free ] || [ -d "/sys/devices/system/cpu/cpu$PCPU" ] || { echo "nvme.sh: -S $PLACE: no CPU $PCPU" >&2; exit 2; }
B=$(cd "$B" && pwd)
OUT=${OUT:-$B/bench/nvme-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BENCH=$B/bench/bench_nvme
[ -x "$BENCH" ] || meson compile -C "$B" bench/bench_nvme >&2
FIO=$(command -v fio) || { echo "nvme.sh: fio not found: apt-get install fio" >&2; exit 2; }
command -v gnuplot >/dev/null || echo "nvme.sh: gnuplot not found (apt-get install gnuplot-nox): no plot" >&2
ASSETS=${UBDMA_VM_ASSETS:-$B/tests/vm/guest-assets}

# the namespace: QEMU's null-co (latency-ns 0: a command completes in QEMU's main loop, no host
# file I/O), or a backing file of random bytes, so that reads are not of holes
if [ "$DEV" = null ]; then
	DISKARGS=(-D 'driver=null-co,read-zeroes=on,size=64M')
else
	dd if=/dev/urandom of="$OUT/nvme.img" bs=1M count=64 status=none
	DISKARGS=(-d "$OUT/nvme.img")
fi

GB=/ubdma/bench/bench_nvme
# the fio engine, when the build has it (drivers/nvme/fio: fio's source tree from tools/deps.sh)
ENG=$B/drivers/nvme/fio/libubdma_fio.so FIOARGS=()
if [ -f "$ENG" ]; then
	FIOARGS=(-i "$ENG=/ubdma/lib/libubdma_fio.so" -e UBDMA_FIO_ENGINE=/ubdma/lib/libubdma_fio.so)
else
	echo "nvme.sh: $ENG not built (tools/deps.sh brings fio's source): no ubdma-fio rows" >&2
fi
# Under -icount (-I, docs/nvme.md, "Benchmark"): guest time advances 2^shift ns a guest
# instruction, so busy guest CPU time is a count of instructions, whatever the host's load.  With
# -D file use sleep=on: the NVMe's reads and writes run in QEMU's block layer at the host's pace,
# and with sleep=off an idle guest's clock jumps to its next timer while the host still works;
# with -D null (no file I/O) sleep=off works for both drivers (three runs, 2026-12-05).  QEMU 7.2
# hangs a two-CPU x86 guest under -icount (docs/virtio-net.md): one CPU (the later -smp wins over
# run-guest.sh's), and the two-thread workload is left out.
# QEMU 10 runs every vCPU round-robin in one thread under -icount and boots two CPUs, but not
# through Debian's SeaBIOS 1.16.2 (it spins in the BIOS's POST, one CPU or two: 2026-12-05), so
# there the guest boots through QEMU's own qboot (both sides alike) with two CPUs, and the
# two-thread workload runs; "-audio none": 10's PC speaker would load 7.2's audio module.
QMAJ=$("${UBDMA_QEMU:-qemu-system-x86_64}" --version 2>/dev/null | sed -n '1s/.*version \([0-9]*\)\..*/\1/p')
QBOOT=$(dirname "${UBDMA_QEMU:-/usr/bin/x}")/../share/qemu/qboot.rom
NCPU=1
QA=()
if [ "$ICOUNT" != off ]; then
	if [ "${QMAJ:-0}" -ge 10 ] && [ -f "$QBOOT" ]; then
		NCPU=2
		printf -- '-bios\n%s\n-audio\nnone\n' "$(readlink -f "$QBOOT")" >"$OUT/qemu.args"
	else
		: >"$OUT/qemu.args"
	fi
	printf -- '-smp\n%s\n-icount\n%s\n' "$NCPU" "$ICOUNT" >>"$OUT/qemu.args"
	# nohz=off: the guest's tick keeps running while it idles (the emulated NVMe processes its
	# queues on timers of QEMU's virtual clock; with NO_HZ an idle guest stalled for minutes).
	# Even so, on a backing file (-D file) the kernel's nvme driver times out I/Os at QD 32
	# ("I/O 320 QID 2 timeout, aborting"): its QD 32 rows are then not valid under -icount
	QA=(-q "$OUT/qemu.args" -K nohz=off)
	WL=${WL:-randread_qd1,randread_qd8,randread_qd32,randwrite_qd1,randwrite_qd32$([ "$NCPU" = 2 ] && echo ,randread_qd32_jobs2)}
fi
case ,$WL, in
*,randread_qd32_jobs2,*) [ "$ICOUNT" = off ] || [ "$NCPU" = 2 ] ||
	{ echo "nvme.sh: randread_qd32_jobs2 needs two CPUs: -I off, or -Q 10 (docs/nvme.md)" >&2; exit 2; } ;;
esac
NW=$(echo "${WL:-a,b,c,d,e,f}" | tr ',' '\n' | grep -c .)
est=$((ROUNDS * NW * (2 * SECS + 4 * (SECS + 4) + 8) + 60))
QEMU_VER=$("${UBDMA_QEMU:-qemu-system-x86_64}" --version 2>/dev/null | head -n1)
echo "$QEMU_VER" >"$OUT/qemu-version.txt"
echo "nvme.sh: booting the guest: $ROUNDS round(s), $SECS s a workload (about $est s)" >&2
# -N and -S: QEMU's main thread runs its main loop, where the NVMe's bottom halves run (the SQ's,
# the block layer's completion, the CQ's); its TID is the process's PID, and renice, taskset and
# chrt on a TID change that thread only.  A watcher looks each second for the QEMU of this run (a
# crashed boot is booted again) and for threads it has not seen yet (QEMU starts its vCPU and
# RCU threads while it starts; a thread started later inherits its parent's CPU and policy).
# -S one: the vCPU SCHED_IDLE (a user may lower its own threads' policy without privilege)
# is preempted the moment the main loop wakes on the same CPU (a woken task of another policy
# always preempts an idle-policy one), and gains no share of the CPU over other users.
NPID=
if [ -n "$NICE" ] || [ "$PLACE" != free ]; then
	: >"$OUT/nice.log"
	(
		seen=" "
		while :; do
			for p in $(pgrep -f -- "-initrd $OUT/initrd.cpio" || true); do
				[ "$(cat /proc/$p/comm 2>/dev/null)" = qemu-system-x86 ] || continue
				for t in /proc/$p/task/*; do
					tid=${t##*/}
					case $seen in *" $tid "*) continue ;; esac
					seen="$seen$tid "
					if [ -n "$NICE" ] && [ "$tid" = "$p" ]; then
						if renice -n "$NICE" -p "$p" >/dev/null; then
							echo "nvme.sh: QEMU $p's main-loop thread at nice $NICE" >&2
						else
							echo "nvme.sh: renice -n $NICE -p $p failed: the device's thread runs at the default nice" >&2
						fi
					fi
					[ "$PLACE" != free ] || continue
					taskset -p -c "$PCPU" "$tid" >/dev/null ||
						echo "nvme.sh: taskset -p -c $PCPU $tid failed: QEMU's threads may run on two CPUs" >&2
					[ "$tid" = "$p" ] || chrt --idle -p 0 "$tid" ||
						echo "nvme.sh: chrt --idle -p 0 $tid failed: the vCPU may keep the CPU from the device" >&2
					echo "nvme.sh: QEMU $p thread $tid$([ "$tid" = "$p" ] && echo " (main loop)") on CPU" \
						"$(taskset -p -c "$tid" | sed 's/.*: //'), $(chrt -p "$tid" | sed -n 's/.*policy: //p')" >&2
				done
			done
			sleep 1
		done
	) 2>>"$OUT/nice.log" &
	NPID=$!
fi
rc=0
"$ROOT/tests/vm/run-guest.sh" -M -m 1536M -t $((est * 3 + 300)) -o "$OUT" -a "$ASSETS" "${QA[@]}" \
	"${DISKARGS[@]}" -i "$FIO" -i "$BENCH=$GB" -i "$ROOT/bench/nvme-fio=/ubdma/bench/nvme-fio" \
	-e UBDMA_FIO_JOBS=/ubdma/bench/nvme-fio -e "UBDMA_NVME_WORKLOADS=${WL//,/ }" -e UBDMA_NVME_HYBRID=$HYBRID -e UBDMA_NVME_DEV=$DEV -e UBDMA_FIO_GTOD_REDUCE=$GTOD "${FIOARGS[@]}" "$ROOT/bench/nvme-guest.sh $SECS $ROUNDS $IRQ $GB" \
	>"$OUT/run.log" 2>&1 || rc=$?
if [ -n "$NPID" ]; then kill "$NPID" 2>/dev/null || true; wait "$NPID" 2>/dev/null || true; cat "$OUT/nice.log" >&2; fi
if [ $rc -ne 0 ]; then
	echo "nvme.sh: the guest run failed (status $rc); see $OUT/run.log and $OUT/console.log" >&2
	tail -n 30 "$OUT/run.log" >&2
fi
python3 "$ROOT/bench/nvme_report.py" --format "$FMT" --out "$OUT" "$OUT/console.log" || rc=1
echo "nvme.sh: command: $0 -B $B -t $SECS -r $ROUNDS -I $ICOUNT${WL:+ -w $WL} -H $HYBRID -D $DEV$([ "$GTOD" = 0 ] && echo " -L")$([ "$IRQ" = 0 ] && echo " -P")$([ "$FMT" != table ] && echo " --$FMT")$([ -n "${UBDMA_QEMU:-}" ] && echo " -Q $UBDMA_QEMU")${NICE:+ -N $NICE} -S $PLACE; $QEMU_VER; files in $OUT" >&2
exit $rc
