//! Outside to inside, first packet: a 1:1 static address (any port and
//! protocol, no filtering), a static forward, a mapping the pool's
//! filtering admits (RFC 4787 section 5, REQ-8), or a no-NAT exemption
//! opens a session; anything else is dropped (`no_session`) or, for the
//! box's own addresses, passed to the kernel.
//!
//! Invariants: nothing from outside reaches an inside host that no session,
//! static address, forward or exemption allows; an exemption admits only the protocols and
//! inside ports it names; nothing claiming an inside source gets in
//! (`spoofed`, checked first here and, for the other kinds of packet, in
//! [`super::lookup`]).
#![forbid(unsafe_code)]

use super::engine::StaticRt;
use super::*;

impl Engine {
    /// First packet from outside with no session.
    pub(super) fn miss_o2i(&mut self, now: u32, frame: &mut [u8], p: &Parsed) -> Result<Verdict, Verdict> {
        if self.params.boundary.spoofed(p.src) {
            return Err(Verdict::Drop(DropReason::Spoofed));
        }
        if p.ttl <= 1 && !self.is_local(p.dst) {
            return Ok(Verdict::PassToKernel(PassReason::TtlExpired));
        }
        let idx = self.new_o2i(now, p)?;
        if p.first_frag {
            self.frags.record(frag_key(p), false, idx, now);
        }
        if p.proto == L4::Tcp {
            self.tcp_window(idx, Side::Outside, now, frame, p);
        }
        let s = self.sessions.get(idx);
        Rewrite::o2i(&s).apply(frame, p);
        Ok(Verdict::Forward(Side::Inside))
    }

    /// Creates the session an inbound packet opens, or says why not. A
    /// packet from one of our own public addresses is a hairpin's second half.
    pub(super) fn new_o2i(&mut self, now: u32, p: &Parsed) -> Result<u32, Verdict> {
        let extra = if self.ports.addr_of_ip(p.src).is_some() { flag::HAIRPIN } else { 0 };
        if let Some(addr) = self.ports.addr_of_ip(p.dst) {
            if let Some(st) = self.static_rt_by_addr(addr) {
                return self.new_static_o2i(now, p, addr, st, extra);
            }
            let fwd = self.forward_by_public(addr, p.dport, p.proto);
            if self.workers > 1 {
                // A range forwarded to one port keeps its sessions with its
                // first port's owner: the server's replies name no public port.
                // (An FTP ALG forward's, with its server's worker.)
                let owner = match &fwd {
                    Some(f) => self.forward_owner(f, p.dport),
                    None => self.port_owner(addr, p.dport),
                };
                match owner {
                    Some(o) if o != self.worker => {
                        return Err(Verdict::HandOff { worker: o, arrived_on: Side::Outside })
                    }
                    _ => {}
                }
            }
            if let Some(f) = fwd {
                if p.proto == L4::Tcp && p.tcp_flags & crate::wire::tcp::SYN == 0 {
                    return Err(Verdict::Drop(DropReason::TcpNotSyn));
                }
                let iport = f.f.inside_port_for(p.dport);
                self.inside_free(now, f.f.inside_addr, iport, p)?;
                let idx = self.alloc_session(now)?;
                let s = Session {
                    inside_ip: f.f.inside_addr.into(),
                    remote_ip: p.src.into(),
                    inside_port: iport.into(),
                    remote_port: p.sport.into(),
                    public_port: p.dport.into(),
                    addr,
                    proto: p.proto,
                    flags: flag::FORWARD | flag::INBOUND | extra,
                    ..Session::default()
                };
                self.install(idx, s, now, p.tcp_flags);
                if f.f.ftp_alg && p.proto == L4::Tcp {
                    self.set_ext(idx, RuleOptions { ftp_alg: true, ..RuleOptions::default() });
                }
                return Ok(idx);
            }
            // An ICMP mapping admits only a hairpinned echo (RFC 5508 REQ-7).
            let mapped = if p.proto == L4::Icmp && extra == 0 {
                None
            } else {
                self.find_mapping_o2i(p.dst, p.dport, p.proto, now)
            };
            if let Some(head) = mapped {
                let filtering =
                    self.ports.pool_of(addr).map_or(Filtering::AddressAndPortDependent, |x| x.params.filtering);
                let admit = match filtering {
                    Filtering::EndpointIndependent => true,
                    Filtering::AddressDependent => self.chain_has_remote(head, p.src),
                    Filtering::AddressAndPortDependent => false,
                };
                // An FTP data connection the ALG expects gets in whatever the filtering.
                if !(admit || p.proto == L4::Tcp && self.alg_expects(head, p.src)) {
                    return Err(Verdict::Drop(DropReason::Filtered));
                }
                let hs = self.sessions.get(head);
                let sub = self.session_sub(&hs);
                if !self.ports.add_session(sub) {
                    return Err(Verdict::Drop(DropReason::SubscriberSessionLimit));
                }
                let idx = match self.alloc_session(now) {
                    Ok(i) => i,
                    Err(v) => {
                        self.ports.remove_session(sub);
                        return Err(v);
                    }
                };
                // Eviction may have removed the head: look it up again.
                let Some(head) = self.find_mapping_o2i(p.dst, p.dport, p.proto, now) else {
                    self.sessions.free(idx);
                    self.ports.remove_session(sub);
                    return Err(Verdict::Drop(DropReason::TableFull));
                };
                let s = Session {
                    inside_ip: hs.inside_ip,
                    remote_ip: p.src.into(),
                    inside_port: hs.inside_port,
                    remote_port: p.sport.into(),
                    public_port: hs.public_port,
                    addr: hs.addr,
                    proto: hs.proto,
                    flags: flag::MAPPED | flag::INBOUND | (hs.flags & flag::SUB) | extra,
                    ..Session::default()
                };
                self.install(idx, s, now, p.tcp_flags);
                self.chain_after(head, idx);
                return Ok(idx);
            }
            if self.is_local(p.dst) {
                return Err(Verdict::PassToKernel(PassReason::ToSelf));
            }
            return Err(Verdict::Drop(DropReason::NoSession));
        }
        if self.is_local(p.dst) {
            return Err(Verdict::PassToKernel(PassReason::ToSelf));
        }
        // Routed to an inside host: only a no-NAT exemption lets it in, and
        // then its replies keep their addresses (the session says so). The
        // rule is read in reverse: its sources are the inside host, its
        // destinations the remote, its ports the inside host's.
        // ICMP echo carries no port: 0, as outbound, so a rule that names
        // ports admits no ping.
        let dport = if p.proto == L4::Icmp { 0 } else { p.dport };
        if self.rules.first_match(p.dst, p.src, p.ip_proto, Some(dport)) == Some(RuleAction::NoNat) {
            if self.workers > 1 {
                let owner = self.subscriber_owner(p.dst);
                if owner != self.worker {
                    return Err(Verdict::HandOff { worker: owner, arrived_on: Side::Outside });
                }
            }
            return self.new_unmapped(
                now,
                (p.proto, p.tcp_flags),
                flag::NO_NAT | flag::INBOUND,
                (p.dst, p.dport),
                (p.src, p.sport),
                None,
            );
        }
        Err(Verdict::Drop(DropReason::NoSession))
    }

