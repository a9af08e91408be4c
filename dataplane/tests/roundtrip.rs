//! Property tests: whatever the tuple, translating a packet and then its
//! reply (or an ICMP error about it) restores the original endpoints, and
//! every checksum of every translated frame verifies.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // test code

use dataplane::nat::*;
use dataplane::testing::frames::{self as build, checksums_ok, icmp_echo, icmp_error, ip, tuple};
use dataplane::wire::checksum::verify;
use proptest::prelude::*;

fn engine() -> Engine {
    let mut pool = PoolParams::cgnat("p", (1..=8).map(|i| ip("203.0.113.0") + i).collect());
    pool.mode = PoolMode::PortBlocks { block_size: 128, max_blocks_per_subscriber: 4 };
    let rule = Rule {
        matches: RuleMatch { src: vec![Prefix::new(ip("100.64.0.0"), 10)], ..Default::default() },
        action: RuleAction::Translate { pool: 0 },
    };
    Engine::new(&EngineParams::single(vec![pool], vec![rule])).unwrap()
}

#[derive(Debug, Clone, Copy)]
enum P {
    Tcp(u8),
    Udp,
    Icmp,
}

fn proto() -> impl Strategy<Value = P> {
    prop_oneof![
        prop_oneof![Just(0x02u8), Just(0x10), Just(0x18), Just(0x12)].prop_map(P::Tcp),
        Just(P::Udp),
        Just(P::Icmp)
    ]
}

fn remote() -> impl Strategy<Value = u32> {
    // Unicast, no martian (127/8 answers nothing: `martian_source`),
    // outside 100.64.0.0/10 and the pool.
    (1u32..224).prop_flat_map(|a| (Just(a), any::<u16>(), 1u8..255)).prop_filter_map("not inside", |(a, m, l)| {
        let r = (a << 24) | (u32::from(m) << 8) | u32::from(l);
        let inside = Prefix::new(ip("100.64.0.0"), 10).contains(r);
        let pool = (ip("203.0.113.0")..=ip("203.0.113.255")).contains(&r);
        (!inside && !pool && a != 127).then_some(r)
    })
}

