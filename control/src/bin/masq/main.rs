//! `masq`: the one binary. `masq run` forwards between two interfaces
//! through AF_XDP workers on a YAML configuration (`--config FILE`, or the
//! embedded default: the namespace lab's), or on a quick set-up given as
//! flags, and serves the control API; `masq check-config` validates files;
//! `sessions`, `flush`, `push` and `stats` ask a running masq through its
//! API. This file parses the command line and turns it into the library's
//! plans (`control::run::RunPlan`); `anyhow` is used here and nowhere else.

mod args;

use anyhow::{bail, Context, Result};
use args::{Cli, Cmd, RssInput, RssMode, RunArgs};
use clap::Parser;
use control::{client, params, run, system};
use dataplane::worker::WhoisQuery;
use std::time::Duration;

// The engines' tables (each block of 2 MiB or more) on their own mappings
// advised to use transparent huge pages; see `dataplane::xdp::hugepages`.
#[global_allocator]
static ALLOC: dataplane::xdp::HugePageAlloc = dataplane::xdp::HugePageAlloc;

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
            mss_clamp: None,
            alg: Vec::new(),
        });
    }
    if !a.no_nat_src.is_empty() {
        rules.push(Rule {
            action: Action::NoNat,
            pool: None,
            matches: Match { src: a.no_nat_src.clone(), ..Match::default() },
            mss_clamp: None,
            alg: Vec::new(),
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
        rules.push(Rule {
            action: Action::Masquerade,
            pool: Some("masquerade".into()),
            matches: nat,
            mss_clamp: None,
            alg: Vec::new(),
        });
    } else if !a.pool.is_empty() {
        pools.push(Pool::new("pool", a.pool.clone()));
        rules.push(Rule {
            action: Action::Snat,
            pool: Some("pool".into()),
            matches: nat,
            mss_clamp: None,
            alg: Vec::new(),
        });
    } else if !a.no_nat {
        bail!("give a pool (--pool ADDR), --masquerade or --no-nat, or a --config file");
    } else {
        rules.push(Rule {
            action: Action::NoNat,
            pool: None,
            matches: Match::default(),
            mss_clamp: None,
            alg: Vec::new(),
        });
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
        static_nat: a.static_nat.clone(),
        timeouts: config::Timeouts::default(),
        tables: config::Tables::default(),
        control: config::Control::default(),
        logging: config::Logging::default(),
        boundary: config::Boundary::default(),
        management: config::Management { allow: a.allow.clone(), ..config::Management::default() },
        ha: None,
    })
}

/// The box's CPUs, for `workers.cores` (online ones: isolated cores count).
fn cpus() -> usize {
    system::online_cpus()
}

