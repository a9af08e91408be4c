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
//! | file | what | invariant |
//! |---|---|---|
//! | `program.rs` | [`XdpProgram`]: load, attach, maps | one aya `Ebpf` per interface |
//! | `socket.rs` | [`XdpIo`]: opening the worker's two sockets on one UMEM; [`crate::io::FrameIo`] | views only of frames the worker holds |
//! | `ring/` | the frame bookkeeping over the fill, RX, TX and completion rings, and its fake-kernel test | a frame offset is in exactly one place at a time (free stack, fill or RX ring, the kernel, the worker's hands, TX pending or ring, completion ring) |
//! | `umem.rs` | the frame area and its views: the only `from_raw_parts` | a view lies in one frame; the views of one call name distinct frames |
//! | `tap.rs` | [`KernelTap`]: frames handed to the kernel's stack | a syscall per frame, never the forwarding path |
//! | `hugepages.rs` | [`HugePageAlloc`]: masq's global allocator; large blocks on 2 MiB-aligned mappings advised to use transparent huge pages | a large block is a whole mapping, unmapped whole |
//! | `prefetch.rs` | [`prefetch::read`]: a software prefetch for the engine's batch lookups | a hint: reads nothing, never faults |
//! | `wake.rs` | [`Wake`]: an eventfd another thread writes to end a sleeping worker's poll | a message put in while the worker sleeps is followed by a write |
//! | `lab.rs` | `XdpRx`, `XdpTx`, `SINK_PROGRAM` (feature `lab`): `perf compare`'s generator and sink | not used by masq itself |
//!
//! Nothing here allocates after construction except the pending-TX
//! vectors growing past their initial capacity once.
#![allow(unsafe_code)]
// Frame offsets are u64 in the kernel's ABI and index a mapping in this
// address space: usize is 64 bits wherever AF_XDP runs for masq.
#![allow(clippy::cast_possible_truncation)]

pub mod hugepages;
#[cfg(feature = "lab")]
mod lab;
pub mod prefetch;
mod program;
mod ring;
mod socket;
mod tap;
mod umem;
mod wake;

pub use hugepages::HugePageAlloc;
#[cfg(feature = "lab")]
pub use lab::{enter_netns, XdpRx, XdpTx, SINK_PROGRAM};
pub use program::{LocalAddress, LocalRole, XdpProgram, XDP_STAT_NAMES};
pub use ring::RingCounters;
pub use socket::{XdpIo, XdpParams};
pub use tap::KernelTap;
pub use wake::Wake;

use std::ffi::CString;
use xdpilone::IfInfo;

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
