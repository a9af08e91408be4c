//! The fast lane's hit path: a fast-lane frame (see `parse::parse_fast`)
//! whose session is in its steady state. It borrows the session slab and
//! one index once per batch, so their pointers stay in registers across the
//! batch instead of being reloaded through the engine for every packet.
//!
//! The path, per frame: the protocol-independent checks, one branch on the
//! protocol into code specialised for it, the tuple hash, a linear probe
//! whose candidates are confirmed by three compares (each direction's key
//! lies in the session as the packet carries it, in network byte order:
//! see `Session`; so on x86-64 the key is read, hashed and compared
//! without a byte swap), the steady-state and freshness checks, then the
//! rewrite (the new address and port copied, the swaps of their
//! conversions cancelling out) with its RFC 1624 checksum updates
//! (RFC 1071 section 2(B): done in network byte order).
//!
//! Invariant: a frame is changed, and its session's `last_seen` written,
//! only when the outcome is [`Outcome::Done`]; otherwise the general path
//! handles the frame from scratch. [`Outcome::Absent`] means the probe
//! reached an empty slot: no session had the key when the lane looked.
#![forbid(unsafe_code)]

use super::hash::{hash_ports, hash_words};
use super::index::{slot_session, tag_of, TAG_MASK};
use super::l4::L4;
use super::parse::{fast_ip, fast_key, parse_fast, FastKey};
use super::rewrite::Rewrite;
use super::session::{class, flag, Session};
use super::tcp::TcpWindow;
use super::Side;
use super::{Item, Pre, Verdict, BATCH};
use crate::wire::ipv4::{PROTO_TCP, PROTO_UDP};
use crate::wire::layout;
use crate::wire::tcp::{FIN, RST, SYN};

/// What the fast lane made of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Translated.
    Done,
    /// No session has the frame's key (its probe reached an empty slot).
    Absent,
    /// Anything else: the general path decides.
    Other,
}

/// Borrowed state for one batch.
pub(crate) struct Lane<'a> {
    pub hot: &'a mut [Session],
    pub tcp: &'a mut [TcpWindow],
    pub slots: &'a [u32],
    /// The index's home slots (`hash::home`).
    pub homes: usize,
    pub now: u32,
    /// A steady UDP and TCP session ([`class::UDP`],
    /// [`class::TCP_ESTABLISHED`]), and an unanswered UDP one
    /// ([`class::UDP_UNREPLIED`], its first reply's check), is fresh if
    /// seen after these seconds: `now` less its timeout, computed once a
    /// batch ([`Lane::new`]), so a packet's freshness check is one compare.
    /// (Saturating: early on a session seen at second 0 leaves the lane for
    /// the general path, which finds it fresh all the same.)
    pub fresh_after: [u32; 3],
}

