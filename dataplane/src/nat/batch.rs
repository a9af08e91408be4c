//! The batch driver: a batch of frames received on one side goes through
//! the fast lane ([`super::fast`]) first, then whatever it left goes through
//! the general path ([`super::lookup`]) in batch order.
//!
//! Invariant: the result equals processing the frames one at a time; a
//! frame the fast lane found no session for is looked up again only if a
//! session made later in the batch may have its key ([`Created`]).
#![forbid(unsafe_code)]

use super::*;

/// The lookup keys of the sessions made since the batch's fast lane ran,
/// as a Bloom filter of one bit per key and direction (1024 bits each, by
/// the top ten bits of the key's hash): a frame the fast lane found no
/// session for is looked up again only if its bit is set, that is if a
/// session made in between may have its key. With up to 64 sessions made
/// in a batch about 3% of a batch's new flows are looked up again (11%
/// with 256 bits: each such look-up costs a probe and the general path's
/// dispatch, about 70 instructions).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Created {
    i2o: [u64; 16],
    o2i: [u64; 16],
}

impl Created {
    #[inline(always)]
    fn bit(h: u64) -> (usize, u64) {
        let b = h >> 54;
        ((b >> 6) as usize, 1 << (b & 63))
    }

    #[inline(always)]
    pub(super) fn add(&mut self, hi: u64, ho: u64) {
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
    /// The key. The prefetching path reads it for the look-up only
    /// ([`super::parse::fast_lookup_key`]: no address test, no TTL) and
    /// completes a miss's ([`super::parse::complete_key`]) before the
    /// general path takes it: `Pre::New` and `Pre::Flow` keys are whole.
    pub(crate) k: FastKey,
    pub(crate) h: u64,
    /// The prefetching path's first slot from home with the key's tag (0:
    /// the scan reached an empty slot first, and the item is `Pre::New`,
    /// or ran past the last slot, and the hit probes from home).
    pub(crate) slot: u32,
    pub(crate) st: Pre,
    /// A `Pre::New` inside-to-outside item's endpoint hash in the mapping
    /// index (`keys::imap`): worked out where the batch asks for its slot,
    /// taken by the new session's look-up.
    pub(crate) hm: u64,
}

impl Item {
    pub(super) const EMPTY: Item =
        Item { k: FastKey { w0: 0, w1: 0, flags: 0, ttl: 0, l4: L4::Udp }, h: 0, slot: 0, st: Pre::Later, hm: 0 };
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

impl Engine {
    /// Processes a batch of frames received on `side` at `now` (seconds).
    /// `verdicts` gets one entry per frame.
    #[inline(never)]
    pub fn process<F: AsMut<[u8]>>(&mut self, side: Side, now: u32, frames: &mut [F], verdicts: &mut [Verdict]) {
        if self.standby {
            return self.standby_drop(side, frames.len().min(verdicts.len()), verdicts);
        }
        self.expire(now, EXPIRE_BUDGET);
        self.alg.new_batch();
        for (k, (fs, vs)) in frames.chunks_mut(BATCH).zip(verdicts.chunks_mut(BATCH)).enumerate() {
            self.alg.chunk_base = k * BATCH;
            self.process_chunk(side, now, fs, vs);
        }
    }

    /// Processes one frame (tests, tools; the workers use [`Engine::process`]).
    pub fn process_one(&mut self, side: Side, now: u32, frame: &mut [u8]) -> Verdict {
        if self.standby {
            let mut v = [Verdict::Drop(DropReason::Standby)];
            self.standby_drop(side, 1, &mut v);
            return v[0];
        }
        self.expire(now, EXPIRE_BUDGET);
        self.alg.new_batch();
        self.alg.chunk_base = 0;
        let mut v = [Verdict::Drop(DropReason::Malformed)];
        self.process_chunk(side, now, &mut [frame], &mut v);
        v[0]
    }

