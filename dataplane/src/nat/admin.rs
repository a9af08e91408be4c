//! Operator views and actions at a batch boundary: session listings and
//! flushes (a slice of slots per call, so a worker never stalls), the
//! masquerade address following the outside interface, port-block use and
//! block events for the NAT log (RFC 6888 REQ-12).
#![forbid(unsafe_code)]

use super::*;

impl Engine {
    /// Changes the address of a masquerade pool (the outside interface got a
    /// new one). As netfilter does, the sessions on the old address are
    /// flushed: they cannot survive the change.
    pub fn set_masquerade_address(&mut self, pool: u16, ip: u32, now: u32) -> Result<usize, ParamError> {
        let p = self.ports.pools.get(usize::from(pool)).ok_or(ParamError::NoSuchPool(pool))?;
        if !p.params.masquerade {
            return Err(ParamError::NotMasquerade(pool));
        }
        let a = p.first_addr;
        let flushed = self.flush(now, |_| false, Some(a));
        self.ports.set_addr_ip(a, ip);
        Ok(flushed)
    }

    /// The outside interface's address changed from `old` to `new` (DHCP, a
    /// renumbering): every masquerade pool moves to it, its sessions on the
    /// old address are flushed (netfilter's MASQUERADE forgets them too:
    /// their replies would go to an address the box no longer has), and the
    /// box's own addresses follow. Returns how many sessions went.
    pub fn follow_outside_address(&mut self, old: u32, new: u32, now: u32) -> usize {
        let mut flushed = 0;
        let masq: Vec<u16> = (0..self.ports.pools.len())
            .filter(|&i| self.ports.pools.get(i).is_some_and(|p| p.params.masquerade))
            .filter_map(|i| u16::try_from(i).ok())
            .collect();
        for pool in masq {
            flushed += self.set_masquerade_address(pool, new, now).unwrap_or(0);
            if let Some(pp) = self.params.pools.get_mut(usize::from(pool)) {
                pp.addresses = vec![new];
            }
        }
        for a in self.local.iter_mut().chain(self.params.local_addrs.iter_mut()) {
            if *a == old {
                *a = new;
            }
        }
        self.local.sort_unstable();
        flushed
    }

    /// The box's own addresses are now `addrs` (an HA gateway address came
    /// or went): what is addressed to them and no session, forward or NAT
    /// port claims goes to the kernel. A pool's address stays the pool's.
    pub fn set_local_addrs(&mut self, addrs: Vec<u32>) {
        let mut addrs = addrs;
        addrs.sort_unstable();
        addrs.dedup();
        self.local.clone_from(&addrs);
        self.params.local_addrs = addrs;
    }

    /// Removes every session `select` picks (and, if `addr` is given, every
    /// session on that public address). Returns how many went.
    pub fn flush(&mut self, now: u32, select: impl Fn(&SessionInfo) -> bool, addr: Option<u16>) -> usize {
        self.flush_slots(now, select, addr, 0..self.sessions.capacity())
    }

    /// [`Engine::flush`] over the session slots `slots` only, so a worker
    /// can flush a big table a slice per round without stalling.
    pub fn flush_slots(
        &mut self,
        now: u32,
        select: impl Fn(&SessionInfo) -> bool,
        addr: Option<u16>,
        slots: std::ops::Range<u32>,
    ) -> usize {
        let mut n = 0;
        for i in slots.start..slots.end.min(self.sessions.capacity()) {
            let s = self.sessions.get(i);
            if s.class == session::FREE {
                continue;
            }
            let on_addr = addr.is_some_and(|a| s.flags & (flag::NO_NAT) == 0 && s.addr() == a);
            if on_addr || select(&self.info(&s, now)) {
                self.remove(i, now);
                n += 1;
            }
        }
        self.counters.sessions_flushed += n as u64;
        n as usize
    }

    pub(super) fn info(&self, s: &Session, now: u32) -> SessionInfo {
        let t = self.class_timeout.get(usize::from(s.class)).copied().unwrap_or(0);
        // Other protocols have no ports (their sessions keep the protocol
        // number there): listed as 0, as conntrack lists none.
        let port = |p: u16| if s.proto == L4::Other { 0 } else { p };
        SessionInfo {
            protocol: s.ip_proto(),
            inside: (s.inside_ip.get(), port(s.inside_port.get())),
            public: (s.public_ip.get(), port(s.public_port.get())),
            remote: (s.remote_ip.get(), port(s.remote_port.get())),
            state: match s.proto {
                L4::Tcp => s.tcp.name(),
                L4::Udp => "udp",
                L4::Icmp => "icmp",
                L4::Other => "other",
            },
            expires_in: (s.last_seen.saturating_add(t)).saturating_sub(now),
            flags: s.flags,
            assured: s.flags & flag::REPLIED != 0,
        }
    }

    /// Session slots (live or free): the range [`Engine::sessions_in`] and
    /// [`Engine::flush_slots`] walk.
    pub fn session_slots(&self) -> u32 {
        self.sessions.capacity()
    }

    /// The live sessions among slots `slots` (a listing a slice per round).
    pub fn sessions_in(&self, now: u32, slots: std::ops::Range<u32>) -> impl Iterator<Item = SessionInfo> + '_ {
        let (a, b) = (slots.start as usize, (slots.end as usize).min(self.sessions.hot.len()));
        self.sessions
            .hot
            .get(a.min(b)..b)
            .unwrap_or_default()
            .iter()
            .filter(|s| s.class != session::FREE)
            .map(move |s| self.info(s, now))
    }

    /// Every live session (control path: walks the whole slab).
    pub fn sessions(&self, now: u32) -> impl Iterator<Item = SessionInfo> + '_ {
        self.sessions.hot.iter().filter(|s| s.class != session::FREE).map(move |s| self.info(s, now))
    }

    /// Port blocks handed out or taken back since the last call (the
    /// worker collects them once a round for the NAT log).
    pub fn take_block_events(&mut self) -> std::vec::Drain<'_, ports::BlockEvent> {
        self.ports.events.drain(..)
    }

    /// Block events lost because they were not collected in time.
    pub fn block_events_dropped(&self) -> u64 {
        self.ports.events_dropped
    }

    /// Who holds public `ip`:`port` now (`masq whois` from the live
    /// tables): the subscriber of the block that contains it, if this
    /// worker owns that block, or a deterministic pool's formula's.
    pub fn holder(&self, ip: u32, port: u16) -> Option<ports::Held> {
        self.ports.holder(ip, port)
    }

    /// What subscriber `inside` holds now: its blocks on this worker, its
    /// shared pool address, its deterministic ranges.
    pub fn held_by(&self, inside: u32) -> Vec<ports::Held> {
        self.ports.held_by(inside)
    }

    /// Port blocks of every public address on this worker: (address, pool
    /// name, blocks in use, blocks free).
    pub fn port_block_use(&self) -> impl Iterator<Item = (u32, &str, usize, usize)> + '_ {
        (0..self.ports.addrs.len()).filter_map(move |a| {
            let a = u16::try_from(a).ok()?;
            let (used, free) = self.ports.block_use(a);
            // 1:1 static addresses have no pool and no blocks.
            let pool = self.ports.pool_of(a)?.params.name.as_str();
            Some((self.ports.ip_of(a), pool, used, free))
        })
    }
}
