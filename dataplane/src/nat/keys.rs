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
use crate::wire::bytes::{Net16, Net32};

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
    imap_wire(seed, Net32::new(inside).le(), Net16::new(iport).le(), proto)
}

/// [`imap`] of an endpoint as a packet carries it: the address and port
/// in network byte order read as little-endian words (`Net32::le`, the
/// words `parse::FastKey` holds and a session stores), so neither the
/// batch nor a stored session swaps them to hash.
#[inline(always)]
pub fn imap_wire(seed: u64, inside_le: u32, iport_le: u16, proto: L4) -> u64 {
    hash3(seed, inside_le, iport_le, u16::from(proto.code()), 0)
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
    imap_wire(seed, s.inside_ip.le(), s.inside_port.le(), s.proto)
}

/// [`omap`] of a stored (mapped) session.
pub fn session_omap(seed: u64, s: &Session) -> u64 {
    omap(seed, s.public_ip.get(), s.public_port.get(), s.proto)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::parse::fast_lookup_key;
    use crate::testing::frames::{ip, udp};

    /// The mapping key of an endpoint is one hash whichever form it comes
    /// in: host-order values (the general path's), a packet's words (the
    /// batch's) and a stored session's (a removal's).
    #[test]
    fn an_endpoints_mapping_key_is_the_same_from_a_packet_a_session_and_values() {
        let (inside, iport) = (ip("100.64.0.7"), 40_123);
        let k = fast_lookup_key(&udp(inside, iport, ip("198.51.100.1"), 53, b"q")).unwrap();
        let s = Session { inside_ip: inside.into(), inside_port: iport.into(), proto: L4::Udp, ..Session::default() };
        let want = imap(7, inside, iport, L4::Udp);
        assert_eq!(imap_wire(7, k.src_le(), k.sport_le(), k.proto()), want);
        assert_eq!(session_imap(7, &s), want);
        assert_ne!(imap(7, inside, iport + 1, L4::Udp), want);
    }
}
