//! `masq run`: attaches the XDP program, starts one pinned worker per core
//! and runs the control loop on the calling thread (next-hop refresh,
//! neighbour resolution, live counters) until SIGINT or SIGTERM.
//!
//! Exit paths: on a signal the workers finish their round and stop, then
//! the XDP programs are detached (their links dropped). A panic aborts the
//! process (release profile) and a SIGKILL ends it; in both cases the kernel
//! closes the links and the programs go with them.

use anyhow::{bail, Context, Result};
use dataplane::io::FrameIo;
use dataplane::l2::{parse_mac, L2Table, SideL2};
use dataplane::nat::{Engine, EngineParams, Side};
use dataplane::worker::{Mesh, Stats, Worker};
use dataplane::xdp::{LocalAddress, XdpIo, XdpParams, XdpProgram, XDP_STAT_NAMES};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What `masq run` needs besides the engine parameters.
pub struct RunPlan {
    /// Inside interface.
    pub inside: String,
    /// Outside interface.
    pub outside: String,
    /// Cores for workers (worker i on cores[i], queue i).
    pub cores: Vec<usize>,
    /// Engine parameters for worker 0 (the others differ by `worker`).
    pub engine: Option<EngineParams>,
    /// Static next-hop MACs (inside, outside).
    pub static_macs: [Option<[u8; 6]>; 2],
    /// Print a counter line every second.
    pub live: bool,
    /// Stop after this long (tests, demo); None: until a signal.
    pub duration: Option<Duration>,
    /// The control API, if any.
    pub api: Option<ApiPlan>,
    /// Log every port block handed to or taken back from a subscriber.
    pub nat_events: bool,
}

/// What the control API needs at start.
pub struct ApiPlan {
    /// Where it listens.
    pub listen: std::net::SocketAddr,
    /// Bearer token for changes.
    pub token: Option<String>,
    /// The configuration in force, as YAML.
    pub config_yaml: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// The validated configuration in force.
    pub config: config::ValidConfig,
    /// The outside interface's address (masquerade).
    pub outside_addr: Option<u32>,
    /// The box's addresses.
    pub local_addrs: Vec<u32>,
    /// The file SIGHUP re-reads (none: SIGHUP says so and changes nothing).
    pub config_path: Option<std::path::PathBuf>,
}

/// IPv4 addresses of an interface (host order), from `ip -4 -o addr`.
pub fn interface_addrs(iface: &str) -> Result<Vec<u32>> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", iface])
        .output()
        .context("running `ip addr`")?;
    if !out.status.success() {
        bail!("interface {iface}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            it.find(|w| *w == "inet")?;
            let a: std::net::Ipv4Addr = it.next()?.split('/').next()?.parse().ok()?;
            Some(u32::from(a))
        })
        .collect())
}

fn interface_mac(iface: &str) -> Result<[u8; 6]> {
    let path = format!("/sys/class/net/{iface}/address");
    let s = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_mac(s.trim()).with_context(|| format!("bad MAC in {path}"))
}

/// Ring counters and the kernel's socket statistics of one worker.
pub type RingSnapshot = (dataplane::xdp::RingCounters, [(u64, u64, u64); 2]);

/// The TAP device frames for the box itself re-enter the kernel through.
const TAP_NAME: &str = "masq-kernel";
/// Its MAC (locally administered; frames are rewritten to it).
const TAP_MAC: [u8; 6] = [0x02, 0x6d, 0x61, 0x73, 0x71, 0x00];

