//! Inside to outside, first packet: the box's own addresses, the TTL, the
//! owning worker, a 1:1 static host's public address, then the ordered
//! rules decide (first match, pinned in the
//! session); a translated flow reuses its subscriber's mapping or gets a
//! port ([`super::ports`]) — endpoint-independent mapping, RFC 4787 REQ-1,
//! paired pooling REQ-2. A source no rule covers is dropped (`no_rule`)
//! unless the boundary routes it ([`super::params::Boundary`]). A
//! subscriber refused a port or a session goes to [`super::refusal`].
//!
//! Invariants: a packet that makes no session changes no state (every
//! allocation taken on the way is given back on failure); nothing leaves
//! with an inside source unless a `no_nat` or `route` rule, or the
//! operator's `unmatched_inside: route`, pinned it.
#![forbid(unsafe_code)]

use super::*;
use std::hint::cold_path;

impl Engine {
    /// A subscriber got no port for a new mapping: a deterministic pool's
    /// overflow, if it has one ([`super::overflow`]); else refused, counted
    /// (RFC 6888 REQ-11), the session slot and count given back.
    #[cold]
    #[inline(never)]
    fn no_port(&mut self, idx: u32, sub: u32, pool: u16, p: &Parsed, now: u32, h: Option<u64>) -> Result<u32, Verdict> {
        if let Some(ov) = self.ports.overflow_of(pool) {
            return self.overflow_i2o(idx, sub, ov, p, now, h);
        }
        self.counters.port_exhaustion_events += 1;
        if let Some(b) = self.counters.port_exhaustion_by_bucket.get_mut(counters::exhaustion_bucket(p.src)) {
            *b += 1;
        }
        self.ports.remove_session(sub);
        self.sessions.free(idx);
        Err(Verdict::Drop(DropReason::PortsExhausted))
    }

    /// First packet of an inside-initiated flow.
    #[inline(always)]
    pub(super) fn miss_i2o(
        &mut self,
        now: u32,
        frame: &mut [u8],
        p: &Parsed,
        h: Option<u64>,
        hm: Option<u64>,
    ) -> Result<Verdict, Verdict> {
        // Hairpinning (TCP and UDP) needs something on the public endpoint to
        // reach; decide before any session is made.
        // (`cold_path`: what a carrier's new flow does not meet, so the
        // register allocator spills there rather than on the common path.)
        let dst_public = match self.ports.addr_of_ip(p.dst) {
            Some(a) if p.proto == L4::Icmp => {
                cold_path();
                match self.echo_to_public(now, frame, &p.for_call(), a) {
                    Ok(public) => public,
                    Err(v) => return Ok(v),
                }
            }
            Some(a) => {
                cold_path();
                match self.dst_public(now, &p.for_call(), a) {
                    Ok(public) => public,
                    Err(v) => return Ok(v),
                }
            }
            None => false,
        };
        if self.is_local(p.dst) && !dst_public {
            cold_path();
            return Ok(Verdict::PassToKernel(PassReason::ToSelf));
        }
        if p.ttl <= 1 {
            cold_path();
            return Ok(Verdict::PassToKernel(PassReason::TtlExpired));
        }
        if self.workers > 1 {
            if let Some(v) = self.owner_elsewhere((p.src, p.sport, p.proto), dst_public) {
                return Ok(v);
            }
        }
        // A 1:1 static host always leaves from its public address, ahead of the rules.
        let statik = self.static_by_inside(p.src);
        let matched = match statik {
            Some(_) => None,
            None => self.rules.first_match_at(p.src, p.dst, p.ip_proto, Some(p.dport)),
        };
        let (rule, action) = matched.map_or((usize::MAX, None), |(i, a)| (i, Some(a)));
        let idx = match (statik, action) {
            (Some(addr), _) => {
                cold_path();
                self.new_static_i2o(now, &p.for_call(), addr, h)?
            }
            (None, Some(RuleAction::Translate { pool })) if dst_public && p.proto == L4::Icmp => {
                cold_path();
                match self.new_echo_hairpin(now, &p.for_call(), pool, h) {
                    Ok(idx) => idx,
                    Err(v) => return Err(self.refused(now, frame, p.src, pool, v)),
                }
            }
            (None, Some(RuleAction::Translate { pool })) => match self.new_mapped_i2o(now, p, pool, h, hm) {
                Ok(idx) => idx,
                // A subscriber at its limit (RFC 6888 REQ-11): see super::refusal.
                Err(v) => return Err(self.refused(now, frame, p.src, pool, v)),
            },
            // (Marked cold: a CGNAT translates most new flows; a rule set
            // that routes most of them unchanged pays a few instructions.)
            (None, Some(RuleAction::NoNat | RuleAction::Route)) => {
                cold_path();
                self.new_unmapped(now, (p.proto, p.tcp_flags), flag::NO_NAT, (p.src, p.sport), (p.dst, p.dport), h)?
            }
            (None, None) if self.params.boundary.drop_unmatched => return Err(Verdict::Drop(DropReason::NoRule)),
            // The same call as the no-NAT arm: one arm for both, after the
            // guard, laid the batch's inlined miss path out for 12
            // instructions more a new session (perf/callgrind.sh).
            (None, None) => {
                cold_path();
                self.new_unmapped(now, (p.proto, p.tcp_flags), flag::NO_NAT, (p.src, p.sport), (p.dst, p.dport), h)?
            }
        };
        if p.first_frag {
            cold_path();
            self.frags.record(frag_key(p), true, idx, now);
        }
        if p.proto == L4::Tcp {
            // What the rule adds (MSS clamping, the FTP ALG) first: the window
            // check then applies it to this packet too.
            self.set_rule_ext(idx, rule);
            self.tcp_window(idx, Side::Inside, now, frame, &p.for_call());
        }
        // No touch(): install() already set the state a first packet from
        // the originator leaves.
        let Some(s) = self.sessions.hot.get(idx as usize) else {
            cold_path();
            return Err(Verdict::Drop(DropReason::TableFull));
        };
        let pub_ip = s.public_ip;
        Rewrite::i2o(s).apply(frame, p);
        if dst_public && s.flags & flag::NO_NAT == 0 {
            cold_path();
            if let Some(x) = self.sessions.hot.get_mut(idx as usize) {
                x.flags |= flag::HAIRPIN;
                x.refresh_fast();
            }
            let s = self.sessions.get(idx);
            return Ok(self.hairpin_dst(now, frame, &p.for_call(), &s, pub_ip.get()));
        }
        Ok(Verdict::Forward(Side::Outside))
    }

