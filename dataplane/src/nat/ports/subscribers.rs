//! Subscribers (inside addresses) per pool: found by hash, created with a
//! paired public address (RFC 4787 REQ-2, persistent as iptables
//! `--persistent`), counted per session against the pool's limit (kept on
//! each subscriber: it needs a restart to change), freed
//! with their blocks when their last session goes.
//!
//! Invariants: a subscriber slot is either in the index or on the free
//! list; a slot on the free list holds [`EMPTY_SUB`] (no address, pool
//! `u16::MAX`), which the recent-subscriber table ([`Ports::subscriber`])
//! relies on to never match a freed slot.
#![forbid(unsafe_code)]
#![allow(clippy::cast_possible_truncation)]

use super::*;

pub(super) const EMPTY_SUB: Subscriber = Subscriber {
    inside_ip: 0,
    pool: u16::MAX,
    addr: 0,
    sessions: 0,
    limit: 0,
    n_blocks: 0,
    hint: 0,
    blocks: [0; MAX_BLOCKS_PER_SUBSCRIBER],
    pinned: false,
};

/// Entries of [`Ports`]' recent-subscriber table at the most (the next
/// power of two above the subscriber limit, up to this: 256 KiB).
pub(super) const SUB_RECENT_MAX: usize = 1 << 16;

/// The subscriber table's key: inside address and pool.
pub(super) fn sub_key(seed: u64, inside_ip: u32, pool: u16) -> u64 {
    hash3(seed, inside_ip, pool, 0xfe, 0)
}

impl Ports {
    /// The slot of subscriber `inside_ip` in `pool`, if it exists.
    #[inline(always)]
    pub fn find_subscriber(&self, inside_ip: u32, pool: u16) -> Option<u32> {
        let h = sub_key(self.seed, inside_ip, pool);
        let subs = &self.subs;
        self.sub_index.find(h, |i| subs.get(i as usize).is_some_and(|s| s.inside_ip == inside_ip && s.pool == pool))
    }

    /// Finds or creates subscriber `inside_ip` in `pool`, choosing its paired
    /// address on creation. The slot last found for an address with the
    /// same low bits is tried first (`sub_recent`): a subscriber's next
    /// flow is found with a load and two compares instead of a hash and a
    /// probe. It is confirmed against the slot's subscriber (a freed slot
    /// holds no address and no pool, a reused one another address), so a
    /// stale or colliding entry only sends the look-up on to the index.
    #[inline(always)]
    pub fn subscriber(&mut self, inside_ip: u32, pool: u16) -> Result<u32, DropReason> {
        let r = match self.recent(inside_ip, pool) {
            Ok(s) => return Ok(s),
            Err(r) => r,
        };
        let s = match self.find_subscriber(inside_ip, pool) {
            Some(s) => s,
            None => self.new_subscriber(inside_ip, pool)?,
        };
        if let Some(x) = self.sub_recent.get_mut(r) {
            *x = s;
        }
        Ok(s)
    }

    /// The recent-slot table's answer for subscriber `inside_ip` in `pool`:
    /// its slot if the entry names it (confirmed against the slot), else
    /// the entry's position, for the look-up to refresh.
    #[inline(always)]
    fn recent(&self, inside_ip: u32, pool: u16) -> Result<u32, usize> {
        let r = inside_ip as usize & (self.sub_recent.len() - 1);
        match self.sub_recent.get(r) {
            Some(&s) if self.subs.get(s as usize).is_some_and(|x| x.inside_ip == inside_ip && x.pool == pool) => Ok(s),
            _ => Err(r),
        }
    }

