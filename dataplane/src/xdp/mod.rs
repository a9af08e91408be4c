//! The AF_XDP backend: the XDP program on each interface and one worker's
//! sockets, rings and frame area. The only module of masq with `unsafe`.
//!
//! Per interface, an [`XdpProgram`] (bpf/masq_xdp.c, compiled by build.rs)
//! sends to the receive queue's socket only IPv4 through the box and passes
//! the rest to the kernel (ARP, IPv6, multicast, TTL <= 1, the box's own
//! addresses). It is attached through a bpf link, so it goes away with the
//! last file descriptor: on a clean exit, on a panic (the process aborts)
//! and on SIGKILL alike, and a new start never finds it in the way. A
//! program another tool left through netlink is replaced on start.
//!
//! Per worker, an [`XdpIo`] owns one UMEM (frame area) shared by its inside
//! and outside sockets (one per interface queue, each with its own fill and
//! completion rings), so a frame received on one side is transmitted on the
//! other without a copy. The socket binds with `need_wakeup` and lets the
//! kernel choose copy or zero-copy; [`XdpIo::zero_copy`] says which it got.
//!
//! Invariants: a frame offset is in exactly one place at a time (the free
//! stack, a fill or RX ring, the worker's hands, a TX or completion ring);
//! `with_views` therefore hands out disjoint slices; nothing here allocates
//! after construction except the pending-TX vectors growing past their
//! initial capacity once.
#![allow(unsafe_code)]
// Frame offsets are u64 in the kernel's ABI and index a mapping in this
// address space: usize is 64 bits wherever AF_XDP runs for masq.
#![allow(clippy::cast_possible_truncation)]

use crate::io::{Desc, FrameIo};
use crate::nat::Side;
use aya::maps::{HashMap as BpfHashMap, PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpMode};
use std::ffi::CString;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};

/// The compiled XDP program.
static PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/masq_xdp.o"));

/// Why setting up AF_XDP failed.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// Loading or attaching the XDP program.
    #[error("XDP program on {iface}: {what}")]
    Program {
        /// Interface.
        iface: String,
        /// What went wrong.
        what: String,
    },
    /// A socket, ring or UMEM call.
    #[error("AF_XDP {call} on {iface} queue {queue}: errno {errno} ({})", std::io::Error::from_raw_os_error(*errno))]
    Socket {
        /// Which call.
        call: &'static str,
        /// Interface.
        iface: String,
        /// Queue.
        queue: u32,
        /// errno.
        errno: i32,
    },
    /// Mapping the frame area.
    #[error("frame area of {bytes} bytes: {source}")]
    Area {
        /// Size asked for.
        bytes: usize,
        /// Cause.
        source: std::io::Error,
    },
}

/// Counters of the XDP program, by what it did with a frame.
pub const XDP_STAT_NAMES: [&str; 7] =
    ["redirect", "not_ipv4", "multicast", "ttl_expired", "to_self", "short", "too_big_df"];

/// A local address as the XDP program's `local_addrs` map holds it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct LocalAddr {
    nat: u32,
    port_min: u16,
    port_max: u16,
}

// SAFETY: LocalAddr is repr(C), Copy, has no padding (4 + 2 + 2 bytes) and
// every bit pattern is a valid value: aya may copy it to and from the kernel.
unsafe impl aya::Pod for LocalAddr {}

/// A box address the XDP program must know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddress {
    /// Address, host order.
    pub addr: u32,
    /// The NAT's port range on it, when it is also a NAT address (masquerade);
    /// `None`: the kernel's alone.
    pub nat_ports: Option<(u16, u16)>,
}

/// masq's XDP program attached to one interface.
pub struct XdpProgram {
    ebpf: aya::Ebpf,
    iface: String,
    mode: XdpMode,
}

