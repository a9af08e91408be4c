//! The NAT engine: one per worker, pure (no I/O, no locks, no allocation
//! after construction, no `unsafe`). It takes a batch of frames received on
//! one side and the time, rewrites the frames in place and returns a
//! [`Verdict`] per frame.
//!
//! Semantics (see DESIGN.md): the NAT decision is taken by the ordered rules
//! on the first packet of a flow and pinned in a session; replies never
//! re-match. Mappings are endpoint-independent (RFC 4787 REQ-1) with paired
//! pooling (REQ-2) and per-pool filtering (section 5, REQ-8); hairpinning
//! (REQ-9); ICMP echo is translated by identifier and ICMP errors through
//! their embedded header (RFC 5508 section 4); TCP state picks the timeout
//! class (RFC 5382 REQ-5, RFC 7857 section 2); a freed port is held 120 s
//! (RFC 6888 REQ-8); when the table is full, expired then unreplied sessions
//! are reclaimed, never established ones (netfilter FAQ 3.17).
//!
//! Checksums are updated incrementally (RFC 1624) from deltas computed when
//! the session is created; a packet that arrived with a bad checksum leaves
//! with a bad checksum, never a laundered good one.
//!
//! Batches: frames in the common layout (untagged Ethernet, IPv4 without
//! options, TCP or UDP, unfragmented) take the fast lane (`fast`): parsed
//! from fixed-size views, looked up, and rewritten if their session is in
//! its steady state. Above [`PREFETCH_ABOVE_SESSIONS`] the whole batch is
//! parsed and its index slots and sessions read first, so cache misses
//! overlap; below, each frame is done in one pass. Everything else goes
//! through the general path afterwards, in batch order. The result is the
//! same as processing the frames one at a time (a test holds it).
//!
//! Invariants: every live session is in the inside-to-outside (`i2o`) and
//! outside-to-inside (`o2i`) indexes under its own tuple, exactly once; a
//! mapped session is on the chain of its mapping, whose head is in `imap`
//! and `omap`; a mapping's public port is in use in the port maps exactly
//! while its chain is not empty.
#![forbid(unsafe_code)]

pub mod counters;
mod fast;
pub mod frag;
pub mod hash;
pub mod index;
pub mod params;
pub mod parse;
pub mod ports;
pub mod rules;
pub mod session;
pub mod tcp;

pub use counters::{Counters, DropReason, PassReason};
pub use params::*;

use crate::wire::bytes::{set_u16, set_u32, u16_at, u32_at};
use crate::wire::checksum::{add, apply_delta, apply_delta_udp, delta32, fold, fold_wide, negate, sum};
use crate::wire::icmp;
use frag::{FragKey, Fragments};
use index::Index;
use parse::{parse, parse_embedded, parse_fast, FastKey, Kind, Parsed};
use ports::Ports;
use session::{class, flag, pcode, Session, SessionTable, NIL};

/// Which interface a frame came from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Subscribers.
    Inside,
    /// The internet.
    Outside,
}

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit the rewritten frame on this side.
    Forward(Side),
    /// Drop it; counted under the reason.
    Drop(DropReason),
    /// Give it to the kernel's stack unchanged.
    PassToKernel(PassReason),
    /// Another worker owns its session: process it there as received on `side`.
    HandOff {
        /// The owning worker.
        worker: u16,
        /// The side to process it as.
        side: Side,
    },
}

/// Session capacity above which batches read ahead (prefetch across the batch).
pub const PREFETCH_ABOVE_SESSIONS: u32 = 1 << 16;

/// Frames processed per prefetch round.
pub const BATCH: usize = 64;

/// TTL decrement as a checksum delta: the TTL/protocol word drops by 0x0100.
const TTL_DELTA: u16 = 0xfeff;
const O2I_SALT: u64 = 0x5bd1_e995_0000_0001;
const OMAP_SALT: u64 = 0x27d4_eb2f_1656_67c5;
/// Sessions reclaimed at most per batch by the expiry sweep.
const EXPIRE_BUDGET: usize = 32;

/// L4 offsets per protocol code: (port rewritten i2o, port rewritten o2i, checksum).
const L4_OFFS: [(usize, usize, usize); 3] = [(0, 2, 16), (0, 2, 6), (4, 4, 2)];

/// A session as listed to operators (`conntrack -L` style).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    /// IP protocol number.
    pub protocol: u8,
    /// Inside address and port.
    pub inside: (u32, u16),
    /// Public address and port.
    pub public: (u32, u16),
    /// Remote address and port.
    pub remote: (u32, u16),
    /// TCP state name, or "udp"/"icmp".
    pub state: &'static str,
    /// Seconds until it idles out.
    pub expires_in: u32,
    /// Flag bits ([`session::flag`]).
    pub flags: u8,
}

#[derive(Debug, Clone, Copy)]
struct ForwardRt {
    f: Forward,
    addr: u16,
    pcode: u16,
}

/// One worker's NAT engine.
pub struct Engine {
    worker: u16,
    workers: u16,
    seed: u64,
    steering: Option<crate::rss::SubscriberSteering>,
    rng: u64,
    timeouts: Timeouts,
    class_timeout: [u32; class::COUNT],
    rules: rules::RuleSet,
    forwards: Vec<ForwardRt>,
    local: Vec<u32>,
    sessions: SessionTable,
    i2o: Index,
    o2i: Index,
    imap: Index,
    omap: Index,
    ports: Ports,
    frags: Fragments,
    counters: Counters,
    scratch: Option<Box<[Item; BATCH]>>,
    created: Created,
    /// Whether the tables outgrow the caches (prefetch across the batch).
    prefetch: bool,
    /// The parameters in force (for live changes).
    params: EngineParams,
}

/// The lookup keys of the sessions made since the batch's fast lane ran,
/// as a Bloom filter of one bit per key and direction (256 bits each, by the
/// top byte of the key's hash): a frame the fast lane found no session for
/// is looked up again only if its bit is set, that is if a session made
/// in between may have its key.
#[derive(Debug, Clone, Copy, Default)]
struct Created {
    i2o: [u64; 4],
    o2i: [u64; 4],
}

impl Created {
    #[inline(always)]
    fn bit(h: u64) -> (usize, u64) {
        let b = h >> 56;
        ((b >> 6) as usize, 1 << (b & 63))
    }

    #[inline(always)]
    fn add(&mut self, hi: u64, ho: u64) {
        let (w, m) = Self::bit(hi);
        if let Some(x) = self.i2o.get_mut(w) {
            *x |= m;
        }
        let (w, m) = Self::bit(ho);
        if let Some(x) = self.o2i.get_mut(w) {
            *x |= m;
        }
    }

    #[inline(always)]
    fn may_have<const I2O: bool>(&self, h: u64) -> bool {
        let (w, m) = Self::bit(h);
        let set = if I2O { &self.i2o } else { &self.o2i };
        set.get(w).is_none_or(|x| x & m != 0)
    }
}

/// The fast lane's record of one frame of a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Item {
    pub(crate) k: FastKey,
    pub(crate) h: u64,
    pub(crate) slot: u32,
    pub(crate) st: Pre,
}

impl Item {
    const EMPTY: Item = Item { k: FastKey { w0: 0, w1: 0, flags: 0, ttl: 0 }, h: 0, slot: 0, st: Pre::Later };
}

/// What the fast lane decided for a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pre {
    /// A fast-lane frame not yet looked up.
    Fast,
    /// A fast-lane frame the fast lane did not take: the general path, with its key.
    Flow,
    /// A fast-lane frame for which no session existed when the fast lane
    /// looked (see [`Created`]).
    New,
    /// Not in the fast-lane layout: parse it in the general path.
    Later,
}

fn pcode_of(proto: u8) -> u16 {
    match proto {
        6 => pcode::TCP,
        17 => pcode::UDP,
        _ => pcode::ICMP,
    }
}

fn proto_of(pc: u16) -> u8 {
    match pc {
        pcode::TCP => 6,
        pcode::UDP => 17,
        _ => 1,
    }
}

/// Whether a running engine built with `old` can take `new` live: table
/// sizes, worker geometry and the fragment timeout are fixed at start; a
/// pool kept by name keeps its kind, port range and limits and may only
/// lose addresses (a new pool takes new ones); timeouts may not outgrow
/// the expiry wheel built for `old`.
pub fn reconfigure_check(old: &EngineParams, new: &EngineParams) -> Result<(), ParamError> {
    let bad = |s: String| Err(ParamError::Invalid(s));
    if (old.max_sessions, old.max_subscribers, old.max_fragments)
        != (new.max_sessions, new.max_subscribers, new.max_fragments)
    {
        return bad("table sizes change only with a restart".into());
    }
    if old.workers != new.workers {
        return bad("the number of workers changes only with a restart".into());
    }
    let (o, n) = (old.timeouts, new.timeouts);
    let wheel = o.tcp_established_secs.max(o.tcp_transitory_secs).max(o.udp_secs).max(o.icmp_secs);
    if n.tcp_established_secs.max(n.tcp_transitory_secs).max(n.udp_secs).max(n.icmp_secs) > wheel {
        return bad(format!("a timeout above {wheel} s (the longest at start) needs a restart"));
    }
    if o.fragment_secs != n.fragment_secs || o.port_hold_secs != n.port_hold_secs {
        return bad("fragment and port-hold timeouts change only with a restart".into());
    }
    for np in &new.pools {
        let Some(op) = old.pools.iter().find(|op| op.name == np.name) else { continue };
        let same = (
            op.port_min,
            op.port_max,
            op.mode,
            op.filtering,
            op.max_sessions_per_subscriber,
            op.random_ports,
            op.masquerade,
        ) == (
            np.port_min,
            np.port_max,
            np.mode,
            np.filtering,
            np.max_sessions_per_subscriber,
            np.random_ports,
            np.masquerade,
        );
        if !same {
            return bad(format!(
                "pool {}: its ports, mode, filtering or limits change only with a restart (or give it a new name)",
                np.name
            ));
        }
        if let Some(a) = np.addresses.iter().find(|a| !op.addresses.contains(a)) {
            return bad(format!(
                "pool {}: {} is new; a kept pool may only lose addresses live (add a pool for new ones)",
                np.name,
                crate::wire::fmt_ipv4(*a)
            ));
        }
    }
    Ok(())
}

