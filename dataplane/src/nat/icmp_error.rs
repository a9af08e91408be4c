//! ICMP errors (RFC 5508 section 4.2, RFC 792): the session is found
//! through the embedded datagram; the outer address, the embedded header
//! and every checksum involved are rewritten.
//!
//! An error an inside host sends about a hairpinned flow (to another inside
//! host's public endpoint) is translated twice, as its datagram was: first
//! as leaving, then as arriving from outside, and goes back inside (RFC
//! 5508 REQ-7: every NAT MUST hairpin ICMP errors).
//!
//! With several workers an error that finds no session where it arrived
//! goes, once, to the worker that holds the quoted flow: from outside, the
//! public port's owner (another protocol's: its home, other.rs); from
//! inside, the inside host's worker, as for its own packets. The owner
//! that finds nothing drops it (`icmp_error_no_session`); it is never sent
//! on. (Not handled: an inside host's error about an inbound packet of
//! another protocol when that session's home is not the host's worker.)
//!
//! Invariants: an ICMP error never refreshes a session (RFC 5508 REQ-4 leaves
//! it open; refreshing would keep dead mappings alive); a hairpinned error's
//! TTL drops once (when the other host's session is on another worker, the
//! error goes there as arriving from outside, and drops again there, as any
//! hairpin handed over does).
#![forbid(unsafe_code)]

use super::*;
use crate::wire::{ipv4, tcp};

impl Engine {
    /// ICMP errors (RFC 5508 section 4.2): find the session through the
    /// embedded datagram, rewrite the outer address, the embedded header and
    /// every checksum involved.
    pub(super) fn icmp_error(&mut self, side: Side, now: u32, frame: &mut [u8], p: &Parsed) -> Verdict {
        if side == Side::Outside && self.ports.addr_of_ip(p.dst).is_none() && self.is_local(p.dst) {
            return Verdict::PassToKernel(PassReason::ToSelf);
        }
        let total = u16_at(frame.get(usize::from(p.l3)..).unwrap_or(&[]), ipv4::field::TOTAL_LEN);
        let end = usize::from(p.l3) + usize::from(total);
        let Some(e) = parse_embedded(frame, usize::from(p.l4), end) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let found = match side {
            // Inside host answering an inbound packet R -> A: embedded src R, dst A.
            Side::Inside => {
                let rport = if e.proto == L4::Icmp { 0 } else { e.sport };
                let h = self.h_i2o(e.dst, e.dport, e.src, rport, e.proto);
                self.find::<true>(h, e.dst, e.dport, e.src, rport, e.proto)
            }
            // Remote router about our outbound packet P -> R: embedded src P, dst R.
            Side::Outside => {
                let rport = if e.proto == L4::Icmp { 0 } else { e.dport };
                let h = self.h_o2i(e.src, e.sport, e.dst, rport, e.proto);
                self.find::<false>(h, e.dst, rport, e.src, e.sport, e.proto)
            }
        };
        let Some(idx) = found else {
            if self.workers > 1 {
                // The flow's owner: from outside, the public port's; from
                // inside, the inside host's, as for its own packets (the
                // error quotes an inbound packet, so that host is `e.dst`).
                let owner = match side {
                    // Another protocol's session lives at its home
                    // (other.rs); its "ports" are the protocol number.
                    Side::Outside if e.proto == L4::Other => u8::try_from(e.sport)
                        .ok()
                        .map(|n| super::other::other_home(self.seed, e.src, e.dst, n, self.workers)),
                    Side::Outside => self.flow_owner(e.src, e.sport, e.proto),
                    Side::Inside => match self.owner_elsewhere((e.dst, e.dport, e.proto), false) {
                        Some(Verdict::HandOff { worker, .. }) => Some(worker),
                        _ => None,
                    },
                };
                if let Some(o) = owner.filter(|&o| o != self.worker) {
                    return Verdict::HandOff { worker: o, arrived_on: side };
                }
            }
            if side == Side::Outside && self.is_local(p.dst) {
                // An error about the box's own traffic.
                return Verdict::PassToKernel(PassReason::ToSelf);
            }
            return Verdict::Drop(DropReason::IcmpErrorNoSession);
        };
        let s = self.sessions.get(idx);
        if self.stale(&s, now) {
            return Verdict::Drop(DropReason::IcmpErrorNoSession);
        }
        if p.ttl <= 1 {
            return Verdict::PassToKernel(PassReason::TtlExpired);
        }
        translate_error(frame, p, &e, &s, side, true);
        self.counters.icmp_errors_translated += 1;
        if side == Side::Inside && s.flags & flag::HAIRPIN != 0 {
            // About a hairpinned flow: the error is addressed to another
            // inside host's public endpoint (RFC 5508 REQ-7).
            return self.hairpin_error(now, frame, p);
        }
        Verdict::Forward(side.opposite())
    }

