//! TCP headers (RFC 793 / RFC 9293 section 3.1): the fields NAT reads or rewrites.
//!
//! Invariant: after [`TcpPacket::new_checked`], 20 <= data offset * 4 <=
//! buffer length. The checksum covers a pseudo-header, so rewriting an
//! address changes it even though the address is not in this header.
#![forbid(unsafe_code)]

use super::bytes::{set_u16, u16_at, u32_at, u8_at};
use super::checksum::{apply_delta, delta16};
use super::WireError;

/// FIN flag.
pub const FIN: u8 = 0x01;
/// SYN flag.
pub const SYN: u8 = 0x02;
/// RST flag.
pub const RST: u8 = 0x04;
/// PSH flag.
pub const PSH: u8 = 0x08;
/// ACK flag.
pub const ACK: u8 = 0x10;

/// Offset of the source port (also the offset of the port pair).
pub const SRC_PORT: usize = 0;
/// Offset of the destination port.
pub const DST_PORT: usize = 2;
/// Offset of the checksum field.
pub const CHECKSUM: usize = 16;

/// Field offsets from the start of the TCP header (RFC 9293 section 3.1)
/// beyond the ports and checksum above.
#[allow(missing_docs)]
pub mod field {
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const MIN_LEN: usize = 20;
}

/// A view of a TCP segment.
#[derive(Debug, Clone, Copy)]
pub struct TcpPacket<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Validates the header length against the buffer.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < field::MIN_LEN {
            return Err(WireError::Truncated);
        }
        let hl = usize::from(u8_at(b, field::DATA_OFF) >> 4) * 4;
        if hl < field::MIN_LEN {
            return Err(WireError::Malformed);
        }
        if hl > b.len() {
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
    /// Sequence number.
    pub fn seq(&self) -> u32 {
        u32_at(self.buf.as_ref(), field::SEQ)
    }
    /// Acknowledgment number.
    pub fn ack(&self) -> u32 {
        u32_at(self.buf.as_ref(), field::ACK)
    }
    /// Header length in bytes.
    pub fn header_len(&self) -> usize {
        usize::from(u8_at(self.buf.as_ref(), field::DATA_OFF) >> 4) * 4
    }
    /// The flag byte (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR).
    pub fn flags(&self) -> u8 {
        u8_at(self.buf.as_ref(), field::FLAGS)
    }
    /// Receive window.
    pub fn window(&self) -> u16 {
        u16_at(self.buf.as_ref(), field::WINDOW)
    }
    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        u16_at(self.buf.as_ref(), CHECKSUM)
    }
    /// The window scale option's shift (RFC 7323 section 2.2), capped at
    /// 14 as section 2.3 asks; `None` if the options carry none, or are
    /// malformed before it. Meaningful on SYN segments only.
    pub fn window_scale(&self) -> Option<u8> {
        let b = self.buf.as_ref();
        let options = b.get(field::MIN_LEN..self.header_len().min(b.len()))?;
        let mut i = 0;
        while let Some(&kind) = options.get(i) {
            match kind {
                option::END => return None,
                option::NOP => i += 1,
                _ => {
                    let len = usize::from(*options.get(i + 1)?);
                    if len < 2 {
                        return None;
                    }
                    if kind == option::WINDOW_SCALE && len == 3 {
                        return options.get(i + 2).map(|&s| s.min(14));
                    }
                    i += len;
                }
            }
        }
        None
    }
    /// The MSS option's value, if the options carry one (RFC 9293 section 3.7.1).
    pub fn mss(&self) -> Option<u16> {
        let b = self.buf.as_ref();
        let (at, len) = find_option(b.get(field::MIN_LEN..self.header_len().min(b.len()))?, option::MSS)?;
        (len == 4).then(|| u16_at(b, field::MIN_LEN + at + 2))
    }
}

/// TCP option kinds (RFC 9293 section 3.2, RFC 7323).
pub mod option {
    /// End of the option list.
    pub const END: u8 = 0;
    /// No operation (padding).
    pub const NOP: u8 = 1;
    /// Maximum segment size: kind, length 4, a 16-bit size (RFC 9293 section 3.7.1).
    pub const MSS: u8 = 2;
    /// Window scale: kind, length 3, shift.
    pub const WINDOW_SCALE: u8 = 3;
    /// Selective acknowledgment blocks: kind, length 2 + 8n (RFC 2018).
    pub const SACK: u8 = 5;
}

