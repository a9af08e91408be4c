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
use super::session::{flag, pcode, Session};
use super::{rewrite_fast_lane, Side};
use super::{Item, Pre, Verdict};
use crate::wire::tcp::{FIN, RST, SYN};

/// Borrowed state for one batch.
pub(crate) struct Lane<'a> {
    pub hot: &'a mut [Session],
    pub slots: &'a [u32],
    pub mask: usize,
    pub ips: &'a [u32],
    pub timeouts: [u32; 4],
    pub now: u32,
}

impl Lane<'_> {
    /// Translates a steady-state packet, or returns `None` untouched.
    #[inline(always)]
    pub fn hit<const I2O: bool>(&mut self, frame: &mut [u8], k: FastKey, h: u64) -> Option<Side> {
        let (src, dst, sport, dport, pc) = (k.src(), k.dst(), k.sport(), k.dport(), k.pcode());
        let tag = tag_of(h);
        let mut pos = super::hash::bucket(h, self.mask);
        let i = loop {
            let s = *self.slots.get(pos)?;
            if s == 0 {
                return None;
            }
            if s & !IDX_MASK == tag {
                let i = ((s & IDX_MASK) - 1) as usize;
                let x = self.hot.get(i)?;
                let matched = match I2O {
                    true => {
                        x.inside_ip == src
                            && x.remote_ip == dst
                            && x.inside_port == sport
                            && x.remote_port == dport
                            && x.pcode() == pc
                    }
                    false => {
                        x.remote_ip == src
                            && x.remote_port == sport
                            && x.public_port == dport
                            && x.pcode() == pc
                            && (if x.flags & flag::NO_NAT != 0 {
                                x.inside_ip
                            } else {
                                self.ips.get(usize::from(x.addr())).copied().unwrap_or(0)
                            }) == dst
                    }
                };
                if matched {
                    break i;
                }
            }
            pos = (pos + 1) & self.mask;
        };
        let s = self.hot.get_mut(i)?;
        let timeout = self.timeouts.get(usize::from(s.class & 3)).copied().unwrap_or(0);
        let now = self.now;
        let fresh = now.wrapping_sub(s.last_seen) < timeout;
        let steady = s.flags & flag::FAST != 0 && (pc != pcode::TCP || k.tcp_flags() & (SYN | FIN | RST) == 0);
        if !(fresh && steady) {
            return None;
        }
        s.last_seen = now;
        match I2O {
            true => {
                let pub_ip = if s.flags & flag::NO_NAT != 0 {
                    s.inside_ip
                } else {
                    self.ips.get(usize::from(s.addr())).copied().unwrap_or(0)
                };
                rewrite_fast_lane(frame, pc, true, pub_ip, s.public_port, s.ip_delta, s.l4_delta)
                    .then_some(Side::Outside)
            }
            false => rewrite_fast_lane(frame, pc, false, s.inside_ip, s.inside_port, !s.ip_delta, !s.l4_delta)
                .then_some(Side::Inside),
        }
    }
}

/// The fast lane for tables that fit in cache: each frame parsed, looked up
/// and rewritten in one pass. Frames it does not take are marked for the
/// general path. Kept out of line so the loop has the registers to itself.
/// Returns (frames forwarded, frames left for the general path).
#[inline(never)]
pub(crate) fn single_pass<const I2O: bool, F: AsMut<[u8]>>(
    lane: &mut Lane<'_>,
    seed: u64,
    frames: &mut [F],
    verdicts: &mut [Verdict],
    items: &mut [Item],
) -> (u64, usize) {
    let out = if I2O { Side::Outside } else { Side::Inside };
    let mut forwarded = 0u64;
    let mut pending = 0usize;
    for ((f, v), it) in frames.iter_mut().zip(verdicts.iter_mut()).zip(items.iter_mut()) {
        let frame = f.as_mut();
        let Some(k) = parse_fast(frame) else {
            it.st = Pre::Later;
            pending += 1;
            continue;
        };
        let h = super::hash::hash_words(seed, k.w0, k.w1);
        if lane.hit::<I2O>(frame, k, h).is_some() {
            *v = Verdict::Forward(out);
            it.st = Pre::Done;
            forwarded += 1;
        } else {
            it.k = k;
            it.h = h;
            it.st = Pre::Flow;
            pending += 1;
        }
    }
    (forwarded, pending)
}
