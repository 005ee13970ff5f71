#!/bin/sh
# check_nic_gen.sh BENCH_NIC_GEN - bench_nic_gen's refusals on the host (no device needed): bad
# arguments exit 2 with the usage, a device that cannot be opened exits 1 naming it and the reason.
# Its traffic itself is measured by bench/e1000e.sh and bench/virtio_net.sh in the test bed.
G=$1
fails=0
expect() { # STATUS PATTERN ARGS...: the status and a line of stderr matching PATTERN
	want=$1 pat=$2
	shift 2
	"$G" "$@" >/dev/null 2>/tmp/nic_gen.$$
	rc=$?
	if [ $rc != "$want" ] || ! grep -q -- "$pat" /tmp/nic_gen.$$; then
		echo "not ok: bench_nic_gen $* gave $rc (want $want), stderr:"
		cat /tmp/nic_gen.$$
		fails=$((fails + 1))
	else
		echo "ok: bench_nic_gen $* -> $rc"
	fi
}
expect 2 "^usage: bench_nic_gen BDF LEN" 
expect 2 "^usage:" 0000:00:1f.7 59 1000 4000
expect 2 "^usage:" 0000:00:1f.7 1515 1000 4000
expect 2 "^usage:" 0000:00:1f.7 64 9 4000
expect 2 "^usage:" 0000:00:1f.7 64 1000 0
expect 2 "^usage:" 0000:00:1f.7 64 1000 4096
expect 1 "^nic_gen: 0000:00:1f.7: ." 0000:00:1f.7 64 1000 4000
rm -f /tmp/nic_gen.$$
[ $fails = 0 ]
