//! Deterministic NAT (RFC 7422) through the engine: every subscriber of
//! the prefix leaves from the address and port range the formula gives it,
//! the formula's reverse names it back, no two share a port, a subscriber
//! never gets a port outside its range and is refused (and counted) past
//! it, and with two workers each subscriber's ports are its owner's.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // test sizes are small

mod common;

use common::*;
use dataplane::nat::deterministic::{forward, reverse, Deterministic};
use dataplane::nat::*;
use dataplane::testing::frames::{ip, tuple, udp};
use std::collections::HashSet;

const REMOTE: &str = "198.51.100.1";

/// A deterministic pool mapping `inside` onto `n` addresses from 203.0.113.1.
fn det_params(inside: &str, n: u32, ports_per_subscriber: u16) -> EngineParams {
    let mut pool = PoolParams::cgnat("det", (1..=n).map(|i| ip("203.0.113.0") + i).collect());
    pool.mode = PoolMode::Deterministic { inside: pfx(inside), ports_per_subscriber };
    let mut p = EngineParams::single(vec![pool], vec![translate_all("100.64.0.0/10", 0)]);
    p.local_addrs = vec![ip("203.0.113.254")];
    p.max_subscribers = 8192;
    p
}

/// The formula the engine was given.
fn formula(p: &EngineParams) -> Deterministic {
    let pool = &p.pools[0];
    let PoolMode::Deterministic { inside, ports_per_subscriber } = pool.mode else { panic!("not deterministic") };
    Deterministic::new(inside, pool.addresses.clone(), (pool.port_min, pool.port_max), ports_per_subscriber).unwrap()
}

/// Every inside address of `inside` sends one flow: its public address and
/// port are the formula's, the reverse names it, and no two collide.
fn every_subscriber_maps_reversibly(inside: &str, n: u32) {
    let p = det_params(inside, n, 0);
    let d = formula(&p);
    let mut nat = Nat::new(p);
    let mut seen = HashSet::new();
    let base = pfx(inside).addr;
    let count = d.inside_count() as u32;
    assert!(count >= 256, "the prefix under test has subscribers");
    // Out of order (97 is odd, `count` a power of two: every index once),
    // so a range cannot come from the order subscribers arrive in.
    for i in 0..count {
        let sub = base + i * 97 % count;
        let t = nat.out(udp(sub, 40000, ip(REMOTE), 53, b""));
        let (pub_ip, pub_port, _, _) = tuple(&t);
        let r = forward(&d, sub).unwrap();
        assert_eq!(pub_ip, r.public_ip, "{sub:#x} leaves from the formula's address");
        assert!((r.first..=r.last).contains(&pub_port), "{sub:#x}: port {pub_port} in {}-{}", r.first, r.last);
        assert_eq!(reverse(&d, pub_ip, pub_port), Some(sub), "reverse names the subscriber");
        assert!(seen.insert((pub_ip, pub_port)), "no two subscribers share {pub_ip:#x}:{pub_port}");
        // The first and last port of its range name it too, and the next range's first does not.
        assert_eq!(reverse(&d, r.public_ip, r.first), Some(sub));
        assert_eq!(reverse(&d, r.public_ip, r.last), Some(sub));
        assert_ne!(r.last.checked_add(1).and_then(|q| reverse(&d, r.public_ip, q)), Some(sub));
    }
    assert_eq!(seen.len() as u32, count);
}

#[test]
fn every_subscriber_of_a_24_maps_reversibly_and_never_collides() {
    every_subscriber_maps_reversibly("100.64.0.0/24", 4);
}

#[test]
fn every_subscriber_of_a_20_maps_reversibly_and_never_collides() {
    every_subscriber_maps_reversibly("100.64.16.0/20", 16);
}

