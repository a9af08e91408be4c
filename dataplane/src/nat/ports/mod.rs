//! Public addresses, port blocks and subscribers (RFC 6888, RFC 7422 style).
//!
//! Each pool address's port range is cut into chunks of `block_size` ports
//! (64 in shared pools); chunk `c` belongs to worker `c % workers`. So the
//! owner of any public (address, port) is a pure function ([`Ports::owner_of`])
//! that every worker can compute. Chunks are cut from the ports in numeric
//! order, or, in a port-block pool with an RSS-aware port order
//! ([`PoolParams::port_orders`]), in that order: a worker's chunks then hold
//! exactly the ports whose replies the NIC delivers to its own queue.
//!
//! A chunk keeps, per protocol, four bitmaps: ports in use and three hold
//! generations. A freed port goes into the generation of the current window
//! (a window is half the hold time) and that generation is cleared when its
//! window comes round again, two windows later, so a port is never handed out
//! again sooner than the hold time (RFC 6888 REQ-8). Allocation is "first zero
//! bit of in-use | holds", word by word: O(block size / 64), never probing.
//!
//! In port-block pools a subscriber takes whole blocks, all on its one paired
//! address (RFC 4787 REQ-2), up to its limit; exhausting them hurts only that
//! subscriber. Shared pools (home masquerade) keep the source port when free
//! and keep ports below 512, 512-1023 and from 1024 up in their class, as
//! netfilter does.
//!
//! 1:1 static NAT addresses ([`Ports::add_static`]) sit among the
//! addresses, so every by-address lookup finds them, but belong to no pool
//! ([`STATIC_POOL`]) and have no blocks: nothing is ever allocated on them.
//!
//! Deterministic pools (RFC 7422, [`super::deterministic`]): the block
//! size is the ports per subscriber, every worker holds every block (the
//! subscriber's owner is its inside address's worker, not `c % workers`),
//! a subscriber gets exactly the block the formula names on the address it
//! names when it is created, takes no other, and its block never goes on
//! the free list ([`Ports::det_inside`] answers whose a public port is).
//!
//! Port parity (RFC 4787 REQ-4), a pool option: a search takes only ports
//! of the preferred port's parity, and only when none is left, any port.
//!
//! Invariants: a port is set in the in-use map exactly while one mapping (or
//! a static forward, every port of a range) holds it; a port-block subscriber's ports all lie in
//! its own blocks; `Block::used` counts the in-use bits a subscriber set.
#![forbid(unsafe_code)]
// Port arithmetic: every value cast to u16 here is a port, a bit offset in a
// block (< block size), a block number (< 65536 / 64) or an address index
// (< 16384, checked in `Ports::new`), so it fits by construction.
#![allow(clippy::cast_possible_truncation)]

use super::hash::hash3;
use super::index::Index;
use super::l4::L4;
use super::params::{
    EngineParams, ParamError, PoolMode, PoolParams, PoolProblem, MAX_BLOCKS_PER_SUBSCRIBER, MAX_POOLS,
    SHARED_OWNERSHIP_CHUNK,
};
use super::session::NIL;
use crate::nat::DropReason;
use std::collections::VecDeque;

mod alloc;
mod bitmap;
mod current;
mod events;
mod geometry;
mod ha;
mod held;
mod subscribers;
#[cfg(test)]
mod tests;

pub use events::{BlockEvent, EventKind, SessionChange, SessionInfo, BLOCK_EVENTS};
pub use ha::{BlockImport, ImportedBlock};
pub use held::{Held, HeldKind};

use bitmap::*;
use geometry::*;
use subscribers::*;

const PROTOS: usize = L4::COUNT;

/// The pool number of a 1:1 static NAT address ([`Ports::add_static`]):
/// no pool, no blocks, nothing to allocate.
pub const STATIC_POOL: u16 = u16::MAX;
// Per block and protocol: in use, three hold generations, and "busy" (the
// OR of the other four, kept up to date so a search reads one plane).
const PLANES: usize = 5;
const BUSY: usize = 4;

