"""Probes the box from an outside host, as a scanner would (scapy).

    python3 probe.py TARGET [TARGET...] --spoof INSIDE_SRC --spoof-dst ADDR... [--ports N]

Sends to every target: TCP SYNs and UDP datagrams to ports 1..N and a few
well-known ones (the control API's 9091 among them), an ICMP echo, a SYN
and an echo with TTL 1, a SYN/ACK and a RST out of nowhere, a later
fragment with no first one, and a packet of an unknown protocol. Then
packets that claim an inside source (`--spoof`) to `--spoof-dst`. Prints
how many it sent; the test counts what came back with tcpdump.
"""
import argparse
import sys

from scapy.all import ICMP, IP, TCP, UDP, Raw, conf, send  # noqa: E402

conf.verb = 0


def probes(dst, ports):
    wanted = sorted(set(range(1, ports + 1)) | {443, 1022, 2049, 8080, 9091})
    for p in wanted:
        yield IP(dst=dst) / TCP(sport=40000 + p % 1000, dport=p, flags="S", seq=p * 7919)
        yield IP(dst=dst) / UDP(sport=41000 + p % 1000, dport=p) / Raw(b"probe")
    yield IP(dst=dst) / ICMP(type=8, id=4242, seq=1)
    yield IP(dst=dst, ttl=1) / TCP(sport=45000, dport=22, flags="S")
    yield IP(dst=dst, ttl=1) / ICMP(type=8, id=4243, seq=1)
    yield IP(dst=dst) / TCP(sport=45001, dport=80, flags="SA", seq=1, ack=1)
    yield IP(dst=dst) / TCP(sport=45002, dport=80, flags="R", seq=1)
    yield IP(dst=dst, id=777, frag=100, proto=17) / Raw(b"x" * 64)
    yield IP(dst=dst, proto=47) / Raw(b"\x00" * 8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("targets", nargs="+")
    ap.add_argument("--spoof", required=True)
    ap.add_argument("--spoof-dst", required=True, nargs="+")
    ap.add_argument("--ports", type=int, default=200)
    a = ap.parse_args()
    pkts = [p for t in a.targets for p in probes(t, a.ports)]
    for d in a.spoof_dst:
        for p in [22, 80, 9091]:
            pkts.append(IP(src=a.spoof, dst=d) / TCP(sport=46000, dport=p, flags="S"))
            pkts.append(IP(src=a.spoof, dst=d) / UDP(sport=46000, dport=p))
        pkts.append(IP(src=a.spoof, dst=d) / ICMP(type=8, id=4244, seq=1))
    send(pkts, inter=0)
    print("sent %d" % len(pkts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
