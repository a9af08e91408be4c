//! The fragment hold: non-first fragments that reached their datagram's
//! fragment home before its first fragment wait here, as copies, until the
//! first fragment comes (RFC 4787 REQ-14: a NAT MUST accept fragments in
//! any order), or their time is up. [`super::frag`] says where holding sits
//! in a fragment's path; the engine's side of it (hold, release, expire,
//! hand released fragments to the worker) is the `impl Engine` below.
//!
//! Storage is allocated once: a ring of `count` slots (the per-fragment
//! record) and a byte ring of `bytes` bytes (the frames). A fragment takes
//! the next slot and the next run of bytes that fits whole; slots and bytes
//! are given back oldest first, so a slot freed while an older one still
//! waits is a hole until the older goes. Every fragment waits the same time
//! and the clock never goes back, so the oldest slot is always the first to
//! expire: expiry looks at the oldest only.
//!
//! Invariants: nothing here allocates after [`Hold::new`]; a held fragment
//! leaves exactly once, released (translated, then taken by the worker),
//! dropped at its release, or expired; at most `count` fragments and
//! `bytes` bytes are held; a slot's bytes never overlap another live slot's.
#![forbid(unsafe_code)]

use super::frag::{frag_key, FragKey};
use super::parse::Parsed;
use super::{DropReason, Engine, Side, Verdict};

/// A slot's state.
const FREE: u8 = 0;
/// Waiting for its first fragment.
const HELD: u8 = 1;
/// Translated: its verdict is set, the worker takes it.
const READY: u8 = 2;

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Where its frame starts in the byte ring, and its length.
    at: usize,
    len: usize,
    expires: u32,
    side: Side,
    state: u8,
    p: Parsed,
    v: Verdict,
}

const EMPTY: Slot = Slot {
    at: 0,
    len: 0,
    expires: 0,
    side: Side::Inside,
    state: FREE,
    p: Parsed {
        l3: 0,
        l4: 0,
        src: 0,
        dst: 0,
        sport: 0,
        dport: 0,
        ip_proto: 0,
        proto: super::L4::Tcp,
        ttl: 0,
        tcp_flags: 0,
        ident: 0,
        first_frag: false,
        kind: super::parse::Kind::LaterFragment,
    },
    v: Verdict::Held,
};

/// One held fragment handed out for release: its slot, side and parse.
#[derive(Debug, Clone, Copy)]
pub(super) struct Waiting {
    pub(super) slot: usize,
    pub(super) side: Side,
    pub(super) p: Parsed,
    range: (usize, usize),
}

impl Waiting {
    /// Its frame within the byte ring.
    pub(super) fn frame<'a>(&self, bytes: &'a mut [u8]) -> Option<&'a mut [u8]> {
        bytes.get_mut(self.range.0..self.range.1)
    }
}

/// The hold of one engine.
pub struct Hold {
    slots: Vec<Slot>,
    bytes: Vec<u8>,
    /// The oldest slot not given back, and how many slots from it are in use (holes included).
    first: usize,
    used: usize,
    /// Where the newest slot's bytes end.
    end: usize,
    /// Slots `HELD` and `READY`.
    held: u32,
    ready: u32,
    ttl: u32,
    /// Set while held fragments are re-run: none is held again.
    releasing: bool,
}

impl Hold {
    /// A hold of `count` fragments and `bytes` bytes, each waiting at most
    /// `ttl_secs`; `count` or `bytes` 0 holds nothing.
    pub fn new(count: u32, bytes: u32, ttl_secs: u32) -> Self {
        let on = count > 0 && bytes > 0;
        Self {
            slots: if on { vec![EMPTY; count as usize] } else { Vec::new() },
            bytes: if on { vec![0; bytes as usize] } else { Vec::new() },
            first: 0,
            used: 0,
            end: 0,
            held: 0,
            ready: 0,
            ttl: ttl_secs.max(1),
            releasing: false,
        }
    }

