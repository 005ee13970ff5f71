#!/usr/bin/env python3
"""qmp-helper.py SOCKET CONSOLE QEMU_PID LOG - the host's hand on the test bed's QEMU monitor.

run-guest.sh -R starts it beside QEMU.  It follows the serial console log as QEMU writes it, and
for each line a guest program prints of the form

    UBDMA-VM-QMP: device_del ID
    UBDMA-VM-QMP: aer ID ERROR

sends that command to QEMU's QMP socket.  device_del is the hot-unplug of a device the test bed
made hot-pluggable; the helper then waits for QEMU's DEVICE_DELETED event for ID (the guest has
let go of the device and QEMU has removed it) and logs it.  aer is HMP's pcie_aer_inject_error
ID ERROR (through QMP's human-monitor-command; ERROR a name such as POISON_TLP, no options):
the device reports an uncorrectable error through its AER capability to its root port.  These
two are the only commands allowed.  Every command, reply
and event goes to LOG with the seconds since start, so a test can tell "QEMU never removed the
device" from "the guest never asked".  Ends when QEMU does.
"""
import json
import os
import re
import socket
import sys
import time

MARK = re.compile(r"UBDMA-VM-QMP: (device_del) ([A-Za-z0-9_-]+)")
AER = re.compile(r"UBDMA-VM-QMP: aer ([A-Za-z0-9_-]+) ([A-Z_]+)\s*$")


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: qmp-helper.py SOCKET CONSOLE QEMU_PID LOG")
    path, console, qpid, logpath = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    t0 = time.monotonic()
    log = open(logpath, "a", buffering=1)

    def say(msg):
        log.write("%.2f %s\n" % (time.monotonic() - t0, msg))

    def alive():
        try:
            os.kill(qpid, 0)
            return True
        except OSError:
            return False

    sock = None
    while alive() and sock is None:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            sock = s
        except OSError:
            time.sleep(0.2)
    if sock is None:
        say("QEMU ended before its QMP socket could be reached")
        return
    sock.settimeout(0.2)
    buf = b""

    def lines():
        """Complete JSON lines received so far."""
        nonlocal buf
        try:
            data = sock.recv(65536)
            if not data:
                return None
            buf += data
        except socket.timeout:
            pass
        out = []
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                out.append(json.loads(line))
        return out

    def send(cmd):
        sock.sendall((json.dumps(cmd) + "\n").encode())
        say("sent " + json.dumps(cmd))

    send({"execute": "qmp_capabilities"})
    done = 0
    pending = set()
    pos = 0
    while alive():
        got = lines()
        if got is None:
            say("QMP socket closed")
            break
        for m in got:
            if "QMP" in m:
                continue
            if m.get("event") == "DEVICE_DELETED":
                dev = m.get("data", {}).get("device")
                say("event DEVICE_DELETED %s" % dev)
                pending.discard(dev)
            elif "event" in m:
                say("event " + m["event"])
            else:
                say("reply " + json.dumps(m))
        try:
            with open(console, "rb") as f:
                f.seek(pos)
                text = f.read()
        except OSError:
            continue
        # only whole lines: a marker may be half written
        cut = text.rfind(b"\n") + 1
        pos += cut
        for raw in text[:cut].split(b"\n"):
            text_line = raw.decode("utf-8", "replace")
            a = AER.search(text_line)
            if a:
                done += 1
                send({"execute": "human-monitor-command",
                      "arguments": {"command-line": "pcie_aer_inject_error %s %s" % (a.group(1), a.group(2))}})
                continue
            m = MARK.search(text_line)
            if m:
                done += 1
                pending.add(m.group(2))
                send({"execute": m.group(1), "arguments": {"id": m.group(2)}})
    for dev in sorted(pending):
        say("no DEVICE_DELETED for %s" % dev)
    say("end: %d command(s) sent" % done)


if __name__ == "__main__":
    main()
