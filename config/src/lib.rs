//! masq's YAML configuration: the schema, validation that reports every
//! error with its key path and line, and the embedded default.
//!
//! [`load`] parses (serde_yaml, `deny_unknown_fields`: a typo is an error,
//! not a default), then [`validate`]s the whole file and returns either a
//! [`ValidConfig`] or every error found. Syntax and type errors stop the
//! parse at the first; the checks after it (addresses, ranges, references,
//! overlapping pools, forwards outside the pools or overlapping, static
//! NAT addresses inside a pool or used twice, deterministic pools whose
//! inside prefixes overlap or hold a static host, RFC minimum timeouts,
//! more workers than cores) all report. The dataplane never sees YAML: the
//! control plane turns a `ValidConfig` into engine parameters.
//!
//! Timeout floors: TCP established 7440 s (RFC 5382 REQ-5), TCP transitory
//! 240 s (RFC 5382 REQ-5), UDP 120 s (RFC 4787 REQ-5), ICMP 60 s (RFC 5508
//! REQ-1); port hold 120 s recommended (RFC 6888 REQ-8).
#![forbid(unsafe_code)]

mod positions;
pub mod schema;

pub use positions::Positions;
pub use schema::*;

use std::net::Ipv4Addr;

/// The configuration the demo and `masq run` without `--config` use: the
/// namespace lab's (deploy/lab/lab.sh).
pub const DEFAULT_YAML: &str = include_str!("default.yaml");

/// Most pools a configuration may have, the masquerade pool a rule makes
/// included: the engine counts refusals per pool in a fixed-size table
/// (`dataplane::nat::MAX_POOLS`, held equal by a test in `control`).
pub const MAX_POOLS: usize = 32;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path, as `pools[1].addresses[0]`.
    pub path: String,
    /// Line, 1-based.
    pub line: usize,
    /// Column, 1-based.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}:{}: {}", self.line, self.col, self.message)
        } else {
            write!(f, "{}:{}: {}: {}", self.line, self.col, self.path, self.message)
        }
    }
}

/// The most ports per subscriber (a multiple of 64, maybe 0) that
/// `inside` subscribers sharing `n_addrs` addresses of `usable` ports get:
/// RFC 7422's fit, `ceil(inside / n_addrs) * ports <= usable`. The same
/// arithmetic as `dataplane::nat::deterministic::most_ports` (config
/// depends on nothing of ours; a control test holds the two equal).
pub fn deterministic_most_ports(inside: u64, n_addrs: u64, usable: u32) -> u32 {
    let per_addr = inside.div_ceil(n_addrs.max(1)).max(1);
    u32::try_from(u64::from(usable) / per_addr).unwrap_or(u32::MAX) / 64 * 64
}

/// A deterministic pool's own keys (RFC 7422): `inside` (required, and only
/// here), `ports_per_subscriber` (a multiple of 64, and it must fit), no
/// masquerade; the inside prefix must fit the addresses and ports. Returns
/// the prefix and the resolved ports per subscriber (0 elsewhere).
fn deterministic(
    p: &Pool,
    addresses: &[Ipv4Addr],
    ports: (u16, u16),
    e: &mut Errors,
    at: &dyn Fn(&str) -> String,
) -> (Option<Net>, u16) {
    if p.mode != PoolMode::Deterministic {
        if p.inside.is_some() {
            e.add(at("inside"), "only a `mode: deterministic` pool takes an inside prefix");
        }
        if p.ports_per_subscriber.is_some() {
            e.add(at("ports_per_subscriber"), "only a `mode: deterministic` pool takes ports_per_subscriber");
        }
        return (None, 0);
    }
    if p.masquerade {
        e.add(at("masquerade"), "a deterministic pool maps onto listed addresses, not the outside interface's");
    }
    if ports.0 < 1024 {
        e.add(at("ports"), "a deterministic pool's ranges stay clear of the ports below 1024: start at 1024 or above");
    }
    let Some(text) = p.inside.as_deref() else {
        e.add(at("mode"), "a deterministic pool needs `inside: a.b.c.d/len`, the prefix it maps");
        return (None, 0);
    };
    let net = match parse_net(text) {
        Ok(n) => n,
        Err(m) => {
            e.add(at("inside"), m);
            return (None, 0);
        }
    };
    if addresses.is_empty() {
        return (Some(net), 0);
    }
    let n_inside = 1u64 << (32 - u32::from(net.len.min(32)));
    let n_addrs = addresses.len() as u64;
    let usable = u32::from(ports.1) - u32::from(ports.0) + 1;
    let most = deterministic_most_ports(n_inside, n_addrs, usable).min(65472);
    let share = n_inside.div_ceil(n_addrs);
    let fit = format!(
        "{n_inside} inside addresses over {n_addrs} public addresses is {share} subscribers an address; \
         {usable} usable ports ({}-{}) give {most} ports per subscriber (a multiple of 64)",
        ports.0, ports.1
    );
    match p.ports_per_subscriber {
        Some(want) if want == 0 || !want.is_multiple_of(64) => {
            e.add(at("ports_per_subscriber"), format!("{want} is not a positive multiple of 64"));
            (Some(net), 0)
        }
        Some(want) if u32::from(want) > most => {
            e.add(at("ports_per_subscriber"), format!("{want} does not fit: {fit}"));
            (Some(net), 0)
        }
        Some(want) => (Some(net), want),
        None if most < 64 => {
            e.add(at("inside"), format!("{text} does not fit: {fit}; at least 64 are needed"));
            (Some(net), 0)
        }
        None => (Some(net), most as u16),
    }
}

/// An IPv4 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    /// Network address (host bits cleared).
    pub addr: Ipv4Addr,
    /// Prefix length.
    pub len: u8,
}

