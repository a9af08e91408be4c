//! Rewriting a frame: addresses, ports, TTL and checksums, updated
//! incrementally (RFC 1624) from the deltas stored in the session.
//!
//! [`Rewrite`] is the contract between deciding and rewriting (VPP's
//! `nat_6t_flow_t` rewrite half): which address and port of the packet
//! change, to what, and the checksum deltas, taken from the session whose
//! deltas were computed once when it was made. Every offset comes from the
//! `wire` field tables ([`ipv4::field`], [`layout`] for the fast lane). The
//! fast lane's rewrite works in network byte order on fixed-size arrays;
//! the general one on the parsed offsets; a property test holds them equal.
//!
//! Invariant: a packet that arrived with a bad checksum leaves with a bad
//! checksum; a computed UDP checksum of 0 goes out as 0xFFFF (RFC 768); a
//! TTL that would expire is never written (the kernel answers it).
#![forbid(unsafe_code)]

use super::*;
use crate::wire::bytes::Net32;
use crate::wire::{ipv4, layout, tcp, udp};

/// TTL decrement as a checksum delta: the TTL/protocol word drops by 0x0100.
pub(super) const TTL_DELTA: u16 = 0xfeff;

/// What a translation writes into a packet of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rewrite {
    /// Inside to outside (the source changes) or outside to inside (the
    /// destination changes).
    pub i2o: bool,
    /// The new address.
    pub addr: u32,
    /// The new port (ICMP echo: identifier).
    pub port: u16,
    /// The IP header checksum's delta for the address change.
    pub d_ip: u16,
    /// The same with the TTL decrement's delta ([`TTL_DELTA`]) added, as
    /// a native-endian load of it in network byte order gives it: what the
    /// fast lane applies in one end-around-carry add (RFC 1071 section 2(B)).
    pub d_ip_ttl: u16,
    /// The L4 checksum's delta (address and port; ICMP: identifier only).
    pub d_l4: u16,
}

impl Rewrite {
    /// Inside to outside: the source becomes the session's public endpoint.
    #[inline(always)]
    pub(crate) fn i2o(s: &Session) -> Self {
        // The session keeps its deltas byte-swapped (see `Session`); the
        // fast lane's swap back to network order then cancels out. Its IP
        // delta has the TTL's folded in (`session_deltas`); the address's
        // alone is that minus the TTL's (a constant: the general path pays).
        let d_ip_ttl = s.ip_delta.swap_bytes();
        Self {
            i2o: true,
            addr: s.public_ip.get(),
            port: s.public_port.get(),
            d_ip: oc_add(d_ip_ttl, !TTL_DELTA),
            d_ip_ttl: be_to_ne(d_ip_ttl),
            d_l4: s.l4_delta.swap_bytes(),
        }
    }

    /// Outside to inside: the destination becomes the session's inside endpoint.
    #[inline(always)]
    pub(crate) fn o2i(s: &Session) -> Self {
        // The reverse address delta with the TTL's: -d + T = -(d + T) + 2T,
        // from the stored d + T by one negation and one constant add (exact:
        // a one's-complement sum with a nonzero term is never +0).
        let d_ip_ttl = s.ip_delta.swap_bytes();
        Self {
            i2o: false,
            addr: s.inside_ip.get(),
            port: s.inside_port.get(),
            d_ip: negate(oc_add(d_ip_ttl, !TTL_DELTA)),
            d_ip_ttl: oc_add(negate(be_to_ne(d_ip_ttl)), be_to_ne(oc_add(TTL_DELTA, TTL_DELTA))),
            d_l4: negate(s.l4_delta.swap_bytes()),
        }
    }

    /// The rewrite of a packet that arrived on `side`.
    #[inline(always)]
    pub(super) fn arriving(side: Side, s: &Session) -> Self {
        match side {
            Side::Inside => Self::i2o(s),
            Side::Outside => Self::o2i(s),
        }
    }

    /// The IPv4 address field that changes.
    #[inline(always)]
    pub(super) fn addr_field(&self) -> usize {
        if self.i2o {
            ipv4::field::SRC
        } else {
            ipv4::field::DST
        }
    }

    /// The L4 field that changes for protocol `proto`.
    #[inline(always)]
    pub(super) fn port_field(&self, proto: L4) -> usize {
        match proto {
            L4::Icmp => icmp::IDENT,
            _ if self.i2o => udp::SRC_PORT,
            _ => udp::DST_PORT,
        }
    }