fn make(p: P, src: u32, sport: u16, dst: u32, dport: u16, payload: &[u8], ttl: u8) -> Vec<u8> {
    let mut f = match p {
        P::Tcp(flags) => build::frame(src, dst, 6, &build::tcp_segment(src, sport, dst, dport, flags, payload), ttl),
        P::Udp => build::frame(src, dst, 17, &build::udp_segment(src, sport, dst, dport, payload), ttl),
        P::Icmp => icmp_echo(src, dst, sport, 1, true),
    };
    if let P::Icmp = p {
        f[22] = ttl;
        f[24] = 0;
        f[25] = 0;
        let c = dataplane::wire::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }
    f
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn reply_restores_the_original_tuple(
        host in 0u32..(1 << 22), sport in 1u16.., r in remote(), rport in 1u16..,
        p in proto(), payload in proptest::collection::vec(any::<u8>(), 0..80), ttl in 2u8..,
    ) {
        let mut e = engine();
        let src = ip("100.64.0.0") + host;
        let orig = make(p, src, sport, r, rport, &payload, ttl);
        let mut out = orig.clone();
        prop_assert_eq!(e.process_one(Side::Inside, 10, &mut out), Verdict::Forward(Side::Outside));
        prop_assert!(checksums_ok(&out));
        prop_assert_eq!(build::ttl(&out), ttl - 1);
        let (ps, pp, d, dp) = tuple(&out);
        prop_assert_eq!(d, r);
        if !matches!(p, P::Icmp) { prop_assert_eq!(dp, rport); }
        if !matches!(p, P::Icmp) {
            prop_assert_eq!(&out[out.len() - payload.len()..], &payload[..], "payload untouched");
        }
        // The remote answers the public endpoint.
        let mut back = match p {
            P::Tcp(_) => make(P::Tcp(0x12), r, rport, ps, pp, b"", 64),
            P::Udp => make(P::Udp, r, rport, ps, pp, b"re", 64),
            P::Icmp => icmp_echo(r, ps, pp, 1, false),
        };
        prop_assert_eq!(e.process_one(Side::Outside, 11, &mut back), Verdict::Forward(Side::Inside));
        prop_assert!(checksums_ok(&back));
        let (bs, bsp, bd, bdp) = tuple(&back);
        prop_assert_eq!((bd, bdp), (src, sport));
        prop_assert_eq!(bs, r);
        if !matches!(p, P::Icmp) { prop_assert_eq!(bsp, rport); }
    }

    #[test]
    fn icmp_error_restores_the_embedded_tuple(
        host in 0u32..(1 << 22), sport in 1u16.., r in remote(), router in remote(), rport in 1u16..,
        p in proto(), quote_more in any::<bool>(), ty in prop_oneof![Just(3u8), Just(11u8), Just(12u8)],
    ) {
        let mut e = engine();
        let src = ip("100.64.0.0") + host;
        let mut out = make(p, src, sport, r, rport, b"probe", 64);
        prop_assert_eq!(e.process_one(Side::Inside, 10, &mut out), Verdict::Forward(Side::Outside));
        let (ps, _, _, _) = tuple(&out);
        // A router quotes the translated packet: 8 bytes of L4, or 20 (TCP's checksum included).
        let quote = if quote_more { 20 } else { 8 };
        let mut err = icmp_error(router, ps, ty, 0, &out, quote);
        prop_assert_eq!(e.process_one(Side::Outside, 11, &mut err), Verdict::Forward(Side::Inside));
        prop_assert!(checksums_ok(&err), "outer IP and ICMP checksums");
        let (os, _, od, _) = tuple(&err);
        prop_assert_eq!((os, od), (router, src));
        let emb = &err[14 + 20 + 8..];
        prop_assert!(verify(&emb[..20]), "embedded IP checksum");
        let esrc = u32::from_be_bytes(emb[12..16].try_into().unwrap());
        let eport = u16::from_be_bytes(emb[if matches!(p, P::Icmp) { 24..26 } else { 20..22 }].try_into().unwrap());
        prop_assert_eq!((esrc, eport), (src, sport));
        // Where the quote holds the embedded L4 checksum, it verifies against
        // the original pseudo-header once the quote is complete (UDP: whole
        // datagram quoted when short enough).
        if let P::Udp = p {
            let l4 = &emb[20..];
            let full = u16::from_be_bytes([l4[4], l4[5]]) as usize;
            if quote_more && l4.len() >= full {
                let ps = dataplane::wire::checksum::pseudo_header_sum(esrc, r, 17, full as u16);
                prop_assert_eq!(dataplane::wire::checksum::fold(ps + dataplane::wire::checksum::sum(&l4[..full])), 0xffff);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        dataplane::testing::fuzzing::parse_any(&data);
        dataplane::testing::fuzzing::engine_any(&data);
        dataplane::testing::fuzzing::ftp_any(&data);
        dataplane::testing::fuzzing::ha_records_any(&data);
    }

    #[test]
    fn ftp_lines_never_panic(
        head in proptest::sample::select(vec!["PORT ", "EPRT ", "227 ", "229 ", "port ", "227-"]),
        body in "[0-9,.|() !a-z]{0,40}", end in proptest::sample::select(vec!["\r\n", "\n", ""]),
    ) {
        dataplane::testing::fuzzing::ftp_any(format!("{head}{body}{end}").as_bytes());
    }

    #[test]
    fn mutated_real_frames_never_panic(
        p in proto(), flip in proptest::collection::vec((0usize..80, any::<u8>()), 1..6), outside in any::<bool>(),
    ) {
        let mut f = make(p, ip("100.64.1.2"), 1000, ip("198.51.100.1"), 53, b"0123456789", 64);
        for (at, v) in flip {
            if let Some(b) = f.get_mut(at) { *b = v; }
        }
        dataplane::testing::fuzzing::parse_any(&f);
        let mut data = vec![u8::from(outside)];
        data.extend_from_slice(&f);
        dataplane::testing::fuzzing::engine_any(&data);
    }
}

/// The engine fuzz body past the fuzz engine's limits (a subscriber with
/// more flows than its two blocks and the 64-session table hold): its
/// refusals must all come with an error it can write.
#[test]
fn the_engine_fuzz_body_reaches_refusals() {
    let mut data = Vec::new();
    for port in 0..200u16 {
        let f = build::udp(ip("100.64.1.2"), 1000 + port, ip("198.51.100.1"), 53, b"q");
        data.push(0u8); // inside, same second
        data.push(u8::try_from(f.len()).unwrap());
        data.extend_from_slice(&f);
    }
    dataplane::testing::fuzzing::engine_any(&data);
}
