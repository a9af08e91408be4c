//! UDP headers (RFC 768).
//!
//! Invariant: after [`UdpPacket::new_checked`] the 8-byte header is in range.
//! The length field is not held against the buffer: the first fragment of a
//! fragmented datagram carries a length larger than itself. A checksum of 0
//! means the sender computed none (RFC 768); the engine keeps it 0.
#![forbid(unsafe_code)]

use super::bytes::{set_u16, u16_at};
use super::WireError;

/// Offset of the source port.
pub const SRC_PORT: usize = 0;
/// Offset of the destination port.
pub const DST_PORT: usize = 2;
/// Offset of the checksum field.
pub const CHECKSUM: usize = 6;
const LENGTH: usize = 4;
/// Length of the UDP header (RFC 768).
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram (or its first fragment).
#[derive(Debug, Clone, Copy)]
pub struct UdpPacket<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Checks the header is in range.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Self { buf })
    }
    /// Source port.
    pub fn src_port(&self) -> u16 {
        u16_at(self.buf.as_ref(), SRC_PORT)
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        u16_at(self.buf.as_ref(), DST_PORT)
    }
    /// Length field (header plus data of the whole datagram).
    pub fn length(&self) -> u16 {
        u16_at(self.buf.as_ref(), LENGTH)
    }
    /// Checksum field (0: none).
    pub fn checksum(&self) -> u16 {
        u16_at(self.buf.as_ref(), CHECKSUM)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), SRC_PORT, v);
    }
    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), DST_PORT, v);
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
    fn fields_and_setters() {
        let mut b = [0x04, 0x00, 0x13, 0x88, 0x00, 0x1a, 0x12, 0x34];
        let mut u = UdpPacket::new_checked(&mut b[..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port(), u.length(), u.checksum()), (1024, 5000, 26, 0x1234));
        u.set_src_port(7);
        u.set_dst_port(8);
        u.set_checksum(0);
        assert_eq!(b, [0, 7, 0, 8, 0, 0x1a, 0, 0]);
    }

    #[test]
    fn truncated() {
        assert_eq!(UdpPacket::new_checked(&[0u8; 7][..]).unwrap_err(), WireError::Truncated);
    }
}
