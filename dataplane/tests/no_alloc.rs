//! The forwarding path allocates nothing: after set-up, translating packets
//! of established flows, creating sessions, dropping bad frames and expiring
//! sessions perform no heap allocation. `assert_no_alloc` counts every
//! allocation made on this thread inside its zones.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // test code
// assert_no_alloc counts violations in debug builds only (as `cargo test` builds).
#![cfg(debug_assertions)]

use assert_no_alloc::{assert_no_alloc, reset_violation_count, violation_count, AllocDisabler};
use dataplane::nat::*;
use dataplane::testing::frames::{ip, tcp, tuple, udp};

#[global_allocator]
static A: AllocDisabler = AllocDisabler;

fn engine(max_sessions: u32) -> Engine {
    let mut pool = PoolParams::cgnat("p", (1..=4).map(|i| ip("203.0.113.0") + i).collect());
    pool.mode = PoolMode::PortBlocks { block_size: 512, max_blocks_per_subscriber: 8 };
    let rule = Rule {
        matches: RuleMatch { src: vec![Prefix::new(ip("100.64.0.0"), 10)], ..Default::default() },
        action: RuleAction::Translate { pool: 0 },
    };
    let mut p = EngineParams::single(vec![pool], vec![rule]);
    p.max_sessions = max_sessions;
    Engine::new(&p).unwrap()
}

fn run(max_sessions: u32) {
    let mut e = engine(max_sessions);
    // Frames and verdict buffers are made before the zones: they are the NIC's.
    let mut out: Vec<Vec<u8>> =
        (0..256u32).map(|i| udp(ip("100.64.1.0") + i % 50, 1000 + i as u16, ip("198.51.100.1"), 53, b"q")).collect();
    let mut again = out.clone();
    let mut syns: Vec<Vec<u8>> =
        (0..64u32).map(|i| tcp(ip("100.64.2.0") + i, 2000, ip("198.51.100.2"), 443, 0x02)).collect();
    let mut junk: Vec<Vec<u8>> = (0..64usize).map(|i| vec![0xa5; i]).collect();
    // GRE by address only: sessions made, answered, and a second host refused.
    let gre = |s: u32, d: u32| dataplane::testing::frames::frame(s, d, 47, &[0, 0, 8, 0], 64);
    let mut gre_out: Vec<Vec<u8>> = (0..64u32).map(|i| gre(ip("100.64.3.0") + i, ip("198.51.100.3") + i % 2)).collect();
    let mut v = vec![Verdict::Drop(DropReason::Malformed); 256];

    reset_violation_count();
    assert_no_alloc(|| e.process(Side::Inside, 10, &mut out, &mut v)); // creates 256 sessions
    assert_eq!(violation_count(), 0, "creating sessions allocated");

    let mut back: Vec<Vec<u8>> = out
        .iter()
        .map(|f| {
            let (s, sp, d, dp) = tuple(f);
            udp(d, dp, s, sp, b"a")
        })
        .collect();
    assert_no_alloc(|| {
        e.process(Side::Outside, 11, &mut back, &mut v); // replies
        e.process(Side::Inside, 12, &mut again, &mut v); // steady: the fast lane
        e.process(Side::Inside, 12, &mut syns, &mut v[..64]);
        e.process(Side::Outside, 12, &mut junk, &mut v[..64]);
        e.process(Side::Inside, 12, &mut gre_out, &mut v[..64]);
        e.expire(10_000, 100_000); // everything idles out and is reclaimed
    });
    assert_eq!(violation_count(), 0, "forwarding, dropping or expiring allocated");
    assert_eq!(e.live_sessions(), 0);
    assert!(e.counters().fwd_o2i >= 256);
}

/// Subscribers at their limit: refused, counted, logged, and the ICMP error
/// written into a frame the worker already has.
fn refusals() {
    let mut pool = PoolParams::cgnat("p", vec![ip("203.0.113.1")]);
    pool.max_sessions_per_subscriber = 1;
    let rule = Rule { matches: RuleMatch::default(), action: RuleAction::Translate { pool: 0 } };
    let mut p = EngineParams::single(vec![pool], vec![rule]);
    p.icmp_source = Some(ip("100.64.0.1"));
    let mut e = Engine::new(&p).unwrap();
    let mut first: Vec<Vec<u8>> =
        (0..64u32).map(|i| udp(ip("100.64.1.0") + i, 1000, ip("198.51.100.1"), 53, b"q")).collect();
    let mut more: Vec<Vec<u8>> =
        (0..64u32).map(|i| udp(ip("100.64.1.0") + i, 2000, ip("198.51.100.1"), 53, b"q")).collect();
    let mut v = vec![Verdict::Drop(DropReason::Malformed); 64];
    let mut out = vec![0u8; 2048];
    reset_violation_count();
    let written = assert_no_alloc(|| {
        e.process(Side::Inside, 10, &mut first, &mut v);
        e.process(Side::Inside, 10, &mut more, &mut v);
        e.write_refusal(&more[0], &mut out)
    });
    assert_eq!(violation_count(), 0, "refusing allocated");
    assert!(v.iter().all(|x| *x == Verdict::Refuse(DropReason::SubscriberSessionLimit)), "{v:?}");
    assert!(written.is_some());
    assert_eq!(e.take_block_events().count(), 64 + 64, "64 blocks assigned, 64 refusals logged");
}

#[test]
fn no_allocation_on_the_forwarding_path() {
    // One test: the violation counter is shared by the test's threads.
    run(4096);
    run(PREFETCH_ABOVE_SESSIONS + 1);
    refusals();
}
