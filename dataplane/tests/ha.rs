//! An HA pair at the engine level (`nat::ha`): a standby fed the active
//! engine's events (or its bulk export) holds the same blocks for the same
//! subscribers on the same public addresses, and the same sessions; it
//! forwards nothing until promoted; promoted, a synced flow keeps its
//! public address and port both ways and a new flow of the subscriber
//! takes a port of its synced blocks.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;
use common::*;
use dataplane::nat::events::NatEvent;
use dataplane::nat::ha::{BlockImport, ImportedBlock, SyncRecord, SyncedSession};
use dataplane::nat::*;
use dataplane::testing::frames::{ip, tuple, udp};

const S1: &str = "100.64.0.2";
const S2: &str = "100.64.0.3";
const SERVER: &str = "198.51.100.7";

/// The lab's CGNAT worker with random ports (a re-made mapping would get
/// another port) and HA session sync; `standby` starts it as a standby;
/// `seed` differs per box (a re-made subscriber would pick another address).
fn params(standby: bool, seed: u64) -> EngineParams {
    let mut p = cgnat_params();
    if let Some(pool) = p.pools.first_mut() {
        pool.random_ports = true;
    }
    p.sync_sessions = true;
    p.standby = standby;
    p.seed = seed;
    p
}

/// The sync records the engine's pending events make.
fn records(e: &mut Engine) -> Vec<SyncRecord> {
    e.take_block_events().filter_map(|ev| SyncRecord::of(&NatEvent::stamp(&ev, 0))).collect()
}

fn apply(e: &mut Engine, rs: &[SyncRecord], now: u32) -> usize {
    rs.iter().filter(|r| e.apply_sync(r, now) == BlockImport::Done).count()
}

/// Subscriber 2 opens a flow first, then subscriber 1 two flows; returns
/// the active engine and subscriber 1's first flow's public endpoint.
fn active() -> (Nat, (u32, u16)) {
    let mut a = Nat::new(params(false, 1));
    a.out(udp(ip(S2), 7000, ip(SERVER), 53, b"x"));
    let (pi, pp, _, _) = tuple(&a.out(udp(ip(S1), 5000, ip(SERVER), 53, b"q")));
    a.back(udp(ip(SERVER), 53, pi, pp, b"r"));
    a.out(udp(ip(S1), 5001, ip(SERVER), 53, b"q"));
    (a, (pi, pp))
}

/// The promoted standby serves subscriber 1's flow on `public` both ways,
/// and a new flow of it from the same address within its blocks.
fn serves_as_before(b: &mut Nat, public: (u32, u16), blocks: &[ImportedBlock]) {
    let back = b.back(udp(ip(SERVER), 53, public.0, public.1, b"r"));
    let (_, _, to, to_port) = tuple(&back);
    assert_eq!((to, to_port), (ip(S1), 5000), "the reply reaches subscriber 1's flow");
    let out = tuple(&b.out(udp(ip(S1), 5000, ip(SERVER), 53, b"q")));
    assert_eq!((out.0, out.1), public, "the flow keeps its public address and port");
    let new = tuple(&b.out(udp(ip(S1), 6000, ip("198.51.100.9"), 443, b"n")));
    assert_eq!(new.0, public.0, "a new flow leaves from the same address");
    let mine = blocks.iter().filter(|x| x.inside == ip(S1));
    assert!(
        mine.clone().any(|x| (x.first_port..=x.last_port).contains(&new.1)),
        "new port {} within subscriber 1's blocks {:?}",
        new.1,
        mine.collect::<Vec<_>>()
    );
}

fn blocks_of(rs: &[SyncRecord]) -> Vec<ImportedBlock> {
    rs.iter()
        .filter_map(|r| match r {
            SyncRecord::Block { held: true, block } => Some(*block),
            _ => None,
        })
        .collect()
}

#[test]
fn a_standby_fed_the_event_stream_takes_over_with_the_same_addresses_and_ports() {
    let (mut a, public) = active();
    let rs = records(&mut a.e);
    assert!(rs.iter().any(|r| matches!(r, SyncRecord::Session { live: true, .. })), "sessions are synced: {rs:?}");
    let mut b = Nat::new(params(true, 2));
    b.now = 5;
    assert_eq!(apply(&mut b.e, &rs, b.now), rs.len(), "every record applies: {rs:?}");
    assert_eq!(apply(&mut b.e, &rs, b.now), 0, "a replay changes nothing");
    assert_eq!(b.e.blocks_in_use(), a.e.blocks_in_use());
    assert_eq!(b.e.live_sessions(), a.e.live_sessions());

    // A standby forwards nothing and expires nothing, however long it waits.
    let mut f = udp(ip(S1), 5000, ip(SERVER), 53, b"q");
    assert_eq!(b.send(IN, &mut f), Verdict::Drop(DropReason::Standby));
    assert_eq!(b.e.counters().drop_count(DropReason::Standby), 1);
    b.now += 100_000;
    b.e.expire(b.now, 1000);
    assert_eq!(b.e.live_sessions(), a.e.live_sessions());
    assert_eq!(b.e.take_block_events().count(), 0, "a standby records no event");

    b.e.set_standby(false, b.now);
    serves_as_before(&mut b, public, &blocks_of(&rs));
}

