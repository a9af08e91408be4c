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
//! torn down at the end, also after an error, SIGINT/SIGTERM or a panic
//! (teardown.rs). Each NAT row samples what reached the outside router
//! and fails if a frame arrived untranslated (translation.rs).
//!
//! Where the work runs (`--placement`, issue 17): the generator sends on
//! CPU 0; the box's receive work (the veth NAPI that runs masq's XDP program
//! and copies frames into its UMEM, or the kernel's receive and forwarding)
//! runs on CPU 1, the box's. By default (`box`) the box's veths get
//! threaded NAPI with their NAPI threads pinned to CPU 1, for every path
//! alike (GRO is turned on for the inside link so the kernel paths have a
//! NAPI too). `sender` leaves the kernel's default: veth runs the receiving
//! NAPI on the sender's CPU, which charges masq's receive work to the
//! generator (the kernel paths move theirs to CPU 1 by RPS).
//!
//! Each row says what limited it (`limit`): `path` when the path lost
//! more than 2% of what the generator offered; `generator` when it
//! forwarded what was offered and the generator was saturated (CPU 0 busy
//! at least 95%); `unclear` when it forwarded what was offered but the
//! generator had CPU to spare (something else held the offer down). A
//! ratio between rows not both limited by their path says so in its cell
//! (`1.00x (generator)`): it compares the generator, not the paths. CPU 1's
//! share does not decide, since masq's workers poll (CPU 1 near 100%).
//!
//! NAT event export's cost (`--nat-log`, issue 13): a `masq-nat-log` path,
//! masq-nat's configuration plus a JSON-lines sink and an IPFIX sink (to a
//! UDP drain in the box's namespace on CPU 0, where masq's control and sink
//! threads run too), and its ratio to masq-nat. `--block-size` sets both
//! rows' port block size: the `new` scenario's 16384 subscribers each take
//! a block at their first flow and another every `block-size` flows, so
//! smaller blocks (and fewer subscribers, `--subscribers`) put more block
//! events in the measured window.
#![forbid(unsafe_code)]

mod latency;
mod masq_view;
mod probe;
mod rfc;
mod teardown;
mod translation;
use latency::{latency_summary, measure_latency, print_latency};
use probe::probe;

use clap::{Parser, Subcommand};
use perf::rfc9693;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use teardown::{interrupted, pause, ConntrackLimits, Lab, RAISED_CT_MAX};

const PREFIX: &str = "mqcmp-";
const SCENARIOS: [&str; 3] = ["1flow", "100k", "new"];
/// RFC 9693's throughput scenario: RFC 4814 pseudorandom ports after a
/// phase 1 that makes every session ([`rfc9693::Grid::RFC4814`]).
const RFC4814: &str = "rfc4814";
/// CSIT's grid: `--grid` hosts x 63 source ports.
const GRID: &str = "grid";
/// Every scenario, in the table's order.
const ALL_SCENARIOS: [&str; 6] = ["1flow", "100k", "new", RFC4814, GRID, PROFILE_ROW];
const PATHS: [&str; 4] = ["kernel-route", "kernel-nat", "masq-forward", "masq-nat"];
/// The path `--nat-log` adds: masq-nat with NAT event export.
const NAT_LOG: &str = "masq-nat-log";
/// Where the `masq-nat-log` path's IPFIX sink sends (a drain in the box's namespace).
const IPFIX_DRAIN: &str = "127.0.0.1:4739";
/// The optional peer (`--einat`).
const EINAT: &str = "einat";
/// Subscribers the generator spreads flows over by default (100.64.0.0/18).
const SUBSCRIBERS: u32 = 16384;
/// Destination ports flows spread over (the kernel's masquerade then has
/// room for millions of flows on its one address).
const DPORTS: u32 = 61;

/// Where the box's receive work runs (module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Placement {
    /// Threaded NAPI on the box's veths, pinned to the box's CPU (1).
    Box,
    /// The kernel's default: a veth's receive runs on the sender's CPU.
    Sender,
}