impl Net {
    fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    }
    /// True if `a` is in the prefix.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & Self::mask(self.len) == u32::from(self.addr)
    }
    /// True if the two prefixes share an address (one holds the other).
    pub fn overlaps(&self, other: &Net) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// What a validated rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidAction {
    /// Translate into pool `pool` (an index into [`ValidConfig::pools`]).
    Translate {
        /// Pool index.
        pool: usize,
    },
    /// Leave the addresses alone, both ways.
    NoNat,
    /// Forward outbound untranslated; nothing admitted inbound.
    Route,
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidRule {
    /// Action.
    pub action: ValidAction,
    /// Source prefixes (empty: any).
    pub src: Vec<Net>,
    /// Sources excluded.
    pub src_except: Vec<Net>,
    /// Destination prefixes (empty: any).
    pub dst: Vec<Net>,
    /// Destinations excluded.
    pub dst_except: Vec<Net>,
    /// Protocols (empty: all).
    pub protocols: Vec<Protocol>,
    /// Destination port ranges (empty: all).
    pub dst_ports: Vec<(u16, u16)>,
    /// TCP MSS clamping.
    pub mss_clamp: ValidMssClamp,
    /// The FTP ALG is on.
    pub ftp_alg: bool,
}

/// A validated `mss_clamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValidMssClamp {
    /// No clamping.
    #[default]
    Off,
    /// Lower larger MSS options to this size.
    Fixed(u16),
    /// The outgoing interface's MTU minus 40.
    Auto,
}

/// The smallest and largest `mss_clamp` size (Linux's TCP_MIN_MSS; the
/// largest the engine keeps: 14 bits, far above any link MTU less 40).
pub const MSS_CLAMP_RANGE: (u16, u16) = (88, 16383);

/// A validated pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPool {
    /// Name.
    pub name: String,
    /// Addresses; empty for a masquerade pool (it takes the outside
    /// interface's address at start and follows it).
    pub addresses: Vec<Ipv4Addr>,
    /// Follows the outside interface's address.
    pub masquerade: bool,
    /// Port range.
    pub ports: (u16, u16),
    /// How ports are handed out.
    pub mode: PoolMode,
    /// Ports per block (port-block pools).
    pub block_size: u16,
    /// Blocks per subscriber (port-block pools).
    pub max_blocks_per_subscriber: u16,
    /// Deterministic pools (RFC 7422): the inside prefix the formula maps.
    pub inside: Option<Net>,
    /// Deterministic pools: ports per subscriber, resolved (the most that
    /// fit when the file leaves it unset); 0 in other pools.
    pub ports_per_subscriber: u16,
    /// Sessions per subscriber.
    pub max_sessions_per_subscriber: u32,
    /// Inbound filtering.
    pub filtering: Filtering,
    /// Random port choice instead of keeping the source port.
    pub random_ports: bool,
    /// Public ports keep the inside port's parity (RFC 4787 REQ-4).
    pub port_parity: bool,
    /// Per-session events (`logging: sessions`).
    pub log_sessions: bool,
    /// Session events carry the destination.
    pub log_destination: bool,
    /// A deterministic pool's dynamic overflow (RFC 7422 section 2).
    pub overflow: Option<ValidOverflow>,
}

/// A deterministic pool's overflow, validated: the engine runs it as a
/// port-block pool named [`ValidOverflow::pool_name`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidOverflow {
    /// Its addresses.
    pub addresses: Vec<Ipv4Addr>,
    /// Ports per block.
    pub block_size: u16,
    /// Blocks per subscriber.
    pub max_blocks_per_subscriber: u16,
}

impl Config {
    /// The pools whose events reach no NAT log sink (`logging: none`),
    /// with their overflows' pools.
    pub fn unlogged_pools(&self) -> Vec<String> {
        let none = self.pools.iter().filter(|p| p.logging == PoolLogging::None);
        none.flat_map(|p| {
            let overflow = p.overflow.as_ref().map(|_| ValidOverflow::pool_name(&p.name));
            std::iter::once(p.name.clone()).chain(overflow)
        })
        .collect()
    }
}

impl ValidOverflow {
    /// The name of the port-block pool that runs deterministic pool
    /// `pool`'s overflow (in the NAT log and the metrics).
    pub fn pool_name(pool: &str) -> String {
        format!("{pool}.overflow")
    }
}

/// Where a forward's public side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicAddr {
    /// A pool address.
    Addr(Ipv4Addr),
    /// The outside interface's address (a masquerade pool's).
    Outside,
}

/// A validated port forward: one port or a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidForward {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Public address.
    pub public: PublicAddr,
    /// Public ports, inclusive (one port: both the same).
    pub public_ports: (u16, u16),
    /// Inside host.
    pub inside_addr: Ipv4Addr,
    /// Inside ports, inclusive: as long as the public range (offset kept),
    /// or one port every public port goes to.
    pub inside_ports: (u16, u16),
    /// The FTP ALG for the server behind it (`alg: [ftp]`, tcp only).
    pub ftp_alg: bool,
}

/// A validated 1:1 static NAT entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidStatic {
    /// The public address (in no pool).
    pub public: Ipv4Addr,
    /// The inside host.
    pub inside: Ipv4Addr,
    /// The FTP ALG on the host's TCP connections (`alg: [ftp]`).
    pub ftp_alg: bool,
}

/// The validated `boundary` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidBoundary {
    /// Inside packets no rule covers.
    pub unmatched_inside: Unmatched,
    /// Outside packets from an inside prefix.
    pub spoofed_outside: Spoofed,
    /// The inside prefixes: `boundary.inside_prefixes`, or every rule's
    /// source prefixes when that is empty.
    pub inside_prefixes: Vec<Net>,
}

/// A validated `management.allow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidAllow {
    /// Source prefixes (empty: any).
    pub src: Vec<Net>,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Port ranges.
    pub ports: Vec<(u16, u16)>,
}

