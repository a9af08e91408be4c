//! The `masq` command line: its subcommands and flags (clap), as the
//! binary's `--help` shows them. `main.rs` turns them into a configuration
//! and the library's plans.

use clap::{Parser, Subcommand};

/// masq: a carrier-grade NAT44 in user space (AF_XDP, per-core workers).
#[derive(Parser)]
#[command(version, about = "masq: a carrier-grade NAT44 in user space (AF_XDP, per-core workers, netfilter semantics)", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Forward between an inside and an outside interface, translating
    /// inside sources into a pool (SNAT) or the outside address (MASQUERADE).
    ///
    /// The set-up comes from --config FILE, or from the quick flags
    /// (--inside, --outside, --pool or --masquerade, ...), or, with
    /// neither, from the embedded default (the namespace lab's,
    /// `masq default-config` prints it). Examples:
    ///   masq run --config /etc/masq/masq.yaml
    ///   masq run --inside nat-in --outside nat-out --pool 203.0.113.10 --nat-src 100.64.0.0/10 --live
    #[command(verbatim_doc_comment)]
    Run(Box<RunArgs>),
    /// Validate configuration files: prints `FILE: OK`, or every error as
    /// `FILE:LINE:COLUMN: KEY.PATH: message`. Exit status 1 if any is bad.
    CheckConfig {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Print the embedded default configuration (a starting point).
    DefaultConfig,
    /// List sessions, like `conntrack -L` (ask a running masq).
    Sessions(SessionArgs),
    /// Remove sessions, like `conntrack -D`; all of them without filters.
    Flush(SessionArgs),
    /// Send a configuration to a running masq; errors come back with their lines.
    Push {
        /// The YAML file.
        file: std::path::PathBuf,
        #[command(flatten)]
        conn: ApiArgs,
    },
    /// Who held a public address and port: a deterministic pool (RFC 7422)
    /// answers from the configuration's formula (`--config`), no running
    /// masq needed; a running masq from its live tables (`--live`, the
    /// default when neither --config nor --log is given: the block or range
    /// holding the port now and the sessions on it); other pools from the
    /// JSON-lines NAT log (`--log`, `logging.sinks: [{kind: json, ...}]`)
    /// and its rotations, at a time (RFC 6888 REQ-12): the subscriber whose
    /// port block covered the port. Sources are asked in that order
    /// (formula, live, log) until one names a subscriber. Exit status 0:
    /// found; 1: nobody held it; 2: the question, the log or masq cannot
    /// be read. Examples:
    ///   masq whois 203.0.113.7:40123                   # ask the running masq
    ///   masq whois --subscriber 100.64.0.7 --json      # its blocks now
    ///   masq whois --config /etc/masq/masq.yaml 198.51.100.3:5000
    ///   masq whois --config /etc/masq/masq.yaml --subscriber 100.64.0.7 --json
    ///   masq whois 203.0.113.7 40123 --log /var/log/masq/nat.jsonl --at 2026-11-30T14:02:11Z
    #[command(verbatim_doc_comment)]
    Whois(WhoisArgs),
    /// Tell a running masq of an HA pair its role (keepalived's notify
    /// script runs this on each VRRP transition). Example:
    ///   masq role active --token-file /etc/masq/token
    #[command(verbatim_doc_comment)]
    Role {
        /// `active` (forward, and stream state to the standby) or `standby`
        /// (forward nothing, follow the active peer).
        #[arg(value_parser = ["active", "standby"])]
        role: String,
        /// Read the token from this file's first line (instead of --token).
        #[arg(long, value_name = "FILE")]
        token_file: Option<std::path::PathBuf>,
        #[command(flatten)]
        conn: ApiArgs,
    },
    /// A live per-second view of a running masq: pps, drops by reason,
    /// sessions, port blocks.
    Stats {
        /// Print one view and exit.
        #[arg(long)]
        once: bool,
        #[command(flatten)]
        conn: ApiArgs,
    },
}

