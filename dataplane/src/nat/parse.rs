//! One pass over a frame's headers into a `Copy` summary: offsets, the flow
//! tuple and what kind of handling the packet needs. Nothing after this
//! re-parses the outer headers.
#![forbid(unsafe_code)]
#![allow(clippy::cast_possible_truncation)] // fields are cut out of loaded words on purpose

use super::counters::{DropReason, PassReason};
use super::l4::L4;
use super::{Side, Verdict};
use crate::wire::bytes::{le32_at, le64_at, u16_at, u32_at};
use crate::wire::ethernet::{EthernetFrame, ETHERTYPE_IPV4};
use crate::wire::icmp::{self, IcmpKind, IcmpPacket};
use crate::wire::ipv4::{self, Ipv4Packet, FLAG_MF, FRAG_OFFSET_MASK, PROTO_TCP, PROTO_UDP};
use crate::wire::tcp::TcpPacket;
use crate::wire::udp::{self, UdpPacket};
use crate::wire::{layout, tcp};

/// How the engine must treat a parsed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// TCP, UDP or ICMP echo with its ports: session lookup.
    #[default]
    Flow,
    /// An ICMP error: translate through the embedded header.
    IcmpError,
    /// A non-first fragment: follows its first fragment.
    LaterFragment,
    /// Another IP protocol (GRE, ESP, SCTP...): translated by address only
    /// (`nat::other`) or routed unchanged under a no-NAT rule.
    OtherProto,
}

/// The parse result.
#[derive(Debug, Clone, Copy, Default)]
pub struct Parsed {
    /// Offset of the IPv4 header in the frame (14, or 18 with a VLAN tag).
    pub l3: u8,
    /// Offset of the L4 header in the frame (at most 18 + 60).
    pub l4: u8,
    /// IPv4 source.
    pub src: u32,
    /// IPv4 destination.
    pub dst: u32,
    /// Source port (ICMP echo from inside: identifier; from outside: 0).
    pub sport: u16,
    /// Destination port (ICMP echo from outside: identifier; from inside: 0).
    pub dport: u16,
    /// IP protocol number (any: other protocols and later fragments keep theirs).
    pub ip_proto: u8,
    /// Protocol to translate: set for [`Kind::Flow`] and (ICMP) for
    /// [`Kind::IcmpError`]; the default for the other kinds.
    pub proto: L4,
    /// TTL.
    pub ttl: u8,
    /// TCP flags (0 for others).
    pub tcp_flags: u8,
    /// IP identification (fragments).
    pub ident: u16,
    /// First fragment of a fragmented datagram.
    pub first_frag: bool,
    /// Handling class.
    pub kind: Kind,
}

impl Parsed {
    /// A copy to hand an out-of-line call: the caller's own is then
    /// never addressed, so once inlined its fields stay in registers.
    #[inline(always)]
    pub fn for_call(&self) -> Parsed {
        *self
    }
}

/// A multicast or limited-broadcast address.
fn is_group_ip(a: u32) -> bool {
    a >> 28 == 0xe || a == u32::MAX
}

/// A source address no router forwards (RFC 1812 section 5.3.7; Linux's
/// `ip_route_input_slow` drops these as `martian_source`): multicast,
/// limited broadcast, "this network" (0/8) and loopback (127/8). Class E
/// (240/4) is not one, as in Linux.
///
/// Invariant the fast lane relies on: no session holds a martian or group
/// address (a packet with a group destination goes to the kernel, one
/// with a martian source or destination is dropped here, and the
/// configuration refuses them as pool, forward and static addresses), so
/// a frame whose key matches a session has neither and the lane does not
/// test again.
#[inline(always)]
pub fn martian_source(a: u32) -> bool {
    is_group_ip(a) || martian_destination(a)
}

/// A destination no router forwards (Linux's `martian_destination`):
/// 0/8 and 127/8 (group destinations go to the kernel before this test).
#[inline(always)]
pub fn martian_destination(a: u32) -> bool {
    a >> 24 == 0 || a >> 24 == 127
}

/// Bytes of the common frame layout the fast parser reads: Ethernet (14),
/// IPv4 without options (20), and the first 8 bytes of UDP or TCP.
pub const FAST_LEN: usize = layout::UDP_END;

