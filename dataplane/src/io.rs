//! The I/O trait between a worker and its interfaces, and an in-memory
//! backend for tests.
//!
//! A worker holds frames by [`Desc`]riptor (an offset into its frame area and
//! a length), never by pointer: received frames are rewritten in place and
//! transmitted or freed by descriptor, so no frame is copied between
//! receive and transmit. The AF_XDP backend ([`crate::xdp`]) implements
//! this over one UMEM per worker shared by the inside and outside sockets;
//! [`MemIo`] implements it over plain vectors.
//!
//! Invariant: a descriptor is held by exactly one party at a time (the
//! backend's free list, the kernel's rings, or the worker between `recv`
//! and `send`/`free`). [`FrameIo::with_views`] relies on it to give out
//! disjoint mutable views.
#![forbid(unsafe_code)]

use crate::nat::Side;

/// A frame held by the worker: where it lies and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desc {
    /// Offset of the frame's first byte in the backend's frame area.
    pub addr: u64,
    /// Frame length in bytes.
    pub len: u32,
}

/// Frames received and sent per call.
pub const BATCH: usize = crate::nat::BATCH;

/// What a worker needs from its interfaces.
pub trait FrameIo {
    /// Takes up to `out.len()` received frames from `side`; returns how many.
    fn recv(&mut self, side: Side, out: &mut [Desc]) -> usize;
    /// Runs `f` over mutable views of the frames `descs` names (all held by
    /// the caller, all distinct).
    fn with_views<R>(&mut self, descs: &[Desc], f: impl FnOnce(&mut [&mut [u8]]) -> R) -> R;
    /// Queues a held frame for transmission on `side` (sent at [`FrameIo::flush`]).
    fn send(&mut self, side: Side, d: Desc);
    /// Gives a held frame back without sending it.
    fn free(&mut self, d: Desc);
    /// Takes a free frame of at least `len` bytes to fill (hand-offs arrive
    /// as bytes); `None` when none is free.
    fn alloc(&mut self, len: u32) -> Option<Desc>;
    /// Gives a held frame to the kernel's stack as if it had been received
    /// (the frame stays held: free it after). False if this backend cannot.
    fn to_kernel(&mut self, _d: Desc) -> bool {
        false
    }
    /// Transmits what was queued, reaps completions and refills the receive
    /// side. Called once per round, never per packet.
    fn flush(&mut self);
}

/// An in-memory backend: frames pushed into `rx` are received, frames sent
/// land in `tx`. For tests of the worker loop.
#[derive(Debug, Default)]
pub struct MemIo {
    frames: Vec<Vec<u8>>,
    free: Vec<u64>,
    rx: [std::collections::VecDeque<Desc>; 2],
    queued: Vec<(Side, Desc)>,
    /// Frames transmitted, by side, in order.
    pub tx: [Vec<Vec<u8>>; 2],
    /// Frames freed without being sent.
    pub freed: usize,
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Inside => 0,
        Side::Outside => 1,
    }
}

// Test backend: its frames are vectors it sized itself.
#[allow(clippy::indexing_slicing)]
impl MemIo {
    /// A backend with `frames` free frames of `frame_size` bytes.
    pub fn new(frames: usize, frame_size: usize) -> Self {
        Self { frames: vec![vec![0; frame_size]; frames], free: (0..frames as u64).rev().collect(), ..Self::default() }
    }

    /// Makes `bytes` arrive on `side`. False when no frame is free (the
    /// frame is then lost, as a full ring loses it).
    pub fn inject(&mut self, side: Side, bytes: &[u8]) -> bool {
        let Ok(len) = u32::try_from(bytes.len()) else { return false };
        let Some(d) = self.alloc(len) else { return false };
        if let Some(f) = usize::try_from(d.addr).ok().and_then(|i| self.frames.get_mut(i)) {
            f[..bytes.len()].copy_from_slice(bytes);
        }
        self.rx[side_index(side)].push_back(d);
        true
    }

    /// Frames free in the backend.
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }
}

// Test backend: offsets are small indices into vectors it sized itself.
#[allow(clippy::cast_possible_truncation, clippy::indexing_slicing)]
impl FrameIo for MemIo {
    fn recv(&mut self, side: Side, out: &mut [Desc]) -> usize {
        let q = &mut self.rx[side_index(side)];
        let n = out.len().min(q.len());
        for (slot, d) in out.iter_mut().zip(q.drain(..n)) {
            *slot = d;
        }
        n
    }

    fn with_views<R>(&mut self, descs: &[Desc], f: impl FnOnce(&mut [&mut [u8]]) -> R) -> R {
        let mut all: Vec<Option<&mut Vec<u8>>> = self.frames.iter_mut().map(Some).collect();
        let mut views: Vec<&mut [u8]> = descs
            .iter()
            .map(|d| {
                let frame = all[d.addr as usize].take().expect("descriptors are distinct");
                &mut frame[..d.len as usize]
            })
            .collect();
        f(&mut views)
    }

    fn send(&mut self, side: Side, d: Desc) {
        self.queued.push((side, d));
    }

    fn free(&mut self, d: Desc) {
        self.freed += 1;
        self.free.push(d.addr);
    }

    fn alloc(&mut self, len: u32) -> Option<Desc> {
        let size = self.frames.first().map_or(0, Vec::len);
        if len as usize > size {
            return None;
        }
        self.free.pop().map(|addr| Desc { addr, len })
    }

    fn flush(&mut self) {
        for (side, d) in std::mem::take(&mut self.queued) {
            let bytes = self.frames[d.addr as usize][..d.len as usize].to_vec();
            self.tx[side_index(side)].push(bytes);
            self.free.push(d.addr);
        }
    }
}
