//! `masq`: the one binary. `masq run` forwards between two interfaces
//! through AF_XDP workers on a YAML configuration (`--config FILE`, or the
//! embedded default: the namespace lab's), or on a quick set-up given as
//! flags, and serves the control API; `masq check-config` validates files;
//! `sessions`, `flush`, `push` and `stats` ask a running masq through its
//! API. This file parses the command line and turns it into the library's
//! plans (`control::run::RunPlan`); `anyhow` is used here and nowhere else.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use control::{client, params, run, system};
use std::time::Duration;

/// masq: a carrier-grade NAT44 in user space (AF_XDP, per-core workers).
#[derive(Parser)]
#[command(version, about = "masq: a carrier-grade NAT44 in user space (AF_XDP, per-core workers, netfilter semantics)", long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
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

/// How to reach a running masq.
#[derive(clap::Args)]
struct ApiArgs {
    /// Its control API.
    #[arg(long, default_value = "127.0.0.1:9091")]
    api: std::net::SocketAddr,
    /// Bearer token (for flush and push when masq has one); or MASQ_TOKEN.
    #[arg(long, env = "MASQ_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Session filters; all given must match.
#[derive(clap::Args)]
struct SessionArgs {
    /// Inside (subscriber) address.
    #[arg(long)]
    subscriber: Option<String>,
    /// Public address.
    #[arg(long)]
    public: Option<String>,
    /// tcp, udp, icmp or a protocol number.
    #[arg(long)]
    protocol: Option<String>,
    /// State: established, syn_sent, udp, icmp, ... (as listed).
    #[arg(long)]
    state: Option<String>,
    #[command(flatten)]
    conn: ApiArgs,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The YAML configuration (see config/examples/).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["inside", "outside", "pool", "masquerade"])]
    config: Option<std::path::PathBuf>,
    /// Quick set-up: interface facing the subscribers.
    #[arg(long, requires = "outside")]
    inside: Option<String>,
    /// Quick set-up: interface facing the internet.
    #[arg(long, requires = "inside")]
    outside: Option<String>,
    /// Cores for the workers, one worker per core (worker i serves queue i
    /// of both interfaces); overrides the configuration's. The control
    /// thread takes a core no worker uses.
    #[arg(long, value_delimiter = ',')]
    cores: Option<Vec<usize>>,
    /// Quick set-up: public addresses of the SNAT pool, an address, a
    /// prefix (/16 or longer) or FIRST-LAST (repeat for more); the outside
    /// router must route them to this box.
    #[arg(long = "pool", value_name = "ADDR[/LEN]")]
    pool: Vec<String>,
    /// Translate to the outside interface's address instead (MASQUERADE).
    /// Its NAT ports are --masq-ports; the others stay the kernel's.
    #[arg(long, conflicts_with = "pool")]
    masquerade: bool,
    /// Quick set-up: port range a masquerade address lends to the NAT.
    #[arg(long, default_value = "1024-32767")]
    masq_ports: String,
    /// Quick set-up: sources to translate (repeat); default: all.
    #[arg(long = "nat-src", value_name = "PREFIX")]
    nat_src: Vec<String>,
    /// Quick set-up: destinations exempt from NAT (a no_nat rule ahead of the translation; repeat).
    #[arg(long = "no-nat-dst", value_name = "PREFIX")]
    no_nat_dst: Vec<String>,
    /// Quick set-up: sources exempt from NAT (a no_nat rule ahead of the translation; repeat).
    #[arg(long = "no-nat-src", value_name = "PREFIX")]
    no_nat_src: Vec<String>,
    /// Quick set-up: a static port forward, PROTO:PUBLIC:PORT=INSIDE:PORT (tcp or udp; repeat).
    #[arg(long = "forward", value_name = "SPEC", value_parser = parse_forward)]
    forward: Vec<config::PortForward>,
    /// Forward without NAT (route only): the I/O ceiling, for comparisons.
    #[arg(long)]
    no_nat: bool,
    /// Sessions per worker; overrides the configuration's.
    #[arg(long)]
    max_sessions: Option<u32>,
    /// Quick set-up: next-hop MAC for everything sent inside (overrides the neighbour table).
    #[arg(long)]
    inside_mac: Option<String>,
    /// Quick set-up: next-hop MAC for everything sent outside.
    #[arg(long)]
    outside_mac: Option<String>,
    /// RSS-aware ports: read the outside NIC's RSS key and indirection table
    /// (`ethtool -x`) and give each worker the public ports whose replies the
    /// NIC delivers to its queue, so out-to-in traffic needs no hand-off.
    /// Set the NIC to hash replies on destination address and port first:
    /// `ethtool -N OUTSIDE rx-flow-hash udp4 dn` (and tcp4). `auto` uses it
    /// when the NIC reports RSS and there is more than one worker; veth has none.
    /// Overrides the configuration's `workers.rss`.
    #[arg(long, value_enum)]
    rss: Option<RssMode>,
    /// How the NIC builds the hash input from the fields it keeps: zeroed in
    /// place (`masked`, Intel's input-set masking) or concatenated
    /// (`packed`); overrides `workers.rss_input`.
    #[arg(long, value_enum)]
    rss_input: Option<RssInput>,
    /// The control API's address; overrides `control.listen`.
    #[arg(long, value_name = "ADDR:PORT")]
    api: Option<std::net::SocketAddr>,
    /// Run without the control API.
    #[arg(long)]
    no_api: bool,
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

