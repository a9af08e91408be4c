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
//!
//! This file holds the routes only: what they serve comes from `telemetry`
//! and `metrics`, and a pushed configuration goes to `live`, whose typed
//! refusals are mapped to status codes here.

use crate::live::{apply, ApplyError, LiveConfig};
use crate::telemetry::{merge_census, protocol_name, GuardCounts, MetricsSnapshot, Shared, XdpCounts};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use dataplane::nat::SessionInfo;
use dataplane::worker::{Command, SessionFilter, Sliced};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the API serves from.
pub struct ApiState {
    /// Per-worker snapshots.
    pub shared: Vec<Arc<Shared>>,
    /// Per-worker request channels.
    pub commands: Vec<crossbeam_channel::Sender<Command>>,
    /// XDP program counters per interface (refreshed by the control loop).
    pub xdp: Mutex<Vec<XdpCounts>>,
    /// The host guard's counters (refreshed by the control loop).
    pub guard: Mutex<GuardCounts>,
    /// Bearer token for changes.
    pub token: Option<String>,
    /// Workers are forwarding.
    pub ready: AtomicBool,
    /// The configuration in force, and changing it.
    pub live: Arc<LiveConfig>,
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Its address is taken or not ours.
    #[error("control API on {listen}: {error}")]
    Bind {
        /// The address.
        listen: std::net::SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// No runtime, socket option or thread.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The status code a refused change answers with.
fn status_of(e: &ApplyError) -> StatusCode {
    match e {
        ApplyError::Invalid(_) | ApplyError::NeedsRestart(_) | ApplyError::Params(_) | ApplyError::NotLive(_) => {
            StatusCode::BAD_REQUEST
        }
        ApplyError::NoNat => StatusCode::CONFLICT,
        ApplyError::WorkerGone(_)
        | ApplyError::WorkerRefused { .. }
        | ApplyError::WorkerSilent(_)
        | ApplyError::Poisoned => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Serves until `stop` is set. Runs its own single-thread runtime.
pub fn serve(
    listen: std::net::SocketAddr,
    state: Arc<ApiState>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, ApiError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let std_listener = std::net::TcpListener::bind(listen).map_err(|error| ApiError::Bind { listen, error })?;
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

/// Why a query's session filters were refused (400).
#[derive(Debug, thiserror::Error)]
enum FilterError {
    /// `subscriber` or `public` is not an address.
    #[error("{key}: `{value}` is not an IPv4 address")]
    NotAnAddress { key: &'static str, value: String },
    /// `protocol` is not a name or number.
    #[error("protocol: `{0}` is not tcp, udp, icmp or a number")]
    Protocol(String),
}

fn filter(q: &FilterQuery) -> Result<SessionFilter, FilterError> {
    let addr = |key: &'static str, v: &Option<String>| -> Result<Option<u32>, FilterError> {
        v.as_deref()
            .map(|s| {
                s.parse::<std::net::Ipv4Addr>()
                    .map(u32::from)
                    .map_err(|_| FilterError::NotAnAddress { key, value: s.to_string() })
            })
            .transpose()
    };
    let protocol = match q.protocol.as_deref() {
        None => None,
        Some("tcp") => Some(6),
        Some("udp") => Some(17),
        Some("icmp") => Some(1),
        Some(p) => Some(p.parse::<u8>().map_err(|_| FilterError::Protocol(p.to_string()))?),
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

/// One session as `conntrack -L` would show a NAT entry (the reply tuple
/// carries the public address and port).
pub fn session_line(s: &SessionInfo) -> String {
    let ip = |a: u32| std::net::Ipv4Addr::from(a);
    format!(
        "{:<5} {:>3} {:>6} {} src={} dst={} sport={} dport={} src={} dst={} sport={} dport={}{}",
        protocol_name(s.protocol),
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
        if s.assured { " [ASSURED]" } else { " [UNREPLIED]" },
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
    ([("content-type", "application/yaml")], s.live.yaml()).into_response()
}

async fn put_config(State(s): State<Arc<ApiState>>, headers: HeaderMap, body: String) -> Response {
    if !authorized(&s, &headers) {
        return refused();
    }
    let live = Arc::clone(&s.live);
    match tokio::task::spawn_blocking(move || apply(&live, &body)).await {
        Ok(Ok(done)) => done.to_string().into_response(),
        Ok(Err(e)) => (status_of(&e), e.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn stats(State(s): State<Arc<ApiState>>) -> Response {
    MetricsSnapshot::gather(&s.shared).stats_lines().into_response()
}

async fn metrics(State(s): State<Arc<ApiState>>) -> Response {
    let census = ask(&s, |from_slot, reply| Command::Census { from_slot, reply }).await;
    let mut m = MetricsSnapshot::gather(&s.shared);
    m.census = merge_census(census);
    m.xdp = s.xdp.lock().map(|x| x.clone()).unwrap_or_default();
    m.guard = s.guard.lock().map(|g| *g).unwrap_or_default();
    m.config = s.live.counts();
    match crate::metrics::render(&m) {
        Ok(text) => ([("content-type", "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_answer_the_status_codes_they_always_had() {
        let not_live = ApplyError::NotLive(dataplane::nat::ParamError::NeedsRestart("table sizes"));
        assert_eq!(status_of(&ApplyError::Invalid(Vec::new())), StatusCode::BAD_REQUEST);
        assert_eq!(status_of(&ApplyError::NeedsRestart(Vec::new())), StatusCode::BAD_REQUEST);
        assert_eq!(status_of(&not_live), StatusCode::BAD_REQUEST);
        assert_eq!(status_of(&ApplyError::NoNat), StatusCode::CONFLICT);
        assert_eq!(status_of(&ApplyError::WorkerSilent(0)), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn bad_filters_are_refused_with_what_is_wrong() {
        let q = |subscriber: Option<&str>, protocol: Option<&str>| FilterQuery {
            subscriber: subscriber.map(String::from),
            protocol: protocol.map(String::from),
            ..FilterQuery::default()
        };
        let e = filter(&q(Some("10.0.0"), None)).expect_err("not an address");
        assert_eq!(e.to_string(), "subscriber: `10.0.0` is not an IPv4 address");
        let e = filter(&q(None, Some("sctp"))).expect_err("not a protocol");
        assert_eq!(e.to_string(), "protocol: `sctp` is not tcp, udp, icmp or a number");
        let f = filter(&q(Some("100.64.0.2"), Some("udp"))).expect("valid");
        assert_eq!((f.subscriber, f.protocol), (Some(0x6440_0002), Some(17)));
    }

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
            flags: 0,
            assured: true,
        };
        assert_eq!(
            session_line(&s),
            "udp    17    299 udp src=100.64.0.2 dst=198.51.100.1 sport=4000 dport=53 src=198.51.100.1 dst=203.0.113.10 sport=53 dport=1024 [ASSURED]"
        );
        let unreplied = SessionInfo { assured: false, ..s };
        assert!(session_line(&unreplied).ends_with("dport=1024 [UNREPLIED]"), "{}", session_line(&unreplied));
    }
}
