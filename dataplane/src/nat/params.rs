//! The engine's parameters: plain types, no YAML. The control plane builds
//! them from a validated config; tests and benchmarks build them directly.
#![forbid(unsafe_code)]

/// Idle timeouts in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP established: RFC 5382 REQ-5 requires at least 2 h 4 min.
    pub tcp_established_secs: u32,
    /// TCP partially open or closing (and after RST, RFC 7857 section 2.2): at least 4 min.
    pub tcp_transitory_secs: u32,
    /// UDP: RFC 4787 REQ-5 requires at least 2 min and recommends 5 min.
    pub udp_secs: u32,
    /// UDP that never saw a reply (at most `udp_secs`, at least RFC 4787
    /// REQ-5's 2 min): a storm of unanswered flows (a scanner, a P2P
    /// client: IP-MASQ FAQ 7.21) gives its ports back sooner, at the price
    /// of a flow whose first answer comes later than this.
    pub udp_unreplied_secs: u32,
    /// ICMP query (echo): 60 s, as RFC 5508 REQ-1 asks.
    pub icmp_secs: u32,
    /// Other IP protocols (GRE, ESP, SCTP...), translated by address only:
    /// 600 s, netfilter's generic timeout (`nf_conntrack_generic_timeout`).
    pub other_secs: u32,
    /// How long a freed public port is held back (RFC 6888 REQ-8: 120 s).
    pub port_hold_secs: u32,
    /// How long a fragment entry lives after its first fragment, and how
    /// long a later fragment waits for its first in the hold.
    pub fragment_secs: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tcp_established_secs: 7440,
            tcp_transitory_secs: 240,
            udp_secs: 300,
            udp_unreplied_secs: 120,
            icmp_secs: 60,
            other_secs: 600,
            port_hold_secs: 120,
            fragment_secs: 2,
        }
    }
}

impl Timeouts {
    /// The timeout of each session class ([`super::session::class`]),
    /// indexed by class; the spare slots are 0.
    pub fn by_class(&self) -> [u32; super::session::class::SLOTS] {
        // In class order: TCP_ESTABLISHED, TCP_TRANSITORY, UDP, ICMP, UDP_UNREPLIED, OTHER.
        [
            self.tcp_established_secs,
            self.tcp_transitory_secs,
            self.udp_secs,
            self.icmp_secs,
            self.udp_unreplied_secs,
            self.other_secs,
            0,
            0,
        ]
    }

    /// The longest of them (the expiry wheel's reach).
    pub fn longest(&self) -> u32 {
        self.by_class().into_iter().max().unwrap_or(0)
    }
}

/// Which inbound packets an existing mapping admits (RFC 4787 section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtering {
    /// Any remote may send to the mapping (RFC 4787 REQ-8 recommendation, RFC 6888).
    EndpointIndependent,
    /// Only remote addresses the subscriber has sent to.
    AddressDependent,
    /// Only remote address:port pairs the subscriber has sent to (netfilter).
    AddressAndPortDependent,
}

/// How a pool hands out ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// Carrier grade: each address's ports are split into blocks; a
    /// subscriber takes blocks on demand, all on one paired address.
    PortBlocks {
        /// Ports per block (a multiple of 64).
        block_size: u16,
        /// Blocks one subscriber may hold (at most [`MAX_BLOCKS_PER_SUBSCRIBER`]).
        max_blocks_per_subscriber: u16,
    },
    /// Home router masquerade: subscribers share the ports, the source port
    /// is kept when free (netfilter FAQ 3.6) and ports stay on their side of
    /// 512 and 1024 as netfilter keeps them.
    Shared,
    /// Deterministic NAT (RFC 7422): each address of `inside` gets a fixed
    /// public address and a fixed range of `ports_per_subscriber` ports by
    /// formula ([`crate::nat::deterministic`]); one block per subscriber,
    /// never more.
    Deterministic {
        /// The inside prefix the formula maps.
        inside: Prefix,
        /// Ports per subscriber (a multiple of 64).
        ports_per_subscriber: u16,
    },
}

