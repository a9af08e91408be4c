//! The worker loop: one per core, run to completion.
//!
//! A round receives a batch from each side, runs it through the engine (or,
//! in no-NAT mode, only routes it), writes the next hop's MAC, and queues
//! each frame for transmission, hand-off or release; then it takes frames
//! other workers handed to it, flushes the rings once, and picks up a new
//! next-hop table if the control thread published one. Before the round it
//! serves the control thread's requests (`command.rs`: the protocol and its
//! typed replies). Frames whose session another worker owns go to it, and
//! come from it, through `handoff.rs`. A frame the engine refused
//! (a subscriber at its limit), and a hairpinned DF frame too big for the
//! inside MTU, are answered with an ICMP error by `refuse.rs`. A fragment
//! the engine held (it came before its first) is freed; the engine gives it
//! back translated once its first fragment came, and `release.rs` sends it
//! after the batch. Between rounds an idle worker sleeps (`sleep.rs`),
//! woken by a frame, a hand-off or a control request ([`CommandTx`]).
//!
//! Invariants: every received frame is sent, freed or handed off in the
//! round it arrived (the worker never holds a frame across rounds: a held
//! fragment's bytes wait in the engine, not in a frame; the backend
//! may keep a frame queued until its TX ring has room); every frame that
//! is not sent is counted under a reason (the engine's, or one of
//! [`WorkerCounters`]'); nothing on this path allocates, locks or panics;
//! the only syscalls are the backend's ring kicks, once per round (and a
//! hand-off's eventfd write when its target sleeps, once a sleep).
#![forbid(unsafe_code)]

mod command;
mod handoff;
mod refuse;
mod release;
mod sleep;

pub use command::{BlockUse, Census, Command, HeldBy, ReconfigureError, SessionFilter, Sliced, WhoisQuery, SLICE};
pub use handoff::{HandOff, Mesh, HANDOFF_MAX};
pub use sleep::{CommandTx, LONG_SLEEP_MS, SHORT_SLEEP_MS};

use crate::io::{Desc, FrameIo, BATCH};
use crate::l2::{write_l2, L2Table, NextHop};
use crate::nat::counters::declare_counters;
use crate::nat::{Counters, Engine, Side, Verdict};
use crate::wire::fragment::{self, Plan};
use std::sync::Arc;