#[test]
fn a_subscriber_gets_ports_only_in_its_range_and_is_refused_past_it() {
    let p = det_params("100.64.0.0/24", 4, 128);
    let d = formula(&p);
    let mut nat = Nat::new(p);
    let sub = ip("100.64.0.77");
    let r = forward(&d, sub).unwrap();
    assert_eq!(r.last - r.first + 1, 128);
    // A neighbour on the same address holds ports of the next range.
    let neighbour = sub + 4;
    let nr = forward(&d, neighbour).unwrap();
    assert_eq!((nr.public_ip, nr.first), (r.public_ip, r.last + 1));
    nat.out(udp(neighbour, 1, ip(REMOTE), 53, b""));
    let mut ports = HashSet::new();
    // Source ports from all over, some inside other subscribers' ranges.
    for k in 0..128u16 {
        let sport = 1024 + k * 397 % 60000;
        let t = nat.out(udp(sub, sport, ip(REMOTE), 53, b""));
        let (pub_ip, pub_port, _, _) = tuple(&t);
        assert_eq!(pub_ip, r.public_ip);
        assert!((r.first..=r.last).contains(&pub_port), "port {pub_port} outside {}-{}", r.first, r.last);
        assert!(ports.insert(pub_port));
    }
    // Its range is used up: the next flow is refused and counted, the neighbour unaffected.
    let before = nat.e.counters().drop_count(DropReason::PortsExhausted);
    let mut f = udp(sub, 60001, ip(REMOTE), 53, b"");
    assert_eq!(nat.send(IN, &mut f), Verdict::Drop(DropReason::PortsExhausted));
    assert_eq!(nat.e.counters().drop_count(DropReason::PortsExhausted), before + 1);
    let t = nat.out(udp(neighbour, 2, ip(REMOTE), 53, b""));
    assert!((nr.first..=nr.last).contains(&tuple(&t).1));
    // Two ranges of the address held, the rest free (a deterministic pool has no free list).
    let (_, _, held, free) = nat.e.port_block_use().find(|&(a, ..)| a == r.public_ip).unwrap();
    assert_eq!((held, held + free), (2, (65535 - 1024 + 1) / 128));
}

#[test]
fn a_source_outside_the_prefix_is_refused_and_counted() {
    let mut nat = Nat::new(det_params("100.64.0.0/24", 4, 0));
    let mut f = udp(ip("100.64.1.5"), 5000, ip(REMOTE), 53, b"");
    assert_eq!(nat.send(IN, &mut f), Verdict::Drop(DropReason::DeterministicOutside));
    assert_eq!(nat.e.counters().drop_count(DropReason::DeterministicOutside), 1);
}

#[test]
fn two_workers_each_subscriber_uses_its_range_on_its_owner() {
    let mut p = det_params("100.64.0.0/24", 4, 0);
    let d = formula(&p);
    p.workers = 2;
    p.worker = 0;
    let mut w = [Nat::new(p.clone()), {
        p.worker = 1;
        Nat::new(p)
    }];
    let mut seen = HashSet::new();
    let mut by_owner = [0; 2];
    for i in 0..256u32 {
        let sub = ip("100.64.0.0") + i;
        let owner = usize::from(subscriber_owner(sub, 2));
        let other = 1 - owner;
        by_owner[owner] += 1;
        let f = udp(sub, 7000, ip(REMOTE), 53, b"");
        let mut g = f.clone();
        assert_eq!(w[other].send(IN, &mut g), Verdict::HandOff { worker: owner as u16, arrived_on: IN });
        let t = w[owner].out(f);
        let (pub_ip, pub_port, _, _) = tuple(&t);
        let r = forward(&d, sub).unwrap();
        assert_eq!(pub_ip, r.public_ip);
        assert!((r.first..=r.last).contains(&pub_port));
        assert!(seen.insert((pub_ip, pub_port)), "the workers never hand out the same port");
        // Both workers know whose the public port is.
        assert_eq!(w[other].e.public_owner(pub_ip, pub_port), Some(owner as u16));
        // A reply reaching the other worker goes to the owner, which lets it in.
        let mut reply = udp(ip(REMOTE), 53, pub_ip, pub_port, b"");
        assert_eq!(w[other].send(OUT, &mut reply), Verdict::HandOff { worker: owner as u16, arrived_on: OUT });
        let back = w[owner].back(udp(ip(REMOTE), 53, pub_ip, pub_port, b""));
        assert_eq!(tuple(&back).2, sub);
    }
    assert!(by_owner[0] > 50 && by_owner[1] > 50, "both workers own subscribers: {by_owner:?}");
}

#[test]
fn a_deterministic_pool_keeps_its_formula_across_live_changes() {
    let old = det_params("100.64.0.0/24", 4, 0);
    assert_eq!(reconfigure_check(&old, &old.clone()), Ok(()));
    // Losing an address (allowed for other pools) would move every subscriber.
    let mut new = old.clone();
    new.pools[0].addresses.pop();
    assert!(matches!(reconfigure_check(&old, &new), Err(ParamError::Pool { problem: PoolProblem::NeedsRestart, .. })));
    // As would another prefix.
    let mut new = old.clone();
    new.pools[0].mode = PoolMode::Deterministic { inside: pfx("100.64.1.0/24"), ports_per_subscriber: 0 };
    assert!(reconfigure_check(&old, &new).is_err());
}

#[test]
fn a_prefix_that_does_not_fit_is_refused_by_the_engine() {
    // 65536 subscribers on 2 addresses: 0 ports each.
    let p = det_params("100.64.0.0/16", 2, 0);
    let Err(ParamError::Pool { problem: PoolProblem::Deterministic(e), .. }) = Engine::new(&p) else {
        panic!("a pool that does not fit is refused")
    };
    assert!(e.to_string().contains("give 0 ports per subscriber"), "{e}");
}