/// Upper bound of [`PoolMode::PortBlocks::max_blocks_per_subscriber`].
pub const MAX_BLOCKS_PER_SUBSCRIBER: usize = 32;

/// Most pools an engine numbers over its life (a pool a live change
/// removes keeps its number until restart), so that per-pool counters can
/// be fixed-size arrays.
pub const MAX_POOLS: usize = 32;

/// Granularity of port ownership between workers in [`PoolMode::Shared`] pools.
pub const SHARED_OWNERSHIP_CHUNK: u16 = 64;

/// A pool of public addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolParams {
    /// Name (for logs and metrics).
    pub name: String,
    /// Public addresses, host order. A masquerade pool has exactly one,
    /// replaced at run time with [`crate::nat::Engine::set_masquerade_address`].
    pub addresses: Vec<u32>,
    /// Lowest public port handed out.
    pub port_min: u16,
    /// Highest public port handed out.
    pub port_max: u16,
    /// Port blocks or shared.
    pub mode: PoolMode,
    /// Inbound filtering.
    pub filtering: Filtering,
    /// Sessions one subscriber may hold in this pool.
    pub max_sessions_per_subscriber: u32,
    /// Choose ports at random instead of keeping the source port.
    pub random_ports: bool,
    /// Port parity (RFC 4787 REQ-4): an even inside port gets an even
    /// public port, an odd one an odd (within the subscriber's blocks, or
    /// the shared pool's class), so RTP/RTCP pairs keep their shape; when
    /// none of that parity is left, any port (best effort).
    pub port_parity: bool,
    /// Follows the outside interface's address (MASQUERADE).
    pub masquerade: bool,
    /// RSS-aware port order, one list per address (empty: numeric order).
    /// Each lists the address's ports in the order the engine cuts them
    /// into chunks, chunk `c` going to worker `c % workers`; built by
    /// [`crate::rss::port_order`] so that a worker's chunks hold only the
    /// ports whose replies the NIC delivers to its queue. Port-block pools only.
    pub port_orders: Vec<Vec<u16>>,
    /// Record a session created and deleted event for each session of this
    /// pool (`logging: sessions`; RFC 6888 REQ-12 allows it, RFC 8158
    /// natEvent 1 and 2). Off: only block events.
    pub log_sessions: bool,
    /// With [`Self::log_sessions`], put the destination in the events too
    /// (RFC 6888 REQ-12 says leave it out unless needed; default off).
    pub log_destination: bool,
    /// A deterministic pool's dynamic overflow (RFC 7422 section 2): the
    /// name of the port-block pool a subscriber takes ports from once its
    /// own range is full (`None`: refused past its range). Only a
    /// deterministic pool has one; it must name a port-block pool.
    pub overflow: Option<String>,
}

impl PoolParams {
    /// A carrier-grade pool with RFC 6888 defaults: port blocks of 512,
    /// up to 8 blocks and 4000 sessions a subscriber, endpoint-independent filtering.
    pub fn cgnat(name: &str, addresses: Vec<u32>) -> Self {
        Self {
            name: name.to_string(),
            addresses,
            port_min: 1024,
            port_max: 65535,
            mode: PoolMode::PortBlocks { block_size: 512, max_blocks_per_subscriber: 8 },
            filtering: Filtering::EndpointIndependent,
            max_sessions_per_subscriber: 4000,
            random_ports: false,
            port_parity: false,
            masquerade: false,
            overflow: None,
            port_orders: Vec::new(),
            log_sessions: false,
            log_destination: false,
        }
    }

    /// A home-router masquerade pool on `address` (the outside interface's),
    /// with netfilter's address-and-port-dependent filtering.
    pub fn masquerade(name: &str, address: u32) -> Self {
        Self {
            name: name.to_string(),
            addresses: vec![address],
            port_min: 1,
            port_max: 65535,
            mode: PoolMode::Shared,
            filtering: Filtering::AddressAndPortDependent,
            max_sessions_per_subscriber: u32::MAX,
            random_ports: false,
            port_parity: false,
            masquerade: true,
            overflow: None,
            port_orders: Vec::new(),
            log_sessions: false,
            log_destination: false,
        }
    }
}

