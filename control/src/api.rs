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
//!   POST   /role                      `active` or `standby`: an HA box's role (token; keepalived's notify)
//!   GET    /whois?ip=A&port=N[&protocol=P]  who holds that public port now (JSON, `masq whois`)
//!   GET    /whois?subscriber=A        what that subscriber holds now (JSON)
//!
//! FILTERS: `subscriber=A.B.C.D`, `public=A.B.C.D`, `protocol=tcp|udp|icmp`,
//! `state=NAME`. Who may call what is [`crate::auth`]'s: on loopback reads
//! are open and changes need the token when one is set; off loopback the
//! API speaks TLS only ([`crate::tls`]) and every call but the health
//! checks and `/metrics` needs the token. Every accepted or refused change
//! and every refused call is logged under the `audit` target.
//!
//! Metrics are built at scrape time from the snapshots workers publish every
//! 100 ms and from a census they take between rounds: the control side
//! never reads a worker's live counters.
//!
//! This file holds the routes only: what they serve comes from `telemetry`
//! and `metrics`, and a pushed configuration goes to `live`, whose typed
//! refusals are mapped to status codes here.

use crate::auth::{Failures, Need, Policy};
use crate::live::{apply, ApplyError, LiveConfig};
use crate::telemetry::{merge_census, protocol_name, GuardCounts, MetricsSnapshot, Shared, XdpCounts};
use crate::tls::{ServerTls, TlsListener};
use crate::whois_live::{LiveAnswer, LiveSession};
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::IncomingStream;
use axum::Router;
use dataplane::nat::SessionInfo;
use dataplane::worker::{Command, CommandTx, SessionFilter, Sliced, WhoisQuery};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the API serves from.
pub struct ApiState {
    /// Per-worker snapshots.
    pub shared: Vec<Arc<Shared>>,
    /// Per-worker request channels.
    pub commands: Vec<CommandTx>,
    /// XDP program counters per interface (refreshed by the control loop).
    pub xdp: Mutex<Vec<XdpCounts>>,
    /// The host guard's counters (refreshed by the control loop).
    pub guard: Mutex<GuardCounts>,
    /// Who may call what.
    pub policy: Policy,
    /// Failed authentications.
    pub failures: Failures,
    /// The API's certificate (off loopback), re-read on SIGHUP.
    pub tls: Option<Arc<ServerTls>>,
    /// Workers are forwarding.
    pub ready: AtomicBool,
    /// The configuration in force, and changing it.
    pub live: Arc<LiveConfig>,
    /// The HA role and sync link, on an HA box.
    pub ha: Option<Arc<crate::ha::Shared>>,
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

/// The peer of a connection, for the audit trail and the failure delays.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(s: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Peer(*s.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(s: IncomingStream<'_, TlsListener>) -> Self {
        Peer(*s.remote_addr())
    }
}

/// Serves until `stop` is set. Runs its own single-thread runtime; TLS if
/// the state has a certificate.
pub fn serve(
    listen: std::net::SocketAddr,
    state: Arc<ApiState>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, ApiError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let std_listener = std::net::TcpListener::bind(listen).map_err(|error| ApiError::Bind { listen, error })?;
    std_listener.set_nonblocking(true)?;
    let tls = state.tls.clone();
    let scheme = if tls.is_some() { "https" } else { "http" };
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
                .route("/role", axum::routing::post(post_role))
                .route("/whois", get(get_whois))
                .with_state(state);
            let shutdown = async move {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            let app = app.into_make_service_with_connect_info::<Peer>();
            let _ = match tls {
                Some(tls) => {
                    axum::serve(TlsListener { tcp: listener, tls }, app).with_graceful_shutdown(shutdown).await
                }
                None => axum::serve(listener, app).with_graceful_shutdown(shutdown).await,
            };
        });
    })?;
    tracing::info!("control API on {scheme}://{listen}");
    Ok(handle)
}

/// Lets the call through (None) or answers it with 401 after the peer's
/// failure delay, counted and logged.
async fn gate(s: &ApiState, need: Need, headers: &HeaderMap, peer: Peer, what: &str) -> Option<Response> {
    if s.policy.allows(need, headers) {
        if headers.contains_key("authorization") {
            s.failures.forget(peer.0.ip());
        }
        return None;
    }
    let delay = s.failures.record(peer.0.ip(), std::time::Instant::now());
    tracing::warn!(
        target: "audit",
        "refused {what} from {}: no valid token ({} refusals in all; answered after {} ms)",
        peer.0,
        s.failures.total(),
        delay.as_millis()
    );
    tokio::time::sleep(delay).await;
    Some(refused(need))
}

async fn readyz(State(s): State<Arc<ApiState>>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

fn refused(need: Need) -> Response {
    let why = match need {
        Need::Change => "this call changes state: send Authorization: Bearer TOKEN\n",
        Need::Metrics => "metrics need the metrics token (or the admin token): send Authorization: Bearer TOKEN\n",
        Need::Read | Need::Open => "off loopback, reading needs the token: send Authorization: Bearer TOKEN\n",
    };
    (StatusCode::UNAUTHORIZED, why).into_response()
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
        public_port: None,
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

/// Asks every worker once (a request that is not sliced) and gathers the answers.
async fn ask_once<T: Send + 'static>(
    s: &Arc<ApiState>,
    make: impl Fn(crossbeam_channel::Sender<T>) -> Command + Send + 'static,
) -> Vec<T> {
    let s = Arc::clone(s);
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for c in &s.commands {
            let (tx, rx) = crossbeam_channel::bounded(1);
            if c.send(make(tx)).is_ok() {
                if let Ok(part) = rx.recv_timeout(Duration::from_secs(5)) {
                    out.push(part);
                }
            }
        }
        out
    })
    .await
    .unwrap_or_default()
}

