//! masq's XDP program (bpf/masq_xdp.c): loading it, attaching it to an
//! interface through a bpf link, and its maps (the box's addresses and
//! their [`LocalRole`], the size limit, the socket of each queue, the
//! counters).

use super::XdpError;
use aya::maps::{HashMap as BpfHashMap, PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpMode};
use std::os::fd::RawFd;

/// The compiled XDP program.
static PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/masq_xdp.o"));

/// Counters of the XDP program, by what it did with a frame.
pub const XDP_STAT_NAMES: [&str; 8] =
    ["redirect", "not_ipv4", "multicast", "ttl_expired", "to_self", "short", "too_big_df", "other_side"];

/// A local address as the XDP program's `local_addrs` map holds it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct LocalAddr {
    kind: u32,
    port_min: u16,
    port_max: u16,
}

// SAFETY: LocalAddr is repr(C), Copy, has no padding (4 + 2 + 2 bytes) and
// every bit pattern is a valid value: aya may copy it to and from the kernel.
unsafe impl aya::Pod for LocalAddr {}

/// What the XDP program does with traffic for one of the box's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalRole {
    /// The kernel's alone: passed to it.
    Kernel,
    /// Also a NAT address (masquerade): TCP/UDP to a port in this range,
    /// ICMP and other IP protocols (GRE, ESP...: masq gives the kernel
    /// what no session claims) go to masq, the rest to the kernel.
    Shared {
        /// The NAT's port range on the address.
        ports: (u16, u16),
    },
    /// An address of the other side's interface: dropped and counted
    /// (`other_side`) before the kernel sees it.
    Refused,
}

impl LocalRole {
    fn to_map(self) -> LocalAddr {
        match self {
            LocalRole::Kernel => LocalAddr { kind: 0, port_min: 0, port_max: 0 },
            LocalRole::Shared { ports: (port_min, port_max) } => LocalAddr { kind: 1, port_min, port_max },
            LocalRole::Refused => LocalAddr { kind: 2, port_min: 0, port_max: 0 },
        }
    }
}

/// A box address the XDP program must know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddress {
    /// Address, host order.
    pub addr: u32,
    /// What to do with traffic for it.
    pub role: LocalRole,
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
                map.insert(l.addr.to_be(), l.role.to_map(), 0).map_err(|e| err(format!("local address: {e}")))?;
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
        map.insert(l.addr.to_be(), l.role.to_map(), 0).map_err(|e| err(format!("local address: {e}")))
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
