//! An HA standby's port blocks: the blocks the active box gave its
//! subscribers, installed here for the same subscribers on the same
//! public address (`nat::ha` drives it; the control side's sync feeds it).
//!
//! A subscriber that got a block this way is *pinned*: it keeps its
//! blocks with no session (a standby forwards nothing, so it has none of
//! its own), until the block is released by the active box or the pin is
//! lifted ([`Ports::unpin_all`], some time after a promotion). Every
//! operation is idempotent and checks ownership, so a bulk resync replayed
//! over the events that raced it ends in the active box's state.
//!
//! Invariants: a block is imported only for the worker that owns its chunk
//! (others answer [`BlockImport::NotMine`]); a subscriber's blocks all lie
//! on its paired address (RFC 4787 REQ-2) — a block on another address, or
//! one another subscriber holds, is refused ([`BlockImport::Conflict`]),
//! never shared.
#![forbid(unsafe_code)]
#![allow(clippy::cast_possible_truncation)]

use super::*;

/// What importing or releasing a block did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockImport {
    /// Done.
    Done,
    /// Already so (a replay).
    Unchanged,
    /// Another worker owns the block's chunk.
    NotMine,
    /// Not a port-block pool's address, or no such address.
    Unknown,
    /// Held by another subscriber, on another address than the
    /// subscriber's, past its block limit, or no subscriber slot left.
    Conflict,
}

/// A block a subscriber holds, as the active box sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportedBlock {
    /// The subscriber.
    pub inside: u32,
    /// The public address.
    pub public: u32,
    /// The block's lowest port.
    pub first_port: u16,
    /// The block's highest port.
    pub last_port: u16,
}

impl Ports {
    /// Address index and local block of (`ip`, `port`) in a port-block
    /// pool, and the pool.
    fn ha_block(&self, ip: u32, port: u16) -> Result<(u16, u16, u16), BlockImport> {
        let a = self.addr_of_ip(ip).ok_or(BlockImport::Unknown)?;
        let pool = self.pool_of(a).ok_or(BlockImport::Unknown)?;
        if !matches!(pool.params.mode, PoolMode::PortBlocks { .. }) {
            return Err(BlockImport::Unknown);
        }
        let pi = self.addrs.get(usize::from(a)).map_or(0, |x| x.pool);
        let (l, _, _) = self.locate(a, port).ok_or(BlockImport::NotMine)?;
        Ok((a, l, pi))
    }

    /// Gives the block of `ip` holding `port` to subscriber `inside`
    /// (created on `ip` if new), and pins the subscriber.
    pub fn import_block(&mut self, inside: u32, ip: u32, port: u16) -> BlockImport {
        let (a, l, pool) = match self.ha_block(ip, port) {
            Ok(x) => x,
            Err(e) => return e,
        };
        let owner = self.addrs.get(usize::from(a)).and_then(|x| x.blocks.get(usize::from(l))).map_or(NIL, |b| b.owner);
        let s = match self.find_subscriber(inside, pool) {
            Some(s) => s,
            None => match self.subscriber_on(inside, pool, a) {
                Some(s) => s,
                None => return BlockImport::Conflict,
            },
        };
        let Some(sub) = self.subs.get_mut(s as usize) else { return BlockImport::Conflict };
        if owner == s {
            sub.pinned = true;
            return BlockImport::Unchanged;
        }
        let n = usize::from(sub.n_blocks);
        if owner != NIL || sub.addr != a || n >= sub.blocks.len() {
            return BlockImport::Conflict;
        }
        let Some(ad) = self.addrs.get_mut(usize::from(a)) else { return BlockImport::Conflict };
        let Some(pos) = ad.free_blocks.iter().position(|&x| x == l) else { return BlockImport::Conflict };
        ad.free_blocks.remove(pos);
        if let Some(b) = ad.blocks.get_mut(usize::from(l)) {
            b.owner = s;
        }
        if let Some(slot) = sub.blocks.get_mut(n) {
            *slot = l;
        }
        sub.n_blocks += 1;
        sub.pinned = true;
        self.blocks_in_use += 1;
        BlockImport::Done
    }

    /// Takes the block of `ip` holding `port` back from subscriber
    /// `inside` (the active box released it); the subscriber goes when it
    /// has neither blocks nor sessions left.
    pub fn release_imported_block(&mut self, inside: u32, ip: u32, port: u16) -> BlockImport {
        let (a, l, pool) = match self.ha_block(ip, port) {
            Ok(x) => x,
            Err(e) => return e,
        };
        let Some(s) = self.find_subscriber(inside, pool) else { return BlockImport::Unchanged };
        let owner = self.addrs.get(usize::from(a)).and_then(|x| x.blocks.get(usize::from(l))).map_or(NIL, |b| b.owner);
        if owner != s {
            return BlockImport::Unchanged;
        }
        let Some(sub) = self.subs.get_mut(s as usize) else { return BlockImport::Conflict };
        let n = usize::from(sub.n_blocks);
        let Some(pos) = sub.blocks.iter().take(n).position(|&y| y == l) else { return BlockImport::Conflict };
        sub.blocks.swap(pos, n - 1);
        sub.n_blocks -= 1;
        sub.hint = 0;
        let gone = sub.n_blocks == 0 && sub.sessions == 0;
        self.give_back_block(a, l);
        if gone {
            self.unpin(s);
        }
        BlockImport::Done
    }

