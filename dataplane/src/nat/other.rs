//! Other IP protocols (GRE, ESP, SCTP, anything but TCP, UDP and ICMP),
//! translated by address only, as VPP's nat44-ed (`test_unknown_proto`)
//! and netfilter's generic conntrack do. A translate rule whose
//! `protocols` include `other` (or that lists none: every protocol) gives
//! an inside host a session keyed on (inside address, remote address, IP
//! protocol); its packets leave from the subscriber's public address and
//! the remote's come back to the inside host. Only the IP header changes:
//! the address and its checksum (RFC 1624) and the TTL. Nothing at L4 is
//! rewritten: GRE (RFC 2784) and ESP (RFC 4303) carry no checksum over the
//! addresses, SCTP's CRC32c (RFC 9260 section 6.8) covers no pseudo
//! header. A 1:1 static host (`static_nat`) takes its public address for
//! these too, both ways: its outbound packets leave from it ahead of the
//! rules, and an unsolicited packet to it opens a session to the host. A
//! session keeps the protocol number in its three port fields,
//! so the ordinary index keys ([`super::keys`]) tell GRE from ESP, and it
//! idles out after `other_secs` ([`class::OTHER`]).
//!
//! Invariants: one inside host per (public address, remote, protocol) at a
//! time: a second host that would take the same triple is refused
//! (`other_proto_busy`), because an inbound packet could not tell them
//! apart; a packet that makes no session changes no state; nothing from
//! outside reaches an inside host that no session or no-NAT exemption
//! allows (a miss is `unsupported_protocol`, as it always was).
//!
//! With several workers the claim holds box-wide: a translated session
//! lives at its *home*, the worker a seeded hash of (public address,
//! remote, protocol) names ([`other_home`]; every worker shares the seed,
//! so every worker computes the same home). An inbound packet that finds
//! no session is handed to its home (from the packet alone: its
//! destination is the public address). An outbound one goes to its
//! subscriber's worker, which alone knows the subscriber's public address
//! (its pool's pick), and from there to the home, which makes the session
//! on the address its own subscriber entry picks (the subscriber hash: the
//! same address, unless a port-block pool moved a new subscriber past a
//! full address on one worker and not the other) and counts it there (a
//! subscriber's session limit holds per worker). So a second host on
//! another worker that maps to the same public address meets the first's
//! session at the home and is refused (`other_proto_busy`), and every
//! answer reaches the one session. The price: an outbound packet that
//! arrives at its subscriber's worker, when that is not the home, is
//! handed over (`other_proto_handoffs` counts the engine's hand-offs of
//! these packets, both ways); GRE and ESP are rare next to TCP and UDP.
//! A 1:1 static host's sessions stay with its own worker (its public
//! address is its own: nothing to share).
#![forbid(unsafe_code)]

use super::hash::hash3;
use super::*;

/// The home worker of another protocol's translated session on (public
/// address `public`, remote `remote`, IP protocol `ip_proto`): a seeded
/// hash modulo `workers`, the same on every worker (they share the seed).
pub fn other_home(seed: u64, public: u32, remote: u32, ip_proto: u8, workers: u16) -> u16 {
    let h = hash3(seed ^ OTHER_SALT, public ^ remote.rotate_left(11), 0, u16::from(ip_proto), 0x6f74);
    u16::try_from((h >> 32) % u64::from(workers.max(1))).unwrap_or(0)
}

const OTHER_SALT: u64 = 0x6f74_6865_7268_6f6d;

