//! The YAML schema as serde types. Every struct denies unknown fields;
//! defaults are the ones a CGNAT operator expects (RFC 6888, RFC 4787).
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

/// A whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The two interfaces.
    pub interfaces: Interfaces,
    /// Worker cores and RSS.
    #[serde(default)]
    pub workers: Workers,
    /// Public address pools.
    #[serde(default)]
    pub pools: Vec<Pool>,
    /// Ordered NAT rules; the first match wins.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Static port forwards (DNAT), single ports or ranges.
    #[serde(default)]
    pub forwards: Vec<PortForward>,
    /// 1:1 static NAT: a public address for one inside host, every port
    /// and protocol, both directions (the "DMZ host").
    #[serde(default)]
    pub static_nat: Vec<StaticNat>,
    /// Idle timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Table sizes.
    #[serde(default)]
    pub tables: Tables,
    /// The control API.
    #[serde(default)]
    pub control: Control,
    /// Logging.
    #[serde(default)]
    pub logging: Logging,
    /// What may cross the box's edges besides translated traffic.
    #[serde(default)]
    pub boundary: Boundary,
    /// What may reach the box itself from outside.
    #[serde(default)]
    pub management: Management,
    /// An HA pair: this box's role at start, the sync link to its peer and
    /// the link's key (none: a lone box).
    #[serde(default)]
    pub ha: Option<Ha>,
}

/// One box of an HA pair (issue 16): the active box streams its port
/// blocks (and, with `sync_sessions`, its mapped TCP and UDP sessions) to
/// the standby over an authenticated TCP link; keepalived (VRRP) decides
/// who is active and tells masq (`masq role active|standby`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ha {
    /// The role at start, until keepalived says otherwise.
    #[serde(default)]
    pub role: HaRole,
    /// Where this box accepts its peer's sync connection (ADDRESS:PORT).
    pub listen: String,
    /// Where the peer accepts this box's (ADDRESS:PORT).
    pub peer: String,
    /// The shared key (at least 16 characters); or `key_file`.
    pub key: Option<String>,
    /// File holding the shared key (first line).
    pub key_file: Option<String>,
    /// Sync mapped TCP and UDP sessions too, not only port blocks.
    #[serde(default)]
    pub sync_sessions: bool,
    /// After a promotion, how long synced blocks of subscribers with no
    /// session are kept for them to come back, in seconds.
    #[serde(default = "default_ha_hold_secs")]
    pub hold_secs: u32,
    /// Sync records queued for a slow peer at most; past it the link is
    /// reset and the peer resynced (counted as lost).
    #[serde(default = "default_ha_backlog")]
    pub backlog: u32,
}

fn default_ha_hold_secs() -> u32 {
    300
}

fn default_ha_backlog() -> u32 {
    65536
}

/// An HA box's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HaRole {
    /// Forwards and streams its state to the peer.
    Active,
    /// Forwards nothing; holds the active box's state.
    #[default]
    Standby,
}

/// The interfaces masq forwards between.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Interfaces {
    /// Facing the subscribers.
    pub inside: String,
    /// Facing the internet.
    pub outside: String,
    /// Next-hop MAC for everything sent inside (overrides the neighbour table).
    #[serde(default)]
    pub inside_mac: Option<String>,
    /// Next-hop MAC for everything sent outside.
    #[serde(default)]
    pub outside_mac: Option<String>,
}

/// RSS use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Rss {
    /// Use the NICs' RSS tables when there are some and more than one worker.
    #[default]
    Auto,
    /// Never; hand-off does it.
    Off,
}

/// How a NIC builds its hash input from the fields it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RssInput {
    /// Left-out fields zeroed in place.
    #[default]
    Masked,
    /// Kept fields concatenated.
    Packed,
}