fn parse_forward(s: &str) -> Result<config::PortForward, String> {
    let bad = || format!("{s}: expected PROTO:PUBLIC:PORT=INSIDE:PORT, e.g. tcp:203.0.113.10:8080=100.64.0.2:80");
    let (lhs, inside) = s.split_once('=').ok_or_else(bad)?;
    let (proto, public) = lhs.split_once(':').ok_or_else(bad)?;
    let protocol = match proto {
        "tcp" => config::Protocol::Tcp,
        "udp" => config::Protocol::Udp,
        _ => return Err(bad()),
    };
    Ok(config::PortForward { protocol, public: public.to_string(), inside: inside.to_string() })
}

/// The quick set-up's flags as a configuration (validated like a file).
fn quick_config(a: &RunArgs, inside: &str, outside: &str) -> Result<config::Config> {
    use config::{Action, Config, Match, Pool, Rule};
    let mut pools = Vec::new();
    let mut rules = Vec::new();
    if !a.no_nat_dst.is_empty() {
        rules.push(Rule {
            action: Action::NoNat,
            pool: None,
            matches: Match { dst: a.no_nat_dst.clone(), ..Match::default() },
        });
    }
    if !a.no_nat_src.is_empty() {
        rules.push(Rule {
            action: Action::NoNat,
            pool: None,
            matches: Match { src: a.no_nat_src.clone(), ..Match::default() },
        });
    }
    let nat = Match { src: a.nat_src.clone(), ..Match::default() };
    if a.masquerade {
        let mut p = Pool::new("masquerade", Vec::new());
        p.masquerade = true;
        p.ports = Some(a.masq_ports.clone());
        p.mode = config::PoolMode::Shared;
        p.filtering = config::Filtering::AddressAndPortDependent;
        p.max_sessions_per_subscriber = u32::MAX;
        pools.push(p);
        rules.push(Rule { action: Action::Masquerade, pool: Some("masquerade".into()), matches: nat });
    } else if !a.pool.is_empty() {
        pools.push(Pool::new("pool", a.pool.clone()));
        rules.push(Rule { action: Action::Snat, pool: Some("pool".into()), matches: nat });
    } else if !a.no_nat {
        bail!("give a pool (--pool ADDR), --masquerade or --no-nat, or a --config file");
    } else {
        rules.push(Rule { action: Action::NoNat, pool: None, matches: Match::default() });
    }
    Ok(Config {
        interfaces: config::Interfaces {
            inside: inside.to_string(),
            outside: outside.to_string(),
            inside_mac: a.inside_mac.clone(),
            outside_mac: a.outside_mac.clone(),
        },
        workers: config::Workers::default(),
        pools,
        rules,
        forwards: a.forward.clone(),
        timeouts: config::Timeouts::default(),
        tables: config::Tables::default(),
        control: config::Control::default(),
        logging: config::Logging::default(),
    })
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn print_errors(file: &str, errors: &[config::ConfigError]) {
    for e in errors {
        eprintln!("{file}:{e}");
    }
}

/// The validated configuration `masq run` uses, flags' overrides applied
/// (errors still point into the file).
fn run_config(a: &RunArgs) -> Result<config::ValidConfig> {
    let parse = |name: &str, text: &str| -> Result<(config::Config, config::Positions)> {
        // Parsed with no core limit: the cores are checked after --cores.
        match config::load(text, usize::MAX) {
            Ok(v) => Ok((v.raw, config::Positions::of(text))),
            Err(errors) => {
                print_errors(name, &errors);
                bail!("{name}: {} error(s)", errors.len());
            }
        }
    };
    let (name, (mut raw, positions)) = match (&a.config, &a.inside, &a.outside) {
        (Some(f), _, _) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let name = f.display().to_string();
            let parsed = parse(&name, &text)?;
            (name, parsed)
        }
        (None, Some(i), Some(o)) => ("flags".to_string(), (quick_config(a, i, o)?, config::Positions::default())),
        _ => ("embedded default".to_string(), parse("embedded default", config::DEFAULT_YAML)?),
    };
    if let Some(c) = &a.cores {
        raw.workers.cores = c.clone();
    }
    if let Some(n) = a.max_sessions {
        raw.tables.max_sessions = n;
    }
    if let Some(r) = a.rss {
        raw.workers.rss = match r {
            RssMode::Auto => config::Rss::Auto,
            RssMode::Off => config::Rss::Off,
        };
    }
    if let Some(r) = a.rss_input {
        raw.workers.rss_input = match r {
            RssInput::Masked => config::RssInput::Masked,
            RssInput::Packed => config::RssInput::Packed,
        };
    }
    config::validate(raw, &positions, cpus()).map_err(|errors| {
        print_errors(&name, &errors);
        anyhow::anyhow!("{name}: {} error(s)", errors.len())
    })
}