#[derive(Parser)]
#[command(
    about = "masq beside the kernel's NAT on the namespace lab (needs root)",
    long_about = "masq beside the kernel's NAT on the namespace lab (needs root).\n\n\
For each scenario (64-byte UDP frames: 1flow, 100k established flows, every frame a new \
flow) it measures the kernel routing (kernel-route), the kernel's nftables masquerade \
(kernel-nat), masq without NAT (masq-forward) and masq with NAT (masq-nat), and einat with \
--einat. The generator sends on CPU 0; the box (masq's worker, or the kernel's forwarding) \
works on CPU 1. With --placement box (the default) the box's receive work runs there too: \
its veths get threaded NAPI pinned to CPU 1, so a path is charged for its own receive work \
and not the generator. Each row says what limited it: the path (it lost more than 2% of \
the frames offered), the generator (it forwarded what was offered and CPU 0, the \
generator's, was at least 95% busy) or unclear (it forwarded what was offered, the \
generator had CPU to spare); CPU 0 and CPU 1 busy shares are printed beside it, and a ratio \
of rows not both limited by their path names the other limit. NAT rows (kernel-nat, \
masq-nat, einat) sample 20 frames at the outside router after their window and fail if one \
left the box untranslated. Ctrl-C (SIGINT), SIGTERM, an error or a panic tear the lab down. --nat-log adds masq-nat-log (masq-nat with NAT event export \
to a JSON-lines file and IPFIX) and its ratio to masq-nat. Then latency rows (the probe: generator and timestamping sink in one thread; --latency-repeat N runs them N times, the paths taking turns) at --latency-rate and at --low-rate, whose \
gaps let masq's idle workers sleep, so the wake-up is priced; and masq's CPU while idle. The \
machine (CPU, vCPUs, kernel, rustc) heads the table and the JSON."
)]
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
    /// A compiled TRex STL profile (deploy/trex/compile.py's JSON): adds a
    /// `profile` row whose generator sends that profile's streams.
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Paths to run (kernel-route, kernel-nat, masq-forward, masq-nat;
    /// masq-nat-log, which --nat-log adds; einat, which --einat adds and
    /// which is an error without it).
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
    /// Runs of the latency rows: at each rate the paths take turns, this
    /// many rounds (A B A B ...), and each path's median p99.9 and max over
    /// its runs is printed (and `latency_summary` in the JSON).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    latency_repeat: u32,
    /// A directory for each latency row's frames over 1 ms (receive time
    /// in Unix nanoseconds, latency in µs; `PATH-RATE-RUN.txt`), to match
    /// against a scheduler trace (`perf sched record`).
    #[arg(long, value_name = "DIR")]
    latency_tail_log: Option<PathBuf>,
    /// Offered rate of the low-rate latency rows (frames per second, 100k
    /// flows): gaps long enough for masq's workers to sleep between frames
    /// (`workers.sleep_when_idle`), so the rows price the wake-up. 0: none.
    #[arg(long, default_value_t = 200)]
    low_rate: u64,
    /// Seconds masq runs without traffic for the idle CPU figure (0: none).
    #[arg(long, default_value_t = 3.0)]
    idle_seconds: f64,
    /// The masq binary (built with `cargo build --release -p control`).
    #[arg(long, default_value = "target/release/masq")]
    masq: PathBuf,
    /// Where the box's receive work runs (see the long help).
    #[arg(long, value_enum, default_value_t = Placement::Box)]
    placement: Placement,
    /// With --placement box: run the box's NAPI threads SCHED_FIFO at this
    /// priority (1-99), so a frame's receive work preempts masq's worker
    /// on CPU 1 at once, as a NIC's softirq does on bare metal; 0 leaves
    /// them SCHED_OTHER, sharing CPU 1 with the worker by the scheduler's
    /// time slices.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=99))]
    napi_fifo: u32,
    /// An einat binary (EHfive/einat-ebpf, built from its own sources): adds
    /// the `einat` path (einat on the box's outside interface, the kernel
    /// forwarding, SNAT of the inside prefix). Without it the path is
    /// skipped (and `--paths einat` is an error).
    #[arg(long)]
    einat: Option<PathBuf>,
    /// Adds the `masq-nat-log` path: masq-nat with NAT event export on (a
    /// JSON-lines file and IPFIX to a local drain), and its ratio to masq-nat.
    #[arg(long)]
    nat_log: bool,
    /// Ports per block of masq's pool in masq-nat and masq-nat-log (a
    /// multiple of 64; the pool's default 512). Smaller blocks mean more
    /// block events per new connection.
    #[arg(long, default_value_t = 512)]
    block_size: u16,
    /// Entries of each of masq's AF_XDP rings in masq-nat and masq-nat-log
    /// (`workers.ring_size`, a power of two; its UMEM gets four times as
    /// many frames). Default: masq's own (2048 and 8192).
    #[arg(long)]
    masq_ring_size: Option<u32>,
    /// masq's `workers.busy_poll_us` in masq-nat and masq-nat-log: how
    /// long a worker that received nothing polls before it sleeps on its
    /// sockets. Default: masq's own.
    #[arg(long)]
    masq_busy_poll_us: Option<u32>,
    /// Subscribers the throughput rows' flows spread over (inside
    /// addresses from 100.64.0.0; at most 4194304, the /10). Fewer
    /// subscribers take blocks more often: one every `--block-size` new
    /// connections each.
    #[arg(long, default_value_t = SUBSCRIBERS)]
    subscribers: u32,
    /// RFC 9693 rows for kernel-nat and masq-nat: `--rfc9693` alone runs
    /// them all; or name them: throughput (the rfc4814 scenario: RFC 4814
    /// pseudorandom ports), conn-rate (maximum connection establishment
    /// rate), teardown (connection tear-down rate), capacity (connection
    /// table capacity).
    #[arg(long, value_delimiter = ',', num_args = 0.., default_missing_value = "all", value_name = "ROWS")]
    rfc9693: Option<Vec<String>>,
    /// CSIT's grid as a scenario (the `grid` row): HOSTS inside hosts x 63
    /// source ports (1024: CSIT's h1024-p63-s64512).
    #[arg(long, value_name = "HOSTS")]
    grid: Option<u32>,
    /// Frames per second of the sessions' opening phase (RFC 9693's phase
    /// 1 of the rfc4814 and grid rows; the SYNs of the tear-down row): below
    /// both NATs' connection establishment rates.
    #[arg(long, default_value_t = 50_000)]
    open_pps: u64,
    /// conn-rate and teardown: the highest rate tried (new connections, or
    /// RSTs, per second).
    #[arg(long, default_value_t = 1_000_000)]
    search_max: u64,
    /// conn-rate and teardown: binary search steps after the highest rate
    /// (each one trial on a freshly started path).
    #[arg(long, default_value_t = 6)]
    search_steps: u32,
    /// conn-rate: seconds of one trial.
    #[arg(long, default_value_t = 1.0)]
    trial_seconds: f64,
    /// conn-rate and teardown: percent of frames a passing trial may lose,
    /// or of sessions it may leave open (RFC 9693: 0).
    #[arg(long, default_value_t = 0.0)]
    loss_tolerance: f64,
    /// teardown: TCP sessions each trial opens with SYNs, then closes with RSTs.
    #[arg(long, default_value_t = 50_000)]
    teardown_sessions: u64,
    /// capacity: the session limit both NATs get (the kernel's
    /// nf_conntrack_max, masq's --max-sessions); 1.5 times as many new
    /// flows are offered.
    #[arg(long, default_value_t = 65_536)]
    table_size: u32,
    /// capacity: new flows per second offered.
    #[arg(long, default_value_t = 50_000)]
    capacity_pps: u64,
    /// Write an HTML page with the run's plots (report.html, the SVGs and
    /// compare.json) into this directory.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
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
        /// Frames per second, paced in batches, not stamped (0: as fast as
        /// the socket takes them).
        #[arg(long, default_value_t = 0)]
        pps: u64,
        /// Stop after this many frames (0: at --seconds only).
        #[arg(long, default_value_t = 0)]
        count: u64,
        /// Hosts of the `grid` scenario (x 63 source ports).
        #[arg(long, default_value_t = 1024)]
        grid_hosts: u32,
        /// Frames per second of RFC 9693's phase 1 (the `rfc4814` and `grid`
        /// scenarios' first pass over their flows, which makes the
        /// sessions; 0: unpaced).
        #[arg(long, default_value_t = 0)]
        phase1_pps: u64,
        /// A compiled TRex STL profile (deploy/trex/compile.py's JSON):
        /// send its streams instead of the scenario's flows.
        #[arg(long)]
        profile: Option<PathBuf>,
        /// Subscribers (inside addresses from 100.64.0.0) the flows spread over.
        #[arg(long, default_value_t = SUBSCRIBERS)]
        subscribers: u32,
    },
    /// The latency rows' probe (run inside the subscriber namespace by
    /// `compare`): one thread that sends paced frames, each with its send
    /// time, from `--iface` and receives them on an AF_XDP socket at
    /// `--sink-iface` in namespace `--sink-ns`; prints latency percentiles.
    Probe {
        #[arg(long)]
        iface: String,
        #[arg(long)]
        sink_ns: String,
        #[arg(long)]
        sink_iface: String,
        #[arg(long)]
        seconds: f64,
        /// Frames per second, one at a time.
        #[arg(long)]
        rate: u64,
        /// Ignore frames stamped before this many seconds into the run (warm-up).
        #[arg(long, default_value_t = 1.0)]
        skip: f64,
        /// Write the timed frames over 1 ms here: receive time (Unix
        /// nanoseconds) and latency (µs), a line each.
        #[arg(long)]
        tail_log: Option<PathBuf>,
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
    /// Frames per second the generator offered in the measured window (the
    /// box's inside link received or dropped them).
    offered_pps: f64,
    /// CPU 0's busy share in the window (the generator's CPU), percent.
    gen_cpu: f64,
    /// CPU 1's busy share in the window (the box's CPU), percent.
    box_cpu: f64,
    /// What limited the row: `path`, `generator` or `unclear` ([`limit`]).
    limit: String,
    /// NAT paths: whether every frame sampled at the outside router came
    /// from the path's public address (translation.rs); `None` for the
    /// paths without NAT.
    translated: Option<bool>,
}

/// The machine a run was taken on.
#[derive(serde::Serialize, Clone, Debug)]
struct Machine {
    cpu: String,
    vcpus: usize,
    kernel: String,
    rustc: String,
    placement: Placement,
    /// SCHED_FIFO priority of the box's NAPI threads (0: SCHED_OTHER).
    napi_fifo: u32,
    date: String,
}

impl Machine {
    fn read(placement: Placement, napi_fifo: u32) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let first_line = |args: &[&str]| sh(args).ok().and_then(|o| o.lines().next().map(str::to_string));
        Self {
            cpu,
            vcpus: std::thread::available_parallelism().map_or(0, usize::from),
            kernel: first_line(&["uname", "-r"]).unwrap_or_else(|| "unknown".into()),
            rustc: first_line(&["rustc", "--version"]).unwrap_or_else(|| "unknown".into()),
            placement,
            napi_fifo,
            date: first_line(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default(),
        }
    }