    /// A first packet to public address `a`: whether it goes to a public
    /// endpoint (hairpin), or the verdict if there is nothing there to reach.
    /// Out of line: the common first packet goes to the internet.
    #[cold]
    #[inline(never)]
    fn dst_public(&mut self, now: u32, p: &Parsed, a: u16) -> Result<bool, Verdict> {
        let target = self.forward_by_public(a, p.dport, p.proto).is_some()
            || self.ports.is_static(a)
            || self.find_mapping_o2i(p.dst, p.dport, p.proto, now).is_some()
            || self.workers > 1;
        if !target {
            return Err(if self.is_local(p.dst) {
                Verdict::PassToKernel(PassReason::ToSelf)
            } else {
                Verdict::Drop(DropReason::NoSession)
            });
        }
        Ok(true)
    }

    /// An ICMP echo to public address `a` (RFC 5508 REQ-7): whether it goes
    /// to the public identifier of another host's query mapping, the one
    /// it carries (see hairpin.rs), or the hand-off to the worker that
    /// owns that identifier; the box's own addresses answer the rest.
    #[cold]
    #[inline(never)]
    fn echo_to_public(&mut self, now: u32, frame: &[u8], p: &Parsed, a: u16) -> Result<bool, Verdict> {
        if self.is_local(p.dst) {
            return Ok(false);
        }
        if self.find_mapping_o2i(p.dst, p.sport, L4::Icmp, now).is_some() {
            return Ok(true);
        }
        // With several workers the target's mapping lives with the owner
        // of its identifier: a request goes there once (a frame handed
        // over is not sent on again, so none bounces).
        let request = frame.get(usize::from(p.l4)) == Some(&icmp::ECHO_REQUEST);
        if self.workers > 1 && request && !self.handed_off {
            if let Some(o) = self.port_owner(a, p.sport).filter(|&o| o != self.worker) {
                return Err(Verdict::HandOff { worker: o, arrived_on: Side::Inside });
            }
        }
        Ok(false)
    }

    /// With several workers: the hand-off if another worker owns the flow
    /// from inside endpoint (`src`, `sport`) of protocol `proto`.
    #[inline(never)]
    pub(super) fn owner_elsewhere(&self, (src, sport, proto): (u32, u16, L4), dst_public: bool) -> Option<Verdict> {
        // An echo hairpin lives with its target's mapping (see hairpin.rs),
        // whichever worker owns the sender.
        if dst_public && proto == L4::Icmp {
            return None;
        }
        // A forward's server answering: its session lives with the public port's owner.
        // (An FTP ALG forward's server keeps its sessions: engine::forward_owner.)
        let owner = if let Some(f) = self.forward_by_inside(src, sport, proto).filter(|f| !f.f.ftp_alg) {
            let home = f.f.home_port_of_inside(sport);
            self.port_owner(f.addr, home).unwrap_or(self.worker)
        } else {
            self.subscriber_owner(src)
        };
        (owner != self.worker).then_some(Verdict::HandOff { worker: owner, arrived_on: Side::Inside })
    }

