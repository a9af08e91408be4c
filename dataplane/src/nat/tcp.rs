//! TCP connection tracking for timeouts (RFC 5382 section 5, RFC 7857 section 2).
//!
//! The NAT does not police sequence numbers; it tracks just enough to pick
//! the timeout class: established (both SYNs and the handshake's final ACK,
//! no FIN or RST) or transitory (opening, half-closed, closing, reset).
//! "Orig" is the side that sent the first packet of the session.
#![forbid(unsafe_code)]

use super::session::class;
use crate::wire::tcp::{ACK, FIN, RST, SYN};

/// SYN seen from the originator.
pub const SYN_ORIG: u8 = 1;
/// SYN (with ACK) seen from the responder.
pub const SYN_REPLY: u8 = 2;
/// Handshake completed.
pub const ESTABLISHED: u8 = 4;
/// FIN seen from the originator.
pub const FIN_ORIG: u8 = 8;
/// FIN seen from the responder.
pub const FIN_REPLY: u8 = 16;
/// RST seen.
pub const RESET: u8 = 32;

/// State after the first packet of a session.
pub fn initial(flags: u8) -> u8 {
    if flags & RST != 0 {
        RESET
    } else if flags & SYN != 0 && flags & ACK == 0 {
        SYN_ORIG
    } else {
        // Picked up mid-stream (netfilter's loose mode): treated as opening
        // until the other side answers.
        SYN_ORIG | SYN_REPLY
    }
}

/// State after a packet with `flags` from the originator (`from_orig`) or the responder.
pub fn advance(state: u8, flags: u8, from_orig: bool) -> u8 {
    if flags & RST != 0 {
        return state | RESET;
    }
    let mut s = state;
    if flags & SYN != 0 {
        if from_orig && flags & ACK == 0 {
            if s & (RESET | FIN_ORIG | FIN_REPLY) != 0 {
                // A new connection reusing the tuple (TIME_WAIT reopen).
                return SYN_ORIG;
            }
            s |= SYN_ORIG;
        } else if !from_orig {
            s |= SYN_REPLY;
        }
    } else if flags & ACK != 0 && s & SYN_REPLY != 0 && (from_orig || s & SYN_ORIG != 0) {
        s |= ESTABLISHED;
    }
    if flags & FIN != 0 {
        s |= if from_orig { FIN_ORIG } else { FIN_REPLY };
    }
    s
}

/// Timeout class of a state.
pub fn class_of(state: u8) -> u8 {
    if state & (RESET | FIN_ORIG | FIN_REPLY) == 0 && state & ESTABLISHED != 0 {
        class::TCP_ESTABLISHED
    } else {
        class::TCP_TRANSITORY
    }
}

/// A short name for listings.
pub fn name(state: u8) -> &'static str {
    if state & RESET != 0 {
        "close"
    } else if state & FIN_ORIG != 0 && state & FIN_REPLY != 0 {
        "time_wait"
    } else if state & (FIN_ORIG | FIN_REPLY) != 0 {
        "fin_wait"
    } else if state & ESTABLISHED != 0 {
        "established"
    } else if state & SYN_REPLY != 0 {
        "syn_recv"
    } else {
        "syn_sent"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_way_handshake_then_close() {
        let mut s = initial(SYN);
        assert_eq!(class_of(s), class::TCP_TRANSITORY);
        s = advance(s, SYN | ACK, false);
        assert_eq!(name(s), "syn_recv");
        s = advance(s, ACK, true);
        assert_eq!(class_of(s), class::TCP_ESTABLISHED);
        s = advance(s, FIN | ACK, true);
        assert_eq!(class_of(s), class::TCP_TRANSITORY);
        assert_eq!(name(s), "fin_wait");
        s = advance(s, FIN | ACK, false);
        assert_eq!(name(s), "time_wait");
        // Reopen from TIME_WAIT.
        s = advance(s, SYN, true);
        assert_eq!(s, SYN_ORIG);
    }

    #[test]
    fn rst_is_transitory() {
        let s = advance(ESTABLISHED | SYN_ORIG | SYN_REPLY, RST, false);
        assert_eq!(class_of(s), class::TCP_TRANSITORY);
        assert_eq!(name(s), "close");
    }

    #[test]
    fn syn_ack_alone_does_not_establish() {
        let s = advance(initial(SYN), SYN | ACK, false);
        assert_eq!(class_of(s), class::TCP_TRANSITORY);
    }

    #[test]
    fn midstream_pickup_establishes_on_answer() {
        let s = initial(ACK);
        assert_eq!(class_of(s), class::TCP_TRANSITORY);
        assert_eq!(class_of(advance(s, ACK, false)), class::TCP_ESTABLISHED);
    }
}
