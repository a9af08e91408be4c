#!/usr/bin/env python3
# deploy/grafana/generate.py: builds masq's Grafana dashboard with
# grafana-foundation-sdk (PyPI, Apache-2.0; deploy/setup.sh pins it in the
# venv target/grafana-venv) and writes deploy/grafana/masq.json, which is
# checked in:
#
#   target/grafana-venv/bin/python deploy/grafana/generate.py      # writes masq.json
#   target/grafana-venv/bin/python deploy/grafana/generate.py -    # prints it
#
# Edit this file, not the JSON: control/tests/grafana.rs regenerates the
# dashboard and fails on any difference from the checked-in file, and
# control/tests/prometheus.rs asks a real Prometheus scraping masq for every
# query below (each must return data, but for those ending `> 0`, which
# show only trouble). Every metric family masq exports has a panel
# (control/src/metrics.rs tests that no family is left out).
#
# Import it in Grafana (Dashboards > New > Import) and pick the Prometheus
# data source that scrapes masq (deploy/prometheus/masq.yml).
import os
import re
import sys

from grafana_foundation_sdk.builders.dashboard import (Dashboard,
                                                       DatasourceVariable,
                                                       QueryVariable, Row,
                                                       ThresholdsConfig)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (DataSourceRef,
                                                     MappingType, Threshold,
                                                     ThresholdsMode, ValueMap,
                                                     ValueMappingResult,
                                                     VariableOption,
                                                     VariableRefresh,
                                                     VariableSort)

DS = DataSourceRef(type_val="prometheus", uid="${DS}")
# Rates over a minute: Prometheus scrapes masq every 15 s (masq.yml).
R = "[1m]"


# Every masq series is selected by the dashboard's instance variable (all
# boxes by default); the expressions below are written without it.
INSTANCE = 'instance=~"$instance"'


def by_instance(expr):
    """`masq_x{a="b"}` -> `masq_x{instance=~"$instance",a="b"}`."""
    def one(m):
        inner = m.group(2)
        return "%s{%s}" % (m.group(1), INSTANCE + ("," + inner if inner else ""))
    return re.sub(r"\b(masq_[a-z_]+)(?:\{([^}]*)\})?", one, expr)


def queries(panel, *targets):
    """Adds (expr, legend) targets with refIds A, B, ..."""
    for i, (expr, legend) in enumerate(targets):
        panel = panel.with_target(
            Dataquery().expr(by_instance(expr)).legend_format(legend).ref_id(chr(ord("A") + i)))
    return panel


def series(title, unit, description, *targets, width=12):
    """A time series panel."""
    p = (Timeseries().title(title).description(description).datasource(DS)
         .unit(unit).span(width).height(8))
    return queries(p, *targets)


def stat(title, unit, description, *targets, width=4, thresholds=None, mappings=None):
    """A single value panel."""
    p = (Stat().title(title).description(description).datasource(DS)
         .unit(unit).span(width).height(4))
    if thresholds:
        p = p.thresholds(ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(
            [Threshold(value=v, color=c) for v, c in thresholds]))
    if mappings:
        p = p.mappings([ValueMap(options={k: ValueMappingResult(text=t, color=c, index=i)
                                          for i, (k, (t, c)) in enumerate(mappings.items())})])
    return queries(p, *targets)


def rate(metric, by=None, selector=""):
    """`sum by (...) (rate(metric{selector}[1m]))`."""
    inner = "rate(%s%s%s)" % (metric, selector and "{%s}" % selector, R)
    return "sum by (%s) (%s)" % (by, inner) if by else "sum(%s)" % inner