/// One queue of the TAP device per worker, the device up and without
/// reverse-path filtering (frames from anywhere enter through it). On
/// failure masq runs on, and such frames are counted as not re-injected.
fn open_kernel_taps(workers: usize) -> Vec<dataplane::xdp::KernelTap> {
    let mut taps = Vec::new();
    for _ in 0..workers {
        match dataplane::xdp::KernelTap::open(TAP_NAME, TAP_MAC) {
            Ok(t) => taps.push(t),
            Err(e) => {
                tracing::warn!(
                    "no way back into the kernel ({e}); traffic for the box's own address on NAT ports is dropped"
                );
                return Vec::new();
            }
        }
    }
    let mac = TAP_MAC.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let _ = std::process::Command::new("ip").args(["link", "set", "dev", TAP_NAME, "address", &mac, "up"]).status();
    let _ = std::fs::write(format!("/proc/sys/net/ipv4/conf/{TAP_NAME}/rp_filter"), "0");
    taps
}

/// An nftables table that stops the kernel of masq's namespace from
/// forwarding anything itself while masq forwards: the frames the XDP
/// program gives the kernel are meant for its ICMP errors (time exceeded,
/// fragmentation needed, both sent before the forward hook) and local
/// delivery, never for a second, untranslated path out. Removed at exit;
/// after a SIGKILL the next start replaces it.
struct ForwardGuard(bool);

const GUARD_TABLE: &str = "masq_guard";

impl ForwardGuard {
    fn install() -> Self {
        let rules = format!(
            "table ip {GUARD_TABLE}\ndelete table ip {GUARD_TABLE}\ntable ip {GUARD_TABLE} {{ chain forward {{ type filter hook forward priority -300; policy drop; }}; }}\n"
        );
        let ok = std::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                if let Some(mut i) = c.stdin.take() {
                    i.write_all(rules.as_bytes())?;
                }
                c.wait_with_output()
            })
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            tracing::warn!("could not install the nftables forward guard (is nft installed?); the kernel may forward what masq passes it");
        }
        Self(ok)
    }
}

impl Drop for ForwardGuard {
    fn drop(&mut self) {
        if self.0 {
            let _ = std::process::Command::new("nft").args(["delete", "table", "ip", GUARD_TABLE]).status();
        }
    }
}

/// What a worker publishes for the control thread (try_lock on the worker's side).
pub struct Shared {
    /// Counters and histogram.
    pub stats: Mutex<Stats>,
    /// Ring counters and kernel socket statistics.
    pub ring: Mutex<RingSnapshot>,
}

