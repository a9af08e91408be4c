#!/usr/bin/env bash
# deploy/pktgen/masq-pktgen.sh: a load generator for masq on bare metal with
# the kernel's pktgen (/proc/net/pktgen; `modprobe pktgen`), on the
# subscriber side of masq: FD.io CSIT's NAT44 grid of HOSTS source addresses
# x 63 destination ports, 64-byte UDP frames, one kernel thread per TX queue.
#
# The lab's kernel has no pktgen module: there, use --dry-run (prints every
# write instead of doing it; control/tests/pktgen.rs checks it) or masq's own
# AF_XDP generator (`perf compare`).
#
# Wiring: this box's port DEV is cabled to masq's inside interface; masq's
# outside interface goes to a sink (a second box or a port that counts and
# discards). Route the destination (198.51.100.1 by default) out of masq's
# outside interface to the sink's MAC, and give masq a rule covering the
# source range (100.64.0.0/10 by default). The first pass of the grid
# creates HOSTS x 63 sessions; every later pass is established traffic.
#
#   masq-pktgen.sh --dev eth1 --dst-mac 52:54:00:aa:bb:cc --threads 4 \
#       --hosts 65536 --rate 10000000 --count 100000000
#
# How the grid is walked: pktgen moves the source address and the
# destination port one step each per packet, together (src_max is
# inclusive, udp_dst_max exclusive: pktgen's own convention, followed here). With HOSTS coprime to
# the port count (63 = 3^2 x 7; CSIT's 1,024 to 262,144 hosts are powers of
# two) the pair walks every (host, port) of the grid before it repeats. Each
# thread takes its own slice of HOSTS/THREADS consecutive addresses (its own
# sessions, so RSS spreads them and no two threads send a flow twice).
# `flows`/`flowlen` name the grid's flow count and the packets of a flow
# before the next; pktgen keeps per-flow state for the destination address
# only, so they matter with --dsts > 1 (each flow keeps its destination for
# FLOWLEN packets) and are set anyway so /proc/net/pktgen shows the grid.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: masq-pktgen.sh --dev DEV --dst-mac MAC [options]
  --dev DEV          interface cabled to masq's inside port
  --dst-mac MAC      masq's inside MAC address (next hop of the subscribers)
  --threads N        kernel threads, one per TX queue of DEV (default 1)
  --cpu-base C       first CPU: thread i runs on CPU C+i and sends on queue i (default 0)
  --hosts N          source addresses (default 1024; coprime to --ports)
  --src A.B.C.D      first source address (default 100.64.0.0)
  --dst A.B.C.D      destination address (default 198.51.100.1)
  --dsts N           destination addresses from --dst on (default 1)
  --sport P          UDP source port (default 1024)
  --dport P          first UDP destination port (default 1024)
  --ports N          destination ports (default 63: CSIT's grid)
  --size B           frame size on the wire with FCS (default 64)
  --rate PPS         packets per second over all threads (default 0: line rate)
  --count N          packets per thread (default 0: until stopped with Ctrl-C)
  --flowlen N        packets of a flow before the next (default 1)
  --dry-run          print every write to /proc/net/pktgen instead of doing it
EOF
  exit "${1:-0}"
}

dev="" dst_mac="" threads=1 cpu_base=0 hosts=1024 src=100.64.0.0 dst=198.51.100.1 dsts=1
sport=1024 dport=1024 ports=63 size=64 rate=0 count=0 flowlen=1 dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) dev=$2; shift 2 ;;
    --dst-mac) dst_mac=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --cpu-base) cpu_base=$2; shift 2 ;;
    --hosts) hosts=$2; shift 2 ;;
    --src) src=$2; shift 2 ;;
    --dst) dst=$2; shift 2 ;;
    --dsts) dsts=$2; shift 2 ;;
    --sport) sport=$2; shift 2 ;;
    --dport) dport=$2; shift 2 ;;
    --ports) ports=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --count) count=$2; shift 2 ;;
    --flowlen) flowlen=$2; shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "masq-pktgen: unknown argument $1" >&2; usage 2 >&2 ;;
  esac
done

die() { echo "masq-pktgen: $*" >&2; exit 2; }
[ -n "$dev" ] || die "--dev is required"
[[ "$dst_mac" =~ ^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$ ]] || die "--dst-mac MAC (masq's inside MAC) is required"
for v in threads cpu_base hosts dsts sport dport ports size rate count flowlen; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "--${v//_/-} must be a number, not '${!v}'"
done
[ "$threads" -ge 1 ] || die "--threads must be at least 1"
[ "$hosts" -ge 1 ] && [ "$dsts" -ge 1 ] || die "--hosts and --dsts must be at least 1"
[ "$ports" -ge 1 ] && [ $((dport + ports - 1)) -le 65535 ] || die "--dport/--ports leave 1..65535"
[ "$size" -ge 64 ] && [ "$size" -le 1518 ] || die "--size must be 64..1518 (an Ethernet frame with FCS)"
[ $((hosts % threads)) -eq 0 ] || die "--hosts ($hosts) must divide among --threads ($threads)"
per_thread=$((hosts / threads))
gcd() { local a=$1 b=$2 t; while [ "$b" -ne 0 ]; do t=$((a % b)); a=$b; b=$t; done; echo "$a"; }
[ "$(gcd "$per_thread" "$ports")" -eq 1 ] ||
  die "a thread's $per_thread hosts and $ports ports share a factor: the walk would miss most of the grid (use a power of two)"