/// The worker that owns a subscriber (inside address) among `workers`.
/// A pure function: the AF_XDP layer steers by it (later RSS-aware).
pub fn subscriber_owner(inside_ip: u32, workers: u16) -> u16 {
    if workers <= 1 {
        return 0;
    }
    let h = u64::from(inside_ip).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    u16::try_from(h % u64::from(workers)).unwrap_or(0)
}

impl Engine {
    /// Builds an engine; all memory is allocated here.
    pub fn new(p: &EngineParams) -> Result<Self, ParamError> {
        if p.max_sessions == 0 || p.max_sessions >= index::MAX_ENTRIES {
            return Err(ParamError::Invalid(format!("max_sessions must be 1..{}", index::MAX_ENTRIES)));
        }
        if p.max_subscribers == 0 || p.max_subscribers >= index::MAX_ENTRIES {
            return Err(ParamError::Invalid("max_subscribers out of range".into()));
        }
        for r in &p.rules {
            if let RuleAction::Translate { pool } = r.action {
                if usize::from(pool) >= p.pools.len() {
                    return Err(ParamError::Invalid(format!("a rule names pool {pool}, which does not exist")));
                }
            }
        }
        let mut ports = Ports::new(p)?;
        let mut forwards = Vec::new();
        for f in &p.forwards {
            let Some(addr) = ports.addr_of_ip(f.public_addr) else {
                return Err(ParamError::Invalid(format!(
                    "forward to {}:{} is not on a pool address",
                    crate::wire::fmt_ipv4(f.public_addr),
                    f.public_port
                )));
            };
            if f.protocol != 6 && f.protocol != 17 {
                return Err(ParamError::Invalid("forwards are TCP or UDP".into()));
            }
            let pc = pcode_of(f.protocol);
            // Only the owning worker marks the port; others never allocate it
            // because they do not own it.
            ports.reserve(addr, usize::from(pc), f.public_port);
            forwards.push(ForwardRt { f: *f, addr, pcode: pc });
        }
        let mut local = p.local_addrs.clone();
        local.sort_unstable();
        let t = p.timeouts;
        Ok(Self {
            worker: p.worker,
            workers: p.workers,
            seed: p.seed,
            steering: p.steering.clone(),
            rng: p.seed | 1,
            timeouts: t,
            class_timeout: [t.tcp_established_secs, t.tcp_transitory_secs, t.udp_secs, t.icmp_secs],
            rules: rules::RuleSet::new(&p.rules),
            forwards,
            local,
            sessions: SessionTable::new(
                p.max_sessions,
                t.tcp_established_secs.max(t.tcp_transitory_secs).max(t.udp_secs).max(t.icmp_secs),
            ),
            i2o: Index::with_entries(p.max_sessions),
            o2i: Index::with_entries(p.max_sessions),
            imap: Index::with_entries(p.max_sessions),
            omap: Index::with_entries(p.max_sessions),
            ports,
            frags: Fragments::new(p.max_fragments, t.fragment_secs, p.seed ^ 0xf7a6),
            counters: Counters::default(),
            scratch: Some(Box::new([Item::EMPTY; BATCH])),
            created: Created::default(),
            // Past 64k sessions the slab (32 B each) and indexes leave L2.
            prefetch: p.max_sessions > PREFETCH_ABOVE_SESSIONS,
            params: p.clone(),
        })
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Live sessions.
    pub fn live_sessions(&self) -> u32 {
        self.sessions.live()
    }

    /// Port blocks held by subscribers on this worker.
    pub fn blocks_in_use(&self) -> u32 {
        self.ports.blocks_in_use
    }

    /// Free port blocks of public address `ip` on this worker.
    pub fn free_blocks(&self, ip: u32) -> Option<usize> {
        self.ports.addr_of_ip(ip).map(|a| self.ports.free_blocks(a))
    }

    /// Live subscribers.
    pub fn subscribers(&self) -> usize {
        self.ports.subscribers()
    }

    /// All memory the session table, its four indexes, the port maps and the
    /// subscriber and fragment tables take, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.sessions.memory_bytes()
            + self.i2o.memory_bytes()
            + self.o2i.memory_bytes()
            + self.imap.memory_bytes()
            + self.omap.memory_bytes()
            + self.ports.memory_bytes()
            + self.frags.memory_bytes()
    }

    /// The worker owning public (`ip`, `port`), if `ip` is a pool address.
    pub fn public_owner(&self, ip: u32, port: u16) -> Option<u16> {
        self.ports.addr_of_ip(ip).and_then(|a| self.ports.owner_of(a, port))
    }

    fn is_local(&self, ip: u32) -> bool {
        // Sorted: a range check first spares the search for most addresses.
        matches!((self.local.first(), self.local.last()), (Some(&lo), Some(&hi)) if ip >= lo && ip <= hi)
            && self.local.binary_search(&ip).is_ok()
    }

    fn next_rand(&mut self) -> u32 {
        // xorshift64: port randomisation only, not a security boundary.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 32) as u32
    }

    #[inline(always)]
    /// The subscriber slot a session with [`flag::SUB`] is counted in.
    fn session_sub(&self, s: &Session) -> u32 {
        self.ports.find_subscriber(s.inside_ip, keys::pool_of(&self.ports, s)).unwrap_or(NIL)
    }

    #[inline(always)]
    fn h_i2o(&self, inside: u32, iport: u16, remote: u32, rport: u16, pc: u16) -> u64 {
        keys::i2o(self.seed, inside, iport, remote, rport, pc)
    }

    #[inline(always)]
    fn h_o2i(&self, public: u32, pport: u16, remote: u32, rport: u16, pc: u16) -> u64 {
        keys::o2i(self.seed, public, pport, remote, rport, pc)
    }

    fn h_imap(&self, inside: u32, iport: u16, pc: u16, pool: u16) -> u64 {
        keys::imap(self.seed, inside, iport, pc, pool)
    }

    fn h_omap(&self, public: u32, pport: u16, pc: u16) -> u64 {
        keys::omap(self.seed, public, pport, pc)
    }

    fn session_hashes(&self, s: &Session) -> (u64, u64) {
        (keys::session_i2o(self.seed, s), keys::session_o2i(self.seed, s))
    }

    fn pool_of_session(&self, s: &Session) -> u16 {
        keys::pool_of(&self.ports, s)
    }

    /// The session whose key in this direction (inside to outside when
    /// `I2O`) is the packet's tuple, confirmed as the fast lane confirms it.
    #[inline(always)]
    fn find<const I2O: bool>(&self, h: u64, src: u32, sport: u16, dst: u32, dport: u16, pc: u16) -> Option<u32> {
        let hot = &self.sessions.hot;
        let index = if I2O { &self.i2o } else { &self.o2i };
        let (w0, ports) = ((u64::from(src) << 32) | u64::from(dst), (u32::from(sport) << 16) | u32::from(dport));
        let code = session::code_of(pc);
        index.find(h, |i| hot.get(i as usize).is_some_and(|s| s.has_key::<I2O>(w0, ports, code)))
    }

    /// True if the session idled past its timeout (it is then treated as gone).
    #[inline(always)]
    fn stale(&self, s: &Session, now: u32) -> bool {
        let t = self.class_timeout.get(usize::from(s.class)).copied().unwrap_or(0);
        // Worker time never goes back; if it did, the wrapped difference
        // reads as stale and the general path deals with it.
        now.wrapping_sub(s.last_seen) >= t
    }

    /// Processes a batch of frames received on `side` at `now` (seconds).
    /// `verdicts` gets one entry per frame.
    #[inline(never)]
    pub fn process<F: AsMut<[u8]>>(&mut self, side: Side, now: u32, frames: &mut [F], verdicts: &mut [Verdict]) {
        self.expire(now, EXPIRE_BUDGET);
        for (fs, vs) in frames.chunks_mut(BATCH).zip(verdicts.chunks_mut(BATCH)) {
            self.process_chunk(side, now, fs, vs);
        }
    }

    /// Processes one frame (tests, tools; the workers use [`Engine::process`]).
    pub fn process_one(&mut self, side: Side, now: u32, frame: &mut [u8]) -> Verdict {
        self.expire(now, EXPIRE_BUDGET);
        let mut v = [Verdict::Drop(DropReason::Malformed)];
        self.process_chunk(side, now, &mut [frame], &mut v);
        v[0]
    }

    fn process_chunk<F: AsMut<[u8]>>(&mut self, side: Side, now: u32, frames: &mut [F], verdicts: &mut [Verdict]) {
        // One copy of the loop per direction: no per-packet side tests.
        match side {
            Side::Inside => self.process_dir::<true, F>(now, frames, verdicts),
            Side::Outside => self.process_dir::<false, F>(now, frames, verdicts),
        }
    }

