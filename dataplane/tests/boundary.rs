//! The box's boundary (issue 11, DESIGN.md "The box's boundary"): what
//! crosses the edges besides translated traffic, one scenario per rule,
//! each named after what it shows.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;
use common::*;
use dataplane::nat::params::proto;
use dataplane::nat::*;
use dataplane::testing::frames::{icmp_echo, icmp_error, ip, tcp, tcp_at, tuple, udp};
use dataplane::wire::tcp::{ACK, FIN, RST, SYN};

/// The CGNAT worker with its inside prefix known to the boundary (as the
/// control side fills it in from the rules' sources).
fn guarded() -> EngineParams {
    let mut p = cgnat_params();
    p.boundary.inside_prefixes = vec![pfx("100.64.0.0/10")];
    p
}

#[test]
fn an_inside_source_no_rule_covers_is_dropped_not_routed_out() {
    let mut n = Nat::new(guarded());
    let mut f = udp(ip("10.9.9.9"), 5000, ip("198.51.100.1"), 53, b"leak?");
    let before = f.clone();
    assert_eq!(n.send(IN, &mut f), Verdict::Drop(DropReason::NoRule));
    assert_eq!(f, before, "a dropped frame is not modified");
    let mut gre = dataplane::testing::frames::frame(ip("10.9.9.9"), ip("198.51.100.1"), 47, &[0; 8], 64);
    assert_eq!(n.send(IN, &mut gre), Verdict::Drop(DropReason::NoRule));
    assert_eq!(n.e.counters().drop_count(DropReason::NoRule), 2);
    assert_eq!(n.e.live_sessions(), 0);
    // A covered source is still translated.
    let t = n.out(udp(ip("100.64.1.2"), 5000, ip("198.51.100.1"), 53, b""));
    assert_ne!(tuple(&t).0, ip("100.64.1.2"));
}

#[test]
fn a_route_rule_or_the_open_boundary_lets_an_unmatched_source_through_untranslated() {
    let mut p = guarded();
    p.rules.push(Rule {
        matches: RuleMatch { src: vec![pfx("10.9.0.0/16")], ..Default::default() },
        action: RuleAction::Route,
    });
    let mut n = Nat::new(p);
    let t = n.out(udp(ip("10.9.9.9"), 5000, ip("198.51.100.1"), 53, b""));
    assert_eq!(tuple(&t), (ip("10.9.9.9"), 5000, ip("198.51.100.1"), 53));
    // Its reply comes back through the session...
    let r = n.back(udp(ip("198.51.100.1"), 53, ip("10.9.9.9"), 5000, b""));
    assert_eq!(tuple(&r), (ip("198.51.100.1"), 53, ip("10.9.9.9"), 5000));
    // ...but a route rule admits no new connection inbound (no_nat would).
    let mut syn = tcp(ip("198.51.100.1"), 40000, ip("10.9.9.9"), 22, SYN);
    assert_eq!(n.send(OUT, &mut syn), Verdict::Drop(DropReason::NoSession));

    let mut p = guarded();
    p.boundary.drop_unmatched = false;
    let mut n = Nat::new(p);
    let t = n.out(udp(ip("10.9.9.9"), 5000, ip("198.51.100.1"), 53, b""));
    assert_eq!(tuple(&t).0, ip("10.9.9.9"), "unmatched_inside: route forwards it as a router does");
}

#[test]
fn an_outside_packet_claiming_an_inside_source_is_dropped_as_spoofed() {
    let mut n = Nat::new(guarded());
    // A mapping exists, and the pool filters endpoint-independently: any
    // remote may answer, but not one that claims to be a subscriber.
    let t = n.out(udp(ip("100.64.1.2"), 5000, ip("198.51.100.1"), 53, b""));
    let (ps, pp, _, _) = tuple(&t);
    for mut f in [
        udp(ip("100.64.7.7"), 53, ps, pp, b"forged"),
        tcp(ip("100.64.7.7"), 80, ip("100.64.1.2"), 22, SYN),
        icmp_echo(ip("100.64.7.7"), ps, 9, 1, true),
        icmp_error(ip("100.64.7.7"), ps, 3, 3, &t, 8),
    ] {
        assert_eq!(n.send(OUT, &mut f), Verdict::Drop(DropReason::Spoofed), "{:?}", tuple(&f));
    }
    assert_eq!(n.e.counters().drop_count(DropReason::Spoofed), 4);
    // A real remote still reaches the mapping.
    n.back(udp(ip("192.0.2.1"), 53, ps, pp, b""));

    let mut p = guarded();
    p.boundary.drop_spoofed = false;
    let mut n = Nat::new(p);
    let t = n.out(udp(ip("100.64.1.2"), 5000, ip("198.51.100.1"), 53, b""));
    let (ps, pp, _, _) = tuple(&t);
    n.back(udp(ip("100.64.7.7"), 53, ps, pp, b"allowed"));
}