declare_counters! {
    /// What the worker itself counts (the engine counts its own verdicts).
    /// Declared as `nat::counters` says: a new one is a field here and its count.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct WorkerCounters {
        /// Rounds run.
        rounds: u64,
        /// Frames received, by side (inside, outside).
        rx: [u64; 2],
        /// Bytes received, by side.
        rx_bytes: [u64; 2],
        /// Bytes queued for transmission, by side they leave on.
        tx_bytes: [u64; 2],
        /// Frames queued for transmission, by side they leave on.
        tx: [u64; 2],
        /// Frames dropped because their next hop has no neighbour entry yet, by side.
        no_neighbour: [u64; 2] => Drop("no_neighbour"),
        /// Frames dropped because no route of the outgoing interface covers them, by side.
        no_route: [u64; 2] => Drop("no_route"),
        /// Packets cut into fragments for the outgoing MTU, by side.
        fragmented: [u64; 2],
        /// Packets too big for the outgoing MTU with Don't Fragment set, dropped, by side.
        too_big: [u64; 2] => Drop("too_big_df"),
        /// Packets whose fragmentation failed (no free frame, bad header), dropped.
        fragment_failed: u64 => Drop("fragment_failed"),
        /// Packets the FTP ALG lengthened past the end of their frame's
        /// buffer (`Engine::grown`), dropped.
        grown_dropped: u64 => Drop("alg_no_room"),
        /// Frames the engine gave to the kernel, re-injected through the TAP device.
        to_kernel: u64,
        /// Frames the engine gave to the kernel that could not be re-injected.
        pass_dropped: u64 => Drop("pass_not_reinjected"),
        /// Frames handed to another worker.
        handoff_out: u64,
        /// Frames received from other workers.
        handoff_in: u64,
        /// NAT log events (port blocks, refusals) lost because the log fell behind.
        log_dropped: u64,
        /// Hand-offs dropped, by reason (`handoff.rs`): no queue to the
        /// owner (a worker number out of range: a bug, never seen);
        handoff_no_queue: u64 => Drop("handoff_no_queue"),
        /// the frame longer than [`HANDOFF_MAX`] (a jumbo MTU);
        handoff_too_big: u64 => Drop("handoff_too_big"),
        /// the owner's queue full (it falls behind);
        handoff_queue_full: u64 => Drop("handoff_queue_full"),
        /// no free frame at the owner to take it in.
        handoff_no_frame: u64 => Drop("handoff_no_frame"),
        /// Fragments among the hand-offs dropped (each also counted by its
        /// reason above): a datagram that lost one is lost whole.
        fragment_handoff_dropped: u64 => Total("Fragments among the hand-offs dropped (each also counted in masq_drops_total under its handoff_ reason)."),
        /// Fragments released from the engine's hold that could not be sent: no free frame.
        fragment_release_failed: u64 => Drop("fragment_release_failed"),
        /// ICMP host unreachable errors sent to subscribers refused a port or a session.
        icmp_unreachable_sent: u64 => Total("ICMP host unreachable errors sent to subscribers refused a port or a session (RFC 6888 REQ-11b)."),
        /// Such errors not sent: no free frame, or no next hop for the subscriber.
        icmp_unreachable_failed: u64 => Total("ICMP host unreachable errors to refused subscribers not sent: no free frame, or no next hop."),
        /// Times the worker, idle, slept on its sockets (`workers.sleep_when_idle`).
        idle_sleeps: u64 => Total("Times the worker, idle, slept on its sockets until a frame, a hand-off or a control request came, or at most 100 ms passed (workers.sleep_when_idle)."),
        /// Sleeps of the idle worker a hand-off or a control request ended
        /// (or kept from starting): its eventfd written by the sender.
        idle_wakes: u64 => Total("Sleeps of the idle worker ended at once by a frame another worker handed it or a control request (the sender wrote its eventfd)."),
        /// "Fragmentation needed" errors sent to the senders of hairpinned DF packets too big for the inside MTU.
        icmp_frag_needed_sent: u64 => Total("ICMP fragmentation needed errors sent to the senders of hairpinned DF packets too big for the inside MTU (RFC 4787 REQ-13)."),
        /// Such errors not sent: no free frame, no next hop, or not a hairpinned packet.
        icmp_frag_needed_failed: u64 => Total("ICMP fragmentation needed errors not sent: no free frame, no next hop, or not a hairpinned packet."),
    }
}

impl WorkerCounters {
    /// Hand-offs dropped, every reason.
    pub fn handoff_dropped(&self) -> u64 {
        self.handoff_no_queue + self.handoff_too_big + self.handoff_queue_full + self.handoff_no_frame
    }
}

/// A snapshot the control thread reads.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// The worker's own counters.
    pub worker: WorkerCounters,
    /// The engine's counters (zero in no-NAT mode).
    pub engine: Counters,
    /// Live sessions.
    pub sessions: u32,
    /// Port blocks in use.
    pub blocks_in_use: u32,
    /// Time a round with traffic took, in nanoseconds (cumulative).
    pub round_ns: Option<hdrhistogram::Histogram<u64>>,
    /// Port-block events the engine could not keep (its buffer was full).
    pub block_events_dropped: u64,
}

/// One worker: its I/O, its engine shard, its view of the next hops.
pub struct Worker<I: FrameIo> {
    id: usize,
    io: I,
    engine: Option<Engine>,
    l2: Arc<L2Table>,
    l2_updates: Option<crossbeam_channel::Receiver<Arc<L2Table>>>,
    unresolved: Option<crossbeam_channel::Sender<(Side, u32)>>,
    commands: Option<crossbeam_channel::Receiver<Command>>,
    block_events: Option<crossbeam_channel::Sender<crate::nat::events::NatEvent>>,
    round_ns: Option<hdrhistogram::Histogram<u64>>,
    mesh: Arc<Mesh>,
    counters: WorkerCounters,
    descs: [Desc; BATCH],
    verdicts: [Verdict; BATCH],
    actions: [Action; BATCH],
}

