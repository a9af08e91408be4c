//! Rewriting a frame: addresses, ports, TTL and checksums, updated
//! incrementally (RFC 1624) from the deltas stored in the session. The fast
//! lane's rewrite works in network byte order on fixed-size arrays; the
//! general one on the parsed offsets.
//!
//! Invariant: a packet that arrived with a bad checksum leaves with a bad
//! checksum; a computed UDP checksum of 0 goes out as 0xFFFF (RFC 768).
#![forbid(unsafe_code)]

use super::*;

/// Rewrites an IPv4 address field (`off` 12 source, 16 destination),
/// decrements the TTL and applies `d`, the address change's delta, to the
/// header checksum (the TTL's own delta is added here).
pub(super) fn set_ip_addr(frame: &mut [u8], l3: usize, off: usize, new: u32, d: u16) {
    if let Some(ip) = frame.get_mut(l3..) {
        set_u32(ip, off, new);
        ttl_down(ip, d);
    }
}

/// Decrements the TTL of a frame routed unchanged.
pub(super) fn decrement_ttl(frame: &mut [u8], l3: usize) {
    if let Some(ip) = frame.get_mut(l3..) {
        ttl_down(ip, 0);
    }
}

/// TTL - 1 in an IPv4 header, with `d` and the TTL's delta applied to its checksum.
#[inline(always)]
pub(super) fn ttl_down(ip: &mut [u8], d: u16) {
    let w = u16_at(ip, 8);
    set_u16(ip, 8, w.wrapping_sub(0x100));
    let c = u16_at(ip, 10);
    set_u16(ip, 10, apply2(c, d, TTL_DELTA));
}

/// Applies two deltas to a checksum with one fold (RFC 1624 eqn. 3).
#[inline(always)]
pub(super) fn apply2(csum: u16, d1: u16, d2: u16) -> u16 {
    !fold(u32::from(!csum) + u32::from(d1) + u32::from(d2))
}

#[inline(always)]
pub(super) fn rewrite_l4(frame: &mut [u8], p: &Parsed, port_off: usize, csum_off: usize, port: u16, d: u16) {
    if let Some(l4) = frame.get_mut(usize::from(p.l4)..) {
        set_u16(l4, port_off, port);
        let c = u16_at(l4, csum_off);
        let nc = if p.pcode == pcode::UDP { apply_delta_udp(c, d) } else { apply_delta(c, d) };
        set_u16(l4, csum_off, nc);
    }
}

/// Rewrites one address and one port of a frame in the fast-lane layout
/// (IPv4 at 14 without options, L4 at 34), TTL included. `N` covers the L4
/// checksum, so every offset is a constant inside a fixed-size array.
/// Returns false, having changed nothing, if the TTL would expire.
///
/// The checksums are updated in network byte order: a one's-complement sum
/// of byte-swapped words is the byte-swapped sum (RFC 1071 section 2(B)), so
/// swapping the delta once saves swapping the field twice.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn rewrite_fast<const N: usize>(
    h: &mut [u8; N],
    addr_off: usize,
    addr: u32,
    port_off: usize,
    port: u16,
    csum_off: usize,
    d_ip: u16,
    d_l4: u16,
    udp: bool,
) -> bool {
    let b = &mut h[..];
    // A TTL that would expire here is the kernel's (ICMP time exceeded).
    let ttl = b.get(22).copied().unwrap_or(0);
    if ttl <= 1 {
        return false;
    }
    set_u32(b, addr_off, addr);
    if let Some(t) = b.get_mut(22) {
        *t = ttl - 1;
    }
    let c = ne16(b, 24);
    set_ne16(b, 24, !oc_add(oc_add(!c, be_to_ne(d_ip)), be_to_ne(TTL_DELTA)));
    set_u16(b, port_off, port);
    let c = ne16(b, csum_off);
    if !udp {
        set_ne16(b, csum_off, !oc_add(!c, be_to_ne(d_l4)));
    } else if c != 0 {
        // UDP: no checksum (0) stays so. Otherwise c + ~d, which is
        // ~(~c + d) except that a zero result comes out as 0xFFFF (the
        // sum of a nonzero word and anything is never +0), which is what
        // RFC 768 wants sent for a computed 0.
        set_ne16(b, csum_off, oc_add(c, !be_to_ne(d_l4)));
    }
    true
}

