//! One scenario per NAT semantic (DESIGN.md), through the public engine API
//! with real frames built byte by byte. Each test is named after what it shows.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // test code: a failed unwrap is a failed test

use dataplane::nat::params::proto;
use dataplane::nat::*;
use dataplane::testing::frames::{self as build, checksums_ok, icmp_echo, icmp_error, ip, tcp, tuple, udp};
use dataplane::wire::layout::{L3, TOTAL_LEN};
use dataplane::wire::tcp::{ACK, FIN, RST, SYN};

mod common;
use common::*;

fn reply_udp(translated: &[u8], payload: &[u8]) -> Vec<u8> {
    let (s, sp, d, dp) = tuple(translated);
    udp(d, dp, s, sp, payload)
}

#[test]
fn udp_outbound_translates_source_rewrites_checksums_and_decrements_ttl() {
    let mut n = Nat::new(cgnat_params());
    let f = udp(ip("100.64.1.2"), 40000, ip("198.51.100.1"), 53, b"query");
    let t = n.out(f.clone());
    let (s, sp, d, dp) = tuple(&t);
    assert!((ip("203.0.113.1")..=ip("203.0.113.4")).contains(&s));
    assert!(sp >= 1024);
    assert_eq!((d, dp), (ip("198.51.100.1"), 53));
    assert_eq!(build::ttl(&t), 63);
    assert_eq!(&t[42..], &f[42..], "payload untouched");
    let r = n.back(reply_udp(&t, b"answer"));
    assert_eq!(tuple(&r), (ip("198.51.100.1"), 53, ip("100.64.1.2"), 40000));
    assert_eq!(n.e.counters().fwd_i2o, 1);
    assert_eq!(n.e.counters().fwd_o2i, 1);
}

#[test]
fn udp_checksum_zero_stays_zero() {
    let mut n = Nat::new(cgnat_params());
    let mut f = udp(ip("100.64.1.2"), 40000, ip("198.51.100.1"), 53, b"x");
    f[40] = 0;
    f[41] = 0;
    let t = n.out(f);
    assert_eq!(&t[40..42], &[0, 0]);
}

#[test]
fn endpoint_independent_mapping_reuses_public_endpoint_rfc4787_req1() {
    let mut n = Nat::new(cgnat_params());
    let a = n.out(udp(ip("100.64.1.2"), 5000, ip("198.51.100.1"), 3478, b""));
    let b = n.out(udp(ip("100.64.1.2"), 5000, ip("198.51.100.2"), 9999, b""));
    assert_eq!((tuple(&a).0, tuple(&a).1), (tuple(&b).0, tuple(&b).1));
    // A different inside port gets a different public port.
    let c = n.out(udp(ip("100.64.1.2"), 5001, ip("198.51.100.1"), 3478, b""));
    assert_ne!(tuple(&a).1, tuple(&c).1);
}

#[test]
fn paired_pooling_keeps_one_public_address_rfc4787_req2() {
    let mut n = Nat::new(cgnat_params());
    let first = tuple(&n.out(udp(ip("100.64.1.2"), 1000, ip("198.51.100.1"), 1, b""))).0;
    for port in 1001..1200 {
        let t = n.out(udp(ip("100.64.1.2"), port, ip("198.51.100.1"), 1, b""));
        assert_eq!(tuple(&t).0, first);
    }
    // Different subscribers spread over the pool's addresses.
    let mut addrs = std::collections::HashSet::new();
    for h in 0..64 {
        let t = n.out(udp(ip("100.64.2.0") + h, 1000, ip("198.51.100.1"), 1, b""));
        addrs.insert(tuple(&t).0);
    }
    assert!(addrs.len() >= 3, "{addrs:?}");
}

#[test]
fn endpoint_independent_filtering_admits_any_remote_on_a_mapping() {
    let mut n = Nat::new(cgnat_params());
    let t = n.out(udp(ip("100.64.1.2"), 5000, ip("198.51.100.1"), 3478, b""));
    let (pub_ip, pub_port, _, _) = tuple(&t);
    let r = n.back(udp(ip("192.0.2.77"), 6000, pub_ip, pub_port, b"peer"));
    assert_eq!(tuple(&r), (ip("192.0.2.77"), 6000, ip("100.64.1.2"), 5000));
    // The inside host answers the new peer from the same mapping.
    let a = n.out(udp(ip("100.64.1.2"), 5000, ip("192.0.2.77"), 6000, b""));
    assert_eq!((tuple(&a).0, tuple(&a).1), (pub_ip, pub_port));
}

#[test]
fn address_dependent_filtering_admits_only_known_remote_addresses() {
    let mut p = cgnat_params();
    p.pools[0].filtering = Filtering::AddressDependent;
    let mut n = Nat::new(p);
    let t = n.out(udp(ip("100.64.1.2"), 5000, ip("198.51.100.1"), 3478, b""));
    let (pi, pp, _, _) = tuple(&t);
    n.back(udp(ip("198.51.100.1"), 3479, pi, pp, b"other port, same address"));
    let mut f = udp(ip("192.0.2.77"), 3478, pi, pp, b"stranger");
    assert_eq!(n.send(OUT, &mut f), Verdict::Drop(DropReason::Filtered));
}

#[test]
fn address_and_port_dependent_filtering_in_home_masquerade() {
    let mut n = Nat::new(home_params());
    let t = n.out(udp(ip("192.168.1.20"), 5000, ip("198.51.100.1"), 3478, b""));
    let (pi, pp, _, _) = tuple(&t);
    let mut f = udp(ip("198.51.100.1"), 3479, pi, pp, b"");
    assert_eq!(n.send(OUT, &mut f), Verdict::Drop(DropReason::Filtered));
    assert_eq!(n.e.counters().drop_count(DropReason::Filtered), 1);
}

#[test]
fn home_masquerade_keeps_the_source_port_when_free_netfilter_faq_3_6() {
    let mut n = Nat::new(home_params());
    let t = n.out(tcp(ip("192.168.1.20"), 51000, ip("198.51.100.1"), 80, SYN));
    assert_eq!(tuple(&t), (ip("198.51.100.10"), 51000, ip("198.51.100.1"), 80));
    // A second host with the same source port gets another, still >= 1024.
    let t2 = n.out(tcp(ip("192.168.1.21"), 51000, ip("198.51.100.1"), 80, SYN));
    assert_ne!(tuple(&t2).1, 51000);
    assert!(tuple(&t2).1 >= 1024);
}

#[test]
fn home_masquerade_never_maps_a_high_port_below_1024() {
    let mut n = Nat::new(home_params());
    for h in 0..200u32 {
        let t = n.out(udp(ip("192.168.1.2") + h, 1024, ip("198.51.100.1"), 53, b""));
        assert!(tuple(&t).1 >= 1024, "{:?}", tuple(&t));
    }
    // Privileged source ports stay privileged.
    for h in 0..3u32 {
        let t = n.out(udp(ip("192.168.1.2") + h, 123, ip("198.51.100.1"), 123, b""));
        assert!(tuple(&t).1 < 512, "{:?}", tuple(&t));
    }
}

