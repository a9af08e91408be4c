//! Hairpinning (RFC 4787 REQ-9, RFC 5382 REQ-8): an inside host reaching
//! another through its public endpoint. The source is translated as for any
//! outbound packet, then the destination as if the packet had arrived from
//! outside, so the target sees the sender's public endpoint.
//!
//! ICMP echo hairpins too (RFC 5508 REQ-7, the identifier playing the port
//! as in section 3.1): a request to another host's public address and
//! query identifier (its echo mapping's) reaches that host from the
//! sender's public address, and the reply comes back. The one identifier
//! field names both ends, so the sender's session keeps the identifier it
//! sent ([`Engine::new_echo_hairpin`]) instead of taking one from its port
//! block; two hosts on one public address cannot tell their pings apart
//! that way, and such a request is not hairpinned (RFC 5508 asks query
//! hairpins of Basic NAT only). ICMP errors about hairpinned flows are
//! hairpinned in [`super::icmp_error`].
//!
//! With several workers a TCP/UDP hairpin's two halves live with their
//! own owners: the sender's with its subscriber's worker, the target's
//! with its public port's owner, to which the half-translated packet is
//! handed as if it came from outside. An echo hairpin cannot split so:
//! the target's reply names the sender only by (sender's public address,
//! target's identifier), and the owner of that port on the sender's
//! address is not the sender's worker (with one port order for every
//! address it is the target's). So both halves of an echo hairpin live with the
//! owner of the target mapping's identifier: a request to a public
//! address whose identifier another worker owns is handed there
//! unchanged ([`super::i2o`]), once (a handed-over request is not sent
//! on again: if the owner has no such mapping it goes back to the
//! sender's worker as an ordinary outbound ping), and the sender's session
//! is made there on its subscriber's public address (the subscriber hash
//! picks it, as on the sender's own worker). The target's replies are on
//! its own worker already.
//!
//! A hairpinned datagram's first fragment records its second half under
//! the key it has once its source is translated, so its later fragments
//! take both halves too ([`super::frag`]).
//!
//! A hairpinned packet with Don't Fragment set that is too big for the
//! inside MTU is answered with "fragmentation needed" (RFC 4787 REQ-13,
//! RFC 1191) from the public address its sender used, quoting the packet
//! as sent ([`Engine::write_too_big`]; the worker sends it).
//!
//! Invariant: the TTL drops once, not twice.
#![forbid(unsafe_code)]

use super::*;

impl Engine {
    /// After the source of a hairpinned packet was translated, translate its
    /// destination as if it had arrived from outside (RFC 4787 REQ-9).
    pub(super) fn hairpin_dst(&mut self, now: u32, frame: &mut [u8], p: &Parsed, s: &Session, pub_ip: u32) -> Verdict {
        // The packet now reads public(s) -> p.dst:p.dport.
        let q = Parsed { src: pub_ip, sport: s.public_port.get(), ..*p };
        let (dport, sport) =
            if p.proto == L4::Icmp { (s.public_port.get(), 0) } else { (p.dport, s.public_port.get()) };
        let q = Parsed { dport, sport, ..q };
        let h = self.h_o2i(q.dst, q.dport, q.src, q.sport, q.proto);
        let idx = match self.find::<false>(h, q.src, q.sport, q.dst, q.dport, q.proto) {
            Some(i) => i,
            None => match self.new_o2i(now, &q) {
                Ok(i) => i,
                Err(v) => {
                    // Another worker owns the target's port: the later
                    // fragments, translated here, follow the first there.
                    if let (true, Verdict::HandOff { worker, .. }) = (p.first_frag, v) {
                        self.frags.record_at(frag_key(&q), worker, now);
                    }
                    return v;
                }
            },
        };
        if p.first_frag {
            // Its later fragments take the second half by this key (`frag`).
            self.frags.record(frag_key(&q), false, idx, now);
        }
        self.touch(idx, Side::Outside, &q, now);
        let t = self.sessions.get(idx);
        // The TTL was decremented once already: undo that part of the delta.
        Rewrite::o2i(&t).apply_no_ttl(frame, &q);
        self.counters.hairpinned += 1;
        Verdict::Forward(Side::Inside)
    }

