//! [`Wake`]: how another thread wakes a worker asleep on its sockets (an
//! eventfd in the worker's poll set), so an idle worker can sleep long
//! and still take a hand-off or a control request at once.
//!
//! The handshake (a store-load pair on each side, both sequentially
//! consistent): the worker marks itself asleep, then looks at its inputs,
//! then polls; a sender puts its message in, then looks at the mark and,
//! if set, clears it and writes the eventfd. Whichever comes second sees
//! the other's write: the worker finds the message and does not sleep, or
//! the sender finds the mark and the poll returns at once. Only the
//! sender that clears the mark writes: one syscall a sleep, never one a
//! message while the worker is awake.
//!
//! The worker's side is [`Wake::sleep_unless`], so the order (mark, look,
//! poll) is written once. [`Wake::nudge`] writes whatever the mark says,
//! for a flag the worker's look does not read (stop).
//!
//! Invariant: a message put in while the mark is set is followed by an
//! eventfd write before the worker's poll can block on it.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One worker's wake-up: see the module doc.
#[derive(Debug)]
pub struct Wake {
    fd: std::fs::File,
    asleep: AtomicBool,
    /// Writes by [`Wake::wake`] (one a sleep it ended).
    woken: AtomicU64,
}

impl Wake {
    /// A new eventfd (non-blocking, closed on exec).
    pub fn new() -> std::io::Result<Self> {
        // SAFETY: eventfd takes no pointer; a negative return is an error,
        // checked before the value is used as a descriptor.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor eventfd just opened, owned by no
        // one else: the OwnedFd (then the File) closes it, once.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self { fd: std::fs::File::from(fd), asleep: AtomicBool::new(false), woken: AtomicU64::new(0) })
    }

    /// The worker's side of the handshake: marks itself asleep, then asks
    /// `pending` whether anything came in for it (its last look); if not,
    /// runs `poll` with the eventfd to add to its poll set. Returns what
    /// `poll` returned (true: it slept), false if `pending` said so. The
    /// eventfd is emptied after a sleep; a write it did not sleep through
    /// (a sender that saw the mark during the look, a [`Wake::nudge`])
    /// ends the next sleep at once, which then empties it.
    pub fn sleep_unless<T>(
        &self,
        t: &mut T,
        pending: impl FnOnce(&T) -> bool,
        poll: impl FnOnce(&mut T, RawFd) -> bool,
    ) -> bool {
        self.asleep.store(true, Ordering::SeqCst);
        if pending(t) {
            self.asleep.store(false, Ordering::SeqCst);
            return false;
        }
        let slept = poll(t, self.fd.as_raw_fd());
        self.asleep.store(false, Ordering::SeqCst);
        if slept {
            let mut count = [0u8; 8];
            // Non-blocking: nothing to read (no write since) is EAGAIN.
            let _ = (&self.fd).read(&mut count);
        }
        slept
    }

    /// A sender, after putting its message in: wakes the worker if it is
    /// going to sleep or asleep. True if this call wrote the eventfd.
    pub fn wake(&self) -> bool {
        if !self.asleep.load(Ordering::SeqCst) || !self.asleep.swap(false, Ordering::SeqCst) {
            return false;
        }
        self.write();
        self.woken.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// How many sleeps a sender has ended (or kept from starting) with
    /// [`Wake::wake`]; nudges are not counted.
    pub fn woken(&self) -> u64 {
        self.woken.load(Ordering::Relaxed)
    }

    /// Writes the eventfd whether the worker sleeps or not: its current or
    /// next sleep ends at once. For a flag the worker reads between rounds
    /// but not in its last look (the stop flag).
    pub fn nudge(&self) {
        self.write();
    }

    fn write(&self) {
        // An eventfd write adds to its count; it fails only at u64::MAX - 1,
        // unreachable with a write a sleep and a nudge a stop.
        let _ = (&self.fd).write(&1u64.to_ne_bytes());
    }

    /// True if the eventfd is written, waiting at most `timeout_ms` for
    /// it (a poll): for tests.
    #[cfg(test)]
    pub(crate) fn written_within(&self, timeout_ms: i32) -> bool {
        let mut p = [libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        // SAFETY: one valid pollfd, alive for the call.
        unsafe { libc::poll(p.as_mut_ptr(), 1, timeout_ms) };
        p[0].revents & libc::POLLIN != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn a_sender_wakes_a_sleeping_worker_once_and_an_awake_one_never() {
        let w = Wake::new().expect("eventfd");
        // Awake: a message needs no syscall and leaves nothing to read.
        assert!(!w.wake());
        assert!(!w.written_within(0));
        // Asleep: the first sender writes, the next ones do not; the sleep
        // empties the eventfd after it.
        let slept = w.sleep_unless(
            &mut (),
            |_| false,
            |_, _| {
                assert!(w.wake());
                assert!(!w.wake());
                w.written_within(0)
            },
        );
        assert!(slept, "the poll saw the write");
        assert!(!w.written_within(0), "emptied after the sleep");
        assert!(!w.wake(), "awake again");
        assert_eq!(w.woken(), 1);
    }

    #[test]
    fn a_message_put_in_after_the_last_look_still_ends_the_sleep() {
        // The race the mark exists for: the worker looks (nothing), a
        // sender puts a message in and calls wake(), the worker polls. The
        // mark was set before the look, so the sender writes.
        let w = Wake::new().expect("eventfd");
        let queued = std::sync::atomic::AtomicBool::new(false);
        let slept = w.sleep_unless(
            &mut (),
            |_| {
                let had = queued.load(Ordering::SeqCst);
                queued.store(true, Ordering::SeqCst);
                w.wake();
                had
            },
            |_, fd| {
                assert_eq!(fd, w.fd.as_raw_fd());
                w.written_within(0)
            },
        );
        assert!(slept, "the poll would block: the message waits for the timeout");
        // Something queued: no sleep, no poll.
        assert!(!w.sleep_unless(&mut (), |_| true, |_, _| panic!("polled with a message waiting")));
    }

    #[test]
    fn a_nudge_ends_the_next_sleep_whenever_it_came() {
        let w = Wake::new().expect("eventfd");
        w.nudge();
        assert!(w.sleep_unless(&mut (), |_| false, |_, _| w.written_within(0)));
        assert!(!w.written_within(0));
    }

    #[test]
    fn a_wake_from_another_thread_ends_a_long_poll() {
        let w = Arc::new(Wake::new().expect("eventfd"));
        let t0 = Instant::now();
        let sender = {
            let w = Arc::clone(&w);
            std::thread::spawn(move || {
                // Once the worker is asleep (it marks itself first).
                while !w.wake() {
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        // Without the write this poll would last 20 s.
        assert!(w.sleep_unless(&mut (), |_| false, |_, _| w.written_within(20_000)));
        sender.join().expect("sender");
        assert!(t0.elapsed() < Duration::from_secs(10), "woken after {:?}", t0.elapsed());
    }
}