    fn process_dir<const I2O: bool, F: AsMut<[u8]>>(&mut self, now: u32, frames: &mut [F], verdicts: &mut [Verdict]) {
        let side = if I2O { Side::Inside } else { Side::Outside };
        let mut items = self.scratch.take().unwrap_or_else(|| Box::new([Item::EMPTY; BATCH]));
        let n = frames.len().min(verdicts.len()).min(BATCH) as u64;
        match side {
            Side::Inside => self.counters.rx_i2o += n,
            Side::Outside => self.counters.rx_o2i += n,
        }
        let seed = match side {
            Side::Inside => self.seed,
            Side::Outside => self.seed ^ O2I_SALT,
        };
        let (slots, mask) = match side {
            Side::Inside => self.i2o.raw(),
            Side::Outside => self.o2i.raw(),
        };
        let mut lane = fast::Lane { hot: &mut self.sessions.hot, slots, mask, timeouts: self.class_timeout, now };
        // Bit i set: frame i is left for the general path.
        let pending: u64 = if self.prefetch {
            // Large tables: parse the whole batch and read each frame's first
            // index slot and candidate session before translating any, so the
            // cache misses of the batch overlap instead of queueing.
            for (f, it) in frames.iter_mut().zip(items.iter_mut()) {
                match parse_fast(f.as_mut()) {
                    Some(k) => {
                        let h = hash::hash_words(seed, k.w0, k.w1);
                        it.k = k;
                        it.h = h;
                        it.slot = lane.slots.get(hash::bucket(h, mask)).copied().unwrap_or(0);
                        // An empty home slot: no session has the key.
                        it.st = if it.slot == 0 { Pre::New } else { Pre::Fast };
                    }
                    None => it.st = Pre::Later,
                }
            }
            let mut touch = 0u32;
            for (it, _) in items.iter().zip(frames.iter()) {
                if it.st == Pre::Fast {
                    let idx = (it.slot & index::IDX_MASK).wrapping_sub(1);
                    touch ^= lane.hot.get(idx as usize).map_or(0, |x| x.last_seen);
                }
            }
            std::hint::black_box(touch);
            let mut pending = 0u64;
            for (i, ((f, v), it)) in frames.iter_mut().zip(verdicts.iter_mut()).zip(items.iter_mut()).enumerate() {
                if it.st == Pre::Fast {
                    match lane.hit::<I2O>(f.as_mut(), it.k, it.h) {
                        fast::Outcome::Done => {
                            *v = Verdict::Forward(if I2O { Side::Outside } else { Side::Inside });
                            continue;
                        }
                        fast::Outcome::Absent => it.st = Pre::New,
                        fast::Outcome::Other => it.st = Pre::Flow,
                    }
                }
                pending |= 1 << i;
            }
            pending
        } else {
            // Tables that fit in cache: one pass, nothing to overlap.
            fast::single_pass::<I2O, F>(&mut lane, seed, frames, verdicts, &mut items[..])
        };
        let forwarded = n - u64::from(pending.count_ones());
        match side {
            Side::Inside => self.counters.fwd_i2o += forwarded,
            Side::Outside => self.counters.fwd_o2i += forwarded,
        }
        // Everything else, in batch order, through the general path.
        self.created = Created::default();
        let mut m = pending;
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            let (Some(f), Some(v), Some(it)) = (frames.get_mut(i), verdicts.get_mut(i), items.get(i)) else {
                continue;
            };
            let frame = f.as_mut();
            *v = match it.st {
                // Still absent unless this batch made a session that may have
                // its key: then it is looked up again.
                Pre::New if !self.created.may_have::<I2O>(it.h) => {
                    let p = it.k.to_parsed();
                    let h = Some(it.h);
                    match side {
                        Side::Inside => self.miss_i2o(now, frame, &p, h),
                        Side::Outside => self.miss_o2i(now, frame, &p),
                    }
                    .unwrap_or_else(|v| v)
                }
                Pre::Flow | Pre::New => self.flow(side, now, frame, &it.k.to_parsed(), it.h),
                _ => match parse(frame, side) {
                    Ok(p) if p.kind == Kind::Flow => {
                        let h = match side {
                            Side::Inside => self.h_i2o(p.src, p.sport, p.dst, p.dport, p.pcode),
                            Side::Outside => self.h_o2i(p.dst, p.dport, p.src, p.sport, p.pcode),
                        };
                        self.flow(side, now, frame, &p, h)
                    }
                    Ok(p) => self.slow(side, now, frame, &p, None),
                    Err(verdict) => verdict,
                },
            };
            self.count(*v);
        }
        self.scratch = Some(items);
    }

    fn count(&mut self, v: Verdict) {
        match v {
            Verdict::Forward(Side::Outside) => self.counters.fwd_i2o += 1,
            Verdict::Forward(Side::Inside) => self.counters.fwd_o2i += 1,
            Verdict::Drop(r) => self.counters.drop(r),
            Verdict::PassToKernel(r) => self.counters.pass(r),
            Verdict::HandOff { .. } => self.counters.handoffs += 1,
        }
    }

    /// A TCP/UDP/ICMP-echo packet with its hash computed.
    #[inline(always)]
    fn flow(&mut self, side: Side, now: u32, frame: &mut [u8], p: &Parsed, h: u64) -> Verdict {
        let found = match side {
            Side::Inside => self.find::<true>(h, p.src, p.sport, p.dst, p.dport, p.pcode),
            Side::Outside => self.find::<false>(h, p.src, p.sport, p.dst, p.dport, p.pcode),
        };
        let Some(idx) = found else {
            return self.slow(side, now, frame, p, Some(h));
        };
        let timeouts = self.class_timeout;
        let Some(s) = self.sessions.hot.get_mut(idx as usize) else {
            return self.slow(side, now, frame, p, Some(h));
        };
        let t = timeouts.get(usize::from(s.class & 3)).copied().unwrap_or(0);
        if now.wrapping_sub(s.last_seen) >= t {
            return self.stale_hit(idx, side, now, frame, p, h);
        }
        if p.ttl <= 1 {
            return Verdict::PassToKernel(PassReason::TtlExpired);
        }
        s.last_seen = now;
        if p.first_frag {
            // Its later fragments carry no ports: they find the session by
            // (source, destination, protocol, identification).
            self.frags.record(frag_key(p), side == Side::Inside, idx, now);
        }
        let Some(s) = self.sessions.hot.get_mut(idx as usize) else {
            return self.slow(side, now, frame, p, Some(h));
        };
        // Sessions in their steady state (answered; TCP established with no
        // SYN/FIN/RST) need nothing more than last_seen.
        const STEADY: u8 = tcp::SYN_ORIG | tcp::SYN_REPLY | tcp::ESTABLISHED;
        use crate::wire::tcp::{FIN, RST, SYN};
        let steady = s.flags & flag::REPLIED != 0
            && (p.pcode != pcode::TCP || (s.tcp == STEADY && p.tcp_flags & (SYN | FIN | RST) == 0));
        if !steady {
            self.touch(idx, side, p, now);
        }
        // touch() changes state and timers, never the rewrite: snapshot after it.
        let snap = self.sessions.get(idx);
        match side {
            Side::Inside => {
                let pub_ip = snap.public_ip;
                xlate_i2o(frame, p, &snap, pub_ip);
                if snap.flags & flag::HAIRPIN != 0 {
                    return self.hairpin_dst(now, frame, p, &snap, pub_ip);
                }
                Verdict::Forward(Side::Outside)
            }
            Side::Outside => {
                xlate_o2i(frame, p, &snap);
                Verdict::Forward(Side::Inside)
            }
        }
    }

    /// A lookup found a session whose timeout has passed: it is gone.
    #[cold]
    fn stale_hit(&mut self, idx: u32, side: Side, now: u32, frame: &mut [u8], p: &Parsed, h: u64) -> Verdict {
        self.reap(idx, now);
        self.slow(side, now, frame, p, Some(h))
    }

    /// Refreshes a session on a packet: last seen, replied, TCP state.
    #[inline(always)]
    fn touch(&mut self, idx: u32, side: Side, p: &Parsed, now: u32) {
        let Some(s) = self.sessions.hot.get_mut(idx as usize) else {
            return;
        };
        s.last_seen = now;
        let from_orig = (side == Side::Inside) != (s.flags & flag::INBOUND != 0);
        if !from_orig && s.flags & flag::REPLIED == 0 {
            s.flags |= flag::REPLIED;
            self.sessions.remove_unreplied(idx);
        }
        let Some(s) = self.sessions.hot.get_mut(idx as usize) else {
            return;
        };
        if p.pcode == pcode::TCP {
            const STEADY: u8 = tcp::SYN_ORIG | tcp::SYN_REPLY | tcp::ESTABLISHED;
            use crate::wire::tcp::{FIN, RST, SYN};
            if s.tcp != STEADY || p.tcp_flags & (SYN | FIN | RST) != 0 {
                s.tcp = tcp::advance(s.tcp, p.tcp_flags, from_orig);
                let c = tcp::class_of(s.tcp);
                if c != s.class {
                    s.class = c;
                    let t = self.class_timeout.get(usize::from(c)).copied().unwrap_or(0);
                    self.sessions.reschedule(idx, now.saturating_add(t), now);
                }
            }
        }
        if let Some(s) = self.sessions.hot.get_mut(idx as usize) {
            s.refresh_fast();
        }
    }

    /// After the source of a hairpinned packet was translated, translate its
    /// destination as if it had arrived from outside (RFC 4787 REQ-9).
    fn hairpin_dst(&mut self, now: u32, frame: &mut [u8], p: &Parsed, s: &Session, pub_ip: u32) -> Verdict {
        // The packet now reads public(s) -> p.dst:p.dport.
        let q = Parsed { src: pub_ip, sport: s.public_port, ..*p };
        let (dport, sport) = if p.pcode == pcode::ICMP { (s.public_port, 0) } else { (p.dport, s.public_port) };
        let q = Parsed { dport, sport, ..q };
        let h = self.h_o2i(q.dst, q.dport, q.src, q.sport, q.pcode);
        let idx = match self.find::<false>(h, q.src, q.sport, q.dst, q.dport, q.pcode) {
            Some(i) => i,
            None => match self.new_o2i(now, &q) {
                Ok(i) => i,
                Err(v) => return v,
            },
        };
        self.touch(idx, Side::Outside, &q, now);
        let t = self.sessions.get(idx);
        // The TTL was decremented once already: undo that part of the delta.
        xlate_o2i_no_ttl(frame, &q, &t);
        self.counters.hairpinned += 1;
        Verdict::Forward(Side::Inside)
    }

    /// Everything that is not a session hit.
    /// `h` is the packet's lookup hash when the caller has it (only the
    /// inside-to-outside one is reused, by the session it creates).
    fn slow(&mut self, side: Side, now: u32, frame: &mut [u8], p: &Parsed, h: Option<u64>) -> Verdict {
        match p.kind {
            Kind::Flow => {}
            Kind::IcmpError => return self.icmp_error(side, now, frame, p),
            Kind::LaterFragment => return self.later_fragment(side, now, frame, p),
            Kind::OtherProto => return self.other_proto(side, frame, p),
        }
        let v = match side {
            Side::Inside => self.miss_i2o(now, frame, p, h),
            Side::Outside => self.miss_o2i(now, frame, p),
        };
        v.unwrap_or_else(|v| v)
    }

    fn other_proto(&mut self, side: Side, frame: &mut [u8], p: &Parsed) -> Verdict {
        {
            let (inside, remote) = match side {
                Side::Inside => (p.src, p.dst),
                Side::Outside => (p.dst, p.src),
            };
            if side == Side::Outside && self.is_local(p.dst) {
                return Verdict::PassToKernel(PassReason::ToSelf);
            }
            if self.rules.first_match(inside, remote, p.proto, None) == Some(RuleAction::NoNat) {
                if p.ttl <= 1 {
                    return Verdict::PassToKernel(PassReason::TtlExpired);
                }
                decrement_ttl(frame, usize::from(p.l3));
                return Verdict::Forward(match side {
                    Side::Inside => Side::Outside,
                    Side::Outside => Side::Inside,
                });
            }
        }
        Verdict::Drop(DropReason::UnsupportedProtocol)
    }

    /// First packet of an inside-initiated flow.
    fn miss_i2o(&mut self, now: u32, frame: &mut [u8], p: &Parsed, h: Option<u64>) -> Result<Verdict, Verdict> {
        // Hairpinning (TCP and UDP) needs something on the public endpoint to
        // reach; decide before any session is made.
        let dst_addr = self.ports.addr_of_ip(p.dst);
        let dst_public = match dst_addr {
            Some(a) if p.pcode != pcode::ICMP => {
                let target = self.forward_by_public(a, p.dport, p.pcode).is_some()
                    || self.find_mapping_o2i(p.dst, p.dport, p.pcode, now).is_some()
                    || self.workers > 1;
                if !target {
                    return Ok(if self.is_local(p.dst) {
                        Verdict::PassToKernel(PassReason::ToSelf)
                    } else {
                        Verdict::Drop(DropReason::NoSession)
                    });
                }
                true
            }
            _ => false,
        };
        if self.is_local(p.dst) && !dst_public {
            return Ok(Verdict::PassToKernel(PassReason::ToSelf));
        }
        if p.ttl <= 1 {
            return Ok(Verdict::PassToKernel(PassReason::TtlExpired));
        }
        if self.workers > 1 {
            // A forward's server answering: its session lives with the public port's owner.
            if let Some(f) = self.forward_by_inside(p.src, p.sport, p.pcode) {
                let owner = self.ports.owner_of(f.addr, f.f.public_port).unwrap_or(self.worker);
                if owner != self.worker {
                    return Ok(Verdict::HandOff { worker: owner, side: Side::Inside });
                }
            } else {
                let owner = self.subscriber_owner(p.src);
                if owner != self.worker {
                    return Ok(Verdict::HandOff { worker: owner, side: Side::Inside });
                }
            }
        }
        let action = self.rules.first_match(p.src, p.dst, p.proto, Some(p.dport));
        let idx = match action {
            Some(RuleAction::Translate { pool }) => self.new_mapped_i2o(now, p, pool, h)?,
            Some(RuleAction::NoNat) | None => {
                self.new_unmapped(now, p, flag::NO_NAT, (p.src, p.sport), (p.dst, p.dport), h)?
            }
        };
        if p.first_frag {
            self.frags.record(frag_key(p), true, idx, now);
        }
        // No touch(): install() already set the state a first packet from
        // the originator leaves.
        let Some(s) = self.sessions.hot.get(idx as usize) else {
            return Err(Verdict::Drop(DropReason::TableFull));
        };
        let pub_ip = s.public_ip;
        xlate_i2o(frame, p, s, pub_ip);
        if dst_public && s.flags & flag::NO_NAT == 0 {
            if let Some(x) = self.sessions.hot.get_mut(idx as usize) {
                x.flags |= flag::HAIRPIN;
                x.refresh_fast();
            }
            let s = self.sessions.get(idx);
            return Ok(self.hairpin_dst(now, frame, p, &s, pub_ip));
        }
        Ok(Verdict::Forward(Side::Outside))
    }

    /// Allocates a session slot: free list, then expired, then the oldest
    /// unreplied non-established session.
    #[inline(always)]
    fn alloc_session(&mut self, now: u32) -> Result<u32, Verdict> {
        match self.sessions.alloc() {
            Some(i) => Ok(i),
            None => self.alloc_session_full(now),
        }
    }

    /// [`Engine::alloc_session`] when the free list is empty.
    #[inline(never)]
    fn alloc_session_full(&mut self, now: u32) -> Result<u32, Verdict> {
        self.expire(now, EXPIRE_BUDGET);
        if let Some(i) = self.sessions.alloc() {
            return Ok(i);
        }
        if let Some(v) = self.sessions.oldest_unreplied() {
            self.remove(v, now);
            self.counters.sessions_evicted += 1;
            if let Some(i) = self.sessions.alloc() {
                return Ok(i);
            }
        }
        Err(Verdict::Drop(DropReason::TableFull))
    }

    fn class_for(&self, pc: u16, tcp_state: u8) -> u8 {
        match pc {
            pcode::TCP => tcp::class_of(tcp_state),
            pcode::UDP => class::UDP,
            _ => class::ICMP,
        }
    }

    /// Fills a slot, indexes it and puts it on its list.
    fn install(&mut self, idx: u32, s: Session, now: u32, tcp_flags: u8) {
        self.install_hashed(idx, s, now, tcp_flags, None);
    }

    /// [`Engine::install`] with the inside-to-outside hash, if the caller
    /// already has it from the packet.
    fn install_hashed(&mut self, idx: u32, s: Session, now: u32, tcp_flags: u8, h_i2o: Option<u64>) {
        self.install_inline(idx, s, now, tcp_flags, h_i2o);
    }

    /// [`Engine::install_hashed`], inlined where a new mapping is made (the
    /// common new session).
    #[inline(always)]
    fn install_inline(&mut self, idx: u32, mut s: Session, now: u32, tcp_flags: u8, h_i2o: Option<u64>) {
        let pc = s.pcode();
        s.tcp = if pc == pcode::TCP { tcp::initial(tcp_flags) } else { 0 };
        s.last_seen = now;
        s.public_ip = keys::public_ip(&self.ports, &s);
        let pub_ip = s.public_ip;
        // i2o rewrites inside -> public; the deltas undo themselves o2i.
        // Summed wide and folded once (RFC 1071 section 2(C): 2^16 is 1
        // modulo 0xFFFF), which gives exactly delta32, delta16 and add.
        let ip_sum = u64::from(!s.inside_ip) + u64::from(pub_ip);
        let port_sum = u64::from(!s.inside_port) + u64::from(s.public_port);
        s.ip_delta = fold_wide(ip_sum);
        s.l4_delta = fold_wide(if pc == pcode::ICMP { port_sum } else { ip_sum + port_sum });
        let cls = self.class_for(pc, s.tcp);
        s.class = cls;
        if let Some(x) = self.sessions.hot.get_mut(idx as usize) {
            *x = s;
        }
        let hi = h_i2o.unwrap_or_else(|| self.h_i2o(s.inside_ip, s.inside_port, s.remote_ip, s.remote_port, pc));
        let ho = self.h_o2i(pub_ip, s.public_port, s.remote_ip, s.remote_port, pc);
        self.i2o.insert(hi, idx);
        self.o2i.insert(ho, idx);
        self.created.add(hi, ho);
        let t = self.class_timeout.get(usize::from(cls)).copied().unwrap_or(0);
        self.sessions.link_new(idx, now.saturating_add(t), now);
        self.counters.sessions_created += 1;
    }

    /// A session that is not part of a mapping (no-NAT, forwards). `h_i2o`:
    /// the packet's hash if it is the session's inside-to-outside one.
    fn new_unmapped(
        &mut self,
        now: u32,
        p: &Parsed,
        flags: u8,
        (inside, iport): (u32, u16),
        (remote, rport): (u32, u16),
        h_i2o: Option<u64>,
    ) -> Result<u32, Verdict> {
        let idx = self.alloc_session(now)?;
        let rport = if p.pcode == pcode::ICMP { 0 } else { rport };
        let s = Session {
            inside_ip: inside,
            remote_ip: remote,
            inside_port: iport,
            remote_port: rport,
            public_port: iport,
            code: session::code_of(p.pcode),
            flags,
            ..Session::default()
        };
        self.install_hashed(idx, s, now, p.tcp_flags, h_i2o);
        Ok(idx)
    }

    /// An outbound flow translated into `pool`: reuse the subscriber's
    /// mapping for (inside ip, port, protocol) or make one.
    fn new_mapped_i2o(&mut self, now: u32, p: &Parsed, pool: u16, h_i2o: Option<u64>) -> Result<u32, Verdict> {
        let idx = self.alloc_session(now)?;
        let undo = |e: &mut Self, v: DropReason| {
            e.sessions.free(idx);
            Verdict::Drop(v)
        };
        let sub = match self.ports.subscriber(p.src, pool) {
            Ok(s) => s,
            Err(r) => return Err(undo(self, r)),
        };
        if !self.ports.add_session(sub) {
            // A subscriber with no sessions would linger: give it back.
            if self.ports.sub(sub).is_some_and(|x| x.sessions == 0) {
                self.ports.remove_session(sub);
            }
            return Err(undo(self, DropReason::SubscriberSessionLimit));
        }
        let hm = self.h_imap(p.src, p.sport, p.pcode, pool);
        let head = self.find_mapping_i2o(hm, p.src, p.sport, p.pcode, pool, now);
        let rport = if p.pcode == pcode::ICMP { 0 } else { p.dport };
        let mut s = Session {
            inside_ip: p.src,
            remote_ip: p.dst,
            inside_port: p.sport,
            remote_port: rport,
            code: session::code_of(p.pcode),
            flags: flag::MAPPED | flag::SUB,
            ..Session::default()
        };
        match head {
            Some(h) => {
                let hs = self.sessions.get(h);
                s.public_port = hs.public_port;
                s.addr = hs.addr;
                self.install_hashed(idx, s, now, p.tcp_flags, h_i2o);
                self.chain_after(h, idx);
            }
            None => {
                let rand = self.next_rand();
                let Some((port, new_blocks)) = self.ports.alloc(sub, usize::from(p.pcode), p.sport, now, rand) else {
                    self.counters.port_exhaustion_events += 1;
                    if let Some(b) = self.counters.port_exhaustion_by_bucket.get_mut(counters::exhaustion_bucket(p.src))
                    {
                        *b += 1;
                    }
                    self.ports.remove_session(sub);
                    return Err(undo(self, DropReason::PortsExhausted));
                };
                self.counters.blocks_allocated += u64::from(new_blocks);
                let addr = self.ports.sub(sub).map_or(0, |x| x.addr);
                s.public_port = port;
                s.addr = addr;
                self.install_inline(idx, s, now, p.tcp_flags, h_i2o);
                self.imap.insert(hm, idx);
                let ho = self.h_omap(self.ports.ip_of(addr), port, p.pcode);
                self.omap.insert(ho, idx);
            }
        }
        Ok(idx)
    }

    fn chain_after(&mut self, head: u32, idx: u32) {
        let next = self.sessions.cold.get(head as usize).map_or(NIL, |c| c.map_next);
        if let Some(c) = self.sessions.cold.get_mut(idx as usize) {
            c.map_next = next;
        }
        if let Some(c) = self.sessions.cold.get_mut(head as usize) {
            c.map_next = idx;
        }
    }

    /// The live head of the mapping (inside ip, port, protocol, pool), if any.
    fn find_mapping_i2o(&mut self, hm: u64, ip: u32, port: u16, pc: u16, pool: u16, now: u32) -> Option<u32> {
        loop {
            let h = self.imap_lookup(hm, ip, port, pc, pool)?;
            if self.live_or_reap(h, now) {
                return Some(h);
            }
        }
    }

    /// The head of the mapping (inside ip, port, protocol, pool), stale or not.
    fn imap_lookup(&self, hm: u64, ip: u32, port: u16, pc: u16, pool: u16) -> Option<u32> {
        let (hot, ports) = (&self.sessions.hot, &self.ports);
        self.imap.find(hm, |i| {
            hot.get(i as usize).is_some_and(|s| {
                s.inside_ip == ip
                    && s.inside_port == port
                    && s.pcode() == pc
                    && ports.addrs.get(usize::from(s.addr())).is_some_and(|a| a.pool == pool)
            })
        })
    }

    /// True if session `h` is live; if its timeout has passed, removes it.
    fn live_or_reap(&mut self, h: u32, now: u32) -> bool {
        let s = self.sessions.get(h);
        if self.stale(&s, now) {
            self.reap(h, now);
            return false;
        }
        true
    }

    /// Removes a session whose timeout has passed, counting it as expired.
    fn reap(&mut self, idx: u32, now: u32) {
        self.remove(idx, now);
        self.counters.sessions_expired += 1;
    }

    /// The live head of the mapping on public (ip, port, protocol), if any.
    fn find_mapping_o2i(&mut self, ip: u32, port: u16, pc: u16, now: u32) -> Option<u32> {
        let hm = self.h_omap(ip, port, pc);
        loop {
            let hot = &self.sessions.hot;
            let h = self.omap.find(hm, |i| {
                hot.get(i as usize).is_some_and(|s| s.public_port == port && s.pcode() == pc && s.public_ip == ip)
            })?;
            if self.live_or_reap(h, now) {
                return Some(h);
            }
        }
    }

    fn forward_by_public(&self, addr: u16, port: u16, pc: u16) -> Option<ForwardRt> {
        self.forwards.iter().find(|f| f.addr == addr && f.f.public_port == port && f.pcode == pc).copied()
    }

    fn forward_by_inside(&self, ip: u32, port: u16, pc: u16) -> Option<ForwardRt> {
        self.forwards.iter().find(|f| f.f.inside_addr == ip && f.f.inside_port == port && f.pcode == pc).copied()
    }

    /// First packet from outside with no session.
    fn miss_o2i(&mut self, now: u32, frame: &mut [u8], p: &Parsed) -> Result<Verdict, Verdict> {
        if p.ttl <= 1 && !self.is_local(p.dst) {
            return Ok(Verdict::PassToKernel(PassReason::TtlExpired));
        }
        let idx = self.new_o2i(now, p)?;
        if p.first_frag {
            self.frags.record(frag_key(p), false, idx, now);
        }
        let s = self.sessions.get(idx);
        xlate_o2i(frame, p, &s);
        Ok(Verdict::Forward(Side::Inside))
    }

    /// Creates the session an inbound packet opens, or says why not. A
    /// packet from one of our own public addresses is a hairpin's second half.
    fn new_o2i(&mut self, now: u32, p: &Parsed) -> Result<u32, Verdict> {
        let extra = if self.ports.addr_of_ip(p.src).is_some() { flag::HAIRPIN } else { 0 };
        if let Some(addr) = self.ports.addr_of_ip(p.dst) {
            if self.workers > 1 {
                match self.ports.owner_of(addr, p.dport) {
                    Some(o) if o != self.worker => return Err(Verdict::HandOff { worker: o, side: Side::Outside }),
                    _ => {}
                }
            }
            if let Some(f) = self.forward_by_public(addr, p.dport, p.pcode) {
                if p.pcode == pcode::TCP && p.tcp_flags & crate::wire::tcp::SYN == 0 {
                    return Err(Verdict::Drop(DropReason::TcpNotSyn));
                }
                let idx = self.alloc_session(now)?;
                let s = Session {
                    inside_ip: f.f.inside_addr,
                    remote_ip: p.src,
                    inside_port: f.f.inside_port,
                    remote_port: p.sport,
                    public_port: f.f.public_port,
                    addr,
                    code: session::code_of(p.pcode),
                    flags: flag::FORWARD | flag::INBOUND | extra,
                    ..Session::default()
                };
                self.install(idx, s, now, p.tcp_flags);
                return Ok(idx);
            }
            let mapped =
                if p.pcode == pcode::ICMP { None } else { self.find_mapping_o2i(p.dst, p.dport, p.pcode, now) };
            if let Some(head) = mapped {
                let filtering =
                    self.ports.pool_of(addr).map_or(Filtering::AddressAndPortDependent, |x| x.params.filtering);
                let admit = match filtering {
                    Filtering::EndpointIndependent => true,
                    Filtering::AddressDependent => self.chain_has_remote(head, p.src),
                    Filtering::AddressAndPortDependent => false,
                };
                if !admit {
                    return Err(Verdict::Drop(DropReason::Filtered));
                }
                let hs = self.sessions.get(head);
                let sub = self.session_sub(&hs);
                if !self.ports.add_session(sub) {
                    return Err(Verdict::Drop(DropReason::SubscriberSessionLimit));
                }
                let idx = match self.alloc_session(now) {
                    Ok(i) => i,
                    Err(v) => {
                        self.ports.remove_session(sub);
                        return Err(v);
                    }
                };
                // Eviction may have removed the head: look it up again.
                let Some(head) = self.find_mapping_o2i(p.dst, p.dport, p.pcode, now) else {
                    self.sessions.free(idx);
                    self.ports.remove_session(sub);
                    return Err(Verdict::Drop(DropReason::TableFull));
                };
                let s = Session {
                    inside_ip: hs.inside_ip,
                    remote_ip: p.src,
                    inside_port: hs.inside_port,
                    remote_port: p.sport,
                    public_port: hs.public_port,
                    addr: hs.addr,
                    code: hs.code,
                    flags: flag::MAPPED | flag::INBOUND | (hs.flags & flag::SUB) | extra,
                    ..Session::default()
                };
                self.install(idx, s, now, p.tcp_flags);
                self.chain_after(head, idx);
                return Ok(idx);
            }
            if self.is_local(p.dst) {
                return Err(Verdict::PassToKernel(PassReason::ToSelf));
            }
            return Err(Verdict::Drop(DropReason::NoSession));
        }
        if self.is_local(p.dst) {
            return Err(Verdict::PassToKernel(PassReason::ToSelf));
        }
        // Routed to an inside host: only a no-NAT exemption lets it in, and
        // then its replies keep their addresses (the session says so).
        if self.rules.first_match(p.dst, p.src, p.proto, None) == Some(RuleAction::NoNat) {
            if self.workers > 1 {
                let owner = self.subscriber_owner(p.dst);
                if owner != self.worker {
                    return Err(Verdict::HandOff { worker: owner, side: Side::Outside });
                }
            }
            return self.new_unmapped(now, p, flag::NO_NAT | flag::INBOUND, (p.dst, p.dport), (p.src, p.sport), None);
        }
        Err(Verdict::Drop(DropReason::NoSession))
    }

    fn chain_has_remote(&self, head: u32, remote: u32) -> bool {
        let mut i = head;
        let mut n = 0;
        while i != NIL && n < 4096 {
            if self.sessions.get(i).remote_ip == remote {
                return true;
            }
            i = self.sessions.cold.get(i as usize).map_or(NIL, |c| c.map_next);
            n += 1;
        }
        false
    }

    /// Removes a session: indexes, mapping chain, port, subscriber, list.
    fn remove(&mut self, idx: u32, now: u32) {
        let s = self.sessions.get(idx);
        if s.class == session::FREE {
            return;
        }
        let (hi, ho) = self.session_hashes(&s);
        {
            let (hot, seed) = (&self.sessions.hot, self.seed);
            self.i2o.remove(hi, idx, |j| hot.get(j as usize).map_or(0, |x| keys::session_i2o(seed, x)));
            self.o2i.remove(ho, idx, |j| hot.get(j as usize).map_or(0, |x| keys::session_o2i(seed, x)));
        }
        if s.flags & flag::MAPPED != 0 {
            self.unchain(idx, &s, now);
        }
        if s.flags & flag::SUB != 0 {
            let released = self.ports.remove_session(self.session_sub(&s));
            self.counters.blocks_released += u64::from(released);
        }
        self.sessions.unschedule(idx);
        if s.flags & flag::REPLIED == 0 {
            self.sessions.remove_unreplied(idx);
        }
        self.sessions.free(idx);
    }

    fn unchain(&mut self, idx: u32, s: &Session, now: u32) {
        let pool = self.pool_of_session(s);
        let pc = s.pcode();
        let pub_ip = self.ports.ip_of(s.addr());
        let hm = self.h_imap(s.inside_ip, s.inside_port, pc, pool);
        let ho = self.h_omap(pub_ip, s.public_port, pc);
        let next = self.sessions.cold.get(idx as usize).map_or(NIL, |c| c.map_next);
        match self.imap_lookup(hm, s.inside_ip, s.inside_port, pc, pool) {
            Some(h) if h == idx => {
                if next != NIL {
                    self.imap.replace(hm, idx, next);
                    self.omap.replace(ho, idx, next);
                } else {
                    let (hot, ports, seed) = (&self.sessions.hot, &self.ports, self.seed);
                    self.imap
                        .remove(hm, idx, |j| hot.get(j as usize).map_or(0, |x| keys::session_imap(seed, ports, x)));
                    self.omap.remove(ho, idx, |j| hot.get(j as usize).map_or(0, |x| keys::session_omap(seed, x)));
                    if self.ports.release(s.addr(), usize::from(pc), s.public_port, now) {
                        self.counters.blocks_released += 1;
                    }
                }
            }
            Some(h) => {
                let mut prev = h;
                let mut n = 0u32;
                while n < self.sessions.capacity() {
                    let pn = self.sessions.cold.get(prev as usize).map_or(NIL, |c| c.map_next);
                    if pn == idx {
                        if let Some(c) = self.sessions.cold.get_mut(prev as usize) {
                            c.map_next = next;
                        }
                        break;
                    }
                    if pn == NIL {
                        break;
                    }
                    prev = pn;
                    n += 1;
                }
            }
            None => {}
        }
    }

    /// Reclaims sessions whose timeout ended, looking at each wheel bucket
    /// whose second has come; re-files the ones active since. Does at most
    /// `budget` removals or re-filings (the rest waits for the next call).
    /// Called once per batch; call it from an idle worker too.
    pub fn expire(&mut self, now: u32, budget: usize) -> usize {
        let mut done = 0;
        let mut steps = 0;
        let mut empty_buckets = 0u32;
        while let Some((head, second)) = self.sessions.due(now) {
            if head == NIL {
                self.sessions.advance();
                empty_buckets += 1;
                if empty_buckets > self.sessions.horizon() {
                    break;
                }
                continue;
            }
            if steps >= budget {
                break;
            }
            steps += 1;
            let s = self.sessions.get(head);
            if self.stale(&s, now) {
                self.reap(head, now);
                done += 1;
            } else {
                let t = self.class_timeout.get(usize::from(s.class)).copied().unwrap_or(0);
                // Active since it was filed, or filed early (wheel reach): file again.
                let d = s.last_seen.saturating_add(t).max(second + 1);
                self.sessions.reschedule(head, d, now);
            }
        }
        done
    }

    fn later_fragment(&mut self, side: Side, now: u32, frame: &mut [u8], p: &Parsed) -> Verdict {
        let Some((idx, i2o)) = self.frags.find(frag_key(p), now) else {
            return Verdict::Drop(DropReason::FragmentUnknown);
        };
        let s = self.sessions.get(idx);
        let pub_ip = s.public_ip;
        let live = s.class != session::FREE
            && match side {
                Side::Inside => i2o && s.inside_ip == p.src && s.remote_ip == p.dst,
                Side::Outside => !i2o && s.remote_ip == p.src && pub_ip == p.dst,
            };
        if !live {
            return Verdict::Drop(DropReason::FragmentUnknown);
        }
        if p.ttl <= 1 {
            return Verdict::PassToKernel(PassReason::TtlExpired);
        }
        self.counters.fragments_followed += 1;
        match side {
            Side::Inside => {
                set_ip_addr(frame, usize::from(p.l3), 12, pub_ip, s.ip_delta);
                Verdict::Forward(Side::Outside)
            }
            Side::Outside => {
                set_ip_addr(frame, usize::from(p.l3), 16, s.inside_ip, negate(s.ip_delta));
                Verdict::Forward(Side::Inside)
            }
        }
    }

    /// ICMP errors (RFC 5508 section 4.2): find the session through the
    /// embedded datagram, rewrite the outer address, the embedded header and
    /// every checksum involved.
    fn icmp_error(&mut self, side: Side, now: u32, frame: &mut [u8], p: &Parsed) -> Verdict {
        if side == Side::Outside && self.ports.addr_of_ip(p.dst).is_none() && self.is_local(p.dst) {
            return Verdict::PassToKernel(PassReason::ToSelf);
        }
        let end = usize::from(p.l3) + usize::from(u16_at(frame.get(usize::from(p.l3)..).unwrap_or(&[]), 2));
        let Some(e) = parse_embedded(frame, usize::from(p.l4), end) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let found = match side {
            // Inside host answering an inbound packet R -> A: embedded src R, dst A.
            Side::Inside => {
                let rport = if e.pcode == pcode::ICMP { 0 } else { e.sport };
                let h = self.h_i2o(e.dst, e.dport, e.src, rport, e.pcode);
                self.find::<true>(h, e.dst, e.dport, e.src, rport, e.pcode)
            }
            // Remote router about our outbound packet P -> R: embedded src P, dst R.
            Side::Outside => {
                let rport = if e.pcode == pcode::ICMP { 0 } else { e.dport };
                let h = self.h_o2i(e.src, e.sport, e.dst, rport, e.pcode);
                self.find::<false>(h, e.dst, rport, e.src, e.sport, e.pcode)
            }
        };
        let Some(idx) = found else {
            if self.workers > 1 && side == Side::Outside {
                if let Some(o) = self.public_owner(e.src, e.sport) {
                    if o != self.worker {
                        return Verdict::HandOff { worker: o, side };
                    }
                }
            }
            if side == Side::Outside && self.is_local(p.dst) {
                // An error about the box's own traffic.
                return Verdict::PassToKernel(PassReason::ToSelf);
            }
            return Verdict::Drop(DropReason::IcmpErrorNoSession);
        };
        let s = self.sessions.get(idx);
        if self.stale(&s, now) {
            return Verdict::Drop(DropReason::IcmpErrorNoSession);
        }
        if p.ttl <= 1 {
            return Verdict::PassToKernel(PassReason::TtlExpired);
        }
        let pub_ip = s.public_ip;
        // Which embedded fields change, and how.
        // (ICMP errors do not refresh the session: RFC 5508 REQ-4 leaves it open,
        // and refreshing on errors would keep dead mappings alive.)
        let (outer_off, outer_new, emb_addr_off, emb_new_ip, emb_port_off, new_port, d_l4) = match side {
            Side::Inside => (12, pub_ip, 16, pub_ip, 2, s.public_port, s.l4_delta),
            Side::Outside => (16, s.inside_ip, 12, s.inside_ip, 0, s.inside_port, negate(s.l4_delta)),
        };
        let icmp_off = usize::from(p.l4);
        // The ICMP checksum covers the embedded bytes: sum them before and after.
        let emb_end = e.l3 + e.len.min(e.l4 - e.l3 + 20);
        let before = fold(sum(frame.get(e.l3..emb_end).unwrap_or(&[])));
        if let Some(emb) = frame.get_mut(e.l3..e.l3 + e.len) {
            let old_ip = u32_at(emb, emb_addr_off);
            set_u32(emb, emb_addr_off, emb_new_ip);
            let c = u16_at(emb, 10);
            set_u16(emb, 10, apply_delta(c, delta32(old_ip, emb_new_ip)));
        }
        let (port_off, csum_off) = match e.pcode {
            pcode::ICMP => (icmp::IDENT, icmp::CHECKSUM),
            pcode::TCP => (emb_port_off, 16),
            _ => (emb_port_off, 6),
        };
        if let Some(l4) = frame.get_mut(e.l4..e.l3 + e.len) {
            set_u16(l4, port_off, new_port);
            if l4.len() >= csum_off + 2 {
                let c = u16_at(l4, csum_off);
                let nc = if e.pcode == pcode::UDP { apply_delta_udp(c, d_l4) } else { apply_delta(c, d_l4) };
                set_u16(l4, csum_off, nc);
            }
        }
        let after = fold(sum(frame.get(e.l3..emb_end).unwrap_or(&[])));
        if let Some(ic) = frame.get_mut(icmp_off..) {
            let c = u16_at(ic, icmp::CHECKSUM);
            set_u16(ic, icmp::CHECKSUM, apply_delta(c, add(!before, after)));
        }
        // Outer header: one address and the TTL.
        let old_outer = u32_at(frame.get(usize::from(p.l3)..).unwrap_or(&[]), outer_off);
        set_ip_addr(frame, usize::from(p.l3), outer_off, outer_new, delta32(old_outer, outer_new));
        self.counters.icmp_errors_translated += 1;
        Verdict::Forward(match side {
            Side::Inside => Side::Outside,
            Side::Outside => Side::Inside,
        })
    }

    /// Changes the address of a masquerade pool (the outside interface got a
    /// new one). As netfilter does, the sessions on the old address are
    /// flushed: they cannot survive the change.
    pub fn set_masquerade_address(&mut self, pool: u16, ip: u32, now: u32) -> Result<usize, ParamError> {
        let p = self.ports.pools.get(usize::from(pool)).ok_or_else(|| ParamError::Invalid("no such pool".into()))?;
        if !p.params.masquerade {
            return Err(ParamError::Invalid("not a masquerade pool".into()));
        }
        let a = p.first_addr;
        let flushed = self.flush(now, |_| false, Some(a));
        self.ports.set_addr_ip(a, ip);
        Ok(flushed)
    }

    /// The outside interface's address changed from `old` to `new` (DHCP, a
    /// renumbering): every masquerade pool moves to it, its sessions on the
    /// old address are flushed (netfilter's MASQUERADE forgets them too:
    /// their replies would go to an address the box no longer has), and the
    /// box's own addresses follow. Returns how many sessions went.
    pub fn follow_outside_address(&mut self, old: u32, new: u32, now: u32) -> usize {
        let mut flushed = 0;
        let masq: Vec<u16> = (0..self.ports.pools.len())
            .filter(|&i| self.ports.pools.get(i).is_some_and(|p| p.params.masquerade))
            .filter_map(|i| u16::try_from(i).ok())
            .collect();
        for pool in masq {
            flushed += self.set_masquerade_address(pool, new, now).unwrap_or(0);
            if let Some(pp) = self.params.pools.get_mut(usize::from(pool)) {
                pp.addresses = vec![new];
            }
        }
        for a in self.local.iter_mut().chain(self.params.local_addrs.iter_mut()) {
            if *a == old {
                *a = new;
            }
        }
        self.local.sort_unstable();
        flushed
    }

    /// Removes every session `select` picks (and, if `addr` is given, every
    /// session on that public address). Returns how many went.
    pub fn flush(&mut self, now: u32, select: impl Fn(&SessionInfo) -> bool, addr: Option<u16>) -> usize {
        self.flush_slots(now, select, addr, 0..self.sessions.capacity())
    }

    /// [`Engine::flush`] over the session slots `slots` only, so a worker
    /// can flush a big table a slice per round without stalling.
    pub fn flush_slots(
        &mut self,
        now: u32,
        select: impl Fn(&SessionInfo) -> bool,
        addr: Option<u16>,
        slots: std::ops::Range<u32>,
    ) -> usize {
        let mut n = 0;
        for i in slots.start..slots.end.min(self.sessions.capacity()) {
            let s = self.sessions.get(i);
            if s.class == session::FREE {
                continue;
            }
            let on_addr = addr.is_some_and(|a| s.flags & (flag::NO_NAT) == 0 && s.addr() == a);
            if on_addr || select(&self.info(&s, now)) {
                self.remove(i, now);
                n += 1;
            }
        }
        self.counters.sessions_flushed += n as u64;
        n as usize
    }

    fn info(&self, s: &Session, now: u32) -> SessionInfo {
        let pc = s.pcode();
        let t = self.class_timeout.get(usize::from(s.class)).copied().unwrap_or(0);
        SessionInfo {
            protocol: proto_of(pc),
            inside: (s.inside_ip, s.inside_port),
            public: (s.public_ip, s.public_port),
            remote: (s.remote_ip, s.remote_port),
            state: match pc {
                pcode::TCP => tcp::name(s.tcp),
                pcode::UDP => "udp",
                _ => "icmp",
            },
            expires_in: (s.last_seen.saturating_add(t)).saturating_sub(now),
            flags: s.flags,
        }
    }

    /// Session slots (live or free): the range [`Engine::sessions_in`] and
    /// [`Engine::flush_slots`] walk.
    pub fn session_slots(&self) -> u32 {
        self.sessions.capacity()
    }

    /// The live sessions among slots `slots` (a listing a slice per round).
    pub fn sessions_in(&self, now: u32, slots: std::ops::Range<u32>) -> impl Iterator<Item = SessionInfo> + '_ {
        let (a, b) = (slots.start as usize, (slots.end as usize).min(self.sessions.hot.len()));
        self.sessions
            .hot
            .get(a.min(b)..b)
            .unwrap_or_default()
            .iter()
            .filter(|s| s.class != session::FREE)
            .map(move |s| self.info(s, now))
    }

    /// Every live session (control path: walks the whole slab).
    pub fn sessions(&self, now: u32) -> impl Iterator<Item = SessionInfo> + '_ {
        self.sessions.hot.iter().filter(|s| s.class != session::FREE).map(move |s| self.info(s, now))
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Applies new parameters to a running engine, at a batch boundary
    /// (the worker calls it between rounds). Sessions keep their mappings:
    /// rules, forwards, timeouts and the box's addresses change for new
    /// flows only; new pools are added; sessions on addresses that left
    /// their pool are flushed and the addresses retired. What cannot change
    /// live ([`reconfigure_check`]) refuses the whole change, and then
    /// nothing changed. Returns how many sessions were flushed.
    pub fn reconfigure(&mut self, new: &EngineParams, now: u32) -> Result<usize, ParamError> {
        reconfigure_check(&self.params, new)?;
        // Forwards must land on an address that exists after the change.
        let new_names: Vec<&str> = new.pools.iter().map(|p| p.name.as_str()).collect();
        for f in &new.forwards {
            if !new.pools.iter().any(|p| p.addresses.contains(&f.public_addr)) {
                return Err(ParamError::Invalid(format!(
                    "forward to {}:{} is not on a pool address",
                    crate::wire::fmt_ipv4(f.public_addr),
                    f.public_port
                )));
            }
        }
        // Pools: the engine's index of each new pool (existing by name, or added).
        let mut map = Vec::with_capacity(new.pools.len());
        for np in &new.pools {
            match self.params.pools.iter().position(|op| op.name == np.name) {
                Some(i) => map.push(u16::try_from(i).map_err(|_| ParamError::Invalid("too many pools".into()))?),
                None => map.push(self.ports.add_pool(np)?),
            }
        }
        // Addresses that left: flush their sessions, retire them.
        let gone: Vec<u32> = self
            .params
            .pools
            .iter()
            .flat_map(|op| {
                let kept =
                    new.pools.iter().find(|np| np.name == op.name).map(|np| np.addresses.clone()).unwrap_or_default();
                op.addresses.iter().copied().filter(move |ip| !kept.contains(ip))
            })
            .collect();
        let mut flushed = 0;
        for ip in gone {
            if let Some(a) = self.ports.addr_of_ip(ip) {
                flushed += self.flush(now, |_| false, Some(a));
                self.ports.retire_addr(a);
            }
        }
        // Rules, with pool indices as the engine numbers them.
        let rules: Vec<Rule> = new
            .rules
            .iter()
            .map(|r| match r.action {
                RuleAction::Translate { pool } => Rule {
                    matches: r.matches.clone(),
                    action: RuleAction::Translate { pool: map.get(usize::from(pool)).copied().unwrap_or(u16::MAX) },
                },
                RuleAction::NoNat => r.clone(),
            })
            .collect();
        self.rules = rules::RuleSet::new(&rules);
        // Forwards: release the ports of those that went, reserve the new.
        for old in std::mem::take(&mut self.forwards) {
            if !new.forwards.contains(&old.f) {
                self.ports.unreserve(old.addr, usize::from(old.pcode), old.f.public_port);
            }
        }
        for f in &new.forwards {
            let Some(addr) = self.ports.addr_of_ip(f.public_addr) else { continue };
            let pc = pcode_of(f.protocol);
            if !self.params.forwards.contains(f) {
                self.ports.reserve(addr, usize::from(pc), f.public_port);
            }
            self.forwards.push(ForwardRt { f: *f, addr, pcode: pc });
        }
        let t = new.timeouts;
        self.timeouts = t;
        self.class_timeout = [t.tcp_established_secs, t.tcp_transitory_secs, t.udp_secs, t.icmp_secs];
        let mut local = new.local_addrs.clone();
        local.sort_unstable();
        self.local = local;
        // Keep what the engine was built with where the change cannot reach.
        let mut kept = new.clone();
        kept.worker = self.params.worker;
        kept.workers = self.params.workers;
        kept.seed = self.params.seed;
        kept.steering = self.params.steering.clone();
        let mut pools = std::mem::take(&mut self.params.pools);
        for np in &new.pools {
            match pools.iter_mut().find(|op| op.name == np.name) {
                Some(op) => op.addresses.retain(|a| np.addresses.contains(a)),
                None => pools.push(np.clone()),
            }
        }
        for op in &mut pools {
            if !new_names.contains(&op.name.as_str()) {
                op.addresses.clear();
            }
        }
        kept.pools = pools;
        // Rules name pools by the engine's numbering from now on.
        kept.rules = rules;
        self.params = kept;
        Ok(flushed)
    }

    /// Port blocks handed out or taken back since the last call (the
    /// worker collects them once a round for the NAT log).
    pub fn take_block_events(&mut self) -> std::vec::Drain<'_, ports::BlockEvent> {
        self.ports.events.drain(..)
    }

    /// Block events lost because they were not collected in time.
    pub fn block_events_dropped(&self) -> u64 {
        self.ports.events_dropped
    }

    /// Port blocks of every public address on this worker: (address, pool
    /// name, blocks in use, blocks free).
    pub fn port_block_use(&self) -> impl Iterator<Item = (u32, &str, usize, usize)> + '_ {
        (0..self.ports.addrs.len()).filter_map(move |a| {
            let a = u16::try_from(a).ok()?;
            let (used, free) = self.ports.block_use(a);
            let pool = self.ports.pool_of(a).map_or("", |p| p.params.name.as_str());
            Some((self.ports.ip_of(a), pool, used, free))
        })
    }

    /// This worker's number.
    pub fn worker(&self) -> u16 {
        self.worker
    }

    /// The worker that owns subscriber `inside_ip`: the inside NIC's queue
    /// for it when RSS steering is set, masq's own hash otherwise.
    pub fn subscriber_owner(&self, inside_ip: u32) -> u16 {
        match &self.steering {
            Some(st) => st.owner(inside_ip, self.workers),
            None => subscriber_owner(inside_ip, self.workers),
        }
    }
}

