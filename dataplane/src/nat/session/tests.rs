//! Unit tests of the session slab, the expiry wheel and the unreplied FIFO.

use super::*;

#[test]
fn sizes() {
    assert_eq!(std::mem::size_of::<Session>(), 32);
    assert_eq!(std::mem::size_of::<Cold>(), 24);
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
    assert_eq!(t.deadline(a), 20);
    // Far deadlines are clamped to the wheel's reach.
    t.reschedule(c, 1_000_000, 12);
    assert_eq!(t.deadline(c), 12 + t.horizon() - 1);
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
    t.remove_unreplied(c);
    t.remove_unreplied(b);
    assert_eq!(t.oldest_unreplied(), None);
}
