//! The control API: HTTP on the control side (never on a worker core),
//! `127.0.0.1:9091` by default.
//!
//!   GET    /healthz, /readyz          liveness; readiness (workers forwarding)
//!   GET    /metrics                   Prometheus text format, all `masq_`
//!   GET    /config                    the configuration in force (YAML)
//!   PUT    /config                    validate a new one and apply it live (token)
//!   GET    /sessions?FILTERS          one line per session, like `conntrack -L`
//!   DELETE /sessions?FILTERS          flush them, like `conntrack -D` (token)
//!   GET    /stats                     totals as `name value` lines (for `masq stats`)
//!
//! FILTERS: `subscriber=A.B.C.D`, `public=A.B.C.D`, `protocol=tcp|udp|icmp`,
//! `state=NAME`. With a token configured, calls that change state need
//! `Authorization: Bearer TOKEN`; the others are open (bind to loopback).
//!
//! Metrics are built at scrape time from the snapshots workers publish every
//! 100 ms and from a census they take between rounds: the control side
//! never reads a worker's live counters.

use crate::run::{Shared, Totals};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use dataplane::nat::{PassReason, SessionInfo};
use dataplane::worker::{Census, Command, SessionFilter, Sliced};
use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One interface's XDP program counters: (interface, [(action, frames)]).
pub type XdpCounts = (String, Vec<(&'static str, u64)>);

/// What the API serves from.
pub struct ApiState {
    /// Per-worker snapshots.
    pub shared: Vec<Arc<Shared>>,
    /// Per-worker request channels.
    pub commands: Vec<crossbeam_channel::Sender<Command>>,
    /// XDP program counters per interface (refreshed by the control loop).
    pub xdp: Mutex<Vec<XdpCounts>>,
    /// The configuration in force, as YAML.
    pub config_yaml: Mutex<String>,
    /// Its generation (1 at start, +1 per accepted change).
    pub generation: AtomicU64,
    /// Config pushes and reloads, accepted and refused.
    pub reloads: [AtomicU64; 2],
    /// Bearer token for changes.
    pub token: Option<String>,
    /// Workers are forwarding.
    pub ready: AtomicBool,
    /// Logical CPUs, for validating pushed configs.
    pub cpus: usize,
    /// What a new configuration is applied against.
    pub live: Mutex<Live>,
}

/// The configuration in force and what turning a new one into engine
/// parameters needs.
pub struct Live {
    /// The validated configuration in force.
    pub config: config::ValidConfig,
    /// The engine parameters in force (`None`: masq runs without NAT).
    pub params: Option<dataplane::nat::EngineParams>,
    /// The outside interface's address (masquerade).
    pub outside_addr: Option<u32>,
    /// The box's addresses.
    pub local_addrs: Vec<u32>,
}

/// Validates `text` and applies it to every worker at a batch boundary.
/// A refused configuration changes nothing; the error text is what
/// `check-config` prints, each line prefixed `config:`.
pub fn apply(s: &ApiState, text: &str) -> Result<String, (StatusCode, String)> {
    let fail = |code: StatusCode, msg: String| {
        s.reloads[1].fetch_add(1, Ordering::Relaxed);
        (code, msg)
    };
    let v = match config::load(text, s.cpus) {
        Ok(v) => v,
        Err(errors) => {
            return Err(fail(StatusCode::BAD_REQUEST, errors.iter().map(|e| format!("config:{e}\n")).collect()))
        }
    };
    let mut live = s.live.lock().map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, "poisoned\n".to_string()))?;
    let positions = config::Positions::of(text);
    let at = |path: &str, msg: &str| {
        let (l, c) = positions.find(path);
        format!("config:{l}:{c}: {path}: {msg}\n")
    };
    let (cur, new) = (&live.config.raw, &v.raw);
    let mut restart = String::new();
    if cur.interfaces != new.interfaces {
        restart.push_str(&at("interfaces", "changes only with a restart"));
    }
    if cur.workers != new.workers {
        restart.push_str(&at("workers", "changes only with a restart"));
    }
    if cur.control != new.control {
        restart.push_str(&at("control", "changes only with a restart"));
    }
    if !restart.is_empty() {
        return Err(fail(StatusCode::BAD_REQUEST, restart));
    }
    let Some(old) = &live.params else {
        return Err(fail(StatusCode::CONFLICT, "config: masq runs without NAT (--no-nat): nothing to apply\n".into()));
    };
    let mut p = crate::params::engine_params(&v, live.outside_addr, live.local_addrs.clone())
        .map_err(|e| fail(StatusCode::BAD_REQUEST, format!("config: {e}\n")))?;
    // The seed and steering stay the running engines' own.
    p.seed = old.seed;
    p.steering = old.steering.clone();
    if let Err(e) = dataplane::nat::reconfigure_check(old, &p) {
        return Err(fail(StatusCode::BAD_REQUEST, format!("config: {e}\n")));
    }
    let mut flushed = 0;
    for (w, c) in s.commands.iter().enumerate() {
        let mut pw = p.clone();
        pw.worker = u16::try_from(w).unwrap_or(0);
        let (tx, rx) = crossbeam_channel::bounded(1);
        if c.send(Command::Reconfigure { params: Box::new(pw), reply: tx }).is_err() {
            return Err(fail(StatusCode::INTERNAL_SERVER_ERROR, format!("config: worker {w} is gone\n")));
        }
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(n)) => flushed += n,
            Ok(Err(e)) => return Err(fail(StatusCode::INTERNAL_SERVER_ERROR, format!("config: worker {w}: {e}\n"))),
            Err(_) => {
                return Err(fail(StatusCode::INTERNAL_SERVER_ERROR, format!("config: worker {w} did not answer\n")))
            }
        }
    }
    live.config = v;
    live.params = Some(p);
    if let Ok(mut y) = s.config_yaml.lock() {
        *y = text.to_string();
    }
    let g = s.generation.fetch_add(1, Ordering::Relaxed) + 1;
    s.reloads[0].fetch_add(1, Ordering::Relaxed);
    Ok(format!("config: generation {g} in force; {flushed} sessions on removed addresses flushed\n"))
}

