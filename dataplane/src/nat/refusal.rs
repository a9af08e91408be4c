//! A subscriber at its limit (RFC 6888 REQ-11). A pool's subscriber whose
//! new flow cannot get a port or a session (its blocks or the pool
//! exhausted, its session limit reached, the subscriber table full, the
//! session table full with nothing to reclaim: [`counters::LIMIT_REASONS`]):
//!
//! - a) the packet is dropped and counted under its reason, as any drop;
//! - b) an ICMP destination unreachable, host unreachable, goes back to it:
//!   the engine says [`Verdict::Refuse`] and the worker writes the error
//!   ([`crate::wire::icmp::write_unreachable_frame`]) from
//!   [`EngineParams::icmp_source`] (none set: nothing is sent);
//! - c) the refusal is counted per pool and reason
//!   ([`Counters::subscriber_limit_events`]) and logged as a
//!   [`ports::EventKind::Refused`] event;
//! - d) no existing mapping is deleted to make room: this stage runs after
//!   the stage that refused gave back all it took, and removes nothing.
//!
//! Rate limits, decided here without allocation: a subscriber (an inside
//! address) gets at most one error per [`ICMP_GAP_SECS`] and one event per
//! [`LOG_INTERVAL_SECS`]; a worker sends at most [`ICMP_PER_SEC`] errors
//! and logs at most [`EVENTS_PER_SEC`] events a second, whatever the
//! sources (the role Linux's `icmp_msgs_per_sec` plays for its own ICMP).
//! When a subscriber was last answered and logged is kept in a
//! set-associative table sized at start (`Refusals`), not in the
//! subscriber record: a refused subscriber often has none (the subscriber
//! table was full, or its first flow found no free block). A table entry
//! is replaced oldest first; more sources refused at once than the table
//! holds can make a source look new again, which the worker-wide budgets
//! bound.
//!
//! Invariants: a refusal changes no session, mapping, port or subscriber;
//! [`Verdict::Refuse`] is returned only when an error may be sent (an ICMP
//! source is set, RFC 1812 section 4.3.2.7 allows answering the frame,
//! [`crate::wire::icmp::may_answer_frame`], and both of its rate limits
//! allow it); the budgets are taken only by what is sent or logged.
#![forbid(unsafe_code)]

use super::counters::limit_index;
use super::*;

/// Least time between two ICMP errors to one subscriber, in seconds.
pub const ICMP_GAP_SECS: u32 = 1;
/// Least time between two refusal events (log lines) of one subscriber, in
/// seconds (RFC 6888 REQ-11c asks for a log "once per subscriber per
/// interval").
pub const LOG_INTERVAL_SECS: u32 = 60;
/// Most ICMP errors a worker sends to refused subscribers in one second.
pub const ICMP_PER_SEC: u32 = 256;
/// Most refusal events a worker logs in one second.
pub const EVENTS_PER_SEC: u32 = 64;

/// Ways of the table: one set is one 64-byte cache line.
const WAYS: usize = 4;
/// Entries of the table at least and at most (the subscriber capacity,
/// rounded up to a power of two, in between).
const MIN_ENTRIES: usize = 64;
const MAX_ENTRIES: usize = 1 << 16;

/// One source's last refusals, in worker seconds.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    ip: u32,
    /// Last refusal (the oldest entry of a set is replaced first).
    last: u32,
    /// Last ICMP error sent.
    icmp_at: u32,
    /// Last event logged.
    logged_at: u32,
}

/// What to do about one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Decision {
    /// Log an event.
    pub(super) log: bool,
    /// Send an ICMP error.
    pub(super) icmp: bool,
}

/// Per-source rate limits and the worker's budgets for the second.
#[derive(Debug)]
pub(super) struct Refusals {
    sets: Vec<[Entry; WAYS]>,
    mask: usize,
    seed: u64,
    second: u32,
    icmp_left: u32,
    events_left: u32,
}

impl Refusals {
    /// A table for about `max_subscribers` sources.
    pub(super) fn new(max_subscribers: u32, seed: u64) -> Self {
        let entries =
            usize::try_from(max_subscribers).unwrap_or(MAX_ENTRIES).next_power_of_two().clamp(MIN_ENTRIES, MAX_ENTRIES);
        let sets = entries / WAYS;
        Self {
            sets: vec![[Entry::default(); WAYS]; sets],
            mask: sets - 1,
            seed: seed ^ 0x7265_6675_7365,
            second: 0,
            icmp_left: ICMP_PER_SEC,
            events_left: EVENTS_PER_SEC,
        }
    }

    /// Bytes the table takes.
    pub(super) fn memory_bytes(&self) -> usize {
        self.sets.len() * std::mem::size_of::<[Entry; WAYS]>()
    }