#[test]
fn port_blocks_confine_a_greedy_subscriber_gamespy_case() {
    let mut n = Nat::new(cgnat_params());
    let greedy = ip("100.64.1.2");
    let mut opened = 0;
    for port in 10000..10400 {
        let mut f = udp(greedy, port, ip("198.51.100.1"), 27900, b"");
        match n.send(IN, &mut f) {
            Verdict::Forward(OUT) => opened += 1,
            Verdict::Drop(DropReason::PortsExhausted) => break,
            v => panic!("{v:?}"),
        }
    }
    assert_eq!(opened, 4 * 64, "4 blocks of 64 ports");
    assert!(n.e.counters().port_exhaustion_events >= 1);
    // The neighbour is not affected.
    n.out(udp(ip("100.64.1.3"), 10000, ip("198.51.100.1"), 27900, b""));
}

#[test]
fn subscriber_session_limit_drops_with_reason() {
    let mut p = cgnat_params();
    p.pools[0].max_sessions_per_subscriber = 3;
    let mut n = Nat::new(p);
    for port in 0..3 {
        n.out(udp(ip("100.64.1.2"), 2000 + port, ip("198.51.100.1"), 53, b""));
    }
    let mut f = udp(ip("100.64.1.2"), 2003, ip("198.51.100.1"), 53, b"");
    assert_eq!(n.send(IN, &mut f), Verdict::Drop(DropReason::SubscriberSessionLimit));
}

#[test]
fn rules_first_match_wins_policy_two_networks_two_addresses() {
    // IP-MASQ FAQ 7.36: two inside networks leave by two public addresses,
    // the VPN destination is exempt.
    let pools = vec![PoolParams::cgnat("a", vec![ip("203.0.113.1")]), PoolParams::cgnat("b", vec![ip("203.0.113.2")])];
    let rules = vec![
        Rule { matches: RuleMatch { dst: vec![pfx("10.0.0.0/8")], ..Default::default() }, action: RuleAction::NoNat },
        translate_all("192.168.1.0/24", 0),
        Rule {
            matches: RuleMatch {
                src: vec![pfx("192.168.0.0/16")],
                src_except: vec![pfx("192.168.1.0/24")],
                protocols: proto::TCP | proto::UDP,
                ..Default::default()
            },
            action: RuleAction::Translate { pool: 1 },
        },
    ];
    let mut n = Nat::new(EngineParams::single(pools, rules));
    let a = n.out(udp(ip("192.168.1.5"), 1000, ip("198.51.100.1"), 53, b""));
    assert_eq!(tuple(&a).0, ip("203.0.113.1"));
    let b = n.out(udp(ip("192.168.2.5"), 1000, ip("198.51.100.1"), 53, b""));
    assert_eq!(tuple(&b).0, ip("203.0.113.2"));
    let vpn = n.out(udp(ip("192.168.2.5"), 1000, ip("10.1.2.3"), 53, b""));
    assert_eq!(tuple(&vpn).0, ip("192.168.2.5"), "exempt: routed unchanged");
}

#[test]
fn one_inside_endpoint_holds_a_mapping_in_each_of_two_pools_at_once() {
    // Rules by destination send one source to two pools: the endpoint's
    // two mappings share a home slot in the mapping index (its key leaves
    // the pool out, so the batch can ask for it early), and each flow must
    // still take its own pool's mapping (RFC 4787 REQ-1 within a pool).
    let pools = vec![PoolParams::cgnat("a", vec![ip("203.0.113.1")]), PoolParams::cgnat("b", vec![ip("203.0.113.2")])];
    let by_dst = |dst: &str, pool: u16| Rule {
        matches: RuleMatch { src: vec![pfx("100.64.0.0/10")], dst: vec![pfx(dst)], ..Default::default() },
        action: RuleAction::Translate { pool },
    };
    let mut n = Nat::new(EngineParams::single(pools, vec![by_dst("198.51.100.0/24", 0), by_dst("192.0.2.0/24", 1)]));
    let src = ip("100.64.0.9");
    let a1 = tuple(&n.out(udp(src, 5000, ip("198.51.100.1"), 53, b"")));
    let b1 = tuple(&n.out(udp(src, 5000, ip("192.0.2.1"), 53, b"")));
    let a2 = tuple(&n.out(udp(src, 5000, ip("198.51.100.2"), 53, b"")));
    let b2 = tuple(&n.out(udp(src, 5000, ip("192.0.2.2"), 53, b"")));
    assert_eq!(a1.0, ip("203.0.113.1"));
    assert_eq!(b1.0, ip("203.0.113.2"));
    assert_eq!((a2.0, a2.1), (a1.0, a1.1), "pool a's mapping reused");
    assert_eq!((b2.0, b2.1), (b1.0, b1.1), "pool b's mapping reused");
    // Either pool's mapping answers its own remotes.
    for (t, remote) in [(a1, ip("198.51.100.2")), (b1, ip("192.0.2.2"))] {
        let back = n.back(udp(remote, 53, t.0, t.1, b""));
        assert_eq!(tuple(&back).2, src);
    }
}

#[test]
fn snat_to_a_list_is_persistent_per_subscriber() {
    let mut n = Nat::new(cgnat_params());
    let first = tuple(&n.out(tcp(ip("100.64.7.7"), 3000, ip("198.51.100.1"), 443, SYN))).0;
    for i in 0..20 {
        let t = n.out(tcp(ip("100.64.7.7"), 3001 + i, ip("198.51.100.9"), 443, SYN));
        assert_eq!(tuple(&t).0, first);
    }
}

fn forward_params() -> EngineParams {
    let mut p = cgnat_params();
    p.forwards = vec![Forward::one(6, ip("203.0.113.1"), 8080, ip("100.64.0.5"), 80)];
    p
}

#[test]
fn static_port_forward_dnat_reaches_inside_server_and_replies_return() {
    let mut n = Nat::new(forward_params());
    let syn = n.back(tcp(ip("192.0.2.9"), 41000, ip("203.0.113.1"), 8080, SYN));
    assert_eq!(tuple(&syn), (ip("192.0.2.9"), 41000, ip("100.64.0.5"), 80));
    let synack = n.out(tcp(ip("100.64.0.5"), 80, ip("192.0.2.9"), 41000, SYN | ACK));
    assert_eq!(tuple(&synack), (ip("203.0.113.1"), 8080, ip("192.0.2.9"), 41000));
    n.back(tcp(ip("192.0.2.9"), 41000, ip("203.0.113.1"), 8080, ACK));
    let info: Vec<_> = n.e.sessions(n.now).collect();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].state, "established");
    // A non-SYN to the forward with no session does not open one.
    let mut stray = tcp(ip("192.0.2.10"), 41000, ip("203.0.113.1"), 8080, ACK);
    assert_eq!(n.send(OUT, &mut stray), Verdict::Drop(DropReason::TcpNotSyn));
}

