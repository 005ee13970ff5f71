#!/bin/bash
# run-guest.sh [options] 'PROGRAM [ARGS...]' ... — run programs in the VFIO test-bed guest.
#
# Boots Debian's kernel under QEMU (TCG, q35, emulated VT-d, NVMe, e1000e) with an initramfs that
# holds busybox, the vfio/nvme/e1000e modules, /init (guest-init.sh) and the given programs with
# their shared-library closure (ldd), runs the programs in order, and judges the console log:
# a program fails when it exits non-zero, when the guest stops before the program ends, or when
# the guest logs a DMAR fault the program did not announce with a line
#     UBDMA-EXPECT-DMAR-FAULT <iova>|any
# (an announced fault must then show up in that program's dmesg). See tests/vm/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ME=run-guest.sh

usage() {
	cat <<EOF
usage: $ME [options] 'PROGRAM [ARGS...]' ['PROGRAM [ARGS...]' ...]
Each operand is one program and its arguments, split on blanks. A PROGRAM without a '/' is looked
up in the host's PATH. Programs run in the guest from /ubdma/bin, in the order given.
options:
  -o DIR     output folder: console.log, results.txt, nvme.img, net.pcap ... (default ./vm-out)
  -a DIR     guest asset cache for build-guest.sh (default \$UBDMA_VM_ASSETS or DIR/assets)
  -d FILE    NVMe backing file, used as it is (created with -s if missing; kept afterwards).
             Without -d a fresh zeroed DIR/nvme.img is made on each run.
  -s SIZE    size of a created backing file (truncate(1) syntax; default 64M)
  -D SPEC    the NVMe's namespace 1 on a QEMU block driver instead of a file: '-drive SPEC,if=none,id=nv0'
             (e.g. driver=null-co,read-zeroes=on,size=64M: no host file I/O; bench/nvme.sh); -d is unused
  -p FILE    pcap written by the e1000e's filter-dump (default DIR/net.pcap)
  -q FILE    extra QEMU arguments, one argument a line ('#' starts a comment line)
  -t SECS    timeout for the whole guest run; QEMU is killed after it (default 240)
  -u SECS    per-program timeout inside the guest: SIGKILL after it (status 137), then the next
             program runs and the dmesg is still dumped (default 0: none)
  -n         leave the NVMe controller(s) on the kernel nvme driver (default: vfio-pci)
  -N         leave the e1000e on the kernel e1000e driver (default: vfio-pci)
  -V 'NETDEV [PROPS]'  add a modern virtio-net (1af4:1041: disable-legacy=on, iommu_platform=on)
             at 0000:00:05.0, MAC 52:54:00:12:34:60, on '-netdev NETDEV,id=vn0' (e.g.
             socket,connect=127.0.0.1:PORT or tap,...), with more virtio-net-pci PROPS (e.g.
             mq=on,vectors=10) and its own filter-dump, DIR/vnet.pcap (none for a netdev of
             several queues: QEMU's filters refuse them); bound to vfio-pci
  -M         load the nvme and e1000e modules even when no device stays on them (for tests
             that hand a device back to its kernel driver)
  -r         load the soft-RoCE modules (rdma_rxe, ib_uverbs and what they need); the programs
             make the rxe device themselves (tests/vm/guest/rxe.h)
  -i PATH[=GUESTPATH]  also pack a file or folder (ELF files bring their ldd closure)
  -e VAR=VALUE         export VAR into the programs' environment
  -m SIZE    guest memory (default 1G)        -H N   2 MiB hugepages to reserve (default 64)
  -K ARGS    more kernel command-line arguments (e.g. "hugepagesz=1G hugepages=1")
  -T         print TAP on stdout (all other messages go to stderr)
  -x MODE    VFIO mode of the guest (tests/vm/README.md, "Modes"): type1 (default: Debian's kernel,
             emulated VT-d), iommufd (the test bed's own kernel from tests/vm/kernel/build.sh,
             built once and cached; VT-d; UBDMA_BACKEND=iommufd exported) or noiommu (that kernel,
             no virtual IOMMU, vfio.enable_unsafe_noiommu_mode=1; UBDMA_BACKEND=noiommu);
             the default is $UBDMA_VM_MODE, else type1 (for scripts that call run-guest.sh)
  -k         boot the test bed's own kernel (implied by -x iommufd and -x noiommu)
  -R         hot-unplug test bed: a second NVMe (QEMU id hpnvme, its own fresh 16 MiB backing file
             DIR/hpnvme.img) behind a pcie-root-port at 00:06.0, so at 0000:01:00.0, and a second
             e1000e (id hpnic) behind one at 00:07.0, so at 0000:02:00.0 (both bound to vfio-pci;
             UBDMA_VM_HP_NVME / UBDMA_VM_HP_NIC give their BDFs), a QMP socket DIR/qmp.sock, and
             the host helper qmp-helper.py: a program that prints a line
             'UBDMA-VM-QMP: device_del ID' has QEMU unplug that device ('... aer ID ERROR':
             inject an AER error; log: DIR/qmp.log)
  -v         verbose: kernel messages on the console, console streamed to stderr
Environment: UBDMA_VM_ACCEL replaces '-accel tcg' (e.g. tcg,thread=single).
UBDMA_QEMU names another qemu-system-x86_64 than the one in PATH (e.g. QEMU 10.0 unpacked with
dpkg -x into a folder of its own: bench/nvme.sh -Q, docs/nvme.md); its data files (option ROMs)
and modules are taken from PREFIX/share/qemu and PREFIX/lib/x86_64-linux-gnu/qemu beside its bin/.
A program that exits with 77 is reported as skipped (TAP "ok N - name # SKIP").
Exit status: 0 all passed or skipped, 1 a failure, 2 usage or set-up error.
EOF
}

die() { echo "$ME: error: $*" >&2; exit 2; }
say() { echo "$ME: $*" >&2; }

OUT=./vm-out ASSETS=${UBDMA_VM_ASSETS:-} DISK='' DISK_SIZE=64M PCAP='' QARGS='' TIMEOUT=240
ALL_MODULES=0 PROG_TIMEOUT=0 NVME_DRV=vfio-pci NIC_DRV=vfio-pci MEM=1G HUGEPAGES=64 TAP=0 VERBOSE=0 KARGS=
NVME_DRIVE=''
INCLUDES=() ENVS=() VNET='' VMODE=${UBDMA_VM_MODE:-type1} OWN_KERNEL=0 HOTPLUG=0
while getopts "o:a:d:D:s:p:q:t:u:nNMi:e:m:H:K:TvhV:x:kRr" opt; do
	case $opt in
	o) OUT=$OPTARG ;;
	a) ASSETS=$OPTARG ;;
	d) DISK=$OPTARG ;;
	D) NVME_DRIVE=$OPTARG ;;
	s) DISK_SIZE=$OPTARG ;;
	p) PCAP=$OPTARG ;;
	q) QARGS=$OPTARG ;;
	t) TIMEOUT=$OPTARG ;;
	u) PROG_TIMEOUT=$OPTARG ;;
	n) NVME_DRV=nvme ;;
	N) NIC_DRV=e1000e ;;
	V) VNET=$OPTARG ;;
	M) ALL_MODULES=1 ;;
	r) RDMA=1 ;;
	i) INCLUDES+=("$OPTARG") ;;
	e) [[ $OPTARG == [A-Za-z_]*=* ]] || die "-e wants VAR=VALUE"; ENVS+=("$OPTARG") ;;
	m) MEM=$OPTARG ;;
	H) HUGEPAGES=$OPTARG ;;
	K) KARGS=$OPTARG ;;
	T) TAP=1 ;;
	v) VERBOSE=1 ;;
	x) VMODE=$OPTARG ;;
	k) OWN_KERNEL=1 ;;
	R) HOTPLUG=1 ;;
	h) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { usage >&2; exit 2; }
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "-t wants seconds"
[[ $PROG_TIMEOUT =~ ^[0-9]+$ ]] || die "-u wants seconds"
case $VMODE in
type1) ;;
iommufd | noiommu) OWN_KERNEL=1 ;;
*) die "-x wants type1, iommufd or noiommu" ;;
esac
# -R: the hot-pluggable devices' addresses (each root port's secondary bus, numbered in slot order)
[ "$HOTPLUG" = 0 ] || ENVS+=(UBDMA_VM_HP_NVME=0000:01:00.0 UBDMA_VM_HP_NIC=0000:02:00.0)

