//! Scenario tests for what a rule adds to its TCP connections: MSS
//! clamping on SYN and SYN/ACK (netfilter's TCPMSS, VPP's
//! test_mss_clamping), and the FTP ALG (netfilter's nf_nat_ftp): PORT and
//! EPRT rewritten, the active data connection admitted and translated,
//! sequence and acknowledgment numbers (SACK too) shifted after a change
//! in length, PASV/EPSV read, nothing done with the ALG off. And a server
//! inside (nf_nat_ftp on DNAT): behind a forward its 227 and 229 name the
//! public side and the client's data connection is admitted (one worker
//! or two), as a 1:1 static host its 227 names its address; off on the
//! forward or static entry, nothing changes.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::cast_possible_truncation)] // small test values

mod common;

use common::*;
use dataplane::nat::*;
use dataplane::testing::frames::*;
use dataplane::wire::ipv4::PROTO_TCP;
use dataplane::wire::tcp::{TcpPacket, ACK, SYN};

const SUB: &str = "100.64.0.2";
const SERVER: &str = "198.51.100.1";

fn with_options(p: EngineParams, o: RuleOptions) -> Nat {
    let mut p = p;
    p.rule_options = vec![o];
    p.mtu = [1500, 1400];
    Nat::new(p)
}

fn clamp(m: MssClamp) -> RuleOptions {
    RuleOptions { mss_clamp: m, ..RuleOptions::default() }
}

/// A TCP frame with options (`mss`: an MSS option of that size) and a payload.
fn seg(
    src: (&str, u16),
    dst: (&str, u16),
    flags: u8,
    seq_ack: (u32, u32),
    mss: Option<u16>,
    payload: &[u8],
) -> Vec<u8> {
    let mut opts = Vec::new();
    if let Some(m) = mss {
        // NOP first: the MSS value at an odd offset, the harder checksum case.
        opts.extend_from_slice(&[1, 2, 4]);
        opts.extend_from_slice(&m.to_be_bytes());
        opts.extend_from_slice(&[1, 3, 3, 7]);
    }
    let (s, d) = (ip(src.0), ip(dst.0));
    let t = tcp_segment_at(s, src.1, d, dst.1, flags, (seq_ack.0, seq_ack.1, 64_000), &opts, payload);
    frame(s, d, PROTO_TCP, &t, 64)
}

fn mss_of(f: &[u8]) -> Option<u16> {
    TcpPacket::new_checked(&f[34..]).unwrap().mss()
}

#[test]
fn a_syn_and_its_syn_ack_are_clamped_to_the_rules_size() {
    let mut n = with_options(cgnat_params(), clamp(MssClamp::Fixed(1200)));
    let syn = n.out(seg((SUB, 40000), (SERVER, 80), SYN, (1, 0), Some(1460), &[]));
    assert_eq!(mss_of(&syn), Some(1200), "the SYN leaves with the clamped MSS");
    let (pub_ip, pport, ..) = tuple(&syn);
    // MSS 1460 at an even offset this time.
    let t = tcp_segment_at(ip(SERVER), 80, pub_ip, pport, SYN | ACK, (9, 2, 64_000), &[2, 4, 5, 0xb4, 1, 1, 1, 1], &[]);
    let syn_ack = frame(ip(SERVER), pub_ip, PROTO_TCP, &t, 64);
    let back = n.back(syn_ack);
    assert_eq!(mss_of(&back), Some(1200), "the SYN/ACK reaches inside clamped too");
    assert_eq!(n.e.counters().mss_clamped, 2);
}

#[test]
fn auto_clamps_to_the_outgoing_mtu_less_40() {
    let mut n = with_options(cgnat_params(), clamp(MssClamp::Auto));
    let syn = n.out(seg((SUB, 40000), (SERVER, 80), SYN, (1, 0), Some(1460), &[]));
    assert_eq!(mss_of(&syn), Some(1360), "outside MTU 1400 - 40");
}

#[test]
fn a_smaller_mss_no_option_a_non_syn_and_no_clamp_are_left_alone() {
    let mut n = with_options(cgnat_params(), clamp(MssClamp::Fixed(1200)));
    let syn = n.out(seg((SUB, 40001), (SERVER, 80), SYN, (1, 0), Some(1000), &[]));
    assert_eq!(mss_of(&syn), Some(1000), "a smaller MSS is never raised");
    let syn = n.out(seg((SUB, 40002), (SERVER, 80), SYN, (1, 0), None, &[]));
    assert_eq!(mss_of(&syn), None, "no option is added");
    // A segment that is not a SYN keeps even a large MSS option (netfilter
    // looks at SYNs only).
    let _ = n.out(seg((SUB, 40003), (SERVER, 80), SYN, (1, 0), None, &[]));
    let ack = n.out(seg((SUB, 40003), (SERVER, 80), ACK, (2, 0), Some(1460), &[]));
    assert_eq!(mss_of(&ack), Some(1460));
    assert_eq!(n.e.counters().mss_clamped, 0);
    // A rule without clamping clamps nothing.
    let mut n = with_options(cgnat_params(), RuleOptions::default());
    let syn = n.out(seg((SUB, 40000), (SERVER, 80), SYN, (1, 0), Some(1460), &[]));
    assert_eq!(mss_of(&syn), Some(1460));
}

