//! Frame builders and checkers for tests, benchmarks and fuzz seeds.
//! Not used on the forwarding path (they allocate).
#![forbid(unsafe_code)]
// Test frames are small: their lengths fit the u16 fields by construction.
#![allow(clippy::cast_possible_truncation)]
// Test frames are built to size; a bad index is a bad test.
#![allow(clippy::indexing_slicing)]

use crate::wire::bytes::{set_u16, u16_at, u32_at, u8_at};
use crate::wire::checksum::{checksum, fold, pseudo_header_sum, sum};
use crate::wire::ipv4::{self, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::wire::{ethernet, icmp, tcp, udp};

/// Inside-facing MAC of the lab's NAT box.
pub const MAC_A: [u8; 6] = [2, 0, 0, 0, 1, 1];
/// A host's MAC.
pub const MAC_B: [u8; 6] = [2, 0, 0, 0, 1, 2];

/// Parses a dotted quad into a host-order address.
///
/// # Panics
/// On anything but a dotted quad: a typo in a test fails the test instead
/// of quietly becoming 0.0.0.0.
pub fn ip(s: &str) -> u32 {
    match s.parse::<std::net::Ipv4Addr>() {
        Ok(a) => u32::from(a),
        Err(e) => panic!("not a dotted quad: {s:?} ({e})"),
    }
}

/// The IPv4 header length from its IHL.
fn header_len(ip: &[u8]) -> usize {
    usize::from(u8_at(ip, ipv4::field::VER_IHL) & 0x0f) * 4
}

fn ipv4_header(src: u32, dst: u32, proto: u8, payload_len: usize, ttl: u8, ident: u16, flags_frag: u16) -> Vec<u8> {
    let total = (ipv4::field::MIN_LEN + payload_len) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&ident.to_be_bytes());
    h.extend_from_slice(&flags_frag.to_be_bytes());
    h.extend_from_slice(&[ttl, proto, 0, 0]);
    h.extend_from_slice(&src.to_be_bytes());
    h.extend_from_slice(&dst.to_be_bytes());
    let c = checksum(&h);
    set_u16(&mut h, ipv4::field::CHECKSUM, c);
    h
}

/// An Ethernet frame around an IPv4 packet with `l4` as payload.
pub fn frame(src: u32, dst: u32, proto: u8, l4: &[u8], ttl: u8) -> Vec<u8> {
    frame_frag(src, dst, proto, l4, ttl, 0x1234, 0x4000)
}

/// Like [`frame`] with an explicit IP id and flags/fragment word.
pub fn frame_frag(src: u32, dst: u32, proto: u8, l4: &[u8], ttl: u8, ident: u16, flags_frag: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(ethernet::field::HEADER_LEN + ipv4::field::MIN_LEN + l4.len());
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ipv4_header(src, dst, proto, l4.len(), ttl, ident, flags_frag));
    f.extend_from_slice(l4);
    f
}

fn l4_checksum(src: u32, dst: u32, proto: u8, seg: &[u8]) -> u16 {
    let s = pseudo_header_sum(src, dst, proto, seg.len() as u16) + sum(seg);
    !fold(s)
}

/// A UDP segment with a correct checksum.
pub fn udp_segment(src: u32, sport: u16, dst: u32, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (udp::HEADER_LEN + payload.len()) as u16;
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let c = match l4_checksum(src, dst, PROTO_UDP, &u) {
        0 => 0xffff,
        c => c,
    };
    set_u16(&mut u, udp::CHECKSUM, c);
    u
}

/// A UDP frame.
pub fn udp(src: u32, sport: u16, dst: u32, dport: u16, payload: &[u8]) -> Vec<u8> {
    frame(src, dst, PROTO_UDP, &udp_segment(src, sport, dst, dport, payload), 64)
}

/// A TCP segment (no options, sequence 1000, acknowledging 2000, window
/// 65535) with a correct checksum.
pub fn tcp_segment(src: u32, sport: u16, dst: u32, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    tcp_segment_at(src, sport, dst, dport, flags, (1000, 2000, 0xffff), &[], payload)
}

/// A TCP segment with its (sequence, acknowledgment, window) and options
/// (padded to a multiple of 4 with NOPs), with a correct checksum.
#[allow(clippy::too_many_arguments)] // a header's worth of fields
pub fn tcp_segment_at(
    src: u32,
    sport: u16,
    dst: u32,
    dport: u16,
    flags: u8,
    (seq, ack, window): (u32, u32, u16),
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut opts = options.to_vec();
    while !opts.len().is_multiple_of(4) {
        opts.push(1);
    }
    let doff = u8::try_from((tcp::field::MIN_LEN + opts.len()) / 4).unwrap_or(15);
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[doff << 4, flags]);
    t.extend_from_slice(&window.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(&opts);
    t.extend_from_slice(payload);
    let c = l4_checksum(src, dst, PROTO_TCP, &t);
    set_u16(&mut t, tcp::CHECKSUM, c);
    t
}

