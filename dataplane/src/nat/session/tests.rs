//! Unit tests of the session slab, the expiry wheel and eviction's search.

use super::*;

#[test]
fn sizes() {
    assert_eq!(std::mem::size_of::<Session>(), 32);
    assert_eq!(std::mem::size_of::<Cold>(), 12);
    // Each direction's key in one place, as its packets carry it (see
    // `Session`): read in one load each by the fast lane.
    use std::mem::offset_of;
    let at = [
        offset_of!(Session, inside_ip),
        offset_of!(Session, remote_ip),
        offset_of!(Session, public_ip),
        offset_of!(Session, inside_port),
        offset_of!(Session, remote_port),
        offset_of!(Session, public_port),
    ];
    assert_eq!(at, [0, 4, 8, 12, 14, 16]);
}

#[test]
fn each_directions_key_is_its_packets_bytes_as_they_lie() {
    use crate::nat::parse::fast_lookup_key;
    use crate::testing::frames::udp;
    let (inside, remote, public) = (0x6440_0001, 0xc633_6401, 0xcb00_7101);
    let s = Session {
        inside_ip: inside.into(),
        remote_ip: remote.into(),
        public_ip: public.into(),
        inside_port: 40000.into(),
        remote_port: 53.into(),
        public_port: 1024.into(),
        proto: L4::Udp,
        ..Session::default()
    };
    let out = fast_lookup_key(&udp(inside, 40000, remote, 53, b"q")).unwrap();
    let back = fast_lookup_key(&udp(remote, 53, public, 1024, b"r")).unwrap();
    assert!(s.has_key::<true>(out.w0, out.ports(), L4::Udp));
    assert!(s.has_key::<false>(back.w0, back.ports(), L4::Udp));
    assert!(!s.has_key::<true>(back.w0, back.ports(), L4::Udp));
    assert!(!s.has_key::<false>(out.w0, out.ports(), L4::Udp));
    assert!(!s.has_key::<true>(out.w0, out.ports(), L4::Tcp));
    // The general path hashes the same words as the fast lane.
    let seed = 0x5eed;
    assert_eq!(
        crate::nat::keys::session_i2o(seed, &s),
        crate::nat::keys::i2o(seed, inside, 40000, remote, 53, L4::Udp)
    );
    assert_eq!(crate::nat::keys::session_o2i(seed, &s), crate::nat::keys::o2i(seed, public, 1024, remote, 53, L4::Udp));
    assert_eq!(
        crate::nat::hash::hash_ports(seed, L4::Udp.code(), out.w0, out.ports()),
        crate::nat::keys::session_i2o(seed, &s)
    );
    assert_eq!((out.src(), out.sport(), out.dst(), out.dport()), (inside, 40000, remote, 53));
}

#[test]
fn a_link_holds_every_session_and_sentinel_number_and_nil() {
    let last_sentinel = MAX_SESSIONS + (1 << 20) - 1;
    for i in [0, 1, 0x0012_3456, MAX_SESSIONS - 1, last_sentinel, NIL] {
        assert_eq!(Link::new(i).get(), i, "{i:#x}");
    }
    assert_eq!(Link::NIL.get(), NIL);
    // The largest table's wheel, sentinels included, stays below NIL
    // (its geometry only: such a table is 900 MB).
    let (capacity, buckets) = geometry(u32::MAX, u32::MAX);
    assert_eq!((capacity, buckets), (MAX_SESSIONS, 1 << 20), "cut to the most a link can name");
    assert_eq!(capacity + buckets - 1, last_sentinel);
    assert!(last_sentinel < LINK_NIL);
    let t = SessionTable::new(1000, 100);
    assert_eq!((t.capacity(), t.horizon()), geometry(1000, 100));
}

#[test]
fn alloc_and_free() {
    let mut t = SessionTable::new(3, 100);
    let a = t.alloc().unwrap();
    let b = t.alloc().unwrap();
    let _c = t.alloc().unwrap();
    assert_eq!(t.alloc(), None);
    assert_eq!(t.live(), 3);
    t.free(b);
    assert_eq!(t.live(), 2);
    assert_eq!(t.alloc(), Some(b));
    t.free(a);
    assert_eq!(t.alloc(), Some(a));
}

