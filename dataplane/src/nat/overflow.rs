//! A deterministic pool's dynamic overflow (RFC 7422 section 2): a
//! subscriber whose own range is full takes ports from a port-block pool
//! (its `overflow`), blocks allocated, released and logged like any
//! port-block pool's, so who held an overflow port is in the NAT log (and
//! the live tables) as for any block.
//!
//! Order, per new mapping of an inside endpoint (RFC 4787 REQ-1): an
//! overflow mapping it already has is kept; else its own range; only when
//! that has no free port, the overflow pool.
//!
//! Invariants: a session on an overflow address counts on the
//! subscriber's overflow-pool entry (the pool of its public address, as
//! every session's), never on its deterministic one, and its mapping is
//! keyed by the overflow pool (as `keys::session_imap` keys it); a flow
//! refused here changed nothing (the session slot and both subscriber
//! counts are given back). Pools without an overflow never reach this file.
#![forbid(unsafe_code)]

use super::*;

impl Engine {
    /// [`Engine::new_mapped_i2o`]'s new-mapping half for a deterministic
    /// pool with an overflow pool `ov`: `s` is the session to install in
    /// slot `idx`, counted on `sub` (the deterministic subscriber), `hm`
    /// its mapping key in the deterministic pool.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn overflow_i2o(
        &mut self,
        idx: u32,
        mut s: Session,
        sub: u32,
        ov: u16,
        p: &Parsed,
        now: u32,
        h_i2o: Option<u64>,
        hm: u64,
    ) -> Result<u32, Verdict> {
        let undo = |e: &mut Self, v: DropReason| {
            e.sessions.free(idx);
            Verdict::Drop(v)
        };
        let hm_ov = self.h_imap(p.src, p.sport, p.proto, ov);
        let ov_head = self.find_mapping_i2o(hm_ov, p.src, p.sport, p.proto, ov, now);
        if ov_head.is_none() {
            let rand = self.next_rand();
            if let Some((port, _)) = self.ports.alloc(sub, p.proto, p.sport, now, rand) {
                let addr = self.ports.sub(sub).map_or(0, |x| x.addr);
                s.public_port = port;
                s.addr = addr;
                self.install_inline(idx, s, now, p.tcp_flags, h_i2o);
                self.imap.insert(hm, idx);
                let ho = self.h_omap(self.ports.ip_of(addr), port, p.proto);
                self.omap.insert(ho, idx);
                return Ok(idx);
            }
        }
        // Its range is full, or the endpoint's mapping is an overflow one:
        // the session counts on the overflow pool's subscriber instead.
        self.ports.remove_session(sub);
        let osub = match self.ports.subscriber(p.src, ov) {
            Ok(x) => x,
            Err(r) => return Err(undo(self, r)),
        };
        if !self.ports.add_session(osub) {
            if self.ports.sub(osub).is_some_and(|x| x.sessions == 0) {
                self.ports.remove_session(osub);
            }
            return Err(undo(self, DropReason::SubscriberSessionLimit));
        }
        if let Some(h) = ov_head {
            let hs = self.sessions.get(h);
            s.public_port = hs.public_port;
            s.addr = hs.addr;
            self.install_hashed(idx, s, now, p.tcp_flags, h_i2o);
            self.chain_after(h, idx);
            return Ok(idx);
        }
        let rand = self.next_rand();
        let Some((port, new_blocks)) = self.ports.alloc(osub, p.proto, p.sport, now, rand) else {
            self.counters.port_exhaustion_events += 1;
            if let Some(b) = self.counters.port_exhaustion_by_bucket.get_mut(counters::exhaustion_bucket(p.src)) {
                *b += 1;
            }
            self.ports.remove_session(osub);
            return Err(undo(self, DropReason::PortsExhausted));
        };
        self.counters.blocks_allocated += u64::from(new_blocks);
        let addr = self.ports.sub(osub).map_or(0, |x| x.addr);
        s.public_port = port;
        s.addr = addr;
        self.install_inline(idx, s, now, p.tcp_flags, h_i2o);
        self.imap.insert(hm_ov, idx);
        let ho = self.h_omap(self.ports.ip_of(addr), port, p.proto);
        self.omap.insert(ho, idx);
        Ok(idx)
    }
}
