//! The frame bookkeeping of one worker's two sockets, written against the
//! few ring operations it needs ([`KernelRings`]) so that it runs the same
//! over the kernel's rings (xdpilone's, [`XskRings`]) and over a fake kernel
//! in the tests below.
//!
//! Invariant (frame conservation): every frame of the area is in exactly
//! one place: the free stack, a fill ring, the kernel's hands, an RX ring,
//! the worker's hands, a side's pending-TX vector, a TX ring or a
//! completion ring. The operations only move frames between places; a
//! frame offset the kernel reports may point into a frame, and goes back
//! on the free stack as the frame's first byte. The [`Held`] bitmap marks
//! exactly the frames in the worker's hands (received or allocated, not
//! yet sent or freed): it is what lets views be made of them, and a `send`
//! or `free` of a frame not held is refused (it would put a frame in two
//! places).

use crate::io::Held;
use crate::io::{Desc, BATCH};
use crate::nat::Side;
use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, RingRx, RingTx, User};

/// The ring operations of one socket and its fill and completion rings,
/// as the bookkeeping uses them. Writers behave as xdpilone's: they reserve
/// up to `max` slots, then pull an item before looking for a free slot, so
/// an item pulled past the reservation is lost to the caller.
pub(super) trait KernelRings {
    /// Reserves up to `max` fill slots, inserts what `items(reserved)`
    /// yields, commits; returns how many went in.
    fn fill<I: Iterator<Item = u64>>(&mut self, max: u32, items: impl FnOnce(u32) -> I) -> u32;
    /// True if the kernel asks to be woken to take fill entries.
    fn fill_needs_wakeup(&self) -> bool;
    /// Wakes the kernel for the fill ring (poll).
    fn fill_wake(&mut self);
    /// Reads every completed frame into `out`; returns how many.
    fn complete(&mut self, out: impl FnMut(u64)) -> u32;
    /// Reads up to `max` received descriptors into `out`.
    fn receive(&mut self, max: u32, out: impl FnMut(XdpDesc));
    /// Reserves up to `max` TX slots, inserts `items`, commits; returns how
    /// many went in.
    fn transmit(&mut self, max: u32, items: impl Iterator<Item = XdpDesc>) -> u32;
    /// Descriptors on the TX ring the kernel has not taken yet.
    fn tx_pending(&self) -> u32;
    /// True if the kernel asks to be woken to send.
    fn tx_needs_wakeup(&self) -> bool;
    /// Wakes the kernel to send (sendto).
    fn tx_wake(&mut self);
}

/// The kernel's rings of one socket, through xdpilone.
pub(super) struct XskRings {
    pub(super) dev: DeviceQueue,
    pub(super) user: User,
    pub(super) rx: RingRx,
    pub(super) tx: RingTx,
}

impl KernelRings for XskRings {
    fn fill<I: Iterator<Item = u64>>(&mut self, max: u32, items: impl FnOnce(u32) -> I) -> u32 {
        let mut w = self.dev.fill(max);
        let n = w.insert(items(w.capacity()));
        w.commit();
        n
    }

    fn fill_needs_wakeup(&self) -> bool {
        self.dev.needs_wakeup()
    }

    fn fill_wake(&mut self) {
        self.dev.wake();
    }

    fn complete(&mut self, out: impl FnMut(u64)) -> u32 {
        read_completions(&mut self.dev, out)
    }

    fn receive(&mut self, max: u32, mut out: impl FnMut(XdpDesc)) {
        let mut rd = self.rx.receive(max);
        while let Some(x) = rd.read() {
            out(x);
        }
        rd.release();
    }

    fn transmit(&mut self, max: u32, items: impl Iterator<Item = XdpDesc>) -> u32 {
        let mut w = self.tx.transmit(max);
        let n = w.insert(items);
        w.commit();
        n
    }

    fn tx_pending(&self) -> u32 {
        self.tx.pending()
    }

    fn tx_needs_wakeup(&self) -> bool {
        self.tx.needs_wakeup()
    }

    fn tx_wake(&mut self) {
        self.tx.wake();
    }
}

/// Reads every entry of `dev`'s completion ring into `out`; returns how many.
fn read_completions(dev: &mut DeviceQueue, mut out: impl FnMut(u64)) -> u32 {
    let mut c = dev.complete(u32::MAX);
    let mut n = 0;
    while let Some(addr) = c.read() {
        out(addr);
        n += 1;
    }
    c.release();
    n
}

