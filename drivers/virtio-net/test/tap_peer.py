#!/usr/bin/env python3
"""tap_peer.py - the host end of the guest's virtio-net on a multi-queue tap, in a network
namespace of its own (drivers/virtio-net/test/vm-vnet-mq.sh sets the namespace up).

  tap_peer.py --sink IFNAME [--flows F] [--per-flow P] [--timeout S]

* keeps IFNAME (a tap without vnet header: no checksum offload, so the kernel completes every
  checksum it forwards there) open and drained, so that it has carrier and tshark can capture
  what the namespace routes to it;
* listens on UDP 10.20.0.1:9999 for the guest (10.20.0.2): "RDY2" starts F flows of P datagrams
  each, from UDP ports 20000+f to 10.20.0.2:10000+f, payload "UBDR", flow (16 bits), sequence
  (32 bits), then bytes (7 f + 13 i + k) mod 256, length 64 + (97 (f P + i)) mod 1300; they leave
  through the tap with vnet header, so the kernel hands them over partially checksummed
  (NEEDS_CSUM) once the guest negotiated GUEST_CSUM; "RDY4" sends one 3000-byte datagram
  (vn0's MTU is 4000: the device merges it over two 2048-byte buffers) and then flow 0's next
  datagram; "RDY5" sends flow 1's next datagram half a second later; "LNK0" takes the
  guest's link down for 2 s through QEMU's monitor (--monitor); "RDY3" sends 4 datagrams (for
  test_virtio_net_dmar, whose receive queue points at an unmapped IOVA); "DONE ..." (the
  guest's report) ends it, after a grace second for the programs that follow.
Everything is logged to stderr.
"""
import argparse
import fcntl
import os
import select
import socket
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def log(*a):
    print("tap_peer:", *a, file=sys.stderr, flush=True)


def hmp(path, cmd):
    """One human-monitor command on QEMU's monitor socket."""
    m = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    m.connect(path)
    m.settimeout(5)
    try:
        m.recv(4096)  # the banner and prompt
        m.sendall(cmd.encode() + b"\r\n")
        time.sleep(0.2)
        m.recv(4096)
    except socket.timeout:
        pass
    m.close()


def payload(f, i, p):
    n = 64 + (97 * (f * p + i)) % 1300
    b = bytearray(b"UBDR" + struct.pack(">HI", f, i))
    b.extend((7 * f + 13 * i + k) & 0xFF for k in range(len(b), n))
    return bytes(b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sink", required=True)
    ap.add_argument("--flows", type=int, default=64)
    ap.add_argument("--per-flow", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--monitor", help="QEMU's human monitor socket (for LNK0)")
    ap.add_argument("--linger", type=float, default=0,
                    help="keep serving this long after DONE (programs after the first)")
    a = ap.parse_args()
    tun = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", a.sink.encode(), IFF_TAP | IFF_NO_PI))
    ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ctl.bind(("10.20.0.1", 9999))
    socks = []
    for f in range(a.flows):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("10.20.0.1", 20000 + f))
        socks.append(s)
    log(f"ready: sink {a.sink}, control 10.20.0.1:9999, {a.flows} flows of {a.per_flow}")
    print("ready", flush=True)
    end = time.time() + a.timeout
    sunk = 0
    done_at = 0
    while time.time() < end:
        r, _, _ = select.select([tun, ctl], [], [], 1.0)
        if tun in r:
            try:
                while os.read(tun, 65536):
                    sunk += 1
            except BlockingIOError:
                pass
        if ctl in r:
            msg, src = ctl.recvfrom(2048)
            log("guest says", msg[:80].decode(errors="replace"), "from", src)
            if msg.startswith(b"RDY2"):
                for i in range(a.per_flow):
                    for f in range(a.flows):
                        socks[f].sendto(payload(f, i, a.per_flow), ("10.20.0.2", 10000 + f))
                log(f"sent {a.flows * a.per_flow} datagrams")
            elif msg.startswith(b"LNK0") and a.monitor:  # link down for 2 s (QEMU's set_link)
                hmp(a.monitor, "set_link vn0 off")
                log("link vn0 off")
                time.sleep(2)
                hmp(a.monitor, "set_link vn0 on")
                log("link vn0 on")
            elif msg.startswith(b"RDY5"):  # one datagram on flow 1, half a second later: rx_wait
                time.sleep(0.5)            # is asleep by then, and only an interrupt wakes it
                socks[1].sendto(payload(1, a.per_flow, a.per_flow), ("10.20.0.2", 10001))
                log("sent flow 1's next datagram")
            elif msg.startswith(b"RDY4"):  # a 3000-byte datagram (two merged buffers), then one more
                socks[0].sendto(b"UBDB" + bytes(2996), ("10.20.0.2", 10000))
                socks[0].sendto(payload(0, a.per_flow, a.per_flow), ("10.20.0.2", 10000))
                log("sent a 3000-byte datagram and flow 0's next")
            elif msg.startswith(b"RDY3"):  # test_virtio_net_dmar: its receive queue faults
                for f in range(4):
                    socks[f].sendto(payload(f, 0, 1), ("10.20.0.2", 10000 + f))
                log("sent 4 datagrams into a faulting receive queue")
            elif msg.startswith(b"DONE"):
                log(f"DONE; {sunk} frames drained from {a.sink} so far")
                done_at = time.time()
        if done_at and time.time() > done_at + a.linger:
            log(f"done; {sunk} frames drained from {a.sink}")
            return 0
    log("timed out")
    return 1


if __name__ == "__main__":
    sys.exit(main())
