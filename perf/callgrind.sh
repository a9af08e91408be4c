#!/usr/bin/env bash
# perf/callgrind.sh: instruction counts of the NAT engine, the stable figure
# on noisy machines (valgrind --tool=callgrind counts instructions, not time).
#
# Counts only instructions inside Engine::process (the harness that writes
# frames is excluded) for two run lengths and prints the difference divided
# by the extra packets (or sessions), to one decimal, so set-up cost drops out:
#   established: instructions per packet at 10k flows (UDP)
#   established TCP: the same for TCP ACKs of 10k connections
#   new-sessions: instructions per new session
#   fragments: per fragment of established UDP flows' datagrams cut in two
#     (first and later fragment; one worker, so no hand-off)
#   held fragments: the same with each later fragment first (held, then
#     released by its first; the worker's copy out of the hold not counted)
#   fragments over two workers: per fragment of the same datagrams when two
#     workers share the flows and each fragment comes off the wire at either
#     (frag-handoff-bench): both engines' passes, at its home and its
#     owner, counted; the copies through the hand-off queues not
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "callgrind.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cargo build -q --release -p perf
bin=target/release/engine-bench
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

collected() { # args...: prints the instruction count inside Engine::process
  collected_in "$bin" "$@"
}
collected_in() { # BIN args...: the same for another benchmark binary
  local b=$1
  shift
  valgrind --tool=callgrind --callgrind-out-file="$tmp/out" \
    --toggle-collect='dataplane::nat::*Engine>::process' "$b" "$@" 2>&1 >/dev/null |
    awk '/Collected/ {print $4}'
}

per() { # A B N: (B - A) / N to one decimal (a floor's last unit is not hidden by truncation)
  [[ $1 =~ ^[0-9]+$ && $2 =~ ^[0-9]+$ ]] || { echo "callgrind.sh: no instruction count from valgrind" >&2; exit 1; }
  awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.1f", (b - a) / n }'
}

a=$(collected --scenario established --flows 10000 --packets 1000000)
b=$(collected --scenario established --flows 10000 --packets 2000000)
per_pkt=$(per "$a" "$b" 1000000)
ta=$(collected --scenario established --tcp --flows 10000 --packets 1000000)
tb=$(collected --scenario established --tcp --flows 10000 --packets 2000000)
per_tcp=$(per "$ta" "$tb" 1000000)
c=$(collected --scenario new-sessions --flows 100000)
d=$(collected --scenario new-sessions --flows 200000)
per_session=$(per "$c" "$d" 100000)
fa=$(collected --scenario established --fragments --flows 10000 --packets 1000000)
fb=$(collected --scenario established --fragments --flows 10000 --packets 2000000)
per_frag=$(per "$fa" "$fb" 1000000)
ha=$(collected --scenario established --fragments --out-of-order --flows 10000 --packets 1000000)
hb=$(collected --scenario established --fragments --out-of-order --flows 10000 --packets 2000000)
per_held=$(per "$ha" "$hb" 1000000)
xa=$(collected_in target/release/frag-handoff-bench --packets 200000)
xb=$(collected_in target/release/frag-handoff-bench --packets 400000)
per_two=$(per "$xa" "$xb" 200000)
printf '{"established_instructions_per_packet":%s,"established_tcp_instructions_per_packet":%s,"new_session_instructions":%s,"fragment_instructions":%s,"held_fragment_instructions":%s,"two_worker_fragment_instructions":%s}\n' "$per_pkt" "$per_tcp" "$per_session" "$per_frag" "$per_held" "$per_two"
