#!/usr/bin/env bash
# perf/cachesim.sh: where the engine's new sessions miss the caches, a
# stable figure on machines without a PMU (this VM has none) and too noisy
# for A/B timing (new-session rates vary by 10-20% run to run here).
#
# Runs engine-bench's new-sessions scenario (random flow order) under
# callgrind's cache simulation, counting only inside Engine::process, and
# prints one JSON line per session (instructions, D1 misses, last-level
# misses) and the sites of the last-level misses: each a masq source line
# and its two nearest masq callers (perf/cachesim.py).
#
# What it models: an 8-way 32 KiB D1 and a 16-way last level of --ll-mib
# MiB (default 32: this VM's L3; a VM's share of it may be smaller). What it
# does not: software prefetches (a miss the batch pipeline asks for early
# still counts, so read the sites against what nat::batch prefetches), the
# hardware prefetchers (sequential slab writes count), TLBs and other
# tenants. So it says which lines come from memory, not how long the core
# waits for them.
#
# usage: perf/cachesim.sh [--flows N] [--ports-per-sub N] [--ll-mib N] [--top N]
set -euo pipefail
cd "$(dirname "$0")/.."
flows=1000000 pps=1000 ll=32 top=12
while [ $# -gt 0 ]; do
  case $1 in
    --flows) flows=$2; shift 2 ;;
    --ports-per-sub) pps=$2; shift 2 ;;
    --ll-mib) ll=$2; shift 2 ;;
    --top) top=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "cachesim.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
command -v valgrind >/dev/null || { echo "cachesim.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
command -v addr2line >/dev/null || { echo "cachesim.sh: needs addr2line (apt-get install binutils)" >&2; exit 1; }
cargo build -q --release -p perf
bin=target/release/engine-bench
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "cachesim: new-sessions, $flows flows, $pps a subscriber, LL $ll MiB (takes a minute or two)" >&2
valgrind --tool=callgrind --cache-sim=yes --dump-instr=yes \
  --D1=32768,8,64 --I1=32768,8,64 --LL=$((ll * 1024 * 1024)),16,64 \
  --callgrind-out-file="$tmp/out" --toggle-collect='dataplane::nat::*Engine>::process' \
  "$bin" --scenario new-sessions --flows "$flows" --ports-per-sub "$pps" >/dev/null 2>"$tmp/log" ||
  { cat "$tmp/log" >&2; exit 1; }
python3 perf/cachesim.py "$tmp/out" "$bin" "$flows" "$top"