// ---- The FTP ALG -------------------------------------------------------

const CLIENT: (&str, u16) = (SUB, 40000);
const FTP: (&str, u16) = (SERVER, 21);

fn ftp_on() -> RuleOptions {
    RuleOptions { ftp_alg: true, ..RuleOptions::default() }
}

/// The TCP payload of a frame (to its IP total length).
fn payload(f: &[u8]) -> &[u8] {
    let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
    let doff = usize::from(f[34 + 12] >> 4) * 4;
    &f[34 + doff..14 + total]
}

fn seq_ack(f: &[u8]) -> (u32, u32) {
    let t = TcpPacket::new_checked(&f[34..]).unwrap();
    (t.seq(), t.ack())
}

/// A frame from the server to the client's public endpoint `to`.
fn from_server(src: (&str, u16), to: (u32, u16), flags: u8, seq_ack: (u32, u32), opts: &[u8], data: &[u8]) -> Vec<u8> {
    let s = ip(src.0);
    let t = tcp_segment_at(s, src.1, to.0, to.1, flags, (seq_ack.0, seq_ack.1, 64_000), opts, data);
    frame(s, to.0, PROTO_TCP, &t, 64)
}

/// The control connection up to the server's greeting being acknowledged:
/// client ISN 100, server ISN 5000. Returns the client's public endpoint.
fn control_connection(n: &mut Nat) -> (u32, u16) {
    let syn = n.out(seg(CLIENT, FTP, SYN, (100, 0), Some(1460), &[]));
    let (pub_ip, pub_port, ..) = tuple(&syn);
    n.back(from_server(FTP, (pub_ip, pub_port), SYN | ACK, (5000, 101), &[], &[]));
    n.out(seg(CLIENT, FTP, ACK, (101, 5001), None, &[]));
    let hello = b"220 ready\r\n";
    n.back(from_server(FTP, (pub_ip, pub_port), ACK, (5001, 101), &[], hello));
    n.out(seg(CLIENT, FTP, ACK, (101, 5001 + hello.len() as u32), None, &[]));
    (pub_ip, pub_port)
}

/// Sends a frame from inside that may grow past its buffer: forwarded,
/// and the frame as it leaves (the engine's grown copy if it made one).
fn out_maybe_grown(n: &mut Nat, mut f: Vec<u8>) -> (Vec<u8>, bool) {
    let v = n.send(IN, &mut f);
    assert_eq!(v, Verdict::Forward(OUT));
    let (f, grown) = match n.e.grown().next() {
        Some((0, g)) => (g.to_vec(), true),
        Some((i, _)) => panic!("grown frame at index {i}"),
        None => (f, false),
    };
    assert!(checksums_ok(&f), "checksums after the ALG");
    (f, grown)
}

/// The client names its data port `data_port` with `cmd`; the
/// command leaves naming a public endpoint, the server connects to it from
/// port 20 and reaches the client. Returns the line sent, its change in
/// length and the control connection's public endpoint.
fn active_mode(n: &mut Nat, cmd: &[u8], padding: usize, data_port: u16) -> (Vec<u8>, i32, (u32, u16)) {
    let ctl = control_connection(n);
    let pub_ip = ctl.0;
    let mut f = seg(CLIENT, FTP, ACK | 0x08, (101, 5012), None, cmd);
    f.extend(std::iter::repeat_n(0, padding)); // room behind the packet, as a frame buffer has
    let (out, grown) = out_maybe_grown(n, f);
    let line = payload(&out).to_vec();
    let delta = line.len() as i32 - cmd.len() as i32;
    assert_ne!(delta, 0, "the tests want a change in length");
    assert_eq!(grown, padding == 0 && delta > 0, "a grown copy exactly when the frame has no room");
    assert_eq!(n.e.counters().ftp_alg_rewritten, 1);
    // The line names the public address and a port the server can reach.
    let text = String::from_utf8(line.clone()).unwrap();
    let (addr, port) = if text.starts_with("PORT") {
        let v: Vec<u32> = text[5..text.len() - 2].split(',').map(|x| x.parse().unwrap()).collect();
        ((v[0] << 24) | (v[1] << 16) | (v[2] << 8) | v[3], (v[4] << 8 | v[5]) as u16)
    } else {
        let parts: Vec<&str> = text.trim_end().split('|').collect();
        (ip(parts[2]), parts[3].parse().unwrap())
    };
    assert_eq!(addr, pub_ip, "{text}");
    // The server's data connection, from port 20: admitted, to the client's port.
    let data = n.back(from_server((SERVER, 20), (addr, port), SYN, (7000, 0), &[], &[]));
    assert_eq!(tuple(&data), (ip(SERVER), 20, ip(SUB), data_port));
    let back = n.out(seg((SUB, data_port), (SERVER, 20), SYN | ACK, (800, 7001), None, &[]));
    assert_eq!(tuple(&back), (addr, port, ip(SERVER), 20), "the client's answer leaves from the public port");
    (line, delta, ctl)
}

