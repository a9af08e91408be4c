# masq_grid.py: TRex STL profile, established UDP throughput over FD.io
# CSIT's NAT grid: `hosts` subscribers x 63 source ports each, both
# directions, 64-byte frames or IMIX.
#
# Wiring (TRex's two ports to masq's two links):
#   TRex port 0 ──── masq inside link  (subscribers 100.64.0.0/10, RFC 6598)
#   TRex port 1 ──── masq outside link (servers, here 198.51.100.0/24)
# Port 0 (direction 0) sends subscriber -> server: source 100.64.0.0 + i
# (i < hosts), source ports 1024..1086 (63), to one server 198.51.100.1:5001.
# Port 1 (direction 1) sends server -> pool: from 198.51.100.1:5001 to every
# pool address x port the forward flows were mapped to. That is known ahead
# only with a deterministic pool (RFC 7422, README "Deterministic pools"):
#   pools: [{ name: grid, mode: deterministic, inside: 100.64.0.0/22,
#             addresses: [203.0.113.0/28], ports: 1024-5055 }]
# (hosts=1024, 16 addresses: 64 subscribers an address x 63 ports =
# 4032 ports from 1024). Subscriber i leaves from address i % A with ports
# 1024 + (i / A) * 63 ..; the grid fills every one of them, so direction 1
# sends to addresses pool..pool+A-1 x ports 1024..1024 + hosts/A*63 - 1.
# Run direction 0 first (warm-up) so the sessions exist, then both.
# The TRex config's port 0 dest_mac is masq's inside MAC, port 1's its
# outside MAC (or masq's next hop: masq answers ARP for its pool).
#
#   start -f masq_grid.py -t hosts=1024,size=64,pool=203.0.113.0,pool_size=16 -m 10mpps
#   size: 64 (frame incl. FCS) .. 1518, or imix (64/594/1518 at 28:16:4)
#   pps: the stream's base rate (scaled by -m)
import argparse
import ipaddress

from trex.stl.api import (STLPktBuilder, STLProfile, STLScVmRaw, STLStream,
                          STLTXCont, STLVmFixIpv4, STLVmTupleGen,
                          STLVmWrFlowVar)
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

PORTS = 63
PORT_MIN = 1024
IMIX = ((64, 28), (594, 16), (1518, 4))


def frame(ip, udp, size):
    # TRex sizes exclude the 4-byte FCS: a "64-byte" frame is 60 here.
    base = Ether() / ip / udp
    pad = max(0, size - 4 - len(base))
    return base / (b"x" * pad)


class MasqGrid(object):
    def streams(self, direction, hosts, size, pps, inside, server, sport,
                pool, pool_size):
        if hosts < 1 or pool_size < 1 or hosts % pool_size:
            raise ValueError("hosts must be a multiple of pool_size")
        first = ipaddress.IPv4Address(inside)
        if direction == 0:
            ip = IP(src=str(first), dst=server)
            udp = UDP(sport=PORT_MIN, dport=sport, chksum=0)
            vm = STLScVmRaw([
                STLVmTupleGen(name="t", ip_min=str(first),
                              ip_max=str(first + hosts - 1),
                              port_min=PORT_MIN, port_max=PORT_MIN + PORTS - 1,
                              limit_flows=hosts * PORTS),
                STLVmWrFlowVar(fv_name="t.ip", pkt_offset="IP.src"),
                STLVmWrFlowVar(fv_name="t.port", pkt_offset="UDP.sport"),
                STLVmFixIpv4(offset="IP"),
            ])
        else:
            p0 = ipaddress.IPv4Address(pool)
            per = hosts // pool_size * PORTS
            ip = IP(src=server, dst=str(p0))
            udp = UDP(sport=sport, dport=PORT_MIN, chksum=0)
            vm = STLScVmRaw([
                STLVmTupleGen(name="t", ip_min=str(p0),
                              ip_max=str(p0 + pool_size - 1),
                              port_min=PORT_MIN, port_max=PORT_MIN + per - 1,
                              limit_flows=hosts * PORTS),
                STLVmWrFlowVar(fv_name="t.ip", pkt_offset="IP.dst"),
                STLVmWrFlowVar(fv_name="t.port", pkt_offset="UDP.dport"),
                STLVmFixIpv4(offset="IP"),
            ])
        sizes = IMIX if size == "imix" else ((int(size), 1),)
        total = sum(w for _, w in sizes)
        return [STLStream(packet=STLPktBuilder(pkt=frame(ip, udp, s), vm=vm),
                          mode=STLTXCont(pps=pps * w / total))
                for s, w in sizes]

    def get_streams(self, tunables=(), direction=0, **kwargs):
        p = argparse.ArgumentParser(prog="masq_grid.py")
        p.add_argument("--hosts", type=int, default=1024)
        p.add_argument("--size", default="64")
        p.add_argument("--pps", type=float, default=1000000)
        p.add_argument("--inside", default="100.64.0.0")
        p.add_argument("--server", default="198.51.100.1")
        p.add_argument("--sport", type=int, default=5001)
        p.add_argument("--pool", default="203.0.113.0")
        p.add_argument("--pool_size", type=int, default=16)
        a = p.parse_args(list(tunables))
        return self.streams(direction % 2, a.hosts, a.size, a.pps, a.inside,
                            a.server, a.sport, a.pool, a.pool_size)


def register():
    return MasqGrid()