    /// Whether a fragment may be held now (the hold is on and not being released).
    #[inline]
    pub(super) fn accepts(&self) -> bool {
        !self.slots.is_empty() && !self.releasing
    }

    /// Fragments waiting for their first.
    #[inline]
    pub(super) fn waiting(&self) -> bool {
        self.held > 0
    }

    /// Released fragments the worker has not taken yet.
    #[inline]
    pub fn ready(&self) -> u32 {
        self.ready
    }

    /// Fragments waiting plus released ones not yet taken.
    pub fn len(&self) -> u32 {
        self.held + self.ready
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the hold takes.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>() + self.bytes.len()
    }

    fn index(&self, nth: usize) -> usize {
        (self.first + nth) % self.slots.len().max(1)
    }

    /// Where `len` bytes fit after the newest slot's, if anywhere.
    fn room(&self, len: usize) -> Option<usize> {
        let cap = self.bytes.len();
        if len == 0 || len > cap || self.used >= self.slots.len() {
            return None;
        }
        if self.used == 0 {
            return Some(0);
        }
        let oldest = self.slots.get(self.first)?.at;
        if self.end > oldest {
            // Not wrapped: free after the newest and before the oldest.
            if self.end + len <= cap {
                Some(self.end)
            } else {
                (len <= oldest).then_some(0)
            }
        } else {
            // Wrapped: free between the newest and the oldest.
            (self.end + len <= oldest).then_some(self.end)
        }
    }

    /// Holds a copy of `frame` (arrived on `side`, parsed as `p`) until
    /// `now` + the timeout; false if it does not fit.
    pub(super) fn put(&mut self, side: Side, p: &Parsed, frame: &[u8], now: u32) -> bool {
        let Some(at) = self.room(frame.len()) else { return false };
        let i = self.index(self.used);
        let (Some(dst), Some(slot)) = (self.bytes.get_mut(at..at + frame.len()), self.slots.get_mut(i)) else {
            return false;
        };
        dst.copy_from_slice(frame);
        *slot = Slot {
            at,
            len: frame.len(),
            expires: now.saturating_add(self.ttl),
            side,
            state: HELD,
            p: *p,
            v: Verdict::Held,
        };
        self.used += 1;
        self.end = at + frame.len();
        self.held += 1;
        true
    }

    /// The next fragment of datagram `k` waiting, from position `*from`
    /// (oldest first), which it advances.
    pub(super) fn next_waiting(&self, from: &mut usize, k: FragKey) -> Option<Waiting> {
        while *from < self.used {
            let i = self.index(*from);
            *from += 1;
            let s = self.slots.get(i)?;
            if s.state == HELD && frag_key(&s.p) == k {
                return Some(Waiting { slot: i, side: s.side, p: s.p, range: (s.at, s.at + s.len) });
            }
        }
        None
    }

    /// Takes the byte ring out while held fragments are re-run by the
    /// engine (which needs itself whole); nothing is held meanwhile.
    pub(super) fn begin_release(&mut self) -> Vec<u8> {
        self.releasing = true;
        std::mem::take(&mut self.bytes)
    }

    /// Gives the byte ring back.
    pub(super) fn end_release(&mut self, bytes: Vec<u8>) {
        self.bytes = bytes;
        self.releasing = false;
    }

    /// A released fragment's outcome: `Some` verdict to send (the worker
    /// takes it), `None` when it was dropped.
    pub(super) fn settle(&mut self, slot: usize, v: Option<Verdict>) {
        let Some(s) = self.slots.get_mut(slot) else { return };
        if s.state != HELD {
            return;
        }
        self.held -= 1;
        match v {
            Some(v) => {
                s.state = READY;
                s.v = v;
                self.ready += 1;
            }
            None => {
                s.state = FREE;
                self.reclaim();
            }
        }
    }

    /// Gives back the oldest slots that are free.
    fn reclaim(&mut self) {
        while self.used > 0 && self.slots.get(self.first).is_some_and(|s| s.state == FREE) {
            self.first = self.index(1);
            self.used -= 1;
        }
        if self.used == 0 {
            (self.first, self.end) = (0, 0);
        }
    }

