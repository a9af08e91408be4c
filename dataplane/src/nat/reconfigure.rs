//! Live changes at a batch boundary: what can change while running
//! ([`reconfigure_check`]) and applying it ([`Engine::reconfigure`]).
//!
//! Invariant: a change is taken whole or not at all; existing sessions keep
//! their mappings.
#![forbid(unsafe_code)]

use super::engine::{check_statics, StaticRt};
use super::*;

/// Whether a running engine built with `old` can take `new` live: table
/// sizes, worker geometry and the fragment timeout are fixed at start; a
/// pool kept by name keeps its kind, port range and limits and may only
/// lose addresses (a new pool takes new ones; [`Engine::reconfigure`] also
/// lets a pool take back addresses it lost live), and the pools the engine
/// numbers (those of `old`, kept even when removed, and the new ones) stay
/// within [`MAX_POOLS`]; timeouts may not outgrow the expiry wheel built
/// for `old`; 1:1 static NAT entries are checked as `Engine::new` checks them.
pub fn reconfigure_check(old: &EngineParams, new: &EngineParams) -> Result<(), ParamError> {
    if (old.max_sessions, old.max_subscribers, old.max_fragments, old.fragment_hold, old.fragment_hold_bytes)
        != (new.max_sessions, new.max_subscribers, new.max_fragments, new.fragment_hold, new.fragment_hold_bytes)
    {
        return Err(ParamError::NeedsRestart("table sizes"));
    }
    if old.workers != new.workers {
        return Err(ParamError::NeedsRestart("the number of workers"));
    }
    let (o, n) = (old.timeouts, new.timeouts);
    let wheel = o.longest();
    if n.longest() > wheel {
        return Err(ParamError::TimeoutPastWheel { wheel });
    }
    if o.fragment_secs != n.fragment_secs || o.port_hold_secs != n.port_hold_secs {
        return Err(ParamError::NeedsRestart("fragment and port-hold timeouts"));
    }
    check_statics(new)?;
    check_overflow(new)?;
    let added = new.pools.iter().filter(|np| !old.pools.iter().any(|op| op.name == np.name)).count();
    if old.pools.len() + added > MAX_POOLS {
        return Err(ParamError::TooMany("pools"));
    }
    for np in &new.pools {
        let Some(op) = old.pools.iter().find(|op| op.name == np.name) else { continue };
        let same = (
            op.port_min,
            op.port_max,
            op.mode,
            op.filtering,
            op.max_sessions_per_subscriber,
            op.random_ports,
            op.port_parity,
            op.masquerade,
            op.log_sessions,
            op.log_destination,
            &op.overflow,
        ) == (
            np.port_min,
            np.port_max,
            np.mode,
            np.filtering,
            np.max_sessions_per_subscriber,
            np.random_ports,
            np.port_parity,
            np.masquerade,
            np.log_sessions,
            np.log_destination,
            &np.overflow,
        );
        // A deterministic pool's formula counts its addresses: it keeps them all.
        let det_changed = matches!(np.mode, PoolMode::Deterministic { .. }) && np.addresses != op.addresses;
        if !same || det_changed {
            return Err(ParamError::pool(&np.name, PoolProblem::NeedsRestart));
        }
        if let Some(a) = np.addresses.iter().find(|a| !op.addresses.contains(a)) {
            return Err(ParamError::pool(&np.name, PoolProblem::NewAddress(crate::wire::fmt_ipv4(*a))));
        }
    }
    Ok(())
}

/// Every overflow a pool names is a port-block pool of `p`, and only
/// deterministic pools name one (RFC 7422 section 2).
pub fn check_overflow(p: &EngineParams) -> Result<(), ParamError> {
    for pool in &p.pools {
        let Some(name) = &pool.overflow else { continue };
        let blocks = p.pools.iter().any(|x| &x.name == name && matches!(x.mode, PoolMode::PortBlocks { .. }));
        if !blocks || !matches!(pool.mode, PoolMode::Deterministic { .. }) {
            return Err(ParamError::pool(&pool.name, PoolProblem::Overflow(name.clone())));
        }
    }
    Ok(())
}

impl Engine {
    /// Brings the 1:1 static entries to `new`'s: flushes and retires the
    /// addresses of those that went or changed, adds the new ones.
    fn reconfigure_statics(&mut self, new: &EngineParams, now: u32, flushed: &mut usize) -> Result<(), ParamError> {
        for old in self.params.statics.clone() {
            if new.statics.contains(&old) {
                continue;
            }
            if let Some(a) = self.ports.addr_of_ip(old.public_addr).filter(|&a| self.ports.is_static(a)) {
                *flushed += self.flush(now, |_| false, Some(a));
                self.ports.retire_addr(a);
            }
        }
        let mut by_inside = Vec::with_capacity(new.statics.len());
        for st in &new.statics {
            let addr = match self.ports.addr_of_ip(st.public_addr) {
                Some(a) if self.ports.is_static(a) => a,
                _ => self.ports.add_static(st.public_addr)?,
            };
            by_inside.push(StaticRt { inside: st.inside_addr, addr, ftp_alg: st.ftp_alg });
        }
        by_inside.sort_unstable_by_key(|x| x.inside);
        let mut by_addr = by_inside.clone();
        by_addr.sort_unstable_by_key(|x| x.addr);
        self.statics_by_inside = by_inside;
        self.statics_by_addr = by_addr;
        Ok(())
    }