/// Worker placement.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Workers {
    /// One worker per core; worker i serves queue i of both interfaces.
    #[serde(default = "default_cores")]
    pub cores: Vec<usize>,
    /// RSS-aware ports and subscribers.
    #[serde(default)]
    pub rss: Rss,
    /// The NICs' hash input layout.
    #[serde(default)]
    pub rss_input: RssInput,
    /// An idle worker sleeps on its sockets (woken by the next frame, a
    /// hand-off or a control request; at most 100 ms) instead of polling:
    /// an idle core costs next to nothing. `false`:
    /// workers busy-poll always (a whole core each, the lowest latency).
    #[serde(default = "yes")]
    pub sleep_when_idle: bool,
    /// How long a worker that received nothing keeps polling before it
    /// sleeps, in microseconds (traffic with shorter gaps never waits for
    /// a wake-up).
    #[serde(default = "default_busy_poll_us")]
    pub busy_poll_us: u32,
    /// Entries of each AF_XDP ring (fill, completion, RX, TX; a power of
    /// two): how many frames the kernel can receive while the worker is
    /// off its CPU before it drops (`fill_ring_empty`, `rx_ring_full`).
    #[serde(default = "default_ring_size")]
    pub ring_size: u32,
    /// Frames of each worker's UMEM (2 KiB each, shared by its inside and
    /// outside sockets): with an eighth kept for hand-offs, enough for both
    /// fill rings (at least 16/7 of `ring_size`).
    #[serde(default = "default_umem_frames")]
    pub umem_frames: u32,
}

fn default_ring_size() -> u32 {
    2048
}

fn default_umem_frames() -> u32 {
    8192
}

fn default_cores() -> Vec<usize> {
    vec![1]
}

fn yes() -> bool {
    true
}

fn default_busy_poll_us() -> u32 {
    1000
}

impl Default for Workers {
    fn default() -> Self {
        Self {
            cores: default_cores(),
            rss: Rss::Auto,
            rss_input: RssInput::Masked,
            sleep_when_idle: true,
            busy_poll_us: default_busy_poll_us(),
            ring_size: default_ring_size(),
            umem_frames: default_umem_frames(),
        }
    }
}

/// How a pool hands out ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PoolMode {
    /// Carrier grade: blocks of ports per subscriber (RFC 6888, RFC 7422).
    #[default]
    PortBlocks,
    /// Home router: shared ports, the source port kept when free.
    Shared,
    /// Deterministic NAT (RFC 7422): each address of `inside` gets a fixed
    /// public address and port range by formula; no per-block records.
    Deterministic,
}

/// Inbound filtering (RFC 4787 section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Filtering {
    /// Any remote may answer a mapping (RFC 6888's recommendation).
    #[default]
    EndpointIndependent,
    /// Only addresses the subscriber sent to.
    AddressDependent,
    /// Only address and port pairs the subscriber sent to (netfilter).
    AddressAndPortDependent,
}

/// A pool of public addresses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Name (rules refer to it).
    pub name: String,
    /// Addresses: `a.b.c.d`, `a.b.c.d/len` (/16 or longer) or `first-last`.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Take the outside interface's address and follow it (MASQUERADE).
    #[serde(default)]
    pub masquerade: bool,
    /// Port range, `low-high` (default 1024-65535; 1024-32767 for
    /// masquerade, the rest stays the box's own).
    #[serde(default)]
    pub ports: Option<String>,
    /// How ports are handed out.
    #[serde(default)]
    pub mode: PoolMode,
    /// Ports per block (a multiple of 64).
    #[serde(default = "default_block_size")]
    pub block_size: u16,
    /// Deterministic pools: the inside prefix the formula maps (`a.b.c.d/len`).
    #[serde(default)]
    pub inside: Option<String>,
    /// Deterministic pools: ports per subscriber (a multiple of 64; unset:
    /// the most that fit).
    #[serde(default)]
    pub ports_per_subscriber: Option<u16>,
    /// Blocks one subscriber may hold (1-32).
    #[serde(default = "default_max_blocks")]
    pub max_blocks_per_subscriber: u16,
    /// Sessions one subscriber may hold.
    #[serde(default = "default_max_sessions_per_subscriber")]
    pub max_sessions_per_subscriber: u32,
    /// Inbound filtering.
    #[serde(default)]
    pub filtering: Filtering,
    /// Pick ports at random instead of keeping the source port.
    #[serde(default)]
    pub random_ports: bool,
    /// An even inside port gets an even public port, an odd one an odd
    /// (RFC 4787 REQ-4, for RTP/RTCP pairs; best effort: the other parity
    /// rather than a refusal when a subscriber has none left).
    #[serde(default)]
    pub port_parity: bool,
    /// What of this pool goes to the NAT log sinks (`logging.sinks`).
    #[serde(default, skip_serializing_if = "PoolLogging::is_default")]
    pub logging: PoolLogging,
    /// With `logging: sessions`, put the destination address and port in
    /// the session events (RFC 6888 REQ-12: leave it out unless needed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub log_destination: bool,
    /// Deterministic pools: a dynamic overflow (RFC 7422 section 2) on
    /// addresses of its own, handed out in port blocks once a
    /// subscriber's range is full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow: Option<Overflow>,
}