    /// Decides about a refusal of `ip` at `now`: an event if its interval
    /// has passed, an error if `answerable` and its gap has passed, each
    /// within the worker's budget for the second; records what it decides.
    pub(super) fn decide(&mut self, ip: u32, now: u32, answerable: bool) -> Decision {
        if now != self.second {
            self.second = now;
            self.icmp_left = ICMP_PER_SEC;
            self.events_left = EVENTS_PER_SEC;
        }
        let h = hash::hash3(self.seed, ip, 0, 0, 0);
        let Some(set) = self.sets.get_mut(hash::bucket(h, self.mask)) else {
            return Decision { log: false, icmp: false };
        };
        let way = match set.iter().position(|e| e.ip == ip) {
            Some(w) => w,
            None => {
                // A new source: oldest entry out, everything allowed at once.
                let w = set.iter().enumerate().max_by_key(|(_, e)| now.wrapping_sub(e.last)).map_or(0, |(w, _)| w);
                if let Some(e) = set.get_mut(w) {
                    *e = Entry {
                        ip,
                        last: now,
                        icmp_at: now.wrapping_sub(ICMP_GAP_SECS),
                        logged_at: now.wrapping_sub(LOG_INTERVAL_SECS),
                    };
                }
                w
            }
        };
        let Some(e) = set.get_mut(way) else {
            return Decision { log: false, icmp: false };
        };
        e.last = now;
        let log = now.wrapping_sub(e.logged_at) >= LOG_INTERVAL_SECS && self.events_left > 0;
        if log {
            e.logged_at = now;
            self.events_left = self.events_left.saturating_sub(1);
        }
        let icmp = answerable && now.wrapping_sub(e.icmp_at) >= ICMP_GAP_SECS && self.icmp_left > 0;
        if icmp {
            e.icmp_at = now;
            self.icmp_left = self.icmp_left.saturating_sub(1);
        }
        Decision { log, icmp }
    }
}

impl Engine {
    /// A new flow of `pool`'s subscriber `src` was refused with `v` by the
    /// stage that tried to make it (which gave back all it took). A drop
    /// for a reason of [`counters::LIMIT_REASONS`] is counted per pool, may be logged
    /// and may become [`Verdict::Refuse`]; any other verdict is returned
    /// as it is.
    #[cold]
    #[inline(never)]
    pub(super) fn refused(&mut self, now: u32, frame: &[u8], src: u32, pool: u16, v: Verdict) -> Verdict {
        let Verdict::Drop(reason) = v else { return v };
        let Some(k) = limit_index(reason) else { return v };
        if let Some(c) = self.counters.subscriber_limit_events.get_mut(usize::from(pool)).and_then(|r| r.get_mut(k)) {
            *c += 1;
        }
        let answerable = self.params.icmp_source.is_some() && crate::wire::icmp::may_answer_frame(frame);
        let d = self.refusals.decide(src, now, answerable);
        if d.log {
            self.ports.note_refusal(src, pool, reason);
        }
        if d.icmp {
            Verdict::Refuse(reason)
        } else {
            v
        }
    }

    /// Writes into `out` the frame a [`Verdict::Refuse`] of `frame` sends:
    /// the ICMP host unreachable (RFC 6888 REQ-11b) from
    /// [`EngineParams::icmp_source`] to its source, behind `frame`'s own
    /// Ethernet header (the worker then writes the next hop's MACs).
    /// Returns its length; `None` if no ICMP source is set or `frame` may
    /// not be answered (RFC 1812 section 4.3.2.7) or `out` is too short.
    pub fn write_refusal(&self, frame: &[u8], out: &mut [u8]) -> Option<usize> {
        let src = self.params.icmp_source?;
        crate::wire::icmp::write_unreachable_frame(frame, src, crate::wire::icmp::CODE_HOST_UNREACHABLE, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_error_a_second_and_one_event_a_minute_per_source() {
        let mut r = Refusals::new(16, 1);
        let (a, b) = (0x6440_0102, 0x6440_0103);
        assert_eq!(r.decide(a, 100, true), Decision { log: true, icmp: true });
        assert_eq!(r.decide(a, 100, true), Decision { log: false, icmp: false });
        assert_eq!(r.decide(b, 100, true), Decision { log: true, icmp: true }, "another source is its own");
        assert_eq!(r.decide(a, 101, true), Decision { log: false, icmp: true });
        assert_eq!(r.decide(a, 159, true), Decision { log: false, icmp: true });
        assert_eq!(r.decide(a, 160, true), Decision { log: true, icmp: true });
    }

    #[test]
    fn an_unanswerable_refusal_takes_no_error_from_the_gap() {
        let mut r = Refusals::new(16, 1);
        assert_eq!(r.decide(7, 100, false), Decision { log: true, icmp: false });
        assert_eq!(r.decide(7, 100, true), Decision { log: false, icmp: true });
    }

    #[test]
    fn a_worker_sends_and_logs_at_most_its_budget_a_second() {
        let mut r = Refusals::new(1 << 20, 1);
        let n = 1000u32;
        let decided: Vec<Decision> = (0..n).map(|i| r.decide(0x6440_0000 + i, 100, true)).collect();
        assert_eq!(decided.iter().filter(|d| d.icmp).count(), ICMP_PER_SEC as usize);
        assert_eq!(decided.iter().filter(|d| d.log).count(), EVENTS_PER_SEC as usize);
        // The next second the budgets are whole again; those not yet logged are.
        assert_eq!(r.decide(0x6440_0000 + n - 1, 101, true), Decision { log: true, icmp: true });
    }

    #[test]
    fn a_full_set_replaces_its_oldest_entry() {
        let mut r = Refusals::new(16, 1);
        // Sources that share a set with 1.
        let set_of = |r: &Refusals, ip: u32| hash::bucket(hash::hash3(r.seed, ip, 0, 0, 0), r.mask);
        let same: Vec<u32> = (2..10_000).filter(|&ip| set_of(&r, ip) == set_of(&r, 1)).take(WAYS).collect();
        assert_eq!(same.len(), WAYS);
        r.decide(1, 100, true);
        for (&ip, t) in same.iter().zip(101..) {
            r.decide(ip, t, true);
        }
        // 1 was the oldest: it was replaced, so it looks new (logged again).
        assert!(r.decide(1, 110, true).log);
        // The newest of the others is still there: not logged again.
        assert!(!r.decide(same[WAYS - 1], 110, true).log);
        assert!(r.memory_bytes() >= MIN_ENTRIES * 16);
    }
}