    fn line(&self) -> String {
        format!(
            "machine: {} ({} vCPUs), kernel {}, {}; placement {}{}; {}",
            self.cpu,
            self.vcpus,
            self.kernel,
            self.rustc,
            match self.placement {
                Placement::Box => "box",
                Placement::Sender => "sender",
            },
            match self.napi_fifo {
                0 => String::new(),
                p => format!(" (NAPI threads SCHED_FIFO {p})"),
            },
            self.date
        )
    }
}

/// The quantiles the sink prints for the latency CDF (`--report`).
const CDF_QUANTILES: [f64; 17] =
    [0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999, 1.0];

#[derive(serde::Serialize, Clone, Debug, Default)]
struct LatencyRow {
    path: String,
    /// Which run of `--latency-repeat` (from 1).
    run: u32,
    /// Offered frames per second.
    rate: u64,
    /// Frames timed.
    n: u64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    /// Gaps over 1 ms in the probe's loop in the timed window: its thread
    /// was off CPU 0, and frames arriving then waited (at most those in
    /// flight: it sent none meanwhile).
    probe_stalls: u64,
    /// Milliseconds the box's threads waited for CPU 1 while runnable in
    /// the window (from half a second before the timed one to its end;
    /// run_delay of /proc/…/schedstat): the NAPI threads
    /// (`napi/nat-*`) and masq's workers (`masq-w*`). What the box's work
    /// could not do because something else held its CPU: for masq paths
    /// partly each other, otherwise the machine's other load.
    napi_wait_ms: f64,
    worker_wait_ms: f64,
    /// The machine's other load in that window: CPU time of threads
    /// not of the run, in percent of one CPU ([`latency::SchedSums::other_run`];
    /// /proc/stat's ticks make it ±1%).
    /// Above a few percent the row's tail is likely theirs: this kernel
    /// (PREEMPT_NONE, 250 Hz) lets a task in a long kernel section hold
    /// a CPU for milliseconds, even a SCHED_IDLE one.
    other_load: f64,
    /// Milliseconds the hypervisor took from this VM's CPUs in the window
    /// (steal; part of `other_load`): a VM's CPU stolen for milliseconds
    /// holds whatever ran on it.
    steal_ms: f64,
    /// (quantile, microseconds) points of the CDF.
    cdf: Vec<(f64, u64)>,
    /// masq's own view of the window (masq paths): its workers' round
    /// times and ring drops from its /metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    masq: Option<masq_view::Window>,
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Some(Cmd::Gen { iface, scenario, seconds, pps, count, grid_hosts, phase1_pps, profile, subscribers }) => {
            generate(&GenOpts {
                iface,
                scenario,
                seconds: *seconds,
                pps: *pps,
                count: *count,
                grid_hosts: *grid_hosts,
                phase1_pps: *phase1_pps,
                profile: profile.as_deref(),
                subs: *subscribers,
            })
        }
        Some(Cmd::Probe { iface, sink_ns, sink_iface, seconds, rate, skip, tail_log }) => {
            probe(iface, sink_ns, sink_iface, *seconds, *rate, *skip, tail_log.as_deref())
        }
        None => compare(&cli),
    };
    if let Err(e) = result {
        eprintln!("compare: {e}");
        std::process::exit(1);
    }
}

type Res<T> = Result<T, String>;

/// `x` rounded down to a whole number, 0 if negative or not a number:
/// counts and rates of a run, far below 2^53.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn whole(x: f64) -> u64 {
    x.max(0.0) as u64
}

/// The scenario name of the `--profile` row.
const PROFILE_ROW: &str = "profile";

/// The flow of packet `k` in a scenario: (source address, source port, destination port).
fn flow(scenario: &str, k: u64, subs: u32) -> (u32, u16, u16) {
    let subs = u64::from(subs.clamp(1, 1 << 22));
    let i = match scenario {
        "1flow" => 0,
        "100k" => k % 100_000,
        _ => k,
    };
    let sub = u32::try_from(i % subs).unwrap_or(0);
    let sport = 1024 + u16::try_from((i / subs) % 64_000).unwrap_or(0);
    let dport = 5000 + u16::try_from(i % u64::from(DPORTS)).unwrap_or(0);
    (0x6440_0000 + sub, sport, dport)
}

/// Nanoseconds since the Unix epoch: the same clock in every namespace.
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().saturating_mul(1_000_000_000).saturating_add(u64::from(d.subsec_nanos())))
}

/// Where a frame carries its send time (the UDP payload's first 8 bytes).
const STAMP: std::ops::Range<usize> = 42..50;

/// Writes a 60-byte UDP frame (64 on the wire with the FCS) of flow `k`
/// of a scenario of [`flow`] over `subs` subscribers.
fn write_frame(f: &mut [u8], src_mac: [u8; 6], dst_mac: [u8; 6], scenario: &str, k: u64, subs: u32) -> u32 {
    rfc9693::write_udp(f, src_mac, dst_mac, flow(scenario, k, subs))
}

fn mac_of(iface: &str) -> Res<[u8; 6]> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{iface}/address")).map_err(|e| format!("{iface}: {e}"))?;
    dataplane::l2::parse_mac(s.trim()).ok_or_else(|| format!("{iface}: bad MAC"))
}

/// What `compare gen` sends.
struct GenOpts<'a> {
    iface: &'a str,
    scenario: &'a str,
    seconds: f64,
    pps: u64,
    count: u64,
    grid_hosts: u32,
    phase1_pps: u64,
    profile: Option<&'a std::path::Path>,
    /// Subscribers the plain scenarios' flows spread over.
    subs: u32,
}

/// `compare gen`: sends for `seconds` (or `count` frames): paced in
/// batches at `pps`, or as fast as the socket takes frames; then
/// prints `sent N`. The `rfc4814` and `grid` scenarios first pass over
/// their flows once (RFC 9693's phase 1, at `phase1_pps`), then `rfc4814`
/// draws ports pseudorandomly (phase 2) and `grid` goes round again.
/// `syn` and `rst` are TCP: SYN, then RST, of flow `k` of `new`.
fn generate(o: &GenOpts) -> Res<()> {
    let profile = match o.profile {
        Some(p) => {
            Some(perf::trex::Profile::parse(&std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?)?)
        }
        None => None,
    };
    let grid = match o.scenario {
        RFC4814 => Some(rfc9693::Grid::RFC4814),
        GRID => Some(rfc9693::Grid::csit(o.grid_hosts)),
        _ => None,
    };
    let phase1 = grid.map_or(0, |g| g.size());
    let draws = o.scenario == RFC4814;
    let mut rng = rfc9693::Rng::new(9693);
    let (scenario, subs) = (o.scenario, o.subs);
    let mut frame = |f: &mut [u8], src_mac, dst_mac, k: u64| match (&profile, scenario, grid) {
        (Some(p), _, _) => p.write(f, src_mac, dst_mac, k),
        (None, "syn", _) => {
            rfc9693::write_tcp(f, src_mac, dst_mac, flow("new", k, subs), rfc9693::TCP_SYN, rfc9693::isn(k))
        }
        (None, "rst", _) => rfc9693::write_tcp(
            f,
            src_mac,
            dst_mac,
            flow("new", k, subs),
            rfc9693::TCP_RST,
            rfc9693::isn(k).wrapping_add(1),
        ),
        (None, _, Some(g)) if draws && k >= phase1 => rfc9693::write_udp(f, src_mac, dst_mac, g.pseudorandom(&mut rng)),
        (None, _, Some(g)) => rfc9693::write_udp(f, src_mac, dst_mac, g.enumerate(k)),
        (None, _, None) => write_frame(f, src_mac, dst_mac, scenario, k, subs),
    };
    core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
    let src_mac = mac_of(o.iface)?;
    // The box's inside MAC: the lab's fixed address of nat-in.
    let dst_mac = [2, 0, 0, 0, 1, 1];
    let mut tx = dataplane::xdp::XdpTx::open(o.iface, 0, 4096).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(o.seconds);
    let limit = if o.count > 0 { o.count } else { u64::MAX };
    let mut k: u64 = 0;
    // Batches of up to 64; with a pace, no more than it allows by now.
    let paced_phase1 = o.phase1_pps > 0 && phase1 > 0;
    let mut pace_from: Option<(Instant, u64)> = if paced_phase1 { None } else { Some((start, 0)) };
    while k < limit {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let allowed = if paced_phase1 && k < phase1 {
            whole((now - start).as_secs_f64() * o.phase1_pps as f64)
        } else if o.pps > 0 {
            let (t0, k0) = *pace_from.get_or_insert((now, k));
            k0 + whole((now - t0).as_secs_f64() * o.pps as f64)
        } else {
            u64::MAX
        };
        // Phase 1 ends exactly at the last flow.
        let allowed = if paced_phase1 && k < phase1 { allowed.min(phase1) } else { allowed };
        let want = allowed.min(limit).saturating_sub(k).min(64);
        if want == 0 {
            std::thread::yield_now();
            continue;
        }
        let base = k;
        k += tx.send(want as usize, |i, f| frame(f, src_mac, dst_mac, base + i as u64)) as u64;
    }
    println!("sent {k} seconds {}", start.elapsed().as_secs_f64());
    Ok(())
}

