//! `masq whois`: who held a public address and port, and where a
//! subscriber's ports are, from the configuration alone where the pool
//! is deterministic (RFC 7422: the formula, `dataplane::nat::deterministic`,
//! is the record, so no running masq and no log is needed).
//!
//! [`lookup`] answers a public (address, port); [`subscriber`] answers an
//! inside address. A pool that hands out blocks or shared ports answers
//! [`Answer::NeedsLog`]: who held its port is only in the NAT event log
//! (a log-based lookup extends [`lookup`]'s `NeedsLog` case).
//!
//! Invariant: an [`Answer::Deterministic`] is exactly what the engine built
//! from the same configuration uses (the same `Deterministic` from the same
//! `ValidPool` fields `params::engine_params` passes on).
#![forbid(unsafe_code)]

use config::{PoolMode, ValidAction, ValidConfig, ValidPool};
use dataplane::nat::deterministic::{Deterministic, Range};
use dataplane::nat::Prefix;
use std::net::Ipv4Addr;

/// What the configuration says about a public address and port, or an inside address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A deterministic pool's formula names the subscriber.
    Deterministic {
        /// The pool.
        pool: String,
        /// The subscriber (inside address).
        inside: Ipv4Addr,
        /// Its public address.
        public: Ipv4Addr,
        /// Its first port.
        first: u16,
        /// Its last port.
        last: u16,
    },
    /// A deterministic pool's address, but no subscriber holds the port
    /// (below or past the ranges, or an index past the prefix).
    Unassigned {
        /// The pool.
        pool: String,
    },
    /// A pool whose ports are handed out dynamically: the NAT log knows.
    NeedsLog {
        /// The pool.
        pool: String,
    },
    /// No pool of the configuration has the address (or the inside address).
    NotOurs,
}

impl Answer {
    /// The answer as one JSON object (for scripts, `--json`).
    pub fn json(&self) -> String {
        match self {
            Answer::Deterministic { pool, inside, public, first, last } => format!(
                "{{\"found\":true,\"source\":\"deterministic\",\"pool\":{},\"inside\":\"{inside}\",\"public\":\"{public}\",\"first_port\":{first},\"last_port\":{last}}}",
                quote(pool)
            ),
            Answer::Unassigned { pool } => {
                format!("{{\"found\":false,\"source\":\"deterministic\",\"pool\":{},\"why\":\"no subscriber's range holds the port\"}}", quote(pool))
            }
            Answer::NeedsLog { pool } => format!(
                "{{\"found\":false,\"source\":\"log\",\"pool\":{},\"why\":\"a dynamic pool: the NAT event log holds who had the port\"}}",
                quote(pool)
            ),
            Answer::NotOurs => "{\"found\":false,\"why\":\"in no pool of the configuration\"}".to_string(),
        }
    }

    /// True if the answer names a subscriber.
    pub fn found(&self) -> bool {
        matches!(self, Answer::Deterministic { .. })
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Deterministic { pool, inside, public, first, last } => {
                write!(f, "{inside} holds {public} ports {first}-{last} (pool {pool}, deterministic)")
            }
            Answer::Unassigned { pool } => {
                write!(f, "no subscriber: the port is in no range of deterministic pool {pool}")
            }
            Answer::NeedsLog { pool } => write!(
                f,
                "pool {pool} hands out ports dynamically: who held it is in the NAT event log, not the configuration"
            ),
            Answer::NotOurs => write!(f, "in no pool of the configuration"),
        }
    }
}