/// Runs until a signal or `plan.duration`.
pub fn run(plan: RunPlan) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))?;
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))?;

    let in_addrs = interface_addrs(&plan.inside)?;
    let out_addrs = interface_addrs(&plan.outside)?;
    // The box's own addresses go to the kernel, except a masquerade pool's
    // address: NAT ports and ICMP on it come to masq.
    let mut locals: Vec<LocalAddress> = Vec::new();
    for &addr in in_addrs.iter().chain(&out_addrs) {
        let nat_ports = plan.engine.as_ref().and_then(|p| {
            p.pools.iter().find(|pool| pool.addresses.contains(&addr)).map(|pool| (pool.port_min, pool.port_max))
        });
        locals.push(LocalAddress { addr, nat_ports });
    }
    let mtu = |iface: &str| -> u32 {
        std::fs::read_to_string(format!("/sys/class/net/{iface}/mtu"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    // Each side's program hands the kernel the DF packets too big for the other side.
    let mut progs = [
        XdpProgram::attach(&plan.inside, &locals, mtu(&plan.outside))?,
        XdpProgram::attach(&plan.outside, &locals, mtu(&plan.inside))?,
    ];
    let _guard = ForwardGuard::install();
    tracing::info!(
        "XDP program attached to {} ({}) and {} ({})",
        plan.inside,
        progs[0].mode_name(),
        plan.outside,
        progs[1].mode_name()
    );

    let mut l2 = L2Table::default();
    for (i, name) in [&plan.inside, &plan.outside].into_iter().enumerate() {
        l2.sides[i] = SideL2 {
            ifname: name.clone(),
            own_mac: interface_mac(name)?,
            static_mac: plan.static_macs[i],
            ..SideL2::default()
        };
    }
    l2.refresh_from_proc().context("reading routes and neighbours")?;

    let workers = plan.cores.len();
    let mut taps = open_kernel_taps(workers);
    let mesh = Arc::new(Mesh::new(workers, 1024));
    let (unres_tx, unres_rx) = crossbeam_channel::bounded::<(Side, u32)>(256);
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(workers);
    let go = Arc::new(AtomicBool::new(false));
    let mut l2_txs = Vec::new();
    let mut shared = Vec::new();
    let mut command_txs = Vec::new();
    let (events_tx, events_rx) = crossbeam_channel::bounded::<dataplane::nat::ports::BlockEvent>(4096);
    let mut handles = Vec::new();
    for (w, &core) in plan.cores.iter().enumerate() {
        let (l2_tx, l2_rx) = crossbeam_channel::bounded::<Arc<L2Table>>(4);
        l2_txs.push(l2_tx);
        let (cmd_tx, cmd_rx) = crossbeam_channel::bounded::<dataplane::worker::Command>(16);
        command_txs.push(cmd_tx);
        let sh = Arc::new(Shared { stats: Mutex::new(Stats::default()), ring: Mutex::new(Default::default()) });
        shared.push(Arc::clone(&sh));
        let engine = match &plan.engine {
            Some(p) => {
                let mut p = p.clone();
                p.worker = u16::try_from(w)?;
                p.workers = u16::try_from(workers)?;
                Some(Engine::new(&p).map_err(|e| anyhow::anyhow!("{e}"))?)
            }
            None => None,
        };
        let (inside, outside) = (plan.inside.clone(), plan.outside.clone());
        let tap = taps.pop();
        let events_tx = events_tx.clone();
        let (mesh, l2, unres_tx, ready_tx, go, stop) = (
            Arc::clone(&mesh),
            Arc::new(l2.clone()),
            unres_tx.clone(),
            ready_tx.clone(),
            Arc::clone(&go),
            Arc::clone(&stop),
        );
        handles.push(std::thread::Builder::new().name(format!("masq-w{w}")).spawn(move || -> Result<()> {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                tracing::warn!("worker {w}: could not pin to core {core}");
            }
            let io = match XdpIo::open(&inside, &outside, u32::try_from(w)?, XdpParams::default()) {
                Ok(mut io) => {
                    if let Some(t) = tap {
                        io.set_kernel_tap(t);
                    }
                    io
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return Ok(());
                }
            };
            let _ = ready_tx.send(Ok((w, io.fds(), io.zero_copy())));
            while !go.load(Ordering::Acquire) {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut worker = Worker::new(w, io, engine, l2, mesh)
                .with_l2_channels(l2_rx, unres_tx)
                .with_commands(cmd_rx)
                .with_block_events(events_tx);
            worker_loop(&mut worker, &stop, &sh);
            Ok(())
        })?);
    }
    drop(ready_tx);
    for _ in 0..workers {
        match ready_rx.recv() {
            Ok(Ok((w, fds, zc))) => {
                let q = u32::try_from(w)?;
                progs[0].register(q, fds[0])?;
                progs[1].register(q, fds[1])?;
                tracing::info!(
                    "worker {w} on core {} queue {q}: {} mode",
                    plan.cores[w],
                    if zc { "zero-copy" } else { "copy" }
                );
            }
            Ok(Err(e)) => {
                stop.store(true, Ordering::Release);
                bail!("opening AF_XDP sockets: {e}");
            }
            Err(_) => bail!("a worker died while starting"),
        }
    }
    // The control thread (this one) on a core no worker uses, if there is one.
    let spare = core_affinity::get_core_ids().unwrap_or_default().into_iter().find(|c| !plan.cores.contains(&c.id));
    match spare {
        Some(c) if core_affinity::set_for_current(c) => tracing::info!("control thread on core {}", c.id),
        _ => tracing::warn!("no core left for the control thread; it shares one with a worker"),
    }
    let api_state = plan.api.as_ref().map(|a| {
        Arc::new(crate::api::ApiState {
            shared: shared.clone(),
            commands: command_txs.clone(),
            xdp: Mutex::new(xdp_counts(&progs)),
            config_yaml: Mutex::new(a.config_yaml.clone()),
            generation: std::sync::atomic::AtomicU64::new(1),
            reloads: [std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0)],
            token: a.token.clone(),
            ready: AtomicBool::new(false),
            cpus: a.cpus,
            live: Mutex::new(crate::api::Live {
                config: a.config.clone(),
                params: plan.engine.clone(),
                outside_addr: a.outside_addr,
                local_addrs: a.local_addrs.clone(),
            }),
        })
    });
    let api_handle = match (&plan.api, &api_state) {
        (Some(a), Some(st)) => match crate::api::serve(a.listen, Arc::clone(st), Arc::clone(&stop)) {
            Ok(h) => Some(h),
            Err(e) => {
                stop.store(true, Ordering::Release);
                for h in handles {
                    let _ = h.join();
                }
                return Err(e);
            }
        },
        _ => None,
    };
    go.store(true, Ordering::Release);
    if let Some(st) = &api_state {
        st.ready.store(true, Ordering::Relaxed);
    }
    tracing::info!(
        "forwarding {} <-> {} ({}); Ctrl-C stops",
        plan.inside,
        plan.outside,
        if plan.engine.is_some() { "NAT" } else { "no NAT" }
    );

    // A masquerade pool follows the outside interface's address.
    let masq_ports =
        plan.engine.as_ref().and_then(|p| p.pools.iter().find(|x| x.masquerade).map(|x| (x.port_min, x.port_max)));
    let mut outside_now = plan
        .engine
        .as_ref()
        .and_then(|p| p.pools.iter().find(|x| x.masquerade))
        .and_then(|x| x.addresses.first().copied());
    let started = Instant::now();
    let mut last_print = Instant::now();
    let mut last_refresh = Instant::now();
    let mut prev = Totals::default();
    while !stop.load(Ordering::Relaxed) {
        if plan.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        for ev in events_rx.try_iter() {
            if plan.nat_events {
                log_block(&ev);
            }
        }
        if hup.swap(false, Ordering::Relaxed) {
            reload(plan.api.as_ref(), api_state.as_deref());
        }
        for (side, hop) in unres_rx.try_iter().take(64) {
            let ifname = &l2.side(side).ifname;
            // NTF_USE: the kernel resolves the address as if it had a packet for it.
            let _ = std::process::Command::new("ip")
                .args(["neigh", "replace", &std::net::Ipv4Addr::from(hop).to_string(), "dev", ifname, "use"])
                .stderr(std::process::Stdio::null())
                .status();
        }
        if last_refresh.elapsed() >= Duration::from_secs(1) {
            last_refresh = Instant::now();
            if let (Some(ports), Some(old)) = (masq_ports, outside_now) {
                let new = interface_addrs(&plan.outside).ok().and_then(|a| a.first().copied());
                if let Some(new) = new.filter(|&n| n != old) {
                    follow_outside(&command_txs, &mut progs, api_state.as_deref(), old, new, ports);
                    outside_now = Some(new);
                }
            }
            if let Some(st) = &api_state {
                let x = xdp_counts(&progs);
                if let Ok(mut g) = st.xdp.lock() {
                    *g = x;
                }
            }
            let mut fresh = l2.clone();
            if fresh.refresh_from_proc().is_ok() && fresh != l2 {
                l2 = fresh;
                let t = Arc::new(l2.clone());
                for tx in &l2_txs {
                    let _ = tx.try_send(Arc::clone(&t));
                }
            }
        }
        if plan.live && last_print.elapsed() >= Duration::from_secs(1) {
            let dt = last_print.elapsed().as_secs_f64();
            last_print = Instant::now();
            let now = Totals::gather(&shared);
            println!("{}", now.line(&prev, dt));
            prev = now;
        }
    }
    stop.store(true, Ordering::Release);
    if let Some(h) = api_handle {
        let _ = h.join();
    }
    for h in handles {
        match h.join() {
            Ok(r) => r?,
            Err(_) => bail!("a worker panicked"),
        }
    }
    let t = Totals::gather(&shared);
    let xdp: Vec<String> = xdp_counts(&progs)
        .into_iter()
        .map(|(iface, counts)| {
            let parts: Vec<String> = counts.iter().filter(|(_, v)| *v > 0).map(|(n, v)| format!("{n}={v}")).collect();
            format!("{iface}: {}", parts.join(" "))
        })
        .collect();
    println!("{}", t.summary());
    println!("xdp program: {}", xdp.join("; "));
    drop(progs);
    tracing::info!("stopped; XDP programs detached");
    Ok(())
}

/// One NAT log line: a port block handed to or taken back from a subscriber
/// (RFC 6888 REQ-12; one line per block rather than per session, as RFC
/// 7422 describes).
fn log_block(ev: &dataplane::nat::ports::BlockEvent) {
    let ip = std::net::Ipv4Addr::from;
    tracing::info!(
        target: "nat",
        "block {} {} -> {} ports {}-{}",
        if ev.assigned { "assigned" } else { "released" },
        ip(ev.inside),
        ip(ev.public),
        ev.first_port,
        ev.last_port
    );
}

/// The outside interface's address went from `old` to `new`: the workers'
/// masquerade pools, the XDP programs' address maps and the control side's
/// view all follow.
fn follow_outside(
    workers: &[crossbeam_channel::Sender<dataplane::worker::Command>],
    progs: &mut [XdpProgram],
    api: Option<&crate::api::ApiState>,
    old: u32,
    new: u32,
    ports: (u16, u16),
) {
    let mut flushed = 0;
    for c in workers {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if c.send(dataplane::worker::Command::OutsideAddress { old, new, reply: tx }).is_ok() {
            flushed += rx.recv_timeout(Duration::from_secs(5)).unwrap_or(0);
        }
    }
    for p in progs.iter_mut() {
        let _ = p.remove_local(old);
        if let Err(e) = p.set_local(LocalAddress { addr: new, nat_ports: Some(ports) }) {
            tracing::warn!("{e}");
        }
    }
    if let Some(live) = api.and_then(|a| a.live.lock().ok()).as_deref_mut() {
        live.outside_addr = Some(new);
        for a in &mut live.local_addrs {
            if *a == old {
                *a = new;
            }
        }
        if let Some(p) = live.params.as_mut() {
            for pool in p.pools.iter_mut().filter(|x| x.masquerade) {
                pool.addresses = vec![new];
            }
            for a in &mut p.local_addrs {
                if *a == old {
                    *a = new;
                }
            }
        }
    }
    let ip = std::net::Ipv4Addr::from;
    tracing::info!(
        "outside address {} -> {}: masquerade follows; {flushed} sessions on the old address flushed",
        ip(old),
        ip(new)
    );
}

/// The XDP programs' counters, by interface and action.
fn xdp_counts(progs: &[XdpProgram]) -> Vec<crate::api::XdpCounts> {
    progs.iter().map(|p| (p.iface().to_string(), XDP_STAT_NAMES.iter().copied().zip(p.stats()).collect())).collect()
}

/// SIGHUP: re-reads the configuration file and applies it like a push.
fn reload(plan: Option<&ApiPlan>, state: Option<&crate::api::ApiState>) {
    let (Some(plan), Some(state)) = (plan, state) else {
        tracing::info!("SIGHUP: no control side running (--no-api); nothing reloaded");
        return;
    };
    let Some(path) = &plan.config_path else {
        tracing::info!("SIGHUP: masq was not started from a file (--config); nothing reloaded");
        return;
    };
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Err(e) => tracing::warn!("SIGHUP: {name}: {e}; nothing changed"),
        Ok(text) => match crate::api::apply(state, &text) {
            Ok(msg) => tracing::info!("SIGHUP: {}", msg.replace("config:", &format!("{name}:")).trim_end()),
            Err((_, msg)) => {
                tracing::warn!(
                    "SIGHUP refused, nothing changed:\n{}",
                    msg.replace("config:", &format!("{name}:")).trim_end()
                )
            }
        },
    }
}

