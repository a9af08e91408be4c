//! What masq asks of, or sets in, the host outside its own sockets: the
//! interfaces' addresses, MACs and MTUs, the TAP device frames for the box
//! itself re-enter the kernel through, the nftables guard that keeps the
//! kernel from forwarding, and neighbour resolution (`ip neigh`).
//!
//! Invariants: everything here runs on the control thread, at start or in
//! the control loop, never on a worker; what masq installs in the host (the
//! guard table) is removed when its owner is dropped, and a leftover from a
//! SIGKILLed run is replaced at the next start.

use dataplane::l2::parse_mac;
use dataplane::xdp::KernelTap;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// Why the host could not tell masq what it needs.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// `ip` could not be run.
    #[error("running `ip addr`")]
    Ip(#[source] std::io::Error),
    /// `ip` refused (no such interface, ...).
    #[error("interface {iface}: {message}")]
    Interface {
        /// The interface.
        iface: String,
        /// What `ip` said.
        message: String,
    },
    /// A file under /sys could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The interface's MAC is not `xx:xx:xx:xx:xx:xx`.
    #[error("bad MAC in {path}")]
    BadMac {
        /// The file it was read from.
        path: String,
    },
}

/// IPv4 addresses of an interface (host order), from `ip -4 -o addr`.
pub fn interface_addrs(iface: &str) -> Result<Vec<u32>, SystemError> {
    let out = Command::new("ip").args(["-4", "-o", "addr", "show", "dev", iface]).output().map_err(SystemError::Ip)?;
    if !out.status.success() {
        return Err(SystemError::Interface {
            iface: iface.to_string(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            it.find(|w| *w == "inet")?;
            let a: Ipv4Addr = it.next()?.split('/').next()?.parse().ok()?;
            Some(u32::from(a))
        })
        .collect())
}

/// An interface's MAC address.
pub fn interface_mac(iface: &str) -> Result<[u8; 6], SystemError> {
    let path = format!("/sys/class/net/{iface}/address");
    let s = std::fs::read_to_string(&path).map_err(|source| SystemError::Read { path: path.clone(), source })?;
    parse_mac(s.trim()).ok_or(SystemError::BadMac { path })
}

/// An interface's MTU; 0 if it cannot be read.
pub fn interface_mtu(iface: &str) -> u32 {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/mtu")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// Asks the kernel to resolve `hop` on `ifname` (NTF_USE: as if it had a
/// packet for it); the answer reaches the workers with the next neighbour
/// table refresh.
pub fn resolve_neighbour(ifname: &str, hop: u32) {
    let _ = Command::new("ip")
        .args(["neigh", "replace", &Ipv4Addr::from(hop).to_string(), "dev", ifname, "use"])
        .stderr(Stdio::null())
        .status();
}

/// The TAP device frames for the box itself re-enter the kernel through.
const TAP_NAME: &str = "masq-kernel";
/// Its MAC (locally administered; frames are rewritten to it).
const TAP_MAC: [u8; 6] = [0x02, 0x6d, 0x61, 0x73, 0x71, 0x00];

/// One queue of the TAP device per worker, the device up and without
/// reverse-path filtering (frames from anywhere enter through it). On
/// failure masq runs on, and such frames are counted as not re-injected.
pub fn open_kernel_taps(workers: usize) -> Vec<KernelTap> {
    let mut taps = Vec::new();
    for _ in 0..workers {
        match KernelTap::open(TAP_NAME, TAP_MAC) {
            Ok(t) => taps.push(t),
            Err(e) => {
                tracing::warn!(
                    "no way back into the kernel ({e}); traffic for the box's own address on NAT ports is dropped"
                );
                return Vec::new();
            }
        }
    }
    let mac = TAP_MAC.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let _ = Command::new("ip").args(["link", "set", "dev", TAP_NAME, "address", &mac, "up"]).status();
    let _ = std::fs::write(format!("/proc/sys/net/ipv4/conf/{TAP_NAME}/rp_filter"), "0");
    taps
}

/// An nftables table that stops the kernel of masq's namespace from
/// forwarding anything itself while masq forwards: the frames the XDP
/// program gives the kernel are meant for its ICMP errors (time exceeded,
/// fragmentation needed, both sent before the forward hook) and local
/// delivery, never for a second, untranslated path out. Removed at drop;
/// after a SIGKILL the next start replaces it.
pub struct ForwardGuard {
    installed: bool,
}

const GUARD_TABLE: &str = "masq_guard";

impl ForwardGuard {
    /// Installs the table (replacing a leftover); warns if it cannot.
    pub fn install() -> Self {
        let rules = format!(
            "table ip {GUARD_TABLE}\ndelete table ip {GUARD_TABLE}\ntable ip {GUARD_TABLE} {{ chain forward {{ type filter hook forward priority -300; policy drop; }}; }}\n"
        );
        let installed = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                if let Some(mut i) = c.stdin.take() {
                    i.write_all(rules.as_bytes())?;
                }
                c.wait_with_output()
            })
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !installed {
            tracing::warn!("could not install the nftables forward guard (is nft installed?); the kernel may forward what masq passes it");
        }
        Self { installed }
    }
}

impl Drop for ForwardGuard {
    fn drop(&mut self) {
        if self.installed {
            let _ = Command::new("nft").args(["delete", "table", "ip", GUARD_TABLE]).status();
        }
    }
}