/// The four index keys, each defined once: the engine's lookups and the
/// rehash closures of `Index::remove` (which cannot borrow the engine) both
/// use these.
mod keys {
    use super::hash::{hash3, hash5};
    use super::ports::Ports;
    use super::session::{flag, Session};
    use super::{O2I_SALT, OMAP_SALT};

    /// Inside-to-outside lookup key.
    #[inline(always)]
    pub fn i2o(seed: u64, inside: u32, iport: u16, remote: u32, rport: u16, pc: u16) -> u64 {
        hash5(seed, inside, iport, remote, rport, pc)
    }

    /// Outside-to-inside lookup key, hashed in packet order (remote first) so
    /// the fast lane can hash its packed key as it is.
    #[inline(always)]
    pub fn o2i(seed: u64, public: u32, pport: u16, remote: u32, rport: u16, pc: u16) -> u64 {
        hash5(seed ^ O2I_SALT, remote, rport, public, pport, pc)
    }

    /// Mapping head by inside endpoint and pool.
    pub fn imap(seed: u64, inside: u32, iport: u16, pc: u16, pool: u16) -> u64 {
        hash3(seed, inside, iport, pc, pool)
    }

    /// Mapping head by public endpoint.
    pub fn omap(seed: u64, public: u32, pport: u16, pc: u16) -> u64 {
        hash3(seed ^ OMAP_SALT, public, pport, pc, 0)
    }