/// A deterministic pool's dynamic overflow: port blocks on its own
/// addresses (the pool's `ports` range), taken by a subscriber whose
/// deterministic range is full, logged as any port block.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Overflow {
    /// Addresses, as a pool's (none of another pool's).
    pub addresses: Vec<String>,
    /// Ports per block (a multiple of 64).
    #[serde(default = "default_overflow_block_size")]
    pub block_size: u16,
    /// Overflow blocks one subscriber may hold (1-32).
    #[serde(default = "default_overflow_blocks")]
    pub max_blocks_per_subscriber: u16,
}

fn default_overflow_block_size() -> u16 {
    64
}

fn default_overflow_blocks() -> u16 {
    4
}

/// What a pool logs (RFC 6888 REQ-12: blocks, not sessions, by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PoolLogging {
    /// Port blocks allocated and released, and refusals.
    #[default]
    Blocks,
    /// Port blocks and refusals, and every session created and deleted.
    Sessions,
    /// Nothing of this pool reaches the sinks.
    None,
}

impl PoolLogging {
    fn is_default(&self) -> bool {
        *self == Self::Blocks
    }
}

impl Pool {
    /// A pool named `name` on `addresses`, every other field at its default.
    pub fn new(name: &str, addresses: Vec<String>) -> Self {
        Self {
            name: name.to_string(),
            addresses,
            masquerade: false,
            ports: None,
            mode: PoolMode::PortBlocks,
            block_size: default_block_size(),
            inside: None,
            ports_per_subscriber: None,
            max_blocks_per_subscriber: default_max_blocks(),
            max_sessions_per_subscriber: default_max_sessions_per_subscriber(),
            filtering: Filtering::EndpointIndependent,
            random_ports: false,
            port_parity: false,
            logging: PoolLogging::Blocks,
            log_destination: false,
            overflow: None,
        }
    }
}

fn default_block_size() -> u16 {
    512
}
fn default_max_blocks() -> u16 {
    8
}
fn default_max_sessions_per_subscriber() -> u32 {
    4000
}

/// A rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Translate to the outside interface's address (or a masquerade pool).
    Masquerade,
    /// Translate into a pool.
    Snat,
    /// Leave the addresses alone, both ways: outbound, and inbound
    /// connections to the inside hosts and ports the rule names.
    NoNat,
    /// Forward outbound untranslated (the inside source is routed as it
    /// is); admits nothing inbound but the replies.
    Route,
}

/// An IP protocol a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP.
    Icmp,
    /// Any other protocol.
    Other,
}

/// A port or a `low-high` range.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PortSpec {
    /// One port.
    One(u32),
    /// `low-high`.
    Range(String),
}

impl std::fmt::Display for PortSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortSpec::One(p) => write!(f, "{p}"),
            PortSpec::Range(r) => f.write_str(r),
        }
    }
}

/// What a rule matches on a connection's first packet. Empty lists match all.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Source prefixes.
    #[serde(default)]
    pub src: Vec<String>,
    /// Sources excluded.
    #[serde(default)]
    pub src_except: Vec<String>,
    /// Destination prefixes.
    #[serde(default)]
    pub dst: Vec<String>,
    /// Destinations excluded.
    #[serde(default)]
    pub dst_except: Vec<String>,
    /// Protocols.
    #[serde(default)]
    pub protocols: Vec<Protocol>,
    /// Destination ports and ranges.
    #[serde(default)]
    pub dst_ports: Vec<PortSpec>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// What to do.
    pub action: Action,
    /// The pool (snat; optional for masquerade).
    #[serde(default)]
    pub pool: Option<String>,
    /// Conditions.
    #[serde(default, rename = "match")]
    pub matches: Match,
    /// TCP MSS clamping of the rule's connections: a size, or `auto` (the
    /// outgoing interface's MTU minus 40). Absent: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mss_clamp: Option<MssClampSpec>,
    /// Application-level gateways on the rule's connections (`[ftp]`).
    /// Empty (the default): none (RFC 4787 REQ-10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alg: Vec<Alg>,
}