/// After a rewrite that changed the length by `delta`: the client's next
/// segment leaves shifted, the server's acknowledgment (and SACK blocks)
/// come back unshifted, and the server's own numbers are left alone.
fn seq_ack_follow(n: &mut Nat, pub_ep: (u32, u16), sent: usize, delta: i32) {
    let next = 101 + sent as u32;
    let f = n.out(seg(CLIENT, FTP, ACK | 0x08, (next, 5012), None, b"NOOP\r\n"));
    assert_eq!(seq_ack(&f), (next.wrapping_add(delta as u32), 5012), "the client's numbers shift by {delta}");
    let acked = next.wrapping_add(6).wrapping_add(delta as u32);
    // SACK block [acked + 10, acked + 20) as the server would number it.
    let mut sack = vec![1, 1, 5, 10];
    sack.extend_from_slice(&(acked + 10).to_be_bytes());
    sack.extend_from_slice(&(acked + 20).to_be_bytes());
    let b = n.back(from_server(FTP, pub_ep, ACK, (5012, acked), &sack, b"200 ok\r\n"));
    assert_eq!(seq_ack(&b), (5012, next + 6), "the server's acknowledgment is shifted back");
    let o = &b[34 + 20..];
    let edge = |k: usize| u32::from_be_bytes([o[4 + k], o[5 + k], o[6 + k], o[7 + k]]);
    assert_eq!((edge(0), edge(4)), (next + 16, next + 26), "SACK edges too");
}

#[test]
fn port_is_rewritten_in_place_with_room_and_the_data_connection_admitted() {
    let mut n = with_options(cgnat_params(), ftp_on());
    let cmd = b"PORT 100,64,0,2,156,65\r\n";
    let (line, delta, pub_ep) = active_mode(&mut n, cmd, 64, 40001);
    assert!(line.starts_with(b"PORT 203,0,113,"), "{}", String::from_utf8_lossy(&line));
    assert!(n.e.grown().next().is_none(), "the frame had room");
    // A retransmission of the PORT: the same line, the same numbers, and
    // the shift counted once.
    let mut again = seg(CLIENT, FTP, ACK | 0x08, (101, 5012), None, cmd);
    again.extend(std::iter::repeat_n(0, 64));
    let (out, _) = out_maybe_grown(&mut n, again);
    assert_eq!(payload(&out), &line[..], "the same public port");
    assert_eq!(seq_ack(&out).0, 101);
    seq_ack_follow(&mut n, pub_ep, cmd.len(), delta);
}

#[test]
fn eprt_grows_past_its_frame_into_a_grown_copy() {
    let mut n = with_options(cgnat_params(), ftp_on());
    // 203.0.113.x is longer than 100.64.0.2, and a public port from the
    // blocks (1024 and up) no shorter than 1025.
    let cmd = b"EPRT |1|100.64.0.2|1025|\r\n";
    let (line, delta, pub_ep) = active_mode(&mut n, cmd, 0, 1025);
    assert!(line.starts_with(b"EPRT |1|203.0.113."), "{}", String::from_utf8_lossy(&line));
    assert!(delta > 0, "a longer line in a frame without room");
    seq_ack_follow(&mut n, pub_ep, cmd.len(), delta);
}

#[test]
fn the_expectation_admits_the_data_connection_through_port_dependent_filtering() {
    // A home router: address-and-port-dependent filtering (netfilter's).
    let mut p = home_params();
    p.rules = vec![translate_all("100.64.0.0/10", 0)];
    let mut n = with_options(p, ftp_on());
    active_mode(&mut n, b"PORT 100,64,0,2,156,65\r\n", 64, 40001);
    // Anyone else, or the server to another port of the mapping, is not let in.
    let pub_ip = ip("198.51.100.10");
    let mut stranger = from_server(("192.0.2.9", 20), (pub_ip, 40001), SYN, (1, 0), &[], &[]);
    assert_ne!(n.send(OUT, &mut stranger), Verdict::Forward(IN), "only the server was expected");
}

