//! Large tables. The prefetching batch path (`nat::batch`, tables above
//! `PREFETCH_ABOVE_SESSIONS`): its three stages (slots, sessions, hits)
//! must give what one frame at a time gives, including for the keys whose
//! home slot holds another flow, which its second stage probes past. And
//! `Engine::prefault`, which masq's workers call before traffic.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // test code: a failed unwrap is a failed test

use dataplane::nat::*;
use dataplane::testing::frames::{checksums_ok, icmp_echo, ip, tcp, tuple, udp};
use dataplane::wire::tcp::{ACK, SYN};

mod common;
use common::*;

#[test]
fn large_tables_take_the_prefetching_batch_path_with_the_same_results() {
    // Above PREFETCH_ABOVE_SESSIONS the engine reads ahead across the batch;
    // translations, replies and checksums must be the same as one at a time.
    let mut p = cgnat_params();
    p.max_sessions = PREFETCH_ABOVE_SESSIONS + 1;
    let mut batch_engine = Engine::new(&p).unwrap();
    let mut single = Engine::new(&p).unwrap();
    let requests: Vec<Vec<u8>> = (0..200u32)
        .map(|i| match i % 3 {
            0 => udp(ip("100.64.1.0") + i, 2000 + i as u16, ip("198.51.100.1"), 53, b"q"),
            1 => tcp(ip("100.64.1.0") + i, 2000, ip("198.51.100.2"), 443, SYN),
            _ => icmp_echo(ip("100.64.1.0") + i, ip("198.51.100.3"), i as u16, 1, true),
        })
        .collect();
    let mut out = requests.clone();
    let mut one_by_one = requests.clone();
    let mut v = vec![Verdict::Drop(DropReason::Malformed); out.len()];
    batch_engine.process(IN, 10, &mut out, &mut v);
    for (f, want) in one_by_one.iter_mut().zip(&v) {
        assert_eq!(single.process_one(IN, 10, f), *want);
    }
    assert_eq!(out, one_by_one);
    assert!(v.iter().all(|x| *x == Verdict::Forward(OUT)));
    assert!(out.iter().all(|f| checksums_ok(f)));
    // The remotes answer each public endpoint.
    let replies: Vec<Vec<u8>> = out
        .iter()
        .map(|t| {
            let (s, sp, d, dp) = tuple(t);
            match t[23] {
                1 => icmp_echo(d, s, sp, 1, false),
                6 => tcp(d, dp, s, sp, SYN | ACK),
                _ => udp(d, dp, s, sp, b"a"),
            }
        })
        .collect();
    let mut back = replies.clone();
    let mut rv = vec![Verdict::Drop(DropReason::Malformed); back.len()];
    batch_engine.process(OUT, 11, &mut back, &mut rv);
    assert!(rv.iter().all(|x| *x == Verdict::Forward(IN)), "{rv:?}");
    for (r, q) in back.iter().zip(&requests) {
        assert!(checksums_ok(r));
        assert_eq!((tuple(r).2, tuple(r).3), (tuple(q).0, tuple(q).1), "reply reaches its requester");
    }
    // The same replies again: answered sessions now, the fast lane's case.
    let mut again = replies;
    batch_engine.process(OUT, 12, &mut again, &mut rv);
    assert!(rv.iter().all(|x| *x == Verdict::Forward(IN)), "{rv:?}");
    assert_eq!(again, back, "the fast lane translates exactly like the general path");
    assert_eq!(batch_engine.counters().fwd_o2i, 400);
    // Every reply found its session through the pipeline's slot and session
    // reads: none made another.
    assert_eq!(batch_engine.live_sessions(), 200);
    assert_eq!(batch_engine.counters().sessions_created, 200);
}

#[test]
fn displaced_keys_are_found_by_the_pipeline_and_make_no_second_session() {
    // 60,000 UDP sessions in an index of 2^17 slots: many keys sit past
    // their home slot (behind another flow), some past its cache line,
    // which the pipeline's second stage must scan past rather than call
    // absent.
    displaced_keys_are_found(true);
}

