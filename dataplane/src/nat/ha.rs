//! An HA pair's engine side: the standby role, and the state the active
//! box's sync stream installs (port blocks, and sessions of long-lived
//! flows when `sync_sessions` is on).
//!
//! A standby forwards nothing: every frame it gets is dropped as
//! `standby` (the XDP program still gives the kernel what is addressed to
//! the box, VRRP included), it expires nothing (the active box says when a
//! session ends) and records no NAT event (the active box logs). Promoted
//! ([`Engine::set_standby`] with false), it serves what it was given: the
//! same subscribers on the same public addresses, with the same blocks and,
//! for synced sessions, the same public ports; their clocks start again at
//! the promotion.
//!
//! Records are applied idempotently and checked against what the engine
//! holds ([`ports::BlockImport`]): a bulk resync replayed over the events
//! that raced it converges on the active box's state. A session is
//! imported as answered (UDP: the full timeout, RFC 4787 REQ-5) or, for
//! TCP, established (RFC 5382 REQ-5), with no window seen yet: the RST check
//! picks the window up from the next packets (as netfilter's loose
//! pick-up does).
//!
//! The records' wire form (big-endian): a block is tag 1 (held) or 2
//! (released), inside address, public address, first and last port (13
//! bytes); a session is tag 3 (created) or 4 (deleted), protocol, then
//! inside, public and remote address and port (20 bytes).
//!
//! Invariants: an import changes nothing it cannot complete (a session
//! whose port or subscriber does not fit is refused whole and counted);
//! [`decode_records`] never panics and decodes exactly what
//! [`encode_records`] wrote (fuzz target `ha_records`).
#![forbid(unsafe_code)]

use super::*;
pub use ports::{BlockImport, ImportedBlock};

/// One record of the sync stream, as the engine applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncRecord {
    /// A port block allocated (`held`) or released.
    Block {
        /// Allocated (true) or released.
        held: bool,
        /// The block.
        block: ImportedBlock,
    },
    /// A mapped TCP or UDP session created (`live`) or deleted.
    Session {
        /// Created (true) or deleted.
        live: bool,
        /// The session.
        session: SyncedSession,
    },
}

/// A mapped session as the sync stream carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncedSession {
    /// IP protocol number (6 or 17).
    pub proto: u8,
    /// Inside address and port.
    pub inside: (u32, u16),
    /// Public address and port.
    pub public: (u32, u16),
    /// Remote address and port.
    pub remote: (u32, u16),
}

impl Engine {
    /// True while this engine is an HA standby.
    pub fn is_standby(&self) -> bool {
        self.standby
    }

    /// Becomes a standby (drops every frame, expires nothing, records no
    /// event) or, promoted, the active box: every session's clock starts
    /// again at `now`, so none expires for the time it waited.
    pub fn set_standby(&mut self, standby: bool, now: u32) {
        if self.standby && !standby {
            for s in self.sessions.hot.iter_mut().filter(|s| s.class != session::FREE) {
                s.last_seen = now;
            }
        }
        self.standby = standby;
        self.ports.quiet = standby;
    }

    /// Lifts the pins of imported subscribers: those with no session give
    /// their blocks back (logged as released). Returns how many.
    pub fn unpin_imported(&mut self) -> u32 {
        self.ports.unpin_all()
    }

    /// Removes every session and imported subscriber (a standby's state
    /// before a bulk resync). Returns the sessions removed.
    pub fn clear_synced(&mut self, now: u32) -> usize {
        let n = self.flush_slots(now, |_| true, None, 0..self.session_slots());
        self.ports.unpin_all();
        n
    }

    /// Applies one record of the active box's stream. `NotMine` answers a
    /// record of another worker's blocks or subscribers.
    pub fn apply_sync(&mut self, r: &SyncRecord, now: u32) -> BlockImport {
        let out = match *r {
            SyncRecord::Block { held: true, block: b } => self.ports.import_block(b.inside, b.public, b.first_port),
            SyncRecord::Block { held: false, block: b } => {
                self.ports.release_imported_block(b.inside, b.public, b.first_port)
            }
            SyncRecord::Session { live: true, session } => self.import_session(&session, now),
            SyncRecord::Session { live: false, session } => self.drop_synced(&session, now),
        };
        match out {
            BlockImport::Done => self.counters.ha_applied += 1,
            BlockImport::Conflict | BlockImport::Unknown => self.counters.ha_refused += 1,
            BlockImport::Unchanged | BlockImport::NotMine => {}
        }
        out
    }