fn quote(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The formula of a deterministic pool, as the engine builds it.
pub fn formula(p: &ValidPool) -> Option<Deterministic> {
    if p.mode != PoolMode::Deterministic {
        return None;
    }
    let net = p.inside?;
    let inside = Prefix::new(u32::from(net.addr), net.len);
    let addrs = p.addresses.iter().map(|&a| u32::from(a)).collect();
    Deterministic::new(inside, addrs, p.ports, p.ports_per_subscriber).ok()
}

fn found(pool: &ValidPool, inside: u32, r: Range) -> Answer {
    Answer::Deterministic {
        pool: pool.name.clone(),
        inside: Ipv4Addr::from(inside),
        public: Ipv4Addr::from(r.public_ip),
        first: r.first,
        last: r.last,
    }
}

/// Who held public `addr`:`port`, as far as the configuration knows.
pub fn lookup(v: &ValidConfig, addr: Ipv4Addr, port: u16) -> Answer {
    let Some(pool) = v.pools.iter().find(|p| p.addresses.contains(&addr)) else {
        // A deterministic pool's overflow hands out blocks: the log knows.
        return match v.pools.iter().find(|p| p.overflow.as_ref().is_some_and(|o| o.addresses.contains(&addr))) {
            Some(p) => Answer::NeedsLog { pool: config::ValidOverflow::pool_name(&p.name) },
            None => Answer::NotOurs,
        };
    };
    let Some(d) = formula(pool) else {
        return Answer::NeedsLog { pool: pool.name.clone() };
    };
    match d.reverse(u32::from(addr), port).and_then(|i| d.forward(i).map(|r| (i, r))) {
        Some((inside, r)) => found(pool, inside, r),
        None => Answer::Unassigned { pool: pool.name.clone() },
    }
}

/// Where subscriber `inside`'s ports are, in the deterministic pool whose
/// prefix holds it; else `NeedsLog` with the pool of the first translating
/// rule whose sources hold it (a dynamic pool); `NotOurs` if none does.
pub fn subscriber(v: &ValidConfig, inside: Ipv4Addr) -> Answer {
    if let Some(a) = v
        .pools
        .iter()
        .find_map(|p| formula(p).and_then(|d| d.forward(u32::from(inside))).map(|r| found(p, u32::from(inside), r)))
    {
        return a;
    }
    let translated = v.rules.iter().find_map(|r| match r.action {
        ValidAction::Translate { pool }
            if (r.src.is_empty() || r.src.iter().any(|n| n.contains(inside)))
                && !r.src_except.iter().any(|n| n.contains(inside)) =>
        {
            v.pools.get(pool)
        }
        _ => None,
    });
    match translated {
        Some(p) => Answer::NeedsLog { pool: p.name.clone() },
        None => Answer::NotOurs,
    }
}

/// Parses `ADDR:PORT`, or `ADDR` with the port given apart.
pub fn parse_target(target: &str, port: Option<u16>) -> Result<(Ipv4Addr, u16), String> {
    let (a, p) = match (target.split_once(':'), port) {
        (Some((a, p)), None) => (a, p.parse::<u16>().map_err(|_| format!("`{p}` is not a port"))?),
        (None, Some(p)) => (target, p),
        (Some(_), Some(_)) => return Err("give the port once: ADDR:PORT or ADDR PORT".into()),
        (None, None) => return Err("give a port: ADDR:PORT or ADDR PORT".into()),
    };
    let addr = a.parse::<Ipv4Addr>().map_err(|_| format!("`{a}` is not an IPv4 address"))?;
    Ok((addr, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_strictly() {
        let a: Ipv4Addr = "198.51.100.3".parse().unwrap();
        assert_eq!(parse_target("198.51.100.3:5000", None), Ok((a, 5000)));
        assert_eq!(parse_target("198.51.100.3", Some(5000)), Ok((a, 5000)));
        assert!(parse_target("198.51.100.3", None).is_err());
        assert!(parse_target("198.51.100.3:70000", None).is_err());
        assert!(parse_target("x:1", None).is_err());
    }

    #[test]
    fn a_subscriber_is_found_by_formula_or_sent_to_the_log() {
        let text = "interfaces: {inside: a, outside: b}\npools:\n  - name: det\n    mode: deterministic\n    inside: 100.64.0.0/24\n    addresses: [198.51.100.1, 198.51.100.2]\n  - name: dyn\n    addresses: [203.0.113.1]\nrules:\n  - action: snat\n    pool: det\n    match: {src: [100.64.0.0/24]}\n  - action: snat\n    pool: dyn\n    match: {src: [100.64.0.0/10]}\n";
        let v = config::load(text, 2).unwrap();
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        // 256 over 2 addresses: 128 each, 64512 / 128 = 504 -> 448 ports.
        let want = Answer::Deterministic {
            pool: "det".into(),
            inside: ip("100.64.0.5"),
            public: ip("198.51.100.2"),
            first: 1024 + 2 * 448,
            last: 1024 + 3 * 448 - 1,
        };
        assert_eq!(subscriber(&v, ip("100.64.0.5")), want);
        assert_eq!(lookup(&v, ip("198.51.100.2"), 1024 + 2 * 448 + 100), want);
        assert_eq!(subscriber(&v, ip("100.64.1.5")), Answer::NeedsLog { pool: "dyn".into() });
        assert_eq!(subscriber(&v, ip("10.0.0.1")), Answer::NotOurs);
        assert_eq!(lookup(&v, ip("203.0.113.1"), 5000), Answer::NeedsLog { pool: "dyn".into() });
        assert!(want.json().contains("\"first_port\":1920") && want.found());
    }

    #[test]
    fn an_overflow_address_is_the_logs_to_answer() {
        let text = "interfaces: {inside: a, outside: b}\npools:\n  - name: det\n    mode: deterministic\n    inside: 100.64.0.0/24\n    addresses: [198.51.100.1]\n    ports_per_subscriber: 128\n    overflow: {addresses: [198.51.100.9]}\nrules:\n  - action: snat\n    pool: det\n    match: {src: [100.64.0.0/24]}\n";
        let v = config::load(text, 2).unwrap();
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(lookup(&v, ip("198.51.100.9"), 5000), Answer::NeedsLog { pool: "det.overflow".into() });
        assert_eq!(lookup(&v, ip("198.51.100.10"), 5000), Answer::NotOurs);
    }

    #[test]
    fn the_config_and_the_engine_agree_on_the_most_ports() {
        for (n, a, u) in [(256u64, 4u64, 64512u32), (4096, 16, 64512), (65536, 2, 64512), (1000, 3, 100)] {
            assert_eq!(config::deterministic_most_ports(n, a, u), dataplane::nat::deterministic::most_ports(n, a, u));
        }
    }
}