/// A fast-lane packet's tuple packed in two words, its bytes as they lie
/// (network byte order) read as little-endian words: `w0` is the source
/// and destination addresses (the source in the low half), `w1` is the
/// protocol's [`L4::code`] `<< 32` over the source and destination ports
/// (the source port in the low 16 bits), and the TCP flags. So a key is
/// read in two loads, and compared with a session's (`Session::has_key`)
/// and hashed ([`super::hash::hash5`] packs the same words) as it is: on
/// a little-endian host (x86-64) without a byte swap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FastKey {
    /// Addresses.
    pub w0: u64,
    /// Ports and protocol code.
    pub w1: u64,
    /// TCP flags (0 for UDP).
    pub flags: u8,
    /// TTL ([`parse_fast`] and [`complete_key`] read it; 0 in a key
    /// [`fast_lookup_key`] gives; the fast lane's own hit path checks the
    /// frame's in the rewrite, see `nat::rewrite`).
    pub ttl: u8,
    /// The protocol `w1`'s code names, kept whole: the general path's
    /// checks read it many times, and a byte is cheaper than decoding
    /// `w1` each time.
    pub l4: L4,
}

#[allow(clippy::cast_possible_truncation)] // unpacking fields packed above
impl FastKey {
    /// The (source, destination) addresses of an address word `w0`.
    #[inline(always)]
    pub fn addrs(w0: u64) -> (u32, u32) {
        (u32::from_be_bytes((w0 as u32).to_le_bytes()), u32::from_be_bytes(((w0 >> 32) as u32).to_le_bytes()))
    }
    /// Source address.
    #[inline(always)]
    pub fn src(self) -> u32 {
        Self::addrs(self.w0).0
    }
    /// Source address as it lies: network byte order read little-endian
    /// (`Net32::le`), no swap.
    #[inline(always)]
    pub fn src_le(self) -> u32 {
        self.w0 as u32
    }
    /// Source port as it lies (`Net16::le`), no swap.
    #[inline(always)]
    pub fn sport_le(self) -> u16 {
        self.w1 as u16
    }
    /// Destination address.
    #[inline(always)]
    pub fn dst(self) -> u32 {
        Self::addrs(self.w0).1
    }
    /// Source port.
    #[inline(always)]
    pub fn sport(self) -> u16 {
        u16::from_be_bytes((self.w1 as u16).to_le_bytes())
    }
    /// Destination port.
    #[inline(always)]
    pub fn dport(self) -> u16 {
        u16::from_be_bytes(((self.w1 >> 16) as u16).to_le_bytes())
    }
    /// Both ports as they lie (the low half of `w1`).
    #[inline(always)]
    pub fn ports(self) -> u32 {
        self.w1 as u32
    }
    /// Protocol: UDP or TCP, the only ones the fast lane carries.
    #[inline(always)]
    pub fn proto(self) -> L4 {
        self.l4
    }
    /// TCP flags.
    #[inline(always)]
    pub fn tcp_flags(self) -> u8 {
        self.flags
    }
    /// The general form.
    pub fn to_parsed(self) -> Parsed {
        // A fast key is TCP or UDP (`fast_key`): said so, the general
        // path's ICMP and other-protocol branches fold away.
        let proto = if self.l4 == L4::Tcp { L4::Tcp } else { L4::Udp };
        debug_assert_eq!(proto, self.l4);
        Parsed {
            l3: layout::L3 as u8,
            l4: layout::L4 as u8,
            src: self.src(),
            dst: self.dst(),
            sport: self.sport(),
            dport: self.dport(),
            ip_proto: proto.ip_proto(),
            proto,
            ttl: self.ttl,
            tcp_flags: self.tcp_flags(),
            ident: 0,
            first_frag: false,
            kind: Kind::Flow,
        }
    }
}

