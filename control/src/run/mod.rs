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
//!
//! | stage | file |
//! |---|---|
//! | what `masq run` is given, how it fails | `plan.rs` |
//! | attach, spawn the workers, register their sockets; the worker thread | `workers.rs` |
//! | signals and the control loop's periodic duties | `control_loop.rs` |
//! | start the API, stop everything, the closing lines | here |
//!
//! The files import `plan.rs` and, for the loop, `workers.rs`; none imports
//! this one.

mod control_loop;
mod plan;
mod workers;

pub use plan::{ApiPlan, RunError, RunPlan};

use crate::api::ApiState;
use crate::auth::{Failures, Policy};
use crate::live::{Live, LiveConfig};
use crate::telemetry::{GuardCounts, MetricsSnapshot, XdpCounts};
use crate::tls::ServerTls;
use control_loop::{control_loop, Signals};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use workers::{start_workers, Dataplane};

/// Runs until a signal or `plan.duration`.
pub fn run(plan: RunPlan) -> Result<(), RunError> {
    let signals = Signals::register()?;
    let pools = plan.engine.as_ref().map(|p| p.pools.iter().map(|x| x.name.clone()).collect()).unwrap_or_default();
    let mut natlog = crate::natlog::Exporter::start(&plan.log_sinks, pools, &plan.unlogged_pools)?;
    for (name, _) in natlog.lost() {
        tracing::info!("NAT events exported to {name}");
    }
    natlog.config_applied(1);
    let mut dp = start_workers(&plan, &signals.stop)?;
    pin_control_thread(&plan.cores);
    let mut ha = match &plan.ha {
        Some(h) => match crate::ha::Ha::start(h.clone(), dp.commands.clone(), Arc::clone(&signals.stop)) {
            Ok(ha) => Some(ha),
            Err(e) => {
                signals.stop.store(true, Ordering::Release);
                for h in dp.handles {
                    let _ = h.join();
                }
                return Err(RunError::Io(e));
            }
        },
        None => None,
    };
    let api = match start_api(&plan, &dp, &signals.stop, ha.as_ref().map(crate::ha::Ha::shared)) {
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
    if let Some(p) = &plan.engine {
        match p.icmp_source {
            Some(a) => tracing::info!(
                "subscribers refused a port or a session get ICMP host unreachable from {}",
                std::net::Ipv4Addr::from(a)
            ),
            None => tracing::warn!(
                "{} has no IPv4 address: subscribers refused a port or a session get no ICMP error",
                plan.inside
            ),
        }
    }
    control_loop(&plan, &mut dp, api.as_ref().map(|a| &*a.state), &signals, &mut natlog, ha.as_mut());
    let r = shutdown(dp, api, &signals.stop);
    if let Some(h) = ha {
        h.join();
    }
    r
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

fn start_api(
    plan: &RunPlan,
    dp: &Dataplane,
    stop: &Arc<AtomicBool>,
    ha: Option<Arc<crate::ha::Shared>>,
) -> Result<Option<Api>, RunError> {
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
        guard: Mutex::new(GuardCounts::default()),
        policy: Policy {
            token: a.token.clone(),
            metrics_token: a.metrics_token.clone(),
            open_reads: a.listen.ip().is_loopback(),
        },
        failures: Failures::default(),
        tls: match &a.tls {
            Some(t) => Some(Arc::new(ServerTls::load(Path::new(&t.cert), Path::new(&t.key))?)),
            None => None,
        },
        ready: AtomicBool::new(false),
        ha,
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

/// Stops the API and the workers, prints the closing lines, detaches the
/// programs.
fn shutdown(dp: Dataplane, api: Option<Api>, stop: &AtomicBool) -> Result<(), RunError> {
    stop.store(true, Ordering::Release);
    // A sleeping worker sees the flag now, not at its sleep's end.
    for c in &dp.commands {
        c.nudge();
    }
    if let Some(a) = api {
        a.state.ready.store(false, Ordering::Relaxed);
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
    totals.guard = dp.guard.counts().unwrap_or_default();
    println!("{}", totals.closing_lines());
    drop(dp.progs);
    tracing::info!("stopped; XDP programs detached");
    Ok(())
}