/// Prints configuration errors as `FILE:LINE:COL: key.path: message`.
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
    // Validated like the file's: off loopback it needs a token and TLS.
    if let Some(api) = a.api {
        raw.control.listen = api.to_string();
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

/// `masq whois`: true if someone held the port (or the subscriber has ports).
/// The sources given are asked in order, formula (`--config`), live
/// tables (`--live`, or neither --config nor --log), log (`--log`), until
/// one names a subscriber; the last one asked says nobody otherwise.
fn whois(w: &args::WhoisArgs) -> Result<bool> {
    use control::natlog::time;
    use control::whois_log;
    let config = match &w.config {
        Some(f) => {
            let name = f.display().to_string();
            let text = std::fs::read_to_string(f).with_context(|| format!("reading {name}"))?;
            match config::load(&text, usize::MAX) {
                Ok(v) => Some(v),
                Err(errors) => {
                    print_errors(&name, &errors);
                    bail!("{name}: {} error(s)", errors.len());
                }
            }
        }
        None => None,
    };
    if w.at.is_some() && w.log.is_empty() && config.is_none() {
        bail!("--at asks the log (--log FILE): the live tables answer for now only");
    }
    // The live tables know now only: with --at they are not asked.
    let live = (w.live || (config.is_none() && w.log.is_empty())) && w.at.is_none();
    let question = match (&w.target, w.subscriber) {
        (_, Some(inside)) => control::whois_live::query(None, None, Some(&inside.to_string())),
        (Some(t), None) => {
            let (a, p) = control::whois::parse_target(t, w.port).map_err(anyhow::Error::msg)?;
            control::whois_live::query(Some(&a.to_string()), Some(&p.to_string()), None)
        }
        _ => bail!("give ADDR:PORT (or ADDR PORT), or --subscriber INSIDE_IP"),
    }
    .map_err(anyhow::Error::msg)?;
    if let Some(v) = &config {
        let answer = match question {
            WhoisQuery::Subscriber(inside) => control::whois::subscriber(v, inside.into()),
            WhoisQuery::Port(a, p) => control::whois::lookup(v, a.into(), p),
        };
        // Nobody in the formula: the next source given, if any, is asked.
        if answer.found() || (!live && (w.log.is_empty() || w.subscriber.is_some())) {
            print_answer(&answer, w.json);
            return Ok(answer.found());
        }
    }
    if live {
        let answer = whois_live(&w.conn, question)?;
        if answer.found || w.log.is_empty() || w.subscriber.is_some() {
            if w.json {
                println!("{}", serde_json::to_string(&answer)?);
            } else {
                print!("{answer}");
            }
            return Ok(answer.found);
        }
    }
    let WhoisQuery::Port(public, port) = question else {
        bail!("--subscriber asks --config's formula or the running masq, not the log");
    };
    let public = std::net::Ipv4Addr::from(public);
    let at = match &w.at {
        Some(t) => time::parse(t).with_context(|| format!("`{t}`: not YYYY-MM-DDTHH:MM:SS[.mmm]Z or milliseconds"))?,
        None => dataplane::nat::events::now_ms(),
    };
    let files: Vec<_> = w.log.iter().flat_map(|f| whois_log::with_rotations(f)).collect();
    let holders = whois_log::lookup(&whois_log::read(&files)?, public, port, at);
    if w.json {
        let out = serde_json::json!({"found": !holders.is_empty(), "source": "log", "public": public, "port": port, "at_ms": at, "at": time::format(at), "holders": holders});
        println!("{out}");
    } else if holders.is_empty() {
        println!("{public}:{port} at {}: nobody (no block covering it in the log)", time::format(at));
    } else {
        for h in &holders {
            println!(
                "{public}:{port} at {}: {} (block {}-{} of pool {}, since {})",
                time::format(at),
                h.inside,
                h.port_start,
                h.port_end,
                h.pool,
                time::format(h.since_ms)
            );
        }
    }
    Ok(!holders.is_empty())
}

/// Asks the running masq's live tables (`GET /whois`).
fn whois_live(conn: &args::ApiArgs, q: WhoisQuery) -> Result<control::whois_live::LiveAnswer> {
    let path = match q {
        WhoisQuery::Port(a, p) => format!("/whois?ip={}&port={p}", std::net::Ipv4Addr::from(a)),
        WhoisQuery::Subscriber(s) => format!("/whois?subscriber={}", std::net::Ipv4Addr::from(s)),
    };
    let (status, body) = client::request(&conn.api()?, "GET", &path, "")?;
    if status != 200 {
        bail!("masq answered {status}: {}", body.trim());
    }
    serde_json::from_str(&body).with_context(|| format!("GET {path}: not a whois answer: {}", body.trim()))
}

/// A formula's answer, as a sentence or JSON.
fn print_answer(answer: &control::whois::Answer, json: bool) {
    if json {
        println!("{}", answer.json());
    } else {
        println!("{answer}");
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::CheckConfig { files } => check_config(&files),
        Cmd::Sessions(f) => {
            let q = client::filters(&f.subscriber, &f.public, &f.protocol, &f.state);
            let (st, body) = client::request(&f.conn.api()?, "GET", &format!("/sessions{q}"), "")?;
            Ok(client::finish(st, &body)?)
        }
        Cmd::Flush(f) => {
            let q = client::filters(&f.subscriber, &f.public, &f.protocol, &f.state);
            let (st, body) = client::request(&f.conn.api()?, "DELETE", &format!("/sessions{q}"), "")?;
            Ok(client::finish(st, &body)?)
        }
        Cmd::Push { file, conn } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let (st, body) = client::request(&conn.api()?, "PUT", "/config", &text)?;
            // The API names the file `config`; say which one it was.
            let body = body.replace("config:", &format!("{}:", file.display()));
            Ok(client::finish(st, &body)?)
        }
        Cmd::Stats { once, conn } => Ok(client::stats(&conn.api()?, once)?),
        Cmd::Role { role, token_file, mut conn } => {
            if let Some(f) = token_file {
                let t = std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
                conn.token = Some(t.lines().next().unwrap_or_default().trim().to_string());
            }
            let (st, body) = client::request(&conn.api()?, "POST", "/role", &role)?;
            Ok(client::finish(st, &body)?)
        }
        Cmd::Whois(w) => match whois(&w) {
            Ok(true) => Ok(()),
            Ok(false) => std::process::exit(1),
            Err(e) => {
                eprintln!("masq whois: {e:#}");
                std::process::exit(2)
            }
        },
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
                let mut p =
                    params::engine_params(&v, out_addrs.first().copied(), in_addrs.first().copied(), locals.clone())?;
                // For `mss_clamp: auto`; an MTU change needs a restart.
                let mtu = |i: &str| u16::try_from(system::interface_mtu(i)).ok().filter(|&m| m > 0).unwrap_or(1500);
                p.mtu = [mtu(&ifs.inside), mtu(&ifs.outside)];
                Some(p)
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
                listen: v.listen,
                token,
                metrics_token: v.raw.control.metrics_token.clone(),
                tls: v.raw.control.tls.clone(),
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
                sleep_after: v
                    .raw
                    .workers
                    .sleep_when_idle
                    .then(|| Duration::from_micros(u64::from(v.raw.workers.busy_poll_us))),
                xdp: dataplane::xdp::XdpParams {
                    frames: v.raw.workers.umem_frames,
                    ring_size: v.raw.workers.ring_size,
                    ..dataplane::xdp::XdpParams::default()
                },
                engine,
                static_macs: [mac(&ifs.inside_mac), mac(&ifs.outside_mac)],
                live: a.live,
                duration: a.duration.map(Duration::from_secs),
                api,
                nat_events: v.raw.logging.nat_events,
                log_sinks: v.raw.logging.sinks.clone(),
                unlogged_pools: v.raw.unlogged_pools(),
                guard: params::guard_spec(&v),
                ha: match &v.raw.ha {
                    Some(h) => Some(control::ha::HaPlan::of(h).map_err(anyhow::Error::msg)?),
                    None => None,
                },
            })?)
        }
    }
}
