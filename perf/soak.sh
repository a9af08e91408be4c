#!/usr/bin/env bash
# perf/soak.sh [MINUTES]: masq under mixed traffic for MINUTES (default 30)
# in its own namespace lab, printing its resident memory every minute and,
# at the end, whether it stayed flat after warm-up. Needs root; not part of
# ./test.sh (it takes as long as it is asked to).
#
#   sudo perf/soak.sh 30
#
# Traffic, all between the lab's own namespaces and all ending by itself
# with the run: an iperf3 TCP stream (50 Mbit/s) and an iperf3 UDP stream
# (5 Mbit/s) from the subscribers to the outside server, pings (5/s), and
# new flows: each subscriber opens 40 UDP flows a second from fresh
# ephemeral ports (each answered, so each lives the full UDP timeout, 300 s)
# and fetches a page over a new TCP connection every second. With every
# session living 5 minutes, the session count reaches its steady state after
# about 5 minutes: that is the warm-up, and a run of 5 minutes or less
# gets no verdict. "Flat" means RSS grew by at most 1% (or 1 MiB) from the end of the warm-up
# to the end of the run.
#
# SOAK_INTERVAL_SECS (default 60) changes the sampling period, for a quick
# try of the script itself. The lab (namespaces mqsoak-*) is torn down at
# the end, also on Ctrl-C or failure.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-30}
interval=${SOAK_INTERVAL_SECS:-60}
[ "$(id -u)" -eq 0 ] || { echo "soak.sh: needs root (network namespaces, XDP)" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "soak.sh: needs the lab's packages: deploy/setup.sh" >&2; exit 1; }
export LAB_PREFIX=mqsoak-
P=$LAB_PREFIX
lab=deploy/lab/lab.sh
cargo build -q --release --locked -p control
masq=$PWD/target/release/masq
dir=$(mktemp -d)
masq_pid=
cleanup() {
  if [ -n "$masq_pid" ] && kill -0 "$masq_pid" 2>/dev/null; then
    kill -INT "$masq_pid"
    for _ in $(seq 50); do kill -0 "$masq_pid" 2>/dev/null || break; sleep 0.1; done
    echo "== masq's closing lines"
    grep -A3 '^totals:' "$dir/masq.log" | sed 's/^/   /' || true
  fi
  "$lab" down >/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$lab" up >/dev/null
x() { ip netns exec "$P$1" "${@:2}"; }
run_secs=$((minutes * interval))

cat >"$dir/masq.yaml" <<'EOF'
# The lab's default with room for the soak's flows: two subscribers with
# up to 16000 sessions each (the default is 4000).
interfaces: { inside: nat-in, outside: nat-out }
workers: { cores: [1] }
pools:
  - name: lab
    addresses: [203.0.113.10]
    ports: 1024-65535
    block_size: 512
    max_blocks_per_subscriber: 32
    max_sessions_per_subscriber: 16000
rules:
  - action: snat
    pool: lab
    match: { src: [100.64.0.0/10] }
control: { listen: 127.0.0.1:9091 }
EOF
# Not through x(): `ip netns exec` execs masq, so $! is masq's own pid.
ip netns exec "${P}nat" "$masq" run --config "$dir/masq.yaml" >"$dir/masq.log" 2>&1 &
masq_pid=$!
for _ in $(seq 100); do grep -q forwarding "$dir/masq.log" && break; sleep 0.1; done
grep -q forwarding "$dir/masq.log" || { echo "masq did not start:"; cat "$dir/masq.log"; exit 1; }

# The outside: iperf3 servers, a UDP echo server, an HTTP server.
x out iperf3 -s -B 198.51.100.1 -p 5201 -D
x out iperf3 -s -B 198.51.100.1 -p 5202 -D
x out python3 -c "import socket
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('198.51.100.1',5353))
while True:
    d,a=s.recvfrom(2048); s.sendto(d,a)" >/dev/null 2>&1 &
echo soak >"$dir/index.html"
(cd "$dir" && x out python3 -m http.server 8080 --bind 198.51.100.1 >/dev/null 2>&1 &)
sleep 1

