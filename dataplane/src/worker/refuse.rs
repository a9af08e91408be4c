//! ICMP errors the worker sends inside, each written into a freshly
//! allocated frame (as fragments are), addressed to the sender's next hop
//! on the inside and sent out of the inside; the frame it answers is freed:
//! - refused subscribers: a frame the engine refused
//!   ([`Verdict::Refuse`](crate::nat::Verdict::Refuse), RFC 6888 REQ-11b)
//!   gets a host unreachable ([`Engine::write_refusal`](crate::nat::Engine::write_refusal));
//! - a hairpinned frame with Don't Fragment set, too big for the inside
//!   MTU, gets "fragmentation needed" with that MTU (RFC 4787 REQ-13,
//!   [`Engine::write_too_big`](crate::nat::Engine::write_too_big)).
//!
//! Invariants: nothing here allocates, locks or waits: the error's frame is
//! one of the backend's free frames, and without one (or without a next
//! hop, or for a frame the engine will not answer) the error is not sent
//! and is counted (`icmp_unreachable_failed`, `icmp_frag_needed_failed`).
//! Every error sent is counted (`icmp_unreachable_sent`,
//! `icmp_frag_needed_sent`, and `tx` inside).
#![forbid(unsafe_code)]

use super::{per_side, Worker};
use crate::io::{Desc, FrameIo};
use crate::l2::{write_l2, NextHop};
use crate::nat::Side;
use crate::wire::{ethernet, icmp};

/// Frame size an error needs at most: an Ethernet header with a VLAN tag
/// and the largest error datagram.
#[allow(clippy::cast_possible_truncation)] // 18 + 576
const ERROR_FRAME_LEN: u32 = (ethernet::field::TAGGED_LEN + icmp::MAX_ERROR_LEN) as u32;

/// Which error to send.
#[derive(Debug, Clone, Copy)]
pub(super) enum Error {
    /// Host unreachable to a refused subscriber.
    Refusal,
    /// Fragmentation needed, with the next-hop MTU, to a hairpin's sender.
    TooBig(u16),
}

impl<I: FrameIo> Worker<I> {
    /// Sends the sender of `d`, a frame the engine refused, its ICMP host
    /// unreachable (`d` stays held: the caller frees it).
    pub(super) fn refuse(&mut self, d: Desc) {
        self.send_error(d, Error::Refusal);
    }

    /// Sends the ICMP error `kind` about `d` inside (`d` stays held: the
    /// caller frees it), counting it sent or failed.
    pub(super) fn send_error(&mut self, d: Desc, kind: Error) {
        let Self { io, engine, l2, counters, unresolved, .. } = self;
        let (sent, failed) = match kind {
            Error::Refusal => (&mut counters.icmp_unreachable_sent, &mut counters.icmp_unreachable_failed),
            Error::TooBig(_) => (&mut counters.icmp_frag_needed_sent, &mut counters.icmp_frag_needed_failed),
        };
        let Some(e) = engine.as_ref() else {
            *failed += 1;
            return;
        };
        let Some(mut nd) = io.alloc(ERROR_FRAME_LEN) else {
            *failed += 1;
            return;
        };
        let inside = l2.side(Side::Inside);
        let written = io.with_views(&[d, nd], |v| match v {
            [original, out] => {
                let n = match kind {
                    Error::Refusal => e.write_refusal(original, out)?,
                    Error::TooBig(mtu) => e.write_too_big(original, mtu, out)?,
                };
                Some((n, write_l2(inside, out.get_mut(..n)?)))
            }
            _ => None,
        });
        match written {
            Some((n, NextHop::Mac(_))) => {
                let n = u32::try_from(n).unwrap_or(ERROR_FRAME_LEN);
                nd.truncate(n);
                *sent += 1;
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
                *failed += 1;
            }
        }
    }
}
