//! Released fragments: a non-first fragment that came before its first
//! was copied into the engine's fragment hold and its frame freed
//! ([`Verdict::Held`](crate::nat::Verdict::Held), `nat::frag`). When its
//! first fragment has been translated, the engine translates it too and
//! keeps it, with its verdict, until the worker takes it after the batch
//! ([`Engine::take_released`](crate::nat::Engine::take_released)): each is
//! copied into a freshly allocated frame (as fragments and refusals are)
//! and goes the way a frame of the batch with that verdict goes (next hop,
//! MTU, hand-off, kernel).
//!
//! Order: they are taken after the batch's frames were disposed of, so a
//! released fragment leaves (or is queued to another worker) after its
//! first fragment, which its owner needs first.
//!
//! Invariants: nothing here allocates, locks or waits: the frame is one of
//! the backend's free frames, and without one the fragment is dropped and
//! counted (`fragment_release_failed`); at most a batch is taken at a time.
#![forbid(unsafe_code)]

use super::{action, Worker};
use crate::io::{FrameIo, BATCH};

impl<I: FrameIo> Worker<I> {
    /// Sends every fragment the engine released from its hold.
    pub(super) fn send_released(&mut self) {
        loop {
            let Self { io, engine, l2, descs, actions, counters, .. } = self;
            let Some(e) = engine.as_mut() else { return };
            if e.released() == 0 {
                return;
            }
            let mut n = 0;
            e.take_released(BATCH, |v, bytes| {
                let Some(d) = u32::try_from(bytes.len()).ok().and_then(|len| io.alloc(len)) else {
                    counters.fragment_release_failed += 1;
                    return;
                };
                let a = io.with_views(&[d], |views| match views.first_mut() {
                    Some(f) if f.len() == bytes.len() => {
                        f.copy_from_slice(bytes);
                        Some(action(v, f, l2))
                    }
                    _ => None,
                });
                match (a, descs.get_mut(n), actions.get_mut(n)) {
                    (Some(a), Some(ds), Some(at)) => {
                        (*ds, *at) = (d, a);
                        n += 1;
                    }
                    _ => {
                        io.free(d);
                        counters.fragment_release_failed += 1;
                    }
                }
            });
            for i in 0..n {
                let (Some(&d), Some(&a)) = (self.descs.get(i), self.actions.get(i)) else { break };
                self.dispose(d, a);
            }
        }
    }
}
