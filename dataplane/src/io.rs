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
//! and `send`/`free`). Only the backends make descriptors (the fields are
//! private); a backend records which frames the worker holds, views only
//! those, refuses a descriptor that repeats a frame already viewed in the
//! same call, and ignores a `send` or `free` of a frame not held. So safe
//! code never gets two mutable views of one frame, nor a view of a frame
//! it already gave back.
//! Both backends keep that record in one bitmap, `Held`.
#![forbid(unsafe_code)]

use crate::nat::Side;

/// A frame held by the worker: where it lies and how long it is.
///
/// Only the crate's I/O backends make descriptors; code outside the crate
/// cannot forge one:
///
/// ```compile_fail,E0451
/// let d = dataplane::io::Desc { addr: 0, len: 64 };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desc {
    addr: u64,
    len: u32,
}

impl Desc {
    /// No frame: a placeholder for arrays of descriptors.
    pub(crate) const EMPTY: Desc = Desc { addr: 0, len: 0 };

    /// A descriptor of `len` bytes at `addr`; for the I/O backends.
    pub(crate) fn new(addr: u64, len: u32) -> Self {
        Self { addr, len }
    }

    /// Offset of the frame's first byte in the backend's frame area.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// Frame length in bytes.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True for an empty frame.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Shortens the frame to `len` bytes; a longer `len` changes nothing
    /// (a frame never grows past what its backend handed out).
    pub fn truncate(&mut self, len: u32) {
        self.len = self.len.min(len);
    }

    /// The same frame `len` bytes long: for a packet the engine lengthened
    /// (the FTP ALG). The backend's views refuse it if the frame's buffer
    /// does not reach that far, so it never names memory past its frame.
    pub(crate) fn with_len(self, len: u32) -> Desc {
        Desc { len, ..self }
    }
}

/// Frames received and sent per call.
pub const BATCH: usize = crate::nat::BATCH;

/// What a worker needs from its interfaces.
pub trait FrameIo {
    /// Takes up to `out.len()` received frames from `side`; returns how many.
    fn recv(&mut self, side: Side, out: &mut [Desc]) -> usize;
    /// Runs `f` over mutable views of the frames `descs` names (all held by
    /// the caller), `views[i]` being the frame of `descs[i]`.
    ///
    /// A descriptor the backend refuses ends the views early: `f` sees only
    /// the views before the first one refused, so `views.len() <
    /// descs.len()` says some were. A backend refuses a descriptor outside
    /// its frame area, one longer than its frame, one whose frame the
    /// caller does not hold (already sent or freed), and one whose frame an
    /// earlier descriptor of the same call already names (a repeat would be
    /// a second mutable view of one frame).
    fn with_views<R>(&mut self, descs: &[Desc], f: impl FnOnce(&mut [&mut [u8]]) -> R) -> R;
    /// Queues a held frame for transmission on `side` (sent at
    /// [`FrameIo::flush`]). A frame not held is ignored (a bug of the
    /// caller; debug builds panic).
    fn send(&mut self, side: Side, d: Desc);
    /// Gives a held frame back without sending it; as `send` for a frame
    /// not held.
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
    /// Sleeps until a frame arrives, `also` (an eventfd: `xdp::Wake`) is
    /// written or `timeout_ms` passes, if the backend can and has nothing
    /// left to transmit; false (at once) otherwise. For an idle worker
    /// only, between rounds: one syscall per sleep.
    fn wait(&mut self, _timeout_ms: i32, _also: Option<std::os::fd::RawFd>) -> bool {
        false
    }
}

/// One bit per frame: set while the frame is in the worker's hands (in none
/// of the kernel's rings), so that views may be made of it.
#[derive(Debug, Default)]
pub(crate) struct Held {
    words: Vec<u64>,
}

impl Held {
    /// `frames` frames, none held.
    pub(crate) fn new(frames: usize) -> Self {
        Self { words: vec![0; frames.div_ceil(64)] }
    }

    /// Marks `frame` held; false if it already was (or is out of range).
    pub(crate) fn hold(&mut self, frame: usize) -> bool {
        let Some(word) = self.words.get_mut(frame / 64) else { return false };
        let bit = 1u64 << (frame % 64);
        let was = *word & bit != 0;
        *word |= bit;
        !was
    }

    /// Marks `frame` not held; false if it was not.
    pub(crate) fn release(&mut self, frame: usize) -> bool {
        let Some(word) = self.words.get_mut(frame / 64) else { return false };
        let bit = 1u64 << (frame % 64);
        let was = *word & bit != 0;
        *word &= !bit;
        was
    }

    /// True if `frame` is held.
    pub(crate) fn contains(&self, frame: usize) -> bool {
        self.words.get(frame / 64).is_some_and(|w| w & (1u64 << (frame % 64)) != 0)
    }
}

