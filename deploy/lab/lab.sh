#!/usr/bin/env bash
# lab.sh up|down|status|exec NS CMD...  -- masq's network-namespace lab.
#
#   ${P}in   host 100.64.0.2 on bridge br0 ─┐            (subscribers, RFC 6598)
#   ${P}in2  host 100.64.0.3 ──veth── br0 ──┤
#                                         in0 ══veth══ nat-in 100.64.0.1/24   ${P}nat
#                                                      (masq runs here, AF_XDP on nat-in and nat-out)
#                                                      nat-out 203.0.113.1/24
#   ${P}out  out0 203.0.113.2/24, server 198.51.100.1 (lo), router to ${P}far
#   ${P}far  far0 192.0.2.1/24 (one more hop: traceroute's time exceeded comes from ${P}out)
#
# The NAT pool 203.0.113.10 is routed to the box by ${P}out, as an upstream
# router routes a CGNAT pool. ${P}out also routes 100.64.0.0/10 to the box,
# which only a no_nat rule or the kernel-routing baseline ever uses.
# Every namespace and interface is the lab's own: nothing touches the host's
# interfaces, and `down` removes all of it (also after a crash: it is idempotent).
#
# P (the prefix) is $LAB_PREFIX, default "mq-"; tests use their own so two
# labs never collide. LAB_OUT_MTU sets the outside link's MTU (default 1500).
# LAB_QUEUES gives the box's two links that many queues (default 1): veth
# has no RSS, a frame arrives on the queue of the CPU that sent it.
#
# LAB_HA=1: an HA pair (issue 16). A second box ${P}nat2 joins the inside
# bridge br0 (in0b ══ nat-in) and both boxes' outside links meet on a
# bridge out0 in ${P}out (o1 ══ nat-out of ${P}nat, o2 ══ nat-out of
# ${P}nat2); a sync link joins the boxes (sync0: 198.18.255.1/30 in
# ${P}nat, .2 in ${P}nat2). Each box has its own addresses (100.64.0.251
# and 203.0.113.251 in ${P}nat, .252 in ${P}nat2); the gateway addresses
# 100.64.0.1 and 203.0.113.1 are VRRP's (keepalived adds them to the
# master), so the hosts learn their MACs by ARP, not from permanent entries.
set -u
P=${LAB_PREFIX:-mq-}
NS_IN=${P}in; NS_IN2=${P}in2; NS_NAT=${P}nat; NS_OUT=${P}out; NS_FAR=${P}far
ALL="$NS_IN $NS_IN2 $NS_NAT $NS_OUT $NS_FAR"
HA=${LAB_HA:-0}
NS_NAT2=${P}nat2
[ "$HA" = 1 ] && ALL="$ALL $NS_NAT2"
MAC_NATIN2=02:00:00:00:01:11; MAC_NATOUT2=02:00:00:00:02:11
MAC_IN0=02:00:00:00:01:02; MAC_IN2=02:00:00:00:01:03; MAC_NATIN=02:00:00:00:01:01
MAC_NATOUT=02:00:00:00:02:01; MAC_OUT0=02:00:00:00:02:02
OUT_MTU=${LAB_OUT_MTU:-1500}
Q=${LAB_QUEUES:-1}
# CPU that runs the lab-nat stack work (RPS target on nat-in / nat-out). Bitmask.
RPS_NAT_MASK=${RPS_NAT_MASK:-2}

x() { ip netns exec "$@"; }

down() {
  for ns in $ALL; do
    ip netns pids "$ns" 2>/dev/null | while read -r p; do kill "$p" 2>/dev/null; done
  done
  for ns in $ALL; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break; sleep 0.1; done
    ip netns pids "$ns" 2>/dev/null | while read -r p; do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  return 0
}

# LAB_HA=1: the outside bridge (out0 in ${P}out) with both boxes on it,
# the second box's inside link, and the sync link.
ha_links() {
  x "$NS_OUT" ip link add out0 address $MAC_OUT0 mtu "$OUT_MTU" type bridge
  ip link add nat-out netns "$NS_NAT" address $MAC_NATOUT mtu "$OUT_MTU" numtxqueues "$Q" numrxqueues "$Q" type veth \
    peer name o1 netns "$NS_OUT" mtu "$OUT_MTU" numtxqueues "$Q" numrxqueues "$Q"
  ip link add nat-out netns "$NS_NAT2" address $MAC_NATOUT2 mtu "$OUT_MTU" numtxqueues "$Q" numrxqueues "$Q" type veth \
    peer name o2 netns "$NS_OUT" mtu "$OUT_MTU" numtxqueues "$Q" numrxqueues "$Q"
  for l in o1 o2; do
    x "$NS_OUT" ip link set "$l" master out0
    x "$NS_OUT" ip link set "$l" up
    x "$NS_OUT" ethtool -K "$l" tx off >/dev/null
  done
  ip link add in0b netns "$NS_IN" numtxqueues "$Q" numrxqueues "$Q" type veth \
    peer name nat-in netns "$NS_NAT2" address $MAC_NATIN2 numtxqueues "$Q" numrxqueues "$Q"
  ip link add sync0 netns "$NS_NAT" type veth peer name sync0 netns "$NS_NAT2"
}

