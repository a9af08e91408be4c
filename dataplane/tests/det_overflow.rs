//! A deterministic pool's dynamic overflow (RFC 7422 section 2): a
//! subscriber takes overflow ports only once its own range is full, gets
//! them in blocks of the overflow port-block pool (block events, as any
//! port-block pool's), keeps an overflow mapping for its endpoint (RFC
//! 4787 REQ-1), is refused past the overflow's limit, and gives the
//! blocks back (events) when its overflow sessions go.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use common::*;
use dataplane::nat::ports::{BlockEvent, EventKind};
use dataplane::nat::*;
use dataplane::testing::frames::{ip, tuple, udp};

const REMOTE: &str = "198.51.100.1";

/// 100.64.0.0/24 on 203.0.113.1, 128 ports each (1024-33791 in use);
/// overflow on 203.0.113.9 in blocks of 64, two a subscriber.
fn params(hold_secs: u32) -> EngineParams {
    let mut det = PoolParams::cgnat("det", vec![ip("203.0.113.1")]);
    det.mode = PoolMode::Deterministic { inside: pfx("100.64.0.0/24"), ports_per_subscriber: 128 };
    det.overflow = Some("det.overflow".into());
    let mut ov = PoolParams::cgnat("det.overflow", vec![ip("203.0.113.9")]);
    ov.mode = PoolMode::PortBlocks { block_size: 64, max_blocks_per_subscriber: 2 };
    let mut p = EngineParams::single(vec![det, ov], vec![translate_all("100.64.0.0/24", 0)]);
    p.local_addrs = vec![ip("203.0.113.254")];
    p.timeouts.port_hold_secs = hold_secs;
    p
}

fn events(nat: &mut Nat) -> Vec<BlockEvent> {
    nat.e.take_block_events().collect()
}

/// Subscriber 100.64.0.5: its range is 1024 + 5 * 128 ..= +127.
const SUB: &str = "100.64.0.5";
const FIRST: u16 = 1024 + 5 * 128;

#[test]
fn overflow_ports_come_only_after_the_range_is_full_in_logged_blocks_and_go_back() {
    let mut nat = Nat::new(params(120));
    let sub = ip(SUB);
    for k in 0..128u16 {
        let (pub_ip, port, _, _) = tuple(&nat.out(udp(sub, 20000 + k, ip(REMOTE), 53, b"")));
        assert_eq!(pub_ip, ip("203.0.113.1"), "flow {k}: its own range first");
        assert!((FIRST..FIRST + 128).contains(&port), "flow {k}: port {port}");
    }
    assert!(events(&mut nat).is_empty(), "a deterministic range logs no block");
    // The range is full: the next flows take overflow blocks, each logged once.
    let mut seen = Vec::new();
    for k in 128..256u16 {
        let (pub_ip, port, _, _) = tuple(&nat.out(udp(sub, 20000 + k, ip(REMOTE), 53, b"")));
        assert_eq!(pub_ip, ip("203.0.113.9"), "flow {k} overflows");
        seen.push(port);
    }
    let ev = events(&mut nat);
    assert_eq!(ev.len(), 2, "two overflow blocks: {ev:?}");
    for e in &ev {
        assert_eq!((e.kind, e.inside, e.public, e.pool), (EventKind::Assigned, sub, ip("203.0.113.9"), 1));
        assert_eq!(e.last_port - e.first_port, 63);
        assert_eq!(seen.iter().filter(|&&p| (e.first_port..=e.last_port).contains(&p)).count(), 64);
    }
    // Past the overflow's limit: refused as any subscriber at its limit.
    let mut f = udp(sub, 30000, ip(REMOTE), 53, b"");
    assert_eq!(nat.send(IN, &mut f), Verdict::Drop(DropReason::PortsExhausted));
    // A reply to an overflow port reaches the subscriber.
    let back = nat.back(udp(ip(REMOTE), 53, ip("203.0.113.9"), seen[0], b""));
    assert_eq!(tuple(&back).2, sub);
    // Another subscriber is untouched: its own range.
    let (pub_ip, _, _, _) = tuple(&nat.out(udp(ip("100.64.0.6"), 20000, ip(REMOTE), 53, b"")));
    assert_eq!(pub_ip, ip("203.0.113.1"));
    // The live tables name the subscriber for an overflow port (`masq whois`).
    let h = nat.e.holder(ip("203.0.113.9"), seen[0]).expect("an overflow block's holder");
    assert_eq!((h.inside, h.kind, h.pool), (sub, dataplane::nat::ports::HeldKind::Block, 1));
    // The overflow sessions go: both blocks are given back and logged.
    let n = nat.e.flush(nat.now, |s| s.public.0 == ip("203.0.113.9"), None);
    assert_eq!(n, 128);
    let ev = events(&mut nat);
    assert_eq!(ev.iter().filter(|e| e.kind == EventKind::Released && e.inside == sub).count(), 2, "{ev:?}");
    assert_eq!(nat.e.holder(ip("203.0.113.9"), seen[0]), None, "nobody holds it now");
}

