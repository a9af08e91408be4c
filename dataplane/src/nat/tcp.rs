//! TCP connection tracking for timeouts (RFC 5382 section 5, RFC 7857 section 2).
//!
//! The NAT does not police sequence numbers; it tracks just enough to pick
//! the timeout class: established (both SYNs and the handshake's final ACK,
//! no FIN or RST) or transitory (opening, half-closed, closing, reset).
//! "Orig" is the side that sent the first packet of the session.
//!
//! Invariant: [`TcpState::STEADY`] is the one state in which a packet
//! without SYN, FIN or RST changes nothing ([`TcpState::unchanged_by`]); the
//! fast lane takes only sessions in it.
#![forbid(unsafe_code)]

use super::session::class;
use crate::wire::tcp::{ACK, FIN, RST, SYN};

/// A session's TCP state: a set of the events seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct TcpState(u8);

impl TcpState {
    /// No TCP state (UDP and ICMP sessions).
    pub const NONE: TcpState = TcpState(0);
    /// SYN seen from the originator.
    pub const SYN_ORIG: TcpState = TcpState(1);
    /// SYN (with ACK) seen from the responder.
    pub const SYN_REPLY: TcpState = TcpState(2);
    /// Handshake completed.
    pub const ESTABLISHED: TcpState = TcpState(4);
    /// FIN seen from the originator.
    pub const FIN_ORIG: TcpState = TcpState(8);
    /// FIN seen from the responder.
    pub const FIN_REPLY: TcpState = TcpState(16);
    /// RST seen.
    pub const RESET: TcpState = TcpState(32);
    /// Established and nothing else: both SYNs and the final ACK, no FIN or
    /// RST. The state of almost every packet of a connection.
    pub const STEADY: TcpState = TcpState(1 | 2 | 4);

    const fn has(self, s: TcpState) -> bool {
        self.0 & s.0 != 0
    }

    const fn with(self, s: TcpState) -> TcpState {
        TcpState(self.0 | s.0)
    }

    /// The raw bits (tests, listings).
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// State after the first packet of a session.
    pub fn initial(flags: u8) -> TcpState {
        if flags & RST != 0 {
            Self::RESET
        } else if flags & SYN != 0 && flags & ACK == 0 {
            Self::SYN_ORIG
        } else {
            // Picked up mid-stream (netfilter's loose mode): treated as opening
            // until the other side answers.
            Self::SYN_ORIG.with(Self::SYN_REPLY)
        }
    }

    /// True if a packet with `flags` leaves this state as it is without
    /// looking further: steady, and no SYN, FIN or RST.
    #[inline(always)]
    pub fn unchanged_by(self, flags: u8) -> bool {
        self == Self::STEADY && flags & (SYN | FIN | RST) == 0
    }

    /// State after a packet with `flags` from the originator (`from_orig`) or the responder.
    pub fn advance(self, flags: u8, from_orig: bool) -> TcpState {
        if flags & RST != 0 {
            return self.with(Self::RESET);
        }
        let closing = Self::RESET.with(Self::FIN_ORIG).with(Self::FIN_REPLY);
        let mut s = self;
        if flags & SYN != 0 {
            if from_orig && flags & ACK == 0 {
                if s.has(closing) {
                    // A new connection reusing the tuple (TIME_WAIT reopen).
                    return Self::SYN_ORIG;
                }
                s = s.with(Self::SYN_ORIG);
            } else if !from_orig {
                s = s.with(Self::SYN_REPLY);
            }
        } else if flags & ACK != 0 && s.has(Self::SYN_REPLY) && (from_orig || s.has(Self::SYN_ORIG)) {
            s = s.with(Self::ESTABLISHED);
        }
        if flags & FIN != 0 {
            s = s.with(if from_orig { Self::FIN_ORIG } else { Self::FIN_REPLY });
        }
        s
    }

    /// Timeout class of the state.
    pub fn class(self) -> u8 {
        let closing = Self::RESET.with(Self::FIN_ORIG).with(Self::FIN_REPLY);
        if !self.has(closing) && self.has(Self::ESTABLISHED) {
            class::TCP_ESTABLISHED
        } else {
            class::TCP_TRANSITORY
        }
    }

    /// A short name for listings (conntrack's).
    pub fn name(self) -> &'static str {
        if self.has(Self::RESET) {
            "close"
        } else if self.has(Self::FIN_ORIG) && self.has(Self::FIN_REPLY) {
            "time_wait"
        } else if self.has(Self::FIN_ORIG.with(Self::FIN_REPLY)) {
            "fin_wait"
        } else if self.has(Self::ESTABLISHED) {
            "established"
        } else if self.has(Self::SYN_REPLY) {
            "syn_recv"
        } else {
            "syn_sent"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_way_handshake_then_close() {
        let mut s = TcpState::initial(SYN);
        assert_eq!(s.class(), class::TCP_TRANSITORY);
        s = s.advance(SYN | ACK, false);
        assert_eq!(s.name(), "syn_recv");
        s = s.advance(ACK, true);
        assert_eq!(s.class(), class::TCP_ESTABLISHED);
        assert_eq!(s, TcpState::STEADY);
        s = s.advance(FIN | ACK, true);
        assert_eq!(s.class(), class::TCP_TRANSITORY);
        assert_eq!(s.name(), "fin_wait");
        s = s.advance(FIN | ACK, false);
        assert_eq!(s.name(), "time_wait");
        // Reopen from TIME_WAIT.
        s = s.advance(SYN, true);
        assert_eq!(s, TcpState::SYN_ORIG);
    }

    #[test]
    fn rst_is_transitory() {
        let s = TcpState::STEADY.advance(RST, false);
        assert_eq!(s.class(), class::TCP_TRANSITORY);
        assert_eq!(s.name(), "close");
    }

    #[test]
    fn syn_ack_alone_does_not_establish() {
        let s = TcpState::initial(SYN).advance(SYN | ACK, false);
        assert_eq!(s.class(), class::TCP_TRANSITORY);
    }

    #[test]
    fn midstream_pickup_establishes_on_answer() {
        let s = TcpState::initial(ACK);
        assert_eq!(s.class(), class::TCP_TRANSITORY);
        assert_eq!(s.advance(ACK, false).class(), class::TCP_ESTABLISHED);
    }

    #[test]
    fn only_the_steady_state_is_unchanged_by_a_plain_segment() {
        // Every state and every flag combination: where `unchanged_by` says
        // so, advancing really changes nothing, from either side.
        for bits in 0..64u8 {
            let s = TcpState(bits);
            for flags in 0..32u8 {
                if s.unchanged_by(flags) {
                    assert_eq!(s, TcpState::STEADY);
                    assert_eq!(s.advance(flags, true), s);
                    assert_eq!(s.advance(flags, false), s);
                }
            }
        }
        assert!(TcpState::STEADY.unchanged_by(ACK));
        assert!(!TcpState::STEADY.unchanged_by(ACK | FIN));
    }
}
