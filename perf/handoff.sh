#!/usr/bin/env bash
# perf/handoff.sh: hand-off under load in the two-worker lab (issue 18).
#
#   sudo perf/handoff.sh [SECONDS] [RATE]          one run, a line per second
#   sudo perf/handoff.sh --sweep SECONDS RATE...   a row per rate
#   (RATE per sender, iperf3's units: 100M bit/s by default; --reverse in
#   front of either form sends from outside to inside instead)
#
# Brings up the namespace lab with two-queue links, runs masq with two
# workers (cores 0 and 1) and sends UDP between both subscribers
# (100.64.0.2 and 100.64.0.3) and an outside server with iperf3, one
# sender pinned to each CPU, four streams each: a veth picks its queue by
# flow hash, so about half the frames reach the worker that does not own
# their subscriber and are handed off. One run prints per second the hand-off rate of each worker,
# hand-off drops (every masq_drops_total reason starting with "handoff") and
# each worker's rounds, then the totals and the senders' loss. A sweep runs
# each rate on a fresh masq and prints one row per rate: what the senders
# offered and what arrived, hand-offs, hand-off drops, the rings' drops
# (rx_ring_full, fill_ring_empty) and the loss: where frames were lost once
# the generators' rate is past what the box forwards. Traffic stays in the
# lab's own namespaces (prefix mqho-), torn down at the end, also on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then echo "handoff.sh: run as root (network namespaces, XDP)" >&2; exit 1; fi
reverse=""
if [ "${1:-}" = "--reverse" ]; then reverse="-R"; shift; fi
sweep=""
if [ "${1:-}" = "--sweep" ]; then
  sweep=1; shift
  secs=${1:?"usage: $0 --sweep SECONDS RATE..."}; shift
  rates=("$@")
  [ ${#rates[@]} -gt 0 ] || { echo "handoff.sh: --sweep needs rates, e.g. 100M 200M 400M" >&2; exit 2; }
else
  secs=${1:-10}
  rates=("${2:-100M}")
fi
deploy/setup.sh --build >/dev/null
export LAB_PREFIX=mqho- LAB_QUEUES=2
lab=deploy/lab/lab.sh
work=$(mktemp -d)
masq_pid=""
stop_masq() {
  if [ -n "$masq_pid" ]; then kill -INT "$masq_pid" 2>/dev/null || true; wait "$masq_pid" 2>/dev/null || true; fi
  masq_pid=""
}
cleanup() {
  stop_masq
  pkill -f "iperf3 .*-B 198.51.100.1" 2>/dev/null || true
  $lab down >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_masq() {
  ip netns exec mqho-nat target/release/masq run --inside nat-in --outside nat-out \
    --pool 203.0.113.10 --nat-src 100.64.0.0/10 --cores 0,1 >"$work/masq.out" 2>"$work/masq.err" &
  masq_pid=$!
  for _ in $(seq 50); do grep -q forwarding "$work/masq.err" 2>/dev/null && break; sleep 0.2; done
  grep -q forwarding "$work/masq.err" || { cat "$work/masq.err"; echo "handoff.sh: masq did not start" >&2; exit 1; }
}

metric() { # NAME{LABELS}: its value in the current scrape
  awk -v k="$1" 'index($0, k " ") == 1 { print $2; found = 1 } END { if (!found) print 0 }' "$work/m"
}
# Hand-off drops, whatever their reason: masq_drops_total{reason="handoff..."}.
handoff_drops() { awk '/^masq_drops_total\{reason="handoff/ { s += $2 } END { print s + 0 }' "$work/m"; }
ring_drops() {
  awk '/^masq_drops_total\{reason="(rx_ring_full|fill_ring_empty)"\}/ { s += $2 } END { print s + 0 }' "$work/m"
}
sub() { awk -v a="$1" -v b="$2" 'BEGIN { print a - b }'; }
scrape() { ip netns exec mqho-nat curl -s http://127.0.0.1:9091/metrics >"$work/m"; }
# iperf3's JSON: the sender's offered and the receiver's delivered rate, the loss.
field() {
  python3 -c "
import json,sys
try: e=json.load(open(sys.argv[1]))['end']['sum']
except Exception: print('-'); sys.exit()
f=sys.argv[2]
print({'sent': '%.0f' % (e['bits_per_second']/1e6), 'lost': '%d/%d' % (e['lost_packets'], e['packets']),
       'pct': '%.2f' % e['lost_percent']}[f])" "$1" "$2"
}

# Starts both senders for `secs` at RATE; sets s1/s2 to their pids.
senders() {
  ip netns exec mqho-out iperf3 -s -1 -p 5201 -B 198.51.100.1 >/dev/null 2>&1 &
  ip netns exec mqho-out iperf3 -s -1 -p 5202 -B 198.51.100.1 >/dev/null 2>&1 &
  sleep 0.5
  # Four streams a sender, RATE/4 each: a veth picks its queue by flow
  # hash, so about half of each subscriber's streams reach the worker that
  # does not own it and are handed off.
  local per
  per=$(awk -v r="$1" 'BEGIN { n = r + 0; u = r; sub(/^[0-9.]+/, "", u); print n / 4 u }')
  ip netns exec mqho-in taskset -c 0 iperf3 $reverse -u -P 4 -b "$per" -l 1200 -t "$secs" -c 198.51.100.1 -p 5201 \
    --json >"$work/s1.json" 2>/dev/null &
  s1=$!
  ip netns exec mqho-in2 taskset -c 1 iperf3 $reverse -u -P 4 -b "$per" -l 1200 -t "$secs" -c 198.51.100.1 -p 5202 \
    --json >"$work/s2.json" 2>/dev/null &
  s2=$!
}

$lab up >/dev/null
if [ -z "$sweep" ]; then
  start_masq
  senders "${rates[0]}"
  printf '%4s %12s %12s %10s %12s %12s\n' s "w0 hand/s" "w1 hand/s" "drops/s" "w0 rounds/s" "w1 rounds/s"
  scrape
  p0=$(metric 'masq_handoffs_total{worker="0"}'); p1=$(metric 'masq_handoffs_total{worker="1"}')
  pd=$(handoff_drops)
  pr0=$(metric 'masq_worker_round_duration_seconds_count{worker="0"}'); pr1=$(metric 'masq_worker_round_duration_seconds_count{worker="1"}')
  for t in $(seq "$secs"); do
    sleep 1
    scrape
    h0=$(metric 'masq_handoffs_total{worker="0"}'); h1=$(metric 'masq_handoffs_total{worker="1"}')
    d=$(handoff_drops)
    r0=$(metric 'masq_worker_round_duration_seconds_count{worker="0"}'); r1=$(metric 'masq_worker_round_duration_seconds_count{worker="1"}')
    printf '%4d %12.0f %12.0f %10.0f %12.0f %12.0f\n' "$t" "$(sub $h0 $p0)" "$(sub $h1 $p1)" \
      "$(sub $d $pd)" "$(sub $r0 $pr0)" "$(sub $r1 $pr1)"
    p0=$h0; p1=$h1; pd=$d; pr0=$r0; pr1=$r1
  done
  wait "$s1" "$s2" || true
  scrape
  echo "totals: hand-offs worker 0 $(metric 'masq_handoffs_total{worker="0"}'), worker 1 $(metric 'masq_handoffs_total{worker="1"}'); hand-off drops $(handoff_drops); ring drops $(ring_drops)"
  for s in 1 2; do
    echo "sender $s: offered $(field "$work/s$s.json" sent) Mbit/s, lost $(field "$work/s$s.json" lost) ($(field "$work/s$s.json" pct)%)"
  done
  stop_masq
  grep -E "^totals|^xdp" "$work/masq.out" || true
  exit 0
fi

echo "sweep: ${secs} s per rate, two senders of four streams (CPU 0 and CPU 1)${reverse:+, outside to inside}; $(nproc) CPUs, $(uname -r)"
printf '%9s %14s %12s %11s %13s %11s %16s\n' "rate/snd" "offered Mbit/s" "hand-offs/s" "hand drops" "ring drops" "lost" "lost %"
for rate in "${rates[@]}"; do
  start_masq
  scrape; h=$(( $(metric 'masq_handoffs_total{worker="0"}' | cut -d. -f1) + $(metric 'masq_handoffs_total{worker="1"}' | cut -d. -f1) ))
  d=$(handoff_drops); r=$(ring_drops)
  senders "$rate"
  wait "$s1" "$s2" || true
  sleep 0.3
  scrape
  h2=$(( $(metric 'masq_handoffs_total{worker="0"}' | cut -d. -f1) + $(metric 'masq_handoffs_total{worker="1"}' | cut -d. -f1) ))
  off=$(awk -v a="$(field "$work/s1.json" sent)" -v b="$(field "$work/s2.json" sent)" 'BEGIN { print a + b }')
  lost="$(field "$work/s1.json" lost) $(field "$work/s2.json" lost)"
  pct="$(field "$work/s1.json" pct) $(field "$work/s2.json" pct)"
  printf '%9s %14s %12.0f %11.0f %13.0f %11s %16s\n' "$rate" "$off" "$(sub $h2 $h | awk -v s="$secs" '{print $1/s}')" \
    "$(sub "$(handoff_drops)" "$d")" "$(sub "$(ring_drops)" "$r")" "${lost// /+}" "$pct"
  stop_masq
done