/// `mss_clamp`: a size or `auto`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum MssClampSpec {
    /// A size in bytes.
    Size(u32),
    /// `auto`.
    Word(String),
}

/// An application-level gateway a rule can turn on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Alg {
    /// FTP (RFC 959, RFC 2428): PORT/EPRT rewritten, data connections admitted.
    Ftp,
}

/// A static port forward.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortForward {
    /// tcp or udp.
    pub protocol: Protocol,
    /// `ADDRESS:PORT` or `ADDRESS:LOW-HIGH` of a pool address, or
    /// `outside:PORT` (masquerade).
    pub public: String,
    /// `ADDRESS:PORT` inside, or `ADDRESS:LOW-HIGH` as long as the public
    /// range (each public port to the port at the same offset).
    pub inside: String,
    /// Application-level gateways for the server behind the forward
    /// (`[ftp]`, a tcp forward only). Empty (the default): none (RFC 4787
    /// REQ-10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alg: Vec<Alg>,
}

/// A 1:1 static NAT entry (netfilter: `snat to A` for B plus `dnat to B`
/// for A; VPP: an address-only static mapping).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticNat {
    /// The public address (in no pool).
    pub public: String,
    /// The inside host.
    pub inside: String,
    /// Application-level gateways for the host's TCP connections, either
    /// way (`[ftp]`). Empty (the default): none (RFC 4787 REQ-10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alg: Vec<Alg>,
}

/// Idle timeouts, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP established (at least 7440, RFC 5382 REQ-5).
    pub tcp_established_secs: u32,
    /// TCP opening or closing (at least 240).
    pub tcp_transitory_secs: u32,
    /// UDP (at least 120, RFC 4787 REQ-5; 300 recommended).
    pub udp_secs: u32,
    /// ICMP query (at least 60, RFC 5508 REQ-1).
    pub icmp_secs: u32,
    /// Other IP protocols (GRE, ESP, SCTP...), translated by address only
    /// (netfilter's generic timeout: 600).
    pub other_secs: u32,
    /// UDP that never saw a reply (at least 120, RFC 4787 REQ-5; at most
    /// `udp_secs`): a storm of unanswered flows gives its ports back sooner.
    pub udp_unreplied_secs: u32,
    /// A freed port is held back this long (RFC 6888 REQ-8: 120).
    pub port_hold_secs: u32,
    /// A fragment entry's life.
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

/// Table sizes, per worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tables {
    /// Sessions.
    pub max_sessions: u32,
    /// Subscribers.
    pub max_subscribers: u32,
    /// Fragments being followed.
    pub max_fragments: u32,
    /// Non-first fragments held while they wait for their first fragment
    /// (RFC 4787 REQ-14), at most; 0 holds none (they are dropped).
    pub fragment_hold: u32,
    /// Bytes those held fragments take at most (whole frames).
    pub fragment_hold_bytes: u32,
}

impl Default for Tables {
    fn default() -> Self {
        Self {
            max_sessions: 1 << 20,
            max_subscribers: 1 << 16,
            max_fragments: 4096,
            fragment_hold: 256,
            fragment_hold_bytes: 256 * 1536,
        }
    }
}

/// The control API. On loopback (the default) plain HTTP, reads open and
/// changes behind the token when one is set; anywhere else it needs a token
/// and TLS, and reads need the token too.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Control {
    /// Where the API listens.
    pub listen: String,
    /// Bearer token for calls that change state (and, off loopback, for
    /// reading sessions, config and stats).
    pub token: Option<String>,
    /// File holding the token (first line).
    pub token_file: Option<String>,
    /// A token that opens `/metrics` only (Prometheus), besides the admin token.
    pub metrics_token: Option<String>,
    /// TLS for the API (required off loopback).
    pub tls: Option<ControlTls>,
}

