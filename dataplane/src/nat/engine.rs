//! The engine's state and the accessors every stage shares: the session
//! table and its four indexes, the port maps, the rules and forwards, the
//! timeouts, and the hash shims that key the indexes (see [`super::keys`]).
//!
//! Invariant: all memory is allocated in [`Engine::new`]; nothing after it
//! allocates on the packet path.
#![forbid(unsafe_code)]

use super::*;

#[derive(Debug, Clone, Copy)]
pub(super) struct ForwardRt {
    pub(super) f: Forward,
    pub(super) addr: u16,
    pub(super) proto: L4,
}

/// A 1:1 static NAT entry at run time: its public address's index.
#[derive(Debug, Clone, Copy)]
pub(super) struct StaticRt {
    pub(super) inside: u32,
    pub(super) addr: u16,
    pub(super) ftp_alg: bool,
}

/// A forward's protocol: TCP or UDP (ICMP has no ports to forward).
pub(super) fn forward_proto(f: &Forward) -> Result<L4, ParamError> {
    match L4::from_ip_proto(f.protocol) {
        Some(p @ (L4::Tcp | L4::Udp)) => Ok(p),
        _ => Err(ParamError::ForwardProtocol(f.protocol)),
    }
}

/// A forward's public address index: a pool's address, with well-formed ranges.
pub(super) fn forward_addr(ports: &Ports, f: &Forward) -> Result<u16, ParamError> {
    let ip = crate::wire::fmt_ipv4(f.public_addr);
    let addr = ports
        .addr_of_ip(f.public_addr)
        .filter(|&a| !ports.is_static(a))
        .ok_or(ParamError::ForwardOffPool { addr: ip, port: f.public_port })?;
    if !f.well_formed() {
        return Err(ParamError::ForwardRange { addr: ip, port: f.public_port });
    }
    Ok(addr)
}

/// 1:1 static NAT entries: each public address in no pool and not the
/// box's own, no public or inside address twice.
pub(super) fn check_statics(p: &EngineParams) -> Result<(), ParamError> {
    for (i, st) in p.statics.iter().enumerate() {
        let bad = |addr, why| Err(ParamError::Static { addr: crate::wire::fmt_ipv4(addr), why });
        if p.pools.iter().any(|x| x.addresses.contains(&st.public_addr)) {
            return bad(st.public_addr, "the public address is a pool's");
        }
        if p.local_addrs.contains(&st.public_addr) {
            return bad(st.public_addr, "the public address is the box's own");
        }
        let before = p.statics.get(..i).unwrap_or_default();
        if before.iter().any(|x| x.public_addr == st.public_addr) {
            return bad(st.public_addr, "the public address is listed twice");
        }
        if before.iter().any(|x| x.inside_addr == st.inside_addr) {
            return bad(st.inside_addr, "the inside host has two public addresses");
        }
    }
    Ok(())
}

/// One worker's NAT engine.
pub struct Engine {
    pub(super) worker: u16,
    pub(super) workers: u16,
    pub(super) seed: u64,
    pub(super) steering: Option<crate::rss::SubscriberSteering>,
    pub(super) rng: u64,
    pub(super) timeouts: Timeouts,
    pub(super) class_timeout: [u32; class::SLOTS],
    pub(super) rules: rules::RuleSet,
    pub(super) forwards: Vec<ForwardRt>,
    /// 1:1 static NAT by inside address (sorted).
    pub(super) statics_by_inside: Vec<StaticRt>,
    /// 1:1 static NAT by public address index (sorted).
    pub(super) statics_by_addr: Vec<StaticRt>,
    pub(super) local: Vec<u32>,
    pub(super) sessions: SessionTable,
    pub(super) i2o: Index,
    pub(super) o2i: LaterIndex,
    pub(super) imap: Index,
    pub(super) omap: LaterIndex,
    pub(super) ports: Ports,
    pub(super) frags: Fragments,
    pub(super) hold: Hold,
    pub(super) refusals: refusal::Refusals,
    /// The FTP ALG's slots and grown packets.
    pub(super) alg: alg::Alg,
    /// The frames being processed were handed over by another worker
    /// ([`Engine::set_handed_off`]).
    pub(super) handed_off: bool,
    pub(super) counters: Counters,
    pub(super) scratch: Option<Box<[Item; BATCH]>>,
    pub(super) created: Created,
    /// Whether the tables outgrow the caches (prefetch across the batch).
    pub(super) prefetch: bool,
    /// The parameters in force (for live changes).
    pub(super) params: EngineParams,
    /// An HA standby: drops every frame, expires nothing (`nat::ha`).
    pub(super) standby: bool,
    /// Records mapped sessions' creation and deletion for an HA standby.
    pub(super) sync_sessions: bool,
}