/// An in-memory backend: frames pushed into `rx` are received, frames sent
/// land in `tx`. For tests of the worker loop.
#[derive(Debug, Default)]
pub struct MemIo {
    frames: Vec<Vec<u8>>,
    free: Vec<u64>,
    rx: [std::collections::VecDeque<Desc>; 2],
    queued: Vec<(Side, Desc)>,
    /// By frame: set while the worker holds it.
    held: Held,
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
        Self {
            frames: vec![vec![0; frame_size]; frames],
            free: (0..frames as u64).rev().collect(),
            held: Held::new(frames),
            ..Self::default()
        }
    }

    /// Takes `d`'s frame out of the worker's hands; false if it was not there.
    fn release(&mut self, d: Desc) -> bool {
        let was = usize::try_from(d.addr).is_ok_and(|i| self.held.release(i));
        debug_assert!(was, "frame {} sent or freed but not held", d.addr);
        was
    }

    /// Makes `bytes` arrive on `side`. False when no frame is free (the
    /// frame is then lost, as a full ring loses it).
    pub fn inject(&mut self, side: Side, bytes: &[u8]) -> bool {
        let Ok(len) = u32::try_from(bytes.len()) else { return false };
        if bytes.len() > self.frames.first().map_or(0, Vec::len) {
            return false;
        }
        let Some(d) = self.free.pop().map(|addr| Desc::new(addr, len)) else { return false };
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
            self.held.hold(d.addr as usize);
            *slot = d;
        }
        n
    }

    fn with_views<R>(&mut self, descs: &[Desc], f: impl FnOnce(&mut [&mut [u8]]) -> R) -> R {
        // Each held frame can be taken once: a repeat finds `None` and, like
        // a descriptor out of range, too long or not held, ends the views.
        let held = &self.held;
        let mut all: Vec<Option<&mut Vec<u8>>> =
            self.frames.iter_mut().enumerate().map(|(i, f)| held.contains(i).then_some(f)).collect();
        let mut views: Vec<&mut [u8]> = Vec::with_capacity(descs.len());
        for d in descs {
            let Some(frame) = all.get_mut(d.addr as usize).and_then(Option::take) else { break };
            let Some(view) = frame.get_mut(..d.len as usize) else { break };
            views.push(view);
        }
        f(&mut views)
    }

    fn send(&mut self, side: Side, d: Desc) {
        if self.release(d) {
            self.queued.push((side, d));
        }
    }

    fn free(&mut self, d: Desc) {
        if !self.release(d) {
            return;
        }
        self.freed += 1;
        self.free.push(d.addr);
    }

    fn alloc(&mut self, len: u32) -> Option<Desc> {
        let size = self.frames.first().map_or(0, Vec::len);
        if len as usize > size {
            return None;
        }
        let addr = self.free.pop()?;
        self.held.hold(addr as usize);
        Some(Desc::new(addr, len))
    }

    fn flush(&mut self) {
        for (side, d) in std::mem::take(&mut self.queued) {
            let bytes = self.frames[d.addr as usize][..d.len as usize].to_vec();
            self.tx[side_index(side)].push(bytes);
            self.free.push(d.addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_descriptor_gets_no_second_view() {
        let mut io = MemIo::new(4, 64);
        let (Some(a), Some(b)) = (io.alloc(64), io.alloc(64)) else { panic!("two frames are free") };
        let seen = io.with_views(&[a, b, a], |v| v.len());
        assert_eq!(seen, 2, "the repeat of `a` must end the views");
        let seen = io.with_views(&[a, a], |v| {
            v.iter_mut().for_each(|f| f.fill(7));
            v.len()
        });
        assert_eq!(seen, 1);
    }

    #[test]
    fn a_descriptor_outside_the_area_or_too_long_gets_no_view() {
        let mut io = MemIo::new(2, 64);
        let Some(a) = io.alloc(64) else { panic!("a frame is free") };
        assert_eq!(io.with_views(&[a, Desc::new(9, 1)], |v| v.len()), 1);
        assert_eq!(io.with_views(&[Desc::new(a.addr(), 65)], |v| v.len()), 0);
    }

    #[test]
    fn a_frame_given_back_gets_no_view() {
        let mut io = MemIo::new(2, 64);
        let Some(a) = io.alloc(64) else { panic!("a frame is free") };
        io.send(Side::Inside, a);
        assert_eq!(io.with_views(&[a], |v| v.len()), 0, "sent: the worker no longer holds it");
        assert!(io.inject(Side::Outside, b"x"));
        let mut got = [Desc::EMPTY; 1];
        assert_eq!(io.recv(Side::Outside, &mut got), 1);
        assert_eq!(io.with_views(&got, |v| v.len()), 1, "received: held");
    }

    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "sent or freed but not held"))]
    fn a_frame_freed_twice_is_refused() {
        let mut io = MemIo::new(2, 64);
        let Some(a) = io.alloc(64) else { panic!("a frame is free") };
        io.free(a);
        io.free(a);
        assert_eq!((io.free_frames(), io.freed), (2, 1));
    }

    #[test]
    fn truncate_never_grows_a_frame() {
        let mut d = Desc::new(0, 100);
        d.truncate(200);
        assert_eq!(d.len(), 100);
        d.truncate(60);
        assert_eq!(d.len(), 60);
    }
}