    /// Drops the fragments whose time is up at `now`; returns how many.
    pub(super) fn expire(&mut self, now: u32) -> u32 {
        let mut n = 0;
        while self.used > 0 {
            let Some(s) = self.slots.get_mut(self.first) else { break };
            if s.expires > now {
                break;
            }
            match s.state {
                HELD => self.held -= 1,
                READY => self.ready -= 1,
                _ => {}
            }
            s.state = FREE;
            n += 1;
            self.reclaim();
        }
        n
    }

    /// Hands at most `max` released fragments, oldest first, to `f` with
    /// their verdicts, and forgets them; returns how many.
    pub(super) fn take_released(&mut self, max: usize, mut f: impl FnMut(Verdict, &[u8])) -> usize {
        let mut n = 0;
        let mut at = 0;
        while n < max && self.ready > 0 && at < self.used {
            let i = self.index(at);
            at += 1;
            let Some(s) = self.slots.get_mut(i) else { break };
            if s.state != READY {
                continue;
            }
            s.state = FREE;
            self.ready -= 1;
            n += 1;
            f(s.v, self.bytes.get(s.at..s.at + s.len).unwrap_or(&[]));
        }
        self.reclaim();
        n
    }
}

impl Engine {
    /// A later fragment at its home before its first: held (a copy) until
    /// the first comes, or dropped if the hold is off, full, or being
    /// released (its first came and did not make it followable).
    #[cold]
    #[inline(never)]
    pub(super) fn hold_fragment(&mut self, side: Side, now: u32, frame: &[u8], p: &Parsed) -> Verdict {
        if !self.hold.accepts() {
            return Verdict::Drop(DropReason::FragmentUnknown);
        }
        if !self.hold.put(side, p, frame, now) {
            return Verdict::Drop(DropReason::FragmentHoldFull);
        }
        self.counters.fragments_held += 1;
        Verdict::Held
    }

    /// After a first fragment (`p`) took its path: its datagram's held
    /// fragments take theirs now, oldest first, as if they had come just
    /// after it (translated here, handed on after it, or dropped: none is
    /// held again). Those to send wait in the hold for
    /// [`Engine::take_released`].
    #[cold]
    #[inline(never)]
    pub(super) fn release_held(&mut self, now: u32, first: &Parsed) {
        let k = frag_key(first);
        let mut bytes = self.hold.begin_release();
        let mut from = 0;
        while let Some(w) = self.hold.next_waiting(&mut from, k) {
            let v = match w.frame(&mut bytes) {
                Some(f) => self.later_fragment(w.side, now, f, &w.p),
                None => Verdict::Drop(DropReason::Malformed),
            };
            self.counters.fragments_released += 1;
            self.count(v);
            let send = match v {
                Verdict::Drop(_) | Verdict::Refuse(_) | Verdict::Held => None,
                v => Some(v),
            };
            self.hold.settle(w.slot, send);
        }
        self.hold.end_release(bytes);
    }

    /// Drops the held fragments whose time is up (their first fragment
    /// did not come within `timeouts.fragment_secs`).
    #[inline(always)]
    pub(super) fn expire_held(&mut self, now: u32) {
        if !self.hold.is_empty() {
            self.expire_held_now(now);
        }
    }

    #[cold]
    #[inline(never)]
    fn expire_held_now(&mut self, now: u32) {
        for _ in 0..self.hold.expire(now) {
            self.counters.drop(DropReason::FragmentHoldExpired);
        }
    }

    /// Released fragments not yet taken ([`Engine::take_released`]).
    #[inline]
    pub fn released(&self) -> u32 {
        self.hold.ready()
    }

