//! Scenario tests for what a rule adds to its TCP connections: MSS
//! clamping on SYN and SYN/ACK (netfilter's TCPMSS, VPP's
//! test_mss_clamping).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

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
