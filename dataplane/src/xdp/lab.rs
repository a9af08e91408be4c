//! The lab's traffic generator and sink for `perf compare` (feature `lab`):
//! a transmit-only and a receive-only AF_XDP socket, each on its own frame
//! area, an XDP program that drops what it receives, and [`enter_netns`],
//! so one thread can hold a socket in each of two namespaces (the latency
//! probe sends from the subscriber's and receives at the outside router's).
//! Not used by masq.

use super::ring::reap;
use super::umem::Area;
use super::{if_info, sock_err, XdpError};
use crate::io::Held;
use std::os::fd::{AsRawFd, RawFd};
use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, RingRx, RingTx, Socket, SocketConfig, User};

/// The lab's traffic sink (bpf/sink.c): an XDP program that drops every
/// frame; the interface's `rx_packets` still counts them. For `perf compare`.
pub static SINK_PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sink.o"));

/// A receive-only AF_XDP socket: the lab's timestamping sink.
pub struct XdpRx {
    rx: RingRx,
    dev: DeviceQueue,
    user: User,
    frame_size: u32,
    /// The frame being viewed.
    held: Held,
    area: Area,
    /// The descriptors of one [`XdpRx::recv`] (kept: no allocation a call).
    got: Vec<XdpDesc>,
}

/// Moves the calling thread into the network namespace at `path` (as
/// `/var/run/netns/NAME`, what `ip netns add` makes): sockets and interface
/// names it uses afterwards are that namespace's; those opened before stay
/// in theirs. Other threads are not moved.
pub fn enter_netns(path: &str) -> std::io::Result<()> {
    let ns = std::fs::File::open(path)?;
    // SAFETY: setns(2) on an open namespace file; it changes only this
    // thread's network namespace and touches no memory of ours.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl XdpRx {
    /// Opens an RX socket on queue `queue` of `iface` with `frames` frames,
    /// all of them given to the fill ring.
    pub fn open(iface: &str, queue: u32, frames: u32) -> Result<Self, XdpError> {
        let frame_size = 2048u32;
        let frames = frames.next_power_of_two().min(1 << 14);
        let fail = |call: &'static str| sock_err(call, iface, queue);
        let area = Area::new(frames, frame_size, frames, 64, iface, queue)?;
        let umem = area.umem();
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
        let got = Vec::with_capacity(64);
        Ok(Self { rx, dev, user, frame_size, held: Held::new(frames as usize), area, got })
    }

    /// Runs `f` over the frames received so far (up to 64) and gives them
    /// back to the fill ring; returns how many there were. No system call
    /// (copy mode fills the ring from the sender's side), so a loop may
    /// call it between other work.
    pub fn recv(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mut got = std::mem::take(&mut self.got);
        got.clear();
        let mut rd = self.rx.receive(64);
        while let Some(d) = rd.read() {
            got.push(d);
        }
        rd.release();
        let fs = u64::from(self.frame_size);
        for d in &got {
            let index = (d.addr / fs) as usize;
            self.held.hold(index);
            // SAFETY: held only now, between the RX ring that handed this
            // frame over and the fill ring below that gives it back.
            if let Some(frame) = unsafe { self.area.frames.view(&self.held, d.addr, d.len) } {
                f(frame);
            }
            self.held.release(index);
        }
        let mut w = self.dev.fill(u32::try_from(got.len()).unwrap_or(0));
        w.insert(got.iter().map(|d| d.addr - d.addr % fs));
        w.commit();
        drop(w);
        let n = got.len();
        self.got = got;
        n
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
    /// The frame being written.
    held: Held,
    area: Area,
}

impl XdpTx {
    /// Opens a TX socket on queue `queue` of `iface` with `frames` frames.
    pub fn open(iface: &str, queue: u32, frames: u32) -> Result<Self, XdpError> {
        let frame_size = 2048u32;
        let fail = |call: &'static str| sock_err(call, iface, queue);
        let ring = frames.next_power_of_two().min(1 << 14);
        let area = Area::new(frames, frame_size, 64, ring, iface, queue)?;
        let umem = area.umem();
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
        Ok(Self { tx, dev, user, free, frame_size, held: Held::new(frames as usize), area })
    }

    /// Writes up to `n` frames with `fill(i, frame) -> length` (i counts
    /// from 0 within this call) and queues them; kicks the kernel and reaps
    /// completions. Returns how many were queued.
    pub fn send(&mut self, n: usize, mut fill: impl FnMut(usize, &mut [u8]) -> u32) -> usize {
        reap(&mut self.dev, &mut self.free, self.frame_size);
        let n = n.min(self.free.len());
        let mut w = self.tx.transmit(u32::try_from(n).unwrap_or(u32::MAX));
        let cap = w.capacity() as usize;
        let (free, frames, held, frame_size) = (&mut self.free, &mut self.area.frames, &mut self.held, self.frame_size);
        let mut i = 0;
        let descs = std::iter::from_fn(|| {
            if i >= cap {
                return None;
            }
            let addr = free.pop()?;
            let index = (addr / u64::from(frame_size)) as usize;
            held.hold(index);
            // SAFETY: held only now: `addr` came off the free stack, so
            // neither the kernel nor another view holds the frame, and it is
            // released before the frame is queued for transmission below.
            let len = match unsafe { frames.view(held, addr, frame_size) } {
                Some(frame) => fill(i, frame).min(frame_size),
                None => 0,
            };
            held.release(index);
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

#[cfg(test)]
mod tests {
    use super::enter_netns;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_thread_enters_a_namespace_by_its_file() {
        let e = enter_netns("/var/run/netns/no-such-namespace").expect_err("no such file");
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        // setns(2) needs CAP_SYS_ADMIN: as root, enter our own namespace
        // (on a thread of its own, which is what it moves).
        if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
            let entered = std::thread::spawn(|| enter_netns("/proc/self/ns/net")).join().expect("thread");
            assert!(entered.is_ok(), "{entered:?}");
            let e = std::thread::spawn(|| enter_netns("/proc/self/ns/uts")).join().expect("thread");
            assert!(e.is_err(), "a UTS namespace is not a network namespace");
        }
    }
}
