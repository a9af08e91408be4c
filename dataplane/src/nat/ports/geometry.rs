//! Where ports lie: a pool's port range cut into chunks (blocks), chunk
//! `c` owned by worker `c % workers`, in numeric order or in an RSS-aware
//! port order (`perm`/`inv`); the owner of any public (address, port) is a
//! pure function every worker can compute ([`Ports::owner_of`]).
//!
//! Invariant: [`Ports::locate`] is the inverse of [`Ports::port_of`] on the
//! ports this worker owns, and `None` on every other port.
#![forbid(unsafe_code)]
#![allow(clippy::cast_possible_truncation)]

use super::*;
use crate::nat::deterministic::Deterministic;

pub(super) const NO_OFFSET: u16 = u16::MAX;

impl AddrPorts {
    /// The port at offset `off` of the chunked order.
    #[inline(always)]
    pub(super) fn port_at(&self, min: u32, off: u32) -> u16 {
        if self.perm.is_empty() {
            (min + off) as u16
        } else {
            self.perm.get(off as usize).copied().unwrap_or(0)
        }
    }

    /// Where an allocation preferring `preferred` starts looking: its
    /// offset in the chunked order, unchecked in numeric order (a port
    /// outside the range lands past every block, or in the last one's
    /// never-free tail), `u32::MAX` in an RSS order that lacks it.
    #[inline(always)]
    pub(super) fn preferred_offset(&self, min: u32, preferred: u16) -> u32 {
        if self.inv.is_empty() {
            u32::from(preferred).wrapping_sub(min)
        } else {
            self.inv.get(usize::from(preferred)).map_or(u32::MAX, |&o| u32::from(o))
        }
    }

    /// The offset of `port` in the chunked order, if it is the pool's.
    #[inline(always)]
    pub(super) fn offset_of(&self, min: u16, max: u16, port: u16) -> Option<u32> {
        if self.inv.is_empty() {
            (port >= min && port <= max).then(|| u32::from(port - min))
        } else {
            self.inv.get(usize::from(port)).copied().filter(|&o| o != NO_OFFSET).map(u32::from)
        }
    }
}

/// The offset of this worker's local block `l` (chunk `l * workers +
/// worker`) in the chunked order; `Ports::locate` is the inverse.
#[inline(always)]
pub(super) fn block_offset(chunk: u32, workers: u32, worker: u32, l: u16) -> u32 {
    (u32::from(l) * workers + worker) * chunk
}