/// A pool at run time.
#[derive(Debug)]
pub struct PoolRt {
    /// The configured pool.
    pub params: PoolParams,
    /// First global address index of this pool.
    pub first_addr: u16,
    /// Number of addresses.
    pub n_addrs: u16,
    /// Ports per chunk (block).
    pub chunk: u16,
    words: usize,
    n_chunks: u32,
    /// Chunk geometry (worker, workers): this worker's, or (0, 1) in a
    /// deterministic pool, where every worker holds every chunk and a
    /// chunk belongs to the worker of the subscriber the formula gives it.
    geo: (u32, u32),
    /// The formula of a deterministic pool (RFC 7422).
    pub det: Option<super::deterministic::Deterministic>,
    /// A deterministic pool's overflow: the port-block pool its
    /// subscribers take ports from past their range (`Ports::resolve_overflow`).
    pub overflow: Option<u16>,
}

#[derive(Debug, Clone, Copy)]
struct Block {
    owner: u32,
    window: u32,
    used: u32,
    used_by_proto: [u16; PROTOS],
}

/// A range of the bitmap arena: `len` words from `at`.
#[derive(Debug, Clone, Copy, Default)]
struct BitsAt {
    at: usize,
    len: usize,
}

impl BitsAt {
    /// The words of the arena it names.
    #[inline(always)]
    fn range(self) -> std::ops::Range<usize> {
        self.at..self.at + self.len
    }
}

/// One public address: this worker's chunks of it.
#[derive(Debug)]
pub struct AddrPorts {
    /// The address, host order.
    pub ip: u32,
    /// Pool index.
    pub pool: u16,
    blocks: Vec<Block>,
    /// Where its port bitmaps lie in [`Ports`]' bitmap arena.
    bits: BitsAt,
    /// Blocks no subscriber holds, the one given back longest ago first:
    /// a block's released ports wait out the reuse hold in it, so the
    /// oldest is the likeliest to have them free again.
    free_blocks: VecDeque<u16>,
    /// Port of each offset in the chunked order (empty: `port_min + offset`).
    perm: Vec<u16>,
    /// Offset of each port (`NO_OFFSET`: not in the order); empty with `perm`.
    inv: Vec<u16>,
    /// Removed from its pool by a live configuration change: no new
    /// subscriber takes it and no packet finds it.
    pub retired: bool,
    /// Its pool's geometry if the pool is plain, a port-block pool with
    /// neither port parity nor random ports: the one
    /// [`Ports::alloc_current`] serves, which reads it here and no pool
    /// (-5 instructions a new session; a pool's geometry needs a restart
    /// to change). `None` for any other pool.
    pub(super) plain: Option<PlainGeo>,
}

/// A plain pool's geometry ([`AddrPorts::plain`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct PlainGeo {
    /// Ports per block ([`PoolRt::chunk`]).
    pub chunk: u32,
    /// Bitmap words per block plane ([`PoolRt::words`]), as a `u16` (a
    /// chunk is at most 65536 ports): the planes' offsets are then known
    /// not to overflow, which spares the allocation their checks.
    pub words: u16,
    /// The pool's first port.
    pub min: u32,
    /// [`PoolRt::geo`].
    pub geo: (u32, u32),
}

/// A subscriber (inside address) within one pool.
#[derive(Debug, Clone, Copy)]
pub struct Subscriber {
    /// Inside address.
    pub inside_ip: u32,
    /// Pool index.
    pub pool: u16,
    /// Paired public address (global index).
    pub addr: u16,
    /// Live sessions.
    pub sessions: u32,
    /// Sessions it may hold: its pool's `max_sessions_per_subscriber`
    /// (which needs a restart to change), kept here so a new session is
    /// counted on the subscriber in hand.
    pub limit: u32,
    /// Blocks held (port-block pools).
    pub n_blocks: u8,
    /// Position in `blocks` of the block that last had a free port.
    pub hint: u8,
    /// Local block numbers on `addr`.
    pub blocks: [u16; MAX_BLOCKS_PER_SUBSCRIBER],
    /// Holds blocks an HA active box gave it (`ports::ha`) with no
    /// session: not freed at zero sessions until unpinned.
    pub pinned: bool,
}