    /// The session of `x`'s tuple, if this engine has it.
    fn synced_idx(&self, x: &SyncedSession, proto: L4) -> Option<u32> {
        let h = self.h_i2o(x.inside.0, x.inside.1, x.remote.0, x.remote.1, proto);
        self.find::<true>(h, x.inside.0, x.inside.1, x.remote.0, x.remote.1, proto)
    }

    fn import_session(&mut self, x: &SyncedSession, now: u32) -> BlockImport {
        let proto = match L4::from_ip_proto(x.proto) {
            Some(p @ (L4::Tcp | L4::Udp)) => p,
            _ => return BlockImport::Unknown,
        };
        // What a packet could not make, a record does not either (the fast
        // lane relies on it, see `parse::martian_source`).
        if super::parse::martian_source(x.inside.0) || super::parse::martian_source(x.remote.0) {
            return BlockImport::Conflict;
        }
        if self.subscriber_owner(x.inside.0) != self.worker {
            return BlockImport::NotMine;
        }
        if self.synced_idx(x, proto).is_some() {
            return BlockImport::Unchanged;
        }
        let Some(a) = self.ports.addr_of_ip(x.public.0) else { return BlockImport::Unknown };
        let Some(pool) = self.ports.addrs.get(usize::from(a)).map(|ad| ad.pool) else { return BlockImport::Unknown };
        let Some(sub) = self.ports.subscriber_for_import(x.inside.0, pool, a) else { return BlockImport::Conflict };
        if !self.ports.add_session(sub) {
            return BlockImport::Conflict;
        }
        let hm = self.h_imap(x.inside.0, x.inside.1, proto);
        let head = self.find_mapping_i2o(hm, x.inside.0, x.inside.1, proto, pool, now);
        let fits = match head {
            Some(h) => {
                let hs = self.sessions.get(h);
                hs.public_port == x.public.1.into() && hs.addr == a
            }
            None => self.ports.take_port(sub, a, proto, x.public.1),
        };
        let idx = match (fits, self.sessions.alloc()) {
            (true, Some(i)) => i,
            (taken, slot) => {
                if let Some(i) = slot {
                    self.sessions.free(i);
                }
                if taken && head.is_none() {
                    self.ports.release(a, proto, x.public.1, now);
                }
                self.ports.remove_session(sub);
                return BlockImport::Conflict;
            }
        };
        let s = Session {
            inside_ip: x.inside.0.into(),
            remote_ip: x.remote.0.into(),
            inside_port: x.inside.1.into(),
            remote_port: x.remote.1.into(),
            public_port: x.public.1.into(),
            addr: a,
            proto,
            flags: flag::MAPPED | flag::SUB,
            ..Session::default()
        };
        // An ACK without SYN: picked up mid-stream (`TcpState::initial`).
        self.install(idx, s, now, crate::wire::tcp::ACK);
        match head {
            Some(h) => self.chain_after(h, idx),
            None => {
                self.imap.insert(hm, idx);
                let ho = self.h_omap(x.public.0, x.public.1, proto);
                self.omap.insert(ho, idx);
            }
        }
        let class = if proto == L4::Tcp { class::TCP_ESTABLISHED } else { class::UDP };
        if let Some(s) = self.sessions.hot.get_mut(idx as usize) {
            s.flags |= flag::REPLIED;
            if proto == L4::Tcp {
                s.tcp = TcpState::STEADY;
            }
            s.class = class;
            s.refresh_fast();
        }
        let t = self.class_timeout.get(usize::from(class)).copied().unwrap_or(0);
        self.sessions.reschedule(idx, now.saturating_add(t), now);
        BlockImport::Done
    }

    fn drop_synced(&mut self, x: &SyncedSession, now: u32) -> BlockImport {
        let Some(proto) = L4::from_ip_proto(x.proto) else { return BlockImport::Unknown };
        if self.subscriber_owner(x.inside.0) != self.worker {
            return BlockImport::NotMine;
        }
        match self.synced_idx(x, proto) {
            Some(idx) => {
                self.remove(idx, now);
                BlockImport::Done
            }
            None => BlockImport::Unchanged,
        }
    }