    /// The fields of a datagram going the other way (the one an ICMP error
    /// quotes): the destination where this one changes the source.
    #[inline(always)]
    pub(super) fn quoted(self) -> Self {
        Self { i2o: !self.i2o, ..self }
    }

    /// Rewrites a packet, TTL included: the fast-lane layout by fixed
    /// offsets, anything else (IP options) by the parsed ones.
    #[inline(always)]
    pub(super) fn apply(&self, frame: &mut [u8], p: &Parsed) {
        if usize::from(p.l3) == layout::L3 && usize::from(p.l4) == layout::L4 && self.apply_fast_lane(frame, p.proto) {
            return;
        }
        set_ip_addr(frame, usize::from(p.l3), self.addr_field(), self.addr, self.d_ip);
        self.apply_l4_at(frame, usize::from(p.l4), p.proto);
    }

    /// [`Rewrite::apply`] without the TTL decrement (a hairpin's second
    /// half: the first half decremented it already).
    pub(super) fn apply_no_ttl(&self, frame: &mut [u8], p: &Parsed) {
        self.apply_addr_no_ttl(frame, p);
        self.apply_l4_at(frame, usize::from(p.l4), p.proto);
    }

    /// The address only, without the TTL (a hairpinned later fragment's
    /// second half).
    pub(super) fn apply_addr_no_ttl(&self, frame: &mut [u8], p: &Parsed) {
        if let Some(ip) = frame.get_mut(usize::from(p.l3)..) {
            set_u32(ip, self.addr_field(), self.addr);
            let c = u16_at(ip, ipv4::field::CHECKSUM);
            set_u16(ip, ipv4::field::CHECKSUM, apply_delta(c, self.d_ip));
        }
    }

    /// The address only, TTL included (later fragments carry no L4 header).
    pub(super) fn apply_addr(&self, frame: &mut [u8], p: &Parsed) {
        set_ip_addr(frame, usize::from(p.l3), self.addr_field(), self.addr, self.d_ip);
    }

    /// The L4 half by the general RFC 1624 helpers: the port (identifier)
    /// at `l4` and the checksum of protocol `proto`.
    /// Other protocols have no L4 half: nothing is written.
    pub(super) fn apply_l4_at(&self, frame: &mut [u8], l4: usize, proto: L4) {
        if proto == L4::Other {
            return;
        }
        if let Some(l4) = frame.get_mut(l4..) {
            set_u16(l4, self.port_field(proto), self.port);
            let at = l4_checksum_field(proto);
            let c = u16_at(l4, at);
            let nc = if proto == L4::Udp { apply_delta_udp(c, self.d_l4) } else { apply_delta(c, self.d_l4) };
            set_u16(l4, at, nc);
        }
    }

    /// The rewrite of a frame known to be in the fast-lane layout.
    #[inline(always)]
    pub(crate) fn apply_fast_lane(&self, frame: &mut [u8], proto: L4) -> bool {
        match proto {
            L4::Udp => self.apply_fast::<true>(frame),
            L4::Tcp => self.apply_fast::<false>(frame),
            L4::Icmp | L4::Other => false,
        }
    }

    /// Rewrites a frame in the fast-lane layout (IPv4 without options,
    /// L4 at [`layout::L4`]), TTL included, for UDP (`UDP`) or TCP known at
    /// compile time. Returns false, having changed nothing, if the frame is
    /// shorter than the L4 header or the TTL would expire.
    #[inline(always)]
    pub(crate) fn apply_fast<const UDP: bool>(&self, frame: &mut [u8]) -> bool {
        let (addr_at, port_at) =
            if self.i2o { (layout::SRC, layout::SRC_PORT) } else { (layout::DST, layout::DST_PORT) };
        if UDP {
            frame
                .first_chunk_mut::<{ layout::UDP_END }>()
                .is_some_and(|h| rewrite_fast(h, addr_at, port_at, layout::UDP_CHECKSUM, self, true))
        } else {
            frame
                .first_chunk_mut::<{ layout::TCP_END }>()
                .is_some_and(|h| rewrite_fast(h, addr_at, port_at, layout::TCP_CHECKSUM, self, false))
        }
    }
}