#[test]
fn pasv_and_epsv_replies_are_read_and_the_data_connection_goes_out_as_usual() {
    let mut n = with_options(cgnat_params(), ftp_on());
    let (pub_ip, pub_port) = control_connection(&mut n);
    for (k, reply) in
        [&b"227 Entering Passive Mode (198,51,100,1,195,80).\r\n"[..], b"229 Extended Passive Mode (|||50001|)\r\n"]
            .iter()
            .enumerate()
    {
        let f = n.back(from_server(FTP, (pub_ip, pub_port), ACK | 0x08, (5012, 101), &[], reply));
        assert_eq!(payload(&f), *reply, "nothing to rewrite for a client inside");
        assert_eq!(n.e.counters().ftp_alg_passive, k as u64 + 1);
        let port = 50000 + k as u16;
        let syn = n.out(seg((SUB, 41000 + k as u16), (SERVER, port), SYN, (1, 0), None, &[]));
        let (pi, pp, ..) = tuple(&syn);
        let back = n.back(from_server((SERVER, port), (pi, pp), SYN | ACK, (9, 2), &[], &[]));
        assert_eq!(tuple(&back), (ip(SERVER), port, ip(SUB), 41000 + k as u16));
    }
    assert_eq!(n.e.counters().ftp_alg_rewritten, 0);
}

#[test]
fn with_the_alg_off_nothing_is_rewritten_and_the_server_cannot_connect_back() {
    let mut p = home_params();
    p.rules = vec![translate_all("100.64.0.0/10", 0)];
    let mut n = with_options(p, RuleOptions::default());
    let (pub_ip, _) = control_connection(&mut n);
    let cmd = b"PORT 100,64,0,2,156,65\r\n";
    let (f, grown) = out_maybe_grown(&mut n, seg(CLIENT, FTP, ACK | 0x08, (101, 5012), None, cmd));
    assert!(!grown);
    assert_eq!(payload(&f), cmd, "the inside address leaves as it is");
    let mut data = from_server((SERVER, 20), (pub_ip, 40001), SYN, (7000, 0), &[], &[]);
    // The masquerade address is the box's own: nothing of masq's takes it.
    assert_eq!(n.send(OUT, &mut data), Verdict::PassToKernel(PassReason::ToSelf));
    let c = n.e.counters();
    assert_eq!((c.ftp_alg_rewritten, c.ftp_alg_passive, c.ftp_alg_unparsed), (0, 0, 0));
}

#[test]
fn a_line_the_alg_cannot_read_is_counted_and_forwarded_unchanged() {
    let mut n = with_options(cgnat_params(), ftp_on());
    control_connection(&mut n);
    let mut seq = 101;
    for cmd in [
        &b"PORT 100,64,0,2,156"[..],     // split across segments
        b"PORT 100,64,0,2,156,65,7\r\n", // too many numbers
        b"PORT 100,64,0,3,156,65\r\n",   // another host's address
        b"EPRT |2|fe80::1|5282|\r\n",    // IPv6
    ] {
        let (f, _) = out_maybe_grown(&mut n, seg(CLIENT, FTP, ACK | 0x08, (seq, 5012), None, cmd));
        assert_eq!(payload(&f), cmd);
        assert_eq!(seq_ack(&f).0, seq, "nothing shifted");
        seq += cmd.len() as u32;
    }
    let c = n.e.counters();
    assert_eq!((c.ftp_alg_unparsed, c.ftp_alg_rewritten), (4, 0));
}

// ---- An FTP server inside (netfilter's nf_nat_ftp on DNAT) -------------

/// A client on the internet.
const REMOTE: (&str, u16) = ("192.0.2.50", 50000);
/// The home router's public address, which forwards port 21.
const WAN: &str = "198.51.100.10";
/// The server behind the forward.
const SRV: (&str, u16) = ("192.168.1.40", 21);

/// A home router forwarding `WAN:21` to the server, the ALG on it or not.
fn forward_to_server(alg: bool) -> Nat {
    let mut p = home_params();
    p.forwards = vec![Forward { ftp_alg: alg, ..Forward::one(6, ip(WAN), 21, ip(SRV.0), SRV.1) }];
    Nat::new(p)
}

/// The control connection from outside to `public`:21, through to the
/// server `srv` inside, up to the greeting: client ISN 100, server ISN
/// 5000. The server's next sequence number is 5012.
fn inbound_control(n: &mut Nat, public: &str, srv: (&str, u16)) {
    let pubep = (ip(public), 21);
    let syn = n.back(from_server(REMOTE, pubep, SYN, (100, 0), &[], &[]));
    assert_eq!(tuple(&syn), (ip(REMOTE.0), REMOTE.1, ip(srv.0), srv.1));
    let sa = n.out(seg(srv, REMOTE, SYN | ACK, (5000, 101), None, &[]));
    assert_eq!(tuple(&sa), (ip(public), 21, ip(REMOTE.0), REMOTE.1), "the server answers from the public side");
    n.back(from_server(REMOTE, pubep, ACK, (101, 5001), &[], &[]));
    n.out(seg(srv, REMOTE, ACK | 0x08, (5001, 101), None, b"220 ready\r\n"));
    n.back(from_server(REMOTE, pubep, ACK, (101, 5012), &[], &[]));
}