#[test]
fn forward_port_is_never_handed_to_a_subscriber() {
    // One address with one block of 64 ports (8064-8127) that holds the
    // forward's port 8080: a subscriber asking for each of the 64 ports in
    // turn gets the 63 others, then runs out; 8080 is never handed out.
    let mut pool = PoolParams::cgnat("cgnat", vec![ip("203.0.113.1")]);
    (pool.port_min, pool.port_max) = (8064, 8127);
    pool.mode = PoolMode::PortBlocks { block_size: 64, max_blocks_per_subscriber: 1 };
    let mut p = EngineParams::single(vec![pool], vec![translate_all("100.64.0.0/10", 0)]);
    p.forwards = forward_params().forwards;
    let mut n = Nat::new(p);
    let mut public_ports = std::collections::BTreeSet::new();
    for sport in 8064..8128u16 {
        let mut f = tcp(ip("100.64.3.1"), sport, ip("198.51.100.1"), 80, SYN);
        match n.send(IN, &mut f) {
            Verdict::Forward(OUT) => assert!(public_ports.insert(tuple(&f).1), "a port handed out twice"),
            v => assert_eq!(v, Verdict::Drop(DropReason::PortsExhausted)),
        }
    }
    assert!(!public_ports.contains(&8080), "the forward's port went to a subscriber");
    assert_eq!(public_ports.len(), 63, "every other port of the block");
}

#[test]
fn reply_to_an_untranslated_inbound_connection_keeps_its_addresses() {
    // The seeds' MASQUERADE question: a SYN from outside reaches an exempt
    // inside host; its SYN/ACK must not be masqueraded, though a catch-all
    // translate rule would match it as a new flow.
    let mut p = cgnat_params();
    p.rules.insert(
        0,
        Rule {
            matches: RuleMatch { src: vec![pfx("100.64.9.0/24")], ..Default::default() },
            action: RuleAction::NoNat,
        },
    );
    let mut n = Nat::new(p);
    let syn = n.back(tcp(ip("192.0.2.9"), 41000, ip("100.64.9.5"), 22, SYN));
    assert_eq!(tuple(&syn), (ip("192.0.2.9"), 41000, ip("100.64.9.5"), 22));
    let synack = n.out(tcp(ip("100.64.9.5"), 22, ip("192.0.2.9"), 41000, SYN | ACK));
    assert_eq!(tuple(&synack), (ip("100.64.9.5"), 22, ip("192.0.2.9"), 41000));
}

#[test]
fn outside_syn_with_no_session_or_forward_is_dropped_no_session() {
    let mut n = Nat::new(cgnat_params());
    let mut f = tcp(ip("192.0.2.9"), 41000, ip("203.0.113.2"), 22, SYN);
    let before = f.clone();
    assert_eq!(n.send(OUT, &mut f), Verdict::Drop(DropReason::NoSession));
    assert_eq!(f, before, "a dropped frame is not modified");
    // Towards an inside address that no rule exempts: dropped too.
    let mut g = tcp(ip("192.0.2.9"), 41000, ip("100.64.1.2"), 22, SYN);
    assert_eq!(n.send(OUT, &mut g), Verdict::Drop(DropReason::NoSession));
    assert_eq!(n.e.counters().drop_count(DropReason::NoSession), 2);
    assert_eq!(n.e.live_sessions(), 0);
}

#[test]
fn tcp_state_drives_timeouts_rfc5382() {
    let mut n = Nat::new(cgnat_params());
    let t = n.out(tcp(ip("100.64.1.2"), 40000, ip("198.51.100.1"), 80, SYN));
    let (pi, pp, _, _) = tuple(&t);
    assert_eq!(n.e.sessions(n.now).next().unwrap().state, "syn_sent");
    n.back(tcp(ip("198.51.100.1"), 80, pi, pp, SYN | ACK));
    n.out(tcp(ip("100.64.1.2"), 40000, ip("198.51.100.1"), 80, ACK));
    assert_eq!(n.e.sessions(n.now).next().unwrap().state, "established");
    // Idle for an hour: still there (established timeout 2 h 4 min).
    n.now += 3600;
    n.out(tcp(ip("100.64.1.2"), 40000, ip("198.51.100.1"), 80, ACK));
    n.now += 7439;
    n.e.expire(n.now, 1000);
    assert_eq!(n.e.live_sessions(), 1);
    n.now += 1;
    n.e.expire(n.now, 1000);
    assert_eq!(n.e.live_sessions(), 0);
    assert_eq!(n.e.counters().sessions_expired, 1);
}

#[test]
fn tcp_fin_and_rst_move_to_the_transitory_timeout() {
    for close in [FIN | ACK, RST] {
        let mut n = Nat::new(cgnat_params());
        let t = n.out(tcp(ip("100.64.1.2"), 40000, ip("198.51.100.1"), 80, SYN));
        let (pi, pp, _, _) = tuple(&t);
        n.back(tcp(ip("198.51.100.1"), 80, pi, pp, SYN | ACK));
        n.out(tcp(ip("100.64.1.2"), 40000, ip("198.51.100.1"), 80, ACK));
        n.out(tcp(ip("100.64.1.2"), 40000, ip("198.51.100.1"), 80, close));
        n.now += 239;
        n.e.expire(n.now, 1000);
        assert_eq!(n.e.live_sessions(), 1, "transitory timeout is 4 min");
        n.now += 1;
        n.e.expire(n.now, 1000);
        assert_eq!(n.e.live_sessions(), 0);
    }
}

#[test]
fn udp_session_expires_after_five_minutes_idle_rfc4787_req5() {
    let mut n = Nat::new(cgnat_params());
    let t = n.out(udp(ip("100.64.1.2"), 5000, ip("198.51.100.1"), 53, b""));
    // Answered within the unreplied timeout (120 s), so it takes the full one.
    n.now += 100;
    n.back(reply_udp(&t, b"keepalive from outside refreshes too"));
    n.now += 299;
    n.e.expire(n.now, 1000);
    assert_eq!(n.e.live_sessions(), 1);
    n.now += 1;
    n.e.expire(n.now, 1000);
    assert_eq!(n.e.live_sessions(), 0);
    // Its reply now finds nothing.
    let mut late = reply_udp(&t, b"late");
    assert_eq!(n.send(OUT, &mut late), Verdict::Drop(DropReason::NoSession));
}

#[test]
fn a_stale_session_is_not_used_even_before_the_sweep_reclaims_it() {
    let mut n = Nat::new(cgnat_params());
    let t = n.out(udp(ip("100.64.1.2"), 5000, ip("198.51.100.1"), 53, b""));
    n.now += 300;
    let mut late = reply_udp(&t, b"late");
    // process_one sweeps first, so check the verdict, not the sweep.
    assert_eq!(n.send(OUT, &mut late), Verdict::Drop(DropReason::NoSession));
}

