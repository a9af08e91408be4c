"""GRE and ESP through masq, with scapy (Debian's /usr/bin/python3: the
kernel here has no GRE module, so no `ip tunnel`).

  proto.py answer IFACE N          (outside) sniff N GRE/ESP packets arriving
                                   on IFACE, print each, answer each from its
                                   destination to its source
  proto.py send IFACE SRC DST      (inside) send a GRE packet (IPv4 in GRE:
                                   an ICMP echo, as a tunnel carries ping) and
                                   an ESP packet from SRC to DST, print the
                                   GRE/ESP packets that come back to SRC
"""
import sys
import time

from scapy.all import AsyncSniffer, ESP, GRE, ICMP, IP, Raw, conf, send, sniff

conf.verb = 0
FILTER = "ip proto 47 or ip proto 50"


def describe(p):
    ip = p[IP]
    if GRE in p:
        inner = p[GRE].payload
        kind = "icmp-type-%d" % inner[ICMP].type if ICMP in inner else "other"
        return "gre %s > %s inner %s > %s %s" % (ip.src, ip.dst, inner.src, inner.dst, kind)
    if ESP in p:
        return "esp %s > %s spi 0x%x seq %d" % (ip.src, ip.dst, p[ESP].spi, p[ESP].seq)
    return "other %s > %s proto %d" % (ip.src, ip.dst, ip.proto)


def answer(iface, n):
    def reply(p):
        ip = p[IP]
        if GRE in p:
            inner = p[GRE].payload
            echo = inner[ICMP]
            back = IP(src=inner.dst, dst=inner.src) / ICMP(type=0, id=echo.id, seq=echo.seq) / bytes(echo.payload)
            send(IP(src=ip.dst, dst=ip.src) / GRE() / back)
        elif ESP in p:
            send(IP(src=ip.dst, dst=ip.src) / ESP(spi=p[ESP].spi + 1, seq=p[ESP].seq) / Raw(b"reply-ciphertext"))
        print("got " + describe(p), flush=True)

    print("listening", flush=True)
    sniff(iface=iface, filter=FILTER + " and inbound", prn=reply, count=n, timeout=20)


def send_both(iface, src, dst):
    s = AsyncSniffer(iface=iface, filter="(%s) and dst host %s" % (FILTER, src))
    s.start()
    time.sleep(0.5)
    inner = IP(src="10.9.0.1", dst="10.9.0.2") / ICMP(type=8, id=7, seq=1) / Raw(b"through the tunnel")
    send(IP(src=src, dst=dst) / GRE() / inner)
    send(IP(src=src, dst=dst) / ESP(spi=0x1000, seq=1) / Raw(b"opaque-ciphertext"))
    time.sleep(2)
    for p in s.stop():
        print("back " + describe(p), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "answer":
        answer(sys.argv[2], int(sys.argv[3]))
    else:
        send_both(sys.argv[2], sys.argv[3], sys.argv[4])
