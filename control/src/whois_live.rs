//! `masq whois` from a running masq's live tables (`GET /whois`): who
//! holds the block that contains a public port now (RFC 6888 REQ-12: the
//! block names the subscriber), which sessions use that exact public
//! address and port, and what a subscriber holds now. A deterministic
//! pool answers from its formula (RFC 7422), as the engine has it.
//!
//! The answer is one JSON object ([`LiveAnswer`]), the API's body and
//! what `masq whois --json` prints; the API builds it from every
//! worker's holds ([`merge`]) and a session listing, the command line
//! reads it back.
//!
//! Invariant: [`merge`] gives each hold once however many workers report
//! it (a deterministic range is reported by every worker: the formula is
//! every worker's), its sessions summed over the workers; `found` is true
//! exactly when a hold or a session names a subscriber.

use dataplane::worker::{HeldBy, WhoisQuery};
use std::net::Ipv4Addr;

/// One subscriber's hold on public ports, as `masq whois` prints it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveHold {
    /// The subscriber.
    pub inside: Ipv4Addr,
    /// The public address.
    pub public: Ipv4Addr,
    /// Lowest port of the block or range.
    pub first_port: u16,
    /// Highest port.
    pub last_port: u16,
    /// The pool.
    pub pool: String,
    /// `block`, `deterministic` or `shared`.
    pub kind: String,
    /// The subscriber's live sessions.
    pub sessions: u32,
}

/// A live session on the asked public address and port.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveSession {
    /// `tcp`, `udp`, `icmp` or the protocol number.
    pub protocol: String,
    /// The subscriber.
    pub inside: Ipv4Addr,
    /// Its port (ICMP: the query identifier).
    pub inside_port: u16,
    /// The remote address.
    pub remote: Ipv4Addr,
    /// The remote port.
    pub remote_port: u16,
    /// The session's state (`established`, `udp`, ...).
    pub state: String,
}

/// What the live tables say (`GET /whois`'s body).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveAnswer {
    /// A hold or a session names a subscriber.
    pub found: bool,
    /// Always `live`.
    pub source: String,
    /// The asked public address (a port question).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub public: Option<Ipv4Addr>,
    /// The asked port (a port question).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub port: Option<u16>,
    /// The asked subscriber (a subscriber question).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subscriber: Option<Ipv4Addr>,
    /// The holds: the block (or range) containing the port, or the
    /// subscriber's blocks, ranges and shared addresses.
    pub holders: Vec<LiveHold>,
    /// Sessions on exactly the asked public address and port.
    pub sessions: Vec<LiveSession>,
}

/// Parses `GET /whois`'s parameters: `subscriber=A.B.C.D`, or
/// `ip=A.B.C.D&port=N`.
pub fn query(ip: Option<&str>, port: Option<&str>, subscriber: Option<&str>) -> Result<WhoisQuery, String> {
    let addr = |key: &str, v: &str| v.parse::<Ipv4Addr>().map_err(|_| format!("{key}: `{v}` is not an IPv4 address"));
    match (ip, port, subscriber) {
        (None, None, Some(s)) => Ok(WhoisQuery::Subscriber(u32::from(addr("subscriber", s)?))),
        (Some(i), Some(p), None) => {
            let port = p.parse::<u16>().map_err(|_| format!("port: `{p}` is not a port"))?;
            Ok(WhoisQuery::Port(u32::from(addr("ip", i)?), port))
        }
        _ => Err("ask ip=A.B.C.D&port=N, or subscriber=A.B.C.D".into()),
    }
}

/// The workers' holds, each once (sorted; sessions summed).
pub fn merge(parts: Vec<Vec<HeldBy>>) -> Vec<LiveHold> {
    let mut out: Vec<LiveHold> = Vec::new();
    for h in parts.into_iter().flatten() {
        let x = LiveHold {
            inside: Ipv4Addr::from(h.held.inside),
            public: Ipv4Addr::from(h.held.public),
            first_port: h.held.first_port,
            last_port: h.held.last_port,
            pool: h.pool,
            kind: h.held.kind.name().to_string(),
            sessions: h.held.sessions,
        };
        let same = |y: &LiveHold| LiveHold { sessions: 0, ..y.clone() } == LiveHold { sessions: 0, ..x.clone() };
        match out.iter_mut().find(|y| same(y)) {
            Some(y) => y.sessions += x.sessions,
            None => out.push(x),
        }
    }
    out.sort_by_key(|a| (a.inside, a.public, a.first_port));
    out
}

