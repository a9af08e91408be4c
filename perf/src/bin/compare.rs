//! `compare`: masq beside the kernel's NAT, on the same lab and the same
//! traffic, in one run.
//!
//!     sudo cargo run --release -p perf --bin compare -- [--json FILE]
//!
//! For each scenario (64-byte UDP frames: one flow; 100k established flows;
//! every packet a new flow) it measures four paths through the lab's box:
//! the kernel routing without NAT (`kernel-route`), the kernel's nftables
//! masquerade (`kernel-nat`), masq forwarding without NAT (`masq-forward`,
//! the AF_XDP I/O ceiling) and masq with NAT (`masq-nat`). The generator is
//! masq's own AF_XDP transmitter (`compare gen`, in the subscriber's
//! namespace, on CPU 0); the sink is an XDP program dropping every frame on
//! the outside router's interface, whose `rx_packets` counts what arrived.
//! Everything runs between the lab's own namespaces (prefix `mqcmp-`),
//! torn down at the end.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PREFIX: &str = "mqcmp-";
const SCENARIOS: [&str; 3] = ["1flow", "100k", "new"];
const PATHS: [&str; 4] = ["kernel-route", "kernel-nat", "masq-forward", "masq-nat"];
/// Subscribers the generator spreads flows over (100.64.0.0/18).
const SUBSCRIBERS: u32 = 16384;
/// Destination ports flows spread over (the kernel's masquerade then has
/// room for millions of flows on its one address).
const DPORTS: u32 = 61;

#[derive(Parser)]
#[command(about = "masq beside the kernel's NAT on the namespace lab (needs root)")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Seconds measured per row.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Seconds of traffic before measuring (sessions get established).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Scenarios to run (1flow, 100k, new).
    #[arg(long, value_delimiter = ',', default_values_t = SCENARIOS.map(String::from))]
    scenarios: Vec<String>,
    /// Paths to run (kernel-route, kernel-nat, masq-forward, masq-nat).
    #[arg(long, value_delimiter = ',', default_values_t = PATHS.map(String::from))]
    paths: Vec<String>,
    /// Also write the rows as a JSON array to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Offered rate of the latency rows (frames per second, 100k flows).
    #[arg(long, default_value_t = 100_000)]
    latency_rate: u64,
    /// Skip the latency rows.
    #[arg(long)]
    no_latency: bool,
    /// The masq binary (built with `cargo build --release -p control`).
    #[arg(long, default_value = "target/release/masq")]
    masq: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// The generator (run inside the subscriber namespace by `compare`).
    Gen {
        #[arg(long)]
        iface: String,
        #[arg(long)]
        scenario: String,
        #[arg(long)]
        seconds: f64,
        /// Frames per second (0: as fast as the socket takes them).
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// The timestamping sink (run inside the outside router's namespace by
    /// `compare`): receives on an AF_XDP socket, prints latency percentiles.
    Sink {
        #[arg(long)]
        iface: String,
        #[arg(long)]
        seconds: f64,
        /// Ignore frames stamped before this many seconds into the run (warm-up).
        #[arg(long, default_value_t = 1.0)]
        skip: f64,
    },
}

#[derive(serde::Serialize, Clone, Debug)]
struct Row {
    scenario: String,
    path: String,
    /// Frames per second reaching the sink (for `new`, also new connections per second).
    pps: f64,
    /// Frames sent in the whole run that never reached the sink.
    drops: u64,
    /// Frames the generator sent in the whole run.
    sent: u64,
    /// What the path itself counted as dropped (masq's totals line), if any.
    detail: String,
}

#[derive(serde::Serialize, Clone, Debug, Default)]
struct LatencyRow {
    path: String,
    /// Offered frames per second.
    rate: u64,
    /// Frames timed.
    n: u64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Some(Cmd::Gen { iface, scenario, seconds, rate }) => generate(iface, scenario, *seconds, *rate),
        Some(Cmd::Sink { iface, seconds, skip }) => sink(iface, *seconds, *skip),
        None => compare(&cli),
    };
    if let Err(e) = result {
        eprintln!("compare: {e}");
        std::process::exit(1);
    }
}