impl Engine {
    /// A packet of another IP protocol ([`Kind::OtherProto`]).
    pub(super) fn other_proto(&mut self, side: Side, now: u32, frame: &mut [u8], p: &Parsed) -> Verdict {
        // The protocol number plays both ports; the TCP defaults of a parse
        // of another protocol must not reach touch().
        let n = u16::from(p.ip_proto);
        let q = Parsed { proto: L4::Other, sport: n, dport: n, tcp_flags: 0, ..*p };
        let found = match side {
            Side::Inside => {
                let h = self.h_i2o(p.src, n, p.dst, n, L4::Other);
                self.find::<true>(h, p.src, n, p.dst, n, L4::Other)
            }
            Side::Outside => {
                let h = self.h_o2i(p.dst, n, p.src, n, L4::Other);
                self.find::<false>(h, p.src, n, p.dst, n, L4::Other)
            }
        };
        if let Some(idx) = found {
            if self.live_or_reap(idx, now) {
                if p.ttl <= 1 {
                    return Verdict::PassToKernel(PassReason::TtlExpired);
                }
                self.touch(idx, side, &q, now);
                if p.first_frag {
                    self.frags.record(frag_key(p), side == Side::Inside, idx, now);
                }
                let s = self.sessions.get(idx);
                Rewrite::arriving(side, &s).apply_addr(frame, p);
                return Verdict::Forward(side.opposite());
            }
        }
        // A 1:1 static host: every protocol, both ways, ahead of the rules.
        let statik = match side {
            Side::Inside => self.static_by_inside(p.src).map(|a| (a, p.src)),
            Side::Outside => {
                self.ports.addr_of_ip(p.dst).and_then(|a| self.static_by_addr(a).map(|inside| (a, inside)))
            }
        };
        if let Some((addr, inside)) = statik {
            return self.new_other_static(side, now, frame, &q, addr, inside);
        }
        if side == Side::Outside && self.workers > 1 && self.ports.addr_of_ip(p.dst).is_some() {
            // Its session, if any, is at its home (module doc).
            let home = other_home(self.seed, p.dst, p.src, p.ip_proto, self.workers);
            if home != self.worker {
                self.counters.other_proto_handoffs += 1;
                return Verdict::HandOff { worker: home, arrived_on: Side::Outside };
            }
        }
        let (inside, remote) = match side {
            Side::Inside => (p.src, p.dst),
            Side::Outside => (p.dst, p.src),
        };
        if side == Side::Outside && self.is_local(p.dst) {
            return Verdict::PassToKernel(PassReason::ToSelf);
        }
        let action = self.rules.first_match(inside, remote, p.ip_proto, None);
        let pass = match action {
            Some(RuleAction::Translate { pool }) if side == Side::Inside => {
                return self.new_other(now, frame, &q, pool).unwrap_or_else(|v| v);
            }
            Some(RuleAction::NoNat) => true,
            Some(RuleAction::Route) => side == Side::Inside,
            None => side == Side::Inside && !self.params.boundary.drop_unmatched,
            Some(RuleAction::Translate { .. }) => false,
        };
        if action.is_none() && side == Side::Inside && !pass {
            return Verdict::Drop(DropReason::NoRule);
        }
        if pass {
            if p.ttl <= 1 {
                return Verdict::PassToKernel(PassReason::TtlExpired);
            }
            decrement_ttl(frame, usize::from(p.l3));
            return Verdict::Forward(side.opposite());
        }
        Verdict::Drop(DropReason::UnsupportedProtocol)
    }

    /// First packet of another protocol to or from a 1:1 static host
    /// (`inside` on public address index `addr`), from either side: a
    /// session with the inside host's worker, as its other sessions.
    fn new_other_static(
        &mut self,
        side: Side,
        now: u32,
        frame: &mut [u8],
        q: &Parsed,
        addr: u16,
        inside: u32,
    ) -> Verdict {
        if q.ttl <= 1 {
            return Verdict::PassToKernel(PassReason::TtlExpired);
        }
        if self.workers > 1 {
            let owner = self.subscriber_owner(inside);
            if owner != self.worker {
                return Verdict::HandOff { worker: owner, arrived_on: side };
            }
        }
        let n = q.sport;
        let remote = match side {
            Side::Inside => q.dst,
            Side::Outside => q.src,
        };
        let idx = match self.alloc_session(now) {
            Ok(i) => i,
            Err(v) => return v,
        };
        let inbound = if side == Side::Outside { flag::INBOUND } else { 0 };
        let s = Session {
            inside_ip: inside.into(),
            remote_ip: remote.into(),
            inside_port: n.into(),
            remote_port: n.into(),
            public_port: n.into(),
            addr,
            proto: L4::Other,
            flags: flag::FORWARD | inbound,
            ..Session::default()
        };
        self.install(idx, s, now, 0);
        if q.first_frag {
            self.frags.record(frag_key(q), side == Side::Inside, idx, now);
        }
        let s = self.sessions.get(idx);
        Rewrite::arriving(side, &s).apply_addr(frame, q);
        Verdict::Forward(side.opposite())
    }