    /// The second half of a hairpinned ICMP error: after its inside-to-outside
    /// translation it reads as an error arriving from outside about the other
    /// inside host's flow; translate it so, without a second TTL decrement.
    fn hairpin_error(&mut self, now: u32, frame: &mut [u8], p: &Parsed) -> Verdict {
        let total = u16_at(frame.get(usize::from(p.l3)..).unwrap_or(&[]), ipv4::field::TOTAL_LEN);
        let end = usize::from(p.l3) + usize::from(total);
        let Some(e) = parse_embedded(frame, usize::from(p.l4), end) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let rport = if e.proto == L4::Icmp { 0 } else { e.dport };
        let h = self.h_o2i(e.src, e.sport, e.dst, rport, e.proto);
        let found = self.find::<false>(h, e.dst, rport, e.src, e.sport, e.proto);
        let Some(idx) = found.filter(|&i| !self.stale(&self.sessions.get(i), now)) else {
            if self.workers > 1 {
                if let Some(o) = self.flow_owner(e.src, e.sport, e.proto).filter(|&o| o != self.worker) {
                    // Its owner takes it as the error from outside it now is.
                    return Verdict::HandOff { worker: o, arrived_on: Side::Outside };
                }
            }
            return Verdict::Drop(DropReason::IcmpErrorNoSession);
        };
        let s = self.sessions.get(idx);
        translate_error(frame, p, &e, &s, Side::Outside, false);
        self.counters.hairpinned += 1;
        Verdict::Forward(Side::Inside)
    }
}

/// Rewrites an ICMP error arriving on `side` about session `s`: the outer
/// packet as any packet of its direction (TTL included if `ttl`); the
/// datagram it quotes went the other way, so its other address and port
/// change; every checksum involved follows.
fn translate_error(frame: &mut [u8], p: &Parsed, e: &parse::Embedded, s: &Session, side: Side, ttl: bool) {
    let outer = Rewrite::arriving(side, s);
    let quoted = outer.quoted();
    let emb_addr_at = quoted.addr_field();
    let icmp_off = usize::from(p.l4);
    // The ICMP checksum covers the embedded bytes: sum them before and after.
    let emb_end = e.l3 + e.len.min(e.l4 - e.l3 + tcp::field::MIN_LEN);
    let before = fold(sum(frame.get(e.l3..emb_end).unwrap_or(&[])));
    if let Some(emb) = frame.get_mut(e.l3..e.l3 + e.len) {
        let old_ip = u32_at(emb, emb_addr_at);
        set_u32(emb, emb_addr_at, outer.addr);
        let c = u16_at(emb, ipv4::field::CHECKSUM);
        set_u16(emb, ipv4::field::CHECKSUM, apply_delta(c, delta32(old_ip, outer.addr)));
    }
    // The quoted L4 header as any packet's, within the quoted bytes (a
    // quote of 8 bytes has no TCP checksum: it is then left alone).
    if let Some(quote) = frame.get_mut(..e.l3 + e.len) {
        quoted.apply_l4_at(quote, e.l4, e.proto);
    }
    let after = fold(sum(frame.get(e.l3..emb_end).unwrap_or(&[])));
    if let Some(ic) = frame.get_mut(icmp_off..) {
        let c = u16_at(ic, icmp::CHECKSUM);
        set_u16(ic, icmp::CHECKSUM, apply_delta(c, add(!before, after)));
    }
    // Outer header: one address and the TTL.
    // (The error's own sender need not be the session's endpoint: the
    // delta is taken from the address it had.)
    let outer_at = outer.addr_field();
    let l3 = usize::from(p.l3);
    let old_outer = u32_at(frame.get(l3..).unwrap_or(&[]), outer_at);
    if ttl {
        set_ip_addr(frame, l3, outer_at, outer.addr, delta32(old_outer, outer.addr));
    } else if let Some(ip) = frame.get_mut(l3..) {
        set_u32(ip, outer_at, outer.addr);
        let c = u16_at(ip, ipv4::field::CHECKSUM);
        set_u16(ip, ipv4::field::CHECKSUM, apply_delta(c, delta32(old_outer, outer.addr)));
    }
}
