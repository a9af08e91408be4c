//! The frame area: an anonymous mapping cut into frames, registered with
//! the kernel as a UMEM. The only place in masq that makes slices from raw
//! memory.
//!
//! Invariants: a view covers bytes of one frame only (it may start past the
//! frame's first byte, as the kernel's descriptors do in zero-copy mode,
//! never end past its last); a view is made only of a frame marked in the
//! caller's [`Held`] bitmap, and the views of one call name distinct frames
//! (a frame's bit is cleared while it is viewed); views live only while the
//! area is borrowed mutably, so two calls never overlap. That a set bit
//! means "the kernel leaves this frame alone" is the caller's to keep: the
//! view methods are `unsafe` and say so.

use super::{sock_err, XdpError};
use crate::io::{Desc, Held, BATCH};
use std::ptr::NonNull;
use xdpilone::{Umem, UmemConfig};

/// An anonymous mapping of `frames` frames of `frame_size` bytes.
pub(super) struct Frames {
    base: NonNull<u8>,
    len: usize,
    frame_size: u32,
    /// Owns the memory `base` points into; never touched again.
    _map: memmap2::MmapMut,
}

impl Frames {
    /// Maps `frames` frames of `frame_size` bytes (not yet registered).
    pub(super) fn new(frames: u32, frame_size: u32) -> Result<Self, XdpError> {
        let len = frames as usize * frame_size as usize;
        let mut map = memmap2::MmapMut::map_anon(len).map_err(|source| XdpError::Area { bytes: len, source })?;
        let base = NonNull::new(map.as_mut_ptr())
            .ok_or_else(|| XdpError::Area { bytes: len, source: std::io::Error::other("null mapping") })?;
        Ok(Self { base, len, frame_size, _map: map })
    }

    /// The index of the frame [addr, addr + len) lies in, if all of it lies
    /// in that one frame of the area.
    pub(super) fn frame_of(&self, addr: u64, len: u32) -> Option<usize> {
        let fs = u64::from(self.frame_size);
        let index = addr.checked_div(fs)?;
        let in_frame = addr % fs + u64::from(len) <= fs;
        let in_area = (index + 1).checked_mul(fs).is_some_and(|end| end <= self.len as u64);
        (in_frame && in_area).then_some(index as usize)
    }

    /// Runs `f` over mutable views of the frames `descs` names, `views[i]`
    /// the frame of `descs[i]`. The first descriptor outside one frame of
    /// the area, not `held`, or naming a frame an earlier one of this call
    /// names ends the views: `f` gets those before it (see
    /// [`crate::io::FrameIo`]). `held` is as it was when `f` runs.
    ///
    /// # Safety
    /// `held` marks only frames in none of the kernel's fill and TX rings,
    /// and stays so while this runs: the kernel neither reads nor writes
    /// them.
    pub(super) unsafe fn views<R>(
        &mut self,
        held: &mut Held,
        descs: &[Desc],
        f: impl FnOnce(&mut [&mut [u8]]) -> R,
    ) -> R {
        let mut views: [&mut [u8]; BATCH] = std::array::from_fn(|_| <&mut [u8]>::default());
        let mut n = 0;
        for (v, d) in views.iter_mut().zip(descs) {
            // Cleared while viewed: a repeat finds it clear, like a frame
            // the caller does not hold.
            if !self.frame_of(d.addr(), d.len()).is_some_and(|frame| held.release(frame)) {
                break;
            }
            // SAFETY: [addr, addr + len) lies inside one frame of the mapping
            // (frame_of), which lives as long as `self`; the frame was held
            // (its bit was set), so the kernel leaves it alone (this fn's
            // contract), and no earlier view of this call covers it (that
            // would have cleared the bit), so no two views overlap. The views
            // live only for this call, which borrows `self` mutably.
            *v = unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(d.addr() as usize), d.len() as usize) };
            n += 1;
        }
        for d in descs.iter().take(n) {
            if let Some(frame) = self.frame_of(d.addr(), d.len()) {
                held.hold(frame);
            }
        }
        f(views.get_mut(..n).unwrap_or_default())
    }

    /// A mutable view of [addr, addr + len), if it lies in one frame and
    /// `held` marks that frame.
    ///
    /// # Safety
    /// As [`Frames::views`].
    pub(super) unsafe fn view(&mut self, held: &Held, addr: u64, len: u32) -> Option<&mut [u8]> {
        let frame = self.frame_of(addr, len)?;
        if !held.contains(frame) {
            return None;
        }
        // SAFETY: inside one frame of the mapping (frame_of), which lives as
        // long as `self`; held, so the kernel leaves it alone (this fn's
        // contract); one view at a time, as it borrows `self` mutably.
        Some(unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(addr as usize), len as usize) })
    }
}