#[test]
fn martian_sources_are_dropped_on_both_sides_and_never_make_a_session() {
    // RFC 1812 section 5.3.7, as Linux drops them (`martian_source`), with
    // the batch path of small tables and the prefetching one of large ones.
    for large in [false, true] {
        let mut p = cgnat_params();
        p.rules = vec![translate_all("0.0.0.0/0", 0)];
        if large {
            p.max_sessions = PREFETCH_ABOVE_SESSIONS + 1;
        }
        let mut n = Nat::new(p);
        let martians = ["224.0.0.5", "239.1.2.3", "255.255.255.255", "0.0.0.0", "0.1.2.3", "127.0.0.1"];
        for m in martians {
            let mut f = udp(ip(m), 5000, ip("198.51.100.1"), 53, b"");
            let before = f.clone();
            assert_eq!(n.send(IN, &mut f), Verdict::Drop(DropReason::MartianSource), "inside {m}");
            assert_eq!(f, before, "a dropped frame is not modified");
            let mut syn = tcp(ip(m), 5000, ip("198.51.100.1"), 80, SYN);
            assert_eq!(n.send(IN, &mut syn), Verdict::Drop(DropReason::MartianSource), "inside {m}");
        }
        // Nor a destination in 0/8 or 127/8 (Linux's martian destinations):
        // its answer would come from a martian source.
        for m in ["127.0.0.1", "0.1.2.3"] {
            let mut f = udp(ip("100.64.1.2"), 5000, ip(m), 53, b"");
            assert_eq!(n.send(IN, &mut f), Verdict::Drop(DropReason::MartianDestination), "to {m}");
        }
        assert_eq!(n.e.live_sessions(), 0, "no session holds a martian");
        // From outside, to a live mapping (endpoint-independent filtering
        // would admit any unicast remote).
        let t = n.out(udp(ip("100.64.1.2"), 5000, ip("198.51.100.1"), 53, b""));
        let (ps, pp, _, _) = tuple(&t);
        for m in martians {
            let mut f = udp(ip(m), 53, ps, pp, b"");
            assert_eq!(n.send(OUT, &mut f), Verdict::Drop(DropReason::MartianSource), "outside {m}");
        }
        assert_eq!(n.e.counters().drop_count(DropReason::MartianSource), 3 * martians.len() as u64);
        assert_eq!(n.e.live_sessions(), 1);
        // Class E is reserved but no martian to Linux: it is translated.
        n.out(udp(ip("100.64.1.2"), 5001, ip("240.0.0.1"), 53, b""));
    }
}

/// An exemption for one inside host's port 8022, both ways.
fn exempt_8022() -> EngineParams {
    let mut p = guarded();
    p.rules.insert(
        0,
        Rule {
            matches: RuleMatch {
                src: vec![pfx("100.64.9.5/32")],
                protocols: proto::TCP,
                dst_ports: vec![(8022, 8022)],
                ..Default::default()
            },
            action: RuleAction::NoNat,
        },
    );
    p
}

#[test]
fn a_port_restricted_exemption_admits_exactly_its_ports_inbound() {
    let mut n = Nat::new(exempt_8022());
    let syn = n.back(tcp(ip("192.0.2.9"), 41000, ip("100.64.9.5"), 8022, SYN));
    assert_eq!(tuple(&syn), (ip("192.0.2.9"), 41000, ip("100.64.9.5"), 8022));
    let synack = n.out(tcp(ip("100.64.9.5"), 8022, ip("192.0.2.9"), 41000, SYN | ACK));
    assert_eq!(tuple(&synack), (ip("100.64.9.5"), 8022, ip("192.0.2.9"), 41000), "the reply keeps its addresses");
    for (port, l4) in [(8023u16, "tcp"), (22, "tcp"), (8022, "udp")] {
        let mut f = if l4 == "tcp" {
            tcp(ip("192.0.2.9"), 41001, ip("100.64.9.5"), port, SYN)
        } else {
            udp(ip("192.0.2.9"), 41001, ip("100.64.9.5"), port, b"")
        };
        assert_eq!(n.send(OUT, &mut f), Verdict::Drop(DropReason::NoSession), "{l4} port {port}");
    }
    let mut ping = icmp_echo(ip("192.0.2.9"), ip("100.64.9.5"), 7, 1, true);
    assert_eq!(n.send(OUT, &mut ping), Verdict::Drop(DropReason::NoSession), "a rule naming ports admits no ping");
}