/// The generator's last line, `sent N seconds S`: the frames it sent and
/// the seconds from its start to its last frame.
fn parse_sent(stdout: &str) -> Option<(u64, f64)> {
    let mut w = stdout.split_whitespace();
    match (w.next(), w.next(), w.next(), w.next()) {
        (Some("sent"), Some(n), Some("seconds"), Some(s)) => Some((n.parse().ok()?, s.parse().ok()?)),
        _ => None,
    }
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

/// CPU 0's busy share (percent) from which the generator counts as
/// saturated: it sent as fast as its CPU let it.
const GEN_SATURATED: f64 = 95.0;

/// What limited a row: the path when it delivered less than 98% of what
/// the generator offered (it dropped, at its rings or at the veth's queue
/// when its receive did not keep up); else the generator when it was
/// saturated, its CPU (CPU 0) busy at least [`GEN_SATURATED`] percent or
/// its offer at its own configured rate `cap_pps`; else `unclear` (the path
/// kept up with an offer that something else held down: the machine's
/// other load, or a generator that waited). CPU 1's busy share does not
/// decide: masq's workers poll, so theirs reads near 100% under any load.
fn limit(pps: f64, offered_pps: f64, gen_cpu: f64, cap_pps: Option<f64>) -> &'static str {
    if pps < 0.98 * offered_pps {
        "path"
    } else if gen_cpu >= GEN_SATURATED || cap_pps.is_some_and(|cap| offered_pps >= 0.98 * cap) {
        "generator"
    } else {
        "unclear"
    }
}

/// A ratio cell of the table: `x / y`, with the limits of the rows that
/// were not limited by their path (such a ratio does not compare paths).
fn ratio_cell(x: &Row, y: &Row) -> String {
    if y.pps <= 0.0 {
        return "-".into();
    }
    let mut not_path: Vec<&str> = [x.limit.as_str(), y.limit.as_str()].into_iter().filter(|l| *l != "path").collect();
    not_path.dedup();
    match not_path.as_slice() {
        [] => format!("{:.2}x", x.pps / y.pps),
        l => format!("{:.2}x ({})", x.pps / y.pps, l.join(", ")),
    }
}

/// The dropping sink's object file, written at the start of a run.
fn sink_obj() -> PathBuf {
    std::env::temp_dir().join(format!("{PREFIX}sink.o"))
}

/// Per CPU, (busy, total) jiffies from /proc/stat.
fn cpu_times() -> Vec<(u64, u64)> {
    cpu_times_and_steal().0
}

/// [`cpu_times`] and the steal ticks of every CPU (the 8th field of the
/// cpuN lines), from one read of /proc/stat.
fn cpu_times_and_steal() -> (Vec<(u64, u64)>, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let (mut out, mut steal) = (Vec::new(), 0);
    for l in stat.lines() {
        let mut f = l.split_whitespace();
        // "cpu" alone is the total; "cpuN" are the CPUs, in order.
        let Some(n) = f.next().and_then(|name| name.strip_prefix("cpu")) else { continue };
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let v: Vec<u64> = f.filter_map(|x| x.parse().ok()).collect();
        let total: u64 = v.iter().take(8).sum();
        // idle and iowait are the 4th and 5th fields.
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        out.push((total - idle.min(total), total));
        steal += v.get(7).copied().unwrap_or(0);
    }
    (out, steal)
}

/// Percent of a CPU's time spent busy between two samples.
fn busy_share(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> f64 {
    match (a, b) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => 100.0 * b1.saturating_sub(b0) as f64 / (t1 - t0) as f64,
        _ => 0.0,
    }
}

/// Frames the generator offered the box: what its veth handed to the
/// box's inside link, received or dropped there (the generator's
/// interface counts both as transmitted or dropped on transmit).
fn offered_count() -> Res<u64> {
    let read = |f: &str| -> Res<u64> {
        in_ns("in", &["cat", &format!("/sys/class/net/in0/statistics/{f}")])?
            .trim()
            .parse()
            .map_err(|e| format!("in0 {f}: {e}"))
    };
    Ok(read("tx_packets")? + read("tx_dropped")?)
}

/// Threaded NAPI on the box's veths, the threads on the box's CPU (module
/// doc); `sender` leaves the kernel's default.
fn place_receive(placement: Placement, fifo: u32) -> Res<()> {
    if placement == Placement::Sender {
        return Ok(());
    }
    for dev in ["nat-in", "nat-out"] {
        // GRO gives a veth its NAPI even without an XDP program (the kernel paths).
        in_ns("nat", &["ethtool", "-K", dev, "gro", "on"])?;
        in_ns("nat", &["sh", "-c", &format!("echo 1 > /sys/class/net/{dev}/threaded")])?;
    }
    pin_napi_threads(fifo)
}

/// Pins the box's NAPI threads (`napi/nat-in-*`, `napi/nat-out-*`) to CPU 1,
/// and with `fifo` > 0 makes them SCHED_FIFO at that priority (`--napi-fifo`).
/// Run after each path starts: attaching an XDP program may make new ones.
fn pin_napi_threads(fifo: u32) -> Res<()> {
    let mut pinned = 0;
    for e in std::fs::read_dir("/proc").map_err(|e| e.to_string())?.flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.starts_with("napi/nat-in-") || comm.starts_with("napi/nat-out-") {
            sh(&["taskset", "-pc", "1", &pid])?;
            if fifo > 0 {
                sh(&["chrt", "-f", "-p", &fifo.to_string(), &pid])?;
            }
            pinned += 1;
        }
    }
    if pinned == 0 {
        return Err("no NAPI thread of the box's veths to pin (threaded NAPI not taken?)".into());
    }
    Ok(())
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

/// A path under test, set up in the box's namespace.
enum Running {
    Kernel,
    Masq(Child, std::sync::mpsc::Receiver<String>),
    Einat(Child),
}

fn start_path(path: &str, cli: &Cli) -> Res<Running> {
    start_path_sized(path, cli, 2_097_152)
}