# LAB_HA=1: the second box, as the first (own addresses, routes, forwarding
# off to the kernel's own NAT, permanent neighbours for the hosts), and the
# sync link's addresses.
ha_box() {
  x "$NS_IN" ip link set in0b master br0
  x "$NS_IN" ip link set in0b up
  x "$NS_IN" ethtool -K in0b tx off >/dev/null
  x "$NS_NAT2" ip addr add 100.64.0.252/24 dev nat-in
  x "$NS_NAT2" ip addr add 203.0.113.252/24 dev nat-out
  x "$NS_NAT2" ip link set nat-in up
  x "$NS_NAT2" ip link set nat-out up
  x "$NS_NAT2" ip route add 100.64.0.0/10 via 100.64.0.2 dev nat-in
  x "$NS_NAT2" ip route add default via 203.0.113.2 dev nat-out
  x "$NS_NAT2" sysctl -qw net.ipv4.ip_forward=1
  for k in all default nat-in nat-out; do
    x "$NS_NAT2" sysctl -qw net.ipv4.conf.$k.rp_filter=0
    x "$NS_NAT2" sysctl -qw net.ipv4.conf.$k.send_redirects=0
  done
  x "$NS_NAT2" ip neigh replace 100.64.0.2 lladdr $MAC_IN0 dev nat-in nud permanent
  x "$NS_NAT2" ip neigh replace 100.64.0.3 lladdr $MAC_IN2 dev nat-in nud permanent
  x "$NS_NAT2" ip neigh replace 203.0.113.2 lladdr $MAC_OUT0 dev nat-out nud permanent
  x "$NS_NAT" ip addr add 198.18.255.1/30 dev sync0
  x "$NS_NAT2" ip addr add 198.18.255.2/30 dev sync0
  x "$NS_NAT" ip link set sync0 up
  x "$NS_NAT2" ip link set sync0 up
  # Gratuitous ARP from the new VRRP master must update the hosts' entries.
  for ns in "$NS_IN" "$NS_IN2" "$NS_OUT"; do x "$ns" sysctl -qw net.ipv4.conf.all.arp_accept=1; done
  x "$NS_NAT2" sh -c "echo $RPS_NAT_MASK > /sys/class/net/nat-in/queues/rx-0/rps_cpus" 2>/dev/null || true
  x "$NS_NAT2" sh -c "echo $RPS_NAT_MASK > /sys/class/net/nat-out/queues/rx-0/rps_cpus" 2>/dev/null || true
}

