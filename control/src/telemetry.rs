//! What workers publish for the control thread, and the one snapshot every
//! view of the counters reads.
//!
//! A worker copies its counters into its [`Shared`] slot every 100 ms with
//! `try_lock`, so it never waits for the control thread; the control side
//! sums the slots into a [`MetricsSnapshot`] when it needs one and never
//! reads a worker's live counters.
//!
//! # Design
//! [`MetricsSnapshot`] is the single typed record of "how masq is doing"
//! (Firecracker's `logger/metrics.rs` is the model): `/metrics`
//! (`metrics.rs`), `/stats` and so `masq stats`, the `--live` line and the
//! closing line all read its fields. It holds the engines' [`Counters`]
//! and the workers' [`WorkerCounters`] summed whole (their `AddAssign`), so
//! a new counter needs no edit here: it is declared once where it is
//! counted (`dataplane::nat::counters` says how), and `/metrics` and
//! [`MetricsSnapshot::drops`] find it through its declared family.
//!
//! Invariants: every drop reason is present in [`MetricsSnapshot::drops`]
//! (0 if nothing was dropped for it), so dashboards always have a series;
//! per-side arrays are `[inside, outside]`, as in the worker's counters.
//!
//! # Limitations
//! A snapshot is up to 100 ms old and its workers' parts are not taken at
//! the same instant; a worker whose slot was locked keeps its previous part.

pub use crate::system::GuardCounts;
use dataplane::io::FrameIo;
use dataplane::nat::counters::Family;
use dataplane::nat::{Counters, DropReason};
use dataplane::worker::{BlockUse, Census, Stats, Worker, WorkerCounters};
use dataplane::xdp::{RingCounters, XdpIo, XdpProgram, XDP_STAT_NAMES};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The kernel's statistics of one AF_XDP socket (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Frames the kernel dropped for any reason.
    pub rx_dropped: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Frames dropped because the fill ring was empty.
    pub fill_ring_empty: u64,
}

/// Ring counters and the kernel's socket statistics of one worker.
#[derive(Debug, Clone, Copy, Default)]
pub struct RingSnapshot {
    /// masq's own ring counters.
    pub rings: RingCounters,
    /// The kernel's, by side (inside, outside).
    pub kernel: [SocketStats; 2],
}

/// Ring counters of a backend (the AF_XDP one has them).
pub trait RingInfo {
    /// The rings' counters and the kernel's socket statistics.
    fn ring_snapshot(&self) -> RingSnapshot;
}

impl RingInfo for XdpIo {
    fn ring_snapshot(&self) -> RingSnapshot {
        let kernel = self.kernel_stats().map(|(rx_dropped, rx_ring_full, fill_ring_empty)| SocketStats {
            rx_dropped,
            rx_ring_full,
            fill_ring_empty,
        });
        RingSnapshot { rings: self.ring_counters(), kernel }
    }
}

/// What a worker publishes for the control thread (try_lock on the worker's side).
#[derive(Default)]
pub struct Shared {
    /// Counters and histogram.
    pub stats: Mutex<Stats>,
    /// Ring counters and kernel socket statistics.
    pub ring: Mutex<RingSnapshot>,
}

impl Shared {
    /// Copies `worker`'s counters in; skips a part the control thread holds
    /// (the worker never waits for it).
    pub fn publish<I: FrameIo + RingInfo>(&self, worker: &mut Worker<I>) {
        if let Ok(mut s) = self.stats.try_lock() {
            *s = worker.stats();
        }
        if let Ok(mut r) = self.ring.try_lock() {
            *r = worker.io_mut().ring_snapshot();
        }
    }
}

/// One interface's XDP program counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XdpCounts {
    /// The interface.
    pub iface: String,
    /// Frames by action (`redirect`, `pass`, ...).
    pub by_action: Vec<(&'static str, u64)>,
}

impl XdpCounts {
    /// The programs' counters, by interface and action.
    pub fn of(progs: &[XdpProgram]) -> Vec<XdpCounts> {
        progs
            .iter()
            .map(|p| XdpCounts {
                iface: p.iface().to_string(),
                by_action: XDP_STAT_NAMES.iter().copied().zip(p.stats()).collect(),
            })
            .collect()
    }
}

/// The live configuration's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfigCounts {
    /// Generation in force (1 at start, +1 per accepted change).
    pub generation: u64,
    /// Pushes and reloads accepted.
    pub accepted: u64,
    /// Pushes and reloads refused.
    pub refused: u64,
}

