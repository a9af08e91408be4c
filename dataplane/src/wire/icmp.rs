//! ICMP messages (RFC 792): echo and the errors NAT translates (RFC 5508),
//! and the one error masq writes itself, destination unreachable to a
//! subscriber refused a port or a session (RFC 6888 REQ-11b,
//! [`write_unreachable`]).
//!
//! Invariants: after [`IcmpPacket::new_checked`] the 8-byte header is in
//! range. For errors, [`IcmpPacket::embedded`] is the rest of the message:
//! the IP header and at least the first 8 bytes of the datagram that caused
//! it, as RFC 792 promises, but validated separately by whoever parses it.
//! An error written here quotes the original IP header and as much of its
//! datagram as fits in 576 bytes (RFC 1812 section 4.3.2.3), never less than
//! its first 8 bytes if it has them (RFC 792), and is never written about a
//! datagram RFC 1812 section 4.3.2.7 (RFC 1122 section 3.2.2) forbids
//! answering ([`may_answer`]).
#![forbid(unsafe_code)]

use super::bytes::{set_u16, set_u32, set_u8, u16_at, u8_at};
use super::ethernet::{self, EthernetFrame, ETHERTYPE_IPV4};
use super::ipv4::{self, Ipv4Packet, FLAG_DF, PROTO_ICMP};
use super::{checksum, WireError};

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
/// Destination unreachable code: host unreachable (what a CGN answers when it
/// cannot make a mapping, RFC 6888 REQ-11b).
pub const CODE_HOST_UNREACHABLE: u8 = 1;
/// Destination unreachable code: fragmentation needed and DF set.
pub const CODE_FRAG_NEEDED: u8 = 4;
/// Destination unreachable code: communication administratively prohibited.
pub const CODE_ADMIN_PROHIBITED: u8 = 13;