/// The L4 checksum field of protocol `proto`.
#[inline(always)]
pub(super) fn l4_checksum_field(proto: L4) -> usize {
    match proto {
        L4::Tcp => tcp::CHECKSUM,
        L4::Udp => udp::CHECKSUM,
        L4::Icmp | L4::Other => icmp::CHECKSUM,
    }
}

/// Rewrites an IPv4 address field (`at`: [`ipv4::field::SRC`] or `DST`),
/// decrements the TTL and applies `d`, the address change's delta, to the
/// header checksum (the TTL's own delta is added here).
pub(super) fn set_ip_addr(frame: &mut [u8], l3: usize, at: usize, new: u32, d: u16) {
    if let Some(ip) = frame.get_mut(l3..) {
        set_u32(ip, at, new);
        ttl_down(ip, d);
    }
}

/// The checksum deltas a session keeps for its inside -> public rewrite,
/// byte-swapped as the fast lane applies them (see `Session`): the IP
/// header's for the address with the TTL decrement's added, and the L4
/// checksum's for address and port (ICMP: the identifier only). Each is
/// summed in 32-bit one's-complement words and folded once (RFC 1071
/// section 2(C): 2^16, and so 2^32, is 1 modulo 0xFFFF), which gives
/// exactly what delta32, delta16 and add would. A sum
/// with a nonzero term folds to a nonzero word, so the address's delta
/// alone comes back exactly (`Rewrite::i2o`).
///
/// The endpoints are taken as a session holds them, in network byte
/// order, and summed as their bytes lie (`Net32::le`): by the sum's
/// byte-order independence (RFC 1071 section 2(B)) the deltas come out
/// byte-swapped, the form stored, with no swap of an input or a result
/// (the TTL's delta, a constant, is swapped at compile time): -4.3
/// instructions a new session against host-order sums swapped back.
#[inline(always)]
pub(super) fn session_deltas(
    inside_ip: Net32,
    inside_port: Net16,
    public_ip: Net32,
    public_port: Net16,
    proto: L4,
) -> (u16, u16) {
    // In 32-bit one's-complement words (2^32 is 1 modulo 0xFFFF too):
    // an add with its carry each, and one rotate-and-add fold.
    let ip_sum = add32(!inside_ip.le(), public_ip.le());
    let port_sum = u32::from(!inside_port.le()) + u32::from(public_port.le());
    let l4 = fold(if proto == L4::Icmp { port_sum } else { add32(ip_sum, port_sum) });
    (fold(add32(ip_sum, u32::from(TTL_DELTA.swap_bytes()))), l4)
}

/// Decrements the TTL of a frame routed unchanged.
pub(super) fn decrement_ttl(frame: &mut [u8], l3: usize) {
    if let Some(ip) = frame.get_mut(l3..) {
        ttl_down(ip, 0);
    }
}

/// TTL - 1 in an IPv4 header, with `d` and the TTL's delta applied to its checksum.
#[inline(always)]
fn ttl_down(ip: &mut [u8], d: u16) {
    // The TTL is the high byte of the TTL/protocol word.
    let w = u16_at(ip, ipv4::field::TTL);
    set_u16(ip, ipv4::field::TTL, w.wrapping_sub(0x100));
    let c = u16_at(ip, ipv4::field::CHECKSUM);
    set_u16(ip, ipv4::field::CHECKSUM, apply2(c, d, TTL_DELTA));
}

/// Applies two deltas to a checksum with one fold (RFC 1624 eqn. 3).
#[inline(always)]
pub(super) fn apply2(csum: u16, d1: u16, d2: u16) -> u16 {
    !fold(u32::from(!csum) + u32::from(d1) + u32::from(d2))
}

