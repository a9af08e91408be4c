//! The conntrack shard's storage: a preallocated slab of sessions and a
//! timer wheel for expiry, which eviction searches too.
//!
//! A session is split in two parallel arrays. [`Session`] (32 bytes, two per
//! cache line) holds everything the forwarding path reads or writes: both
//! lookup keys, the rewrite, the checksum deltas, `last_seen` and the TCP
//! state. [`Cold`] (12 bytes) holds the links, touched only when a session
//! is created, changes class or comes due, and what a TCP session keeps
//! beside the RST check's window (read by the general path's TCP packets).
//!
//! Expiry: each session sits in the wheel bucket of its deadline (one bucket
//! per second). A packet only writes `last_seen`. When the sweep reaches a
//! bucket, each session there is either idle for its whole timeout (expired)
//! or was active since, and is re-filed at `last_seen + timeout`. So a
//! session is reclaimed in the second its timeout ends, and no packet ever
//! touches another session's cache line. Deadlines further out than the
//! wheel is long are filed at its far end and re-filed when reached.
//!
//! Eviction (netfilter FAQ 3.17, `early_drop`): when the table is full, an
//! unanswered session goes: [`SessionTable::evictable`] looks for one along
//! the wheel from where its last search stopped (the sweep's second when
//! the sweep has passed that), wrapping from the wheel's far end back to
//! the sweep's second, a bounded number of steps a call as netfilter looks
//! at a bounded number of entries; the answered sessions it passes it
//! re-files (at their deadline as the sweep would, or at their bucket's
//! tail), so no search meets them again before the wheel comes round.
//! Within a second each class's sessions sit in the order they were filed
//! (new sessions of two classes due in the same second join it class by
//! class, see below), so among unanswered sessions of one class made in
//! the same second the oldest goes first; across seconds the search goes on from the last one's,
//! so a session filed behind it waits for the wrap. A session's first reply only sets
//! `REPLIED` (touching no cold half, so the fast lane can take it).
//!
//! Each wheel bucket is a circular doubly linked list through the cold
//! halves whose head is a sentinel: one more cold half past the sessions
//! (numbers `capacity + bucket`). So a session leaves its bucket by its own
//! links alone, without knowing which bucket it is in: a session keeps no
//! deadline.
//!
//! New sessions wait to be filed ([`SessionTable::link_new`]): each class's
//! made in one second are chained in the order they came and the chain
//! joins its bucket's tail in one step ([`SessionTable::settle`], first
//! thing in every method that reads or changes a bucket: the sweep's, at
//! the start of every batch, among them), so a batch's new sessions share
//! one bucket look-up: a settled wheel holds every session in the bucket
//! filing it at once would have chosen, each class's in the same order.
//!
//! Invariants (of a settled wheel): a live session is in exactly one wheel bucket (the one its
//! last filing chose), for a second no later than its deadline; a session
//! in no bucket has both links [`NIL`]; a sentinel's links never are, and
//! point at itself when its bucket is empty; a free slot has class
//! [`FREE`] and sits on the free list (through its hot half's `last_seen`,
//! which it has no other use for, [`NIL`]-terminated: taking a slot reads
//! the line its new session is written to anyway).
//! Session numbers are below `capacity`, sentinels' at or above it.
#![forbid(unsafe_code)]

/// No session / end of a list.
pub const NIL: u32 = u32::MAX;

/// Most steps (a wheel bucket or a session looked at) one
/// [`SessionTable::evictable`] call takes.
pub const EVICT_STEPS: u32 = 1024;

/// Session classes, each with its own timeout and list.
pub mod class {
    /// TCP with both SYNs and the handshake's ACK seen, no FIN or RST.
    pub const TCP_ESTABLISHED: u8 = 0;
    /// TCP opening, closing or reset.
    pub const TCP_TRANSITORY: u8 = 1;
    /// UDP.
    pub const UDP: u8 = 2;
    /// ICMP query.
    pub const ICMP: u8 = 3;
    /// UDP that has not seen a reply yet (`udp_unreplied_secs`); becomes
    /// [`UDP`] with the first reply.
    pub const UDP_UNREPLIED: u8 = 4;
    /// Another IP protocol, translated by address only (`other_secs`).
    pub const OTHER: u8 = 5;
    /// Number of live classes.
    pub const COUNT: usize = 6;
    /// Slots of a per-class table: a power of two, so `class & (SLOTS - 1)`
    /// indexes it without a bounds check.
    pub const SLOTS: usize = 8;
    /// A free slot.
    pub const FREE: u8 = 0xff;
}
use super::l4::L4;
use super::tcp::TcpState;
pub use crate::wire::bytes::{Net16, Net32};
pub use class::FREE;