#[test]
fn a_port_restricted_exemption_reads_outbound_as_the_remotes_port() {
    let mut n = Nat::new(exempt_8022());
    let t = n.out(tcp(ip("100.64.9.5"), 40000, ip("192.0.2.9"), 8022, SYN));
    assert_eq!(tuple(&t).0, ip("100.64.9.5"), "to the remote's port 8022: exempt");
    let t = n.out(tcp(ip("100.64.9.5"), 40001, ip("192.0.2.9"), 443, SYN));
    assert_ne!(tuple(&t).0, ip("100.64.9.5"), "anything else: translated by the next rule");
}

#[test]
fn unanswered_udp_gives_its_port_back_after_the_shorter_unreplied_timeout() {
    let mut n = Nat::new(guarded());
    // A storm of unanswered flows (a scanner, a P2P client)...
    for port in 0..10u16 {
        n.out(udp(ip("100.64.1.2"), 6000 + port, ip("198.51.100.1"), 7000 + port, b"anyone?"));
    }
    // ...and one flow that is answered.
    let t = n.out(udp(ip("100.64.1.2"), 5000, ip("198.51.100.1"), 53, b"query"));
    let (ps, pp, _, _) = tuple(&t);
    n.back(udp(ip("198.51.100.1"), 53, ps, pp, b"answer"));
    assert_eq!(n.e.live_sessions(), 11);
    n.now += 119;
    n.e.expire(n.now, 1000);
    assert_eq!(n.e.live_sessions(), 11, "not before udp_unreplied_secs");
    n.now += 1;
    n.e.expire(n.now, 1000);
    assert_eq!(n.e.live_sessions(), 1, "the unanswered go at 120 s, the answered one stays");
    n.now += 179;
    n.e.expire(n.now, 1000);
    assert_eq!(n.e.live_sessions(), 1);
    n.now += 1;
    n.e.expire(n.now, 1000);
    assert_eq!(n.e.live_sessions(), 0, "the answered one at udp_secs (300 s)");
}

/// A TCP connection through the NAT, with its sequence numbers: the inside
/// host's next is `a`, the server's `b`.
struct Conn {
    public: (u32, u16),
    a: u32,
    b: u32,
}

const HOST: (&str, u16) = ("100.64.1.2", 40000);
const SERVER: (&str, u16) = ("198.51.100.1", 443);

fn handshake(n: &mut Nat) -> Conn {
    handshake_from(n, 50_000)
}

/// [`handshake`] with the server's initial sequence number `isn`.
fn handshake_from(n: &mut Nat, isn: u32) -> Conn {
    let (h, hp, s, sp) = (ip(HOST.0), HOST.1, ip(SERVER.0), SERVER.1);
    let t = n.out(tcp_at(h, hp, s, sp, SYN, (1_000, 0, 64_240)));
    let (pi, pp, _, _) = tuple(&t);
    let b = isn.wrapping_add(1);
    n.back(tcp_at(s, sp, pi, pp, SYN | ACK, (isn, 1_001, 65_160)));
    n.out(tcp_at(h, hp, s, sp, ACK, (1_001, b, 65_535)));
    Conn { public: (pi, pp), a: 1_001, b }
}

#[test]
fn a_tcp_session_ends_at_the_timeout_of_its_class_after_each_change() {
    // The handshake's end lengthens the timeout (the sweep re-files the
    // session when its transitory bucket comes); closing shortens it (filed
    // again at once). Either way it goes in the second its timeout ends.
    let t = dataplane::nat::params::Timeouts::default();
    let (est, tr) = (t.tcp_established_secs, t.tcp_transitory_secs);
    let mut n = Nat::new(guarded());
    n.now = 10;
    handshake(&mut n);
    assert_eq!(state(&n), "established");
    for (at, live) in [(10 + tr, 1), (10 + est - 1, 1), (10 + est, 0)] {
        n.now = at;
        n.e.expire(n.now, 1000);
        assert_eq!(n.e.live_sessions(), live, "idle since 10 s, at {at} s");
    }
    // Established, refreshed at 1000 s, then closed both ways at 2000 s.
    let mut n = Nat::new(guarded());
    n.now = 10;
    let c = handshake(&mut n);
    let (h, hp, s, sp) = (ip(HOST.0), HOST.1, ip(SERVER.0), SERVER.1);
    n.now = 1000;
    n.e.expire(n.now, 1000);
    n.out(tcp_at(h, hp, s, sp, ACK, (c.a, c.b, 65_535)));
    n.now = 2000;
    n.e.expire(n.now, 1000);
    n.out(tcp_at(h, hp, s, sp, FIN | ACK, (c.a, c.b, 65_535)));
    n.back(tcp_at(s, sp, c.public.0, c.public.1, FIN | ACK, (c.b, c.a + 1, 65_160)));
    assert_ne!(state(&n), "established");
    for (at, live) in [(2000 + tr - 1, 1), (2000 + tr, 0)] {
        n.now = at;
        n.e.expire(n.now, 1000);
        assert_eq!(n.e.live_sessions(), live, "closed at 2000 s, at {at} s");
    }
}

