# check_profiles.py: compiles masq's TRex profiles with TRex's own client
# library (lbr-trex-client, no TRex server needed) and checks the compiled
# streams: frame sizes, address and port ranges, rates. Run by
# control/tests/trex.rs in the venv deploy/setup.sh makes (target/trex-venv).
# Exit status 0 when every check holds; each failure printed.
import ipaddress
import os
import sys

import lbr_trex_client  # noqa: F401  (puts trex on sys.path)
from trex.astf.api import ASTFProfile
from trex.stl.api import STLProfile

HERE = os.path.dirname(os.path.abspath(__file__))
fails = []


def check(what, got, want):
    if got != want:
        fails.append("%s: got %r, want %r" % (what, got, want))


def ip(n):
    return int(ipaddress.IPv4Address(n))


def stl(name, direction, **t):
    prof = STLProfile.load_py(os.path.join(HERE, name), direction=direction,
                              port_id=direction, **t)
    return prof.to_json()


def tuple_var(stream):
    ins = stream["vm"]["instructions"]
    tg = [i for i in ins if i["type"] == "tuple_flow_var"]
    wr = {i["name"]: i["pkt_offset"] for i in ins if i["type"] == "write_flow_var"}
    return tg[0], wr


def size(stream):
    return len(__import__("base64").b64decode(stream["packet"]["binary"]))


def grid(direction, sizes, rates, hosts, pool_size, **t):
    js = stl("masq_grid.py", direction, hosts=hosts, pool_size=pool_size, **t)
    tag = "grid dir %d %r" % (direction, t)
    check(tag + " sizes", [size(s) for s in js], sizes)
    check(tag + " rates", [round(s["mode"]["rate"]["value"]) for s in js], rates)
    for s in js:
        ins = s["vm"]["instructions"]
        var = {i["name"]: i for i in ins if i["type"] == "flow_var"}
        masks = {i["name"]: (i["mask"], i["shift"]) for i in ins
                 if i["type"] == "write_mask_flow_var"}
        if direction == 0:
            tg, wr = tuple_var(s)
            check(tag + " flows", tg["limit_flows"], hosts * 63)
            check(tag + " src ip", (tg["ip_min"], tg["ip_max"]),
                  (ip("100.64.0.0"), ip("100.64.0.0") + hosts - 1))
            check(tag + " src port", (tg["port_min"], tg["port_max"]), (1024, 1086))
            check(tag + " writes", wr, {"t.ip": 26, "t.port": 34})
        else:
            check(tag + " dst ip", (var["a"]["min_value"], var["a"]["max_value"],
                                    var["a"]["next_var"]),
                  (ip("203.0.113.0"), ip("203.0.113.0") + pool_size - 1, "j"))
            check(tag + " port slot", (var["j"]["min_value"], var["j"]["max_value"],
                                       var["j"]["next_var"]), (0, 62, "b"))
            check(tag + " port block", (var["b"]["min_value"], var["b"]["max_value"]),
                  (16, 16 + hosts // pool_size - 1))
            check(tag + " port writes", masks, {"j": (0x3F, 0), "b": (0xFFC0, 6)})
            # The set of (address, port) it sends to is exactly the ports the
            # deterministic formula gives the forward flows (63 per subscriber).
            if hosts <= 4096:
                sent = {(a, ((b << 6) | j) & 0xFFFF)
                        for a in range(var["a"]["min_value"], var["a"]["max_value"] + 1)
                        for j in range(var["j"]["min_value"], var["j"]["max_value"] + 1)
                        for b in range(var["b"]["min_value"], var["b"]["max_value"] + 1)}
                want = {(ip("203.0.113.0") + i % pool_size, 1024 + (i // pool_size) * 64 + k)
                        for i in range(hosts) for k in range(63)}
                check(tag + " reverse tuples = mapped tuples", sent == want, True)


# The CSIT grid's ends, 64 B and IMIX, both directions.
for hosts in (1024, 262144):
    for d in (0, 1):
        grid(d, [60], [1000000], hosts, 16, size="64")
        grid(d, [60, 590, 1514], [583333, 333333, 83333], hosts, 16,
             size="imix", pps=1000000)
grid(0, [1514], [5000], 4096, 64, size="1518", pps=5000)

# CPS: every packet a new flow over hosts x 1024..65535.
js = stl("masq_cps.py", 0, hosts=4096, cps=250000)
check("cps streams", len(js), 1)
check("cps size", size(js[0]), 60)
check("cps rate", js[0]["mode"]["rate"]["value"], 250000)
tg, wr = tuple_var(js[0])
check("cps src ip", (tg["ip_min"], tg["ip_max"]),
      (ip("100.64.0.0"), ip("100.64.0.0") + 4095))
check("cps src port", (tg["port_min"], tg["port_max"]), (1024, 65535))
check("cps flows", tg["limit_flows"], 4096 * 64512)
check("cps writes", wr, {"t.ip": 26, "t.port": 34})

# ASTF HTTP: client and server ranges, cps.
prof = ASTFProfile.load_py(os.path.join(HERE, "masq_http.py"), hosts=2048,
                           servers=4, cps=500, resp=1000)
j = prof.to_json()
dist = {d["dir"]: d for d in j["ip_gen_dist_list"]}
check("http clients", (dist["c"]["ip_start"], dist["c"]["ip_end"]),
      ("100.64.0.0", "100.64.7.255"))
check("http servers", (dist["s"]["ip_start"], dist["s"]["ip_end"]),
      ("198.51.100.1", "198.51.100.4"))
ct = j["templates"][0]["client_template"]
check("http cps", ct["cps"], 500)
check("http port", ct["port"], 80)
# The programs' bytes: the client sends the GET and waits for the whole
# answer (head + resp bytes); the server waits for the GET and sends it.
import base64  # noqa: E402
bufs = [base64.b64decode(b) for b in j["buf_list"]]
progs = j["program_list"]
cmds = progs[ct["program_index"]]["commands"]
srv = progs[j["templates"][0]["server_template"]["program_index"]]["commands"]
get = (b"GET /blob HTTP/1.1\r\nHost: 198.51.100.1\r\n"
       b"User-Agent: trex-masq\r\nAccept: */*\r\n\r\n")
head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
check("http client program", [c["name"] for c in cmds], ["tx", "rx"])
check("http client sends", bufs[cmds[0]["buf_index"]], get)
check("http client waits for", cmds[1].get("min_bytes"), len(head) + 1000)
check("http server program", [c["name"] for c in srv], ["rx", "tx"])
check("http server waits for", srv[0].get("min_bytes"), len(get))
check("http server sends", bufs[srv[1]["buf_index"]], head + b"x" * 1000)

# compile.py (what `compare gen --profile` reads) gives the same JSON.
import json  # noqa: E402
import subprocess  # noqa: E402
out = subprocess.run([sys.executable, os.path.join(HERE, "compile.py"),
                      os.path.join(HERE, "masq_grid.py"), "--direction", "1",
                      "-t", "hosts=4096,size=imix,pool_size=64"],
                     capture_output=True, text=True)
check("compile.py status", out.returncode, 0)
if out.returncode == 0:
    check("compile.py json", json.loads(out.stdout),
          json.loads(json.dumps(stl("masq_grid.py", 1, hosts=4096, size="imix",
                                    pool_size=64))))

if fails:
    print("\n".join(fails))
    sys.exit(1)
print("trex profiles: all checks hold")