type Res<T> = Result<T, String>;

/// The flow of packet `k` in a scenario: (source address, source port, destination port).
fn flow(scenario: &str, k: u64) -> (u32, u16, u16) {
    let i = match scenario {
        "1flow" => 0,
        "100k" => k % 100_000,
        _ => k,
    };
    let sub = u32::try_from(i % u64::from(SUBSCRIBERS)).unwrap_or(0);
    let sport = 1024 + u16::try_from((i / u64::from(SUBSCRIBERS)) % 64_000).unwrap_or(0);
    let dport = 5000 + u16::try_from(i % u64::from(DPORTS)).unwrap_or(0);
    (0x6440_0000 + sub, sport, dport)
}

/// Writes a 60-byte UDP frame (64 on the wire with the FCS) of flow `k`.
/// UDP checksum 0 (none, RFC 768), so only the IPv4 header sum is computed.
/// Nanoseconds since the Unix epoch: the same clock in every namespace.
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().saturating_mul(1_000_000_000).saturating_add(u64::from(d.subsec_nanos())))
}

/// Where a frame carries its send time (the UDP payload's first 8 bytes).
const STAMP: std::ops::Range<usize> = 42..50;

fn write_frame(f: &mut [u8], src_mac: [u8; 6], dst_mac: [u8; 6], scenario: &str, k: u64) -> u32 {
    let (src, sport, dport) = flow(scenario, k);
    let Some(f) = f.get_mut(..60) else { return 0 };
    f.fill(0);
    f[..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[..12].copy_from_slice(&[0x45, 0, 0, 46, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    ip[12..16].copy_from_slice(&src.to_be_bytes());
    ip[16..20].copy_from_slice(&0xc633_6401u32.to_be_bytes()); // 198.51.100.1
    let mut sum: u32 = ip.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let csum = !u16::try_from(sum).unwrap_or(0);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    let udp = &mut f[34..42];
    udp[..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&26u16.to_be_bytes());
    60
}

fn mac_of(iface: &str) -> Res<[u8; 6]> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{iface}/address")).map_err(|e| format!("{iface}: {e}"))?;
    dataplane::l2::parse_mac(s.trim()).ok_or_else(|| format!("{iface}: bad MAC"))
}

/// `compare gen`: sends for `seconds`, as fast as the socket takes frames
/// or paced at `rate` frames per second with a send time in each, then
/// prints `sent N`.
fn generate(iface: &str, scenario: &str, seconds: f64, rate: u64) -> Res<()> {
    core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
    let src_mac = mac_of(iface)?;
    // The box's inside MAC: the lab's fixed address of nat-in.
    let dst_mac = [2, 0, 0, 0, 1, 1];
    let mut tx = dataplane::xdp::XdpTx::open(iface, 0, 4096).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut k: u64 = 0;
    if rate > 0 {
        // Paced, stamped, one frame at a time (the sink reads the stamp).
        while Instant::now() < end {
            let due = start + Duration::from_secs_f64(k as f64 / rate as f64);
            // Yield, not spin: on veth the box's receive work (NAPI, in
            // ksoftirqd) may be queued on this CPU and would wait for the
            // scheduler tick behind a spinning generator.
            while Instant::now() < due {
                std::thread::yield_now();
            }
            let base = k;
            k += tx.send(1, |_, f| {
                let n = write_frame(f, src_mac, dst_mac, scenario, base);
                if let Some(st) = f.get_mut(STAMP) {
                    st.copy_from_slice(&now_ns().to_be_bytes());
                }
                n
            }) as u64;
        }
        println!("sent {k}");
        return Ok(());
    }
    while Instant::now() < end {
        for _ in 0..64 {
            let base = k;
            let n = tx.send(64, |i, f| write_frame(f, src_mac, dst_mac, scenario, base + i as u64));
            k += n as u64;
        }
    }
    println!("sent {k}");
    Ok(())
}

/// `compare sink`: attaches masq's XDP program (no local addresses: every
/// IPv4 frame comes to the socket) and records send-to-receive times.
fn sink(iface: &str, seconds: f64, skip: f64) -> Res<()> {
    // CPU 0, with the paced generator (which yields): CPU 1 is the box's
    // (masq's worker busy-polls there), and two pollers on one CPU would
    // take turns by the scheduler tick.
    core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
    let mut prog = dataplane::xdp::XdpProgram::attach(iface, &[], 0).map_err(|e| e.to_string())?;
    let mut rx = dataplane::xdp::XdpRx::open(iface, 0, 4096).map_err(|e| e.to_string())?;
    prog.register(0, rx.fd()).map_err(|e| e.to_string())?;
    println!("ready");
    let start_ns = now_ns();
    let skip_ns = start_ns + u64::try_from(Duration::from_secs_f64(skip).as_nanos()).unwrap_or(0);
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).map_err(|e| e.to_string())?;
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut n = 0u64;
    while Instant::now() < end {
        rx.wait(100);
        rx.recv(|f| {
            let Some(st) = f.get(STAMP) else { return };
            let sent = u64::from_be_bytes(st.try_into().unwrap_or([0; 8]));
            let now = now_ns();
            if sent >= skip_ns && now >= sent {
                let _ = h.record(((now - sent) / 1000).max(1));
                n += 1;
            }
        });
    }
    println!(
        "latency_us n={n} p50={} p90={} p99={} p999={} max={}",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
    Ok(())
}

fn sh(args: &[&str]) -> Res<String> {
    let o = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if !o.status.success() {
        return Err(format!("{} failed: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn in_ns(ns: &str, args: &[&str]) -> Res<String> {
    let full = format!("{PREFIX}{ns}");
    let mut v = vec!["ip", "netns", "exec", full.as_str()];
    v.extend(args);
    sh(&v)
}

fn sink_count() -> Res<u64> {
    in_ns("out", &["cat", "/sys/class/net/out0/statistics/rx_packets"])?
        .trim()
        .parse()
        .map_err(|e| format!("rx_packets: {e}"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Global conntrack limits (writable only from the initial namespace),
/// raised for the run and put back after.
struct ConntrackLimits {
    old_max: Option<String>,
    old_hash: Option<String>,
}

const CT_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
const CT_HASH: &str = "/sys/module/nf_conntrack/parameters/hashsize";

impl ConntrackLimits {
    fn raise() -> Self {
        let old_max = std::fs::read_to_string(CT_MAX).ok();
        let old_hash = std::fs::read_to_string(CT_HASH).ok();
        let _ = std::fs::write(CT_MAX, "4194304");
        let _ = std::fs::write(CT_HASH, "1048576");
        Self { old_max, old_hash }
    }
}

impl Drop for ConntrackLimits {
    fn drop(&mut self) {
        if let Some(v) = &self.old_hash {
            let _ = std::fs::write(CT_HASH, v.trim());
        }
        if let Some(v) = &self.old_max {
            let _ = std::fs::write(CT_MAX, v.trim());
        }
    }
}

/// The lab, torn down on drop (also on an error or a panic).
struct Lab;

impl Lab {
    fn up() -> Res<Self> {
        let o = Command::new(repo().join("deploy/lab/lab.sh"))
            .arg("up")
            .env("LAB_PREFIX", PREFIX)
            .output()
            .map_err(|e| format!("lab.sh: {e}"))?;
        if !o.status.success() {
            return Err(format!("lab up: {}", String::from_utf8_lossy(&o.stderr)));
        }
        Ok(Lab)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("deploy/lab/lab.sh")).arg("down").env("LAB_PREFIX", PREFIX).output();
    }
}

/// A path under test, set up in the box's namespace.
enum Running {
    Kernel,
    Masq(Child, std::sync::mpsc::Receiver<String>),
}

fn start_path(path: &str, masq: &std::path::Path) -> Res<Running> {
    let _ = in_ns("nat", &["nft", "flush", "ruleset"]);
    let _ = in_ns("nat", &["conntrack", "-F"]);
    match path {
        "kernel-route" => Ok(Running::Kernel),
        "kernel-nat" => {
            in_ns(
                "nat",
                &["nft", "add table ip n; add chain ip n post { type nat hook postrouting priority srcnat; policy accept; }; add rule ip n post oifname nat-out masquerade"],
            )?;
            Ok(Running::Kernel)
        }
        _ => {
            let ns = format!("{PREFIX}nat");
            let masq = masq.to_str().ok_or("masq path")?;
            let mut args =
                vec!["netns", "exec", &ns, masq, "run", "--inside", "nat-in", "--outside", "nat-out", "--cores", "1"];
            if path == "masq-forward" {
                args.push("--no-nat");
            } else {
                args.extend(["--pool", "198.18.0.0/24", "--nat-src", "100.64.0.0/10", "--max-sessions", "2097152"]);
            }
            let mut child = Command::new("ip")
                .args(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("starting masq: {e}"))?;
            let (tx, rx) = std::sync::mpsc::channel();
            for pipe in [
                child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
                child.stderr.take().map(|p| Box::new(p) as _),
            ]
            .into_iter()
            .flatten()
            {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                        let _ = tx.send(line);
                    }
                });
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(l) if l.contains("forwarding") => break,
                    Ok(l) if l.contains("Error") || l.contains("error") => return Err(format!("masq: {l}")),
                    _ if Instant::now() > deadline => return Err("masq did not start in 10 s".into()),
                    _ => {}
                }
            }
            Ok(Running::Masq(child, rx))
        }
    }
}

/// Stops a path; returns masq's drop summary.
fn stop_path(r: Running) -> String {
    let _ = in_ns("nat", &["nft", "flush", "ruleset"]);
    match r {
        Running::Kernel => {
            let n = in_ns("nat", &["conntrack", "-C"]).unwrap_or_default();
            format!("conntrack entries {}", n.trim())
        }
        Running::Masq(mut child, rx) => {
            let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let _ = child.wait();
            let lines: Vec<String> = rx.try_iter().collect();
            lines
                .iter()
                .find_map(|l| l.split_once("drops ").map(|(_, r)| format!("masq drops {r}")))
                .unwrap_or_default()
        }
    }
}

fn measure(cli: &Cli, scenario: &str, path: &str) -> Res<Row> {
    let running = start_path(path, &cli.masq)?;
    let self_exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let total = cli.warmup + cli.seconds + 0.5;
    let before = sink_count()?;
    let gen = Command::new("ip")
        .args(["netns", "exec", &format!("{PREFIX}in"), self_exe.to_str().ok_or("exe path")?, "gen", "--iface", "in0"])
        .args(["--scenario", scenario, "--seconds", &total.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("generator: {e}"))?;
    std::thread::sleep(Duration::from_secs_f64(cli.warmup));
    let (c0, t0) = (sink_count()?, Instant::now());
    std::thread::sleep(Duration::from_secs_f64(cli.seconds));
    let (c1, t1) = (sink_count()?, Instant::now());
    let out = gen.wait_with_output().map_err(|e| format!("generator: {e}"))?;
    let sent: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .strip_prefix("sent ")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("generator failed: {}", String::from_utf8_lossy(&out.stdout)))?;
    std::thread::sleep(Duration::from_millis(300));
    let after = sink_count()?;
    let detail = stop_path(running);
    let pps = (c1 - c0) as f64 / (t1 - t0).as_secs_f64();
    Ok(Row {
        scenario: scenario.into(),
        path: path.into(),
        pps,
        drops: sent.saturating_sub(after - before),
        sent,
        detail,
    })
}

fn compare(cli: &Cli) -> Res<()> {
    if sh(&["id", "-u"])?.trim() != "0" {
        return Err("needs root: it builds network namespaces and attaches XDP programs (sudo)".into());
    }
    if !cli.masq.exists() {
        return Err(format!("{} not found: run `cargo build --release -p control` first", cli.masq.display()));
    }
    let _limits = ConntrackLimits::raise();
    let _lab = Lab::up()?;
    // The sink: drop everything arriving at the outside router.
    let obj = std::env::temp_dir().join(format!("{PREFIX}sink.o"));
    std::fs::write(&obj, dataplane::xdp::SINK_PROGRAM).map_err(|e| e.to_string())?;
    in_ns(
        "out",
        &["ip", "link", "set", "dev", "out0", "xdpdrv", "obj", obj.to_str().unwrap_or_default(), "sec", "xdp"],
    )?;
    let mut rows = Vec::new();
    for scenario in &cli.scenarios {
        for path in &cli.paths {
            eprint!("{scenario:>6} {path:<13} ... ");
            let _ = std::io::stderr().flush();
            let row = measure(cli, scenario, path)?;
            eprintln!("{:>10.0} pps, {} dropped of {} sent  {}", row.pps, row.drops, row.sent, row.detail);
            rows.push(row);
        }
    }
    let mut lat = Vec::new();
    if !cli.no_latency {
        for path in &cli.paths {
            eprint!("latency {path:<13} at {} pps ... ", cli.latency_rate);
            let _ = std::io::stderr().flush();
            let row = measure_latency(cli, path, &obj)?;
            eprintln!("p50 {} us, p99 {} us ({} frames)", row.p50_us, row.p99_us, row.n);
            lat.push(row);
        }
    }
    let _ = std::fs::remove_file(&obj);
    print_table(&rows);
    print_latency(&lat);
    if let Some(file) = &cli.json {
        // The rows, then one latency object per path (`scenario`: "latency").
        let mut all: Vec<serde_json::Value> = rows.iter().filter_map(|r| serde_json::to_value(r).ok()).collect();
        for l in &lat {
            if let Ok(mut v) = serde_json::to_value(l) {
                if let Some(o) = v.as_object_mut() {
                    o.insert("scenario".into(), "latency".into());
                }
                all.push(v);
            }
        }
        let json = serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?;
        std::fs::write(file, json + "\n").map_err(|e| format!("{}: {e}", file.display()))?;
        println!("rows written to {}", file.display());
    }
    Ok(())
}

/// One latency row: the path set up, a timestamping sink in place of the
/// dropping one, paced stamped traffic over 100k flows (the first second,
/// which makes the sessions, is not timed).
fn measure_latency(cli: &Cli, path: &str, sink_obj: &std::path::Path) -> Res<LatencyRow> {
    let running = start_path(path, &cli.masq)?;
    let self_exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let exe = self_exe.to_str().ok_or("exe path")?;
    in_ns("out", &["ip", "link", "set", "dev", "out0", "xdpdrv", "off"])?;
    let total = 1.0 + cli.seconds;
    let mut sink = Command::new("ip")
        .args(["netns", "exec", &format!("{PREFIX}out"), exe, "sink", "--iface", "out0"])
        .args(["--seconds", &(total + 1.0).to_string(), "--skip", "1.0"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("sink: {e}"))?;
    let mut lines = BufReader::new(sink.stdout.take().ok_or("sink stdout")?).lines();
    match lines.next() {
        Some(Ok(l)) if l == "ready" => {}
        other => return Err(format!("sink did not start: {other:?}")),
    }
    let gen = Command::new("ip")
        .args(["netns", "exec", &format!("{PREFIX}in"), exe, "gen", "--iface", "in0", "--scenario", "100k"])
        .args(["--seconds", &total.to_string(), "--rate", &cli.latency_rate.to_string()])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("generator: {e}"))?;
    if !gen.success() {
        return Err("generator failed".into());
    }
    let line = lines.find_map(|l| l.ok().filter(|l| l.starts_with("latency_us"))).ok_or("sink printed no latency")?;
    let _ = sink.wait();
    stop_path(running);
    // The dropping sink back for the next rows.
    in_ns(
        "out",
        &["ip", "link", "set", "dev", "out0", "xdpdrv", "obj", sink_obj.to_str().unwrap_or_default(), "sec", "xdp"],
    )?;
    let field = |k: &str| -> u64 {
        line.split_whitespace().find_map(|w| w.strip_prefix(k).and_then(|v| v.parse().ok())).unwrap_or(0)
    };
    Ok(LatencyRow {
        path: path.into(),
        rate: cli.latency_rate,
        n: field("n="),
        p50_us: field("p50="),
        p90_us: field("p90="),
        p99_us: field("p99="),
        p999_us: field("p999="),
        max_us: field("max="),
    })
}

fn print_latency(rows: &[LatencyRow]) {
    if rows.is_empty() {
        return;
    }
    println!("\n| latency, 100k flows at {} pps | p50 | p90 | p99 | p99.9 | max | frames timed |", rows[0].rate);
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} us | {} us | {} us | {} us | {} us | {} |",
            r.path, r.p50_us, r.p90_us, r.p99_us, r.p999_us, r.max_us, r.n
        );
    }
}

