"""A GRE tunnel endpoint in user space, for a kernel without the GRE driver.

    gretun.py LOCAL REMOTE TUN_ADDR PEER_ADDR

Makes a TUN device `gre-t` with TUN_ADDR and a route to PEER_ADDR through
it; every IPv4 packet the kernel routes into it leaves in a GRE packet
(RFC 2784: a 4-byte header, no checksum, key or sequence number, protocol
type 0x0800) from LOCAL to REMOTE over a raw IP socket of protocol 47, and
every GRE packet that arrives for LOCAL carries its inner packet back into
the TUN device, so `ping PEER_ADDR` crosses whatever is between the two
endpoints (masq here) as GRE. With REMOTE `learn`, the endpoint answers
the source of the first GRE packet it receives (the outside end, which
only knows masq's public address once it sees it). Prints `up`, then
`from ADDRESS` once per new GRE source, and runs until killed.
"""

import fcntl
import os
import select
import socket
import struct
import subprocess
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
GRE_IPV4 = b"\x00\x00\x08\x00"

local, remote, addr, peer = sys.argv[1:5]
tun = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", b"gre-t", IFF_TUN | IFF_NO_PI))
subprocess.run(["ip", "addr", "add", addr, "peer", peer, "dev", "gre-t"], check=True)
subprocess.run(["ip", "link", "set", "gre-t", "mtu", "1400", "up"], check=True)

raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
raw.bind((local, 0))
to = None if remote == "learn" else remote
seen = set()
print("up", flush=True)
while True:
    ready, _, _ = select.select([tun, raw], [], [])
    if tun in ready:
        inner = os.read(tun, 65535)
        if to and inner[:1] and inner[0] >> 4 == 4:
            raw.sendto(GRE_IPV4 + inner, (to, 0))
    if raw in ready:
        packet, (src, _) = raw.recvfrom(65535)
        ihl = (packet[0] & 0x0F) * 4
        gre = packet[ihl : ihl + 4]
        if gre != GRE_IPV4:
            continue
        if src not in seen:
            seen.add(src)
            print("from", src, flush=True)
        if remote == "learn":
            to = src
        os.write(tun, packet[ihl + 4 :])