impl<'a> Lane<'a> {
    /// The lane over `hot` and `tcp` (the slab's halves) and an index's
    /// `slots` with `homes` home slots, at `now` under the class
    /// `timeouts`.
    #[inline(always)]
    pub fn new(
        hot: &'a mut [Session],
        tcp: &'a mut [TcpWindow],
        (slots, homes): (&'a [u32], usize),
        timeouts: [u32; class::SLOTS],
        now: u32,
    ) -> Self {
        const _: () = assert!(class::TCP_ESTABLISHED == 0 && class::UDP == 2 && class::UDP_UNREPLIED == 4);
        let [tcp_est, _, udp, _, unreplied, ..] = timeouts;
        let fresh_after = [udp, tcp_est, unreplied].map(|t| now.saturating_sub(t));
        Lane { hot, tcp, slots, homes, now, fresh_after }
    }

    /// Parses, looks up and translates a steady-state packet (anything but
    /// `Done` leaves frame and session untouched).
    #[inline(always)]
    pub fn take<const I2O: bool>(&mut self, frame: &mut [u8], seed: u64) -> Outcome {
        let Some((w0, total, proto)) = fast_ip(frame) else {
            return Outcome::Other;
        };
        // One protocol test: from here on each protocol has its own code.
        match proto {
            PROTO_UDP => match fast_key::<true>(frame, w0, total) {
                Some(k) => self.hit_proto::<I2O, true>(frame, k, hash_ports(seed, L4::Udp.code(), k.w0, k.ports())),
                None => Outcome::Other,
            },
            PROTO_TCP => match fast_key::<false>(frame, w0, total) {
                Some(k) => self.hit_proto::<I2O, false>(frame, k, hash_ports(seed, L4::Tcp.code(), k.w0, k.ports())),
                None => Outcome::Other,
            },
            _ => Outcome::Other,
        }
    }

    /// Translates a steady-state packet already keyed by
    /// `parse::fast_lookup_key` (no address test: a hit needs none)
    /// (anything but `Done` leaves it untouched) whose first index slot
    /// from home with the key's tag the batch pipeline already found
    /// (`slot`): that session is tried first, without probing again; only
    /// if it is another flow's (a shared tag) does the probe start from home.
    /// The key by reference: the out-of-line probe reads it where it lies,
    /// where by value each hit copied it to the stack for that call.
    #[inline(always)]
    pub fn hit_at<const I2O: bool>(&mut self, frame: &mut [u8], k: &FastKey, h: u64, slot: u32) -> Outcome {
        let i = slot_session(slot);
        let (ports, udp) = (k.ports(), k.proto() == L4::Udp);
        let found = self.hot.get(i).is_some_and(|x| x.has_key::<I2O>(k.w0, ports, k.proto()));
        match (found, udp) {
            (true, true) => self.translate::<I2O, true>(frame, *k, i),
            (true, false) => self.translate::<I2O, false>(frame, *k, i),
            (false, true) => self.hit_shared_tag::<I2O, true>(frame, k, h),
            (false, false) => self.hit_shared_tag::<I2O, false>(frame, k, h),
        }
    }

    /// [`Lane::hit_at`]'s slot named another flow (one sharing the key's
    /// home slot and 4-bit tag ahead of it: at load 1/2 about one look-up
    /// in 60): the probe from home, out of line so the common case keeps
    /// its registers. (It takes any slot with the key's tag as a candidate,
    /// `Lane::hit_proto`: here, in a large table, a candidate of another
    /// home is a cache miss, but this path is rare.)
    #[cold]
    #[inline(never)]
    fn hit_shared_tag<const I2O: bool, const UDP: bool>(&mut self, frame: &mut [u8], k: &FastKey, h: u64) -> Outcome {
        self.hit_proto::<I2O, UDP>(frame, *k, h)
    }

    /// The hit path for one protocol (UDP or TCP), known at compile time,
    /// so the checks and the rewrite carry no protocol tests.
    #[inline(always)]
    fn hit_proto<const I2O: bool, const UDP: bool>(&mut self, frame: &mut [u8], k: FastKey, h: u64) -> Outcome {
        let (ports, proto) = (k.ports(), if UDP { L4::Udp } else { L4::Tcp });
        // A slot is a candidate when its tag is the key's. Its distance
        // from home (`index`) is not compared: a slot from another home
        // with the same tag (1 in 16 of those passed) costs a session
        // compare, in cache at the single pass's table sizes, less than
        // stepping the distance along costs every probe that passes a slot
        // (-4 instructions a packet).
        let want = tag_of(h);
        let mut pos = super::hash::home(h, self.homes);
        // Each direction's key sits in the session as the packet carries it
        // (see `Session`), so a candidate is confirmed by three compares.
        let i = loop {
            let Some(&s) = self.slots.get(pos) else {
                return Outcome::Other;
            };
            if s & TAG_MASK == want {
                // An empty slot (0) passes when `want` is 0 too: its index
                // wraps past the slab, so the bounds check tells it apart
                // and a hit pays no test for empty.
                let i = slot_session(s);
                match self.hot.get(i) {
                    Some(x) if x.has_key::<I2O>(k.w0, ports, proto) => break i,
                    Some(_) => {}
                    None if s == 0 => return Outcome::Absent,
                    None => return Outcome::Other,
                }
            } else if s == 0 {
                return Outcome::Absent;
            }
            // Past the last slot (a cluster from the index's end, which
            // wraps), the general path's look-up goes on.
            pos += 1;
        };
        self.translate::<I2O, UDP>(frame, k, i)
    }

    /// Session `i`, whose key is the frame's: the steady-state and
    /// freshness checks, then the rewrite.
    #[inline(always)]
    fn translate<const I2O: bool, const UDP: bool>(&mut self, frame: &mut [u8], k: FastKey, i: usize) -> Outcome {
        let Some(s) = self.hot.get_mut(i) else {
            return Outcome::Other;
        };
        if s.flags & flag::FAST == 0 {
            // A UDP flow's first reply: the one state change the lane
            // makes itself, out of line (see `first_udp_reply`).
            return if UDP { self.first_reply::<I2O>(frame, i) } else { Outcome::Other };
        }
        if !UDP && k.flags & (SYN | FIN | RST) != 0 {
            return Outcome::Other;
        }
        // A FAST session's class follows from its protocol (TCP ones are
        // established), so the timeout needs no lookup by class: fresh if
        // seen within it (`fresh_after`).
        debug_assert!(s.class == if UDP { class::UDP } else { class::TCP_ESTABLISHED });
        let [udp, tcp, _] = self.fresh_after;
        if s.last_seen <= if UDP { udp } else { tcp } {
            return Outcome::Other;
        }
        let now = self.now;
        let done = match I2O {
            true => Rewrite::i2o(s).apply_fast::<UDP>(frame),
            false => Rewrite::o2i(s).apply_fast::<UDP>(frame),
        };
        if !done {
            return Outcome::Other;
        }
        s.last_seen = now;
        if !UDP {
            // The RST check's record of what each side sent (see `tcp`).
            // fast_key checked the frame holds a whole TCP header.
            if let (Some(w), Some(t)) = (self.tcp.get_mut(i), frame.first_chunk::<{ layout::TCP_END }>()) {
                const Q: usize = layout::TCP_SEQ;
                let seq = u32::from_be_bytes([t[Q], t[Q + 1], t[Q + 2], t[Q + 3]]);
                let [inside, outside] = &mut w.seq;
                *(if I2O { inside } else { outside }) = seq;
            }
        }
        Outcome::Done
    }

    /// Session `i` of a UDP frame, not [`flag::FAST`]: translated here if
    /// it is the flow's first reply ([`first_udp_reply`]), with the change
    /// the general path's `touch` would make; anything else is `Other`.
    #[cold]
    #[inline(never)]
    fn first_reply<const I2O: bool>(&mut self, frame: &mut [u8], i: usize) -> Outcome {
        let Some(s) = self.hot.get_mut(i) else {
            return Outcome::Other;
        };
        let [_, _, unreplied] = self.fresh_after;
        if !first_udp_reply::<I2O>(s) || s.last_seen <= unreplied {
            return Outcome::Other;
        }
        let done = match I2O {
            true => Rewrite::i2o(s).apply_fast::<true>(frame),
            false => Rewrite::o2i(s).apply_fast::<true>(frame),
        };
        if !done {
            return Outcome::Other;
        }
        s.last_seen = self.now;
        s.flags |= flag::REPLIED;
        s.class = class::UDP;
        s.refresh_fast();
        Outcome::Done
    }
}

/// True if a UDP frame arriving in direction `I2O` for session `s` (not
/// [`flag::FAST`]) is its flow's first reply and all that keeps it off the
/// lane: unanswered UDP, not hairpinned, the frame from the side that did
/// not open it. Translating it then makes the change the general path's
/// `touch` makes (answered, the UDP class and its timeout, fast from now
/// on, and no longer evictable: `session`). Request
/// and response flows (DNS) pay the general path once instead of twice.
#[inline(always)]
fn first_udp_reply<const I2O: bool>(s: &Session) -> bool {
    s.class == class::UDP_UNREPLIED
        && s.flags & (flag::REPLIED | flag::HAIRPIN) == 0
        && (s.flags & flag::INBOUND != 0) == I2O
}

/// The fast lane for tables that fit in cache: each frame parsed, looked up
/// and rewritten in one pass. Kept out of line so the loop has the
/// registers to itself. Returns a mask of the frames left for the general
/// path (bit i: frame i), whose items it fills in; the rest were forwarded.
#[inline(never)]
pub(crate) fn single_pass<const I2O: bool, F: AsMut<[u8]>>(
    lane: &mut Lane<'_>,
    seed: u64,
    frames: &mut [F],
    verdicts: &mut [Verdict],
    items: &mut [Item],
) -> u64 {
    let out = if I2O { Side::Outside } else { Side::Inside };
    let (mut pending, mut absent) = (0u64, 0u64);
    // Equal lengths up front, so the loop runs on one counter.
    let n = frames.len().min(verdicts.len()).min(BATCH);
    let (Some(frames), Some(verdicts)) = (frames.get_mut(..n), verdicts.get_mut(..n)) else { return 0 };
    // Every frame's verdict is "forwarded" until the general path writes
    // the misses' own: a fill of the batch instead of a store in the loop
    // (whose registers are short).
    verdicts.fill(Verdict::Forward(out));
    // A miss's position from its address: the loop keeps no counter (a
    // register the hit path is short of; the misses' loop needs the
    // frames' start anyway).
    const { assert!(std::mem::size_of::<F>() > 0, "frames of no size have no positions") };
    let base = frames.as_ptr() as usize;
    let at = |f: &F| (std::ptr::from_ref(f) as usize - base) / std::mem::size_of::<F>();
    for f in frames.iter_mut() {
        match lane.take::<I2O>(f.as_mut(), seed) {
            Outcome::Done => {}
            Outcome::Absent => {
                let i = at(f);
                pending |= 1 << i;
                absent |= 1 << i;
            }
            Outcome::Other => pending |= 1 << at(f),
        }
    }
    misses::<I2O, F>(seed, frames, items, pending, absent);
    pending
}

/// [`single_pass`]'s misses, parsed again for the general path (holding
/// their keys through the loop would cost the common case registers).
/// Out of line: the hit loop's registers do not depend on this one.
#[inline(never)]
fn misses<const I2O: bool, F: AsMut<[u8]>>(seed: u64, frames: &mut [F], items: &mut [Item], pending: u64, absent: u64) {
    let mut m = pending;
    while m != 0 {
        let i = m.trailing_zeros() as usize;
        m &= m - 1;
        if let (Some(f), Some(it)) = (frames.get_mut(i), items.get_mut(i)) {
            it.st = Pre::Later;
            if let Some(k) = parse_fast(f.as_mut()) {
                it.k = k;
                it.h = hash_words(seed, k.w0, k.w1);
                it.st = if absent & (1 << i) != 0 { Pre::New } else { Pre::Flow };
                if I2O {
                    it.hm = crate::nat::keys::imap_wire(seed, k.src_le(), k.sport_le(), k.proto());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::index::Index;
    use crate::nat::keys;
    use crate::nat::rewrite::session_deltas;
    use crate::testing::frames::{tcp, udp};
    use crate::wire::tcp::ACK;

    const SEED: u64 = 7;
    const INSIDE: u32 = 0x6440_0001;
    const REMOTE: u32 = 0xc633_6401;
    const PUBLIC: u32 = 0xcb00_7101;

    /// A session of `proto` from INSIDE:4000 to REMOTE:53 as PUBLIC:1024,
    /// of class `class` with `flags`, seen at second 100.
    fn session(proto: L4, class: u8, flags: u8) -> Session {
        let (ip_delta, l4_delta) = session_deltas(INSIDE.into(), 4000.into(), PUBLIC.into(), 1024.into(), proto);
        Session {
            inside_ip: INSIDE.into(),
            remote_ip: REMOTE.into(),
            public_ip: PUBLIC.into(),
            inside_port: 4000.into(),
            remote_port: 53.into(),
            public_port: 1024.into(),
            proto,
            flags,
            class,
            last_seen: 100,
            ip_delta,
            l4_delta,
            ..Session::default()
        }
    }

    /// The lane's freshness check (`fresh_after`): a steady session seen
    /// less than its timeout ago is translated; one seen its timeout ago
    /// or more is the general path's (gone, unless the sweep, which
    /// reclaims it in that second, is behind).
    #[test]
    fn the_lane_takes_a_steady_session_within_its_timeout_and_leaves_it_at_it() {
        for (proto, cls, timeout) in [(L4::Udp, class::UDP, 30), (L4::Tcp, class::TCP_ESTABLISHED, 300)] {
            let s = session(proto, cls, flag::FAST | flag::REPLIED);
            let mut index = Index::with_load(16, 1, 4);
            index.insert(keys::i2o(SEED, INSIDE, 4000, REMOTE, 53, proto), 0);
            let mut timeouts = [0; class::SLOTS];
            timeouts[usize::from(cls)] = timeout;
            for (now, taken) in [(100, true), (99 + timeout, true), (100 + timeout, false), (200 + timeout, false)] {
                let (mut hot, mut windows) = (vec![s], vec![TcpWindow::NEW]);
                let mut lane = Lane::new(&mut hot, &mut windows, index.raw(), timeouts, now);
                let mut f = if proto == L4::Udp {
                    udp(INSIDE, 4000, REMOTE, 53, b"q")
                } else {
                    tcp(INSIDE, 4000, REMOTE, 53, ACK)
                };
                let got = lane.take::<true>(&mut f, SEED);
                assert_eq!(got == Outcome::Done, taken, "{proto:?} at {now}: {got:?}");
                assert_eq!(hot[0].last_seen, if taken { now } else { 100 });
            }
        }
    }

    /// The same for an unanswered UDP session's first reply
    /// ([`first_udp_reply`]): taken within the unreplied timeout, left to
    /// the general path at it.
    #[test]
    fn the_lane_takes_a_first_reply_within_the_unreplied_timeout_and_leaves_it_at_it() {
        let s = session(L4::Udp, class::UDP_UNREPLIED, 0);
        let mut index = Index::with_load(16, 1, 4);
        index.insert(keys::o2i(SEED, PUBLIC, 1024, REMOTE, 53, L4::Udp), 0);
        let mut timeouts = [0; class::SLOTS];
        timeouts[usize::from(class::UDP_UNREPLIED)] = 30;
        for (now, taken) in [(100, true), (129, true), (130, false), (230, false)] {
            let (mut hot, mut windows) = (vec![s], vec![TcpWindow::NEW]);
            let mut lane = Lane::new(&mut hot, &mut windows, index.raw(), timeouts, now);
            let mut f = udp(REMOTE, 53, PUBLIC, 1024, b"r");
            let got = lane.take::<false>(&mut f, SEED ^ crate::nat::O2I_SALT);
            assert_eq!(got == Outcome::Done, taken, "at {now}: {got:?}");
            assert_eq!(hot[0].flags & flag::REPLIED != 0, taken, "at {now}");
        }
    }
}
