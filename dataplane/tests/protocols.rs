//! Scenarios for other IP protocols translated by address only (GRE, ESP:
//! VPP `test_unknown_proto`, netfilter's generic conntrack) and for ICMP
//! hairpinning (RFC 5508 REQ-7).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
use common::*;
use dataplane::nat::*;
use dataplane::testing::frames::{self as build, checksums_ok, icmp_echo, icmp_error, ip, ttl, tuple, udp};

const GRE: u8 = 47;
const ESP: u8 = 50;
const L3: usize = 14;

/// A GRE packet (RFC 2784: no checksum, protocol type IPv4) around a few bytes.
fn gre(src: u32, dst: u32) -> Vec<u8> {
    build::frame(src, dst, GRE, &[0, 0, 0x08, 0x00, 0x45, 0, 0, 20, 1, 2, 3, 4], 64)
}

/// An ESP packet (RFC 4303): SPI, sequence number, opaque payload.
fn esp(src: u32, dst: u32, spi: u32, seq: u32) -> Vec<u8> {
    let mut b = spi.to_be_bytes().to_vec();
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(b"ciphertext-ish..");
    build::frame(src, dst, ESP, &b, 64)
}

fn addrs(f: &[u8]) -> (u32, u32) {
    let a = |o: usize| u32::from_be_bytes(f[L3 + o..L3 + o + 4].try_into().unwrap());
    (a(12), a(16))
}

fn payload(f: &[u8]) -> &[u8] {
    &f[L3 + 20..]
}

const HOST: &str = "192.168.1.20";
const OTHER_HOST: &str = "192.168.1.21";
const REMOTE: &str = "198.51.100.1";
const PUBLIC: &str = "198.51.100.10";

#[test]
fn gre_goes_out_from_the_public_address_and_comes_back() {
    let mut n = Nat::new(home_params());
    let f = gre(ip(HOST), ip(REMOTE));
    let out = n.out(f.clone());
    assert_eq!(addrs(&out), (ip(PUBLIC), ip(REMOTE)));
    assert_eq!(payload(&out), payload(&f), "no L4 rewrite");
    assert_eq!(ttl(&out), 63);
    let back = n.back(gre(ip(REMOTE), ip(PUBLIC)));
    assert_eq!(addrs(&back), (ip(REMOTE), ip(HOST)));
    assert_eq!(payload(&back), payload(&f));
    let s: Vec<_> = n.e.sessions(n.now).collect();
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].protocol, s[0].inside.0, s[0].public.0, s[0].remote.0), (GRE, ip(HOST), ip(PUBLIC), ip(REMOTE)));
    assert_eq!(s[0].state, "other");
    assert_eq!((s[0].inside.1, s[0].public.1, s[0].remote.1), (0, 0, 0), "no ports");
    assert!(s[0].assured, "the reply marks it answered");
    assert_eq!(s[0].expires_in, 600, "other_secs");
}

#[test]
fn esp_goes_both_ways_and_is_its_own_session_beside_gre() {
    let mut n = Nat::new(home_params());
    let out = n.out(esp(ip(HOST), ip(REMOTE), 0x1000, 1));
    assert_eq!(addrs(&out), (ip(PUBLIC), ip(REMOTE)));
    assert_eq!(&payload(&out)[..8], &[0, 0, 0x10, 0, 0, 0, 0, 1]);
    n.out(gre(ip(HOST), ip(REMOTE)));
    let back = n.back(esp(ip(REMOTE), ip(PUBLIC), 0x2000, 1));
    assert_eq!(addrs(&back), (ip(REMOTE), ip(HOST)));
    assert_eq!(&payload(&back)[..4], &[0, 0, 0x20, 0]);
    let mut protos: Vec<u8> = n.e.sessions(n.now).map(|s| s.protocol).collect();
    protos.sort_unstable();
    assert_eq!(protos, vec![GRE, ESP]);
}