fn worker_loop<I: FrameIo + RingInfo>(worker: &mut Worker<I>, stop: &AtomicBool, sh: &Shared) {
    let t0 = Instant::now();
    let mut last_pub = Instant::now();
    let mut idle: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        let now = u32::try_from(t0.elapsed().as_secs()).unwrap_or(u32::MAX).saturating_add(1);
        if worker.round(now) == 0 {
            idle = idle.saturating_add(1);
            if idle > 4096 {
                std::thread::yield_now();
            }
        } else {
            idle = 0;
        }
        if last_pub.elapsed() >= Duration::from_millis(100) {
            last_pub = Instant::now();
            publish(worker, sh);
        }
    }
    publish(worker, sh);
}

fn publish<I: FrameIo + RingInfo>(worker: &mut Worker<I>, sh: &Shared) {
    // try_lock: the worker never waits for the control thread.
    if let Ok(mut s) = sh.stats.try_lock() {
        *s = worker.stats();
    }
    if let Ok(mut r) = sh.ring.try_lock() {
        let io = worker.io_mut();
        *r = (io.ring(), io.kernel());
    }
}

/// Ring counters of a backend (the AF_XDP one has them).
pub trait RingInfo {
    /// Ring-level counters.
    fn ring(&self) -> dataplane::xdp::RingCounters;
    /// Kernel socket statistics.
    fn kernel(&self) -> [(u64, u64, u64); 2];
}

