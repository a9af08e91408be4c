//! `GET /metrics`: a [`MetricsSnapshot`] in the Prometheus text format.
//!
//! Every name starts `masq_`. Counters end `_total`; gauges do not. Labels
//! name directions `in_to_out`/`out_to_in`, and drop and pass reasons by
//! their counter names (`DropReason::name`, `PassReason::name`), so a
//! dashboard's label values are the code's. Families are rendered whole at
//! each scrape from one snapshot: nothing here holds state between scrapes.
//!
//! The families below are written by hand, because they gather several
//! counters under labels; a counter declared `=> Total("help")` (see
//! `dataplane::nat::counters`) is rendered as `masq_<name>_total` without an
//! edit here, and one declared `=> Drop("reason")` shows in
//! `masq_drops_total` through [`MetricsSnapshot::drops`].

use crate::telemetry::{protocol_name, MetricsSnapshot};
use dataplane::nat::counters::{Exported, Family, LIMIT_REASONS};
use dataplane::nat::PassReason;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

/// Histogram buckets of the per-worker round time: seconds, nanoseconds.
const ROUND_BUCKETS: [(f64, u64); 12] = [
    (1e-6, 1_000),
    (2e-6, 2_000),
    (5e-6, 5_000),
    (1e-5, 10_000),
    (2e-5, 20_000),
    (5e-5, 50_000),
    (1e-4, 100_000),
    (2e-4, 200_000),
    (5e-4, 500_000),
    (1e-3, 1_000_000),
    (1e-2, 10_000_000),
    (1e-1, 100_000_000),
];

/// A Prometheus histogram of one worker's round times: the hdrhistogram's
/// exact counts at each bucket bound.
fn round_metric(worker: usize, h: &hdrhistogram::Histogram<u64>) -> prometheus::proto::Metric {
    use prometheus::proto::{Bucket, LabelPair, Metric};
    let buckets = ROUND_BUCKETS
        .iter()
        .map(|&(secs, ns)| {
            let mut bk = Bucket::default();
            bk.set_upper_bound(secs);
            // hdrhistogram counts up to the bound's equivalent range,
            // accurate to 2 significant digits.
            bk.set_cumulative_count(h.count_between(0, ns));
            bk
        })
        .collect();
    let mut hist = prometheus::proto::Histogram::default();
    hist.set_sample_count(h.len());
    hist.set_sample_sum(h.mean() * h.len() as f64 / 1e9);
    hist.set_bucket(buckets);
    let mut label = LabelPair::default();
    label.set_name("worker".into());
    label.set_value(worker.to_string());
    let mut m = Metric::default();
    m.set_label(vec![label]);
    m.set_histogram(hist);
    m
}

/// Registers a family `masq_<name>_total` for every counter declared
/// `=> Total("help")` (`dataplane::nat::counters`).
fn declared_totals(r: &Registry, counters: impl Iterator<Item = Exported>) -> prometheus::Result<()> {
    for x in counters {
        if let Family::Total(help) = x.family {
            let c = IntCounter::new(format!("masq_{}_total", x.name), help)?;
            c.inc_by(x.value);
            r.register(Box::new(c))?;
        }
    }
    Ok(())
}

