//! Ethernet II frames with at most one IEEE 802.1Q tag.
//!
//! Invariant: after [`EthernetFrame::new_checked`] the header (14 bytes, 18
//! with a tag) lies inside the buffer. Stacked tags (QinQ, 0x88A8) are not
//! parsed: [`EthernetFrame::ethertype`] reports the outer type and the engine
//! passes such frames to the kernel.
#![forbid(unsafe_code)]

use super::bytes::{u16_at, u8_at};
use super::WireError;

/// IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// IEEE 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// Field offsets from the start of the Ethernet frame (IEEE 802.3, 802.1Q).
#[allow(missing_docs)]
pub mod field {
    pub const DST: usize = 0;
    pub const SRC: usize = 6;
    pub const TYPE: usize = 12;
    pub const TCI: usize = 14;
    pub const INNER_TYPE: usize = 16;
    pub const HEADER_LEN: usize = 14;
    pub const TAGGED_LEN: usize = 18;
}

/// The Ethernet header's length (the offset of its payload) as the
/// ethertype says: with one 802.1Q tag or without. A frame too short to
/// carry an ethertype counts as untagged; callers check its length.
#[inline]
pub fn header_len_of(frame: &[u8]) -> usize {
    if u16_at(frame, field::TYPE) == ETHERTYPE_VLAN {
        field::TAGGED_LEN
    } else {
        field::HEADER_LEN
    }
}

/// A view of an Ethernet frame.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T> {
    buf: T,
    header_len: usize,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Checks the buffer holds the whole header (with its tag, if any).
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < field::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = header_len_of(b);
        if b.len() < header_len {
            return Err(WireError::Truncated);
        }
        Ok(Self { buf, header_len })
    }

    /// Destination MAC address.
    pub fn dst(&self) -> [u8; 6] {
        mac_at(self.buf.as_ref(), field::DST)
    }

    /// Source MAC address.
    pub fn src(&self) -> [u8; 6] {
        mac_at(self.buf.as_ref(), field::SRC)
    }

    /// The 802.1Q VLAN id, if the frame is tagged.
    pub fn vlan(&self) -> Option<u16> {
        (self.header_len == field::TAGGED_LEN).then(|| u16_at(self.buf.as_ref(), field::TCI) & 0x0fff)
    }

    /// The ethertype of the payload (inside the tag, if any).
    pub fn ethertype(&self) -> u16 {
        if self.header_len == field::TAGGED_LEN {
            u16_at(self.buf.as_ref(), field::INNER_TYPE)
        } else {
            u16_at(self.buf.as_ref(), field::TYPE)
        }
    }

    /// Length of the Ethernet header, i.e. the offset of the payload.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// True for group (multicast or broadcast) destinations.
    pub fn is_group_dst(&self) -> bool {
        u8_at(self.buf.as_ref(), field::DST) & 1 == 1
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets both MAC addresses (the I/O layer does this when it transmits).
    pub fn set_macs(&mut self, dst: [u8; 6], src: [u8; 6]) {
        if let Some(s) = self.buf.as_mut().get_mut(field::DST..field::SRC + 6) {
            let (d, sr) = s.split_at_mut(6);
            d.copy_from_slice(&dst);
            sr.copy_from_slice(&src);
        }
    }
}

fn mac_at(b: &[u8], off: usize) -> [u8; 6] {
    let mut m = [0u8; 6];
    if let Some(s) = b.get(off..off + 6) {
        m.copy_from_slice(s);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNTAGGED: [u8; 14] = [0x02, 0, 0, 0, 1, 1, 0x02, 0, 0, 0, 1, 2, 0x08, 0x00];

    #[test]
    fn untagged_fields() {
        let f = EthernetFrame::new_checked(&UNTAGGED[..]).unwrap();
        assert_eq!(f.dst(), [2, 0, 0, 0, 1, 1]);
        assert_eq!(f.src(), [2, 0, 0, 0, 1, 2]);
        assert_eq!(f.ethertype(), ETHERTYPE_IPV4);
        assert_eq!(f.header_len(), 14);
        assert_eq!(f.vlan(), None);
        assert!(!f.is_group_dst());
    }

    #[test]
    fn tagged_fields() {
        let mut b = UNTAGGED[..12].to_vec();
        b.extend_from_slice(&[0x81, 0x00, 0x20, 0x64, 0x08, 0x06]);
        let f = EthernetFrame::new_checked(&b[..]).unwrap();
        assert_eq!(f.vlan(), Some(100));
        assert_eq!(f.ethertype(), ETHERTYPE_ARP);
        assert_eq!(f.header_len(), 18);
    }

    #[test]
    fn truncated() {
        assert_eq!(EthernetFrame::new_checked(&UNTAGGED[..13]).unwrap_err(), WireError::Truncated);
        let mut b = UNTAGGED[..12].to_vec();
        b.extend_from_slice(&[0x81, 0x00, 0x00]);
        assert_eq!(EthernetFrame::new_checked(&b[..]).unwrap_err(), WireError::Truncated);
    }

    #[test]
    fn broadcast_is_group() {
        let mut b = UNTAGGED;
        b[..6].copy_from_slice(&[0xff; 6]);
        assert!(EthernetFrame::new_checked(&b[..]).unwrap().is_group_dst());
    }

    #[test]
    fn set_macs_rewrites() {
        let mut b = UNTAGGED;
        let mut f = EthernetFrame::new_checked(&mut b[..]).unwrap();
        f.set_macs([9; 6], [8; 6]);
        assert_eq!(f.dst(), [9; 6]);
        assert_eq!(f.src(), [8; 6]);
    }
}
