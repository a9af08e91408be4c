"""Sends a fragmented UDP datagram last fragment first (scapy), as a path
that reorders would deliver it (RFC 4787 REQ-14).

    python3 frag_out_of_order.py send SRC SPORT DST DPORT SIZE
        sends the datagram (SIZE bytes of a fixed pattern) in three
        fragments, last first; prints "sent N fragments".
    python3 frag_out_of_order.py echo DST DPORT SPORT SIZE
        binds a UDP socket on SPORT, sends the datagram from it that way,
        waits for its echo and prints "echo intact" (or what came); then
        waits for one more datagram, the pattern of SIZE bytes sent to it
        the same way from outside, and prints "second intact from ADDR:PORT".
The receiving kernel reassembles: whole means every fragment crossed.
"""
import socket
import sys

from scapy.all import IP, UDP, Raw, conf, fragment, send  # noqa: E402

conf.verb = 0


def pattern(size):
    return bytes((i * 7 + 3) % 256 for i in range(size))


def send_reversed(src, sport, dst, dport, data, ident):
    ip = IP(dst=dst, id=ident) if src is None else IP(src=src, dst=dst, id=ident)
    frags = fragment(ip / UDP(sport=sport, dport=dport) / Raw(data), fragsize=(len(data) + 8) // 3 // 8 * 8 + 8)
    assert len(frags) == 3, len(frags)
    send(list(reversed(frags)))
    return len(frags)


def main():
    mode = sys.argv[1]
    if mode == "send":
        src, sport, dst, dport, size = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
        n = send_reversed(src, sport, dst, dport, pattern(size), 0x4D52)
        print("sent %d fragments" % n, flush=True)
        return
    dst, dport, sport, size = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", sport))
    s.settimeout(10)
    data = pattern(size)[::-1]
    n = send_reversed(None, sport, dst, dport, data, 0x4D51)
    print("sent %d fragments" % n, flush=True)
    try:
        r, _ = s.recvfrom(65535)
        print("echo intact" if r == data else "echo differs: %d bytes" % len(r), flush=True)
        r, a = s.recvfrom(65535)
        ok = "intact" if r == pattern(size) else "differs (%d bytes)" % len(r)
        print("second %s from %s:%d" % (ok, a[0], a[1]), flush=True)
    except socket.timeout:
        print("timeout", flush=True)


main()
