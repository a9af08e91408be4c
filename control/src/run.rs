//! `masq run`: attaches the XDP program, starts one pinned worker per core
//! and runs the control loop on the calling thread (next-hop refresh,
//! neighbour resolution, live counters, SIGHUP, masquerade follow) until
//! SIGINT or SIGTERM. [`run`] reads as start, loop, stop.
//!
//! Exit paths: on a signal the workers finish their round and stop, then
//! the XDP programs are detached (their links dropped). A panic aborts the
//! process (release profile) and a SIGKILL ends it; in both cases the kernel
//! closes the links and the programs go with them.
//!
//! Invariants: the control thread never touches a worker's state; it talks
//! to workers only through channels (next-hop tables, commands) and reads
//! what they publish in their `Shared` slots. Workers wait for `go` before
//! their first round, so every socket is registered in both XDP programs
//! before any frame is forwarded.

use crate::api::{ApiError, ApiState};
use crate::live::{Live, LiveConfig};
use crate::system::{self, ForwardGuard, SystemError};
use crate::telemetry::{MetricsSnapshot, RingInfo, Shared, XdpCounts};
use dataplane::io::FrameIo;
use dataplane::l2::{L2Table, SideL2};
use dataplane::nat::ports::BlockEvent;
use dataplane::nat::{Engine, EngineParams, ParamError, Side};
use dataplane::worker::{Command, Mesh, Worker};
use dataplane::xdp::{LocalAddress, XdpError, XdpIo, XdpParams, XdpProgram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What `masq run` needs besides the engine parameters.
pub struct RunPlan {
    /// Inside interface.
    pub inside: String,
    /// Outside interface.
    pub outside: String,
    /// Cores for workers (worker i on `cores[i]`, queue i).
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

/// Why `masq run` could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Signal handlers, threads.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Interfaces.
    #[error(transparent)]
    System(#[from] SystemError),
    /// The XDP programs.
    #[error(transparent)]
    Xdp(#[from] XdpError),
    /// /proc/net/route or /proc/net/arp.
    #[error("reading routes and neighbours")]
    Routes(#[source] std::io::Error),
    /// More workers than queues can be numbered.
    #[error(transparent)]
    TooManyWorkers(#[from] std::num::TryFromIntError),
    /// An engine refused its parameters.
    #[error("{0}")]
    Engine(#[from] ParamError),
    /// A worker could not open its AF_XDP sockets.
    #[error("opening AF_XDP sockets: {0}")]
    Sockets(XdpError),
    /// A worker thread ended before saying it was ready.
    #[error("a worker died while starting")]
    WorkerDied,
    /// A worker thread panicked.
    #[error("a worker panicked")]
    WorkerPanicked,
    /// The control API.
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// Runs until a signal or `plan.duration`.
pub fn run(plan: RunPlan) -> Result<(), RunError> {
    let signals = Signals::register()?;
    let mut dp = start_workers(&plan, &signals.stop)?;
    pin_control_thread(&plan.cores);
    let api = match start_api(&plan, &dp, &signals.stop) {
        Ok(api) => api,
        Err(e) => {
            signals.stop.store(true, Ordering::Release);
            for h in dp.handles {
                let _ = h.join();
            }
            return Err(e);
        }
    };
    dp.go.store(true, Ordering::Release);
    if let Some(a) = &api {
        a.state.ready.store(true, Ordering::Relaxed);
    }
    tracing::info!(
        "forwarding {} <-> {} ({}); Ctrl-C stops",
        plan.inside,
        plan.outside,
        if plan.engine.is_some() { "NAT" } else { "no NAT" }
    );
    control_loop(&plan, &mut dp, api.as_ref(), &signals);
    shutdown(dp, api, &signals.stop)
}

/// SIGINT/SIGTERM set `stop`; SIGHUP sets `hup`.
struct Signals {
    stop: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
}

impl Signals {
    fn register() -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
        signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))?;
        let hup = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))?;
        Ok(Self { stop, hup })
    }
}

/// The data plane once started: programs attached, workers waiting for `go`.
struct Dataplane {
    progs: [XdpProgram; 2],
    _guard: ForwardGuard,
    handles: Vec<JoinHandle<Result<(), RunError>>>,
    go: Arc<AtomicBool>,
    shared: Vec<Arc<Shared>>,
    commands: Vec<crossbeam_channel::Sender<Command>>,
    /// The next-hop table the workers have.
    l2: L2Table,
    l2_txs: Vec<crossbeam_channel::Sender<Arc<L2Table>>>,
    unresolved: crossbeam_channel::Receiver<(Side, u32)>,
    block_events: crossbeam_channel::Receiver<BlockEvent>,
}

/// What one worker thread starts with.
struct WorkerStart {
    w: usize,
    core: usize,
    engine: Option<Engine>,
    tap: Option<dataplane::xdp::KernelTap>,
    l2: Arc<L2Table>,
    l2_rx: crossbeam_channel::Receiver<Arc<L2Table>>,
    cmd_rx: crossbeam_channel::Receiver<Command>,
    shared: Arc<Shared>,
}

/// A worker's sockets are open: what the XDP programs' maps need.
struct Ready {
    worker: usize,
    fds: [std::os::fd::RawFd; 2],
    zero_copy: bool,
}

/// The channels every worker shares.
#[derive(Clone)]
struct WorkerLinks {
    inside: String,
    outside: String,
    mesh: Arc<Mesh>,
    unresolved: crossbeam_channel::Sender<(Side, u32)>,
    events: crossbeam_channel::Sender<BlockEvent>,
    ready: crossbeam_channel::Sender<Result<Ready, XdpError>>,
    go: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

/// Attaches the XDP programs, spawns the workers and registers their
/// sockets; the workers then wait for `go`.
fn start_workers(plan: &RunPlan, stop: &Arc<AtomicBool>) -> Result<Dataplane, RunError> {
    let mut progs = attach_programs(plan)?;
    let guard = ForwardGuard::install();
    let mut l2 = L2Table::default();
    for (i, name) in [&plan.inside, &plan.outside].into_iter().enumerate() {
        l2.sides[i] = SideL2 {
            ifname: name.clone(),
            own_mac: system::interface_mac(name)?,
            static_mac: plan.static_macs[i],
            ..SideL2::default()
        };
    }
    l2.refresh_from_proc().map_err(RunError::Routes)?;

    let workers = plan.cores.len();
    let mut taps = system::open_kernel_taps(workers);
    let (unres_tx, unresolved) = crossbeam_channel::bounded(256);
    let (events_tx, block_events) = crossbeam_channel::bounded(4096);
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(workers);
    let links = WorkerLinks {
        inside: plan.inside.clone(),
        outside: plan.outside.clone(),
        mesh: Arc::new(Mesh::new(workers, 1024)),
        unresolved: unres_tx,
        events: events_tx,
        ready: ready_tx,
        go: Arc::new(AtomicBool::new(false)),
        stop: Arc::clone(stop),
    };
    let go = Arc::clone(&links.go);
    let (mut l2_txs, mut shared, mut commands, mut handles) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (w, &core) in plan.cores.iter().enumerate() {
        let (l2_tx, l2_rx) = crossbeam_channel::bounded(4);
        l2_txs.push(l2_tx);
        let (cmd_tx, cmd_rx) = crossbeam_channel::bounded(16);
        commands.push(cmd_tx);
        let sh = Arc::new(Shared::default());
        shared.push(Arc::clone(&sh));
        let engine = match &plan.engine {
            Some(p) => {
                let mut p = p.clone();
                p.worker = u16::try_from(w)?;
                p.workers = u16::try_from(workers)?;
                Some(Engine::new(&p)?)
            }
            None => None,
        };
        let start =
            WorkerStart { w, core, engine, tap: taps.pop(), l2: Arc::new(l2.clone()), l2_rx, cmd_rx, shared: sh };
        let links = links.clone();
        handles.push(std::thread::Builder::new().name(format!("masq-w{w}")).spawn(move || run_worker(start, &links))?);
    }
    drop(links);
    if let Err(e) = register_sockets(plan, &mut progs, &ready_rx) {
        stop.store(true, Ordering::Release);
        return Err(e);
    }
    Ok(Dataplane { progs, _guard: guard, handles, go, shared, commands, l2, l2_txs, unresolved, block_events })
}

/// One program per side; each hands the kernel the DF packets too big for
/// the other side. The box's own addresses go to the kernel, except a
/// masquerade pool's address: NAT ports and ICMP on it come to masq.
fn attach_programs(plan: &RunPlan) -> Result<[XdpProgram; 2], RunError> {
    let in_addrs = system::interface_addrs(&plan.inside)?;
    let out_addrs = system::interface_addrs(&plan.outside)?;
    let locals: Vec<LocalAddress> = in_addrs
        .iter()
        .chain(&out_addrs)
        .map(|&addr| {
            let nat_ports = plan.engine.as_ref().and_then(|p| {
                p.pools.iter().find(|pool| pool.addresses.contains(&addr)).map(|pool| (pool.port_min, pool.port_max))
            });
            LocalAddress { addr, nat_ports }
        })
        .collect();
    let progs = [
        XdpProgram::attach(&plan.inside, &locals, system::interface_mtu(&plan.outside))?,
        XdpProgram::attach(&plan.outside, &locals, system::interface_mtu(&plan.inside))?,
    ];
    tracing::info!(
        "XDP program attached to {} ({}) and {} ({})",
        plan.inside,
        progs[0].mode_name(),
        plan.outside,
        progs[1].mode_name()
    );
    Ok(progs)
}

/// Waits for every worker's sockets and puts them in both programs' maps.
fn register_sockets(
    plan: &RunPlan,
    progs: &mut [XdpProgram; 2],
    ready: &crossbeam_channel::Receiver<Result<Ready, XdpError>>,
) -> Result<(), RunError> {
    for _ in 0..plan.cores.len() {
        match ready.recv() {
            Ok(Ok(Ready { worker: w, fds, zero_copy })) => {
                let q = u32::try_from(w)?;
                progs[0].register(q, fds[0])?;
                progs[1].register(q, fds[1])?;
                tracing::info!(
                    "worker {w} on core {} queue {q}: {} mode",
                    plan.cores[w],
                    if zero_copy { "zero-copy" } else { "copy" }
                );
            }
            Ok(Err(e)) => return Err(RunError::Sockets(e)),
            Err(_) => return Err(RunError::WorkerDied),
        }
    }
    Ok(())
}

/// A worker thread: pin, open the sockets, say so, wait for `go`, run.
fn run_worker(s: WorkerStart, links: &WorkerLinks) -> Result<(), RunError> {
    let w = s.w;
    if !core_affinity::set_for_current(core_affinity::CoreId { id: s.core }) {
        tracing::warn!("worker {w}: could not pin to core {}", s.core);
    }
    let mut io = match XdpIo::open(&links.inside, &links.outside, u32::try_from(w)?, XdpParams::default()) {
        Ok(io) => io,
        Err(e) => {
            let _ = links.ready.send(Err(e));
            return Ok(());
        }
    };
    if let Some(t) = s.tap {
        io.set_kernel_tap(t);
    }
    let _ = links.ready.send(Ok(Ready { worker: w, fds: io.fds(), zero_copy: io.zero_copy() }));
    while !links.go.load(Ordering::Acquire) {
        if links.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut worker = Worker::new(w, io, s.engine, s.l2, Arc::clone(&links.mesh))
        .with_l2_channels(s.l2_rx, links.unresolved.clone())
        .with_commands(s.cmd_rx)
        .with_block_events(links.events.clone());
    worker_loop(&mut worker, &links.stop, &s.shared);
    Ok(())
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
            sh.publish(worker);
        }
    }
    sh.publish(worker);
}

/// The control thread (this one) on a core no worker uses, if there is one.
fn pin_control_thread(cores: &[usize]) {
    let spare = core_affinity::get_core_ids().unwrap_or_default().into_iter().find(|c| !cores.contains(&c.id));
    match spare {
        Some(c) if core_affinity::set_for_current(c) => tracing::info!("control thread on core {}", c.id),
        _ => tracing::warn!("no core left for the control thread; it shares one with a worker"),
    }
}

/// The control API and the live configuration it serves.
struct Api {
    state: Arc<ApiState>,
    handle: JoinHandle<()>,
}

fn start_api(plan: &RunPlan, dp: &Dataplane, stop: &Arc<AtomicBool>) -> Result<Option<Api>, RunError> {
    let Some(a) = &plan.api else { return Ok(None) };
    let live = Live {
        config: a.config.clone(),
        params: plan.engine.clone(),
        outside_addr: a.outside_addr,
        local_addrs: a.local_addrs.clone(),
    };
    let state = Arc::new(ApiState {
        shared: dp.shared.clone(),
        commands: dp.commands.clone(),
        xdp: Mutex::new(XdpCounts::of(&dp.progs)),
        token: a.token.clone(),
        ready: AtomicBool::new(false),
        live: Arc::new(LiveConfig::new(
            dp.commands.clone(),
            a.cpus,
            a.config_path.clone(),
            live,
            a.config_yaml.clone(),
        )),
    });
    let handle = crate::api::serve(a.listen, Arc::clone(&state), Arc::clone(stop))?;
    Ok(Some(Api { state, handle }))
}

/// The control loop's clocks and what it remembers between turns.
struct LoopState {
    started: Instant,
    last_refresh: Instant,
    last_print: Instant,
    prev: MetricsSnapshot,
    /// A masquerade pool's ports and the address it has now (it follows
    /// the outside interface's).
    masquerade: Option<((u16, u16), u32)>,
}

/// Every 50 ms until a signal or `plan.duration`: NAT log, SIGHUP,
/// neighbour resolution; every second: masquerade follow, XDP counters,
/// next hops, the `--live` line.
fn control_loop(plan: &RunPlan, dp: &mut Dataplane, api: Option<&Api>, signals: &Signals) {
    let masquerade = plan.engine.as_ref().and_then(|p| p.pools.iter().find(|x| x.masquerade)).and_then(|x| {
        let addr = x.addresses.first().copied()?;
        Some(((x.port_min, x.port_max), addr))
    });
    let now = Instant::now();
    let mut st =
        LoopState { started: now, last_refresh: now, last_print: now, prev: MetricsSnapshot::default(), masquerade };
    let live = api.map(|a| &*a.state.live);
    while !signals.stop.load(Ordering::Relaxed) {
        if plan.duration.is_some_and(|d| st.started.elapsed() >= d) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        for ev in dp.block_events.try_iter() {
            if plan.nat_events {
                log_block(&ev);
            }
        }
        if signals.hup.swap(false, Ordering::Relaxed) {
            crate::live::reload(live);
        }
        for (side, hop) in dp.unresolved.try_iter().take(64) {
            system::resolve_neighbour(&dp.l2.side(side).ifname, hop);
        }
        if st.last_refresh.elapsed() >= Duration::from_secs(1) {
            st.last_refresh = Instant::now();
            refresh(plan, dp, api, &mut st);
        }
        if plan.live && st.last_print.elapsed() >= Duration::from_secs(1) {
            let dt = st.last_print.elapsed().as_secs_f64();
            st.last_print = Instant::now();
            let now = MetricsSnapshot::gather(&dp.shared);
            println!("{}", now.live_line(&st.prev, dt));
            st.prev = now;
        }
    }
}

/// The once-a-second duties: follow the outside address, refresh the XDP
/// counters the API serves, and publish a changed next-hop table.
fn refresh(plan: &RunPlan, dp: &mut Dataplane, api: Option<&Api>, st: &mut LoopState) {
    if let Some((ports, old)) = st.masquerade {
        let new = system::interface_addrs(&plan.outside).ok().and_then(|a| a.first().copied());
        if let Some(new) = new.filter(|&n| n != old) {
            let live = api.map(|a| &*a.state.live);
            crate::live::follow_outside(&dp.commands, &mut dp.progs, live, old, new, ports);
            st.masquerade = Some((ports, new));
        }
    }
    if let Some(a) = api {
        let x = XdpCounts::of(&dp.progs);
        if let Ok(mut g) = a.state.xdp.lock() {
            *g = x;
        }
    }
    let mut fresh = dp.l2.clone();
    if fresh.refresh_from_proc().is_ok() && fresh != dp.l2 {
        dp.l2 = fresh;
        let t = Arc::new(dp.l2.clone());
        for tx in &dp.l2_txs {
            let _ = tx.try_send(Arc::clone(&t));
        }
    }
}

/// Stops the API and the workers, prints the closing lines, detaches the
/// programs.
fn shutdown(dp: Dataplane, api: Option<Api>, stop: &AtomicBool) -> Result<(), RunError> {
    stop.store(true, Ordering::Release);
    if let Some(a) = api {
        let _ = a.handle.join();
    }
    for h in dp.handles {
        match h.join() {
            Ok(r) => r?,
            Err(_) => return Err(RunError::WorkerPanicked),
        }
    }
    let mut totals = MetricsSnapshot::gather(&dp.shared);
    totals.xdp = XdpCounts::of(&dp.progs);
    println!("{}", totals.closing_lines());
    drop(dp.progs);
    tracing::info!("stopped; XDP programs detached");
    Ok(())
}

/// One NAT log line: a port block handed to or taken back from a subscriber
/// (RFC 6888 REQ-12; one line per block rather than per session, as RFC
/// 7422 describes).
fn log_block(ev: &BlockEvent) {
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