fn check_config(files: &[std::path::PathBuf]) -> Result<()> {
    let mut bad = 0;
    for f in files {
        let name = f.display().to_string();
        match std::fs::read_to_string(f) {
            Err(e) => {
                eprintln!("{name}: {e}");
                bad += 1;
            }
            Ok(text) => match config::load(&text, cpus()) {
                Ok(_) => println!("{name}: OK"),
                Err(errors) => {
                    print_errors(&name, &errors);
                    bad += 1;
                }
            },
        }
    }
    if bad > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// Log lines on stderr (journald takes them under systemd), at the
/// configured level.
fn init_logging(level: config::Level) {
    use std::io::IsTerminal;
    let max = match level {
        config::Level::Error => tracing::Level::ERROR,
        config::Level::Warn => tracing::Level::WARN,
        config::Level::Info => tracing::Level::INFO,
        config::Level::Debug => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(max)
        .with_target(true)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::CheckConfig { files } => check_config(&files),
        Cmd::Sessions(f) => {
            let q = client::filters(&f.subscriber, &f.public, &f.protocol, &f.state);
            let (st, body) = client::request(f.conn.api, "GET", &format!("/sessions{q}"), None, "")?;
            Ok(client::finish(st, &body)?)
        }
        Cmd::Flush(f) => {
            let q = client::filters(&f.subscriber, &f.public, &f.protocol, &f.state);
            let (st, body) =
                client::request(f.conn.api, "DELETE", &format!("/sessions{q}"), f.conn.token.as_deref(), "")?;
            Ok(client::finish(st, &body)?)
        }
        Cmd::Push { file, conn } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let (st, body) = client::request(conn.api, "PUT", "/config", conn.token.as_deref(), &text)?;
            // The API names the file `config`; say which one it was.
            let body = body.replace("config:", &format!("{}:", file.display()));
            Ok(client::finish(st, &body)?)
        }
        Cmd::Stats { once, conn } => Ok(client::stats(conn.api, once)?),
        Cmd::DefaultConfig => {
            print!("{}", config::DEFAULT_YAML);
            Ok(())
        }
        Cmd::Run(a) => {
            let v = run_config(&a)?;
            init_logging(v.raw.logging.level);
            let ifs = &v.raw.interfaces;
            let in_addrs = system::interface_addrs(&ifs.inside)?;
            let out_addrs = system::interface_addrs(&ifs.outside)?;
            let locals: Vec<u32> = in_addrs.iter().chain(&out_addrs).copied().collect();
            let engine = if a.no_nat {
                None
            } else {
                Some(params::engine_params(&v, out_addrs.first().copied(), locals.clone())?)
            };
            let mac = |m: &Option<String>| m.as_deref().and_then(dataplane::l2::parse_mac);
            let token = match (&v.raw.control.token, &v.raw.control.token_file) {
                (Some(t), _) => Some(t.clone()),
                (None, Some(f)) => Some(
                    std::fs::read_to_string(f)
                        .with_context(|| format!("control.token_file {f}"))?
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                ),
                (None, None) => None,
            };
            let config_yaml = match &a.config {
                Some(f) => std::fs::read_to_string(f)?,
                None if a.inside.is_some() => serde_yaml::to_string(&v.raw)?,
                None => config::DEFAULT_YAML.to_string(),
            };
            let api = (!a.no_api).then(|| run::ApiPlan {
                listen: a.api.unwrap_or(v.listen),
                token,
                config_yaml,
                cpus: cpus(),
                config: v.clone(),
                outside_addr: out_addrs.first().copied(),
                local_addrs: locals,
                config_path: a.config.clone(),
            });
            Ok(run::run(run::RunPlan {
                inside: ifs.inside.clone(),
                outside: ifs.outside.clone(),
                cores: v.raw.workers.cores.clone(),
                engine,
                static_macs: [mac(&ifs.inside_mac), mac(&ifs.outside_mac)],
                live: a.live,
                duration: a.duration.map(Duration::from_secs),
                api,
                nat_events: v.raw.logging.nat_events,
            })?)
        }
    }
}
