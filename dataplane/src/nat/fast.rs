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
use super::parse::FastKey;
use super::session::{flag, pcode, Session};
use super::{rewrite_fast_lane, Side};
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
    pub fn hit(&mut self, side: Side, frame: &mut [u8], k: FastKey, h: u64) -> Option<Side> {
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
                let matched = match side {
                    Side::Inside => {
                        x.inside_ip == src
                            && x.remote_ip == dst
                            && x.inside_port == sport
                            && x.remote_port == dport
                            && x.pcode() == pc
                    }
                    Side::Outside => {
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
        match side {
            Side::Inside => {
                let pub_ip = if s.flags & flag::NO_NAT != 0 {
                    s.inside_ip
                } else {
                    self.ips.get(usize::from(s.addr())).copied().unwrap_or(0)
                };
                rewrite_fast_lane(frame, pc, true, pub_ip, s.public_port, s.ip_delta, s.l4_delta)
                    .then_some(Side::Outside)
            }
            Side::Outside => rewrite_fast_lane(frame, pc, false, s.inside_ip, s.inside_port, !s.ip_delta, !s.l4_delta)
                .then_some(Side::Inside),
        }
    }
}
