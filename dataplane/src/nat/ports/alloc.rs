//! Taking and giving back public ports. Port-block pools: the first free
//! port of the subscriber's blocks, else a new block under its limit
//! (RFC 6888 REQ-4, RFC 7422). Shared pools (home masquerade): the source
//! port if free, else the next free one in netfilter's class (FAQ 3.6).
//!
//! Invariant: a port-block subscriber's ports all lie in its own blocks; an
//! emptied block goes back to the pool unless it is its subscriber's last.
#![forbid(unsafe_code)]
#![allow(clippy::cast_possible_truncation)]

use super::*;

pub(super) fn class_range(pool: &PoolParams, proto: L4, preferred: u16) -> (u16, u16) {
    let (min, max) = (pool.port_min.max(1), pool.port_max);
    if pool.mode != PoolMode::Shared || proto == L4::Icmp || min >= 1024 {
        return (min, max);
    }
    // netfilter's classes when the whole range is available (FAQ 3.6).
    let (lo, hi) = match preferred {
        0..=511 => (1, 511),
        512..=1023 => (600, 1023),
        _ => (1024, 65535),
    };
    (lo.max(min), hi.min(max))
}

/// Who allocates, and when: subscriber slot, worker geometry, hold window,
/// and the parity wanted (RFC 4787 REQ-4), if any.
#[derive(Clone, Copy)]
pub(super) struct Where {
    s: u32,
    worker: u32,
    workers: u32,
    window: u32,
    parity: Option<u16>,
}

/// Port-block allocation: the first free port of the subscriber's blocks,
/// starting with the block that last had room and skipping full ones,
/// else a new block while under the limit. With a parity (RFC 4787 REQ-4)
/// only ports of it are taken: a subscriber whose blocks hold none free
/// takes a new block (the caller tries again without a parity past its
/// limit). Within a block the scan starts
/// at the preferred port itself if the block holds it (so a free source
/// port is kept, netfilter FAQ 3.6), else at the same offset (which keeps
/// its parity when that port is free), or at a random offset.
///
/// Takes the subscriber, its address and the pool already resolved, and
/// works on the bitmaps directly (the helpers that look `a` up again are
/// for the colder paths).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn alloc_in_blocks(
    sub: &mut Subscriber,
    ad: &mut AddrPorts,
    bits: &mut [u64],
    pool: &PoolRt,
    at: Where,
    blocks_in_use: &mut u32,
    proto: L4,
    preferred: u16,
    random: Option<u32>,
    max_blocks: u16,
) -> Option<(u16, u32)> {
    let Where { s, worker, workers, window, parity } = at;
    let (min, chunk, words) = (u32::from(pool.params.port_min), u32::from(pool.chunk), pool.words);
    let offset = match random {
        Some(r) => r % chunk,
        None => u32::from(preferred) % chunk,
    };
    let pref = ad.preferred_offset(min, preferred);
    // Where to start in block `l`: the preferred port if `l` holds it.
    let start = |base: u32| {
        let d = pref.wrapping_sub(base);
        (if random.is_none() && d < chunk { d } else { offset }) as u16
    };
    let n = usize::from(sub.n_blocks);
    let hint = usize::from(sub.hint);
    for k in 0..n {
        let j = if hint + k >= n { hint + k - n } else { hint + k };
        let Some(&l) = sub.blocks.get(j) else { break };
        let full = ad
            .blocks
            .get(usize::from(l))
            .is_none_or(|b| b.used_by_proto.get(proto.index()).is_none_or(|&u| u32::from(u) >= chunk));
        if full {
            continue;
        }
        rotate_block(ad, bits, words, l, window);
        let base = block_offset(chunk, workers, worker, l);
        let got = match parity {
            None => take_first_free(ad, bits, words, l, proto, start(base)),
            Some(want) => take_first_free_parity(ad, bits, words, l, proto, start(base), (min, base, want)),
        };
        if let Some(bit) = got {
            sub.hint = j as u8;
            return Some((ad.port_at(min, base + u32::from(bit)), 0));
        }
    }
    if n >= usize::from(max_blocks) {
        return None;
    }
    // A block given back may still hold its ports (the reuse hold): the
    // one given back longest ago first; if every port of it is still held
    // it goes to the back and the next is tried, a few at most, so a
    // refusal costs a bounded search.
    for _ in 0..ad.free_blocks.len().min(FRESH_BLOCK_TRIES) {
        let l = ad.free_blocks.pop_front()?;
        rotate_block(ad, bits, words, l, window);
        let base = block_offset(chunk, workers, worker, l);
        let got = match parity {
            None => take_first_free(ad, bits, words, l, proto, start(base)),
            Some(want) => take_first_free_parity(ad, bits, words, l, proto, start(base), (min, base, want)),
        };
        let Some(bit) = got else {
            ad.free_blocks.push_back(l);
            continue;
        };
        if let Some(b) = ad.blocks.get_mut(usize::from(l)) {
            b.owner = s;
        }
        if let Some(slot) = sub.blocks.get_mut(n) {
            *slot = l;
            sub.n_blocks += 1;
            sub.hint = n as u8;
        }
        *blocks_in_use += 1;
        return Some((ad.port_at(min, base + u32::from(bit)), 1));
    }
    None
}