fn state(n: &Nat) -> &'static str {
    n.e.sessions(n.now).next().map_or("gone", |s| s.state)
}

#[test]
fn a_blind_rst_out_of_window_is_dropped_and_changes_nothing_rfc5961() {
    let mut n = Nat::new(guarded());
    let c = handshake(&mut n);
    let (s, sp) = (ip(SERVER.0), SERVER.1);
    let (pi, pp) = c.public;
    assert_eq!(state(&n), "established");
    // Sprayed at the public ip:port with guessed sequence numbers.
    for guess in [c.b + 10_000_000, c.b.wrapping_sub(1_000_000), 0x8000_0000] {
        let mut rst = tcp_at(s, sp, pi, pp, RST, (guess, 0, 0));
        let before = rst.clone();
        assert_eq!(n.send(OUT, &mut rst), Verdict::Drop(DropReason::TcpOutOfWindow), "seq {guess}");
        assert_eq!(rst, before, "a dropped frame is not modified");
    }
    assert_eq!(n.e.counters().drop_count(DropReason::TcpOutOfWindow), 3);
    assert_eq!(state(&n), "established", "the connection keeps its 2 h timeout");
    // The same from inside (towards the server) is checked too.
    let mut rst = tcp_at(ip(HOST.0), HOST.1, s, sp, RST, (c.a + 9_000_000, 0, 0));
    assert_eq!(n.send(IN, &mut rst), Verdict::Drop(DropReason::TcpOutOfWindow));
    // The real end's RST, at its next sequence number, counts.
    n.back(tcp_at(s, sp, pi, pp, RST | ACK, (c.b, c.a, 0)));
    assert_eq!(state(&n), "close");
}

#[test]
fn the_window_follows_a_long_transfer_through_the_fast_lane() {
    let mut n = Nat::new(guarded());
    let c = handshake(&mut n);
    let (s, sp) = (ip(SERVER.0), SERVER.1);
    let (pi, pp) = c.public;
    // 200 segments of 1400 bytes' worth of sequence space from the server,
    // each a steady-state packet the fast lane takes.
    let mut b = c.b;
    for _ in 0..200 {
        n.back(tcp_at(s, sp, pi, pp, ACK, (b, c.a, 512)));
        b = b.wrapping_add(1_400);
    }
    let fast = n.e.counters().fwd_o2i;
    assert!(fast >= 200, "the segments were forwarded");
    // A RST at the handshake's sequence number is now far behind...
    let mut old = tcp_at(s, sp, pi, pp, RST, (c.b.wrapping_sub(200_000), 0, 0));
    assert_eq!(n.send(OUT, &mut old), Verdict::Drop(DropReason::TcpOutOfWindow));
    // ...and one at where the transfer got to counts.
    n.back(tcp_at(s, sp, pi, pp, RST, (b, 0, 0)));
    assert_eq!(state(&n), "close");
}

#[test]
fn a_rst_answering_a_syn_counts_only_if_it_acknowledges_the_syn() {
    let mut n = Nat::new(guarded());
    let (h, hp, s, sp) = (ip(HOST.0), HOST.1, ip(SERVER.0), SERVER.1);
    let t = n.out(tcp_at(h, hp, s, sp, SYN, (7_000, 0, 64_240)));
    let (pi, pp, _, _) = tuple(&t);
    let mut forged = tcp_at(s, sp, pi, pp, RST | ACK, (0, 123_456, 0));
    assert_eq!(n.send(OUT, &mut forged), Verdict::Drop(DropReason::TcpOutOfWindow));
    assert_eq!(state(&n), "syn_sent");
    n.back(tcp_at(s, sp, pi, pp, RST | ACK, (0, 7_001, 0)));
    assert_eq!(state(&n), "close", "a closed port's answer");
}

