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

/// The CPUs the box has online, as a count a core number must stay below
/// (`/sys/devices/system/cpu/online`, e.g. `0-3,6`: 7). Not the CPUs this
/// process may run on: under `isolcpus` a process starts without the
/// isolated cores, which are the workers' own. Falls back to those if the
/// file cannot be read.
pub fn online_cpus() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|t| cpu_list_end(&t))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
}

/// One past the highest CPU of a kernel CPU list (`0-3,6` -> 7).
fn cpu_list_end(list: &str) -> Option<usize> {
    list.trim()
        .split(',')
        .map(|part| part.rsplit('-').next().and_then(|n| n.trim().parse::<usize>().ok()))
        .try_fold(0, |end, n| n.map(|n| end.max(n + 1)))
        .filter(|&n| n > 0)
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

/// What the host guard lets reach the box's kernel from outside.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardSpec {
    /// The outside interface.
    pub outside: String,
    /// The inside side's prefixes and the inside interface's addresses
    /// (host order, length): the sources that may reach the box through
    /// the TAP device as inside traffic, and the sources nothing the box
    /// sends out of the outside interface may carry.
    pub inside: Vec<(u32, u8)>,
    /// Answer pings from outside.
    pub icmp_echo: bool,
    /// New connections accepted from outside.
    pub allow: Vec<GuardAllow>,
}

/// One service the guard lets outside hosts connect to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardAllow {
    /// Source prefixes (host order, length); empty: any.
    pub src: Vec<(u32, u8)>,
    /// "tcp" or "udp".
    pub proto: &'static str,
    /// Port ranges.
    pub ports: Vec<(u16, u16)>,
}

fn nft_set<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    format!("{{ {} }}", items.iter().map(f).collect::<Vec<_>>().join(", "))
}

fn nft_prefix(&(a, l): &(u32, u8)) -> String {
    format!("{}/{l}", Ipv4Addr::from(a))
}

/// The guard table's rules (`nft -f` input). Chains:
/// - `forward`: drops everything (the kernel never forwards while masq does);
/// - `input`: traffic from outside (the outside interface, or the TAP
///   device with a source not on the inside) reaches the box only as a
///   reply to its own connections (conntrack), a ping (`icmp_echo`) or a
///   listed service; the rest is dropped and counted (`refused`);
/// - `output`: nothing leaves the outside interface with an inside-side
///   source (counted as `leaked`).
pub fn guard_rules(spec: &GuardSpec) -> String {
    let t = GUARD_TABLE;
    let out = &spec.outside;
    // A packet from outside claiming an inside source is never answered
    // (the answer would go inside): refused before anything else.
    let mut from_outside = if spec.inside.is_empty() {
        String::new()
    } else {
        format!("ip saddr {} counter name refused drop; ", nft_set(&spec.inside, nft_prefix))
    };
    from_outside.push_str("ct state established,related accept; ");
    if spec.icmp_echo {
        from_outside.push_str("icmp type echo-request accept; ");
    }
    for a in &spec.allow {
        let src = if a.src.is_empty() { String::new() } else { format!("ip saddr {} ", nft_set(&a.src, nft_prefix)) };
        let ports = nft_set(&a.ports, |&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") });
        from_outside.push_str(&format!("{src}{} dport {ports} accept; ", a.proto));
    }
    from_outside.push_str("counter name refused drop;");
    let (tap_inside, leak) = if spec.inside.is_empty() {
        (String::new(), String::new())
    } else {
        let set = nft_set(&spec.inside, nft_prefix);
        (
            format!("iifname \"{TAP_NAME}\" ip saddr {set} accept; "),
            format!("oifname \"{out}\" ip saddr {set} counter name leaked drop; "),
        )
    };
    format!(
        "table ip {t}\ndelete table ip {t}\ntable ip {t} {{\n\
         counter refused {{ }}\ncounter leaked {{ }}\n\
         chain forward {{ type filter hook forward priority -300; policy drop; }}\n\
         chain from_outside {{ {from_outside} }}\n\
         chain input {{ type filter hook input priority -300; policy accept; iifname \"{out}\" goto from_outside; {tap_inside}iifname \"{TAP_NAME}\" goto from_outside; }}\n\
         chain output {{ type filter hook output priority -300; policy accept; {leak}}}\n}}\n"
    )
}

/// The host guard's counters ([`HostGuard::counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardCounts {
    /// New traffic from outside the host guard refused.
    pub refused: u64,
    /// Packets the box itself sent out of the outside interface with an
    /// inside source, dropped.
    pub leaked: u64,
}