    /// A session's public address (its own for no-NAT sessions).
    #[inline(always)]
    pub fn public_ip(ports: &Ports, s: &Session) -> u32 {
        if s.flags & flag::NO_NAT != 0 {
            s.inside_ip
        } else {
            ports.ip_of(s.addr())
        }
    }

    /// The pool of a session's public address.
    pub fn pool_of(ports: &Ports, s: &Session) -> u16 {
        ports.addrs.get(usize::from(s.addr())).map_or(0, |a| a.pool)
    }

    /// [`i2o`] of a stored session.
    pub fn session_i2o(seed: u64, s: &Session) -> u64 {
        i2o(seed, s.inside_ip, s.inside_port, s.remote_ip, s.remote_port, s.pcode())
    }

    /// [`o2i`] of a stored session.
    pub fn session_o2i(seed: u64, s: &Session) -> u64 {
        o2i(seed, s.public_ip, s.public_port, s.remote_ip, s.remote_port, s.pcode())
    }

    /// [`imap`] of a stored (mapped) session.
    pub fn session_imap(seed: u64, ports: &Ports, s: &Session) -> u64 {
        imap(seed, s.inside_ip, s.inside_port, s.pcode(), pool_of(ports, s))
    }

    /// [`omap`] of a stored (mapped) session.
    pub fn session_omap(seed: u64, s: &Session) -> u64 {
        omap(seed, s.public_ip, s.public_port, s.pcode())
    }
}