    /// [`Ports::subscriber`]'s creating half, out of the common path.
    #[inline(never)]
    pub(super) fn new_subscriber(&mut self, inside_ip: u32, pool: u16) -> Result<u32, DropReason> {
        let h = sub_key(self.seed, inside_ip, pool);
        let Some(p) = self.pools.get(usize::from(pool)) else {
            return Err(DropReason::PortsExhausted);
        };
        if let Some(det) = &p.det {
            return self.new_det_subscriber(inside_ip, pool, h, det.forward(inside_ip));
        }
        let n = u32::from(p.n_addrs.max(1));
        // Persistent choice (like iptables --persistent): the subscriber's hash
        // picks the address; port-block pools move on past full addresses.
        let start = (h >> 32) as u32 % n;
        let blocks = matches!(p.params.mode, PoolMode::PortBlocks { .. });
        let first = p.first_addr;
        let mut chosen = None;
        for k in 0..n {
            let a = first + ((start + k) % n) as u16;
            if self.addrs.get(usize::from(a)).is_some_and(|x| !x.retired && (!blocks || !x.free_blocks.is_empty())) {
                chosen = Some(a);
                break;
            }
        }
        let Some(addr) = chosen else {
            return Err(DropReason::PortsExhausted);
        };
        let limit = self.session_limit_of(pool);
        let Some(slot) = self.sub_free.pop() else {
            return Err(DropReason::SubscriberTableFull);
        };
        if let Some(s) = self.subs.get_mut(slot as usize) {
            *s = Subscriber { inside_ip, pool, addr, limit, ..EMPTY_SUB };
        }
        self.sub_index.insert(h, slot);
        Ok(slot)
    }

    /// A deterministic pool's subscriber (RFC 7422): the address and the
    /// one block `range` (the formula's) names, taken at creation. Refused
    /// (`deterministic_outside`) when the formula has no range for it: an
    /// inside address outside the pool's prefix, or its address retired.
    #[cold]
    #[inline(never)]
    fn new_det_subscriber(
        &mut self,
        inside_ip: u32,
        pool: u16,
        h: u64,
        range: Option<super::super::deterministic::Range>,
    ) -> Result<u32, DropReason> {
        let first = self.pools.get(usize::from(pool)).map_or(0, |p| p.first_addr);
        let Some(r) = range else {
            return Err(DropReason::DeterministicOutside);
        };
        let addr = first + r.addr_index as u16;
        let l = r.block as u16;
        let taken = match self.addrs.get(usize::from(addr)) {
            Some(x) if !x.retired => x.blocks.get(usize::from(l)).map(|b| b.owner != NIL),
            _ => None,
        };
        // Free, by construction (one subscriber per block, slot freed with its
        // block): anything else is a broken invariant, refused rather than shared.
        if taken != Some(false) {
            return Err(DropReason::DeterministicOutside);
        }
        let limit = self.session_limit_of(pool);
        let Some(slot) = self.sub_free.pop() else {
            return Err(DropReason::SubscriberTableFull);
        };
        if let Some(s) = self.subs.get_mut(slot as usize) {
            *s = Subscriber { inside_ip, pool, addr, n_blocks: 1, limit, ..EMPTY_SUB };
            if let Some(b) = s.blocks.get_mut(0) {
                *b = l;
            }
        }
        if let Some(b) = self.addrs.get_mut(usize::from(addr)).and_then(|x| x.blocks.get_mut(usize::from(l))) {
            b.owner = slot;
        }
        self.blocks_in_use += 1;
        self.sub_index.insert(h, slot);
        Ok(slot)
    }

    /// [`Ports::subscriber`] with a session counted ([`Ports::add_session`]):
    /// at its limit, `SubscriberSessionLimit`, and a subscriber left with
    /// no session given back.
    ///
    /// The common case, a subscriber found in the recent-slot table below
    /// its limit ([`Subscriber::limit`]), is counted on the slot in hand,
    /// where the look-up and the count each indexed the subscriber table
    /// and the count the pool's: 40.8 -> 27.2 instructions a
    /// new session. Anything else takes the general look-up
    /// (`subscriber_session_slow`), inlined: out of line the batch's
    /// registers moved for 9 more.
    #[inline(always)]
    pub fn subscriber_session(&mut self, inside_ip: u32, pool: u16) -> Result<u32, DropReason> {
        if let Ok(s) = self.recent(inside_ip, pool) {
            if let Some(x) = self.subs.get_mut(s as usize).filter(|x| x.sessions < x.limit) {
                x.sessions += 1;
                return Ok(s);
            }
        }
        self.subscriber_session_slow(inside_ip, pool)
    }