/// A TCP frame with its (sequence, acknowledgment, window), no options.
pub fn tcp_at(src: u32, sport: u16, dst: u32, dport: u16, flags: u8, seq_ack_win: (u32, u32, u16)) -> Vec<u8> {
    frame(src, dst, PROTO_TCP, &tcp_segment_at(src, sport, dst, dport, flags, seq_ack_win, &[], &[]), 64)
}

/// A TCP frame.
pub fn tcp(src: u32, sport: u16, dst: u32, dport: u16, flags: u8) -> Vec<u8> {
    frame(src, dst, PROTO_TCP, &tcp_segment(src, sport, dst, dport, flags, &[]), 64)
}

/// An ICMP echo request (or reply) frame.
pub fn icmp_echo(src: u32, dst: u32, ident: u16, seq: u16, request: bool) -> Vec<u8> {
    let mut m = vec![if request { 8 } else { 0 }, 0, 0, 0];
    m.extend_from_slice(&ident.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(b"masq-ping-payload");
    let c = checksum(&m);
    set_u16(&mut m, icmp::CHECKSUM, c);
    frame(src, dst, PROTO_ICMP, &m, 64)
}

/// An ICMP error frame from `src` to `dst` quoting `quoted` (a frame: its IP
/// header and the first `quote_l4` bytes of its L4 header are embedded).
pub fn icmp_error(src: u32, dst: u32, ty: u8, code: u8, quoted: &[u8], quote_l4: usize) -> Vec<u8> {
    let ip = &quoted[ethernet::field::HEADER_LEN..];
    let hl = header_len(ip);
    let n = (hl + quote_l4).min(ip.len());
    let mut m = vec![ty, code, 0, 0, 0, 0, 0, 0];
    if ty == 3 && code == 4 {
        set_u16(&mut m, icmp::NEXT_HOP_MTU, 1400);
    }
    m.extend_from_slice(&ip[..n]);
    let c = checksum(&m);
    set_u16(&mut m, icmp::CHECKSUM, c);
    frame(src, dst, PROTO_ICMP, &m, 64)
}

/// The (src, sport, dst, dport) of a TCP/UDP frame, or (src, ident, dst, ident) for ICMP echo.
pub fn tuple(f: &[u8]) -> (u32, u16, u32, u16) {
    let ip = &f[ethernet::field::HEADER_LEN..];
    let (src, dst) = (u32_at(ip, ipv4::field::SRC), u32_at(ip, ipv4::field::DST));
    let l4 = &ip[header_len(ip)..];
    if u8_at(ip, ipv4::field::PROTO) == PROTO_ICMP {
        let id = u16_at(l4, icmp::IDENT);
        return (src, id, dst, id);
    }
    (src, u16_at(l4, udp::SRC_PORT), dst, u16_at(l4, udp::DST_PORT))
}

/// True if the IPv4 header checksum and the TCP/UDP/ICMP checksum of an
/// unfragmented frame verify (a UDP checksum of 0 counts as valid).
pub fn checksums_ok(f: &[u8]) -> bool {
    let ip = &f[ethernet::field::HEADER_LEN..];
    let hl = header_len(ip);
    let total = usize::from(u16_at(ip, ipv4::field::TOTAL_LEN));
    if fold(sum(&ip[..hl])) != 0xffff {
        return false;
    }
    let (src, dst) = (u32_at(ip, ipv4::field::SRC), u32_at(ip, ipv4::field::DST));
    let seg = &ip[hl..total];
    match u8_at(ip, ipv4::field::PROTO) {
        PROTO_TCP => fold(pseudo_header_sum(src, dst, PROTO_TCP, seg.len() as u16) + sum(seg)) == 0xffff,
        PROTO_UDP => {
            u16_at(seg, udp::CHECKSUM) == 0
                || fold(pseudo_header_sum(src, dst, PROTO_UDP, seg.len() as u16) + sum(seg)) == 0xffff
        }
        PROTO_ICMP => fold(sum(seg)) == 0xffff,
        _ => true,
    }
}

/// TTL of a frame.
pub fn ttl(f: &[u8]) -> u8 {
    f[ethernet::field::HEADER_LEN + ipv4::field::TTL]
}

#[cfg(test)]
mod tests {
    use super::ip;

    #[test]
    fn ip_parses_a_dotted_quad() {
        assert_eq!(ip("100.64.0.1"), 0x6440_0001);
    }

    #[test]
    #[should_panic(expected = "not a dotted quad")]
    fn ip_panics_on_a_typo() {
        ip("100.64.0.256");
    }
}
