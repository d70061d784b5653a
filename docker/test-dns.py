#!/usr/bin/env python3
"""test-dns: a tiny authoritative DNS responder for scripts/test-docker.sh.

    test-dns.py ADDR PORT NAME IPV4 [LIFETIME_SECONDS]

Answers UDP queries for NAME: type A with IPV4, any other type with an empty
NOERROR answer (so a resolver asking for AAAA too gets its answer at once);
every other name gets NXDOMAIN.  Prints "ready" on stdout once bound (exit 3
if the port is taken), one line per query on stderr, and exits by itself
after LIFETIME_SECONDS (default 600).  Loopback only.
"""
import errno
import socket
import struct
import sys
import time


def qname(packet, off):
    labels = []
    while True:
        n = packet[off]
        off += 1
        if n == 0:
            return ".".join(labels).lower(), off
        if n & 0xC0:
            raise ValueError("compressed name in a question")
        labels.append(packet[off:off + n].decode("ascii", "replace"))
        off += n


def main():
    addr, port, name, ip = sys.argv[1], int(sys.argv[2]), sys.argv[3].lower().rstrip("."), sys.argv[4]
    lifetime = float(sys.argv[5]) if len(sys.argv) > 5 else 600.0
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((addr, port))
    except OSError as e:
        print(f"test-dns: cannot bind {addr}:{port}: {e}", file=sys.stderr)
        return 3 if e.errno in (errno.EADDRINUSE, errno.EACCES) else 1
    print("ready", flush=True)
    deadline = time.monotonic() + lifetime
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            packet, peer = sock.recvfrom(1500)
        except socket.timeout:
            break
        try:
            qid, flags, qdcount = struct.unpack("!HHH", packet[:6])
            if qdcount != 1 or flags & 0x8000:
                continue
            q, end = qname(packet, 12)
            qtype, _qclass = struct.unpack("!HH", packet[end:end + 4])
        except (ValueError, IndexError, struct.error):
            continue
        question = packet[12:end + 4]
        rd = flags & 0x0100
        if q == name:
            answers = []
            if qtype == 1:
                answers.append(struct.pack("!HHHIH", 0xC00C, 1, 1, 30, 4) + socket.inet_aton(ip))
            head = struct.pack("!HHHHHH", qid, 0x8400 | rd, 1, len(answers), 0, 0)
            reply = head + question + b"".join(answers)
            verdict = f"{len(answers)} answer(s)"
        else:
            reply = struct.pack("!HHHHHH", qid, 0x8403 | rd, 1, 0, 0, 0) + question
            verdict = "NXDOMAIN"
        print(f"test-dns: {peer[0]} asked {q} type {qtype}: {verdict}", file=sys.stderr, flush=True)
        sock.sendto(reply, peer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
