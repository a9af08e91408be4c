//! Refused subscribers: a frame the engine refused
//! ([`Verdict::Refuse`](crate::nat::Verdict::Refuse),
//! RFC 6888 REQ-11b) is answered with an ICMP host unreachable written into
//! a freshly allocated frame (as fragments are) by
//! [`Engine::write_refusal`], addressed to the subscriber's next hop on the
//! inside and sent out of the inside; the refused frame itself is freed.
//!
//! Invariants: nothing here allocates, locks or waits: the error's frame is
//! one of the backend's free frames, and without one (or without a next
//! hop) the error is not sent and is counted (`icmp_unreachable_failed`).
//! Every error sent is counted (`icmp_unreachable_sent`, and `tx` inside).
#![forbid(unsafe_code)]

use super::{per_side, Worker};
use crate::io::{Desc, FrameIo};
use crate::l2::{write_l2, NextHop};
use crate::nat::{Engine, Side};
use crate::wire::{ethernet, icmp};

/// Frame size an error needs at most: an Ethernet header with a VLAN tag
/// and the largest error datagram.
#[allow(clippy::cast_possible_truncation)] // 18 + 576
const ERROR_FRAME_LEN: u32 = (ethernet::field::TAGGED_LEN + icmp::MAX_ERROR_LEN) as u32;

impl<I: FrameIo> Worker<I> {
    /// Sends the sender of `d`, a frame the engine refused, its ICMP host
    /// unreachable (`d` stays held: the caller frees it).
    pub(super) fn refuse(&mut self, d: Desc) {
        let Self { io, engine, l2, counters, unresolved, .. } = self;
        let Some(e) = engine.as_ref() else { return };
        let Some(mut nd) = io.alloc(ERROR_FRAME_LEN) else {
            counters.icmp_unreachable_failed += 1;
            return;
        };
        let inside = l2.side(Side::Inside);
        let written = io.with_views(&[d, nd], |v| match v {
            [refused, out] => {
                let n = Engine::write_refusal(e, refused, out)?;
                Some((n, write_l2(inside, out.get_mut(..n)?)))
            }
            _ => None,
        });
        match written {
            Some((n, NextHop::Mac(_))) => {
                let n = u32::try_from(n).unwrap_or(ERROR_FRAME_LEN);
                nd.truncate(n);
                counters.icmp_unreachable_sent += 1;
                *per_side(&mut counters.tx, Side::Inside) += 1;
                *per_side(&mut counters.tx_bytes, Side::Inside) += u64::from(n);
                io.send(Side::Inside, nd);
            }
            other => {
                if let (Some((_, NextHop::Unresolved(hop))), Some(tx)) = (other, unresolved.as_ref()) {
                    // Resolved for the next time, as a forwarded frame's hop is.
                    let _ = tx.try_send((Side::Inside, hop));
                }
                io.free(nd);
                counters.icmp_unreachable_failed += 1;
            }
        }
    }
}
