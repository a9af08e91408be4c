//! 1:1 static NAT, port-range forwards and port parity (issue 12 parts 4
//! and 7), through the public engine API with real frames.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // test code: a failed unwrap is a failed test

use dataplane::nat::*;
use dataplane::testing::frames::{icmp_echo, icmp_error, ip, tcp, tuple, udp};
use dataplane::wire::tcp::{ACK, SYN};

mod common;
use common::*;

const PUBLIC: &str = "192.0.2.77";
const HOST: &str = "100.64.0.9";
const REMOTE: &str = "198.51.100.1";

fn static_params() -> EngineParams {
    let mut p = cgnat_params();
    p.statics = vec![StaticNat::new(ip(PUBLIC), ip(HOST))];
    p.boundary.inside_prefixes = vec![pfx("100.64.0.0/10")];
    p
}

/// The ICMP identifier of an echo frame (Ethernet 14 + IPv4 20 + 4).
fn echo_ident(f: &[u8]) -> u16 {
    u16::from_be_bytes([f[38], f[39]])
}

#[test]
fn a_static_host_leaves_from_its_public_address_keeping_its_ports() {
    let mut n = Nat::new(static_params());
    let (host, public, remote) = (ip(HOST), ip(PUBLIC), ip(REMOTE));
    // TCP: source A, port kept; the reply goes back to B.
    let t = n.out(tcp(host, 40000, remote, 443, SYN));
    assert_eq!(tuple(&t), (public, 40000, remote, 443));
    let r = n.back(tcp(remote, 443, public, 40000, SYN | ACK));
    assert_eq!(tuple(&r), (remote, 443, host, 40000));
    // UDP, to two remotes: the same public endpoint for both (endpoint-independent).
    for (dst, dport) in [(remote, 53), (ip("198.51.100.2"), 3478)] {
        let t = n.out(udp(host, 5060, dst, dport, b"q"));
        assert_eq!(tuple(&t), (public, 5060, dst, dport));
        let r = n.back(udp(dst, dport, public, 5060, b"a"));
        assert_eq!(tuple(&r), (dst, dport, host, 5060));
    }
    // ICMP echo: the identifier kept.
    let t = n.out(icmp_echo(host, remote, 0x1234, 1, true));
    assert_eq!((tuple(&t).0, echo_ident(&t)), (public, 0x1234));
    let r = n.back(icmp_echo(remote, public, 0x1234, 1, false));
    assert_eq!((tuple(&r).2, echo_ident(&r)), (host, 0x1234));
    // Any other subscriber still goes through the pool's rules.
    let t = n.out(udp(ip("100.64.0.10"), 5060, remote, 53, b"q"));
    assert!((ip("203.0.113.1")..=ip("203.0.113.4")).contains(&tuple(&t).0), "{:?}", tuple(&t));
}

#[test]
fn anything_to_a_static_address_reaches_its_host_on_the_same_port() {
    let mut n = Nat::new(static_params());
    let (host, public, remote) = (ip(HOST), ip(PUBLIC), ip(REMOTE));
    // TCP to any port, unsolicited: admitted (no filtering), port kept.
    for port in [22, 80, 8443] {
        let r = n.back(tcp(remote, 50000 + port, public, port, SYN));
        assert_eq!(tuple(&r), (remote, 50000 + port, host, port));
        let t = n.out(tcp(host, port, remote, 50000 + port, SYN | ACK));
        assert_eq!(tuple(&t), (public, port, remote, 50000 + port), "the answer leaves from A");
    }
    // UDP.
    let r = n.back(udp(remote, 9999, public, 51820, b"hello"));
    assert_eq!(tuple(&r), (remote, 9999, host, 51820));
    let t = n.out(udp(host, 51820, remote, 9999, b"back"));
    assert_eq!(tuple(&t), (public, 51820, remote, 9999));
    // ICMP echo to A: answered by B, from A.
    let r = n.back(icmp_echo(remote, public, 0x4242, 7, true));
    assert_eq!((tuple(&r).2, echo_ident(&r)), (host, 0x4242));
    let t = n.out(icmp_echo(host, remote, 0x4242, 7, false));
    assert_eq!((tuple(&t).0, tuple(&t).2, echo_ident(&t)), (public, remote, 0x4242));
    // A TCP segment that cannot open a connection opens nothing.
    let mut f = tcp(remote, 1111, public, 25, ACK);
    assert_eq!(n.send(OUT, &mut f), Verdict::Drop(DropReason::TcpNotSyn));
}