/// Free blocks [`alloc_in_blocks`] tries for a subscriber's new block
/// before it refuses: each try is a scan of the block's bitmap.
const FRESH_BLOCK_TRIES: usize = 8;

impl Ports {
    /// Allocates a public port for subscriber `s`, keeping `preferred` when
    /// free (unless the pool wants random ports). Returns the port and the
    /// number of blocks newly taken (0 or 1).
    #[inline(always)]
    pub fn alloc(&mut self, s: u32, proto: L4, preferred: u16, now: u32, rand: u32) -> Option<(u16, u32)> {
        let mut new = 0;
        let port = self.alloc_with(s, proto, preferred, now, || rand, &mut new)?.0;
        Some((port, u32::try_from(new).unwrap_or(u32::MAX)))
    }

    /// [`Ports::alloc`] drawing its random number from `rand` only if the
    /// pool wants one (random ports, parity, shared pools): the common
    /// port-block pool spends nothing on it. Returns the port with the
    /// subscriber's public address, which the port belongs to, as its
    /// index and as the address itself (the new session's indexes and
    /// deltas take it, and the straight-through path has it in hand: -6
    /// instructions a new session against a second look-up), and adds the
    /// blocks it newly took to `blocks` (the engine's count; returned with
    /// the port it cost the new session 1.9 instructions more).
    #[inline(always)]
    pub fn alloc_with(
        &mut self,
        s: u32,
        proto: L4,
        preferred: u16,
        now: u32,
        rand: impl FnOnce() -> u32,
        blocks: &mut u64,
    ) -> Option<(u16, u16, u32)> {
        let window = self.window(now);
        // Both paths' results as one word: merged in a register, not in memory.
        let pack = |(port, a, ip): (u16, u16, u32)| u64::from(port) | u64::from(a) << 16 | u64::from(ip) << 32;
        let got = match self.alloc_current(s, proto, preferred, window) {
            Some(got) => Some(pack(got)),
            None => self.alloc_general(s, proto, preferred, now, rand, blocks).map(pack),
        };
        #[allow(clippy::cast_possible_truncation)] // unpacking
        got.map(|w| (w as u16, (w >> 16) as u16, (w >> 32) as u32))
    }

    /// [`Ports::alloc_with`] past [`Ports::alloc_current`]: another block
    /// of the subscriber's, a new one, and every other kind of pool. Out
    /// of line: a subscriber comes here once a block (or a rotation).
    #[inline(never)]
    pub(super) fn alloc_general(
        &mut self,
        s: u32,
        proto: L4,
        preferred: u16,
        now: u32,
        rand: impl FnOnce() -> u32,
        blocks: &mut u64,
    ) -> Option<(u16, u16, u32)> {
        let window = self.window(now);
        let a = self.subs.get(s as usize)?.addr;
        let ip = self.ip_of(a);
        let (port, new) = self.alloc_at(s, a, proto, preferred, window, now, rand)?;
        *blocks += u64::from(new);
        Some((port, a, ip))
    }

