//! Hand-offs: a frame whose session another worker owns goes to that
//! worker through a bounded single-producer, single-consumer queue, as a
//! copy (frames never cross workers' UMEMs), with the side it arrived on.
//!
//! Invariants: a hand-off that cannot be queued (queue full, frame too big,
//! no free frame at the owner) is dropped and counted (`handoff_dropped`);
//! a round takes at most a batch from each peer's queue.

use super::Worker;
use crate::io::{Desc, FrameIo, BATCH};
use crate::nat::Side;
use crossbeam_queue::ArrayQueue;
use std::sync::Arc;

/// Largest frame a hand-off carries (MTU 1500 + Ethernet + one VLAN tag, rounded).
pub const HANDOFF_MAX: usize = 1536;

/// A frame on its way to the worker that owns its session.
#[derive(Clone)]
pub struct HandOff {
    /// The side the frame arrived on: the owner processes it as arriving there.
    arrived_on: Side,
    len: u16,
    bytes: [u8; HANDOFF_MAX],
}

/// The bounded hand-off queues between every pair of workers (one
/// single-producer, single-consumer queue per ordered pair).
pub struct Mesh {
    workers: usize,
    queues: Vec<ArrayQueue<HandOff>>,
}

impl Mesh {
    /// Queues for `workers` workers, `depth` frames each.
    pub fn new(workers: usize, depth: usize) -> Self {
        let queues = (0..workers * workers).map(|_| ArrayQueue::new(depth.max(1))).collect();
        Self { workers, queues }
    }
    fn queue(&self, from: usize, to: usize) -> Option<&ArrayQueue<HandOff>> {
        self.queues.get(to * self.workers + from)
    }
}

impl<I: FrameIo> Worker<I> {
    pub(super) fn hand_off(&mut self, to: usize, arrived_on: Side, d: Desc) {
        let (Some(q), Ok(len)) = (self.mesh.queue(self.id, to), u16::try_from(d.len())) else {
            self.counters.handoff_dropped += 1;
            return;
        };
        if usize::from(len) > HANDOFF_MAX {
            self.counters.handoff_dropped += 1;
            return;
        }
        let mut msg = HandOff { arrived_on, len, bytes: [0; HANDOFF_MAX] };
        self.io.with_views(&[d], |v| {
            if let (Some(dst), Some(src)) = (msg.bytes.get_mut(..usize::from(len)), v.first()) {
                dst.copy_from_slice(src);
            }
        });
        if q.push(msg).is_err() {
            self.counters.handoff_dropped += 1;
        } else {
            self.counters.handoff_out += 1;
        }
    }

    /// Takes at most a batch of frames from each other worker's queue (the
    /// rest waits for the next round, so a round's work stays bounded).
    pub(super) fn take_handoffs(&mut self, now: u32) -> usize {
        let mut total = 0;
        let mesh = Arc::clone(&self.mesh);
        let me = self.id;
        for from in (0..mesh.workers).filter(|&f| f != me) {
            let Some(q) = mesh.queue(from, self.id) else { continue };
            let mut n = 0;
            let mut arrived_on = Side::Inside;
            for _ in 0..BATCH {
                let Some(msg) = q.pop() else { break };
                if n > 0 && msg.arrived_on != arrived_on {
                    // A batch is of one side: run what is gathered first.
                    self.run_handoff_batch(arrived_on, now, n);
                    total += n;
                    n = 0;
                }
                arrived_on = msg.arrived_on;
                let Some(d) = self.io.alloc(u32::from(msg.len)) else {
                    self.counters.handoff_dropped += 1;
                    continue;
                };
                let len = usize::from(msg.len);
                self.io.with_views(&[d], |v| {
                    if let (Some(dst), Some(src)) = (v.first_mut(), msg.bytes.get(..len)) {
                        dst.copy_from_slice(src);
                    }
                });
                let Some(slot) = self.descs.get_mut(n) else {
                    self.io.free(d);
                    break;
                };
                *slot = d;
                n += 1;
            }
            if n > 0 {
                self.run_handoff_batch(arrived_on, now, n);
                total += n;
            }
        }
        total
    }

    fn run_handoff_batch(&mut self, arrived_on: Side, now: u32, n: usize) {
        self.counters.handoff_in += n as u64;
        self.batch(arrived_on, now, n);
    }
}