#[test]
fn wheel_buckets_come_due_in_order() {
    let mut t = SessionTable::new(4, 100);
    let (a, b, c) = (t.alloc().unwrap(), t.alloc().unwrap(), t.alloc().unwrap());
    assert_eq!(t.due(10), Some((NIL, 10)));
    t.schedule(a, 12, 10);
    t.schedule(b, 11, 10);
    t.schedule(c, 12, 10);
    t.advance();
    assert_eq!(t.due(11), Some((b, 11)));
    t.unschedule(b);
    assert_eq!(t.due(11), Some((NIL, 11)));
    t.advance();
    assert_eq!(t.due(11), None, "12 has not come yet");
    assert_eq!(t.due(12), Some((a, 12)));
    assert_eq!(t.next_in_bucket(a), c);
    t.reschedule(a, 20, 12);
    assert_eq!(t.due(12), Some((c, 12)));
    assert_eq!(t.bucket_of(a), Some(20));
    // Far deadlines are clamped to the wheel's reach.
    t.reschedule(c, 1_000_000, 12);
    assert_eq!(t.bucket_of(c), Some((12 + t.horizon() - 1) % t.horizon()));
    assert_eq!(t.due(12), Some((NIL, 12)));
}

#[test]
fn a_session_leaves_its_bucket_by_its_own_links() {
    let mut t = SessionTable::new(8, 100);
    let s: Vec<u32> = (0..5).map(|_| t.alloc().unwrap()).collect();
    assert_eq!(t.due(0), Some((NIL, 0)), "the sweep starts at second 0");
    for &i in &s[..4] {
        t.schedule(i, 7, 0);
    }
    t.schedule(s[4], 9, 0);
    t.unschedule(s[4]);
    // Head, tail and middle of bucket 7, then again: a no-op the second time.
    for &i in &[s[0], s[3], s[2], s[2]] {
        t.unschedule(i);
        assert_eq!(t.bucket_of(i), None);
    }
    assert_eq!(t.bucket_of(s[1]), Some(7));
    for _ in 0..7 {
        assert_eq!(t.due(7).map(|(h, _)| h), Some(NIL));
        t.advance();
    }
    assert_eq!(t.due(7), Some((s[1], 7)));
    assert_eq!(t.next_in_bucket(s[1]), NIL, "the bucket ends at its sentinel");
    t.unschedule(s[1]);
    assert_eq!(t.due(7), Some((NIL, 7)));
    t.advance();
    t.advance();
    assert_eq!(t.due(9), Some((NIL, 9)), "s[4] left bucket 9");
    // Re-filed after leaving: a list works again.
    t.schedule(s[2], 10, 9);
    t.advance();
    assert_eq!(t.due(10), Some((s[2], 10)));
}

/// Timeouts by class for eviction's re-filing: UDP 300 s, the rest 5 s.
fn timeouts() -> [u32; class::SLOTS] {
    let mut t = [5; class::SLOTS];
    t[usize::from(class::UDP)] = 300;
    t
}

/// A new session of `class`, last seen at `seen`, filed for `deadline` at second 0.
fn filed(t: &mut SessionTable, class: u8, replied: bool, seen: u32, deadline: u32) -> u32 {
    let i = t.alloc().unwrap();
    t.hot[i as usize] =
        Session { class, last_seen: seen, flags: if replied { flag::REPLIED } else { 0 }, ..Session::default() };
    t.link_new(i, 0, &[deadline; class::SLOTS], 0);
    i
}