#[test]
fn icmp_echo_is_translated_by_identifier() {
    let mut n = Nat::new(home_params());
    let a = n.out(icmp_echo(ip("192.168.1.20"), ip("198.51.100.1"), 77, 1, true));
    assert_eq!(tuple(&a), (ip("198.51.100.10"), 77, ip("198.51.100.1"), 77));
    // Another host pinging with the same identifier gets another one.
    let b = n.out(icmp_echo(ip("192.168.1.21"), ip("198.51.100.1"), 77, 1, true));
    let bid = tuple(&b).1;
    assert_ne!(bid, 77);
    let ra = n.back(icmp_echo(ip("198.51.100.1"), ip("198.51.100.10"), 77, 1, false));
    assert_eq!(tuple(&ra), (ip("198.51.100.1"), 77, ip("192.168.1.20"), 77));
    let rb = n.back(icmp_echo(ip("198.51.100.1"), ip("198.51.100.10"), bid, 1, false));
    assert_eq!(tuple(&rb), (ip("198.51.100.1"), 77, ip("192.168.1.21"), 77));
}

#[test]
fn icmp_error_from_outside_is_translated_with_its_embedded_header_rfc5508() {
    let mut n = Nat::new(cgnat_params());
    let orig = udp(ip("100.64.1.2"), 33434, ip("198.51.100.1"), 33434, b"traceroute");
    let t = n.out(orig.clone());
    let (pi, _, _, _) = tuple(&t);
    for quote in [8usize, 18] {
        // A router on the way says time exceeded, quoting what it saw.
        let err = icmp_error(ip("192.0.2.254"), pi, 11, 0, &t, quote);
        let r = n.back(err);
        assert_eq!(tuple(&r).2, ip("100.64.1.2"), "outer destination");
        assert_eq!(tuple(&r).0, ip("192.0.2.254"), "outer source kept");
        // Embedded header now shows the inside endpoint, with a valid checksum.
        let emb = &r[14 + 20 + 8..];
        assert_eq!(u32::from_be_bytes(emb[12..16].try_into().unwrap()), ip("100.64.1.2"));
        assert_eq!(u16::from_be_bytes(emb[20..22].try_into().unwrap()), 33434);
        assert!(dataplane::wire::checksum::verify(&emb[..20]), "embedded IP checksum");
    }
    assert_eq!(n.e.counters().icmp_errors_translated, 2);
}

#[test]
fn icmp_error_from_inside_is_translated_back_to_the_public_endpoint() {
    let mut p = forward_params();
    p.forwards[0].protocol = 17;
    let mut n = Nat::new(p);
    let inbound = n.back(udp(ip("192.0.2.9"), 4000, ip("203.0.113.1"), 8080, b"hello"));
    // The server says port unreachable.
    let err = icmp_error(ip("100.64.0.5"), ip("192.0.2.9"), 3, 3, &inbound, 8);
    let r = n.out(err);
    assert_eq!(tuple(&r).0, ip("203.0.113.1"));
    let emb = &r[14 + 20 + 8..];
    assert_eq!(u32::from_be_bytes(emb[16..20].try_into().unwrap()), ip("203.0.113.1"));
    assert_eq!(u16::from_be_bytes(emb[22..24].try_into().unwrap()), 8080);
    assert!(dataplane::wire::checksum::verify(&emb[..20]));
    // An error about nothing we know is dropped with its own reason.
    let stray = udp(ip("198.51.100.1"), 1, ip("203.0.113.3"), 2, b"");
    let mut e2 = icmp_error(ip("192.0.2.254"), ip("203.0.113.3"), 3, 1, &stray, 8);
    assert_eq!(n.send(OUT, &mut e2), Verdict::Drop(DropReason::IcmpErrorNoSession));
}

#[test]
fn hairpinning_between_two_subscribers_rfc4787_req9() {
    let mut n = Nat::new(cgnat_params());
    let b = ip("100.64.2.2");
    let tb = n.out(udp(b, 5000, ip("198.51.100.1"), 3478, b"stun"));
    let (pb, pbp, _, _) = tuple(&tb);
    let a = ip("100.64.1.1");
    let h = n.pass(IN, udp(a, 6000, pb, pbp, b"hi B"), IN);
    let (src, sport, dst, dport) = tuple(&h);
    assert_eq!((dst, dport), (b, 5000), "delivered to B's inside endpoint");
    assert!((ip("203.0.113.1")..=ip("203.0.113.4")).contains(&src), "seen from A's public endpoint");
    assert_eq!(build::ttl(&h), 63, "one hop");
    // B answers A's public endpoint; A sees it from B's public endpoint.
    let back = n.pass(IN, udp(b, 5000, src, sport, b"hi A"), IN);
    assert_eq!(tuple(&back), (pb, pbp, a, 6000));
    assert_eq!(n.e.counters().hairpinned, 2);
}

#[test]
fn ttl_expiring_at_the_nat_goes_to_the_kernel_for_time_exceeded() {
    let mut n = Nat::new(cgnat_params());
    let with_ttl = |mut f: Vec<u8>, ttl: u8| {
        f[14 + 8] = ttl;
        let c = dataplane::wire::checksum::checksum(&{
            let mut h = f[14..34].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        });
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f
    };
    let mut f = with_ttl(udp(ip("100.64.1.2"), 33434, ip("198.51.100.1"), 33434, b""), 1);
    assert_eq!(n.send(IN, &mut f), Verdict::PassToKernel(PassReason::TtlExpired));
    assert_eq!(n.e.live_sessions(), 0);
    // The same on a flow in its steady state (the fast lane's own check):
    // the frame is left as it came, and the flow goes on.
    let mut out = udp(ip("100.64.1.2"), 4000, ip("198.51.100.1"), 53, b"q");
    assert_eq!(n.send(IN, &mut out), Verdict::Forward(OUT));
    let mut back = reply_udp(&out, b"a");
    assert_eq!(n.send(OUT, &mut back), Verdict::Forward(IN));
    for _ in 0..2 {
        let mut f = with_ttl(udp(ip("100.64.1.2"), 4000, ip("198.51.100.1"), 53, b"q"), 1);
        let before = f.clone();
        assert_eq!(n.send(IN, &mut f), Verdict::PassToKernel(PassReason::TtlExpired));
        assert_eq!(f, before, "untouched");
        let mut f = with_ttl(reply_udp(&out, b"a"), 1);
        let before = f.clone();
        assert_eq!(n.send(OUT, &mut f), Verdict::PassToKernel(PassReason::TtlExpired));
        assert_eq!(f, before, "untouched");
    }
    let mut again = udp(ip("100.64.1.2"), 4000, ip("198.51.100.1"), 53, b"q");
    assert_eq!(n.send(IN, &mut again), Verdict::Forward(OUT));
    assert_eq!(tuple(&again), tuple(&out));
}