fn frag_key(p: &Parsed) -> FragKey {
    FragKey { src: p.src, dst: p.dst, proto: p.proto, ident: p.ident }
}

/// Rewrites an IPv4 address field (`off` 12 source, 16 destination),
/// decrements the TTL and applies `d`, the address change's delta, to the
/// header checksum (the TTL's own delta is added here).
fn set_ip_addr(frame: &mut [u8], l3: usize, off: usize, new: u32, d: u16) {
    if let Some(ip) = frame.get_mut(l3..) {
        set_u32(ip, off, new);
        ttl_down(ip, d);
    }
}

/// Decrements the TTL of a frame routed unchanged.
fn decrement_ttl(frame: &mut [u8], l3: usize) {
    if let Some(ip) = frame.get_mut(l3..) {
        ttl_down(ip, 0);
    }
}

/// TTL - 1 in an IPv4 header, with `d` and the TTL's delta applied to its checksum.
#[inline(always)]
fn ttl_down(ip: &mut [u8], d: u16) {
    let w = u16_at(ip, 8);
    set_u16(ip, 8, w.wrapping_sub(0x100));
    let c = u16_at(ip, 10);
    set_u16(ip, 10, apply2(c, d, TTL_DELTA));
}

/// Applies two deltas to a checksum with one fold (RFC 1624 eqn. 3).
#[inline(always)]
fn apply2(csum: u16, d1: u16, d2: u16) -> u16 {
    !fold(u32::from(!csum) + u32::from(d1) + u32::from(d2))
}