/// The server's passive reply `reply` (at sequence 5012) leaves: returns
/// the line as the client sees it, its change in length and the port it
/// names.
fn passive_reply(n: &mut Nat, srv: (&str, u16), reply: &[u8]) -> (Vec<u8>, i32, u16) {
    let mut f = seg(srv, REMOTE, ACK | 0x08, (5012, 101), None, reply);
    f.extend(std::iter::repeat_n(0, 64));
    let (out, _) = out_maybe_grown(n, f);
    let line = payload(&out).to_vec();
    let text = String::from_utf8(line.clone()).unwrap();
    let port = if text.starts_with("229") {
        text.split('|').nth(3).unwrap().parse().unwrap()
    } else {
        let inner = &text[text.find('(').unwrap() + 1..text.find(')').unwrap()];
        let v: Vec<u32> = inner.split(',').map(|x| x.parse().unwrap()).collect();
        (v[4] << 8 | v[5]) as u16
    };
    (line.clone(), line.len() as i32 - reply.len() as i32, port)
}

/// The client's data connection to `public`:`port` reaches the server's
/// `data_port`, and the server's answer leaves from the public side.
fn passive_data(n: &mut Nat, public: &str, port: u16, srv: &str, data_port: u16) {
    let c = (REMOTE.0, REMOTE.1 + 1);
    let syn = n.back(from_server(c, (ip(public), port), SYN, (9000, 0), &[], &[]));
    assert_eq!(tuple(&syn), (ip(c.0), c.1, ip(srv), data_port), "the data connection reaches the server");
    let sa = n.out(seg((srv, data_port), c, SYN | ACK, (700, 9001), None, &[]));
    assert_eq!(tuple(&sa), (ip(public), port, ip(c.0), c.1), "the server's answer leaves from the public port");
}

/// After the server's reply changed length by `delta`: its next segment
/// leaves shifted, the client's acknowledgment comes back unshifted.
fn server_seq_follows(n: &mut Nat, public: &str, srv: (&str, u16), sent: usize, delta: i32) {
    let next = 5012 + sent as u32;
    let f = n.out(seg(srv, REMOTE, ACK | 0x08, (next, 101), None, b"226 done\r\n"));
    assert_eq!(seq_ack(&f), (next.wrapping_add(delta as u32), 101), "the server's numbers shift by {delta}");
    let acked = next.wrapping_add(10).wrapping_add(delta as u32);
    let b = n.back(from_server(REMOTE, (ip(public), 21), ACK, (101, acked), &[], &[]));
    assert_eq!(seq_ack(&b), (101, next + 10), "the client's acknowledgment is shifted back");
}

#[test]
fn a_servers_227_behind_a_forward_names_the_public_side_and_its_data_connection_is_admitted() {
    let mut n = forward_to_server(true);
    inbound_control(&mut n, WAN, SRV);
    let reply = b"227 Entering Passive Mode (192,168,1,40,195,80).\r\n";
    let (line, delta, port) = passive_reply(&mut n, SRV, reply);
    let text = String::from_utf8_lossy(&line);
    assert!(text.starts_with("227 Entering Passive Mode (198,51,100,10,"), "{text}");
    assert!(text.ends_with(").\r\n"), "{text}");
    assert_ne!(delta, 0, "the test wants a change in length");
    let c = n.e.counters();
    assert_eq!((c.ftp_alg_rewritten, c.ftp_alg_passive), (1, 1));
    // The home router filters address-and-port dependently: only the
    // expectation lets the client in, to the server's data port 50000.
    passive_data(&mut n, WAN, port, SRV.0, 50000);
    server_seq_follows(&mut n, WAN, SRV, reply.len(), delta);
    // Anyone else is kept out of that port.
    let mut stranger = from_server(("203.0.113.77", 4000), (ip(WAN), port), SYN, (1, 0), &[], &[]);
    assert_eq!(n.send(OUT, &mut stranger), Verdict::Drop(DropReason::Filtered), "only the client was expected");
}

#[test]
fn a_servers_229_behind_a_forward_names_the_public_port_and_its_data_connection_is_admitted() {
    let mut n = forward_to_server(true);
    inbound_control(&mut n, WAN, SRV);
    // Another host holds public port 6446 already: the server's data
    // port cannot keep its number, and the reply must change.
    n.out(seg(("192.168.1.41", 6446), (SERVER, 80), SYN, (1, 0), None, &[]));
    let reply = b"229 Entering Extended Passive Mode (|||6446|)\r\n";
    let (line, delta, port) = passive_reply(&mut n, SRV, reply);
    let text = String::from_utf8_lossy(&line);
    assert!(text.starts_with("229 Entering Extended Passive Mode (|||"), "{text}");
    assert_ne!(port, 6446, "{text}");
    assert_eq!(n.e.counters().ftp_alg_rewritten, 1);
    passive_data(&mut n, WAN, port, SRV.0, 6446);
    server_seq_follows(&mut n, WAN, SRV, reply.len(), delta);
}

