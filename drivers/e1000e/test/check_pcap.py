#!/usr/bin/env python3
"""check_pcap.py - judge a QEMU filter-dump pcap with tshark, from outside the guest.

  check_pcap.py --frames N [--src MAC] [--dst MAC] [--first SEQ] [--only-dst] [--max-len L] PCAP

Reads PCAP with tshark (Debian's, not our code) and fails unless the frames of the test pattern
(EtherType 0x88B5, "UBDM", sequence number, length; see tests/vm/guest/test_e1000e_tx.c) are all
there: sequence numbers FIRST .. FIRST+N-1 exactly once each, in order, each with the right length
and every byte right.  Other traffic (none is expected) is listed and ignored.  Prints TAP-like
lines and 'N passed, N failed'; exit status 0 when the pcap passes.
"""
import argparse
import shutil
import subprocess
import sys

ETHERTYPE = 0x88B5


def frame_len(seq):
    return 60 + (seq * 97) % 1455


def expected(seq, dst, src):
    n = frame_len(seq)
    b = bytearray(dst + src + bytes([0x88, 0xB5]) + b"UBDM" + seq.to_bytes(4, "big") + n.to_bytes(2, "big"))
    for k in range(len(b), n):
        b.append((seq * 31 + k * 7) & 0xFF)
    return bytes(b)


def mac(s):
    return bytes(int(x, 16) for x in s.split(":"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, required=True)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--src", help="source MAC the frames must carry (default: any, but one)")
    ap.add_argument("--dst", default="02:00:00:00:00:01")
    ap.add_argument("--label", default="tx")
    ap.add_argument("--only-dst", action="store_true", help="ignore frames to other addresses")
    ap.add_argument("--max-len", type=int, default=0,
                    help="ignore frames longer than this (oversized ones the device drops)")
    ap.add_argument("pcap")
    a = ap.parse_args()
    if not shutil.which("tshark"):
        print("# tshark not found: apt-get install -y tshark")
        print("0 passed, 1 failed")
        return 1
    # frame.len, then the whole frame as hex (eth.dst, eth.src, eth.type, data: the payload)
    out = subprocess.run(["tshark", "-r", a.pcap, "-T", "fields", "-E", "separator=/t",
                          "-e", "frame.number", "-e", "frame.len", "-e", "eth.dst", "-e", "eth.src",
                          "-e", "eth.type", "-e", "data.data"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        print(f"# tshark failed ({out.returncode}): {out.stderr.strip()[:400]}")
        print("0 passed, 1 failed")
        return 1
    dst = mac(a.dst)
    src = mac(a.src) if a.src else None
    want = a.first
    end = a.first + a.frames
    bad = []
    other = 0
    ours = 0
    for line in out.stdout.splitlines():
        f = line.split("\t")
        if len(f) < 6:
            f += [""] * (6 - len(f))
        num, flen, edst, esrc, etype, data = f[:6]
        if not etype or int(etype, 16) != ETHERTYPE or (a.only_dst and mac(edst) != dst) or \
                (a.max_len and int(flen) > a.max_len):
            other += 1
            continue
        ours += 1
        frame = mac(edst) + mac(esrc) + int(etype, 16).to_bytes(2, "big") + bytes.fromhex(data)
        if len(frame) < 24 or frame[14:18] != b"UBDM":
            bad.append(f"frame {num}: EtherType 0x88B5 without the UBDM header")
            continue
        seq = int.from_bytes(frame[18:22], "big")
        if src is None:
            src = frame[6:12]
        if seq != want:
            bad.append(f"frame {num}: sequence {seq}, expected {want}" +
                       (" (a frame is missing)" if seq > want else " (duplicate or out of order)"))
            want = seq + 1
            continue
        exp = expected(seq, dst, src)
        if int(flen) != len(exp) or frame != exp:
            diff = next((i for i in range(min(len(frame), len(exp))) if frame[i] != exp[i]), None)
            bad.append(f"frame {num}: sequence {seq}: {len(frame)} bytes (want {len(exp)})" +
                       (f", first wrong byte at {diff}: {frame[diff]:#04x} want {exp[diff]:#04x}"
                        if diff is not None else ""))
        want = seq + 1
    fails = 0

    def res(ok, msg):
        nonlocal fails
        fails += not ok
        print(f"{'ok' if ok else 'not ok'} - {a.label}: {msg}")

    res(want >= end and ours == a.frames and not bad,
        f"{ours} pattern frames in {a.pcap} (want {a.frames}, sequence {a.first}..{end - 1}); "
        f"{other} other frame(s) ignored")
    for b in bad[:20]:
        print(f"#   {b}")
    if len(bad) > 20:
        print(f"#   ... {len(bad) - 20} more")
    if want < end and not bad:
        print(f"#   frames {want}..{end - 1} missing")
    print(f"{1 - fails} passed, {fails} failed")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