/// Takes the frames the kernel finished sending back onto the free stack
/// (for sockets outside the bookkeeping: the lab's generator).
#[cfg(feature = "lab")]
pub(super) fn reap(dev: &mut DeviceQueue, free: &mut Vec<u64>, frame_size: u32) -> u32 {
    read_completions(dev, |addr| free.push(frame_start(addr, frame_size)))
}

/// The first byte of the frame `addr` points into.
fn frame_start(addr: u64, frame_size: u32) -> u64 {
    addr - addr % u64::from(frame_size)
}

/// Ring-level counters of one worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingCounters {
    /// Frames dropped because the TX ring stayed full for a ring's worth of frames, by side.
    pub tx_ring_full: [u64; 2],
    /// TX kicks (sendto) made, by side.
    pub tx_kicks: [u64; 2],
    /// Fill-ring wake-ups (poll) made, by side.
    pub rx_wakeups: [u64; 2],
}

/// Where one worker's frames are, on the worker's side of the rings: the
/// free stack and each side's frames waiting for TX-ring room.
pub(super) struct Ledger<K> {
    sides: [K; 2],
    pending: [Vec<XdpDesc>; 2],
    free: Vec<u64>,
    held: Held,
    frame_size: u32,
    /// Frames kept off the fill rings for hand-offs and fragments.
    reserve: usize,
    ring_size: u32,
    zero_copy: bool,
    counters: RingCounters,
}

impl<K: KernelRings> Ledger<K> {
    /// Bookkeeping of `frames` frames of `frame_size` bytes, all free, over
    /// the rings of two sockets (inside, outside) of `ring_size` entries.
    /// Call [`Ledger::refill`] to hand frames to the kernel.
    pub(super) fn new(sides: [K; 2], frames: u32, frame_size: u32, ring_size: u32, zero_copy: bool) -> Self {
        let pending = || Vec::with_capacity(ring_size as usize + 4 * BATCH);
        Self {
            sides,
            pending: [pending(), pending()],
            free: (0..u64::from(frames)).rev().map(|i| i * u64::from(frame_size)).collect(),
            held: Held::new(frames as usize),
            frame_size,
            reserve: (frames as usize / 8).max(BATCH),
            ring_size,
            zero_copy,
            counters: RingCounters::default(),
        }
    }

    /// The rings, inside then outside.
    pub(super) fn sides(&self) -> &[K; 2] {
        &self.sides
    }

    /// True if the kernel granted zero-copy.
    pub(super) fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Ring-level counters.
    pub(super) fn counters(&self) -> RingCounters {
        self.counters
    }

    /// The frames in the worker's hands.
    pub(super) fn held(&mut self) -> &mut Held {
        &mut self.held
    }

    fn frame_index(&self, addr: u64) -> usize {
        (addr / u64::from(self.frame_size)) as usize
    }

    /// Takes `d` out of the worker's hands; false (and nothing changes) if
    /// it was not there: a second `send` or `free` of one frame.
    fn release(&mut self, d: Desc) -> bool {
        let frame = self.frame_index(d.addr());
        let was = self.held.release(frame);
        debug_assert!(was, "frame {frame} sent or freed but not held");
        was
    }

    /// Takes up to `out.len()` received frames from `side`.
    pub(super) fn recv(&mut self, side: Side, out: &mut [Desc]) -> usize {
        let mut n = 0;
        let max = u32::try_from(out.len()).unwrap_or(u32::MAX);
        let (held, fs) = (&mut self.held, u64::from(self.frame_size));
        at(&mut self.sides, side).receive(max, |x| {
            if let Some(slot) = out.get_mut(n) {
                *slot = Desc::new(x.addr, x.len);
                held.hold((x.addr / fs) as usize);
                n += 1;
            }
        });
        // A descriptor the kernel wrote is inside the area (it checks against
        // the UMEM it registered); checked anyway before any view is made.
        n
    }

    /// Queues a held frame for TX on `side` (sent at [`Ledger::flush`]);
    /// ignores one not held.
    pub(super) fn send(&mut self, side: Side, d: Desc) {
        if !self.release(d) {
            return;
        }
        at(&mut self.pending, side).push(XdpDesc { addr: d.addr(), len: d.len(), options: 0 });
    }

