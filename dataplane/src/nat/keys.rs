//! The four index keys, each defined once: the engine's lookups and the
//! rehash closures of `Index::remove` (which cannot borrow the engine) both
//! use these. A stored session's flow keys ([`session_i2o`],
//! [`session_o2i`]) hash its key words as they lie, the words [`i2o`] and
//! [`o2i`] pack from a tuple (`hash::wire_words`): the session tests hold
//! the two equal.
#![forbid(unsafe_code)]

use super::hash::{hash3, hash5, hash_ports};
use super::l4::L4;
use super::ports::Ports;
use super::session::{flag, Session};
use super::{O2I_SALT, OMAP_SALT};

/// Inside-to-outside lookup key.
#[inline(always)]
pub fn i2o(seed: u64, inside: u32, iport: u16, remote: u32, rport: u16, proto: L4) -> u64 {
    hash5(seed, inside, iport, remote, rport, u16::from(proto.code()))
}

/// Outside-to-inside lookup key, hashed in packet order (remote first) so
/// the fast lane can hash its packed key as it is.
#[inline(always)]
pub fn o2i(seed: u64, public: u32, pport: u16, remote: u32, rport: u16, proto: L4) -> u64 {
    hash5(seed ^ O2I_SALT, remote, rport, public, pport, u16::from(proto.code()))
}

/// Mapping head by inside endpoint and pool. The pool is not hashed (the
/// look-up's match checks it): an endpoint's mappings in every pool share
/// a home slot, so the batch can ask for it before a rule has picked the
/// pool (`nat::batch`). An endpoint mapped in several pools at once (rules
/// that send one source to different pools by destination) is rare.
#[inline(always)]
pub fn imap(seed: u64, inside: u32, iport: u16, proto: L4) -> u64 {
    hash3(seed, inside, iport, u16::from(proto.code()), 0)
}

/// Mapping head by public endpoint.
pub fn omap(seed: u64, public: u32, pport: u16, proto: L4) -> u64 {
    hash3(seed ^ OMAP_SALT, public, pport, u16::from(proto.code()), 0)
}

/// A session's public address (its own for no-NAT sessions).
#[inline(always)]
pub fn public_ip(ports: &Ports, s: &Session) -> u32 {
    if s.flags & flag::NO_NAT != 0 {
        s.inside_ip.get()
    } else {
        ports.ip_of(s.addr())
    }
}

/// The pool of a session's public address.
pub fn pool_of(ports: &Ports, s: &Session) -> u16 {
    ports.addrs.get(usize::from(s.addr())).map_or(0, |a| a.pool)
}

/// [`i2o`] of a stored session.
pub fn session_i2o(seed: u64, s: &Session) -> u64 {
    // The session holds the key as a packet carries it (see `Session`).
    hash_ports(seed, s.proto.code(), s.addr_word::<true>(), s.port_pair::<true>())
}

/// [`o2i`] of a stored session.
pub fn session_o2i(seed: u64, s: &Session) -> u64 {
    hash_ports(seed ^ O2I_SALT, s.proto.code(), s.addr_word::<false>(), s.port_pair::<false>())
}

/// [`imap`] of a stored (mapped) session.
pub fn session_imap(seed: u64, s: &Session) -> u64 {
    imap(seed, s.inside_ip.get(), s.inside_port.get(), s.proto)
}

/// [`omap`] of a stored (mapped) session.
pub fn session_omap(seed: u64, s: &Session) -> u64 {
    omap(seed, s.public_ip.get(), s.public_port.get(), s.proto)
}