#[test]
fn a_connection_in_a_reused_session_slot_starts_with_a_fresh_window() {
    let mut n = Nat::new(guarded());
    let (h, hp, s, sp) = (ip(HOST.0), HOST.1, ip(SERVER.0), SERVER.1);
    // A first connection whose server numbers its bytes far from 0.
    handshake_from(&mut n, 3_000_000_000);
    assert_eq!(state(&n), "established");
    // It expires; its slot is the next one taken (the free list hands
    // back the slot freed last).
    n.now += 10 * 86_400;
    n.e.expire(n.now, 1000);
    assert_eq!(n.e.live_sessions(), 0);
    // A new connection in that slot: the closed port's answer to its SYN
    // acknowledges the SYN (its sequence number is 0), and counts as it
    // would in a slot never used (no window from the old connection).
    let t = n.out(tcp_at(h, hp + 1, s, sp, SYN, (7_000, 0, 64_240)));
    let (pi, pp, _, _) = tuple(&t);
    n.back(tcp_at(s, sp, pi, pp, RST | ACK, (0, 7_001, 0)));
    assert_eq!(state(&n), "close");
    assert_eq!(n.e.counters().drop_count(DropReason::TcpOutOfWindow), 0);
}

#[test]
fn after_an_accepted_rst_only_a_new_handshake_establishes_again() {
    let mut n = Nat::new(guarded());
    let c = handshake(&mut n);
    let (h, hp, s, sp) = (ip(HOST.0), HOST.1, ip(SERVER.0), SERVER.1);
    let (pi, pp) = c.public;
    // A SYN on the established session changes nothing (netfilter ignores it).
    n.out(tcp_at(h, hp, s, sp, SYN, (c.a + 5, 0, 64_240)));
    assert_eq!(state(&n), "established");
    n.back(tcp_at(s, sp, pi, pp, RST, (c.b, 0, 0)));
    assert_eq!(state(&n), "close");
    // Data after the RST still passes, but does not make it established.
    n.out(tcp_at(h, hp, s, sp, ACK, (c.a, c.b, 512)));
    n.back(tcp_at(s, sp, pi, pp, ACK, (c.b, c.a, 512)));
    assert_eq!(state(&n), "close");
    // A new handshake on the same tuple does.
    n.out(tcp_at(h, hp, s, sp, SYN, (900_000, 0, 64_240)));
    n.back(tcp_at(s, sp, pi, pp, SYN | ACK, (70_000, 900_001, 65_160)));
    n.out(tcp_at(h, hp, s, sp, ACK, (900_001, 70_001, 512)));
    assert_eq!(state(&n), "established");
}

// A subscriber at its limit (issue 11 item 5, RFC 6888 REQ-11): a new flow
// that cannot get a port or a session is dropped and counted (a), answered
// with an ICMP host unreachable from the box's inside address (b), counted
// per pool and logged once per subscriber per interval (c), and no existing
// mapping is deleted to make room (d).

use dataplane::nat::counters::limit_index;
use dataplane::nat::ports::{BlockEvent, EventKind};
use dataplane::nat::refusal::{EVENTS_PER_SEC, ICMP_PER_SEC, LOG_INTERVAL_SECS};
use dataplane::testing::frames::checksums_ok;
use dataplane::wire::ethernet::field::HEADER_LEN as L3;
use dataplane::wire::icmp::{IcmpPacket, CODE_HOST_UNREACHABLE, DEST_UNREACHABLE};
use dataplane::wire::ipv4::{Ipv4Packet, PROTO_ICMP};

const BOX_INSIDE: &str = "100.64.0.1";

/// The guarded CGNAT worker with its inside address as the ICMP source
/// and a limit of 4 sessions a subscriber.
fn limited() -> EngineParams {
    let mut p = guarded();
    p.icmp_source = Some(ip(BOX_INSIDE));
    p.pools[0].max_sessions_per_subscriber = 4;
    p
}

/// A new flow from `sub`'s port `sport`.
fn flow(sub: u32, sport: u16) -> Vec<u8> {
    udp(sub, sport, ip("198.51.100.1"), 53, b"new flow")
}

/// Opens `count` flows from `sub` (source ports from 5000), each answered;
/// returns each flow's public endpoint.
fn open(n: &mut Nat, sub: u32, count: u16) -> Vec<(u32, u16)> {
    (0..count)
        .map(|i| {
            let (ps, pp, _, _) = tuple(&n.out(flow(sub, 5000 + i)));
            let back = n.back(udp(ip("198.51.100.1"), 53, ps, pp, b"answer"));
            assert_eq!(tuple(&back).2, sub);
            (ps, pp)
        })
        .collect()
}