/// Session flags.
pub mod flag {
    /// Traffic came back from the remote side.
    pub const REPLIED: u8 = 1;
    /// Routed unchanged (a `no_nat` rule, or no rule matched).
    pub const NO_NAT: u8 = 2;
    /// Created by a static port forward.
    pub const FORWARD: u8 = 4;
    /// The outside side opened it (forward, admitted by filtering, inbound no-NAT).
    pub const INBOUND: u8 = 8;
    /// Member of an endpoint-independent mapping chain.
    pub const MAPPED: u8 = 16;
    /// The remote is one of our own public endpoints (hairpin).
    pub const HAIRPIN: u8 = 32;
    /// Steady state: answered, not hairpinned, and (TCP) established with
    /// no FIN or RST. Only such sessions take the fast lane.
    pub const FAST: u8 = 64;
    /// Counted against its subscriber (found again by inside address and
    /// pool when the session goes).
    pub const SUB: u8 = 128;
}

/// The hot half of a session.
///
/// The field order is the fast lane's (see `nat::fast`): the addresses and
/// ports are kept in network byte order ([`Net32`], [`Net16`]), as a packet
/// carries them, and in the order the two directions' packets carry them,
/// so each direction's key lies in the session as its packets' bytes lie:
/// bytes 0..8 are an inside-to-outside packet's (source, destination)
/// addresses (inside, remote) and bytes 4..12 an outside-to-inside one's
/// (remote, public); likewise bytes 12..16 and 14..18 the two directions'
/// port pairs. So a lookup confirms a match with three compares of words
/// read as they lie (`parse::FastKey`), and on a little-endian host
/// (x86-64) neither it nor the rewrite swaps a byte: the rewrite's
/// conversion to host order and back (`Rewrite`, `set_u32`) cancels out
/// once inlined, leaving a copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(32))]
pub struct Session {
    /// Inside host address.
    pub inside_ip: Net32,
    /// Remote (outside) address.
    pub remote_ip: Net32,
    /// Public address (the inside address itself for no-NAT sessions).
    pub public_ip: Net32,
    /// Inside port (ICMP: echo identifier).
    pub inside_port: Net16,
    /// Remote port (ICMP: 0; other protocols: the IP protocol number, as
    /// in the other two port fields).
    pub remote_port: Net16,
    /// Public port (ICMP: public identifier).
    pub public_port: Net16,
    /// Protocol (one byte: its code).
    pub proto: L4,
    /// [`flag`] bits.
    pub flags: u8,
    /// Last packet, engine seconds. (A free slot: the next free slot,
    /// see [`SessionTable::alloc`].)
    pub last_seen: u32,
    /// Inside-to-outside IPv4 header checksum delta (RFC 1624) with the TTL
    /// decrement's added (`rewrite::session_deltas`), byte-swapped:
    /// the value a native-endian load of it in network byte order gives,
    /// which is how the fast lane sums it (RFC 1071 section 2(B)).
    /// `Rewrite` reads it back in host order.
    pub ip_delta: u16,
    /// Inside-to-outside L4 checksum delta (pseudo-header and port),
    /// byte-swapped like `ip_delta`.
    pub l4_delta: u16,
    /// Public address index (meaningless for no-NAT sessions).
    pub addr: u16,
    /// TCP state.
    pub tcp: TcpState,
    /// [`class`].
    pub class: u8,
}

