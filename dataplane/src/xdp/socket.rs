//! One worker's AF_XDP sockets: the inside and outside sockets on one
//! shared UMEM, and [`FrameIo`] over them (the frame bookkeeping is the
//! ring module's [`Ledger`]).
//!
//! Invariant: a frame is viewed only while the ledger marks it held
//! (between `recv` or `alloc` and `send` or `free`), when the kernel leaves
//! it alone; a descriptor the worker kept after sending or freeing it gets
//! no view.

use super::ring::{Ledger, RingCounters, XskRings};
use super::tap::KernelTap;
use super::umem::Area;
use super::{if_info, sock_err, XdpError};
use crate::io::{Desc, FrameIo};
use crate::nat::Side;
use std::os::fd::RawFd;
use xdpilone::{Socket, SocketConfig};

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

/// One worker's AF_XDP sockets on the inside and outside interfaces.
pub struct XdpIo {
    ledger: Ledger<XskRings>,
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
        let open_side = |iface: &str, first: bool| -> Result<XskRings, XdpError> {
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
            Ok(XskRings { dev, user, rx, tx })
        };
        let rin = open_side(inside, true)?;
        let rout = open_side(outside, false)?;
        let zero_copy = xdp_zero_copy(rin.user.as_raw_fd());
        let ledger = Ledger::new([rin, rout], p.frames, p.frame_size, p.ring_size, zero_copy);
        let mut io = Self { ledger, tap: None, area };
        io.ledger.refill();
        Ok(io)
    }

    /// Where frames for the kernel go (see [`KernelTap`]).
    pub fn set_kernel_tap(&mut self, tap: KernelTap) {
        self.tap = Some(tap);
    }

    /// A frame the worker holds, as bytes.
    fn view(&mut self, d: Desc) -> Option<&mut [u8]> {
        // SAFETY: the ledger marks a frame held only between its recv or
        // alloc and its send or free, when it is in none of the kernel's
        // rings (ring.rs, tested against a fake kernel).
        unsafe { self.area.frames.view(self.ledger.held(), d.addr(), d.len()) }
    }

    /// The socket of each side (for the XDP program's `xsks` map).
    pub fn fds(&self) -> [RawFd; 2] {
        let [inside, outside] = self.ledger.sides();
        [inside.user.as_raw_fd(), outside.user.as_raw_fd()]
    }

    /// True if the kernel granted zero-copy.
    pub fn zero_copy(&self) -> bool {
        self.ledger.zero_copy()
    }

    /// Ring-level counters.
    pub fn ring_counters(&self) -> RingCounters {
        self.ledger.counters()
    }

    /// The kernel's socket statistics, by side: (rx dropped, rx ring full, fill ring empty).
    pub fn kernel_stats(&self) -> [(u64, u64, u64); 2] {
        let one = |r: &XskRings| {
            r.user
                .statistics_v2()
                .map(|s| (s.rx_dropped, s.rx_ring_full, s.rx_fill_ring_empty_descs))
                .unwrap_or_default()
        };
        let [inside, outside] = self.ledger.sides();
        [one(inside), one(outside)]
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
        self.ledger.recv(side, out)
    }

    fn with_views<R>(&mut self, descs: &[Desc], f: impl FnOnce(&mut [&mut [u8]]) -> R) -> R {
        // SAFETY: the ledger marks a frame held only between its recv or
        // alloc and its send or free, when it is in none of the kernel's
        // rings (ring.rs, tested against a fake kernel); nothing changes
        // the marks while `views` runs. `views` checks bounds, marks and
        // distinctness.
        unsafe { self.area.frames.views(self.ledger.held(), descs, f) }
    }

    fn to_kernel(&mut self, d: Desc) -> bool {
        let Some(mut tap) = self.tap.take() else { return false };
        let ok = self.view(d).is_some_and(|f| tap.write(f));
        self.tap = Some(tap);
        ok
    }

    fn send(&mut self, side: Side, d: Desc) {
        self.ledger.send(side, d);
    }

    fn free(&mut self, d: Desc) {
        self.ledger.free(d);
    }

    fn alloc(&mut self, len: u32) -> Option<Desc> {
        self.ledger.alloc(len)
    }

    fn flush(&mut self) {
        self.ledger.flush();
    }

    fn wait(&mut self, timeout_ms: i32, also: Option<std::os::fd::RawFd>) -> bool {
        if !self.ledger.quiet() {
            return false;
        }
        let [inside, outside] = self.fds();
        // Without `also`, a third entry the kernel skips (a negative fd).
        let mut fds =
            [inside, outside, also.unwrap_or(-1)].map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
        // SAFETY: three pollfds, alive for the call (a negative fd is
        // ignored); the kernel writes only their `revents`.
        unsafe { libc::poll(fds.as_mut_ptr(), 3, timeout_ms) };
        true
    }
}