/// Every flow `open` made still translates, both ways, on the same public endpoint.
fn still_translated(n: &mut Nat, sub: u32, publics: &[(u32, u16)]) {
    for (i, &(ps, pp)) in (0u16..).zip(publics) {
        let out = n.out(flow(sub, 5000 + i));
        assert_eq!((tuple(&out).0, tuple(&out).1), (ps, pp), "{sub:#x}'s flow {i} keeps its mapping");
        let back = n.back(udp(ip("198.51.100.1"), 53, ps, pp, b"answer"));
        assert_eq!((tuple(&back).2, tuple(&back).3), (sub, 5000 + i));
    }
}

/// What the worker sends for a refused frame.
fn reply_to(n: &Nat, refused: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 2048];
    let len = n.e.write_refusal(refused, &mut out).expect("an error for the refused frame");
    out.truncate(len);
    out
}

fn limit_events(n: &Nat, pool: usize, r: DropReason) -> u64 {
    n.e.counters().subscriber_limit_events[pool][limit_index(r).unwrap()]
}

fn refusals(events: impl Iterator<Item = BlockEvent>) -> Vec<BlockEvent> {
    events.filter(|e| matches!(e.kind, EventKind::Refused(_))).collect()
}

#[test]
fn a_subscriber_at_its_limit_gets_host_unreachable_from_the_boxs_inside_address() {
    let mut n = Nat::new(limited());
    let sub = ip("100.64.1.2");
    open(&mut n, sub, 4);
    let mut f = flow(sub, 6000);
    let before = f.clone();
    assert_eq!(n.send(IN, &mut f), Verdict::Refuse(DropReason::SubscriberSessionLimit));
    assert_eq!(f, before, "the refused frame is not modified");
    assert_eq!(n.e.counters().drop_count(DropReason::SubscriberSessionLimit), 1, "(a) counted as a drop");

    let reply = reply_to(&n, &f);
    assert!(checksums_ok(&reply), "IP and ICMP checksums");
    let outer = Ipv4Packet::new_checked(&reply[L3..]).unwrap();
    assert_eq!((outer.src(), outer.dst(), outer.protocol(), outer.ttl()), (ip(BOX_INSIDE), sub, PROTO_ICMP, 64));
    let icmp = IcmpPacket::new_checked(outer.payload()).unwrap();
    assert_eq!((icmp.msg_type(), icmp.code()), (DEST_UNREACHABLE, CODE_HOST_UNREACHABLE));
    let quoted = icmp.embedded();
    assert_eq!(&quoted[..20], &f[L3..L3 + 20], "the original IP header, as the subscriber sent it");
    assert!(quoted.len() >= 28);
    assert_eq!(&quoted[20..28], &f[L3 + 20..L3 + 28], "and at least the first 8 bytes of its datagram");

    // No ICMP source configured: dropped, counted and logged, nothing to send.
    let mut p = limited();
    p.icmp_source = None;
    let mut quiet = Nat::new(p);
    open(&mut quiet, sub, 4);
    let mut f = flow(sub, 6000);
    assert_eq!(quiet.send(IN, &mut f), Verdict::Drop(DropReason::SubscriberSessionLimit));
    assert_eq!(limit_events(&quiet, 0, DropReason::SubscriberSessionLimit), 1);
    assert_eq!(refusals(quiet.e.take_block_events()).len(), 1);
    assert_eq!(quiet.e.write_refusal(&f, &mut [0u8; 2048]), None);
}

#[test]
fn no_error_about_what_rfc_1812_forbids_answering_even_at_the_limit() {
    // A rule covering sources that are not one host: refused, never answered.
    let mut p = limited();
    p.pools[0].max_sessions_per_subscriber = 0;
    p.rules = vec![translate_all("0.0.0.0/0", 0)];
    p.boundary.drop_spoofed = false;
    let mut n = Nat::new(p);
    // (Class E: reserved, so not one host, yet no martian as 0/8 would be.)
    let mut from_nowhere = udp(ip("240.1.2.3"), 68, ip("198.51.100.1"), 53, b"");
    assert_eq!(n.send(IN, &mut from_nowhere), Verdict::Drop(DropReason::SubscriberSessionLimit));
    // An echo request at the limit is answered (it is not an error).
    let mut ping = icmp_echo(ip("100.64.1.2"), ip("198.51.100.1"), 7, 1, true);
    assert_eq!(n.send(IN, &mut ping), Verdict::Refuse(DropReason::SubscriberSessionLimit));
    assert_eq!(n.e.counters().drop_count(DropReason::SubscriberSessionLimit), 2);
}