if [ -n "${UBDMA_QEMU:-}" ]; then
	[ -x "$UBDMA_QEMU" ] || die "UBDMA_QEMU=$UBDMA_QEMU: not an executable"
fi
for t in qemu-system-x86_64:qemu-system-x86 cpio:cpio timeout:coreutils ldd:libc-bin; do
	[ -n "${UBDMA_QEMU:-}" ] && [ "${t%%:*}" = qemu-system-x86_64 ] && continue
	command -v "${t%%:*}" >/dev/null 2>&1 ||
		die "'${t%%:*}' not found: install the Debian package '${t#*:}'"
done

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
ASSETS=${ASSETS:-$OUT/assets}
PCAP=${PCAP:-$OUT/net.pcap}
"$HERE/build-guest.sh" "$ASSETS" || die "build-guest.sh failed"
KERNEL=$ASSETS/vmlinuz
if [ "$OWN_KERNEL" = 1 ]; then
	# everything built in: the modules of base.cpio are for Debian's kernel and stay unused
	KERNEL=$("$HERE/kernel/build.sh") || die "tests/vm/kernel/build.sh failed"
fi

# Only one guest at a time per output folder.
exec 8>"$OUT/.lock"
flock -n 8 || die "another run-guest.sh uses $OUT"

# --- stage the payload initramfs ---------------------------------------------------------------
STAGE=$OUT/stage
rm -rf "$STAGE"
mkdir -p "$STAGE/ubdma/bin" "$STAGE/etc"
cp "$HERE/guest-init.sh" "$STAGE/init"
chmod 755 "$STAGE/init"
LIBDIRS=()

