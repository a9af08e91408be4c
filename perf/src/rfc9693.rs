//! What `compare` needs for RFC 9693 (benchmarking stateful NATxy
//! gateways) and the CSIT grid: the flow space, RFC 4814 pseudorandom
//! ports, the frames (UDP, TCP SYN and RST, written in place) and the
//! binary search over rates.
//!
//! RFC 9693 runs a test in two phases: phase 1 (the "preliminary
//! phase") enumerates every four-tuple of a limited port space once, so the
//! NAT holds a connection for each; phase 2 (the real test) draws source
//! and destination ports pseudorandomly (RFC 4814 section 4.5: each field
//! uniform over its range, independently) from the same space, so every
//! frame hits an existing connection. [`Grid`] is that space (inside hosts
//! x source ports x destination ports); FD.io CSIT's NAT44 grid is the same
//! space with 63 source ports and a fixed sequence instead of draws.
//!
//! Invariants: [`Grid::enumerate`] visits every tuple of the grid exactly
//! once in [`Grid::size`] consecutive packets; [`Grid::pseudorandom`] only
//! returns tuples of the grid; the frame writers allocate nothing, never
//! panic, and write valid IPv4 and TCP checksums (the kernel's conntrack
//! checks TCP's, `nf_conntrack_checksum`).

/// 100.64.0.0, the first inside host of the lab.
pub const INSIDE_BASE: u32 = 0x6440_0000;
/// 198.51.100.1, the remote every flow talks to.
pub const REMOTE: u32 = 0xc633_6401;
/// First source port of a grid.
pub const SPORT_BASE: u16 = 1024;
/// First destination port of a grid.
pub const DPORT_BASE: u16 = 5000;
/// Source ports per host in FD.io CSIT's NAT44 tests (`h1024-p63-s64512`).
pub const CSIT_PORTS: u32 = 63;

/// A flow's inside endpoint and remote port: (inside address, source port, destination port).
pub type Tuple = (u32, u16, u16);

/// The flow space of a test: `hosts` inside addresses from 100.64.0.0, each
/// with `sports` source ports from 1024, to `dports` destination ports from
/// 5000 of the remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Grid {
    /// Inside addresses.
    pub hosts: u32,
    /// Source ports per host.
    pub sports: u32,
    /// Destination ports per source port.
    pub dports: u32,
}

impl Grid {
    /// RFC 9693's throughput row here: 400 hosts x 63 source ports x 4
    /// destination ports (100,800 connections, about the `100k` scenario).
    pub const RFC4814: Grid = Grid { hosts: 400, sports: 63, dports: 4 };

    /// CSIT's grid: `hosts` x 63 source ports. Each host talks to one
    /// destination port (5000 + host mod 61), so the kernel's masquerade,
    /// which has one public address and 64,512 ports per destination, is
    /// not what limits a large grid.
    pub fn csit(hosts: u32) -> Grid {
        Grid { hosts, sports: CSIT_PORTS, dports: 1 }
    }

    /// Connections in the grid.
    pub fn size(&self) -> u64 {
        u64::from(self.hosts.max(1)) * u64::from(self.sports.max(1)) * u64::from(self.dports.max(1))
    }

    fn tuple(&self, host: u32, sport: u32, dport: u32) -> Tuple {
        // A CSIT grid spreads its hosts over destination ports (see csit).
        let dport = if self.dports == 1 { host % 61 } else { dport };
        (
            INSIDE_BASE.wrapping_add(host),
            SPORT_BASE.wrapping_add(u16::try_from(sport).unwrap_or(0)),
            DPORT_BASE.wrapping_add(u16::try_from(dport).unwrap_or(0)),
        )
    }

    /// Phase 1: tuple `k`, every tuple once in each run of `size()` packets
    /// (destination port fastest, then source port, then host).
    pub fn enumerate(&self, k: u64) -> Tuple {
        let (h, s, d) = (u64::from(self.hosts.max(1)), u64::from(self.sports.max(1)), u64::from(self.dports.max(1)));
        let i = k % self.size();
        let dport = u32::try_from(i % d).unwrap_or(0);
        let sport = u32::try_from((i / d) % s).unwrap_or(0);
        let host = u32::try_from((i / d / s) % h).unwrap_or(0);
        self.tuple(host, sport, dport)
    }

    /// Phase 2: host, source port and destination port drawn independently
    /// and uniformly over their ranges (RFC 4814 section 4.5).
    pub fn pseudorandom(&self, r: &mut Rng) -> Tuple {
        let host = r.below(self.hosts.max(1));
        let sport = r.below(self.sports.max(1));
        let dport = r.below(self.dports.max(1));
        self.tuple(host, sport, dport)
    }
}

