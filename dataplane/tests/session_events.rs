//! Per-session NAT events (`logging: sessions`, RFC 8158 natEvent 1 and 2):
//! a pool that asks records each session created and deleted with the
//! inside and public endpoints and the protocol, and the destination only
//! when it asks for that too (RFC 6888 REQ-12); a pool that logs blocks
//! records no session event.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;
use common::*;
use dataplane::nat::ports;
use dataplane::nat::ports::{BlockEvent, EventKind, SessionChange, SessionInfo};
use dataplane::nat::*;
use dataplane::testing::frames::{ip, tuple, udp};

/// Pool 0 `sess` (100.64.1.0/24 behind 203.0.113.1) logs sessions; pool 1
/// `blk` (100.64.2.0/24 behind 203.0.113.20) logs blocks only.
fn params(destination: bool) -> EngineParams {
    let mut p = cgnat_params();
    let mut sess = PoolParams::cgnat("sess", vec![ip("203.0.113.1")]);
    sess.mode = PoolMode::PortBlocks { block_size: 64, max_blocks_per_subscriber: 4 };
    sess.log_sessions = true;
    sess.log_destination = destination;
    let mut blk = PoolParams::cgnat("blk", vec![ip("203.0.113.20")]);
    blk.mode = sess.mode;
    p.pools = vec![sess, blk];
    p.rules = vec![translate_all("100.64.1.0/24", 0), translate_all("100.64.2.0/24", 1)];
    p
}

fn sessions(events: impl Iterator<Item = BlockEvent>) -> Vec<(BlockEvent, SessionInfo)> {
    events
        .filter_map(|e| match e.kind {
            EventKind::Session(i) => Some((e, i)),
            _ => None,
        })
        .collect()
}

fn created_then_expired(destination: bool) {
    let mut n = Nat::new(params(destination));
    let sub = ip("100.64.1.2");
    let (ps, pp, _, _) = tuple(&n.out(udp(sub, 5000, ip("198.51.100.7"), 53, b"q")));
    let made = sessions(n.e.take_block_events());
    let (dest, dport) = if destination { (ip("198.51.100.7"), 53) } else { (0, 0) };
    let want = |change| SessionInfo { change, proto: 17, inside_port: 5000, remote: dest, remote_port: dport };
    assert_eq!(made.len(), 1, "{made:?}");
    let (e, i) = made[0];
    assert_eq!((e.inside, e.public, e.first_port, e.last_port, e.pool), (sub, ps, pp, pp, 0));
    assert_eq!(i, want(SessionChange::Created));

    n.now += 1000;
    n.e.expire(n.now, 1000);
    let gone = sessions(n.e.take_block_events());
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert_eq!((gone[0].0.inside, gone[0].0.public, gone[0].0.first_port), (sub, ps, pp));
    assert_eq!(gone[0].1, want(SessionChange::Expired));
}

#[test]
fn a_sessions_pool_records_create_and_expiry_without_the_destination() {
    created_then_expired(false);
}

#[test]
fn a_pool_with_log_destination_records_it() {
    created_then_expired(true);
}

#[test]
fn a_blocks_pool_records_no_session_events() {
    let mut n = Nat::new(params(true));
    let sub = ip("100.64.2.2");
    n.out(udp(sub, 5000, ip("198.51.100.7"), 53, b"q"));
    let ev: Vec<BlockEvent> = n.e.take_block_events().collect();
    assert!(ev.iter().any(|e| e.kind == EventKind::Assigned), "its block is logged: {ev:?}");
    n.now += 1000;
    n.e.expire(n.now, 1000);
    let all: Vec<BlockEvent> = n.e.take_block_events().collect();
    assert!(sessions(ev.into_iter().chain(all)).is_empty());
}

#[test]
fn an_evicted_session_says_so() {
    let mut p = params(false);
    p.max_sessions = 1;
    let mut n = Nat::new(p);
    let sub = ip("100.64.1.2");
    n.out(udp(sub, 5000, ip("198.51.100.7"), 53, b"q"));
    n.out(udp(sub, 5001, ip("198.51.100.7"), 53, b"q"));
    let ev = sessions(n.e.take_block_events());
    let changes: Vec<(SessionChange, u16)> = ev.iter().map(|(_, i)| (i.change, i.inside_port)).collect();
    assert_eq!(
        changes,
        [(SessionChange::Created, 5000), (SessionChange::Evicted, 5000), (SessionChange::Created, 5001)]
    );
}

#[test]
fn the_event_buffer_is_bounded_and_counts_what_it_loses() {
    let mut p = params(false);
    p.pools[0].mode = PoolMode::PortBlocks { block_size: 512, max_blocks_per_subscriber: 8 };
    p.pools[0].max_sessions_per_subscriber = 4000;
    let mut n = Nat::new(p);
    let sub = ip("100.64.1.2");
    let total = u32::try_from(ports::BLOCK_EVENTS).unwrap() + 100;
    for i in 0..total {
        let port = u16::try_from(10_000 + i).unwrap();
        n.out(udp(sub, port, ip("198.51.100.7"), 53, b"q"));
    }
    let kept = n.e.take_block_events().count();
    assert_eq!(kept, ports::BLOCK_EVENTS, "never past the bound");
    let blocks = u64::from(total.div_ceil(512));
    assert_eq!(n.e.block_events_dropped(), u64::from(total) + blocks - kept as u64, "the rest counted");
}