/// What is kept per worker (the rest is summed).
#[derive(Debug, Clone, Default)]
pub struct WorkerSnapshot {
    /// Frames this worker handed to another.
    pub handoffs_out: u64,
    /// Live sessions in this worker's shard.
    pub sessions: u32,
    /// Time a round with traffic took, in nanoseconds.
    pub round_ns: Option<hdrhistogram::Histogram<u64>>,
}

/// Every worker's counters summed, plus what the control side adds (the
/// census, the XDP programs' counters, the configuration's).
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    /// The engines' counters (zero in no-NAT mode).
    pub engine: Counters,
    /// The workers' own counters.
    pub worker: WorkerCounters,
    /// Frames dropped because a TX ring stayed full, both sides.
    pub tx_ring_full: u64,
    /// The kernel's statistics of the AF_XDP sockets, both sides.
    pub kernel: SocketStats,
    /// Live sessions.
    pub sessions: u64,
    /// Port blocks in use.
    pub blocks_in_use: u64,
    /// Port-block events the engines could not keep (their buffers were full).
    pub block_events_dropped: u64,
    /// Per worker, in worker order.
    pub workers: Vec<WorkerSnapshot>,
    /// Sessions by (protocol, state) and port blocks by address (empty
    /// unless the workers were asked; see `Command::Census`).
    pub census: Census,
    /// The XDP programs' counters (empty unless filled in).
    pub xdp: Vec<XdpCounts>,
    /// The host guard's counters (zero unless filled in).
    pub guard: GuardCounts,
    /// Failed authentications on the control API (zero unless filled in).
    pub control_auth_failures: u64,
    /// The live configuration's counters (zero unless filled in).
    pub config: ConfigCounts,
    /// Every worker forwarding, as `/readyz` answers (false unless filled in).
    pub ready: bool,
    /// The HA link's counters (`None`: not an HA box, or not filled in).
    pub ha: Option<HaCounts>,
}

/// An HA box's role and sync link (`crate::ha`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HaCounts {
    /// Active (else standby).
    pub active: bool,
    /// A peer is connected and authenticated.
    pub connected: bool,
    /// Messages and bytes sent.
    pub sent: (u64, u64),
    /// Messages and bytes received.
    pub received: (u64, u64),
    /// Records sent and received.
    pub records: (u64, u64),
    /// Records queued for the peer.
    pub backlog: u64,
    /// Records lost (backlog full; the link was reset and resynced).
    pub lost: u64,
    /// Bulk resyncs sent or received.
    pub resyncs: u64,
    /// Connections closed for a failed MAC, number or handshake.
    pub auth_failures: u64,
    /// Role changes.
    pub role_changes: u64,
}

impl MetricsSnapshot {
    /// Sums the workers' last snapshots.
    pub fn gather(shared: &[Arc<Shared>]) -> Self {
        let mut t = Self::default();
        for sh in shared {
            let s = sh.stats.lock().map(|g| g.clone()).unwrap_or_default();
            let ring = sh.ring.lock().map(|g| *g).unwrap_or_default();
            t.add(&s, &ring);
        }
        t
    }

    fn add(&mut self, s: &Stats, ring: &RingSnapshot) {
        self.engine += &s.engine;
        self.worker += &s.worker;
        self.tx_ring_full += ring.rings.tx_ring_full.iter().sum::<u64>();
        for k in &ring.kernel {
            self.kernel.rx_dropped += k.rx_dropped;
            self.kernel.rx_ring_full += k.rx_ring_full;
            self.kernel.fill_ring_empty += k.fill_ring_empty;
        }
        self.sessions += u64::from(s.sessions);
        self.blocks_in_use += u64::from(s.blocks_in_use);
        self.block_events_dropped += s.block_events_dropped;
        self.workers.push(WorkerSnapshot {
            handoffs_out: s.worker.handoff_out,
            sessions: s.sessions,
            round_ns: s.round_ns.clone(),
        });
    }

