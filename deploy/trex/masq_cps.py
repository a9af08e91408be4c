# masq_cps.py: TRex STL profile, connections (sessions) per second: every
# packet a new UDP flow, inside -> outside only.
#
# Wiring: TRex port 0 ──── masq inside link (subscribers 100.64.0.0/10);
# TRex port 1 ──── masq outside link (servers 198.51.100.0/24; it only
# receives, the translated packets from masq's pool, e.g. 203.0.113.0/28 of
# a port-block pool). Load it on port 0 only (`--port 0`).
# Source: `hosts` subscribers from 100.64.0.0 x source ports 1024..65535,
# the tuple generator stepping the address first, so consecutive packets
# are different subscribers and no 5-tuple repeats before hosts x 64512
# packets. masq's sessions table and port blocks see a new session each
# packet until they are full (then `ports_exhausted` / session limits).
#
#   start -f masq_cps.py --port 0 -t hosts=1024,cps=100000,size=64
import argparse
import ipaddress

from trex.stl.api import (STLPktBuilder, STLScVmRaw, STLStream, STLTXCont,
                          STLVmFixIpv4, STLVmTupleGen, STLVmWrFlowVar)
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

PORT_MIN = 1024
PORT_MAX = 65535


class MasqCps(object):
    def get_streams(self, tunables=(), direction=0, **kwargs):
        p = argparse.ArgumentParser(prog="masq_cps.py")
        p.add_argument("--hosts", type=int, default=1024)
        p.add_argument("--cps", type=float, default=100000)
        p.add_argument("--size", type=int, default=64)
        p.add_argument("--inside", default="100.64.0.0")
        p.add_argument("--server", default="198.51.100.1")
        p.add_argument("--dport", type=int, default=5001)
        a = p.parse_args(list(tunables))
        first = ipaddress.IPv4Address(a.inside)
        base = Ether() / IP(src=str(first), dst=a.server) / UDP(
            sport=PORT_MIN, dport=a.dport, chksum=0)
        pkt = base / (b"x" * max(0, a.size - 4 - len(base)))
        vm = STLScVmRaw([
            STLVmTupleGen(name="t", ip_min=str(first),
                          ip_max=str(first + a.hosts - 1),
                          port_min=PORT_MIN, port_max=PORT_MAX,
                          limit_flows=a.hosts * (PORT_MAX - PORT_MIN + 1)),
            STLVmWrFlowVar(fv_name="t.ip", pkt_offset="IP.src"),
            STLVmWrFlowVar(fv_name="t.port", pkt_offset="UDP.sport"),
            STLVmFixIpv4(offset="IP"),
        ])
        return [STLStream(packet=STLPktBuilder(pkt=pkt, vm=vm),
                          mode=STLTXCont(pps=a.cps))]


def register():
    return MasqCps()