/// A configuration that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidConfig {
    /// The file as written (defaults filled in).
    pub raw: Config,
    /// Pools, in file order; a `masquerade` rule without a pool adds one
    /// named `masquerade` at the end.
    pub pools: Vec<ValidPool>,
    /// Rules, in order.
    pub rules: Vec<ValidRule>,
    /// Port forwards.
    pub forwards: Vec<ValidForward>,
    /// 1:1 static NAT entries.
    pub statics: Vec<ValidStatic>,
    /// Control API address.
    pub listen: std::net::SocketAddr,
    /// Anti-spoofing at both edges.
    pub boundary: ValidBoundary,
    /// What may reach the box itself from outside (`management.allow`).
    pub allow: Vec<ValidAllow>,
}

/// Parses and validates `text`; `cpus` is the number of CPUs of the box
/// (workers may not name a core beyond it).
pub fn load(text: &str, cpus: usize) -> Result<ValidConfig, Vec<ConfigError>> {
    let positions = Positions::of(text);
    let de = serde_yaml::Deserializer::from_str(text);
    let raw: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let (line, col) = match inner.location() {
            Some(l) => (l.line(), l.column()),
            None => positions.find(&path),
        };
        // serde_yaml appends " at line L column C"; we print it in front.
        let mut message = inner.to_string();
        if let Some(i) = message.find(" at line ") {
            message.truncate(i);
        }
        // serde_yaml also puts the container's path in front.
        if let Some((pre, rest)) = message.split_once(": ") {
            if !pre.contains(' ') && path.starts_with(pre) {
                message = rest.to_string();
            }
        }
        let path = if path == "." { String::new() } else { path };
        vec![ConfigError { path, line, col, message }]
    })?;
    validate(raw, &positions, cpus)
}

/// The embedded default, validated (it always is: a test holds it).
pub fn default_config(cpus: usize) -> Result<ValidConfig, Vec<ConfigError>> {
    load(DEFAULT_YAML, cpus)
}

struct Errors<'a> {
    positions: &'a Positions,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        let (line, col) = self.positions.find(&path);
        self.list.push(ConfigError { path, line, col, message: message.into() });
    }
}

/// Parses `a.b.c.d/len` (or a bare address, /32).
pub fn parse_net(s: &str) -> Result<Net, String> {
    let (a, l) = s.split_once('/').unwrap_or((s, "32"));
    let addr: Ipv4Addr = a.trim().parse().map_err(|_| format!("`{s}` is not an IPv4 address or prefix"))?;
    let len: u8 = l.trim().parse().map_err(|_| format!("`{s}`: bad prefix length"))?;
    if len > 32 {
        return Err(format!("`{s}`: prefix length above 32"));
    }
    let masked = Ipv4Addr::from(u32::from(addr) & Net::mask(len));
    if masked != addr {
        return Err(format!("`{s}` has host bits set (did you mean {masked}/{len}?)"));
    }
    Ok(Net { addr, len })
}

/// Parses `N` or `LOW-HIGH` into an inclusive port range (1..=65535).
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let p = |x: &str| x.trim().parse::<u16>().ok().filter(|&v| v >= 1);
    match (p(a), p(b)) {
        (Some(lo), Some(hi)) if lo <= hi => Ok((lo, hi)),
        _ => Err(format!("`{s}` is not a port or port range within 1-65535 (low-high, low <= high)")),
    }
}

/// Pool addresses: an address, a prefix (/16 or longer) or `first-last`.
fn parse_pool_addresses(s: &str) -> Result<Vec<Ipv4Addr>, String> {
    if let Some((a, b)) = s.split_once('-') {
        let a: Ipv4Addr = a.trim().parse().map_err(|_| format!("`{s}`: bad first address"))?;
        let b: Ipv4Addr = b.trim().parse().map_err(|_| format!("`{s}`: bad last address"))?;
        let (a, b) = (u32::from(a), u32::from(b));
        if a > b || b - a >= 1 << 16 {
            return Err(format!("`{s}`: a range runs upwards and holds at most 65536 addresses"));
        }
        return Ok((a..=b).map(Ipv4Addr::from).collect());
    }
    let n = parse_net(s)?;
    if n.len < 16 {
        return Err(format!("`{s}`: a pool prefix holds at most 65536 addresses (/16 or longer)"));
    }
    let first = u32::from(n.addr);
    Ok((first..=first | !Net::mask(n.len)).map(Ipv4Addr::from).collect())
}

/// Why `ip` cannot be a translated endpoint, if it cannot: a group address
/// or one no router forwards (RFC 1812 section 5.3.7: multicast, the
/// limited broadcast, 0/8, 127/8). The engine drops packets with such a
/// source, and its fast lane relies on no session holding one.
fn not_a_host(ip: Ipv4Addr) -> Option<String> {
    let bad = ip.is_multicast() || ip.is_broadcast() || ip.octets()[0] == 0 || ip.is_loopback();
    bad.then(|| {
        format!("{ip} is not a unicast host address (multicast, broadcast, 0/8 and 127/8 are never translated)")
    })
}