/// [`start_path`] with masq's session table of `max_sessions` (its
/// `--max-sessions`; the kernel's limit is the caller's, global).
fn start_path_sized(path: &str, cli: &Cli, max_sessions: u32) -> Res<Running> {
    let _ = in_ns("nat", &["nft", "flush", "ruleset"]);
    let _ = in_ns("nat", &["conntrack", "-F"]);
    let masq = cli.masq.as_path();
    match path {
        "kernel-route" => Ok(Running::Kernel),
        EINAT => {
            let bin = cli.einat.as_ref().ok_or("the einat path needs --einat PATH")?;
            let ns = format!("{PREFIX}nat");
            let bin = bin.to_str().ok_or("einat path")?;
            // SNAT of the inside prefix to nat-out's address, every port
            // (the 100k and new scenarios need more than its default 10,000).
            let log_path = std::env::temp_dir().join(format!("{PREFIX}einat.log"));
            let log = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
            let mut child = Command::new("ip")
                .args(["netns", "exec", &ns, bin, "-i", "nat-out", "--nat44", "--internal", "100.64.0.0/10"])
                .args(["--ports", "1024-65535"])
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log)
                .spawn()
                .map_err(|e| format!("starting einat: {e}"))?;
            // It attaches its programs (TCX links, which `tc` does not list)
            // and says so when it has taken the interface's address.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let said = std::fs::read_to_string(&log_path).unwrap_or_default();
                if said.contains("external address") {
                    break;
                }
                if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("einat did not attach to nat-out in 10 s: {}", said.trim()));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(Running::Einat(child))
        }
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
            let yaml = std::env::temp_dir().join(format!("{PREFIX}masq.yaml"));
            let yaml = yaml.to_str().ok_or("temp path")?.to_string();
            let mut args = vec!["netns", "exec", &ns, masq, "run", "--cores", "1"];
            let max = max_sessions.to_string();
            if path == "masq-forward" {
                args.extend(["--inside", "nat-in", "--outside", "nat-out", "--no-nat"]);
            } else {
                let log = path == NAT_LOG;
                if log {
                    let _ = std::fs::remove_file(nat_log_file());
                    in_ns("nat", &["ip", "link", "set", "lo", "up"])?;
                }
                std::fs::write(&yaml, masq_nat_config(cli.block_size, log, cli.masq_ring_size, cli.masq_busy_poll_us))
                    .map_err(|e| format!("{yaml}: {e}"))?;
                args.extend(["--config", &yaml, "--max-sessions", &max]);
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

/// The masq-nat path's configuration: what `--pool 198.18.0.0/24
/// --nat-src 100.64.0.0/10` sets up, with `block_size` ports a block (and
/// blocks enough for the default's 4096 ports a subscriber, at most 32); with
/// `log`, NAT event export to a JSON-lines file and IPFIX ([`NAT_LOG`]).
fn masq_nat_config(block_size: u16, log: bool, ring_size: Option<u32>, busy_poll_us: Option<u32>) -> String {
    // As many blocks as give a subscriber the default's 8 x 512 ports, at most 32.
    let max_blocks = (4096 / block_size.max(1)).clamp(1, 32);
    let mut y = format!(
        "interfaces: {{inside: nat-in, outside: nat-out}}
pools:
  - name: pool
    addresses: [198.18.0.0/24]
    block_size: {block_size}
    max_blocks_per_subscriber: {max_blocks}
rules:
  - action: snat
    pool: pool
    match: {{src: [100.64.0.0/10]}}
"
    );
    let mut workers = vec!["cores: [1]".to_string()];
    if let Some(r) = ring_size {
        // Four times the ring in frames: both fill rings full, an eighth kept.
        workers.push(format!("ring_size: {r}, umem_frames: {}", 4 * r));
    }
    if let Some(us) = busy_poll_us {
        workers.push(format!("busy_poll_us: {us}"));
    }
    if workers.len() > 1 {
        y += &format!("workers: {{{}}}\n", workers.join(", "));
    }
    if log {
        y += &format!(
            "logging:\n  sinks:\n    - {{kind: json, path: {}}}\n    - {{kind: ipfix, address: \"{IPFIX_DRAIN}\"}}\n",
            nat_log_file().display()
        );
    }
    y
}

/// The masq-nat-log path's JSON-lines file.
fn nat_log_file() -> PathBuf {
    std::env::temp_dir().join(format!("{PREFIX}nat.jsonl"))
}

/// Stops a path; returns masq's drop summary.
fn stop_path(r: Running) -> String {
    let _ = in_ns("nat", &["nft", "flush", "ruleset"]);
    match r {
        Running::Kernel => {
            let n = in_ns("nat", &["conntrack", "-C"]).unwrap_or_default();
            format!("conntrack entries {}", n.trim())
        }
        Running::Einat(mut child) => {
            let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let _ = child.wait();
            String::new()
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
    interrupted()?;
    let running = start_path(path, cli)?;
    if cli.placement == Placement::Box {
        pin_napi_threads(cli.napi_fifo)?;
    }
    let self_exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // RFC 9693's phase 1 (every session made once, paced) inside the warm-up.
    let grid = match scenario {
        RFC4814 => Some(rfc9693::Grid::RFC4814),
        GRID => Some(rfc9693::Grid::csit(cli.grid.unwrap_or(1024))),
        _ => None,
    };
    let warmup = match grid {
        Some(g) if cli.open_pps > 0 => cli.warmup.max(g.size() as f64 / cli.open_pps as f64 + 0.5),
        _ => cli.warmup,
    };
    // A NAT path's sample of what arrives (translation.rs) is taken after
    // the window, while the generator still sends.
    let nat = translation::is_nat(path);
    let total = warmup + cli.seconds + if nat { 1.5 } else { 0.5 };
    let before = sink_count()?;
    let gen = Command::new("ip")
        .args(["netns", "exec", &format!("{PREFIX}in"), self_exe.to_str().ok_or("exe path")?, "gen", "--iface", "in0"])
        .args(["--scenario", scenario, "--seconds", &total.to_string(), "--subscribers", &cli.subscribers.to_string()])
        .args(["--grid-hosts", &cli.grid.unwrap_or(1024).to_string(), "--phase1-pps", &cli.open_pps.to_string()])
        .args(match (&cli.profile, scenario) {
            (Some(p), PROFILE_ROW) => vec![std::ffi::OsString::from("--profile"), p.clone().into_os_string()],
            _ => vec![],
        })
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("generator: {e}"))?;
    pause(Duration::from_secs_f64(warmup))?;
    let (c0, o0, cpu0, t0) = (sink_count()?, offered_count()?, cpu_times(), Instant::now());
    pause(Duration::from_secs_f64(cli.seconds))?;
    let (c1, o1, cpu1, t1) = (sink_count()?, offered_count()?, cpu_times(), Instant::now());
    let verdict = if nat { Some(translation::judge(path, &translation::sample(&sink_obj())?)) } else { None };
    let out = gen.wait_with_output().map_err(|e| format!("generator: {e}"))?;
    let (sent, _) = parse_sent(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| format!("generator failed: {}", String::from_utf8_lossy(&out.stdout)))?;
    pause(Duration::from_millis(300))?;
    let after = sink_count()?;
    let mut detail = stop_path(running);
    if let Some(v) = &verdict {
        let text = v.as_ref().unwrap_or_else(|e| e);
        detail = if detail.is_empty() { text.clone() } else { format!("{detail}; {text}") };
    }
    if path == NAT_LOG {
        // What the export wrote (the whole run): block events of the JSON sink.
        let text = std::fs::read_to_string(nat_log_file()).unwrap_or_default();
        let blocks = text.lines().filter(|l| l.contains("\"event\":\"block_allocated\"")).count();
        let other = text.lines().count().saturating_sub(blocks);
        detail = format!("{detail}; nat log: {blocks} block events, {other} other");
        let _ = std::fs::remove_file(nat_log_file());
    }
    let secs = (t1 - t0).as_secs_f64();
    let pps = c1.saturating_sub(c0) as f64 / secs;
    let offered_pps = o1.saturating_sub(o0) as f64 / secs;
    let busy = |cpu: usize| busy_share(cpu0.get(cpu).copied(), cpu1.get(cpu).copied());
    let (gen_cpu, box_cpu) = (busy(0), busy(1));
    Ok(Row {
        scenario: scenario.into(),
        path: path.into(),
        pps,
        drops: sent.saturating_sub(after - before),
        sent,
        detail,
        offered_pps,
        gen_cpu,
        box_cpu,
        // The throughput rows' generator is unpaced: no cap of its own.
        limit: limit(pps, offered_pps, gen_cpu, None).into(),
        translated: verdict.map(|v| v.is_ok()),
    })
}

/// The paths a run measures, from `--paths`, `--einat` and `--nat-log`;
/// an error for a path it does not know or one it cannot run.
fn resolve_paths(cli: &Cli) -> Res<Vec<String>> {
    let mut paths = cli.paths.clone();
    if let Some(p) = paths.iter().find(|p| !PATHS.contains(&p.as_str()) && *p != NAT_LOG && *p != EINAT) {
        return Err(format!("unknown path {p} ({}, {NAT_LOG}, {EINAT})", PATHS.join(", ")));
    }
    match &cli.einat {
        Some(bin) if !bin.exists() => return Err(format!("--einat {}: no such file", bin.display())),
        Some(_) if !paths.iter().any(|p| p == EINAT) => paths.push(EINAT.into()),
        Some(_) => {}
        None => {
            if paths.iter().any(|p| p == EINAT) {
                return Err("--paths einat needs --einat PATH (an einat binary, built from its own sources)".into());
            }
            eprintln!("einat: skipped (no --einat PATH: einat-ebpf is built from its own sources)");
        }
    }
    if cli.nat_log && !paths.iter().any(|p| p == NAT_LOG) {
        paths.push(NAT_LOG.into());
    }
    Ok(paths)
}

/// For the tear-down test (perf/tests/compare_teardown.rs): panic at this
/// step (`lab`: once the lab is up) to show the panic hook tears down.
const PANIC_AT: &str = "MQCMP_TEST_PANIC_AT";

fn compare(cli: &Cli) -> Res<()> {
    let paths = resolve_paths(cli)?;
    if sh(&["id", "-u"])?.trim() != "0" {
        return Err("needs root: it builds network namespaces and attaches XDP programs (sudo)".into());
    }
    if paths.iter().any(|p| p.starts_with("masq")) && !cli.masq.exists() {
        return Err(format!("{} not found: run `cargo build --release -p control` first", cli.masq.display()));
    }
    teardown::install()?;
    let machine = Machine::read(cli.placement, cli.napi_fifo);
    eprintln!("{}", machine.line());
    let _limits = ConntrackLimits::raise();
    let _lab = Lab::up()?;
    interrupted()?;
    if std::env::var(PANIC_AT).is_ok_and(|v| v == "lab") {
        panic!("{PANIC_AT}=lab");
    }
    place_receive(cli.placement, cli.napi_fifo)?;
    // The sink: drop everything arriving at the outside router.
    let obj = sink_obj();
    std::fs::write(&obj, dataplane::xdp::SINK_PROGRAM).map_err(|e| e.to_string())?;
    in_ns(
        "out",
        &["ip", "link", "set", "dev", "out0", "xdpdrv", "obj", obj.to_str().unwrap_or_default(), "sec", "xdp"],
    )?;
    // The IPFIX sink's collector: a drain on CPU 0, the CPU of masq's
    // control and sink threads (killed with the lab's namespaces).
    let _drain = if paths.iter().any(|p| p == NAT_LOG) { Some(ipfix_drain()?) } else { None };
    let mut rows = Vec::new();
    let mut scenarios = cli.scenarios.clone();
    if let Some(p) = &cli.profile {
        // Loaded here too, so a profile the generator cannot replay fails before any row.
        perf::trex::Profile::parse(&std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?)?;
        scenarios.push(PROFILE_ROW.into());
    }
    let rfc_tests = rfc::selected(cli)?;
    if rfc_tests.iter().any(|t| t == rfc::THROUGHPUT) && !scenarios.iter().any(|s| s == RFC4814) {
        scenarios.push(RFC4814.into());
    }
    if cli.grid.is_some() && !scenarios.iter().any(|s| s == GRID) {
        scenarios.push(GRID.into());
    }
    if let Some(s) =
        scenarios.iter().find(|s| !ALL_SCENARIOS.contains(&s.as_str()) || (*s == GRID && cli.grid.is_none()))
    {
        return Err(format!("unknown scenario {s} (1flow, 100k, new, rfc4814, grid with --grid HOSTS)"));
    }
    for scenario in &scenarios {
        for path in &paths {
            eprint!("{scenario:>6} {path:<13} ... ");
            let _ = std::io::stderr().flush();
            let row = measure(cli, scenario, path)?;
            eprintln!(
                "{:>10.0} pps of {:.0} offered (cpu0 {:.0}%, cpu1 {:.0}%: {} limit), {} dropped of {} sent  {}",
                row.pps, row.offered_pps, row.gen_cpu, row.box_cpu, row.limit, row.drops, row.sent, row.detail
            );
            rows.push(row);
        }
    }
    let rfc_rows = rfc::run(cli, &rfc_tests, &paths)?;
    let mut lat = Vec::new();
    if let Some(dir) = &cli.latency_tail_log {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    if !cli.no_latency {
        let rates = [cli.latency_rate, cli.low_rate];
        for rate in rates.into_iter().filter(|&r| r > 0) {
            for run in 1..=cli.latency_repeat {
                for path in &paths {
                    eprint!("latency {path:<13} at {rate} pps, run {run} ... ");
                    let _ = std::io::stderr().flush();
                    let row = measure_latency(cli, path, &obj, rate, run)?;
                    eprintln!(
                        "p50 {} us, p99 {} us, p99.9 {} us, max {} us ({} frames)",
                        row.p50_us, row.p99_us, row.p999_us, row.max_us, row.n
                    );
                    lat.push(row);
                }
            }
        }
    }
    let mut idle = Vec::new();
    if cli.idle_seconds > 0.0 {
        for path in paths.iter().filter(|p| p.starts_with("masq")) {
            eprint!("idle    {path:<13} for {} s ... ", cli.idle_seconds);
            let _ = std::io::stderr().flush();
            let row = measure_idle(cli, path)?;
            eprintln!("{:.1}% of a core", row.cpu_percent);
            idle.push(row);
        }
    }
    let _ = std::fs::remove_file(&obj);
    println!("\n{}", machine.line());
    print_table(&rows, &paths, cli.grid.unwrap_or(1024));
    rfc::print(cli, &rfc_rows);
    print_latency(&lat);
    for r in &idle {
        println!("idle: {} used {:.1}% of a core over {} s without traffic", r.path, r.cpu_percent, r.seconds);
    }
    let all = report_json(cli, &machine, &rows, &lat, &idle, &rfc_rows);
    let json = serde_json::to_string_pretty(&all).map_err(|e| e.to_string())? + "\n";
    if let Some(file) = &cli.json {
        std::fs::write(file, &json).map_err(|e| format!("{}: {e}", file.display()))?;
        println!("rows written to {}", file.display());
    }
    if let Some(dir) = &cli.report {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join("compare.json");
        std::fs::write(&file, &json).map_err(|e| format!("{}: {e}", file.display()))?;
        let page = perf::report::write(dir, &report_data(&machine, &rows, &lat, &rfc_rows))?;
        println!("report written to {}", page.display());
    }
    let failed: Vec<String> =
        rows.iter().filter(|r| r.translated == Some(false)).map(|r| format!("{} {}", r.scenario, r.path)).collect();
    if !failed.is_empty() {
        return Err(format!("untranslated frames reached the outside in: {}", failed.join(", ")));
    }
    Ok(())
}

/// The JSON report (`--json`, `--report`): the machine, the rows, the
/// latency and idle rows, RFC 9693's rows and their options.
fn report_json(
    cli: &Cli,
    machine: &Machine,
    rows: &[Row],
    lat: &[LatencyRow],
    idle: &[IdleRow],
    rfc_rows: &[rfc::RfcRow],
) -> serde_json::Value {
    serde_json::json!({
        "machine": machine,
        "rows": rows,
        "latency": lat,
        "latency_summary": latency_summary(lat),
        "idle": idle,
        "rfc9693": rfc_rows,
        "rfc9693_options": rfc::Options::of(cli),
    })
}

/// A child killed (and reaped) on drop: the IPFIX drain ([`ipfix_drain`]),
/// the latency probe.
struct Drain(Child);

impl Drop for Drain {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A UDP drain on [`IPFIX_DRAIN`] in the box's namespace, pinned to CPU 0.
fn ipfix_drain() -> Res<Drain> {
    in_ns("nat", &["ip", "link", "set", "lo", "up"])?;
    let (host, port) = IPFIX_DRAIN.split_once(':').ok_or("drain address")?;
    let code = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('{host}',{port}))\nwhile True: s.recv(65535)"
    );
    let child = Command::new("ip")
        .args(["netns", "exec", &format!("{PREFIX}nat"), "taskset", "-c", "0", "/usr/bin/python3", "-c", &code])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("IPFIX drain: {e}"))?;
    Ok(Drain(child))
}

/// The page `--report` writes, from the run's rows.
fn report_data(machine: &Machine, rows: &[Row], lat: &[LatencyRow], rfc_rows: &[rfc::RfcRow]) -> perf::report::Data {
    use perf::report::{Bar, Cdf, Data, TableRow};
    let bar = |r: &Row, value: f64| Bar { group: r.scenario.clone(), series: r.path.clone(), value };
    Data {
        machine: machine.line(),
        throughput: rows.iter().map(|r| bar(r, r.pps)).collect(),
        drops: rows.iter().map(|r| bar(r, r.drops as f64)).collect(),
        latency: lat
            .iter()
            .filter(|l| !l.cdf.is_empty())
            .map(|l| Cdf {
                label: format!("{} at {}/s", l.path, l.rate),
                points: l.cdf.iter().map(|&(q, us)| (us as f64, q)).collect(),
            })
            .collect(),
        rfc9693: rfc_rows
            .iter()
            .map(|r| TableRow {
                test: rfc::title(&r.test).to_string(),
                path: r.path.clone(),
                value: format!("{:.0} {}", r.value, r.unit),
                detail: r.detail.clone(),
            })
            .collect(),
        json: Some("compare.json".into()),
    }
}

/// CPU a masq path uses without traffic.
#[derive(serde::Serialize, Clone, Debug)]
struct IdleRow {
    path: String,
    seconds: f64,
    /// Percent of one core (all of masq's threads).
    cpu_percent: f64,
}

/// masq started on `path`, left a second to settle, then its CPU time
/// (user + system, /proc) over `--idle-seconds` without traffic.
fn measure_idle(cli: &Cli, path: &str) -> Res<IdleRow> {
    interrupted()?;
    let running = start_path(path, cli)?;
    let pid = match &running {
        Running::Masq(child, _) => child.id(),
        _ => return Err(format!("{path}: not a masq path")),
    };
    let cpu = || -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let f: Vec<f64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        // utime and stime, in ticks of 1/100 s.
        (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
    };
    pause(Duration::from_secs(1))?;
    let (c0, t0) = (cpu(), Instant::now());
    pause(Duration::from_secs_f64(cli.idle_seconds))?;
    let (c1, secs) = (cpu(), t0.elapsed().as_secs_f64());
    stop_path(running);
    Ok(IdleRow { path: path.into(), seconds: cli.idle_seconds, cpu_percent: 100.0 * (c1 - c0) / secs })
}

/// The ratios printed per scenario: (numerator, denominator).
const RATIOS: [(&str, &str); 5] = [
    ("masq-forward", "kernel-route"),
    ("masq-nat", "kernel-nat"),
    ("masq-nat", "masq-forward"),
    ("masq-nat", EINAT),
    (NAT_LOG, "masq-nat"),
];

fn print_table(rows: &[Row], paths: &[String], grid_hosts: u32) {
    let get = |s: &str, p: &str| rows.iter().find(|r| r.scenario == s && r.path == p);
    // einat's and the NAT log's ratios only when they ran.
    let ran = |p: &str| paths.iter().any(|x| x == p);
    let ratios: Vec<(&str, &str)> =
        RATIOS.into_iter().filter(|(a, b)| (*b != EINAT || ran(EINAT)) && (*a != NAT_LOG || ran(NAT_LOG))).collect();
    let mut head = String::from("| scenario |");
    for p in paths {
        head.push_str(&format!(" {p} (limit) |"));
    }
    for &(a, b) in &ratios {
        head.push_str(&format!(" {a} / {b} |"));
    }
    println!("\n{head}");
    println!("{}", "|---".repeat(1 + paths.len() + ratios.len()) + "|");
    let scenarios: Vec<&str> =
        ALL_SCENARIOS.iter().copied().filter(|s| rows.iter().any(|r| r.scenario == *s)).collect();
    for s in scenarios {
        let note = match s {
            "new" => " (new conn/s)".to_string(),
            RFC4814 => format!(" (RFC 4814 ports, {} sessions)", rfc9693::Grid::RFC4814.size()),
            GRID => format!(" ({} hosts x 63 ports)", grid_hosts),
            _ => String::new(),
        };
        let mut line = format!("| {s}{note} |");
        for p in paths {
            match get(s, p) {
                Some(r) if r.translated == Some(false) => {
                    line.push_str(&format!(" {:.0}k (FAILED: untranslated) |", r.pps / 1000.0))
                }
                Some(r) => line.push_str(&format!(" {:.0}k ({}) |", r.pps / 1000.0, r.limit)),
                None => line.push_str(" - |"),
            }
        }
        for &(a, b) in &ratios {
            match (get(s, a), get(s, b)) {
                (Some(x), Some(y)) => line.push_str(&format!(" {} |", ratio_cell(x, y))),
                _ => line.push_str(" - |"),
            }
        }
        println!("{line}");
    }
    println!("\nper row: offered, CPU 0 (generator) and CPU 1 (box) busy in the window; drops (sent but not received, whole run incl. warm-up):");
    for r in rows {
        println!(
            "  {:>6} {:<13} offered {:>6.0}k  cpu0 {:>3.0}%  cpu1 {:>3.0}%  {:<9}  dropped {:>10} of {:>10}  {}",
            r.scenario,
            r.path,
            r.offered_pps / 1000.0,
            r.gen_cpu,
            r.box_cpu,
            r.limit,
            r.drops,
            r.sent,
            r.detail
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_are_distinct_where_the_scenario_says() {
        let set =
            |s: &str, n: u64| (0..n).map(|k| flow(s, k, SUBSCRIBERS)).collect::<std::collections::HashSet<_>>().len();
        assert_eq!(set("1flow", 1000), 1);
        assert_eq!(set("100k", 300_000), 100_000);
        assert_eq!(set("new", 500_000), 500_000);
        let sources = (0..5000).map(|k| flow("new", k, 1024).0).collect::<std::collections::HashSet<_>>();
        assert_eq!(sources.len(), 1024, "--subscribers 1024");
    }

    #[test]
    fn a_row_is_limited_by_its_path_by_a_saturated_or_capped_generator_or_is_unclear() {
        assert_eq!(limit(900_000.0, 1_000_000.0, 100.0, None), "path", "it dropped a tenth");
        assert_eq!(limit(900_000.0, 1_000_000.0, 40.0, None), "path", "lost frames decide first");
        assert_eq!(limit(1_000_000.0, 1_000_000.0, 99.0, None), "generator");
        assert_eq!(limit(990_000.0, 1_000_000.0, 95.0, None), "generator", "1% lost: within the margin");
        assert_eq!(limit(1_000_000.0, 1_000_000.0, 60.0, None), "unclear", "kept up, but the generator had CPU left");
        assert_eq!(limit(1_000_000.0, 1_000_000.0, 94.0, None), "unclear");
        assert_eq!(limit(100_000.0, 100_000.0, 10.0, Some(100_000.0)), "generator", "offered its own cap");
        assert_eq!(limit(50_000.0, 50_000.0, 10.0, Some(100_000.0)), "unclear", "below its cap");
    }

    fn row(path: &str, pps: f64, limit: &str) -> Row {
        Row {
            scenario: "100k".into(),
            path: path.into(),
            pps,
            drops: 0,
            sent: 0,
            detail: String::new(),
            offered_pps: pps,
            gen_cpu: 100.0,
            box_cpu: 100.0,
            limit: limit.into(),
            translated: None,
        }
    }

    #[test]
    fn a_ratio_says_when_a_side_was_not_limited_by_its_path() {
        let cell = |a: &str, b: &str| ratio_cell(&row("masq-nat", 500.0, a), &row("kernel-nat", 500.0, b));
        assert_eq!(cell("path", "path"), "1.00x");
        assert_eq!(cell("generator", "path"), "1.00x (generator)");
        assert_eq!(cell("path", "unclear"), "1.00x (unclear)");
        assert_eq!(cell("generator", "generator"), "1.00x (generator)");
        assert_eq!(cell("generator", "unclear"), "1.00x (generator, unclear)");
        assert_eq!(ratio_cell(&row("a", 1.0, "path"), &row("b", 0.0, "path")), "-");
    }

    #[test]
    fn the_json_report_holds_the_machine_and_each_rows_offer_cpu_and_limit() {
        let cli = Cli::parse_from(["compare"]);
        let machine = Machine::read(Placement::Box, 0);
        let mut r = row("einat", 1000.0, "path");
        r.translated = Some(true);
        let v = report_json(&cli, &machine, &[r], &[], &[], &[]);
        for k in ["cpu", "kernel", "rustc"] {
            assert!(v["machine"][k].as_str().is_some_and(|s| !s.is_empty()), "machine.{k}: {v}");
        }
        assert!(v["machine"]["vcpus"].as_u64().is_some_and(|n| n > 0), "{v}");
        assert_eq!(v["machine"]["napi_fifo"], 0);
        assert_eq!(v["machine"]["placement"], "box");
        let row = &v["rows"][0];
        assert_eq!(row["offered_pps"], 1000.0);
        assert_eq!((row["gen_cpu"].as_f64(), row["box_cpu"].as_f64()), (Some(100.0), Some(100.0)));
        assert_eq!(row["limit"], "path");
        assert_eq!(row["translated"], true);
    }

    #[test]
    fn the_einat_path_without_a_binary_is_an_error_and_so_is_an_unknown_path() {
        let paths = |args: &[&str]| resolve_paths(&Cli::parse_from([&["compare"], args].concat()));
        let e = paths(&["--paths", "einat"]).expect_err("einat asked for, no binary");
        assert!(e.contains("--einat PATH"), "{e}");
        assert!(paths(&["--paths", "kernel-nat,einat"]).is_err());
        assert!(paths(&["--paths", "kernel-nat,masq-nta"]).expect_err("a typo").contains("unknown path masq-nta"));
        assert_eq!(paths(&[]).expect("the default"), PATHS.map(String::from), "einat skipped without --einat");
        assert_eq!(paths(&["--paths", "masq-nat", "--nat-log"]).expect("valid"), ["masq-nat", NAT_LOG]);
        let with = paths(&["--paths", "kernel-nat", "--einat", "/bin/sh"]).expect("a binary");
        assert_eq!(with, ["kernel-nat", EINAT], "--einat adds the path");
        assert!(paths(&["--einat", "/nonexistent/einat"]).is_err());
    }

    #[test]
    fn cpu_shares_come_from_proc_stat() {
        let t = cpu_times();
        // One entry per cpuN line (not available_parallelism, which taskset and cgroups shrink).
        let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
        let cpus = stat.lines().filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit));
        assert_eq!(t.len(), cpus.count());
        assert!(!t.is_empty() && t.iter().all(|&(busy, total)| busy <= total && total > 0));
        assert_eq!(busy_share(Some((10, 100)), Some((60, 200))), 50.0);
        assert_eq!(busy_share(Some((10, 100)), Some((10, 100))), 0.0);
    }

    #[test]
    fn the_masq_nat_configuration_is_the_quick_set_ups_and_the_log_adds_two_sinks() {
        let w = config::load(&masq_nat_config(512, false, Some(8192), Some(0)), 2).expect("a bigger ring is valid");
        assert_eq!((w.raw.workers.ring_size, w.raw.workers.busy_poll_us), (8192, 0));
        assert_eq!(w.raw.workers.cores, [1]);
        let c = config::load(&masq_nat_config(512, false, None, None), 2).expect("valid");
        assert_eq!(c.raw.workers, config::Workers::default(), "masq's own worker settings");
        assert_eq!((c.pools.len(), c.pools[0].addresses.len(), c.pools[0].block_size), (1, 256, 512));
        assert_eq!(c.pools[0].mode, config::PoolMode::PortBlocks);
        assert!(c.raw.logging.sinks.is_empty());
        let c = config::load(&masq_nat_config(64, true, None, None), 2).expect("valid");
        assert_eq!((c.pools[0].block_size, c.raw.logging.sinks.len()), (64, 2));
        assert_eq!(c.raw.pools[0].max_blocks_per_subscriber, 32);
        let quick = config::Pool::new("pool", vec!["198.18.0.0/24".into()]);
        let c = config::load(&masq_nat_config(512, false, None, None), 2).expect("valid");
        assert_eq!(c.raw.pools[0], quick, "what --pool makes");
        assert!(config::load(&masq_nat_config(100, false, None, None), 2).is_err(), "not a multiple of 64");
    }

    #[test]
    fn generated_frames_carry_a_valid_ipv4_checksum() {
        let mut f = [0u8; 2048];
        assert_eq!(write_frame(&mut f, [2; 6], [4; 6], "new", 12345, SUBSCRIBERS), 60);
        assert!(dataplane::testing::frames::checksums_ok(&f[..60]));
        let (src, sport, dst, dport) = dataplane::testing::frames::tuple(&f[..60]);
        assert_eq!((src, sport, dst, dport), (0x6440_0000 + 12345, 1024, 0xc633_6401, 5000 + (12345 % 61) as u16));
    }
}
