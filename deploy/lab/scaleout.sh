#!/usr/bin/env bash
# scaleout.sh up|down|status  -- the scale-out lab: three masq boxes behind
# ECMP, each announcing its own pool by BGP (FRR) while masq is ready.
#
#   ${P}sub  300 subscribers 100.64.1.1-150, 100.64.2.1-150 (on lo), s0 100.64.0.2/24
#              |
#   ${P}ir   inside router: r0 100.64.0.1/24; ib1..3 10.1.K.1/24; FRR (AS 65100)
#            learns a default route from each ready box; subscribers' traffic
#            (ip rule iif r0 -> table 100) uses a resilient next-hop group
#            over those boxes, hashed on the source address only
#              |  ib K ══veth══ nat-in 10.1.K.2/24
#   ${P}bK   masq box K (K = 1, 2, 3): masq on AF_XDP nat-in / nat-out (the
#            test starts it, control API 127.0.0.1:9091), FRR (AS 6500K),
#            the health hook deploy/frr/masq-bgp-health.sh; pool
#            203.0.113.(16K)/28: box 1 .16/28, box 2 .32/28, box 3 .48/28
#              |  nat-out 10.2.K.2/24 ══veth══ obK 10.2.K.1/24
#   ${P}ur   upstream router: FRR (AS 65200) learns each ready box's pool;
#            the server 198.51.100.1 (lo)
#
# FRR's daemons run from /usr/lib/frr with this lab's own files (configs made
# from deploy/frr/, pid files, vty and zebra sockets) under $LAB_STATE
# (default /tmp/${P}scaleout); the system's frr service is not used. `down`
# kills everything in the lab's namespaces and removes them (idempotent).
#
# P (the prefix) is $LAB_PREFIX, default "mqs-".
set -u
cd "$(dirname "$0")/../.."
P=${LAB_PREFIX:-mqs-}
STATE=${LAB_STATE:-/tmp/${P}scaleout}
BOXES="1 2 3"
NS_SUB=${P}sub NS_IR=${P}ir NS_UR=${P}ur
ALL="$NS_SUB $NS_IR $NS_UR ${P}b1 ${P}b2 ${P}b3"
# The resilient group's buckets and how long a bucket must be idle before a
# joining box may take it (Linux's nexthop-group-resilient: buckets of a box
# that leaves move at once; only idle ones move to a box that joins).
BUCKETS=${LAB_BUCKETS:-128}
IDLE=${LAB_IDLE_SECS:-120}
GROUP=100100 # next-hop ids: box K is 100000+K; zebra numbers its own from 1

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
  rm -rf "$STATE"
  return 0
}

# frr NS NAME BGPD_CONF: zebra and bgpd in NS with their files in $STATE/NAME.
frr() {
  local ns=$1 name=$2 conf=$3 d=$STATE/$2
  mkdir -p "$d"
  cp "$conf" "$d/bgpd.conf"
  : >"$d/zebra.conf"
  # The daemons run as frr (the vty group is frrvty, which root is not in).
  chown -R frr:frr "$d"
  x "$ns" /usr/lib/frr/zebra -d -f "$d/zebra.conf" -i "$d/zebra.pid" \
    -z "$d/zserv.api" --vty_socket "$d" --log "file:$d/zebra.log" </dev/null >/dev/null 2>&1
  for _ in $(seq 50); do [ -S "$d/zserv.api" ] && break; sleep 0.05; done
  x "$ns" /usr/lib/frr/bgpd -d -f "$d/bgpd.conf" -i "$d/bgpd.pid" \
    -z "$d/zserv.api" --vty_socket "$d" --log "file:$d/bgpd.log" </dev/null >/dev/null 2>&1
}

