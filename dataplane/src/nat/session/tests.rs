//! Unit tests of the session slab, the expiry wheel and the unreplied FIFO.

use super::*;

#[test]
fn sizes() {
    assert_eq!(std::mem::size_of::<Session>(), 32);
    assert_eq!(std::mem::size_of::<Cold>(), 20);
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

#[test]
fn unreplied_fifo() {
    let mut t = SessionTable::new(4, 100);
    let (a, b, c) = (t.alloc().unwrap(), t.alloc().unwrap(), t.alloc().unwrap());
    assert_eq!(t.oldest_unreplied(), None);
    t.push_unreplied(a);
    t.push_unreplied(b);
    t.push_unreplied(c);
    assert_eq!(t.oldest_unreplied(), Some(a));
    t.remove_unreplied(a);
    assert_eq!(t.oldest_unreplied(), Some(b));
    t.remove_unreplied(a);
    assert_eq!(t.oldest_unreplied(), Some(b), "a session on no FIFO leaves it alone");
    t.remove_unreplied(c);
    t.remove_unreplied(b);
    assert_eq!(t.oldest_unreplied(), None);
    t.push_unreplied(c);
    assert_eq!(t.oldest_unreplied(), Some(c));
}

#[test]
fn answered_sessions_leave_the_fifo_lazily_and_are_never_the_oldest_unreplied() {
    let mut t = SessionTable::new(4, 100);
    let (a, b, c) = (t.alloc().unwrap(), t.alloc().unwrap(), t.alloc().unwrap());
    for i in [a, b, c] {
        t.link_new(i, 5, 0);
    }
    // a and b answered (their first reply set only the flag): c is the
    // oldest unreplied, and the look-up took a and b off the FIFO.
    for i in [a, b] {
        t.hot[i as usize].flags |= flag::REPLIED;
    }
    assert_eq!(t.oldest_unreplied(), Some(c));
    for i in [a, b] {
        assert_eq!((t.cold[i as usize].u_prev, t.cold[i as usize].u_next), (NIL, NIL), "{i} off the FIFO");
    }
    t.hot[c as usize].flags |= flag::REPLIED;
    assert_eq!(t.oldest_unreplied(), None);
    assert_eq!(t.cold[t.unreplied as usize].u_next, t.unreplied, "the FIFO is empty");
}

#[test]
fn a_fifo_of_answered_sessions_is_cleared_a_bounded_number_a_call() {
    let n = u32::try_from(UNLINK_BOUND).unwrap() * 2 + 1;
    let mut t = SessionTable::new(n, 100);
    for _ in 0..n {
        let i = t.alloc().unwrap();
        t.link_new(i, 5, 0);
        if i + 1 < n {
            t.hot[i as usize].flags |= flag::REPLIED;
        }
    }
    assert_eq!(t.oldest_unreplied(), None, "a bound's worth taken off");
    assert_eq!(t.oldest_unreplied(), None, "and another");
    assert_eq!(t.oldest_unreplied(), Some(n - 1), "then the one never answered");
}

#[test]
fn a_new_session_is_filed_in_its_bucket_and_on_the_fifo() {
    let mut t = SessionTable::new(4, 100);
    let (a, b) = (t.alloc().unwrap(), t.alloc().unwrap());
    t.link_new(a, 5, 0);
    t.link_new(b, 5, 0);
    assert_eq!((t.bucket_of(a), t.bucket_of(b)), (Some(5), Some(5)));
    assert_eq!(t.next_in_bucket(a), b);
    assert_eq!(t.oldest_unreplied(), Some(a));
    t.remove_unreplied(a);
    assert_eq!(t.oldest_unreplied(), Some(b));
    t.unschedule(a);
    t.unschedule(b);
    t.remove_unreplied(b);
    t.free(a);
    t.free(b);
    assert_eq!(t.live(), 0);
    // Every sentinel points at itself again: all lists are empty.
    for (j, c) in t.cold.iter().enumerate().skip(4) {
        let j = u32::try_from(j).unwrap();
        assert!((c.prev, c.next) == (j, j) || (c.u_prev, c.u_next) == (j, j), "sentinel {j}: {c:?}");
    }
}