impl RingInfo for XdpIo {
    fn ring(&self) -> dataplane::xdp::RingCounters {
        self.ring_counters()
    }
    fn kernel(&self) -> [(u64, u64, u64); 2] {
        self.kernel_stats()
    }
}

/// Adds one worker's drops, by reason, to `out`: the engine's reasons, the
/// worker's own, and the rings' (`tx_ring_full`; the kernel's `rx_ring_full`
/// and `fill_ring_empty`, frames that never reached masq). Every name is
/// present, with 0 if nothing was dropped for it.
pub fn add_drops(sh: &Shared, s: &Stats, out: &mut std::collections::BTreeMap<&'static str, u64>) {
    let (e, w) = (&s.engine, &s.worker);
    for (r, n) in dataplane::nat::DropReason::ALL.iter().zip(e.drops) {
        *out.entry(r.name()).or_default() += n;
    }
    let (tx_full, rx_full, fill_empty) = sh
        .ring
        .lock()
        .map(|r| (r.0.tx_ring_full[0] + r.0.tx_ring_full[1], r.1[0].1 + r.1[1].1, r.1[0].2 + r.1[1].2))
        .unwrap_or_default();
    for (name, n) in [
        ("no_neighbour", w.no_neighbour[0] + w.no_neighbour[1]),
        ("no_route", w.no_route[0] + w.no_route[1]),
        ("pass_not_reinjected", w.pass_dropped),
        ("handoff_dropped", w.handoff_dropped),
        ("too_big_df", w.too_big[0] + w.too_big[1]),
        ("fragment_failed", w.fragment_failed),
        ("tx_ring_full", tx_full),
        ("rx_ring_full", rx_full),
        ("fill_ring_empty", fill_empty),
    ] {
        *out.entry(name).or_default() += n;
    }
}

