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
//! Invariant: a message put in while the mark is set is followed by an
//! eventfd write before the worker's poll can block on it.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// One worker's wake-up: see the module doc.
#[derive(Debug)]
pub struct Wake {
    fd: std::fs::File,
    asleep: AtomicBool,
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
        Ok(Self { fd: std::fs::File::from(fd), asleep: AtomicBool::new(false) })
    }

    /// The descriptor the worker adds to its poll set.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The worker: about to look at its inputs for the last time before it
    /// sleeps.
    pub fn going_to_sleep(&self) {
        self.asleep.store(true, Ordering::SeqCst);
    }

    /// The worker: awake again (or not sleeping after all); empties the
    /// eventfd, so the next poll blocks until the next write.
    pub fn awake(&self) {
        self.asleep.store(false, Ordering::SeqCst);
        let mut count = [0u8; 8];
        // Non-blocking: nothing to read (no write since) is EAGAIN.
        let _ = (&self.fd).read(&mut count);
    }

    /// True if the eventfd has been written since the last [`Wake::awake`]
    /// (a poll that returns at once): for tests.
    #[cfg(test)]
    pub(crate) fn written(&self) -> bool {
        let mut p = [libc::pollfd { fd: self.fd(), events: libc::POLLIN, revents: 0 }];
        // SAFETY: one valid pollfd, alive for the call; a zero timeout.
        unsafe { libc::poll(p.as_mut_ptr(), 1, 0) };
        p[0].revents & libc::POLLIN != 0
    }

    /// A sender, after putting its message in: wakes the worker if it is
    /// going to sleep or asleep. True if this call wrote the eventfd.
    pub fn wake(&self) -> bool {
        if !self.asleep.load(Ordering::SeqCst) || !self.asleep.swap(false, Ordering::SeqCst) {
            return false;
        }
        // An eventfd write adds to its count; it fails only at u64::MAX - 1,
        // unreachable with one write a sleep.
        let _ = (&self.fd).write(&1u64.to_ne_bytes());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn poll_readable(fd: RawFd, timeout_ms: i32) -> bool {
        let mut p = [libc::pollfd { fd, events: libc::POLLIN, revents: 0 }];
        // SAFETY: one valid pollfd, alive for the call.
        unsafe { libc::poll(p.as_mut_ptr(), 1, timeout_ms) };
        p[0].revents & libc::POLLIN != 0
    }

    #[test]
    fn a_sender_wakes_a_sleeping_worker_once_and_an_awake_one_never() {
        let w = Wake::new().expect("eventfd");
        // Awake: a message needs no syscall and leaves nothing to read.
        assert!(!w.wake());
        assert!(!w.written());
        // Going to sleep: the first sender writes, the next ones do not.
        w.going_to_sleep();
        assert!(w.wake());
        assert!(!w.wake());
        assert!(w.written());
        // Awake again: emptied, so the next poll would block.
        w.awake();
        assert!(!w.written());
    }

    #[test]
    fn a_wake_from_another_thread_ends_a_long_poll() {
        let w = Arc::new(Wake::new().expect("eventfd"));
        w.going_to_sleep();
        let t0 = Instant::now();
        let sender = {
            let w = Arc::clone(&w);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                w.wake()
            })
        };
        // Without the write this poll would last 20 s.
        assert!(poll_readable(w.fd(), 20_000));
        w.awake();
        assert!(sender.join().expect("sender"));
        assert!(t0.elapsed() < Duration::from_secs(10), "woken after {:?}", t0.elapsed());
    }
}