/// `GET /whois`'s parameters: `ip` and `port` (and `protocol` for the
/// sessions), or `subscriber`.
#[derive(serde::Deserialize, Default)]
pub struct WhoisParams {
    ip: Option<String>,
    port: Option<String>,
    protocol: Option<String>,
    subscriber: Option<String>,
}

async fn get_whois(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Query(q): Query<WhoisParams>,
) -> Response {
    if let Some(r) = gate(&s, Need::Read, &headers, peer, "GET /whois").await {
        return r;
    }
    let query = match crate::whois_live::query(q.ip.as_deref(), q.port.as_deref(), q.subscriber.as_deref()) {
        Ok(x) => x,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let f = match filter(&FilterQuery { protocol: q.protocol, ..FilterQuery::default() }) {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let holds = crate::whois_live::merge(ask_once(&s, move |reply| Command::Whois { query, reply }).await);
    let mut sessions = Vec::new();
    if let WhoisQuery::Port(ip, port) = query {
        let f = SessionFilter { public: Some(ip), public_port: Some(port), ..f };
        let lists = ask(&s, move |from_slot, reply| Command::Sessions { filter: f.clone(), from_slot, reply }).await;
        sessions = lists.iter().flatten().map(live_session).collect();
    }
    let answer = LiveAnswer::new(query, holds, sessions);
    match serde_json::to_string(&answer) {
        Ok(mut body) => {
            body.push('\n');
            ([("content-type", "application/json")], body).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// A session as `masq whois` lists it.
fn live_session(x: &SessionInfo) -> LiveSession {
    let ip = std::net::Ipv4Addr::from;
    LiveSession {
        protocol: protocol_name(x.protocol),
        inside: ip(x.inside.0),
        inside_port: x.inside.1,
        remote: ip(x.remote.0),
        remote_port: x.remote.1,
        state: x.state.to_string(),
    }
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

async fn get_sessions(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Query(q): Query<FilterQuery>,
) -> Response {
    if let Some(r) = gate(&s, Need::Read, &headers, peer, "GET /sessions").await {
        return r;
    }
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

async fn delete_sessions(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Query(q): Query<FilterQuery>,
) -> Response {
    if let Some(r) = gate(&s, Need::Change, &headers, peer, "DELETE /sessions").await {
        return r;
    }
    let f = match filter(&q) {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let what = format!("{f:?}");
    let n: usize =
        ask(&s, move |from_slot, reply| Command::Flush { filter: f.clone(), from_slot, reply }).await.into_iter().sum();
    tracing::info!(target: "audit", "sessions flushed: DELETE /sessions from {}; {what}; {n} sessions", peer.0);
    format!("masq: {n} sessions flushed\n").into_response()
}

async fn get_config(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = gate(&s, Need::Read, &headers, peer, "GET /config").await {
        return r;
    }
    ([("content-type", "application/yaml")], s.live.yaml()).into_response()
}

async fn put_config(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Some(r) = gate(&s, Need::Change, &headers, peer, "PUT /config").await {
        return r;
    }
    let live = Arc::clone(&s.live);
    let who = format!("PUT /config from {}", peer.0);
    match tokio::task::spawn_blocking(move || apply(&live, &body, &who)).await {
        Ok(Ok(done)) => done.to_string().into_response(),
        Ok(Err(e)) => (status_of(&e), e.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// keepalived's notify script (`masq role active|standby`): the HA role.
async fn post_role(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Some(r) = gate(&s, Need::Change, &headers, peer, "POST /role").await {
        return r;
    }
    let active = match body.trim() {
        "active" => true,
        "standby" => false,
        other => {
            return (StatusCode::BAD_REQUEST, format!("role: `{other}` is not active or standby\n")).into_response()
        }
    };
    let Some(ha) = s.ha.clone() else {
        return (StatusCode::CONFLICT, "masq runs without an ha: section: it is always active\n").into_response();
    };
    match tokio::task::spawn_blocking(move || ha.set_role(active)).await {
        Ok(was) => {
            let name = |a: bool| if a { "active" } else { "standby" };
            format!("masq: role {} (was {})\n", name(active), name(was)).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn stats(State(s): State<Arc<ApiState>>, ConnectInfo(peer): ConnectInfo<Peer>, headers: HeaderMap) -> Response {
    if let Some(r) = gate(&s, Need::Read, &headers, peer, "GET /stats").await {
        return r;
    }
    MetricsSnapshot::gather(&s.shared).stats_lines().into_response()
}

async fn metrics(State(s): State<Arc<ApiState>>, ConnectInfo(peer): ConnectInfo<Peer>, headers: HeaderMap) -> Response {
    if let Some(r) = gate(&s, Need::Metrics, &headers, peer, "GET /metrics").await {
        return r;
    }
    let census = ask(&s, |from_slot, reply| Command::Census { from_slot, reply }).await;
    let mut m = MetricsSnapshot::gather(&s.shared);
    m.census = merge_census(census);
    m.xdp = s.xdp.lock().map(|x| x.clone()).unwrap_or_default();
    m.guard = s.guard.lock().map(|g| *g).unwrap_or_default();
    m.config = s.live.counts();
    m.control_auth_failures = s.failures.total();
    m.ready = s.ready.load(Ordering::Relaxed);
    m.ha = s.ha.as_ref().map(|h| h.counts());
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