#[test]
fn icmp_errors_and_hairpins_reach_a_static_host() {
    let mut n = Nat::new(static_params());
    let (host, public, remote) = (ip(HOST), ip(PUBLIC), ip(REMOTE));
    // A router on the way answers the host's datagram with time exceeded:
    // it reaches the host, about its own packet.
    let t = n.out(udp(host, 5060, remote, 53, b"q"));
    let r = n.back(icmp_error(ip("192.0.2.254"), public, 11, 0, &t, 8));
    assert_eq!(tuple(&r).2, host);
    assert_eq!(u32::from_be_bytes([r[54], r[55], r[56], r[57]]), host, "the quoted source is the host");
    // Another subscriber reaches the host through its public address
    // (RFC 4787 REQ-9): the host sees that subscriber's public endpoint,
    // and its answer goes back inside from the static address.
    let other = ip("100.64.0.10");
    let h = n.pass(IN, tcp(other, 40000, public, 80, SYN), IN);
    let (src, sport, dst, dport) = tuple(&h);
    assert!((ip("203.0.113.1")..=ip("203.0.113.4")).contains(&src), "{:?}", tuple(&h));
    assert_eq!((dst, dport), (host, 80));
    let a = n.pass(IN, tcp(host, 80, src, sport, SYN | ACK), IN);
    assert_eq!(tuple(&a), (public, 80, other, 40000));
}

#[test]
fn the_boundary_still_guards_a_static_address() {
    let mut n = Nat::new(static_params());
    // An outside packet claiming an inside source.
    let mut f = tcp(ip("100.64.5.5"), 1234, ip(PUBLIC), 80, SYN);
    assert_eq!(n.send(OUT, &mut f), Verdict::Drop(DropReason::Spoofed));
    // Without the static entry nothing reaches the host.
    let mut n = Nat::new(cgnat_params());
    let mut f = tcp(ip(REMOTE), 1234, ip(PUBLIC), 80, SYN);
    assert_eq!(n.send(OUT, &mut f), Verdict::Drop(DropReason::NoSession));
}

#[test]
fn a_static_address_is_in_no_pool_and_used_once() {
    let refused = |f: fn(&mut EngineParams)| {
        let mut p = static_params();
        f(&mut p);
        Engine::new(&p).err().unwrap()
    };
    let e = refused(|p| p.statics[0].public_addr = ip("203.0.113.2"));
    assert!(matches!(e, ParamError::Static { why, .. } if why.contains("pool")), "{e}");
    let e = refused(|p| p.statics.push(StaticNat::new(ip(PUBLIC), ip("100.64.0.10"))));
    assert!(matches!(e, ParamError::Static { why, .. } if why.contains("twice")), "{e}");
    let e = refused(|p| p.statics.push(StaticNat::new(ip("192.0.2.78"), ip(HOST))));
    assert!(matches!(e, ParamError::Static { why, .. } if why.contains("two public")), "{e}");
    let e = refused(|p| p.statics[0].public_addr = ip("203.0.113.254"));
    assert!(matches!(e, ParamError::Static { why, .. } if why.contains("box's own")), "{e}");
}

#[test]
fn static_entries_come_change_and_go_live() {
    let mut n = Nat::new(cgnat_params());
    let (host, public, remote) = (ip(HOST), ip(PUBLIC), ip(REMOTE));
    let mut f = tcp(remote, 40000, public, 80, SYN);
    assert_eq!(n.send(OUT, &mut f), Verdict::Drop(DropReason::NoSession));
    // Added: both directions at once.
    assert_eq!(n.e.reconfigure(&static_params(), n.now), Ok(0));
    let r = n.back(tcp(remote, 40000, public, 80, SYN));
    assert_eq!(tuple(&r).2, host);
    let t = n.out(udp(host, 5060, remote, 53, b"q"));
    assert_eq!(tuple(&t).0, public);
    // Another inside host for the address: the old one's sessions go.
    let mut p = static_params();
    p.statics[0].inside_addr = ip("100.64.0.10");
    assert_eq!(n.e.reconfigure(&p, n.now), Ok(2));
    let r = n.back(tcp(remote, 40001, public, 80, SYN));
    assert_eq!(tuple(&r).2, ip("100.64.0.10"));
    let t = n.out(udp(host, 5060, remote, 53, b"q"));
    assert_ne!(tuple(&t).0, public, "the old host is back in the pool");
    // A public address a pool holds: refused whole, nothing changed.
    let mut bad = p.clone();
    bad.statics.push(StaticNat::new(ip("203.0.113.3"), ip("100.64.0.11")));
    assert!(matches!(n.e.reconfigure(&bad, n.now), Err(ParamError::Static { .. })));
    let r = n.back(tcp(remote, 40002, public, 80, SYN));
    assert_eq!(tuple(&r).2, ip("100.64.0.10"));
    // Removed: its sessions flushed, nothing reaches inside any more.
    assert_eq!(n.e.reconfigure(&cgnat_params(), n.now), Ok(2));
    let mut f = tcp(remote, 40003, public, 80, SYN);
    assert_eq!(n.send(OUT, &mut f), Verdict::Drop(DropReason::NoSession));
}