    /// The sender's session of an ICMP echo hairpin: on its subscriber's
    /// public address, with the identifier it sent (the target mapping's),
    /// so the target's reply finds it. Not a mapping: the identifier is
    /// the target's, not one of the sender's ports.
    pub(super) fn new_echo_hairpin(&mut self, now: u32, p: &Parsed, pool: u16, h: Option<u64>) -> Result<u32, Verdict> {
        let sub = self.ports.subscriber(p.src, pool).map_err(Verdict::Drop)?;
        let give_back = |e: &mut Self| {
            if e.ports.sub(sub).is_some_and(|x| x.sessions == 0) {
                e.ports.remove_session(sub);
            }
        };
        let addr = self.ports.sub(sub).map_or(0, |x| x.addr);
        let pub_ip = self.ports.ip_of(addr);
        // On one address both ends would have the same key.
        let ho = self.h_o2i(pub_ip, p.sport, p.dst, 0, L4::Icmp);
        let taken =
            self.find::<false>(ho, p.dst, 0, pub_ip, p.sport, L4::Icmp).is_some_and(|j| self.live_or_reap(j, now));
        if pub_ip == p.dst || taken {
            give_back(self);
            return Err(Verdict::Drop(DropReason::NoSession));
        }
        if !self.ports.add_session(sub) {
            give_back(self);
            return Err(Verdict::Drop(DropReason::SubscriberSessionLimit));
        }
        let idx = match self.alloc_session(now) {
            Ok(i) => i,
            Err(v) => {
                self.ports.remove_session(sub);
                return Err(v);
            }
        };
        let s = Session {
            inside_ip: p.src.into(),
            remote_ip: p.dst.into(),
            inside_port: p.sport.into(),
            remote_port: Net16::ZERO,
            public_port: p.sport.into(),
            addr,
            proto: L4::Icmp,
            flags: flag::SUB,
            ..Session::default()
        };
        self.install_hashed(idx, s, now, 0, h);
        Ok(idx)
    }

    /// Writes into `out` the "fragmentation needed" (ICMP type 3 code 4,
    /// RFC 1191 section 4, with `mtu` as the next-hop MTU) that answers
    /// `frame`, a hairpinned packet with Don't Fragment set too big for the
    /// inside MTU (RFC 4787 REQ-13), as its sender must see it: from the
    /// public address it sent to, quoting the datagram as it sent it.
    /// Returns its length (behind `frame`'s own Ethernet header: the worker
    /// writes the next hop's MACs); `None` if `frame` is not hairpinned or
    /// may not be answered (RFC 1812 section 4.3.2.7), or `out` is too short.
    pub fn write_too_big(&self, frame: &[u8], mtu: u16, out: &mut [u8]) -> Option<usize> {
        let p = parse(frame, Side::Inside).ok()?;
        if p.kind != Kind::Flow {
            return None;
        }
        // The frame reads A's public endpoint -> B's inside one: B's
        // session knows B's public endpoint, A's session A's inside one.
        let icmp = p.proto == L4::Icmp;
        let (b_port, a_pub_port) = if icmp { (p.sport, 0) } else { (p.dport, p.sport) };
        let hb = self.h_i2o(p.dst, b_port, p.src, a_pub_port, p.proto);
        let sb = self.sessions.get(self.find::<true>(hb, p.dst, b_port, p.src, a_pub_port, p.proto)?);
        let (a_pub_port, b_pub_port) = if icmp { (sb.public_port.get(), 0) } else { (p.sport, sb.public_port.get()) };
        let ha = self.h_o2i(p.src, a_pub_port, sb.public_ip.get(), b_pub_port, p.proto);
        let sa =
            self.sessions.get(self.find::<false>(ha, sb.public_ip.get(), b_pub_port, p.src, a_pub_port, p.proto)?);
        if sa.flags & sb.flags & flag::HAIRPIN == 0 {
            return None;
        }
        let n = icmp::write_unreachable_frame_mtu(frame, sb.public_ip.get(), icmp::CODE_FRAG_NEEDED, mtu, out)?;
        let l3 = usize::from(p.l3);
        let msg = l3 + crate::wire::ipv4::field::MIN_LEN;
        let quote = msg + icmp::HEADER_LEN;
        let q = Parsed { l3: u8::try_from(quote).ok()?, l4: u8::try_from(quote + usize::from(p.l4) - l3).ok()?, ..p };
        let error = out.get_mut(..n)?;
        // The quoted datagram back as A sent it: to B's public endpoint, from A's own.
        Rewrite::i2o(&sb).quoted().apply_no_ttl(error, &q);
        Rewrite::o2i(&sa).quoted().apply_no_ttl(error, &q);
        let ip = error.get_mut(l3..msg)?;
        set_u32(ip, crate::wire::ipv4::field::DST, sa.inside_ip.get());
        set_u16(ip, crate::wire::ipv4::field::CHECKSUM, 0);
        let c = crate::wire::checksum::checksum(ip);
        set_u16(ip, crate::wire::ipv4::field::CHECKSUM, c);
        let m = error.get_mut(msg..)?;
        set_u16(m, icmp::CHECKSUM, 0);
        let c = crate::wire::checksum::checksum(m);
        set_u16(m, icmp::CHECKSUM, c);
        Some(n)
    }
}