#[test]
fn errors_are_rate_limited_per_subscriber() {
    let mut n = Nat::new(limited());
    let (a, b) = (ip("100.64.1.2"), ip("100.64.1.3"));
    open(&mut n, a, 4);
    open(&mut n, b, 4);
    let mut verdicts = Vec::new();
    for i in 0..5 {
        verdicts.push(n.send(IN, &mut flow(a, 6000 + i)));
    }
    let refuse = Verdict::Refuse(DropReason::SubscriberSessionLimit);
    let drop = Verdict::Drop(DropReason::SubscriberSessionLimit);
    assert_eq!(verdicts, [refuse, drop, drop, drop, drop], "one error a second for a");
    assert_eq!(n.send(IN, &mut flow(b, 6000)), refuse, "b is limited on its own");
    n.now += 1;
    assert_eq!(n.send(IN, &mut flow(a, 6000)), refuse, "a second later a gets another");
    assert_eq!(n.send(IN, &mut flow(a, 6001)), drop);
    assert_eq!(n.e.counters().drop_count(DropReason::SubscriberSessionLimit), 8, "every refused packet is a drop");
}

#[test]
fn sources_without_a_subscriber_record_share_a_small_budget_per_worker() {
    // The subscriber table holds one: every other source is refused as
    // subscriber_table_full, with no record to keep its rate in.
    let mut p = limited();
    p.max_subscribers = 1;
    let mut n = Nat::new(p);
    open(&mut n, ip("100.64.1.2"), 1);
    let sources = ICMP_PER_SEC + 100;
    let verdicts: Vec<Verdict> = (0..sources).map(|i| n.send(IN, &mut flow(ip("100.65.0.0") + i, 5000))).collect();
    let refused = verdicts.iter().filter(|v| **v == Verdict::Refuse(DropReason::SubscriberTableFull)).count();
    assert_eq!(refused, ICMP_PER_SEC as usize, "at most the worker's budget in one second");
    assert_eq!(verdicts.len() - refused, 100);
    assert_eq!(refusals(n.e.take_block_events()).len(), EVENTS_PER_SEC as usize, "logging has its own budget");
    assert_eq!(limit_events(&n, 0, DropReason::SubscriberTableFull), u64::from(sources), "all counted");
    n.now += 1;
    assert_eq!(
        n.send(IN, &mut flow(ip("100.65.0.0") + sources - 1, 5000)),
        Verdict::Refuse(DropReason::SubscriberTableFull)
    );
}

/// Two pools: 100.64.1.0/24 in `small` (4 sessions a subscriber), 100.64.2.0/24
/// in `narrow` (one block of 64 ports a subscriber).
fn two_pools() -> EngineParams {
    let mut p = limited();
    let mut narrow = PoolParams::cgnat("narrow", vec![ip("203.0.113.20")]);
    narrow.mode = PoolMode::PortBlocks { block_size: 64, max_blocks_per_subscriber: 1 };
    p.pools[0].name = "small".into();
    p.pools.push(narrow);
    p.rules = vec![translate_all("100.64.1.0/24", 0), translate_all("100.64.2.0/24", 1)];
    p
}

#[test]
fn refusals_are_counted_per_pool_and_reason() {
    let mut n = Nat::new(two_pools());
    assert_eq!(n.e.pool_names().collect::<Vec<_>>(), ["small", "narrow"]);
    open(&mut n, ip("100.64.1.2"), 4);
    for i in 0..3 {
        n.send(IN, &mut flow(ip("100.64.1.2"), 6000 + i));
    }
    open(&mut n, ip("100.64.2.2"), 64);
    for i in 0..2 {
        assert!(matches!(n.send(IN, &mut flow(ip("100.64.2.2"), 6000 + i)), Verdict::Refuse(_) | Verdict::Drop(_)));
    }
    assert_eq!(limit_events(&n, 0, DropReason::SubscriberSessionLimit), 3);
    assert_eq!(limit_events(&n, 0, DropReason::PortsExhausted), 0);
    assert_eq!(limit_events(&n, 1, DropReason::PortsExhausted), 2);
    assert_eq!(limit_events(&n, 1, DropReason::SubscriberSessionLimit), 0);
    assert_eq!(n.e.counters().drop_count(DropReason::PortsExhausted), 2);
    let total: u64 = n.e.counters().subscriber_limit_events.iter().flatten().sum();
    assert_eq!(total, 5);
}