    /// First packet of another protocol from an inside host a translate
    /// rule covers: a session on the subscriber's public address, unless
    /// another inside host holds (public address, remote, protocol).
    fn new_other(&mut self, now: u32, frame: &mut [u8], q: &Parsed, pool: u16) -> Result<Verdict, Verdict> {
        let n = q.sport;
        if self.is_local(q.dst) {
            return Ok(Verdict::PassToKernel(PassReason::ToSelf));
        }
        // Hairpinning needs a port to find the other inside host by.
        if self.ports.addr_of_ip(q.dst).is_some() {
            return Err(Verdict::Drop(DropReason::NoSession));
        }
        if q.ttl <= 1 {
            return Ok(Verdict::PassToKernel(PassReason::TtlExpired));
        }
        // The subscriber's worker knows its public address; a frame it
        // handed over is at its home (module doc).
        let owner = if self.workers > 1 { self.subscriber_owner(q.src) } else { self.worker };
        if owner != self.worker && !self.handed_off {
            return Ok(Verdict::HandOff { worker: owner, arrived_on: Side::Inside });
        }
        let sub = match self.ports.subscriber(q.src, pool) {
            Ok(s) => s,
            Err(r) => return Err(self.refused(now, frame, q.src, pool, Verdict::Drop(r))),
        };
        // A subscriber made for this packet and left with no session would linger.
        let give_back = |e: &mut Self| {
            if e.ports.sub(sub).is_some_and(|x| x.sessions == 0) {
                e.ports.remove_session(sub);
            }
        };
        let addr = self.ports.sub(sub).map_or(0, |x| x.addr);
        let pub_ip = self.ports.ip_of(addr);
        if self.workers > 1 && owner == self.worker {
            let home = other_home(self.seed, pub_ip, q.dst, q.ip_proto, self.workers);
            if home != self.worker {
                give_back(self);
                self.counters.other_proto_handoffs += 1;
                return Ok(Verdict::HandOff { worker: home, arrived_on: Side::Inside });
            }
        }
        let ho = self.h_o2i(pub_ip, n, q.dst, n, L4::Other);
        if let Some(j) = self.find::<false>(ho, q.dst, n, pub_ip, n, L4::Other) {
            if self.live_or_reap(j, now) {
                give_back(self);
                return Err(Verdict::Drop(DropReason::OtherProtoBusy));
            }
        }
        if !self.ports.add_session(sub) {
            give_back(self);
            return Err(self.refused(now, frame, q.src, pool, Verdict::Drop(DropReason::SubscriberSessionLimit)));
        }
        let idx = match self.alloc_session(now) {
            Ok(i) => i,
            Err(v) => {
                self.ports.remove_session(sub);
                return Err(v);
            }
        };
        let s = Session {
            inside_ip: q.src.into(),
            remote_ip: q.dst.into(),
            inside_port: n.into(),
            remote_port: n.into(),
            public_port: n.into(),
            addr,
            proto: L4::Other,
            flags: flag::SUB,
            ..Session::default()
        };
        let h = self.h_i2o(q.src, n, q.dst, n, L4::Other);
        self.install_hashed(idx, s, now, 0, Some(h));
        if q.first_frag {
            self.frags.record(frag_key(q), true, idx, now);
        }
        let s = self.sessions.get(idx);
        Rewrite::i2o(&s).apply_addr(frame, q);
        Ok(Verdict::Forward(Side::Outside))
    }
}