up() {
  down
  set -e
  for ns in $ALL; do
    ip netns add "$ns"; x "$ns" ip link set lo up
    x "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  done
  ip link add in0 netns "$NS_IN" address $MAC_IN0 numtxqueues "$Q" numrxqueues "$Q" type veth \
    peer name nat-in netns "$NS_NAT" address $MAC_NATIN numtxqueues "$Q" numrxqueues "$Q"
  ip link add h2 netns "$NS_IN" type veth peer name in2 netns "$NS_IN2" address $MAC_IN2
  if [ "$HA" = 1 ]; then
    ha_links
  else
    ip link add nat-out netns "$NS_NAT" address $MAC_NATOUT mtu "$OUT_MTU" numtxqueues "$Q" numrxqueues "$Q" type veth \
      peer name out0 netns "$NS_OUT" address $MAC_OUT0 mtu "$OUT_MTU" numtxqueues "$Q" numrxqueues "$Q"
  fi
  ip link add out1 netns "$NS_OUT" type veth peer name far0 netns "$NS_FAR"

  # Subscribers: a bridge joins host 1, host 2 and the link to the box.
  x "$NS_IN" ip link add br0 type bridge
  x "$NS_IN" ip link set in0 master br0
  x "$NS_IN" ip link set h2 master br0
  for l in in0 h2 br0; do x "$NS_IN" ip link set "$l" up; done
  x "$NS_IN" ip addr add 100.64.0.2/24 dev br0
  x "$NS_IN" ip route add default via 100.64.0.1
  x "$NS_IN2" ip addr add 100.64.0.3/24 dev in2
  x "$NS_IN2" ip link set in2 up
  x "$NS_IN2" ip route add default via 100.64.0.1

  if [ "$HA" = 1 ]; then
    x "$NS_NAT" ip addr add 100.64.0.251/24 dev nat-in
    x "$NS_NAT" ip addr add 203.0.113.251/24 dev nat-out
  else
    x "$NS_NAT" ip addr add 100.64.0.1/24 dev nat-in
    x "$NS_NAT" ip addr add 203.0.113.1/24 dev nat-out
  fi
  x "$NS_NAT" ip link set nat-in up
  x "$NS_NAT" ip link set nat-out up
  x "$NS_NAT" ip route add 100.64.0.0/10 via 100.64.0.2 dev nat-in
  x "$NS_NAT" ip route add default via 203.0.113.2 dev nat-out
  x "$NS_NAT" sysctl -qw net.ipv4.ip_forward=1
  for k in all default nat-in nat-out; do
    x "$NS_NAT" sysctl -qw net.ipv4.conf.$k.rp_filter=0
    x "$NS_NAT" sysctl -qw net.ipv4.conf.$k.send_redirects=0
  done

  x "$NS_OUT" ip addr add 203.0.113.2/24 dev out0
  x "$NS_OUT" ip addr add 198.51.100.1/32 dev lo
  x "$NS_OUT" ip addr add 192.0.2.254/24 dev out1
  for l in out0 out1; do x "$NS_OUT" ip link set "$l" up; done
  x "$NS_OUT" ip route add 203.0.113.10/32 via 203.0.113.1 dev out0
  x "$NS_OUT" ip route add 100.64.0.0/10 via 203.0.113.1 dev out0
  x "$NS_OUT" sysctl -qw net.ipv4.ip_forward=1
  x "$NS_FAR" ip addr add 192.0.2.1/24 dev far0
  x "$NS_FAR" ip link set far0 up
  x "$NS_FAR" ip route add default via 192.0.2.254

  # Senders finish their checksums in software: masq updates checksums
  # incrementally and must see complete ones (LAB-NOTES: CHECKSUM_PARTIAL).
  x "$NS_IN" ethtool -K br0 tx off >/dev/null
  x "$NS_IN" ethtool -K in0 tx off >/dev/null
  x "$NS_IN2" ethtool -K in2 tx off >/dev/null
  x "$NS_OUT" ethtool -K out0 tx off >/dev/null
  x "$NS_FAR" ethtool -K far0 tx off >/dev/null
  x "$NS_OUT" ethtool -K out1 tx off >/dev/null

  # Fixed MACs and permanent neighbours: no ARP races in tests. (masq itself
  # reads the box's neighbour table and asks the kernel to resolve what is missing.)
  x "$NS_NAT" ip neigh replace 100.64.0.2 lladdr $MAC_IN0 dev nat-in nud permanent
  x "$NS_NAT" ip neigh replace 100.64.0.3 lladdr $MAC_IN2 dev nat-in nud permanent
  x "$NS_NAT" ip neigh replace 203.0.113.2 lladdr $MAC_OUT0 dev nat-out nud permanent
  if [ "$HA" = 1 ]; then
    ha_box
  else
    x "$NS_IN" ip neigh replace 100.64.0.1 lladdr $MAC_NATIN dev br0 nud permanent
    x "$NS_IN2" ip neigh replace 100.64.0.1 lladdr $MAC_NATIN dev in2 nud permanent
    x "$NS_OUT" ip neigh replace 203.0.113.1 lladdr $MAC_NATOUT dev out0 nud permanent
  fi

  # The box's receive work on CPU1 (senders mostly run on CPU0).
  x "$NS_NAT" sh -c "echo $RPS_NAT_MASK > /sys/class/net/nat-in/queues/rx-0/rps_cpus" 2>/dev/null || true
  x "$NS_NAT" sh -c "echo $RPS_NAT_MASK > /sys/class/net/nat-out/queues/rx-0/rps_cpus" 2>/dev/null || true
  set +e
  echo "lab up: namespaces $ALL"
}

status() {
  for ns in $ALL; do
    echo "== $ns"
    x "$ns" ip -br addr 2>/dev/null
    x "$ns" ip link show 2>/dev/null | grep -o 'prog/xdp[a-z]* id [0-9]*' | sort -u
  done
}

case "${1:-}" in
  up) up ;;
  down) down; echo "lab down: $ALL" ;;
  status) status ;;
  exec) shift; ns=$1; shift; x "${P}$ns" "$@" ;;
  *) echo "usage: $0 up|down|status|exec NS CMD...   (LAB_PREFIX=$P)"; exit 2 ;;
esac
