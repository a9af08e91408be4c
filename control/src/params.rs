//! From a validated configuration to the engine's plain parameters: the
//! only place that knows both (the dataplane never sees YAML).

use config::{
    Filtering as CFiltering, PoolMode as CPoolMode, Protocol, PublicAddr, Spoofed, Unmatched, ValidAction, ValidConfig,
    ValidMssClamp,
};
use dataplane::nat::{
    proto, Boundary, EngineParams, Filtering, Forward, MssClamp, PoolMode, PoolParams, Prefix, Rule, RuleAction,
    RuleMatch, RuleOptions, StaticNat, Timeouts,
};
use dataplane::rss::{InputSet, Rss, SubscriberSteering};

/// Why a valid configuration has no engine parameters on this box.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// More workers than an engine can number.
    #[error("{workers} workers: at most {}", u16::MAX)]
    TooManyWorkers {
        /// Workers the configuration asks for.
        workers: usize,
    },
    /// A masquerade pool, and the outside interface has no address to lend.
    #[error("pool `{pool}` masquerades, but {iface} has no IPv4 address")]
    NoOutsideAddress {
        /// The pool.
        pool: String,
        /// The outside interface.
        iface: String,
    },
}

fn prefix(n: &config::Net) -> Prefix {
    Prefix::new(u32::from(n.addr), n.len)
}

/// A NIC's RSS set-up (`ethtool -x`), when the config asks for RSS and
/// there is more than one worker; `None` (said on stderr) otherwise.
pub fn nic_rss(v: &ValidConfig, iface: &str) -> Option<Rss> {
    let w = &v.raw.workers;
    if w.rss == config::Rss::Off || w.cores.len() < 2 {
        return None;
    }
    let out = std::process::Command::new("ethtool").args(["-x", iface]).output().ok()?;
    if !out.status.success() {
        tracing::info!("{iface}: no RSS table (ethtool -x); frames reach their worker by hand-off");
        return None;
    }
    let input = match w.rss_input {
        config::RssInput::Masked => InputSet::Masked,
        config::RssInput::Packed => InputSet::Packed,
    };
    let rss = dataplane::rss::parse_ethtool_x(&String::from_utf8_lossy(&out.stdout), input)?;
    let queues = rss.indirection.iter().copied().max().map_or(0, |q| usize::from(q) + 1);
    if queues > w.cores.len() {
        tracing::warn!(
            "{iface} spreads over {queues} queues but {} workers serve queues 0..{}; what hashes elsewhere is handed off or unused",
            w.cores.len(),
            w.cores.len() - 1
        );
    }
    Some(rss)
}

/// What the host guard lets reach the box from outside
/// ([`crate::system::guard_rules`]); the inside interface's own addresses
/// are added at start.
pub fn guard_spec(v: &ValidConfig) -> crate::system::GuardSpec {
    let net = |n: &config::Net| (u32::from(n.addr), n.len);
    crate::system::GuardSpec {
        outside: v.raw.interfaces.outside.clone(),
        inside: v.boundary.inside_prefixes.iter().map(net).collect(),
        icmp_echo: v.raw.management.icmp_echo,
        allow: v
            .allow
            .iter()
            .map(|a| crate::system::GuardAllow {
                src: a.src.iter().map(net).collect(),
                proto: if a.protocol == Protocol::Udp { "udp" } else { "tcp" },
                ports: a.ports.clone(),
            })
            .collect(),
    }
}

