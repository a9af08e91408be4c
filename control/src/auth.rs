//! Who may call what on the control API.
//!
//! - `/healthz`, `/readyz`: open.
//! - `/metrics`: open, or with `control.metrics_token` set, that token or
//!   the admin token (so Prometheus scrapes without the admin token).
//! - `GET /sessions`, `/config`, `/stats` (subscriber data, addresses):
//!   open on loopback; off loopback the admin token.
//! - `PUT /config`, `DELETE /sessions` (changes): the admin token when one
//!   is set (always, off loopback: the configuration refuses it otherwise).
//!
//! A failed check is counted (`masq_control_auth_failures_total`), logged
//! with the peer, and answered late: each peer's failures double its delay
//! (100 ms, 200 ms, ... up to [`MAX_DELAY`]), forgotten after
//! [`FORGET_AFTER`] without one, so guessing a token costs time.
//!
//! Invariants: a token is compared in time that does not depend on where it
//! differs; the per-peer table is bounded ([`MAX_PEERS`]).

use axum::http::HeaderMap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest delay a failing peer gets.
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// A peer's failures are forgotten after this long without one.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Peers tracked at most (the table starts over when full).
pub const MAX_PEERS: usize = 4096;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing.
    Open,
    /// The metrics token or the admin token, if a metrics token is set.
    Metrics,
    /// Reading subscriber data: the admin token off loopback.
    Read,
    /// A change: the admin token if one is set.
    Change,
}

/// The tokens and what the listener's address allows.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The admin token.
    pub token: Option<String>,
    /// The metrics token.
    pub metrics_token: Option<String>,
    /// Reads are open (the API is on loopback).
    pub open_reads: bool,
}

impl Policy {
    /// True if `headers` carry what `need` asks for.
    pub fn allows(&self, need: Need, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let is = |secret: &Option<String>| match (bearer, secret) {
            (Some(b), Some(s)) => same_secret(b.as_bytes(), s.as_bytes()),
            _ => false,
        };
        match need {
            Need::Open => true,
            Need::Metrics => self.metrics_token.is_none() || is(&self.metrics_token) || is(&self.token),
            Need::Read => self.open_reads || is(&self.token),
            Need::Change => self.token.is_none() || is(&self.token),
        }
    }
}

/// Compares a presented token with the secret in time that does not depend
/// on where they first differ.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    diff == 0 && a.len() == b.len()
}

/// Failed authentications: the total, and each peer's recent ones.
#[derive(Debug, Default)]
pub struct Failures {
    total: AtomicU64,
    peers: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Failures {
    /// Counts a failure from `peer`; returns how long to wait before answering.
    pub fn record(&self, peer: IpAddr, now: Instant) -> Duration {
        self.total.fetch_add(1, Ordering::Relaxed);
        let Ok(mut peers) = self.peers.lock() else { return MAX_DELAY };
        if peers.len() >= MAX_PEERS && !peers.contains_key(&peer) {
            peers.retain(|_, (_, last)| now.duration_since(*last) < FORGET_AFTER);
            if peers.len() >= MAX_PEERS {
                peers.clear();
            }
        }
        let e = peers.entry(peer).or_insert((0, now));
        if now.duration_since(e.1) >= FORGET_AFTER {
            e.0 = 0;
        }
        e.0 = e.0.saturating_add(1);
        e.1 = now;
        let delay = Duration::from_millis(100).saturating_mul(1 << (e.0 - 1).min(6));
        delay.min(MAX_DELAY)
    }

    /// A peer got in: its failures are forgotten.
    pub fn forget(&self, peer: IpAddr) {
        if let Ok(mut peers) = self.peers.lock() {
            peers.remove(&peer);
        }
    }

    /// Failures so far.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {t}").parse().unwrap());
        h
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
    fn each_route_asks_for_its_token() {
        let none = HeaderMap::new();
        let open = Policy { token: Some("admin".into()), metrics_token: None, open_reads: true };
        assert!(open.allows(Need::Read, &none), "loopback: reads open");
        assert!(open.allows(Need::Metrics, &none));
        assert!(!open.allows(Need::Change, &none));
        assert!(!open.allows(Need::Change, &bearer("admi")));
        assert!(open.allows(Need::Change, &bearer("admin")));
        let off = Policy { token: Some("admin".into()), metrics_token: Some("prom".into()), open_reads: false };
        assert!(!off.allows(Need::Read, &none), "off loopback: reads need the token");
        assert!(!off.allows(Need::Read, &bearer("prom")), "the metrics token reads no sessions");
        assert!(off.allows(Need::Read, &bearer("admin")));
        assert!(!off.allows(Need::Metrics, &none));
        assert!(off.allows(Need::Metrics, &bearer("prom")));
        assert!(off.allows(Need::Metrics, &bearer("admin")));
        assert!(!off.allows(Need::Change, &bearer("prom")));
        assert!(off.allows(Need::Open, &none));
        let no_token = Policy::default();
        assert!(no_token.allows(Need::Change, &none), "loopback without a token: as before");
        assert!(!no_token.allows(Need::Read, &none), "not loopback: closed (the config refuses this anyway)");
    }

    #[test]
    fn a_guessing_peer_waits_longer_each_time_and_others_do_not() {
        let f = Failures::default();
        let t = Instant::now();
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        let b: IpAddr = "192.0.2.8".parse().unwrap();
        let delays: Vec<u128> = (0..9).map(|_| f.record(a, t).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(f.record(b, t), Duration::from_millis(100), "another peer starts at the bottom");
        assert_eq!(f.record(a, t + FORGET_AFTER), Duration::from_millis(100), "forgotten after a quiet while");
        f.forget(b);
        assert_eq!(f.record(b, t), Duration::from_millis(100));
        assert_eq!(f.total(), 12);
    }
}
