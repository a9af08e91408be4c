//! The control thread -> worker protocol: the requests a worker serves
//! between two rounds, and their typed replies.
//!
//! Invariants: a request is served whole between two rounds, so it never
//! races the forwarding path (the reply allocates, the forwarding path does
//! not); a walk of the session table is cut into slices of [`SLICE`] slots,
//! one slice per request, so a big table never stalls forwarding for long
//! (two HA requests walk it whole: [`Command::HaClear`], served only by a
//! standby, which forwards nothing, and [`Command::HaRole`] at a
//! promotion, once, restarting every session's clock);
//! every request gets exactly one reply, also in no-NAT mode (empty
//! answers, or [`ReconfigureError::NoNat`]), so the control side never
//! waits on a request the worker dropped. This file imports nothing from
//! the worker loop; the loop calls [`Command::answer`].

use crate::nat::ha::SyncRecord;
use crate::nat::{Engine, EngineParams, ParamError, SessionInfo};
use crossbeam_channel::Sender;

/// Which sessions a listing or flush is about (all given fields must match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Inside (subscriber) address.
    pub subscriber: Option<u32>,
    /// Public address.
    pub public: Option<u32>,
    /// Public port (ICMP: the query identifier).
    pub public_port: Option<u16>,
    /// IP protocol number.
    pub protocol: Option<u8>,
    /// State name (`established`, `udp`, ...).
    pub state: Option<String>,
}

impl SessionFilter {
    /// True if `s` matches.
    pub fn matches(&self, s: &SessionInfo) -> bool {
        self.subscriber.is_none_or(|a| s.inside.0 == a)
            && self.public.is_none_or(|a| s.public.0 == a)
            && self.public_port.is_none_or(|p| s.public.1 == p)
            && self.protocol.is_none_or(|p| s.protocol == p)
            && self.state.as_deref().is_none_or(|st| s.state == st)
    }
}

/// Session slots a listing, flush or census walks per request: one request
/// is served between two rounds, so a big table is walked a slice at a time
/// (65536 slots, about 2 MiB of sessions) and forwarding never stalls long.
pub const SLICE: u32 = 1 << 16;

/// A reply to a sliced request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sliced<T> {
    /// The slice's result.
    pub part: T,
    /// The slot to ask from next (`None`: the table is done).
    pub next_slot: Option<u32>,
}

/// Port blocks of one pool address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockUse {
    /// Blocks held by a subscriber.
    pub in_use: usize,
    /// Blocks free.
    pub free: usize,
}

/// What [`Command::Census`] returns.
#[derive(Debug, Clone, Default)]
pub struct Census {
    /// (protocol, state) -> live sessions.
    pub sessions: std::collections::BTreeMap<(u8, &'static str), u64>,
    /// (address, pool) -> port blocks (filled with the first slice only).
    pub blocks: std::collections::BTreeMap<(u32, String), BlockUse>,
    /// The pools' names in the engine's numbering, the index of per-pool
    /// counters (filled with the first slice only).
    pub pools: Vec<String>,
}

/// What `masq whois` asks a worker's live tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhoisQuery {
    /// Who holds the block (or formula range) containing public address:port.
    Port(u32, u16),
    /// What this inside address holds: blocks, ranges, shared addresses.
    Subscriber(u32),
}

/// A hold a worker reports to `masq whois`: [`crate::nat::ports::Held`]
/// with the pool's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBy {
    /// The hold.
    pub held: crate::nat::ports::Held,
    /// Its pool's name.
    pub pool: String,
}

/// Why a worker refused new parameters (its engine is unchanged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconfigureError {
    /// The worker runs without an engine.
    #[error("masq runs without NAT (--no-nat)")]
    NoNat,
    /// The engine refused the parameters.
    #[error(transparent)]
    Refused(#[from] ParamError),
}