#[test]
fn a_refusal_is_logged_once_per_subscriber_per_interval() {
    let mut n = Nat::new(two_pools());
    let (a, b) = (ip("100.64.1.2"), ip("100.64.2.2"));
    open(&mut n, a, 4);
    open(&mut n, b, 64);
    n.e.take_block_events().for_each(drop);
    let start = n.now;
    for t in 0..LOG_INTERVAL_SECS {
        n.now = start + t;
        n.send(IN, &mut flow(a, 6000));
        n.send(IN, &mut flow(b, 6000));
    }
    let logged = refusals(n.e.take_block_events());
    assert_eq!(logged.len(), 2, "one each in the interval: {logged:?}");
    let of_a = logged.iter().find(|e| e.inside == a).unwrap();
    assert_eq!(of_a.kind, EventKind::Refused(DropReason::SubscriberSessionLimit));
    assert_eq!((of_a.pool, of_a.first_port, of_a.last_port), (0, 0, 0));
    assert!(ip("203.0.113.1") <= of_a.public && of_a.public <= ip("203.0.113.4"), "its paired address");
    let of_b = logged.iter().find(|e| e.inside == b).unwrap();
    assert_eq!(
        (of_b.kind, of_b.pool, of_b.public),
        (EventKind::Refused(DropReason::PortsExhausted), 1, ip("203.0.113.20"))
    );
    n.now = start + LOG_INTERVAL_SECS;
    n.send(IN, &mut flow(a, 6000));
    assert_eq!(refusals(n.e.take_block_events()).len(), 1, "again once the interval has passed");
}

#[test]
fn no_mapping_is_deleted_to_make_room_for_a_subscriber_at_its_limit() {
    let mut n = Nat::new(two_pools());
    let (a, b, c) = (ip("100.64.1.2"), ip("100.64.2.2"), ip("100.64.2.3"));
    let a_maps = open(&mut n, a, 4);
    let b_maps = open(&mut n, b, 64);
    let c_maps = open(&mut n, c, 3);
    let live = n.e.live_sessions();
    for t in 0..3 {
        n.now += t;
        for i in 0..50 {
            assert!(matches!(n.send(IN, &mut flow(a, 6000 + i)), Verdict::Refuse(_) | Verdict::Drop(_)));
            assert!(matches!(n.send(IN, &mut flow(b, 6000 + i)), Verdict::Refuse(_) | Verdict::Drop(_)));
        }
    }
    assert_eq!(n.e.live_sessions(), live);
    assert_eq!((n.e.counters().sessions_evicted, n.e.counters().sessions_expired), (0, 0));
    still_translated(&mut n, a, &a_maps);
    still_translated(&mut n, b, &b_maps);
    still_translated(&mut n, c, &c_maps);
    open(&mut n, ip("100.64.1.9"), 2);
}

#[test]
fn a_full_table_evicts_the_oldest_unanswered_flow_past_older_answered_ones() {
    // Two flows answered (each by its first reply, which the fast lane
    // takes: it sets the flag and touches no cold half), then two
    // unanswered, all in one second: a new flow evicts the older
    // unanswered one, passing over the answered ones.
    let mut p = limited();
    p.max_sessions = 4;
    p.pools[0].max_sessions_per_subscriber = 100;
    let mut n = Nat::new(p);
    let a = ip("100.64.1.2");
    let answered = open(&mut n, a, 2);
    let (p3, q3, _, _) = tuple(&n.out(flow(a, 5002)));
    let (p4, q4, _, _) = tuple(&n.out(flow(a, 5003)));
    n.out(flow(a, 5004));
    assert_eq!(n.e.counters().sessions_evicted, 1);
    still_translated(&mut n, a, &answered);
    let mut late = udp(ip("198.51.100.1"), 53, p3, q3, b"late answer");
    assert_eq!(n.send(OUT, &mut late), Verdict::Drop(DropReason::NoSession), "the oldest unanswered was evicted");
    n.back(udp(ip("198.51.100.1"), 53, p4, q4, b"answer"));
}

#[test]
fn a_full_session_table_evicts_no_answered_session_for_a_new_flow() {
    let mut p = limited();
    p.max_sessions = 8;
    p.pools[0].max_sessions_per_subscriber = 100;
    let mut n = Nat::new(p);
    let (a, b) = (ip("100.64.1.2"), ip("100.64.1.3"));
    let a_maps = open(&mut n, a, 4);
    let b_maps = open(&mut n, b, 4);
    assert_eq!(n.send(IN, &mut flow(a, 6000)), Verdict::Refuse(DropReason::TableFull));
    assert_eq!(n.send(IN, &mut flow(ip("100.64.1.4"), 6000)), Verdict::Refuse(DropReason::TableFull));
    assert_eq!(n.e.counters().sessions_evicted, 0);
    assert_eq!(limit_events(&n, 0, DropReason::TableFull), 2);
    still_translated(&mut n, a, &a_maps);
    still_translated(&mut n, b, &b_maps);
}