#[test]
fn with_the_alg_off_on_the_forward_the_servers_reply_is_untouched_and_no_data_connection_gets_in() {
    let mut n = forward_to_server(false);
    inbound_control(&mut n, WAN, SRV);
    let reply = b"227 Entering Passive Mode (192,168,1,40,195,80).\r\n";
    let (line, delta, _) = passive_reply(&mut n, SRV, reply);
    assert_eq!((&line[..], delta), (&reply[..], 0), "the inside address leaves as it is");
    // The client tries the port the server named, on the public address.
    let mut syn = from_server((REMOTE.0, REMOTE.1 + 1), (ip(WAN), 50000), SYN, (9000, 0), &[], &[]);
    assert_ne!(n.send(OUT, &mut syn), Verdict::Forward(IN));
    let c = n.e.counters();
    assert_eq!((c.ftp_alg_rewritten, c.ftp_alg_passive, c.ftp_alg_unparsed), (0, 0, 0));
}

/// The static host's public address and the host.
const STATIC_PUB: &str = "198.51.100.99";
const STATIC_HOST: &str = "100.64.0.9";

fn static_host(alg: bool) -> Nat {
    let mut p = cgnat_params();
    p.statics = vec![StaticNat { ftp_alg: alg, ..StaticNat::new(ip(STATIC_PUB), ip(STATIC_HOST)) }];
    Nat::new(p)
}

#[test]
fn a_static_hosts_227_names_its_public_address_and_its_229_is_left_as_it_is() {
    let mut n = static_host(true);
    let srv = (STATIC_HOST, 21);
    inbound_control(&mut n, STATIC_PUB, srv);
    let reply = b"227 Entering Passive Mode (100,64,0,9,195,80).\r\n";
    let (line, delta, port) = passive_reply(&mut n, srv, reply);
    assert_eq!(line, b"227 Entering Passive Mode (198,51,100,99,195,80).\r\n", "{}", String::from_utf8_lossy(&line));
    assert_eq!((delta, port), (3, 50000), "the same port: every port of the address reaches the host");
    passive_data(&mut n, STATIC_PUB, port, STATIC_HOST, 50000);
    server_seq_follows(&mut n, STATIC_PUB, srv, reply.len(), delta);
    // A 229 names a port only, which is the host's own: nothing to change.
    let next = 5012 + reply.len() as u32 + 10;
    let epsv = b"229 Entering Extended Passive Mode (|||6446|)\r\n";
    let f = n.out(seg(srv, REMOTE, ACK | 0x08, (next, 101), None, epsv));
    assert_eq!(payload(&f), epsv);
    assert_eq!(seq_ack(&f).0, next.wrapping_add(delta as u32), "still shifted by the 227's change");
    let c = n.e.counters();
    assert_eq!((c.ftp_alg_rewritten, c.ftp_alg_passive), (1, 2));
}

#[test]
fn a_static_hosts_port_names_its_public_address_and_the_server_connects_back() {
    let mut n = static_host(true);
    let client = (STATIC_HOST, 40000);
    let syn = n.out(seg(client, FTP, SYN, (100, 0), None, &[]));
    assert_eq!(tuple(&syn), (ip(STATIC_PUB), 40000, ip(SERVER), 21));
    let to = (ip(STATIC_PUB), 40000);
    n.back(from_server(FTP, to, SYN | ACK, (5000, 101), &[], &[]));
    n.out(seg(client, FTP, ACK, (101, 5001), None, &[]));
    let cmd = b"PORT 100,64,0,9,156,65\r\n";
    let (f, _) = out_maybe_grown(&mut n, seg(client, FTP, ACK | 0x08, (101, 5001), None, cmd));
    assert_eq!(payload(&f), b"PORT 198,51,100,99,156,65\r\n");
    let data = n.back(from_server((SERVER, 20), (ip(STATIC_PUB), 40001), SYN, (7000, 0), &[], &[]));
    assert_eq!(tuple(&data), (ip(SERVER), 20, ip(STATIC_HOST), 40001));
    let next = n.out(seg(client, FTP, ACK | 0x08, (101 + cmd.len() as u32, 5001), None, b"NOOP\r\n"));
    assert_eq!(seq_ack(&next).0, 101 + cmd.len() as u32 + 3, "shifted by the PORT's change");
}

