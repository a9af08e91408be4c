# masq_http.py: TRex ASTF profile, HTTP-like TCP sessions through masq.
#
# Wiring: TRex port 0 (ASTF client side) ──── masq inside link; TRex port 1
# (server side) ──── masq outside link. Clients are subscribers
# 100.64.0.0/10 (`hosts` of them from 100.64.0.0), servers 198.51.100.0/24
# (`servers` of them from 198.51.100.1) on port 80. The server side sees
# masq's pool addresses (e.g. 203.0.113.0/28): run TRex ASTF with
# `--astf-server-only`-style topology or without client-IP checks, as a
# NAT sits between (TRex's docs: "NAT / TCP flows through a DUT that
# changes the tuple": `--lro-disable`, and the profile's tcp_delay_ack off).
# Each session: connect, a GET of ~100 bytes, a `resp`-byte answer, close.
#
#   start -f masq_http.py -t hosts=1024,servers=16,cps=1000,resp=32768
import argparse
import ipaddress

from trex.astf.api import (ASTFAssociationRule, ASTFCapInfo, ASTFIPGen,
                           ASTFIPGenDist, ASTFIPGenGlobal, ASTFProfile,
                           ASTFProgram, ASTFTCPClientTemplate,
                           ASTFTCPServerTemplate, ASTFTemplate)

REQ = (b"GET /blob HTTP/1.1\r\nHost: 198.51.100.1\r\n"
       b"User-Agent: trex-masq\r\nAccept: */*\r\n\r\n")


class MasqHttp(object):
    def get_profile(self, tunables=(), **kwargs):
        p = argparse.ArgumentParser(prog="masq_http.py")
        p.add_argument("--hosts", type=int, default=1024)
        p.add_argument("--servers", type=int, default=16)
        p.add_argument("--cps", type=float, default=1000)
        p.add_argument("--resp", type=int, default=32768)
        p.add_argument("--inside", default="100.64.0.0")
        p.add_argument("--server", default="198.51.100.1")
        a = p.parse_args(list(tunables))
        resp_head = ("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"
                     % a.resp).encode()
        c = ASTFProgram()
        c.send(REQ)
        c.recv(len(resp_head) + a.resp)
        s = ASTFProgram()
        s.recv(len(REQ))
        s.send(resp_head + b"x" * a.resp)
        ins = ipaddress.IPv4Address(a.inside)
        srv = ipaddress.IPv4Address(a.server)
        ip_gen = ASTFIPGen(
            glob=ASTFIPGenGlobal(ip_offset="0.0.0.0"),
            dist_client=ASTFIPGenDist(
                ip_range=[str(ins), str(ins + a.hosts - 1)],
                distribution="seq"),
            dist_server=ASTFIPGenDist(
                ip_range=[str(srv), str(srv + a.servers - 1)],
                distribution="seq"))
        tmpl = ASTFTemplate(
            client_template=ASTFTCPClientTemplate(
                program=c, ip_gen=ip_gen, port=80, cps=a.cps),
            server_template=ASTFTCPServerTemplate(
                program=s, assoc=ASTFAssociationRule(port=80)))
        return ASTFProfile(default_ip_gen=ip_gen, templates=tmpl)


def register():
    return MasqHttp()
