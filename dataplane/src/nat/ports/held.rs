//! `masq whois` from the live tables: who holds the block that contains a
//! public port, and which ranges a subscriber holds now (RFC 6888 REQ-12:
//! the block, not the session, names the subscriber; RFC 7422: a
//! deterministic pool's formula names it whether or not it has a session).
//!
//! Invariants: the answers only read the tables (control path, between
//! two rounds; they allocate, the forwarding path never calls them); a
//! port-block answer comes from the worker that owns the port's block
//! ([`Ports::locate`]), every other worker answers nothing for it; a
//! deterministic answer is the formula's, the same from every worker, with
//! the subscriber's sessions on this worker (0 where it does not live).
#![forbid(unsafe_code)]

use super::*;

/// What kind of hold a [`Held`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldKind {
    /// A port block handed out dynamically (a port-block pool).
    Block,
    /// The range a deterministic pool's formula gives (RFC 7422).
    Formula,
    /// A shared (home masquerade) pool: the subscriber's paired address;
    /// its ports are the pool's whole range, shared with the others.
    Shared,
}

impl HeldKind {
    /// The stable name (JSON `kind`).
    pub fn name(self) -> &'static str {
        match self {
            HeldKind::Block => "block",
            HeldKind::Formula => "deterministic",
            HeldKind::Shared => "shared",
        }
    }
}

/// A subscriber's hold on public ports: a block, a formula's range, or a
/// shared pool's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The subscriber (inside address).
    pub inside: u32,
    /// The public address.
    pub public: u32,
    /// Lowest port (with an RSS port order the block's ports lie between
    /// the two, not all of them).
    pub first_port: u16,
    /// Highest port.
    pub last_port: u16,
    /// The pool (the engine's numbering).
    pub pool: u16,
    /// Block, formula range, or shared address.
    pub kind: HeldKind,
    /// The subscriber's live sessions on this worker (0: it has none here;
    /// a deterministic range is the subscriber's all the same).
    pub sessions: u32,
}

impl Ports {
    /// The lowest and highest port of local block `l` of address `a`.
    pub(super) fn block_range(&self, a: u16, l: u16) -> Option<(u16, u16)> {
        let pool = self.pool_of(a)?;
        let (chunk, min, max) = (u32::from(pool.chunk), pool.params.port_min, pool.params.port_max);
        let base = block_offset(chunk, pool.geo.1, pool.geo.0, l);
        let ad = self.addrs.get(usize::from(a))?;
        if ad.perm.is_empty() {
            Some((ad.port_at(u32::from(min), base), ad.port_at(u32::from(min), base + chunk - 1).min(max)))
        } else {
            let ports = (base..base + chunk).map(|o| ad.port_at(u32::from(min), o));
            Some((ports.clone().min()?, ports.max()?))
        }
    }

    fn sessions_of(&self, inside: u32, pool: u16) -> u32 {
        self.find_subscriber(inside, pool).and_then(|s| self.sub(s)).map_or(0, |x| x.sessions)
    }

    /// Who holds public `ip`:`port` now: the subscriber whose block on
    /// this worker contains it, or the one a deterministic pool's formula
    /// names. `None`: not a pool address, no block of this worker, a free
    /// block, a shared pool (its sessions tell), or no formula range.
    pub fn holder(&self, ip: u32, port: u16) -> Option<Held> {
        let a = self.addr_of_ip(ip)?;
        let ad = self.addrs.get(usize::from(a))?;
        let pool = self.pools.get(usize::from(ad.pool))?;
        if let Some(det) = &pool.det {
            let inside = det.reverse_index(u32::from(a - pool.first_addr), port)?;
            let r = det.forward(inside)?;
            let sessions = self.sessions_of(inside, ad.pool);
            let (first_port, last_port) = (r.first, r.last);
            return Some(Held {
                inside,
                public: ip,
                first_port,
                last_port,
                pool: ad.pool,
                kind: HeldKind::Formula,
                sessions,
            });
        }
        if !matches!(pool.params.mode, PoolMode::PortBlocks { .. }) {
            return None;
        }
        let (l, _, _) = self.locate(a, port)?;
        let owner = ad.blocks.get(usize::from(l))?.owner;
        let sub = self.subs.get(owner as usize).filter(|_| owner != NIL)?;
        let (first_port, last_port) = self.block_range(a, l)?;
        Some(Held {
            inside: sub.inside_ip,
            public: ip,
            first_port,
            last_port,
            pool: ad.pool,
            kind: HeldKind::Block,
            sessions: sub.sessions,
        })
    }

    /// What subscriber `inside` holds now, pool by pool: its blocks on this
    /// worker, its shared pool address, and the range of every
    /// deterministic pool whose prefix holds it (the formula's, live or not).
    pub fn held_by(&self, inside: u32) -> Vec<Held> {
        let mut out = Vec::new();
        for (pi, pool) in self.pools.iter().enumerate() {
            let Ok(pi) = u16::try_from(pi) else { break };
            if let Some(r) = pool.det.as_ref().and_then(|d| d.forward(inside)) {
                out.push(Held {
                    inside,
                    public: r.public_ip,
                    first_port: r.first,
                    last_port: r.last,
                    pool: pi,
                    kind: HeldKind::Formula,
                    sessions: self.sessions_of(inside, pi),
                });
                continue;
            }
            let Some(sub) = self.find_subscriber(inside, pi).and_then(|s| self.sub(s)) else { continue };
            let public = self.ip_of(sub.addr);
            if !matches!(pool.params.mode, PoolMode::PortBlocks { .. }) {
                let (first_port, last_port) = (pool.params.port_min, pool.params.port_max);
                let kind = HeldKind::Shared;
                out.push(Held { inside, public, first_port, last_port, pool: pi, kind, sessions: sub.sessions });
                continue;
            }
            for &l in sub.blocks.iter().take(usize::from(sub.n_blocks)) {
                if let Some((first_port, last_port)) = self.block_range(sub.addr, l) {
                    let kind = HeldKind::Block;
                    out.push(Held { inside, public, first_port, last_port, pool: pi, kind, sessions: sub.sessions });
                }
            }
        }
        out
    }
}
