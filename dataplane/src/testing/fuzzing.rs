//! Entry points shared by the cargo-fuzz targets (`dataplane/fuzz`) and the
//! property tests, so the stable-toolchain test suite runs the same bodies.
//! They must never panic, whatever the bytes.
#![forbid(unsafe_code)]

use crate::nat::{
    Engine, EngineParams, Forward, MssClamp, PoolMode, PoolParams, Prefix, Rule, RuleAction, RuleMatch, RuleOptions,
    Side, StaticNat,
};
use crate::wire::{ethernet::EthernetFrame, icmp::IcmpPacket, ipv4::Ipv4Packet, tcp::TcpPacket, udp::UdpPacket};

/// Runs every view's checked constructor and every accessor over `data`.
pub fn parse_any(data: &[u8]) {
    if let Ok(e) = EthernetFrame::new_checked(data) {
        let _ = (e.dst(), e.src(), e.vlan(), e.ethertype(), e.is_group_dst());
        if let Ok(ip) = Ipv4Packet::new_checked(data.get(e.header_len()..).unwrap_or(&[])) {
            let _ = (ip.tos(), ip.ident(), ip.ttl(), ip.src(), ip.dst(), ip.frag_offset(), ip.verify_checksum());
            let l4 = ip.payload();
            if let Ok(t) = TcpPacket::new_checked(l4) {
                let _ = (t.src_port(), t.dst_port(), t.seq(), t.ack(), t.flags(), t.window(), t.header_len());
                assert!(t.window_scale().is_none_or(|s| s <= 14));
            }
            if let Ok(u) = UdpPacket::new_checked(l4) {
                let _ = (u.src_port(), u.dst_port(), u.length(), u.checksum());
            }
            if let Ok(c) = IcmpPacket::new_checked(l4) {
                let _ = (c.msg_type(), c.code(), c.ident(), c.seq(), c.embedded().len());
            }
        }
    }
    let _ = crate::nat::parse::parse(data, Side::Inside);
    fast_key_any(data);
    unreachable_any(data);
    out_path_any(data);
}

/// The fast lane's parsers over `data`: the prefetching batch's look-up
/// key completed for a miss is exactly what the whole fast parser gives.
///
/// # Panics
/// If the two disagree.
pub fn fast_key_any(data: &[u8]) {
    use crate::nat::parse::{complete_key, fast_lookup_key, parse_fast};
    let completed = fast_lookup_key(data).and_then(|mut k| complete_key(&mut k, data).then_some(k));
    assert_eq!(completed, parse_fast(data));
}

/// The ICMP host-unreachable builder over `data` as an IPv4 packet and as
/// a frame: what it writes, when it writes, is a well-formed error.
///
/// # Panics
/// If an error it wrote does not parse or its checksums do not verify.
pub fn unreachable_any(data: &[u8]) {
    use crate::wire::{checksum, icmp};
    let mut out = [0u8; 18 + icmp::MAX_ERROR_LEN];
    let src = 0x6440_0001;
    if let Some(n) = icmp::write_unreachable(data, src, icmp::CODE_HOST_UNREACHABLE, &mut out) {
        let ip = Ipv4Packet::new_checked(out.get(..n).unwrap_or(&[])).map_err(|_| ()).expect("a whole IPv4 packet");
        assert!(n <= icmp::MAX_ERROR_LEN && ip.verify_checksum() && checksum::verify(ip.payload()));
        assert_eq!((ip.src(), ip.protocol()), (src, crate::wire::ipv4::PROTO_ICMP));
    }
    if let Some(n) = icmp::write_unreachable_frame(data, src, icmp::CODE_HOST_UNREACHABLE, &mut out) {
        let l2 = crate::wire::ethernet::header_len_of(data);
        assert!(n > l2 && icmp::may_answer_frame(data));
        let ip = Ipv4Packet::new_checked(out.get(l2..n).unwrap_or(&[])).map_err(|_| ()).expect("after its L2 header");
        assert!(ip.verify_checksum() && checksum::verify(ip.payload()));
    }
}