    /// An outbound flow of a 1:1 static host: public address `addr`, its
    /// own port (endpoint-independent: every remote sees the same).
    fn new_static_i2o(&mut self, now: u32, p: &Parsed, addr: u16, h_i2o: Option<u64>) -> Result<u32, Verdict> {
        let idx = self.alloc_session(now)?;
        let s = Session {
            inside_ip: p.src.into(),
            remote_ip: p.dst.into(),
            inside_port: p.sport.into(),
            remote_port: if p.proto == L4::Icmp { Net16::ZERO } else { p.dport.into() },
            public_port: p.sport.into(),
            addr,
            proto: p.proto,
            flags: flag::FORWARD,
            ..Session::default()
        };
        self.install_hashed(idx, s, now, p.tcp_flags, h_i2o);
        // The control connection only (to port 21, as netfilter's helper
        // attaches): every other connection keeps the fast lane and the
        // ALG's per-worker slots.
        if p.proto == L4::Tcp && p.dport == super::alg::FTP_CONTROL_PORT && self.static_alg(p.src) {
            self.set_ext(idx, RuleOptions { ftp_alg: true, ..RuleOptions::default() });
        }
        Ok(idx)
    }

    /// An outbound flow translated into `pool`: reuse the subscriber's
    /// mapping for (inside ip, port, protocol) or make one. Inlined into
    /// both callers (the FTP ALG's expectation is the other), as it was
    /// into its one before.
    #[inline(always)]
    pub(super) fn new_mapped_i2o(
        &mut self,
        now: u32,
        p: &Parsed,
        pool: u16,
        h_i2o: Option<u64>,
        hm: Option<u64>,
    ) -> Result<u32, Verdict> {
        let idx = self.alloc_session(now)?;
        let undo = |e: &mut Self, v: DropReason| {
            e.sessions.free(idx);
            Verdict::Drop(v)
        };
        let sub = match self.ports.subscriber_session(p.src, pool) {
            Ok(s) => s,
            // (Cold: under a subscriber's flood at its limit this is the
            // common case, and the refusal is the cheap outcome anyway.)
            Err(r) => {
                cold_path();
                return Err(undo(self, r));
            }
        };
        // (A hash the batch worked out must be this endpoint's: one left
        // from an item's earlier use filed the mapping under another key.)
        debug_assert!(hm.is_none_or(|h| h == self.h_imap(p.src, p.sport, p.proto)));
        let hm = hm.unwrap_or_else(|| self.h_imap(p.src, p.sport, p.proto));
        let head = self.find_mapping_i2o(hm, p.src, p.sport, p.proto, pool, now);
        let rport = if p.proto == L4::Icmp { 0 } else { p.dport };
        let mut s = Session {
            inside_ip: p.src.into(),
            remote_ip: p.dst.into(),
            inside_port: p.sport.into(),
            remote_port: rport.into(),
            proto: p.proto,
            flags: flag::MAPPED | flag::SUB,
            ..Session::default()
        };
        match head {
            Some(h) => {
                let hs = self.sessions.get(h);
                s.public_port = hs.public_port;
                s.addr = hs.addr;
                self.install_hashed(idx, s, now, p.tcp_flags, h_i2o);
                self.chain_after(h, idx);
            }
            None => {
                let rng = &mut self.rng;
                let blocks = &mut self.counters.blocks_allocated;
                let got = self.ports.alloc_with(sub, p.proto, p.sport, now, || engine::xorshift(rng), blocks);
                let Some((port, addr, ip)) = got else {
                    return self.no_port(idx, sub, pool, &p.for_call(), now, h_i2o);
                };
                s.public_port = port.into();
                s.addr = addr;
                // The omap slot, a cache miss in a large table, held back
                // like the o2i slot in `install_inline` (`LaterIndex::insert_later`).
                let ho = self.h_omap(ip, port, p.proto);
                self.omap.insert_later(ho, idx);
                self.install_inline(idx, s, now, p.tcp_flags, h_i2o, ip);
                self.imap.insert(hm, idx);
            }
        }
        Ok(idx)
    }
}
