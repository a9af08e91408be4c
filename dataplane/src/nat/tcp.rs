//! TCP connection tracking for timeouts (RFC 5382 section 5, RFC 7857
//! section 2) and against forged resets (RFC 5961 section 3).
//!
//! [`TcpState`] tracks just enough to pick the timeout class: established
//! (both SYNs and the handshake's final ACK, no FIN or RST) or transitory
//! (opening, half-closed, closing, reset). "Orig" is the side that sent the
//! first packet of the session. A SYN on an established session changes
//! nothing (netfilter ignores it too); after a RST only a new handshake
//! makes the session established again.
//!
//! [`TcpWindow`] keeps, per side, the last sequence number and the largest
//! window seen, so a RST counts only if its sequence number is near what
//! the sender has sent, within the receiver's window (a blind attacker must
//! guess within a window out of 2^32), as netfilter's `tcp_in_window`
//! checks it; an out-of-window RST is dropped and changes nothing. Cost: 12
//! bytes per session (a table beside the sessions) and a byte of its cold
//! half (the two window scales, [`Scales`]); on the fast lane, one 4-byte
//! store per TCP packet.
//!
//! The window is kept as the segment carries it, 16 bits, in units of the
//! side's window scale in force (RFC 7323 section 2.2: a side's scale from
//! its SYN applies to its later segments once both SYNs carried the
//! option; a SYN's own window is never scaled), and scaled when a RST is
//! checked. A SYN's window is stored rounded up to those units; when a SYN
//! changes the scale in force, the stored windows are converted to the new
//! units, rounded up (and held at 65,535 units if a smaller scale would
//! need more: only a reopened connection's new SYN can lower it).
//!
//! Invariants: [`TcpState::STEADY`] is the one state in which a packet
//! without SYN, FIN or RST changes nothing ([`TcpState::unchanged_by`]); the
//! fast lane takes only sessions in it. A side's window is 0 until a packet
//! of that side was seen, and only then is its sequence number meaningful;
//! `win[d] << shift(d)` is at least the largest window side `d` advertised
//! (scaled) since its scale last changed.
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
    /// A connection the FTP ALG reads (`nat::alg`): with it the state is
    /// never [`TcpState::STEADY`], so the session never takes the fast lane
    /// and every packet is looked at. The timeout class ignores it.
    pub const ALG: TcpState = TcpState(64);

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

    /// This state, read by the FTP ALG ([`TcpState::ALG`]).
    pub const fn with_alg(self) -> TcpState {
        self.with(Self::ALG)
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
                    // A new connection reusing the tuple (TIME_WAIT reopen);
                    // the ALG keeps reading it.
                    return TcpState(Self::SYN_ORIG.0 | (self.0 & Self::ALG.0));
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

/// The least window the check assumes for a receiver (an unscaled
/// window's largest), and the largest segment a sender may have sent past
/// its last recorded sequence number (a TSO/GRO super-segment).
const MIN_WINDOW: u32 = 65_535;

/// What the RST check keeps of a TCP session, per side (index 0: packets
/// that arrived on the inside, 1: on the outside); each side's window
/// scale is in the session's cold half ([`Scales`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TcpWindow {
    /// The sequence number of the last packet seen from each side.
    pub seq: [u32; 2],
    /// The largest window each side advertised, in units of its scale in
    /// force ([`TcpWindow::window`] scales it); 0: nothing seen from that
    /// side yet.
    pub win: [u16; 2],
}

/// Each side's window scale from its SYN, a nibble a side (side 0 the low
/// one): 0 to 14 (RFC 7323 section 2.3: a larger one counts as 14), or 15
/// when the SYN carried no option (or none was seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scales(u8);

impl Scales {
    /// No option seen from either side.
    pub const NEW: Scales = Scales(0xff);
    const NONE: u8 = 15;

    /// Side `d`'s scale, `None` if its SYN carried no option.
    pub fn get(self, d: usize) -> Option<u8> {
        let n = (self.0 >> (4 * (d & 1))) & 15;
        (n != Self::NONE).then_some(n)
    }

    /// Sets side `d`'s scale (`None`: no option).
    fn set(&mut self, d: usize, ws: Option<u8>) {
        let n = ws.map_or(Self::NONE, |w| w.min(14));
        let at = 4 * (d & 1);
        self.0 = (self.0 & !(15 << at)) | (n << at);
    }

    /// The shift side `d`'s windows take (RFC 7323 section 2.2): its SYN's
    /// scale once both SYNs carried the option, else 0.
    fn shift(self, d: usize) -> u32 {
        match (self.get(0), self.get(1)) {
            (Some(_), Some(_)) => u32::from(self.get(d).unwrap_or(0)),
            _ => 0,
        }
    }
}

impl TcpWindow {
    /// A fresh session's: nothing seen.
    pub const NEW: TcpWindow = TcpWindow { seq: [0; 2], win: [0; 2] };

