//! One box of an HA pair (issue 16): its role, and the sync link to its
//! peer. keepalived (VRRP) decides which box is active and says so through
//! `masq role active|standby` (`POST /role`); masq never elects itself.
//!
//! | part | file |
//! |---|---|
//! | the link's messages: framing, HMAC, records | `wire.rs` |
//! | the threads: the listener that serves a standby, the dialer that follows an active box | `link.rs` |
//! | the role, the feed from the NAT events, the counters | here |
//!
//! The active box streams every port block its workers hand out and take
//! back (and, with `sync_sessions`, every mapped TCP and UDP session made
//! and ended) to the standby: the workers' NAT events ([`dataplane::nat::events`])
//! reach the control loop over their bounded channel as for the NAT log,
//! and [`Ha::feed`] queues them for the link. Forwarding never waits on the
//! link: the queue is bounded (`ha.backlog` records); past it the records
//! are counted lost and the link is reset (so too when the workers lost
//! events on their way: [`Ha::note_events_lost`]), and the standby, reconnecting,
//! gets a bulk resync (every worker's blocks and sessions, read slice by
//! slice between rounds) followed by what was queued meanwhile (replaying
//! it is harmless: the standby applies records idempotently, checked
//! against what it holds).
//!
//! Invariants: the link is authenticated (no key, no start: the
//! configuration is refused); a standby applies only records of an
//! authenticated connection to an active box; memory is bounded by the
//! backlog and one message.
#![forbid(unsafe_code)]

mod link;
pub mod wire;

use dataplane::nat::events::NatEvent;
use dataplane::nat::ha::SyncRecord;
use dataplane::worker::{Command, CommandTx};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What `masq run` is given for HA.
#[derive(Clone)]
pub struct HaPlan {
    /// Active at start (else standby).
    pub active: bool,
    /// Where the peer's sync connection is accepted.
    pub listen: SocketAddr,
    /// Where the peer accepts this box's.
    pub peer: SocketAddr,
    /// The shared key.
    pub key: Vec<u8>,
    /// Sync sessions too.
    pub sync_sessions: bool,
    /// After a promotion, how long synced subscribers without sessions keep their blocks.
    pub hold: Duration,
    /// Records queued at most.
    pub backlog: usize,
}

impl HaPlan {
    /// The plan of a validated `ha:` section (the key read from its file).
    pub fn of(ha: &config::Ha) -> Result<Self, String> {
        let key = match (&ha.key, &ha.key_file) {
            (Some(k), _) => k.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| format!("ha.key_file {f}: {e}"))?
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string(),
            (None, None) => return Err("ha: no key".into()),
        };
        if key.len() < 16 {
            return Err("ha.key_file: the key has fewer than 16 characters".into());
        }
        let addr = |k: &str, v: &str| v.parse::<SocketAddr>().map_err(|_| format!("{k}: `{v}` is not ADDRESS:PORT"));
        Ok(Self {
            active: ha.role == config::HaRole::Active,
            listen: addr("ha.listen", &ha.listen)?,
            peer: addr("ha.peer", &ha.peer)?,
            key: key.into_bytes(),
            sync_sessions: ha.sync_sessions,
            hold: Duration::from_secs(u64::from(ha.hold_secs)),
            backlog: usize::try_from(ha.backlog).unwrap_or(65536),
        })
    }
}

/// The link's counters (`/metrics`: `masq_ha_*`).
#[derive(Debug, Default)]
pub struct HaStats {
    /// 1 while active.
    pub active: AtomicBool,
    /// A peer is connected and authenticated.
    pub connected: AtomicBool,
    /// Messages sent.
    pub msgs_sent: AtomicU64,
    /// Bytes sent (frames whole).
    pub bytes_sent: AtomicU64,
    /// Messages received and authenticated.
    pub msgs_received: AtomicU64,
    /// Bytes received.
    pub bytes_received: AtomicU64,
    /// Records sent.
    pub records_sent: AtomicU64,
    /// Records received.
    pub records_received: AtomicU64,
    /// Records queued for the peer now.
    pub backlog: AtomicU64,
    /// Records lost: the queue was full (the link is reset and resynced).
    pub lost: AtomicU64,
    /// Bulk resyncs sent or received.
    pub resyncs: AtomicU64,
    /// Connections refused or closed for a failed MAC, sequence or handshake.
    pub auth_failures: AtomicU64,
    /// Role changes.
    pub role_changes: AtomicU64,
}

impl HaStats {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// What one connection to a standby has queued.
#[derive(Default)]
struct Outbox {
    /// A standby is connected (records are queued only then).
    open: bool,
    /// The queue overflowed: the writer closes the link.
    reset: bool,
    batches: VecDeque<Vec<SyncRecord>>,
    records: usize,
}

/// What the control loop, the API and the link's threads share.
pub struct Shared {
    plan: HaPlan,
    /// The counters.
    pub stats: HaStats,
    outbox: Mutex<Outbox>,
    commands: Vec<CommandTx>,
    /// When the box was last promoted, for the pins' hold.
    promoted: Mutex<Option<Instant>>,
    stop: Arc<AtomicBool>,
}

/// One box's HA: what the control loop and the API hold.
pub struct Ha {
    shared: Arc<Shared>,
    pending: Vec<SyncRecord>,
    /// Events the workers lost so far (`MetricsSnapshot::nat_log_lost`).
    events_lost: u64,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Ha {
    /// Starts the link's threads (the listener and the dialer); the
    /// workers already have the role at start (`EngineParams::standby`).
    pub fn start(plan: HaPlan, commands: Vec<CommandTx>, stop: Arc<AtomicBool>) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(plan.listen)?;
        let shared = Arc::new(Shared {
            stats: HaStats::default(),
            outbox: Mutex::new(Outbox::default()),
            commands,
            promoted: Mutex::new(None),
            stop,
            plan,
        });
        shared.stats.active.store(shared.plan.active, Ordering::Relaxed);
        let threads = vec![link::serve(Arc::clone(&shared), listener)?, link::follow(Arc::clone(&shared))?];
        tracing::info!(
            "HA: {} at start; sync link on {}, peer {}{}",
            if shared.plan.active { "active" } else { "standby" },
            shared.plan.listen,
            shared.plan.peer,
            if shared.plan.sync_sessions { ", blocks and sessions" } else { ", port blocks" }
        );
        Ok(Self { shared, pending: Vec::new(), events_lost: 0, threads })
    }