#[test]
fn displaced_keys_are_found_by_the_single_pass_past_other_flows_with_their_tag() {
    // The same in a table below the pipeline's size: the single pass
    // compares a slot's tag, not its distance from home, so about one in
    // sixteen of the slots a probe passes names another home's flow with
    // the key's tag, whose session it must pass over (neither the key's
    // session nor its absence).
    displaced_keys_are_found(false);
}

fn displaced_keys_are_found(large: bool) {
    let mut p = cgnat_params();
    p.max_sessions = if large { PREFETCH_ABOVE_SESSIONS + 1 } else { PREFETCH_ABOVE_SESSIONS };
    p.max_subscribers = 1_000;
    let mut e = Engine::new(&p).unwrap();
    let n = 60_000u32;
    let requests: Vec<Vec<u8>> = (0..n)
        .map(|i| udp(ip("100.64.1.0") + i / 200, 2000 + (i % 200) as u16, ip("198.51.100.1"), 53, b"q"))
        .collect();
    let mut out = requests.clone();
    for chunk in out.chunks_mut(BATCH) {
        let mut v = vec![Verdict::Drop(DropReason::Malformed); chunk.len()];
        e.process(IN, 10, chunk, &mut v);
        assert!(v.iter().all(|x| *x == Verdict::Forward(OUT)), "{v:?}");
    }
    assert_eq!(e.live_sessions(), n);
    // Replies twice (the second time answered sessions, the fast lane's
    // case), then the requests again: every frame finds its session.
    let back: Vec<Vec<u8>> = out
        .iter()
        .map(|t| {
            let (s, sp, d, dp) = tuple(t);
            udp(d, dp, s, sp, b"a")
        })
        .collect();
    for round in 0..2 {
        let mut frames = back.clone();
        for chunk in frames.chunks_mut(BATCH) {
            let mut v = vec![Verdict::Drop(DropReason::Malformed); chunk.len()];
            e.process(OUT, 11 + round, chunk, &mut v);
            assert!(v.iter().all(|x| *x == Verdict::Forward(IN)), "round {round}: {v:?}");
        }
        for (r, q) in frames.iter().zip(&requests) {
            assert_eq!((tuple(r).2, tuple(r).3), (tuple(q).0, tuple(q).1), "reply reaches its requester");
        }
    }
    let mut again = requests.clone();
    for chunk in again.chunks_mut(BATCH) {
        let mut v = vec![Verdict::Drop(DropReason::Malformed); chunk.len()];
        e.process(IN, 13, chunk, &mut v);
        assert!(v.iter().all(|x| *x == Verdict::Forward(OUT)), "{v:?}");
    }
    assert_eq!(again, out, "the same public endpoints as the first time");
    assert_eq!(e.counters().sessions_created, u64::from(n), "no key taken for absent");
    assert_eq!(e.live_sessions(), n);
}

#[test]
fn frames_past_the_verdicts_are_left_alone_by_the_pipeline() {
    // A caller's batch with fewer verdicts than frames: only the frames
    // with a verdict are translated (and counted); the rest stay as they
    // came, even those whose flows have sessions. (Small tables' single
    // pass too.)
    for large in [true, false] {
        fewer_verdicts_than_frames(large);
    }
}

fn fewer_verdicts_than_frames(large: bool) {
    let mut p = cgnat_params();
    if large {
        p.max_sessions = PREFETCH_ABOVE_SESSIONS + 1;
    }
    let mut e = Engine::new(&p).unwrap();
    let flows: Vec<Vec<u8>> =
        (0..10u32).map(|i| udp(ip("100.64.1.0") + i, 3000, ip("198.51.100.1"), 53, b"q")).collect();
    let mut first = flows.clone();
    let mut v = vec![Verdict::Drop(DropReason::Malformed); first.len()];
    e.process(IN, 10, &mut first, &mut v);
    assert!(v.iter().all(|x| *x == Verdict::Forward(OUT)), "{v:?}");
    let before = e.counters().fwd_i2o;
    let mut again = flows.clone();
    let mut short = vec![Verdict::Drop(DropReason::Malformed); 4];
    e.process(IN, 11, &mut again, &mut short);
    assert!(short.iter().all(|x| *x == Verdict::Forward(OUT)), "{short:?}");
    assert_eq!(&again[..4], &first[..4], "translated as before");
    assert_eq!(&again[4..], &flows[4..], "no verdict, no translation");
    assert_eq!(e.counters().fwd_i2o - before, 4);
}