impl Session {
    /// Public address index.
    #[inline(always)]
    pub fn addr(&self) -> u16 {
        self.addr
    }
    /// The address word of this direction's lookup key, as
    /// `parse::FastKey::w0` packs a packet's (source, destination): the
    /// bytes as they lie, read as a little-endian word.
    #[inline(always)]
    pub fn addr_word<const I2O: bool>(&self) -> u64 {
        if I2O {
            (u64::from(self.remote_ip.le()) << 32) | u64::from(self.inside_ip.le())
        } else {
            (u64::from(self.public_ip.le()) << 32) | u64::from(self.remote_ip.le())
        }
    }
    /// The port pair of this direction's lookup key (`FastKey::ports`).
    #[inline(always)]
    pub fn port_pair<const I2O: bool>(&self) -> u32 {
        if I2O {
            (u32::from(self.remote_port.le()) << 16) | u32::from(self.inside_port.le())
        } else {
            (u32::from(self.public_port.le()) << 16) | u32::from(self.remote_port.le())
        }
    }
    /// True if this direction's key is a packet's address word, port pair
    /// (packed as `parse::FastKey` packs them) and protocol.
    #[inline(always)]
    pub fn has_key<const I2O: bool>(&self, w0: u64, ports: u32, proto: L4) -> bool {
        self.addr_word::<I2O>() == w0 && self.port_pair::<I2O>() == ports && self.proto == proto
    }
    /// The IP protocol number (other protocols keep theirs in the port fields).
    pub fn ip_proto(&self) -> u8 {
        match self.proto {
            L4::Other => u8::try_from(self.inside_port.get()).unwrap_or(0),
            p => p.ip_proto(),
        }
    }
    /// Recomputes [`flag::FAST`] from the other flags and the TCP state.
    pub fn refresh_fast(&mut self) {
        let fast = self.flags & (flag::REPLIED | flag::HAIRPIN) == flag::REPLIED
            && (self.proto != L4::Tcp || self.tcp == TcpState::STEADY);
        if fast {
            self.flags |= flag::FAST;
        } else {
            self.flags &= !flag::FAST;
        }
    }
}

/// Most sessions a table holds: its sessions' and its wheel's sentinels'
/// numbers (up to 2^20 buckets) all fit a [`Link`].
pub const MAX_SESSIONS: u32 = LINK_NIL - (1 << 20);

/// A [`Link`]'s [`NIL`].
const LINK_NIL: u32 = (1 << 24) - 1;

/// A session or sentinel number in three bytes, little-endian; all ones
/// is [`NIL`] (numbers stay below it: [`MAX_SESSIONS`]). Kept as its low
/// two bytes and its high one, so writing one is a 16-bit and an 8-bit
/// store rather than three byte stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Link {
    lo: [u8; 2],
    hi: u8,
}

impl Link {
    /// No session.
    pub const NIL: Link = Link { lo: [0xff; 2], hi: 0xff };

    /// `i` in three bytes: its low three, which for [`NIL`] are all
    /// ones, [`Link::NIL`] (every other number is below `LINK_NIL`:
    /// [`MAX_SESSIONS`]), so no comparison is spent on it. `LINK_NIL`
    /// itself, what `Link::raw` gives for none, is [`Link::NIL`] too.
    #[inline(always)]
    #[allow(clippy::cast_possible_truncation)] // the low two bytes and the third are the point
    pub fn new(i: u32) -> Link {
        debug_assert!(i == NIL || i <= LINK_NIL, "{i:#x} does not fit a link");
        Link { lo: (i as u16).to_le_bytes(), hi: (i >> 16) as u8 }
    }

    /// The number, [`NIL`] for none.
    #[inline(always)]
    pub fn get(self) -> u32 {
        match self.raw() {
            LINK_NIL => NIL,
            i => i,
        }
    }

    /// The three bytes as a number: `LINK_NIL` for none, which like
    /// [`NIL`] lies past every session and sentinel.
    #[inline(always)]
    fn raw(self) -> u32 {
        u32::from(u16::from_le_bytes(self.lo)) | u32::from(self.hi) << 16
    }
}

/// The cold half of a session (or a wheel bucket's sentinel): its links,
/// and what its TCP connection keeps beside the RST check's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Cold {
    /// Previous in the wheel bucket.
    prev: Link,
    /// Next in the wheel bucket.
    next: Link,
    /// Next session of the same mapping.
    map_next: Link,
    /// TCP: each side's window scale (the RST check's, `nat::tcp`).
    pub scales: super::tcp::Scales,
    /// TCP: what the session's rule added (`nat::mss::ext`: MSS clamping
    /// or the FTP ALG's slot); 0: nothing, so the general path tests one
    /// word.
    pub ext: u16,
}

impl Default for Cold {
    fn default() -> Self {
        Self { prev: Link::NIL, next: Link::NIL, map_next: Link::NIL, scales: super::tcp::Scales::NEW, ext: 0 }
    }
}