/// Serves until `stop` is set. Runs its own single-thread runtime.
pub fn serve(
    listen: std::net::SocketAddr,
    state: Arc<ApiState>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let std_listener =
        std::net::TcpListener::bind(listen).map_err(|e| anyhow::anyhow!("control API on {listen}: {e}"))?;
    std_listener.set_nonblocking(true)?;
    let handle = std::thread::Builder::new().name("masq-api".into()).spawn(move || {
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else { return };
            let app = Router::new()
                .route("/healthz", get(|| async { "ok\n" }))
                .route("/readyz", get(readyz))
                .route("/metrics", get(metrics))
                .route("/config", get(get_config).put(put_config))
                .route("/sessions", get(get_sessions).delete(delete_sessions))
                .route("/stats", get(stats))
                .with_state(state);
            let shutdown = async move {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            let _ = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
        });
    })?;
    tracing::info!("control API on http://{listen}");
    Ok(handle)
}

async fn readyz(State(s): State<Arc<ApiState>>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

fn authorized(s: &ApiState, headers: &HeaderMap) -> bool {
    let Some(token) = &s.token else { return true };
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| same_secret(t.trim().as_bytes(), token.as_bytes()))
}

/// Compares a presented token with the secret in time that does not depend
/// on where they first differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    diff == 0 && a.len() == b.len()
}

fn refused() -> Response {
    (StatusCode::UNAUTHORIZED, "this call changes state: send Authorization: Bearer TOKEN\n").into_response()
}

/// Session filters from the query string.
#[derive(serde::Deserialize, Default)]
pub struct FilterQuery {
    subscriber: Option<String>,
    public: Option<String>,
    protocol: Option<String>,
    state: Option<String>,
}

fn filter(q: &FilterQuery) -> Result<SessionFilter, String> {
    let addr = |k: &str, v: &Option<String>| -> Result<Option<u32>, String> {
        v.as_deref()
            .map(|s| {
                s.parse::<std::net::Ipv4Addr>().map(u32::from).map_err(|_| format!("{k}: `{s}` is not an IPv4 address"))
            })
            .transpose()
    };
    let protocol = match q.protocol.as_deref() {
        None => None,
        Some("tcp") => Some(6),
        Some("udp") => Some(17),
        Some("icmp") => Some(1),
        Some(p) => Some(p.parse::<u8>().map_err(|_| format!("protocol: `{p}` is not tcp, udp, icmp or a number"))?),
    };
    Ok(SessionFilter {
        subscriber: addr("subscriber", &q.subscriber)?,
        public: addr("public", &q.public)?,
        protocol,
        state: q.state.clone(),
    })
}