#[test]
fn a_bulk_export_resyncs_a_new_standby_to_the_same_state() {
    let (mut a, public) = active();
    let _ = records(&mut a.e);
    let rs = a.e.export_sync(0..a.e.session_slots(), true);
    let mut b = Nat::new(params(true, 3));
    assert_eq!(apply(&mut b.e, &rs, b.now), rs.len(), "{rs:?}");
    assert_eq!((b.e.blocks_in_use(), b.e.live_sessions()), (a.e.blocks_in_use(), a.e.live_sessions()));
    // Blocks only: the standby keeps the blocks, the flow gets a port of them.
    let blocks = a.e.export_sync(0..a.e.session_slots(), false);
    assert!(blocks.iter().all(|r| matches!(r, SyncRecord::Block { .. })));
    let mut c = Nat::new(params(true, 4));
    apply(&mut c.e, &blocks, c.now);
    c.e.set_standby(false, c.now);
    let new = tuple(&c.out(udp(ip(S1), 6000, ip(SERVER), 53, b"n")));
    assert_eq!(new.0, public.0, "same public address without session sync");
    assert!(blocks_of(&blocks).iter().any(|x| x.inside == ip(S1) && (x.first_port..=x.last_port).contains(&new.1)));
    b.e.set_standby(false, b.now);
    serves_as_before(&mut b, public, &blocks_of(&rs));
}

#[test]
fn released_blocks_and_ended_sessions_leave_the_standby_too() {
    let (mut a, _) = active();
    let mut b = Nat::new(params(true, 2));
    apply(&mut b.e, &records(&mut a.e), b.now);
    assert!(b.e.subscribers() == 2 && b.e.blocks_in_use() > 0);
    a.now += 10_000;
    a.e.expire(a.now, 10_000);
    let rs = records(&mut a.e);
    assert!(rs.iter().any(|r| matches!(r, SyncRecord::Block { held: false, .. })), "{rs:?}");
    apply(&mut b.e, &rs, b.now);
    assert_eq!((b.e.live_sessions(), b.e.blocks_in_use(), b.e.subscribers()), (0, 0, 0));
}

#[test]
fn promoted_subscribers_without_sessions_give_their_blocks_back_when_unpinned() {
    let (mut a, _) = active();
    let blocks = a.e.export_sync(0..a.e.session_slots(), false);
    let _ = records(&mut a.e);
    let mut b = Nat::new(params(true, 2));
    apply(&mut b.e, &blocks, b.now);
    b.e.set_standby(false, b.now);
    let (pi, _, _, _) = tuple(&b.out(udp(ip(S1), 5000, ip(SERVER), 53, b"q")));
    assert!(pi != 0);
    let held = b.e.blocks_in_use();
    assert_eq!(b.e.unpin_imported(), 1, "subscriber 2 had no session");
    assert!(b.e.blocks_in_use() < held);
    let released: Vec<_> = b.e.take_block_events().filter(|e| e.inside == ip(S2)).collect();
    assert!(!released.is_empty(), "the active box logs the release");
    assert_eq!(b.e.subscribers(), 1);
}

#[test]
fn conflicting_records_are_refused_and_counted() {
    let (mut a, _) = active();
    let rs = records(&mut a.e);
    let mut b = Nat::new(params(true, 2));
    let Some(SyncRecord::Block { block, .. }) = rs.iter().find(|r| matches!(r, SyncRecord::Block { .. })).copied()
    else {
        panic!("a block record: {rs:?}")
    };
    assert_eq!(b.e.apply_sync(&SyncRecord::Block { held: true, block }, 1), BlockImport::Done);
    let other = ImportedBlock { inside: ip("100.64.9.9"), ..block };
    assert_eq!(b.e.apply_sync(&SyncRecord::Block { held: true, block: other }, 1), BlockImport::Conflict);
    let unknown = ImportedBlock { public: ip("192.0.2.1"), ..block };
    assert_eq!(b.e.apply_sync(&SyncRecord::Block { held: true, block: unknown }, 1), BlockImport::Unknown);
    assert_eq!(b.e.counters().ha_refused, 2);
}