/// A request from the control thread, served by the worker between rounds.
pub enum Command {
    /// The sessions that match, among the [`SLICE`] slots from `from_slot`.
    Sessions {
        /// Which sessions.
        filter: SessionFilter,
        /// First slot of the slice.
        from_slot: u32,
        /// Where the matching sessions go.
        reply: Sender<Sliced<Vec<SessionInfo>>>,
    },
    /// Remove the sessions that match among the slots from `from_slot`;
    /// replies how many.
    Flush {
        /// Which sessions.
        filter: SessionFilter,
        /// First slot of the slice.
        from_slot: u32,
        /// Where the count goes.
        reply: Sender<Sliced<usize>>,
    },
    /// Live sessions by (protocol, state) among the slots from `from_slot`,
    /// and (with the first slice) port blocks per address and pool names.
    Census {
        /// First slot of the slice.
        from_slot: u32,
        /// Where the census goes.
        reply: Sender<Sliced<Census>>,
    },
    /// Who holds a public port, or what a subscriber holds (`masq whois`
    /// from the live tables; the sessions on the port are a
    /// [`Command::Sessions`] listing).
    Whois {
        /// The question.
        query: WhoisQuery,
        /// The holds this worker knows.
        reply: Sender<Vec<HeldBy>>,
    },
    /// New parameters, applied at this batch boundary; replies how many
    /// sessions were flushed, or why nothing changed.
    Reconfigure {
        /// This worker's parameters (`worker` set to its index).
        params: Box<EngineParams>,
        /// Sessions flushed, or the refusal.
        reply: Sender<Result<usize, ReconfigureError>>,
    },
    /// The outside interface's address changed: masquerade pools follow;
    /// replies how many sessions were flushed.
    OutsideAddress {
        /// The address masquerade pools had.
        old: u32,
        /// The address they take.
        new: u32,
        /// Sessions flushed.
        reply: Sender<usize>,
    },
    /// The box's own addresses changed (an HA gateway address came or
    /// went): traffic to them is the kernel's; replies when taken.
    LocalAddresses {
        /// Every address of both interfaces now.
        addrs: Vec<u32>,
        /// Taken.
        reply: Sender<()>,
    },
    /// HA (`nat::ha`): become a standby or, promoted, the active box;
    /// replies whether the engine is a standby now.
    HaRole {
        /// Standby (true) or active.
        standby: bool,
        /// The role in force.
        reply: Sender<bool>,
    },
    /// HA standby: records of the active box's stream, applied in order;
    /// replies how many this worker applied (others are other workers' or
    /// replays).
    HaApply {
        /// The records.
        records: std::sync::Arc<Vec<SyncRecord>>,
        /// Applied here.
        reply: Sender<usize>,
    },
    /// HA standby, before a bulk resync: removes every session and
    /// imported subscriber; replies the sessions removed.
    HaClear {
        /// Sessions removed.
        reply: Sender<usize>,
    },
    /// HA, some time after a promotion: imported subscribers with no
    /// session give their blocks back; replies how many.
    HaUnpin {
        /// Subscribers freed.
        reply: Sender<u32>,
    },
    /// HA active box, a bulk resync: this worker's blocks (first slice)
    /// and, with `sessions`, its mapped TCP and UDP sessions among the
    /// [`SLICE`] slots from `from_slot`.
    HaExport {
        /// Sessions too.
        sessions: bool,
        /// First slot of the slice.
        from_slot: u32,
        /// The records.
        reply: Sender<Sliced<Vec<SyncRecord>>>,
    },
}