/// The fast lane: an untagged unicast Ethernet frame carrying an unfragmented
/// IPv4 packet without options to a unicast address, with a TCP or UDP
/// header. Everything is read from fixed-size arrays, so no read needs a
/// run-time bounds check. Anything else returns `None` and goes through
/// [`parse`]. The TTL is recorded, not checked (the caller decides).
#[inline(always)]
pub fn parse_fast(frame: &[u8]) -> Option<FastKey> {
    let (w0, total, proto) = fast_ip(frame)?;
    // (Written out rather than as fast_lookup_key then complete_key: the
    // single pass inlines this for its misses, and that version cost its
    // loop 3 instructions a packet.)
    if lane_refuses_by_octet(w0) {
        return None;
    }
    let mut k = match proto {
        PROTO_UDP => fast_key::<true>(frame, w0, total)?,
        PROTO_TCP => fast_key::<false>(frame, w0, total)?,
        _ => return None,
    };
    k.ttl = *frame.get(layout::TTL)?;
    Some(k)
}

/// The rest of [`parse_fast`] for `k`, which [`fast_lookup_key`] read
/// from `frame`: the address test (false: the general path takes the
/// frame) and the TTL.
#[inline(always)]
pub fn complete_key(k: &mut FastKey, frame: &[u8]) -> bool {
    if lane_refuses(k.w0) {
        return false;
    }
    match frame.get(layout::TTL) {
        Some(&t) => {
            k.ttl = t;
            true
        }
        None => false,
    }
}

/// Group and class E destinations (both start at 224) and martian
/// sources and destinations, of an address word ([`FastKey::w0`]): the
/// general path takes them (it passes group destinations to the kernel,
/// drops martians and translates class E). A hit needs no such test: no
/// session holds a martian or group address ([`martian_source`]), and
/// one to a class E address is translated the same either way.
///
/// Read from the word as it lies: an address's first octet is the low
/// byte of its half; the pair of first octets (source, destination) is
/// looked up in one set of 65,536 bits ([`PAIR_REFUSED`]: a load and a
/// bit test, no byte swap); only the limited broadcast source needs its
/// other octets.
#[inline(always)]
#[allow(clippy::cast_possible_truncation)] // the first octets are the point
fn lane_refuses(w0: u64) -> bool {
    let pair = usize::from(w0 as u8) << 8 | usize::from((w0 >> 32) as u8);
    PAIR_REFUSED.get(pair / 64).is_some_and(|w| w >> (pair % 64) & 1 != 0) || w0 as u32 == u32::MAX
}

/// [`lane_refuses`] by each first octet in its own set, as the single
/// pass's misses take it ([`parse_fast`]): the pair set there gave the
/// pass's hit loop, in the same function, other registers: 105.0 ->
/// 105.6 instructions an established UDP packet, 124.5 -> 125.0 TCP
/// (`perf/callgrind.sh`). The exhaustive first-octet test holds the two
/// equal.
#[inline(always)]
#[allow(clippy::cast_possible_truncation)] // the first octets are the point
fn lane_refuses_by_octet(w0: u64) -> bool {
    let (src, dst) = (w0 as u8, (w0 >> 32) as u8);
    octet_in(&DST_REFUSED, dst) || octet_in(&SRC_REFUSED, src) || w0 as u32 == u32::MAX
}

/// Whether octet `o` is in `set`.
#[inline(always)]
fn octet_in(set: &[u64; 4], o: u8) -> bool {
    set.get(usize::from(o >> 6)).is_some_and(|w| w >> (o & 63) & 1 != 0)
}

/// The pairs of first octets (source << 8 | destination) [`lane_refuses`]
/// refuses: a source octet in [`SRC_REFUSED`] or a destination octet in
/// [`DST_REFUSED`]. One test where two sets took two and a branch between
/// them: a miss's key completion 25 -> 22 instructions, a new session
/// 961.4 -> 956.4 (`perf/sites.sh new`, `perf/callgrind.sh`). 8 KiB, of
/// which a network's traffic reads the lines of its few inside first
/// octets (256 destinations a 32-byte run).
static PAIR_REFUSED: [u64; 1024] = pair_set();

/// Builds [`PAIR_REFUSED`].
#[allow(clippy::indexing_slicing)] // run by the compiler: a bad index fails the build
const fn pair_set() -> [u64; 1024] {
    let mut set = [0u64; 1024];
    let mut p = 0;
    while p < 65536 {
        let (src, dst) = (p >> 8, p & 255);
        if SRC_REFUSED[src / 64] >> (src % 64) & 1 != 0 || DST_REFUSED[dst / 64] >> (dst % 64) & 1 != 0 {
            set[p / 64] |= 1 << (p % 64);
        }
        p += 1;
    }
    set
}