#[test]
fn a_static_hosts_alg_reads_connections_to_port_21_only() {
    // Any other connection to the static address keeps the fast lane: an
    // unsolicited SYN cannot take one of the worker's ALG slots.
    let mut n = static_host(true);
    let srv = (STATIC_HOST, 2121);
    let pubep = (ip(STATIC_PUB), 2121);
    let syn = n.back(from_server(REMOTE, pubep, SYN, (100, 0), &[], &[]));
    assert_eq!(tuple(&syn), (ip(REMOTE.0), REMOTE.1, ip(STATIC_HOST), 2121));
    n.out(seg(srv, REMOTE, SYN | ACK, (5000, 101), None, &[]));
    n.back(from_server(REMOTE, pubep, ACK, (101, 5001), &[], &[]));
    let reply = b"227 Entering Passive Mode (100,64,0,9,195,80).\r\n";
    let f = n.out(seg(srv, REMOTE, ACK | 0x08, (5001, 101), None, reply));
    assert_eq!(payload(&f), reply, "not read: not the control port");
    assert_eq!(n.e.counters().ftp_alg_passive, 0);
}

#[test]
fn with_the_alg_off_a_static_hosts_227_is_untouched() {
    let mut n = static_host(false);
    let srv = (STATIC_HOST, 21);
    inbound_control(&mut n, STATIC_PUB, srv);
    let reply = b"227 Entering Passive Mode (100,64,0,9,195,80).\r\n";
    let (line, delta, _) = passive_reply(&mut n, srv, reply);
    assert_eq!((&line[..], delta), (&reply[..], 0));
    assert_eq!(n.e.counters().ftp_alg_passive, 0);
}

/// Two workers: a frame carried along every hand-off until a worker decides.
struct Two {
    w: [Engine; 2],
}

impl Two {
    fn with(mut p: EngineParams) -> Self {
        p.workers = 2;
        p.worker = 0;
        let w0 = Engine::new(&p).unwrap();
        p.worker = 1;
        Self { w: [w0, Engine::new(&p).unwrap()] }
    }

    /// Forwarded to `to`; the frame and the worker that decided.
    fn pass(&mut self, at: usize, side: Side, mut f: Vec<u8>, to: Side) -> (Vec<u8>, usize) {
        let (mut w, mut side) = (at, side);
        for _ in 0..3 {
            match self.w[w].process_one(side, 1000, &mut f) {
                Verdict::HandOff { worker, arrived_on } => (w, side) = (usize::from(worker), arrived_on),
                v => {
                    assert_eq!(v, Verdict::Forward(to), "{:?}", tuple(&f));
                    return (f, w);
                }
            }
        }
        panic!("hand-off loop");
    }
}

#[test]
fn with_two_workers_an_alg_forwards_sessions_and_data_connections_live_with_its_servers_worker() {
    let public = "203.0.113.1";
    let mut pool = PoolParams::cgnat("one", vec![ip(public)]);
    pool.mode = PoolMode::PortBlocks { block_size: 64, max_blocks_per_subscriber: 32 };
    let mut p = EngineParams::single(vec![pool], vec![translate_all("100.64.0.0/10", 0)]);
    // The forward's public port is worker 0's; the server's own worker is 1.
    let fport = (1024..4096).find(|&x| Two::with(p.clone()).w[0].public_owner(ip(public), x) == Some(0)).unwrap();
    let server = (1..200).map(|i| ip("100.64.0.0") + i).find(|&a| subscriber_owner(a, 2) == 1).unwrap();
    p.forwards = vec![Forward { ftp_alg: true, ..Forward::one(6, ip(public), fport, server, 21) }];
    let mut t = Two::with(p);
    assert_eq!(t.w[0].public_owner(ip(public), fport), Some(1), "the server's worker");
    let srv_s = dataplane::wire::fmt_ipv4(server).to_string();
    let srv = (srv_s.as_str(), 21);
    let to = (ip(public), fport);
    // Every packet first reaches worker 0, the port's owner but not the
    // server's.
    let (_, at) = t.pass(0, OUT, from_server(REMOTE, to, SYN, (100, 0), &[], &[]), IN);
    assert_eq!(at, 1);
    t.pass(0, IN, seg(srv, REMOTE, SYN | ACK, (5000, 101), None, &[]), OUT);
    t.pass(0, OUT, from_server(REMOTE, to, ACK, (101, 5001), &[], &[]), IN);
    let octets = srv_s.replace('.', ",");
    let reply = format!("227 Entering Passive Mode ({octets},195,80).\r\n");
    let (f, at) = t.pass(0, IN, seg(srv, REMOTE, ACK | 0x08, (5001, 101), None, reply.as_bytes()), OUT);
    let text = String::from_utf8(payload(&f).to_vec()).unwrap();
    assert!(text.starts_with("227 Entering Passive Mode (203,0,113,1,"), "{text} (at {at})");
    let v: Vec<u32> = text[27..text.find(')').unwrap()].split(',').map(|x| x.parse().unwrap()).collect();
    let port = (v[4] << 8 | v[5]) as u16;
    let c = (REMOTE.0, REMOTE.1 + 1);
    let (syn, at) = t.pass(0, OUT, from_server(c, (ip(public), port), SYN, (9000, 0), &[], &[]), IN);
    assert_eq!((tuple(&syn), at), ((ip(c.0), c.1, server, 50000), 1), "the data connection, at the server's worker");
    let (sa, at) = t.pass(0, IN, seg((srv_s.as_str(), 50000), c, SYN | ACK, (700, 9001), None, &[]), OUT);
    assert_eq!((tuple(&sa), at), ((ip(public), port, ip(c.0), c.1), 1));
    assert_eq!(t.w[0].live_sessions(), 0, "nothing on the other worker");
}

