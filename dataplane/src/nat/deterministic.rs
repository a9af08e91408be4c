//! Deterministic NAT (RFC 7422): every inside address of a prefix gets a
//! fixed public address and a fixed port range, computed by a formula, so
//! no per-block record is needed to answer "who held public ip:port" and
//! the mapping is reversible from the configuration alone.
//!
//! The formula (RFC 7422 section 2 leaves it to the operator; this is a
//! round robin over the addresses, so neighbouring subscribers land on
//! different public addresses):
//!
//! - `N` inside addresses (the prefix), `A` public addresses (in their
//!   configured order), usable ports `port_min..=port_max` (`U` of them),
//!   `P` ports per subscriber (a multiple of 64, the bitmap word).
//! - inside index `i = inside - prefix`; public address index `a = i % A`;
//!   block `k = i / A`; ports `port_min + k*P ..= port_min + (k+1)*P - 1`.
//! - reverse: `k = (port - port_min) / P`, `i = k*A + a`, valid when `i < N`.
//!
//! Invariants ([`Deterministic::new`] checks them): `ceil(N / A) * P <= U`,
//! so every range lies inside `port_min..=port_max` and no two subscribers'
//! ranges meet; [`reverse`] is the inverse of [`forward`] on every port of
//! every range and `None` on every other port.
#![forbid(unsafe_code)]

use super::params::Prefix;

/// Bitmap granularity: ports per subscriber are a multiple of this.
pub const PORT_GRANULE: u32 = 64;

/// A deterministic pool's formula: the inside prefix, the public
/// addresses (host order, index order) and the port geometry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deterministic {
    /// The inside prefix.
    pub inside: Prefix,
    /// Public addresses, host order, in the formula's order.
    pub addresses: Vec<u32>,
    /// Lowest public port of the ranges.
    pub port_min: u16,
    /// Highest public port the ranges may use.
    pub port_max: u16,
    /// Ports each subscriber gets (a multiple of [`PORT_GRANULE`]).
    pub ports_per_subscriber: u16,
}

/// Why a deterministic pool does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetError {
    /// No public address, or an empty port range.
    Empty,
    /// The ports per subscriber asked are not a positive multiple of 64.
    Granule(u16),
    /// The prefix does not fit: `most` ports per subscriber (a multiple of
    /// 64, perhaps 0) is what the addresses and ports give.
    DoesNotFit {
        /// Inside addresses.
        inside: u64,
        /// Subscribers per public address (the sharing ratio).
        per_addr: u64,
        /// Usable ports per public address.
        usable: u32,
        /// Most ports per subscriber that fit.
        most: u32,
    },
}

impl std::fmt::Display for DetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            DetError::Empty => write!(f, "needs at least one public address and a port range"),
            DetError::Granule(p) => write!(f, "ports per subscriber {p} is not a positive multiple of 64"),
            DetError::DoesNotFit { inside, per_addr, usable, most } => write!(
                f,
                "{inside} inside addresses share each public address {per_addr} ways: {usable} usable ports \
                 give {most} ports per subscriber (rounded down to a multiple of 64), need at least 64 \
                 (or as many as asked)"
            ),
        }
    }
}

/// The most ports per subscriber (a multiple of 64, maybe 0) that
/// `inside_addrs` subscribers over `n_addrs` addresses with `usable` ports each get.
pub fn most_ports(inside_addrs: u64, n_addrs: u64, usable: u32) -> u32 {
    let per_addr = inside_addrs.div_ceil(n_addrs.max(1)).max(1);
    let p = u64::from(usable) / per_addr;
    u32::try_from(p).unwrap_or(u32::MAX) / PORT_GRANULE * PORT_GRANULE
}

/// Where a subscriber's ports lie: public address (index and address) and
/// the first and last port of its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Index of the public address in the pool's list.
    pub addr_index: u32,
    /// The public address, host order.
    pub public_ip: u32,
    /// Block number on that address (`k`).
    pub block: u32,
    /// First port.
    pub first: u16,
    /// Last port.
    pub last: u16,
}

impl Deterministic {
    /// A formula, checked to fit; `ports_per_subscriber` 0 asks for the
    /// most that fit.
    pub fn new(
        inside: Prefix,
        addresses: Vec<u32>,
        (port_min, port_max): (u16, u16),
        ports_per_subscriber: u16,
    ) -> Result<Self, DetError> {
        if addresses.is_empty() || port_min == 0 || port_min > port_max {
            return Err(DetError::Empty);
        }
        if !ports_per_subscriber.is_multiple_of(64) {
            return Err(DetError::Granule(ports_per_subscriber));
        }
        let usable = u32::from(port_max) - u32::from(port_min) + 1;
        let n = inside_count(inside);
        let a = addresses.len() as u64;
        let most = most_ports(n, a, usable);
        let want = if ports_per_subscriber == 0 {
            most.min(u32::from(u16::MAX) / 64 * 64)
        } else {
            u32::from(ports_per_subscriber)
        };
        if most < PORT_GRANULE || want > most {
            return Err(DetError::DoesNotFit { inside: n, per_addr: n.div_ceil(a), usable, most });
        }
        let ports_per_subscriber = u16::try_from(want).map_err(|_| DetError::Granule(0))?;
        Ok(Self { inside, addresses, port_min, port_max, ports_per_subscriber })
    }

