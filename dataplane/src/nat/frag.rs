//! Fragments: non-first fragments carry no ports, so they follow the
//! decision taken for the first fragment of their datagram.
//!
//! # One worker
//!
//! A datagram's fragments share (source, destination, protocol,
//! identification) (RFC 791 section 3.2, "Fragmentation and Reassembly").
//! The first fragment (offset 0, MF set) carries the ports: it takes the
//! normal path, and the worker records its key, as it arrived, with the
//! session it matched and the direction. Later fragments with the same key
//! are translated by address only (the L4 checksum lives in the first
//! fragment, and the checksum deltas are over the address and port, which
//! the first fragment's rewrite already covered). masq does not reassemble
//! (RFC 815's hole list is the receiver's business): each fragment leaves as
//! it came, translated. A non-first fragment seen before its first is
//! held (below). A hairpinned datagram's first fragment records a second
//! key, the one it has after its source was translated (public source,
//! public destination), with the session that translated its destination;
//! its later fragments take both steps.
//!
//! # Fragments in any order: the hold
//!
//! RFC 4787 REQ-14: a NAT MUST handle fragments arriving out of order. A
//! later fragment that finds no entry at its datagram's home (the only
//! worker with one; the home is the one worker too) is copied into the
//! engine's hold (`frag_hold.rs`: `tables.fragment_hold` fragments,
//! `tables.fragment_hold_bytes` bytes, allocated at start) and its verdict
//! is [`Verdict::Held`]: the worker frees the frame. When a first fragment
//! has taken its path (translated, handed to its owner, or dropped), the
//! held fragments of its key, oldest first, take theirs as later fragments
//! that came just after it (`Engine::release_held`): translated here
//! (both halves if hairpinned), handed to the owner the home recorded, or
//! dropped (`fragment_unknown` when the first made nothing to follow);
//! none is held again. Those to send wait, translated, until the worker
//! takes them after the batch ([`Engine::take_released`]) and sends each
//! from a fresh frame as a frame of the batch with that verdict goes
//! (`worker/release.rs`), so each leaves, or enters the owner's FIFO
//! hand-off queue, after its first fragment. A fragment the hold has no
//! room for is dropped (`fragment_hold_full`); one whose first does not
//! come within `timeouts.fragment_secs` is dropped (`fragment_hold_expired`);
//! `tables.fragment_hold: 0` turns holding off (`fragment_unknown`, as
//! before). Counted: `fragments_held`, `fragments_released`. The hold's
//! fragments are counted as received once; their translation is counted
//! (forwarded, handed off, dropped) when they are released.
//!
//! # Several workers: the fragment home
//!
//! A fragment reaches whichever worker its NIC queue belongs to (the
//! sender's CPU on veth; on a NIC, RSS hashes fragments on the addresses
//! only), and a later fragment cannot name its session's owner. So every
//! datagram has a *fragment home*, a worker computable from any of its
//! fragments alone ([`Engine::frag_home`]):
//! - arriving inside: the subscriber's worker (source address), which owns
//!   the session unless the source is a port forward's server; with
//!   RSS-aware inside queues (hashed on the source) the NIC already delivers
//!   every fragment there, so no fragment crosses cores;
//! - arriving outside: a seeded hash of (source, destination, protocol,
//!   identification) modulo the workers, so one remote's datagrams spread.
//!
//! The rule, per fragment:
//! 1. A later fragment this worker holds a session entry for is translated
//!    here, wherever it came from (only the owner has such an entry).
//! 2. Any other fragment that came off the wire to a worker other than its
//!    home goes to its home (`fragments_to_home`).
//! 3. At its home, a first fragment takes the normal path. If that hands it
//!    to the session's owner, the home records (key -> owner); later
//!    fragments that find that record go to the owner (`fragments_to_owner`),
//!    which translates them with the entry it made for the first fragment.
//! 4. A fragment handed over by another worker is never sent home again:
//!    at a worker that is not its home it is translated or dropped
//!    (`fragment_unknown_at_owner`: the owner's entry expired or was
//!    overwritten), so no fragment bounces between home and owner.
//! 5. A hairpinned datagram's owner hands its second half (now arriving
//!    "outside" from a public address) to the owner of the target's public
//!    port, recording that worker under the second key, so its later
//!    fragments follow the first there.
//!
//! A fragment therefore crosses at most two queues (wire -> home -> owner),
//! three when hairpinned across workers (-> the target's owner). Queues
//! between two workers are FIFO and each worker handles a batch in order,
//! so fragments that take the same route keep their order. A later fragment
//! that reaches the home before its first (they came in on different
//! workers, or out of order) is held there: every fragment not yet
//! followable passes through the home, which is where the first fragment
//! is recorded and whence the held ones follow it to the owner (rule 3).
//! Only the home holds: a fragment handed over to a worker that is not its
//! home came after its first fragment through a FIFO queue, so an owner
//! without an entry has lost it (rule 4).
//!
//! Cost: nothing for unfragmented traffic (the fast lane never sees
//! fragments; the check sits in the general path's first-fragment branch;
//! `perf/callgrind.sh` gives 134 UDP / 155 TCP / 976 new-session
//! instructions before and after); per fragment, one table probe (with
//! one worker, 392 instructions a fragment, 368 before: the hairpin check
//! and the record's kind), the home's hash when there are several, and,
//! for each worker it crosses, a copy through a hand-off queue (a frame of
//! at most `HANDOFF_MAX` bytes). The hold costs a fragment that comes in
//! order nothing but one test per first fragment (`callgrind.sh`:
//! 134 / 155 / 966 / 392 with it, 134 / 155 / 965 / 394 without); a
//! fragment held and released costs about 530 instructions more (its
//! copies in and out, the hold's scan; `held_fragment_instructions` 659 a
//! fragment when every datagram's later fragment comes first). The hold
//! is scanned whole for each first fragment while anything waits: it is
//! small (256 by default), and under a flood of strays it is full and
//! drops them, so a first fragment's scan stays bounded. Rejected: steering all fragments of a
//! public address to one worker (every reply fragment to a CGNAT address
//! would queue behind one core), and a table shared by all workers (locks
//! or atomics on the packet path). The table is a fixed direct-mapped array:
//! a new datagram overwrites an entry whose time is up or that collides,
//! bounding memory under attack; a home's record and an owner's entry
//! live in the same table, one entry per datagram on each worker.
//!
//! Invariants: a fragment is forwarded only for a live session of its
//! tuple; a later fragment is handed on only to its home (once, off the
//! wire) or by a record its home (or its hairpin's owner) made when the
//! first fragment was handed on; a fragment handed over is never sent home
//! again; only a fragment's home holds it, at most once, and a held
//! fragment leaves after its first fragment or not at all; every fragment
//! handed on, held or dropped is counted by reason.
#![forbid(unsafe_code)]