/// A frame area registered as a UMEM. Field order is drop order: the UMEM
/// goes before the mapping it was registered on.
pub(super) struct Area {
    umem: Umem,
    pub(super) frames: Frames,
}

impl Area {
    /// `frames` frames of `frame_size` bytes, with fill and completion rings
    /// of the given sizes; errors name `iface` and `queue`.
    pub(super) fn new(
        frames: u32,
        frame_size: u32,
        fill: u32,
        complete: u32,
        iface: &str,
        queue: u32,
    ) -> Result<Self, XdpError> {
        let frames = Frames::new(frames, frame_size)?;
        let cfg = UmemConfig { fill_size: fill, complete_size: complete, frame_size, headroom: 0, flags: 0 };
        let area = NonNull::slice_from_raw_parts(frames.base, frames.len);
        // SAFETY: the area is a fresh page-aligned anonymous mapping of
        // `frames.len` bytes, owned by the returned Area and dropped after
        // the UMEM (field order), whose owners drop it after their rings.
        let umem = unsafe { Umem::new(cfg, area) }.map_err(sock_err("umem", iface, queue))?;
        Ok(Self { umem, frames })
    }

    /// The UMEM, to make sockets and rings on.
    pub(super) fn umem(&self) -> &Umem {
        &self.umem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 128 frames of 256 bytes, all held.
    fn frames() -> (Frames, Held) {
        let mut held = Held::new(128);
        (0..128).for_each(|frame| assert!(held.hold(frame)));
        (Frames::new(128, 256).expect("an anonymous mapping"), held)
    }

    #[test]
    fn a_frame_named_twice_in_one_call_gets_one_view() {
        let (mut f, mut held) = frames();
        let (a, b) = (Desc::new(0, 256), Desc::new(256, 64));
        // Same descriptor twice, and two descriptors inside frame 0.
        for descs in [[a, b, a], [a, b, Desc::new(100, 10)]] {
            // SAFETY: no kernel knows this mapping.
            let lens = unsafe { f.views(&mut held, &descs, |v| v.iter().map(|v| v.len()).collect::<Vec<_>>()) };
            assert_eq!(lens, [256, 64], "the repeat of frame 0 ends the views");
        }
        // The bits were restored: the next call views frame 0 again, and a
        // frame past the first bitmap word.
        let c = Desc::new(100 * 256, 8);
        // SAFETY: as above.
        assert_eq!(unsafe { f.views(&mut held, &[a, c], |v| v.len()) }, 2);
        assert!((0..128).all(|frame| held.contains(frame)));
    }

    #[test]
    fn a_frame_not_held_gets_no_view() {
        let (mut f, mut held) = frames();
        assert!(held.release(1));
        let (a, b) = (Desc::new(0, 256), Desc::new(256, 256));
        // SAFETY: no kernel knows this mapping.
        assert_eq!(unsafe { f.views(&mut held, &[a, b], |v| v.len()) }, 1);
        // SAFETY: as above.
        assert!(unsafe { f.view(&held, 256, 1) }.is_none());
        assert!(!held.release(1), "releasing twice is refused");
    }

    #[test]
    fn a_view_never_reaches_past_its_frame_or_the_area() {
        let (mut f, mut held) = frames();
        assert_eq!(f.frame_of(256 + 16, 240), Some(1));
        assert_eq!(f.frame_of(256 + 16, 241), None, "into frame 2");
        assert_eq!(f.frame_of(127 * 256, 256), Some(127));
        assert_eq!(f.frame_of(128 * 256, 1), None, "past the area");
        // SAFETY: no kernel knows this mapping.
        assert_eq!(unsafe { f.views(&mut held, &[Desc::new(16, 256)], |v| v.len()) }, 0);
        // SAFETY: as above.
        assert!(unsafe { f.view(&held, u64::MAX - 3, 2) }.is_none());
    }
}