impl Cold {
    /// Previous in the wheel bucket.
    #[inline(always)]
    pub fn prev(&self) -> u32 {
        self.prev.get()
    }
    /// Next in the wheel bucket.
    #[inline(always)]
    pub fn next(&self) -> u32 {
        self.next.get()
    }
    /// Next session of the same mapping.
    #[inline(always)]
    pub fn map_next(&self) -> u32 {
        self.map_next.get()
    }
    /// Sets [`Cold::prev`].
    #[inline(always)]
    pub fn set_prev(&mut self, i: u32) {
        self.prev = Link::new(i);
    }
    /// Sets [`Cold::next`].
    #[inline(always)]
    pub fn set_next(&mut self, i: u32) {
        self.next = Link::new(i);
    }
    /// Sets [`Cold::map_next`].
    #[inline(always)]
    pub fn set_map_next(&mut self, i: u32) {
        self.map_next = Link::new(i);
    }
}

/// [`SessionTable`]'s sweep cursor before the sweep's first look: above
/// every second the engine counts to (from 1 at its start, 136 years
/// away), so `cursor.min(now)` is now.
const NO_CURSOR: u32 = u32::MAX;

/// The slab and its wheel.
pub struct SessionTable {
    /// Hot halves, indexed by session number.
    pub hot: Vec<Session>,
    /// Cold halves, same indices.
    pub cold: Vec<Cold>,
    /// What the RST check keeps of TCP sessions, same indices (reset when
    /// a TCP session is made; left as it was, and never read, for other
    /// protocols).
    pub tcp: Vec<super::tcp::TcpWindow>,
    /// The free list's first slot: [`NIL`] when the list is empty.
    free_head: u32,
    live: u32,
    /// The first sentinel's number: the capacity.
    wheel_base: u32,
    wheel_mask: u32,
    /// The next second the sweep will look at ([`NO_CURSOR`] before the
    /// first: a plain word, so filing a session takes the smaller of it
    /// and now in one compare, where an `Option` cost 5 instructions).
    cursor: u32,
    /// The second the last eviction search stopped at.
    evict_from: u32,
    /// The first session it moved to that second's bucket tail, if it
    /// stopped inside the bucket ([`NIL`]: none).
    evict_mark: u32,
    /// New sessions not yet in their bucket, by timeout class
    /// ([`SessionTable::link_new`]).
    waiting: [Waiting; class::SLOTS],
    /// Bit `k` set: class `k` has sessions waiting.
    waiting_classes: u32,
}

/// A timeout class's new sessions waiting to be filed: the first and the
/// last of their chain (linked through `prev` and `next`, the first's
/// `prev` and the last's `next` [`NIL`]), made at second `now` with
/// `timeout` seconds to live. When none wait `now` is [`NO_CURSOR`], no
/// engine second, so a new session's test of it fails too.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    first: u32,
    last: u32,
    timeout: u32,
    now: u32,
}

impl Waiting {
    const NONE: Waiting = Waiting { first: NIL, last: NIL, timeout: 0, now: NO_CURSOR };
}

/// The capacity and the wheel's buckets of a table asked for `capacity`
/// sessions and `horizon_secs`: at most [`MAX_SESSIONS`], and a power of
/// two of buckets from 64 to 2^20.
fn geometry(capacity: u32, horizon_secs: u32) -> (u32, u32) {
    (capacity.min(MAX_SESSIONS), horizon_secs.saturating_add(2).clamp(64, 1 << 20).next_power_of_two())
}

/// Puts `i` at the tail of the wheel bucket whose sentinel is `head`.
fn list_link(cold: &mut [Cold], head: u32, i: u32) {
    let Some(h) = cold.get_mut(head as usize) else {
        return;
    };
    let tail = h.prev();
    h.set_prev(i);
    if let Some(c) = cold.get_mut(i as usize) {
        c.set_prev(tail);
        c.set_next(head);
    }
    if let Some(t) = cold.get_mut(tail as usize) {
        t.set_next(i);
    }
}

/// Takes `i` out of its wheel bucket; nothing if it is in none.
fn list_unlink(cold: &mut [Cold], i: u32) {
    let Some(c) = cold.get_mut(i as usize) else {
        return;
    };
    let (prev, next) = (c.prev(), c.next());
    (c.prev, c.next) = (Link::NIL, Link::NIL);
    if let Some(p) = cold.get_mut(prev as usize) {
        p.set_next(next);
    }
    if let Some(n) = cold.get_mut(next as usize) {
        n.set_prev(prev);
    }
}