/// Asks every worker `make(start, reply)` slice by slice (a worker answers
/// one slice between two rounds) and gathers every slice's answer.
async fn ask<T: Send + 'static>(
    s: &Arc<ApiState>,
    make: impl Fn(u32, crossbeam_channel::Sender<Sliced<T>>) -> Command + Send + 'static,
) -> Vec<T> {
    let s = Arc::clone(s);
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for c in &s.commands {
            let mut start = Some(0);
            while let Some(from) = start {
                let (tx, rx) = crossbeam_channel::bounded(1);
                if c.send(make(from, tx)).is_err() {
                    break;
                }
                let Ok(Sliced { part, next_slot }) = rx.recv_timeout(Duration::from_secs(5)) else { break };
                out.push(part);
                start = next_slot;
            }
        }
        out
    })
    .await
    .unwrap_or_default()
}

fn proto_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        n => n.to_string(),
    }
}

/// One session as `conntrack -L` would show a NAT entry (the reply tuple
/// carries the public address and port).
pub fn session_line(s: &SessionInfo) -> String {
    let ip = |a: u32| std::net::Ipv4Addr::from(a);
    format!(
        "{:<5} {:>3} {:>6} {} src={} dst={} sport={} dport={} src={} dst={} sport={} dport={}{}",
        proto_name(s.protocol),
        s.protocol,
        s.expires_in,
        s.state,
        ip(s.inside.0),
        ip(s.remote.0),
        s.inside.1,
        s.remote.1,
        ip(s.remote.0),
        ip(s.public.0),
        s.remote.1,
        s.public.1,
        if s.flags & dataplane::nat::session::flag::REPLIED != 0 { " [ASSURED]" } else { " [UNREPLIED]" },
    )
}

