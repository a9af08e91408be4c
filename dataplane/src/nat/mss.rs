//! TCP MSS clamping (netfilter's `TCPMSS --set-mss` and
//! `--clamp-mss-to-pmtu`; VPP's `nat_mss_clamping`; IP-MASQ HOWTO 7.15):
//! a rule's `mss_clamp` lowers the MSS option (RFC 9293 section 3.7.1) of
//! the SYN and the SYN/ACK of its TCP connections, in both directions, to
//! a size, or to the outgoing interface's MTU less 40 (`auto`), so hosts
//! behind a link with a smaller MTU (PPPoE, tunnels) never send segments
//! that do not fit.
//!
//! Invariants: an MSS is only ever lowered, never raised, and a segment
//! without the option is left as it is (netfilter adds none either); the
//! checksum is updated incrementally (RFC 1624), so a bad one stays bad;
//! only SYN segments are looked at, and those never take the fast lane
//! (they change TCP state), so established traffic pays nothing.
//! The FTP ALG (`super::alg`) hangs off the same word and hook.
//!
//! What a TCP session's rule added lives in [`Cold::ext`](session::Cold::ext) (a word
//! beside the RST check's), read by the general path only: `ext` below.
#![forbid(unsafe_code)]

use super::*;
use crate::wire::tcp::SYN;

/// The encoding of [`Cold::ext`](session::Cold::ext).
pub(super) mod ext {
    /// The FTP ALG is on; the low 15 bits are its slot (`super::alg`),
    /// which keeps the session's clamping.
    pub const ALG: u16 = 0x8000;
    /// Without [`ALG`]: clamping to the outgoing MTU less 40; below it, a
    /// fixed MSS, and 0 for none.
    pub const AUTO: u16 = 0x7fff;
}

/// A rule's clamping as the session keeps it (0: none).
pub(super) fn encode(m: MssClamp) -> u16 {
    match m {
        MssClamp::Off => 0,
        MssClamp::Auto => ext::AUTO,
        // Config limits sizes to 14 bits; a larger one would read as AUTO.
        MssClamp::Fixed(n) => n.min(ext::AUTO - 1),
    }
}

impl Engine {
    /// The options of the rule at `rule` (defaults past the end).
    pub(super) fn rule_options(&self, rule: usize) -> RuleOptions {
        self.params.rule_options.get(rule).copied().unwrap_or_default()
    }

    /// Pins what the rule at `rule` adds to a new TCP session in its
    /// [`Cold::ext`](session::Cold::ext) (after `install`, which resets it). Out of line:
    /// the new-session path stays as it was.
    #[inline(never)]
    pub(super) fn set_rule_ext(&mut self, idx: u32, rule: usize) {
        let o = self.rule_options(rule);
        if o == RuleOptions::default() {
            return;
        }
        self.set_ext(idx, o);
    }

    /// Pins `o` in a new TCP session's [`Cold::ext`](session::Cold::ext): a rule's, or
    /// the FTP ALG of a forward or 1:1 static host.
    #[inline(never)]
    pub(super) fn set_ext(&mut self, idx: u32, o: RuleOptions) {
        let mut e = encode(o.mss_clamp);
        if o.ftp_alg {
            e = self.alg_open(idx, e);
            // Never steady, so never the fast lane: the ALG reads every packet.
            if let Some(s) = self.sessions.hot.get_mut(idx as usize) {
                s.tcp = s.tcp.with_alg();
            }
        }
        if let Some(c) = self.sessions.cold.get_mut(idx as usize) {
            c.ext = e;
        }
    }

    /// What a TCP session's rule added.
    pub(super) fn tcp_ext(&self, idx: u32) -> u16 {
        self.sessions.cold.get(idx as usize).map_or(0, |c| c.ext)
    }

    /// A TCP packet of a session with something in its `ext` (not 0),
    /// before its NAT rewrite: the clamping of a SYN, and the ALG. Out of
    /// line: the general path of every other packet stays as it was.
    #[cold]
    #[inline(never)]
    pub(super) fn tcp_ext_hook(&mut self, e: u16, idx: u32, side: Side, now: u32, frame: &mut [u8], p: &Parsed) {
        let mss = if e & ext::ALG != 0 { self.alg_mss(e) } else { e };
        if mss != 0 && p.tcp_flags & SYN != 0 {
            self.clamp_mss(mss, side, frame, p);
        }
        if e & ext::ALG != 0 {
            self.alg_packet(e & !ext::ALG, idx, side, now, frame, p);
        }
    }

    /// Lowers the MSS of a SYN or SYN/ACK that arrived on `side` to what
    /// `mss` (an [`ext`] size or [`ext::AUTO`]) allows on the way out.
    fn clamp_mss(&mut self, mss: u16, side: Side, frame: &mut [u8], p: &Parsed) {
        let max = if mss == ext::AUTO {
            let mtu = self.params.mtu.get(side.opposite().index()).copied().unwrap_or(1500);
            mtu.saturating_sub(40).max(88)
        } else {
            mss
        };
        let Some(l4) = frame.get_mut(usize::from(p.l4)..) else { return };
        let Ok(mut t) = TcpPacket::new_checked(l4) else { return };
        if t.clamp_mss(max).is_some() {
            self.counters.mss_clamped += 1;
        }
    }
}