impl SessionTable {
    /// A table of `capacity` free sessions (at most [`MAX_SESSIONS`]: more
    /// is cut to it) whose wheel covers `horizon_secs`.
    #[allow(clippy::cast_possible_truncation)] // slot numbers are below `capacity: u32`
    pub fn new(capacity: u32, horizon_secs: u32) -> Self {
        let (capacity, buckets) = geometry(capacity, horizon_secs);
        let n = capacity as usize;
        // The free list through `last_seen`, every slot on it in order.
        let hot = (0..capacity)
            .map(|i| Session {
                class: FREE,
                last_seen: if i + 1 < capacity { i + 1 } else { NIL },
                ..Session::default()
            })
            .collect();
        let mut cold = vec![Cold::default(); n + buckets as usize];
        for (i, c) in cold.iter_mut().enumerate().skip(n) {
            let i = i as u32;
            c.set_prev(i);
            c.set_next(i);
        }
        Self {
            hot,
            cold,
            tcp: vec![super::tcp::TcpWindow::NEW; n],
            free_head: if capacity > 0 { 0 } else { NIL },
            live: 0,
            wheel_base: capacity,
            wheel_mask: buckets - 1,
            cursor: NO_CURSOR,
            evict_from: 0,
            evict_mark: NIL,
            waiting: [Waiting::NONE; class::SLOTS],
            waiting_classes: 0,
        }
    }

    /// Capacity.
    #[allow(clippy::cast_possible_truncation)] // built from a u32 capacity
    pub fn capacity(&self) -> u32 {
        self.hot.len() as u32
    }
    /// Live sessions.
    pub fn live(&self) -> u32 {
        self.live
    }
    /// Bytes of the slab and the lists' sentinels.
    pub fn memory_bytes(&self) -> usize {
        self.hot.len() * std::mem::size_of::<Session>()
            + self.cold.len() * std::mem::size_of::<Cold>()
            + self.tcp.len() * std::mem::size_of::<super::tcp::TcpWindow>()
    }

    /// The sentinel of the wheel bucket of second `d`.
    #[inline(always)]
    fn bucket(&self, d: u32) -> u32 {
        self.wheel_base + (d & self.wheel_mask)
    }

    /// `i` if it is a session, [`NIL`] if a sentinel (the end of its list).
    #[inline(always)]
    fn session_or_nil(&self, i: u32) -> u32 {
        if i < self.wheel_base {
            i
        } else {
            NIL
        }
    }

    /// Faults the slab's pages in now (see `xdp::hugepages::prefault`).
    pub fn prefault(&mut self) {
        crate::xdp::hugepages::prefault(&mut self.hot);
        crate::xdp::hugepages::prefault(&mut self.cold);
        crate::xdp::hugepages::prefault(&mut self.tcp);
    }

    /// Takes a free slot, or `None` when full. The slot is in no list yet.
    pub fn alloc(&mut self) -> Option<u32> {
        let i = self.free_head;
        // The list's end, NIL, lies past every slot. The cold half is
        // left as it is: `link_new` writes all of it.
        let s = self.hot.get(i as usize)?;
        self.free_head = s.last_seen;
        self.live += 1;
        Some(i)
    }

    /// Returns a slot (already out of the wheel, its links NIL) to the
    /// free list.
    pub fn free(&mut self, i: u32) {
        let Some(h) = self.hot.get_mut(i as usize) else {
            return;
        };
        *h = Session { class: FREE, last_seen: self.free_head, ..Session::default() };
        self.free_head = i;
        self.live = self.live.saturating_sub(1);
    }

    /// Session `i` (a free default if out of range).
    #[inline(always)]
    pub fn get(&self, i: u32) -> Session {
        self.hot.get(i as usize).copied().unwrap_or_default()
    }

    /// The second a session filed now for `deadline` comes due: the
    /// deadline clamped to the wheel's reach from `now`.
    fn due_second(&self, deadline: u32, now: u32) -> u32 {
        let (base, last) = self.reach(now);
        deadline.clamp(base, last)
    }

    /// The first and last second a session filed at `now` can come due
    /// in: from the smaller of now and the sweep's cursor, the wheel's
    /// length on.
    #[inline(always)]
    fn reach(&self, now: u32) -> (u32, u32) {
        let base = self.cursor.min(now);
        (base, base.saturating_add(self.wheel_mask))
    }

    /// Files `i` in the wheel for `deadline` (clamped to the wheel's reach from `now`).
    pub fn schedule(&mut self, i: u32, deadline: u32, now: u32) {
        self.settle();
        let b = self.bucket(self.due_second(deadline, now));
        list_link(&mut self.cold, b, i);
    }