/// What becomes of a frame after the engine and the next-hop lookup.
#[derive(Debug, Clone, Copy)]
enum Action {
    Send(Side),
    /// Too big for the outgoing MTU, fragmentation allowed.
    Fragment(Side, Plan),
    /// Too big, Don't Fragment set (the XDP program gives these to the
    /// kernel, which answers "fragmentation needed"; a hairpinned one lands
    /// here and is answered by `refuse.rs`), with the MTU.
    TooBig(Side, u16),
    Free,
    /// Refused by the engine: answer with an ICMP error, then free.
    Refuse,
    Pass,
    /// To the worker that owns the frame's session.
    HandOff {
        worker: u16,
        arrived_on: Side,
    },
    NoNeighbour(Side, u32),
    NoRoute(Side),
}

impl<I: FrameIo> Worker<I> {
    /// A worker; `engine` is `None` in no-NAT mode (route only: the I/O ceiling).
    pub fn new(id: usize, io: I, engine: Option<Engine>, l2: Arc<L2Table>, mesh: Arc<Mesh>) -> Self {
        Self {
            id,
            io,
            engine,
            l2,
            l2_updates: None,
            unresolved: None,
            commands: None,
            block_events: None,
            // 1 ns to 10 s at 2 significant digits: a few KiB, recording never allocates.
            round_ns: hdrhistogram::Histogram::new_with_bounds(1, 10_000_000_000, 2).ok(),
            mesh,
            counters: WorkerCounters::default(),
            descs: [Desc::EMPTY; BATCH],
            verdicts: [Verdict::Forward(Side::Inside); BATCH],
            actions: [Action::Free; BATCH],
        }
    }

    /// Where new next-hop tables arrive, and where unresolved next hops are reported.
    pub fn with_l2_channels(
        mut self,
        updates: crossbeam_channel::Receiver<Arc<L2Table>>,
        unresolved: crossbeam_channel::Sender<(Side, u32)>,
    ) -> Self {
        self.l2_updates = Some(updates);
        self.unresolved = Some(unresolved);
        self
    }

    /// Where the control thread's requests arrive.
    pub fn with_commands(mut self, commands: crossbeam_channel::Receiver<Command>) -> Self {
        self.commands = Some(commands);
        self
    }

    /// Where NAT events go (the NAT log), stamped with the wall clock once
    /// a round; without it they are dropped.
    pub fn with_block_events(mut self, tx: crossbeam_channel::Sender<crate::nat::events::NatEvent>) -> Self {
        self.block_events = Some(tx);
        self
    }

    /// Serves the control thread's requests (between rounds).
    fn serve(&mut self, now: u32) {
        let Some(rx) = &self.commands else { return };
        for c in rx.try_iter() {
            c.answer(self.engine.as_mut(), now);
        }
    }

    /// The backend (tests read what was sent).
    pub fn io_mut(&mut self) -> &mut I {
        &mut self.io
    }

    /// The engine, if NAT is on.
    pub fn engine(&self) -> Option<&Engine> {
        self.engine.as_ref()
    }

    /// The engine, mutably (flushes, config changes between rounds).
    pub fn engine_mut(&mut self) -> Option<&mut Engine> {
        self.engine.as_mut()
    }

    /// The worker's counters.
    pub fn counters(&self) -> &WorkerCounters {
        &self.counters
    }

    /// A copy of every counter.
    pub fn stats(&self) -> Stats {
        Stats {
            worker: self.counters,
            engine: self.engine.as_ref().map(|e| e.counters().clone()).unwrap_or_default(),
            sessions: self.engine.as_ref().map_or(0, Engine::live_sessions),
            blocks_in_use: self.engine.as_ref().map_or(0, Engine::blocks_in_use),
            round_ns: self.round_ns.clone(),
            block_events_dropped: self.engine.as_ref().map_or(0, Engine::block_events_dropped),
        }
    }

