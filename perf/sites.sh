#!/usr/bin/env bash
# perf/sites.sh: where the engine's instructions go, by call site: the
# marginal count perf/callgrind.sh prints, split by the chain of masq source
# lines each instruction was inlined through (outermost first, cut to
# --depth lines). For the instruction floors: which call in the batch (the
# port, an index insert, the rewrite) costs what, and, run on two builds,
# where a change moved them.
#
#   new: a new session (new-sessions, 100k against 200k flows)
#   udp: an established UDP packet (10k flows, 400k against 800k packets)
#   tcp: the same for TCP ACKs
#
# usage: perf/sites.sh new|udp|tcp [--depth N] [--top N] [--bin PATH] [--stack]
# (--bin: an engine-bench built elsewhere, e.g. another commit's; default
# this tree's, built here. --stack: only the instructions that load or
# store on the stack (%rsp-relative: spills and reloads, what a change in
# the batch's inlined code mostly moves), their total and by chain).
# Needs valgrind, addr2line and objdump (binutils).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-}
[ $# -gt 0 ] && shift
depth=3 top=30 bin= stack=
while [ $# -gt 0 ]; do
  case $1 in
    --depth) depth=$2; shift 2 ;;
    --top) top=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --stack) stack=stack; shift ;;
    *) echo "sites.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case $what in
  new) a=(--scenario new-sessions --flows 100000); b=(--scenario new-sessions --flows 200000); units=100000 ;;
  udp) a=(--scenario established --flows 10000 --packets 400000); b=(--scenario established --flows 10000 --packets 800000); units=400000 ;;
  tcp) a=(--scenario established --tcp --flows 10000 --packets 400000); b=(--scenario established --tcp --flows 10000 --packets 800000); units=400000 ;;
  -h|--help|"") sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; [ -n "$what" ]; exit $? ;;
  *) echo "sites.sh: what to count: new, udp or tcp (see --help)" >&2; exit 2 ;;
esac
command -v valgrind >/dev/null || { echo "sites.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
command -v addr2line >/dev/null || { echo "sites.sh: needs addr2line (apt-get install binutils)" >&2; exit 1; }
if [ -z "$bin" ]; then
  cargo build -q --release -p perf
  bin=target/release/engine-bench
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for run in a b; do
  declare -n args=$run
  valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file="$tmp/$run" \
    --toggle-collect='dataplane::nat::*Engine>::process' "$bin" "${args[@]}" >/dev/null 2>"$tmp/log" ||
    { cat "$tmp/log" >&2; exit 1; }
done
if [ -n "$stack" ]; then
  objdump -d --no-show-raw-insn "$bin" >"$tmp/dis"
  python3 perf/sites.py "$tmp/a" "$tmp/b" "$bin" "$units" "$depth" "$top" "$tmp/dis"
else
  python3 perf/sites.py "$tmp/a" "$tmp/b" "$bin" "$units" "$depth" "$top"
fi
