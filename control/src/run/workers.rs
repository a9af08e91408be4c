//! Starting the data plane: attach the XDP programs, spawn one pinned
//! worker per core, register every worker's sockets in both programs; and
//! the worker thread's own loop (rounds, publishing its counters).
//!
//! Invariant: a worker waits for `go` before its first round, so no frame
//! is forwarded before every socket is in both programs' maps.

use super::plan::{RunError, RunPlan};
use crate::system::{self, HostGuard};
use crate::telemetry::{RingInfo, Shared};
use dataplane::io::FrameIo;
use dataplane::l2::{L2Table, SideL2};
use dataplane::nat::events::NatEvent;
use dataplane::nat::{Engine, Side};
use dataplane::worker::{Command, CommandTx, Mesh, Worker};
use dataplane::xdp::{LocalAddress, LocalRole, XdpError, XdpIo, XdpParams, XdpProgram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The data plane once started: programs attached, workers waiting for `go`.
pub(super) struct Dataplane {
    pub(super) progs: [XdpProgram; 2],
    pub(super) guard: HostGuard,
    pub(super) handles: Vec<JoinHandle<Result<(), RunError>>>,
    pub(super) go: Arc<AtomicBool>,
    pub(super) shared: Vec<Arc<Shared>>,
    pub(super) commands: Vec<CommandTx>,
    /// The next-hop table the workers have.
    pub(super) l2: L2Table,
    pub(super) l2_txs: Vec<crossbeam_channel::Sender<Arc<L2Table>>>,
    pub(super) unresolved: crossbeam_channel::Receiver<(Side, u32)>,
    pub(super) block_events: crossbeam_channel::Receiver<NatEvent>,
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
    events: crossbeam_channel::Sender<NatEvent>,
    ready: crossbeam_channel::Sender<Result<Ready, XdpError>>,
    go: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    sleep_after: Option<Duration>,
    xdp: XdpParams,
}

/// Attaches the XDP programs, spawns the workers and registers their
/// sockets; the workers then wait for `go`.
pub(super) fn start_workers(plan: &RunPlan, stop: &Arc<AtomicBool>) -> Result<Dataplane, RunError> {
    let mut progs = attach_programs(plan)?;
    let mut spec = plan.guard.clone();
    spec.inside.extend(system::interface_addrs(&plan.inside)?.into_iter().map(|a| (a, 32)));
    let guard = HostGuard::install(&spec);
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
        sleep_after: plan.sleep_after,
        xdp: plan.xdp,
    };
    let go = Arc::clone(&links.go);
    let mesh = Arc::clone(&links.mesh);
    for w in (0..workers).filter(|&w| mesh.wake_of(w).is_none()) {
        tracing::warn!("worker {w}: no eventfd (eventfd(2) failed): it sleeps at most 1 ms when idle");
    }
    let (mut l2_txs, mut shared, mut commands, mut handles) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (w, &core) in plan.cores.iter().enumerate() {
        let (l2_tx, l2_rx) = crossbeam_channel::bounded(4);
        l2_txs.push(l2_tx);
        let (cmd_tx, cmd_rx) = crossbeam_channel::bounded(16);
        commands.push(CommandTx::new(cmd_tx, Arc::clone(&mesh), w));
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
    Ok(Dataplane { progs, guard, handles, go, shared, commands, l2, l2_txs, unresolved, block_events })
}

/// One program per side; each hands the kernel the DF packets too big for
/// the other side. The box's own addresses go to the kernel, except a
/// masquerade pool's address (NAT ports and ICMP on it come to masq) and,
/// on the outside, the inside interface's addresses: dropped there, so no
/// outside host reaches the box's inside-side services or makes the box
/// answer from an inside address.
fn attach_programs(plan: &RunPlan) -> Result<[XdpProgram; 2], RunError> {
    let in_addrs = system::interface_addrs(&plan.inside)?;
    let out_addrs = system::interface_addrs(&plan.outside)?;
    let locals = |outside: bool| -> Vec<LocalAddress> {
        in_addrs
            .iter()
            .chain(&out_addrs)
            .map(|&addr| LocalAddress { addr, role: local_role(plan, (&in_addrs, &out_addrs), addr, outside) })
            .collect()
    };
    let progs = [
        XdpProgram::attach(&plan.inside, &locals(false), system::interface_mtu(&plan.outside))?,
        XdpProgram::attach(&plan.outside, &locals(true), system::interface_mtu(&plan.inside))?,
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

/// What the program of the inside (`outside` false) or outside interface
/// does with frames for the box's address `addr`, given the interfaces'
/// addresses: a pool's (masquerade) address is shared with the NAT, an
/// inside address is refused on the outside, the rest is the kernel's.
pub(super) fn local_role(
    plan: &RunPlan,
    (in_addrs, out_addrs): (&[u32], &[u32]),
    addr: u32,
    outside: bool,
) -> LocalRole {
    let nat_ports = plan.engine.as_ref().and_then(|p| {
        p.pools.iter().find(|pool| pool.addresses.contains(&addr)).map(|pool| (pool.port_min, pool.port_max))
    });
    match nat_ports {
        Some(ports) => LocalRole::Shared { ports },
        None if outside && in_addrs.contains(&addr) && !out_addrs.contains(&addr) => LocalRole::Refused,
        None => LocalRole::Kernel,
    }
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
    log_huge_pages();
    Ok(())
}

/// Says whether the engines' tables (built by now) got huge pages.
fn log_huge_pages() {
    let hp = dataplane::xdp::hugepages::status();
    let mib = hp.advised_bytes >> 20;
    if hp.mode == "never" || hp.refused > 0 {
        tracing::warn!(
            "session tables on 4 KiB pages: transparent huge pages are {} (the kernel refused {} mappings); \
             `echo madvise > /sys/kernel/mm/transparent_hugepage/enabled` lets masq use them",
            hp.mode,
            hp.refused
        );
    } else {
        tracing::info!("session tables: {mib} MiB advised to use transparent huge pages (kernel mode {})", hp.mode);
    }
    if hp.prefault_refused > 0 {
        tracing::warn!(
            "session tables: the kernel would not fault {} of them in before traffic (MADV_POPULATE_WRITE needs \
             Linux 5.14): their pages fault in as the first packets reach them",
            hp.prefault_refused
        );
    } else {
        tracing::info!("session tables: {} MiB faulted in before traffic", hp.prefaulted_bytes >> 20);
    }
}

/// A worker thread: pin, open the sockets, say so, wait for `go`, run.
fn run_worker(s: WorkerStart, links: &WorkerLinks) -> Result<(), RunError> {
    let w = s.w;
    if !core_affinity::set_for_current(core_affinity::CoreId { id: s.core }) {
        tracing::warn!("worker {w}: could not pin to core {}", s.core);
    }
    let mut io = match XdpIo::open(&links.inside, &links.outside, u32::try_from(w)?, links.xdp) {
        Ok(io) => io,
        Err(e) => {
            let _ = links.ready.send(Err(e));
            return Ok(());
        }
    };
    if let Some(t) = s.tap {
        io.set_kernel_tap(t);
    }
    // The engine's tables faulted in now, from this pinned thread (so on its
    // NUMA node), not by the first packets' rounds.
    let mut engine = s.engine;
    if let Some(e) = engine.as_mut() {
        let t0 = std::time::Instant::now();
        e.prefault();
        tracing::debug!("worker {w}: tables faulted in in {} ms", t0.elapsed().as_millis());
    }
    let _ = links.ready.send(Ok(Ready { worker: w, fds: io.fds(), zero_copy: io.zero_copy() }));
    while !links.go.load(Ordering::Acquire) {
        if links.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut worker = Worker::new(w, io, engine, s.l2, Arc::clone(&links.mesh))
        .with_l2_channels(s.l2_rx, links.unresolved.clone())
        .with_commands(s.cmd_rx)
        .with_block_events(links.events.clone());
    worker_loop(&mut worker, &links.stop, &s.shared, links.sleep_after);
    Ok(())
}

/// A worker's rounds until `stop`. Under traffic it polls (a round right
/// after a round); a round that received nothing yields the CPU (one
/// syscall a round, not a packet), and once it has received nothing for
/// `sleep_after` it sleeps on its sockets between rounds, woken at once by
/// a frame on either, a hand-off or a control request, at most 100 ms
/// with nothing due ([`Worker::sleep`]: about ten wakes a second); `None` polls always (yielding only after 4096 empty rounds).
fn worker_loop<I: FrameIo + RingInfo>(
    worker: &mut Worker<I>,
    stop: &AtomicBool,
    sh: &Shared,
    sleep_after: Option<Duration>,
) {
    let t0 = Instant::now();
    let mut last_pub = Instant::now();
    let mut idle: u32 = 0;
    let mut idle_since: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let now = u32::try_from(t0.elapsed().as_secs()).unwrap_or(u32::MAX).saturating_add(1);
        if worker.round(now) == 0 {
            idle = idle.saturating_add(1);
            match (sleep_after, idle_since) {
                (Some(after), Some(since)) if since.elapsed() >= after => {
                    worker.sleep(now);
                }
                // Polling an empty ring, give the CPU to whatever else is
                // runnable: on a CPU shared with the device's receive
                // (threaded NAPI), that is what fills the ring.
                (Some(_), since) => {
                    idle_since = since.or_else(|| Some(Instant::now()));
                    std::thread::yield_now();
                }
                _ if idle > 4096 => std::thread::yield_now(),
                _ => {}
            }
        } else {
            idle = 0;
            idle_since = None;
        }
        if last_pub.elapsed() >= Duration::from_millis(100) {
            last_pub = Instant::now();
            sh.publish(worker);
        }
    }
    sh.publish(worker);
}