# stage_file HOSTFILE GUESTPATH: copy (following links) and, for a dynamic ELF, its ldd closure.
stage_file() {
	local src=$1 dst=$2 line lib
	mkdir -p "$STAGE$(dirname "$dst")"
	cp -L "$src" "$STAGE$dst"
	[ "$(head -c 4 "$src" | od -An -c | tr -d ' ')" = '177ELF' ] || return 0
	# ldd prints "name => /path (addr)", "/path/ld.so (addr)" or "not a dynamic executable".
	while read -r line; do
		case $line in
		*"=> not found"*) die "$src: shared library ${line%% *} not found on the host" ;;
		*"=> /"*) lib=${line#*=> }; lib=${lib%% (*} ;;
		/*) lib=${line%% (*} ;;
		*) continue ;;
		esac
		# A library from a build tree (RUNPATH dir/../lib, anywhere, perhaps under /tmp, which
		# the guest mounts over) goes to /ubdma/lib under its soname link name; system
		# libraries keep their path (the dynamic loader's own path is fixed in every ELF).
		local gl=$lib
		case $lib in
		/lib/* | /lib64/* | /usr/lib/* | /usr/lib64/*) ;;
		*) gl=/ubdma/lib/$(basename "$lib") ;;
		esac
		if [ ! -e "$STAGE$gl" ]; then
			mkdir -p "$STAGE$(dirname "$gl")"
			cp -L "$lib" "$STAGE$gl"
			LIBDIRS+=("$(dirname "$gl")")
		fi
	done < <(LC_ALL=C ldd "$src" 2>/dev/null || true)
}

# squote WORD: WORD quoted for a POSIX shell.
squote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

NAMES=()
: >"$STAGE/ubdma/tests.sh"
n=0
for spec in "$@"; do
	read -r -a argv <<<"$spec"
	[ ${#argv[@]} -ge 1 ] || die "empty program operand"
	prog=${argv[0]}
	if [[ $prog != */* ]]; then
		prog=$(type -P "$prog") || die "program '${argv[0]}' not found in PATH"
	fi
	[ -f "$prog" ] && [ -x "$prog" ] || die "program '$prog' is not an executable file"
	name=$(basename "$prog")
	n=$((n + 1))
	if [ -e "$STAGE/ubdma/bin/$name" ] && ! cmp -s "$prog" "$STAGE/ubdma/bin/$name"; then
		die "two different programs are named $name"
	fi
	stage_file "$prog" "/ubdma/bin/$name"
	NAMES+=("$name")
	line="run_test $n $(squote "$name") $(squote "$name")"
	for a in "${argv[@]:1}"; do line+=" $(squote "$a")"; done
	echo "$line" >>"$STAGE/ubdma/tests.sh"