    /// This worker's share of the active box's state for a bulk resync:
    /// with the first slice (`slots` from 0) every held block, then the
    /// mapped TCP and UDP sessions among `slots` when `sessions`.
    pub fn export_sync(&self, slots: std::ops::Range<u32>, sessions: bool) -> Vec<SyncRecord> {
        let mut out = Vec::new();
        if slots.start == 0 {
            out.extend(self.ports.held_blocks().into_iter().map(|block| SyncRecord::Block { held: true, block }));
        }
        if !sessions {
            return out;
        }
        let (a, b) = (slots.start as usize, (slots.end as usize).min(self.sessions.hot.len()));
        for s in self.sessions.hot.get(a.min(b)..b).unwrap_or_default() {
            if s.class == session::FREE || s.flags & flag::MAPPED == 0 || !matches!(s.proto, L4::Tcp | L4::Udp) {
                continue;
            }
            out.push(SyncRecord::Session {
                live: true,
                session: SyncedSession {
                    proto: s.proto.ip_proto(),
                    inside: (s.inside_ip.get(), s.inside_port.get()),
                    public: (s.public_ip.get(), s.public_port.get()),
                    remote: (s.remote_ip.get(), s.remote_port.get()),
                },
            });
        }
        out
    }
}

/// Records in one batch at most (a sync message stays well under 1 MiB).
pub const MAX_RECORDS: usize = 16_384;

/// Appends `r`'s encoding.
pub fn encode_record(out: &mut Vec<u8>, r: &SyncRecord) {
    match r {
        SyncRecord::Block { held, block: b } => {
            out.push(if *held { 1 } else { 2 });
            out.extend_from_slice(&b.inside.to_be_bytes());
            out.extend_from_slice(&b.public.to_be_bytes());
            out.extend_from_slice(&b.first_port.to_be_bytes());
            out.extend_from_slice(&b.last_port.to_be_bytes());
        }
        SyncRecord::Session { live, session: s } => {
            out.push(if *live { 3 } else { 4 });
            out.push(s.proto);
            for (a, p) in [s.inside, s.public, s.remote] {
                out.extend_from_slice(&a.to_be_bytes());
                out.extend_from_slice(&p.to_be_bytes());
            }
        }
    }
}

/// A batch of records as the sync link carries it: a count (u16), then each
/// record ([`encode_record`]).
pub fn encode_records(rs: &[SyncRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + rs.len() * 20);
    out.extend_from_slice(&u16::try_from(rs.len()).unwrap_or(u16::MAX).to_be_bytes());
    for r in rs.iter().take(usize::from(u16::MAX)) {
        encode_record(&mut out, r);
    }
    out
}

/// Reads `n` big-endian bytes.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (a, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    fn endpoint(&mut self) -> Option<(u32, u16)> {
        Some((self.u32()?, self.u16()?))
    }
}

/// A `Records` body's records; `None` if it is malformed (short, an
/// unknown tag, bytes left over).
pub fn decode_records(body: &[u8]) -> Option<Vec<SyncRecord>> {
    let mut c = Cursor(body);
    let n = usize::from(c.u16()?);
    // Each record is at least 13 bytes: a count the body cannot hold is a lie.
    if n > MAX_RECORDS || n * 13 > body.len() {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let r = match c.u8()? {
            t @ (1 | 2) => SyncRecord::Block {
                held: t == 1,
                block: ImportedBlock { inside: c.u32()?, public: c.u32()?, first_port: c.u16()?, last_port: c.u16()? },
            },
            t @ (3 | 4) => SyncRecord::Session {
                live: t == 3,
                session: SyncedSession {
                    proto: c.u8()?,
                    inside: c.endpoint()?,
                    public: c.endpoint()?,
                    remote: c.endpoint()?,
                },
            },
            _ => return None,
        };
        out.push(r);
    }
    c.0.is_empty().then_some(out)
}

impl SyncRecord {
    /// The record an event of the active box's engine makes, if any: block
    /// allocations and releases, and (with `sync_sessions`) mapped sessions
    /// created and deleted. Refusals and logged session events make none.
    pub fn of(ev: &events::NatEvent) -> Option<Self> {
        use events::NatEventKind as K;
        let block =
            ImportedBlock { inside: ev.inside, public: ev.public, first_port: ev.port_start, last_port: ev.port_end };
        match ev.kind {
            K::BlockAllocated => Some(Self::Block { held: true, block }),
            K::BlockReleased => Some(Self::Block { held: false, block }),
            K::SessionSync(i) => Some(Self::Session {
                live: i.change == ports::SessionChange::Created,
                session: SyncedSession {
                    proto: i.proto,
                    inside: (ev.inside, i.inside_port),
                    public: (ev.public, ev.port_start),
                    remote: (i.remote, i.remote_port),
                },
            }),
            _ => None,
        }
    }
}