/// xorshift64* (Vigna): fast, and good enough to pick ports uniformly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (multiply-high: a bias below 2^-32 for these ranges).
    pub fn below(&mut self, n: u32) -> u32 {
        u32::try_from(((self.next_u64() >> 32) * u64::from(n)) >> 32).unwrap_or(0)
    }
}

/// One's-complement sum of 16-bit words (odd tail padded), not folded.
fn sum16(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w.first().copied().unwrap_or(0), w.get(1).copied().unwrap_or(0)])))
        .sum()
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(0)
}

/// Ethernet and IPv4 headers of a frame from `src` to the remote, `l4_len`
/// bytes of `proto` after them; returns false if `f` is too short.
fn write_l2_l3(f: &mut [u8], src_mac: [u8; 6], dst_mac: [u8; 6], src: u32, proto: u8, l4_len: u16) -> bool {
    let Some(f) = f.get_mut(..34) else { return false };
    f[..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    let total = (20 + l4_len).to_be_bytes();
    ip[..12].copy_from_slice(&[0x45, 0, total[0], total[1], 0, 0, 0x40, 0, 64, proto, 0, 0]);
    ip[12..16].copy_from_slice(&src.to_be_bytes());
    ip[16..20].copy_from_slice(&REMOTE.to_be_bytes());
    let csum = fold(sum16(ip));
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    true
}

/// Writes a 60-byte UDP frame (64 on the wire with the FCS) of `t`;
/// returns its length (0 if `f` is too short). UDP checksum 0 (none, RFC 768).
pub fn write_udp(f: &mut [u8], src_mac: [u8; 6], dst_mac: [u8; 6], t: Tuple) -> u32 {
    let (src, sport, dport) = t;
    let Some(f) = f.get_mut(..60) else { return 0 };
    f.fill(0);
    if !write_l2_l3(f, src_mac, dst_mac, src, 17, 26) {
        return 0;
    }
    let udp = &mut f[34..42];
    udp[..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&26u16.to_be_bytes());
    60
}

/// TCP's SYN flag (the generator opens sessions with it).
pub const TCP_SYN: u8 = 0x02;
/// TCP's RST flag (and closes them with it).
pub const TCP_RST: u8 = 0x04;

/// The initial sequence number of flow `k`'s SYN; its RST carries this + 1.
pub fn isn(k: u64) -> u32 {
    u32::try_from(k.wrapping_mul(2_654_435_761) & 0xffff_ffff).unwrap_or(0)
}

/// Writes a 60-byte TCP frame (a 20-byte header, no options, no payload,
/// padded to Ethernet's minimum) of `t` with `flags` and `seq`.
pub fn write_tcp(f: &mut [u8], src_mac: [u8; 6], dst_mac: [u8; 6], t: Tuple, flags: u8, seq: u32) -> u32 {
    let (src, sport, dport) = t;
    let Some(f) = f.get_mut(..60) else { return 0 };
    f.fill(0);
    if !write_l2_l3(f, src_mac, dst_mac, src, 6, 20) {
        return 0;
    }
    let tcp = &mut f[34..54];
    tcp[..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    let window: u16 = if flags & TCP_RST != 0 { 0 } else { 64_240 };
    tcp[14..16].copy_from_slice(&window.to_be_bytes());
    // Pseudo-header (RFC 9293 section 3.1): addresses, protocol, length.
    let pseudo = sum16(&src.to_be_bytes()) + sum16(&REMOTE.to_be_bytes()) + 6 + 20;
    let csum = fold(pseudo + sum16(tcp));
    tcp[16..18].copy_from_slice(&csum.to_be_bytes());
    60
}

/// One trial of a rate search: the rate asked, what the generator offered
/// and what arrived.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Trial {
    /// Frames per second asked of the generator.
    pub rate: u64,
    /// Frames per second it sent (below `rate` when the generator is the limit).
    pub offered: f64,
    /// Frames the generator sent.
    pub sent: u64,
    /// Frames that reached the sink.
    pub received: u64,
    /// Nothing lost (beyond the tolerance asked).
    pub pass: bool,
}

/// The largest rate in `0..=hi` at which `trial` passes: `hi` first, then
/// a binary search of at most `steps` trials (RFC 2544 section 26.1's
/// throughput search, which RFC 9693 reuses). Returns the passing trial with
/// the highest offered rate (none: nothing passed) and every trial in order.
pub fn search<E>(
    hi: u64,
    steps: u32,
    mut trial: impl FnMut(u64) -> Result<Trial, E>,
) -> Result<(Option<Trial>, Vec<Trial>), E> {
    let mut all = Vec::new();
    let first = trial(hi)?;
    all.push(first);
    let (mut lo, mut hi) = (0u64, hi);
    if !first.pass {
        for _ in 0..steps {
            let mid = lo + (hi - lo) / 2;
            if mid == lo {
                break;
            }
            let t = trial(mid)?;
            all.push(t);
            if t.pass {
                lo = mid;
            } else {
                hi = mid;
            }
        }
    }
    let best = all.iter().filter(|t| t.pass).copied().max_by(|a, b| a.offered.total_cmp(&b.offered));
    Ok((best, all))
}

/// Sessions per second: `n` over `secs` (0 when there is no time to divide by).
pub fn per_second(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn phase_one_visits_every_tuple_of_the_grid_once() {
        let g = Grid { hosts: 7, sports: 5, dports: 3 };
        let seen: HashSet<Tuple> = (0..g.size()).map(|k| g.enumerate(k)).collect();
        assert_eq!(seen.len() as u64, g.size());
        assert_eq!(g.enumerate(g.size()), g.enumerate(0), "then it starts over");
        let csit = Grid::csit(1024);
        assert_eq!(csit.size(), 64_512, "CSIT's h1024-p63-s64512");
        let seen: HashSet<Tuple> = (0..csit.size()).map(|k| csit.enumerate(k)).collect();
        assert_eq!(seen.len(), 64_512);
    }

    #[test]
    fn phase_two_draws_only_tuples_of_phase_one_and_all_of_them() {
        let g = Grid { hosts: 10, sports: 63, dports: 4 };
        let space: HashSet<Tuple> = (0..g.size()).map(|k| g.enumerate(k)).collect();
        let mut r = Rng::new(1);
        let drawn: Vec<Tuple> = (0..100_000).map(|_| g.pseudorandom(&mut r)).collect();
        assert!(drawn.iter().all(|t| space.contains(t)));
        let distinct: HashSet<&Tuple> = drawn.iter().collect();
        assert_eq!(distinct.len(), space.len(), "2,520 tuples, 100k draws: every one drawn");
        // Not sequential: consecutive draws differ in ports most of the time.
        let same_sport = drawn.windows(2).filter(|w| w[0].1 == w[1].1).count();
        assert!(same_sport < 100_000 / 20, "{same_sport} repeats of the source port");
        // Uniform: every destination port near a quarter of the draws.
        for d in 0..4 {
            let n = drawn.iter().filter(|t| t.2 == DPORT_BASE + d).count();
            assert!((23_000..27_000).contains(&n), "dport {d}: {n}");
        }
    }

    #[test]
    fn frames_carry_valid_checksums_and_the_tuple() {
        let mut f = [0u8; 2048];
        let t = (INSIDE_BASE + 9, 1030, 5002);
        assert_eq!(write_udp(&mut f, [2; 6], [4; 6], t), 60);
        assert!(dataplane::testing::frames::checksums_ok(&f[..60]));
        assert_eq!(dataplane::testing::frames::tuple(&f[..60]), (t.0, t.1, REMOTE, t.2));
        for (flags, seq) in [(TCP_SYN, isn(7)), (TCP_RST, isn(7).wrapping_add(1))] {
            assert_eq!(write_tcp(&mut f, [2; 6], [4; 6], t, flags, seq), 60);
            assert!(dataplane::testing::frames::checksums_ok(&f[..60]), "flags {flags:#x}");
            assert_eq!(dataplane::testing::frames::tuple(&f[..60]), (t.0, t.1, REMOTE, t.2));
            assert_eq!(f[47], flags);
        }
        assert_eq!(write_tcp(&mut f[..59], [2; 6], [4; 6], t, TCP_SYN, 1), 0, "too short: nothing");
    }

    fn fake(threshold: u64, ceiling: u64) -> impl FnMut(u64) -> Result<Trial, ()> {
        move |rate| {
            let offered = rate.min(ceiling) as f64;
            Ok(Trial { rate, offered, sent: rate, received: rate, pass: rate <= threshold })
        }
    }

    #[test]
    fn the_search_finds_the_highest_passing_rate_within_its_steps() {
        let (best, trials) = search(1_000_000, 6, fake(300_000, u64::MAX)).unwrap();
        assert_eq!(trials.len(), 7, "hi, then six halvings");
        let best = best.unwrap();
        assert!(best.pass && best.rate <= 300_000 && best.rate > 300_000 - 1_000_000 / 64, "{best:?}");
        // Every trial below the threshold passed, every one above failed.
        assert!(trials.iter().all(|t| t.pass == (t.rate <= 300_000)));
        let (best, trials) = search(1_000_000, 6, fake(2_000_000, u64::MAX)).unwrap();
        assert_eq!((best.unwrap().rate, trials.len()), (1_000_000, 1), "hi passes: one trial");
        let (best, _) = search(1_000_000, 6, fake(0, u64::MAX)).unwrap();
        assert_eq!(best, None, "nothing passes");
    }
}