    /// Applies new parameters to a running engine, at a batch boundary
    /// (the worker calls it between rounds). Sessions keep their mappings:
    /// rules, forwards, timeouts and the box's addresses change for new
    /// flows only; new pools are added; sessions on addresses that left
    /// their pool, and on 1:1 static addresses removed or given another
    /// inside host, are flushed and the addresses retired (a later change
    /// may give a pool's back to it, or bring back a removed pool by name).
    /// What cannot change
    /// live ([`reconfigure_check`]) refuses the whole change, and then
    /// nothing changed. Returns how many sessions were flushed.
    pub fn reconfigure(&mut self, new: &EngineParams, now: u32) -> Result<usize, ParamError> {
        // A pool may take back addresses a change took from it (or that
        // went with it when it was removed): they are still its own.
        let mut base = self.params.clone();
        for (i, bp) in base.pools.iter_mut().enumerate() {
            bp.addresses = self.ports.pool_ips(u16::try_from(i).unwrap_or(u16::MAX));
        }
        reconfigure_check(&base, new)?;
        // Forwards must land on an address that exists after the change,
        // and be TCP or UDP, as `Engine::new` requires.
        let new_names: Vec<&str> = new.pools.iter().map(|p| p.name.as_str()).collect();
        for f in &new.forwards {
            if !new.pools.iter().any(|p| p.addresses.contains(&f.public_addr)) {
                return Err(ParamError::ForwardOffPool {
                    addr: crate::wire::fmt_ipv4(f.public_addr),
                    port: f.public_port,
                });
            }
            forward_proto(f)?;
            if !f.well_formed() {
                return Err(ParamError::ForwardRange {
                    addr: crate::wire::fmt_ipv4(f.public_addr),
                    port: f.public_port,
                });
            }
        }
        // A new static address must be free once the statics that go have gone.
        for st in new.statics.iter().filter(|st| !self.params.statics.contains(st)) {
            let taken = self.ports.addr_of_ip(st.public_addr).is_some_and(|a| !self.ports.is_static(a));
            if taken {
                return Err(ParamError::Static {
                    addr: crate::wire::fmt_ipv4(st.public_addr),
                    why: "the public address is in use",
                });
            }
        }
        // 1:1 statics: those that went or changed are flushed and retired,
        // then the new ones added (their addresses were checked above).
        let mut flushed = 0;
        self.reconfigure_statics(new, now, &mut flushed)?;
        // Pools: the engine's index of each new pool (existing by name, or added).
        let mut map = Vec::with_capacity(new.pools.len());
        for np in &new.pools {
            match self.params.pools.iter().position(|op| op.name == np.name) {
                Some(i) => map.push(u16::try_from(i).map_err(|_| ParamError::TooMany("pools"))?),
                None => map.push(self.ports.add_pool(np)?),
            }
        }
        // Addresses that left: flush their sessions, retire them.
        let gone: Vec<u32> = self
            .params
            .pools
            .iter()
            .flat_map(|op| {
                let kept =
                    new.pools.iter().find(|np| np.name == op.name).map(|np| np.addresses.clone()).unwrap_or_default();
                op.addresses.iter().copied().filter(move |ip| !kept.contains(ip))
            })
            .collect();
        for ip in gone {
            if let Some(a) = self.ports.addr_of_ip(ip) {
                flushed += self.flush(now, |_| false, Some(a));
                self.ports.retire_addr(a);
            }
        }
        // Addresses that come back to the pool they left.
        for (np, &pi) in new.pools.iter().zip(&map) {
            for &ip in &np.addresses {
                self.ports.unretire_ip(pi, ip);
            }
        }
        // Rules, with pool indices as the engine numbers them.
        let rules: Vec<Rule> = new
            .rules
            .iter()
            .map(|r| match r.action {
                RuleAction::Translate { pool } => Rule {
                    matches: r.matches.clone(),
                    action: RuleAction::Translate { pool: map.get(usize::from(pool)).copied().unwrap_or(u16::MAX) },
                },
                RuleAction::NoNat | RuleAction::Route => r.clone(),
            })
            .collect();
        self.rules = rules::RuleSet::new(&rules);
        // Forwards: release the ports of those that went, reserve the new.
        for old in std::mem::take(&mut self.forwards) {
            if !new.forwards.contains(&old.f) {
                for port in old.f.public_port..=old.f.public_port_last {
                    self.ports.unreserve(old.addr, old.proto, port);
                }
            }
        }
        for f in &new.forwards {
            // Both were checked above.
            let (Some(addr), Ok(proto)) = (self.ports.addr_of_ip(f.public_addr), forward_proto(f)) else { continue };
            if !self.params.forwards.contains(f) {
                for port in f.public_port..=f.public_port_last {
                    self.ports.reserve(addr, proto, port);
                }
            }
            self.forwards.push(ForwardRt { f: *f, addr, proto });
        }
        let t = new.timeouts;
        self.timeouts = t;
        // New sessions waiting to be filed keep the timeouts they were
        // made with (`SessionTable::link_new`).
        self.sessions.settle();
        self.class_timeout = t.by_class();
        let mut local = new.local_addrs.clone();
        local.sort_unstable();
        self.local = local;
        // Keep what the engine was built with where the change cannot reach.
        let mut kept = new.clone();
        kept.worker = self.params.worker;
        kept.workers = self.params.workers;
        kept.seed = self.params.seed;
        kept.steering = self.params.steering.clone();
        let mut pools = std::mem::take(&mut self.params.pools);
        for np in &new.pools {
            match pools.iter_mut().find(|op| op.name == np.name) {
                // The check allowed only addresses the pool was built with.
                Some(op) => op.addresses.clone_from(&np.addresses),
                None => pools.push(np.clone()),
            }
        }
        for op in &mut pools {
            if !new_names.contains(&op.name.as_str()) {
                op.addresses.clear();
            }
        }
        kept.pools = pools;
        // Rules name pools by the engine's numbering from now on.
        kept.rules = rules;
        self.params = kept;
        self.ports.resolve_overflow();
        Ok(flushed)
    }
}