/// All pools, addresses and subscribers of one worker.
pub struct Ports {
    /// Pools.
    pub pools: Vec<PoolRt>,
    /// Addresses, global index order.
    pub addrs: Vec<AddrPorts>,
    by_ip: Vec<(u32, u16)>,
    /// The first and last of `by_ip`'s addresses ((`u32::MAX`, 0): none),
    /// the range outside which `addr_of_ip` need not search.
    by_ip_span: (u32, u32),
    /// Public IPs by address index (a flat copy of `addrs[i].ip` for the fast lane).
    pub ips: Vec<u32>,
    /// Every address's port bitmaps, one after another (`AddrPorts::bits`
    /// says where): one allocation, which at a carrier's size (121 KiB an
    /// address with blocks of 512) passes `HugePageAlloc`'s 2 MiB and lands
    /// on huge pages; an address's own 121 KiB would sit on 4 KiB pages,
    /// and with many subscribers a new session's bitmap word cost a TLB
    /// miss (THP `always` ran new sessions 15% faster at 10k subscribers).
    bits: Vec<u64>,
    worker: u32,
    workers: u32,
    hold_window: u32,
    hold: bool,
    subs: Vec<Subscriber>,
    sub_index: Index,
    sub_free: Vec<u32>,
    /// The slot last found for an inside address, by its low bits (a
    /// power of two of them, [`Ports::subscriber`]): confirmed against the
    /// subscriber itself before use, so a stale entry only costs the index.
    sub_recent: Vec<u32>,
    seed: u64,
    /// Blocks currently held by subscribers.
    pub blocks_in_use: u32,
    /// Block events not yet collected (at most [`BLOCK_EVENTS`]).
    pub events: Vec<BlockEvent>,
    /// Block events lost because nobody collected them in time.
    pub events_dropped: u64,
    /// Some pool has `log_sessions` (the one test where sessions are
    /// installed and removed; the per-pool flag is read only when set).
    pub log_sessions: bool,
    /// An HA standby: events are not recorded (the active box logs them).
    pub quiet: bool,
}

/// A 1:1 static address: no pool, no blocks, no bits.
fn static_addr(ip: u32) -> AddrPorts {
    AddrPorts {
        ip,
        pool: STATIC_POOL,
        blocks: Vec::new(),
        bits: BitsAt::default(),
        free_blocks: VecDeque::new(),
        perm: Vec::new(),
        inv: Vec::new(),
        retired: false,
        plain: None,
    }
}

impl Ports {
    /// Builds the pools from the parameters.
    pub fn new(p: &EngineParams) -> Result<Self, ParamError> {
        if p.workers == 0 || p.worker >= p.workers {
            return Err(ParamError::Worker { worker: p.worker, workers: p.workers });
        }
        if p.pools.len() > MAX_POOLS {
            return Err(ParamError::TooMany("pools"));
        }
        let (worker, workers) = (u32::from(p.worker), u32::from(p.workers));
        let mut pools = Vec::new();
        let mut addrs: Vec<AddrPorts> = Vec::new();
        let mut bits = Vec::new();
        for (pi, pp) in p.pools.iter().enumerate() {
            let (rt, a) = build_pool(pi, pp, addrs.len(), worker, workers, &mut bits)?;
            pools.push(rt);
            addrs.extend(a);
        }
        bits.shrink_to_fit();
        // 1:1 static addresses: found by address like a pool's, no ports.
        addrs.extend(p.statics.iter().map(|st| static_addr(st.public_addr)));
        if addrs.len() >= 1 << 14 {
            return Err(ParamError::TooMany("addresses"));
        }
        let mut by_ip: Vec<(u32, u16)> = addrs.iter().enumerate().map(|(i, a)| (a.ip, i as u16)).collect();
        by_ip.sort_unstable();
        if let Some([a, _]) = by_ip.windows(2).find(|w| matches!(w, [a, b] if a.0 == b.0)) {
            return Err(ParamError::AddressInTwoPools(crate::wire::fmt_ipv4(a.0)));
        }
        let hold = p.timeouts.port_hold_secs > 0;
        let cap = p.max_subscribers.max(1);
        let ips = addrs.iter().map(|a| a.ip).collect();
        crate::nat::reconfigure::check_overflow(p)?;
        let mut ports = Self {
            pools,
            addrs,
            by_ip_span: span_of(&by_ip),
            by_ip,
            ips,
            bits,
            worker,
            workers,
            hold_window: (p.timeouts.port_hold_secs / 2).max(1),
            hold,
            subs: vec![EMPTY_SUB; cap as usize],
            sub_index: Index::with_entries(cap),
            sub_free: (0..cap).rev().collect(),
            sub_recent: vec![u32::MAX; (cap as usize).next_power_of_two().min(SUB_RECENT_MAX)],
            seed: p.seed,
            blocks_in_use: 0,
            events: Vec::with_capacity(BLOCK_EVENTS),
            events_dropped: 0,
            log_sessions: p.pools.iter().any(|x| x.log_sessions) || p.sync_sessions,
            quiet: p.standby,
        };
        ports.resolve_overflow();
        Ok(ports)
    }