    /// [`Ports::subscriber_session`] past the recent-slot table's hit.
    #[inline(always)]
    fn subscriber_session_slow(&mut self, inside_ip: u32, pool: u16) -> Result<u32, DropReason> {
        let s = self.subscriber(inside_ip, pool)?;
        if self.add_session(s) {
            return Ok(s);
        }
        self.session_limit(s)
    }

    /// [`Ports::subscriber_session`] at the limit.
    #[cold]
    #[inline(never)]
    fn session_limit(&mut self, s: u32) -> Result<u32, DropReason> {
        // A subscriber with no sessions would linger: give it back.
        if self.sub(s).is_some_and(|x| x.sessions == 0) {
            self.remove_session(s);
        }
        Err(DropReason::SubscriberSessionLimit)
    }

    /// The sessions a subscriber of `pool` may hold ([`Subscriber::limit`]).
    pub(super) fn session_limit_of(&self, pool: u16) -> u32 {
        self.pools.get(usize::from(pool)).map_or(0, |p| p.params.max_sessions_per_subscriber)
    }

    /// Subscriber `s`.
    pub fn sub(&self, s: u32) -> Option<&Subscriber> {
        self.subs.get(s as usize)
    }

    /// Counts a session for subscriber `s`; false at its limit.
    #[inline(always)]
    pub fn add_session(&mut self, s: u32) -> bool {
        let Some(x) = self.subs.get_mut(s as usize) else {
            return false;
        };
        if x.sessions < x.limit {
            x.sessions += 1;
            true
        } else {
            false
        }
    }

    /// Uncounts a session; frees the subscriber and its blocks at zero.
    /// Returns the number of blocks given back.
    pub fn remove_session(&mut self, s: u32) -> u32 {
        let Some(x) = self.subs.get_mut(s as usize) else {
            return 0;
        };
        x.sessions = x.sessions.saturating_sub(1);
        if x.sessions > 0 || x.pinned {
            return 0;
        }
        let sub = *x;
        let mut released = 0;
        for &l in sub.blocks.iter().take(usize::from(sub.n_blocks)) {
            self.give_back_block(sub.addr, l);
            released += 1;
        }
        let h = sub_key(self.seed, sub.inside_ip, sub.pool);
        let subs = &self.subs;
        let seed = self.seed;
        self.sub_index.remove(h, s, |i| subs.get(i as usize).map_or(0, |y| sub_key(seed, y.inside_ip, y.pool)));
        if let Some(x) = self.subs.get_mut(s as usize) {
            *x = EMPTY_SUB;
        }
        self.sub_free.push(s);
        released
    }

    pub(super) fn give_back_block(&mut self, a: u16, l: u16) {
        let owner =
            self.addrs.get(usize::from(a)).and_then(|ad| ad.blocks.get(usize::from(l))).map_or(NIL, |b| b.owner);
        if let Some(inside) = self.subs.get(owner as usize).map(|x| x.inside_ip) {
            self.note_block(EventKind::Released, inside, a, l);
        }
        if let Some(ad) = self.addrs.get_mut(usize::from(a)) {
            if let Some(b) = ad.blocks.get_mut(usize::from(l)) {
                b.owner = NIL;
            }
            // A deterministic block stays its subscriber's (never on the free list).
            if self.pools.get(usize::from(ad.pool)).is_none_or(|p| p.det.is_none()) {
                ad.free_blocks.push_back(l);
            }
            self.blocks_in_use = self.blocks_in_use.saturating_sub(1);
        }
    }
}