#[test]
fn in_a_pool_of_several_a_229_naming_a_port_on_another_address_is_left_alone_and_counted() {
    // A server whose paired address (its outbound one) is not the forward's.
    let fwd = "203.0.113.1";
    let paired = |a: u32| {
        let mut n = Nat::new(cgnat_params());
        let s = dataplane::wire::fmt_ipv4(a).to_string();
        tuple(&n.out(seg((s.as_str(), 999), (SERVER, 80), SYN, (1, 0), None, &[]))).0
    };
    let server = (2..200).map(|i| ip("100.64.0.0") + i).find(|&a| paired(a) != ip(fwd)).unwrap();
    let srv_s = dataplane::wire::fmt_ipv4(server).to_string();
    let srv = (srv_s.as_str(), 21);
    let mut p = cgnat_params();
    p.forwards = vec![Forward { ftp_alg: true, ..Forward::one(6, ip(fwd), 21, server, 21) }];
    let mut n = Nat::new(p);
    inbound_control(&mut n, fwd, srv);
    let reply = b"229 Entering Extended Passive Mode (|||6446|)\r\n";
    let (line, delta, _) = passive_reply(&mut n, srv, reply);
    assert_eq!((&line[..], delta), (&reply[..], 0), "the client would look for the port on the forward's address");
    let next = 5012 + reply.len() as u32;
    let c = n.e.counters();
    assert_eq!((c.ftp_alg_failed, c.ftp_alg_rewritten), (1, 0));
    // A 227 names the address too: the server's, where its port is.
    let octets = srv_s.replace('.', ",");
    let reply = format!("227 Entering Passive Mode ({octets},195,80).\r\n");
    let mut f = seg(srv, REMOTE, ACK | 0x08, (next, 101), None, reply.as_bytes());
    f.extend(std::iter::repeat_n(0, 64));
    let (out, _) = out_maybe_grown(&mut n, f);
    let named = dataplane::wire::fmt_ipv4(paired(server)).to_string().replace('.', ",");
    let text = String::from_utf8(payload(&out).to_vec()).unwrap();
    assert!(text.starts_with(&format!("227 Entering Passive Mode ({named},")), "{text}");
    let v: Vec<u32> = text[27..text.find(')').unwrap()].split(',').map(|x| x.parse().unwrap()).collect();
    passive_data(
        &mut n,
        &dataplane::wire::fmt_ipv4(paired(server)).to_string(),
        (v[4] << 8 | v[5]) as u16,
        &srv_s,
        50000,
    );
}

/// A packet the ALG grows past its frame is bound to that frame's index
/// in the batch given to `Engine::process`, whichever it is: third of a
/// chunk, and third of the second chunk (frames 64 on).
#[test]
fn a_grown_packet_is_bound_to_its_frames_index_in_the_batch() {
    for at in [2usize, 66] {
        let mut n = with_options(cgnat_params(), ftp_on());
        control_connection(&mut n);
        // (Port 1 becomes a pool port: four digits more, no room.)
        let cmd = b"EPRT |1|100.64.0.2|1|\r\n";
        let mut frames: Vec<Vec<u8>> =
            (0..at as u32).map(|i| udp(ip("100.64.0.3"), 5000 + i as u16, ip(SERVER), 53, b"q")).collect();
        frames.push(seg(CLIENT, FTP, ACK | 0x08, (101, 5012), None, cmd));
        let mut v = vec![Verdict::Drop(DropReason::Malformed); frames.len()];
        n.e.process(IN, n.now, &mut frames, &mut v);
        assert!(v.iter().all(|x| *x == Verdict::Forward(OUT)), "{v:?}");
        let grown: Vec<(usize, Vec<u8>)> = n.e.grown().map(|(i, g)| (i, g.to_vec())).collect();
        assert_eq!(grown.len(), 1, "one grown packet");
        assert_eq!(grown[0].0, at, "bound to frame {at}");
        assert!(payload(&grown[0].1).starts_with(b"EPRT |1|203.0.113."), "the rewritten command");
    }
}