/// The worker that owns a subscriber (inside address) among `workers`.
/// A pure function of the address: the owner when no RSS steering is set
/// ([`Engine::subscriber_owner`] uses the NIC's hash when it is).
pub fn subscriber_owner(inside_ip: u32, workers: u16) -> u16 {
    if workers <= 1 {
        return 0;
    }
    let h = u64::from(inside_ip).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    u16::try_from(h % u64::from(workers)).unwrap_or(0)
}

impl Engine {
    /// Builds an engine; all memory is allocated here.
    pub fn new(p: &EngineParams) -> Result<Self, ParamError> {
        if p.max_sessions == 0 || p.max_sessions >= session::MAX_SESSIONS {
            return Err(ParamError::TableSize { table: "max_sessions", max: session::MAX_SESSIONS });
        }
        if p.max_subscribers == 0 || p.max_subscribers >= index::MAX_ENTRIES {
            return Err(ParamError::TableSize { table: "max_subscribers", max: index::MAX_ENTRIES });
        }
        for r in &p.rules {
            if let RuleAction::Translate { pool } = r.action {
                if usize::from(pool) >= p.pools.len() {
                    return Err(ParamError::NoSuchPool(pool));
                }
            }
        }
        check_statics(p)?;
        let mut ports = Ports::new(p)?;
        let mut forwards = Vec::new();
        for f in &p.forwards {
            let addr = forward_addr(&ports, f)?;
            let proto = forward_proto(f)?;
            // Only the owning worker marks a port; others never allocate it
            // because they do not own it.
            for port in f.public_port..=f.public_port_last {
                ports.reserve(addr, proto, port);
            }
            forwards.push(ForwardRt { f: *f, addr, proto });
        }
        let mut statics_by_inside: Vec<StaticRt> = p
            .statics
            .iter()
            .filter_map(|st| {
                Some(StaticRt { inside: st.inside_addr, addr: ports.addr_of_ip(st.public_addr)?, ftp_alg: st.ftp_alg })
            })
            .collect();
        statics_by_inside.sort_unstable_by_key(|x| x.inside);
        let mut statics_by_addr = statics_by_inside.clone();
        statics_by_addr.sort_unstable_by_key(|x| x.addr);
        let mut local = p.local_addrs.clone();
        local.sort_unstable();
        let t = p.timeouts;
        // Load 1/2 (short probes), or in tables so large that their size is
        // what counts 3/4 for the flow indexes every packet probes and 5/6
        // for the mapping indexes, probed only when sessions are made or
        // go (see COMPACT_ABOVE_SESSIONS). Tables the single pass serves
        // (up to PREFETCH_ABOVE_SESSIONS, in cache) keep their flow indexes
        // at 1/4: at 1/2 half the look-ups step past a slot (1.5 slots a
        // hit on average, 1.17 at 1/4), for 1 MB more at the most.
        let compact = p.max_sessions > COMPACT_ABOVE_SESSIONS;
        let small = p.max_sessions <= PREFETCH_ABOVE_SESSIONS;
        let (flow_load, map_load) = match (compact, small) {
            (true, _) => ((3, 4), (5, 6)),
            (false, true) => ((1, 4), (1, 2)),
            (false, false) => ((1, 2), (1, 2)),
        };
        Ok(Self {
            worker: p.worker,
            workers: p.workers,
            seed: p.seed,
            steering: p.steering.clone(),
            rng: p.seed | 1,
            timeouts: t,
            class_timeout: t.by_class(),
            rules: rules::RuleSet::new(&p.rules),
            forwards,
            statics_by_inside,
            statics_by_addr,
            local,
            sessions: SessionTable::new(p.max_sessions, t.longest()),
            i2o: Index::with_load(p.max_sessions, flow_load.0, flow_load.1).asking_two_lines(compact),
            o2i: LaterIndex::with_load(p.max_sessions, flow_load.0, flow_load.1).asking_two_lines(compact),
            imap: Index::with_load(p.max_sessions, map_load.0, map_load.1).asking_two_lines(compact),
            omap: LaterIndex::with_load(p.max_sessions, map_load.0, map_load.1).asking_two_lines(compact),
            ports,
            frags: Fragments::new(p.max_fragments, t.fragment_secs, p.seed ^ 0xf7a6),
            hold: Hold::new(p.fragment_hold, p.fragment_hold_bytes, t.fragment_secs),
            refusals: refusal::Refusals::new(p.max_subscribers, p.seed),
            alg: alg::Alg::new(alg::ALG_SLOTS),
            handed_off: false,
            counters: Counters::default(),
            scratch: Some(Box::new([Item::EMPTY; BATCH])),
            created: Created::default(),
            // Past 64k sessions the slab (32 B each) and indexes leave L2.
            prefetch: p.max_sessions > PREFETCH_ABOVE_SESSIONS,
            params: p.clone(),
            standby: p.standby,
            sync_sessions: p.sync_sessions,
        })
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Live sessions.
    pub fn live_sessions(&self) -> u32 {
        self.sessions.live()
    }

    /// Port blocks held by subscribers on this worker.
    pub fn blocks_in_use(&self) -> u32 {
        self.ports.blocks_in_use
    }

    /// Free port blocks of public address `ip` on this worker.
    pub fn free_blocks(&self, ip: u32) -> Option<usize> {
        self.ports.addr_of_ip(ip).map(|a| self.ports.free_blocks(a))
    }

    /// Live subscribers.
    pub fn subscribers(&self) -> usize {
        self.ports.subscribers()
    }

    /// Faults the session slab and the four indexes in now, on the calling
    /// thread's NUMA node (masq's workers, before traffic): the first
    /// packets to reach a page then take no page fault.
    pub fn prefault(&mut self) {
        self.sessions.prefault();
        self.i2o.prefault();
        self.o2i.prefault();
        self.imap.prefault();
        self.omap.prefault();
    }

    /// All memory the session table, its four indexes, the port maps and the
    /// subscriber, fragment and refusal tables take, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.sessions.memory_bytes()
            + self.i2o.memory_bytes()
            + self.o2i.memory_bytes()
            + self.imap.memory_bytes()
            + self.omap.memory_bytes()
            + self.ports.memory_bytes()
            + self.frags.memory_bytes()
            + self.hold.memory_bytes()
            + self.refusals.memory_bytes()
            + self.alg.memory_bytes()
    }