#[inline(always)]
fn rewrite_l4(frame: &mut [u8], p: &Parsed, port_off: usize, csum_off: usize, port: u16, d: u16) {
    if let Some(l4) = frame.get_mut(usize::from(p.l4)..) {
        set_u16(l4, port_off, port);
        let c = u16_at(l4, csum_off);
        let nc = if p.pcode == pcode::UDP { apply_delta_udp(c, d) } else { apply_delta(c, d) };
        set_u16(l4, csum_off, nc);
    }
}

/// Rewrites one address and one port of a frame in the fast-lane layout
/// (IPv4 at 14 without options, L4 at 34), TTL included. `N` covers the L4
/// checksum, so every offset is a constant inside a fixed-size array.
/// Returns false, having changed nothing, if the TTL would expire.
///
/// The checksums are updated in network byte order: a one's-complement sum
/// of byte-swapped words is the byte-swapped sum (RFC 1071 section 2(B)), so
/// swapping the delta once saves swapping the field twice.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rewrite_fast<const N: usize>(
    h: &mut [u8; N],
    addr_off: usize,
    addr: u32,
    port_off: usize,
    port: u16,
    csum_off: usize,
    d_ip: u16,
    d_l4: u16,
    udp: bool,
) -> bool {
    let b = &mut h[..];
    // A TTL that would expire here is the kernel's (ICMP time exceeded).
    let ttl = b.get(22).copied().unwrap_or(0);
    if ttl <= 1 {
        return false;
    }
    set_u32(b, addr_off, addr);
    if let Some(t) = b.get_mut(22) {
        *t = ttl - 1;
    }
    let c = ne16(b, 24);
    set_ne16(b, 24, !oc_add(oc_add(!c, be_to_ne(d_ip)), be_to_ne(TTL_DELTA)));
    set_u16(b, port_off, port);
    let c = ne16(b, csum_off);
    if !udp {
        set_ne16(b, csum_off, !oc_add(!c, be_to_ne(d_l4)));
    } else if c != 0 {
        // UDP: no checksum (0) stays so. Otherwise c + ~d, which is
        // ~(~c + d) except that a zero result comes out as 0xFFFF (the
        // sum of a nonzero word and anything is never +0), which is what
        // RFC 768 wants sent for a computed 0.
        set_ne16(b, csum_off, oc_add(c, !be_to_ne(d_l4)));
    }
    true
}