#[test]
fn fragments_follow_their_first_fragment_and_unknown_ones_expire_in_the_hold() {
    let mut n = Nat::new(cgnat_params());
    let (src, dst) = (ip("100.64.1.2"), ip("198.51.100.1"));
    let seg = build::udp_segment(src, 7000, dst, 9, &[7u8; 64]);
    let first = build::frame_frag(src, dst, 17, &seg[..40], 64, 0x4242, 0x2000);
    let later = build::frame_frag(src, dst, 17, &seg[40..], 64, 0x4242, 5);
    let mut f1 = first.clone();
    assert_eq!(n.send(IN, &mut f1), Verdict::Forward(OUT));
    let mut f2 = later.clone();
    assert_eq!(n.send(IN, &mut f2), Verdict::Forward(OUT));
    assert_eq!(&f2[26..30], &f1[26..30], "later fragment gets the same public source");
    assert!(dataplane::wire::checksum::verify(&f2[14..34]));
    // Reassembled, the translated datagram's UDP checksum verifies.
    let mut whole = f1[34..].to_vec();
    whole.extend_from_slice(&f2[34..]);
    let ps = dataplane::wire::checksum::pseudo_header_sum(
        u32::from_be_bytes(f1[26..30].try_into().unwrap()),
        dst,
        17,
        whole.len() as u16,
    );
    assert_eq!(dataplane::wire::checksum::fold(ps + dataplane::wire::checksum::sum(&whole)), 0xffff);
    // One whose first never comes waits in the hold, then is dropped (`nat::frag`).
    let mut stray = build::frame_frag(src, dst, 17, &seg[40..], 64, 0x4243, 5);
    assert_eq!(n.send(IN, &mut stray), Verdict::Held);
    n.now += n.e.timeouts().fragment_secs;
    n.e.expire(n.now, 1);
    assert_eq!(n.e.counters().drop_count(DropReason::FragmentHoldExpired), 1);
}

#[test]
fn fragments_of_an_established_flow_follow_in_both_directions() {
    // The lab found this: a fragmented datagram on a flow that already has
    // its session (the second request, or any reply) lost its later fragments.
    let mut n = Nat::new(cgnat_params());
    let (src, dst) = (ip("100.64.1.2"), ip("198.51.100.1"));
    let out = n.out(udp(src, 7000, dst, 9, b"hello"));
    let (pub_ip, pub_port, _, _) = tuple(&out);
    n.back(reply_udp(&out, b"hi"));
    // Inside to outside, the session exists.
    let seg = build::udp_segment(src, 7000, dst, 9, &[7u8; 64]);
    let mut f1 = build::frame_frag(src, dst, 17, &seg[..40], 64, 0x5151, 0x2000);
    assert_eq!(n.send(IN, &mut f1), Verdict::Forward(OUT));
    let mut f2 = build::frame_frag(src, dst, 17, &seg[40..], 64, 0x5151, 5);
    assert_eq!(n.send(IN, &mut f2), Verdict::Forward(OUT));
    assert_eq!(u32::from_be_bytes(f2[26..30].try_into().unwrap()), pub_ip);
    // Outside to inside: a fragmented reply.
    let seg = build::udp_segment(dst, 9, pub_ip, pub_port, &[9u8; 64]);
    let mut r1 = build::frame_frag(dst, pub_ip, 17, &seg[..40], 64, 0x6161, 0x2000);
    assert_eq!(n.send(OUT, &mut r1), Verdict::Forward(IN));
    let mut r2 = build::frame_frag(dst, pub_ip, 17, &seg[40..], 64, 0x6161, 5);
    assert_eq!(n.send(OUT, &mut r2), Verdict::Forward(IN));
    assert_eq!(u32::from_be_bytes(r2[30..34].try_into().unwrap()), src, "the later fragment reaches the subscriber");
    assert!(dataplane::wire::checksum::verify(&r2[14..34]));
}

#[test]
fn table_full_evicts_the_oldest_unreplied_session_never_an_established_one() {
    let mut p = cgnat_params();
    p.max_sessions = 3;
    let mut n = Nat::new(p);
    // Two established TCP connections...
    for port in [1000u16, 1001] {
        let t = n.out(tcp(ip("100.64.1.2"), port, ip("198.51.100.1"), 80, SYN));
        let (pi, pp, _, _) = tuple(&t);
        n.back(tcp(ip("198.51.100.1"), 80, pi, pp, SYN | ACK));
        n.out(tcp(ip("100.64.1.2"), port, ip("198.51.100.1"), 80, ACK));
    }
    // ...and one unreplied UDP flow fill the table.
    n.now += 1;
    n.out(udp(ip("100.64.1.3"), 5000, ip("198.51.100.1"), 53, b""));
    n.now += 1;
    let t = n.out(udp(ip("100.64.1.3"), 5001, ip("198.51.100.1"), 53, b""));
    assert_eq!(n.e.counters().sessions_evicted, 1);
    assert_eq!(n.e.live_sessions(), 3);
    let states: Vec<_> = n.e.sessions(n.now).map(|s| (s.inside.1, s.state)).collect();
    assert!(states.contains(&(5001, "udp")) && !states.contains(&(5000, "udp")), "{states:?}");
    // Once it is answered, nothing is evictable.
    n.back(reply_udp(&t, b""));
    let mut f = udp(ip("100.64.1.4"), 1, ip("198.51.100.1"), 53, b"");
    assert_eq!(n.send(IN, &mut f), Verdict::Drop(DropReason::TableFull));
    assert_eq!(n.e.live_sessions(), 3);
}

#[test]
fn expired_sessions_are_reclaimed_before_anything_is_evicted() {
    let mut p = cgnat_params();
    p.max_sessions = 2;
    let mut n = Nat::new(p);
    n.out(udp(ip("100.64.1.2"), 1, ip("198.51.100.1"), 53, b""));
    n.out(udp(ip("100.64.1.2"), 2, ip("198.51.100.1"), 53, b""));
    n.now += 301;
    n.out(udp(ip("100.64.1.2"), 3, ip("198.51.100.1"), 53, b""));
    assert_eq!(n.e.counters().sessions_evicted, 0);
    assert_eq!(n.e.counters().sessions_expired, 2);
}