done
NPROG=$n

for inc in "${INCLUDES[@]}"; do
	src=${inc%%=*} dst=${inc#*=}
	[ "$dst" != "$inc" ] || dst=$(readlink -f "$src")
	[ -e "$src" ] || die "-i $src: no such file"
	if [ -d "$src" ]; then
		while IFS= read -r -d '' f; do
			stage_file "$f" "$dst/${f#"$src"/}"
		done < <(find "$src" -type f -print0)
	else
		stage_file "$src" "$dst"
	fi
done

if [ ${#LIBDIRS[@]} -gt 0 ]; then
	printf '%s\n' "${LIBDIRS[@]}" | sort -u >"$STAGE/etc/ld.so.conf"
	ldconfig -r "$STAGE" 2>/dev/null || say "warning: ldconfig -r failed; relying on default paths"
fi

{
	echo "UBDMA_CFG_NVME_DRIVER=$NVME_DRV"
	echo "UBDMA_CFG_NIC_DRIVER=$NIC_DRV"
	echo "UBDMA_CFG_HUGEPAGES=$HUGEPAGES"
	echo "UBDMA_CFG_VERBOSE=$VERBOSE"
	echo "UBDMA_CFG_PROG_TIMEOUT=$PROG_TIMEOUT"
	echo "UBDMA_CFG_ALL_MODULES=$ALL_MODULES"
	echo "UBDMA_CFG_RDMA=${RDMA:-0}"
	echo "UBDMA_CFG_BUILTIN=$OWN_KERNEL"
	echo "UBDMA_CFG_MODE=$VMODE"
	[ "$VMODE" = type1 ] || echo "export UBDMA_BACKEND=$VMODE"
	for e in "${ENVS[@]}"; do echo "export ${e%%=*}=$(squote "${e#*=}")"; done
} >"$STAGE/ubdma/config"

INITRD=$OUT/initrd.cpio
(cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$OUT/payload.cpio"
cat "$ASSETS/base.cpio" "$OUT/payload.cpio" >"$INITRD"
rm -f "$OUT/payload.cpio"

# --- NVMe backing file, pcap, QEMU command -----------------------------------------------------
if [ -z "$DISK" ]; then
	DISK=$OUT/nvme.img
	rm -f "$DISK"
fi
[ -e "$DISK" ] || truncate -s "$DISK_SIZE" "$DISK"
DISK=$(readlink -f "$DISK")
rm -f "$PCAP"

# no_timer_check: on a loaded host the TCG guest's boot-time check that the timer interrupt
# arrives through the interrupt-remapped IO-APIC can time out, and the kernel then panics ("timer
# doesn't work through Interrupt-remapped IO-APIC", seen twice in one CI run at load average 13);
# the parameter, meant for virtual machines, skips that check.
# $UBDMA_VM_ACCEL replaces the accelerator (e.g. tcg,thread=single: one host thread for all
# vCPUs instead of one each); QEMU takes the first -accel that works, so -q cannot change it.
QEMU=("${UBDMA_QEMU:-qemu-system-x86_64}" -accel "${UBDMA_VM_ACCEL:-tcg}" -machine q35,kernel-irqchip=split -cpu max -smp 2 -m "$MEM"
	-nographic -no-reboot
	-device intel-iommu,intremap=on,caching-mode=on
	-kernel "$ASSETS/vmlinuz" -initrd "$INITRD"
	-append "console=ttyS0 intel_iommu=on iommu=pt panic=-1 quiet loglevel=4 no_timer_check hugepages=$HUGEPAGES${KARGS:+ $KARGS}"
	-drive "${NVME_DRIVE:-file=$DISK,format=raw},if=none,id=nv0" -device nvme,drive=nv0,serial=deadbeef,addr=0x2
	-netdev user,id=n0,restrict=on -device e1000e,netdev=n0,addr=0x3,romfile=
	-object "filter-dump,id=f0,netdev=n0,file=$PCAP")
# UBDMA_QEMU: that QEMU's own data folder first (-L; QEMU still searches its built-in firmware
# path after it, where Debian's seabios and ipxe are), not the system QEMU's /usr/share/qemu
if [ -n "${UBDMA_QEMU:-}" ] && [ -d "$(dirname "$UBDMA_QEMU")/../share/qemu" ]; then
	QEMU+=(-L "$(cd "$(dirname "$UBDMA_QEMU")/../share/qemu" && pwd)")
	# and its own loadable modules, not the system QEMU's ("Only modules from the same build")
	qmods=$(dirname "$UBDMA_QEMU")/../lib/x86_64-linux-gnu/qemu
	[ ! -d "$qmods" ] || export QEMU_MODULE_DIR=$(cd "$qmods" && pwd)
fi
# -V: the virtio-net of issue 20 on a slot of its own, its DMA through the vIOMMU (ats stays
# off: it would need device-iotlb=on on the IOMMU, which changes it for every device here).
if [ -n "$VNET" ]; then
	vnet_props=${VNET#* }
	[ "$vnet_props" != "$VNET" ] || vnet_props=''
	rm -f "$OUT/vnet.pcap"
	QEMU+=(-netdev "${VNET%% *},id=vn0"
		-device "virtio-net-pci,netdev=vn0,addr=0x5,disable-legacy=on,iommu_platform=on,romfile=,mac=52:54:00:12:34:60${vnet_props:+,$vnet_props}")
	# QEMU's net filters refuse a netdev of several queues ("multiqueue is not supported"):
	# then capture on the host side of the netdev instead
	[[ ${VNET%% *} =~ queues=([2-9]|[1-9][0-9]) ]] ||
		QEMU+=(-object "filter-dump,id=fv0,netdev=vn0,file=$OUT/vnet.pcap")
fi
# -R: devices QEMU can unplug (q35's root bus has no hot-plug; a pcie-root-port has), and QMP.
if [ "$HOTPLUG" = 1 ]; then
	command -v python3 >/dev/null 2>&1 || die "-R needs python3 for qmp-helper.py"
	rm -f "$OUT/hpnvme.img" "$OUT/qmp.sock" "$OUT/qmp.log"
	truncate -s 16M "$OUT/hpnvme.img"
	QEMU+=(-device pcie-root-port,id=hprp1,bus=pcie.0,addr=0x6,chassis=11,slot=1
		-drive "file=$OUT/hpnvme.img,if=none,id=hpnv,format=raw"
		-device nvme,drive=hpnv,serial=hotplug1,bus=hprp1,id=hpnvme
		-device pcie-root-port,id=hprp2,bus=pcie.0,addr=0x7,chassis=12,slot=2
		-netdev user,id=hpn0,restrict=on -device e1000e,netdev=hpn0,bus=hprp2,id=hpnic,romfile=
		-qmp "unix:$OUT/qmp.sock,server=on,wait=off"
		# native PCIe hot-plug (pciehp, built into both kernels: the test bed's own has no
		# ACPI hot-plug, and QEMU's ACPI hot-plug keeps _OSC from granting the native one);
		# an unplug then waits out pciehp's 5 s attention-button delay
		-global ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off)
fi
if [ -n "$QARGS" ]; then
	[ -f "$QARGS" ] || die "-q $QARGS: no such file"
	while IFS= read -r a; do
		[[ -z $a || $a == \#* ]] && continue
		QEMU+=("$a")
	done <"$QARGS"
fi
if [ "$OWN_KERNEL" = 1 ]; then
	for i in "${!QEMU[@]}"; do
		[ "${QEMU[$i]}" = "$ASSETS/vmlinuz" ] && QEMU[i]=$KERNEL
	done
fi
if [ "$VMODE" = noiommu ]; then
	# a machine without an IOMMU: no VT-d device, and VFIO's no-IOMMU mode switched on
	for i in "${!QEMU[@]}"; do
		case ${QEMU[$i]} in
		intel-iommu,*) unset 'QEMU[i]' 'QEMU[i-1]' ;;
		console=ttyS0*) QEMU[i]=${QEMU[$i]/intel_iommu=on iommu=pt/vfio.enable_unsafe_noiommu_mode=1} ;;
		esac
	done
	QEMU=("${QEMU[@]}")
fi
printf '%q ' "${QEMU[@]}" >"$OUT/qemu-cmdline.txt"
echo >>"$OUT/qemu-cmdline.txt"

# --- boot ---------------------------------------------------------------------------------------
CONSOLE=$OUT/console.log
# The emulator itself crashes now and then under TCG with the emulated VT-d (QEMU 7.2: a general
# protection fault in qemu-system-x86_64; 10.0: "iotlb_to_section: Assertion ... failed"), in about
# one CI run in five, in whichever test happens to run.  A QEMU that died of a signal before the
# guest said DONE gets one more boot; its logs are kept as *.crash1.log and the verdict says so.
# A guest that hangs (timeout) or a program that fails is never retried.
FIRST_CRASH=''
rm -f "$OUT/console.crash1.log" "$OUT/qemu-stderr.crash1.log"
for attempt in 1 2; do
say "booting guest with $NPROG program(s): ${NAMES[*]} (timeout ${TIMEOUT}s, log $CONSOLE)"
t0=$(date +%s.%N)
timeout -k 5 "$TIMEOUT" "${QEMU[@]}" </dev/null >"$CONSOLE" 2>"$OUT/qemu-stderr.log" &
QPID=$!
# A hung emulator (seen with 10.0: the whole guest stops, /init's per-program timeout never
# fires): with -u, a console silent for the program timeout + 90 s means the guest itself is
# stuck; QEMU is stopped and that counts as a crash (one more boot).
rm -f "$OUT/.hung"
WPID=
if [ "$PROG_TIMEOUT" -gt 0 ]; then
	(
		last=-1 quiet=0
		while kill -0 $QPID 2>/dev/null; do
			sleep 10
			size=$(stat -c %s "$CONSOLE" 2>/dev/null || echo 0)
			if [ "$size" = "$last" ]; then quiet=$((quiet + 10)); else quiet=0 last=$size; fi
			if [ $quiet -ge $((PROG_TIMEOUT + 90)) ]; then
				echo "$quiet" >"$OUT/.hung"
				pkill -TERM -P $QPID 2>/dev/null; kill -TERM $QPID 2>/dev/null
				break
			fi
		done
	) &
	WPID=$!
fi
HPID=
if [ "$HOTPLUG" = 1 ]; then
	python3 "$HERE/qmp-helper.py" "$OUT/qmp.sock" "$CONSOLE" $QPID "$OUT/qmp.log" &
	HPID=$!
fi
trap 'kill $QPID $WPID $HPID 2>/dev/null || true' EXIT
trap 'kill $QPID $WPID $HPID 2>/dev/null; exit 1' INT TERM
if [ "$VERBOSE" = 1 ]; then tail -n +1 -f --pid=$QPID "$CONSOLE" >&2 & fi
qrc=0
wait $QPID || qrc=$?
if [ -n "$WPID" ]; then kill $WPID 2>/dev/null || true; wait $WPID 2>/dev/null || true; fi
if [ -n "$HPID" ]; then wait $HPID 2>/dev/null || true; fi # it ends with QEMU
trap - EXIT INT TERM
t1=$(date +%s.%N)
WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
TIMED_OUT=0
if [ $qrc -eq 124 ] || [ $qrc -eq 137 ]; then TIMED_OUT=1; fi
QEMU_CRASH=''
if [ -s "$OUT/.hung" ] && ! grep -q 'UBDMA-VM: DONE' "$CONSOLE"; then
	QEMU_CRASH="guest hung: no console output for $(cat "$OUT/.hung")s although /init ends a program after ${PROG_TIMEOUT}s"
	TIMED_OUT=0
elif [ $qrc -gt 128 ] && [ $TIMED_OUT = 0 ] && ! grep -q 'UBDMA-VM: DONE' "$CONSOLE"; then
	# (a SIGSEGV leaves QEMU's stderr empty: the grep finds nothing, which must not end the script)
	QEMU_CRASH="QEMU died of signal $((qrc - 128)) after ${WALL}s: $({ grep -m1 -iE 'assert|fault|abort|error' "$OUT/qemu-stderr.log" || true; } | cut -c1-160)"
fi
[ -n "$QEMU_CRASH" ] && [ $attempt = 1 ] || break
FIRST_CRASH=$QEMU_CRASH
say "$QEMU_CRASH; booting the guest once more (logs kept in $OUT/*.crash1.log)"
mv "$CONSOLE" "$OUT/console.crash1.log"
mv "$OUT/qemu-stderr.log" "$OUT/qemu-stderr.crash1.log"
done
tr -d '\r' <"$CONSOLE" >"$CONSOLE.tmp" && mv "$CONSOLE.tmp" "$CONSOLE"

# --- judge the console log ---------------------------------------------------------------------
# Output, one line each: "0 ok|fail guest <reason>" then "N ok|fail NAME <status/time/reason>".
judge() {
	awk -v nprog="$NPROG" -v names="${NAMES[*]}" -v timed_out="$TIMED_OUT" -v qrc="$qrc" '
	function page(a) {          # "0x80000abc" -> "80000" (the 4 KiB page, hex, no leading 0s)
		a = tolower(a); sub(/^0x/, "", a); sub(/^0+/, "", a)
		a = (length(a) > 3) ? substr(a, 1, length(a) - 3) : "0"
		return a
	}
	function fault(sec, addr) { nf[sec]++; fa[sec, nf[sec]] = addr }
	BEGIN { split(names, nm, " "); sec = -1; dm = -1; cur = -1 }
	{
		line = $0
		i = index(line, "UBDMA-VM: ")
		if (i > 0) {
			split(substr(line, i + 10), w, " ")
			if (w[1] == "INIT") booted = 1
			else if (w[1] == "SETUP-FAILED") { m = substr(line, i + 10 + 13); setup = setup (setup ? "; " : "") m }
			else if (w[1] == "BEGIN") { cur = w[2]; began[cur] = 1 }
			else if (w[1] == "END") {
				ended[w[2]] = 1; cur = -1
				for (k = 3; k in w; k++) {
					if (w[k] ~ /^status=/) st[w[2]] = substr(w[k], 8)
					if (w[k] ~ /^time=/) tm[w[2]] = substr(w[k], 6)
				}
			}
			else if (w[1] == "DMESG-BEGIN") { dm = w[2]; pend = "" }
			else if (w[1] == "DMESG-END") { if (pend != "") fault(dm, "?"); dm = -1; pend = "" }
			else if (w[1] == "DONE") done = 1
			next
		}
		if (cur >= 0 && (j = index(line, "UBDMA-EXPECT-DMAR-FAULT")) > 0) {
			split(substr(line, j), w, " ")
			ne[cur]++; ex[cur, ne[cur]] = (w[2] == "any") ? "any" : page(w[2])
			next
		}
		if (dm < 0) next
		# A fault record: "DMAR: [DMA Read|Write ...] ... fault addr 0x..." (the address may be on
		# the next line in older kernels), or "DMAR: [INTR-REMAP] ..." (no address).
		has_addr = match(line, /fault addr 0x[0-9a-fA-F]+/)
		if (has_addr) {
			a = substr(line, RSTART + 11, RLENGTH - 11)
			fault(dm, page(a)); pend = ""
		} else if (line ~ /DMAR: \[(DMA|INTR)/) {
			if (pend != "") fault(dm, "?")
			pend = line
		} else if (pend != "") { fault(dm, "?"); pend = "" }
	}
	END {
		why = ""
		if (!booted) why = "guest did not reach /init"
		else if (setup != "") why = "setup failed: " setup
		if (nf[0] > 0) why = why (why ? "; " : "") nf[0] " DMAR fault(s) during boot"
		if (!done) why = why (why ? "; " : "") (timed_out ? "guest timed out" : "guest stopped before DONE (qemu status " qrc ")")
		print "0", (why == "" ? "ok" : "fail"), "guest", "boot, setup and power-off" (why == "" ? "" : ":"), why
		for (n = 1; n <= nprog; n++) {
			why = ""
			if (!began[n]) why = "not run"
			else if (!ended[n]) why = "did not finish"
			else if (st[n] == "77") skip = 1
			else if (st[n] != "0") why = "exit status " st[n]
			# announced faults must appear; other faults must not
			any = 0
			for (k = 1; k <= ne[n]; k++) {
				if (ex[n, k] == "any") { any = 1; if (nf[n] == 0) why = why (why ? "; " : "") "announced a DMAR fault, none seen"; continue }
				seen = 0
				for (f = 1; f <= nf[n]; f++) if (fa[n, f] == ex[n, k]) seen = 1
				if (!seen) why = why (why ? "; " : "") "announced DMAR fault at page 0x" ex[n, k] "000 not seen"
			}
			if (!any) for (f = 1; f <= nf[n]; f++) {
				ok = 0
				for (k = 1; k <= ne[n]; k++) if (ex[n, k] == fa[n, f]) ok = 1
				if (!ok) { why = why (why ? "; " : "") "unexpected DMAR fault at " (fa[n, f] == "?" ? "?" : "0x" fa[n, f] "000"); break }
			}
			if (began[n] && !ended[n] && timed_out) why = why " (guest timed out)"
			info = "status=" (n in st ? st[n] : "-") " time=" (n in tm ? tm[n] : "-") "s faults=" nf[n] + 0 "/" ne[n] + 0
			print n, (why != "" ? "fail" : skip ? "skip" : "ok"), nm[n], info, why
			skip = 0
		}
	}' "$CONSOLE"
}

judge >"$OUT/verdict.txt"
FAILED=0 PASSED=0 SKIPPED=0
RESULTS=$OUT/results.txt
{
	echo "# run-guest.sh: $(date -u +%Y-%m-%dT%H:%M:%SZ) wall=${WALL}s qemu=$qrc"
	[ -z "$FIRST_CRASH" ] || echo "# booted twice: the first boot's $FIRST_CRASH"
	while read -r num res name rest; do
		case $res in ok) r=PASS ;; skip) r=SKIP ;; *) r=FAIL ;; esac
		echo "$r $num $name $rest"
	done <"$OUT/verdict.txt"
} >"$RESULTS"

if [ "$TAP" = 1 ]; then echo "1..$((NPROG + 1))"; fi
if [ -n "$FIRST_CRASH" ]; then
	[ "$TAP" = 0 ] || echo "# booted twice: the first boot's $FIRST_CRASH"
	say "booted twice: the first boot's $FIRST_CRASH"
fi
while read -r num res name rest; do
	if [ "$res" = ok ]; then
		PASSED=$((PASSED + 1)) word=PASS tap=ok
	elif [ "$res" = skip ]; then
		SKIPPED=$((SKIPPED + 1)) word=SKIP tap=ok directive=" # SKIP exit status 77"
	else
		FAILED=$((FAILED + 1)) word=FAIL tap="not ok"
	fi
	if [ "$TAP" = 1 ]; then
		echo "$tap $((num + 1)) - $name${directive:-}"
		directive=
		echo "# $name: $rest"
	fi
	say "$word $name $rest"
done <"$OUT/verdict.txt"

say "guest run took ${WALL}s; console log: $CONSOLE; results: $RESULTS"
say "NVMe backing file: $DISK; pcap: $PCAP"
if [ $FAILED -gt 0 ]; then
	say "---- last 80 lines of $CONSOLE ----"
	tail -n 80 "$CONSOLE" >&2
	if [ -s "$OUT/qemu-stderr.log" ]; then
		say "---- last 20 lines of $OUT/qemu-stderr.log ----"
		tail -n 20 "$OUT/qemu-stderr.log" >&2
	fi
fi
if [ "$TAP" = 0 ]; then echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"; fi
[ $FAILED -eq 0 ]