/// The API's certificate and key (PEM files), re-read on SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ControlTls {
    /// Certificate chain, PEM.
    pub cert: String,
    /// Private key, PEM.
    pub key: String,
}

impl Default for Control {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9091".into(), token: None, token_file: None, metrics_token: None, tls: None }
    }
}

/// Log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Errors only.
    Error,
    /// Warnings.
    Warn,
    /// The default.
    #[default]
    Info,
    /// Everything.
    Debug,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Logging {
    /// Level.
    pub level: Level,
    /// Log each session's creation and end (RFC 6888 REQ-12 style NAT logs).
    pub nat_events: bool,
    /// Where NAT events (port blocks, limits) are exported; none by default.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<LogSink>,
}

/// A NAT event sink.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LogSink {
    /// A local file, one JSON object a line, rotated by size.
    Json {
        /// The file (rotated ones get `.1`, `.2`, ... appended).
        path: String,
        /// Rotate when the file would grow past this (bytes).
        #[serde(default = "default_json_max_bytes")]
        max_bytes: u64,
        /// Rotated files kept.
        #[serde(default = "default_json_keep")]
        keep: u32,
    },
    /// Syslog RFC 5424 lines to a collector.
    Syslog {
        /// `udp` (one line a datagram) or `tcp` (octet counting, RFC 6587).
        #[serde(default)]
        transport: SyslogTransport,
        /// The collector, `host:port`.
        address: String,
        /// Lines kept while a TCP collector is away (older ones are lost, counted).
        #[serde(default = "default_syslog_buffer")]
        buffer: u32,
    },
    /// IPFIX over UDP (RFC 7011) with the NAT information elements of RFC 8158.
    Ipfix {
        /// The collector, `ip:port`.
        address: String,
        /// Observation domain id.
        #[serde(default = "default_ipfix_domain")]
        domain: u32,
        /// Templates are sent again this often (RFC 7011 section 8.4).
        #[serde(default = "default_template_refresh_secs")]
        template_refresh_secs: u32,
    },
}

fn default_ipfix_domain() -> u32 {
    1
}

fn default_template_refresh_secs() -> u32 {
    600
}

/// How syslog lines travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SyslogTransport {
    /// One line a datagram (RFC 5426).
    #[default]
    Udp,
    /// A stream, octet-counting framing (RFC 6587 section 3.4.1).
    Tcp,
}

fn default_json_max_bytes() -> u64 {
    100 << 20
}

fn default_json_keep() -> u32 {
    5
}

fn default_syslog_buffer() -> u32 {
    10_000
}

/// What to do with an inside packet whose source no rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    /// Drop it and count it (`no_rule`): no inside source reaches the
    /// internet untranslated by accident.
    #[default]
    Drop,
    /// Route it untranslated (what a plain router does).
    Route,
}

/// What to do with an outside packet whose source is an inside address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Spoofed {
    /// Drop it and count it (`spoofed`).
    #[default]
    Drop,
    /// Let it through (only if inside prefixes are also used outside).
    Allow,
}

/// The edges of the box: anti-spoofing both ways.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Boundary {
    /// Inside packets whose source matches no rule.
    pub unmatched_inside: Unmatched,
    /// Outside packets with a source in an inside prefix.
    pub spoofed_outside: Spoofed,
    /// The inside prefixes; empty: every rule's `match.src`.
    pub inside_prefixes: Vec<String>,
}

/// One kind of connection the box accepts from outside to itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// Source prefixes (empty: any).
    #[serde(default)]
    pub src: Vec<String>,
    /// tcp or udp.
    pub protocol: Protocol,
    /// Ports and ranges of the box's own services.
    pub ports: Vec<PortSpec>,
}

/// The box's own services, seen from outside.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Management {
    /// Answer pings to the box's outside address.
    pub icmp_echo: bool,
    /// New connections from outside the box accepts (SSH, say); everything
    /// else new is dropped and counted. Replies to the box's own
    /// connections always reach it.
    pub allow: Vec<Allow>,
}

impl Default for Management {
    fn default() -> Self {
        Self { icmp_echo: true, allow: Vec::new() }
    }
}