impl XdpProgram {
    /// Loads the program, tells it the box's addresses and the largest
    /// packet the other interface sends (`max_ip_len`, its MTU; 0: no
    /// limit), and attaches it to `iface` (native mode, generic if the
    /// driver has none).
    pub fn attach(iface: &str, locals: &[LocalAddress], max_ip_len: u32) -> Result<Self, XdpError> {
        let err = |what: String| XdpError::Program { iface: iface.to_string(), what };
        let mut ebpf = aya::Ebpf::load(PROGRAM).map_err(|e| err(format!("load: {e}")))?;
        {
            let map = ebpf.map_mut("local_addrs").ok_or_else(|| err("no local_addrs map".into()))?;
            let mut map: BpfHashMap<_, u32, LocalAddr> = BpfHashMap::try_from(map).map_err(|e| err(e.to_string()))?;
            for l in locals {
                let (nat, (port_min, port_max)) = match l.nat_ports {
                    Some(r) => (1, r),
                    None => (0, (0, 0)),
                };
                map.insert(l.addr.to_be(), LocalAddr { nat, port_min, port_max }, 0)
                    .map_err(|e| err(format!("local address: {e}")))?;
            }
        }
        {
            let map = ebpf.map_mut("limits").ok_or_else(|| err("no limits map".into()))?;
            let mut limits: aya::maps::Array<_, u32> =
                aya::maps::Array::try_from(map).map_err(|e| err(e.to_string()))?;
            limits.set(0, max_ip_len, 0).map_err(|e| err(format!("limits: {e}")))?;
        }
        let prog: &mut Xdp = ebpf
            .program_mut("masq_xdp")
            .ok_or_else(|| err("no masq_xdp program".into()))?
            .try_into()
            .map_err(|e| err(format!("{e}")))?;
        prog.load().map_err(|e| err(format!("verifier: {e}")))?;
        let mut mode = XdpMode::Driver;
        if let Err(first) = prog.attach(iface, mode) {
            // A program attached through netlink (ip link, an older tool, a
            // crashed run of something else) makes the link attach fail:
            // take it off, then try native and generic mode.
            detach_netlink(iface);
            match prog.attach(iface, mode) {
                Ok(_) => {}
                Err(_) => {
                    mode = XdpMode::Skb;
                    prog.attach(iface, mode).map_err(|e| err(format!("attach: {first}; generic mode: {e}")))?;
                }
            }
        }
        Ok(Self { ebpf, iface: iface.to_string(), mode })
    }

    /// The interface.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// "native" or "generic".
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            XdpMode::Skb => "generic",
            _ => "native",
        }
    }

    /// Tells the program about a box address (added or changed).
    pub fn set_local(&mut self, l: LocalAddress) -> Result<(), XdpError> {
        let err = |what: String| XdpError::Program { iface: self.iface.clone(), what };
        let map = self.ebpf.map_mut("local_addrs").ok_or_else(|| err("no local_addrs map".into()))?;
        let mut map: BpfHashMap<_, u32, LocalAddr> = BpfHashMap::try_from(map).map_err(|e| err(e.to_string()))?;
        let (nat, (port_min, port_max)) = match l.nat_ports {
            Some(r) => (1, r),
            None => (0, (0, 0)),
        };
        map.insert(l.addr.to_be(), LocalAddr { nat, port_min, port_max }, 0)
            .map_err(|e| err(format!("local address: {e}")))
    }

    /// Forgets a box address.
    pub fn remove_local(&mut self, addr: u32) -> Result<(), XdpError> {
        let err = |what: String| XdpError::Program { iface: self.iface.clone(), what };
        let map = self.ebpf.map_mut("local_addrs").ok_or_else(|| err("no local_addrs map".into()))?;
        let mut map: BpfHashMap<_, u32, LocalAddr> = BpfHashMap::try_from(map).map_err(|e| err(e.to_string()))?;
        map.remove(&addr.to_be()).map_err(|e| err(format!("local address: {e}")))
    }

    /// Directs receive queue `queue` to the socket `fd`.
    pub fn register(&mut self, queue: u32, fd: RawFd) -> Result<(), XdpError> {
        let err = |what: String| XdpError::Program { iface: self.iface.clone(), what };
        let map = self.ebpf.map_mut("xsks").ok_or_else(|| err("no xsks map".into()))?;
        let mut xsks = XskMap::try_from(map).map_err(|e| err(e.to_string()))?;
        xsks.set(queue, fd, 0).map_err(|e| err(format!("xsks[{queue}]: {e}")))
    }

    /// The program's counters summed over CPUs, in [`XDP_STAT_NAMES`] order.
    pub fn stats(&self) -> [u64; XDP_STAT_NAMES.len()] {
        let mut out = [0u64; XDP_STAT_NAMES.len()];
        let Some(map) = self.ebpf.map("stats") else { return out };
        let Ok(arr) = PerCpuArray::<_, u64>::try_from(map) else { return out };
        for (i, o) in out.iter_mut().enumerate() {
            if let Ok(v) = arr.get(&(i as u32), 0) {
                *o = v.iter().sum();
            }
        }
        out
    }
}

