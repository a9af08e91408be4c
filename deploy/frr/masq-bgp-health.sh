#!/bin/sh
# masq-bgp-health.sh: announce a masq box's routes while masq is ready,
# withdraw them while it is not. Runs beside masq and the box's BGP speaker
# (FRR's bgpd, or BIRD: the two commands are the speaker's).
#
#   masq-bgp-health.sh URL ANNOUNCE WITHDRAW
#
#   URL        masq's readiness, e.g. http://127.0.0.1:9091/readyz (200: ready)
#   ANNOUNCE   shell command that announces, e.g.
#              "vtysh -f /etc/frr/masq-announce.vtysh"   (BIRD: "birdc enable masq")
#   WITHDRAW   shell command that withdraws, e.g.
#              "vtysh -f /etc/frr/masq-withdraw.vtysh"   (BIRD: "birdc disable masq")
#
# Environment: MASQ_HEALTH_INTERVAL (seconds between polls, default 0.2),
# MASQ_HEALTH_DOWN (failed polls in a row that withdraw, default 2),
# MASQ_HEALTH_UP (ready polls in a row that announce, default 3),
# MASQ_HEALTH_REFRESH (seconds after which the current state's command is
# applied again, default 10: a restarted speaker starts from its file, which
# announces nothing, and gets the state back within this time).
#
# The first state is "withdrawn" (applied at start): the routes appear only
# once masq answers ready. A poll fails when masq does not answer within a
# second, answers anything but 200, or is not running at all (SIGKILL):
# withdrawal follows DOWN x INTERVAL later. If the whole box dies, this hook
# dies with it and the peers drop the routes at the BGP hold time instead.
set -u
url=$1 announce=$2 withdraw=$3
interval=${MASQ_HEALTH_INTERVAL:-0.2}
down_after=${MASQ_HEALTH_DOWN:-2}
up_after=${MASQ_HEALTH_UP:-3}
refresh=${MASQ_HEALTH_REFRESH:-10}

# apply announce|withdraw [again]: a repeated command's failure is not
# reported (FRR refuses to withdraw what is not announced).
apply() {
  if ! out=$(if [ "$1" = announce ]; then sh -c "$announce"; else sh -c "$withdraw"; fi 2>&1); then
    [ -n "${2:-}" ] || echo "masq-bgp-health: $1 failed (applied again in ${refresh} s): $out" >&2
  fi
  applied_at=$(date +%s)
}

state=withdraw
apply withdraw again
echo "masq-bgp-health: withdrawn (start)"
run=0
while :; do
  if curl -fsS -m 1 -o /dev/null "$url" 2>/dev/null; then seen=announce; else seen=withdraw; fi
  if [ "$seen" = "$state" ]; then
    run=0
    [ $(( $(date +%s) - applied_at )) -ge "$refresh" ] && apply "$state" again
  else
    run=$((run + 1))
    need=$up_after; [ "$seen" = withdraw ] && need=$down_after
    if [ "$run" -ge "$need" ]; then
      state=$seen run=0
      apply "$state"
      echo "masq-bgp-health: $(date +%T.%N | cut -c1-12) $( [ "$state" = announce ] && echo announced || echo withdrawn)"
    fi
  fi
  sleep "$interval"
done