#[test]
fn the_first_unanswered_session_along_the_wheel_is_the_one_to_evict() {
    let mut t = SessionTable::new(8, 400);
    let to = timeouts();
    assert_eq!(t.evictable(0, &to), None, "an empty table");
    // Bucket 5: answered idle, answered active since, unanswered, unanswered.
    let idle = filed(&mut t, class::UDP_UNREPLIED, true, 0, 5);
    let active = filed(&mut t, class::UDP, true, 3, 5);
    let (first, second) =
        (filed(&mut t, class::UDP_UNREPLIED, false, 0, 5), filed(&mut t, class::UDP_UNREPLIED, false, 0, 5));
    // Bucket 9: unanswered, due later.
    let later = filed(&mut t, class::TCP_TRANSITORY, false, 4, 9);
    assert_eq!(t.evictable(1, &to), Some(first), "the first unanswered in the soonest bucket");
    assert_eq!(t.bucket_of(active), Some(303), "an answered session active since is re-filed at its deadline");
    assert_eq!(t.bucket_of(idle), Some(5), "one idle since stays: it expires in that second");
    t.unschedule(first);
    assert_eq!(t.evictable(1, &to), Some(second));
    t.unschedule(second);
    assert_eq!(t.evictable(1, &to), Some(later));
    t.hot[later as usize].flags |= flag::REPLIED;
    assert_eq!(t.evictable(1, &to), None, "every session answered");
    assert_eq!((t.bucket_of(idle), t.bucket_of(later)), (Some(5), Some(9)));
}

#[test]
fn eviction_looks_a_bounded_number_of_steps_a_call_and_goes_on_from_there() {
    let n = EVICT_STEPS * 2 + 1;
    let mut t = SessionTable::new(n, 400);
    let to = timeouts();
    // Answered and active since (re-filed as passed), then one unanswered.
    for _ in 0..n - 1 {
        filed(&mut t, class::UDP, true, 2, 5);
    }
    let victim = filed(&mut t, class::UDP_UNREPLIED, false, 0, 5);
    assert_eq!(t.evictable(1, &to), None, "a bound's worth passed");
    assert_eq!(t.evictable(1, &to), None, "and another");
    assert_eq!(t.evictable(1, &to), Some(victim), "then the one never answered");
    assert_eq!(t.bucket_of(0), Some(302));
}

/// Calls `evictable` until it names a session, at most `calls` times;
/// returns the call that did (1-based) and the session.
fn search(t: &mut SessionTable, now: u32, calls: u32) -> Option<(u32, u32)> {
    let to = timeouts();
    (1..=calls).find_map(|k| t.evictable(now, &to).map(|v| (k, v)))
}

#[test]
fn an_unanswered_session_far_along_the_wheel_is_found_over_several_calls() {
    // 8192 buckets; the only unanswered session is filed 3000 s out.
    let mut t = SessionTable::new(4, 8000);
    let victim = filed(&mut t, class::TCP_ESTABLISHED, false, 0, 3000);
    let found = search(&mut t, 1, 8);
    assert_eq!(found, Some((3, victim)), "1,024 buckets a call, going on where the last stopped");
    assert_eq!(t.evictable(1, &timeouts()), Some(victim), "the next search starts where that one stopped");
}

#[test]
fn answered_sessions_idle_since_filing_do_not_hide_the_unanswered_ones_behind_them() {
    // Bucket 5: twice a search's steps of answered sessions idle since
    // they were filed (they stay in that second), then an unanswered one.
    let n = EVICT_STEPS * 2 + 1;
    let mut t = SessionTable::new(n, 400);
    for _ in 0..n - 1 {
        filed(&mut t, class::UDP_UNREPLIED, true, 0, 5);
    }
    let victim = filed(&mut t, class::UDP_UNREPLIED, false, 0, 5);
    let found = search(&mut t, 1, 4);
    assert_eq!(found.map(|(_, v)| v), Some(victim));
    assert_eq!(t.bucket_of(0), Some(5), "the idle ones stay in their second");
}

#[test]
fn a_bucket_of_idle_answered_sessions_is_passed_over_calls_and_the_search_goes_on() {
    // Bucket 5: more than two searches' steps of answered sessions idle
    // since they were filed; the unanswered one is in bucket 6.
    let n = EVICT_STEPS * 3;
    let mut t = SessionTable::new(n, 400);
    for _ in 0..n - 1 {
        filed(&mut t, class::UDP_UNREPLIED, true, 0, 5);
    }
    let victim = filed(&mut t, class::UDP_UNREPLIED, false, 0, 6);
    assert_eq!(search(&mut t, 1, 5).map(|(_, v)| v), Some(victim));
}