    /// Hands at most `max` fragments released from the hold, oldest first,
    /// to `f`: each translated, with its verdict (`Forward`, `HandOff` or
    /// `PassToKernel`, never a drop: those are counted already). The worker
    /// calls it after every batch and sends each as a frame of that batch
    /// with that verdict (a copy in a frame of its own); the hold forgets
    /// them. Returns how many.
    pub fn take_released(&mut self, max: usize, f: impl FnMut(Verdict, &[u8])) -> usize {
        self.hold.take_released(max, f)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::nat::parse::Kind;

    fn parsed(ident: u16) -> Parsed {
        Parsed { src: 1, dst: 2, ip_proto: 17, ident, kind: Kind::LaterFragment, ..Parsed::default() }
    }

    fn key(ident: u16) -> FragKey {
        FragKey { src: 1, dst: 2, ip_proto: 17, ident }
    }

    /// Releases every fragment of `ident` as forwarded; returns how many.
    fn release(h: &mut Hold, ident: u16) -> usize {
        let mut from = 0;
        let mut n = 0;
        while let Some(w) = h.next_waiting(&mut from, key(ident)) {
            h.settle(w.slot, Some(Verdict::Forward(Side::Outside)));
            n += 1;
        }
        n
    }

    fn taken(h: &mut Hold) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        h.take_released(usize::MAX, |_, b| out.push(b.to_vec()));
        out
    }

    #[test]
    fn holds_within_both_budgets_and_releases_in_arrival_order() {
        let mut h = Hold::new(3, 100, 2);
        assert!(h.put(Side::Inside, &parsed(1), &[1; 40], 10));
        assert!(h.put(Side::Inside, &parsed(2), &[2; 40], 10));
        assert!(!h.put(Side::Inside, &parsed(3), &[3; 40], 10), "bytes full");
        assert!(h.put(Side::Inside, &parsed(1), &[4; 20], 10));
        assert!(!h.put(Side::Inside, &parsed(1), &[5; 1], 10), "slots full");
        assert_eq!(release(&mut h, 1), 2);
        assert_eq!(taken(&mut h), vec![vec![1; 40], vec![4; 20]]);
        // Datagram 2's slot is the oldest now; the bytes before it are free again.
        assert!(h.put(Side::Inside, &parsed(5), &[6; 40], 10), "wrapped to the start");
        assert!(!h.put(Side::Inside, &parsed(5), &[7; 21], 10), "nothing between the newest and the oldest");
        assert_eq!(release(&mut h, 2), 1);
        assert_eq!(taken(&mut h), vec![vec![2; 40]]);
        assert_eq!(release(&mut h, 5), 1);
        assert_eq!(taken(&mut h), vec![vec![6; 40]]);
        assert!(h.is_empty());
        assert!(h.put(Side::Inside, &parsed(6), &[8; 100], 10), "an empty hold starts over");
        assert!(!h.put(Side::Inside, &parsed(6), &[8; 101], 10));
    }

    #[test]
    fn the_oldest_expire_first_and_a_hole_waits_for_them() {
        let mut h = Hold::new(4, 1000, 2);
        assert!(h.put(Side::Outside, &parsed(1), &[1; 10], 10));
        assert!(h.put(Side::Outside, &parsed(2), &[2; 10], 11));
        assert_eq!(release(&mut h, 2), 1);
        assert_eq!(taken(&mut h).len(), 1);
        assert_eq!(h.used, 2, "a hole behind the oldest");
        assert_eq!(h.expire(11), 0);
        assert_eq!(h.expire(12), 1);
        assert!(h.is_empty());
        assert_eq!(h.used, 0);
        assert_eq!(release(&mut h, 1), 0, "expired: nothing to release");
    }

    #[test]
    fn off_holds_nothing_and_nothing_is_held_while_releasing() {
        let mut h = Hold::new(0, 1000, 2);
        assert!(!h.accepts());
        assert!(!h.put(Side::Inside, &parsed(1), &[1; 10], 10));
        let mut h = Hold::new(2, 1000, 2);
        let bytes = h.begin_release();
        assert!(!h.accepts());
        h.end_release(bytes);
        assert!(h.accepts());
    }
}