/// `masq whois`'s question.
#[derive(clap::Args)]
pub struct WhoisArgs {
    /// The public address and port, `ADDR:PORT` (or `ADDR` and the port next).
    #[arg(required_unless_present = "subscriber", conflicts_with = "subscriber")]
    pub target: Option<String>,
    /// The port, when the address is given alone.
    pub port: Option<u16>,
    /// The configuration in force: its deterministic pools answer from their formula.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// A JSON-lines NAT log file (its rotations FILE.1, FILE.2, ... are read
    /// too); repeatable: answers for port-block and shared pools.
    #[arg(long = "log", value_name = "FILE")]
    pub log: Vec<std::path::PathBuf>,
    /// Ask the running masq's live tables (`GET /whois`) as well; the
    /// default when neither --config nor --log is given.
    #[arg(long)]
    pub live: bool,
    /// When, for `--log`: `YYYY-MM-DDTHH:MM:SS[.mmm]Z` (UTC) or milliseconds
    /// since the epoch; now by default. The live tables answer for now only:
    /// with --at they are not asked.
    #[arg(long)]
    pub at: Option<String>,
    /// Ask the other way: where this inside address's ports are
    /// (deterministic pools from --config, or the running masq's blocks now).
    #[arg(long, value_name = "INSIDE_IP")]
    pub subscriber: Option<std::net::Ipv4Addr>,
    /// Print JSON instead of a sentence.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ApiArgs,
}

/// How to reach a running masq.
#[derive(clap::Args)]
pub struct ApiArgs {
    /// Its control API.
    #[arg(long, default_value = "127.0.0.1:9091")]
    pub api: std::net::SocketAddr,
    /// Bearer token (for flush and push when masq has one, and for
    /// everything when its API is off loopback); or MASQ_TOKEN.
    #[arg(long, env = "MASQ_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Speak TLS, trusting the CA certificate(s) in this PEM file (an API
    /// off loopback speaks only TLS).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// The name the server's certificate must carry (default: --api's address).
    #[arg(long, value_name = "NAME", requires = "ca")]
    pub server_name: Option<String>,
}

impl ApiArgs {
    /// The API these flags name.
    pub fn api(&self) -> Result<control::client::Api, control::client::ClientError> {
        control::client::Api::new(self.api, self.token.clone(), self.ca.as_deref(), self.server_name.as_deref())
    }
}