#[test]
fn prefault_faults_the_slab_and_the_indexes_in_and_changes_nothing() {
    use dataplane::xdp::hugepages::status;
    let mut p = cgnat_params();
    p.max_sessions = 1 << 20;
    let mut e = Engine::new(&p).unwrap();
    let mut first = udp(ip("100.64.1.2"), 40000, ip("198.51.100.1"), 53, b"q");
    assert_eq!(e.process_one(IN, 10, &mut first), Verdict::Forward(OUT));
    let before = status();
    e.prefault();
    let after = status();
    if after.prefault_refused == before.prefault_refused {
        // All but the partial pages at the tables' ends (other tests may
        // prefault meanwhile: at least).
        let got = after.prefaulted_bytes - before.prefaulted_bytes;
        assert!(got as f64 >= 0.9 * e.memory_bytes() as f64, "{got} of {} bytes", e.memory_bytes());
    }
    // The session made before is still there, and new ones are made.
    let (s, sp, d, dp) = tuple(&first);
    let mut reply = udp(d, dp, s, sp, b"a");
    assert_eq!(e.process_one(OUT, 11, &mut reply), Verdict::Forward(IN));
    let mut again = udp(ip("100.64.1.2"), 40000, ip("198.51.100.1"), 53, b"q");
    assert_eq!(e.process_one(IN, 12, &mut again), Verdict::Forward(OUT));
    assert_eq!(tuple(&again), tuple(&first));
    assert_eq!(e.live_sessions(), 1);
}

#[test]
fn the_sweep_of_a_large_table_removes_and_refiles_as_a_small_ones_does() {
    // Large tables' sweep asks ahead for what its removals touch
    // (`sweep_ahead`): the outcome must be a small table's, with buckets
    // mixing sessions that go and sessions it re-files.
    let run = |large: bool| {
        let mut p = cgnat_params();
        p.max_sessions = if large { PREFETCH_ABOVE_SESSIONS + 1 } else { 4096 };
        p.pools[0].max_sessions_per_subscriber = 4096;
        let mut e = Engine::new(&p).unwrap();
        let mut seen = Vec::new();
        for (k, now) in [(0u16, 10), (1, 10), (2, 11)] {
            let mut reqs: Vec<Vec<u8>> = (0..600u16)
                .map(|i| udp(ip("100.64.1.0") + u32::from(i % 50), 2000 + k * 1000 + i, ip("198.51.100.1"), 53, b"q"))
                .collect();
            for chunk in reqs.chunks_mut(BATCH) {
                let mut v = vec![Verdict::Drop(DropReason::Malformed); chunk.len()];
                e.process(IN, now, chunk, &mut v);
                assert!(v.iter().all(|x| *x == Verdict::Forward(OUT)));
            }
            // Every third answered: re-filed when its bucket comes.
            let mut replies: Vec<Vec<u8>> = reqs
                .iter()
                .step_by(3)
                .map(|f| {
                    let (s, sp, d, dp) = tuple(f);
                    udp(d, dp, s, sp, b"a")
                })
                .collect();
            for chunk in replies.chunks_mut(BATCH) {
                let mut v = vec![Verdict::Drop(DropReason::Malformed); chunk.len()];
                e.process(OUT, now, chunk, &mut v);
            }
        }
        for now in [100, 130, 131, 132, 309, 310, 311, 312] {
            // A small budget: the sweep stops and starts again mid-bucket.
            while e.expire(now, 7) > 0 {}
            seen.push((now, e.live_sessions(), e.counters().sessions_expired));
        }
        seen
    };
    let (small, large) = (run(false), run(true));
    assert_eq!(small, large);
    assert_eq!(small.last().map(|x| x.1), Some(0), "{small:?}");
    assert!(small.iter().any(|x| x.1 == 600), "the answered third outlives the rest: {small:?}");
}