    /// Files a new session (from [`SessionTable::alloc`]) of timeout class
    /// `cls` for its class's timeout (of `timeouts`) from `now`, in the
    /// bucket [`SessionTable::schedule`] gives that deadline, writing its
    /// whole cold half at once: at the tail of the chain of the class's
    /// sessions made in the same second, which joins the bucket when the
    /// wheel is next read or changed ([`SessionTable::settle`]). The
    /// chain keeps the timeout its first session was filed for: the
    /// caller settles before it changes `timeouts`.
    #[inline(always)]
    pub fn link_new(&mut self, i: u32, cls: u8, timeouts: &[u32; class::SLOTS], now: u32) {
        let k = usize::from(cls) & (class::SLOTS - 1);
        let last = match self.waiting.get_mut(k) {
            Some(w) if w.now == now => std::mem::replace(&mut w.last, i),
            // (The class's first in a second.)
            _ => {
                std::hint::cold_path();
                let timeout = timeouts.get(k).copied().unwrap_or(0);
                return self.start_chain(k, i, timeout, now);
            }
        };
        if let Some(c) = self.cold.get_mut(i as usize) {
            *c = Cold { prev: Link::new(last), ..Cold::default() };
        }
        if let Some(c) = self.cold.get_mut(last as usize) {
            c.set_next(i);
        }
    }

    /// [`SessionTable::link_new`] of the first session of a chain: the
    /// class's chain so far (of another second) filed first.
    #[inline(never)]
    fn start_chain(&mut self, k: usize, i: u32, timeout: u32, now: u32) {
        self.file_chain(k);
        if let Some(c) = self.cold.get_mut(i as usize) {
            *c = Cold::default();
        }
        if let Some(w) = self.waiting.get_mut(k) {
            *w = Waiting { first: i, last: i, timeout, now };
            self.waiting_classes |= 1 << k;
        }
    }

    /// Files every waiting new session ([`SessionTable::link_new`]), class
    /// by class: each in the bucket filing it at once would have chosen.
    #[inline(always)]
    pub fn settle(&mut self) {
        if self.waiting_classes != 0 {
            self.settle_all();
        }
    }

    #[inline(never)]
    fn settle_all(&mut self) {
        while self.waiting_classes != 0 {
            let k = self.waiting_classes.trailing_zeros() as usize;
            self.file_chain(k);
        }
    }

    /// Joins class `k`'s waiting chain, if any, to its bucket's tail.
    fn file_chain(&mut self, k: usize) {
        self.waiting_classes &= !(1 << k);
        let Some(w) = self.waiting.get_mut(k).map(|w| std::mem::replace(w, Waiting::NONE)) else {
            return;
        };
        if w.now == NO_CURSOR {
            return;
        }
        // `due_second` for a deadline no earlier than now, which is past
        // its lower bound (the smaller of now and the cursor, which has
        // not moved since: moving it settles first).
        let (_, last) = self.reach(w.now);
        let b = self.bucket(w.now.saturating_add(w.timeout).min(last));
        let Some(tail) = self.cold.get(b as usize).map(Cold::prev) else {
            return;
        };
        if let Some(t) = self.cold.get_mut(tail as usize) {
            t.set_next(w.first);
        }
        if let Some(c) = self.cold.get_mut(w.first as usize) {
            c.set_prev(tail);
        }
        if let Some(c) = self.cold.get_mut(w.last as usize) {
            c.set_next(b);
        }
        if let Some(h) = self.cold.get_mut(b as usize) {
            h.set_prev(w.last);
        }
    }

    /// Takes `i` out of its wheel bucket.
    pub fn unschedule(&mut self, i: u32) {
        self.settle();
        list_unlink(&mut self.cold, i);
    }

    /// Moves `i` to another deadline.
    pub fn reschedule(&mut self, i: u32, deadline: u32, now: u32) {
        self.unschedule(i);
        self.schedule(i, deadline, now);
    }