#[test]
fn an_overflow_mapping_is_kept_and_the_range_is_used_again_once_the_overflow_is_back() {
    let mut nat = Nat::new(params(0));
    let sub = ip(SUB);
    for k in 0..128u16 {
        nat.out(udp(sub, 20000 + k, ip(REMOTE), 53, b""));
    }
    let (pub_ip, ov_port, _, _) = tuple(&nat.out(udp(sub, 40000, ip(REMOTE), 53, b"")));
    assert_eq!(pub_ip, ip("203.0.113.9"));
    // One range port comes free (no hold here).
    assert_eq!(nat.e.flush(nat.now, |s| s.inside == (sub, 20000), None), 1);
    // The overflow endpoint keeps its mapping to another remote (RFC 4787 REQ-1) ...
    let t = nat.out(udp(sub, 40000, ip("198.51.100.2"), 53, b""));
    assert_eq!((tuple(&t).0, tuple(&t).1), (ip("203.0.113.9"), ov_port));
    // ... and while it holds an overflow block, new endpoints go on there too.
    let (pub_ip, _, _, _) = tuple(&nat.out(udp(sub, 40001, ip(REMOTE), 53, b"")));
    assert_eq!(pub_ip, ip("203.0.113.9"));
    // Its overflow sessions gone (the block back), a new endpoint takes the freed range port.
    assert_eq!(nat.e.flush(nat.now, |s| s.public.0 == ip("203.0.113.9"), None), 3);
    let (pub_ip, port, _, _) = tuple(&nat.out(udp(sub, 40002, ip(REMOTE), 53, b"")));
    assert_eq!(pub_ip, ip("203.0.113.1"));
    assert!((FIRST..FIRST + 128).contains(&port));
}

#[test]
fn an_overflow_must_name_a_port_block_pool() {
    let mut p = params(120);
    p.pools[0].overflow = Some("nope".into());
    assert!(matches!(
        Engine::new(&p).err(),
        Some(ParamError::Pool { problem: dataplane::nat::error::PoolProblem::Overflow(_), .. })
    ));
    let mut p = params(120);
    p.pools[1].overflow = Some("det".into());
    assert!(Engine::new(&p).is_err(), "a port-block pool has no overflow");
}

#[test]
fn with_two_workers_the_overflow_block_is_the_subscribers_workers_and_replies_go_there() {
    let engine = |w: u16| {
        let mut p = params(120);
        p.workers = 2;
        p.worker = w;
        Nat::new(p)
    };
    let mut nats = [engine(0), engine(1)];
    let sub = ip(SUB);
    let owner = usize::from(subscriber_owner(sub, 2));
    for k in 0..128u16 {
        nats[owner].out(udp(sub, 20000 + k, ip(REMOTE), 53, b""));
    }
    let (pub_ip, port, _, _) = tuple(&nats[owner].out(udp(sub, 30000, ip(REMOTE), 53, b"")));
    assert_eq!(pub_ip, ip("203.0.113.9"));
    for n in &nats {
        assert_eq!(n.e.public_owner(pub_ip, port), Some(owner as u16), "every worker sends the reply to the owner");
    }
    let back = nats[owner].back(udp(ip(REMOTE), 53, pub_ip, port, b""));
    assert_eq!(tuple(&back).2, sub);
}
