//! Internet checksum (RFC 1071) and incremental update (RFC 1624).
//!
//! The engine never recomputes a checksum on the forwarding path: a session
//! stores the one's-complement difference its rewrite makes (a *delta*) and
//! [`apply_delta`] folds it into the old checksum with RFC 1624 eqn. 3,
//! `HC' = ~(~HC + ~m + m')`, which cannot produce the -0 that eqn. 2 of
//! RFC 1141 could. The reverse direction applies the complement of the delta.
//! UDP: a checksum of 0 means "none" and stays 0; a computed 0 is sent as
//! 0xFFFF (RFC 768), see [`apply_delta_udp`].
#![forbid(unsafe_code)]

/// One's-complement sum of `data` as 16-bit big-endian words, not folded.
/// An odd trailing byte is padded with zero (RFC 1071 section 4.1).
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        if let &[a, b] = c {
            acc += u64::from(u16::from_be_bytes([a, b]));
        }
    }
    if let &[last] = chunks.remainder() {
        acc += u64::from(last) << 8;
    }
    fold64(acc)
}

fn fold64(mut acc: u64) -> u32 {
    while acc > 0xffff_ffff {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    // Lossless: the loop leaves at most 32 bits.
    u32::try_from(acc).unwrap_or(u32::MAX)
}

/// Folds a 32-bit one's-complement accumulator to 16 bits in one add: the
/// word plus itself rotated by 16 holds in its high half the two halves'
/// sum with the low half's carry added back (RFC 1071's end-around
/// carry). Zero only for zero, so any nonzero sum congruent to `acc`
/// modulo 0xFFFF folds to the same word.
#[inline(always)]
#[allow(clippy::cast_possible_truncation)] // the high half is the point
pub fn fold(acc: u32) -> u16 {
    (acc.wrapping_add(acc.rotate_right(16)) >> 16) as u16
}

/// One's-complement sum of two 32-bit words (end-around carry, RFC 1071):
/// congruent to their sum modulo 0xFFFF, zero only if both are.
#[inline(always)]
pub fn add32(a: u32, b: u32) -> u32 {
    let (s, c) = a.overflowing_add(b);
    // No overflow: with a carry, `s` is at most 2^32 - 2.
    s + u32::from(c)
}

/// The checksum field value for `data` (the complement of the folded sum).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// One's-complement sum of the TCP/UDP pseudo-header (RFC 793, RFC 768).
pub fn pseudo_header_sum(src: u32, dst: u32, proto: u8, l4_len: u16) -> u32 {
    (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + u32::from(proto) + u32::from(l4_len)
}

/// The delta of replacing a 32-bit value `old` by `new` in checksummed data.
#[inline(always)]
pub fn delta32(old: u32, new: u32) -> u16 {
    fold((!old >> 16) + (!old & 0xffff) + (new >> 16) + (new & 0xffff))
}

/// The delta of replacing a 16-bit word `old` by `new`.
#[inline(always)]
pub fn delta16(old: u16, new: u16) -> u16 {
    fold(u32::from(!old) + u32::from(new))
}

/// Sum of two deltas.
#[inline(always)]
pub fn add(a: u16, b: u16) -> u16 {
    fold(u32::from(a) + u32::from(b))
}

/// The delta that undoes `d`.
#[inline(always)]
pub fn negate(d: u16) -> u16 {
    !d
}

/// Applies a delta to a checksum field (RFC 1624 eqn. 3).
#[inline(always)]
pub fn apply_delta(csum: u16, d: u16) -> u16 {
    !fold(u32::from(!csum) + u32::from(d))
}

/// [`apply_delta`] for UDP: 0 (no checksum) stays 0, a result of 0 becomes 0xFFFF.
#[inline(always)]
pub fn apply_delta_udp(csum: u16, d: u16) -> u16 {
    if csum == 0 {
        return 0;
    }
    match apply_delta(csum, d) {
        0 => 0xffff,
        c => c,
    }
}

/// True when data including its checksum field sums to all ones (valid).
pub fn verify(data: &[u8]) -> bool {
    fold(sum(data)) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 section 4: HC = 0xDD2F, m = 0x5555 -> m' = 0x3285, HC' = 0x0000.
        assert_eq!(apply_delta(0xdd2f, delta16(0x5555, 0x3285)), 0x0000);
    }

    #[test]
    fn udp_zero_rules() {
        assert_eq!(apply_delta_udp(0, 0x1234), 0);
        // Choose a delta that makes the plain result 0: it must come out as 0xFFFF.
        assert_eq!(apply_delta(0xdd2f, delta16(0x5555, 0x3285)), 0);
        assert_eq!(apply_delta_udp(0xdd2f, delta16(0x5555, 0x3285)), 0xffff);
    }

    #[test]
    fn known_ipv4_header() {
        // A header from the Wikipedia "IPv4 header checksum" example: checksum b861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
    }

    /// The ends proptest's uniform draws never reach: zero, all ones, a
    /// carry out of the low half, a carry out of the whole word.
    #[test]
    fn the_fold_and_add32_at_their_edges() {
        assert_eq!(fold(0), 0);
        assert_eq!(fold(u32::MAX), 0xffff);
        assert_eq!(fold(0x0001_0000), 1);
        assert_eq!(fold(0x0000_ffff), 0xffff);
        assert_eq!(fold(0xffff_0001), 1);
        assert_eq!(fold(0x8000_8000), 1);
        assert_eq!(add32(u32::MAX, 0), u32::MAX);
        assert_eq!(add32(u32::MAX, 1), 1);
        assert_eq!(add32(u32::MAX, u32::MAX), u32::MAX);
        assert_eq!(add32(0, 0), 0);
    }

    fn equivalent(a: u16, b: u16) -> bool {
        // 0x0000 and 0xFFFF are both one's-complement zero.
        a == b || (a | b == 0xffff && (a == 0 || b == 0))
    }

    proptest! {
        #[test]
        fn one_fold_of_32_bit_sums_equals_the_delta_helpers(old: u32, new: u32, op: u16, np: u16) {
            let ip = add32(!old, new);
            let port = u32::from(!op) + u32::from(np);
            prop_assert_eq!(fold(ip), delta32(old, new));
            prop_assert_eq!(fold(port), delta16(op, np));
            prop_assert_eq!(fold(add32(ip, port)), add(delta32(old, new), delta16(op, np)));
        }

        #[test]
        fn the_fold_equals_shift_folds_of_the_wide_sum(a: u32, b: u32, small in 0u32..0x2_0000) {
            // The wide sum folded 16 bits at a time until it fits.
            let wide = |mut acc: u64| {
                while acc > 0xffff {
                    acc = (acc & 0xffff) + (acc >> 16);
                }
                acc
            };
            prop_assert_eq!(u64::from(fold(add32(a, b))), wide(u64::from(a) + u64::from(b)));
            let three = u64::from(a) + u64::from(b) + u64::from(small);
            prop_assert_eq!(u64::from(fold(add32(add32(a, b), small))), wide(three));
        }

        #[test]
        fn incremental_equals_full_recompute(
            words in proptest::collection::vec(any::<u16>(), 3..32),
            pick in any::<usize>(), new32 in any::<u32>(),
        ) {
            let mut data: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            // Word 0 holds the checksum; a 32-bit field at an even offset >= 2 changes.
            data[0] = 0; data[1] = 0;
            let c = checksum(&data);
            data[0..2].copy_from_slice(&c.to_be_bytes());
            let at = 2 + 2 * (pick % (words.len() - 2));
            let old = u32::from_be_bytes([data[at], data[at+1], data[at+2], data[at+3]]);
            data[at..at+4].copy_from_slice(&new32.to_be_bytes());
            let inc = apply_delta(c, delta32(old, new32));
            data[0] = 0; data[1] = 0;
            let full = checksum(&data);
            prop_assert!(equivalent(inc, full), "inc {inc:#x} full {full:#x}");
            // Undoing with the negated delta restores the original checksum class.
            let back = apply_delta(inc, negate(delta32(old, new32)));
            prop_assert!(equivalent(back, c));
        }
    }
}