#[test]
fn arp_ipv6_and_multicast_pass_to_the_kernel() {
    let mut n = Nat::new(cgnat_params());
    let mut arp = vec![0xffu8; 14];
    arp.extend_from_slice(&[0u8; 28]);
    arp[12] = 0x08;
    arp[13] = 0x06;
    assert_eq!(n.send(IN, &mut arp), Verdict::PassToKernel(PassReason::NotIpv4));
    let mut mc = udp(ip("100.64.1.2"), 5353, ip("224.0.0.251"), 5353, b"");
    assert_eq!(n.send(IN, &mut mc), Verdict::PassToKernel(PassReason::Multicast));
    let mut bc = udp(ip("100.64.1.2"), 68, ip("255.255.255.255"), 67, b"");
    assert_eq!(n.send(IN, &mut bc), Verdict::PassToKernel(PassReason::Multicast));
}

#[test]
fn traffic_for_the_box_itself_passes_to_the_kernel() {
    let mut n = Nat::new(home_params());
    let mut ssh = tcp(ip("192.168.1.20"), 40000, ip("192.168.1.1"), 22, SYN);
    assert_eq!(n.send(IN, &mut ssh), Verdict::PassToKernel(PassReason::ToSelf));
    let mut wan = tcp(ip("192.0.2.9"), 40000, ip("198.51.100.10"), 22, SYN);
    assert_eq!(n.send(OUT, &mut wan), Verdict::PassToKernel(PassReason::ToSelf));
    let mut ping = icmp_echo(ip("192.0.2.9"), ip("198.51.100.10"), 9, 1, true);
    assert_eq!(n.send(OUT, &mut ping), Verdict::PassToKernel(PassReason::ToSelf));
    assert_eq!(n.e.live_sessions(), 0);
}

#[test]
fn malformed_frames_are_dropped_with_a_reason_never_a_panic() {
    let mut n = Nat::new(cgnat_params());
    let good = udp(ip("100.64.1.2"), 1, ip("198.51.100.1"), 2, b"abc");
    for cut in 0..good.len() {
        let mut f = good[..cut].to_vec();
        let v = n.send(IN, &mut f);
        assert!(matches!(v, Verdict::Drop(DropReason::Malformed)), "cut {cut}: {v:?}");
    }
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44;
    assert_eq!(n.send(IN, &mut bad_ihl), Verdict::Drop(DropReason::Malformed));
    let mut gre = build::frame(ip("198.51.100.1"), ip("203.0.113.1"), 47, &[0u8; 8], 64);
    assert_eq!(n.send(OUT, &mut gre), Verdict::Drop(DropReason::UnsupportedProtocol));
}

#[test]
fn a_steady_flows_frame_too_short_for_its_header_or_cut_short_is_not_translated() {
    // The fast lane's length test (`parse::fast_key`): a frame of an
    // answered UDP flow or an established TCP connection whose IP total
    // length is below the protocol's header (the frame padded past it, as
    // Ethernet pads) or past the frame's end is the general path's, which
    // drops it as malformed; the same frames whole are translated.
    let mut n = Nat::new(cgnat_params());
    let (inside, remote) = (ip("100.64.1.2"), ip("198.51.100.1"));
    let t = n.out(udp(inside, 1000, remote, 53, b"q"));
    n.back(reply_udp(&t, b"a"));
    let t = n.out(tcp(inside, 1001, remote, 443, SYN));
    let (pi, pp, _, _) = tuple(&t);
    n.back(tcp(remote, 443, pi, pp, SYN | ACK));
    n.out(tcp(inside, 1001, remote, 443, ACK));
    let steady =
        [(udp(inside, 1000, remote, 53, b"0123456789abcdef0123"), 28), (tcp(inside, 1001, remote, 443, ACK), 40)];
    for (good, least) in steady {
        let whole = u16::try_from(good.len() - L3).unwrap();
        for total in [0, 19, 20, least - 1, whole + 1, 0xffff] {
            let mut f = good.clone();
            f[TOTAL_LEN..TOTAL_LEN + 2].copy_from_slice(&total.to_be_bytes());
            assert_eq!(
                n.send(IN, &mut f),
                Verdict::Drop(DropReason::Malformed),
                "total length {total} of {}",
                good.len()
            );
        }
        let mut f = good.clone();
        assert_eq!(n.send(IN, &mut f), Verdict::Forward(OUT), "whole, {} bytes", good.len());
    }
}

#[test]
fn masquerade_address_change_flushes_its_sessions() {
    let mut n = Nat::new(home_params());
    n.out(udp(ip("192.168.1.20"), 5000, ip("198.51.100.1"), 53, b""));
    let flushed = n.e.set_masquerade_address(0, ip("198.51.100.99"), n.now).unwrap();
    assert_eq!(flushed, 1);
    let t = n.out(udp(ip("192.168.1.20"), 5000, ip("198.51.100.1"), 53, b""));
    assert_eq!(tuple(&t).0, ip("198.51.100.99"));
}

#[test]
fn ownership_hands_packets_to_the_owning_worker() {
    let [mut w0, mut w1] = Nat::two(cgnat_params());
    // Find a subscriber owned by worker 1; worker 0 hands it over.
    let sub = owned_by(1, "100.64.5.0");
    let f = udp(sub, 5000, ip("198.51.100.1"), 53, b"");
    let mut g = f.clone();
    assert_eq!(w0.send(IN, &mut g), Verdict::HandOff { worker: 1, arrived_on: IN });
    let t = w1.out(f);
    let (pi, pp, _, _) = tuple(&t);
    assert_eq!(w0.e.public_owner(pi, pp), Some(1), "its public port belongs to its owner");
    let mut r = reply_udp(&t, b"");
    assert_eq!(w0.send(OUT, &mut r), Verdict::HandOff { worker: 1, arrived_on: OUT });
    w1.back(reply_udp(&t, b""));
    assert_eq!(w0.e.counters().handoffs, 2);
}

#[test]
fn an_inside_hosts_icmp_error_at_the_other_worker_reaches_its_owner() {
    // A subscriber's host answers an inbound datagram with "port
    // unreachable"; the error can come off the inside wire at either worker
    // (RSS hashes ICMP on addresses only), and only the subscriber's worker
    // holds the session it quotes.
    let [mut w0, mut w1] = Nat::two(cgnat_params());
    let sub = owned_by(1, "100.64.5.0");
    let t = w1.out(udp(sub, 5000, ip("198.51.100.1"), 53, b"q"));
    let inbound = w1.back(reply_udp(&t, b"a"));
    let err = icmp_error(sub, ip("198.51.100.1"), 3, 3, &inbound, 8);
    let mut at0 = err.clone();
    assert_eq!(w0.send(IN, &mut at0), Verdict::HandOff { worker: 1, arrived_on: IN });
    assert_eq!(w0.e.counters().drop_count(DropReason::IcmpErrorNoSession), 0);
    // Its owner translates it: from the public address, quoting the public endpoint.
    let out = w1.out(err);
    let (src, _, dst, _) = tuple(&out);
    assert_eq!((src, dst), (tuple(&t).0, ip("198.51.100.1")));
    assert!(checksums_ok(&out));
}