/// Every worker's counters summed.
#[derive(Default, Clone)]
pub struct Totals {
    rx: [u64; 2],
    tx: [u64; 2],
    drops: u64,
    drop_reasons: Vec<(&'static str, u64)>,
    sessions: u64,
    created: u64,
    handoffs: u64,
    hairpinned: u64,
    blocks_in_use: u64,
    fragmented: u64,
    to_kernel: u64,
    kernel_rx_dropped: u64,
    kernel_ring_full: u64,
    kernel_fill_empty: u64,
}

impl Totals {
    /// Sums the workers' last snapshots.
    pub fn gather(shared: &[Arc<Shared>]) -> Self {
        let mut t = Totals::default();
        let mut reasons: std::collections::BTreeMap<&'static str, u64> = Default::default();
        for sh in shared {
            let s = sh.stats.lock().map(|g| g.clone()).unwrap_or_default();
            let w = s.worker;
            for i in 0..2 {
                t.rx[i] += w.rx[i];
                t.tx[i] += w.tx[i];
            }
            let e = &s.engine;
            add_drops(sh, &s, &mut reasons);
            if let Ok(r) = sh.ring.lock() {
                t.kernel_rx_dropped += r.1[0].0 + r.1[1].0;
                t.kernel_ring_full += r.1[0].1 + r.1[1].1;
                t.kernel_fill_empty += r.1[0].2 + r.1[1].2;
            }
            t.sessions += u64::from(s.sessions);
            t.blocks_in_use += u64::from(s.blocks_in_use);
            t.created += e.sessions_created;
            t.handoffs += w.handoff_out;
            t.to_kernel += w.to_kernel;
            t.hairpinned += e.hairpinned;
            t.fragmented += w.fragmented[0] + w.fragmented[1];
        }
        t.drops = reasons.values().sum();
        t.drop_reasons = reasons.into_iter().filter(|(_, n)| *n > 0).collect();
        t
    }

