//! Next hops and their link-layer addresses: what a worker writes into the
//! Ethernet header of a frame it forwards.
//!
//! The tables come from the kernel of the namespace masq runs in (the IPv4
//! routes of each interface and the neighbour table, as `/proc/net/route`
//! and `/proc/net/arp` show them), so masq forwards the way the box routes;
//! a static next-hop MAC per side overrides them (config). The control
//! thread re-reads them every second and publishes a new [`L2Table`]; a
//! worker picks it up between batches.
//!
//! Invariant: a frame is only transmitted with a destination MAC the kernel
//! resolved (or the operator configured). A next hop with no entry is
//! reported to the control thread, which asks the kernel to resolve it
//! (`ip neigh ... use`, the kernel's own ARP, RFC 826); the frame is
//! dropped and counted as `no_neighbour` meanwhile.
#![forbid(unsafe_code)]

use crate::nat::{Prefix, Side};
use crate::wire::ethernet::{field, header_len_of};
use crate::wire::ipv4;
use std::collections::HashMap;

/// One interface's view: its MAC, its routes, its neighbours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SideL2 {
    /// Interface name.
    pub ifname: String,
    /// The interface's own MAC (the source of frames sent there).
    pub own_mac: [u8; 6],
    /// Routes out of this interface, longest prefix first: (prefix, gateway; 0 = on link).
    pub routes: Vec<(Prefix, u32)>,
    /// Resolved neighbours: IPv4 address (host order) to MAC.
    pub neighbours: HashMap<u32, [u8; 6]>,
    /// Every frame goes to this MAC when set (config override).
    pub static_mac: Option<[u8; 6]>,
    /// The interface's MTU: the largest IPv4 packet it sends (0: no limit).
    pub mtu: u32,
}

/// Where a frame goes on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// Send to this MAC.
    Mac([u8; 6]),
    /// The next hop (this address) has no neighbour entry yet.
    Unresolved(u32),
    /// No route out of this interface covers the destination.
    NoRoute,
}

impl SideL2 {
    /// The next hop of `dst` (host order) and its MAC.
    #[inline]
    pub fn next_hop(&self, dst: u32) -> NextHop {
        if let Some(mac) = self.static_mac {
            return NextHop::Mac(mac);
        }
        let Some(&(_, gw)) = self.routes.iter().find(|(p, _)| p.contains(dst)) else {
            return NextHop::NoRoute;
        };
        let hop = if gw == 0 { dst } else { gw };
        match self.neighbours.get(&hop) {
            Some(&mac) => NextHop::Mac(mac),
            None => NextHop::Unresolved(hop),
        }
    }

    /// Reads this interface's routes and neighbours from procfs texts.
    pub fn load(&mut self, route_text: &str, arp_text: &str) {
        self.routes = parse_routes(route_text, &self.ifname);
        self.neighbours = parse_arp(arp_text, &self.ifname);
    }
}

/// Both sides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct L2Table {
    /// Inside, outside.
    pub sides: [SideL2; 2],
}

impl L2Table {
    /// The side's table.
    #[inline]
    pub fn side(&self, side: Side) -> &SideL2 {
        match side {
            Side::Inside => &self.sides[0],
            Side::Outside => &self.sides[1],
        }
    }

    /// Reads both sides from this namespace's `/proc/net/route`, `/proc/net/arp`
    /// and the interfaces' MTUs.
    pub fn refresh_from_proc(&mut self) -> std::io::Result<()> {
        let route = std::fs::read_to_string("/proc/net/route")?;
        let arp = std::fs::read_to_string("/proc/net/arp")?;
        for s in &mut self.sides {
            s.load(&route, &arp);
            if let Ok(m) = std::fs::read_to_string(format!("/sys/class/net/{}/mtu", s.ifname)) {
                s.mtu = m.trim().parse().unwrap_or(s.mtu);
            }
        }
        Ok(())
    }
}

/// Writes the link-layer addresses of a frame leaving by `l2` towards its IPv4
/// destination. Returns the next hop decision; the frame is only changed for
/// [`NextHop::Mac`]. Frames shorter than an Ethernet + IPv4 header are left alone
/// and reported as [`NextHop::NoRoute`] (the engine never forwards those).
#[inline]
pub fn write_l2(l2: &SideL2, frame: &mut [u8]) -> NextHop {
    // A frame too short for its IPv4 destination has no next hop.
    let dst_at = header_len_of(frame) + ipv4::field::DST;
    let Some(&[a, b, c, d]) = frame.get(dst_at..dst_at + 4) else { return NextHop::NoRoute };
    let hop = l2.next_hop(u32::from_be_bytes([a, b, c, d]));
    if let (NextHop::Mac(mac), Some(hdr)) = (hop, frame.first_chunk_mut::<{ field::TYPE }>()) {
        let (dst, src) = hdr.split_at_mut(field::SRC);
        dst.copy_from_slice(&mac);
        src.copy_from_slice(&l2.own_mac);
    }
    hop
}