async fn get_sessions(State(s): State<Arc<ApiState>>, Query(q): Query<FilterQuery>) -> Response {
    let f = match filter(&q) {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let lists = ask(&s, move |from_slot, reply| Command::Sessions { filter: f.clone(), from_slot, reply }).await;
    let mut out = String::new();
    let mut n = 0;
    for l in lists {
        for x in &l {
            out.push_str(&session_line(x));
            out.push('\n');
            n += 1;
        }
    }
    out.push_str(&format!("masq: {n} sessions\n"));
    out.into_response()
}

async fn delete_sessions(State(s): State<Arc<ApiState>>, headers: HeaderMap, Query(q): Query<FilterQuery>) -> Response {
    if !authorized(&s, &headers) {
        return refused();
    }
    let f = match filter(&q) {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let n: usize =
        ask(&s, move |from_slot, reply| Command::Flush { filter: f.clone(), from_slot, reply }).await.into_iter().sum();
    format!("masq: {n} sessions flushed\n").into_response()
}

async fn get_config(State(s): State<Arc<ApiState>>) -> Response {
    let text = s.config_yaml.lock().map(|t| t.clone()).unwrap_or_default();
    ([("content-type", "application/yaml")], text).into_response()
}

async fn put_config(State(s): State<Arc<ApiState>>, headers: HeaderMap, body: String) -> Response {
    if !authorized(&s, &headers) {
        return refused();
    }
    let st = Arc::clone(&s);
    match tokio::task::spawn_blocking(move || apply(&st, &body)).await {
        Ok(Ok(msg)) => msg.into_response(),
        Ok(Err((code, msg))) => (code, msg).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn stats(State(s): State<Arc<ApiState>>) -> Response {
    let t = Totals::gather(&s.shared);
    t.lines().into_response()
}

async fn metrics(State(s): State<Arc<ApiState>>) -> Response {
    let census = ask(&s, |from_slot, reply| Command::Census { from_slot, reply }).await;
    match render_metrics(&s, &census) {
        Ok(text) => ([("content-type", "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

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

fn render_metrics(s: &ApiState, census: &[Census]) -> prometheus::Result<String> {
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
    let bytes = counter("masq_bytes_total", "Bytes received and sent, by direction.", &["direction", "verdict"])?;
    let drops = counter("masq_drops_total", "Packets dropped, by reason.", &["reason"])?;
    let passes =
        counter("masq_kernel_passes_total", "Packets given to the kernel by the engine, by reason.", &["reason"])?;
    let sessions = gauge("masq_sessions", "Live sessions by protocol and state.", &["protocol", "state"])?;
    let lifecycle =
        counter("masq_sessions_events_total", "Sessions created, expired, evicted and flushed.", &["event"])?;
    let blocks =
        gauge("masq_port_blocks", "Port blocks per pool address, in use or free.", &["pool", "address", "state"])?;
    let exhaustion = counter(
        "masq_port_exhaustion_events_total",
        "Times a subscriber found no free port, by subscriber bucket (/24 network number modulo 16).",
        &["bucket"],
    )?;
    let handoffs = counter("masq_handoffs_total", "Frames handed to the worker that owns their session.", &["worker"])?;
    let log_lost =
        counter("masq_nat_log_lost_total", "NAT log events (port blocks) lost because the log fell behind.", &[])?;
    let xdp = counter(
        "masq_xdp_frames_total",
        "Frames the XDP program redirected to masq or passed to the kernel.",
        &["interface", "action"],
    )?;
    let generation = gauge("masq_config_generation", "Generation of the configuration in force.", &[])?;
    let reloads = counter("masq_config_reloads_total", "Configuration pushes and reloads by result.", &["result"])?;
    let build = gauge("masq_build_info", "Build information.", &["version"])?;
    let mut round = Vec::new();

    let mut drop_total: std::collections::BTreeMap<&'static str, u64> = std::collections::BTreeMap::new();
    let mut pass_total = [0u64; PassReason::COUNT];
    let (mut created, mut expired, mut evicted, mut flushed) = (0, 0, 0, 0);
    let mut buckets = [0u64; dataplane::nat::counters::EXHAUSTION_BUCKETS];
    let mut fwd = [0u64; 2];
    let mut rx = [0u64; 2];
    let mut rx_bytes = [0u64; 2];
    let mut tx_bytes = [0u64; 2];
    let mut handed = [0u64; 2];
    for (w, sh) in s.shared.iter().enumerate() {
        let st = sh.stats.lock().map(|g| g.clone()).unwrap_or_default();
        let (e, k) = (&st.engine, &st.worker);
        crate::run::add_drops(sh, &st, &mut drop_total);
        for (t, n) in pass_total.iter_mut().zip(e.passes) {
            *t += n;
        }
        created += e.sessions_created;
        expired += e.sessions_expired;
        evicted += e.sessions_evicted;
        flushed += e.sessions_flushed;
        for (b, n) in buckets.iter_mut().zip(e.port_exhaustion_by_bucket) {
            *b += n;
        }
        fwd[0] += e.fwd_i2o;
        fwd[1] += e.fwd_o2i;
        for i in 0..2 {
            rx[i] += k.rx[i];
            rx_bytes[i] += k.rx_bytes[i];
            tx_bytes[i] += k.tx_bytes[i];
        }
        handed[0] += k.handoff_out;
        handed[1] += k.handoff_in;
        handoffs.with_label_values(&[&w.to_string()]).inc_by(k.handoff_out);
        log_lost.with_label_values::<&str>(&[]).inc_by(k.log_dropped + st.block_events_dropped);
        if let Some(h) = &st.round_ns {
            round.push(round_metric(w, h));
        }
    }
    packets.with_label_values(&["in_to_out", "received"]).inc_by(rx[0]);
    packets.with_label_values(&["out_to_in", "received"]).inc_by(rx[1]);
    packets.with_label_values(&["in_to_out", "forward"]).inc_by(fwd[0]);
    packets.with_label_values(&["out_to_in", "forward"]).inc_by(fwd[1]);
    packets.with_label_values(&["any", "drop"]).inc_by(drop_total.values().sum());
    packets.with_label_values(&["any", "kernel"]).inc_by(pass_total.iter().sum());
    packets.with_label_values(&["any", "handoff"]).inc_by(handed[0]);
    bytes.with_label_values(&["in_to_out", "received"]).inc_by(rx_bytes[0]);
    bytes.with_label_values(&["out_to_in", "received"]).inc_by(rx_bytes[1]);
    bytes.with_label_values(&["in_to_out", "forward"]).inc_by(tx_bytes[1]);
    bytes.with_label_values(&["out_to_in", "forward"]).inc_by(tx_bytes[0]);
    for (reason, n) in drop_total {
        drops.with_label_values(&[reason]).inc_by(n);
    }
    for (r, n) in PassReason::ALL.iter().zip(pass_total) {
        passes.with_label_values(&[r.name()]).inc_by(n);
    }
    for (ev, n) in [("created", created), ("expired", expired), ("evicted", evicted), ("flushed", flushed)] {
        lifecycle.with_label_values(&[ev]).inc_by(n);
    }
    for (b, n) in buckets.iter().enumerate() {
        exhaustion.with_label_values(&[&b.to_string()]).inc_by(*n);
    }
    let mut by_state: std::collections::BTreeMap<(u8, &str), u64> = std::collections::BTreeMap::new();
    let mut by_addr: std::collections::BTreeMap<(u32, String), (usize, usize)> = std::collections::BTreeMap::new();
    for c in census {
        for (k, v) in &c.sessions {
            *by_state.entry(*k).or_default() += v;
        }
        for (k, b) in &c.blocks {
            let e = by_addr.entry(k.clone()).or_default();
            e.0 += b.in_use;
            e.1 += b.free;
        }
    }
    // Every protocol appears, even with no session, so dashboards have a series.
    for p in ["tcp", "udp", "icmp"] {
        sessions.with_label_values(&[p, "any"]).set(0);
    }
    for ((p, st), n) in by_state {
        sessions.with_label_values(&[&proto_name(p), st]).set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    for ((ip, pool), (u, f)) in by_addr {
        let a = std::net::Ipv4Addr::from(ip).to_string();
        blocks.with_label_values(&[&pool, &a, "in_use"]).set(i64::try_from(u).unwrap_or(0));
        blocks.with_label_values(&[&pool, &a, "free"]).set(i64::try_from(f).unwrap_or(0));
    }
    if let Ok(x) = s.xdp.lock() {
        for (iface, list) in x.iter() {
            for (action, n) in list {
                xdp.with_label_values(&[iface.as_str(), action]).inc_by(*n);
            }
        }
    }
    generation.with_label_values::<&str>(&[]).set(i64::try_from(s.generation.load(Ordering::Relaxed)).unwrap_or(0));
    reloads.with_label_values(&["ok"]).inc_by(s.reloads[0].load(Ordering::Relaxed));
    reloads.with_label_values(&["error"]).inc_by(s.reloads[1].load(Ordering::Relaxed));
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    let mut families = r.gather();
    let mut fam = prometheus::proto::MetricFamily::default();
    fam.set_name("masq_worker_round_duration_seconds".into());
    fam.set_help(
        "Time a worker round with traffic took (receive, translate, send), from each worker's hdrhistogram.".into(),
    );
    fam.set_field_type(prometheus::proto::MetricType::HISTOGRAM);
    fam.set_metric(round);
    families.push(fam);
    let mut out = Vec::new();
    TextEncoder::new().encode(&families, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"s3cret!", b"s3cret"));
        assert!(!same_secret(b"S3cret", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
    }

    #[test]
    fn session_lines_read_like_conntrack() {
        let s = SessionInfo {
            protocol: 17,
            inside: (0x6440_0002, 4000),
            public: (0xcb00_710a, 1024),
            remote: (0xc633_6401, 53),
            state: "udp",
            expires_in: 299,
            flags: dataplane::nat::session::flag::REPLIED,
        };
        assert_eq!(
            session_line(&s),
            "udp    17    299 udp src=100.64.0.2 dst=198.51.100.1 sport=4000 dport=53 src=198.51.100.1 dst=203.0.113.10 sport=53 dport=1024 [ASSURED]"
        );
    }
}