# The subscribers' traffic, each bounded by the run's length.
x in iperf3 -c 198.51.100.1 -p 5201 -b 50M -t "$run_secs" >"$dir/tcp.log" 2>&1 &
x in2 iperf3 -c 198.51.100.1 -p 5202 -u -b 5M -t "$run_secs" >"$dir/udp.log" 2>&1 &
x in ping -q -i 0.2 -w "$run_secs" 198.51.100.1 >"$dir/ping.log" 2>&1 &
new_flows='import socket,sys,time
end=time.time()+float(sys.argv[1]); n=ok=0
while time.time()<end:
    t=time.time()
    for _ in range(40):
        s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(0.5)
        try:
            s.sendto(b"x",("198.51.100.1",5353)); s.recv(16); ok+=1
        except OSError: pass
        n+=1; s.close()
    time.sleep(max(0,1-(time.time()-t)))
print("new UDP flows: %d opened, %d answered"%(n,ok))'
for h in in in2; do
  x "$h" python3 -c "$new_flows" "$run_secs" >"$dir/flows-$h.log" 2>&1 &
  x "$h" bash -c "end=\$((SECONDS+$run_secs)); ok=0; n=0
    while [ \$SECONDS -lt \$end ]; do n=\$((n+1)); curl -s -o /dev/null --max-time 2 http://198.51.100.1:8080/ && ok=\$((ok+1)); sleep 1; done
    echo \"new TCP connections: \$n opened, \$ok answered\"" >"$dir/http-$h.log" 2>&1 &
done

mstat() { x nat curl -s --max-time 2 http://127.0.0.1:9091/stats | awk -v k="$1" '$1==k {print $2}'; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$masq_pid/status"; }
echo "== masq (pid $masq_pid) under mixed traffic for $minutes x ${interval}s; RSS from /proc/$masq_pid/status"
printf '   %-6s %10s %9s %12s %10s %8s\n' minute "RSS kB" sessions "created" "rx pps" drops
series=()
prev_rx=$(( $(mstat rx_inside) + $(mstat rx_outside) ))
start=$SECONDS
for m in $(seq 0 "$minutes"); do
  if [ "$m" -gt 0 ]; then sleep $((start + m * interval - SECONDS)); fi
  kill -0 "$masq_pid" 2>/dev/null || { echo "masq died:"; tail -20 "$dir/masq.log"; exit 1; }
  r=$(rss)
  rx=$(( $(mstat rx_inside) + $(mstat rx_outside) ))
  series+=("$r")
  pps=-; [ "$m" -eq 0 ] || pps=$(( (rx - prev_rx) / interval ))
  printf '   %-6s %10s %9s %12s %10s %8s\n' "$m" "$r" "$(mstat sessions)" "$(mstat sessions_created)" "$pps" "$(mstat drops)"
  prev_rx=$rx
done
sleep 3 # the generators' closing lines
echo "== traffic (UDP datagrams the hosts' sockets dropped, /proc/net/snmp RcvbufErrors: $(
  for h in in in2 out; do x "$h" awk '/^Udp:/ && ++n == 2 {print $6}' /proc/net/snmp; done | awk '{s += $1} END {print s + 0}'))"
grep -h -E 'receiver|packet loss|opened' "$dir"/tcp.log "$dir"/udp.log "$dir"/ping.log "$dir"/flows-*.log "$dir"/http-*.log | sed 's/^ */   /'
# Warm-up: until every session made at the start could have expired
# (UDP 300 s, TCP transitory 240 s): 5 minutes.
warm=$(( (300 + interval - 1) / interval ))
echo "== RSS: ${series[0]} kB at start, ${series[-1]} kB at the end"
if [ "$minutes" -le "$warm" ]; then
  echo "   no verdict: the run is not longer than the warm-up ($warm periods of ${interval}s); run 15 minutes or more"
  exit 0
fi
at_warm=${series[$warm]}
max_after=$(printf '%s\n' "${series[@]:$warm}" | sort -n | tail -1)
growth=$((max_after - at_warm))
allowed=$(( at_warm / 100 > 1024 ? at_warm / 100 : 1024 ))
echo "   after the warm-up (period $warm): $at_warm kB; peak after it $max_after kB"
if [ "$growth" -le "$allowed" ]; then
  echo "   flat after warm-up: yes (+$growth kB, allowed 1% or 1 MiB: $allowed kB)"
else
  echo "   flat after warm-up: NO (+$growth kB, allowed 1% or 1 MiB: $allowed kB)"
fi
