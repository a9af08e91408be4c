//! One worker's AF_XDP sockets: the inside and outside sockets on one
//! shared UMEM, their rings, and the frame bookkeeping behind
//! [`FrameIo`].
//!
//! Invariant: a frame offset is in exactly one place at a time (the free
//! stack, a fill or RX ring, the worker's hands, the pending-TX vector or
//! TX ring, a completion ring); [`FrameIo::with_views`] therefore hands out
//! views of frames the kernel leaves alone.

use super::tap::KernelTap;
use super::umem::Area;
use super::{if_info, sock_err, XdpError};
use crate::io::{Desc, FrameIo};
use crate::nat::Side;
use std::os::fd::RawFd;
use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, RingRx, RingTx, Socket, SocketConfig, User};

/// Sizes of one worker's AF_XDP set-up.
#[derive(Debug, Clone, Copy)]
pub struct XdpParams {
    /// Frames in the UMEM (shared by both sides).
    pub frames: u32,
    /// Bytes per frame (2048 holds an MTU 1500 frame).
    pub frame_size: u32,
    /// Entries of every ring (power of two).
    pub ring_size: u32,
}

impl Default for XdpParams {
    fn default() -> Self {
        Self { frames: 8192, frame_size: 2048, ring_size: 2048 }
    }
}

struct Rings {
    dev: DeviceQueue,
    user: User,
    rx: RingRx,
    tx: RingTx,
    pending: Vec<XdpDesc>,
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

/// One worker's AF_XDP sockets on the inside and outside interfaces.
pub struct XdpIo {
    sides: [Rings; 2],
    free: Vec<u64>,
    frame_size: u32,
    reserve: usize,
    ring_size: u32,
    zero_copy: bool,
    counters: RingCounters,
    tap: Option<KernelTap>,
    // Last: the frame area outlives the rings.
    area: Area,
}

impl XdpIo {
    /// Opens queue `queue` of `inside` and `outside` on one new UMEM.
    pub fn open(inside: &str, outside: &str, queue: u32, p: XdpParams) -> Result<Self, XdpError> {
        let area = Area::new(p.frames, p.frame_size, p.ring_size, p.ring_size, inside, queue)?;
        let umem = area.umem();
        let ring = std::num::NonZeroU32::new(p.ring_size);
        let fail = |call: &'static str, iface: &str| sock_err(call, iface, queue);
        let open_side = |iface: &str, first: bool| -> Result<Rings, XdpError> {
            let info = if_info(iface, queue)?;
            let sock = if first { Socket::with_shared(&info, umem) } else { Socket::new(&info) }
                .map_err(fail("socket", iface))?;
            let dev = umem.fq_cq(&sock).map_err(fail("fill/completion rings", iface))?;
            // The UMEM's own socket chooses need_wakeup (and lets the kernel
            // choose copy or zero-copy); a socket sharing it must bind with
            // flags 0 and inherits them.
            let bind_flags = if first { SocketConfig::XDP_BIND_NEED_WAKEUP } else { 0 };
            let user = umem
                .rx_tx(&sock, &SocketConfig { rx_size: ring, tx_size: ring, bind_flags })
                .map_err(fail("rx/tx rings", iface))?;
            let rx = user.map_rx().map_err(fail("map rx", iface))?;
            let tx = user.map_tx().map_err(fail("map tx", iface))?;
            umem.bind(&user).map_err(fail("bind", iface))?;
            Ok(Rings { dev, user, rx, tx, pending: Vec::with_capacity(p.ring_size as usize + 4 * crate::io::BATCH) })
        };
        let rin = open_side(inside, true)?;
        let rout = open_side(outside, false)?;
        let zero_copy = xdp_zero_copy(rin.user.as_raw_fd());
        let free: Vec<u64> = (0..u64::from(p.frames)).rev().map(|i| i * u64::from(p.frame_size)).collect();
        let mut io = Self {
            sides: [rin, rout],
            free,
            frame_size: p.frame_size,
            reserve: (p.frames as usize / 8).max(crate::io::BATCH),
            ring_size: p.ring_size,
            zero_copy,
            counters: RingCounters::default(),
            tap: None,
            area,
        };
        io.refill();
        Ok(io)
    }

    /// Where frames for the kernel go (see [`KernelTap`]).
    pub fn set_kernel_tap(&mut self, tap: KernelTap) {
        self.tap = Some(tap);
    }

    /// A frame the worker holds, as bytes.
    fn view(&mut self, d: Desc) -> Option<&mut [u8]> {
        // SAFETY: the worker holds `d` (FrameIo: between recv or alloc and
        // send or free), so the frame is in none of the kernel's rings.
        unsafe { self.area.frames.view(d.addr(), d.len()) }
    }

    /// The socket of each side (for the XDP program's `xsks` map).
    pub fn fds(&self) -> [RawFd; 2] {
        [self.sides[0].user.as_raw_fd(), self.sides[1].user.as_raw_fd()]
    }

    /// True if the kernel granted zero-copy.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Ring-level counters.
    pub fn ring_counters(&self) -> RingCounters {
        self.counters
    }

    /// The kernel's socket statistics, by side: (rx dropped, rx ring full, fill ring empty).
    pub fn kernel_stats(&self) -> [(u64, u64, u64); 2] {
        let one = |r: &Rings| {
            r.user
                .statistics_v2()
                .map(|s| (s.rx_dropped, s.rx_ring_full, s.rx_fill_ring_empty_descs))
                .unwrap_or_default()
        };
        [one(&self.sides[0]), one(&self.sides[1])]
    }

