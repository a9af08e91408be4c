//! A deterministic pool's dynamic overflow (RFC 7422 section 2): a
//! subscriber whose own range is full takes ports from a port-block pool
//! (its `overflow`), blocks allocated, released and logged like any
//! port-block pool's, so who held an overflow port is in the NAT log (and
//! the live tables) as for any block.
//!
//! Order: a subscriber's new mappings take ports of its own range; once
//! that has no free port, of the overflow pool, and they go on doing so
//! while it holds overflow blocks (so an endpoint with an overflow
//! mapping keeps it, RFC 4787 REQ-1, and only the deterministic pool's
//! own allocation, never a new mapping elsewhere, pays for knowing it);
//! when its overflow sessions have gone and their blocks are back, its
//! range again. Past the overflow's blocks a flow is refused.
//!
//! Invariants: a session on an overflow address counts on the
//! subscriber's overflow-pool entry (the pool of its public address, as
//! every session's), never on its deterministic one, and its mapping
//! belongs to the overflow pool (the mapping look-up matches the pool of
//! its public address; `keys::imap` leaves the pool out of the hash); a flow
//! refused here changed nothing (the session slot and both subscriber
//! counts are given back). Only a deterministic pool with an overflow
//! reaches this file (from its allocation's failure).
#![forbid(unsafe_code)]

use super::*;

impl Engine {
    /// [`Engine::new_mapped_i2o`]'s new mapping for a subscriber of a
    /// deterministic pool with an overflow pool `ov` that got no port of
    /// its range: the session for `p` goes in slot `idx`, counted on `sub`
    /// (the deterministic subscriber) until here. (The session is built
    /// again here rather than passed: the common path keeps it in
    /// registers.)
    #[cold]
    #[inline(never)]
    pub(super) fn overflow_i2o(
        &mut self,
        idx: u32,
        sub: u32,
        ov: u16,
        p: &Parsed,
        now: u32,
        h_i2o: Option<u64>,
    ) -> Result<u32, Verdict> {
        let mut s = Session {
            inside_ip: p.src.into(),
            remote_ip: p.dst.into(),
            inside_port: p.sport.into(),
            remote_port: if p.proto == L4::Icmp { Net16::ZERO } else { p.dport.into() },
            proto: p.proto,
            flags: flag::MAPPED | flag::SUB,
            ..Session::default()
        };
        let undo = |e: &mut Self, v: DropReason| {
            e.sessions.free(idx);
            Verdict::Drop(v)
        };
        // The session counts on the overflow pool's subscriber instead.
        self.ports.remove_session(sub);
        let osub = match self.ports.subscriber_session(p.src, ov) {
            Ok(x) => x,
            Err(r) => return Err(undo(self, r)),
        };
        // An overflow mapping of the endpoint is kept (RFC 4787 REQ-1).
        let hm = self.h_imap(p.src, p.sport, p.proto);
        if let Some(h) = self.find_mapping_i2o(hm, p.src, p.sport, p.proto, ov, now) {
            let hs = self.sessions.get(h);
            s.public_port = hs.public_port;
            s.addr = hs.addr;
            self.install_hashed(idx, s, now, p.tcp_flags, h_i2o);
            self.chain_after(h, idx);
            return Ok(idx);
        }
        let rng = &mut self.rng;
        let blocks = &mut self.counters.blocks_allocated;
        let got = self.ports.alloc_with(osub, p.proto, p.sport, now, || super::engine::xorshift(rng), blocks);
        let Some((port, addr, ip)) = got else {
            self.counters.port_exhaustion_events += 1;
            if let Some(b) = self.counters.port_exhaustion_by_bucket.get_mut(counters::exhaustion_bucket(p.src)) {
                *b += 1;
            }
            self.ports.remove_session(osub);
            return Err(undo(self, DropReason::PortsExhausted));
        };
        s.public_port = port.into();
        s.addr = addr;
        self.install_inline(idx, s, now, p.tcp_flags, h_i2o, ip);
        self.imap.insert(hm, idx);
        let ho = self.h_omap(ip, port, p.proto);
        self.omap.insert(ho, idx);
        Ok(idx)
    }
}
