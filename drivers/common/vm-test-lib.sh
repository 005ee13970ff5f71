# vm-test-lib.sh - sourced by the NIC drivers' vm-suite wrappers (drivers/e1000e/test/vm-nic.sh,
# drivers/virtio-net/test/vm-vnet.sh and vm-vnet-mq.sh): starting the host peer, and the verdict
# (the guest programs' TAP points renumbered, one point a host-side check, the diagnostics).
# The caller sets TAP (1: TAP on stdout) and OUT (its output folder, the runner's TAP in
# OUT/guest.tap).

# nic_peer_start NAME MODE [ARGS...]: drivers/e1000e/test/nic_peer.py in MODE, listening on
# 127.0.0.1 only; sets PEER (its PID) and PORT; NAME is the caller, for errors (exit 2).
nic_peer_start() {
	local name=$1 mode=$2 lib
	shift 2
	lib=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
	rm -f "$OUT/peer.port" "$OUT/peer.log"
	python3 "$lib/../e1000e/test/nic_peer.py" --mode "$mode" "$@" --port-file "$OUT/peer.port" \
		2>"$OUT/peer.log" &
	PEER=$!
	for _ in $(seq 100); do [ -s "$OUT/peer.port" ] && break; sleep 0.1; done
	[ -s "$OUT/peer.port" ] || { echo "$name: the host peer did not start" >&2; cat "$OUT/peer.log" >&2; exit 2; }
	PORT=$(cat "$OUT/peer.port")
}

# vm_verdict PROGS CHECK... <DIAG: prints the runner's points then one point a CHECK ("STATUS
# MESSAGE", STATUS 0 passes), then DIAG's lines as comments (stderr without -T); on a failure the
# console of the guest programs whose names start with PROGS and the runner's stderr go to
# stderr.  Returns 0 when every point passed.
vm_verdict() {
	local progs=$1 lines l t c i=0 pass=0 fail=0
	shift
	mapfile -t lines < <(grep -E '^(ok|not ok) ' "$OUT/guest.tap")
	[ "$TAP" = 1 ] && echo "1..$((${#lines[@]} + $#))"
	_vm_point() { # ok|no text
		i=$((i + 1))
		if [ "$1" = ok ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
		if [ "$TAP" = 1 ]; then
			echo "$([ "$1" = ok ] && echo ok || echo 'not ok') $i - $2"
		else
			echo "$([ "$1" = ok ] && echo PASS || echo FAIL) $2"
		fi
	}
	for l in "${lines[@]}"; do
		t=${l#ok }; t=${t#not ok }; t=${t#* - }
		case $l in ok*) _vm_point ok "$t" ;; *) _vm_point no "$t" ;; esac
	done
	for c in "$@"; do
		_vm_point "$([ "${c%% *}" = 0 ] && echo ok || echo no)" "${c#* }"
	done
	sed 's/^/# /' | if [ "$TAP" = 1 ]; then cat; else cat >&2; fi
	if [ $fail -gt 0 ]; then
		echo "# ---- guest console, $progs programs ----" >&2
		sed -n "/BEGIN [0-9]* $progs/,/END [0-9]* $progs/p" "$OUT/guest/console.log" | tail -n 120 >&2
		tail -n 30 "$OUT/guest.stderr" >&2
	fi
	[ "$TAP" = 1 ] || echo "$pass passed, $fail failed"
	[ $fail -eq 0 ]
}

# nic_verdict PROGS: vm_verdict for a NIC run that checked both directions on the host: the
# runner's points, then OUT/check-tx.txt and OUT/check-rx.txt (check_pcap.py's output, the status
# in c1 and c2) as one point each; the diagnostics are the guest run's and the peer's statuses
# (grc, prc), the guest's results and the checks' and peer's lines.
nic_verdict() {
	{
		echo "guest run: status $grc, peer status $prc; results: $OUT/guest/results.txt"
		cat "$OUT/guest/results.txt" 2>/dev/null
		grep -h '^#   ' "$OUT/check-tx.txt" "$OUT/check-rx.txt"
		sed 's/^/peer: /' "$OUT/peer.log"
		true # a missing file leaves a line less, not a failed verdict (pipefail)
	} | vm_verdict "$1" \
		"$c1 $(head -n1 "$OUT/check-tx.txt" | sed 's/^\(not \)\?ok - //')" \
		"$c2 $(head -n1 "$OUT/check-rx.txt" | sed 's/^\(not \)\?ok - //')"
}
