//! IPv4 headers (RFC 791), options and fragments included.
//!
//! Invariant: after [`Ipv4Packet::new_checked`], version is 4,
//! 20 <= header length (IHL * 4) <= total length <= buffer length, so every
//! accessor, [`Ipv4Packet::header`] and [`Ipv4Packet::payload`] are in range.
//! Bytes past the total length (Ethernet padding) are outside the packet.
#![forbid(unsafe_code)]

use super::bytes::{set_u16, set_u32, set_u8, u16_at, u32_at, u8_at};
use super::checksum;
use super::WireError;

/// TCP.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;
/// ICMP.
pub const PROTO_ICMP: u8 = 1;

/// Field offsets from the start of the IPv4 header (RFC 791 section 3.1):
/// the one table the views, the engine's rewrite and the test builders use.
#[allow(missing_docs)]
pub mod field {
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTO: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
    pub const MIN_LEN: usize = 20;
}

/// Don't-fragment flag in the flags/fragment-offset word.
pub const FLAG_DF: u16 = 0x4000;
/// More-fragments flag.
pub const FLAG_MF: u16 = 0x2000;
/// Fragment offset (in 8-byte units) in the flags/fragment-offset word.
pub const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Validates version, IHL and total length against the buffer.
    #[inline]
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < field::MIN_LEN {
            return Err(WireError::Truncated);
        }
        let vi = u8_at(b, field::VER_IHL);
        if vi >> 4 != 4 {
            return Err(WireError::Malformed);
        }
        let hl = usize::from(vi & 0x0f) * 4;
        let total = usize::from(u16_at(b, field::TOTAL_LEN));
        if hl < field::MIN_LEN || total < hl {
            return Err(WireError::Malformed);
        }
        if total > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(Self { buf })
    }

    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// Header length in bytes (IHL * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(u8_at(self.b(), field::VER_IHL) & 0x0f) * 4
    }
    /// Type of service / DSCP+ECN byte.
    pub fn tos(&self) -> u8 {
        u8_at(self.b(), field::TOS)
    }
    /// Total length field (header plus payload).
    #[inline]
    pub fn total_len(&self) -> usize {
        usize::from(u16_at(self.b(), field::TOTAL_LEN))
    }
    /// Identification field.
    #[inline]
    pub fn ident(&self) -> u16 {
        u16_at(self.b(), field::IDENT)
    }
    /// The whole flags + fragment offset word.
    #[inline]
    pub fn flags_frag(&self) -> u16 {
        u16_at(self.b(), field::FLAGS_FRAG)
    }
    /// Don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.flags_frag() & FLAG_DF != 0
    }
    /// More-fragments flag.
    pub fn more_frags(&self) -> bool {
        self.flags_frag() & FLAG_MF != 0
    }
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(self.flags_frag() & FRAG_OFFSET_MASK) * 8
    }
    /// True if this is any fragment (first, middle or last).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_frag() & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }
    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        u8_at(self.b(), field::TTL)
    }
    /// Payload protocol number.
    #[inline]
    pub fn protocol(&self) -> u8 {
        u8_at(self.b(), field::PROTO)
    }
    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        u16_at(self.b(), field::CHECKSUM)
    }
    /// Source address, host order.
    #[inline]
    pub fn src(&self) -> u32 {
        u32_at(self.b(), field::SRC)
    }
    /// Destination address, host order.
    #[inline]
    pub fn dst(&self) -> u32 {
        u32_at(self.b(), field::DST)
    }
    /// The header bytes, options included.
    pub fn header(&self) -> &[u8] {
        self.b().get(..self.header_len()).unwrap_or(&[])
    }
    /// The payload: header end to total length (padding excluded).
    pub fn payload(&self) -> &[u8] {
        self.b().get(self.header_len()..self.total_len()).unwrap_or(&[])
    }
    /// True if the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.header())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }
    /// Sets the TTL (the checksum is the caller's to update).
    #[inline]
    pub fn set_ttl(&mut self, v: u8) {
        set_u8(self.bm(), field::TTL, v);
    }
    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.bm(), field::CHECKSUM, v);
    }
    /// Sets the source address.
    #[inline]
    pub fn set_src(&mut self, v: u32) {
        set_u32(self.bm(), field::SRC, v);
    }
    /// Sets the destination address.
    #[inline]
    pub fn set_dst(&mut self, v: u32) {
        set_u32(self.bm(), field::DST, v);
    }
    /// Recomputes the header checksum from scratch (builders, tests).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header());
        self.set_checksum(c);
    }
    /// Mutable payload (header end to total length).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.header_len(), self.total_len());
        self.bm().get_mut(h..t).unwrap_or(&mut [])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 20-byte header: UDP, 10.0.0.1 -> 10.0.0.2, total length 28, TTL 64, DF.
    fn sample() -> Vec<u8> {
        let mut b = vec![
            0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 10, 0, 0, 1, 10, 0, 0, 2, 0, 0, 0,
            0, 0, 0, 0, 0,
        ];
        let c = checksum::checksum(&b[..20]);
        b[10..12].copy_from_slice(&c.to_be_bytes());
        b
    }

    #[test]
    fn fields() {
        let b = sample();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 28);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), PROTO_UDP);
        assert_eq!(p.src(), 0x0a00_0001);
        assert_eq!(p.dst(), 0x0a00_0002);
        assert_eq!(p.payload().len(), 8);
        assert!(p.verify_checksum());
    }

    #[test]
    fn padding_is_not_payload() {
        let mut b = sample();
        b.extend_from_slice(&[0xee; 18]);
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload(), &[0u8; 8]);
    }

    #[test]
    fn options_and_fragments() {
        let mut b = sample();
        b[0] = 0x46; // IHL 6: one option word
        b[2..4].copy_from_slice(&28u16.to_be_bytes());
        b[6..8].copy_from_slice(&(FLAG_MF | 3).to_be_bytes());
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.payload().len(), 4);
        assert!(p.more_frags());
        assert_eq!(p.frag_offset(), 24);
        assert!(p.is_fragment());
    }

    #[test]
    fn rejects_bad_headers() {
        let b = sample();
        assert_eq!(Ipv4Packet::new_checked(&b[..19]).unwrap_err(), WireError::Truncated);
        let mut v6 = b.clone();
        v6[0] = 0x65;
        assert_eq!(Ipv4Packet::new_checked(&v6[..]).unwrap_err(), WireError::Malformed);
        let mut small_ihl = b.clone();
        small_ihl[0] = 0x44;
        assert_eq!(Ipv4Packet::new_checked(&small_ihl[..]).unwrap_err(), WireError::Malformed);
        let mut long = b.clone();
        long[2..4].copy_from_slice(&29u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&long[..]).unwrap_err(), WireError::Truncated);
        let mut short_total = b.clone();
        short_total[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&short_total[..]).unwrap_err(), WireError::Malformed);
        let mut ihl_past_total = b;
        ihl_past_total[0] = 0x48; // 32-byte header in a 28-byte packet
        assert_eq!(Ipv4Packet::new_checked(&ihl_past_total[..]).unwrap_err(), WireError::Malformed);
    }

    #[test]
    fn setters_and_checksum() {
        let mut b = sample();
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_src(0xc633_6401);
        p.set_dst(0x6440_0002);
        p.set_ttl(1);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.src(), 0xc633_6401);
        assert_eq!(p.ttl(), 1);
    }
}