    /// The largest window side `d` advertised, scaled; 0 if nothing seen.
    pub fn window(&self, sc: Scales, d: usize) -> u32 {
        u32::from(self.win.get(d).copied().unwrap_or(0)) << sc.shift(d)
    }

    /// Records a packet from side `d`: its sequence number, its window
    /// (scaled as RFC 7323 section 2.2 says: never on a SYN, and only when
    /// both SYNs carried the option) and, on a SYN, its window scale.
    pub fn record(&mut self, sc: &mut Scales, d: usize, flags: u8, seq: u32, window: u16, wscale: Option<u8>) {
        let syn = flags & SYN != 0;
        if syn {
            let ws = wscale.map(|w| w.min(14));
            if sc.get(d) != ws {
                self.rescale(sc, d, ws);
            }
        }
        // In units of the side's scale: a SYN's unscaled window rounded up.
        let w = if syn {
            let s = sc.shift(d);
            (u32::from(window) + (1 << s) - 1) >> s
        } else {
            u32::from(window)
        };
        let w = u16::try_from(w.max(1)).unwrap_or(u16::MAX);
        if let Some(x) = self.win.get_mut(d) {
            *x = (*x).max(w);
        }
        if let Some(x) = self.seq.get_mut(d) {
            *x = seq;
        }
    }

    /// Sets side `d`'s scale to `ws`, converting both sides' stored
    /// windows to the units of the scales now in force (rounded up, held
    /// at 65,535 units). Out of line: only SYNs that change a scale.
    #[cold]
    fn rescale(&mut self, sc: &mut Scales, d: usize, ws: Option<u8>) {
        let old = [sc.shift(0), sc.shift(1)];
        sc.set(d, ws);
        for (x, o) in old.into_iter().enumerate() {
            let n = sc.shift(x);
            if let Some(win) = self.win.get_mut(x) {
                let scaled = u64::from(*win) << o;
                let units = (scaled + (1 << n) - 1) >> n;
                *win = u16::try_from(units).unwrap_or(u16::MAX);
            }
        }
    }