# box1's files with box K's addresses, AS and pool.
for_box() {
  sed -e "s/10\.1\.1\./10.1.$1./g; s/10\.2\.1\./10.2.$1./g; s/65001/6500$1/g" \
    -e "s#203\.0\.113\.16/28#203.0.113.$((16 * $1))/28#g; s/masq-box1/masq-box$1/g" "$2"
}

up() {
  down
  [ -x /usr/lib/frr/bgpd ] || { echo "scaleout lab: FRR is missing (deploy/setup.sh installs it)" >&2; exit 1; }
  set -e
  mkdir -p "$STATE"
  for ns in $ALL; do
    ip netns add "$ns"; x "$ns" ip link set lo up
    x "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    for k in all default; do x "$ns" sysctl -qw net.ipv4.conf.$k.rp_filter=0; done
  done

  # Subscribers: 300 addresses on lo, one link to the inside router.
  ip link add s0 netns "$NS_SUB" type veth peer name r0 netns "$NS_IR"
  x "$NS_SUB" ip addr add 100.64.0.2/24 dev s0
  x "$NS_SUB" ip link set s0 up
  for i in $(seq 150); do echo "addr add 100.64.1.$i/32 dev lo"; echo "addr add 100.64.2.$i/32 dev lo"; done |
    x "$NS_SUB" ip -batch -
  x "$NS_SUB" ip route add default via 100.64.0.1
  # Senders finish their checksums in software: masq updates checksums
  # incrementally and must see complete ones (LAB-NOTES: CHECKSUM_PARTIAL).
  x "$NS_SUB" ethtool -K s0 tx off >/dev/null

  x "$NS_IR" ip addr add 100.64.0.1/24 dev r0
  x "$NS_IR" ip link set r0 up
  x "$NS_IR" ip route add 100.64.0.0/16 via 100.64.0.2 dev r0
  x "$NS_IR" sysctl -qw net.ipv4.ip_forward=1
  # ECMP by the subscriber's address alone (policy 3, field 0x0001: source
  # IP): every flow of a subscriber, to any destination, takes one box.
  x "$NS_IR" sysctl -qw net.ipv4.fib_multipath_hash_policy=3 net.ipv4.fib_multipath_hash_fields=0x0001
  x "$NS_IR" ip rule add iif r0 lookup 100 pref 100

  x "$NS_UR" ip addr add 198.51.100.1/32 dev lo
  x "$NS_UR" sysctl -qw net.ipv4.ip_forward=1

  for k in $BOXES; do
    b=${P}b$k
    ip link add "ib$k" netns "$NS_IR" address "02:00:00:0$k:01:02" type veth \
      peer name nat-in netns "$b" address "02:00:00:0$k:01:01"
    ip link add nat-out netns "$b" address "02:00:00:0$k:02:01" type veth \
      peer name "ob$k" netns "$NS_UR" address "02:00:00:0$k:02:02"
    x "$NS_IR" ip addr add "10.1.$k.1/24" dev "ib$k"
    x "$NS_IR" ip link set "ib$k" up
    x "$NS_IR" ethtool -K "ib$k" tx off >/dev/null
    x "$NS_IR" ip neigh replace "10.1.$k.2" lladdr "02:00:00:0$k:01:01" dev "ib$k" nud permanent
    x "$NS_UR" ip addr add "10.2.$k.1/24" dev "ob$k"
    x "$NS_UR" ip link set "ob$k" up
    x "$NS_UR" ethtool -K "ob$k" tx off >/dev/null
    x "$NS_UR" ip neigh replace "10.2.$k.2" lladdr "02:00:00:0$k:02:01" dev "ob$k" nud permanent

    x "$b" ip addr add "10.1.$k.2/24" dev nat-in
    x "$b" ip addr add "10.2.$k.2/24" dev nat-out
    x "$b" ip link set nat-in up
    x "$b" ip link set nat-out up
    x "$NS_IR" ip nexthop add id $((100000 + k)) via "10.1.$k.2" dev "ib$k"
    x "$b" ip route add 100.64.0.0/10 via "10.1.$k.1" dev nat-in
    x "$b" ip route add default via "10.2.$k.1" dev nat-out
    x "$b" sysctl -qw net.ipv4.ip_forward=1
    for i in all default nat-in nat-out; do x "$b" sysctl -qw net.ipv4.conf.$i.send_redirects=0; done
    x "$b" ip neigh replace "10.1.$k.1" lladdr "02:00:00:0$k:01:02" dev nat-in nud permanent
    x "$b" ip neigh replace "10.2.$k.1" lladdr "02:00:00:0$k:02:02" dev nat-out nud permanent

    d=$STATE/b$k
    mkdir -p "$d"
    for_box "$k" deploy/frr/box1-bgpd.conf >"$d/box.conf"
    for_box "$k" deploy/frr/masq-announce.vtysh >"$d/announce.vtysh"
    for_box "$k" deploy/frr/masq-withdraw.vtysh >"$d/withdraw.vtysh"
    frr "$b" "b$k" "$d/box.conf"
    # The health hook: polls this box's masq, drives this box's bgpd.
    x "$b" setsid deploy/frr/masq-bgp-health.sh http://127.0.0.1:9091/readyz \
      "vtysh --vty_socket $d -f $d/announce.vtysh" "vtysh --vty_socket $d -f $d/withdraw.vtysh" \
      </dev/null >"$d/health.log" 2>&1 &
  done
  # The group exists before zebra starts, so zebra numbers its own around it.
  x "$NS_IR" ip nexthop add id $GROUP group 100001/100002/100003 type resilient buckets "$BUCKETS" \
    idle_timer "$IDLE" unbalanced_timer 0
  frr "$NS_IR" ir deploy/frr/inside-bgpd.conf
  frr "$NS_UR" ur deploy/frr/upstream-bgpd.conf
  x "$NS_IR" setsid deploy/lab/scaleout.sh mirror </dev/null >"$STATE/mirror.log" 2>&1 &
  set +e
  echo "scaleout lab up: namespaces $ALL; FRR files in $STATE"
}