/// Checks a parsed configuration; every problem is reported.
pub fn validate(raw: Config, positions: &Positions, cpus: usize) -> Result<ValidConfig, Vec<ConfigError>> {
    let mut e = Errors { positions, list: Vec::new() };

    // Interfaces.
    if raw.interfaces.inside.is_empty() {
        e.add("interfaces.inside", "must name the interface facing the subscribers");
    }
    if raw.interfaces.outside.is_empty() {
        e.add("interfaces.outside", "must name the interface facing the internet");
    }
    if !raw.interfaces.inside.is_empty() && raw.interfaces.inside == raw.interfaces.outside {
        e.add("interfaces.outside", "inside and outside must be different interfaces");
    }
    for (k, v) in [("inside_mac", &raw.interfaces.inside_mac), ("outside_mac", &raw.interfaces.outside_mac)] {
        if let Some(m) = v {
            let ok =
                m.split(':').count() == 6 && m.split(':').all(|b| b.len() == 2 && u8::from_str_radix(b, 16).is_ok());
            if !ok {
                e.add(format!("interfaces.{k}"), format!("`{m}` is not a MAC address (aa:bb:cc:dd:ee:ff)"));
            }
        }
    }

    // Workers.
    if raw.workers.cores.is_empty() {
        e.add("workers.cores", "needs at least one core (one worker per core)");
    }
    for (i, &c) in raw.workers.cores.iter().enumerate() {
        if c >= cpus {
            e.add(
                format!("workers.cores[{i}]"),
                format!("core {c} does not exist: this box has {cpus} CPUs (0-{})", cpus.saturating_sub(1)),
            );
        }
        if raw.workers.cores[..i].contains(&c) {
            e.add(format!("workers.cores[{i}]"), format!("core {c} is listed twice"));
        }
    }
    let ring = raw.workers.ring_size;
    if !(64..=16384).contains(&ring) || !ring.is_power_of_two() {
        e.add("workers.ring_size", "a power of two from 64 to 16384 (default 2048)");
    }
    let frames = raw.workers.umem_frames;
    // Each worker keeps an eighth of its frames (at least 64) for
    // hand-offs (xdp/ring: `reserve`); the rest must fill both fill rings.
    if frames.saturating_sub((frames / 8).max(64)) < ring.saturating_mul(2) || frames > 262_144 {
        e.add(
            "workers.umem_frames",
            "enough for both fill rings once an eighth is kept for hand-offs (at least 16/7 of \
             workers.ring_size), at most 262144 (512 MiB of 2 KiB frames)",
        );
    }
    if raw.workers.busy_poll_us > 1_000_000 {
        e.add("workers.busy_poll_us", "at most 1000000 (one second): longer is `sleep_when_idle: false`");
    }
    if raw.workers.cores.len() > cpus {
        e.add("workers.cores", format!("{} workers but {cpus} CPUs", raw.workers.cores.len()));
    }

    // NAT log sinks.
    for (i, sink) in raw.logging.sinks.iter().enumerate() {
        let at = |k: &str| format!("logging.sinks[{i}].{k}");
        match sink {
            LogSink::Json { path, max_bytes, keep } => {
                if path.is_empty() {
                    e.add(at("path"), "must name a file");
                }
                if *max_bytes < 4096 {
                    e.add(at("max_bytes"), "at least 4096");
                }
                if *keep > 1000 {
                    e.add(at("keep"), "at most 1000 rotated files");
                }
            }
            LogSink::Syslog { address, buffer, .. } => {
                if address.parse::<std::net::SocketAddr>().is_err() {
                    e.add(at("address"), format!("`{address}` is not ip:port"));
                }
                if *buffer == 0 || *buffer > 10_000_000 {
                    e.add(at("buffer"), "between 1 and 10000000 lines");
                }
            }
            LogSink::Ipfix { address, template_refresh_secs, .. } => {
                if address.parse::<std::net::SocketAddr>().is_err() {
                    e.add(at("address"), format!("`{address}` is not ip:port"));
                }
                if *template_refresh_secs == 0 || *template_refresh_secs > 86_400 {
                    e.add(at("template_refresh_secs"), "between 1 and 86400");
                }
            }
        }
    }

    // Pools.
    let mut pools: Vec<ValidPool> = Vec::new();
    let mut owner: std::collections::HashMap<Ipv4Addr, (usize, String)> = std::collections::HashMap::new();
    for (i, p) in raw.pools.iter().enumerate() {
        let at = |k: &str| format!("pools[{i}].{k}");
        if p.log_destination && p.logging != PoolLogging::Sessions {
            e.add(at("log_destination"), "only with `logging: sessions`");
        }
        if p.name.is_empty() {
            e.add(at("name"), "a pool needs a name");
        }
        if raw.pools[..i].iter().any(|q| q.name == p.name) {
            e.add(at("name"), format!("pool `{}` is defined twice", p.name));
        }
        let mut addresses = Vec::new();
        if p.masquerade && !p.addresses.is_empty() {
            e.add(at("addresses"), "a masquerade pool takes the outside interface's address; list none");
        }
        if !p.masquerade && p.addresses.is_empty() {
            e.add(at("addresses"), "a pool needs addresses (or `masquerade: true`)");
        }
        for (j, a) in p.addresses.iter().enumerate() {
            match parse_pool_addresses(a) {
                Ok(list) => {
                    for ip in list {
                        if let Some((other, path)) = owner.get(&ip) {
                            if *other != i {
                                e.add(
                                    format!("pools[{i}].addresses[{j}]"),
                                    format!(
                                        "{ip} is already in pool `{}` ({path}): pools must not overlap",
                                        raw.pools[*other].name
                                    ),
                                );
                                break;
                            }
                            e.add(format!("pools[{i}].addresses[{j}]"), format!("{ip} is listed twice"));
                            break;
                        }
                        if let Some(why) = not_a_host(ip) {
                            e.add(format!("pools[{i}].addresses[{j}]"), why);
                            break;
                        }
                        owner.insert(ip, (i, format!("pools[{i}].addresses[{j}]")));
                        addresses.push(ip);
                    }
                }
                Err(m) => e.add(format!("pools[{i}].addresses[{j}]"), m),
            }
        }
        let default_ports = if p.masquerade { "1024-32767" } else { "1024-65535" };
        let ports = match parse_port_range(p.ports.as_deref().unwrap_or(default_ports)) {
            Ok(r) => r,
            Err(m) => {
                e.add(at("ports"), m);
                (1024, 65535)
            }
        };
        let span = u32::from(ports.1) - u32::from(ports.0) + 1;
        if p.mode == PoolMode::PortBlocks {
            if p.block_size == 0 || p.block_size % 64 != 0 {
                e.add(at("block_size"), format!("{} is not a multiple of 64", p.block_size));
            } else if u32::from(p.block_size) > span {
                e.add(at("block_size"), format!("{} is more than the {span} ports of the range", p.block_size));
            }
            if !(1..=32).contains(&p.max_blocks_per_subscriber) {
                e.add(at("max_blocks_per_subscriber"), "must be 1 to 32");
            }
        }
        if p.max_sessions_per_subscriber == 0 {
            e.add(at("max_sessions_per_subscriber"), "must be at least 1");
        }
        let (inside, ports_per_subscriber) = deterministic(p, &addresses, ports, &mut e, &at);
        let overflow = p.overflow.as_ref().and_then(|o| {
            if p.mode != PoolMode::Deterministic {
                e.add(at("overflow"), "only a `mode: deterministic` pool takes an overflow");
                return None;
            }
            let mut list = Vec::new();
            if o.addresses.is_empty() {
                e.add(at("overflow.addresses"), "an overflow needs addresses of its own");
            }
            for (j, a) in o.addresses.iter().enumerate() {
                let path = format!("pools[{i}].overflow.addresses[{j}]");
                match parse_pool_addresses(a) {
                    Ok(ips) => {
                        for ip in ips {
                            if let Some((other, was)) = owner.get(&ip) {
                                e.add(
                                    path,
                                    format!(
                                        "{ip} is already in pool `{}` ({was}): an overflow's addresses are its own",
                                        raw.pools[*other].name
                                    ),
                                );
                                break;
                            }
                            owner.insert(ip, (i, path.clone()));
                            list.push(ip);
                        }
                    }
                    Err(m) => e.add(path, m),
                }
            }
            if o.block_size == 0 || o.block_size % 64 != 0 {
                e.add(at("overflow.block_size"), format!("{} is not a multiple of 64", o.block_size));
            } else if u32::from(o.block_size) > span {
                e.add(
                    at("overflow.block_size"),
                    format!("{} is more than the {span} ports of the range", o.block_size),
                );
            }
            if !(1..=32).contains(&o.max_blocks_per_subscriber) {
                e.add(at("overflow.max_blocks_per_subscriber"), "must be 1 to 32");
            }
            if raw.pools.iter().any(|q| q.name == ValidOverflow::pool_name(&p.name)) {
                e.add(
                    at("overflow"),
                    format!(
                        "its pool is named `{}`, as another pool is: rename that one",
                        ValidOverflow::pool_name(&p.name)
                    ),
                );
            }
            Some(ValidOverflow {
                addresses: list,
                block_size: o.block_size,
                max_blocks_per_subscriber: o.max_blocks_per_subscriber,
            })
        });
        pools.push(ValidPool {
            name: p.name.clone(),
            addresses,
            masquerade: p.masquerade,
            ports,
            mode: p.mode,
            block_size: p.block_size,
            max_blocks_per_subscriber: p.max_blocks_per_subscriber,
            inside,
            ports_per_subscriber,
            max_sessions_per_subscriber: p.max_sessions_per_subscriber,
            filtering: p.filtering,
            random_ports: p.random_ports,
            port_parity: p.port_parity,
            log_sessions: p.logging == PoolLogging::Sessions,
            log_destination: p.log_destination,
            overflow,
        });
    }

    // One formula per subscriber (RFC 7422): two deterministic pools whose
    // inside prefixes overlap would each claim the subscribers of the
    // overlap, and the formula that `masq whois` reverses would not be the
    // one a rule chose.
    for (i, p) in pools.iter().enumerate() {
        let Some(a) = p.inside else { continue };
        let overlap = |q: &ValidPool| q.inside.is_some_and(|b| a.overlaps(&b));
        if let Some(k) = pools[..i].iter().position(overlap) {
            e.add(
                format!("pools[{i}].inside"),
                format!(
                    "{} overlaps {}, the prefix deterministic pool `{}` maps (pools[{k}].inside): a subscriber may have one deterministic pool",
                    a,
                    pools[k].inside.map(|b| b.to_string()).unwrap_or_default(),
                    pools[k].name
                ),
            );
        }
    }

    // Rules.
    if raw.rules.is_empty() {
        e.add("rules", "needs at least one rule (`- action: masquerade` is the home router's)");
    }
    let mut rules = Vec::new();
    for (i, r) in raw.rules.iter().enumerate() {
        let action = match (r.action, &r.pool) {
            (Action::NoNat, Some(_)) => {
                e.add(format!("rules[{i}].pool"), "a no_nat rule takes no pool");
                ValidAction::NoNat
            }
            (Action::NoNat, None) => ValidAction::NoNat,
            (Action::Route, Some(_)) => {
                e.add(format!("rules[{i}].pool"), "a route rule takes no pool");
                ValidAction::Route
            }
            (Action::Route, None) => ValidAction::Route,
            (_, Some(name)) => match pools.iter().position(|p| &p.name == name) {
                Some(k) => {
                    if r.action == Action::Masquerade && !pools[k].masquerade {
                        e.add(
                            format!("rules[{i}].pool"),
                            format!("pool `{name}` is not a masquerade pool (use action: snat)"),
                        );
                    }
                    if r.action == Action::Snat && pools[k].masquerade {
                        e.add(
                            format!("rules[{i}].pool"),
                            format!("pool `{name}` is a masquerade pool (use action: masquerade)"),
                        );
                    }
                    ValidAction::Translate { pool: k }
                }
                None => {
                    e.add(format!("rules[{i}].pool"), format!("no pool named `{name}`"));
                    ValidAction::NoNat
                }
            },
            (Action::Snat, None) => {
                e.add(format!("rules[{i}].pool"), "an snat rule needs a pool");
                ValidAction::NoNat
            }
            (Action::Masquerade, None) => {
                // netfilter's MASQUERADE: the outside interface's address.
                let k = match pools.iter().position(|p| p.masquerade && p.name == "masquerade") {
                    Some(k) => k,
                    None => {
                        pools.push(ValidPool {
                            name: "masquerade".into(),
                            addresses: Vec::new(),
                            masquerade: true,
                            ports: (1024, 32767),
                            mode: PoolMode::Shared,
                            block_size: 512,
                            max_blocks_per_subscriber: 8,
                            inside: None,
                            ports_per_subscriber: 0,
                            max_sessions_per_subscriber: u32::MAX,
                            filtering: Filtering::AddressAndPortDependent,
                            random_ports: false,
                            port_parity: false,
                            log_sessions: false,
                            log_destination: false,
                            overflow: None,
                        });
                        pools.len() - 1
                    }
                };
                ValidAction::Translate { pool: k }
            }
        };
        let nets = |e: &mut Errors, key: &str, list: &[String]| -> Vec<Net> {
            list.iter()
                .enumerate()
                .filter_map(|(j, s)| parse_net(s).map_err(|m| e.add(format!("rules[{i}].match.{key}[{j}]"), m)).ok())
                .collect()
        };
        let m = &r.matches;
        let src = nets(&mut e, "src", &m.src);
        let src_except = nets(&mut e, "src_except", &m.src_except);
        let dst = nets(&mut e, "dst", &m.dst);
        let dst_except = nets(&mut e, "dst_except", &m.dst_except);
        let dst_ports = m
            .dst_ports
            .iter()
            .enumerate()
            .filter_map(|(j, p)| {
                parse_port_range(&p.to_string())
                    .map_err(|msg| e.add(format!("rules[{i}].match.dst_ports[{j}]"), msg))
                    .ok()
            })
            .collect();
        let mss_clamp = match &r.mss_clamp {
            None => ValidMssClamp::Off,
            Some(MssClampSpec::Word(w)) if w == "auto" => ValidMssClamp::Auto,
            Some(MssClampSpec::Size(n)) => match u16::try_from(*n) {
                Ok(v) if (MSS_CLAMP_RANGE.0..=MSS_CLAMP_RANGE.1).contains(&v) => ValidMssClamp::Fixed(v),
                _ => {
                    let (lo, hi) = MSS_CLAMP_RANGE;
                    e.add(format!("rules[{i}].mss_clamp"), format!("{n}: a size from {lo} to {hi}, or auto"));
                    ValidMssClamp::Off
                }
            },
            Some(MssClampSpec::Word(w)) => {
                e.add(format!("rules[{i}].mss_clamp"), format!("`{w}`: a size or auto"));
                ValidMssClamp::Off
            }
        };
        let ftp_alg = r.alg.contains(&Alg::Ftp);
        if ftp_alg && !matches!(action, ValidAction::Translate { .. }) {
            e.add(
                format!("rules[{i}].alg"),
                "the FTP ALG rewrites translated addresses: snat or masquerade rules only",
            );
        }
        rules.push(ValidRule {
            action,
            src,
            src_except,
            dst,
            dst_except,
            protocols: m.protocols.clone(),
            dst_ports,
            mss_clamp,
            ftp_alg,
        });
    }

    let engine_pools = pools.len() + pools.iter().filter(|p| p.overflow.is_some()).count();
    if engine_pools > MAX_POOLS {
        e.add(
            "pools",
            format!("{engine_pools} pools (with the masquerade pool a rule makes and one per overflow): at most {MAX_POOLS}"),
        );
    }

    // Forwards.
    let has_masquerade = pools.iter().any(|p| p.masquerade);
    let mut forwards: Vec<ValidForward> = Vec::new();
    for (i, f) in raw.forwards.iter().enumerate() {
        let at = |k: &str| format!("forwards[{i}].{k}");
        if f.protocol == Protocol::Icmp || f.protocol == Protocol::Other {
            e.add(at("protocol"), "a port forward is tcp or udp (static_nat forwards every protocol)");
        }
        if f.alg.contains(&Alg::Ftp) && f.protocol != Protocol::Tcp {
            e.add(at("alg"), "the FTP ALG reads an FTP control connection: a tcp forward's");
        }
        let (host, port) = f.public.rsplit_once(':').unwrap_or((f.public.as_str(), ""));
        let public_ports = parse_port_range(port).ok();
        let public = if host == "outside" {
            if !has_masquerade {
                e.add(at("public"), "`outside` is the masquerade address, and no rule masquerades");
            }
            Some(PublicAddr::Outside)
        } else {
            match host.parse::<Ipv4Addr>() {
                // A deterministic pool's ports are all the formula's (RFC 7422).
                Ok(ip) if owner.get(&ip).is_some_and(|(k, _)| raw.pools[*k].mode == PoolMode::Deterministic) => {
                    e.add(at("public"), format!("{ip} is a deterministic pool's: its ports are its subscribers'"));
                    None
                }
                Ok(ip) if owner.contains_key(&ip) => Some(PublicAddr::Addr(ip)),
                Ok(ip) => {
                    e.add(at("public"), format!("{ip} is in no pool: a forward's public address must be a pool's"));
                    None
                }
                Err(_) => None,
            }
        };
        if public.is_none() && host != "outside" && host.parse::<Ipv4Addr>().is_err() || public_ports.is_none() {
            e.add(at("public"), format!("`{}` is not ADDRESS:PORT or ADDRESS:LOW-HIGH (or outside:PORT)", f.public));
        }
        let (ihost, iport) = f.inside.rsplit_once(':').unwrap_or((f.inside.as_str(), ""));
        let inside = match (ihost.parse::<Ipv4Addr>(), parse_port_range(iport)) {
            (Ok(a), Ok(_)) if not_a_host(a).is_some() => {
                e.add(at("inside"), not_a_host(a).unwrap_or_default());
                None
            }
            (Ok(a), Ok(r)) => Some((a, r)),
            _ => {
                e.add(at("inside"), format!("`{}` is not ADDRESS:PORT or ADDRESS:LOW-HIGH", f.inside));
                None
            }
        };
        if let (Some(pr), Some((_, ir))) = (public_ports, inside) {
            let (plen, ilen) = (pr.1 - pr.0, ir.1 - ir.0);
            if ilen != 0 && ilen != plen {
                e.add(
                    at("inside"),
                    format!(
                        "{} ports inside for {} public: a range maps to one port or to as many ports",
                        u32::from(ilen) + 1,
                        u32::from(plen) + 1
                    ),
                );
            }
        }
        if let (Some(public), Some(public_ports), Some((inside_addr, inside_ports))) = (public, public_ports, inside) {
            let overlaps = |x: &&ValidForward| {
                x.public == public
                    && x.protocol == f.protocol
                    && x.public_ports.0 <= public_ports.1
                    && public_ports.0 <= x.public_ports.1
            };
            if let Some(k) = forwards.iter().position(|x| overlaps(&x)) {
                e.add(
                    at("public"),
                    format!("{} overlaps forwards[{k}].public: a public port is forwarded once", f.public),
                );
            }
            forwards.push(ValidForward {
                protocol: f.protocol,
                public,
                public_ports,
                inside_addr,
                inside_ports,
                ftp_alg: f.alg.contains(&Alg::Ftp),
            });
        }
    }

    // A rule into a deterministic pool sends it only sources its formula
    // maps (RFC 7422): others would be dropped (`deterministic_outside`).
    for (i, r) in rules.iter().enumerate() {
        let ValidAction::Translate { pool } = r.action else { continue };
        let Some((p, Some(inside))) = pools.get(pool).map(|p| (p, p.inside)) else { continue };
        let within = |n: &Net| n.len >= inside.len && inside.contains(n.addr);
        let fmt = |n: &Net| format!("{}/{}", n.addr, n.len);
        if r.src.is_empty() {
            e.add(
                format!("rules[{i}].match.src"),
                format!("deterministic pool `{}` maps only {}: list it (or prefixes in it) here", p.name, fmt(&inside)),
            );
        } else if let Some(k) = r.src.iter().position(|n| !within(n)) {
            e.add(
                format!("rules[{i}].match.src[{k}]"),
                format!(
                    "{} is not within {}, the prefix deterministic pool `{}` maps",
                    fmt(&r.src[k]),
                    fmt(&inside),
                    p.name
                ),
            );
        }
    }

    // 1:1 static NAT: a public address no pool hands out, one inside host.
    let mut statics: Vec<ValidStatic> = Vec::new();
    for (i, st) in raw.static_nat.iter().enumerate() {
        let at = |k: &str| format!("static_nat[{i}].{k}");
        let public = match st.public.parse::<Ipv4Addr>() {
            Ok(ip) => {
                if let Some(why) = not_a_host(ip) {
                    e.add(at("public"), why);
                }
                if let Some((_, path)) = owner.get(&ip) {
                    e.add(
                        at("public"),
                        format!("{ip} is in a pool ({path}): a static address must be in none, or the pool would hand out its ports"),
                    );
                }
                if let Some(k) = statics.iter().position(|x| x.public == ip) {
                    e.add(at("public"), format!("{ip} is static_nat[{k}]'s public address already"));
                }
                Some(ip)
            }
            Err(_) => {
                e.add(at("public"), format!("`{}` is not an IPv4 address", st.public));
                None
            }
        };
        let inside = match st.inside.parse::<Ipv4Addr>() {
            Ok(ip) => {
                if let Some(why) = not_a_host(ip) {
                    e.add(at("inside"), why);
                }
                if let Some(k) = statics.iter().position(|x| x.inside == ip) {
                    e.add(at("inside"), format!("{ip} has a static address already (static_nat[{k}])"));
                }
                Some(ip)
            }
            Err(_) => {
                e.add(at("inside"), format!("`{}` is not an IPv4 address", st.inside));
                None
            }
        };
        if let Some((k, det)) =
            inside.and_then(|ip| pools.iter().enumerate().find(|(_, p)| p.inside.is_some_and(|n| n.contains(ip))))
        {
            // A static host leaves from its own address, ahead of the rules:
            // the formula's range for it would go unused, yet `masq whois`
            // would name the host for it.
            e.add(
                at("inside"),
                format!(
                    "{} is within {}, the prefix deterministic pool `{}` maps (pools[{k}].inside): a subscriber is mapped once",
                    st.inside,
                    det.inside.map(|n| n.to_string()).unwrap_or_default(),
                    det.name
                ),
            );
        }
        if let (Some(public), Some(inside)) = (public, inside) {
            // Its sessions live with its own worker, a forward's with the
            // public port's owner: one host cannot be both unambiguously.
            if let Some(k) = forwards.iter().position(|f| f.inside_addr == inside) {
                e.add(
                    at("inside"),
                    format!(
                        "{inside} is forwards[{k}]'s inside host: a static host is reached through its own address"
                    ),
                );
            }
            statics.push(ValidStatic { public, inside, ftp_alg: st.alg.contains(&Alg::Ftp) });
        }
    }

    // Timeouts (RFC floors).
    let t = &raw.timeouts;
    for (k, v, min, why) in [
        ("tcp_established_secs", t.tcp_established_secs, 7440, "RFC 5382 REQ-5: at least 2 h 4 min"),
        ("tcp_transitory_secs", t.tcp_transitory_secs, 240, "RFC 5382 REQ-5: at least 4 min"),
        ("udp_secs", t.udp_secs, 120, "RFC 4787 REQ-5: at least 2 min"),
        ("udp_unreplied_secs", t.udp_unreplied_secs, 120, "RFC 4787 REQ-5: at least 2 min"),
        ("icmp_secs", t.icmp_secs, 60, "RFC 5508 REQ-1: at least 60 s"),
        ("other_secs", t.other_secs, 60, "at least 60 s"),
        ("fragment_secs", t.fragment_secs, 1, "at least 1 s"),
    ] {
        if v < min {
            e.add(format!("timeouts.{k}"), format!("{v} s is below the floor ({why})"));
        }
    }

    if t.udp_unreplied_secs > t.udp_secs {
        e.add(
            "timeouts.udp_unreplied_secs",
            format!(
                "{} s is longer than udp_secs ({} s): an unreplied flow never outlives an answered one",
                t.udp_unreplied_secs, t.udp_secs
            ),
        );
    }

    // Boundary.
    let b = &raw.boundary;
    let mut inside_prefixes: Vec<Net> = b
        .inside_prefixes
        .iter()
        .enumerate()
        .filter_map(|(j, s)| parse_net(s).map_err(|m| e.add(format!("boundary.inside_prefixes[{j}]"), m)).ok())
        .collect();
    if b.inside_prefixes.is_empty() {
        for r in &rules {
            for n in &r.src {
                if !inside_prefixes.contains(n) {
                    inside_prefixes.push(*n);
                }
            }
        }
    }
    let boundary =
        ValidBoundary { unmatched_inside: b.unmatched_inside, spoofed_outside: b.spoofed_outside, inside_prefixes };

    // Management.
    let mut allow = Vec::new();
    for (i, a) in raw.management.allow.iter().enumerate() {
        if a.protocol != Protocol::Tcp && a.protocol != Protocol::Udp {
            e.add(format!("management.allow[{i}].protocol"), "tcp or udp (pings: management.icmp_echo)");
        }
        if a.ports.is_empty() {
            e.add(format!("management.allow[{i}].ports"), "name the ports of the service");
        }
        let src = a
            .src
            .iter()
            .enumerate()
            .filter_map(|(j, s)| parse_net(s).map_err(|m| e.add(format!("management.allow[{i}].src[{j}]"), m)).ok())
            .collect();
        let ports = a
            .ports
            .iter()
            .enumerate()
            .filter_map(|(j, p)| {
                parse_port_range(&p.to_string()).map_err(|m| e.add(format!("management.allow[{i}].ports[{j}]"), m)).ok()
            })
            .collect();
        allow.push(ValidAllow { src, protocol: a.protocol, ports });
    }

    // Tables.
    if raw.tables.max_sessions < 1024 {
        e.add("tables.max_sessions", "at least 1024 sessions per worker");
    }
    if raw.tables.max_subscribers == 0 {
        e.add("tables.max_subscribers", "at least 1");
    }
    if raw.tables.max_fragments == 0 {
        e.add("tables.max_fragments", "at least 1");
    }
    if raw.tables.fragment_hold > 65536 {
        e.add("tables.fragment_hold", "at most 65536 fragments per worker");
    }
    if raw.tables.fragment_hold > 0 && !(1536..=1 << 28).contains(&raw.tables.fragment_hold_bytes) {
        e.add("tables.fragment_hold_bytes", "from 1536 (one full frame) to 268435456 bytes per worker");
    }

    // Control.
    let listen = raw.control.listen.parse::<std::net::SocketAddr>();
    if listen.is_err() {
        e.add("control.listen", format!("`{}` is not ADDRESS:PORT", raw.control.listen));
    }
    if raw.control.token.is_some() && raw.control.token_file.is_some() {
        e.add("control.token_file", "give token or token_file, not both");
    }
    if raw.control.token.as_deref().is_some_and(str::is_empty) {
        e.add("control.token", "an empty token protects nothing");
    }
    if raw.control.metrics_token.as_deref().is_some_and(str::is_empty) {
        e.add("control.metrics_token", "an empty token protects nothing");
    }
    if let Some(t) = &raw.control.tls {
        if t.cert.is_empty() {
            e.add("control.tls.cert", "name the certificate file (PEM)");
        }
        if t.key.is_empty() {
            e.add("control.tls.key", "name the private key file (PEM)");
        }
    }
    // Off loopback, whoever reaches the address could change the NAT and
    // read every subscriber's mappings: a token and TLS are required.
    if let Ok(addr) = &listen {
        if !addr.ip().is_loopback() {
            if raw.control.token.is_none() && raw.control.token_file.is_none() {
                e.add(
                    "control.listen",
                    format!("{addr} is not loopback: anyone who reaches it could change the NAT; add control.token_file (or control.token)"),
                );
            }
            if raw.control.tls.is_none() {
                e.add(
                    "control.listen",
                    format!("{addr} is not loopback: add control.tls {{cert: FILE, key: FILE}} so the token never crosses the network in clear"),
                );
            }
        }
    }

    if let Some(ha) = &raw.ha {
        for (key, v) in [("ha.listen", &ha.listen), ("ha.peer", &ha.peer)] {
            if v.parse::<std::net::SocketAddr>().is_err() {
                e.add(key, format!("`{v}` is not ADDRESS:PORT"));
            }
        }
        match (&ha.key, &ha.key_file) {
            (Some(_), Some(_)) => e.add("ha.key_file", "give key or key_file, not both"),
            (None, None) => {
                e.add("ha", "the sync link needs a shared key (ha.key_file or ha.key): unauthenticated sync is refused")
            }
            (Some(k), None) if k.len() < 16 => {
                e.add("ha.key", "at least 16 characters (32 random bytes, hex, is best)")
            }
            _ => {}
        }
        if !(1024..=1 << 24).contains(&ha.backlog) {
            e.add("ha.backlog", "from 1024 to 16777216 records");
        }
    }

    match listen {
        Ok(listen) if e.list.is_empty() => {
            Ok(ValidConfig { raw, pools, rules, forwards, statics, listen, boundary, allow })
        }
        _ => {
            e.list.sort_by_key(|x| (x.line, x.col));
            Err(e.list)
        }
    }
}

#[cfg(test)]
mod tests;