#[test]
fn a_second_inside_host_is_refused_the_same_public_remote_and_protocol() {
    let mut n = Nat::new(home_params());
    n.out(gre(ip(HOST), ip(REMOTE)));
    let mut f = gre(ip(OTHER_HOST), ip(REMOTE));
    assert_eq!(n.send(IN, &mut f), Verdict::Drop(DropReason::OtherProtoBusy));
    assert_eq!(n.e.counters().drop_count(DropReason::OtherProtoBusy), 1);
    assert_eq!(n.e.live_sessions(), 1, "the refusal made nothing");
    // Another remote, or another protocol to the same remote, is free.
    n.out(gre(ip(OTHER_HOST), ip("198.51.100.2")));
    n.out(esp(ip(OTHER_HOST), ip(REMOTE), 1, 1));
    // The first host's traffic still comes back to it.
    let back = n.back(gre(ip(REMOTE), ip(PUBLIC)));
    assert_eq!(addrs(&back).1, ip(HOST));
    // Once the first host's session idles out, the second may have it.
    n.now += 600;
    n.e.expire(n.now, 64);
    let out = n.out(gre(ip(OTHER_HOST), ip(REMOTE)));
    assert_eq!(addrs(&out).0, ip(PUBLIC));
    let back = n.back(gre(ip(REMOTE), ip(PUBLIC)));
    assert_eq!(addrs(&back).1, ip(OTHER_HOST));
}

#[test]
fn an_idle_session_expires_after_other_secs() {
    let mut p = home_params();
    p.timeouts.other_secs = 100;
    let mut n = Nat::new(p);
    n.out(gre(ip(HOST), ip(REMOTE)));
    n.now += 99;
    n.back(gre(ip(REMOTE), ip(PUBLIC)));
    n.now += 99;
    assert_eq!(n.e.expire(n.now, 64), 0, "refreshed by the reply");
    n.now += 1;
    assert_eq!(n.e.expire(n.now, 64), 1);
    assert_eq!(n.e.live_sessions(), 0);
    // The box's own address: with no session, its own stack's (a home router's tunnels).
    let mut f = gre(ip(REMOTE), ip(PUBLIC));
    assert_eq!(n.send(OUT, &mut f), Verdict::PassToKernel(PassReason::ToSelf));
}

#[test]
fn inbound_with_no_session_is_dropped() {
    let mut n = Nat::new(cgnat_params());
    let mut f = gre(ip(REMOTE), ip("203.0.113.1"));
    assert_eq!(n.send(OUT, &mut f), Verdict::Drop(DropReason::UnsupportedProtocol));
    assert_eq!(n.e.live_sessions(), 0);
}

#[test]
fn the_rule_must_name_other_or_no_protocol() {
    let mut p = home_params();
    p.rules[0].matches.protocols = proto::TCP | proto::UDP;
    p.rules.push(Rule {
        matches: RuleMatch { src: vec![pfx("192.168.1.0/24")], protocols: proto::OTHER, ..Default::default() },
        action: RuleAction::NoNat,
    });
    let mut n = Nat::new(p.clone());
    // Not translated by the first rule: the second routes it unchanged.
    let out = n.out(gre(ip(HOST), ip(REMOTE)));
    assert_eq!(addrs(&out), (ip(HOST), ip(REMOTE)));
    assert_eq!(n.e.live_sessions(), 0);
    p.rules[0].matches.protocols = proto::TCP | proto::OTHER;
    let mut n = Nat::new(p);
    let out = n.out(gre(ip(HOST), ip(REMOTE)));
    assert_eq!(addrs(&out), (ip(PUBLIC), ip(REMOTE)));
}

#[test]
fn an_icmp_error_about_a_gre_packet_reaches_its_inside_host() {
    // Path MTU discovery for a tunnel: a router says the GRE packet was too big.
    let mut n = Nat::new(home_params());
    let out = n.out(gre(ip(HOST), ip(REMOTE)));
    let err = icmp_error(ip("203.0.113.77"), ip(PUBLIC), 3, 4, &out, 8);
    let back = n.back(err);
    assert_eq!(addrs(&back), (ip("203.0.113.77"), ip(HOST)));
    // The quoted header names the inside host again, checksum right.
    let quoted = &back[L3 + 20 + 8..];
    assert_eq!(u32::from_be_bytes(quoted[12..16].try_into().unwrap()), ip(HOST));
    assert!(checksums_ok(&back));
}

#[test]
fn a_tcp_and_udp_flow_is_untouched_by_other_sessions() {
    let mut n = Nat::new(home_params());
    n.out(gre(ip(HOST), ip(REMOTE)));
    let out = n.out(udp(ip(HOST), 5000, ip(REMOTE), 53, b"q"));
    assert_eq!(tuple(&out), (ip(PUBLIC), 5000, ip(REMOTE), 53));
    assert_eq!(n.e.live_sessions(), 2);
    let _ = icmp_echo;
}

