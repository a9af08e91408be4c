//! The control loop, on the calling thread until SIGINT, SIGTERM or the
//! plan's duration: every 50 ms the NAT log, SIGHUP and neighbour
//! resolution; every second the masquerade follow, the XDP counters the
//! API serves, the next hops and the `--live` line.
//!
//! Invariant: it never touches a worker's state; it talks to workers only
//! through channels and reads what they publish.

use super::plan::RunPlan;
use super::workers::Dataplane;
use crate::api::ApiState;
use crate::system;
use crate::telemetry::{MetricsSnapshot, XdpCounts};
use dataplane::nat::ports::BlockEvent;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// SIGINT/SIGTERM set `stop`; SIGHUP sets `hup`.
pub(super) struct Signals {
    pub(super) stop: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
}

impl Signals {
    pub(super) fn register() -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
        signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))?;
        let hup = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))?;
        Ok(Self { stop, hup })
    }
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
    /// Refreshes so far (the host guard is read every fifth).
    refreshes: u64,
}

/// Every 50 ms until a signal or `plan.duration`: NAT log, SIGHUP,
/// neighbour resolution; every second: masquerade follow, XDP counters,
/// next hops, the `--live` line.
pub(super) fn control_loop(plan: &RunPlan, dp: &mut Dataplane, api: Option<&ApiState>, signals: &Signals) {
    let masquerade = plan.engine.as_ref().and_then(|p| p.pools.iter().find(|x| x.masquerade)).and_then(|x| {
        let addr = x.addresses.first().copied()?;
        Some(((x.port_min, x.port_max), addr))
    });
    let now = Instant::now();
    let mut st = LoopState {
        started: now,
        last_refresh: now,
        last_print: now,
        prev: MetricsSnapshot::default(),
        masquerade,
        refreshes: 0,
    };
    let live = api.map(|a| &*a.live);
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
            if let Some(tls) = api.and_then(|a| a.tls.as_ref()) {
                match tls.reload() {
                    Ok(()) => tracing::info!(target: "audit", "SIGHUP: the control API's certificate re-read"),
                    Err(e) => {
                        tracing::warn!("SIGHUP: the control API's certificate not re-read ({e}); the old one stays")
                    }
                }
            }
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
fn refresh(plan: &RunPlan, dp: &mut Dataplane, api: Option<&ApiState>, st: &mut LoopState) {
    if let Some((ports, old)) = st.masquerade {
        let new = system::interface_addrs(&plan.outside).ok().and_then(|a| a.first().copied());
        if let Some(new) = new.filter(|&n| n != old) {
            let live = api.map(|a| &*a.live);
            crate::live::follow_outside(&dp.commands, &mut dp.progs, live, old, new, ports);
            st.masquerade = Some((ports, new));
        }
    }
    if let Some(a) = api {
        let x = XdpCounts::of(&dp.progs);
        if let Ok(mut g) = a.xdp.lock() {
            *g = x;
        }
        // nft is a process to run: every five seconds is enough for a scrape.
        if st.refreshes.is_multiple_of(5) {
            if let (Some(g), Ok(mut slot)) = (dp.guard.counts(), a.guard.lock()) {
                *slot = g;
            }
        }
    }
    st.refreshes += 1;
    let mut fresh = dp.l2.clone();
    if fresh.refresh_from_proc().is_ok() && fresh != dp.l2 {
        dp.l2 = fresh;
        let t = Arc::new(dp.l2.clone());
        for tx in &dp.l2_txs {
            let _ = tx.try_send(Arc::clone(&t));
        }
    }
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