/// An inside endpoint's next flows keep its mapping (RFC 4787 REQ-1) on
/// both batch paths, in a later batch and within one: a new session's
/// mapping look-up takes the hash the batch worked out for the prefetch
/// of its slot (or, on the single pass, for its miss).
#[test]
fn an_endpoints_next_flows_keep_its_mapping_on_both_batch_paths() {
    for large in [false, true] {
        let mut p = cgnat_params();
        if large {
            p.max_sessions = PREFETCH_ABOVE_SESSIONS + 1;
        }
        let mut e = Engine::new(&p).unwrap();
        let flows = |remote: &str| -> Vec<Vec<u8>> {
            (0..100u32).map(|i| udp(ip("100.64.2.0") + i, 3000 + i as u16, ip(remote), 53, b"q")).collect()
        };
        let mut first = flows("198.51.100.1");
        let mut v = vec![Verdict::Drop(DropReason::Malformed); first.len()];
        e.process(IN, 10, &mut first, &mut v);
        assert!(v.iter().all(|x| *x == Verdict::Forward(OUT)), "{v:?}");
        // Each endpoint to two more remotes, side by side in the batches.
        let mut next: Vec<Vec<u8>> =
            flows("198.51.100.2").into_iter().zip(flows("198.51.100.3")).flat_map(|(a, b)| [a, b]).collect();
        let mut v = vec![Verdict::Drop(DropReason::Malformed); next.len()];
        e.process(IN, 11, &mut next, &mut v);
        assert!(v.iter().all(|x| *x == Verdict::Forward(OUT)), "{v:?}");
        for (i, f) in first.iter().enumerate() {
            let (public, port, _, _) = tuple(f);
            for g in &next[2 * i..2 * i + 2] {
                assert_eq!((tuple(g).0, tuple(g).1), (public, port), "large {large}: endpoint {i}'s mapping");
            }
        }
        assert_eq!(e.live_sessions(), 300);
    }
}

/// The same when a new flow's probe stops at another flow's session with
/// the key's tag at the key's distance (a shared tag, a few in a hundred
/// at this load): the lane probes again from home, finds no session, and
/// the flow goes to the general path as new. Its mapping look-up must
/// still find the endpoint's mapping (RFC 4787 REQ-1), so its mapping hash
/// must be worked out there too: taken from the item's last use, the flow
/// got another port and its mapping was filed under the wrong key.
#[test]
fn an_endpoints_next_flows_keep_its_mapping_when_a_shared_tag_sends_the_probe_home() {
    let mut pool = PoolParams::cgnat("big", (1..=16).map(|i| ip("203.0.113.0") + i).collect());
    pool.mode = PoolMode::PortBlocks { block_size: 256, max_blocks_per_subscriber: 4 };
    let mut p = EngineParams::single(vec![pool], vec![translate_all("100.64.0.0/10", 0)]);
    p.max_sessions = PREFETCH_ABOVE_SESSIONS + 1;
    let mut e = Engine::new(&p).unwrap();
    // 40 subscribers x 500 endpoints, each to one remote, then to another.
    let flows = |remote: &str| -> Vec<Vec<u8>> {
        (0..20_000u32).map(|i| udp(ip("100.64.3.0") + i % 40, 10_000 + (i / 40) as u16, ip(remote), 53, b"q")).collect()
    };
    let mut first = flows("198.51.100.1");
    let mut v = vec![Verdict::Drop(DropReason::Malformed); first.len()];
    e.process(IN, 10, &mut first, &mut v);
    assert!(v.iter().all(|x| *x == Verdict::Forward(OUT)));
    let mut next = flows("198.51.100.2");
    let mut v = vec![Verdict::Drop(DropReason::Malformed); next.len()];
    e.process(IN, 11, &mut next, &mut v);
    assert!(v.iter().all(|x| *x == Verdict::Forward(OUT)));
    let moved = first.iter().zip(&next).filter(|(a, b)| (tuple(a).0, tuple(a).1) != (tuple(b).0, tuple(b).1)).count();
    assert_eq!(moved, 0, "endpoints whose next flow left their mapping");
    assert_eq!(e.live_sessions(), 40_000);
}