    /// Drops by reason: the engine's reasons, the worker's own (its counters
    /// declared as drops), and the rings' (`tx_ring_full`; the kernel's
    /// `rx_ring_full` and `fill_ring_empty`, frames that never reached masq).
    /// Every reason is present, with 0 if nothing was dropped for it.
    pub fn drops(&self) -> BTreeMap<&'static str, u64> {
        let mut out: BTreeMap<&'static str, u64> =
            DropReason::ALL.iter().map(|r| r.name()).zip(self.engine.drops).collect();
        let declared = self.engine.exported().chain(self.worker.exported()).filter_map(|x| match x.family {
            Family::Drop(reason) => Some((reason, x.value)),
            Family::Total(_) => None,
        });
        for (reason, n) in declared.chain([
            ("tx_ring_full", self.tx_ring_full),
            ("rx_ring_full", self.kernel.rx_ring_full),
            ("fill_ring_empty", self.kernel.fill_ring_empty),
        ]) {
            *out.entry(reason).or_default() += n;
        }
        out
    }

    /// NAT log events lost: the log fell behind, or an engine's buffer was full.
    pub fn nat_log_lost(&self) -> u64 {
        self.worker.log_dropped + self.block_events_dropped
    }

    /// Every drop, all reasons.
    pub fn drops_total(&self) -> u64 {
        self.drops().values().sum()
    }

    /// The reasons something was dropped for, with their counts.
    fn drop_reasons(&self) -> impl Iterator<Item = (&'static str, u64)> {
        self.drops().into_iter().filter(|&(_, n)| n > 0)
    }

    /// The `--live` line: rates since `prev`, `dt` seconds ago.
    pub fn live_line(&self, prev: &MetricsSnapshot, dt: f64) -> String {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a rate of packets fits
        let rate = |a: u64, b: u64| ((a.saturating_sub(b)) as f64 / dt).round() as u64;
        format!(
            "in->out {:>8} pps  out->in {:>8} pps  drops {:>6}/s  sessions {:>7} (+{}/s)  hand-offs {}/s",
            rate(self.worker.tx[1], prev.worker.tx[1]),
            rate(self.worker.tx[0], prev.worker.tx[0]),
            rate(self.drops_total(), prev.drops_total()),
            self.sessions,
            rate(self.engine.sessions_created, prev.engine.sessions_created),
            rate(self.worker.handoff_out, prev.worker.handoff_out),
        )
    }

    /// `name value` lines (`GET /stats`, read by `masq stats`).
    pub fn stats_lines(&self) -> String {
        let mut out = format!(
            "rx_inside {}\nrx_outside {}\ntx_inside {}\ntx_outside {}\nsessions {}\nsessions_created {}\nhandoffs {}\nto_kernel {}\ndrops {}\n",
            self.worker.rx[0],
            self.worker.rx[1],
            self.worker.tx[0],
            self.worker.tx[1],
            self.sessions,
            self.engine.sessions_created,
            self.worker.handoff_out,
            self.worker.to_kernel,
            self.drops_total()
        );
        for (name, n) in self.drop_reasons() {
            out.push_str(&format!("drop.{name} {n}\n"));
        }
        out.push_str(&format!("blocks_in_use {}\n", self.blocks_in_use));
        out
    }

    /// The two lines `masq run` prints when it stops: totals, and the XDP
    /// programs' counters.
    pub fn closing_lines(&self) -> String {
        let reasons: Vec<String> = self.drop_reasons().map(|(n, v)| format!("{n}={v}")).collect();
        let xdp: Vec<String> = self
            .xdp
            .iter()
            .map(|x| {
                let parts: Vec<String> =
                    x.by_action.iter().filter(|(_, v)| *v > 0).map(|(n, v)| format!("{n}={v}")).collect();
                format!("{}: {}", x.iface, parts.join(" "))
            })
            .collect();
        format!(
            "totals: rx inside {} outside {}; tx inside {} outside {}; sessions created {}; hairpinned {}; fragmented {}; handed off {}; to kernel {}; drops {} [{}]; kernel rx dropped {} (rx ring full {}, fill ring empty {})\nxdp program: {}\nhost guard: refused {} leaked {}",
            self.worker.rx[0],
            self.worker.rx[1],
            self.worker.tx[0],
            self.worker.tx[1],
            self.engine.sessions_created,
            self.engine.hairpinned,
            self.worker.fragmented.iter().sum::<u64>(),
            self.worker.handoff_out,
            self.worker.to_kernel,
            self.drops_total(),
            reasons.join(" "),
            self.kernel.rx_dropped,
            self.kernel.rx_ring_full,
            self.kernel.fill_ring_empty,
            xdp.join("; "),
            self.guard.refused,
            self.guard.leaked
        )
    }
}