#[test]
fn a_new_session_is_filed_in_its_bucket() {
    let mut t = SessionTable::new(4, 100);
    let (a, b) = (t.alloc().unwrap(), t.alloc().unwrap());
    t.link_new(a, 0, &[5; class::SLOTS], 0);
    t.link_new(b, 0, &[5; class::SLOTS], 0);
    assert_eq!((t.bucket_of(a), t.bucket_of(b)), (Some(5), Some(5)));
    assert_eq!(t.next_in_bucket(a), b);
    t.unschedule(a);
    t.unschedule(b);
    t.free(a);
    t.free(b);
    assert_eq!(t.live(), 0);
    // Every sentinel points at itself again: all buckets are empty.
    for (j, c) in t.cold.iter().enumerate().skip(4) {
        let j = u32::try_from(j).unwrap();
        assert_eq!((c.prev(), c.next()), (j, j), "sentinel {j}: {c:?}");
    }
}

/// A new session's filing (`link_new`, which takes its class's timeout and
/// clamps only from above) lands in the bucket `schedule` gives its
/// deadline: with no sweep yet, with the sweep's cursor behind now, and
/// with timeouts past the wheel's reach.
#[test]
fn a_new_session_is_filed_where_its_deadline_would_be() {
    for cursor in [None, Some(3), Some(40)] {
        for now in [0, 5, 40, 1000] {
            for timeout in [0, 1, 7, 99, 100, 250, u32::MAX] {
                let mut t = SessionTable::new(4, 100);
                if let Some(c) = cursor.filter(|&c| c <= now) {
                    assert!(t.due(c).is_some());
                }
                let (a, b) = (t.alloc().unwrap(), t.alloc().unwrap());
                t.link_new(a, 0, &[timeout; class::SLOTS], now);
                t.schedule(b, now.saturating_add(timeout), now);
                assert_eq!(t.bucket_of(a), t.bucket_of(b), "cursor {cursor:?}, now {now}, timeout {timeout}");
                assert!(t.bucket_of(a).is_some());
            }
        }
    }
}

/// The free list read raw (its end is `LINK_NIL`, not `NIL`): a table
/// taken to its last slot refuses, gives back and takes again every slot
/// (and a debug build's link check accepts the raw end written back).
#[test]
fn a_table_emptied_and_filled_again_gives_every_slot_once() {
    let mut t = SessionTable::new(8, 100);
    let cap = t.capacity();
    for round in 0..3 {
        let mut taken: Vec<u32> = std::iter::from_fn(|| t.alloc()).collect();
        assert_eq!(u32::try_from(taken.len()), Ok(cap), "round {round}");
        assert_eq!(t.alloc(), None);
        let last = taken.pop().unwrap();
        t.free(last);
        assert_eq!(t.alloc(), Some(last));
        assert_eq!(t.alloc(), None);
        taken.push(last);
        taken.sort_unstable();
        taken.dedup();
        assert_eq!(u32::try_from(taken.len()), Ok(cap));
        for i in taken {
            t.free(i);
        }
        assert_eq!(t.live(), 0);
    }
}

/// Every bucket's sessions in order, from its sentinel (a settled wheel).
fn buckets(t: &SessionTable) -> Vec<Vec<u32>> {
    (t.wheel_base..t.wheel_base + t.horizon())
        .map(|b| {
            let mut list = Vec::new();
            let mut j = t.cold[b as usize].next();
            while j != b && list.len() <= t.cold.len() {
                list.push(j);
                j = t.cold[j as usize].next();
            }
            list
        })
        .collect()
}