/// Two CGNAT subscribers whose public addresses differ (paired pooling
/// picks each one's address by hash).
fn two_subscribers_on_different_addresses(n: &mut Nat) -> (u32, u32, u32, u32) {
    let b = ip("100.64.2.2");
    let tb = n.out(udp(b, 9, ip(REMOTE), 9, b""));
    let pb = tuple(&tb).0;
    for i in 1..200 {
        let a = ip("100.64.1.0") + i;
        let ta = n.out(udp(a, 9, ip(REMOTE), 9, b""));
        if tuple(&ta).0 != pb {
            return (a, tuple(&ta).0, b, pb);
        }
    }
    panic!("every subscriber on one address");
}

#[test]
fn icmp_echo_hairpins_to_another_hosts_query_mapping_rfc5508_req7() {
    let mut n = Nat::new(cgnat_params());
    let (a, pa, b, pb) = two_subscribers_on_different_addresses(&mut n);
    // B pings out: its query mapping is (pb, yb).
    let tb = n.out(icmp_echo(b, ip(REMOTE), 777, 1, true));
    let (_, yb, _, _) = tuple(&tb);
    assert_eq!(tuple(&tb).0, pb);
    // A pings B's public address and identifier: B gets it from A's
    // public address, with its own identifier.
    let h = n.pass(IN, icmp_echo(a, pb, yb, 5, true), IN);
    assert_eq!(tuple(&h), (pa, 777, b, 777));
    assert_eq!(ttl(&h), 63, "one hop");
    // B's reply goes back to A, from B's public address and identifier.
    let r = n.pass(IN, icmp_echo(b, pa, 777, 5, false), IN);
    assert_eq!(tuple(&r), (pb, yb, a, yb));
    // And again: both sessions are found.
    let h = n.pass(IN, icmp_echo(a, pb, yb, 6, true), IN);
    assert_eq!(tuple(&h), (pa, 777, b, 777));
    let r = n.pass(IN, icmp_echo(b, pa, 777, 6, false), IN);
    assert_eq!(tuple(&r), (pb, yb, a, yb));
    assert_eq!(n.e.counters().hairpinned, 4);
}

#[test]
fn an_icmp_error_about_a_hairpinned_flow_is_hairpinned_rfc5508_req7() {
    let mut n = Nat::new(cgnat_params());
    let b = ip("100.64.2.2");
    let tb = n.out(udp(b, 5000, ip(REMOTE), 3478, b"stun"));
    let (pb, pbp, _, _) = tuple(&tb);
    let a = ip("100.64.1.1");
    // A reaches B through B's public endpoint; B's port is closed.
    let h = n.pass(IN, udp(a, 6000, pb, pbp, b"hi B"), IN);
    let (pa, pap, _, _) = tuple(&h);
    let err = icmp_error(b, pa, 3, 3, &h, 8);
    let back = n.pass(IN, err, IN);
    // A sees it from B's public address, about its own packet to B's public endpoint.
    assert_eq!(addrs(&back), (pb, a));
    assert_eq!(ttl(&back), 63, "one hop");
    let q = &back[L3 + 20 + 8..];
    let quoted = |o: usize| u32::from_be_bytes(q[o..o + 4].try_into().unwrap());
    let port = |o: usize| u16::from_be_bytes(q[20 + o..22 + o].try_into().unwrap());
    assert_eq!((quoted(12), port(0), quoted(16), port(2)), (a, 6000, pb, pbp));
    assert!(checksums_ok(&back));
    let _ = pap;
}

#[test]
fn with_two_workers_a_session_lives_at_its_home_and_answers_find_it_there() {
    let p = cgnat_params();
    let seed = p.seed;
    let mut w = Nat::two(p);
    let sub = owned_by(1, "100.64.5.0");
    // Off the wire at worker 0: to the subscriber's worker, which alone
    // knows its public address.
    let mut f = gre(sub, ip(REMOTE));
    assert_eq!(w[0].send(IN, &mut f), Verdict::HandOff { worker: 1, arrived_on: IN });
    // There, a remote whose (public address, remote, GRE) is homed at
    // worker 0 sends it on to worker 0, which makes the session.
    let remote = (1..200u32)
        .map(|i| ip("198.51.100.0") + i)
        .find(|&r| w[1].send(IN, &mut gre(sub, r)) == Verdict::HandOff { worker: 0, arrived_on: IN })
        .expect("a remote homed at worker 0");
    w[0].e.set_handed_off(true);
    let out = w[0].out(gre(sub, remote));
    w[0].e.set_handed_off(false);
    let public = addrs(&out).0;
    assert_eq!(other_home(seed, public, remote, GRE, 2), 0);
    // The answer reaches worker 1: on to the home, which has the session.
    let mut f = gre(remote, public);
    assert_eq!(w[1].send(OUT, &mut f), Verdict::HandOff { worker: 0, arrived_on: OUT });
    let back = w[0].back(gre(remote, public));
    assert_eq!(addrs(&back).1, sub);
    // A router's "fragmentation needed" about the tunnel, off the wire at
    // worker 1, goes to the home too and reaches the inside host.
    let err = icmp_error(ip("203.0.113.77"), public, 3, 4, &out, 8);
    let mut f = err.clone();
    assert_eq!(w[1].send(OUT, &mut f), Verdict::HandOff { worker: 0, arrived_on: OUT });
    w[0].e.set_handed_off(true);
    let back = w[0].back(err);
    w[0].e.set_handed_off(false);
    assert_eq!(addrs(&back), (ip("203.0.113.77"), sub));
    // An answer to nobody goes to its home once and is dropped there.
    let nobody = ip("198.51.100.250");
    let home = other_home(seed, public, nobody, GRE, 2);
    let mut f = gre(nobody, public);
    let h = usize::from(home);
    assert_eq!(w[1 - h].send(OUT, &mut f), Verdict::HandOff { worker: home, arrived_on: OUT });
    assert_eq!(w[h].send(OUT, &mut f), Verdict::Drop(DropReason::UnsupportedProtocol));
}