/// Takes off an XDP program attached through netlink (not one of ours: ours
/// go with their link).
fn detach_netlink(iface: &str) {
    for mode in ["xdpgeneric", "xdpdrv", "xdp"] {
        let _ = std::process::Command::new("ip")
            .args(["link", "set", "dev", iface, mode, "off"])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

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
    /// One bit per frame, set while `with_views` builds its views: the
    /// distinctness check. All clear between calls.
    viewed: Vec<u64>,
    // Last: the frame area outlives the rings.
    area: Area,
}

fn errno_of(e: xdpilone::Errno) -> i32 {
    e.get_raw()
}

/// Maps an xdpilone error of `call` on `iface` queue `queue` to ours.
fn sock_err(call: &'static str, iface: &str, queue: u32) -> impl FnOnce(xdpilone::Errno) -> XdpError {
    let iface = iface.to_string();
    move |e| XdpError::Socket { call, iface, queue, errno: errno_of(e) }
}

/// Interface `iface`, receive queue `queue`, as the socket calls want it.
fn if_info(iface: &str, queue: u32) -> Result<IfInfo, XdpError> {
    let mut info = IfInfo::invalid();
    let name = CString::new(iface).map_err(|_| XdpError::Socket {
        call: "ifname",
        iface: iface.into(),
        queue,
        errno: libc::EINVAL,
    })?;
    info.from_name(&name).map_err(sock_err("if_nametoindex", iface, queue))?;
    info.set_queue(queue);
    Ok(info)
}

/// A frame area registered as a UMEM. Field order is drop order: the UMEM
/// goes before the mapping it was registered on.
struct Area {
    umem: Umem,
    base: NonNull<u8>,
    len: usize,
    _map: memmap2::MmapMut,
}

impl Area {
    /// `frames` frames of `frame_size` bytes, with fill and completion rings
    /// of the given sizes; errors name `iface` and `queue`.
    fn new(frames: u32, frame_size: u32, fill: u32, complete: u32, iface: &str, queue: u32) -> Result<Self, XdpError> {
        let len = frames as usize * frame_size as usize;
        let mut map = memmap2::MmapMut::map_anon(len).map_err(|source| XdpError::Area { bytes: len, source })?;
        let slice: &mut [u8] = &mut map;
        let base = NonNull::new(slice.as_mut_ptr())
            .ok_or_else(|| XdpError::Area { bytes: len, source: std::io::Error::other("null mapping") })?;
        let cfg = UmemConfig { fill_size: fill, complete_size: complete, frame_size, headroom: 0, flags: 0 };
        // SAFETY: the area is a fresh page-aligned anonymous mapping of
        // `len` bytes, owned by the returned Area and dropped after the UMEM
        // (field order), whose owners drop it after their rings.
        let umem = unsafe { Umem::new(cfg, NonNull::from(slice)) }.map_err(sock_err("umem", iface, queue))?;
        Ok(Self { umem, base, len, _map: map })
    }
}

impl XdpIo {
    /// Opens queue `queue` of `inside` and `outside` on one new UMEM.
    pub fn open(inside: &str, outside: &str, queue: u32, p: XdpParams) -> Result<Self, XdpError> {
        let area = Area::new(p.frames, p.frame_size, p.ring_size, p.ring_size, inside, queue)?;
        let umem = &area.umem;
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
            viewed: vec![0; (p.frames as usize).div_ceil(64)],
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
        self.frame_of(d)?;
        // SAFETY: as in `with_views`: inside one frame of the area (frame_of), held by
        // the worker alone, one view at a time (it borrows `self` mutably).
        Some(unsafe {
            std::slice::from_raw_parts_mut(self.area.base.as_ptr().add(d.addr() as usize), d.len() as usize)
        })
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

    /// The index of the frame `d` lies in, if all of `d` lies in that one
    /// frame of the area (a descriptor may start past the frame's first
    /// byte, never end past its last).
    fn frame_of(&self, d: Desc) -> Option<usize> {
        let fs = u64::from(self.frame_size);
        let index = d.addr() / fs;
        let in_frame = d.addr() % fs + u64::from(d.len()) <= fs;
        let in_area = (index + 1).checked_mul(fs).is_some_and(|end| end <= self.area.len as u64);
        (in_frame && in_area).then_some(index as usize)
    }
}

/// Takes the frames the kernel finished sending back onto the free stack.
fn reap(dev: &mut DeviceQueue, free: &mut Vec<u64>, frame_size: u32) -> u32 {
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
        let mut views: [&mut [u8]; crate::io::BATCH] = std::array::from_fn(|_| <&mut [u8]>::default());
        let mut n = 0;
        for (v, d) in views.iter_mut().zip(descs) {
            // A descriptor outside one frame of the area, or naming a frame
            // an earlier one of this call names, ends the views (FrameIo).
            let Some(frame) = self.frame_of(*d) else { break };
            let (Some(word), bit) = (self.viewed.get_mut(frame / 64), 1u64 << (frame % 64)) else { break };
            if *word & bit != 0 {
                break;
            }
            *word |= bit;
            // SAFETY: [addr, addr + len) lies inside one frame of the mapped
            // area (frame_of); no other view of this call covers that frame
            // (the `viewed` bit was clear), so no two views overlap; the
            // worker holds the descriptor (the kernel handed it over on RX, or
            // it came off the free stack), so the kernel does not touch the
            // frame until it is submitted again. The views live only for this
            // call, which borrows `self` mutably.
            *v = unsafe {
                std::slice::from_raw_parts_mut(self.area.base.as_ptr().add(d.addr() as usize), d.len() as usize)
            };
            n += 1;
        }
        // Clear what this call set: a few instructions per descriptor.
        for d in descs.iter().take(n) {
            if let Some(word) = self.frame_of(*d).and_then(|frame| self.viewed.get_mut(frame / 64)) {
                *word = 0;
            }
        }
        f(views.get_mut(..n).unwrap_or_default())
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

/// One queue of the TAP device through which frames the engine gives to
/// the kernel (`PassToKernel`: traffic for the box's own address that
/// arrived on a NAT port or as ICMP, e.g. a ping of a masquerade address)
/// enter the kernel's stack, as if received there. A syscall per frame:
/// these are exceptions, never the forwarding path.
pub struct KernelTap {
    file: std::fs::File,
    mac: [u8; 6],
}

impl KernelTap {
    /// Opens a queue of multi-queue TAP device `name` (created by the first
    /// open, gone with the last). Frames are written with destination `mac`
    /// (give the device that address).
    pub fn open(name: &str, mac: [u8; 6]) -> Result<Self, XdpError> {
        use std::os::fd::AsRawFd;
        let fail = |errno: i32| XdpError::Socket { call: "TUNSETIFF", iface: name.to_string(), queue: 0, errno };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .map_err(|e| fail(e.raw_os_error().unwrap_or(libc::EIO)))?;
        // SAFETY: ifreq is a plain C struct of integers and arrays, for
        // which all-zero bytes are a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        if name.len() >= ifr.ifr_name.len() {
            return Err(fail(libc::ENAMETOOLONG));
        }
        for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `ifr`
        // is, valid for the call; the fd is open /dev/net/tun.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut ifr as *mut libc::ifreq) };
        if rc != 0 {
            return Err(fail(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)));
        }
        Ok(Self { file, mac })
    }

    /// Hands a frame to the kernel, addressed to the device. False if the
    /// kernel refused it.
    pub fn write(&mut self, frame: &mut [u8]) -> bool {
        use std::io::Write;
        if let Some(dst) = frame.get_mut(..6) {
            dst.copy_from_slice(&self.mac);
        }
        self.file.write(frame).is_ok_and(|n| n == frame.len())
    }
}

/// The lab's traffic sink (bpf/sink.c): an XDP program that drops every
/// frame; the interface's `rx_packets` still counts them. For `perf compare`.
pub static SINK_PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sink.o"));

/// A receive-only AF_XDP socket: the lab's timestamping sink.
pub struct XdpRx {
    rx: RingRx,
    dev: DeviceQueue,
    user: User,
    frame_size: u32,
    area: Area,
}

impl XdpRx {
    /// Opens an RX socket on queue `queue` of `iface` with `frames` frames,
    /// all of them given to the fill ring.
    pub fn open(iface: &str, queue: u32, frames: u32) -> Result<Self, XdpError> {
        let frame_size = 2048u32;
        let frames = frames.next_power_of_two().min(1 << 14);
        let fail = |call: &'static str| sock_err(call, iface, queue);
        let area = Area::new(frames, frame_size, frames, 64, iface, queue)?;
        let umem = &area.umem;
        let sock = Socket::with_shared(&if_info(iface, queue)?, umem).map_err(fail("socket"))?;
        let mut dev = umem.fq_cq(&sock).map_err(fail("fill/completion rings"))?;
        let user = umem
            .rx_tx(&sock, &SocketConfig { rx_size: std::num::NonZeroU32::new(frames), tx_size: None, bind_flags: 0 })
            .map_err(fail("rx ring"))?;
        let rx = user.map_rx().map_err(fail("map rx"))?;
        umem.bind(&user).map_err(fail("bind"))?;
        let mut w = dev.fill(frames);
        let cap = w.capacity();
        w.insert((0..u64::from(cap)).map(|i| i * u64::from(frame_size)));
        w.commit();
        drop(w);
        Ok(Self { rx, dev, user, frame_size, area })
    }

    /// Runs `f` over every frame received so far and gives the frames back
    /// to the fill ring; returns how many there were.
    pub fn recv(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mut got = Vec::with_capacity(64);
        let mut rd = self.rx.receive(64);
        while let Some(d) = rd.read() {
            got.push(d);
        }
        rd.release();
        for d in &got {
            if (d.addr as usize).saturating_add(d.len as usize) <= self.area.len {
                // SAFETY: the kernel handed this frame over on the RX ring and
                // gets it back only through the fill ring below; it lies in
                // the mapping (checked above); the slice ends with this call.
                let frame =
                    unsafe { std::slice::from_raw_parts(self.area.base.as_ptr().add(d.addr as usize), d.len as usize) };
                f(frame);
            }
        }
        let mut w = self.dev.fill(u32::try_from(got.len()).unwrap_or(0));
        let fs = u64::from(self.frame_size);
        w.insert(got.iter().map(|d| d.addr - d.addr % fs));
        w.commit();
        got.len()
    }

    /// Sleeps until a frame arrives or `timeout_ms` passes (poll(2)), so
    /// a sink needs no CPU of its own.
    pub fn wait(&self, timeout_ms: i32) {
        let mut p = libc::pollfd { fd: self.user.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut p, 1, timeout_ms) };
    }

    /// The socket (for the XDP program's `xsks` map).
    pub fn fd(&self) -> RawFd {
        self.user.as_raw_fd()
    }
}