/// One pool's run-time state and its addresses (global indices from
/// `first_addr`) on worker `worker` of `workers`.
pub(super) fn build_pool(
    pi: usize,
    pp: &PoolParams,
    first_addr: usize,
    worker: u32,
    workers: u32,
    arena: &mut Vec<u64>,
) -> Result<(PoolRt, Vec<AddrPorts>), ParamError> {
    let bad = |problem| Err(ParamError::pool(&pp.name, problem));
    let mut addrs: Vec<AddrPorts> = Vec::new();
    let det = match pp.mode {
        PoolMode::Deterministic { inside, ports_per_subscriber } => Some(
            Deterministic::new(inside, pp.addresses.clone(), (pp.port_min, pp.port_max), ports_per_subscriber)
                .map_err(|e| ParamError::pool(&pp.name, PoolProblem::Deterministic(e)))?,
        ),
        _ => None,
    };
    let chunk = match pp.mode {
        PoolMode::PortBlocks { block_size, max_blocks_per_subscriber } => {
            if block_size == 0 || block_size % 64 != 0 {
                return bad(PoolProblem::BlockSize(block_size));
            }
            if max_blocks_per_subscriber == 0 || usize::from(max_blocks_per_subscriber) > MAX_BLOCKS_PER_SUBSCRIBER {
                return bad(PoolProblem::BlocksPerSubscriber);
            }
            block_size
        }
        PoolMode::Shared => SHARED_OWNERSHIP_CHUNK,
        // The formula's ports per subscriber (0 asked for the most that fit).
        PoolMode::Deterministic { .. } => det.as_ref().map_or(0, |d| d.ports_per_subscriber),
    };
    // Every worker holds every chunk of a deterministic pool.
    let (worker, workers) = if det.is_some() { (0, 1) } else { (worker, workers) };
    if pp.addresses.is_empty() || pp.port_min == 0 || pp.port_min > pp.port_max {
        return bad(PoolProblem::Range);
    }
    let span = u32::from(pp.port_max) - u32::from(pp.port_min) + 1;
    let mut n_chunks = span.div_ceil(u32::from(chunk));
    let ordered = !pp.port_orders.is_empty();
    if ordered {
        if !matches!(pp.mode, PoolMode::PortBlocks { .. }) {
            return bad(PoolProblem::OrderNeedsBlocks);
        }
        if pp.port_orders.len() != pp.addresses.len() {
            return bad(PoolProblem::OrderPerAddress);
        }
        // Whole chunks only, as many as the shortest order holds.
        n_chunks = pp.port_orders.iter().map(|o| o.len() as u32 / u32::from(chunk)).min().unwrap_or(0);
    }
    let words = usize::from(chunk) / 64;
    if first_addr + pp.addresses.len() > usize::from(u16::MAX >> 2) {
        return Err(ParamError::TooMany("public addresses"));
    }
    let local = n_chunks.saturating_sub(worker).div_ceil(workers);
    let plain = matches!(pp.mode, PoolMode::PortBlocks { .. }) && !pp.port_parity && !pp.random_ports;
    let geo = PlainGeo {
        chunk: u32::from(chunk),
        words: u16::try_from(words).unwrap_or(u16::MAX),
        min: u32::from(pp.port_min),
        geo: (worker, workers),
    };
    for (ai, &ip) in pp.addresses.iter().enumerate() {
        let (mut perm, mut inv) = (Vec::new(), Vec::new());
        if let Some(order) = pp.port_orders.get(ai) {
            perm = order.iter().copied().take((n_chunks * u32::from(chunk)) as usize).collect();
            inv = vec![NO_OFFSET; 1 << 16];
            for (off, &port) in perm.iter().enumerate() {
                match inv.get_mut(usize::from(port)) {
                    Some(x) if *x == NO_OFFSET && port >= pp.port_min && port <= pp.port_max => *x = off as u16,
                    _ => return bad(PoolProblem::OrderPort(port)),
                }
            }
        }
        let n_bits = local as usize * PROTOS * PLANES * words;
        let at = arena.len();
        arena.resize(at + n_bits, 0);
        let bits = arena.get_mut(at..).unwrap_or_default();
        let a = AddrPorts {
            ip,
            pool: pi as u16,
            blocks: vec![Block { owner: NIL, window: 0, used: 0, used_by_proto: [0; PROTOS] }; local as usize],
            bits: BitsAt { at, len: n_bits },
            // A deterministic subscriber takes its own block, never a free one.
            free_blocks: if det.is_some() { VecDeque::new() } else { (0..local as u16).collect() },
            perm,
            inv,
            retired: false,
            plain: plain.then_some(geo),
        };
        // Ports past port_max in the last chunk are never free.
        for l in 0..local as u16 {
            let c = u32::from(l) * workers + worker;
            let first = u32::from(pp.port_min) + c * u32::from(chunk);
            for bit in 0..chunk {
                if !ordered && first + u32::from(bit) > u32::from(pp.port_max) {
                    for proto in L4::ALL {
                        set_bit(bits, words, l, proto, 0, bit, true);
                        set_bit(bits, words, l, proto, BUSY, bit, true);
                    }
                }
            }
        }
        addrs.push(a);
    }
    let rt = PoolRt {
        params: pp.clone(),
        first_addr: first_addr as u16,
        n_addrs: pp.addresses.len() as u16,
        chunk,
        words,
        n_chunks,
        geo: (worker, workers),
        det,
        overflow: None,
    };
    Ok((rt, addrs))
}

impl Ports {
    /// The worker that owns public (address `a`, `port`), or `None` if the
    /// port is outside the pool's range. In a deterministic pool the owner
    /// is the inside address's ([`Ports::det_inside`]): the engine asks that first.
    pub fn owner_of(&self, a: u16, port: u16) -> Option<u16> {
        let ad = self.addrs.get(usize::from(a))?;
        let pool = self.pools.get(usize::from(ad.pool))?;
        let off = ad.offset_of(pool.params.port_min, pool.params.port_max, port)?;
        let c = off / u32::from(pool.chunk);
        Some((c % pool.geo.1) as u16)
    }

    /// The inside address whose deterministic range holds public (address
    /// `a`, `port`); `None` if `a` is not a deterministic pool's or no
    /// subscriber's range holds the port.
    pub fn det_inside(&self, a: u16, port: u16) -> Option<u32> {
        let ad = self.addrs.get(usize::from(a))?;
        let pool = self.pools.get(usize::from(ad.pool))?;
        let det = pool.det.as_ref()?;
        det.reverse_index(u32::from(a - pool.first_addr), port)
    }

    /// Local block and bit of a port this worker owns (the inverse of `port_of`).
    pub(super) fn locate(&self, a: u16, port: u16) -> Option<(u16, u16, usize)> {
        let ad = self.addrs.get(usize::from(a))?;
        let pool = self.pools.get(usize::from(ad.pool))?;
        let off = ad.offset_of(pool.params.port_min, pool.params.port_max, port)?;
        let c = off / u32::from(pool.chunk);
        let (worker, workers) = pool.geo;
        if c % workers != worker {
            return None;
        }
        Some(((c / workers) as u16, (off % u32::from(pool.chunk)) as u16, pool.words))
    }

    pub(super) fn port_of(&self, a: u16, l: u16, bit: u16) -> u16 {
        let (Some(ad), Some(pool)) = (self.addrs.get(usize::from(a)), self.pool_of(a)) else {
            return 0;
        };
        let off = block_offset(u32::from(pool.chunk), pool.geo.1, pool.geo.0, l) + u32::from(bit);
        ad.port_at(u32::from(pool.params.port_min), off)
    }
}