impl LiveAnswer {
    /// The answer to `query` from the merged holds and the sessions on the port.
    pub fn new(query: WhoisQuery, holders: Vec<LiveHold>, sessions: Vec<LiveSession>) -> Self {
        let (public, port, subscriber) = match query {
            WhoisQuery::Port(ip, port) => (Some(Ipv4Addr::from(ip)), Some(port), None),
            WhoisQuery::Subscriber(s) => (None, None, Some(Ipv4Addr::from(s))),
        };
        let found = !holders.is_empty() || !sessions.is_empty();
        LiveAnswer { found, source: "live".into(), public, port, subscriber, holders, sessions }
    }
}

impl std::fmt::Display for LiveAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for h in &self.holders {
            let n = h.sessions;
            writeln!(
                f,
                "{} holds {} ports {}-{} (pool {}, {}, live: {n} session{})",
                h.inside,
                h.public,
                h.first_port,
                h.last_port,
                h.pool,
                h.kind,
                if n == 1 { "" } else { "s" }
            )?;
        }
        for s in &self.sessions {
            writeln!(
                f,
                "{} session {}:{} -> {}:{} ({}) uses {}:{}",
                s.protocol,
                s.inside,
                s.inside_port,
                s.remote,
                s.remote_port,
                s.state,
                self.public.map_or_else(String::new, |a| a.to_string()),
                self.port.unwrap_or(0)
            )?;
        }
        if !self.found {
            match (self.public, self.port, self.subscriber) {
                (Some(a), Some(p), _) => {
                    writeln!(f, "{a}:{p} now: nobody (no block, range or session holds it in the running masq)")?
                }
                (_, _, Some(s)) => writeln!(f, "{s} now: holds nothing in the running masq")?,
                _ => writeln!(f, "nobody")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::nat::ports::{Held, HeldKind};

    fn held(inside: u32, first: u16, kind: HeldKind, sessions: u32) -> HeldBy {
        let held =
            Held { inside, public: 0xcb00_710a, first_port: first, last_port: first + 63, pool: 0, kind, sessions };
        HeldBy { held, pool: "lab".into() }
    }

    #[test]
    fn questions_parse_strictly() {
        assert_eq!(query(Some("203.0.113.10"), Some("1024"), None), Ok(WhoisQuery::Port(0xcb00_710a, 1024)));
        assert_eq!(query(None, None, Some("100.64.0.2")), Ok(WhoisQuery::Subscriber(0x6440_0002)));
        assert!(query(Some("203.0.113.10"), None, None).is_err(), "a port is needed");
        assert!(query(Some("203.0.113.10"), Some("70000"), None).unwrap_err().starts_with("port:"));
        assert!(query(Some("x"), Some("1"), None).unwrap_err().starts_with("ip:"));
        assert!(query(Some("203.0.113.10"), Some("1"), Some("100.64.0.2")).is_err(), "one question at a time");
    }

    #[test]
    fn a_range_every_worker_reports_is_given_once_with_its_sessions_summed() {
        let f = HeldKind::Formula;
        let holds = merge(vec![
            vec![held(0x6440_0003, 1088, f, 0), held(0x6440_0002, 1024, HeldKind::Block, 2)],
            vec![held(0x6440_0003, 1088, f, 3)],
        ]);
        assert_eq!(holds.len(), 2, "{holds:?}");
        assert_eq!((holds[0].inside, holds[0].kind.as_str()), (Ipv4Addr::new(100, 64, 0, 2), "block"));
        assert_eq!((holds[1].sessions, holds[1].kind.as_str()), (3, "deterministic"));
        let a = LiveAnswer::new(WhoisQuery::Port(0xcb00_710a, 1100), holds, Vec::new());
        assert!(a.found);
        let text = a.to_string();
        assert!(
            text.starts_with("100.64.0.2 holds 203.0.113.10 ports 1024-1087 (pool lab, block, live: 2 sessions)"),
            "{text}"
        );
        let json = serde_json::to_string(&a).unwrap();
        assert!(json.contains("\"source\":\"live\"") && !json.contains("subscriber"), "{json}");
        assert_eq!(serde_json::from_str::<LiveAnswer>(&json).unwrap(), a, "read back as printed");
        let none = LiveAnswer::new(WhoisQuery::Port(0xcb00_710a, 9), Vec::new(), Vec::new());
        assert!(!none.found && none.to_string().contains("203.0.113.10:9 now: nobody"), "{none}");
    }
}