/// The first octets of the sources [`lane_refuses`] refuses: 0/8, 127/8
/// and 224/4 ([`martian_source`] but the limited broadcast, which it
/// tests whole).
const SRC_REFUSED: [u64; 4] = octet_set(224, 240);
/// The first octets of the destinations [`lane_refuses`] refuses: 0/8,
/// 127/8, and 224/3 (group and class E).
const DST_REFUSED: [u64; 4] = octet_set(224, 256);

/// A set of first octets: 0, 127 and `from..to`.
#[allow(clippy::indexing_slicing)] // run by the compiler: a bad index fails the build
const fn octet_set(from: usize, to: usize) -> [u64; 4] {
    let mut set = [0u64; 4];
    let mut o = 0;
    while o < 256 {
        if o == 0 || o == 127 || (o >= from && o < to) {
            set[o / 64] |= 1 << (o % 64);
        }
        o += 1;
    }
    set
}

/// [`parse_fast`] without its address test and the TTL: the key a
/// look-up needs. Only a frame whose look-up finds its session may skip
/// the rest (no session holds a martian or group address:
/// [`martian_source`]); a miss goes through [`complete_key`] before the
/// general path takes its key.
#[inline(always)]
pub fn fast_lookup_key(frame: &[u8]) -> Option<FastKey> {
    let (w0, total, proto) = fast_ip(frame)?;
    match proto {
        PROTO_UDP => fast_key::<true>(frame, w0, total),
        PROTO_TCP => fast_key::<false>(frame, w0, total),
        _ => None,
    }
}

/// The protocol-independent half of [`parse_fast`] without its address
/// test: returns the address word (from [`layout::SRC`], 8 bytes, exactly
/// [`FastKey::w0`]), the IP total length and the protocol number. The fast
/// lane's hit path takes it as is: a frame it translates matched a
/// session's key, and no session holds a group address ([`martian_source`]).
/// The total length is checked against the frame by [`fast_key`], with
/// the protocol's least length, in one compare.
#[inline(always)]
pub fn fast_ip(frame: &[u8]) -> Option<(u64, usize, u8)> {
    // Constant offsets into a fixed-size array: checked at compile time.
    let h: &[u8; FAST_LEN] = frame.first_chunk()?;
    let total = usize::from(u16_at(h, layout::TOTAL_LEN));
    let w0 = le64_at(h, layout::SRC);
    // Ethertype 0x0800, then version 4 with a 20-byte header; not a
    // fragment (MF and offset clear); a unicast Ethernet destination.
    // The fragment field, the TTL and the protocol as one word, read as
    // they lie: the fragment bits are the first two bytes' (MF and the
    // offset, in network order), the protocol the last byte. (LLVM still
    // tests the fragment bytes one by one; the gain, -3.5 instructions a
    // packet, came from the registers the loop was then given.)
    const _: () = assert!(layout::PROTO == layout::FLAGS_FRAG + 3);
    const FRAG_BITS: u32 = {
        let [hi, lo] = (FLAG_MF | FRAG_OFFSET_MASK).to_be_bytes();
        u32::from_le_bytes([hi, lo, 0, 0])
    };
    let w = le32_at(h, layout::FLAGS_FRAG);
    if u16_at(h, layout::ETHERTYPE) != ETHERTYPE_IPV4
        || h[layout::VER_IHL] != 0x45
        || w & FRAG_BITS != 0
        || h[layout::ETH_DST] & 1 != 0
    {
        return None;
    }
    Some((w0, total, (w >> 24) as u8))
}