/// What one step of [`new_sessions_waiting_to_be_filed_end_where_filing_at_once_puts_them`] does.
#[derive(Debug, Clone)]
enum Step {
    /// A new session of class `cls`, `dt` seconds on.
    New { cls: u8, dt: u32 },
    /// Class `cls`'s timeout changed to `t` (settled first, as the
    /// engine's reconfiguration does).
    Retime { cls: u8, t: u32 },
    /// The `k`-th live session (modulo) removed.
    Remove { k: usize },
    /// The `k`-th live session re-filed `d` seconds on.
    Refile { k: usize, d: u32 },
    /// The sweep: up to three sessions of the seconds due removed (the
    /// chained table's first each time, from both).
    Sweep,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        6 => (0u8..3, 0u32..2).prop_map(|(cls, dt)| Step::New { cls, dt }),
        1 => (0u8..3, prop::sample::select(vec![0u32, 3, 30, 99, 500, u32::MAX]))
            .prop_map(|(cls, t)| Step::Retime { cls, t }),
        2 => any::<usize>().prop_map(|k| Step::Remove { k }),
        1 => (any::<usize>(), 0u32..200).prop_map(|(k, d)| Step::Refile { k, d }),
        1 => Just(Step::Sweep),
    ]
}

proptest::proptest! {
    /// New sessions chained by `link_new` until the wheel is next read or
    /// changed (removals, re-filings, the sweep, in between) end up, once
    /// settled, in the buckets filing each at once (`schedule` for its
    /// deadline) puts them, each class's in the same order there (two
    /// classes' chains that share a bucket join it one after the other).
    #[test]
    fn new_sessions_waiting_to_be_filed_end_where_filing_at_once_puts_them(
        batches in proptest::collection::vec(proptest::collection::vec(step(), 1..40), 1..8),
    ) {
        let (mut chained, mut at_once) = (SessionTable::new(64, 100), SessionTable::new(64, 100));
        let (mut now, mut live, mut class_of) = (1u32, Vec::new(), [0u8; 64]);
        let mut timeouts = [30u32; class::SLOTS];
        for batch in batches {
            for s in batch {
                match s {
                    Step::New { cls, dt } => {
                        now += dt;
                        let (Some(i), Some(j)) = (chained.alloc(), at_once.alloc()) else { continue };
                        proptest::prop_assert_eq!(i, j);
                        chained.link_new(i, cls, &timeouts, now);
                        at_once.schedule(j, now.saturating_add(timeouts[usize::from(cls)]), now);
                        live.push(i);
                        class_of[i as usize] = cls;
                    }
                    Step::Retime { cls, t } => {
                        chained.settle();
                        timeouts[usize::from(cls)] = t;
                    }
                    Step::Remove { k } if !live.is_empty() => {
                        let i = live.swap_remove(k % live.len());
                        for w in [&mut chained, &mut at_once] {
                            w.unschedule(i);
                            w.free(i);
                        }
                    }
                    Step::Refile { k, d } if !live.is_empty() => {
                        let i = live[k % live.len()];
                        chained.reschedule(i, now + d, now);
                        at_once.reschedule(i, now + d, now);
                    }
                    Step::Sweep => {
                        for _ in 0..3 {
                            // The same second, empty or not (which session
                            // leads it may differ: see above).
                            let (a, b) = (chained.due(now), at_once.due(now));
                            proptest::prop_assert_eq!(a.map(|(i, d)| (i == NIL, d)), b.map(|(i, d)| (i == NIL, d)));
                            match a {
                                Some((NIL, _)) => {
                                    chained.advance();
                                    at_once.advance();
                                }
                                Some((i, _)) => {
                                    live.retain(|&x| x != i);
                                    for w in [&mut chained, &mut at_once] {
                                        w.unschedule(i);
                                        w.free(i);
                                    }
                                }
                                None => break,
                            }
                        }
                    }
                    _ => {}
                }
            }
            // The batch's end: the chains join their buckets.
            chained.settle();
            for (b, (x, y)) in buckets(&chained).into_iter().zip(buckets(&at_once)).enumerate() {
                for c in 0..3 {
                    let of = |l: &[u32]| l.iter().copied().filter(|&i| class_of[i as usize] == c).collect::<Vec<_>>();
                    proptest::prop_assert_eq!(of(&x), of(&y), "bucket {}, class {}", b, c);
                }
                proptest::prop_assert_eq!(x.len(), y.len(), "bucket {}", b);
            }
        }
    }
}