    /// [`Ports::alloc_general`] for subscriber `s` of address `a`: the
    /// subscriber, its address and the pool, each looked up once here.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn alloc_at(
        &mut self,
        s: u32,
        a: u16,
        proto: L4,
        preferred: u16,
        window: u32,
        now: u32,
        rand: impl FnOnce() -> u32,
    ) -> Option<(u16, u32)> {
        let sub = self.subs.get_mut(s as usize)?;
        let ad = self.addrs.get_mut(usize::from(a))?;
        let pool = self.pools.get(usize::from(ad.pool))?;
        let (worker, workers) = pool.geo;
        if pool.params.port_parity {
            return self.alloc_parity(s, proto, preferred, now, rand());
        }
        let shared = pool.params.mode == PoolMode::Shared;
        let r = if pool.params.random_ports || shared { rand() } else { 0 };
        let random = pool.params.random_ports.then_some(r);
        match pool.params.mode {
            PoolMode::PortBlocks { max_blocks_per_subscriber, .. } => {
                let at = Where { s, worker, workers, window, parity: None };
                let in_use = &mut self.blocks_in_use;
                let bits = self.bits.get_mut(ad.bits.range())?;
                let got = alloc_in_blocks(
                    sub,
                    ad,
                    bits,
                    pool,
                    at,
                    in_use,
                    proto,
                    preferred,
                    random,
                    max_blocks_per_subscriber,
                );
                if let Some((_, 1)) = got {
                    self.note_new_block(s);
                }
                got
            }
            // Only the block the formula gave it at creation (RFC 7422).
            PoolMode::Deterministic { .. } => self.alloc_det(s, proto, preferred, now, r, None),
            PoolMode::Shared => self.alloc_shared(a, proto, preferred, window, r, None),
        }
    }

    /// [`Ports::alloc`] in a pool with port parity (RFC 4787 REQ-4): a port
    /// of the preferred port's parity, else (best effort, never a refusal
    /// while ports are free) any. Out of line: other pools pay nothing.
    #[inline(never)]
    fn alloc_parity(&mut self, s: u32, proto: L4, preferred: u16, now: u32, rand: u32) -> Option<(u16, u32)> {
        let window = self.window(now);
        let sub = self.subs.get_mut(s as usize)?;
        let a = sub.addr;
        let ad = self.addrs.get_mut(usize::from(a))?;
        let pool = self.pools.get(usize::from(ad.pool))?;
        let (worker, workers) = pool.geo;
        let random = pool.params.random_ports.then_some(rand);
        let parity = Some(preferred & 1);
        match pool.params.mode {
            PoolMode::PortBlocks { max_blocks_per_subscriber, .. } => {
                let at = Where { s, worker, workers, window, parity };
                let in_use = &mut self.blocks_in_use;
                let bits = self.bits.get_mut(ad.bits.range())?;
                let max = max_blocks_per_subscriber;
                let mut got = alloc_in_blocks(sub, ad, bits, pool, at, in_use, proto, preferred, random, max);
                if got.is_none() {
                    let at = Where { parity: None, ..at };
                    got = alloc_in_blocks(sub, ad, bits, pool, at, in_use, proto, preferred, random, max);
                }
                if let Some((_, 1)) = got {
                    self.note_new_block(s);
                }
                got
            }
            PoolMode::Deterministic { .. } => self.alloc_det(s, proto, preferred, now, rand, parity),
            PoolMode::Shared => self
                .alloc_shared(a, proto, preferred, window, rand, parity)
                .or_else(|| self.alloc_shared(a, proto, preferred, window, rand, None)),
        }
    }

    /// [`Ports::alloc`] in a deterministic pool (RFC 7422), out of line so
    /// that other pools' allocation stays as lean as it was: only the
    /// block the formula gave the subscriber at creation (of `parity`
    /// first, if given). With an overflow (RFC 7422 section 2), nothing
    /// from its range while it holds overflow blocks, so its new mappings
    /// go on to the overflow until those go back (an endpoint with an
    /// overflow mapping keeps it, RFC 4787 REQ-1, without a second lookup
    /// on every new mapping).
    #[inline(never)]
    fn alloc_det(
        &mut self,
        s: u32,
        proto: L4,
        preferred: u16,
        now: u32,
        rand: u32,
        parity: Option<u16>,
    ) -> Option<(u16, u32)> {
        let window = self.window(now);
        let (inside, a) = self.subs.get(s as usize).map(|x| (x.inside_ip, x.addr))?;
        let pi = self.addrs.get(usize::from(a))?.pool;
        if let Some(ov) = self.pools.get(usize::from(pi))?.overflow {
            let spilled = self
                .find_subscriber(inside, ov)
                .and_then(|o| self.subs.get(o as usize))
                .is_some_and(|o| o.n_blocks > 0);
            if spilled {
                return None;
            }
        }
        let sub = self.subs.get_mut(s as usize)?;
        let ad = self.addrs.get_mut(usize::from(a))?;
        let pool = self.pools.get(usize::from(pi))?;
        let (worker, workers) = pool.geo;
        let random = pool.params.random_ports.then_some(rand);
        let at = Where { s, worker, workers, window, parity };
        let in_use = &mut self.blocks_in_use;
        let bits = self.bits.get_mut(ad.bits.range())?;
        alloc_in_blocks(sub, ad, bits, pool, at, in_use, proto, preferred, random, 1).or_else(|| {
            let at = Where { parity: None, ..at };
            parity.and_then(|_| alloc_in_blocks(sub, ad, bits, pool, at, in_use, proto, preferred, random, 1))
        })
    }

    /// [`Ports::alloc`] in a shared (home masquerade) pool: the preferred
    /// port if free, else the next free one in its class (of `parity`, if
    /// given), chunk by chunk.
    #[inline(never)]
    pub(super) fn alloc_shared(
        &mut self,
        a: u16,
        proto: L4,
        preferred: u16,
        window: u32,
        rand: u32,
        parity: Option<u16>,
    ) -> Option<(u16, u32)> {
        let pool = self.pool_of(a)?;
        let random = pool.params.random_ports;
        let (lo, hi) = class_range(&pool.params, proto, preferred);
        let chunk = u32::from(pool.chunk);
        let n_chunks = pool.n_chunks;
        let min = u32::from(pool.params.port_min);
        let start_port = if random || preferred < lo || preferred > hi {
            u32::from(lo) + rand % (u32::from(hi) - u32::from(lo) + 1)
        } else {
            u32::from(preferred)
        };
        let c0 = (start_port - min) / chunk;
        let (c_lo, c_hi) = ((u32::from(lo) - min) / chunk, (u32::from(hi) - min) / chunk);
        let span = c_hi - c_lo + 1;
        for k in 0..=span {
            let c = c_lo + (c0 - c_lo + k) % span;
            if c % self.workers != self.worker || c >= n_chunks {
                continue;
            }
            let l = (c / self.workers) as u16;
            let start = if k == 0 { ((start_port - min) % chunk) as u16 } else { 0 };
            self.rotate(a, l, window);
            if let Some(bit) = self.first_free(a, l, proto, start, (lo, hi), parity) {
                self.take(a, l, proto, bit);
                return Some((self.port_of(a, l, bit), 0));
            }
        }
        None
    }

    /// Frees a mapping's public port and holds it back. Returns true if the
    /// block emptied and went back to the pool.
    pub fn release(&mut self, a: u16, proto: L4, port: u16, now: u32) -> bool {
        let Some((l, bit, words)) = self.locate(a, port) else {
            return false;
        };
        let window = self.window(now);
        self.rotate(a, l, window);
        let hold = self.hold;
        let Some((ad, bits)) = self.addr_mut(a) else {
            return false;
        };
        set_bit(bits, words, l, proto, 0, bit, false);
        if hold {
            set_bit(bits, words, l, proto, 1 + (window % 3) as usize, bit, true);
        } else {
            set_bit(bits, words, l, proto, BUSY, bit, false);
        }
        let Some(b) = ad.blocks.get_mut(usize::from(l)) else {
            return false;
        };
        b.used = b.used.saturating_sub(1);
        if let Some(u) = b.used_by_proto.get_mut(proto.index()) {
            *u = u.saturating_sub(1);
        }
        let (owner, used) = (b.owner, b.used);
        // An emptied block goes back unless it is its subscriber's last one.
        if used == 0 && owner != NIL {
            if let Some(x) = self.subs.get_mut(owner as usize) {
                if x.n_blocks > 1 {
                    let n = usize::from(x.n_blocks);
                    if let Some(pos) = x.blocks.iter().take(n).position(|&y| y == l) {
                        x.blocks.swap(pos, n - 1);
                        x.n_blocks -= 1;
                        x.hint = 0;
                        self.give_back_block(a, l);
                        return true;
                    }
                }
            }
        }
        false
    }
}