    /// One round at `now` (seconds). Returns the number of frames received.
    pub fn round(&mut self, now: u32) -> usize {
        self.counters.rounds += 1;
        self.serve(now);
        let t0 = std::time::Instant::now();
        if let Some(rx) = &self.l2_updates {
            if let Some(t) = rx.try_iter().last() {
                self.l2 = t;
            }
        }
        let mut got = 0;
        for side in [Side::Inside, Side::Outside] {
            let n = self.io.recv(side, &mut self.descs);
            if n > 0 {
                got += n;
                *per_side(&mut self.counters.rx, side) += n as u64;
                *per_side(&mut self.counters.rx_bytes, side) +=
                    self.descs.iter().take(n).map(|d| u64::from(d.len())).sum::<u64>();
                self.batch(side, now, n);
            }
        }
        got += self.take_handoffs(now);
        if got == 0 {
            if let Some(e) = self.engine.as_mut() {
                e.expire(now, 64);
            }
        }
        self.io.flush();
        if let Some(e) = self.engine.as_mut() {
            // The clock is read once a round, and only when there are events.
            let mut time_ms = None;
            for ev in e.take_block_events() {
                if let Some(tx) = &self.block_events {
                    let t = *time_ms.get_or_insert_with(crate::nat::events::now_ms);
                    // Full: the log fell behind; the engine counted nothing,
                    // so count here. `try_send` never blocks.
                    if tx.try_send(crate::nat::events::NatEvent::stamp(&ev, t)).is_err() {
                        self.counters.log_dropped += 1;
                    }
                }
            }
        }
        if got > 0 {
            let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
            if let Some(h) = self.round_ns.as_mut() {
                let _ = h.record(ns.max(1));
            }
        }
        got
    }

    /// Runs `n` frames (in `self.descs`) received on `side`.
    fn batch(&mut self, side: Side, now: u32, n: usize) {
        let Self { io, engine, l2, descs, verdicts, actions, .. } = self;
        let n = n.min(BATCH);
        let (Some(descs), Some(verdicts), Some(actions)) =
            (descs.get(..n), verdicts.get_mut(..n), actions.get_mut(..n))
        else {
            return;
        };
        io.with_views(descs, |views| {
            // A frame the backend refused to view (never one the worker
            // holds) is given back, not acted on with last round's action.
            for a in actions.iter_mut().skip(views.len()) {
                *a = Action::Free;
            }
            let verdicts = match verdicts.get_mut(..views.len()) {
                Some(v) => v,
                None => return,
            };
            match engine {
                Some(e) => e.process(side, now, views, verdicts),
                None => verdicts.fill(Verdict::Forward(side.opposite())),
            }
            // Link-layer addresses while the frames are at hand.
            for ((a, v), f) in actions.iter_mut().zip(verdicts.iter()).zip(views.iter_mut()) {
                *a = action(*v, f, l2);
            }
        });
        if let Some(e) = self.engine.as_ref() {
            if e.grown().next().is_some() {
                self.place_grown(n);
            }
        }
        for i in 0..n {
            let (Some(&d), Some(&a)) = (self.descs.get(i), self.actions.get(i)) else { break };
            self.dispose(d, a);
        }
        if self.engine.as_ref().is_some_and(|e| e.released() > 0) {
            self.send_released();
        }
    }

    /// Copies the packets the engine's FTP ALG lengthened past their
    /// frames' ends into those frames, which hold `frame_size` bytes and
    /// were viewed only as long as received; then their link-layer
    /// addresses and MTU check as for any other. A frame too short even so
    /// is dropped (`grown_dropped`).
    #[cold]
    fn place_grown(&mut self, n: usize) {
        let Self { io, engine, l2, descs, verdicts, actions, counters, .. } = self;
        let Some(e) = engine.as_ref() else { return };
        for (i, bytes) in e.grown() {
            let (Some(d), Some(a), Some(&v)) = (descs.get_mut(i), actions.get_mut(i), verdicts.get(i)) else {
                continue;
            };
            let Verdict::Forward(out) = v else { continue };
            let (Ok(len), true) = (u32::try_from(bytes.len()), i < n) else { continue };
            let nd = d.with_len(len);
            let act = io.with_views(&[nd], |views| {
                let [f] = views else { return None };
                f.copy_from_slice(bytes);
                Some(match write_l2(l2.side(out), f) {
                    NextHop::Mac(_) => fits(l2.side(out).mtu, f, out),
                    NextHop::Unresolved(hop) => Action::NoNeighbour(out, hop),
                    NextHop::NoRoute => Action::NoRoute(out),
                })
            });
            match act {
                Some(act) => {
                    *d = nd;
                    *a = act;
                }
                None => {
                    counters.grown_dropped += 1;
                    *a = Action::Free;
                }
            }
        }
    }