    /// The source of the ICMP errors refused subscribers get
    /// ([`EngineParams::icmp_source`]).
    pub fn icmp_source(&self) -> Option<u32> {
        self.params.icmp_source
    }

    /// The pools' names, in the engine's numbering (the index of
    /// [`Counters::subscriber_limit_events`] and of a [`ports::BlockEvent`]'s
    /// pool): those it started with in order, then those live changes
    /// added (a removed pool keeps its number).
    pub fn pool_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.ports.pools.iter().map(|p| p.params.name.as_str())
    }

    /// The worker owning public (`ip`, `port`), if `ip` is a pool address
    /// (a 1:1 static address's sessions live with its inside host's worker).
    pub fn public_owner(&self, ip: u32, port: u16) -> Option<u16> {
        let a = self.ports.addr_of_ip(ip)?;
        match self.static_by_addr(a) {
            Some(inside) => Some(self.subscriber_owner(inside)),
            // An FTP ALG forward's sessions: its server's worker.
            None => match self.forward_by_public(a, port, L4::Tcp).filter(|f| f.f.ftp_alg) {
                Some(f) => self.forward_owner(&f, port),
                None => self.port_owner(a, port),
            },
        }
    }

    /// The worker holding the sessions of public (`ip`, `port`) of
    /// protocol `proto`: [`Engine::public_owner`], except that a port of
    /// any forward (not only an FTP ALG one, and of `proto`, not TCP) is
    /// the forward's ([`Engine::forward_owner`]: a range to one inside
    /// port lives with its first port's owner). ICMP errors from outside
    /// go there.
    pub(super) fn flow_owner(&self, ip: u32, port: u16, proto: L4) -> Option<u16> {
        let a = self.ports.addr_of_ip(ip)?;
        match self.static_by_addr(a) {
            Some(inside) => Some(self.subscriber_owner(inside)),
            None => match self.forward_by_public(a, port, proto) {
                Some(f) => self.forward_owner(&f, port),
                None => self.port_owner(a, port),
            },
        }
    }

    /// The worker keeping the sessions of forward `f`'s public `port`: the
    /// port's owner ([`Forward::home_port`]), or, with the FTP ALG, the
    /// inside server's, as a 1:1 static host's: the passive data
    /// connections the ALG opens are mappings of the server, which live
    /// there.
    pub(super) fn forward_owner(&self, f: &ForwardRt, port: u16) -> Option<u16> {
        if f.f.ftp_alg {
            Some(self.subscriber_owner(f.f.inside_addr))
        } else {
            self.port_owner(f.addr, f.f.home_port(port))
        }
    }

    /// The worker owning public (address `a`, `port`) of a pool: in a
    /// deterministic pool (RFC 7422) the worker of the inside address the
    /// formula gives, elsewhere the port's chunk's.
    pub(super) fn port_owner(&self, a: u16, port: u16) -> Option<u16> {
        match self.ports.det_inside(a, port) {
            Some(inside) => Some(self.subscriber_owner(inside)),
            None => self.ports.owner_of(a, port),
        }
    }

    pub(super) fn is_local(&self, ip: u32) -> bool {
        // Sorted: a range check first spares the search for most addresses.
        matches!((self.local.first(), self.local.last()), (Some(&lo), Some(&hi)) if ip >= lo && ip <= hi)
            && self.local.binary_search(&ip).is_ok()
    }

    #[inline(always)]
    /// The subscriber slot a session with [`flag::SUB`] is counted in.
    pub(super) fn session_sub(&self, s: &Session) -> u32 {
        self.ports.find_subscriber(s.inside_ip.get(), keys::pool_of(&self.ports, s)).unwrap_or(NIL)
    }

    #[inline(always)]
    pub(super) fn h_i2o(&self, inside: u32, iport: u16, remote: u32, rport: u16, proto: L4) -> u64 {
        keys::i2o(self.seed, inside, iport, remote, rport, proto)
    }

    #[inline(always)]
    pub(super) fn h_o2i(&self, public: u32, pport: u16, remote: u32, rport: u16, proto: L4) -> u64 {
        keys::o2i(self.seed, public, pport, remote, rport, proto)
    }

    pub(super) fn h_imap(&self, inside: u32, iport: u16, proto: L4) -> u64 {
        keys::imap(self.seed, inside, iport, proto)
    }

    pub(super) fn h_omap(&self, public: u32, pport: u16, proto: L4) -> u64 {
        keys::omap(self.seed, public, pport, proto)
    }

    pub(super) fn session_hashes(&self, s: &Session) -> (u64, u64) {
        (keys::session_i2o(self.seed, s), keys::session_o2i(self.seed, s))
    }

    pub(super) fn pool_of_session(&self, s: &Session) -> u16 {
        keys::pool_of(&self.ports, s)
    }

    /// The session whose key in this direction (inside to outside when
    /// `I2O`) is the packet's tuple, confirmed as the fast lane confirms it.
    #[inline(always)]
    pub(super) fn find<const I2O: bool>(
        &self,
        h: u64,
        src: u32,
        sport: u16,
        dst: u32,
        dport: u16,
        proto: L4,
    ) -> Option<u32> {
        let hot = &self.sessions.hot;
        let (w0, ports) = hash::wire_words(src, sport, dst, dport);
        let is_key = |i: u32| hot.get(i as usize).is_some_and(|s| s.has_key::<I2O>(w0, ports, proto));
        if I2O {
            self.i2o.find(h, is_key)
        } else {
            self.o2i.find(h, is_key)
        }
    }

    /// True if the session idled past its timeout (it is then treated as gone).
    #[inline(always)]
    pub(super) fn stale(&self, s: &Session, now: u32) -> bool {
        let t = self.class_timeout.get(usize::from(s.class)).copied().unwrap_or(0);
        // Worker time never goes back; if it did, the wrapped difference
        // reads as stale and the general path deals with it (the fast
        // lane's compare with `Lane::fresh_after` would read a session
        // seen "later" than now as fresh: it relies on the same clock).
        now.wrapping_sub(s.last_seen) >= t
    }

    pub(super) fn forward_by_public(&self, addr: u16, port: u16, proto: L4) -> Option<ForwardRt> {
        self.forwards
            .iter()
            .find(|f| f.addr == addr && f.proto == proto && (f.f.public_port..=f.f.public_port_last).contains(&port))
            .copied()
    }

    pub(super) fn forward_by_inside(&self, ip: u32, port: u16, proto: L4) -> Option<ForwardRt> {
        self.forwards
            .iter()
            .find(|f| {
                f.f.inside_addr == ip && f.proto == proto && (f.f.inside_port..=f.f.inside_port_last).contains(&port)
            })
            .copied()
    }

    /// The 1:1 static NAT entry of inside host `ip`: its public address index.
    #[inline]
    pub(super) fn static_by_inside(&self, ip: u32) -> Option<u16> {
        if self.statics_by_inside.is_empty() {
            return None;
        }
        let i = self.statics_by_inside.binary_search_by_key(&ip, |x| x.inside).ok()?;
        self.statics_by_inside.get(i).map(|x| x.addr)
    }

    /// The inside host of 1:1 static public address index `addr`.
    #[inline]
    pub(super) fn static_by_addr(&self, addr: u16) -> Option<u32> {
        self.static_rt_by_addr(addr).map(|x| x.inside)
    }

    /// The 1:1 static NAT entry of public address index `addr`.
    #[inline]
    pub(super) fn static_rt_by_addr(&self, addr: u16) -> Option<StaticRt> {
        let i = self.statics_by_addr.binary_search_by_key(&addr, |x| x.addr).ok()?;
        self.statics_by_addr.get(i).copied()
    }

    /// True if 1:1 static host `ip` has the FTP ALG on.
    pub(super) fn static_alg(&self, ip: u32) -> bool {
        let i = self.statics_by_inside.binary_search_by_key(&ip, |x| x.inside);
        i.ok().and_then(|i| self.statics_by_inside.get(i)).is_some_and(|x| x.ftp_alg)
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// This worker's number.
    pub fn worker(&self) -> u16 {
        self.worker
    }

    /// The worker that owns subscriber `inside_ip`: the inside NIC's queue
    /// for it when RSS steering is set, masq's own hash otherwise.
    pub fn subscriber_owner(&self, inside_ip: u32) -> u16 {
        match &self.steering {
            Some(st) => st.owner(inside_ip, self.workers),
            None => subscriber_owner(inside_ip, self.workers),
        }
    }
}

/// xorshift64 on `state`: port randomisation only, not a security boundary.
#[inline(always)]
#[allow(clippy::cast_possible_truncation)] // the high half is the point
pub(super) fn xorshift(state: &mut u64) -> u32 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    (x >> 32) as u32
}