fn print_table(rows: &[Row]) {
    let get = |s: &str, p: &str| rows.iter().find(|r| r.scenario == s && r.path == p).map(|r| r.pps);
    println!("\n| scenario | kernel-route | kernel-nat | masq-forward | masq-nat | masq-nat / kernel-nat | masq-nat / masq-forward |");
    println!("|---|---|---|---|---|---|---|");
    let scenarios: Vec<&str> = SCENARIOS.iter().copied().filter(|s| rows.iter().any(|r| r.scenario == *s)).collect();
    for s in scenarios {
        let cell = |p: &str| get(s, p).map_or("-".to_string(), |v| format!("{:.0}k", v / 1000.0));
        let ratio = |a: &str, b: &str| match (get(s, a), get(s, b)) {
            (Some(x), Some(y)) if y > 0.0 => format!("{:.2}x", x / y),
            _ => "-".into(),
        };
        println!(
            "| {s}{} | {} | {} | {} | {} | {} | {} |",
            if s == "new" { " (new conn/s)" } else { "" },
            cell("kernel-route"),
            cell("kernel-nat"),
            cell("masq-forward"),
            cell("masq-nat"),
            ratio("masq-nat", "kernel-nat"),
            ratio("masq-nat", "masq-forward"),
        );
    }
    println!("\ndrops (sent but not received, whole run incl. warm-up):");
    for r in rows {
        println!("  {:>6} {:<13} {:>10} of {:>10}  {}", r.scenario, r.path, r.drops, r.sent, r.detail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_are_distinct_where_the_scenario_says() {
        let set = |s: &str, n: u64| (0..n).map(|k| flow(s, k)).collect::<std::collections::HashSet<_>>().len();
        assert_eq!(set("1flow", 1000), 1);
        assert_eq!(set("100k", 300_000), 100_000);
        assert_eq!(set("new", 500_000), 500_000);
    }

    #[test]
    fn generated_frames_carry_a_valid_ipv4_checksum() {
        let mut f = [0u8; 2048];
        assert_eq!(write_frame(&mut f, [2; 6], [4; 6], "new", 12345), 60);
        assert!(dataplane::testing::frames::checksums_ok(&f[..60]));
        let (src, sport, dst, dport) = dataplane::testing::frames::tuple(&f[..60]);
        assert_eq!((src, sport, dst, dport), (0x6440_0000 + 12345, 1024, 0xc633_6401, 5000 + (12345 % 61) as u16));
    }
}