    /// Numbers every deterministic pool's overflow pool (by name; a name
    /// no port-block pool has leaves it without one: the parameters were
    /// checked before).
    pub(crate) fn resolve_overflow(&mut self) {
        let found: Vec<Option<u16>> = self
            .pools
            .iter()
            .map(|p| {
                let name = p.params.overflow.as_deref()?;
                let i = self
                    .pools
                    .iter()
                    .position(|x| x.params.name == name && matches!(x.params.mode, PoolMode::PortBlocks { .. }))?;
                u16::try_from(i).ok()
            })
            .collect();
        for (p, o) in self.pools.iter_mut().zip(found) {
            p.overflow = o.filter(|_| p.det.is_some());
        }
    }

    /// The overflow pool of `pool`, if it is a deterministic pool with one.
    #[inline(always)]
    pub fn overflow_of(&self, pool: u16) -> Option<u16> {
        self.pools.get(usize::from(pool)).and_then(|p| p.overflow)
    }

    /// Memory the port maps and subscriber table use.
    pub fn memory_bytes(&self) -> usize {
        let a: usize = self
            .addrs
            .iter()
            .map(|a| {
                a.bits.len * 8
                    + a.blocks.len() * std::mem::size_of::<Block>()
                    + (a.free_blocks.len() + a.perm.len() + a.inv.len()) * 2
            })
            .sum();
        a + self.subs.len() * std::mem::size_of::<Subscriber>()
            + self.sub_index.memory_bytes()
            + self.sub_recent.len() * 4
    }

    /// The global index of a public address.
    #[inline]
    pub fn addr_of_ip(&self, ip: u32) -> Option<u16> {
        // Sorted: outside the range of pool addresses there is nothing to search.
        let (lo, hi) = self.by_ip_span;
        if ip < lo || ip > hi {
            return None;
        }
        self.by_ip.binary_search_by_key(&ip, |&(a, _)| a).ok().and_then(|i| self.by_ip.get(i)).map(|&(_, x)| x)
    }

    /// True if address `a` is a 1:1 static NAT address (no pool's).
    #[inline]
    pub fn is_static(&self, a: u16) -> bool {
        self.addrs.get(usize::from(a)).is_some_and(|x| x.pool == STATIC_POOL)
    }

    /// The address with global index `a`.
    #[inline(always)]
    pub fn ip_of(&self, a: u16) -> u32 {
        self.ips.get(usize::from(a)).copied().unwrap_or(0)
    }

    /// Address `a` and its port bitmaps, to change both.
    #[inline(always)]
    pub(super) fn addr_mut(&mut self, a: u16) -> Option<(&mut AddrPorts, &mut [u64])> {
        let ad = self.addrs.get_mut(usize::from(a))?;
        let bits = self.bits.get_mut(ad.bits.range())?;
        Some((ad, bits))
    }

    /// Address `a`'s port bitmaps.
    #[inline(always)]
    pub(super) fn addr_bits(&self, a: u16) -> Option<&[u64]> {
        let ad = self.addrs.get(usize::from(a))?;
        self.bits.get(ad.bits.range())
    }

    /// The pool of address `a`.
    pub fn pool_of(&self, a: u16) -> Option<&PoolRt> {
        self.addrs.get(usize::from(a)).and_then(|x| self.pools.get(usize::from(x.pool)))
    }