#[test]
fn a_fragmented_gre_packet_is_translated_whole() {
    let mut n = Nat::new(home_params());
    let first = build::frame_frag(ip(HOST), ip(REMOTE), GRE, &[0, 0, 0x08, 0, 1, 2, 3, 4], 64, 77, 0x2000);
    let later = build::frame_frag(ip(HOST), ip(REMOTE), GRE, &[5, 6, 7, 8], 64, 77, 1);
    for f in [first, later] {
        let mut f = f;
        assert_eq!(n.send(IN, &mut f), Verdict::Forward(OUT));
        assert_eq!(addrs(&f), (ip(PUBLIC), ip(REMOTE)));
        assert!(checksums_ok(&f));
    }
}

#[test]
fn sctp_keeps_its_crc32c_which_covers_no_addresses() {
    // RFC 9260 section 6.8: the CRC32c covers the SCTP packet only.
    let mut n = Nat::new(home_params());
    let sctp =
        |s: u32, d: u32| build::frame(s, d, 132, &[0x13, 0x88, 0x13, 0x88, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef], 64);
    let f = sctp(ip(HOST), ip(REMOTE));
    let out = n.out(f.clone());
    assert_eq!(addrs(&out), (ip(PUBLIC), ip(REMOTE)));
    assert_eq!(payload(&out), payload(&f));
    let back = n.back(sctp(ip(REMOTE), ip(PUBLIC)));
    assert_eq!(addrs(&back), (ip(REMOTE), ip(HOST)));
    assert_eq!(n.e.sessions(n.now).next().map(|s| s.protocol), Some(132));
}

#[test]
fn a_hairpinned_icmp_error_crosses_to_the_worker_of_the_other_host() {
    let [mut w0, mut w1] = Nat::two(cgnat_params());
    let (a, b) = (owned_by(0, "100.64.6.0"), owned_by(1, "100.64.6.0"));
    let tb = w1.out(udp(b, 5000, ip(REMOTE), 3478, b"stun"));
    let (pb, pbp, _, _) = tuple(&tb);
    // A's packet to B's public endpoint: source translated on A's worker,
    // then handed to B's, which delivers it.
    let mut h = udp(a, 6000, pb, pbp, b"hi B");
    assert_eq!(w0.send(IN, &mut h), Verdict::HandOff { worker: 1, arrived_on: OUT });
    w1.e.set_handed_off(true);
    let h = w1.pass(OUT, h, IN);
    w1.e.set_handed_off(false);
    let (pa, pap, _, _) = tuple(&h);
    assert_eq!(tuple(&h).2, b);
    // B's port is closed: its error goes to A's public endpoint, through
    // B's worker (first half) and A's (second half).
    let mut err = icmp_error(b, pa, 3, 3, &h, 8);
    assert_eq!(w1.send(IN, &mut err), Verdict::HandOff { worker: 0, arrived_on: OUT });
    w0.e.set_handed_off(true);
    let back = w0.pass(OUT, err, IN);
    assert_eq!(addrs(&back), (pb, a));
    let q = &back[L3 + 20 + 8..];
    let port = |o: usize| u16::from_be_bytes(q[20 + o..22 + o].try_into().unwrap());
    assert_eq!((port(0), port(2)), (6000, pbp));
    let _ = pap;
}