/// An IPv4 prefix, host order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// Network address.
    pub addr: u32,
    /// Prefix length, 0..=32.
    pub len: u8,
    /// The netmask of `len` (kept, so a match is one AND and one compare).
    mask: u32,
}

impl Prefix {
    /// A prefix; host bits of `addr` are cleared.
    pub fn new(addr: u32, len: u8) -> Self {
        let len = len.min(32);
        let mask = Self::mask_of(len);
        Self { addr: addr & mask, len, mask }
    }
    /// The last address of the prefix.
    pub fn last(&self) -> u32 {
        self.addr | !self.mask
    }
    /// The netmask of the prefix's length.
    pub fn mask(&self) -> u32 {
        self.mask
    }
    fn mask_of(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    }
    /// True if `a` lies in the prefix.
    #[inline]
    pub fn contains(&self, a: u32) -> bool {
        a & self.mask == self.addr
    }
}

/// Protocol set bits for [`RuleMatch::protocols`].
pub mod proto {
    /// TCP.
    pub const TCP: u8 = 1;
    /// UDP.
    pub const UDP: u8 = 2;
    /// ICMP.
    pub const ICMP: u8 = 4;
    /// Any other IP protocol.
    pub const OTHER: u8 = 8;
    /// All of them.
    pub const ALL: u8 = 15;
}

/// What a rule matches on the first packet of an inside-to-outside flow.
/// Empty lists match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleMatch {
    /// Source prefixes (inside hosts).
    pub src: Vec<Prefix>,
    /// Source prefixes excluded even if `src` contains them.
    pub src_except: Vec<Prefix>,
    /// Destination prefixes.
    pub dst: Vec<Prefix>,
    /// Destination prefixes excluded.
    pub dst_except: Vec<Prefix>,
    /// Protocol bits from [`proto`]; 0 means all.
    pub protocols: u8,
    /// Destination port ranges (inclusive); empty means all.
    pub dst_ports: Vec<(u16, u16)>,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// Translate the source into the pool with this index (SNAT or MASQUERADE).
    Translate {
        /// Index into [`EngineParams::pools`].
        pool: u16,
    },
    /// Route unchanged both ways (exempt from NAT): outbound, and inbound
    /// connections the rule matches read in reverse ([`super::rules`]).
    NoNat,
    /// Route outbound unchanged; nothing inbound but the replies.
    Route,
}

/// One rule of the ordered list; the first match wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Conditions.
    pub matches: RuleMatch,
    /// Action.
    pub action: RuleAction,
}

/// TCP MSS clamping of a rule's connections (netfilter's TCPMSS target).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MssClamp {
    /// Leave the MSS option alone (the default).
    #[default]
    Off,
    /// Lower a larger MSS to this value (`--set-mss`).
    Fixed(u16),
    /// Lower it to the outgoing interface's MTU minus 40
    /// (`--clamp-mss-to-pmtu`, from [`EngineParams::mtu`]).
    Auto,
}

/// What a rule adds to the connections it makes, beyond its action; kept
/// beside the rules ([`EngineParams::rule_options`]), pinned in the session
/// like the action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleOptions {
    /// MSS clamping of TCP SYN and SYN/ACK segments, both directions.
    pub mss_clamp: MssClamp,
    /// The FTP ALG on TCP connections (`alg: [ftp]`, RFC 959, RFC 2428).
    pub ftp_alg: bool,
}

/// A static port forward (DNAT): public ip:port -> inside ip:port, or a
/// range of public ports, each to the inside port at the same offset or
/// all to one inside port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// IP protocol number (6 or 17).
    pub protocol: u8,
    /// Public address (one of a pool's).
    pub public_addr: u32,
    /// Public port (the range's first).
    pub public_port: u16,
    /// The range's last public port (`public_port` for one port).
    pub public_port_last: u16,
    /// Inside host.
    pub inside_addr: u32,
    /// Inside port (the range's first).
    pub inside_port: u16,
    /// The inside range's last port: `inside_port` (every public port goes
    /// to `inside_port`) or as far from it as the public range is long.
    pub inside_port_last: u16,
    /// The FTP ALG for the server behind it (a TCP forward): its 227 and
    /// 229 replies name the public side, its passive data connections are
    /// admitted (`super::alg`).
    pub ftp_alg: bool,
}