/// Walks the option list of a TCP header (`options`: the bytes between the
/// fixed header and the data offset) and returns the offset (within
/// `options`) and length of the first option of `kind`, or `None` if there
/// is none or the list is malformed before it (a length below 2 or past the
/// end ends the walk).
pub fn find_option(options: &[u8], kind: u8) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(&k) = options.get(i) {
        match k {
            option::END => return None,
            option::NOP => i += 1,
            _ => {
                let len = usize::from(*options.get(i + 1)?);
                if len < 2 || i + len > options.len() {
                    return None;
                }
                if k == kind {
                    return Some((i, len));
                }
                i += len;
            }
        }
    }
    None
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
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

    /// Lowers the MSS option to `max` if it carries a larger one, as
    /// netfilter's TCPMSS target does (`--set-mss` never raises an MSS;
    /// a segment without the option is left alone), and updates the
    /// checksum incrementally (RFC 1624). Returns the old and new MSS
    /// when it changed something.
    pub fn clamp_mss(&mut self, max: u16) -> Option<(u16, u16)> {
        let hl = self.header_len();
        let b = self.buf.as_mut();
        let (at, len) = find_option(b.get(field::MIN_LEN..hl)?, option::MSS)?;
        if len != 4 {
            return None;
        }
        // The value sits 2 bytes into the option, at an even or odd offset
        // from the header's start.
        let off = field::MIN_LEN + at + 2;
        let old = u16_at(b, off);
        if old <= max {
            return None;
        }
        set_u16(b, off, max);
        // A 16-bit value at an odd offset adds to the sum byte-swapped
        // (RFC 1071 section 2(B)).
        let d = if off.is_multiple_of(2) { delta16(old, max) } else { delta16(old.swap_bytes(), max.swap_bytes()) };
        let c = u16_at(b, CHECKSUM);
        set_u16(b, CHECKSUM, apply_delta(c, d));
        Some((old, max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SYN 40000 -> 80, seq 1, data offset 5, window 65535.
    const SYN_SEG: [u8; 20] =
        [0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0xab, 0xcd, 0, 0];

    #[test]
    fn fields() {
        let t = TcpPacket::new_checked(&SYN_SEG[..]).unwrap();
        assert_eq!(t.src_port(), 40000);
        assert_eq!(t.dst_port(), 80);
        assert_eq!(t.seq(), 1);
        assert_eq!(t.ack(), 0);
        assert_eq!(t.header_len(), 20);
        assert_eq!(t.flags(), SYN);
        assert_eq!(t.window(), 0xffff);
        assert_eq!(t.checksum(), 0xabcd);
    }

    #[test]
    fn window_scale_is_found_among_other_options_and_capped() {
        // MSS 1460, NOP, window scale 7, then SACK-permitted: Linux's SYN shape.
        let mut seg = SYN_SEG.to_vec();
        seg[12] = 0x80; // 32-byte header
        seg.extend_from_slice(&[2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2, 0, 0]);
        assert_eq!(TcpPacket::new_checked(&seg[..]).unwrap().window_scale(), Some(7));
        seg[27] = 20;
        assert_eq!(TcpPacket::new_checked(&seg[..]).unwrap().window_scale(), Some(14), "RFC 7323 2.3: at most 14");
        assert_eq!(TcpPacket::new_checked(&SYN_SEG[..]).unwrap().window_scale(), None, "no options");
        // An option of length 0 or 1 ends the walk (no endless loop).
        let mut bad = seg.clone();
        bad[21] = 0;
        assert_eq!(TcpPacket::new_checked(&bad[..]).unwrap().window_scale(), None);
        // End of list before it.
        let mut end = seg;
        end[20] = option::END;
        assert_eq!(TcpPacket::new_checked(&end[..]).unwrap().window_scale(), None);
    }

    /// A segment whose checksum covers just itself (no pseudo-header: the
    /// incremental update does not care what else the sum covers).
    fn with_options(opts: &[u8]) -> Vec<u8> {
        let mut seg = SYN_SEG.to_vec();
        seg[12] = u8::try_from((20 + opts.len()) / 4).unwrap() << 4;
        seg.extend_from_slice(opts);
        seg[16] = 0;
        seg[17] = 0;
        let c = super::super::checksum::checksum(&seg);
        seg[16..18].copy_from_slice(&c.to_be_bytes());
        seg
    }

    #[test]
    fn clamp_lowers_a_larger_mss_only_and_keeps_the_checksum_valid() {
        use super::super::checksum::verify;
        // Even offset (MSS first), then odd (after one NOP), as Linux and others lay them out.
        for opts in [&[2u8, 4, 0x05, 0xb4, 1, 3, 3, 7][..], &[1, 2, 4, 0x05, 0xb4, 1, 1, 1][..]] {
            let mut seg = with_options(opts);
            let mut t = TcpPacket::new_checked(&mut seg[..]).unwrap();
            assert_eq!(t.mss(), Some(1460));
            assert_eq!(t.clamp_mss(1400), Some((1460, 1400)));
            assert_eq!(t.mss(), Some(1400));
            assert_eq!(t.clamp_mss(1452), None, "never raised");
            assert!(verify(&seg), "checksum after clamping at option offset {opts:?}");
        }
        // No MSS option: nothing to do.
        let mut seg = with_options(&[1, 3, 3, 7]);
        assert_eq!(TcpPacket::new_checked(&mut seg[..]).unwrap().clamp_mss(536), None);
        // A truncated option list is not walked past its end.
        let mut seg = with_options(&[1, 1, 2, 9]);
        assert_eq!(TcpPacket::new_checked(&mut seg[..]).unwrap().clamp_mss(536), None);
    }

    #[test]
    fn rejects() {
        assert_eq!(TcpPacket::new_checked(&SYN_SEG[..19]).unwrap_err(), WireError::Truncated);
        let mut b = SYN_SEG;
        b[12] = 0x40;
        assert_eq!(TcpPacket::new_checked(&b[..]).unwrap_err(), WireError::Malformed);
        b[12] = 0x60; // 24-byte header in 20 bytes
        assert_eq!(TcpPacket::new_checked(&b[..]).unwrap_err(), WireError::Truncated);
    }

    #[test]
    fn setters() {
        let mut b = SYN_SEG;
        let mut t = TcpPacket::new_checked(&mut b[..]).unwrap();
        t.set_src_port(1024);
        t.set_dst_port(443);
        t.set_checksum(1);
        assert_eq!((t.src_port(), t.dst_port(), t.checksum()), (1024, 443, 1));
    }
}
