//! Mappings (RFC 4787 REQ-1): the sessions sharing one public endpoint
//! form a chain whose head is indexed by inside endpoint and pool (`imap`)
//! and by public endpoint (`omap`).
//!
//! Invariant: a mapped session is on the chain of its mapping exactly once;
//! the mapping's public port is in use exactly while its chain is not empty.
#![forbid(unsafe_code)]

use super::*;

impl Engine {
    pub(super) fn chain_after(&mut self, head: u32, idx: u32) {
        let next = self.sessions.cold.get(head as usize).map_or(NIL, Cold::map_next);
        if let Some(c) = self.sessions.cold.get_mut(idx as usize) {
            c.set_map_next(next);
        }
        if let Some(c) = self.sessions.cold.get_mut(head as usize) {
            c.set_map_next(idx);
        }
    }

    /// The live head of the mapping (inside ip, port, protocol, pool), if any.
    #[inline(always)]
    pub(super) fn find_mapping_i2o(
        &mut self,
        hm: u64,
        ip: u32,
        port: u16,
        proto: L4,
        pool: u16,
        now: u32,
    ) -> Option<u32> {
        loop {
            let h = self.imap_lookup(hm, ip, port, proto, pool)?;
            if self.live_or_reap(h, now) {
                return Some(h);
            }
        }
    }

    /// The head of the mapping (inside ip, port, protocol, pool), stale or not.
    pub(super) fn imap_lookup(&self, hm: u64, ip: u32, port: u16, proto: L4, pool: u16) -> Option<u32> {
        let (hot, ports) = (&self.sessions.hot, &self.ports);
        self.imap.find(hm, |i| {
            hot.get(i as usize).is_some_and(|s| {
                s.inside_ip == ip.into()
                    && s.inside_port == port.into()
                    && s.proto == proto
                    && ports.addrs.get(usize::from(s.addr())).is_some_and(|a| a.pool == pool)
            })
        })
    }

    /// The live head of the mapping on public (ip, port, protocol), if any.
    pub(super) fn find_mapping_o2i(&mut self, ip: u32, port: u16, proto: L4, now: u32) -> Option<u32> {
        let hm = self.h_omap(ip, port, proto);
        loop {
            let hot = &self.sessions.hot;
            let h = self.omap.find(hm, |i| {
                hot.get(i as usize)
                    .is_some_and(|s| s.public_port == port.into() && s.proto == proto && s.public_ip == ip.into())
            })?;
            if self.live_or_reap(h, now) {
                return Some(h);
            }
        }
    }

    pub(super) fn chain_has_remote(&self, head: u32, remote: u32) -> bool {
        let mut i = head;
        let mut n = 0;
        while i != NIL && n < 4096 {
            if self.sessions.get(i).remote_ip == remote.into() {
                return true;
            }
            i = self.sessions.cold.get(i as usize).map_or(NIL, Cold::map_next);
            n += 1;
        }
        false
    }

    pub(super) fn unchain(&mut self, idx: u32, s: &Session, now: u32) {
        let pool = self.pool_of_session(s);
        let proto = s.proto;
        let pub_ip = self.ports.ip_of(s.addr());
        let hm = self.h_imap(s.inside_ip.get(), s.inside_port.get(), proto);
        let ho = self.h_omap(pub_ip, s.public_port.get(), proto);
        let next = self.sessions.cold.get(idx as usize).map_or(NIL, Cold::map_next);
        match self.imap_lookup(hm, s.inside_ip.get(), s.inside_port.get(), proto, pool) {
            Some(h) if h == idx => {
                if next != NIL {
                    self.imap.replace(hm, idx, next);
                    self.omap.replace(ho, idx, next);
                } else {
                    let (hot, seed) = (&self.sessions.hot, self.seed);
                    self.imap.remove(hm, idx, |j| hot.get(j as usize).map_or(0, |x| keys::session_imap(seed, x)));
                    self.omap.remove(ho, idx, |j| hot.get(j as usize).map_or(0, |x| keys::session_omap(seed, x)));
                    if self.ports.release(s.addr(), proto, s.public_port.get(), now) {
                        self.counters.blocks_released += 1;
                    }
                }
            }
            Some(h) => {
                let mut prev = h;
                let mut n = 0u32;
                while n < self.sessions.capacity() {
                    let pn = self.sessions.cold.get(prev as usize).map_or(NIL, Cold::map_next);
                    if pn == idx {
                        if let Some(c) = self.sessions.cold.get_mut(prev as usize) {
                            c.set_map_next(next);
                        }
                        break;
                    }
                    if pn == NIL {
                        break;
                    }
                    prev = pn;
                    n += 1;
                }
            }
            None => {}
        }
    }
}
