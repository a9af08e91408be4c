//! The general path's session lookup: a hit refreshes the session (TCP
//! state, timers) and is translated; a stale hit is reaped; a miss goes to
//! the stage for its kind ([`super::i2o`], [`super::o2i`],
//! [`super::icmp_error`], [`super::frag`], [`super::other`] for other IP
//! protocols). Anything from outside that misses is first checked
//! against the inside prefixes (anti-spoofing).
//!
//! Invariant: a session past its timeout is never used (RFC 4787 REQ-5:
//! it is gone, its mapping with it).
#![forbid(unsafe_code)]

use super::*;

impl Engine {
    /// A TCP/UDP/ICMP-echo packet with its hash computed.
    #[inline(always)]
    pub(super) fn flow(&mut self, side: Side, now: u32, frame: &mut [u8], p: &Parsed, h: u64) -> Verdict {
        let found = match side {
            Side::Inside => self.find::<true>(h, p.src, p.sport, p.dst, p.dport, p.proto),
            Side::Outside => self.find::<false>(h, p.src, p.sport, p.dst, p.dport, p.proto),
        };
        let Some(idx) = found else {
            return self.slow(side, now, frame, p, Some(h));
        };
        let timeouts = self.class_timeout;
        let Some(s) = self.sessions.hot.get(idx as usize) else {
            return self.slow(side, now, frame, p, Some(h));
        };
        let t = timeouts.get(usize::from(s.class) & (class::SLOTS - 1)).copied().unwrap_or(0);
        if now.wrapping_sub(s.last_seen) >= t {
            return self.stale_hit(idx, side, now, frame, p, h);
        }
        if p.ttl <= 1 {
            return Verdict::PassToKernel(PassReason::TtlExpired);
        }
        // A forged RST changes nothing, not even the session's clock.
        if p.proto == L4::Tcp && !self.tcp_window(idx, side, now, frame, p) {
            return Verdict::Drop(DropReason::TcpOutOfWindow);
        }
        let Some(s) = self.sessions.hot.get_mut(idx as usize) else {
            return self.slow(side, now, frame, p, Some(h));
        };
        s.last_seen = now;
        if p.first_frag {
            // Its later fragments carry no ports: they find the session by
            // (source, destination, protocol, identification).
            self.frags.record(frag_key(p), side == Side::Inside, idx, now);
        }
        let Some(s) = self.sessions.hot.get_mut(idx as usize) else {
            return self.slow(side, now, frame, p, Some(h));
        };
        // Sessions in their steady state (answered; TCP established with no
        // SYN/FIN/RST) need nothing more than last_seen.
        let steady = s.flags & flag::REPLIED != 0 && (p.proto != L4::Tcp || s.tcp.unchanged_by(p.tcp_flags));
        if !steady {
            self.touch(idx, side, p, now);
        }
        // touch() changes state and timers, never the rewrite: snapshot after it.
        let snap = self.sessions.get(idx);
        match side {
            Side::Inside => {
                let pub_ip = snap.public_ip;
                Rewrite::i2o(&snap).apply(frame, p);
                if snap.flags & flag::HAIRPIN != 0 {
                    return self.hairpin_dst(now, frame, p, &snap, pub_ip.get());
                }
                Verdict::Forward(Side::Outside)
            }
            Side::Outside => {
                Rewrite::o2i(&snap).apply(frame, p);
                Verdict::Forward(Side::Inside)
            }
        }
    }

    /// Records a TCP packet in its session's window table (RFC 5961
    /// section 3); false if it is a RST out of window, which is to be
    /// dropped without changing anything. A packet it accepts then goes
    /// through what the session's rule added (`Cold::ext`: MSS
    /// clamping, the FTP ALG), before its NAT rewrite.
    pub(super) fn tcp_window(&mut self, idx: u32, side: Side, now: u32, frame: &mut [u8], p: &Parsed) -> bool {
        let Ok(t) = TcpPacket::new_checked(frame.get(usize::from(p.l4)..).unwrap_or(&[])) else {
            return true;
        };
        let (Some(w), Some(c)) = (self.sessions.tcp.get_mut(idx as usize), self.sessions.cold.get_mut(idx as usize))
        else {
            return true;
        };
        let d = side.index();
        if p.tcp_flags & crate::wire::tcp::RST != 0 && !w.accepts_rst(c.scales, d, p.tcp_flags, t.seq(), t.ack()) {
            return false;
        }
        let wscale = if p.tcp_flags & crate::wire::tcp::SYN != 0 { t.window_scale() } else { None };
        w.record(&mut c.scales, d, p.tcp_flags, t.seq(), t.window(), wscale);
        let e = c.ext;
        if e != 0 {
            self.tcp_ext_hook(e, idx, side, now, frame, p);
        }
        true
    }