ip2int() {
  local IFS=. a b c d
  read -r a b c d <<<"$1"
  for o in "$a" "$b" "$c" "$d"; do [[ "$o" =~ ^[0-9]+$ ]] && [ "$o" -le 255 ] || die "bad address $1"; done
  echo $(((a << 24) | (b << 16) | (c << 8) | d))
}
int2ip() { echo "$((($1 >> 24) & 255)).$((($1 >> 16) & 255)).$((($1 >> 8) & 255)).$(($1 & 255))"; }
src_int=$(ip2int "$src")
dst_int=$(ip2int "$dst")
[ $((dst_int + dsts - 1)) -le 4294967295 ] || die "--dst + --dsts passes 255.255.255.255"
[ $((src_int + hosts - 1)) -le 4294967295 ] || die "--src + --hosts passes 255.255.255.255"

PG=/proc/net/pktgen
if [ "$dry" -eq 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "pktgen needs root (or use --dry-run)"
  [ -d "$PG" ] || modprobe pktgen 2>/dev/null || true
  [ -d "$PG" ] || die "no $PG: this kernel has no pktgen module (CONFIG_NET_PKTGEN)"
  [ -e "/sys/class/net/$dev" ] || die "no interface $dev"
  txq=$(find "/sys/class/net/$dev/queues" -maxdepth 1 -name 'tx-*' | wc -l)
  [ "$threads" -le "$txq" ] || die "$dev has $txq TX queues, fewer than --threads $threads (ethtool -L $dev combined $threads)"
fi

# Writes VALUE to a pktgen file, or prints it (--dry-run). pktgen answers
# every command in the file's "Result:" line.
pg() {
  local file=$1; shift
  if [ "$dry" -eq 1 ]; then
    echo "$PG/$file <- $*"
    return
  fi
  echo "$*" >"$PG/$file"
  case "$file" in
    pgctrl) ;;
    *) grep -q '^Result: OK' "$PG/$file" || die "$file <- $*: $(grep '^Result:' "$PG/$file")" ;;
  esac
}

# Per-thread rate: pktgen's `ratep` is per device, so the total is split.
thread_rate=$((rate / threads))
# pktgen holds at most 65536 flows (MAX_CFLOWS) and clamps larger counts.
flows=$((per_thread * ports * dsts))
[ "$flows" -le 65536 ] || flows=65536
pg pgctrl reset
for ((i = 0; i < threads; i++)); do
  cpu=$((cpu_base + i))
  d="$dev@$i"
  lo=$((src_int + i * per_thread))
  hi=$((lo + per_thread - 1))
  pg "kpktgend_$cpu" rem_device_all
  pg "kpktgend_$cpu" add_device "$d"
  pg "$d" count "$count"
  pg "$d" clone_skb 0 # a fresh packet each time: addresses and ports move
  pg "$d" pkt_size $((size - 4)) # pktgen's size excludes the FCS
  pg "$d" delay 0
  if [ "$thread_rate" -gt 0 ]; then pg "$d" ratep "$thread_rate"; fi
  pg "$d" queue_map_min "$i"
  pg "$d" queue_map_max "$i"
  pg "$d" dst_mac "$dst_mac"
  pg "$d" src_min "$(int2ip "$lo")"
  pg "$d" src_max "$(int2ip "$hi")"
  pg "$d" dst_min "$dst"
  pg "$d" dst_max "$(int2ip $((dst_int + dsts - 1)))"
  pg "$d" udp_src_min "$sport"
  pg "$d" udp_src_max "$sport"
  pg "$d" udp_dst_min "$dport"
  pg "$d" udp_dst_max $((dport + ports)) # exclusive
  pg "$d" flows "$flows"
  pg "$d" flowlen "$flowlen"
  pg "$d" flag FLOW_SEQ # flows one after the other, not at random
  pg "$d" flag NO_TIMESTAMP
done
echo "masq-pktgen: $threads thread(s) on $dev, $hosts hosts x $ports ports = $((hosts * ports)) flows, ${size}-byte frames, rate $rate pps (0: line rate), count $count per thread" >&2
pg pgctrl start
if [ "$dry" -eq 0 ]; then
  # `start` returns when every thread has sent its count (or on Ctrl-C).
  for ((i = 0; i < threads; i++)); do
    echo "== $dev@$i"
    sed -n '/^Result:/p;/pps/p' "$PG/$dev@$i"
  done
fi