/// Two workers: a frame carried along every hand-off until a worker decides.
struct Two {
    w: [Engine; 2],
    now: u32,
}

impl Two {
    fn with(mut p: EngineParams) -> Self {
        p.workers = 2;
        p.worker = 0;
        let w0 = Engine::new(&p).unwrap();
        p.worker = 1;
        Self { w: [w0, Engine::new(&p).unwrap()], now: 1000 }
    }

    /// The verdict, the frame and the worker that decided.
    fn deliver(&mut self, at: usize, side: Side, mut f: Vec<u8>) -> (Verdict, Vec<u8>, usize) {
        let (mut w, mut side) = (at, side);
        for _ in 0..3 {
            match self.w[w].process_one(side, self.now, &mut f) {
                Verdict::HandOff { worker, arrived_on } => (w, side) = (usize::from(worker), arrived_on),
                v => return (v, f, w),
            }
        }
        panic!("hand-off loop");
    }
}

#[test]
fn with_two_workers_a_static_hosts_sessions_live_with_its_worker() {
    let mut t = Two::with(static_params());
    let owner = usize::from(t.w[0].subscriber_owner(ip(HOST)));
    let (host, public, remote) = (ip(HOST), ip(PUBLIC), ip(REMOTE));
    // Inbound, off the other worker's queue: handed to the host's worker.
    let (v, f, at) = t.deliver(1 - owner, OUT, tcp(remote, 40000, public, 80, SYN));
    assert_eq!((v, at), (Verdict::Forward(IN), owner));
    assert_eq!(tuple(&f), (remote, 40000, host, 80));
    // Its answer, off either queue, meets the same session there.
    for first in [owner, 1 - owner] {
        let (v, f, at) = t.deliver(first, IN, tcp(host, 80, remote, 40000, SYN | ACK));
        assert_eq!((v, at), (Verdict::Forward(OUT), owner));
        assert_eq!(tuple(&f), (public, 80, remote, 40000));
    }
    assert_eq!(t.w[owner].live_sessions() + t.w[1 - owner].live_sessions(), 1, "one session, on the owner");
}

/// One pool address, so a subscriber's paired address is known.
fn one_address_params() -> EngineParams {
    let mut pool = PoolParams::cgnat("one", vec![ip("203.0.113.1")]);
    pool.mode = PoolMode::PortBlocks { block_size: 64, max_blocks_per_subscriber: 32 };
    let mut p = EngineParams::single(vec![pool], vec![translate_all("100.64.0.0/10", 0)]);
    p.local_addrs = vec![ip("100.64.0.1")];
    p
}

fn range(public: (u16, u16), inside: (u16, u16)) -> Forward {
    Forward {
        protocol: 6,
        public_addr: ip("203.0.113.1"),
        public_port: public.0,
        public_port_last: public.1,
        inside_addr: ip("100.64.0.5"),
        inside_port: inside.0,
        inside_port_last: inside.1,
        ftp_alg: false,
    }
}

#[test]
fn a_port_range_forward_keeps_the_offset() {
    let mut p = one_address_params();
    // Shared: the source port is kept when free, so a reserved one shows.
    p.pools[0].mode = PoolMode::Shared;
    p.forwards = vec![range((8000, 8099), (9000, 9099))];
    let mut n = Nat::new(p);
    let (public, server, remote) = (ip("203.0.113.1"), ip("100.64.0.5"), ip(REMOTE));
    for port in [8000, 8042, 8099] {
        let r = n.back(tcp(remote, 40000, public, port, SYN));
        assert_eq!(tuple(&r), (remote, 40000, server, port + 1000));
        let t = n.out(tcp(server, port + 1000, remote, 40000, SYN | ACK));
        assert_eq!(tuple(&t), (public, port, remote, 40000), "the answer leaves from the port asked");
    }
    // Just outside the range: nothing.
    for port in [7999, 8100] {
        let mut f = tcp(remote, 40000, public, port, SYN);
        assert_eq!(n.send(OUT, &mut f), Verdict::Drop(DropReason::NoSession), "port {port}");
    }
    // The range is reserved (for TCP): a subscriber whose own port lies in it gets another.
    for sport in [8000, 8050, 8099] {
        let t = n.out(tcp(ip("100.64.0.7"), sport, remote, 443, SYN));
        assert!(!(8000..=8099).contains(&tuple(&t).1), "{sport} -> {}", tuple(&t).1);
    }
    let t = n.out(tcp(ip("100.64.0.7"), 8200, remote, 443, SYN));
    assert_eq!(tuple(&t).1, 8200, "past the range the source port is kept");
    let t = n.out(udp(ip("100.64.0.7"), 8050, remote, 53, b"q"));
    assert_eq!(tuple(&t).1, 8050, "and UDP keeps its own ports");
}