#[test]
fn a_batch_gives_the_same_verdicts_as_one_at_a_time() {
    let mut frames: Vec<Vec<u8>> = (0..150u32)
        .map(|i| match i % 5 {
            0 => udp(ip("100.64.1.0") + i, 1000 + i as u16, ip("198.51.100.1"), 53, b""),
            1 => tcp(ip("100.64.1.0") + i, 1000, ip("198.51.100.1"), 80, SYN),
            2 => icmp_echo(ip("100.64.1.0") + i, ip("198.51.100.1"), i as u16, 1, true),
            3 => udp(ip("100.64.1.0") + i % 3, 1000, ip("198.51.100.1"), 53, b""),
            _ => vec![1, 2, 3],
        })
        .collect();
    let mut copy = frames.clone();
    let mut a = Nat::new(cgnat_params());
    let mut b = Nat::new(cgnat_params());
    let mut verdicts = vec![Verdict::Drop(DropReason::Malformed); frames.len()];
    a.e.process(IN, a.now, &mut frames, &mut verdicts);
    for (f, v) in copy.iter_mut().zip(&verdicts) {
        assert_eq!(b.e.process_one(IN, b.now, f), *v);
    }
    assert_eq!(frames, copy);
    assert_eq!(a.e.counters(), b.e.counters());
}

/// Checks the IPv4 and TCP/UDP checksums of a frame whose IPv4 header starts at `l3`.
fn checksums_ok_at(f: &[u8], l3: usize) -> bool {
    let mut plain = f[..12].to_vec();
    plain.extend_from_slice(&f[l3 - 2..]);
    checksums_ok(&plain)
}

#[test]
fn vlan_tagged_frames_are_translated_and_keep_their_tag() {
    let mut n = Nat::new(cgnat_params());
    let plain = udp(ip("100.64.1.2"), 40000, ip("198.51.100.1"), 53, b"tagged");
    // Insert an 802.1Q tag (VLAN 100) after the MAC addresses.
    let mut f = plain[..12].to_vec();
    f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
    f.extend_from_slice(&plain[12..]);
    assert_eq!(n.send(IN, &mut f), Verdict::Forward(OUT));
    assert_eq!(&f[12..16], &[0x81, 0x00, 0x00, 0x64], "tag kept");
    assert!(checksums_ok_at(&f, 18));
    let src = u32::from_be_bytes(f[18 + 12..18 + 16].try_into().unwrap());
    assert!((ip("203.0.113.1")..=ip("203.0.113.4")).contains(&src));
    assert_eq!(build::ttl(&f[4..]), 63);
}