/// Ones' complement addition of two 16-bit words (end-around carry), the
/// step RFC 1624's incremental update is made of.
#[inline(always)]
pub(super) fn oc_add(a: u16, b: u16) -> u16 {
    let (s, carry) = a.overflowing_add(b);
    s.wrapping_add(u16::from(carry))
}

/// A big-endian 16-bit value as the native integer with the same bytes.
#[inline(always)]
pub(super) fn be_to_ne(v: u16) -> u16 {
    u16::from_ne_bytes(v.to_be_bytes())
}

/// A 16-bit field read with the bytes as they lie (network order kept).
#[inline(always)]
pub(super) fn ne16(b: &[u8], off: usize) -> u16 {
    be_to_ne(u16_at(b, off))
}

/// Writes a 16-bit field from its native-read form (inverse of [`ne16`]).
#[inline(always)]
pub(super) fn set_ne16(b: &mut [u8], off: usize, v: u16) {
    set_u16(b, off, u16::from_be_bytes(v.to_ne_bytes()));
}

/// The rewrite of a frame already known to be in the fast-lane layout.
#[inline(always)]
pub(crate) fn rewrite_fast_lane(
    frame: &mut [u8],
    pc: u16,
    i2o: bool,
    addr: u32,
    port: u16,
    d_ip: u16,
    d_l4: u16,
) -> bool {
    match pc {
        pcode::UDP => rewrite_fast_proto::<true>(frame, i2o, addr, port, d_ip, d_l4),
        pcode::TCP => rewrite_fast_proto::<false>(frame, i2o, addr, port, d_ip, d_l4),
        _ => false,
    }
}

/// [`rewrite_fast_lane`] for a protocol known at compile time.
#[inline(always)]
pub(crate) fn rewrite_fast_proto<const UDP: bool>(
    frame: &mut [u8],
    i2o: bool,
    addr: u32,
    port: u16,
    d_ip: u16,
    d_l4: u16,
) -> bool {
    let (addr_off, port_off) = if i2o { (26, 34) } else { (30, 36) };
    if UDP {
        frame
            .first_chunk_mut::<42>()
            .is_some_and(|h| rewrite_fast(h, addr_off, addr, port_off, port, 40, d_ip, d_l4, true))
    } else {
        frame
            .first_chunk_mut::<54>()
            .is_some_and(|h| rewrite_fast(h, addr_off, addr, port_off, port, 50, d_ip, d_l4, false))
    }
}

/// The fast-lane rewrite, if the frame has the fast-lane layout.
#[inline(always)]
pub(super) fn try_fast(frame: &mut [u8], p: &Parsed, i2o: bool, addr: u32, port: u16, d_ip: u16, d_l4: u16) -> bool {
    p.l3 == 14 && p.l4 == 34 && rewrite_fast_lane(frame, p.pcode, i2o, addr, port, d_ip, d_l4)
}

/// Inside to outside: source becomes the public endpoint, TTL drops by one.
#[inline(always)]
pub(super) fn xlate_i2o(frame: &mut [u8], p: &Parsed, s: &Session, pub_ip: u32) {
    if try_fast(frame, p, true, pub_ip, s.public_port, s.ip_delta, s.l4_delta) {
        return;
    }
    set_ip_addr(frame, usize::from(p.l3), 12, pub_ip, s.ip_delta);
    let (po, _, co) = L4_OFFS.get(usize::from(p.pcode)).copied().unwrap_or((0, 2, 16));
    rewrite_l4(frame, p, po, co, s.public_port, s.l4_delta);
}