impl Command {
    /// Answers the request from `engine` (`None`: no NAT, so empty answers
    /// and no change) at `now`.
    pub(super) fn answer(self, engine: Option<&mut Engine>, now: u32) {
        let Some(e) = engine else {
            match self {
                Command::Sessions { reply, .. } => drop(reply.send(Sliced { part: Vec::new(), next_slot: None })),
                Command::Flush { reply, .. } => drop(reply.send(Sliced { part: 0, next_slot: None })),
                Command::Census { reply, .. } => drop(reply.send(Sliced { part: Census::default(), next_slot: None })),
                Command::Whois { reply, .. } => drop(reply.send(Vec::new())),
                Command::Reconfigure { reply, .. } => drop(reply.send(Err(ReconfigureError::NoNat))),
                Command::OutsideAddress { reply, .. } => drop(reply.send(0)),
                Command::LocalAddresses { reply, .. } => drop(reply.send(())),
                Command::HaRole { reply, .. } => drop(reply.send(false)),
                Command::HaApply { reply, .. } | Command::HaClear { reply } => drop(reply.send(0)),
                Command::HaUnpin { reply } => drop(reply.send(0)),
                Command::HaExport { reply, .. } => drop(reply.send(Sliced { part: Vec::new(), next_slot: None })),
            }
            return;
        };
        match self {
            Command::Sessions { filter, from_slot, reply } => {
                let (slots, next_slot) = slice(from_slot, e.session_slots());
                let part = e.sessions_in(now, slots).filter(|s| filter.matches(s)).collect();
                let _ = reply.send(Sliced { part, next_slot });
            }
            Command::Flush { filter, from_slot, reply } => {
                let (slots, next_slot) = slice(from_slot, e.session_slots());
                let part = e.flush_slots(now, |s| filter.matches(s), None, slots);
                let _ = reply.send(Sliced { part, next_slot });
            }
            Command::Census { from_slot, reply } => {
                let (slots, next_slot) = slice(from_slot, e.session_slots());
                let mut c = Census::default();
                for s in e.sessions_in(now, slots) {
                    *c.sessions.entry((s.protocol, s.state)).or_default() += 1;
                }
                if from_slot == 0 {
                    for (ip, pool, in_use, free) in e.port_block_use() {
                        c.blocks.insert((ip, pool.to_string()), BlockUse { in_use, free });
                    }
                    c.pools = e.pool_names().map(str::to_string).collect();
                }
                let _ = reply.send(Sliced { part: c, next_slot });
            }
            Command::Whois { query, reply } => {
                let _ = reply.send(whois(e, query));
            }
            Command::Reconfigure { params, reply } => {
                let _ = reply.send(e.reconfigure(&params, now).map_err(ReconfigureError::from));
            }
            Command::OutsideAddress { old, new, reply } => {
                let _ = reply.send(e.follow_outside_address(old, new, now));
            }
            Command::LocalAddresses { addrs, reply } => {
                e.set_local_addrs(addrs);
                let _ = reply.send(());
            }
            Command::HaRole { standby, reply } => {
                e.set_standby(standby, now);
                let _ = reply.send(e.is_standby());
            }
            Command::HaApply { records, reply } => {
                let n = records.iter().filter(|r| e.apply_sync(r, now) == crate::nat::ha::BlockImport::Done).count();
                let _ = reply.send(n);
            }
            Command::HaClear { reply } => drop(reply.send(e.clear_synced(now))),
            Command::HaUnpin { reply } => drop(reply.send(e.unpin_imported())),
            Command::HaExport { sessions, from_slot, reply } => {
                let (slots, next_slot) = slice(from_slot, e.session_slots());
                let next_slot = if sessions { next_slot } else { None };
                let _ = reply.send(Sliced { part: e.export_sync(slots, sessions), next_slot });
            }
        }
    }
}

/// The holds `e` knows for `query`, with their pools' names.
fn whois(e: &Engine, query: WhoisQuery) -> Vec<HeldBy> {
    let held = match query {
        WhoisQuery::Port(ip, port) => e.holder(ip, port).into_iter().collect(),
        WhoisQuery::Subscriber(inside) => e.held_by(inside),
    };
    let names: Vec<&str> = e.pool_names().collect();
    held.into_iter()
        .map(|held| HeldBy {
            held,
            pool: names.get(usize::from(held.pool)).map_or_else(String::new, |n| n.to_string()),
        })
        .collect()
}

/// The slots of the slice from `start`, and where the next one starts.
fn slice(start: u32, slots: u32) -> (std::ops::Range<u32>, Option<u32>) {
    let end = start.saturating_add(SLICE).min(slots);
    (start..end, (end < slots).then_some(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_every_slot_once() {
        let mut covered = 0u32;
        let mut start = Some(0);
        let mut n = 0;
        while let Some(s) = start {
            let (r, next) = slice(s, 3 * SLICE + 5);
            assert_eq!(r.start, covered);
            covered = r.end;
            start = next;
            n += 1;
        }
        assert_eq!((covered, n), (3 * SLICE + 5, 4));
        assert_eq!(slice(0, 10), (0..10, None));
        assert_eq!(slice(0, 0), (0..0, None));
    }
}