/// An nftables table (`masq_guard`) that keeps the kernel of masq's
/// namespace in its place while masq forwards ([`guard_rules`]): it never
/// forwards anything itself (the frames the XDP program gives the kernel
/// are meant for its ICMP errors, time exceeded and fragmentation needed,
/// both sent before the forward hook, and local delivery, never for a
/// second, untranslated path out); from outside it accepts only replies,
/// pings and the services `management.allow` lists; and it sends nothing
/// out of the outside interface with an inside source. Removed at drop;
/// after a SIGKILL the next start replaces it.
pub struct HostGuard {
    installed: bool,
}

const GUARD_TABLE: &str = "masq_guard";

impl HostGuard {
    /// Installs the table (replacing a leftover); warns if it cannot.
    pub fn install(spec: &GuardSpec) -> Self {
        let installed = match nft_apply(&guard_rules(spec)) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("could not install the nftables host guard ({e}); the kernel may forward what masq passes it and answer from outside");
                false
            }
        };
        Self { installed }
    }

    /// Replaces the rules (a live change of `management`).
    pub fn update(&mut self, spec: &GuardSpec) -> Result<(), String> {
        nft_apply(&guard_rules(spec))?;
        self.installed = true;
        Ok(())
    }

    /// Packets the guard dropped; `None` if the table is not there.
    pub fn counts(&self) -> Option<GuardCounts> {
        if !self.installed {
            return None;
        }
        let read = |name: &str| -> Option<u64> {
            let out = Command::new("nft").args(["list", "counter", "ip", GUARD_TABLE, name]).output().ok()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let after = text.split("packets ").nth(1)?;
            after.split_whitespace().next()?.parse().ok()
        };
        Some(GuardCounts { refused: read("refused")?, leaked: read("leaked")? })
    }
}

/// Runs `nft -f -` on `rules`; the error is nft's own message.
fn nft_apply(rules: &str) -> Result<(), String> {
    use std::io::Write;
    let mut c = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running nft: {e}"))?;
    if let Some(mut i) = c.stdin.take() {
        i.write_all(rules.as_bytes()).map_err(|e| format!("writing to nft: {e}"))?;
    }
    let o = c.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
    }
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        if self.installed {
            let _ = Command::new("nft").args(["delete", "table", "ip", GUARD_TABLE]).status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_reads_as_the_boundary_says() {
        let spec = GuardSpec {
            outside: "eth0".into(),
            inside: vec![(0x6440_0000, 10), (0x6440_0001, 32)],
            icmp_echo: true,
            allow: vec![GuardAllow { src: vec![(0xc633_6400, 24)], proto: "tcp", ports: vec![(22, 22), (8000, 8010)] }],
        };
        let r = guard_rules(&spec);
        assert!(r.contains("policy drop; }"), "forward dropped: {r}");
        assert!(r.contains("iifname \"eth0\" goto from_outside"), "{r}");
        assert!(r.contains("iifname \"masq-kernel\" ip saddr { 100.64.0.0/10, 100.64.0.1/32 } accept"), "{r}");
        assert!(r.contains("ip saddr { 198.51.100.0/24 } tcp dport { 22, 8000-8010 } accept"), "{r}");
        assert!(r.contains("icmp type echo-request accept"), "{r}");
        assert!(
            r.contains("oifname \"eth0\" ip saddr { 100.64.0.0/10, 100.64.0.1/32 } counter name leaked drop"),
            "{r}"
        );
        let quiet = guard_rules(&GuardSpec { icmp_echo: false, allow: Vec::new(), ..spec });
        assert!(!quiet.contains("echo-request") && !quiet.contains("dport"), "{quiet}");
        assert!(quiet.contains("ct state established,related accept; counter name refused drop;"), "{quiet}");
        assert!(
            r.contains(
                "chain from_outside { ip saddr { 100.64.0.0/10, 100.64.0.1/32 } counter name refused drop; ct state"
            ),
            "a spoofed inside source is refused first: {r}"
        );
    }
}

#[cfg(test)]
mod cpu_tests {
    #[test]
    fn a_cpu_list_ends_past_its_highest_cpu() {
        assert_eq!(super::cpu_list_end("0-1\n"), Some(2));
        assert_eq!(super::cpu_list_end("0-3,6"), Some(7));
        assert_eq!(super::cpu_list_end("0"), Some(1));
        assert_eq!(super::cpu_list_end(""), None);
        assert_eq!(super::cpu_list_end("x"), None);
        assert!(super::online_cpus() >= 1);
    }
}