/// The protocol half of [`parse_fast`] for UDP (`UDP`) or TCP, after
/// [`fast_ip`]: the key, with `ttl` left 0. The IP packet must hold the
/// protocol's header and lie inside the frame: `least <= total` and
/// `L3 + total <= frame.len()`, that is `total - least <= frame.len() -
/// (L3 + least)`, one unsigned compare (a total below `least` wraps past
/// any frame; the frame is at least `L3 + least` bytes, its fixed-size
/// view's length).
#[inline(always)]
pub fn fast_key<const UDP: bool>(frame: &[u8], w0: u64, total: usize) -> Option<FastKey> {
    // The packet holds `LEAST` bytes and lies inside the frame (see above);
    // `VIEW` is the fixed-size view the frame was already checked for,
    // which `L3 + LEAST` must fit, so the right side cannot wrap.
    #[inline(always)]
    fn holds<const LEAST: usize, const VIEW: usize>(total: usize, frame: &[u8]) -> bool {
        const { assert!(layout::L3 + LEAST <= VIEW) };
        total.wrapping_sub(LEAST) <= frame.len().wrapping_sub(layout::L3 + LEAST)
    }
    let (proto, flags) = if UDP {
        if !holds::<{ ipv4::field::MIN_LEN + udp::HEADER_LEN }, FAST_LEN>(total, frame) {
            return None;
        }
        (L4::Udp, 0)
    } else {
        // Data offset and flags lie past the first 8 bytes of TCP.
        let t: &[u8; layout::TCP_END] = frame.first_chunk()?;
        let doff = usize::from(t[layout::TCP_DATA_OFF] >> 4) * 4;
        const MIN: usize = tcp::field::MIN_LEN;
        if !holds::<{ ipv4::field::MIN_LEN + MIN }, { layout::TCP_END }>(total, frame)
            || doff < MIN
            || doff > total - ipv4::field::MIN_LEN
        {
            return None;
        }
        (L4::Tcp, t[layout::TCP_FLAGS])
    };
    let h: &[u8; FAST_LEN] = frame.first_chunk()?;
    let ports = le32_at(h, layout::SRC_PORT);
    Some(FastKey { w0, w1: u64::from(ports) | (u64::from(proto.code()) << 32), flags, ttl: 0, l4: proto })
}

/// Parses a frame received on `side`.
#[inline]
pub fn parse(frame: &[u8], side: Side) -> Result<Parsed, Verdict> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| Verdict::Drop(DropReason::Malformed))?;
    if eth.ethertype() != ETHERTYPE_IPV4 {
        return Err(Verdict::PassToKernel(PassReason::NotIpv4));
    }
    if eth.is_group_dst() {
        return Err(Verdict::PassToKernel(PassReason::Multicast));
    }
    let l3 = eth.header_len();
    let ip =
        Ipv4Packet::new_checked(frame.get(l3..).unwrap_or(&[])).map_err(|_| Verdict::Drop(DropReason::Malformed))?;
    let (src, dst) = (ip.src(), ip.dst());
    if is_group_ip(dst) {
        return Err(Verdict::PassToKernel(PassReason::Multicast));
    }
    if martian_source(src) {
        return Err(Verdict::Drop(DropReason::MartianSource));
    }
    if martian_destination(dst) {
        return Err(Verdict::Drop(DropReason::MartianDestination));
    }
    // Both offsets are at most 18 + 60 (tag plus the longest IPv4 header).
    let bad = |_| Verdict::Drop(DropReason::Malformed);
    let mut p = Parsed {
        l3: u8::try_from(l3).map_err(bad)?,
        l4: u8::try_from(l3 + ip.header_len()).map_err(bad)?,
        src,
        dst,
        ip_proto: ip.protocol(),
        ttl: ip.ttl(),
        ident: ip.ident(),
        ..Parsed::default()
    };
    if ip.is_fragment() {
        if ip.frag_offset() != 0 {
            p.kind = Kind::LaterFragment;
            return Ok(p);
        }
        p.first_frag = true;
    }
    let l4 = ip.payload();
    let malformed = |_| Verdict::Drop(DropReason::Malformed);
    let Some(proto) = L4::from_ip_proto(p.ip_proto) else {
        p.kind = Kind::OtherProto;
        return Ok(p);
    };
    p.proto = proto;
    match proto {
        L4::Tcp => {
            // A first fragment may be too short for the whole TCP header but
            // the ports and checksum must be there.
            let t = TcpPacket::new_checked(l4).map_err(malformed)?;
            p.sport = t.src_port();
            p.dport = t.dst_port();
            p.tcp_flags = t.flags();
        }
        L4::Udp => {
            let u = UdpPacket::new_checked(l4).map_err(malformed)?;
            p.sport = u.src_port();
            p.dport = u.dst_port();
        }
        // from_ip_proto never gives it.
        L4::Other => p.kind = Kind::OtherProto,
        L4::Icmp => {
            let c = IcmpPacket::new_checked(l4).map_err(malformed)?;
            match icmp::kind_of(c.msg_type()) {
                IcmpKind::Query => {
                    // The identifier plays the inside/public port; the remote has none.
                    if side == Side::Inside {
                        p.sport = c.ident();
                    } else {
                        p.dport = c.ident();
                    }
                }
                IcmpKind::Error => {
                    if p.first_frag {
                        return Err(Verdict::Drop(DropReason::Malformed));
                    }
                    p.kind = Kind::IcmpError;
                }
                IcmpKind::Other => return Err(Verdict::Drop(DropReason::IcmpUnsupported)),
            }
        }
    }
    Ok(p)
}