    /// The unanswered session to evict (see the module docs): the first
    /// one without [`flag::REPLIED`] along the wheel from where the last
    /// search stopped (the sweep's second if that is behind it), wrapping
    /// from the wheel's far end back to the sweep's second. Answered
    /// sessions it passes are re-filed: at their deadline if they were
    /// active since their filing (`last_seen` plus their class's `timeout`
    /// lies past their bucket's second), as the sweep would on reaching
    /// them, else at the tail of their own bucket (the same second), so
    /// the next search does not meet them first. At most [`EVICT_STEPS`]
    /// steps, each bucket and each session one: past that it answers
    /// `None` (one packet finds the table full) and the next call goes on
    /// from there, so a search of the whole wheel is spread over calls and
    /// a table filled with answered flows never stalls a packet.
    pub fn evictable(&mut self, now: u32, timeout: &[u32; class::SLOTS]) -> Option<u32> {
        self.settle();
        let first = if self.cursor == NO_CURSOR { now } else { self.cursor };
        let last = first.saturating_add(self.wheel_mask);
        let resume = (first..=last).contains(&self.evict_from);
        let mut second = if resume { self.evict_from } else { first };
        // The first session the last search moved to this bucket's tail,
        // if it stopped inside it.
        let mut mark = if resume { self.evict_mark } else { NIL };
        let mut steps = 0;
        while steps < EVICT_STEPS {
            steps += 1;
            let b = self.bucket(second);
            // The first session moved to this bucket's tail: the bucket is
            // done when the walk comes back to it (a marked session since
            // removed or moved elsewhere: the walk runs to the bucket's end).
            let mut moved = std::mem::replace(&mut mark, NIL);
            let mut j = self.session_or_nil(self.cold.get(b as usize).map_or(NIL, Cold::next));
            while j != NIL && j != moved && steps < EVICT_STEPS {
                steps += 1;
                let s = self.get(j);
                let next = self.next_in_bucket(j);
                if s.flags & flag::REPLIED == 0 {
                    (self.evict_from, self.evict_mark) = (second, moved);
                    return Some(j);
                }
                let t = timeout.get(usize::from(s.class) & (class::SLOTS - 1)).copied().unwrap_or(0);
                let d = s.last_seen.saturating_add(t).max(second);
                self.reschedule(j, d, now);
                if moved == NIL && self.bucket(self.due_second(d, now)) == b {
                    moved = j;
                }
                j = next;
            }
            let done = j == NIL || j == moved;
            if !done {
                // Stopped inside the bucket: the next search goes on there.
                (self.evict_from, self.evict_mark) = (second, moved);
                return None;
            }
            second = if second >= last { first } else { second + 1 };
        }
        (self.evict_from, self.evict_mark) = (second, NIL);
        None
    }

    /// The sessions due in the next bucket the sweep must look at, if that
    /// second has come: returns the bucket's first session and the second.
    /// The caller removes or re-files each; [`SessionTable::advance`] moves on
    /// once the bucket is empty.
    pub fn due(&mut self, now: u32) -> Option<(u32, u32)> {
        self.settle();
        if self.cursor == NO_CURSOR {
            self.cursor = now;
        }
        let cur = self.cursor;
        if cur > now {
            return None;
        }
        let head = self.cold.get(self.bucket(cur) as usize).map_or(NIL, Cold::next);
        Some((self.session_or_nil(head), cur))
    }

    /// Moves the sweep past the current second (its bucket is empty).
    pub fn advance(&mut self) {
        self.settle();
        // (Engine seconds reach NO_CURSOR after 136 years.)
        if self.cursor != NO_CURSOR {
            self.cursor += 1;
        }
    }

    /// Next session in the same wheel bucket.
    pub fn next_in_bucket(&self, i: u32) -> u32 {
        // (Its callers walk a bucket `due` gave them, which settled.)
        debug_assert_eq!(self.waiting_classes, 0, "a bucket walked unsettled");
        self.session_or_nil(self.cold.get(i as usize).map_or(NIL, Cold::next))
    }

    /// The wheel bucket session `i` is in (walking to its sentinel: O(bucket);
    /// tests, listings), `None` if it is in none.
    pub fn bucket_of(&mut self, i: u32) -> Option<u32> {
        self.settle();
        let mut j = self.cold.get(i as usize)?.next();
        // A list is shorter than the slab: the bound only guards a broken one.
        for _ in 0..self.cold.len() {
            if j == NIL {
                return None;
            }
            if j >= self.wheel_base {
                return Some(j - self.wheel_base);
            }
            j = self.cold.get(j as usize)?.next();
        }
        None
    }

    /// The wheel's length in seconds.
    pub fn horizon(&self) -> u32 {
        self.wheel_mask + 1
    }
}

#[cfg(test)]
mod tests;