/// Ones' complement addition of two 16-bit words (end-around carry), the
/// step RFC 1624's incremental update is made of.
#[inline(always)]
fn oc_add(a: u16, b: u16) -> u16 {
    let (s, carry) = a.overflowing_add(b);
    s.wrapping_add(u16::from(carry))
}

/// A big-endian 16-bit value as the native integer with the same bytes.
#[inline(always)]
fn be_to_ne(v: u16) -> u16 {
    u16::from_ne_bytes(v.to_be_bytes())
}

/// A 16-bit field read with the bytes as they lie (network order kept).
#[inline(always)]
fn ne16(b: &[u8], off: usize) -> u16 {
    be_to_ne(u16_at(b, off))
}

/// Writes a 16-bit field from its native-read form (inverse of [`ne16`]).
#[inline(always)]
fn set_ne16(b: &mut [u8], off: usize, v: u16) {
    set_u16(b, off, u16::from_be_bytes(v.to_ne_bytes()));
}

/// The rewrite of a frame already known to be in the fast-lane layout.
#[inline(always)]
pub(crate) fn rewrite_fast_lane(
    frame: &mut [u8],
    pc: u16,
    i2o: bool,
    addr: u32,
    port: u16,
    d_ip: u16,
    d_l4: u16,
) -> bool {
    match pc {
        pcode::UDP => rewrite_fast_proto::<true>(frame, i2o, addr, port, d_ip, d_l4),
        pcode::TCP => rewrite_fast_proto::<false>(frame, i2o, addr, port, d_ip, d_l4),
        _ => false,
    }
}

/// [`rewrite_fast_lane`] for a protocol known at compile time.
#[inline(always)]
pub(crate) fn rewrite_fast_proto<const UDP: bool>(
    frame: &mut [u8],
    i2o: bool,
    addr: u32,
    port: u16,
    d_ip: u16,
    d_l4: u16,
) -> bool {
    let (addr_off, port_off) = if i2o { (26, 34) } else { (30, 36) };
    if UDP {
        frame
            .first_chunk_mut::<42>()
            .is_some_and(|h| rewrite_fast(h, addr_off, addr, port_off, port, 40, d_ip, d_l4, true))
    } else {
        frame
            .first_chunk_mut::<54>()
            .is_some_and(|h| rewrite_fast(h, addr_off, addr, port_off, port, 50, d_ip, d_l4, false))
    }
}

/// The fast-lane rewrite, if the frame has the fast-lane layout.
#[inline(always)]
fn try_fast(frame: &mut [u8], p: &Parsed, i2o: bool, addr: u32, port: u16, d_ip: u16, d_l4: u16) -> bool {
    p.l3 == 14 && p.l4 == 34 && rewrite_fast_lane(frame, p.pcode, i2o, addr, port, d_ip, d_l4)
}

/// Inside to outside: source becomes the public endpoint, TTL drops by one.
#[inline(always)]
fn xlate_i2o(frame: &mut [u8], p: &Parsed, s: &Session, pub_ip: u32) {
    if try_fast(frame, p, true, pub_ip, s.public_port, s.ip_delta, s.l4_delta) {
        return;
    }
    set_ip_addr(frame, usize::from(p.l3), 12, pub_ip, s.ip_delta);
    let (po, _, co) = L4_OFFS.get(usize::from(p.pcode)).copied().unwrap_or((0, 2, 16));
    rewrite_l4(frame, p, po, co, s.public_port, s.l4_delta);
}

/// Outside to inside: destination becomes the inside endpoint, TTL drops by one.
#[inline(always)]
fn xlate_o2i(frame: &mut [u8], p: &Parsed, s: &Session) {
    if try_fast(frame, p, false, s.inside_ip, s.inside_port, negate(s.ip_delta), negate(s.l4_delta)) {
        return;
    }
    set_ip_addr(frame, usize::from(p.l3), 16, s.inside_ip, negate(s.ip_delta));
    let (_, po, co) = L4_OFFS.get(usize::from(p.pcode)).copied().unwrap_or((0, 2, 16));
    rewrite_l4(frame, p, po, co, s.inside_port, negate(s.l4_delta));
}

/// [`xlate_o2i`] without the TTL decrement (the hairpin's second half).
fn xlate_o2i_no_ttl(frame: &mut [u8], p: &Parsed, s: &Session) {
    if let Some(ip) = frame.get_mut(usize::from(p.l3)..) {
        set_u32(ip, 16, s.inside_ip);
        let c = u16_at(ip, 10);
        set_u16(ip, 10, apply_delta(c, negate(s.ip_delta)));
    }
    let (_, po, co) = L4_OFFS.get(usize::from(p.pcode)).copied().unwrap_or((0, 2, 16));
    rewrite_l4(frame, p, po, co, s.inside_port, negate(s.l4_delta));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The fast lane's rewrite (network byte order, end-around carry)
        /// gives exactly what the general path's RFC 1624 helpers give.
        #[test]
        fn fast_rewrite_matches_the_general_checksum_update(
            c_ip: u16, c_l4: u16, d_ip: u16, d_l4: u16, addr: u32, port: u16,
            ttl in 2u8.., i2o: bool, udp: bool,
        ) {
            let csum_off = if udp { 40 } else { 50 };
            let mut f = [0u8; 54];
            f[22] = ttl;
            f[24..26].copy_from_slice(&c_ip.to_be_bytes());
            f[csum_off..csum_off + 2].copy_from_slice(&c_l4.to_be_bytes());
            let done = if udp {
                rewrite_fast_proto::<true>(&mut f, i2o, addr, port, d_ip, d_l4)
            } else {
                rewrite_fast_proto::<false>(&mut f, i2o, addr, port, d_ip, d_l4)
            };
            prop_assert!(done);
            let (ao, po) = if i2o { (26, 34) } else { (30, 36) };
            prop_assert_eq!(u32_at(&f, ao), addr);
            prop_assert_eq!(u16_at(&f, po), port);
            prop_assert_eq!(f[22], ttl - 1);
            prop_assert_eq!(u16_at(&f, 24), apply2(c_ip, d_ip, TTL_DELTA));
            let want = if udp { apply_delta_udp(c_l4, d_l4) } else { apply_delta(c_l4, d_l4) };
            prop_assert_eq!(u16_at(&f, csum_off), want);
        }

        /// A TTL that would expire leaves the frame as it was.
        #[test]
        fn fast_rewrite_leaves_expiring_ttl_alone(ttl in 0u8..2, udp: bool) {
            let mut f = [7u8; 54];
            f[22] = ttl;
            let before = f;
            let done = if udp {
                rewrite_fast_proto::<true>(&mut f, true, 1, 2, 3, 4)
            } else {
                rewrite_fast_proto::<false>(&mut f, true, 1, 2, 3, 4)
            };
            prop_assert!(!done);
            prop_assert_eq!(f, before);
        }
    }

    #[test]
    fn fast_rewrite_sends_a_computed_udp_zero_as_all_ones() {
        // ~(~0x1234 + 0x1234) = 0: RFC 768 wants 0xFFFF on the wire.
        let mut f = [0u8; 42];
        f[22] = 64;
        f[40..42].copy_from_slice(&0x1234u16.to_be_bytes());
        assert!(rewrite_fast_proto::<true>(&mut f, true, 0, 0, 0, 0x1234));
        assert_eq!(u16_at(&f, 40), 0xffff);
    }
}