ROWS = [
    ("Health", [
        stat("Ready", "none",
             "masq_ready: 1 when every worker is forwarding (as /readyz says).",
             ("masq_ready", "{{instance}}"),
             thresholds=[(None, "red"), (1, "green")],
             mappings={"0": ("not ready", "red"), "1": ("ready", "green")}),
        stat("Version", "none", "masq_build_info: the version running.",
             ("masq_build_info", "{{version}}")),
        stat("Configuration generation", "none",
             "masq_config_generation: 1 at start, +1 per accepted push or reload.",
             ("masq_config_generation", "{{instance}}")),
        stat("Sessions", "short", "Live sessions, every protocol.",
             ("sum(masq_sessions)", "sessions")),
        stat("Port blocks in use", "percentunit",
             "Port blocks in use over all pools (alerts at 80% and 95% per pool and address).",
             ('sum(masq_port_blocks{state="in_use"}) / sum(masq_port_blocks)', "in use"),
             thresholds=[(None, "green"), (0.8, "orange"), (0.95, "red")]),
        stat("Drops", "pps", "Packets dropped per second, every reason.",
             (rate("masq_drops_total"), "drops")),
    ]),
    ("Traffic", [
        series("Packets per second forwarded", "pps",
               "masq_packets_total{verdict=\"forward\"} by direction.",
               (rate("masq_packets_total", "direction", 'verdict="forward"'), "{{direction}}")),
        series("Bits per second forwarded", "bps",
               "masq_bytes_total{verdict=\"forward\"} by direction, in bits.",
               (rate("masq_bytes_total", "direction", 'verdict="forward"') + " * 8",
                "{{direction}}")),
        series("Packets per second by verdict", "pps",
               "masq_packets_total: received, forwarded, dropped, given to the kernel, handed to another worker.",
               (rate("masq_packets_total", "direction, verdict"), "{{verdict}} {{direction}}")),
        series("XDP frames per second", "pps",
               "masq_xdp_frames_total: what the XDP program did with each frame, by interface.",
               (rate("masq_xdp_frames_total", "interface, action"), "{{interface}} {{action}}")),
    ]),
    ("Drops and the kernel", [
        series("Drops per second by reason", "pps",
               "masq_drops_total by reason (README: drop reasons); only reasons that count.",
               (rate("masq_drops_total", "reason") + " > 0", "{{reason}}")),
        series("Given to the kernel per second by reason", "pps",
               "masq_kernel_passes_total: packets the engine passed to the kernel's stack.",
               (rate("masq_kernel_passes_total", "reason"), "{{reason}}")),
        series("Host guard drops per second", "pps",
               "masq_host_guard_drops_total: new traffic from outside to the box (refused), "
               "the box's own with an inside source leaving outside (leaked).",
               (rate("masq_host_guard_drops_total", "reason"), "{{reason}}")),
        series("ICMP errors masq sends", "pps",
               "Host unreachable to refused subscribers (RFC 6888 REQ-11b); fragmentation needed "
               "for hairpinned DF packets (RFC 4787 REQ-13); and those it could not send.",
               (rate("masq_icmp_unreachable_sent_total"), "unreachable sent"),
               (rate("masq_icmp_unreachable_failed_total"), "unreachable not sent"),
               (rate("masq_icmp_frag_needed_sent_total"), "frag needed sent"),
               (rate("masq_icmp_frag_needed_failed_total"), "frag needed not sent")),
    ]),
    ("Sessions", [
        series("Sessions by protocol", "short",
               "masq_sessions by protocol: tcp, udp, icmp and the other protocols (gre, esp, sctp or a number).",
               ("sum by (protocol) (masq_sessions)", "{{protocol}}")),
        series("Sessions by state", "short", "masq_sessions by protocol and state.",
               ("sum by (protocol, state) (masq_sessions)", "{{protocol}} {{state}}")),
        series("Session events per second", "ops",
               "masq_sessions_events_total: created, expired, evicted (table full), flushed (masq flush).",
               (rate("masq_sessions_events_total", "event"), "{{event}}")),
    ]),
    ("Port blocks and subscribers", [
        series("Port blocks per pool", "short", "masq_port_blocks by pool, in use and free.",
               ('sum by (pool) (masq_port_blocks{state="in_use"})', "{{pool}} in use"),
               ('sum by (pool) (masq_port_blocks{state="free"})', "{{pool}} free")),
        series("Port-block use, busiest addresses", "percentunit",
               "The ten pool addresses with the largest share of their port blocks in use.",
               ('topk(10, sum by (pool, address) (masq_port_blocks{state="in_use"})'
                ' / sum by (pool, address) (masq_port_blocks))', "{{pool}} {{address}}")),
        series("New flows refused by pool and reason", "ops",
               "masq_subscriber_limit_events_total: a subscriber got no port or session (RFC 6888 REQ-11).",
               (rate("masq_subscriber_limit_events_total", "pool, reason"), "{{pool}} {{reason}}")),
        series("Port exhaustion per subscriber bucket", "ops",
               "masq_port_exhaustion_events_total by bucket (/24 network number modulo 16); only buckets that count.",
               (rate("masq_port_exhaustion_events_total", "bucket") + " > 0", "bucket {{bucket}}")),
    ]),
    ("Fragments, MSS clamping, FTP ALG", [
        series("Fragments per second", "pps",
               "Fragments handed to their datagram's home worker or session owner; non-first "
               "fragments held until the first came (RFC 4787 REQ-14) and released; fragments among the "
               "hand-offs dropped (masq_drops_total handoff_* says why).",
               (rate("masq_fragments_to_home_total"), "to home worker"),
               (rate("masq_fragments_to_owner_total"), "to owner worker"),
               (rate("masq_fragments_held_total"), "held"),
               (rate("masq_fragments_released_total"), "released"),
               (rate("masq_fragment_handoff_dropped_total"), "hand-off dropped")),
        series("MSS clamped per second", "pps",
               "masq_mss_clamped_total: SYN and SYN/ACK segments whose MSS a rule's mss_clamp lowered.",
               (rate("masq_mss_clamped_total"), "clamped")),
        series("FTP ALG per second", "ops",
               "PORT/EPRT rewritten, PASV/EPSV replies read, lines not parsed and commands not handled.",
               (rate("masq_ftp_alg_rewritten_total"), "rewritten"),
               (rate("masq_ftp_alg_passive_total"), "passive"),
               (rate("masq_ftp_alg_unparsed_total"), "unparsed"),
               (rate("masq_ftp_alg_failed_total"), "failed")),
    ]),
    ("Workers", [
        series("Worker round time p50 / p99", "s",
               "masq_worker_round_duration_seconds (rounds with traffic); alert above 1 ms at p99.",
               ("histogram_quantile(0.5, sum by (le, worker) "
                "(rate(masq_worker_round_duration_seconds_bucket%s)))" % R, "p50 w{{worker}}"),
               ("histogram_quantile(0.99, sum by (le, worker) "
                "(rate(masq_worker_round_duration_seconds_bucket%s)))" % R, "p99 w{{worker}}")),
        series("Rounds with traffic per second", "ops",
               "masq_worker_round_duration_seconds_count by worker.",
               (rate("masq_worker_round_duration_seconds_count", "worker"), "w{{worker}}")),
        series("Hand-offs per second", "pps",
               "masq_handoffs_total: frames a worker handed to the worker owning their session; "
               "masq_other_proto_handoffs_total: GRE, ESP... handed to their session's home worker.",
               (rate("masq_handoffs_total", "worker"), "w{{worker}}"),
               (rate("masq_other_proto_handoffs_total"), "other protocols to home")),
        series("Sessions per worker", "short",
               "masq_worker_sessions: live sessions in each worker's shard; a lasting imbalance says steering or RSS is uneven.",
               ("sum by (worker) (masq_worker_sessions)", "w{{worker}}")),
        series("Idle sleeps per second", "ops",
               "masq_idle_sleeps_total: an idle worker slept on its sockets (workers.sleep_when_idle); "
               "masq_idle_wakes_total: sleeps a hand-off or a control request ended at once (its eventfd).",
               (rate("masq_idle_sleeps_total"), "sleeps"),
               (rate("masq_idle_wakes_total"), "woken by hand-offs, requests")),
    ]),
    ("HA pair", [
        stat("HA role", "none", "masq_ha_active: 1 on the active box of an HA pair, 0 on the standby.",
             ("masq_ha_active", "{{instance}}"),
             mappings={"0": ("standby", "blue"), "1": ("active", "green")}),
        stat("Sync link", "none", "masq_ha_connected: 1 while the sync link to the peer is up and authenticated.",
             ("masq_ha_connected", "{{instance}}"),
             thresholds=[(None, "red"), (1, "green")],
             mappings={"0": ("down", "red"), "1": ("up", "green")}),
        stat("Sync backlog", "short", "masq_ha_backlog: records queued for the standby.",
             ("masq_ha_backlog", "{{instance}}")),
        series("Sync traffic", "short",
               "masq_ha_messages_total, masq_ha_records_total and masq_ha_bytes_total per second, by direction.",
               (rate("masq_ha_messages_total", "direction"), "messages {{direction}}"),
               (rate("masq_ha_records_total", "direction"), "records {{direction}}"),
               (rate("masq_ha_bytes_total", "direction"), "bytes {{direction}}")),
        series("Sync trouble and role changes", "short",
               "Over the last hour: records lost to a full backlog (masq_ha_lost_total), bulk resyncs "
               "(masq_ha_resyncs_total), connections closed for a failed MAC or sequence number "
               "(masq_ha_auth_failures_total), role changes (masq_ha_role_changes_total), and records "
               "the engines applied or refused (masq_ha_applied_total, masq_ha_refused_total).",
               ("sum(increase(masq_ha_lost_total[1h]))", "lost (1 h)"),
               ("sum(increase(masq_ha_resyncs_total[1h]))", "resyncs (1 h)"),
               ("sum(increase(masq_ha_auth_failures_total[1h]))", "auth failures (1 h)"),
               ("sum(increase(masq_ha_role_changes_total[1h]))", "role changes (1 h)"),
               ("sum(increase(masq_ha_applied_total[1h]))", "applied (1 h)"),
               ("sum(increase(masq_ha_refused_total[1h]))", "refused (1 h)")),
    ]),
    ("NAT log and control", [
        series("NAT log events lost", "short",
               "Lost between workers and the control thread (masq_nat_log_lost_total), and by each sink "
               "(masq_nat_log_sink_lost_total: queue full, collector away, write failed); over 5 minutes.",
               ("sum(increase(masq_nat_log_lost_total[5m]))", "workers to control thread"),
               ("sum by (sink) (increase(masq_nat_log_sink_lost_total[5m]))", "{{sink}}")),
        series("Configuration generation and reloads", "short",
               "masq_config_generation; pushes and reloads accepted and refused over the last hour.",
               ("masq_config_generation", "generation"),
               ("sum by (result) (increase(masq_config_reloads_total[1h]))", "{{result}} (1 h)")),
        series("Control API refusals", "short",
               "masq_control_auth_failures_total: calls refused for a missing or wrong token, over the last hour.",
               ("sum(increase(masq_control_auth_failures_total[1h]))", "refused (1 h)")),
    ]),
]


def build():
    d = (Dashboard("masq").uid("masq").description(
        "masq, the NAT44: generated by deploy/grafana/generate.py").tags(["masq", "nat"])
         .refresh("10s").time("now-1h", "now")
         .with_variable(DatasourceVariable("DS").label("Prometheus").type("prometheus"))
         .with_variable(QueryVariable("instance").label("Instance").datasource(DS)
                        .query("label_values(masq_build_info, instance)")
                        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
                        .multi(True).include_all(True).all_value(".*")
                        .current(VariableOption(selected=True, text=["All"], value=["$__all"]))))
    n = 0
    for title, panels in ROWS:
        n += 1
        d = d.with_row(Row(title).id(n))
        for p in panels:
            n += 1
            d = d.with_panel(p.id(n))
    return d.build()


def main():
    text = JSONEncoder(sort_keys=True, indent=2).encode(build()) + "\n"
    if sys.argv[1:] == ["-"]:
        sys.stdout.write(text)
        return
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "masq.json")
    with open(out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