impl Forward {
    /// A one-port forward.
    pub fn one(protocol: u8, public_addr: u32, public_port: u16, inside_addr: u32, inside_port: u16) -> Self {
        Self {
            protocol,
            public_addr,
            public_port,
            public_port_last: public_port,
            inside_addr,
            inside_port,
            inside_port_last: inside_port,
            ftp_alg: false,
        }
    }

    /// Every public port goes to the one inside port.
    #[inline]
    pub fn to_one(&self) -> bool {
        self.inside_port_last == self.inside_port
    }

    /// The inside port public `port` (in the range) goes to.
    #[inline]
    pub fn inside_port_for(&self, port: u16) -> u16 {
        if self.to_one() {
            self.inside_port
        } else {
            self.inside_port.wrapping_add(port.wrapping_sub(self.public_port))
        }
    }

    /// The public port whose owner keeps the sessions of public `port`: the
    /// port itself, or the range's first when every port goes to one inside
    /// port (its replies then name no public port).
    #[inline]
    pub fn home_port(&self, port: u16) -> u16 {
        if self.to_one() {
            self.public_port
        } else {
            port
        }
    }

    /// The public port whose session an inside `port` of the range answers
    /// for ([`Forward::home_port`] of it).
    #[inline]
    pub fn home_port_of_inside(&self, port: u16) -> u16 {
        if self.to_one() {
            self.public_port
        } else {
            self.public_port.wrapping_add(port.wrapping_sub(self.inside_port))
        }
    }

    /// True if the ranges are well formed: first <= last, and the inside
    /// range one port or as long as the public one.
    pub fn well_formed(&self) -> bool {
        self.public_port <= self.public_port_last
            && self.inside_port <= self.inside_port_last
            && (self.to_one() || self.inside_port_last - self.inside_port == self.public_port_last - self.public_port)
    }
}

/// A 1:1 static NAT entry: every protocol and port, both directions.
/// Outbound from `inside_addr` always leaves from `public_addr` with its
/// own port (endpoint-independent); inbound to `public_addr`, any port,
/// reaches `inside_addr` on the same port, with no filtering (the boundary
/// still applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticNat {
    /// Public address (in no pool, not the box's own).
    pub public_addr: u32,
    /// Inside host.
    pub inside_addr: u32,
    /// The FTP ALG on the host's TCP connections, either way (`super::alg`).
    pub ftp_alg: bool,
}

impl StaticNat {
    /// An entry without the ALG.
    pub fn new(public_addr: u32, inside_addr: u32) -> Self {
        Self { public_addr, inside_addr, ftp_alg: false }
    }
}

/// The box's edges: what crosses them besides translated traffic. The
/// default is closed (both drops on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boundary {
    /// Drop inside packets whose source matches no rule (`no_rule`);
    /// off: route them untranslated.
    pub drop_unmatched: bool,
    /// Drop outside packets with a source in [`Boundary::inside_prefixes`]
    /// (`spoofed`).
    pub drop_spoofed: bool,
    /// The inside side's prefixes.
    pub inside_prefixes: Vec<Prefix>,
}

impl Default for Boundary {
    fn default() -> Self {
        Self { drop_unmatched: true, drop_spoofed: true, inside_prefixes: Vec::new() }
    }
}

impl Boundary {
    /// True if an outside packet from `src` claims an inside source and
    /// is to be dropped.
    #[inline]
    pub fn spoofed(&self, src: u32) -> bool {
        self.drop_spoofed && self.inside_prefixes.iter().any(|p| p.contains(src))
    }
}

