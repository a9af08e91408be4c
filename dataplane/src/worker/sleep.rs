//! An idle worker's sleep: on its two sockets and its [`Wake`], so a
//! frame on either side, a frame another worker hands it or a control
//! request ([`CommandTx`]) ends it at once. How long it may last is the
//! caller's ([`Worker::sleep_budget_ms`] says what the worker's own
//! periodic work allows).
//!
//! Invariants: the worker marks itself asleep before it looks at its
//! queues for the last time (`Wake`'s handshake), so nothing put in for
//! it waits for the timeout; without a `Wake` (no eventfd) a sleep lasts
//! at most [`SHORT_SLEEP_MS`], as every sleep did before.

use super::{Command, Worker};
use crate::io::FrameIo;
use crate::xdp::Wake;
use std::sync::Arc;

/// The longest sleep when something would not wake the worker: no eventfd,
/// or an expiry sweep behind (each wake removes at most a budget).
pub const SHORT_SLEEP_MS: i32 = 1;

/// The longest sleep of a worker with nothing due: the next-hop tables
/// (read at the next frame, which wakes it) and its counters' publication
/// (the caller's, every 100 ms) wait for it at most.
pub const LONG_SLEEP_MS: i32 = 100;

/// Where the control thread's requests to one worker go: the channel, and
/// the worker's [`Wake`] written after each request when it sleeps.
#[derive(Clone)]
pub struct CommandTx {
    tx: crossbeam_channel::Sender<Command>,
    mesh: Option<Arc<super::Mesh>>,
    to: usize,
}

impl CommandTx {
    /// Requests for worker `to` on `tx`, waking it through `mesh`.
    pub fn new(tx: crossbeam_channel::Sender<Command>, mesh: Arc<super::Mesh>, to: usize) -> Self {
        Self { tx, mesh: Some(mesh), to }
    }

    /// Requests on `tx` to a worker that is never woken (tests: a worker
    /// run by hand, which never sleeps).
    pub fn unwoken(tx: crossbeam_channel::Sender<Command>) -> Self {
        Self { tx, mesh: None, to: 0 }
    }

    /// Sends `c` (blocking while the worker's queue is full), then wakes the worker.
    pub fn send(&self, c: Command) -> Result<(), crossbeam_channel::SendError<Command>> {
        self.tx.send(c)?;
        self.wake();
        Ok(())
    }

    /// Wakes the worker if it sleeps (after a stop flag was set).
    pub fn wake(&self) {
        if let Some(m) = &self.mesh {
            m.wake(self.to);
        }
    }
}

impl<I: FrameIo> Worker<I> {
    /// How long this worker may sleep now: [`LONG_SLEEP_MS`] if every
    /// input wakes it and its expiry sweep is up to date at `now`, else
    /// [`SHORT_SLEEP_MS`].
    pub fn sleep_budget_ms(&mut self, now: u32) -> i32 {
        let behind = self.engine.as_mut().is_some_and(|e| e.sweep_behind(now));
        if self.mesh.wake_of(self.id).is_some() && !behind {
            LONG_SLEEP_MS
        } else {
            SHORT_SLEEP_MS
        }
    }

    /// Sleeps until a frame arrives, another worker or the control thread
    /// puts something in for this one, or `timeout_ms` passes (an idle
    /// worker, between rounds; see [`FrameIo::wait`]); false if it did not
    /// sleep (the backend cannot, or something came in meanwhile).
    pub fn wait(&mut self, timeout_ms: i32) -> bool {
        let mesh = Arc::clone(&self.mesh);
        let wake = mesh.wake_of(self.id);
        if let Some(w) = wake {
            w.going_to_sleep();
            if self.has_input() {
                w.awake();
                return false;
            }
        }
        let slept = self.io.wait(timeout_ms, wake.map(Wake::fd));
        if let Some(w) = wake {
            w.awake();
        }
        self.counters.idle_sleeps += u64::from(slept);
        slept
    }

    /// True if a hand-off or a control request waits.
    pub(super) fn has_input(&self) -> bool {
        self.mesh.has_handoffs(self.id) || self.commands.as_ref().is_some_and(|c| !c.is_empty())
    }
}
