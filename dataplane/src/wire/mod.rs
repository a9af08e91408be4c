//! Packet views: checked, zero-copy windows over frame bytes.
//!
//! Invariant shared by every view: the `new_checked` constructor validates
//! every offset an accessor can reach, so no accessor can panic afterwards.
//! The views never index with `[]`; reads go through [`bytes`], which turns an
//! (impossible after the check) out-of-range read into 0 instead of a panic.
//! The fuzz targets in `dataplane/fuzz` hold that line.
#![forbid(unsafe_code)]

pub mod bytes;
pub mod checksum;
pub mod ethernet;
pub mod fragment;
pub mod icmp;
pub mod ipv4;
pub mod layout;
pub mod tcp;
pub mod udp;

/// Why a view refused a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than the fixed header, or than a length field says.
    Truncated,
    /// A field holds a value the protocol does not allow (version, IHL...).
    Malformed,
}

/// An IPv4 address as a host-order `u32` (what the engine hashes and stores).
pub type Ipv4 = u32;

/// Formats a host-order IPv4 address as dotted quad (tests, logs).
pub fn fmt_ipv4(a: Ipv4) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(a)
}