/// Sums the workers' census slices: sessions by (protocol, state), port
/// blocks by (address, pool); the pool names are every worker's (the
/// workers number the pools alike), taken from the first that has them.
pub fn merge_census(parts: impl IntoIterator<Item = Census>) -> Census {
    let mut all = Census::default();
    for c in parts {
        for (k, v) in c.sessions {
            *all.sessions.entry(k).or_default() += v;
        }
        for (k, b) in c.blocks {
            let e: &mut BlockUse = all.blocks.entry(k).or_default();
            e.in_use += b.in_use;
            e.free += b.free;
        }
        if all.pools.is_empty() {
            all.pools = c.pools;
        }
    }
    all
}

/// A protocol's name as `conntrack` and the metrics labels write it.
pub fn protocol_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        47 => "gre".into(),
        50 => "esp".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_views_keep_their_formats() {
        let mut m = MetricsSnapshot {
            kernel: SocketStats { rx_dropped: 11, rx_ring_full: 12, fill_ring_empty: 13 },
            sessions: 16,
            blocks_in_use: 17,
            xdp: vec![
                XdpCounts { iface: "in0".into(), by_action: vec![("redirect", 14), ("pass", 0)] },
                XdpCounts { iface: "out0".into(), by_action: vec![("redirect", 15)] },
            ],
            ..MetricsSnapshot::default()
        };
        (m.worker.rx, m.worker.tx) = ([1, 2], [3, 4]);
        (m.engine.sessions_created, m.engine.hairpinned) = (5, 6);
        (m.worker.fragmented, m.worker.handoff_out, m.worker.to_kernel) = ([3, 4], 8, 9);
        m.worker.no_route = [10, 0];
        m.guard = GuardCounts { refused: 18, leaked: 19 };
        assert_eq!(
            m.closing_lines(),
            "totals: rx inside 1 outside 2; tx inside 3 outside 4; sessions created 5; hairpinned 6; fragmented 7; \
             handed off 8; to kernel 9; drops 35 [fill_ring_empty=13 no_route=10 rx_ring_full=12]; \
             kernel rx dropped 11 (rx ring full 12, fill ring empty 13)\n\
             xdp program: in0: redirect=14; out0: redirect=15\n\
             host guard: refused 18 leaked 19"
        );
        assert_eq!(
            m.stats_lines(),
            "rx_inside 1\nrx_outside 2\ntx_inside 3\ntx_outside 4\nsessions 16\nsessions_created 5\nhandoffs 8\n\
             to_kernel 9\ndrops 35\ndrop.fill_ring_empty 13\ndrop.no_route 10\ndrop.rx_ring_full 12\nblocks_in_use 17\n"
        );
        assert_eq!(
            m.live_line(&MetricsSnapshot::default(), 1.0),
            "in->out        4 pps  out->in        3 pps  drops     35/s  sessions      16 (+5/s)  hand-offs 8/s"
        );
    }

    #[test]
    fn every_drop_reason_is_present_and_the_views_agree_on_the_total() {
        let mut s = Stats::default();
        s.worker.no_route = [2, 3];
        s.engine.drops[0] = 4;
        let ring = RingSnapshot {
            kernel: [SocketStats { rx_dropped: 9, rx_ring_full: 7, fill_ring_empty: 1 }, SocketStats::default()],
            ..RingSnapshot::default()
        };
        let mut t = MetricsSnapshot::default();
        t.add(&s, &ring);
        let drops = t.drops();
        assert!(DropReason::ALL.iter().all(|r| drops.contains_key(r.name())));
        assert_eq!(drops["no_route"], 5);
        assert_eq!(drops["rx_ring_full"], 7);
        assert_eq!(t.drops_total(), 4 + 5 + 7 + 1);
        assert!(t.stats_lines().contains("\ndrops 17\ndrop."), "{}", t.stats_lines());
        assert!(t.closing_lines().contains("kernel rx dropped 9 (rx ring full 7, fill ring empty 1)"));
    }

    #[test]
    fn a_merged_census_sums_and_keeps_the_pool_names() {
        let part = |n: usize| Census {
            sessions: [((17, "udp"), 2)].into_iter().collect(),
            blocks: [((1, "p".to_string()), BlockUse { in_use: 1, free: 3 })].into_iter().collect(),
            pools: vec!["p".into(), "q".into()].into_iter().take(n).collect(),
        };
        let all = merge_census([part(0), part(2), part(1)]);
        assert_eq!(all.sessions[&(17, "udp")], 6);
        assert_eq!(all.blocks[&(1, "p".to_string())], BlockUse { in_use: 3, free: 9 });
        assert_eq!(all.pools, ["p", "q"]);
    }
}