    /// Adds a pool at run time (a live configuration change); returns its index.
    pub fn add_pool(&mut self, pp: &PoolParams) -> Result<u16, ParamError> {
        let pi = self.pools.len();
        if pi >= MAX_POOLS {
            return Err(ParamError::TooMany("pools"));
        }
        let before = self.bits.len();
        let (rt, a) = match build_pool(pi, pp, self.addrs.len(), self.worker, self.workers, &mut self.bits) {
            Ok(built) => built,
            Err(e) => {
                self.bits.truncate(before);
                return Err(e);
            }
        };
        if a.iter().any(|x| self.addr_of_ip(x.ip).is_some()) {
            self.bits.truncate(before);
            return Err(ParamError::pool(&pp.name, PoolProblem::AddressInAnotherPool));
        }
        self.ips.extend(a.iter().map(|x| x.ip));
        self.addrs.extend(a);
        self.pools.push(rt);
        self.log_sessions |= pp.log_sessions;
        self.rebuild_by_ip();
        u16::try_from(pi).map_err(|_| ParamError::TooMany("pools"))
    }

    /// Adds a 1:1 static address at run time (a live configuration
    /// change); returns its index. Refused if the address is in use.
    pub fn add_static(&mut self, ip: u32) -> Result<u16, ParamError> {
        if self.addr_of_ip(ip).is_some() {
            return Err(ParamError::Static { addr: crate::wire::fmt_ipv4(ip), why: "the public address is in use" });
        }
        let a =
            u16::try_from(self.addrs.len()).ok().filter(|&a| a < 1 << 14).ok_or(ParamError::TooMany("addresses"))?;
        self.addrs.push(static_addr(ip));
        self.ips.push(ip);
        self.rebuild_by_ip();
        Ok(a)
    }

    /// Takes address `a` out of service (its sessions must be gone first).
    pub fn retire_addr(&mut self, a: u16) {
        if let Some(x) = self.addrs.get_mut(usize::from(a)) {
            x.retired = true;
        }
        self.rebuild_by_ip();
    }

    /// The addresses pool `pool` was built with, in use or retired.
    pub fn pool_ips(&self, pool: u16) -> Vec<u32> {
        self.addrs.iter().filter(|x| x.pool == pool).map(|x| x.ip).collect()
    }

    /// Puts a retired address of pool `pool` back in use (a live change
    /// gave it back to its pool); false if the pool has no such address
    /// retired.
    pub fn unretire_ip(&mut self, pool: u16, ip: u32) -> bool {
        let Some(x) = self.addrs.iter_mut().find(|x| x.pool == pool && x.ip == ip && x.retired) else {
            return false;
        };
        x.retired = false;
        self.rebuild_by_ip();
        true
    }

    fn rebuild_by_ip(&mut self) {
        self.by_ip = self.addrs.iter().enumerate().filter(|(_, x)| !x.retired).map(|(i, x)| (x.ip, i as u16)).collect();
        self.by_ip.sort_unstable();
        self.by_ip_span = span_of(&self.by_ip);
    }

    /// Gives address `a` a new IP (a masquerade pool following its interface).
    pub fn set_addr_ip(&mut self, a: u16, ip: u32) {
        if let Some(x) = self.addrs.get_mut(usize::from(a)) {
            x.ip = ip;
        }
        if let Some(x) = self.ips.get_mut(usize::from(a)) {
            *x = ip;
        }
        self.rebuild_by_ip();
    }

    /// Blocks of address `a` on this worker: (held by subscribers, free).
    /// A deterministic pool's blocks have no free list: those held are
    /// counted, and free are the rest (each waits for its one subscriber).
    pub fn block_use(&self, a: u16) -> (usize, usize) {
        let Some(x) = self.addrs.get(usize::from(a)) else { return (0, 0) };
        if self.pool_of(a).is_some_and(|p| p.det.is_some()) {
            let held = x.blocks.iter().filter(|b| b.owner != NIL).count();
            return (held, x.blocks.len() - held);
        }
        (x.blocks.len() - x.free_blocks.len(), x.free_blocks.len())
    }

    /// Free blocks of address `a` on this worker.
    pub fn free_blocks(&self, a: u16) -> usize {
        self.block_use(a).1
    }

    /// Live subscribers.
    pub fn subscribers(&self) -> usize {
        self.subs.len() - self.sub_free.len()
    }
}

/// [`Ports::by_ip`]'s first and last address, (`u32::MAX`, 0) for none.
fn span_of(by_ip: &[(u32, u16)]) -> (u32, u32) {
    match (by_ip.first(), by_ip.last()) {
        (Some(&(lo, _)), Some(&(hi, _))) => (lo, hi),
        _ => (u32::MAX, 0),
    }
}