#[test]
fn a_port_range_forward_to_one_port() {
    let mut p = one_address_params();
    p.forwards = vec![range((8000, 8099), (80, 80))];
    let mut n = Nat::new(p);
    let (public, server, remote) = (ip("203.0.113.1"), ip("100.64.0.5"), ip(REMOTE));
    // Each remote endpoint reaches the server on port 80, whichever public port it asked.
    for (rport, port) in [(40000, 8000), (40001, 8001), (40002, 8077), (40003, 8050)] {
        let r = n.back(tcp(remote, rport, public, port, SYN));
        assert_eq!(tuple(&r), (remote, rport, server, 80));
    }
    // The same remote endpoint on a second public port would give the
    // server two sessions it answers alike: refused.
    let mut f = tcp(remote, 40000, public, 8099, SYN);
    assert_eq!(n.send(OUT, &mut f), Verdict::Drop(DropReason::InsideClash));
    // Each answer leaves from the public port its remote asked.
    let t = n.out(tcp(server, 80, remote, 40001, SYN | ACK));
    assert_eq!(tuple(&t), (public, 8001, remote, 40001));
    let t = n.out(tcp(server, 80, remote, 40003, SYN | ACK));
    assert_eq!(tuple(&t), (public, 8050, remote, 40003));
}

#[test]
fn with_two_workers_a_range_to_one_port_lives_with_its_first_ports_owner() {
    let mut p = cgnat_params();
    let first = 1024;
    p.forwards = vec![Forward {
        protocol: 6,
        public_addr: ip("203.0.113.1"),
        public_port: first,
        public_port_last: first + 255,
        inside_addr: ip("100.64.0.5"),
        inside_port: 80,
        inside_port_last: 80,
        ftp_alg: false,
    }];
    let mut t = Two::with(p);
    let public = ip("203.0.113.1");
    let home = usize::from(t.w[0].public_owner(public, first).unwrap());
    // A port of the range that the other worker owns (blocks of 64 alternate).
    let port = (first..first + 256).find(|&x| usize::from(t.w[0].public_owner(public, x).unwrap()) != home).unwrap();
    let (v, f, at) = t.deliver(1 - home, OUT, tcp(ip(REMOTE), 40000, public, port, SYN));
    assert_eq!((v, at), (Verdict::Forward(IN), home), "kept by the first port's owner");
    assert_eq!(tuple(&f).3, 80);
    // The server's answer names port 80 only: it finds the same worker.
    for start in [0, 1] {
        let (v, f, at) = t.deliver(start, IN, tcp(ip("100.64.0.5"), 80, ip(REMOTE), 40000, SYN | ACK));
        assert_eq!((v, at), (Verdict::Forward(OUT), home));
        assert_eq!(tuple(&f), (public, port, ip(REMOTE), 40000));
    }
    // A router's error about that answer, off the wire at the worker that
    // owns `port`, reaches the forward's sessions too.
    let reply = tcp(public, port, ip(REMOTE), 40000, SYN | ACK);
    let err = icmp_error(ip("203.0.113.77"), public, 3, 4, &reply, 8);
    let (v, f, at) = t.deliver(1 - home, OUT, err);
    assert_eq!((v, at), (Verdict::Forward(IN), home), "to the forward's worker");
    assert_eq!(tuple(&f).2, ip("100.64.0.5"));
}

#[test]
fn malformed_ranges_are_refused() {
    let mut p = one_address_params();
    p.forwards = vec![range((8000, 8099), (9000, 9049))];
    assert!(matches!(Engine::new(&p), Err(ParamError::ForwardRange { port: 8000, .. })));
    p.forwards = vec![range((8099, 8000), (80, 80))];
    assert!(matches!(Engine::new(&p), Err(ParamError::ForwardRange { .. })));
}

