//! The port bitmaps of a block: per protocol, in use, three hold
//! generations and "busy" (their OR). A freed port goes into the current
//! window's generation, cleared when that window comes round again, so it
//! is not handed out again before the hold time (RFC 6888 REQ-8).
//!
//! Invariant: the busy plane is the OR of the other four after
//! [`rotate_block`]; a search reads the busy plane only.
#![forbid(unsafe_code)]
#![allow(clippy::cast_possible_truncation)]

use super::*;

/// Clears the hold generations whose window came round again and rebuilds
/// the busy plane (see [`Ports::rotate`], of which this is the by-block form).
/// The common case, nothing to do this window, is inlined.
#[inline(always)]
pub(super) fn rotate_block(ad: &mut AddrPorts, bits: &mut [u64], words: usize, l: u16, window: u32) {
    if ad.blocks.get(usize::from(l)).is_some_and(|b| b.window != window) {
        rotate_block_slow(ad, bits, words, l, window);
    }
}

#[inline(never)]
pub(super) fn rotate_block_slow(ad: &mut AddrPorts, bits: &mut [u64], words: usize, l: u16, window: u32) {
    let Some(b) = ad.blocks.get_mut(usize::from(l)) else { return };
    let first = if window.wrapping_sub(b.window) >= 3 { window.wrapping_sub(2) } else { b.window.wrapping_add(1) };
    b.window = window;
    for proto in L4::ALL {
        let base = (usize::from(l) * PROTOS + proto.index()) * PLANES * words;
        let Some(planes) = bits.get_mut(base..base + PLANES * words) else { continue };
        let mut w = first;
        loop {
            let plane = 1 + (w % 3) as usize;
            if let Some(s) = planes.get_mut(plane * words..(plane + 1) * words) {
                s.fill(0);
            }
            if w == window {
                break;
            }
            w = w.wrapping_add(1);
        }
        for i in 0..words {
            let busy = (0..BUSY).fold(0u64, |acc, p| acc | planes.get(p * words + i).copied().unwrap_or(0));
            if let Some(x) = planes.get_mut(BUSY * words + i) {
                *x = busy;
            }
        }
    }
}

/// The first clear bit of `busy` after `start`'s word, wrapping round the
/// block: the words after it, then from the block's first word round to
/// the bits before `start` ([`take_first_free_at`] tries the start word;
/// its one caller, [`take_first_free_after`], is out of line).
fn first_free_bit_after(busy: &[u64], start: u16) -> Option<u16> {
    let sw = usize::from(start / 64);
    let words = busy.len();
    for k in 1..=words {
        let w = (sw + k) % words.max(1);
        let mut free = !busy.get(w).copied().unwrap_or(u64::MAX);
        if k == words {
            free &= !(u64::MAX << (start % 64));
        }
        if free != 0 {
            return Some((w * 64) as u16 + free.trailing_zeros() as u16);
        }
    }
    None
}

/// Takes the first port of block `l` not busy for `proto`, at or after
/// `start` (wrapping): marks it in use and busy and counts it. The block's
/// planes are borrowed once for both marks.
#[inline(always)]
pub(super) fn take_first_free(
    ad: &mut AddrPorts,
    bits: &mut [u64],
    words: usize,
    l: u16,
    proto: L4,
    start: u16,
) -> Option<u16> {
    let base = (usize::from(l) * PROTOS + proto.index()) * PLANES * words;
    take_first_free_at(ad, bits.get_mut(base..base + PLANES * words)?, words, l, proto, start)
}

/// [`take_first_free`] in `planes`, block `l`'s for `proto` (its
/// [`PLANES`] planes of `words` words), however the caller found them.
#[inline(always)]
pub(super) fn take_first_free_at(
    ad: &mut AddrPorts,
    planes: &mut [u64],
    words: usize,
    l: u16,
    proto: L4,
    start: u16,
) -> Option<u16> {
    let (in_use, rest) = planes.split_at_mut(words);
    let busy = rest.get_mut((BUSY - 1) * words..)?;
    // The start word's free port (the common case) is marked through the
    // references its test read: no second bounds test, no `Option` merged
    // with the scan's.
    let sw = usize::from(start / 64);
    if let (Some(u), Some(b)) = (in_use.get_mut(sw), busy.get_mut(sw)) {
        let free = !*b & (u64::MAX << (start % 64));
        if free != 0 {
            let tz = free.trailing_zeros();
            *u |= 1 << tz;
            *b |= 1 << tz;
            count_taken(ad, l, proto);
            return Some(start - start % 64 + tz as u16);
        }
    }
    take_first_free_after(ad, in_use, busy, l, proto, start)
}

/// [`take_first_free_at`] past the start word ([`first_free_bit_after`]).
#[inline(never)]
fn take_first_free_after(
    ad: &mut AddrPorts,
    in_use: &mut [u64],
    busy: &mut [u64],
    l: u16,
    proto: L4,
    start: u16,
) -> Option<u16> {
    let bit = first_free_bit_after(busy, start)?;
    let (w, m) = (usize::from(bit / 64), 1u64 << (bit % 64));
    if let (Some(u), Some(b)) = (in_use.get_mut(w), busy.get_mut(w)) {
        *u |= m;
        *b |= m;
    }
    count_taken(ad, l, proto);
    Some(bit)
}