/// A transmit-only AF_XDP socket: the lab's traffic generator. Frames are
/// written by a closure straight into the UMEM and sent in batches.
pub struct XdpTx {
    tx: RingTx,
    dev: DeviceQueue,
    user: User,
    free: Vec<u64>,
    frame_size: u32,
    area: Area,
}

impl XdpTx {
    /// Opens a TX socket on queue `queue` of `iface` with `frames` frames.
    pub fn open(iface: &str, queue: u32, frames: u32) -> Result<Self, XdpError> {
        let frame_size = 2048u32;
        let fail = |call: &'static str| sock_err(call, iface, queue);
        let ring = frames.next_power_of_two().min(1 << 14);
        let area = Area::new(frames, frame_size, 64, ring, iface, queue)?;
        let umem = &area.umem;
        let sock = Socket::with_shared(&if_info(iface, queue)?, umem).map_err(fail("socket"))?;
        let dev = umem.fq_cq(&sock).map_err(fail("fill/completion rings"))?;
        let user = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: None,
                    tx_size: std::num::NonZeroU32::new(ring),
                    bind_flags: SocketConfig::XDP_BIND_NEED_WAKEUP,
                },
            )
            .map_err(fail("tx ring"))?;
        let tx = user.map_tx().map_err(fail("map tx"))?;
        umem.bind(&user).map_err(fail("bind"))?;
        let free = (0..u64::from(frames)).rev().map(|i| i * u64::from(frame_size)).collect();
        Ok(Self { tx, dev, user, free, frame_size, area })
    }

    /// Writes up to `n` frames with `fill(i, frame) -> length` (i counts
    /// from 0 within this call) and queues them; kicks the kernel and reaps
    /// completions. Returns how many were queued.
    pub fn send(&mut self, n: usize, mut fill: impl FnMut(usize, &mut [u8]) -> u32) -> usize {
        reap(&mut self.dev, &mut self.free, self.frame_size);
        let n = n.min(self.free.len());
        let mut w = self.tx.transmit(u32::try_from(n).unwrap_or(u32::MAX));
        let cap = w.capacity() as usize;
        let (free, base, frame_size) = (&mut self.free, self.area.base, self.frame_size);
        let mut i = 0;
        let descs = std::iter::from_fn(|| {
            if i >= cap {
                return None;
            }
            let addr = free.pop()?;
            // SAFETY: `addr` came off the free stack, so the frame
            // [addr, addr + frame_size) lies inside the mapping and neither
            // the kernel nor another view holds it; the slice ends before
            // the frame is queued for transmission below.
            let frame =
                unsafe { std::slice::from_raw_parts_mut(base.as_ptr().add(addr as usize), frame_size as usize) };
            let len = fill(i, frame).min(frame_size);
            i += 1;
            Some(XdpDesc { addr, len, options: 0 })
        });
        let sent = w.insert(descs) as usize;
        w.commit();
        drop(w);
        let mut kicks = 0;
        while self.tx.pending() > 0 && kicks < 64 {
            self.tx.wake();
            kicks += 1;
        }
        sent
    }

    /// The socket (for statistics).
    pub fn fd(&self) -> RawFd {
        self.user.as_raw_fd()
    }
}