/// The exposition of `m`.
pub fn render(m: &MetricsSnapshot) -> prometheus::Result<String> {
    let r = Registry::new();
    let counter = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
        let c = IntCounterVec::new(Opts::new(name, help), labels)?;
        r.register(Box::new(c.clone()))?;
        Ok(c)
    };
    let gauge = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntGaugeVec> {
        let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
        r.register(Box::new(g.clone()))?;
        Ok(g)
    };
    let packets = counter("masq_packets_total", "Packets by direction and verdict.", &["direction", "verdict"])?;
    packets.with_label_values(&["in_to_out", "received"]).inc_by(m.worker.rx[0]);
    packets.with_label_values(&["out_to_in", "received"]).inc_by(m.worker.rx[1]);
    packets.with_label_values(&["in_to_out", "forward"]).inc_by(m.engine.fwd_i2o);
    packets.with_label_values(&["out_to_in", "forward"]).inc_by(m.engine.fwd_o2i);
    packets.with_label_values(&["any", "drop"]).inc_by(m.drops_total());
    packets.with_label_values(&["any", "kernel"]).inc_by(m.engine.passes.iter().sum());
    packets.with_label_values(&["any", "handoff"]).inc_by(m.worker.handoff_out);

    let bytes = counter("masq_bytes_total", "Bytes received and sent, by direction.", &["direction", "verdict"])?;
    bytes.with_label_values(&["in_to_out", "received"]).inc_by(m.worker.rx_bytes[0]);
    bytes.with_label_values(&["out_to_in", "received"]).inc_by(m.worker.rx_bytes[1]);
    // Sent on the outside is in to out.
    bytes.with_label_values(&["in_to_out", "forward"]).inc_by(m.worker.tx_bytes[1]);
    bytes.with_label_values(&["out_to_in", "forward"]).inc_by(m.worker.tx_bytes[0]);

    let drops = counter("masq_drops_total", "Packets dropped, by reason.", &["reason"])?;
    for (reason, n) in m.drops() {
        drops.with_label_values(&[reason]).inc_by(n);
    }
    let passes =
        counter("masq_kernel_passes_total", "Packets given to the kernel by the engine, by reason.", &["reason"])?;
    for (r, n) in PassReason::ALL.iter().zip(m.engine.passes) {
        passes.with_label_values(&[r.name()]).inc_by(n);
    }

    let sessions = gauge("masq_sessions", "Live sessions by protocol and state.", &["protocol", "state"])?;
    // Every protocol appears, even with no session, so dashboards have a series.
    for p in ["tcp", "udp", "icmp"] {
        sessions.with_label_values(&[p, "any"]).set(0);
    }
    for (&(p, st), &n) in &m.census.sessions {
        sessions.with_label_values(&[&protocol_name(p), st]).set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    // Where sessions live: which worker owns a subscriber shows here.
    let per_worker = gauge("masq_worker_sessions", "Live sessions in each worker's shard.", &["worker"])?;
    for (w, ws) in m.workers.iter().enumerate() {
        per_worker.with_label_values(&[&w.to_string()]).set(i64::from(ws.sessions));
    }
    let lifecycle =
        counter("masq_sessions_events_total", "Sessions created, expired, evicted and flushed.", &["event"])?;
    for (ev, n) in [
        ("created", m.engine.sessions_created),
        ("expired", m.engine.sessions_expired),
        ("evicted", m.engine.sessions_evicted),
        ("flushed", m.engine.sessions_flushed),
    ] {
        lifecycle.with_label_values(&[ev]).inc_by(n);
    }

    let blocks =
        gauge("masq_port_blocks", "Port blocks per pool address, in use or free.", &["pool", "address", "state"])?;
    for ((ip, pool), b) in &m.census.blocks {
        let a = std::net::Ipv4Addr::from(*ip).to_string();
        blocks.with_label_values(&[pool, &a, "in_use"]).set(i64::try_from(b.in_use).unwrap_or(0));
        blocks.with_label_values(&[pool, &a, "free"]).set(i64::try_from(b.free).unwrap_or(0));
    }
    let exhaustion = counter(
        "masq_port_exhaustion_events_total",
        "Times a subscriber found no free port, by subscriber bucket (/24 network number modulo 16).",
        &["bucket"],
    )?;
    for (b, n) in m.engine.port_exhaustion_by_bucket.iter().enumerate() {
        exhaustion.with_label_values(&[&b.to_string()]).inc_by(*n);
    }

    let limits = counter(
        "masq_subscriber_limit_events_total",
        "New flows refused because the subscriber could not get a port or a session (RFC 6888 REQ-11), by pool and reason.",
        &["pool", "reason"],
    )?;
    for (i, by_reason) in m.engine.subscriber_limit_events.iter().enumerate() {
        // Every pool the census names has its series; a pool it does not
        // name (no census taken) shows by number if it counted anything.
        let name = match m.census.pools.get(i) {
            Some(name) => name.clone(),
            None if by_reason.iter().any(|&n| n > 0) => format!("#{i}"),
            None => continue,
        };
        for (reason, n) in LIMIT_REASONS.iter().zip(by_reason) {
            limits.with_label_values(&[name.as_str(), reason.name()]).inc_by(*n);
        }
    }

    let handoffs = counter("masq_handoffs_total", "Frames handed to the worker that owns their session.", &["worker"])?;
    for (w, ws) in m.workers.iter().enumerate() {
        handoffs.with_label_values(&[&w.to_string()]).inc_by(ws.handoffs_out);
    }
    let log_lost = counter(
        "masq_nat_log_lost_total",
        "NAT log events (port blocks, refusals) lost because the log fell behind.",
        &[],
    )?;
    log_lost.with_label_values::<&str>(&[]).inc_by(m.nat_log_lost());
    let sinks = crate::natlog::lost_by_sink();
    if !sinks.is_empty() {
        let by_sink = counter(
            "masq_nat_log_sink_lost_total",
            "NAT events a sink lost: its queue was full, its collector away past the buffer, or a write failed.",
            &["sink"],
        )?;
        for (name, n) in &sinks {
            by_sink.with_label_values(&[name.as_str()]).inc_by(*n);
        }
    }

    declared_totals(&r, m.engine.exported().chain(m.worker.exported()))?;

    let xdp = counter(
        "masq_xdp_frames_total",
        "Frames the XDP program redirected to masq or passed to the kernel.",
        &["interface", "action"],
    )?;
    for x in &m.xdp {
        for (action, n) in &x.by_action {
            xdp.with_label_values(&[x.iface.as_str(), action]).inc_by(*n);
        }
    }

    let guard = counter(
        "masq_host_guard_drops_total",
        "Packets the host guard dropped: new traffic from outside to the box (refused), or the box's own with an inside source out of the outside interface (leaked).",
        &["reason"],
    )?;
    guard.with_label_values(&["refused"]).inc_by(m.guard.refused);
    guard.with_label_values(&["leaked"]).inc_by(m.guard.leaked);

    let auth =
        counter("masq_control_auth_failures_total", "Control API calls refused for a missing or wrong token.", &[])?;
    auth.with_label_values::<&str>(&[]).inc_by(m.control_auth_failures);

    let generation = gauge("masq_config_generation", "Generation of the configuration in force.", &[])?;
    generation.with_label_values::<&str>(&[]).set(i64::try_from(m.config.generation).unwrap_or(0));
    let reloads = counter("masq_config_reloads_total", "Configuration pushes and reloads by result.", &["result"])?;
    reloads.with_label_values(&["ok"]).inc_by(m.config.accepted);
    reloads.with_label_values(&["error"]).inc_by(m.config.refused);
    let ready = gauge(
        "masq_ready",
        "1 when every worker is forwarding (what /readyz answers 200 for), 0 while starting, stopping or with a worker gone.",
        &[],
    )?;
    ready.with_label_values::<&str>(&[]).set(i64::from(m.ready));
    if let Some(h) = &m.ha {
        let role = gauge("masq_ha_active", "1 while this HA box is active, 0 while it stands by.", &[])?;
        role.with_label_values::<&str>(&[]).set(i64::from(h.active));
        let up = gauge("masq_ha_connected", "1 while the HA sync link to the peer is up and authenticated.", &[])?;
        up.with_label_values::<&str>(&[]).set(i64::from(h.connected));
        let msgs = counter("masq_ha_messages_total", "HA sync messages, by direction.", &["direction"])?;
        msgs.with_label_values(&["sent"]).inc_by(h.sent.0);
        msgs.with_label_values(&["received"]).inc_by(h.received.0);
        let bytes = counter("masq_ha_bytes_total", "HA sync bytes (whole frames), by direction.", &["direction"])?;
        bytes.with_label_values(&["sent"]).inc_by(h.sent.1);
        bytes.with_label_values(&["received"]).inc_by(h.received.1);
        let recs =
            counter("masq_ha_records_total", "HA sync records (port blocks, sessions), by direction.", &["direction"])?;
        recs.with_label_values(&["sent"]).inc_by(h.records.0);
        recs.with_label_values(&["received"]).inc_by(h.records.1);
        let backlog = gauge("masq_ha_backlog", "HA sync records queued for the peer.", &[])?;
        backlog.with_label_values::<&str>(&[]).set(i64::try_from(h.backlog).unwrap_or(i64::MAX));
        let lost = counter(
            "masq_ha_lost_total",
            "HA sync records lost to a full backlog (the link is then reset and resynced).",
            &[],
        )?;
        lost.with_label_values::<&str>(&[]).inc_by(h.lost);
        let resyncs = counter("masq_ha_resyncs_total", "HA bulk resyncs sent or received.", &[])?;
        resyncs.with_label_values::<&str>(&[]).inc_by(h.resyncs);
        let auth = counter(
            "masq_ha_auth_failures_total",
            "HA sync connections closed for a failed MAC, sequence number or handshake.",
            &[],
        )?;
        auth.with_label_values::<&str>(&[]).inc_by(h.auth_failures);
        let roles = counter("masq_ha_role_changes_total", "HA role changes (masq role active|standby).", &[])?;
        roles.with_label_values::<&str>(&[]).inc_by(h.role_changes);
    }
    let build = gauge("masq_build_info", "Build information.", &["version"])?;
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);

    let mut families = r.gather();
    let mut fam = prometheus::proto::MetricFamily::default();
    fam.set_name("masq_worker_round_duration_seconds".into());
    fam.set_help(
        "Time a worker round with traffic took (receive, translate, send), from each worker's hdrhistogram.".into(),
    );
    fam.set_field_type(prometheus::proto::MetricType::HISTOGRAM);
    fam.set_metric(
        m.workers.iter().enumerate().filter_map(|(w, ws)| ws.round_ns.as_ref().map(|h| round_metric(w, h))).collect(),
    );
    families.push(fam);
    let mut out = Vec::new();
    TextEncoder::new().encode(&families, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{RingSnapshot, Shared, SocketStats, XdpCounts};
    use dataplane::worker::{BlockUse, Stats};
    use std::sync::Arc;

    /// A worker's stats with every counter non-zero and distinct.
    fn busy_stats(seed: u64) -> Stats {
        let mut s = Stats::default();
        let mut n = seed;
        let mut next = || {
            n += 1;
            n
        };
        let w = &mut s.worker;
        for pair in [
            &mut w.rx,
            &mut w.rx_bytes,
            &mut w.tx,
            &mut w.tx_bytes,
            &mut w.no_neighbour,
            &mut w.no_route,
            &mut w.fragmented,
            &mut w.too_big,
        ] {
            *pair = [next(), next()];
        }
        for c in [
            &mut w.rounds,
            &mut w.fragment_failed,
            &mut w.to_kernel,
            &mut w.pass_dropped,
            &mut w.handoff_out,
            &mut w.handoff_in,
            &mut w.log_dropped,
            &mut w.handoff_no_queue,
            &mut w.handoff_too_big,
            &mut w.handoff_queue_full,
            &mut w.handoff_no_frame,
            &mut w.fragment_handoff_dropped,
        ] {
            *c = next();
        }
        let e = &mut s.engine;
        for c in [
            &mut e.rx_i2o,
            &mut e.rx_o2i,
            &mut e.fwd_i2o,
            &mut e.fwd_o2i,
            &mut e.hairpinned,
            &mut e.handoffs,
            &mut e.sessions_created,
            &mut e.sessions_expired,
            &mut e.sessions_evicted,
            &mut e.sessions_flushed,
            &mut e.port_exhaustion_events,
            &mut e.blocks_allocated,
            &mut e.blocks_released,
            &mut e.fragments_followed,
            &mut e.icmp_errors_translated,
        ] {
            *c = next();
        }
        for c in e.drops.iter_mut().chain(&mut e.passes).chain(&mut e.port_exhaustion_by_bucket) {
            *c = next();
        }
        for c in e.subscriber_limit_events.iter_mut().flatten() {
            *c = next();
        }
        s.sessions = 7;
        s.blocks_in_use = 3;
        s.block_events_dropped = next();
        s.round_ns = hdrhistogram::Histogram::new(2).ok();
        s
    }

    /// Two busy workers, with a census, XDP and configuration counters:
    /// every family has at least one series.
    fn busy_snapshot() -> MetricsSnapshot {
        let shared: Vec<Arc<Shared>> = (0..2u64)
            .map(|i| {
                let sh = Arc::new(Shared::default());
                *sh.stats.lock().expect("fresh") = busy_stats(i * 1000);
                let mut ring = RingSnapshot::default();
                ring.rings.tx_ring_full = [i + 31, i + 32];
                ring.kernel = [
                    SocketStats { rx_dropped: i + 33, rx_ring_full: i + 34, fill_ring_empty: i + 35 },
                    SocketStats { rx_dropped: i + 36, rx_ring_full: i + 37, fill_ring_empty: i + 38 },
                ];
                *sh.ring.lock().expect("fresh") = ring;
                sh
            })
            .collect();
        let mut m = MetricsSnapshot::gather(&shared);
        m.census.sessions.insert((6, "established"), 4);
        m.census.blocks.insert((0xcb00_710a, "p".into()), BlockUse { in_use: 2, free: 5 });
        m.census.pools = vec!["p".into()];
        m.xdp = vec![XdpCounts { iface: "in0".into(), by_action: vec![("redirect", 14), ("pass", 1)] }];
        m.config.generation = 3;
        m.config.accepted = 2;
        m.config.refused = 1;
        m
    }

    /// The `# HELP` and `# TYPE` lines of an exposition, and each family's
    /// label names, in order.
    fn families(text: &str) -> Vec<String> {
        let mut out: Vec<String> =
            text.lines().filter(|l| l.starts_with("# HELP ") || l.starts_with("# TYPE ")).map(String::from).collect();
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap_or("");
            let labels: Vec<&str> = l
                .split_once('{')
                .map(|(_, rest)| rest.split(',').filter_map(|kv| kv.split_once('=').map(|(k, _)| k)).collect())
                .unwrap_or_default();
            let line = format!("{name} {{{}}}", labels.join(","));
            if !out.contains(&line) {
                out.push(line);
            }
        }
        out
    }

    #[test]
    fn a_counter_declared_with_its_own_family_renders_as_masq_name_total() {
        let r = Registry::new();
        let declared = [
            Exported { name: "demo", family: Family::Total("Demo things."), value: 3 },
            Exported { name: "lost", family: Family::Drop("lost"), value: 4 },
        ];
        declared_totals(&r, declared.into_iter()).expect("registers");
        let mut out = Vec::new();
        TextEncoder::new().encode(&r.gather(), &mut out).expect("encodes");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "# HELP masq_demo_total Demo things.\n# TYPE masq_demo_total counter\nmasq_demo_total 3\n"
        );
    }

    /// The families written by hand. A counter declared with its own family
    /// adds one and is left out here, so declaring it needs no edit of this list.
    #[test]
    fn the_families_their_help_and_their_labels_stay_as_dashboards_know_them() {
        let m = busy_snapshot();
        let text = render(&m).expect("renders");
        let declared: Vec<String> = m
            .engine
            .exported()
            .chain(m.worker.exported())
            .filter(|x| matches!(x.family, Family::Total(_)))
            .map(|x| format!("masq_{}_total", x.name))
            .collect();
        let hand_written: Vec<String> =
            families(&text).into_iter().filter(|l| !l.split(' ').any(|w| declared.iter().any(|d| d == w))).collect();
        let want = [
            "# HELP masq_build_info Build information.",
            "# TYPE masq_build_info gauge",
            "# HELP masq_bytes_total Bytes received and sent, by direction.",
            "# TYPE masq_bytes_total counter",
            "# HELP masq_config_generation Generation of the configuration in force.",
            "# TYPE masq_config_generation gauge",
            "# HELP masq_config_reloads_total Configuration pushes and reloads by result.",
            "# TYPE masq_config_reloads_total counter",
            "# HELP masq_control_auth_failures_total Control API calls refused for a missing or wrong token.",
            "# TYPE masq_control_auth_failures_total counter",
            "# HELP masq_drops_total Packets dropped, by reason.",
            "# TYPE masq_drops_total counter",
            "# HELP masq_handoffs_total Frames handed to the worker that owns their session.",
            "# TYPE masq_handoffs_total counter",
            "# HELP masq_host_guard_drops_total Packets the host guard dropped: new traffic from outside to the box (refused), or the box's own with an inside source out of the outside interface (leaked).",
            "# TYPE masq_host_guard_drops_total counter",
            "# HELP masq_kernel_passes_total Packets given to the kernel by the engine, by reason.",
            "# TYPE masq_kernel_passes_total counter",
            "# HELP masq_nat_log_lost_total NAT log events (port blocks, refusals) lost because the log fell behind.",
            "# TYPE masq_nat_log_lost_total counter",
            "# HELP masq_packets_total Packets by direction and verdict.",
            "# TYPE masq_packets_total counter",
            "# HELP masq_port_blocks Port blocks per pool address, in use or free.",
            "# TYPE masq_port_blocks gauge",
            "# HELP masq_port_exhaustion_events_total Times a subscriber found no free port, by subscriber bucket (/24 network number modulo 16).",
            "# TYPE masq_port_exhaustion_events_total counter",
            "# HELP masq_ready 1 when every worker is forwarding (what /readyz answers 200 for), 0 while starting, stopping or with a worker gone.",
            "# TYPE masq_ready gauge",
            "# HELP masq_sessions Live sessions by protocol and state.",
            "# TYPE masq_sessions gauge",
            "# HELP masq_sessions_events_total Sessions created, expired, evicted and flushed.",
            "# TYPE masq_sessions_events_total counter",
            "# HELP masq_subscriber_limit_events_total New flows refused because the subscriber could not get a port or a session (RFC 6888 REQ-11), by pool and reason.",
            "# TYPE masq_subscriber_limit_events_total counter",
            "# HELP masq_worker_sessions Live sessions in each worker's shard.",
            "# TYPE masq_worker_sessions gauge",
            "# HELP masq_xdp_frames_total Frames the XDP program redirected to masq or passed to the kernel.",
            "# TYPE masq_xdp_frames_total counter",
            "# HELP masq_worker_round_duration_seconds Time a worker round with traffic took (receive, translate, send), from each worker's hdrhistogram.",
            "# TYPE masq_worker_round_duration_seconds histogram",
            "masq_build_info {version}",
            "masq_bytes_total {direction,verdict}",
            "masq_config_generation {}",
            "masq_config_reloads_total {result}",
            "masq_control_auth_failures_total {}",
            "masq_drops_total {reason}",
            "masq_handoffs_total {worker}",
            "masq_host_guard_drops_total {reason}",
            "masq_kernel_passes_total {reason}",
            "masq_nat_log_lost_total {}",
            "masq_packets_total {direction,verdict}",
            "masq_port_blocks {address,pool,state}",
            "masq_port_exhaustion_events_total {bucket}",
            "masq_ready {}",
            "masq_sessions {protocol,state}",
            "masq_sessions_events_total {event}",
            "masq_subscriber_limit_events_total {pool,reason}",
            "masq_worker_sessions {worker}",
            "masq_xdp_frames_total {action,interface}",
            "masq_worker_round_duration_seconds_bucket {worker,le}",
            "masq_worker_round_duration_seconds_sum {worker}",
            "masq_worker_round_duration_seconds_count {worker}",
        ];
        assert_eq!(hand_written, want, "in:\n{text}");
    }

    #[test]
    fn a_snapshot_renders_with_every_family_and_its_values() {
        let mut m = MetricsSnapshot::gather(&[std::sync::Arc::default()]);
        m.worker.rx = [5, 6];
        m.workers[0].round_ns = hdrhistogram::Histogram::new(2).ok();
        m.config.generation = 3;
        let text = render(&m).expect("renders");
        for line in [
            "masq_packets_total{direction=\"in_to_out\",verdict=\"received\"} 5",
            "masq_packets_total{direction=\"out_to_in\",verdict=\"received\"} 6",
            "masq_drops_total{reason=\"no_route\"} 0",
            "masq_sessions{protocol=\"tcp\",state=\"any\"} 0",
            "masq_handoffs_total{worker=\"0\"} 0",
            "masq_worker_sessions{worker=\"0\"} 0",
            "masq_nat_log_lost_total 0",
            "masq_config_generation 3",
            "# TYPE masq_worker_round_duration_seconds histogram",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
    }

    #[test]
    fn refusals_render_per_pool_by_name_and_reason() {
        use dataplane::nat::counters::limit_index;
        use dataplane::nat::DropReason;
        let mut m = MetricsSnapshot::gather(&[std::sync::Arc::default()]);
        m.workers[0].round_ns = hdrhistogram::Histogram::new(2).ok();
        m.census.pools = vec!["cgnat".into(), "home".into()];
        let exhausted = limit_index(DropReason::PortsExhausted).expect("a limit reason");
        m.engine.subscriber_limit_events[1][exhausted] = 7;
        m.engine.subscriber_limit_events[5][exhausted] = 2; // a pool no census named
        let text = render(&m).expect("renders");
        for line in [
            "masq_subscriber_limit_events_total{pool=\"home\",reason=\"ports_exhausted\"} 7",
            "masq_subscriber_limit_events_total{pool=\"cgnat\",reason=\"table_full\"} 0",
            "masq_subscriber_limit_events_total{pool=\"cgnat\",reason=\"subscriber_session_limit\"} 0",
            "masq_subscriber_limit_events_total{pool=\"home\",reason=\"subscriber_table_full\"} 0",
            "masq_subscriber_limit_events_total{pool=\"#5\",reason=\"ports_exhausted\"} 2",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        assert!(!text.contains("pool=\"#2\""), "a pool with nothing to show has no series");
    }

    #[test]
    fn masq_ready_is_what_readyz_answers() {
        let mut m = busy_snapshot();
        assert!(render(&m).expect("renders").contains("\nmasq_ready 0\n"), "not ready unless filled in");
        m.ready = true;
        assert!(render(&m).expect("renders").contains("\nmasq_ready 1\n"));
    }

    /// deploy/grafana/masq.json (built by deploy/grafana/generate.py) has
    /// a query for every family `/metrics` serves, so a new family without
    /// a panel fails here.
    #[test]
    fn every_family_has_a_panel_on_the_dashboard() {
        let dash = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/masq.json"))
            .expect("dashboard");
        let used: std::collections::BTreeSet<&str> =
            dash.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("masq_")).collect();
        let text = render(&busy_snapshot()).expect("renders");
        let mut served: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
        // Served only while NAT log sinks run (none in a unit test).
        served.push("masq_nat_log_sink_lost_total");
        let missing: Vec<&&str> = served
            .iter()
            .filter(|f| !["", "_bucket", "_count", "_sum"].iter().any(|s| used.contains(format!("{f}{s}").as_str())))
            .collect();
        assert!(
            missing.is_empty(),
            "families with no panel in deploy/grafana/masq.json (edit generate.py): {missing:?}"
        );
    }
}