/// [`take_first_free`] restricted to ports of parity `want` (0 even, 1
/// odd; RFC 4787 REQ-4): `(min, base)` place the block's bits in the
/// chunked order, where a port's parity is read (an RSS-aware order has
/// no pattern to mask). Out of line: only parity pools pay for it.
#[inline(never)]
pub(super) fn take_first_free_parity(
    ad: &mut AddrPorts,
    bits: &mut [u64],
    words: usize,
    l: u16,
    proto: L4,
    start: u16,
    (min, base, want): (u32, u32, u16),
) -> Option<u16> {
    let at = ((usize::from(l) * PROTOS + proto.index()) * PLANES + BUSY) * words;
    let busy = bits.get(at..at + words)?;
    let sw = usize::from(start / 64);
    let mut found = None;
    'scan: for k in 0..=words {
        let w = (sw + k) % words.max(1);
        let mut free = !busy.get(w).copied().unwrap_or(u64::MAX);
        if k == 0 {
            free &= u64::MAX << (start % 64);
        } else if k == words {
            free &= !(u64::MAX << (start % 64));
        }
        while free != 0 {
            let bit = (w * 64) as u16 + free.trailing_zeros() as u16;
            if ad.port_at(min, base + u32::from(bit)) & 1 == want {
                found = Some(bit);
                break 'scan;
            }
            free &= free - 1;
        }
    }
    let bit = found?;
    take_bit(ad, bits, words, l, proto, bit);
    Some(bit)
}

/// Counts a port of block `l` taken for `proto`.
#[inline(always)]
pub(super) fn count_taken(ad: &mut AddrPorts, l: u16, proto: L4) {
    if let Some(b) = ad.blocks.get_mut(usize::from(l)) {
        b.used += 1;
        if let Some(u) = b.used_by_proto.get_mut(proto.index()) {
            *u += 1;
        }
    }
}

/// Marks a port of block `l` in use (and busy) and counts it.
pub(super) fn take_bit(ad: &mut AddrPorts, bits: &mut [u64], words: usize, l: u16, proto: L4, bit: u16) {
    set_bit(bits, words, l, proto, 0, bit, true);
    set_bit(bits, words, l, proto, BUSY, bit, true);
    count_taken(ad, l, proto);
}

pub(super) fn bit_pos(words: usize, l: u16, proto: L4, plane: usize, bit: u16) -> (usize, u64) {
    let base = ((usize::from(l) * PROTOS + proto.index()) * PLANES + plane) * words;
    (base + usize::from(bit) / 64, 1u64 << (bit % 64))
}

pub(super) fn set_bit(bits: &mut [u64], words: usize, l: u16, proto: L4, plane: usize, bit: u16, on: bool) {
    let (w, m) = bit_pos(words, l, proto, plane, bit);
    if let Some(x) = bits.get_mut(w) {
        if on {
            *x |= m;
        } else {
            *x &= !m;
        }
    }
}

impl Ports {
    pub(super) fn rotate(&mut self, a: u16, l: u16, window: u32) {
        let Some(words) = self.pool_of(a).map(|p| p.words) else { return };
        if let Some((ad, bits)) = self.addr_mut(a) {
            rotate_block(ad, bits, words, l, window);
        }
    }

    pub(super) fn window(&self, now: u32) -> u32 {
        now / self.hold_window
    }

    /// First free bit of block `l` for `proto` at or after `start` (wrapping),
    /// restricted to bits whose ports lie in `lo..=hi`.
    ///
    /// The port-block path uses `take_first_free_at`, the same scan without the
    /// range test: merging the two (a predicate, or a per-word range mask)
    /// was measured at +10 to +18 instructions per new session.
    /// With `parity` (RFC 4787 REQ-4), only ports of that parity (0 even, 1 odd).
    pub(super) fn first_free(
        &self,
        a: u16,
        l: u16,
        proto: L4,
        start: u16,
        (lo, hi): (u16, u16),
        parity: Option<u16>,
    ) -> Option<u16> {
        let pool = self.pool_of(a)?;
        let words = pool.words;
        let bits = self.addr_bits(a)?;
        let base_port = self.port_of(a, l, 0);
        let base = ((usize::from(l) * PROTOS + proto.index()) * PLANES + BUSY) * words;
        let busy = bits.get(base..base + words)?;
        let start_word = usize::from(start) / 64;
        for k in 0..=words {
            let w = (start_word + k) % words;
            let mut free = !busy.get(w).copied().unwrap_or(u64::MAX);
            if k == 0 {
                free &= u64::MAX << (start % 64);
            } else if k == words {
                free &= !(u64::MAX << (start % 64));
            }
            while free != 0 {
                let bit = (w * 64) as u16 + free.trailing_zeros() as u16;
                let port = base_port.wrapping_add(bit);
                if port >= lo && port <= hi && parity.is_none_or(|p| port & 1 == p) {
                    return Some(bit);
                }
                free &= free - 1;
            }
        }
        None
    }

    pub(super) fn take(&mut self, a: u16, l: u16, proto: L4, bit: u16) {
        let Some(words) = self.pool_of(a).map(|p| p.words) else { return };
        if let Some((ad, bits)) = self.addr_mut(a) {
            take_bit(ad, bits, words, l, proto, bit);
        }
    }

    /// Marks a static forward's public port as permanently in use. Returns
    /// false if this worker does not own it.
    pub fn reserve(&mut self, a: u16, proto: L4, port: u16) -> bool {
        let Some((l, bit, words)) = self.locate(a, port) else {
            return false;
        };
        if let Some((_, bits)) = self.addr_mut(a) {
            set_bit(bits, words, l, proto, 0, bit, true);
            set_bit(bits, words, l, proto, BUSY, bit, true);
        }
        true
    }

    /// Clears a static forward's reservation of `port` (a forward removed live).
    pub fn unreserve(&mut self, a: u16, proto: L4, port: u16) {
        let Some((l, bit, words)) = self.locate(a, port) else { return };
        if let Some((_, bits)) = self.addr_mut(a) {
            set_bit(bits, words, l, proto, 0, bit, false);
            set_bit(bits, words, l, proto, BUSY, bit, false);
        }
    }
}