    /// What the API needs.
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// An event of the workers (the control loop, every one): a block or
    /// synced session becomes a record for the standby.
    pub fn feed(&mut self, ev: &NatEvent) {
        if let Some(r) = SyncRecord::of(ev) {
            self.pending.push(r);
        }
    }

    /// Queues what [`Ha::feed`] collected this turn for the standby, if
    /// one is connected and this box is active; and lifts the pins once
    /// the hold after a promotion has passed.
    pub fn flush(&mut self) {
        let sh = &self.shared;
        if !self.pending.is_empty() {
            let batch = std::mem::take(&mut self.pending);
            if sh.stats.active.load(Ordering::Relaxed) {
                sh.queue(batch);
            }
        }
        let due = sh.promoted.lock().ok().and_then(|p| *p).is_some_and(|t| t.elapsed() >= sh.plan.hold);
        if due {
            if let Ok(mut p) = sh.promoted.lock() {
                *p = None;
            }
            let freed: u32 = sh.ask_all(|reply| Command::HaUnpin { reply }).into_iter().sum();
            tracing::info!(
                "HA: hold after promotion over: {freed} synced subscribers without sessions gave their blocks back"
            );
        }
    }

    /// The workers' lost events so far (once a second): a lost block or
    /// session event leaves the standby wrong, so the link is reset and
    /// the standby resynced (the loss is counted as the NAT log's).
    pub fn note_events_lost(&mut self, total: u64) {
        if total > self.events_lost && self.shared.is_active() {
            if let Ok(mut o) = self.shared.outbox.lock() {
                if o.open && !o.reset {
                    o.reset = true;
                    tracing::warn!(
                        "HA: {} NAT events lost by the workers: the standby will be resynced",
                        total - self.events_lost
                    );
                }
            }
        }
        self.events_lost = total;
    }

    /// Stops the threads (the stop flag is set).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

impl Shared {
    /// Queues a batch for the connected standby; past the backlog the
    /// batch is lost (counted) and the link reset for a resync.
    fn queue(&self, batch: Vec<SyncRecord>) {
        let Ok(mut o) = self.outbox.lock() else { return };
        if !o.open {
            return;
        }
        if o.reset || o.records + batch.len() > self.plan.backlog {
            HaStats::add(&self.stats.lost, batch.len() as u64);
            o.reset = true;
            return;
        }
        o.records += batch.len();
        o.batches.push_back(batch);
        self.stats.backlog.store(o.records as u64, Ordering::Relaxed);
    }

    /// Asks every worker and collects the replies (5 s each at most).
    fn ask_all<T>(&self, make: impl Fn(crossbeam_channel::Sender<T>) -> Command) -> Vec<T> {
        let mut out = Vec::new();
        for c in &self.commands {
            let (tx, rx) = crossbeam_channel::bounded(1);
            if c.send(make(tx)).is_ok() {
                if let Ok(x) = rx.recv_timeout(Duration::from_secs(5)) {
                    out.push(x);
                }
            }
        }
        out
    }

    /// The counters, as `/metrics` reads them.
    pub fn counts(&self) -> crate::telemetry::HaCounts {
        let s = &self.stats;
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        crate::telemetry::HaCounts {
            active: s.active.load(Ordering::Relaxed),
            connected: s.connected.load(Ordering::Relaxed),
            sent: (n(&s.msgs_sent), n(&s.bytes_sent)),
            received: (n(&s.msgs_received), n(&s.bytes_received)),
            records: (n(&s.records_sent), n(&s.records_received)),
            backlog: n(&s.backlog),
            lost: n(&s.lost),
            resyncs: n(&s.resyncs),
            auth_failures: n(&s.auth_failures),
            role_changes: n(&s.role_changes),
        }
    }

    /// True while this box is active.
    pub fn is_active(&self) -> bool {
        self.stats.active.load(Ordering::Relaxed)
    }

    /// Sets the role (keepalived's notify script, through `POST /role`):
    /// every worker takes it between two rounds. Promoted, the box serves
    /// what it synced; demoted, it forwards nothing, and the link to the
    /// peer (now active) brings it a bulk resync. Returns the role it had.
    pub fn set_role(&self, active: bool) -> bool {
        let was = self.stats.active.swap(active, Ordering::Relaxed);
        let standby: Vec<bool> = self.ask_all(|reply| Command::HaRole { standby: !active, reply });
        if was != active {
            HaStats::add(&self.stats.role_changes, 1);
            if let Ok(mut p) = self.promoted.lock() {
                *p = active.then(Instant::now);
            }
        }
        tracing::info!(
            target: "audit",
            "HA role {} (was {}); {} workers {}",
            if active { "active" } else { "standby" },
            if was { "active" } else { "standby" },
            standby.len(),
            if active { "forwarding" } else { "standing by" }
        );
        was
    }
}

#[cfg(test)]
mod tests;