    /// A new subscriber `inside` of `pool` paired with address `a` (an
    /// import: the active box chose the address).
    fn subscriber_on(&mut self, inside: u32, pool: u16, a: u16) -> Option<u32> {
        let limit = self.session_limit_of(pool);
        let slot = self.sub_free.pop()?;
        if let Some(x) = self.subs.get_mut(slot as usize) {
            *x = Subscriber { inside_ip: inside, pool, addr: a, limit, ..EMPTY_SUB };
        }
        self.sub_index.insert(sub_key(self.seed, inside, pool), slot);
        Some(slot)
    }

    /// Subscriber `inside` of `pool` for an imported session on address
    /// `a`: found (on `a`), or made (a shared or deterministic pool's; a
    /// port-block pool's subscriber comes with its blocks).
    pub(crate) fn subscriber_for_import(&mut self, inside: u32, pool: u16, a: u16) -> Option<u32> {
        if let Some(s) = self.find_subscriber(inside, pool) {
            return self.subs.get(s as usize).filter(|x| x.addr == a).map(|_| s);
        }
        let p = self.pools.get(usize::from(pool))?;
        match p.params.mode {
            PoolMode::PortBlocks { .. } => None,
            PoolMode::Deterministic { .. } => {
                self.new_subscriber(inside, pool).ok().filter(|&s| self.sub(s).is_some_and(|x| x.addr == a))
            }
            PoolMode::Shared => self.subscriber_on(inside, pool, a),
        }
    }

    /// Marks `port` of address `a` in use for `proto` on behalf of
    /// subscriber `s` (an imported session's mapping). False if this
    /// worker does not own it, it is in use, or (port blocks) it lies
    /// outside the subscriber's blocks.
    pub(crate) fn take_port(&mut self, s: u32, a: u16, proto: L4, port: u16) -> bool {
        let Some((l, bit, words)) = self.locate(a, port) else { return false };
        let blocks = self.pool_of(a).is_some_and(|p| !matches!(p.params.mode, PoolMode::Shared));
        let Some((ad, bits)) = self.addr_mut(a) else { return false };
        if blocks && ad.blocks.get(usize::from(l)).is_none_or(|b| b.owner != s) {
            return false;
        }
        let (w, m) = bit_pos(words, l, proto, 0, bit);
        if bits.get(w).is_none_or(|x| x & m != 0) {
            return false;
        }
        take_bit(ad, bits, words, l, proto, bit);
        true
    }

    /// Lifts subscriber `s`'s pin; frees it (and its blocks) if it has no session.
    fn unpin(&mut self, s: u32) {
        let Some(x) = self.subs.get_mut(s as usize) else { return };
        if !x.pinned && x.sessions > 0 {
            return;
        }
        x.pinned = false;
        x.sessions += 1;
        self.remove_session(s);
    }

    /// Lifts every pin (some time after a promotion): subscribers with no
    /// session give their blocks back. Returns how many were freed.
    pub fn unpin_all(&mut self) -> u32 {
        let mut freed = 0;
        for s in 0..self.subs.len() as u32 {
            if self.subs.get(s as usize).is_some_and(|x| x.pinned) {
                let alone = self.subs.get(s as usize).is_some_and(|x| x.sessions == 0);
                self.unpin(s);
                freed += u32::from(alone);
            }
        }
        freed
    }

    /// Every block a port-block pool's subscriber holds on this worker
    /// (the active box's bulk resync).
    pub fn held_blocks(&self) -> Vec<ImportedBlock> {
        let mut out = Vec::new();
        for (a, ad) in self.addrs.iter().enumerate() {
            let a = a as u16;
            if self.pool_of(a).is_none_or(|p| !matches!(p.params.mode, PoolMode::PortBlocks { .. })) {
                continue;
            }
            for (l, b) in ad.blocks.iter().enumerate() {
                let Some(sub) = (b.owner != NIL).then(|| self.subs.get(b.owner as usize)).flatten() else { continue };
                let Some((first, last)) = self.block_range(a, l as u16) else { continue };
                out.push(ImportedBlock { inside: sub.inside_ip, public: ad.ip, first_port: first, last_port: last });
            }
        }
        out
    }
}