/// Offset of the message type.
pub const MSG_TYPE: usize = 0;
/// Offset of the message code.
pub const CODE: usize = 1;
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
        u8_at(self.buf.as_ref(), MSG_TYPE)
    }
    /// Message code.
    pub fn code(&self) -> u8 {
        u8_at(self.buf.as_ref(), CODE)
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

/// Largest IP datagram an ICMP error written here makes (RFC 1812 section
/// 4.3.2.3: as much of the original as fits in 576 bytes).
pub const MAX_ERROR_LEN: usize = 576;

/// The ECN bits of the IPv4 TOS byte (RFC 3168): not copied into an error.
const ECN_MASK: u8 = 0x03;

/// TTL of an error written here.
const ERROR_TTL: u8 = 64;

/// True if `a` names a single host as a source (RFC 1122 section 3.2.1.3):
/// not in 0/8 ("this network"), 127/8 (loopback), 224/4 (multicast) or
/// 240/4 (reserved, with the limited broadcast).
fn single_host(a: u32) -> bool {
    !matches!(a >> 24, 0 | 127 | 224..=255)
}

/// Whether an ICMP error may be sent about the IPv4 packet `original`
/// (RFC 1812 section 4.3.2.7, RFC 1122 section 3.2.2): not about an ICMP
/// error (only ICMP echo is answered: an unknown type might be an error),
/// nor about a fragment other than the first, nor to a source that is not
/// a single host, nor about a datagram sent to a multicast or broadcast
/// address. A buffer that is not a whole IPv4 packet is not answered either.
pub fn may_answer(original: &[u8]) -> bool {
    let Ok(ip) = Ipv4Packet::new_checked(original) else { return false };
    if ip.frag_offset() != 0 || !single_host(ip.src()) || ip.dst() >> 28 >= 0xe {
        return false;
    }
    ip.protocol() != PROTO_ICMP || ip.payload().first().is_some_and(|&ty| kind_of(ty) == IcmpKind::Query)
}

/// [`may_answer`] for a whole Ethernet frame: also not about a frame sent
/// to a link-layer group address (RFC 1122 section 3.2.2), nor about one
/// that does not carry IPv4.
pub fn may_answer_frame(original: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(original) else { return false };
    !eth.is_group_dst() && eth.ethertype() == ETHERTYPE_IPV4 && original.get(eth.header_len()..).is_some_and(may_answer)
}

/// Writes into `out` an IPv4 datagram carrying an ICMP destination
/// unreachable with `code` about `original` (an IPv4 packet as it was
/// received), from `src` to the original's source: TTL 64, Don't Fragment,
/// the original's TOS without its ECN bits (RFC 1812 section 4.3.2.5),
/// quoting the original's header and as much of its datagram as fits in
/// [`MAX_ERROR_LEN`] bytes, both checksums computed. Returns its length;
/// `None` (and `out` unspecified) if [`may_answer`] refuses `original` or
/// `out` is too short.
pub fn write_unreachable(original: &[u8], src: u32, code: u8, out: &mut [u8]) -> Option<usize> {
    write_unreachable_mtu(original, src, code, 0, out)
}

/// [`write_unreachable`] with the next-hop MTU field set (RFC 1191 section
/// 4: "fragmentation needed and DF set", code [`CODE_FRAG_NEEDED`]).
pub fn write_unreachable_mtu(original: &[u8], src: u32, code: u8, mtu: u16, out: &mut [u8]) -> Option<usize> {
    if !may_answer(original) {
        return None;
    }
    let ip = Ipv4Packet::new_checked(original).ok()?;
    let quoted = ip.total_len().min(MAX_ERROR_LEN - ipv4::field::MIN_LEN - HEADER_LEN);
    let total = ipv4::field::MIN_LEN + HEADER_LEN + quoted;
    let datagram = out.get_mut(..total)?;
    datagram.fill(0);
    let (header, message) = datagram.split_at_mut_checked(ipv4::field::MIN_LEN)?;
    set_u8(header, ipv4::field::VER_IHL, 0x45);
    set_u8(header, ipv4::field::TOS, ip.tos() & !ECN_MASK);
    set_u16(header, ipv4::field::TOTAL_LEN, u16::try_from(total).ok()?);
    set_u16(header, ipv4::field::FLAGS_FRAG, FLAG_DF);
    set_u8(header, ipv4::field::TTL, ERROR_TTL);
    set_u8(header, ipv4::field::PROTO, PROTO_ICMP);
    set_u32(header, ipv4::field::SRC, src);
    set_u32(header, ipv4::field::DST, ip.src());
    set_u16(header, ipv4::field::CHECKSUM, checksum::checksum(header));
    set_u8(message, MSG_TYPE, DEST_UNREACHABLE);
    set_u8(message, CODE, code);
    set_u16(message, NEXT_HOP_MTU, mtu);
    message.get_mut(HEADER_LEN..)?.copy_from_slice(original.get(..quoted)?);
    set_u16(message, CHECKSUM, checksum::checksum(message));
    Some(total)
}

/// [`write_unreachable`] for whole Ethernet frames: `out` gets the
/// original's Ethernet header (its VLAN tag included; the caller writes the
/// MAC addresses of the next hop) and the error after it. Returns the
/// frame's length, or `None` if [`may_answer_frame`] refuses `original` or
/// `out` is too short.
pub fn write_unreachable_frame(original: &[u8], src: u32, code: u8, out: &mut [u8]) -> Option<usize> {
    write_unreachable_frame_mtu(original, src, code, 0, out)
}

/// [`write_unreachable_frame`] with the next-hop MTU field set.
pub fn write_unreachable_frame_mtu(original: &[u8], src: u32, code: u8, mtu: u16, out: &mut [u8]) -> Option<usize> {
    if !may_answer_frame(original) {
        return None;
    }
    let l2 = ethernet::header_len_of(original);
    let (l2_out, ip_out) = out.split_at_mut_checked(l2)?;
    l2_out.copy_from_slice(original.get(..l2)?);
    let n = write_unreachable_mtu(original.get(l2..)?, src, code, mtu, ip_out)?;
    Some(l2 + n)
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

    mod unreachable {
        use super::super::*;
        use crate::testing::frames::{checksums_ok, frame_frag, icmp_echo, icmp_error, ip, tcp, udp, MAC_A, MAC_B};
        use crate::wire::ipv4::FLAG_MF;

        const BOX: &str = "100.64.0.1";
        const L3: usize = ethernet::field::HEADER_LEN;

        fn answer(original: &[u8]) -> Option<Vec<u8>> {
            let mut out = vec![0xaa; 2048];
            let n = write_unreachable_frame(original, ip(BOX), CODE_HOST_UNREACHABLE, &mut out)?;
            out.truncate(n);
            Some(out)
        }

        #[test]
        fn a_host_unreachable_goes_back_to_the_source_quoting_its_packet() {
            let orig = udp(ip("100.64.1.2"), 5000, ip("198.51.100.1"), 53, b"question");
            let out = answer(&orig).expect("answered");
            assert_eq!(&out[..L3], &orig[..L3], "the Ethernet header is the original's (the worker writes MACs)");
            let ip4 = Ipv4Packet::new_checked(&out[L3..]).unwrap();
            assert_eq!((ip4.header_len(), ip4.ttl(), ip4.protocol()), (20, 64, PROTO_ICMP));
            assert_eq!((ip4.src(), ip4.dst()), (ip(BOX), ip("100.64.1.2")));
            assert!(ip4.dont_frag() && !ip4.is_fragment());
            assert_eq!(ip4.total_len(), out.len() - L3);
            let icmp = IcmpPacket::new_checked(ip4.payload()).unwrap();
            assert_eq!((icmp.msg_type(), icmp.code()), (DEST_UNREACHABLE, CODE_HOST_UNREACHABLE));
            assert_eq!(u32::from_be_bytes(ip4.payload()[4..8].try_into().unwrap()), 0, "unused word");
            assert_eq!(icmp.embedded(), &orig[L3..], "a small packet is quoted whole");
            assert!(checksums_ok(&out), "IP and ICMP checksums");
        }

        #[test]
        fn the_quote_stops_at_576_bytes_and_keeps_at_least_8_bytes_of_payload() {
            let big = udp(ip("100.64.1.2"), 5000, ip("198.51.100.1"), 53, &[7u8; 1400]);
            let out = answer(&big).expect("answered");
            assert_eq!(out.len() - L3, MAX_ERROR_LEN);
            let ip4 = Ipv4Packet::new_checked(&out[L3..]).unwrap();
            let quoted = IcmpPacket::new_checked(ip4.payload()).unwrap().embedded().to_vec();
            assert_eq!(quoted, &big[L3..L3 + MAX_ERROR_LEN - 28]);
            assert!(checksums_ok(&out));
            // RFC 792's minimum: the header and the first 8 bytes (here the UDP header).
            let empty = udp(ip("100.64.1.2"), 5000, ip("198.51.100.1"), 53, b"");
            let out = answer(&empty).expect("answered");
            assert_eq!(out.len() - L3, 20 + 8 + 20 + 8);
        }

        #[test]
        fn tos_is_kept_without_ecn_and_a_vlan_tag_is_kept() {
            let mut orig = tcp(ip("100.64.1.2"), 5000, ip("198.51.100.1"), 80, crate::wire::tcp::SYN);
            orig[L3 + ipv4::field::TOS] = 0xb9; // DSCP 46 (EF), ECN CE
            let out = answer(&orig).expect("answered");
            assert_eq!(out[L3 + ipv4::field::TOS], 0xb8);
            let mut tagged = orig[..12].to_vec();
            tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
            tagged.extend_from_slice(&orig[12..]);
            let out = answer(&tagged).expect("answered");
            assert_eq!(&out[..18], &tagged[..18]);
            let ip4 = Ipv4Packet::new_checked(&out[18..]).unwrap();
            assert_eq!(ip4.dst(), ip("100.64.1.2"));
            assert!(ip4.verify_checksum());
        }

        #[test]
        fn echo_is_answered_never_an_icmp_error() {
            let ping = icmp_echo(ip("100.64.1.2"), ip("198.51.100.1"), 7, 1, true);
            assert!(answer(&ping).is_some());
            let quoted = udp(ip("198.51.100.1"), 53, ip("100.64.1.2"), 5000, b"");
            for (ty, code) in [(DEST_UNREACHABLE, 3), (TIME_EXCEEDED, 0), (PARAMETER_PROBLEM, 0), (5, 0)] {
                let err = icmp_error(ip("100.64.1.2"), ip("198.51.100.1"), ty, code, &quoted, 8);
                assert!(answer(&err).is_none(), "ICMP type {ty}");
            }
            // An ICMP packet too short to have a type is not answered either.
            let bare = crate::testing::frames::frame(ip("100.64.1.2"), ip("198.51.100.1"), PROTO_ICMP, &[], 64);
            assert!(answer(&bare).is_none());
        }

        #[test]
        fn only_a_first_fragment_is_answered() {
            let l4 = [0u8; 16];
            let first = frame_frag(ip("100.64.1.2"), ip("198.51.100.1"), 17, &l4, 64, 9, FLAG_MF);
            assert!(answer(&first).is_some());
            let later = frame_frag(ip("100.64.1.2"), ip("198.51.100.1"), 17, &l4, 64, 9, FLAG_MF | 3);
            assert!(answer(&later).is_none());
            let last = frame_frag(ip("100.64.1.2"), ip("198.51.100.1"), 17, &l4, 64, 9, 3);
            assert!(answer(&last).is_none());
        }

        #[test]
        fn no_answer_to_a_source_that_is_not_one_host_or_to_a_group_destination() {
            for src in ["0.0.0.0", "0.1.2.3", "127.0.0.1", "224.0.0.1", "239.1.1.1", "240.0.0.1", "255.255.255.255"] {
                assert!(answer(&udp(ip(src), 68, ip("198.51.100.1"), 67, b"")).is_none(), "from {src}");
            }
            for dst in ["224.0.0.251", "255.255.255.255", "240.0.0.1"] {
                assert!(answer(&udp(ip("100.64.1.2"), 68, ip(dst), 67, b"")).is_none(), "to {dst}");
            }
            let mut bcast = udp(ip("100.64.1.2"), 68, ip("198.51.100.1"), 67, b"");
            bcast[..6].copy_from_slice(&[0xff; 6]);
            assert!(answer(&bcast).is_none(), "link-layer broadcast");
            let mut mcast = udp(ip("100.64.1.2"), 68, ip("198.51.100.1"), 67, b"");
            mcast[..6].copy_from_slice(&[0x01, 0x00, 0x5e, 0, 0, 1]);
            assert!(answer(&mcast).is_none(), "link-layer multicast");
            assert_eq!((MAC_A[0] & 1, MAC_B[0] & 1), (0, 0), "the test frames' own MACs are unicast");
        }

        #[test]
        fn a_bad_original_or_a_short_buffer_gets_nothing() {
            let orig = udp(ip("100.64.1.2"), 5000, ip("198.51.100.1"), 53, b"question");
            let mut out = [0u8; 14 + 20 + 8 + 20 + 8 + 8 - 1];
            assert_eq!(write_unreachable_frame(&orig, ip(BOX), 1, &mut out), None, "one byte short");
            let mut out = [0u8; 14 + 20 + 8 + 20 + 8 + 8];
            assert_eq!(write_unreachable_frame(&orig, ip(BOX), 1, &mut out), Some(out.len()));
            assert!(answer(&orig[..orig.len() - 1]).is_none(), "truncated: total length past the buffer");
            let mut arp = orig.clone();
            arp[12..14].copy_from_slice(&[0x08, 0x06]);
            assert!(answer(&arp).is_none(), "not IPv4");
            assert!(answer(&orig[..10]).is_none());
            let mut bad_ihl = orig.clone();
            bad_ihl[L3] = 0x44;
            assert!(answer(&bad_ihl).is_none());
            let mut ip_out = [0u8; 28];
            assert_eq!(write_unreachable(&orig[L3..], ip(BOX), 1, &mut ip_out), None);
        }
    }
}