/// Session filters; all given must match.
#[derive(clap::Args)]
pub struct SessionArgs {
    /// Inside (subscriber) address.
    #[arg(long)]
    pub subscriber: Option<String>,
    /// Public address.
    #[arg(long)]
    pub public: Option<String>,
    /// tcp, udp, icmp or a protocol number.
    #[arg(long)]
    pub protocol: Option<String>,
    /// State: established, syn_sent, udp, icmp, ... (as listed).
    #[arg(long)]
    pub state: Option<String>,
    #[command(flatten)]
    pub conn: ApiArgs,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The YAML configuration (see config/examples/).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["inside", "outside", "pool", "masquerade"])]
    pub config: Option<std::path::PathBuf>,
    /// Quick set-up: interface facing the subscribers.
    #[arg(long, requires = "outside")]
    pub inside: Option<String>,
    /// Quick set-up: interface facing the internet.
    #[arg(long, requires = "inside")]
    pub outside: Option<String>,
    /// Cores for the workers, one worker per core (worker i serves queue i
    /// of both interfaces); overrides the configuration's. The control
    /// thread takes a core no worker uses.
    #[arg(long, value_delimiter = ',')]
    pub cores: Option<Vec<usize>>,
    /// Quick set-up: public addresses of the SNAT pool, an address, a
    /// prefix (/16 or longer) or FIRST-LAST (repeat for more); the outside
    /// router must route them to this box.
    #[arg(long = "pool", value_name = "ADDR[/LEN]")]
    pub pool: Vec<String>,
    /// Translate to the outside interface's address instead (MASQUERADE).
    /// Its NAT ports are --masq-ports; the others stay the kernel's.
    #[arg(long, conflicts_with = "pool")]
    pub masquerade: bool,
    /// Quick set-up: port range a masquerade address lends to the NAT.
    #[arg(long, default_value = "1024-32767")]
    pub masq_ports: String,
    /// Quick set-up: sources to translate (repeat); default: all.
    #[arg(long = "nat-src", value_name = "PREFIX")]
    pub nat_src: Vec<String>,
    /// Quick set-up: destinations exempt from NAT (a no_nat rule ahead of the translation; repeat).
    #[arg(long = "no-nat-dst", value_name = "PREFIX")]
    pub no_nat_dst: Vec<String>,
    /// Quick set-up: sources exempt from NAT (a no_nat rule ahead of the translation; repeat).
    #[arg(long = "no-nat-src", value_name = "PREFIX")]
    pub no_nat_src: Vec<String>,
    /// Quick set-up: a static port forward, PROTO:PUBLIC:PORT=INSIDE:PORT
    /// (tcp or udp; ports may be LOW-HIGH ranges; repeat).
    #[arg(long = "forward", value_name = "SPEC", value_parser = parse_forward)]
    pub forward: Vec<config::PortForward>,
    /// Quick set-up: 1:1 static NAT, PUBLIC=INSIDE (every port and
    /// protocol, both ways; the public address in no pool; repeat).
    #[arg(long = "static-nat", value_name = "PUBLIC=INSIDE", value_parser = parse_static)]
    pub static_nat: Vec<config::StaticNat>,
    /// Quick set-up: a service of the box itself that outside hosts may
    /// connect to, `PROTO:PORTS[@PREFIX]` (e.g. `tcp:22@198.51.100.0/24`;
    /// repeat). Nothing else new from outside reaches the box; pings do
    /// (management.icmp_echo).
    #[arg(long = "allow", value_name = "SPEC", value_parser = parse_allow)]
    pub allow: Vec<config::Allow>,
    /// Forward without NAT (route only): the I/O ceiling, for comparisons.
    #[arg(long)]
    pub no_nat: bool,
    /// Sessions per worker; overrides the configuration's.
    #[arg(long)]
    pub max_sessions: Option<u32>,
    /// Quick set-up: next-hop MAC for everything sent inside (overrides the neighbour table).
    #[arg(long)]
    pub inside_mac: Option<String>,
    /// Quick set-up: next-hop MAC for everything sent outside.
    #[arg(long)]
    pub outside_mac: Option<String>,
    /// RSS-aware ports: read the outside NIC's RSS key and indirection table
    /// (`ethtool -x`) and give each worker the public ports whose replies the
    /// NIC delivers to its queue, so out-to-in traffic needs no hand-off.
    /// Set the NIC to hash replies on destination address and port first:
    /// `ethtool -N OUTSIDE rx-flow-hash udp4 dn` (and tcp4). `auto` uses it
    /// when the NIC reports RSS and there is more than one worker; veth has none.
    /// Overrides the configuration's `workers.rss`.
    #[arg(long, value_enum)]
    pub rss: Option<RssMode>,
    /// How the NIC builds the hash input from the fields it keeps: zeroed in
    /// place (`masked`, Intel's input-set masking) or concatenated
    /// (`packed`); overrides `workers.rss_input`.
    #[arg(long, value_enum)]
    pub rss_input: Option<RssInput>,
    /// The control API's address; overrides `control.listen`.
    #[arg(long, value_name = "ADDR:PORT")]
    pub api: Option<std::net::SocketAddr>,
    /// Run without the control API.
    #[arg(long)]
    pub no_api: bool,
    /// Print one line of counters every second.
    #[arg(long)]
    pub live: bool,
    /// Stop after this many seconds (default: at SIGINT/SIGTERM).
    #[arg(long)]
    pub duration: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RssMode {
    Auto,
    Off,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RssInput {
    Masked,
    Packed,
}

fn parse_allow(s: &str) -> Result<config::Allow, String> {
    let bad = || format!("{s}: expected PROTO:PORTS[@PREFIX], e.g. tcp:22@198.51.100.0/24 or udp:161");
    let (spec, src) = match s.split_once('@') {
        Some((spec, src)) => (spec, vec![src.to_string()]),
        None => (s, Vec::new()),
    };
    let (proto, ports) = spec.split_once(':').ok_or_else(bad)?;
    let protocol = match proto {
        "tcp" => config::Protocol::Tcp,
        "udp" => config::Protocol::Udp,
        _ => return Err(bad()),
    };
    Ok(config::Allow { src, protocol, ports: vec![config::PortSpec::Range(ports.to_string())] })
}

fn parse_static(s: &str) -> Result<config::StaticNat, String> {
    let (public, inside) =
        s.split_once('=').ok_or_else(|| format!("{s}: expected PUBLIC=INSIDE, e.g. 203.0.113.20=100.64.0.2"))?;
    Ok(config::StaticNat { public: public.to_string(), inside: inside.to_string(), alg: Vec::new() })
}

fn parse_forward(s: &str) -> Result<config::PortForward, String> {
    let bad = || format!("{s}: expected PROTO:PUBLIC:PORT=INSIDE:PORT, e.g. tcp:203.0.113.10:8080=100.64.0.2:80");
    let (lhs, inside) = s.split_once('=').ok_or_else(bad)?;
    let (proto, public) = lhs.split_once(':').ok_or_else(bad)?;
    let protocol = match proto {
        "tcp" => config::Protocol::Tcp,
        "udp" => config::Protocol::Udp,
        _ => return Err(bad()),
    };
    Ok(config::PortForward { protocol, public: public.to_string(), inside: inside.to_string(), alg: Vec::new() })
}