use super::hash::hash3;

/// What an entry says: where the datagram's session is.
const O2I: u8 = 0;
const I2O: u8 = 1;
/// Not here: `to` is the worker the first fragment was handed to.
const AT: u8 = 2;

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    src: u32,
    dst: u32,
    /// The session (`O2I`, `I2O`) or the worker (`AT`).
    to: u32,
    expires: u32,
    ident: u16,
    ip_proto: u8,
    kind: u8,
}

/// What identifies a datagram's fragments (RFC 791: source, destination,
/// protocol, identification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragKey {
    /// Source address.
    pub src: u32,
    /// Destination address.
    pub dst: u32,
    /// IP protocol number (any: fragments of other protocols are followed too).
    pub ip_proto: u8,
    /// IP identification.
    pub ident: u16,
}

/// Where a later fragment follows its first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// This worker translated the first fragment with this session, in
    /// this direction (inside to outside when `i2o`).
    Here {
        /// The session's slot.
        session: u32,
        /// The direction the first fragment went.
        i2o: bool,
    },
    /// This worker (the datagram's home) handed the first fragment to this worker.
    At(u16),
}

/// The fragment table.
pub struct Fragments {
    slots: Vec<Entry>,
    mask: usize,
    seed: u64,
    ttl: u32,
}

impl Fragments {
    /// A table of `n` entries (rounded to a power of two) living `ttl_secs`.
    pub fn new(n: u32, ttl_secs: u32, seed: u64) -> Self {
        let n = n.max(1).next_power_of_two() as usize;
        Self { slots: vec![Entry::default(); n], mask: n - 1, seed, ttl: ttl_secs.max(1) }
    }

    fn slot(&self, k: &FragKey) -> usize {
        super::hash::bucket(
            hash3(self.seed, k.src ^ k.dst.rotate_left(13), k.ident, u16::from(k.ip_proto), 0x77),
            self.mask,
        )
    }

