//! The transport protocols the engine translates, as one type for every use
//! of them: the IP protocol number a packet carries (IANA "Assigned
//! Internet Protocol Numbers": ICMP 1, TCP 6, UDP 17), the code a session
//! stores and the lookup keys hash, and the index of per-protocol arrays
//! (the port bitmaps of `ports`: each protocol has its own port space).
//! ICMP means ICMP queries (echo): their identifier plays the port (RFC 5508
//! section 3.1). [`L4::Other`] is every other IP protocol (GRE, ESP, SCTP...),
//! translated by address only (`nat::other`): it has no port space, and its
//! sessions keep the IP protocol number in their port fields, so the same
//! index keys tell GRE from ESP.
//!
//! Invariant: the discriminants are the codes (TCP 0, UDP 1, ICMP 2, other
//! 3) and never change: they are hashed into every index key, and the fast
//! lane packs them into `parse::FastKey` as it reads a packet. Only the
//! protocols with ports ([`L4::ALL`]) index per-protocol arrays.
#![forbid(unsafe_code)]

use crate::wire::ipv4::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};

/// A protocol the NAT translates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum L4 {
    /// TCP. Also the default, only so that records with no protocol yet (a
    /// free session slot, a parse result of another protocol) have one;
    /// nothing reads it there.
    #[default]
    Tcp = 0,
    /// UDP.
    Udp = 1,
    /// ICMP queries (the echo identifier is the port).
    Icmp = 2,
    /// Any other IP protocol, by address only (the protocol number stands
    /// in for both ports). Never made by [`L4::from_ip_proto`].
    Other = 3,
}

impl L4 {
    /// Every protocol with ports, in code order.
    pub const ALL: [L4; 3] = [L4::Tcp, L4::Udp, L4::Icmp];
    /// How many there are: the length of a per-protocol array (port
    /// spaces; [`L4::Other`] has none).
    pub const COUNT: usize = Self::ALL.len();

    /// The protocol of an IP protocol number, if the NAT translates it.
    #[inline(always)]
    pub const fn from_ip_proto(n: u8) -> Option<L4> {
        match n {
            PROTO_TCP => Some(L4::Tcp),
            PROTO_UDP => Some(L4::Udp),
            PROTO_ICMP => Some(L4::Icmp),
            _ => None,
        }
    }

    /// The IP protocol number (0 for [`L4::Other`], whose number a session
    /// keeps in its port fields).
    #[inline(always)]
    pub const fn ip_proto(self) -> u8 {
        match self {
            L4::Tcp => PROTO_TCP,
            L4::Udp => PROTO_UDP,
            L4::Icmp => PROTO_ICMP,
            L4::Other => 0,
        }
    }

    /// The code: what a session stores and a lookup key hashes.
    #[inline(always)]
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The position in a per-protocol array (below [`L4::COUNT`]).
    #[inline(always)]
    pub const fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_protocol_numbers_round_trip() {
        for p in L4::ALL {
            assert_eq!(L4::from_ip_proto(p.ip_proto()), Some(p));
        }
        assert_eq!([6, 17, 1].map(L4::from_ip_proto), [Some(L4::Tcp), Some(L4::Udp), Some(L4::Icmp)]);
        let translated = (0..=u8::MAX).filter(|&n| L4::from_ip_proto(n).is_some()).count();
        assert_eq!(translated, L4::COUNT, "GRE, SCTP and the rest are not translated");
    }

    #[test]
    fn codes_are_the_hashed_ones_and_index_arrays() {
        // Hashed into every key and packed by the fast lane: fixed.
        assert_eq!(L4::ALL.map(L4::code), [0, 1, 2]);
        assert_eq!(L4::ALL.map(L4::index), [0, 1, 2]);
        assert_eq!(L4::Other.code(), 3);
        assert!(L4::Other.index() >= L4::COUNT, "no port space");
        assert_eq!(std::mem::size_of::<L4>(), 1);
    }
}