    fn dispose(&mut self, d: Desc, a: Action) {
        match a {
            Action::Send(out) => {
                *per_side(&mut self.counters.tx, out) += 1;
                *per_side(&mut self.counters.tx_bytes, out) += u64::from(d.len());
                self.io.send(out, d);
                return;
            }
            Action::HandOff { worker, arrived_on } => self.hand_off(usize::from(worker), arrived_on, d),
            Action::NoNeighbour(out, hop) => {
                *per_side(&mut self.counters.no_neighbour, out) += 1;
                if let Some(tx) = &self.unresolved {
                    // Full means the control thread already has plenty to resolve.
                    let _ = tx.try_send((out, hop));
                }
            }
            Action::NoRoute(out) => *per_side(&mut self.counters.no_route, out) += 1,
            Action::Fragment(out, plan) => self.fragment(d, out, &plan),
            Action::TooBig(out, mtu) => {
                *per_side(&mut self.counters.too_big, out) += 1;
                if out == Side::Inside {
                    self.send_error(d, refuse::Error::TooBig(mtu));
                }
            }
            Action::Pass => {
                if self.io.to_kernel(d) {
                    self.counters.to_kernel += 1;
                } else {
                    self.counters.pass_dropped += 1;
                }
            }
            // The engine counted the drop; the sender hears of it.
            Action::Refuse => self.refuse(d),
            Action::Free => {} // the engine counted the drop
        }
        self.io.free(d);
    }

    /// Sends the pieces of a frame too big for its MTU (RFC 791 section 3.2).
    fn fragment(&mut self, d: Desc, out: Side, plan: &Plan) {
        for i in 0..plan.pieces {
            let Some(mut nd) = self.io.alloc(d.len()) else {
                self.counters.fragment_failed += 1;
                return;
            };
            let len = self.io.with_views(&[d, nd], |v| match v {
                [src, dst] => fragment::write_piece(src, plan, i, dst),
                _ => None,
            });
            match len.and_then(|n| u32::try_from(n).ok()) {
                Some(n) => {
                    nd.truncate(n);
                    *per_side(&mut self.counters.tx, out) += 1;
                    self.io.send(out, nd);
                }
                None => {
                    self.io.free(nd);
                    self.counters.fragment_failed += 1;
                    return;
                }
            }
        }
        *per_side(&mut self.counters.fragmented, out) += 1;
    }
}

/// What becomes of a frame with verdict `v` (its link-layer addresses
/// written when it is forwarded).
#[inline]
fn action(v: Verdict, f: &mut [u8], l2: &L2Table) -> Action {
    match v {
        Verdict::Forward(out) => match write_l2(l2.side(out), f) {
            NextHop::Mac(_) => fits(l2.side(out).mtu, f, out),
            NextHop::Unresolved(hop) => Action::NoNeighbour(out, hop),
            NextHop::NoRoute => Action::NoRoute(out),
        },
        Verdict::HandOff { worker, arrived_on } => Action::HandOff { worker, arrived_on },
        Verdict::PassToKernel(_) => Action::Pass,
        Verdict::Refuse(_) => Action::Refuse,
        // A held fragment's bytes are in the engine's hold (`release.rs`).
        Verdict::Drop(_) | Verdict::Held => Action::Free,
    }
}

/// Whether a frame leaving on `out` fits its MTU, and what to do if not.
#[inline]
fn fits(mtu: u32, f: &[u8], out: Side) -> Action {
    let l2_len = crate::wire::ethernet::header_len_of(f);
    if mtu == 0 || f.len() <= l2_len + mtu as usize {
        return Action::Send(out);
    }
    match fragment::plan(f, l2_len, mtu as usize) {
        Ok(None) => Action::Send(out),
        Ok(Some(plan)) => Action::Fragment(out, plan),
        Err(_) => Action::TooBig(out, u16::try_from(mtu).unwrap_or(u16::MAX)),
    }
}

/// The inside or outside half of a per-side counter pair.
fn per_side(pair: &mut [u64; 2], side: Side) -> &mut u64 {
    let [inside, outside] = pair;
    match side {
        Side::Inside => inside,
        Side::Outside => outside,
    }
}

#[cfg(test)]
mod tests;
