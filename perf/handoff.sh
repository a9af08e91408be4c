#!/usr/bin/env bash
# perf/handoff.sh: hand-off under load in the two-worker lab (issue 18).
#
#   sudo perf/handoff.sh [SECONDS] [RATE]      (default 10 s, 100M bit/s per sender)
#
# Brings up the namespace lab with two-queue links, runs masq with two
# workers (cores 0 and 1) and sends UDP from both subscribers (100.64.0.2 and
# 100.64.0.3) with iperf3, one sender pinned to each CPU, so each worker's
# queue receives frames the other worker owns. Prints per second the
# hand-off rate of each worker, hand-off drops and each worker's rounds,
# then the totals and the senders' loss. Traffic stays in the lab's own
# namespaces (prefix mqho-), torn down at the end, also on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then echo "handoff.sh: run as root (network namespaces, XDP)" >&2; exit 1; fi
secs=${1:-10}
rate=${2:-100M}
deploy/setup.sh --build >/dev/null
export LAB_PREFIX=mqho- LAB_QUEUES=2
lab=deploy/lab/lab.sh
work=$(mktemp -d)
masq_pid=""
cleanup() {
  [ -n "$masq_pid" ] && kill -INT "$masq_pid" 2>/dev/null && wait "$masq_pid" 2>/dev/null
  $lab down >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

$lab up >/dev/null
ip netns exec mqho-nat target/release/masq run --inside nat-in --outside nat-out \
  --pool 203.0.113.10 --nat-src 100.64.0.0/10 --cores 0,1 >"$work/masq.out" 2>"$work/masq.err" &
masq_pid=$!
for _ in $(seq 50); do grep -q forwarding "$work/masq.err" 2>/dev/null && break; sleep 0.2; done
grep -q forwarding "$work/masq.err" || { cat "$work/masq.err"; echo "handoff.sh: masq did not start" >&2; exit 1; }

metric() { # NAME{LABELS}: its value in the current scrape
  awk -v k="$1" 'index($0, k " ") == 1 { print $2; found = 1 } END { if (!found) print 0 }' "$work/m"
}
handoff_drops() { # every masq_drops_total{reason="handoff_..."} (queue full, too big, no frame, no queue)
  awk 'index($0, "masq_drops_total{reason=\"handoff_") == 1 { s += $2 } END { print s + 0 }' "$work/m"
}
sub() { awk -v a="$1" -v b="$2" 'BEGIN { print a - b }'; }
scrape() { ip netns exec mqho-nat curl -s http://127.0.0.1:9091/metrics >"$work/m"; }

ip netns exec mqho-out iperf3 -s -1 -p 5201 -B 198.51.100.1 >/dev/null 2>&1 &
ip netns exec mqho-out iperf3 -s -1 -p 5202 -B 198.51.100.1 >/dev/null 2>&1 &
sleep 0.5
ip netns exec mqho-in taskset -c 0 iperf3 -u -b "$rate" -l 1200 -t "$secs" -c 198.51.100.1 -p 5201 --json >"$work/s1.json" 2>/dev/null &
s1=$!
ip netns exec mqho-in2 taskset -c 1 iperf3 -u -b "$rate" -l 1200 -t "$secs" -c 198.51.100.1 -p 5202 --json >"$work/s2.json" 2>/dev/null &
s2=$!

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
loss() { python3 -c "import json,sys; e=json.load(open(sys.argv[1]))['end']['sum']; print('%d of %d lost (%.2f%%), %.0f Mbit/s' % (e['lost_packets'], e['packets'], e['lost_percent'], e['bits_per_second']/1e6))" "$1" 2>/dev/null || echo "no result"; }
scrape
echo "totals: hand-offs worker 0 $(metric 'masq_handoffs_total{worker="0"}'), worker 1 $(metric 'masq_handoffs_total{worker="1"}'); hand-off drops $(handoff_drops)"
echo "sender on CPU 0 (100.64.0.2): $(loss "$work/s1.json")"
echo "sender on CPU 1 (100.64.0.3): $(loss "$work/s2.json")"
kill -INT "$masq_pid"; wait "$masq_pid" 2>/dev/null || true; masq_pid=""
grep -E "^totals|^xdp" "$work/masq.out" || true
