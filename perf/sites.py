#!/usr/bin/env python3
"""Where the engine's instructions go, by call site: perf/sites.sh runs
engine-bench twice under callgrind (--dump-instr=yes, only inside
Engine::process) at two run lengths, and this takes the difference of
each instruction's count (so set-up drops out, as in perf/callgrind.sh)
and adds it to the chain of masq source lines it was inlined through
(addr2line -i), outermost first, cut to DEPTH lines. Inlining makes a
function's own symbol useless here: nearly all of a batch is one
function, `process_dir`; the chain says which call in it (an index
insert, the port, the rewrite) each instruction served.

usage: sites.py PROFILE_A PROFILE_B BINARY UNITS [DEPTH] [TOP] [DISASSEMBLY]
prints the total per unit (what perf/callgrind.sh prints), then the TOP
chains by instructions per unit. With DISASSEMBLY (objdump -d
--no-show-raw-insn of BINARY) it counts only the instructions with a
%rsp-relative memory operand (spills and reloads; push, pop, calls,
an lea of a stack address and the stack pointer's own adjustments are
not), and prints their share.
"""
import os
import re
import sys

sys.dont_write_bytecode = True  # no perf/__pycache__ left in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cachesim import by_site, read_profile  # noqa: E402  (the same profile reader and addr2line chains)


def instructions(path):
    events, cost = read_profile(path)
    if "Ir" not in events:
        sys.exit(f"sites.py: {path} counts no instructions")
    k = events.index("Ir")
    return {a: v[k] for a, v in cost.items() if v}


def stack_addresses(path):
    """The addresses of the instructions in an objdump listing that load
    or store at a %rsp-relative address."""
    found = set()
    line_re = re.compile(r"\s*([0-9a-f]+):\s+(\S+)\s*(.*)")
    with open(path) as f:
        for line in f:
            m = line_re.match(line)
            if m and "(%rsp" in m.group(3) and not m.group(2).startswith(("push", "pop", "call", "ret", "lea", "nop")):
                found.add(int(m.group(1), 16))
    return found


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    a, b = instructions(sys.argv[1]), instructions(sys.argv[2])
    binary, units = sys.argv[3], float(sys.argv[4])
    depth = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    top = int(sys.argv[6]) if len(sys.argv) > 6 else 30
    diff = {x: b.get(x, 0) - a.get(x, 0) for x in set(a) | set(b)}
    diff = {x: n for x, n in diff.items() if n}
    if len(sys.argv) > 7:
        every = sum(diff.values())
        on_stack = stack_addresses(sys.argv[7])
        diff = {x: n for x, n in diff.items() if x in on_stack}
        print(f"stack loads and stores {sum(diff.values()) / units:.1f} of {every / units:.1f} instructions per unit")
    by_chain = by_site(binary, diff, lambda chain: " > ".join(list(reversed(chain))[:depth]), "sites.py")
    print(f"total {sum(diff.values()) / units:.1f} instructions per unit")
    for chain, n in by_chain.most_common(top):
        print(f"{n / units:7.1f}  {chain}")


if __name__ == "__main__":
    main()
