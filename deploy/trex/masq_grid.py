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
#             addresses: [203.0.113.0/28], ports: 1024-65535,
#             ports_per_subscriber: 64 }]
# (hosts=1024, pool_size=16; inside must be the hosts' prefix, a power of
# two). Subscriber i leaves from address i % A with ports 1024 + (i / A) * 64
# .. + 63 and its 63 flows take the first 63, so direction 1 sends to every
# address x block x first 63 ports (nested field-engine counters below).
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
                          STLTXCont, STLVmFixIpv4, STLVmFlowVar,
                          STLVmTupleGen, STLVmWrFlowVar, STLVmWrMaskFlowVar)
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
            # Subscriber i's range is ports 1024 + b*64 .. + 63 on address
            # i % A (b = i / A); its 63 flows take the first 63 of them (its
            # own source ports in block 0, the first free ones elsewhere).
            # Nested counters: address (inner), j = 0..62, block b (outer);
            # port = (16 + b) << 6 | j, 1024 being 16 << 6.
            p0 = ipaddress.IPv4Address(pool)
            blocks = hosts // pool_size
            ip = IP(src=server, dst=str(p0))
            udp = UDP(sport=sport, dport=PORT_MIN, chksum=0)
            hi = PORT_MIN >> 6
            vm = STLScVmRaw([
                STLVmFlowVar(name="b", min_value=hi, max_value=hi + blocks - 1,
                             size=2, op="inc"),
                STLVmFlowVar(name="j", min_value=0, max_value=PORTS - 1,
                             size=2, op="inc", next_var="b"),
                STLVmFlowVar(name="a", min_value=str(p0),
                             max_value=str(p0 + pool_size - 1), size=4,
                             op="inc", next_var="j"),
                STLVmWrFlowVar(fv_name="a", pkt_offset="IP.dst"),
                STLVmWrMaskFlowVar(fv_name="j", pkt_offset="UDP.dport",
                                   pkt_cast_size=2, mask=0x003F),
                STLVmWrMaskFlowVar(fv_name="b", pkt_offset="UDP.dport",
                                   pkt_cast_size=2, mask=0xFFC0, shift=6),
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
