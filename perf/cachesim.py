#!/usr/bin/env python3
"""Attributes a callgrind cache simulation's last-level misses to masq's
source: perf/cachesim.sh runs it on a profile made with --cache-sim=yes and
--dump-instr=yes. Each instruction's misses go to its innermost masq source
line and that line's two nearest masq callers (addr2line -i), so a miss
inside an inlined helper (Index::insert) says which caller it served.

usage: cachesim.py PROFILE BINARY UNITS [TOP]
prints one JSON line of totals per unit, then the TOP sites.
"""
import collections
import json
import subprocess
import sys


def positions(tok, cur):
    """One subposition of a callgrind cost line (absolute, +rel, -rel, *)."""
    if tok == "*":
        return cur
    if tok[0] in "+-":
        v = int(tok[1:], 0)
        return cur + v if tok[0] == "+" else cur - v
    return int(tok, 0)


def read_profile(path):
    """Exclusive costs by instruction address, and the event names."""
    events, cost = [], collections.defaultdict(lambda: None)
    instr = line = 0
    call_line = False
    with open(path) as f:
        for raw in f:
            if raw.startswith("events:"):
                events = raw.split()[1:]
                continue
            if raw.startswith("calls="):
                call_line = True  # the next cost line is the call's inclusive cost
                continue
            if not raw or raw[0] not in "0123456789+-*":
                continue
            parts = raw.split()
            instr = positions(parts[0], instr)
            line = positions(parts[1], line)
            if call_line:
                call_line = False
                continue
            vals = [int(v) for v in parts[2:]]
            vals += [0] * (len(events) - len(vals))  # trailing zeros are left out
            have = cost[instr]
            cost[instr] = vals if have is None else [a + b for a, b in zip(have, vals)]
    return events, cost


def sites(binary, addrs):
    """addr2line's inlining chain of each address, masq frames only."""
    out = subprocess.run(
        ["addr2line", "-a", "-i", "-f", "-C", "-e", binary] + [hex(a) for a in addrs],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    chains, cur, i = {}, None, 0
    while i < len(out):
        if out[i].startswith("0x"):
            cur = int(out[i], 16)
            chains[cur] = []
            i += 1
            continue
        loc = out[i + 1] if i + 1 < len(out) else ""
        if "/rustc/" not in loc and not loc.startswith("??"):
            loc = loc.split(" (")[0]
            loc = loc[loc.find("dataplane/src/") + len("dataplane/src/"):] if "dataplane/src/" in loc else loc
            chains[cur].append(loc)
        i += 2
    return chains


def by_site(binary, costs, name, who):
    """Adds each address's cost (`costs`: address -> count) to `name` of
    its masq chain (innermost first), after checking the binary names masq
    lines for most of them; `who` heads the error."""
    chains = sites(binary, sorted(costs))
    if costs and sum(1 for a in costs if chains.get(a)) < len(costs) / 2:
        sys.exit(f"{who}: most addresses name no masq source line: "
                 "is BINARY the one the profile ran, built with debug info?")
    out = collections.Counter()
    for a, n in costs.items():
        out[name(chains.get(a, [])) or "?"] += n
    return out


def main():
    path, binary, units = sys.argv[1], sys.argv[2], float(sys.argv[3])
    top = int(sys.argv[4]) if len(sys.argv) > 4 else 12
    events, cost = read_profile(path)
    col = {e: k for k, e in enumerate(events)}
    need = ["Ir", "D1mr", "D1mw", "DLmr", "DLmw"]
    if any(e not in col for e in need):
        sys.exit("cachesim.py: the profile has no cache simulation (--cache-sim=yes)")
    total = {e: sum(v[col[e]] for v in cost.values() if v) / units for e in need}
    print(json.dumps({
        "instructions": round(total["Ir"], 1),
        "d1_misses": round(total["D1mr"] + total["D1mw"], 2),
        "ll_misses": round(total["DLmr"] + total["DLmw"], 2),
    }))
    ll = {a: v[col["DLmr"]] + v[col["DLmw"]] for a, v in cost.items() if v and v[col["DLmr"]] + v[col["DLmw"]]}
    misses = by_site(binary, ll, lambda chain: " <- ".join(chain[:3]), "cachesim.py")
    for site, n in misses.most_common(top):
        print(f"{n / units:7.3f}  {site}")


if __name__ == "__main__":
    main()
