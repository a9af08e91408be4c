//! `masq whois` from the live tables, at the engine: the block that holds
//! a public port names its subscriber while it holds it, and nobody after;
//! only the worker that owns the block answers; a deterministic range is
//! the formula's, with or without a session; a subscriber's holds are
//! listed (blocks, range, shared address).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use dataplane::nat::ports::HeldKind;
use dataplane::nat::*;
use dataplane::testing::frames::{ip, tuple, udp};

const REMOTE: &str = "198.51.100.1";

#[test]
fn the_block_holding_a_port_names_its_subscriber_until_it_goes_back() {
    let mut nat = Nat::new(cgnat_params());
    let sub = ip("100.64.0.2");
    let (public, port, _, _) = tuple(&nat.out(udp(sub, 44001, ip(REMOTE), 53, b"")));
    let h = nat.e.holder(public, port).expect("the block holding the port");
    assert_eq!((h.inside, h.public, h.kind, h.sessions), (sub, public, HeldKind::Block, 1));
    assert!(h.first_port <= port && port <= h.last_port && h.last_port - h.first_port == 63, "{h:?}");
    // Every port of the block names it, none past it.
    assert_eq!(nat.e.holder(public, h.first_port).map(|x| x.inside), Some(sub));
    assert_eq!(nat.e.holder(public, h.last_port).map(|x| x.inside), Some(sub));
    assert_eq!(nat.e.holder(public, h.last_port + 1), None, "a free block");
    assert_eq!(nat.e.holder(ip("192.0.2.1"), port), None, "not a pool address");
    assert_eq!(nat.e.held_by(sub), vec![h], "its one block");
    assert!(nat.e.held_by(ip("100.64.0.3")).is_empty(), "a subscriber with no session holds nothing");
    // Flushed: the block goes back, nobody holds the port.
    assert_eq!(nat.e.flush(nat.now, |s| s.inside.0 == sub, None), 1);
    assert_eq!(nat.e.holder(public, port), None);
    assert!(nat.e.held_by(sub).is_empty());
}

#[test]
fn only_the_worker_that_owns_the_block_answers() {
    let engine = |w: u16| {
        let mut p = cgnat_params();
        p.workers = 2;
        p.worker = w;
        Nat::new(p)
    };
    let mut nats = [engine(0), engine(1)];
    let sub = ip("100.64.0.9");
    let owner = subscriber_owner(sub, 2);
    let nat = &mut nats[usize::from(owner)];
    let (public, port, _, _) = tuple(&nat.out(udp(sub, 5000, ip(REMOTE), 53, b"")));
    assert_eq!(nats[usize::from(owner)].e.holder(public, port).map(|h| h.inside), Some(sub));
    assert_eq!(nats[usize::from(1 - owner)].e.holder(public, port), None, "not its block");
    assert_eq!(nats[usize::from(1 - owner)].e.held_by(sub), vec![], "the subscriber lives on its owner");
}

#[test]
fn a_deterministic_range_is_the_formulas_with_or_without_a_session() {
    let mut pool = PoolParams::cgnat("det", vec![ip("203.0.113.1"), ip("203.0.113.2")]);
    pool.mode = PoolMode::Deterministic { inside: pfx("100.64.0.0/24"), ports_per_subscriber: 256 };
    let mut p = EngineParams::single(vec![pool], vec![translate_all("100.64.0.0/24", 0)]);
    p.local_addrs = vec![ip("203.0.113.254")];
    let mut nat = Nat::new(p);
    // Subscriber 5: address 5 % 2 = 1, block 5 / 2 = 2: ports 1024 + 512 ..= 1024 + 767.
    let sub = ip("100.64.0.5");
    let want = (sub, ip("203.0.113.2"), 1536, 1791, HeldKind::Formula);
    let h = nat.e.holder(ip("203.0.113.2"), 1600).expect("the formula's range");
    assert_eq!((h.inside, h.public, h.first_port, h.last_port, h.kind), want);
    assert_eq!(h.sessions, 0, "no session yet");
    let (public, port, _, _) = tuple(&nat.out(udp(sub, 1600, ip(REMOTE), 53, b"")));
    assert_eq!((public, port), (ip("203.0.113.2"), 1600));
    assert_eq!(nat.e.holder(public, port).map(|h| h.sessions), Some(1));
    let held = nat.e.held_by(sub);
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].inside, held[0].public, held[0].first_port, held[0].last_port, held[0].kind), want);
    // Below the ranges, and past the prefix's last range: nobody.
    assert_eq!(nat.e.holder(public, 1023), None);
    assert_eq!(nat.e.holder(public, 1024 + 128 * 256), None);
}

#[test]
fn a_shared_pool_subscriber_holds_its_address_and_its_ports_by_session_only() {
    let mut nat = Nat::new(home_params());
    let sub = ip("192.168.1.20");
    let (public, port, _, _) = tuple(&nat.out(udp(sub, 40000, ip(REMOTE), 53, b"")));
    assert_eq!(nat.e.holder(public, port), None, "no blocks: the session listing tells");
    let held = nat.e.held_by(sub);
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].public, held[0].kind, held[0].sessions), (public, HeldKind::Shared, 1));
}