/// What the worker does to a frame on its way out, and the text parsers of
/// the control thread, over arbitrary bytes: next-hop MAC writing and
/// fragmentation for a small MTU (byte 0 picks it), `/proc/net/route`,
/// `/proc/net/arp` and `ethtool -x` parsing.
pub fn out_path_any(data: &[u8]) {
    let mut frame = data.to_vec();
    let mut side = crate::l2::SideL2::default();
    side.routes.push((Prefix::new(0, 0), 0));
    side.neighbours.insert(0, [2, 0, 0, 0, 0, 1]);
    let _ = crate::l2::write_l2(&side, &mut frame);
    let mtu = 28 + usize::from(data.first().copied().unwrap_or(0));
    for l2_len in [14, 18] {
        if let Ok(Some(plan)) = crate::wire::fragment::plan(data, l2_len, mtu) {
            let mut out = [0u8; 2048];
            for i in 0..plan.pieces.min(300) {
                let _ = crate::wire::fragment::write_piece(data, &plan, i, &mut out);
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    let _ = crate::l2::parse_routes(&text, "eth0");
    let _ = crate::l2::parse_arp(&text, "eth0");
    let _ = crate::l2::parse_mac(&text);
    let _ = crate::rss::parse_ethtool_x(&text, crate::rss::InputSet::Masked);
}

/// The FTP ALG's line parser over `data` as a client's and as a server's
/// segment payload: a line it finds has its span inside the payload, and
/// a line rewritten with any address and port (a client's, or an inside
/// server's 227 and 229) reads back as that.
///
/// # Panics
/// If a found span lies outside the payload, or a rewritten line does not
/// read back as what was written.
pub fn ftp_any(data: &[u8]) {
    use crate::nat::alg::ftp::{inspect, replacement, Line, MAX_REPLACEMENT};
    for from_client in [true, false] {
        let Line::Found(f) = inspect(data, from_client) else { continue };
        assert!(f.start <= f.end && f.end <= data.len(), "span {}..{} of {}", f.start, f.end, data.len());
        {
            let addr = u32::from_be_bytes([data.first().copied().unwrap_or(0), 7, 0, 9]);
            let port = u16::try_from(data.len() % 65536).unwrap_or(1);
            let mut rep = [0u8; MAX_REPLACEMENT];
            let n = replacement(&f, addr, port, &mut rep);
            let mut line = data.get(..f.start).unwrap_or(&[]).to_vec();
            line.extend_from_slice(rep.get(..n).unwrap_or(&[]));
            line.extend_from_slice(data.get(f.end..).unwrap_or(&[]));
            // A 229 names no address.
            let addr = if f.cmd == crate::nat::alg::ftp::Cmd::Epsv { 0 } else { addr };
            match inspect(&line, from_client) {
                Line::Found(g) => assert_eq!((g.cmd, g.addr, g.port), (f.cmd, addr, port)),
                other => panic!("a rewritten line reads as {other:?}"),
            }
        }
    }
}

/// The engine the `engine` target feeds.
///
/// # Panics
/// If the engine refuses these parameters: the target and the property
/// tests would otherwise return at once and test nothing.
fn fuzz_engine() -> Engine {
    let pool = |n: u32| -> Vec<u32> { (1..=n).map(|i| 0xcb00_7100 + i).collect() };
    let mut cg = PoolParams::cgnat("cg", pool(2));
    cg.mode = PoolMode::PortBlocks { block_size: 64, max_blocks_per_subscriber: 2 };
    let rules = vec![
        Rule {
            matches: RuleMatch { src: vec![Prefix::new(0x6440_0900, 24)], ..Default::default() },
            action: RuleAction::NoNat,
        },
        // A deterministic pool (RFC 7422) for 100.64.8.0/24.
        Rule {
            matches: RuleMatch { src: vec![Prefix::new(0x6440_0800, 24)], ..Default::default() },
            action: RuleAction::Translate { pool: 1 },
        },
        Rule {
            matches: RuleMatch { src: vec![Prefix::new(0x6440_0000, 10)], ..Default::default() },
            action: RuleAction::Translate { pool: 0 },
        },
    ];
    let mut det = PoolParams::cgnat("det", vec![0xcb00_7190, 0xcb00_7191]);
    det.mode = PoolMode::Deterministic { inside: Prefix::new(0x6440_0800, 24), ports_per_subscriber: 64 };
    let mut p = EngineParams::single(vec![cg, det], rules);
    p.max_sessions = 64;
    p.max_subscribers = 16;
    p.forwards = vec![
        Forward { ftp_alg: true, ..Forward::one(6, 0xcb00_7101, 8080, 0x6440_0005, 80) },
        // A range to one port and a range with its offset.
        Forward { public_port_last: 7009, ..Forward::one(6, 0xcb00_7101, 7000, 0x6440_0005, 22) },
        Forward {
            public_port_last: 9009,
            inside_port_last: 9009,
            ..Forward::one(17, 0xcb00_7102, 9000, 0x6440_0006, 9000)
        },
    ];
    // A 1:1 static host.
    p.statics = vec![StaticNat { ftp_alg: true, ..StaticNat::new(0xcb00_7180, 0x6440_0007) }];
    p.local_addrs = vec![0x6440_0001];
    p.icmp_source = Some(0x6440_0001);
    // A small fragment hold: full and wrapped byte rings are reached too.
    (p.fragment_hold, p.fragment_hold_bytes) = (4, 4096);
    // The translated subscribers' TCP goes through MSS clamping and the FTP ALG.
    p.rule_options = vec![
        RuleOptions::default(),
        RuleOptions::default(),
        RuleOptions { mss_clamp: MssClamp::Fixed(536), ftp_alg: true },
    ];
    Engine::new(&p).expect("the fuzz engine's parameters are valid")
}

/// Feeds `data` to an engine as a sequence of frames: byte 0 picks the side
/// of each frame, the next two its length. Frames may be anything.
///
/// # Panics
/// If the engine refuses a frame with an ICMP error (`Verdict::Refuse`)
/// that cannot be written: it says `Refuse` only when one can.
pub fn engine_any(data: &[u8]) {
    let mut e = fuzz_engine();
    let mut rest = data;
    let mut now = 1;
    while let Some((&ctl, tail)) = rest.split_first() {
        let len = tail.first().map_or(0, |&b| usize::from(b)).min(tail.len().saturating_sub(1));
        let mut frame = tail.get(1..1 + len).unwrap_or(&[]).to_vec();
        if frame.is_empty() {
            frame = tail.to_vec();
            rest = &[];
        } else {
            rest = tail.get(1 + len..).unwrap_or(&[]);
        }
        let side = if ctl & 1 == 0 { Side::Inside } else { Side::Outside };
        now += u32::from(ctl >> 5) * 60;
        let v = e.process_one(side, now, &mut frame);
        if let crate::nat::Verdict::Refuse(_) = v {
            let mut out = [0u8; 18 + crate::wire::icmp::MAX_ERROR_LEN];
            assert!(e.write_refusal(&frame, &mut out).is_some(), "a refusal whose error cannot be written");
        }
        if v == crate::nat::Verdict::Forward(Side::Inside) {
            // As if too big for the inside: a hairpinned frame's "fragmentation
            // needed" is a well-formed error (anything else writes none).
            let mut out = [0u8; 18 + crate::wire::icmp::MAX_ERROR_LEN];
            if let Some(n) = e.write_too_big(&frame, 576, &mut out) {
                let l2 = crate::wire::ethernet::header_len_of(&frame);
                let ip = Ipv4Packet::new_checked(out.get(l2..n).unwrap_or(&[])).map_err(|_| ()).expect("IPv4");
                assert!(ip.verify_checksum() && crate::wire::checksum::verify(ip.payload()));
            }
        }
        // Fragments released from the hold, as the worker takes them.
        e.take_released(usize::MAX, |v, b| {
            use crate::nat::Verdict;
            assert!(!b.is_empty(), "an empty released frame");
            assert!(
                matches!(v, Verdict::Forward(_) | Verdict::HandOff { .. } | Verdict::PassToKernel(_)),
                "a released fragment with verdict {v:?}"
            );
        });
    }
    let _ = e.sessions(now).count();
}

/// An HA sync batch (`nat::ha::decode_records`) from arbitrary bytes: what
/// decodes encodes back to the same bytes.
pub fn ha_records_any(data: &[u8]) {
    if let Some(rs) = crate::nat::ha::decode_records(data) {
        assert_eq!(crate::nat::ha::encode_records(&rs), data, "a decoded batch encodes back to its bytes");
    }
}