#[test]
fn packets_with_ip_options_are_translated_past_the_options() {
    let mut n = Nat::new(cgnat_params());
    let (src, dst) = (ip("100.64.1.2"), ip("198.51.100.1"));
    let seg = build::tcp_segment(src, 40000, dst, 80, SYN, b"");
    // IHL 6: one option word (NOP NOP NOP EOL) between header and TCP.
    let mut h = vec![0x46, 0];
    h.extend_from_slice(&((24 + seg.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, 6, 0, 0]);
    h.extend_from_slice(&src.to_be_bytes());
    h.extend_from_slice(&dst.to_be_bytes());
    h.extend_from_slice(&[1, 1, 1, 0]);
    let c = dataplane::wire::checksum::checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = build::frame(src, dst, 6, &[], 64)[..14].to_vec();
    f.extend_from_slice(&h);
    f.extend_from_slice(&seg);
    let before_opts = f[34..38].to_vec();
    assert_eq!(n.send(IN, &mut f), Verdict::Forward(OUT));
    assert_eq!(&f[34..38], &before_opts[..], "options untouched");
    assert!(checksums_ok(&f), "IP and TCP checksums");
    let sport = u16::from_be_bytes([f[38], f[39]]);
    let new_src = u32::from_be_bytes(f[26..30].try_into().unwrap());
    assert!((ip("203.0.113.1")..=ip("203.0.113.4")).contains(&new_src));
    // The reply reaches the inside host.
    let r = n.back(tcp(dst, 80, new_src, sport, SYN | ACK));
    assert_eq!(tuple(&r), (dst, 80, src, 40000));
}

#[test]
fn a_live_change_moves_new_flows_and_keeps_existing_mappings() {
    let mut n = Nat::new(cgnat_params());
    let old = n.out(udp(ip("100.64.1.2"), 4000, ip("198.51.100.1"), 53, b"q"));
    n.back(reply_udp(&old, b"a"));
    // A new pool; the rule now sends everyone there.
    let mut p = cgnat_params();
    p.pools.push(PoolParams::cgnat("new", vec![ip("192.0.2.10")]));
    p.rules = vec![translate_all("100.64.0.0/10", 1)];
    assert_eq!(n.e.reconfigure(&p, n.now), Ok(0));
    // The existing flow keeps its mapping, both ways.
    let again = n.out(udp(ip("100.64.1.2"), 4000, ip("198.51.100.1"), 53, b"q"));
    assert_eq!(tuple(&again), tuple(&old));
    n.back(reply_udp(&again, b"a"));
    // A new flow takes the new pool.
    let fresh = n.out(udp(ip("100.64.1.3"), 4000, ip("198.51.100.1"), 53, b"q"));
    assert_eq!(tuple(&fresh).0, ip("192.0.2.10"));
    n.back(reply_udp(&fresh, b"a"));
}

#[test]
fn an_address_removed_live_loses_its_sessions_and_takes_no_new_ones() {
    let mut n = Nat::new(cgnat_params());
    let mut by_addr = std::collections::HashMap::new();
    for i in 0..64u32 {
        let f = n.out(udp(ip("100.64.2.0") + i, 5000, ip("198.51.100.1"), 53, b"q"));
        by_addr.entry(tuple(&f).0).or_insert_with(Vec::new).push(f);
    }
    let victim = ip("203.0.113.1");
    let on_victim = by_addr.get(&victim).map_or(0, Vec::len);
    assert!(on_victim > 0, "some subscribers are paired with {victim:#x}");
    let mut p = cgnat_params();
    p.pools[0].addresses.retain(|&a| a != victim);
    assert_eq!(n.e.reconfigure(&p, n.now), Ok(on_victim));
    // Its replies find nothing now; the other addresses' still do.
    let mut r = reply_udp(&by_addr[&victim][0], b"a");
    assert_eq!(n.send(OUT, &mut r), Verdict::Drop(DropReason::NoSession));
    let other = by_addr.iter().find(|(a, _)| **a != victim).unwrap().1[0].clone();
    n.back(reply_udp(&other, b"a"));
    // New subscribers never get it.
    for i in 0..64u32 {
        let f = n.out(udp(ip("100.64.3.0") + i, 5000, ip("198.51.100.1"), 53, b"q"));
        assert_ne!(tuple(&f).0, victim);
    }
}

#[test]
fn a_pool_or_address_removed_live_can_come_back() {
    let mut n = Nat::new(cgnat_params());
    let victim = ip("203.0.113.1");
    // An address leaves its pool and returns.
    let mut p = cgnat_params();
    p.pools[0].addresses.retain(|&a| a != victim);
    assert_eq!(n.e.reconfigure(&p, n.now), Ok(0));
    assert_eq!(n.e.reconfigure(&cgnat_params(), n.now), Ok(0), "an address the pool had may return");
    let mut seen = std::collections::HashSet::new();
    for i in 0..64u32 {
        let f = n.out(udp(ip("100.64.4.0") + i, 5000, ip("198.51.100.1"), 53, b"q"));
        seen.insert(tuple(&f).0);
        n.back(reply_udp(&f, b"a"));
    }
    assert!(seen.contains(&victim), "new subscribers are paired with the returned address again: {seen:x?}");
    // The whole pool goes (replaced by another) and comes back by name.
    let mut other = cgnat_params();
    other.pools = vec![PoolParams::cgnat("other", vec![ip("192.0.2.10")])];
    assert_eq!(n.e.reconfigure(&other, n.now), Ok(64));
    assert_eq!(n.e.reconfigure(&cgnat_params(), n.now), Ok(0), "a pool removed live may be pushed again");
    let f = n.out(udp(ip("100.64.5.1"), 5000, ip("198.51.100.1"), 53, b"q"));
    assert_ne!(tuple(&f).0, ip("192.0.2.10"));
    n.back(reply_udp(&f, b"a"));
    // An address the pool never had still needs a restart.
    let mut grown = cgnat_params();
    grown.pools[0].addresses.push(ip("203.0.113.9"));
    assert!(n.e.reconfigure(&grown, n.now).is_err());
}

#[test]
fn a_change_that_cannot_apply_live_is_refused_whole() {
    let mut n = Nat::new(cgnat_params());
    let first = n.out(udp(ip("100.64.1.2"), 4000, ip("198.51.100.1"), 53, b"q"));
    let pool = |problem| ParamError::Pool { pool: "cgnat".into(), problem };
    type Change = fn(&mut EngineParams);
    let changes: [(Change, ParamError); 5] = [
        (|p| p.pools[0].addresses.push(ip("203.0.113.9")), pool(PoolProblem::NewAddress([203, 0, 113, 9].into()))),
        (|p| p.max_sessions *= 2, ParamError::NeedsRestart("table sizes")),
        (|p| p.pools[0].port_min = 2000, pool(PoolProblem::NeedsRestart)),
        (|p| p.timeouts.udp_secs = 100_000, ParamError::TimeoutPastWheel { wheel: 7440 }),
        // A forward Engine::new would refuse (ICMP has no ports to forward).
        (
            |p| p.forwards = vec![Forward::one(1, ip("203.0.113.2"), 8080, ip("100.64.9.9"), 80)],
            ParamError::ForwardProtocol(1),
        ),
    ];
    for (change, why) in changes {
        let mut p = cgnat_params();
        p.rules = vec![Rule { matches: RuleMatch::default(), action: RuleAction::NoNat }];
        change(&mut p);
        assert_eq!(n.e.reconfigure(&p, n.now), Err(why));
    }
    // The rules did not change either: a new flow is still translated.
    let f = n.out(udp(ip("100.64.1.3"), 4000, ip("198.51.100.1"), 53, b"q"));
    assert_ne!(tuple(&f).0, ip("100.64.1.3"));
    let again = n.out(udp(ip("100.64.1.2"), 4000, ip("198.51.100.1"), 53, b"q"));
    assert_eq!(tuple(&again), tuple(&first));
}

#[test]
fn an_engine_numbers_at_most_max_pools_pools_over_its_life() {
    let params = |names: std::ops::Range<u32>| {
        let pools = names.map(|i| PoolParams::cgnat(&format!("p{i}"), vec![ip("203.0.113.1") + i])).collect();
        EngineParams::single(pools, vec![translate_all("100.64.0.0/10", 0)])
    };
    let max = MAX_POOLS as u32;
    assert!(Engine::new(&params(0..max)).is_ok());
    assert_eq!(Engine::new(&params(0..max + 1)).err(), Some(ParamError::TooMany("pools")));
    // Live: a change that would number more is refused whole (here it adds
    // p31 and p32 to 31 pools), and a pool a change removes keeps its number.
    let mut n = Nat::new(params(0..max - 1));
    assert_eq!(n.e.reconfigure(&params(2..max + 1), n.now), Err(ParamError::TooMany("pools")));
    assert_eq!(n.e.reconfigure(&params(1..max), n.now), Ok(0), "the refused change added nothing: p31 fits");
    let names: Vec<String> = (0..max).map(|i| format!("p{i}")).collect();
    assert_eq!(n.e.pool_names().collect::<Vec<_>>(), names, "p0 kept its number; p31 came after");
    assert_eq!(n.e.reconfigure(&params(2..max + 1), n.now), Err(ParamError::TooMany("pools")), "p0 still counts");
}

#[test]
fn forwards_come_and_go_live() {
    let mut n = Nat::new(cgnat_params());
    let fwd = Forward::one(6, ip("203.0.113.2"), 8080, ip("100.64.9.9"), 80);
    let mut p = cgnat_params();
    p.forwards = vec![fwd];
    assert_eq!(n.e.reconfigure(&p, n.now), Ok(0));
    let syn = n.back(tcp(ip("198.51.100.7"), 40000, ip("203.0.113.2"), 8080, SYN));
    assert_eq!(tuple(&syn).2, ip("100.64.9.9"));
    p.forwards.clear();
    assert_eq!(n.e.reconfigure(&p, n.now), Ok(0));
    let mut again = tcp(ip("198.51.100.7"), 40001, ip("203.0.113.2"), 8080, SYN);
    assert_eq!(n.send(OUT, &mut again), Verdict::Drop(DropReason::NoSession), "the forward is gone");
}

#[test]
fn random_port_pools_draw_a_random_start_for_every_new_mapping() {
    // Port blocks with `random_ports`: each new mapping starts its search at
    // a random offset of the block (the number drawn only for such pools).
    let ports_with = |seed: u64| {
        let mut p = cgnat_params();
        p.seed = seed;
        p.pools[0].random_ports = true;
        let mut n = Nat::new(p);
        (0..16u16)
            .map(|i| {
                let mut f = udp(ip("100.64.1.2"), 5000 + i, ip("198.51.100.1"), 53, b"");
                assert_eq!(n.send(IN, &mut f), Verdict::Forward(OUT));
                tuple(&f).1
            })
            .collect::<Vec<u16>>()
    };
    let (a, b) = (ports_with(1), ports_with(2));
    let sequential = a.windows(2).filter(|w| w[1] == w[0].wrapping_add(1)).count();
    assert!(sequential < 8, "random starts, not one run of ports: {a:?}");
    assert_ne!(a, b, "another seed, other draws");
}
