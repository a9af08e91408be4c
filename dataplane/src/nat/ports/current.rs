//! The common allocation, straight through: a port-block pool without
//! port parity or random ports, the subscriber's current block (the one
//! that last had room) holding a free port for the protocol, its hold
//! window current. Everything else (another block, a new one, a rotation
//! due, parity, random ports, shared and deterministic pools) is
//! [`Ports::alloc_with`]'s general path, which this returns `None` to.
//!
//! Invariant: it takes the port [`super::alloc::alloc_in_blocks`] would take in the same
//! state (the same block, the same start, the same scan), so which path
//! served a packet is never visible.
#![forbid(unsafe_code)]
#![allow(clippy::cast_possible_truncation)]

use super::*;

impl Ports {
    /// A port of subscriber `s`'s current block for `proto` (see the module
    /// doc), with its address (index and IP): `None` leaves the allocation
    /// to the general path, nothing changed.
    #[inline(always)]
    pub(super) fn alloc_current(&mut self, s: u32, proto: L4, preferred: u16, window: u32) -> Option<(u16, u16, u32)> {
        let sub = self.subs.get(s as usize)?;
        let a = sub.addr;
        let ad = self.addrs.get_mut(usize::from(a))?;
        // Other kinds of pool leave here (shared pools' subscribers hold
        // no block), not marked cold.
        let PlainGeo { chunk, words, min, geo } = ad.plain?;
        let words = usize::from(words);
        // (`cold_path`: a subscriber's first session, and once a block or
        // a rotation.)
        if sub.hint >= sub.n_blocks {
            std::hint::cold_path();
            return None;
        }
        let l = *sub.blocks.get(usize::from(sub.hint))?;
        let b = ad.blocks.get(usize::from(l))?;
        if b.window != window || u32::from(*b.used_by_proto.get(proto.index())?) >= chunk {
            std::hint::cold_path();
            return None;
        }
        let base = block_offset(chunk, geo.1, geo.0, l);
        // The scan starts at the preferred port if the block holds it, else
        // at its offset (`alloc_in_blocks`' `start`).
        let d = ad.preferred_offset(min, preferred).wrapping_sub(base);
        let start = if d < chunk { d } else { u32::from(preferred) % chunk } as u16;
        let at = ad.bits.at + (usize::from(l) * PROTOS + proto.index()) * PLANES * words;
        let bit = take_first_free_at(ad, self.bits.get_mut(at..at + PLANES * words)?, words, l, proto, start)?;
        Some((ad.port_at(min, base + u32::from(bit)), a, ad.ip))
    }
}
