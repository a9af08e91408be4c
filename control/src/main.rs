//! `masq`: the one binary. `masq run` forwards between two interfaces
//! through AF_XDP workers; the YAML config, control API and the other
//! operator subcommands arrive with the config/control issue (#5), and until
//! then `run` takes its pools and rules as flags.

mod run;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use dataplane::nat::{proto, EngineParams, Forward, PoolMode, PoolParams, Prefix, Rule, RuleAction, RuleMatch};
use std::time::Duration;

/// masq: a carrier-grade NAT44 in user space (AF_XDP, per-core workers).
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Forward between an inside and an outside interface, translating
    /// inside sources into a pool (SNAT) or the outside address (MASQUERADE).
    ///
    /// Example (the lab): masq run --inside nat-in --outside nat-out
    /// --pool 203.0.113.10 --nat-src 100.64.0.0/10 --live
    #[command(verbatim_doc_comment)]
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Interface facing the subscribers.
    #[arg(long)]
    inside: String,
    /// Interface facing the internet.
    #[arg(long)]
    outside: String,
    /// Cores for the workers, one worker per core (worker i serves queue i
    /// of both interfaces). The control thread stays on the calling thread.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    cores: Vec<usize>,
    /// Public addresses of the SNAT pool: an address or a prefix, every
    /// address of which is used (repeat for more); the outside router must
    /// route them to this box.
    #[arg(long = "pool", value_name = "ADDR[/LEN]", value_parser = parse_pool)]
    pool: Vec<Prefix>,
    /// Translate to the outside interface's address instead (MASQUERADE).
    /// Its NAT ports are --masq-ports; the others stay the kernel's.
    #[arg(long, conflicts_with = "pool")]
    masquerade: bool,
    /// Port range a masquerade address lends to the NAT.
    #[arg(long, default_value = "1024-32767", value_parser = parse_range)]
    masq_ports: (u16, u16),
    /// Sources to translate (repeat); default: all.
    #[arg(long = "nat-src", value_name = "PREFIX", value_parser = parse_prefix)]
    nat_src: Vec<Prefix>,
    /// Destinations exempt from NAT (a no_nat rule ahead of the translation; repeat).
    #[arg(long = "no-nat-dst", value_name = "PREFIX", value_parser = parse_prefix)]
    no_nat_dst: Vec<Prefix>,
    /// Sources exempt from NAT (a no_nat rule ahead of the translation; repeat).
    #[arg(long = "no-nat-src", value_name = "PREFIX", value_parser = parse_prefix)]
    no_nat_src: Vec<Prefix>,
    /// A static port forward, PROTO:PUBLIC:PORT=INSIDE:PORT (tcp or udp; repeat).
    #[arg(long = "forward", value_name = "SPEC", value_parser = parse_forward)]
    forward: Vec<Forward>,
    /// Forward without NAT (route only): the I/O ceiling, for comparisons.
    #[arg(long)]
    no_nat: bool,
    /// Sessions per worker.
    #[arg(long, default_value_t = 1 << 20)]
    max_sessions: u32,
    /// Next-hop MAC for everything sent inside (overrides the neighbour table).
    #[arg(long, value_parser = parse_mac_arg)]
    inside_mac: Option<[u8; 6]>,
    /// Next-hop MAC for everything sent outside (overrides the neighbour table).
    #[arg(long, value_parser = parse_mac_arg)]
    outside_mac: Option<[u8; 6]>,
    /// RSS-aware ports: read the outside NIC's RSS key and indirection table
    /// (`ethtool -x`) and give each worker the public ports whose replies the
    /// NIC delivers to its queue, so out-to-in traffic needs no hand-off.
    /// Set the NIC to hash replies on destination address and port first:
    /// `ethtool -N OUTSIDE rx-flow-hash udp4 dn` (and tcp4). `auto` uses it
    /// when the NIC reports RSS and there is more than one worker; veth has none.
    #[arg(long, value_enum, default_value = "auto")]
    rss: RssMode,
    /// How the NIC builds the hash input from the fields it keeps: zeroed in
    /// place (`masked`, Intel's input-set masking) or concatenated (`packed`).
    #[arg(long, value_enum, default_value = "masked")]
    rss_input: RssInput,
    /// Print one line of counters every second.
    #[arg(long)]
    live: bool,
    /// Stop after this many seconds (default: at SIGINT/SIGTERM).
    #[arg(long)]
    duration: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RssMode {
    Auto,
    Off,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RssInput {
    Masked,
    Packed,
}

/// A NIC's RSS set-up, when `--rss auto` finds one worth using.
fn nic_rss(a: &RunArgs, iface: &str) -> Option<dataplane::rss::Rss> {
    if a.rss == RssMode::Off || a.cores.len() < 2 {
        return None;
    }
    let out = std::process::Command::new("ethtool").args(["-x", iface]).output().ok()?;
    if !out.status.success() {
        eprintln!("masq: {iface}: no RSS table (ethtool -x); frames reach their worker by hand-off");
        return None;
    }
    let input = match a.rss_input {
        RssInput::Masked => dataplane::rss::InputSet::Masked,
        RssInput::Packed => dataplane::rss::InputSet::Packed,
    };
    let rss = dataplane::rss::parse_ethtool_x(&String::from_utf8_lossy(&out.stdout), input)?;
    let queues = rss.indirection.iter().copied().max().map_or(0, |q| usize::from(q) + 1);
    if queues > a.cores.len() {
        eprintln!(
            "masq: warning: {iface} spreads over {queues} queues but {} workers serve queues 0..{}; what hashes elsewhere is handed off or unused",
            a.cores.len(),
            a.cores.len() - 1
        );
    }
    Some(rss)
}

fn parse_prefix(s: &str) -> Result<Prefix, String> {
    let (a, l) = s.split_once('/').unwrap_or((s, "32"));
    let a: std::net::Ipv4Addr = a.parse().map_err(|e| format!("{s}: {e}"))?;
    let l: u8 = l.parse().map_err(|e| format!("{s}: prefix length: {e}"))?;
    if l > 32 {
        return Err(format!("{s}: prefix length above 32"));
    }
    Ok(Prefix::new(u32::from(a), l))
}

fn parse_pool(s: &str) -> Result<Prefix, String> {
    let p = parse_prefix(s)?;
    if p.len < 16 {
        return Err(format!("{s}: a pool prefix of at most 65536 addresses (/16 or longer)"));
    }
    Ok(p)
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').ok_or_else(|| format!("{s}: expected LOW-HIGH"))?;
    let (a, b): (u16, u16) = (a.parse().map_err(|e| format!("{s}: {e}"))?, b.parse().map_err(|e| format!("{s}: {e}"))?);
    if a == 0 || a > b {
        return Err(format!("{s}: need 1 <= LOW <= HIGH"));
    }
    Ok((a, b))
}

fn parse_mac_arg(s: &str) -> Result<[u8; 6], String> {
    dataplane::l2::parse_mac(s).ok_or_else(|| format!("{s}: expected aa:bb:cc:dd:ee:ff"))
}

fn parse_forward(s: &str) -> Result<Forward, String> {
    let bad = || format!("{s}: expected PROTO:PUBLIC:PORT=INSIDE:PORT, e.g. tcp:203.0.113.10:8080=100.64.0.2:80");
    let (lhs, rhs) = s.split_once('=').ok_or_else(bad)?;
    let mut l = lhs.split(':');
    let protocol = match l.next() {
        Some("tcp") => 6,
        Some("udp") => 17,
        _ => return Err(bad()),
    };
    let public_addr: std::net::Ipv4Addr = l.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let public_port: u16 = l.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let (ia, ip) = rhs.split_once(':').ok_or_else(bad)?;
    let inside_addr: std::net::Ipv4Addr = ia.parse().map_err(|_| bad())?;
    let inside_port: u16 = ip.parse().map_err(|_| bad())?;
    Ok(Forward { protocol, public_addr: public_addr.into(), public_port, inside_addr: inside_addr.into(), inside_port })
}

fn engine_params(a: &RunArgs) -> Result<Option<EngineParams>> {
    if a.no_nat {
        return Ok(None);
    }
    let pool = if a.masquerade {
        let addr = *run::interface_addrs(&a.outside)?
            .first()
            .with_context(|| format!("--masquerade: {} has no IPv4 address", a.outside))?;
        let mut p = PoolParams::masquerade("masquerade", addr);
        (p.port_min, p.port_max) = a.masq_ports;
        p
    } else {
        if a.pool.is_empty() {
            bail!("give a pool (--pool ADDR), --masquerade or --no-nat");
        }
        let addrs: Vec<u32> = a.pool.iter().flat_map(|p| p.addr..=p.last()).collect();
        let mut pool = PoolParams::cgnat("pool", addrs);
        if let (Some(rss), PoolMode::PortBlocks { block_size, .. }) = (nic_rss(a, &a.outside), pool.mode) {
            let workers = u16::try_from(a.cores.len())?;
            pool.port_orders = pool
                .addresses
                .iter()
                .map(|&ip| dataplane::rss::port_order(&rss, ip, pool.port_min, pool.port_max, block_size, workers))
                .collect();
            let usable: usize = pool.port_orders.iter().map(Vec::len).sum();
            eprintln!("masq: RSS-aware ports: {usable} of the pool's ports, each owned by the worker whose queue its replies reach");
        }
        pool
    };
    let mut rules = Vec::new();
    if !a.no_nat_dst.is_empty() {
        rules.push(Rule {
            matches: RuleMatch { dst: a.no_nat_dst.clone(), ..Default::default() },
            action: RuleAction::NoNat,
        });
    }
    if !a.no_nat_src.is_empty() {
        rules.push(Rule {
            matches: RuleMatch { src: a.no_nat_src.clone(), ..Default::default() },
            action: RuleAction::NoNat,
        });
    }
    rules.push(Rule {
        matches: RuleMatch { src: a.nat_src.clone(), protocols: proto::ALL, ..Default::default() },
        action: RuleAction::Translate { pool: 0 },
    });
    let mut p = EngineParams::single(vec![pool], rules);
    p.max_sessions = a.max_sessions;
    p.max_subscribers = (a.max_sessions / 4).max(1024);
    p.forwards = a.forward.clone();
    p.steering = nic_rss(a, &a.inside).map(|rss| {
        eprintln!("masq: RSS-aware subscribers: each belongs to the worker whose queue {} delivers it to", a.inside);
        dataplane::rss::SubscriberSteering::new(&rss)
    });
    p.local_addrs = run::interface_addrs(&a.inside)?.into_iter().chain(run::interface_addrs(&a.outside)?).collect();
    p.seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()) ^ d.as_secs().rotate_left(32))
        .unwrap_or(1)
        ^ u64::from(std::process::id()) << 32;
    Ok(Some(p))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run(a) => {
            let engine = engine_params(&a)?;
            run::run(run::RunPlan {
                inside: a.inside.clone(),
                outside: a.outside.clone(),
                cores: a.cores.clone(),
                engine,
                static_macs: [a.inside_mac, a.outside_mac],
                live: a.live,
                duration: a.duration.map(Duration::from_secs),
            })
        }
    }
}