    /// True if a RST from side `d` with `seq` and `ack` is in window: its
    /// sequence number within the receiver's window of what `d` last sent
    /// (below by a window, above by a window and a segment); or, when `d`
    /// has sent nothing yet (a RST answering a SYN), acknowledging what the
    /// other side sent (RFC 9293 section 3.10.7.3). With nothing seen from
    /// either side there is nothing to check against, and it counts.
    pub fn accepts_rst(&self, sc: Scales, d: usize, flags: u8, seq: u32, ack: u32) -> bool {
        let r = 1 - d.min(1);
        let (win_d, win_r) = (self.window(sc, d), self.window(sc, r));
        let (seq_d, seq_r) = (self.seq.get(d).copied().unwrap_or(0), self.seq.get(r).copied().unwrap_or(0));
        let wr = win_r.max(MIN_WINDOW);
        if win_d == 0 {
            return win_r == 0 || (flags & ACK != 0 && ack.wrapping_sub(seq_r) <= wr);
        }
        // seq - seq_d in [-wr, wr + MIN_WINDOW], in sequence space.
        seq.wrapping_sub(seq_d).wrapping_add(wr) <= 2 * wr + MIN_WINDOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_table_stays_12_bytes_a_session() {
        assert_eq!(std::mem::size_of::<TcpWindow>(), 12);
    }

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
    fn an_alg_connection_is_never_steady_and_keeps_its_class() {
        let mut s = TcpState::initial(SYN).with_alg();
        s = s.advance(SYN | ACK, false).advance(ACK, true);
        assert_eq!(s.class(), class::TCP_ESTABLISHED);
        assert_ne!(s, TcpState::STEADY);
        assert!(!s.unchanged_by(ACK), "every packet is looked at");
        assert_eq!(s.name(), "established");
        let reopened = s.advance(FIN, true).advance(FIN, false).advance(SYN, true);
        assert_eq!(reopened, TcpState::SYN_ORIG.with_alg(), "a reopened connection keeps the ALG");
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

    #[test]
    fn a_rst_counts_only_near_what_its_sender_sent() {
        let (mut w, mut sc) = (TcpWindow::NEW, Scales::NEW);
        w.record(&mut sc, 0, SYN, 1_000, 64_240, Some(7));
        w.record(&mut sc, 1, SYN | ACK, 9_000, 65_160, Some(7));
        w.record(&mut sc, 0, ACK, 1_001, 502, None); // 502 << 7 = 64 256
        w.record(&mut sc, 1, ACK, 9_001, 4_000, None); // 4000 << 7 = 512 000
        assert_eq!([w.window(sc, 0), w.window(sc, 1)], [64_256, 512_000]);
        assert_eq!(w.win, [502, 4_000], "kept unscaled");
        // From the inside: the receiver (outside) advertised 512 000.
        assert!(w.accepts_rst(sc, 0, RST, 1_001, 0), "exactly the next sequence number");
        assert!(w.accepts_rst(sc, 0, RST, 1_001 + 500_000, 0), "within the receiver's window");
        assert!(!w.accepts_rst(sc, 0, RST, 1_001 + 700_000, 0), "beyond it");
        assert!(!w.accepts_rst(sc, 0, RST, 1_001u32.wrapping_sub(600_000), 0), "far behind");
        assert!(!w.accepts_rst(sc, 0, RST, 0x8000_0000, 0), "a blind guess");
        // From the outside: the inside's window is 64 256, floored at 65 535.
        assert!(w.accepts_rst(sc, 1, RST | ACK, 9_001 + 60_000, 0));
        assert!(!w.accepts_rst(sc, 1, RST | ACK, 9_001 + 200_000, 0));
    }

    #[test]
    fn a_rst_answering_a_syn_must_acknowledge_it() {
        let (mut w, mut sc) = (TcpWindow::NEW, Scales::NEW);
        w.record(&mut sc, 0, SYN, 77, 64_240, Some(7));
        assert!(w.accepts_rst(sc, 1, RST | ACK, 0, 78), "the closed port's answer");
        assert!(!w.accepts_rst(sc, 1, RST | ACK, 0, 5_000_000), "acknowledges nothing sent");
        assert!(!w.accepts_rst(sc, 1, RST, 0, 78), "no ACK: nothing to check it by");
        // Nothing seen at all: nothing to check against.
        assert!(TcpWindow::NEW.accepts_rst(Scales::NEW, 1, RST, 123, 0));
    }

    #[test]
    fn a_changed_scale_converts_the_stored_windows() {
        let (mut w, mut sc) = (TcpWindow::NEW, Scales::NEW);
        w.record(&mut sc, 0, SYN, 1, 64_240, Some(7));
        assert_eq!(w.window(sc, 0), 64_240, "one SYN: no scaling in force yet");
        w.record(&mut sc, 1, SYN | ACK, 1, 65_160, Some(7));
        // Now in units of 128, rounded up: never below what was advertised.
        assert_eq!(w.win, [502, 510]);
        assert_eq!([w.window(sc, 0), w.window(sc, 1)], [64_256, 65_280]);
        w.record(&mut sc, 1, ACK, 2, 4_000, None);
        assert_eq!(w.window(sc, 1), 512_000);
        // A reopening SYN without the option: unscaled from here on; the
        // old window is kept as far as 16 bits hold it.
        w.record(&mut sc, 0, SYN, 9, 1_000, None);
        assert_eq!([sc.get(0), sc.get(1)], [None, Some(7)]);
        assert_eq!([w.window(sc, 0), w.window(sc, 1)], [64_256, 65_535]);
        // Scaling again (a SYN with the option): 65 535 units of 1 in units of 2^3.
        w.record(&mut sc, 0, SYN, 10, 100, Some(3));
        assert_eq!(w.win, [8_032, 512]);
        assert_eq!([w.window(sc, 0), w.window(sc, 1)], [64_256, 65_536]);
    }

    #[test]
    fn each_side_keeps_its_own_scale_and_a_larger_one_counts_as_14() {
        let (mut w, mut sc) = (TcpWindow::NEW, Scales::NEW);
        w.record(&mut sc, 1, SYN | ACK, 1, 1_000, Some(15));
        assert_eq!([sc.get(0), sc.get(1)], [None, Some(14)]);
        w.record(&mut sc, 0, SYN, 1, 1_000, Some(0));
        assert_eq!([sc.get(0), sc.get(1)], [Some(0), Some(14)]);
        w.record(&mut sc, 1, ACK, 2, 1, None);
        assert_eq!(w.window(sc, 1), 1 << 14);
    }

    #[test]
    fn windows_scale_only_when_both_syns_carry_the_option() {
        let (mut w, mut sc) = (TcpWindow::NEW, Scales::NEW);
        w.record(&mut sc, 0, SYN, 1, 1_000, Some(7));
        w.record(&mut sc, 1, SYN | ACK, 1, 1_000, None);
        w.record(&mut sc, 0, ACK, 2, 1_000, None);
        assert_eq!(w.window(sc, 0), 1_000, "the other SYN had no scale: unscaled");
        let (mut w, mut sc) = (TcpWindow::NEW, Scales::NEW);
        w.record(&mut sc, 0, SYN, 1, 1_000, Some(7));
        w.record(&mut sc, 1, SYN | ACK, 1, 1_000, Some(2));
        w.record(&mut sc, 0, ACK, 2, 1_000, None);
        w.record(&mut sc, 1, ACK, 2, 1_000, None);
        assert_eq!([w.window(sc, 0), w.window(sc, 1)], [128_000, 4_000]);
    }
}
