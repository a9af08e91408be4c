#!/usr/bin/env bash
# demo.sh: masq's main job on a fresh machine, start to finish (README, first command).
#
#   sudo ./demo.sh
#
# Installs what it needs, builds masq, brings up the namespace lab
# (deploy/lab/lab.sh), starts masq on its embedded default configuration
# (the lab's: SNAT of 100.64.0.0/10 to the pool 203.0.113.10, one worker on
# core 1), then sends real traffic through it:
# ping, curl of a file from an HTTP server outside (checksum compared, the
# server's log shows the public address), iperf3 TCP and UDP. masq prints its
# counters every second meanwhile. Everything is torn down at the end, also
# on Ctrl-C or failure. Traffic stays between the lab's own namespaces.
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" -ne 0 ]; then echo "demo.sh: run as root (it creates network namespaces and attaches XDP programs)" >&2; exit 1; fi

deploy/setup.sh --build
export LAB_PREFIX=${LAB_PREFIX:-mqdemo-}
lab=deploy/lab/lab.sh
work=$(mktemp -d)
masq_pid=""
cleanup() {
  [ -n "$masq_pid" ] && kill -INT "$masq_pid" 2>/dev/null && wait "$masq_pid" 2>/dev/null
  $lab down >/dev/null
  rm -rf "$work"
  echo "== lab torn down (namespaces ${LAB_PREFIX}*: $(ip netns list | grep -c "^${LAB_PREFIX}" || true) left)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n== %s\n' "$*"; }
subscriber() { $lab exec in "$@"; }
server() { $lab exec out "$@"; }

say "lab: subscribers 100.64.0.2/.3 -> masq (${LAB_PREFIX}nat) -> router + server 198.51.100.1"
$lab up

say "servers outside: HTTP on 198.51.100.1:8080 (a 20 MB file), iperf3"
head -c 20000000 /dev/urandom > "$work/blob"
(cd "$work" && exec ip netns exec "${LAB_PREFIX}out" python3 -m http.server 8080 --bind 198.51.100.1 2> "$work/http.log" >/dev/null) &
server iperf3 -s -D -B 198.51.100.1 --logfile "$work/iperf3.log"
sleep 0.5

say "masq on its embedded default configuration (masq default-config prints it):"
target/release/masq default-config | grep -v '^#' | sed 's/^/    /'
ip netns exec "${LAB_PREFIX}nat" target/release/masq run --live > >(sed -u 's/^/    masq | /') 2>&1 &
masq_pid=$!
for _ in $(seq 50); do
  sleep 0.1
  ip netns exec "${LAB_PREFIX}nat" ip link show nat-out | grep -q xdp && break
done
sleep 0.5

say "ping 198.51.100.1 from the subscriber"
subscriber ping -c 3 -i 0.3 198.51.100.1

say "curl http://198.51.100.1:8080/blob"
subscriber curl -sS -o "$work/got" -w '    %{size_download} bytes at %{speed_download} B/s\n' http://198.51.100.1:8080/blob
if cmp -s "$work/got" "$work/blob"; then echo "    checksum matches: $(sha256sum < "$work/got" | cut -c1-16)..."; else echo "    CHECKSUM MISMATCH"; exit 1; fi
echo "    the server saw: $(grep -o '^[0-9.]* .*GET /blob[^"]*' "$work/http.log" | tail -1)"

say "iperf3 TCP, 5 s"
subscriber iperf3 -c 198.51.100.1 -t 5 | grep -E 'sender|receiver'
say "iperf3 UDP at 200 Mbit/s, 5 s"
subscriber iperf3 -c 198.51.100.1 -u -b 200M -t 5 | grep -E 'receiver'
echo "    the iperf3 server saw: $(grep -o 'connected to [0-9.]* port [0-9]*\|Accepted connection from [0-9.]*' "$work/iperf3.log" | sort -u | head -2 | tr '\n' ' ')"

say "stopping masq (SIGINT): final counters"
kill -INT "$masq_pid"; wait "$masq_pid" 2>/dev/null || true; masq_pid=""
sleep 0.3
echo "    XDP programs left on the box's interfaces: $(ip netns exec "${LAB_PREFIX}nat" ip link show | grep -c 'prog/xdp' || true)"