/// Routes of `ifname` from `/proc/net/route` text, longest prefix first.
/// Fields are little-endian hex in that file (the kernel prints the raw
/// network-order word on a little-endian host).
pub fn parse_routes(text: &str, ifname: &str) -> Vec<(Prefix, u32)> {
    let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(|v| u32::from_be(v.to_le()));
    let mut out: Vec<(Prefix, u32)> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [iface, dst, gw, _, _, _, _, mask, ..] = f.as_slice() else { return None };
            if *iface != ifname {
                return None;
            }
            let (dst, gw, mask) = (hex(dst)?, hex(gw)?, hex(mask)?);
            let len = u8::try_from(mask.count_ones()).ok()?;
            Some((Prefix::new(dst, len), gw))
        })
        .collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.0.len));
    out
}

/// Complete neighbour entries of `ifname` from `/proc/net/arp` text.
pub fn parse_arp(text: &str, ifname: &str) -> HashMap<u32, [u8; 6]> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [ip, _, flags, mac, _, iface, ..] = f.as_slice() else { return None };
            if *iface != ifname {
                return None;
            }
            let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()?;
            if flags & 0x2 == 0 {
                return None; // ATF_COM: not resolved (yet)
            }
            let ip: std::net::Ipv4Addr = ip.parse().ok()?;
            Some((u32::from(ip), parse_mac(mac)?))
        })
        .collect()
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::frames::{ip, udp};

    const ROUTE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
nat-out\t00000000\t027100CB\t0003\t0\t0\t0\t00000000\t0\t0\t0
nat-in\t00004064\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
nat-in\t00004064\t02004064\t0003\t0\t0\t0\t0000C0FF\t0\t0\t0
nat-out\t007100CB\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
";
    const ARP: &str = "IP address       HW type     Flags       HW address            Mask     Device
203.0.113.2      0x1         0x6         02:00:00:00:02:02     *        nat-out
100.64.0.2       0x1         0x2         02:00:00:00:01:02     *        nat-in
100.64.0.9       0x1         0x0         00:00:00:00:00:00     *        nat-in
";

    fn side(name: &str) -> SideL2 {
        let mut s = SideL2 { ifname: name.into(), own_mac: [2, 0, 0, 0, 9, 9], ..SideL2::default() };
        s.load(ROUTE, ARP);
        s
    }

    #[test]
    fn routes_are_read_longest_first_in_host_order() {
        let r = parse_routes(ROUTE, "nat-in");
        assert_eq!(
            r,
            vec![(Prefix::new(ip("100.64.0.0"), 24), 0), (Prefix::new(ip("100.64.0.0"), 10), ip("100.64.0.2"))]
        );
        assert_eq!(parse_routes(ROUTE, "nat-out")[1], (Prefix::new(0, 0), ip("203.0.113.2")));
    }

    #[test]
    fn next_hop_is_the_gateway_or_the_host_on_link() {
        let out = side("nat-out");
        assert_eq!(out.next_hop(ip("198.51.100.1")), NextHop::Mac([2, 0, 0, 0, 2, 2]));
        let inside = side("nat-in");
        assert_eq!(inside.next_hop(ip("100.64.0.2")), NextHop::Mac([2, 0, 0, 0, 1, 2]));
        assert_eq!(inside.next_hop(ip("100.64.0.9")), NextHop::Unresolved(ip("100.64.0.9")));
        assert_eq!(inside.next_hop(ip("100.65.0.1")), NextHop::Mac([2, 0, 0, 0, 1, 2]));
        assert_eq!(inside.next_hop(ip("8.8.8.8")), NextHop::NoRoute);
    }

    #[test]
    fn static_mac_overrides_the_tables() {
        let mut inside = side("nat-in");
        inside.static_mac = Some([2, 1, 1, 1, 1, 1]);
        assert_eq!(inside.next_hop(ip("8.8.8.8")), NextHop::Mac([2, 1, 1, 1, 1, 1]));
    }

    #[test]
    fn write_l2_sets_both_macs_and_leaves_short_frames() {
        let out = side("nat-out");
        let mut f = udp(ip("203.0.113.10"), 1024, ip("198.51.100.1"), 53, b"x");
        assert_eq!(write_l2(&out, &mut f), NextHop::Mac([2, 0, 0, 0, 2, 2]));
        assert_eq!(&f[..12], &[2, 0, 0, 0, 2, 2, 2, 0, 0, 0, 9, 9]);
        let mut short = vec![0u8; 20];
        assert_eq!(write_l2(&out, &mut short), NextHop::NoRoute);
        assert_eq!(short, vec![0u8; 20]);
    }

    #[test]
    fn macs_parse_strictly() {
        assert_eq!(parse_mac("02:00:00:00:01:0a"), Some([2, 0, 0, 0, 1, 10]));
        assert_eq!(parse_mac("02:00:00:00:01"), None);
        assert_eq!(parse_mac("02:00:00:00:01:02:03"), None);
        assert_eq!(parse_mac("zz:00:00:00:01:02"), None);
    }
}