    /// An inbound connection a forward or static address gives inside
    /// endpoint (`inside`, `iport`) must not take a tuple another session
    /// holds: the inside host's answers would match both.
    fn inside_free(&mut self, now: u32, inside: u32, iport: u16, p: &Parsed) -> Result<(), Verdict> {
        let h = self.h_i2o(inside, iport, p.src, p.sport, p.proto);
        match self.find::<true>(h, inside, iport, p.src, p.sport, p.proto) {
            Some(i) if self.live_or_reap(i, now) => Err(Verdict::Drop(DropReason::InsideClash)),
            _ => Ok(()),
        }
    }

    /// An inbound packet to 1:1 static address `addr` of `inside`: any
    /// protocol and port, no filtering (the boundary was checked by the
    /// caller); the session lives with the inside host's worker, as its
    /// outbound sessions do.
    fn new_static_o2i(&mut self, now: u32, p: &Parsed, addr: u16, st: StaticRt, extra: u8) -> Result<u32, Verdict> {
        let inside = st.inside;
        if self.workers > 1 {
            let owner = self.subscriber_owner(inside);
            if owner != self.worker {
                return Err(Verdict::HandOff { worker: owner, arrived_on: Side::Outside });
            }
        }
        if p.proto == L4::Tcp && p.tcp_flags & crate::wire::tcp::SYN == 0 {
            return Err(Verdict::Drop(DropReason::TcpNotSyn));
        }
        self.inside_free(now, inside, p.dport, p)?;
        let idx = self.alloc_session(now)?;
        let s = Session {
            inside_ip: inside.into(),
            remote_ip: p.src.into(),
            inside_port: p.dport.into(),
            remote_port: p.sport.into(),
            public_port: p.dport.into(),
            addr,
            proto: p.proto,
            flags: flag::FORWARD | flag::INBOUND | extra,
            ..Session::default()
        };
        self.install(idx, s, now, p.tcp_flags);
        // The control connection only (to port 21): an unsolicited SYN to
        // any other port of the static address takes no ALG slot.
        if st.ftp_alg && p.proto == L4::Tcp && p.dport == super::alg::FTP_CONTROL_PORT {
            self.set_ext(idx, RuleOptions { ftp_alg: true, ..RuleOptions::default() });
        }
        Ok(idx)
    }
}