/// The header of the datagram embedded in an ICMP error (RFC 792), which
/// may be truncated after the first 8 bytes of its L4 header.
#[derive(Debug, Clone, Copy)]
pub struct Embedded {
    /// Offset of the embedded IPv4 header in the frame.
    pub l3: usize,
    /// Offset of its L4 header in the frame.
    pub l4: usize,
    /// Bytes of the embedded datagram present in the frame.
    pub len: usize,
    /// Embedded source.
    pub src: u32,
    /// Embedded destination.
    pub dst: u32,
    /// Embedded source port (ICMP echo: identifier).
    pub sport: u16,
    /// Embedded destination port (ICMP echo: identifier).
    pub dport: u16,
    /// Protocol.
    pub proto: L4,
}

/// Parses the datagram inside an ICMP error whose ICMP header is at `icmp_off`
/// and which ends at `end`.
pub fn parse_embedded(frame: &[u8], icmp_off: usize, end: usize) -> Option<Embedded> {
    let l3 = icmp_off + icmp::HEADER_LEN;
    let e = frame.get(l3..end)?;
    let vi = *e.first()?;
    let hl = usize::from(vi & 0x0f) * 4;
    // RFC 792: the quote holds the IP header and at least 64 bits of data.
    if vi >> 4 != 4 || hl < ipv4::field::MIN_LEN || e.len() < hl + 8 {
        return None;
    }
    // A datagram of another protocol (GRE, ESP...) is known by its protocol
    // number, which its session keeps in both port fields.
    let n = *e.get(ipv4::field::PROTO)?;
    let proto = L4::from_ip_proto(n).unwrap_or(L4::Other);
    let l4 = e.get(hl..)?;
    let (sport, dport) = match proto {
        L4::Other => (u16::from(n), u16::from(n)),
        L4::Tcp => (u16_at(l4, tcp::SRC_PORT), u16_at(l4, tcp::DST_PORT)),
        L4::Udp => (u16_at(l4, udp::SRC_PORT), u16_at(l4, udp::DST_PORT)),
        L4::Icmp => {
            if icmp::kind_of(*l4.first()?) != IcmpKind::Query {
                return None; // no error about an error (RFC 1122 3.2.2)
            }
            let id = u16_at(l4, icmp::IDENT);
            (id, id)
        }
    };
    Some(Embedded {
        l3,
        l4: l3 + hl,
        len: e.len(),
        src: u32_at(e, ipv4::field::SRC),
        dst: u32_at(e, ipv4::field::DST),
        sport,
        dport,
        proto,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lane's address test on the word as it lies is the general
    /// path's on the addresses: every pair of first octets, each with the
    /// rest of its address at both ends (so the limited broadcast too).
    #[test]
    fn the_lanes_address_test_refuses_what_the_general_path_would() {
        for s in 0..=255u32 {
            for d in 0..=255u32 {
                for rest in [0x00_0000, 0x01_0203, 0xff_ffff] {
                    let (src, dst) = (s << 24 | rest, d << 24 | rest);
                    let w0 = u64::from(u32::from_le_bytes(src.to_be_bytes()))
                        | u64::from(u32::from_le_bytes(dst.to_be_bytes())) << 32;
                    assert_eq!(FastKey::addrs(w0), (src, dst));
                    let want = dst >> 29 == 7 || martian_source(src) || martian_destination(dst);
                    assert_eq!(lane_refuses(w0), want, "{src:#010x} -> {dst:#010x}");
                    assert_eq!(lane_refuses_by_octet(w0), want, "by octet: {src:#010x} -> {dst:#010x}");
                }
            }
        }
    }
}