/// Everything one worker's engine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineParams {
    /// This worker's number, 0-based.
    pub worker: u16,
    /// Number of workers sharing the pools.
    pub workers: u16,
    /// Session capacity of this worker.
    pub max_sessions: u32,
    /// Subscriber capacity of this worker.
    pub max_subscribers: u32,
    /// Fragment-tracking entries (power of two is best).
    pub max_fragments: u32,
    /// Non-first fragments held at most while they wait for their first
    /// fragment (0: none is held, such fragments are dropped).
    pub fragment_hold: u32,
    /// Bytes (whole frames) those held fragments may take at most.
    pub fragment_hold_bytes: u32,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Public pools.
    pub pools: Vec<PoolParams>,
    /// Ordered rules.
    pub rules: Vec<Rule>,
    /// Static port forwards.
    pub forwards: Vec<Forward>,
    /// 1:1 static NAT entries.
    pub statics: Vec<StaticNat>,
    /// The box's own addresses: traffic to them that no session or forward
    /// claims goes to the kernel.
    pub local_addrs: Vec<u32>,
    /// Anti-spoofing at both edges.
    pub boundary: Boundary,
    /// Hash seed (random per start in production).
    pub seed: u64,
    /// Subscriber-to-worker map from the inside NIC's RSS (`None`: masq's
    /// own hash, [`crate::nat::subscriber_owner`]).
    pub steering: Option<crate::rss::SubscriberSteering>,
    /// Source of the ICMP host unreachable a subscriber refused a port or a
    /// session gets (RFC 6888 REQ-11b): the box's address on the inside
    /// (`None`: none is sent; the refusal is still counted and logged).
    pub icmp_source: Option<u32>,
    /// Per-rule options, in the order of [`EngineParams::rules`] (a rule
    /// past the end has the defaults: nothing added).
    pub rule_options: Vec<RuleOptions>,
    /// MTU of the inside and the outside interface ([`super::Side::index`]
    /// order), for [`MssClamp::Auto`].
    pub mtu: [u16; 2],
    /// Start as an HA standby (`nat::ha`): forward nothing until promoted.
    pub standby: bool,
    /// Record mapped TCP and UDP sessions' creation and deletion for an HA
    /// standby (`ports::EventKind::Sync`).
    pub sync_sessions: bool,
}

impl EngineParams {
    /// One worker, the given pools and rules, default sizes and timeouts.
    pub fn single(pools: Vec<PoolParams>, rules: Vec<Rule>) -> Self {
        Self {
            worker: 0,
            workers: 1,
            max_sessions: 65536,
            max_subscribers: 16384,
            max_fragments: 1024,
            fragment_hold: 256,
            fragment_hold_bytes: 256 * 1536,
            timeouts: Timeouts::default(),
            pools,
            rules,
            forwards: Vec::new(),
            statics: Vec::new(),
            local_addrs: Vec::new(),
            boundary: Boundary::default(),
            seed: 0x6d61_7371,
            steering: None,
            icmp_source: None,
            rule_options: Vec::new(),
            mtu: [1500; 2],
            standby: false,
            sync_sessions: false,
        }
    }
}

pub use super::error::{ParamError, PoolProblem};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let p = Prefix::new(0x6440_0001, 10); // 100.64.0.1/10 -> 100.64.0.0/10
        assert_eq!(p.addr, 0x6440_0000);
        assert!(p.contains(0x647f_ffff));
        assert!(!p.contains(0x6480_0000));
        assert!(Prefix::new(0, 0).contains(0xffff_ffff));
        assert!(Prefix::new(0x0a00_0001, 32).contains(0x0a00_0001));
        assert!(!Prefix::new(0x0a00_0001, 32).contains(0x0a00_0002));
    }

    #[test]
    fn rfc_default_timeouts() {
        let t = Timeouts::default();
        assert!(t.tcp_established_secs >= 2 * 3600 + 4 * 60);
        assert!(t.tcp_transitory_secs >= 240);
        assert!(t.udp_secs >= 120);
        assert_eq!(t.icmp_secs, 60);
        assert_eq!(t.port_hold_secs, 120);
    }
}
