//! Flow hashing: a seeded folded multiply over the tuple, a few instructions.
//!
//! The seed comes from the engine parameters, so an outside sender cannot
//! aim collisions at a bucket without knowing it.
#![forbid(unsafe_code)]

use crate::wire::bytes::{Net16, Net32};

const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;

#[inline(always)]
#[allow(clippy::cast_possible_truncation)] // taking the low and high halves is the point
fn folded_multiply(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// The table position of `hash` in a power-of-two table of `mask + 1` slots.
#[inline(always)]
#[allow(clippy::cast_possible_truncation)] // only the low bits are wanted
pub fn bucket(hash: u64, mask: usize) -> usize {
    (hash as usize) & mask
}

/// The home slot of `hash` in a table of `homes` home slots, any number
/// of them: the hash's low 32 bits scaled to it (a multiply and a shift,
/// D. Lemire's "fast alternative to the modulo reduction"), so a table
/// is sized to its load rather than to a power of two. The tag
/// (`index::tag_of`) comes from the top bits, independent of these.
#[inline(always)]
#[allow(clippy::cast_possible_truncation)] // the low half is the point; the product's high half is below `homes`
pub fn home(hash: u64, homes: usize) -> usize {
    ((u64::from(hash as u32) * homes as u64) >> 32) as usize
}

/// Hashes a (source address, source port, destination address,
/// destination port, protocol) tuple in packet order, packed as the fast
/// lane reads a packet's (`parse::FastKey`: the bytes in network order,
/// read as little-endian words), so both hash the same words.
#[inline(always)]
pub fn hash5(seed: u64, a: u32, ap: u16, b: u32, bp: u16, proto: u16) -> u64 {
    let (w0, ports) = wire_words(a, ap, b, bp);
    hash_words(seed, w0, (u64::from(proto) << 32) | u64::from(ports))
}

/// A (source, source port, destination, destination port) tuple's address
/// word and port pair as `parse::FastKey` reads them from a packet.
#[inline(always)]
pub fn wire_words(a: u32, ap: u16, b: u32, bp: u16) -> (u64, u32) {
    let (le32, le16) = (|x| Net32::new(x).le(), |x| Net16::new(x).le());
    ((u64::from(le32(b)) << 32) | u64::from(le32(a)), (u32::from(le16(bp)) << 16) | u32::from(le16(ap)))
}

/// [`hash5`] on a tuple already packed as the fast lane packs it.
#[inline(always)]
pub fn hash_words(seed: u64, w0: u64, w1: u64) -> u64 {
    folded_multiply(w0 ^ addr_key(seed), w1 ^ seed ^ K2)
}

/// What the address word is xored with: the constant and the seed's low
/// half (which the protocol's bits in [`hash_ports`] leave alone), a value
/// a loop computes once, so a packet's hash loads it rather than
/// materialising a 64-bit constant.
#[inline(always)]
fn addr_key(seed: u64) -> u64 {
    K1 ^ (seed & 0xffff_ffff)
}

/// [`hash_words`] for a key of protocol `code` given by its address word
/// and its ports (`w1` is `code << 32 | ports`): the same hash, with what
/// does not depend on the packet (`seed`, the constant, the protocol)
/// xored in a loop can hoist.
#[inline(always)]
pub fn hash_ports(seed: u64, code: u8, w0: u64, ports: u32) -> u64 {
    // The protocol's half of `w1` xored into the seed: disjoint bits, so
    // the same words are multiplied.
    hash_words(seed ^ (u64::from(code) << 32), w0, u64::from(ports))
}

/// Hashes a (address, port, protocol, extra) endpoint key.
#[inline(always)]
pub fn hash3(seed: u64, a: u32, port: u16, proto: u16, extra: u16) -> u64 {
    let y = (u64::from(port) << 32) | (u64::from(extra) << 16) | u64::from(proto);
    folded_multiply(u64::from(a) ^ K2, y ^ seed ^ K1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_matters() {
        let base = hash5(1, 1, 2, 3, 4, 6);
        assert_ne!(base, hash5(2, 1, 2, 3, 4, 6));
        assert_ne!(base, hash5(1, 9, 2, 3, 4, 6));
        assert_ne!(base, hash5(1, 1, 9, 3, 4, 6));
        assert_ne!(base, hash5(1, 1, 2, 9, 4, 6));
        assert_ne!(base, hash5(1, 1, 2, 3, 9, 6));
        assert_ne!(base, hash5(1, 1, 2, 3, 4, 17));
        assert_ne!(hash3(1, 1, 2, 6, 0), hash3(1, 1, 2, 6, 1));
    }

    #[test]
    fn hash5_packs_a_tuple_as_a_packet_carries_it() {
        // 100.64.0.1:1234 -> 198.51.100.1:53 as it lies in a frame, from
        // the source address on.
        let bytes = [100, 64, 0, 1, 198, 51, 100, 1, 0x04, 0xd2, 0, 53];
        let w0 = u64::from_le_bytes([100, 64, 0, 1, 198, 51, 100, 1]);
        let ports = u32::from_le_bytes([0x04, 0xd2, 0, 53]);
        assert_eq!(crate::wire::bytes::le64_at(&bytes, 0), w0);
        assert_eq!(wire_words(0x6440_0001, 1234, 0xc633_6401, 53), (w0, ports));
        assert_eq!(hash5(7, 0x6440_0001, 1234, 0xc633_6401, 53, 17), hash_words(7, w0, (17 << 32) | u64::from(ports)));
    }

    #[test]
    fn hash_ports_is_hash_words_on_the_packed_key() {
        for (seed, code, w0, ports) in [(1, 17, 2, 3), (u64::MAX, 6, 0x0a00_0001_c633_6401, 0xd431_0035)] {
            let w1 = (u64::from(code) << 32) | u64::from(ports);
            assert_eq!(hash_ports(seed, code, w0, ports), hash_words(seed, w0, w1));
        }
    }

    #[test]
    fn low_bits_spread() {
        // Sequential ports must not pile into a few buckets of a 4096-slot table.
        let mut seen = std::collections::HashSet::new();
        for p in 0..1000u16 {
            seen.insert(hash5(7, 0x6440_0001, 1024 + p, 0xc633_6401, 5000, 17) & 4095);
        }
        assert!(seen.len() > 850, "{} distinct buckets", seen.len());
    }
}
