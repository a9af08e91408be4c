//! The control loop, on the calling thread until SIGINT, SIGTERM or the
//! plan's duration: every 50 ms the NAT log and the HA sync feed, SIGHUP
//! and neighbour resolution; every second the masquerade follow, the XDP counters the
//! API serves, the next hops and the `--live` line.
//!
//! Invariant: it never touches a worker's state; it talks to workers only
//! through channels and reads what they publish.

use super::plan::RunPlan;
use super::workers::{local_role, Dataplane};
use crate::api::ApiState;
use crate::natlog::Exporter;
use crate::system;
use crate::telemetry::{MetricsSnapshot, XdpCounts};
use dataplane::nat::events::{NatEvent, NatEventKind};
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
    /// The configuration generation the NAT log sinks were last checked against.
    log_generation: u64,
    /// An HA box's interface addresses (inside, outside) as last seen:
    /// VRRP adds and removes the gateway addresses, which are then the box's own.
    own_addrs: Option<(Vec<u32>, Vec<u32>)>,
}

/// Every 50 ms until a signal or `plan.duration`: NAT log, SIGHUP,
/// neighbour resolution; every second: masquerade follow, XDP counters,
/// next hops, the `--live` line.
pub(super) fn control_loop(
    plan: &RunPlan,
    dp: &mut Dataplane,
    api: Option<&ApiState>,
    signals: &Signals,
    natlog: &mut Exporter,
    mut ha: Option<&mut crate::ha::Ha>,
) {
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
        log_generation: 1,
        own_addrs: plan.ha.as_ref().map(|_| {
            (
                system::interface_addrs(&plan.inside).unwrap_or_default(),
                system::interface_addrs(&plan.outside).unwrap_or_default(),
            )
        }),
    };
    let live = api.map(|a| &*a.live);
    while !signals.stop.load(Ordering::Relaxed) {
        if plan.duration.is_some_and(|d| st.started.elapsed() >= d) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        for ev in dp.block_events.try_iter() {
            if let Some(h) = ha.as_deref_mut() {
                h.feed(&ev);
            }
            if matches!(ev.kind, NatEventKind::SessionSync(_)) {
                continue;
            }
            // Refusals are logged whatever `nat_events` says: the engine
            // already keeps them to one per subscriber a minute.
            if plan.nat_events || ev.kind.reason().is_some() {
                tracing::info!(target: "nat", "{}", event_line(&ev, pool_name(plan, ev.pool).as_deref()));
            }
            natlog.send(&ev);
        }
        if let Some(h) = ha.as_deref_mut() {
            h.flush();
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
            if let Some(h) = ha.as_deref_mut() {
                h.note_events_lost(MetricsSnapshot::gather(&dp.shared).nat_log_lost());
            }
            if let Some(live) = api.map(|a| &*a.live) {
                follow_log_sinks(live, natlog, &mut st.log_generation);
            }
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
        // Ready (`/readyz`, `masq_ready`) while every worker thread runs: a
        // worker that stopped on an error forwards nothing on its queue.
        a.ready.store(dp.handles.iter().all(|h| !h.is_finished()), Ordering::Relaxed);
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
    if let Some(old) = &st.own_addrs {
        let now = (
            system::interface_addrs(&plan.inside).unwrap_or_default(),
            system::interface_addrs(&plan.outside).unwrap_or_default(),
        );
        if &now != old {
            follow_own_addresses(plan, dp, old, &now);
            st.own_addrs = Some(now);
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

/// An HA box's addresses changed (VRRP added or removed a gateway
/// address): both XDP programs give the kernel what is addressed to the
/// new set (and no longer to what went), and the engines take it as the
/// box's own, as at start.
fn follow_own_addresses(plan: &RunPlan, dp: &mut Dataplane, old: &(Vec<u32>, Vec<u32>), now: &(Vec<u32>, Vec<u32>)) {
    let all: Vec<u32> = now.0.iter().chain(&now.1).copied().collect();
    for gone in old.0.iter().chain(&old.1).filter(|a| !all.contains(a)) {
        for p in dp.progs.iter_mut() {
            let _ = p.remove_local(*gone);
        }
    }
    for &addr in &all {
        for (p, outside) in dp.progs.iter_mut().zip([false, true]) {
            let role = local_role(plan, (&now.0, &now.1), addr, outside);
            if let Err(e) = p.set_local(dataplane::xdp::LocalAddress { addr, role }) {
                tracing::warn!("{}: {} not made the box's own: {e}", p.iface(), std::net::Ipv4Addr::from(addr));
            }
        }
    }
    for c in &dp.commands {
        let (reply, rx) = crossbeam_channel::bounded(1);
        if c.send(dataplane::worker::Command::LocalAddresses { addrs: all.clone(), reply }).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(1));
        }
    }
    let list: Vec<String> = all.iter().map(|&a| std::net::Ipv4Addr::from(a).to_string()).collect();
    tracing::info!("the box's own addresses now: {}", list.join(", "));
}

/// Every new configuration generation is a `config_applied` event; one
/// with other NAT log sinks (or other
/// `logging: none` pools) replaces the exporter: the old one writes what
/// it has queued and stops, the new one starts. A sink the new
/// configuration names but that cannot be opened keeps the old exporter
/// (and says why).
fn follow_log_sinks(live: &crate::live::LiveConfig, natlog: &mut Exporter, seen: &mut u64) {
    let generation = live.counts().generation;
    if generation == *seen {
        return;
    }
    *seen = generation;
    let Some(now) = live.in_force() else { return };
    let raw = &now.config.raw;
    let unlogged = raw.unlogged_pools();
    if natlog.config() == (raw.logging.sinks.as_slice(), unlogged.as_slice()) {
        natlog.config_applied(generation);
        return;
    }
    let pools = now.params.as_ref().map(|p| p.pools.iter().map(|x| x.name.clone()).collect()).unwrap_or_default();
    match Exporter::start(&raw.logging.sinks, pools, &unlogged) {
        Ok(new) => {
            *natlog = new;
            let names: Vec<String> = natlog.lost().into_iter().map(|(n, _)| n).collect();
            tracing::info!(target: "audit", "NAT log sinks now: [{}] (generation {generation})", names.join(", "));
        }
        Err(e) => tracing::warn!("NAT log sinks of generation {generation} not started ({e}); the old ones stay"),
    }
    natlog.config_applied(generation);
}

/// The name of the engine's pool `i`: the engines number the pools they
/// started with as `masq run` was given them (pools a live change adds
/// come after, and are shown by number).
fn pool_name(plan: &RunPlan, i: u16) -> Option<String> {
    plan.engine.as_ref().and_then(|p| p.pools.get(usize::from(i))).map(|p| p.name.clone())
}

/// One NAT log line: a port block handed to or taken back from a
/// subscriber (RFC 6888 REQ-12; one line per block rather than per session,
/// as RFC 7422 describes), or a subscriber refused new flows for want of a
/// port or a session (RFC 6888 REQ-11c; once per subscriber a minute).
fn event_line(ev: &NatEvent, pool: Option<&str>) -> String {
    let ip = std::net::Ipv4Addr::from;
    match ev.kind {
        NatEventKind::BlockAllocated | NatEventKind::BlockReleased => format!(
            "block {} {} -> {} ports {}-{}",
            if ev.kind == NatEventKind::BlockAllocated { "assigned" } else { "released" },
            ip(ev.inside),
            ip(ev.public),
            ev.port_start,
            ev.port_end
        ),
        k => {
            let reason = k.reason().map_or("", |r| r.name());
            let paired = if ev.public == 0 { String::new() } else { format!(" -> {}", ip(ev.public)) };
            let pool = pool.map_or_else(|| format!("#{}", ev.pool), str::to_string);
            format!("limit {reason} {}{paired} pool {pool}: new flows refused", ip(ev.inside))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_and_limit_lines() {
        let ev = NatEvent {
            time_ms: 0,
            kind: NatEventKind::BlockAllocated,
            inside: 0x6440_0102,
            public: 0xcb00_7101,
            port_start: 1024,
            port_end: 1087,
            pool: 0,
        };
        assert_eq!(event_line(&ev, Some("cgnat")), "block assigned 100.64.1.2 -> 203.0.113.1 ports 1024-1087");
        let released = NatEvent { kind: NatEventKind::BlockReleased, ..ev };
        assert_eq!(event_line(&released, None), "block released 100.64.1.2 -> 203.0.113.1 ports 1024-1087");
        let refused = NatEvent { kind: NatEventKind::PortsExhausted, port_start: 0, port_end: 0, ..ev };
        assert_eq!(
            event_line(&refused, Some("cgnat")),
            "limit ports_exhausted 100.64.1.2 -> 203.0.113.1 pool cgnat: new flows refused"
        );
        let unpaired = NatEvent { kind: NatEventKind::AddressesExhausted, public: 0, pool: 3, ..refused };
        assert_eq!(event_line(&unpaired, None), "limit subscriber_table_full 100.64.1.2 pool #3: new flows refused");
    }
}
