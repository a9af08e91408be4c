//! The fast lane's hit path: a fast-lane frame (see `parse::parse_fast`)
//! whose session is in its steady state. It borrows the session slab, one
//! index and the public addresses once per batch, so their pointers stay in
//! registers across the batch instead of being reloaded through the engine
//! for every packet.
//!
//! Invariant: `hit` changes nothing (frame or session) unless it returns
//! `Some`; on `None` the general path handles the packet from scratch.
#![forbid(unsafe_code)]

use super::index::{tag_of, IDX_MASK};
use super::parse::{parse_fast, FastKey};
use super::session::pcode;
use super::session::{flag, Session};
use super::{rewrite_fast_proto, Side};
use super::{Item, Pre, Verdict};
use crate::wire::tcp::{FIN, RST, SYN};

/// Borrowed state for one batch.
pub(crate) struct Lane<'a> {
    pub hot: &'a mut [Session],
    pub slots: &'a [u32],
    pub mask: usize,
    pub timeouts: [u32; 4],
    pub now: u32,
}

impl Lane<'_> {
    /// Translates a steady-state packet, or returns `None` untouched.
    #[inline(always)]
    pub fn hit<const I2O: bool>(&mut self, frame: &mut [u8], k: FastKey, h: u64) -> Option<Side> {
        let done = match k.pcode() {
            pcode::UDP => self.hit_proto::<I2O, true>(frame, k, h),
            _ => self.hit_proto::<I2O, false>(frame, k, h),
        };
        done.then_some(if I2O { Side::Outside } else { Side::Inside })
    }

    /// [`Lane::hit`] for one protocol (UDP or TCP), known at compile time,
    /// so the checks and the rewrite carry no protocol tests.
    #[inline(always)]
    fn hit_proto<const I2O: bool, const UDP: bool>(&mut self, frame: &mut [u8], k: FastKey, h: u64) -> bool {
        let (ports, code) = (k.ports(), k.code());
        let tag = tag_of(h);
        let mut pos = super::hash::bucket(h, self.mask);
        // Each direction's key sits in the session as the packet carries it
        // (see `Session`), so a candidate is confirmed by three compares.
        let i = loop {
            let Some(&s) = self.slots.get(pos) else {
                return false;
            };
            if s == 0 {
                return false;
            }
            if s & !IDX_MASK == tag {
                let i = ((s & IDX_MASK) - 1) as usize;
                let Some(x) = self.hot.get(i) else {
                    return false;
                };
                if x.addr_word::<I2O>() == k.w0 && x.port_pair::<I2O>() == ports && x.code == code {
                    break i;
                }
            }
            pos = (pos + 1) & self.mask;
        };
        let Some(s) = self.hot.get_mut(i) else {
            return false;
        };
        let timeout = self.timeouts.get(usize::from(s.class & 3)).copied().unwrap_or(0);
        let now = self.now;
        let fresh = now.wrapping_sub(s.last_seen) < timeout;
        let steady = s.flags & flag::FAST != 0 && (UDP || k.flags & (SYN | FIN | RST) == 0);
        if !(fresh && steady) {
            return false;
        }
        s.last_seen = now;
        match I2O {
            true => rewrite_fast_proto::<UDP>(frame, true, s.public_ip, s.public_port, s.ip_delta, s.l4_delta),
            false => rewrite_fast_proto::<UDP>(frame, false, s.inside_ip, s.inside_port, !s.ip_delta, !s.l4_delta),
        }
    }
}

/// The fast lane for tables that fit in cache: each frame parsed, looked up
/// and rewritten in one pass. Frames it does not take are marked for the
/// general path. Kept out of line so the loop has the registers to itself.
/// Returns the number of frames left for the general path (the rest were
/// forwarded).
#[inline(never)]
pub(crate) fn single_pass<const I2O: bool, F: AsMut<[u8]>>(
    lane: &mut Lane<'_>,
    seed: u64,
    frames: &mut [F],
    verdicts: &mut [Verdict],
    items: &mut [Item],
) -> usize {
    let out = if I2O { Side::Outside } else { Side::Inside };
    let mut pending = 0usize;
    for ((f, v), it) in frames.iter_mut().zip(verdicts.iter_mut()).zip(items.iter_mut()) {
        let frame = f.as_mut();
        let hit = match parse_fast(frame) {
            Some(k) => lane.hit::<I2O>(frame, k, super::hash::hash_words(seed, k.w0, k.w1)).is_some(),
            None => false,
        };
        if hit {
            *v = Verdict::Forward(out);
            it.st = Pre::Done;
        } else {
            // Parsed again rather than kept: holding the key through `hit`
            // costs the common case registers.
            it.st = Pre::Later;
            if let Some(k) = parse_fast(frame) {
                it.k = k;
                it.h = super::hash::hash_words(seed, k.w0, k.w1);
                it.st = Pre::Flow;
            }
            pending += 1;
        }
    }
    pending
}