    #[inline]
    fn put(&mut self, k: FragKey, kind: u8, to: u32, now: u32) {
        let i = self.slot(&k);
        let expires = now.saturating_add(self.ttl);
        if let Some(e) = self.slots.get_mut(i) {
            *e = Entry { src: k.src, dst: k.dst, to, expires, ident: k.ident, ip_proto: k.ip_proto, kind };
        }
    }

    /// Records the first fragment of a datagram translated here with `session`.
    #[inline]
    pub fn record(&mut self, k: FragKey, i2o: bool, session: u32, now: u32) {
        self.put(k, if i2o { I2O } else { O2I }, session, now);
    }

    /// Records that the first fragment of a datagram was handed to `worker`.
    pub fn record_at(&mut self, k: FragKey, worker: u16, now: u32) {
        self.put(k, AT, u32::from(worker), now);
    }

    /// Where a later fragment follows its first, if its record is alive.
    #[inline]
    pub fn find(&self, k: FragKey, now: u32) -> Option<Follow> {
        let e = self.slots.get(self.slot(&k))?;
        if !(e.expires > now && e.src == k.src && e.dst == k.dst && e.ip_proto == k.ip_proto && e.ident == k.ident) {
            return None;
        }
        Some(match e.kind {
            AT => Follow::At(u16::try_from(e.to).ok()?),
            kind => Follow::Here { session: e.to, i2o: kind == I2O },
        })
    }

    /// Bytes used.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Entry>()
    }
}

/// The fragment home of a datagram arriving outside: a seeded hash of its
/// key modulo `workers` (the same on every worker: they share the seed).
pub fn outside_home(seed: u64, k: FragKey, workers: u16) -> u16 {
    let h = hash3(seed ^ HOME_SALT, k.src ^ k.dst.rotate_left(7), k.ident, u16::from(k.ip_proto), 0x686f);
    u16::try_from((h >> 32) % u64::from(workers.max(1))).unwrap_or(0)
}

const HOME_SALT: u64 = 0x6672_6167_686f_6d65;

use super::rewrite::Rewrite;
use super::session::{self, flag};
use super::{DropReason, Engine, Parsed, PassReason, Side, Verdict};

pub(super) fn frag_key(p: &Parsed) -> FragKey {
    FragKey { src: p.src, dst: p.dst, ip_proto: p.ip_proto, ident: p.ident }
}

impl Engine {
    /// Says whether the frames of the following batches were handed over by
    /// another worker (`true`) or came off the wire (`false`, the default).
    /// The worker sets it around the batches it takes from its hand-off
    /// queues: a fragment handed over is never sent to its home again.
    pub fn set_handed_off(&mut self, handed_off: bool) {
        self.handed_off = handed_off;
    }

    /// The worker every fragment of this datagram meets at (module doc).
    pub fn frag_home(&self, side: Side, p: &Parsed) -> u16 {
        match side {
            Side::Inside => self.subscriber_owner(p.src),
            Side::Outside => outside_home(self.seed, frag_key(p), self.workers),
        }
    }

    /// A first fragment (it has its ports) when there are several workers:
    /// it meets its later fragments at its home, which remembers where it
    /// went. (With one worker the batch gives it to `flow` directly.)
    #[inline(never)]
    pub(super) fn first_fragment(&mut self, side: Side, now: u32, frame: &mut [u8], p: &Parsed, h: u64) -> Verdict {
        let home = self.frag_home(side, p);
        if home != self.worker && !self.handed_off {
            self.counters.fragments_to_home += 1;
            return Verdict::HandOff { worker: home, arrived_on: side };
        }
        let v = self.flow(side, now, frame, p, h);
        if let Verdict::HandOff { worker, arrived_on } = v {
            // Processed as it arrived: the session is the owner's, and the
            // later fragments, which all come here, follow it there. (A
            // hairpin's second half, arriving outside, was recorded under
            // its own key by `hairpin_dst`.)
            if arrived_on == side {
                self.frags.record_at(frag_key(p), worker, now);
            }
            self.counters.fragments_to_owner += 1;
        }
        v
    }