    fn line(&self, prev: &Totals, dt: f64) -> String {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a rate of packets fits
        let rate = |a: u64, b: u64| ((a.saturating_sub(b)) as f64 / dt).round() as u64;
        format!(
            "in->out {:>8} pps  out->in {:>8} pps  drops {:>6}/s  sessions {:>7} (+{}/s)  hand-offs {}/s",
            rate(self.tx[1], prev.tx[1]),
            rate(self.tx[0], prev.tx[0]),
            rate(self.drops, prev.drops),
            self.sessions,
            rate(self.created, prev.created),
            rate(self.handoffs, prev.handoffs),
        )
    }

    /// `name value` lines (`GET /stats`, read by `masq stats`).
    pub fn lines(&self) -> String {
        let mut out = format!(
            "rx_inside {}\nrx_outside {}\ntx_inside {}\ntx_outside {}\nsessions {}\nsessions_created {}\nhandoffs {}\ndrops {}\n",
            self.rx[0], self.rx[1], self.tx[0], self.tx[1], self.sessions, self.created, self.handoffs, self.drops
        );
        for (name, n) in &self.drop_reasons {
            out.push_str(&format!("drop.{name} {n}\n"));
        }
        out.push_str(&format!("blocks_in_use {}\n", self.blocks_in_use));
        out
    }

    fn summary(&self) -> String {
        let reasons: Vec<String> = self.drop_reasons.iter().map(|(n, v)| format!("{n}={v}")).collect();
        format!(
            "totals: rx inside {} outside {}; tx inside {} outside {}; sessions created {}; hairpinned {}; fragmented {}; handed off {}; to kernel {}; drops {} [{}]; kernel rx dropped {} (rx ring full {}, fill ring empty {})",
            self.rx[0],
            self.rx[1],
            self.tx[0],
            self.tx[1],
            self.created,
            self.hairpinned,
            self.fragmented,
            self.handoffs,
            self.to_kernel,
            self.drops,
            reasons.join(" "),
            self.kernel_rx_dropped,
            self.kernel_ring_full,
            self.kernel_fill_empty
        )
    }
}