/// Rewrites one address and one port of a frame in the fast-lane layout,
/// TTL included. `N` covers the L4 checksum, so every offset is a constant
/// inside a fixed-size array. Returns false, having changed nothing, if the
/// TTL would expire.
///
/// The checksums are updated in network byte order: a one's-complement sum
/// of byte-swapped words is the byte-swapped sum (RFC 1071 section 2(B)), so
/// swapping the delta once saves swapping the field twice.
#[inline(always)]
fn rewrite_fast<const N: usize>(
    h: &mut [u8; N],
    addr_at: usize,
    port_at: usize,
    csum_at: usize,
    r: &Rewrite,
    udp: bool,
) -> bool {
    let b = &mut h[..];
    // A TTL that would expire here is the kernel's (ICMP time exceeded).
    let ttl = b.get(layout::TTL).copied().unwrap_or(0);
    if ttl <= 1 {
        return false;
    }
    set_u32(b, addr_at, r.addr);
    if let Some(t) = b.get_mut(layout::TTL) {
        *t = ttl - 1;
    }
    let c = ne16(b, layout::IP_CHECKSUM);
    set_ne16(b, layout::IP_CHECKSUM, !oc_add(!c, r.d_ip_ttl));
    set_u16(b, port_at, r.port);
    let c = ne16(b, csum_at);
    if !udp {
        set_ne16(b, csum_at, !oc_add(!c, be_to_ne(r.d_l4)));
    } else if c != 0 {
        // UDP: no checksum (0) stays so. Otherwise c + ~d, which is
        // ~(~c + d) except that a zero result comes out as 0xFFFF (the
        // sum of a nonzero word and anything is never +0), which is what
        // RFC 768 wants sent for a computed 0.
        set_ne16(b, csum_at, oc_add(c, !be_to_ne(r.d_l4)));
    }
    true
}

/// Ones' complement addition of two 16-bit words (end-around carry), the
/// step RFC 1624's incremental update is made of.
#[inline(always)]
fn oc_add(a: u16, b: u16) -> u16 {
    let (s, carry) = a.overflowing_add(b);
    s.wrapping_add(u16::from(carry))
}

/// A big-endian 16-bit value as the native integer with the same bytes.
#[inline(always)]
fn be_to_ne(v: u16) -> u16 {
    u16::from_ne_bytes(v.to_be_bytes())
}

/// A 16-bit field read with the bytes as they lie (network order kept).
#[inline(always)]
fn ne16(b: &[u8], off: usize) -> u16 {
    be_to_ne(u16_at(b, off))
}