    /// A lookup found a session whose timeout has passed: it is gone.
    #[cold]
    pub(super) fn stale_hit(
        &mut self,
        idx: u32,
        side: Side,
        now: u32,
        frame: &mut [u8],
        p: &Parsed,
        h: u64,
    ) -> Verdict {
        self.reap(idx, now);
        self.slow(side, now, frame, p, Some(h))
    }

    /// Refreshes a session on a packet: last seen, replied, TCP state.
    #[inline(always)]
    pub(super) fn touch(&mut self, idx: u32, side: Side, p: &Parsed, now: u32) {
        let Some(s) = self.sessions.hot.get_mut(idx as usize) else {
            return;
        };
        s.last_seen = now;
        let from_orig = (side == Side::Inside) != (s.flags & flag::INBOUND != 0);
        if !from_orig && s.flags & flag::REPLIED == 0 {
            s.flags |= flag::REPLIED;
            // Answered UDP takes the full timeout (the wheel re-files it
            // when its earlier deadline comes).
            if s.class == class::UDP_UNREPLIED {
                s.class = class::UDP;
            }
            // The cold half stays untouched here, as in the fast lane's
            // first reply: no longer evictable, by its flag alone.
        }
        let Some(s) = self.sessions.hot.get_mut(idx as usize) else {
            return;
        };
        if p.proto == L4::Tcp && !s.tcp.unchanged_by(p.tcp_flags) {
            s.tcp = s.tcp.advance(p.tcp_flags, from_orig);
            let c = s.tcp.class();
            if c != s.class {
                let timeout = |k: u8| self.class_timeout.get(usize::from(k)).copied().unwrap_or(0);
                let (was, t) = (timeout(s.class), timeout(c));
                s.class = c;
                // A shorter timeout (closing) is filed now. A longer one
                // (the handshake done) waits: the session's bucket comes no
                // later than its new deadline, and the sweep re-files it
                // then, so the cold halves of its bucket neighbours stay
                // untouched on the packet's path.
                if t < was {
                    self.sessions.reschedule(idx, now.saturating_add(t), now);
                }
            }
        }
        if let Some(s) = self.sessions.hot.get_mut(idx as usize) {
            s.refresh_fast();
        }
    }

    /// Everything that is not a session hit.
    /// `h` is the packet's lookup hash when the caller has it (only the
    /// inside-to-outside one is reused, by the session it creates).
    pub(super) fn slow(&mut self, side: Side, now: u32, frame: &mut [u8], p: &Parsed, h: Option<u64>) -> Verdict {
        // Flows check it in miss_o2i, which the batch also calls directly.
        if side == Side::Outside && p.kind != Kind::Flow && self.params.boundary.spoofed(p.src) {
            return Verdict::Drop(DropReason::Spoofed);
        }
        match p.kind {
            Kind::Flow => {}
            Kind::IcmpError => return self.icmp_error(side, now, frame, p),
            Kind::LaterFragment => return self.later_fragment(side, now, frame, p),
            Kind::OtherProto => {
                let v = self.other_proto(side, now, frame, p);
                // Its later fragments that came first follow it now (`frag`).
                if p.first_frag && self.hold.waiting() {
                    self.release_held(now, p);
                }
                return v;
            }
        }
        let v = match side {
            Side::Inside => self.miss_i2o(now, frame, p, h, None),
            Side::Outside => self.miss_o2i(now, frame, p),
        };
        v.unwrap_or_else(|v| v)
    }
}
