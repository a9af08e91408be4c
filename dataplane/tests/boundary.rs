//! The box's boundary (issue 11, DESIGN.md "The box's boundary"): what
//! crosses the edges besides translated traffic, one scenario per rule,
//! each named after what it shows.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;
use common::*;
use dataplane::nat::params::proto;
use dataplane::nat::*;
use dataplane::testing::frames::{icmp_echo, icmp_error, ip, tcp, tcp_at, tuple, udp};
use dataplane::wire::tcp::{ACK, RST, SYN};

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
    let (h, hp, s, sp) = (ip(HOST.0), HOST.1, ip(SERVER.0), SERVER.1);
    let t = n.out(tcp_at(h, hp, s, sp, SYN, (1_000, 0, 64_240)));
    let (pi, pp, _, _) = tuple(&t);
    n.back(tcp_at(s, sp, pi, pp, SYN | ACK, (50_000, 1_001, 65_160)));
    n.out(tcp_at(h, hp, s, sp, ACK, (1_001, 50_001, 65_535)));
    Conn { public: (pi, pp), a: 1_001, b: 50_001 }
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
