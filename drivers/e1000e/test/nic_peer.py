#!/usr/bin/env python3
"""nic_peer.py - the host end of the guest's second e1000e, on 127.0.0.1 only.

QEMU connects to it with `-netdev socket,connect=127.0.0.1:PORT`: a TCP stream of frames, each
a 4-byte big-endian length and the frame.  TCP gives flow control for free: QEMU reads only while
the guest's receive ring has room, so nothing is lost on the way in.  The guest steers the peer
with control frames (EtherType 0x88B6, 4-byte command):

  rx-test mode (tests/vm/guest/test_e1000e_rx.c):
    RDY1 -> N pattern frames to ff:ff:ff:ff:ff:ff (sequence 0..N-1), one oversized frame (1600
            bytes, the device must drop it), K frames to a foreign unicast address (sequence
            1000000..: a non-promiscuous NIC must not take them), then END1
    PRM1 -> K frames to the foreign address (sequence 2000000..: taken in promiscuous mode), END2
    DONE -> the guest's report; the peer exits 0
  bench mode (bench/e1000e.c): SZxx with a 2-byte frame length (big endian) after the command
    starts a flood of frames of that length (0 stops it); DONE ends.

  nic_peer.py --mode rx-test|bench [--frames N] [--foreign K] --port-file F [--timeout S]
The port is written to F once listening.  Everything is logged to stderr.
"""
import argparse
import os
import select
import socket
import struct
import sys
import time

BCAST = b"\xff" * 6
PEER = bytes([0x02, 0, 0, 0, 0, 0x02])
FOREIGN = bytes([0x02, 0, 0, 0, 0, 0x99])
CTRL = b"\x88\xb6"


def frame_len(seq):
    return 60 + (seq * 97) % 1455


def pattern(seq, dst, src=PEER, n=None):
    n = frame_len(seq) if n is None else n
    b = bytearray(dst + src + b"\x88\xb5" + b"UBDM" + struct.pack(">IH", seq & 0xFFFFFFFF, n & 0xFFFF))
    b.extend(((seq * 31 + k * 7) & 0xFF) for k in range(len(b), n))
    return bytes(b)


def ctrl(cmd):
    b = BCAST + PEER + CTRL + cmd
    return b + bytes(60 - len(b))


def log(*a):
    print("nic_peer:", *a, file=sys.stderr, flush=True)


class Stream:
    def __init__(self, conn):
        self.c = conn
        self.buf = b""

    def send_frames(self, frames):
        self.c.setblocking(True)
        self.c.sendall(b"".join(struct.pack(">I", len(f)) + f for f in frames))

    def frames(self, timeout):
        """Yield frames the guest sent until timeout (None: the connection closed)."""
        end = time.time() + timeout
        while True:
            while len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) < 4 + n:
                    break
                f, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                yield f
            left = end - time.time()
            if left <= 0:
                return
            r, _, _ = select.select([self.c], [], [], left)
            if not r:
                return
            d = self.c.recv(1 << 16)
            if not d:
                yield None
                return
            self.buf += d


def rx_test(st, a):
    k = a.foreign
    for f in st.frames(a.timeout):
        if f is None:
            log("QEMU closed the connection before DONE")
            return 1
        if len(f) < 18 or f[12:14] != CTRL:
            continue
        cmd = f[14:18]
        log("guest says", cmd.decode(errors="replace"))
        if cmd == b"RDY1":
            frames = [pattern(s, BCAST) for s in range(a.frames)]
            frames.insert(a.frames // 2, pattern(3000000, BCAST, n=1600))  # oversized: dropped
            frames += [pattern(1000000 + i, FOREIGN) for i in range(k)] + [ctrl(b"END1")]
            st.send_frames(frames)
            log(f"sent {a.frames} broadcast frames, 1 oversized, {k} foreign, END1")
        elif cmd == b"PRM1":
            st.send_frames([pattern(2000000 + i, FOREIGN) for i in range(k)] + [ctrl(b"END2")])
            log(f"sent {k} foreign frames, END2")
        elif cmd == b"DONE":
            log("report:", f[18:80].rstrip(b"\0").decode(errors="replace"))
            return 0
    log("timed out waiting for the guest")
    return 1


def bench(st, a):
    c = st.c
    c.setblocking(False)
    blob = b""
    pos = 0
    sent = 0
    deadline = time.time() + a.timeout
    while time.time() < deadline:
        r, w, _ = select.select([c], [c] if blob else [], [], 0.5)
        if r:
            try:
                d = c.recv(1 << 20)
            except OSError:
                d = b""
            if not d:
                log(f"QEMU closed the connection; {sent} frames sent")
                return 0
            st.buf += d
            for f in st.frames(0):
                if f is None or len(f) < 20 or f[12:14] != CTRL:
                    continue
                cmd = f[14:18]
                if cmd == b"DONE":
                    log(f"DONE; {sent} frames sent")
                    return 0
                if cmd == b"SZxx":
                    n = struct.unpack(">H", f[18:20])[0]
                    log(f"flood of {n}-byte frames" if n else "flood stopped")
                    blob = b"".join(struct.pack(">I", n) + pattern(i, BCAST, n=n) for i in range(256)) if n else b""
                    pos = 0
        if w and blob:
            try:
                m = c.send(memoryview(blob)[pos:] if pos else blob)
                pos = (pos + m) % len(blob)
                sent += m // max(1, len(blob) // 256)
            except BlockingIOError:
                pass
            except OSError:
                log(f"QEMU closed the connection; {sent} frames sent")
                return 0
    log("timed out")
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["rx-test", "bench"], required=True)
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--foreign", type=int, default=20)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--timeout", type=float, default=300)
    a = ap.parse_args()
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))  # loopback only
    ls.listen(1)
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(ls.getsockname()[1]))
    os.rename(tmp, a.port_file)
    ls.settimeout(a.timeout)
    try:
        conn, peer = ls.accept()
    except socket.timeout:
        log("nobody connected")
        return 1
    log("QEMU connected from", peer)
    st = Stream(conn)
    return rx_test(st, a) if a.mode == "rx-test" else bench(st, a)


if __name__ == "__main__":
    sys.exit(main())
