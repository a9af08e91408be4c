//! The conntrack shard's storage: a preallocated slab of sessions, a
//! timer wheel for expiry and a FIFO of unreplied sessions for eviction.
//!
//! A session is split in two parallel arrays. [`Session`] (32 bytes, two per
//! cache line) holds everything the forwarding path reads or writes: both
//! lookup keys, the rewrite, the checksum deltas, `last_seen` and the TCP
//! state. [`Cold`] (24 bytes) holds the links, touched only when a session
//! is created, answered, changes class or comes due.
//!
//! Expiry: each session sits in the wheel bucket of its deadline (one bucket
//! per second). A packet only writes `last_seen`. When the sweep reaches a
//! bucket, each session there is either idle for its whole timeout (expired)
//! or was active since, and is re-filed at `last_seen + timeout`. So a
//! session is reclaimed in the second its timeout ends, and no packet ever
//! touches another session's cache line. Deadlines further out than the
//! wheel is long are filed at its far end and re-filed when reached.
//!
//! Eviction (netfilter FAQ 3.17): sessions never answered sit on a FIFO in
//! creation order and leave it on their first reply, so the oldest unreplied
//! session is the FIFO's head. Established sessions are never on it.
//!
//! Invariants: a live session is in exactly one wheel bucket, the one of its
//! `deadline`; it is on the unreplied FIFO iff its `REPLIED` flag is clear;
//! a free slot has class [`FREE`] and sits on the free list (through `next`).
#![forbid(unsafe_code)]