    /// Gives a held frame back; ignores one not held.
    pub(super) fn free(&mut self, d: Desc) {
        if !self.release(d) {
            return;
        }
        // Frames are frame_size-aligned; the kernel may report an offset into one.
        self.free.push(frame_start(d.addr(), self.frame_size));
    }

    /// A free frame for `len` bytes.
    pub(super) fn alloc(&mut self, len: u32) -> Option<Desc> {
        if len > self.frame_size {
            return None;
        }
        let addr = self.free.pop()?;
        self.held.hold(self.frame_index(addr));
        Some(Desc::new(addr, len))
    }

    /// Reaps completions, moves pending frames to the TX rings and kicks
    /// the kernel, then refills the fill rings.
    pub(super) fn flush(&mut self) {
        let Self { sides, pending, free, frame_size, ring_size, zero_copy, counters, .. } = self;
        let fs = *frame_size;
        let counters = counters.tx_ring_full.iter_mut().zip(counters.tx_kicks.iter_mut());
        for ((r, pending), (full, kicked)) in sides.iter_mut().zip(pending.iter_mut()).zip(counters) {
            r.complete(|addr| free.push(frame_start(addr, fs)));
            if !pending.is_empty() {
                let sent = r.transmit(u32::try_from(pending.len()).unwrap_or(u32::MAX), pending.iter().copied());
                pending.drain(..(sent as usize).min(pending.len()));
                // What the ring had no room for waits for the next round
                // (back-pressure: the receive rings fill and the kernel
                // drops and counts there) up to one ring's worth.
                let cap = *ring_size as usize;
                if pending.len() > cap {
                    for d in pending.drain(cap..) {
                        *full += 1;
                        free.push(frame_start(d.addr, fs));
                    }
                }
            }
            // Copy mode sends at most 32 frames per kick and only when
            // kicked: kick until the ring is drained or the kernel stops
            // taking (its completion ring full: reap, then go on). Bounded.
            let mut kicks = 0;
            while r.tx_pending() > 0 && (!*zero_copy || r.tx_needs_wakeup()) && kicks < 64 {
                let before = r.tx_pending();
                r.tx_wake();
                kicks += 1;
                if r.complete(|addr| free.push(frame_start(addr, fs))) == 0 && r.tx_pending() == before {
                    break;
                }
            }
            *kicked += kicks;
        }
        self.refill();
    }

    /// Nothing waits to be transmitted: no frame queued here or in a TX ring.
    pub(super) fn quiet(&self) -> bool {
        self.pending.iter().all(Vec::is_empty) && self.sides.iter().all(|r| r.tx_pending() == 0)
    }

    /// Hands free frames to both fill rings, keeping `reserve` back for
    /// hand-offs; wakes the kernel where it asks for it.
    pub(super) fn refill(&mut self) {
        let Self { sides, free, reserve, counters, .. } = self;
        for (r, wakeups) in sides.iter_mut().zip(counters.rx_wakeups.iter_mut()) {
            let spare = free.len().saturating_sub(*reserve);
            let want = u32::try_from(spare / 2).unwrap_or(u32::MAX).max(u32::from(spare > 0));
            if want > 0 {
                // Exactly as many as the ring reserved: the ring's insert
                // pulls an item before it finds no slot, and that frame
                // would be lost.
                r.fill(want, |left| FreeDrain { free: &mut *free, left });
            }
            if r.fill_needs_wakeup() {
                r.fill_wake();
                *wakeups += 1;
            }
        }
    }
}

/// The inside or outside one of a pair.
fn at<T>(pair: &mut [T; 2], side: Side) -> &mut T {
    let [inside, outside] = pair;
    match side {
        Side::Inside => inside,
        Side::Outside => outside,
    }
}

/// Pops up to `left` frames off the free stack, as the fill ring takes them.
struct FreeDrain<'a> {
    free: &'a mut Vec<u64>,
    left: u32,
}

impl Iterator for FreeDrain<'_> {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        self.free.pop()
    }
}

#[cfg(test)]
// Test code: vectors it sized itself, small numbers.
#[allow(clippy::indexing_slicing, clippy::cast_possible_truncation)]
mod tests;