#[test]
fn a_session_record_with_a_martian_or_group_address_is_refused() {
    // What no packet could make (`martian_source`), no record makes either:
    // with its blocks in place, a record naming a group remote is refused
    // where the true one applies.
    let (mut a, _) = active();
    let rs = records(&mut a.e);
    let mut b = Nat::new(params(true, 2));
    let blocks: Vec<SyncRecord> = rs.iter().filter(|r| matches!(r, SyncRecord::Block { .. })).copied().collect();
    assert!(apply(&mut b.e, &blocks, 1) > 0);
    let Some(SyncRecord::Session { session, .. }) =
        rs.iter().find(|r| matches!(r, SyncRecord::Session { .. })).copied()
    else {
        panic!("a session record: {rs:?}")
    };
    for remote in ["224.0.0.1", "239.1.1.1", "255.255.255.255", "127.0.0.1", "0.1.2.3"] {
        let x = SyncedSession { remote: (ip(remote), session.remote.1), ..session };
        assert_eq!(b.e.apply_sync(&SyncRecord::Session { live: true, session: x }, 1), BlockImport::Conflict, "{x:?}");
    }
    let x = SyncedSession { inside: (ip("127.0.0.1"), session.inside.1), ..session };
    assert_eq!(b.e.apply_sync(&SyncRecord::Session { live: true, session: x }, 1), BlockImport::Conflict);
    assert_eq!(b.e.live_sessions(), 0);
    assert_eq!(b.e.apply_sync(&SyncRecord::Session { live: true, session }, 1), BlockImport::Done);
    assert_eq!(b.e.live_sessions(), 1);
}

/// A standby of two workers: each record is applied by the one worker that
/// owns its block or subscriber (the other answers `NotMine`), as the
/// control side hands every record to every worker.
#[test]
fn with_two_workers_each_record_lands_on_its_owner_once() {
    let params_of = |worker: u16, standby: bool, seed: u64| {
        let mut p = params(standby, seed);
        p.workers = 2;
        p.worker = worker;
        p
    };
    // The active box: two workers, subscribers spread over both.
    let mut active: Vec<Engine> = (0..2).map(|w| Engine::new(&params_of(w, false, 1)).unwrap()).collect();
    let subs: Vec<u32> = (2..40).map(|i| ip("100.64.0.0") + i).collect();
    for &s in &subs {
        let w = usize::from(subscriber_owner(s, 2));
        let mut f = udp(s, 5000, ip(SERVER), 53, b"q");
        assert_eq!(active[w].process_one(IN, 1000, &mut f), Verdict::Forward(OUT));
    }
    let rs: Vec<SyncRecord> = active.iter_mut().flat_map(records).collect();
    let blocks = rs.iter().filter(|r| matches!(r, SyncRecord::Block { .. })).count();
    let sessions = rs.len() - blocks;
    assert_eq!((blocks, sessions), (subs.len(), subs.len()), "{rs:?}");
    let mut standby: Vec<Engine> = (0..2).map(|w| Engine::new(&params_of(w, true, 9)).unwrap()).collect();
    let done: Vec<usize> = standby.iter_mut().map(|e| apply(e, &rs, 5)).collect();
    assert_eq!(done.iter().sum::<usize>(), rs.len(), "each record applied exactly once: {done:?}");
    assert!(done.iter().all(|&d| d > 0), "both workers hold some: {done:?}");
    for w in 0..2 {
        assert_eq!(standby[w].blocks_in_use(), active[w].blocks_in_use(), "worker {w}");
        assert_eq!(standby[w].live_sessions(), active[w].live_sessions(), "worker {w}");
        assert_eq!(standby[w].counters().ha_refused, 0, "another worker's records are not refused but left: {w}");
    }
}

/// A gateway address VRRP adds becomes the box's own: what is addressed to
/// it goes to the kernel (and stops when it is removed again).
#[test]
fn an_address_added_later_is_the_boxs_own() {
    let mut n = Nat::new(params(false, 1));
    let gw = ip("100.64.0.77");
    // A new echo identifier each time (a session, once made, is not re-decided).
    let ping = |n: &mut Nat, id: u16| {
        let mut f = dataplane::testing::frames::icmp_echo(ip(S1), gw, id, 1, true);
        n.send(IN, &mut f)
    };
    assert_ne!(ping(&mut n, 7), Verdict::PassToKernel(PassReason::ToSelf), "not the box's yet");
    let mut addrs = cgnat_params().local_addrs;
    addrs.push(gw);
    n.e.set_local_addrs(addrs);
    assert_eq!(ping(&mut n, 8), Verdict::PassToKernel(PassReason::ToSelf));
    n.e.set_local_addrs(cgnat_params().local_addrs);
    assert_ne!(ping(&mut n, 9), Verdict::PassToKernel(PassReason::ToSelf), "removed again");
}