/// The engine parameters of worker 0 (the others differ in `worker`).
/// `outside_addr` is the outside interface's address (for masquerade);
/// `inside_addr` the inside interface's (first) address, the source of the
/// ICMP host unreachable a subscriber refused a port or a session gets
/// (RFC 6888 REQ-11b; `None`: none is sent).
pub fn engine_params(
    v: &ValidConfig,
    outside_addr: Option<u32>,
    inside_addr: Option<u32>,
    local_addrs: Vec<u32>,
) -> Result<EngineParams, ParamsError> {
    let cores = v.raw.workers.cores.len();
    let workers = u16::try_from(cores).map_err(|_| ParamsError::TooManyWorkers { workers: cores })?;
    let rss_out = nic_rss(v, &v.raw.interfaces.outside);
    let mut pools = Vec::new();
    // Deterministic pools' overflows run as port-block pools after the
    // configuration's own (whose numbers the rules use).
    let mut overflows = Vec::new();
    for p in &v.pools {
        let addresses = if p.masquerade {
            vec![outside_addr.ok_or_else(|| ParamsError::NoOutsideAddress {
                pool: p.name.clone(),
                iface: v.raw.interfaces.outside.clone(),
            })?]
        } else {
            p.addresses.iter().map(|&a| u32::from(a)).collect()
        };
        let mode = match p.mode {
            CPoolMode::PortBlocks => PoolMode::PortBlocks {
                block_size: p.block_size,
                max_blocks_per_subscriber: p.max_blocks_per_subscriber,
            },
            CPoolMode::Shared => PoolMode::Shared,
            CPoolMode::Deterministic => PoolMode::Deterministic {
                inside: p.inside.map_or(Prefix::new(0, 32), |n| Prefix::new(u32::from(n.addr), n.len)),
                ports_per_subscriber: p.ports_per_subscriber,
            },
        };
        if let (PoolMode::Deterministic { inside, ports_per_subscriber }, Some(net)) = (mode, p.inside) {
            // RFC 7422: the formula is the record; say it once per configuration.
            tracing::info!(
                pool = %p.name,
                inside = %format!("{}/{}", net.addr, net.len),
                addresses = %p.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(","),
                ports = %format!("{}-{}", p.ports.0, p.ports.1),
                ports_per_subscriber,
                "deterministic NAT: subscriber i = inside - {:#x} leaves from addresses[i % {}] with ports \
                 {} + (i / {}) * {} and the next {}",
                inside.addr,
                p.addresses.len(),
                p.ports.0,
                p.addresses.len(),
                ports_per_subscriber,
                ports_per_subscriber.saturating_sub(1),
            );
        }
        let filtering = match p.filtering {
            CFiltering::EndpointIndependent => Filtering::EndpointIndependent,
            CFiltering::AddressDependent => Filtering::AddressDependent,
            CFiltering::AddressAndPortDependent => Filtering::AddressAndPortDependent,
        };
        let pool = PoolParams {
            port_min: p.ports.0,
            port_max: p.ports.1,
            mode,
            filtering,
            max_sessions_per_subscriber: p.max_sessions_per_subscriber,
            random_ports: p.random_ports,
            port_parity: p.port_parity,
            masquerade: p.masquerade,
            log_sessions: p.log_sessions,
            log_destination: p.log_destination,
            overflow: p.overflow.as_ref().map(|_| config::ValidOverflow::pool_name(&p.name)),
            ..PoolParams::cgnat(&p.name, addresses)
        };
        if let Some(o) = &p.overflow {
            overflows.push(PoolParams {
                addresses: o.addresses.iter().map(|&a| u32::from(a)).collect(),
                mode: PoolMode::PortBlocks {
                    block_size: o.block_size,
                    max_blocks_per_subscriber: o.max_blocks_per_subscriber,
                },
                overflow: None,
                ..PoolParams::cgnat(&config::ValidOverflow::pool_name(&p.name), Vec::new())
            });
            if let Some(last) = overflows.last_mut() {
                last.port_min = pool.port_min;
                last.port_max = pool.port_max;
                last.filtering = pool.filtering;
                last.max_sessions_per_subscriber = pool.max_sessions_per_subscriber;
                last.random_ports = pool.random_ports;
                last.port_parity = pool.port_parity;
                last.log_sessions = pool.log_sessions;
                last.log_destination = pool.log_destination;
            }
        }
        pools.push(pool);
    }
    for pool in pools.iter_mut().chain(overflows.iter_mut()) {
        if let (Some(rss), PoolMode::PortBlocks { block_size, .. }, false) = (&rss_out, pool.mode, pool.masquerade) {
            pool.port_orders = pool
                .addresses
                .iter()
                .map(|&ip| dataplane::rss::port_order(rss, ip, pool.port_min, pool.port_max, block_size, workers))
                .collect();
            let usable: usize = pool.port_orders.iter().map(Vec::len).sum();
            tracing::info!(
                "pool {}: RSS-aware ports, {usable} in use, each owned by the worker its replies reach",
                pool.name
            );
        }
    }
    pools.extend(overflows);
    let rules = v
        .rules
        .iter()
        .map(|r| {
            let protocols = r.protocols.iter().fold(0u8, |b, p| {
                b | match p {
                    Protocol::Tcp => proto::TCP,
                    Protocol::Udp => proto::UDP,
                    Protocol::Icmp => proto::ICMP,
                    Protocol::Other => proto::OTHER,
                }
            });
            Rule {
                matches: RuleMatch {
                    src: r.src.iter().map(prefix).collect(),
                    src_except: r.src_except.iter().map(prefix).collect(),
                    dst: r.dst.iter().map(prefix).collect(),
                    dst_except: r.dst_except.iter().map(prefix).collect(),
                    protocols,
                    dst_ports: r.dst_ports.clone(),
                },
                action: match r.action {
                    ValidAction::Translate { pool } => {
                        RuleAction::Translate { pool: u16::try_from(pool).unwrap_or(u16::MAX) }
                    }
                    ValidAction::NoNat => RuleAction::NoNat,
                    ValidAction::Route => RuleAction::Route,
                },
            }
        })
        .collect();
    let mut p = EngineParams::single(pools, rules);
    // An HA box starts in its configured role; keepalived changes it live.
    if let Some(ha) = &v.raw.ha {
        p.standby = ha.role == config::HaRole::Standby;
        p.sync_sessions = ha.sync_sessions;
    }
    p.rule_options = v
        .rules
        .iter()
        .map(|r| RuleOptions {
            mss_clamp: match r.mss_clamp {
                ValidMssClamp::Off => MssClamp::Off,
                ValidMssClamp::Fixed(n) => MssClamp::Fixed(n),
                ValidMssClamp::Auto => MssClamp::Auto,
            },
            ftp_alg: r.ftp_alg,
        })
        .collect();
    p.forwards = v
        .forwards
        .iter()
        .map(|f| {
            let public_addr = match f.public {
                PublicAddr::Addr(a) => u32::from(a),
                PublicAddr::Outside => outside_addr.unwrap_or(0),
            };
            Forward {
                protocol: if f.protocol == Protocol::Udp { 17 } else { 6 },
                public_addr,
                public_port: f.public_ports.0,
                public_port_last: f.public_ports.1,
                inside_addr: u32::from(f.inside_addr),
                inside_port: f.inside_ports.0,
                inside_port_last: f.inside_ports.1,
                ftp_alg: f.ftp_alg,
            }
        })
        .collect();
    p.statics = v
        .statics
        .iter()
        .map(|st| StaticNat {
            public_addr: u32::from(st.public),
            inside_addr: u32::from(st.inside),
            ftp_alg: st.ftp_alg,
        })
        .collect();
    let t = &v.raw.timeouts;
    p.timeouts = Timeouts {
        tcp_established_secs: t.tcp_established_secs,
        tcp_transitory_secs: t.tcp_transitory_secs,
        udp_secs: t.udp_secs,
        udp_unreplied_secs: t.udp_unreplied_secs,
        icmp_secs: t.icmp_secs,
        other_secs: t.other_secs,
        port_hold_secs: t.port_hold_secs,
        fragment_secs: t.fragment_secs,
    };
    p.max_sessions = v.raw.tables.max_sessions;
    p.max_subscribers = v.raw.tables.max_subscribers;
    p.max_fragments = v.raw.tables.max_fragments;
    (p.fragment_hold, p.fragment_hold_bytes) = (v.raw.tables.fragment_hold, v.raw.tables.fragment_hold_bytes);
    p.local_addrs = local_addrs;
    p.icmp_source = inside_addr;
    p.boundary = Boundary {
        drop_unmatched: v.boundary.unmatched_inside == Unmatched::Drop,
        drop_spoofed: v.boundary.spoofed_outside == Spoofed::Drop,
        inside_prefixes: v.boundary.inside_prefixes.iter().map(prefix).collect(),
    };
    p.steering = nic_rss(v, &v.raw.interfaces.inside).map(|rss| {
        tracing::info!(
            "RSS-aware subscribers: each belongs to the worker whose queue {} delivers it to",
            v.raw.interfaces.inside
        );
        SubscriberSteering::new(&rss)
    });
    // A new hash seed every start: flows cannot be aimed at one bucket.
    p.seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()) ^ d.as_secs().rotate_left(32))
        .unwrap_or(1)
        ^ u64::from(std::process::id()) << 32;
    p.workers = workers;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_and_the_engine_agree_on_default_timeouts() {
        // The two crates may not depend on each other (DESIGN): the
        // defaults are written twice and held equal here.
        let c = config::Timeouts::default();
        let e = Timeouts::default();
        assert_eq!(
            (c.tcp_established_secs, c.tcp_transitory_secs, c.udp_secs, c.icmp_secs, c.port_hold_secs, c.fragment_secs),
            (e.tcp_established_secs, e.tcp_transitory_secs, e.udp_secs, e.icmp_secs, e.port_hold_secs, e.fragment_secs)
        );
        assert_eq!(c.udp_unreplied_secs, e.udp_unreplied_secs);
    }

    #[test]
    fn the_config_and_the_engine_agree_on_the_default_fragment_hold() {
        let (c, e) = (config::Tables::default(), EngineParams::single(vec![], vec![]));
        assert_eq!((c.fragment_hold, c.fragment_hold_bytes), (e.fragment_hold, e.fragment_hold_bytes));
    }

    #[test]
    fn the_config_and_the_engine_agree_on_the_most_pools() {
        assert_eq!(config::MAX_POOLS, dataplane::nat::MAX_POOLS);
    }

    #[test]
    fn a_config_becomes_the_engine_parameters_it_says() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/examples/forwards.yaml")).unwrap();
        let v = config::load(&text, 8).unwrap();
        let outside = u32::from(std::net::Ipv4Addr::new(198, 51, 100, 9));
        let inside = u32::from(std::net::Ipv4Addr::new(100, 64, 0, 1));
        let p = engine_params(&v, Some(outside), Some(inside), vec![outside, inside]).unwrap();
        assert_eq!(p.icmp_source, Some(inside), "refused subscribers hear from the inside address");
        assert_eq!(p.pools.len(), 2, "the named pool and the masquerade pool");
        assert_eq!(p.pools[0].addresses, vec![u32::from(std::net::Ipv4Addr::new(203, 0, 113, 5))]);
        assert!(p.pools[1].masquerade && p.pools[1].addresses == vec![outside]);
        assert_eq!((p.pools[1].port_min, p.pools[1].port_max), (1024, 32767));
        assert_eq!(p.rules[0].action, RuleAction::Translate { pool: 0 });
        assert_eq!(p.rules[0].matches.protocols, proto::TCP | proto::UDP | proto::ICMP);
        assert_eq!(p.rules[1].action, RuleAction::Translate { pool: 1 });
        assert_eq!(p.forwards.len(), 5);
        assert_eq!((p.forwards[1].protocol, p.forwards[1].public_port), (17, 51820));
        assert_eq!(p.forwards[2].public_addr, outside, "outside:2222 is the masquerade address");
        let r = p.forwards[3];
        assert_eq!((r.public_port, r.public_port_last, r.inside_port, r.inside_port_last), (8000, 8099, 9000, 9099));
        let r = p.forwards[4];
        assert_eq!((r.public_port, r.public_port_last, r.inside_port, r.inside_port_last), (7000, 7009, 80, 80));
        let a = |s: &str| u32::from(s.parse::<std::net::Ipv4Addr>().unwrap());
        assert_eq!(p.statics, vec![StaticNat::new(a("203.0.113.6"), a("192.168.1.40"))]);
        dataplane::nat::Engine::new(&p).expect("the engine takes them");
    }

    #[test]
    fn an_overflow_becomes_a_port_block_pool_after_the_configurations_own() {
        let text = "interfaces: {inside: a, outside: b}\npools:\n  - name: det\n    mode: deterministic\n    inside: 100.64.0.0/24\n    addresses: [198.51.100.1]\n    ports_per_subscriber: 128\n    max_sessions_per_subscriber: 100\n    overflow: {addresses: [198.51.100.9], block_size: 128, max_blocks_per_subscriber: 3}\n  - name: dyn\n    addresses: [203.0.113.1]\nrules:\n  - action: snat\n    pool: det\n    match: {src: [100.64.0.0/24]}\n  - action: snat\n    pool: dyn\n";
        let v = config::load(text, 8).unwrap();
        let p = engine_params(&v, None, None, Vec::new()).unwrap();
        let names: Vec<&str> = p.pools.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["det", "dyn", "det.overflow"], "the rules' pool numbers stay");
        assert_eq!(p.pools[0].overflow.as_deref(), Some("det.overflow"));
        let o = &p.pools[2];
        assert_eq!(o.mode, PoolMode::PortBlocks { block_size: 128, max_blocks_per_subscriber: 3 });
        assert_eq!((o.addresses.clone(), o.port_min, o.max_sessions_per_subscriber), (vec![0xc633_6409], 1024, 100));
        assert_eq!(p.rules[1].action, RuleAction::Translate { pool: 1 });
        dataplane::nat::Engine::new(&p).expect("the engine takes them");
    }
}