/// No session / end of a list.
pub const NIL: u32 = u32::MAX;

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
/// The field order is the fast lane's (see `nat::fast`): read as
/// little-endian words, bytes 0..8 are the outside-to-inside key's address
/// word (public, remote) and bytes 4..12 the inside-to-outside one (remote,
/// inside), both laid out as `parse::FastKey::w0` packs a packet's
/// (destination, source); likewise bytes 12..16 and 14..18 are the two
/// directions' port pairs. So a lookup confirms a match with three compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(32))]
pub struct Session {
    /// Public address (the inside address itself for no-NAT sessions).
    pub public_ip: u32,
    /// Remote (outside) address.
    pub remote_ip: u32,
    /// Inside host address.
    pub inside_ip: u32,
    /// Public port (ICMP: public identifier).
    pub public_port: u16,
    /// Remote port (ICMP: 0; other protocols: the IP protocol number, as
    /// in the other two port fields).
    pub remote_port: u16,
    /// Inside port (ICMP: echo identifier).
    pub inside_port: u16,
    /// Protocol (one byte: its code).
    pub proto: L4,
    /// [`flag`] bits.
    pub flags: u8,
    /// Last packet, engine seconds.
    pub last_seen: u32,
    /// Inside-to-outside IPv4 header checksum delta (RFC 1624).
    pub ip_delta: u16,
    /// Inside-to-outside L4 checksum delta (pseudo-header and port).
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
    /// The address word of this direction's lookup key, packed as
    /// `parse::FastKey::w0` packs a packet's (source, destination).
    #[inline(always)]
    pub fn addr_word<const I2O: bool>(&self) -> u64 {
        if I2O {
            (u64::from(self.inside_ip) << 32) | u64::from(self.remote_ip)
        } else {
            (u64::from(self.remote_ip) << 32) | u64::from(self.public_ip)
        }
    }
    /// The port pair of this direction's lookup key (`FastKey::ports`).
    #[inline(always)]
    pub fn port_pair<const I2O: bool>(&self) -> u32 {
        if I2O {
            (u32::from(self.inside_port) << 16) | u32::from(self.remote_port)
        } else {
            (u32::from(self.remote_port) << 16) | u32::from(self.public_port)
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
            L4::Other => u8::try_from(self.inside_port).unwrap_or(0),
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

/// The cold half of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cold {
    /// Previous in the wheel bucket.
    pub prev: u32,
    /// Next in the wheel bucket (or on the free list).
    pub next: u32,
    /// Previous on the unreplied FIFO.
    pub u_prev: u32,
    /// Next on the unreplied FIFO.
    pub u_next: u32,
    /// Next session of the same mapping.
    pub map_next: u32,
    /// The second its wheel bucket comes due.
    pub deadline: u32,
}

impl Default for Cold {
    fn default() -> Self {
        Self { prev: NIL, next: NIL, u_prev: NIL, u_next: NIL, map_next: NIL, deadline: 0 }
    }
}

#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

const EMPTY: List = List { head: NIL, tail: NIL };

/// The slab, its wheel and its FIFO.
pub struct SessionTable {
    /// Hot halves, indexed by session number.
    pub hot: Vec<Session>,
    /// Cold halves, same indices.
    pub cold: Vec<Cold>,
    /// What the RST check keeps of TCP sessions, same indices (reset when
    /// a session is made; meaningless for other protocols).
    pub tcp: Vec<super::tcp::TcpWindow>,
    free_head: u32,
    live: u32,
    wheel: Vec<List>,
    wheel_mask: u32,
    /// The next second the sweep will look at (`None` before the first).
    cursor: Option<u32>,
    unreplied: List,
}

fn list_link(cold: &mut [Cold], list: &mut List, i: u32, wheel: bool) {
    let old_tail = list.tail;
    if let Some(c) = cold.get_mut(i as usize) {
        if wheel {
            c.prev = old_tail;
            c.next = NIL;
        } else {
            c.u_prev = old_tail;
            c.u_next = NIL;
        }
    }
    match cold.get_mut(old_tail as usize) {
        Some(t) if wheel => t.next = i,
        Some(t) => t.u_next = i,
        None => list.head = i,
    }
    list.tail = i;
}

fn list_unlink(cold: &mut [Cold], list: &mut List, i: u32, wheel: bool) {
    let Some(c) = cold.get(i as usize).copied() else {
        return;
    };
    let (prev, next) = if wheel { (c.prev, c.next) } else { (c.u_prev, c.u_next) };
    match cold.get_mut(prev as usize) {
        Some(p) if wheel => p.next = next,
        Some(p) => p.u_next = next,
        None => list.head = next,
    }
    match cold.get_mut(next as usize) {
        Some(n) if wheel => n.prev = prev,
        Some(n) => n.u_prev = prev,
        None => list.tail = prev,
    }
    if let Some(c) = cold.get_mut(i as usize) {
        if wheel {
            c.prev = NIL;
            c.next = NIL;
        } else {
            c.u_prev = NIL;
            c.u_next = NIL;
        }
    }
}

impl SessionTable {
    /// A table of `capacity` free sessions whose wheel covers `horizon_secs`.
    #[allow(clippy::cast_possible_truncation)] // slot numbers are below `capacity: u32`
    pub fn new(capacity: u32, horizon_secs: u32) -> Self {
        let n = capacity as usize;
        let hot = vec![Session { class: FREE, ..Session::default() }; n];
        let mut cold = vec![Cold::default(); n];
        for (i, c) in cold.iter_mut().enumerate() {
            let next = i as u32 + 1;
            c.next = if next < capacity { next } else { NIL };
        }
        let buckets = horizon_secs.saturating_add(2).clamp(64, 1 << 20).next_power_of_two();
        Self {
            hot,
            cold,
            tcp: vec![super::tcp::TcpWindow::NEW; n],
            free_head: if capacity > 0 { 0 } else { NIL },
            live: 0,
            wheel: vec![EMPTY; buckets as usize],
            wheel_mask: buckets - 1,
            cursor: None,
            unreplied: EMPTY,
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
    /// Bytes of the slab, the wheel and the FIFO head.
    pub fn memory_bytes(&self) -> usize {
        self.hot.len() * std::mem::size_of::<Session>()
            + self.cold.len() * std::mem::size_of::<Cold>()
            + self.tcp.len() * std::mem::size_of::<super::tcp::TcpWindow>()
            + self.wheel.len() * std::mem::size_of::<List>()
    }

    /// Takes a free slot, or `None` when full. The slot is in no list yet.
    pub fn alloc(&mut self) -> Option<u32> {
        let i = self.free_head;
        // The cold half is left as it is: `link_new` writes all of it.
        let c = self.cold.get(i as usize)?;
        self.free_head = c.next;
        self.live += 1;
        Some(i)
    }

    /// Returns a slot (already out of the wheel and FIFO) to the free list.
    pub fn free(&mut self, i: u32) {
        let Some(h) = self.hot.get_mut(i as usize) else {
            return;
        };
        *h = Session { class: FREE, ..Session::default() };
        if let Some(c) = self.cold.get_mut(i as usize) {
            *c = Cold { next: self.free_head, ..Cold::default() };
        }
        self.free_head = i;
        self.live = self.live.saturating_sub(1);
    }

    /// Session `i` (a free default if out of range).
    #[inline(always)]
    pub fn get(&self, i: u32) -> Session {
        self.hot.get(i as usize).copied().unwrap_or_default()
    }

    /// Files `i` in the wheel for `deadline` (clamped to the wheel's reach from `now`).
    pub fn schedule(&mut self, i: u32, deadline: u32, now: u32) {
        let base = self.cursor.unwrap_or(now).min(now);
        let d = deadline.clamp(base, base.saturating_add(self.wheel_mask));
        if let Some(c) = self.cold.get_mut(i as usize) {
            c.deadline = d;
        }
        if let Some(list) = self.wheel.get_mut((d & self.wheel_mask) as usize) {
            list_link(&mut self.cold, list, i, true);
        }
    }

    /// Files a new session (from [`SessionTable::alloc`]): its wheel bucket
    /// for `deadline`, as [`SessionTable::schedule`] does, and the tail of
    /// the unreplied FIFO, writing its whole cold half at once.
    pub fn link_new(&mut self, i: u32, deadline: u32, now: u32) {
        let base = self.cursor.unwrap_or(now).min(now);
        let d = deadline.clamp(base, base.saturating_add(self.wheel_mask));
        let Some(bucket) = self.wheel.get_mut((d & self.wheel_mask) as usize) else {
            return;
        };
        let (wt, ut) = (bucket.tail, self.unreplied.tail);
        if let Some(c) = self.cold.get_mut(i as usize) {
            *c = Cold { prev: wt, next: NIL, u_prev: ut, u_next: NIL, map_next: NIL, deadline: d };
        }
        match self.cold.get_mut(wt as usize) {
            Some(t) => t.next = i,
            None => bucket.head = i,
        }
        bucket.tail = i;
        match self.cold.get_mut(ut as usize) {
            Some(t) => t.u_next = i,
            None => self.unreplied.head = i,
        }
        self.unreplied.tail = i;
    }

    /// Takes `i` out of its wheel bucket.
    pub fn unschedule(&mut self, i: u32) {
        let d = self.cold.get(i as usize).map_or(0, |c| c.deadline);
        if let Some(list) = self.wheel.get_mut((d & self.wheel_mask) as usize) {
            list_unlink(&mut self.cold, list, i, true);
        }
    }

    /// Moves `i` to another deadline.
    pub fn reschedule(&mut self, i: u32, deadline: u32, now: u32) {
        self.unschedule(i);
        self.schedule(i, deadline, now);
    }

    /// Puts `i` at the tail of the unreplied FIFO.
    pub fn push_unreplied(&mut self, i: u32) {
        list_link(&mut self.cold, &mut self.unreplied, i, false);
    }

    /// Takes `i` off the unreplied FIFO.
    pub fn remove_unreplied(&mut self, i: u32) {
        list_unlink(&mut self.cold, &mut self.unreplied, i, false);
    }

    /// The oldest unreplied session.
    pub fn oldest_unreplied(&self) -> Option<u32> {
        (self.unreplied.head != NIL).then_some(self.unreplied.head)
    }

    /// The sessions due in the next bucket the sweep must look at, if that
    /// second has come: returns the bucket's first session and the second.
    /// The caller removes or re-files each; [`SessionTable::advance`] moves on
    /// once the bucket is empty.
    pub fn due(&mut self, now: u32) -> Option<(u32, u32)> {
        let cur = *self.cursor.get_or_insert(now);
        if cur > now {
            return None;
        }
        let head = self.wheel.get((cur & self.wheel_mask) as usize).map_or(NIL, |l| l.head);
        Some((head, cur))
    }

    /// Moves the sweep past the current second (its bucket is empty).
    pub fn advance(&mut self) {
        if let Some(c) = self.cursor.as_mut() {
            *c = c.wrapping_add(1);
        }
    }

    /// Next session in the same wheel bucket.
    pub fn next_in_bucket(&self, i: u32) -> u32 {
        self.cold.get(i as usize).map_or(NIL, |c| c.next)
    }

    /// `deadline` of session `i`.
    pub fn deadline(&self, i: u32) -> u32 {
        self.cold.get(i as usize).map_or(0, |c| c.deadline)
    }

    /// The wheel's length in seconds.
    pub fn horizon(&self) -> u32 {
        self.wheel_mask + 1
    }
}

#[cfg(test)]
mod tests;
