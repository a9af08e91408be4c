//! ICMP messages (RFC 792): echo and the errors NAT translates (RFC 5508).
//!
//! Invariant: after [`IcmpPacket::new_checked`] the 8-byte header is in range.
//! For errors, [`IcmpPacket::embedded`] is the rest of the message: the IP
//! header and at least the first 8 bytes of the datagram that caused it, as
//! RFC 792 promises, but validated separately by whoever parses it.
#![forbid(unsafe_code)]

use super::bytes::{set_u16, u16_at, u8_at};
use super::WireError;

/// Echo reply.
pub const ECHO_REPLY: u8 = 0;
/// Destination unreachable.
pub const DEST_UNREACHABLE: u8 = 3;
/// Source quench (deprecated, RFC 6633; still translated).
pub const SOURCE_QUENCH: u8 = 4;
/// Echo request.
pub const ECHO_REQUEST: u8 = 8;
/// Time exceeded.
pub const TIME_EXCEEDED: u8 = 11;
/// Parameter problem.
pub const PARAMETER_PROBLEM: u8 = 12;
/// Destination unreachable code: fragmentation needed and DF set.
pub const CODE_FRAG_NEEDED: u8 = 4;
/// Destination unreachable code: communication administratively prohibited.
pub const CODE_ADMIN_PROHIBITED: u8 = 13;

/// Offset of the checksum field.
pub const CHECKSUM: usize = 2;
/// Offset of the echo identifier (the "port" of ICMP echo).
pub const IDENT: usize = 4;
const SEQ: usize = 6;
/// Offset of the next-hop MTU in a "fragmentation needed" error (RFC 1191 section 4).
pub const NEXT_HOP_MTU: usize = 6;
/// Length of the ICMP header; the embedded datagram of an error starts here.
pub const HEADER_LEN: usize = 8;

/// What an ICMP message is to the NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpKind {
    /// Echo request or reply: translated by identifier.
    Query,
    /// An error carrying the header of the datagram that caused it.
    Error,
    /// Anything else (timestamps, router advertisements...).
    Other,
}

/// Classifies an ICMP type.
pub fn kind_of(ty: u8) -> IcmpKind {
    match ty {
        ECHO_REQUEST | ECHO_REPLY => IcmpKind::Query,
        DEST_UNREACHABLE | SOURCE_QUENCH | TIME_EXCEEDED | PARAMETER_PROBLEM => IcmpKind::Error,
        _ => IcmpKind::Other,
    }
}

/// A view of an ICMP message.
#[derive(Debug, Clone, Copy)]
pub struct IcmpPacket<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Checks the header is in range.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Self { buf })
    }
    /// Message type.
    pub fn msg_type(&self) -> u8 {
        u8_at(self.buf.as_ref(), 0)
    }
    /// Message code.
    pub fn code(&self) -> u8 {
        u8_at(self.buf.as_ref(), 1)
    }
    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        u16_at(self.buf.as_ref(), CHECKSUM)
    }
    /// Echo identifier.
    pub fn ident(&self) -> u16 {
        u16_at(self.buf.as_ref(), IDENT)
    }
    /// Echo sequence number.
    pub fn seq(&self) -> u16 {
        u16_at(self.buf.as_ref(), SEQ)
    }
    /// The part after the header: echo data, or an error's embedded datagram.
    pub fn embedded(&self) -> &[u8] {
        self.buf.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    /// Sets the echo identifier.
    pub fn set_ident(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), IDENT, v);
    }
    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), CHECKSUM, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_fields() {
        let b = [8u8, 0, 0xf7, 0xfe, 0x00, 0x01, 0x00, 0x02, 0xaa];
        let p = IcmpPacket::new_checked(&b[..]).unwrap();
        assert_eq!((p.msg_type(), p.code(), p.checksum(), p.ident(), p.seq()), (8, 0, 0xf7fe, 1, 2));
        assert_eq!(kind_of(p.msg_type()), IcmpKind::Query);
        assert_eq!(p.embedded(), &[0xaa]);
    }

    #[test]
    fn kinds() {
        assert_eq!(kind_of(ECHO_REPLY), IcmpKind::Query);
        for t in [DEST_UNREACHABLE, SOURCE_QUENCH, TIME_EXCEEDED, PARAMETER_PROBLEM] {
            assert_eq!(kind_of(t), IcmpKind::Error);
        }
        assert_eq!(kind_of(13), IcmpKind::Other);
    }

    #[test]
    fn truncated_and_setters() {
        assert_eq!(IcmpPacket::new_checked(&[0u8; 7][..]).unwrap_err(), WireError::Truncated);
        let mut b = [0u8; 8];
        let mut p = IcmpPacket::new_checked(&mut b[..]).unwrap();
        p.set_ident(0x1234);
        p.set_checksum(0xbeef);
        assert_eq!(b, [0, 0, 0xbe, 0xef, 0x12, 0x34, 0, 0]);
    }
}