/// Writes a 16-bit field from its native-read form (inverse of [`ne16`]).
#[inline(always)]
fn set_ne16(b: &mut [u8], off: usize, v: u16) {
    set_u16(b, off, u16::from_be_bytes(v.to_ne_bytes()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::delta16;
    use proptest::prelude::*;

    fn rw(i2o: bool, addr: u32, port: u16, d_ip: u16, d_l4: u16) -> Rewrite {
        Rewrite { i2o, addr, port, d_ip, d_ip_ttl: be_to_ne(oc_add(d_ip, TTL_DELTA)), d_l4 }
    }

    fn fast(f: &mut [u8], r: &Rewrite, udp: bool) -> bool {
        if udp {
            r.apply_fast::<true>(f)
        } else {
            r.apply_fast::<false>(f)
        }
    }

    proptest! {
        /// The fast lane's rewrite (network byte order, end-around carry)
        /// writes exactly what the general path's RFC 1624 helpers write,
        /// for both protocols and both directions, on any frame bytes.
        #[test]
        fn fast_rewrite_equals_the_general_rewrite(
            bytes in proptest::collection::vec(any::<u8>(), layout::TCP_END),
            d_ip: u16, d_l4: u16, addr: u32, port: u16, ttl in 2u8.., i2o: bool, udp: bool,
        ) {
            let mut f = bytes;
            f[layout::TTL] = ttl;
            let r = rw(i2o, addr, port, d_ip, d_l4);
            let mut g = f.clone();
            prop_assert!(fast(&mut f, &r, udp));
            let proto = if udp { L4::Udp } else { L4::Tcp };
            set_ip_addr(&mut g, layout::L3, r.addr_field(), r.addr, r.d_ip);
            r.apply_l4_at(&mut g, layout::L4, proto);
            prop_assert_eq!(&f, &g);
            let (addr_at, port_at) = if i2o { (layout::SRC, layout::SRC_PORT) } else { (layout::DST, layout::DST_PORT) };
            prop_assert_eq!(u32_at(&f, addr_at), addr);
            prop_assert_eq!(u16_at(&f, port_at), port);
            prop_assert_eq!(f[layout::TTL], ttl - 1);
        }

        /// A TTL that would expire leaves the frame as it was.
        #[test]
        fn fast_rewrite_leaves_expiring_ttl_alone(ttl in 0u8..2, udp: bool) {
            let mut f = [7u8; layout::TCP_END];
            f[layout::TTL] = ttl;
            let before = f;
            prop_assert!(!fast(&mut f, &rw(true, 1, 2, 3, 4), udp));
            prop_assert_eq!(f, before);
        }
    }

    proptest! {
        /// A session's stored deltas, read back by `Rewrite`, are each
        /// direction's address delta exactly as RFC 1624's helpers compute
        /// it, and the same with the TTL decrement's added, for any
        /// inside and public endpoints the engine can make.
        #[test]
        fn a_sessions_deltas_read_back_exactly(
            inside_ip in 0x0100_0000u32..0xe000_0000, public_ip in 0x0100_0000u32..0xe000_0000,
            inside_port: u16, public_port: u16, icmp: bool,
        ) {
            deltas_read_back(inside_ip, public_ip, inside_port, public_port, icmp)?;
        }
    }

    /// [`a_sessions_deltas_read_back_exactly`] at the edges a random draw
    /// misses: no change at all (a zero sum, where a one's-complement
    /// result could come out as either zero), one change only, all ones.
    #[test]
    fn a_sessions_deltas_read_back_exactly_at_the_edges() {
        for (ia, pa) in [(0x0a00_0001, 0x0a00_0001), (0x0100_0000, 0xdfff_ffff), (0xc0a8_0101, 0xcb00_7101)] {
            for (ip, pp) in [(1024, 1024), (0, 0xffff), (0xffff, 0), (53, 40000)] {
                for icmp in [false, true] {
                    deltas_read_back(ia, pa, ip, pp, icmp).unwrap();
                }
            }
        }
    }

    /// The check of [`a_sessions_deltas_read_back_exactly`].
    fn deltas_read_back(
        inside_ip: u32,
        public_ip: u32,
        inside_port: u16,
        public_port: u16,
        icmp: bool,
    ) -> Result<(), TestCaseError> {
        let proto = if icmp { L4::Icmp } else { L4::Udp };
        let (ip_delta, l4_delta) =
            session_deltas(inside_ip.into(), inside_port.into(), public_ip.into(), public_port.into(), proto);
        let s = Session {
            inside_ip: inside_ip.into(),
            inside_port: inside_port.into(),
            public_ip: public_ip.into(),
            public_port: public_port.into(),
            ip_delta,
            l4_delta,
            ..Session::default()
        };
        let d = delta32(inside_ip, public_ip);
        let (i2o, o2i) = (Rewrite::i2o(&s), Rewrite::o2i(&s));
        prop_assert_eq!(i2o.d_ip, d);
        prop_assert_eq!(o2i.d_ip, negate(d));
        prop_assert_eq!(i2o.d_ip_ttl, be_to_ne(oc_add(d, TTL_DELTA)));
        prop_assert_eq!(o2i.d_ip_ttl, be_to_ne(oc_add(negate(d), TTL_DELTA)));
        // The L4 delta: address and port, ICMP the identifier alone.
        let port = delta16(inside_port, public_port);
        let l4 = if icmp { port } else { add(d, port) };
        prop_assert_eq!(i2o.d_l4, l4);
        prop_assert_eq!(o2i.d_l4, negate(l4));
        Ok(())
    }

    #[test]
    fn fast_rewrite_sends_a_computed_udp_zero_as_all_ones() {
        // ~(~0x1234 + 0x1234) = 0: RFC 768 wants 0xFFFF on the wire.
        let mut f = [0u8; layout::UDP_END];
        f[layout::TTL] = 64;
        f[layout::UDP_CHECKSUM..layout::UDP_END].copy_from_slice(&0x1234u16.to_be_bytes());
        assert!(fast(&mut f, &rw(true, 0, 0, 0, 0x1234), true));
        assert_eq!(u16_at(&f, layout::UDP_CHECKSUM), 0xffff);
    }

    #[test]
    fn a_rewrite_and_its_reverse_undo_each_other() {
        let s = Session { inside_ip: 1.into(), public_ip: 2.into(), ..Session::default() };
        assert_eq!(Rewrite::i2o(&s).quoted().addr_field(), ipv4::field::DST);
        assert_eq!(Rewrite::o2i(&s).d_ip, negate(Rewrite::i2o(&s).d_ip));
    }
}