    /// An HA standby forwards nothing: `n` frames dropped as `standby`.
    #[cold]
    #[inline(never)]
    fn standby_drop(&mut self, side: Side, n: usize, verdicts: &mut [Verdict]) {
        match side {
            Side::Inside => self.counters.rx_i2o += n as u64,
            Side::Outside => self.counters.rx_o2i += n as u64,
        }
        for v in verdicts.iter_mut().take(n) {
            *v = Verdict::Drop(DropReason::Standby);
            self.counters.drop(DropReason::Standby);
        }
    }

    #[inline(always)]
    pub(super) fn process_chunk<F: AsMut<[u8]>>(
        &mut self,
        side: Side,
        now: u32,
        frames: &mut [F],
        verdicts: &mut [Verdict],
    ) {
        // One copy of the loop per direction: no per-packet side tests.
        match side {
            Side::Inside => self.process_dir::<true, F>(now, frames, verdicts),
            Side::Outside => self.process_dir::<false, F>(now, frames, verdicts),
        }
    }

    pub(super) fn process_dir<const I2O: bool, F: AsMut<[u8]>>(
        &mut self,
        now: u32,
        frames: &mut [F],
        verdicts: &mut [Verdict],
    ) {
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
        let two_lines = match side {
            Side::Inside => self.i2o.asks_two_lines(),
            Side::Outside => self.o2i.asks_two_lines(),
        };
        let (slots, homes) = match side {
            Side::Inside => self.i2o.raw(),
            Side::Outside => self.o2i.raw(),
        };
        let (imap, cold) = (&self.imap, &self.sessions.cold);
        let mut lane =
            fast::Lane::new(&mut self.sessions.hot, &mut self.sessions.tcp, (slots, homes), self.class_timeout, now);
        // Bit i set: frame i is left for the general path.
        let pending: u64 = if self.prefetch {
            // Large tables: a three-stage pipeline over the batch, so the
            // cache misses of its dependent loads (index slot, then the
            // session it names) overlap instead of queueing: parse and hash
            // every frame and prefetch its home slot; then scan from each
            // home slot (its cache line in cache by now) to the first slot
            // with the key's tag and distance and prefetch the session it names; then
            // translate, starting from that slot.
            for (f, it) in frames.iter_mut().zip(items.iter_mut()) {
                // The address test and the TTL wait for a miss (`Item::k`).
                match fast_lookup_key(f.as_mut()) {
                    Some(k) => {
                        let h = hash::hash_words(seed, k.w0, k.w1);
                        it.k = k;
                        it.h = h;
                        index::prefetch_from(lane.slots, hash::home(h, homes), two_lines);
                        it.st = Pre::Fast;
                    }
                    None => it.st = Pre::Later,
                }
            }
            // Bit i set: the lane's hit tries item i (its probe found a
            // candidate, or ran past the last slot, which the hit's probe
            // takes from home); every other item is the general path's.
            let mut fast = 0u64;
            for (i, (it, _)) in items.iter_mut().zip(frames.iter()).enumerate() {
                if it.st == Pre::Fast {
                    // The probe's first candidate from home: an empty slot
                    // (no session has the key) or one with the key's tag and distance
                    // (prefetch the session it names; the hit starts from
                    // it). The home slot's cache line is in cache by now;
                    // the probe runs past its end for the few keys whose
                    // candidate lies in the next line (a miss here, but the
                    // session is still fetched ahead of the hit).
                    let (mut pos, mut want) = (hash::home(it.h, homes), index::tag_of(it.h));
                    let far = index::probe_key(want, index::FAR);
                    // (Past the last slot it stops: the hit's probe hands
                    // such a key to the general path.)
                    let first = loop {
                        match lane.slots.get(pos) {
                            Some(&s) if s == 0 || s & !index::IDX_MASK == want => break Some(s),
                            Some(_) => {
                                pos += 1;
                                want = index::next_probe_key(want, far);
                            }
                            None => break None,
                        }
                    };
                    it.slot = first.unwrap_or(0);
                    if first == Some(0) {
                        it.st = Pre::New;
                        // A new flow from inside looks its endpoint's
                        // mapping up (`mapping`): its slot, asked for now,
                        // is in cache by then.
                        if I2O {
                            it.hm = keys::imap_wire(seed, it.k.src_le(), it.k.sport_le(), it.k.proto());
                            imap.prefetch(it.hm);
                        }
                    } else {
                        fast |= 1 << i;
                        if let Some(slot) = first {
                            let i = index::slot_session(slot);
                            if let Some(s) = lane.hot.get(i) {
                                crate::xdp::prefetch::read(s);
                            }
                            // TCP: the window table the hit writes, too.
                            if it.k.proto() == L4::Tcp {
                                if let Some(w) = lane.tcp.get(i) {
                                    crate::xdp::prefetch::read(w);
                                }
                            }
                        }
                    }
                }
            }
            // Every frame "forwarded" until the general path writes the
            // misses' own verdicts: one fill, no store in the loop.
            if let Some(vs) = verdicts.get_mut(..n as usize) {
                vs.fill(Verdict::Forward(if I2O { Side::Outside } else { Side::Inside }));
            }
            // Only the frames with a verdict (the first `n`): each pending
            // but the lane's hits, translated here. Only the items with a
            // candidate are visited, so a batch of new flows skips the loop
            // (a walk of every item cost each new flow 13 instructions, and
            // this one's layout moved the new-session path's registers:
            // 822.4 -> 798.4 a new session against the walk with the key
            // by reference, 820.4 before both; an established packet at
            // 100k flows pays the mask and the bit walk, 184.2 -> 192.7,
            // 186.1 before both).
            let all = if n < 64 { (1u64 << n) - 1 } else { u64::MAX };
            let mut pending = all & !fast;
            let mut m = all & fast;
            while m != 0 {
                let i = m.trailing_zeros() as usize;
                m &= m - 1;
                if let (Some(f), Some(it)) = (frames.get_mut(i), items.get_mut(i)) {
                    match lane.hit_at::<I2O>(f.as_mut(), &it.k, it.h, it.slot) {
                        fast::Outcome::Done => continue,
                        // A shared tag: the lane's probe from home found no
                        // session. The general path's look-up takes it from
                        // there (`Pre::New` would take the item's mapping
                        // hash, which the second stage works out only for a
                        // probe that reached an empty slot).
                        fast::Outcome::Absent => it.st = Pre::Flow,
                        fast::Outcome::Other => {
                            it.st = Pre::Flow;
                            // A TCP packet the lane leaves (a handshake's, a
                            // FIN's) has the general path read the cold half
                            // of its session, the candidate's but for a shared
                            // tag (window scales, the rule's extras:
                            // `tcp_window`): asked for now, it arrives while
                            // the rest of the batch goes through the lane. Both
                            // ends of its 12 bytes, which may lie on two lines:
                            // the links (a shorter timeout re-files the session)
                            // and the scales and extras (bytes 9-11, never split).
                            if it.k.proto() == L4::Tcp {
                                if let Some(c) = cold.get(index::slot_session(it.slot)) {
                                    crate::xdp::prefetch::read(c);
                                    crate::xdp::prefetch::read(&c.ext);
                                }
                            }
                        }
                    }
                }
                pending |= 1 << i;
            }
            // The misses' keys completed (see `Item::k`).
            let mut m = pending;
            while m != 0 {
                let i = m.trailing_zeros() as usize;
                m &= m - 1;
                if let (Some(f), Some(it)) = (frames.get_mut(i), items.get_mut(i)) {
                    if it.st != Pre::Later && !complete_key(&mut it.k, f.as_mut()) {
                        it.st = Pre::Later;
                    }
                }
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
        // (Cleared only for a batch that has any: 256 bytes.)
        if pending != 0 {
            self.created = Created::default();
        }
        let mut m = pending;
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            let (Some(f), Some(v), Some(it)) = (frames.get_mut(i), verdicts.get_mut(i), items.get(i)) else {
                continue;
            };
            let frame = f.as_mut();
            // A packet the FTP ALG grows past its frame: which frame it is.
            self.alg.frame = i;
            *v = match it.st {
                // Still absent unless this batch made a session that may have
                // its key: then it is looked up again.
                Pre::New if !self.created.may_have::<I2O>(it.h) => {
                    let p = it.k.to_parsed();
                    let h = Some(it.h);
                    match side {
                        Side::Inside => self.miss_i2o(now, frame, &p, h, Some(it.hm)),
                        Side::Outside => self.miss_o2i(now, frame, &p),
                    }
                    .unwrap_or_else(|v| v)
                }
                Pre::Flow | Pre::New => self.flow(side, now, frame, &it.k.to_parsed(), it.h),
                _ => match parse(frame, side) {
                    Ok(p) if p.kind == Kind::Flow => {
                        let h = match side {
                            Side::Inside => self.h_i2o(p.src, p.sport, p.dst, p.dport, p.proto),
                            Side::Outside => self.h_o2i(p.dst, p.dport, p.src, p.sport, p.proto),
                        };
                        let v = if p.first_frag && self.workers > 1 {
                            self.first_fragment(side, now, frame, &p, h)
                        } else {
                            self.flow(side, now, frame, &p, h)
                        };
                        // Its later fragments that came first follow it now (`frag`).
                        if p.first_frag && self.hold.waiting() {
                            self.release_held(now, &p);
                        }
                        v
                    }
                    Ok(p) => self.slow(side, now, frame, &p, None),
                    Err(verdict) => verdict,
                },
            };
            self.count(*v);
        }
        // The batch's new sessions' o2i and omap entries, held back while
        // their slots' lines arrived (`LaterIndex::insert_later`).
        self.o2i.flush();
        self.omap.flush();
        self.scratch = Some(items);
    }

    pub(super) fn count(&mut self, v: Verdict) {
        match v {
            Verdict::Forward(Side::Outside) => self.counters.fwd_i2o += 1,
            Verdict::Forward(Side::Inside) => self.counters.fwd_o2i += 1,
            Verdict::Drop(r) | Verdict::Refuse(r) => self.counters.drop(r),
            Verdict::PassToKernel(r) => self.counters.pass(r),
            Verdict::HandOff { .. } => self.counters.handoffs += 1,
            Verdict::Held => {} // fragments_held
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::frames::{ip, tuple, udp};

    /// 100.64.0.0/10 translated to one address.
    fn one_address() -> EngineParams {
        let rule = Rule {
            matches: RuleMatch { src: vec![Prefix::new(ip("100.64.0.0"), 10)], ..RuleMatch::default() },
            action: RuleAction::Translate { pool: 0 },
        };
        EngineParams::single(vec![PoolParams::cgnat("t", vec![ip("203.0.113.1")])], vec![rule])
    }

    /// The flow indexes' loads: 1/4 in the tables the single pass serves,
    /// 1/2 above them (the mapping indexes 1/2 in both).
    #[test]
    fn the_single_pass_tables_flow_indexes_take_a_quarter_load() {
        for (max, flow, map) in [(PREFETCH_ABOVE_SESSIONS, 4, 2), (PREFETCH_ABOVE_SESSIONS + 1, 2, 2)] {
            let mut p = one_address();
            p.max_sessions = max;
            let mut e = Engine::new(&p).expect("engine");
            let m = max as usize;
            let homes = [e.i2o.raw().1, e.o2i.raw().1, e.imap.raw().1, e.omap.raw().1];
            for (h, den) in homes.into_iter().zip([flow, flow, map, map]) {
                assert!(h >= m * den && h <= m * den + 1, "{max} sessions: {h} homes for load 1/{den}");
            }
        }
    }

    /// Every port block a new session takes is counted (`blocks_allocated`),
    /// the first of each subscriber and the next when one fills.
    #[test]
    fn the_blocks_new_sessions_take_are_counted() {
        let mut e = Engine::new(&one_address()).expect("engine");
        let mut frames: Vec<Vec<u8>> = (0..600u16)
            .map(|k| udp(ip("100.64.0.2"), 2000 + k, ip("198.51.100.1"), 53, b"q"))
            .chain((0..3u16).map(|k| udp(ip("100.64.0.3"), 2000 + k, ip("198.51.100.1"), 53, b"q")))
            .collect();
        for f in &mut frames {
            assert_eq!(e.process_one(Side::Inside, 1, f), Verdict::Forward(Side::Outside));
        }
        // 600 ports of blocks of 512 for the first, one block for the second.
        assert_eq!(e.counters().blocks_allocated, 3);
    }

    /// A batch's new sessions' o2i and omap inserts, held back while their
    /// slots' lines arrive, are written at the batch's end: none is left
    /// held for the next batch, batch after batch.
    #[test]
    fn a_batch_writes_its_held_back_inserts_at_its_end() {
        let mut e = Engine::new(&one_address()).expect("engine");
        for round in 0..2u16 {
            let mut frames: Vec<Vec<u8>> = (0..40u16)
                .map(|k| udp(ip("100.64.0.2"), 2000 + round * 100 + k, ip("198.51.100.1"), 53, b"q"))
                .collect();
            let mut v = vec![Verdict::Drop(DropReason::Malformed); frames.len()];
            e.process(Side::Inside, 1, &mut frames, &mut v);
            assert!(v.iter().all(|x| *x == Verdict::Forward(Side::Outside)), "{v:?}");
            assert_eq!((e.o2i.held(), e.omap.held()), (0, 0), "after batch {round}");
            let n = 40 * (usize::from(round) + 1);
            assert_eq!((e.o2i.len(), e.omap.len()), (n, n));
        }
    }

    /// New sessions evicted by later ones of the same batch, their o2i and
    /// omap inserts still held back (`LaterIndex::insert_later`), leave no entry
    /// behind: each index holds exactly the live sessions after every
    /// batch, and the ones kept answer through the fast lane's o2i slots.
    #[test]
    fn a_batch_that_evicts_its_own_new_sessions_leaves_the_indexes_exact() {
        let mut p = one_address();
        p.max_sessions = 4;
        let mut e = Engine::new(&p).expect("engine");
        let mut kept = Vec::new();
        for round in 0..3u16 {
            let now = 1 + u32::from(round);
            let mut frames: Vec<Vec<u8>> = (0..16u16)
                .map(|k| udp(ip("100.64.0.2"), 1000 + round * 100 + k, ip("198.51.100.1"), 53, b"q"))
                .collect();
            let mut v = vec![Verdict::Drop(DropReason::Malformed); frames.len()];
            e.process(Side::Inside, now, &mut frames, &mut v);
            assert!(v.iter().all(|x| *x == Verdict::Forward(Side::Outside)), "{v:?}");
            assert!(e.counters.sessions_evicted >= 12 * u64::from(round + 1));
            assert_eq!(e.live_sessions(), 4);
            assert_eq!(e.i2o.len(), 4, "i2o entries after batch {round}");
            assert_eq!(e.o2i.len(), 4, "o2i entries after batch {round}");
            assert_eq!(e.omap.len(), 4, "omap entries after batch {round}");
            kept = frames.split_off(12);
        }
        let mut replies: Vec<Vec<u8>> = kept
            .iter()
            .map(|f| {
                let (public, pport, remote, rport) = tuple(f);
                udp(remote, rport, public, pport, b"r")
            })
            .collect();
        let (created, evicted) = (e.counters.sessions_created, e.counters.sessions_evicted);
        let mut v = vec![Verdict::Drop(DropReason::Malformed); replies.len()];
        e.process(Side::Outside, 4, &mut replies, &mut v);
        assert!(v.iter().all(|x| *x == Verdict::Forward(Side::Inside)), "{v:?}");
        assert_eq!(e.counters.fwd_o2i, 4);
        // Each reply found its own session: none made again for it.
        assert_eq!((e.counters.sessions_created, e.counters.sessions_evicted), (created, evicted));
        assert_eq!(e.live_sessions(), 4);
    }

    /// Each UDP flow's first reply, taken by the fast lane in a batch, makes
    /// its session answered (the UDP class, fast from then on, no longer
    /// evictable) without touching its cold half; the sweep re-files them
    /// when it reaches their (unreplied) deadline, keeping them for the
    /// UDP timeout.
    #[test]
    fn first_replies_in_a_batch_answer_their_sessions_for_the_udp_timeout() {
        let p = one_address();
        let mut e = Engine::new(&p).expect("engine");
        let mut frames: Vec<Vec<u8>> =
            (0..16u16).map(|k| udp(ip("100.64.0.2"), 1000 + k, ip("198.51.100.1"), 53, b"q")).collect();
        let mut v = vec![Verdict::Drop(DropReason::Malformed); frames.len()];
        e.process(Side::Inside, 1, &mut frames, &mut v);
        let unanswered = udp(ip("100.64.0.2"), 999, ip("198.51.100.1"), 53, b"q");
        let mut one = [unanswered];
        e.process(Side::Inside, 1, &mut one, &mut v[..1]);
        let mut replies: Vec<Vec<u8>> = frames
            .iter()
            .map(|f| {
                let (public, pport, remote, rport) = tuple(f);
                udp(remote, rport, public, pport, b"r")
            })
            .collect();
        e.process(Side::Outside, 2, &mut replies, &mut v);
        assert!(v.iter().all(|x| *x == Verdict::Forward(Side::Inside)), "{v:?}");
        let answered = |e: &Engine| {
            e.sessions.hot.iter().filter(|s| s.class == session::class::UDP && s.flags & flag::FAST != 0).count()
        };
        assert_eq!(answered(&e), 16);
        // Filed in the same second before it, answered: passed over.
        let victim = e.sessions.evictable(2, &e.class_timeout);
        assert_eq!(
            victim.map(|i| e.sessions.get(i).inside_port.get()),
            Some(999),
            "only the unanswered flow is evictable"
        );
        assert_eq!(e.flush(2, |x| x.inside.1 % 2 == 0, None), 8);
        let (unreplied, udp_secs) = (e.params.timeouts.udp_unreplied_secs, e.params.timeouts.udp_secs);
        e.expire(1 + unreplied, 1000);
        assert_eq!(e.live_sessions(), 8, "the unanswered flow expired, the answered ones stay");
        e.expire(2 + udp_secs, 1000);
        assert_eq!(e.live_sessions(), 0);
    }

    /// An idle worker sleeps short while its sweep is behind
    /// (`Worker::sleep`): behind until every due second is swept.
    #[test]
    fn the_sweep_is_behind_until_every_due_session_is_reclaimed() {
        let mut e = Engine::new(&one_address()).expect("engine");
        let mut frames: Vec<Vec<u8>> =
            (0..40u16).map(|k| udp(ip("100.64.0.2"), 1000 + k, ip("198.51.100.1"), 53, b"q")).collect();
        let mut v = vec![Verdict::Drop(DropReason::Malformed); frames.len()];
        e.process(Side::Inside, 1, &mut frames, &mut v);
        e.expire(1, 1000);
        assert!(!e.sweep_behind(1));
        let due = 1 + e.params.timeouts.udp_unreplied_secs;
        assert!(e.sweep_behind(due), "seconds have come since");
        e.expire(due, 16);
        assert!(e.sweep_behind(due), "a budget of 16 leaves 24 sessions due");
        assert_eq!(e.live_sessions(), 24);
        e.expire(due, 1000);
        assert_eq!(e.live_sessions(), 0);
        assert!(!e.sweep_behind(due));
    }
}