/// Outside to inside: destination becomes the inside endpoint, TTL drops by one.
#[inline(always)]
pub(super) fn xlate_o2i(frame: &mut [u8], p: &Parsed, s: &Session) {
    if try_fast(frame, p, false, s.inside_ip, s.inside_port, negate(s.ip_delta), negate(s.l4_delta)) {
        return;
    }
    set_ip_addr(frame, usize::from(p.l3), 16, s.inside_ip, negate(s.ip_delta));
    let (_, po, co) = L4_OFFS.get(usize::from(p.pcode)).copied().unwrap_or((0, 2, 16));
    rewrite_l4(frame, p, po, co, s.inside_port, negate(s.l4_delta));
}

/// [`xlate_o2i`] without the TTL decrement (the hairpin's second half).
pub(super) fn xlate_o2i_no_ttl(frame: &mut [u8], p: &Parsed, s: &Session) {
    if let Some(ip) = frame.get_mut(usize::from(p.l3)..) {
        set_u32(ip, 16, s.inside_ip);
        let c = u16_at(ip, 10);
        set_u16(ip, 10, apply_delta(c, negate(s.ip_delta)));
    }
    let (_, po, co) = L4_OFFS.get(usize::from(p.pcode)).copied().unwrap_or((0, 2, 16));
    rewrite_l4(frame, p, po, co, s.inside_port, negate(s.l4_delta));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The fast lane's rewrite (network byte order, end-around carry)
        /// gives exactly what the general path's RFC 1624 helpers give.
        #[test]
        fn fast_rewrite_matches_the_general_checksum_update(
            c_ip: u16, c_l4: u16, d_ip: u16, d_l4: u16, addr: u32, port: u16,
            ttl in 2u8.., i2o: bool, udp: bool,
        ) {
            let csum_off = if udp { 40 } else { 50 };
            let mut f = [0u8; 54];
            f[22] = ttl;
            f[24..26].copy_from_slice(&c_ip.to_be_bytes());
            f[csum_off..csum_off + 2].copy_from_slice(&c_l4.to_be_bytes());
            let done = if udp {
                rewrite_fast_proto::<true>(&mut f, i2o, addr, port, d_ip, d_l4)
            } else {
                rewrite_fast_proto::<false>(&mut f, i2o, addr, port, d_ip, d_l4)
            };
            prop_assert!(done);
            let (ao, po) = if i2o { (26, 34) } else { (30, 36) };
            prop_assert_eq!(u32_at(&f, ao), addr);
            prop_assert_eq!(u16_at(&f, po), port);
            prop_assert_eq!(f[22], ttl - 1);
            prop_assert_eq!(u16_at(&f, 24), apply2(c_ip, d_ip, TTL_DELTA));
            let want = if udp { apply_delta_udp(c_l4, d_l4) } else { apply_delta(c_l4, d_l4) };
            prop_assert_eq!(u16_at(&f, csum_off), want);
        }

        /// A TTL that would expire leaves the frame as it was.
        #[test]
        fn fast_rewrite_leaves_expiring_ttl_alone(ttl in 0u8..2, udp: bool) {
            let mut f = [7u8; 54];
            f[22] = ttl;
            let before = f;
            let done = if udp {
                rewrite_fast_proto::<true>(&mut f, true, 1, 2, 3, 4)
            } else {
                rewrite_fast_proto::<false>(&mut f, true, 1, 2, 3, 4)
            };
            prop_assert!(!done);
            prop_assert_eq!(f, before);
        }
    }

    #[test]
    fn fast_rewrite_sends_a_computed_udp_zero_as_all_ones() {
        // ~(~0x1234 + 0x1234) = 0: RFC 768 wants 0xFFFF on the wire.
        let mut f = [0u8; 42];
        f[22] = 64;
        f[40..42].copy_from_slice(&0x1234u16.to_be_bytes());
        assert!(rewrite_fast_proto::<true>(&mut f, true, 0, 0, 0, 0x1234));
        assert_eq!(u16_at(&f, 40), 0xffff);
    }
}
