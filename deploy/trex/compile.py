# compile.py: an STL profile to TRex's JSON stream list, no TRex server
# (lbr-trex-client; deploy/setup.sh makes the venv):
#   target/trex-venv/bin/python deploy/trex/compile.py deploy/trex/masq_grid.py \
#       [--direction 0|1] [-t hosts=1024,size=64] > grid.json
import argparse
import json
import sys

import lbr_trex_client  # noqa: F401  (puts trex on sys.path)
from trex.stl.api import STLProfile

p = argparse.ArgumentParser()
p.add_argument("profile")
p.add_argument("--direction", type=int, default=0)
p.add_argument("-t", default="", help="tunables, k=v,k=v")
a = p.parse_args()
tun = dict(kv.split("=", 1) for kv in a.t.split(",") if kv)
prof = STLProfile.load_py(a.profile, direction=a.direction,
                          port_id=a.direction, **tun)
json.dump(prof.to_json(), sys.stdout, indent=1)
sys.stdout.write("\n")