    /// Inside addresses the prefix holds.
    pub fn inside_count(&self) -> u64 {
        inside_count(self.inside)
    }

    /// Subscribers sharing one public address (the sharing ratio).
    pub fn per_addr(&self) -> u64 {
        self.inside_count().div_ceil(self.addresses.len().max(1) as u64)
    }

    /// The public address and port range of `inside`, or `None` if it is
    /// not in the prefix.
    pub fn forward(&self, inside: u32) -> Option<Range> {
        if !self.inside.contains(inside) {
            return None;
        }
        let i = inside.wrapping_sub(self.inside.addr);
        let n_addrs = u32::try_from(self.addresses.len()).ok().filter(|&n| n > 0)?;
        let addr_index = i % n_addrs;
        let block = i / n_addrs;
        let p = u32::from(self.ports_per_subscriber);
        let first = u32::from(self.port_min) + block * p;
        let last = first + p - 1;
        Some(Range {
            addr_index,
            public_ip: *self.addresses.get(addr_index as usize)?,
            block,
            first: u16::try_from(first).ok()?,
            last: u16::try_from(last).ok().filter(|&l| l <= self.port_max)?,
        })
    }

    /// The inside address that owns public (`addr_index`, `port`), if any.
    pub fn reverse_index(&self, addr_index: u32, port: u16) -> Option<u32> {
        let n_addrs = u32::try_from(self.addresses.len()).ok()?;
        if addr_index >= n_addrs || port < self.port_min || port > self.port_max || self.ports_per_subscriber == 0 {
            return None;
        }
        let block = u32::from(port - self.port_min) / u32::from(self.ports_per_subscriber);
        let i = u64::from(block) * u64::from(n_addrs) + u64::from(addr_index);
        if i >= self.inside_count() {
            return None;
        }
        Some(self.inside.addr.wrapping_add(u32::try_from(i).ok()?))
    }

    /// The inside address that owns public (`public_ip`, `port`), if any.
    pub fn reverse(&self, public_ip: u32, port: u16) -> Option<u32> {
        let a = self.addresses.iter().position(|&x| x == public_ip)?;
        self.reverse_index(u32::try_from(a).ok()?, port)
    }
}

fn inside_count(p: Prefix) -> u64 {
    1u64 << (32 - u32::from(p.len.min(32)))
}

/// [`Deterministic::forward`] as a free function.
pub fn forward(d: &Deterministic, inside: u32) -> Option<Range> {
    d.forward(inside)
}

/// [`Deterministic::reverse`] as a free function.
pub fn reverse(d: &Deterministic, public_ip: u32, port: u16) -> Option<u32> {
    d.reverse(public_ip, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(len: u8, addrs: u32, ports: (u16, u16), pps: u16) -> Result<Deterministic, DetError> {
        let a = (0..addrs).map(|k| 0xc633_6400 + k).collect();
        Deterministic::new(Prefix::new(0x6440_0000, len), a, ports, pps)
    }

    #[test]
    fn most_that_fit() {
        // /24 over 4 addresses: 64 each, 64512 / 64 = 1008 -> 960 (multiple of 64).
        let d = det(24, 4, (1024, 65535), 0).unwrap();
        assert_eq!(d.ports_per_subscriber, 1008 / 64 * 64);
        // /16 over 1 address: 65536 share 64512 ports: 0 each.
        assert!(matches!(det(16, 1, (1024, 65535), 0), Err(DetError::DoesNotFit { most: 0, .. })));
        assert!(matches!(det(24, 4, (1024, 65535), 1024), Err(DetError::DoesNotFit { most: 960, .. })));
        assert_eq!(det(24, 4, (1024, 65535), 100), Err(DetError::Granule(100)));
    }

    #[test]
    fn round_trip_and_disjoint() {
        let d = det(22, 5, (1024, 65535), 0).unwrap();
        let mut seen = std::collections::HashSet::new();
        for i in 0..1024u32 {
            let inside = 0x6440_0000 + i;
            let r = d.forward(inside).unwrap();
            assert!(r.first >= 1024 && r.last - r.first + 1 == d.ports_per_subscriber);
            for port in [r.first, r.last, r.first + 7] {
                assert_eq!(d.reverse(r.public_ip, port), Some(inside));
            }
            assert!(seen.insert((r.public_ip, r.block)));
        }
        assert_eq!(d.forward(0x6440_0400), None);
        assert_eq!(d.reverse(0xc633_6400, 1023), None);
    }
}