    /// Hands free frames to both fill rings, keeping `reserve` back for
    /// hand-offs; wakes the kernel where it asks for it.
    fn refill(&mut self) {
        for (r, wakeups) in self.sides.iter_mut().zip(self.counters.rx_wakeups.iter_mut()) {
            let spare = self.free.len().saturating_sub(self.reserve);
            let want = u32::try_from(spare / 2).unwrap_or(u32::MAX).max(u32::from(spare > 0));
            if want > 0 {
                let mut w = r.dev.fill(want);
                // Exactly as many as the ring reserved: the ring's insert
                // pulls an item before it finds no slot, and that frame
                // would be lost.
                let left = w.capacity();
                w.insert(FreeDrain { free: &mut self.free, left });
                w.commit();
            }
            if r.dev.needs_wakeup() {
                r.dev.wake();
                *wakeups += 1;
            }
        }
    }

    /// The rings of one side.
    fn rings(&mut self, side: Side) -> &mut Rings {
        let [inside, outside] = &mut self.sides;
        match side {
            Side::Inside => inside,
            Side::Outside => outside,
        }
    }
}

/// Takes the frames the kernel finished sending back onto the free stack.
pub(super) fn reap(dev: &mut DeviceQueue, free: &mut Vec<u64>, frame_size: u32) -> u32 {
    let mut c = dev.complete(u32::MAX);
    let mut n = 0;
    while let Some(addr) = c.read() {
        free.push(addr - addr % u64::from(frame_size));
        n += 1;
    }
    c.release();
    n
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

/// Asks the kernel whether the socket runs zero-copy (getsockopt XDP_OPTIONS).
fn xdp_zero_copy(fd: RawFd) -> bool {
    const SOL_XDP: libc::c_int = 283;
    const XDP_OPTIONS: libc::c_int = 8;
    const XDP_OPTIONS_ZEROCOPY: u32 = 1;
    let mut flags: u32 = 0;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: `flags` and `len` are valid for writes of the sizes given;
    // the kernel writes at most `len` bytes (struct xdp_options is one u32).
    let rc = unsafe { libc::getsockopt(fd, SOL_XDP, XDP_OPTIONS, (&mut flags as *mut u32).cast(), &mut len) };
    rc == 0 && flags & XDP_OPTIONS_ZEROCOPY != 0
}

impl FrameIo for XdpIo {
    fn recv(&mut self, side: Side, out: &mut [Desc]) -> usize {
        let r = self.rings(side);
        let mut rd = r.rx.receive(u32::try_from(out.len()).unwrap_or(u32::MAX));
        let mut n = 0;
        while let Some(x) = rd.read() {
            if let Some(slot) = out.get_mut(n) {
                *slot = Desc::new(x.addr, x.len);
                n += 1;
            }
        }
        rd.release();
        // A descriptor the kernel wrote is inside the area (it checks against
        // the UMEM it registered); checked anyway before any view is made.
        n
    }

    fn with_views<R>(&mut self, descs: &[Desc], f: impl FnOnce(&mut [&mut [u8]]) -> R) -> R {
        // SAFETY: the worker holds every descriptor it passes (FrameIo:
        // between recv or alloc and send or free; the kernel handed it over
        // on RX, or it came off the free stack), so no frame named is in a
        // fill or TX ring. Distinctness and bounds are checked by `views`.
        unsafe { self.area.frames.views(descs, f) }
    }

    fn to_kernel(&mut self, d: Desc) -> bool {
        let Some(mut tap) = self.tap.take() else { return false };
        let ok = self.view(d).is_some_and(|f| tap.write(f));
        self.tap = Some(tap);
        ok
    }

    fn send(&mut self, side: Side, d: Desc) {
        self.rings(side).pending.push(XdpDesc { addr: d.addr(), len: d.len(), options: 0 });
    }

    fn free(&mut self, d: Desc) {
        // Frames are frame_size-aligned; the kernel may report an offset into one.
        self.free.push(d.addr() - d.addr() % u64::from(self.frame_size));
    }

    fn alloc(&mut self, len: u32) -> Option<Desc> {
        if len > self.frame_size {
            return None;
        }
        self.free.pop().map(|addr| Desc::new(addr, len))
    }

    fn flush(&mut self) {
        let zero_copy = self.zero_copy;
        let counters = self.counters.tx_ring_full.iter_mut().zip(self.counters.tx_kicks.iter_mut());
        for (r, (full, kicked)) in self.sides.iter_mut().zip(counters) {
            reap(&mut r.dev, &mut self.free, self.frame_size);
            if !r.pending.is_empty() {
                let mut w = r.tx.transmit(u32::try_from(r.pending.len()).unwrap_or(u32::MAX));
                let sent = w.insert(r.pending.iter().copied()) as usize;
                w.commit();
                r.pending.drain(..sent.min(r.pending.len()));
                // What the ring had no room for waits for the next round
                // (back-pressure: the receive rings fill and the kernel
                // drops and counts there) up to one ring's worth.
                let cap = self.ring_size as usize;
                if r.pending.len() > cap {
                    for d in r.pending.drain(cap..) {
                        *full += 1;
                        self.free.push(d.addr - d.addr % u64::from(self.frame_size));
                    }
                }
            }
            // Copy mode sends at most 32 frames per kick and only when
            // kicked: kick until the ring is drained or the kernel stops
            // taking (its completion ring full: reap, then go on). Bounded.
            let mut kicks = 0;
            while r.tx.pending() > 0 && (!zero_copy || r.tx.needs_wakeup()) && kicks < 64 {
                let before = r.tx.pending();
                r.tx.wake();
                kicks += 1;
                if reap(&mut r.dev, &mut self.free, self.frame_size) == 0 && r.tx.pending() == before {
                    break;
                }
            }
            *kicked += kicks;
        }
        self.refill();
    }
}
