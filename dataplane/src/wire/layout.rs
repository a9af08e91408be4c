//! Offsets composed across layers for the common frame layout: untagged
//! Ethernet, IPv4 without options, then TCP, UDP or ICMP. The engine's fast
//! lane reads and writes frames of this layout through fixed-size arrays at
//! these offsets; every one is the sum of a field of [`super::ethernet`],
//! [`super::ipv4`] and the L4 header's table, so there is one source of
//! truth per field.
#![forbid(unsafe_code)]

use super::{ethernet, icmp, ipv4, tcp, udp};

/// Start of the IPv4 header.
pub const L3: usize = ethernet::field::HEADER_LEN;
/// Start of the L4 header (IPv4 without options).
pub const L4: usize = L3 + ipv4::field::MIN_LEN;
/// The Ethernet destination (its first byte's low bit: group address).
pub const ETH_DST: usize = ethernet::field::DST;
/// The ethertype.
pub const ETHERTYPE: usize = ethernet::field::TYPE;
/// IPv4 version and header length.
pub const VER_IHL: usize = L3 + ipv4::field::VER_IHL;
/// IPv4 total length.
pub const TOTAL_LEN: usize = L3 + ipv4::field::TOTAL_LEN;
/// IPv4 flags and fragment offset.
pub const FLAGS_FRAG: usize = L3 + ipv4::field::FLAGS_FRAG;
/// IPv4 time to live.
pub const TTL: usize = L3 + ipv4::field::TTL;
/// IPv4 protocol.
pub const PROTO: usize = L3 + ipv4::field::PROTO;
/// IPv4 header checksum.
pub const IP_CHECKSUM: usize = L3 + ipv4::field::CHECKSUM;
/// IPv4 source address (the address pair runs from here for 8 bytes).
pub const SRC: usize = L3 + ipv4::field::SRC;
/// IPv4 destination address.
pub const DST: usize = L3 + ipv4::field::DST;
/// Source port (TCP and UDP alike; the port pair runs from here for 4 bytes).
pub const SRC_PORT: usize = L4 + udp::SRC_PORT;
/// Destination port.
pub const DST_PORT: usize = L4 + udp::DST_PORT;
/// UDP checksum.
pub const UDP_CHECKSUM: usize = L4 + udp::CHECKSUM;
/// TCP checksum.
pub const TCP_CHECKSUM: usize = L4 + tcp::CHECKSUM;
/// TCP data offset.
pub const TCP_DATA_OFF: usize = L4 + tcp::field::DATA_OFF;
/// TCP flags.
pub const TCP_FLAGS: usize = L4 + tcp::field::FLAGS;
/// The TCP sequence number.
pub const TCP_SEQ: usize = L4 + tcp::field::SEQ;
/// ICMP identifier (echo).
pub const ICMP_IDENT: usize = L4 + icmp::IDENT;
/// End of a UDP header: the bytes a UDP rewrite touches.
pub const UDP_END: usize = L4 + udp::HEADER_LEN;
/// End of a TCP header without options: the bytes a TCP rewrite touches.
pub const TCP_END: usize = L4 + tcp::field::MIN_LEN;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_those_of_an_untagged_ipv4_frame_without_options() {
        // The numbers RFC 791 and RFC 768/9293 give, counted from the frame start.
        assert_eq!((L3, L4, TTL, PROTO, IP_CHECKSUM, SRC, DST), (14, 34, 22, 23, 24, 26, 30));
        assert_eq!((SRC_PORT, DST_PORT, UDP_CHECKSUM, TCP_CHECKSUM), (34, 36, 40, 50));
        assert_eq!((TCP_DATA_OFF, TCP_FLAGS, UDP_END, TCP_END, ICMP_IDENT), (46, 47, 42, 54, 38));
    }
}
