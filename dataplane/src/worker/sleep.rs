//! An idle worker's sleep: on its two sockets and its [`Wake`](crate::xdp::Wake), so a
//! frame on either side, a frame another worker hands it or a control
//! request ([`CommandTx`]) ends it at once; how long it may last at most
//! is what the worker's own periodic work allows ([`Worker::sleep`]).
//!
//! Invariants: the worker marks itself asleep before it looks at its
//! queues for the last time (`Wake`'s handshake), so nothing put in for
//! it waits for the timeout; without a `Wake` (no eventfd) a sleep lasts
//! at most [`SHORT_SLEEP_MS`], as every sleep did before.

use super::{Command, Worker};
use crate::io::FrameIo;
use std::sync::Arc;

/// The longest sleep when something would not wake the worker: no eventfd,
/// or an expiry sweep behind (each wake removes at most a budget).
pub const SHORT_SLEEP_MS: i32 = 1;

/// The longest sleep of a worker with nothing due: the next-hop tables
/// (read at the next frame, which wakes it) and its counters' publication
/// (the caller's, every 100 ms) wait for it at most.
pub const LONG_SLEEP_MS: i32 = 100;

/// Where the control thread's requests to one worker go: the channel, and
/// the worker's [`Wake`](crate::xdp::Wake) written after each request when it sleeps.
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
        if let Some(m) = &self.mesh {
            m.wake(self.to);
        }
        Ok(())
    }

    /// Ends the worker's current or next sleep at once ([`Wake::nudge`](crate::xdp::Wake::nudge)):
    /// after setting a flag it reads between rounds (stop).
    pub fn nudge(&self) {
        if let Some(w) = self.mesh.as_ref().and_then(|m| m.wake_of(self.to)) {
            w.nudge();
        }
    }
}

impl<I: FrameIo> Worker<I> {
    /// Sleeps, idle, between rounds at `now`: until a frame arrives,
    /// another worker or the control thread puts something in for this one
    /// ([`Wake::sleep_unless`](crate::xdp::Wake::sleep_unless)), or the budget passes: [`LONG_SLEEP_MS`]
    /// if every input wakes it and its expiry sweep is up to date, else
    /// [`SHORT_SLEEP_MS`]. False if it did not sleep (the backend cannot,
    /// has frames to transmit, or something came in meanwhile).
    pub fn sleep(&mut self, now: u32) -> bool {
        let behind = self.engine.as_mut().is_some_and(|e| e.sweep_behind(now));
        let mesh = Arc::clone(&self.mesh);
        let slept = match mesh.wake_of(self.id) {
            Some(w) => {
                let ms = if behind { SHORT_SLEEP_MS } else { LONG_SLEEP_MS };
                let slept = w.sleep_unless(self, |me| me.has_input(), |me, fd| me.io.wait(ms, Some(fd)));
                self.counters.idle_wakes = w.woken();
                slept
            }
            None => self.io.wait(SHORT_SLEEP_MS, None),
        };
        self.counters.idle_sleeps += u64::from(slept);
        slept
    }

    /// True if a hand-off or a control request waits.
    pub(super) fn has_input(&self) -> bool {
        self.mesh.has_handoffs(self.id) || self.commands.as_ref().is_some_and(|c| !c.is_empty())
    }
}