/// Every public port a pool gives `flows` inside ports of both parities,
/// from a few subscribers.
fn public_ports(parity: bool, random: bool, shared: bool) -> Vec<(u16, u16)> {
    let mut p = if shared { home_params() } else { one_address_params() };
    p.pools[0].port_parity = parity;
    p.pools[0].random_ports = random;
    let src = |i: u16| if shared { ip("192.168.1.2") + u32::from(i % 3) } else { ip("100.64.0.2") + u32::from(i % 3) };
    let mut n = Nat::new(p);
    (0..600u16)
        .map(|i| {
            // Inside ports that collide often: three subscribers send from
            // the same ports (a shared pool keeps the first one's), and a
            // subscriber's ports repeat their offset in its blocks of 64.
            let k = i / 3;
            let sport = 10000 + 4 * k + k % 2;
            let t = n.out(udp(src(i), sport, ip(REMOTE), 1000 + i, b"rtp"));
            (sport, tuple(&t).1)
        })
        .collect()
}

#[test]
fn port_parity_gives_an_even_port_for_an_even_one() {
    for (random, shared) in [(false, false), (true, false), (false, true), (true, true)] {
        let got = public_ports(true, random, shared);
        let odd = got.iter().filter(|(i, _)| i % 2 == 1).count();
        assert!(odd > 100 && odd < 500, "both parities asked for");
        assert!(got.iter().filter(|(i, p)| i != p).count() > 100, "many ports were not kept");
        for (inside, public) in &got {
            assert_eq!(inside % 2, public % 2, "{inside} -> {public} (random {random}, shared {shared})");
        }
    }
    // Without it parities mix (the check above can fail).
    for (random, shared) in [(false, false), (true, false), (false, true), (true, true)] {
        let got = public_ports(false, random, shared);
        assert!(got.iter().any(|(i, p)| i % 2 != p % 2), "random {random}, shared {shared}");
    }
}

#[test]
fn port_parity_gives_way_rather_than_refuse() {
    // One block of 64 ports: 32 even ones.
    let mut p = one_address_params();
    p.pools[0].mode = PoolMode::PortBlocks { block_size: 64, max_blocks_per_subscriber: 1 };
    p.pools[0].port_parity = true;
    let mut n = Nat::new(p);
    let got: Vec<u16> =
        (0..40u16).map(|i| tuple(&n.out(udp(ip("100.64.0.2"), 20000 + 2 * i, ip(REMOTE), 53, b"q"))).1).collect();
    assert!(got[..32].iter().all(|p| p % 2 == 0), "even while even ports last: {got:?}");
    assert!(got[32..].iter().all(|p| p % 2 == 1), "then the odd ones, not a refusal: {got:?}");
}

/// A GRE packet (RFC 2784, protocol type IPv4) around a few bytes.
fn gre(src: u32, dst: u32) -> Vec<u8> {
    dataplane::testing::frames::frame(src, dst, 47, &[0, 0, 0x08, 0x00, 0x45, 0, 0, 20, 1, 2, 3, 4], 64)
}

/// (source, destination) of a frame's IPv4 header.
fn addrs(f: &[u8]) -> (u32, u32) {
    let a = |o: usize| u32::from_be_bytes(f[14 + o..14 + o + 4].try_into().unwrap());
    (a(12), a(16))
}

#[test]
fn other_protocols_reach_and_leave_a_static_host_by_its_public_address() {
    let (host, public, remote) = (ip(HOST), ip(PUBLIC), ip(REMOTE));
    // Outbound GRE leaves from A, not from the pool, and its answer comes back.
    let mut n = Nat::new(static_params());
    let out = n.out(gre(host, remote));
    assert_eq!(addrs(&out), (public, remote));
    assert_eq!(addrs(&n.back(gre(remote, public))), (remote, host));
    // Inbound GRE to A opens a session to B on its own (the DMZ host).
    let mut n = Nat::new(static_params());
    let other = ip("198.51.100.9");
    assert_eq!(addrs(&n.back(gre(other, public))), (other, host));
    assert_eq!(addrs(&n.out(gre(host, other))), (public, other), "B's answer leaves from A");
    // A pool address still admits no unsolicited GRE.
    let mut f = gre(other, ip("203.0.113.1"));
    assert_eq!(n.send(OUT, &mut f), Verdict::Drop(DropReason::UnsupportedProtocol));
}