# In the inside router: keep table 100's default route on a resilient
# next-hop group whose members are the boxes zebra's BGP default route
# (hash-threshold, main table) names: a stand-in for a router with
# resilient ECMP (FRR 8.4 cannot ask the kernel for one).
mirror() {
  local last=- now ids
  while :; do
    now=$(ip -o route show 0.0.0.0/0 proto bgp | grep -o 'via 10\.1\.[0-9]*\.2' | cut -d. -f3 | sort -u | tr '\n' ' ')
    if [ "$now" != "$last" ]; then
      if [ -z "$now" ]; then
        ip route del default table 100 2>/dev/null
      else
        ids=$(for k in $now; do printf '%s/' $((100000 + k)); done)
        ip nexthop replace id $GROUP group "${ids%/}" type resilient buckets "$BUCKETS" \
          idle_timer "$IDLE" unbalanced_timer 0 &&
          ip route replace default nhid $GROUP table 100
      fi
      echo "$(date +%T.%N | cut -c1-12) boxes: ${now:-none}"
      last=$now
    fi
    sleep 0.1
  done
}

status() {
  for n in ir ur b1 b2 b3; do
    echo "== $n"
    x "${P}$n" vtysh --vty_socket "$STATE/$n" -c 'show bgp ipv4 unicast summary' 2>&1 | grep -E '^[0-9]|Neighbor'
  done
  echo "== ir table 100"; x "$NS_IR" ip route show table 100
}

case "${1:-}" in
  up) up ;;
  down) down; echo "scaleout lab down: $ALL" ;;
  status) status ;;
  mirror) mirror ;;
  exec) shift; ns=$1; shift; x "${P}$ns" "$@" ;;
  *) echo "usage: $0 up|down|status|exec NS CMD...   (LAB_PREFIX=$P)"; exit 2 ;;
esac