    /// A later fragment: translated here, handed to its home or its owner,
    /// or dropped (module doc, rules 1-4).
    // Inlined into `slow` as before the hold (a call costs a fragment ~25
    // instructions); `release_held`, cold, has its own copy.
    #[inline(always)]
    pub(super) fn later_fragment(&mut self, side: Side, now: u32, frame: &mut [u8], p: &Parsed) -> Verdict {
        let home = if self.workers > 1 { self.frag_home(side, p) } else { self.worker };
        match self.frags.find(frag_key(p), now) {
            Some(Follow::Here { session: idx, i2o }) => self.follow(side, now, frame, p, idx, i2o),
            Some(Follow::At(w)) if home == self.worker && w != self.worker => {
                self.counters.fragments_to_owner += 1;
                Verdict::HandOff { worker: w, arrived_on: side }
            }
            _ if home != self.worker && !self.handed_off => {
                self.counters.fragments_to_home += 1;
                Verdict::HandOff { worker: home, arrived_on: side }
            }
            _ if home != self.worker => Verdict::Drop(DropReason::FragmentUnknownAtOwner),
            _ => self.hold_fragment(side, now, frame, p),
        }
    }

    /// Translates a later fragment by the session its first fragment matched.
    fn follow(&mut self, side: Side, now: u32, frame: &mut [u8], p: &Parsed, idx: u32, i2o: bool) -> Verdict {
        let s = self.sessions.get(idx);
        let pub_ip = s.public_ip;
        let live = s.class != session::FREE
            && match side {
                Side::Inside => i2o && s.inside_ip == p.src.into() && s.remote_ip == p.dst.into(),
                Side::Outside => !i2o && s.remote_ip == p.src.into() && pub_ip == p.dst.into(),
            };
        if !live {
            return Verdict::Drop(DropReason::FragmentUnknown);
        }
        if p.ttl <= 1 {
            return Verdict::PassToKernel(PassReason::TtlExpired);
        }
        self.counters.fragments_followed += 1;
        Rewrite::arriving(side, &s).apply_addr(frame, p);
        if side == Side::Inside && s.flags & flag::HAIRPIN != 0 {
            return self.hairpin_later(now, frame, p, pub_ip.get());
        }
        Verdict::Forward(side.opposite())
    }

    /// A hairpinned later fragment, its source translated: its destination
    /// follows the second key its first fragment recorded (`hairpin_dst`),
    /// here or at the worker that owns the target's public port.
    fn hairpin_later(&mut self, now: u32, frame: &mut [u8], p: &Parsed, pub_ip: u32) -> Verdict {
        let q = Parsed { src: pub_ip, ..*p };
        match self.frags.find(frag_key(&q), now) {
            Some(Follow::Here { session: idx, i2o: false }) => {
                let t = self.sessions.get(idx);
                if t.class == session::FREE || t.remote_ip != pub_ip.into() || t.public_ip != p.dst.into() {
                    return Verdict::Drop(DropReason::FragmentUnknown);
                }
                // The TTL went down with the source already.
                Rewrite::o2i(&t).apply_addr_no_ttl(frame, &q);
                self.counters.hairpinned += 1;
                Verdict::Forward(Side::Inside)
            }
            Some(Follow::At(w)) if w != self.worker => {
                self.counters.fragments_to_owner += 1;
                Verdict::HandOff { worker: w, arrived_on: Side::Outside }
            }
            _ => Verdict::Drop(DropReason::FragmentUnknown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_and_expires() {
        let k = |ident| FragKey { src: 1, dst: 2, ip_proto: 17, ident };
        let mut f = Fragments::new(16, 2, 1);
        f.record(k(99), true, 7, 10);
        assert_eq!(f.find(k(99), 11), Some(Follow::Here { session: 7, i2o: true }));
        assert_eq!(f.find(k(98), 11), None);
        assert_eq!(f.find(FragKey { ip_proto: 6, ..k(99) }, 11), None);
        assert_eq!(f.find(k(99), 12), None, "expired");
        f.record_at(k(5), 3, 10);
        assert_eq!(f.find(k(5), 11), Some(Follow::At(3)));
        f.record(k(6), false, 8, 10);
        assert_eq!(f.find(k(6), 11), Some(Follow::Here { session: 8, i2o: false }));
    }

    #[test]
    fn every_worker_computes_the_same_home_and_homes_spread() {
        let k = |ident| FragKey { src: 0xc633_6401, dst: 0xcb00_710a, ip_proto: 17, ident };
        assert_eq!(outside_home(7, k(1), 1), 0);
        let homes: Vec<u16> = (0..64).map(|i| outside_home(7, k(i), 4)).collect();
        assert!(homes.iter().all(|&h| h < 4));
        assert_eq!(homes, (0..64).map(|i| outside_home(7, k(i), 4)).collect::<Vec<_>>());
        for w in 0..4 {
            assert!(homes.contains(&w), "worker {w} is the home of none of 64 datagrams: {homes:?}");
        }
    }
}
