//! The FTP ALG (IP-MASQ HOWTO 7.16; netfilter's `nf_conntrack_ftp`,
//! `nf_nat_ftp` and `nf_conntrack_seqadj`), off by default (RFC 4787
//! REQ-10) and on per rule (`alg: [ftp]`) for the TCP connections the
//! rule translates outbound: an inside client's FTP control connection;
//! and per forward or 1:1 static entry for an inside server's (and a
//! static host's as a client).
//!
//! - The client's `PORT` and `EPRT` (RFC 959, RFC 2428) name its inside
//!   address and a port it listens on. The ALG makes that port reachable:
//!   it opens an *expectation*, a session of the subscriber's mapping for
//!   (inside address, that port) towards the server's address and port 0
//!   (no real TCP segment has port 0, so nothing matches it but the
//!   mapping), which the ordinary machinery gives a public port (the same
//!   when free, EIM). The line is rewritten to name the public address and
//!   that port. The server's data connection (active mode, from its port
//!   20 or any other) reaches that public port, finds the mapping and is
//!   admitted by the expectation whatever the pool's filtering, and is
//!   translated to the client. The expectation lasts the transitory TCP
//!   timeout (`tcp_transitory_secs`).
//! - The server's `227` (PASV) and `229` (EPSV) replies are read and
//!   counted; with the client inside, its data connection goes out as any
//!   other connection and nothing needs rewriting.
//! - A server inside (netfilter's `nf_nat_ftp` on DNAT), its control
//!   connection inbound through a forward: its `227` names its inside
//!   address and a data port, its `229` the port. The ALG opens the same
//!   expectation, a session of the server's mapping for (its address, that
//!   port) towards the client's address and port 0, and the reply names the
//!   mapping's public address and port. The client's data connection finds
//!   the mapping, is admitted by the expectation and translated to the
//!   server. A `229` names no address (RFC 2428 section 3): the mapping
//!   must be on the control connection's address, or nothing is changed
//!   (`ftp_alg_failed`). An ALG forward's sessions live with the server's
//!   worker (`Engine::forward_owner`), where its mappings are.
//! - A 1:1 static host (either way): its every port is public on its own
//!   address, so a line is rewritten to that address with the same port,
//!   and no expectation is needed.
//! - The outside side's lines (a client's `PORT` to a server inside, a
//!   server's `227` to a client inside) name the outside host's own
//!   endpoint and are left alone.
//! - A rewritten line may change length. From then on the sequence numbers
//!   of that direction and the acknowledgments (and SACK blocks, RFC 2018)
//!   of the other are shifted (netfilter's seqadj: one correction point and
//!   the offsets before and after it, per direction). The RST window check
//!   ([`super::tcp::TcpWindow`]) records every packet as it arrived, before
//!   any shift, so it compares numbers of one side's own space.
//! - A packet that grows past the end of its frame's buffer is built in
//!   one of [`GROWN_SLOTS`] buffers of the engine; the worker copies it into
//!   its frame, which has the room ([`Engine::grown`]).
//!
//! Invariants: a control packet is never dropped for the ALG's sake (a
//! line it cannot read is counted, `ftp_alg_unparsed`, and forwarded as it
//! is); every change is folded into the checksums incrementally (RFC 1624),
//! so a bad checksum stays bad; a session with the ALG never takes the fast
//! lane (its TCP state carries [`TcpState::ALG`], so it is never steady),
//! and sessions without it never look here (their `Cold::ext` has no
//! ALG bit). The ALG sees a packet as it arrived, before its NAT rewrite
//! (from the RST window check, `Engine::tcp_window`).
#![forbid(unsafe_code)]

pub mod ftp;

use super::mss::ext;
use super::*;
use crate::wire::ipv4;
use crate::wire::tcp::{field as tcpf, find_option, option};

/// FTP control connections with the ALG a worker tracks at once; more are
/// translated without it (`ftp_alg_failed`).
pub const ALG_SLOTS: usize = 2048;

/// FTP's control port (RFC 959): a static host's ALG reads connections to
/// it only.
pub const FTP_CONTROL_PORT: u16 = 21;

/// Packets per batch that may grow past their frame's buffer.
pub const GROWN_SLOTS: usize = 2;

/// The longest packet a grown buffer holds (an AF_XDP frame is 2 KiB).
pub const GROWN_MAX: usize = 2048;

/// One direction's sequence adjustment (netfilter's `nf_ct_seqadj`):
/// sequence numbers after `pos` move by `after`, the others by `before`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SeqAdj {
    pos: u32,
    before: i32,
    after: i32,
}

/// `a` comes after `b` in sequence space (RFC 9293 section 3.4).
fn after(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) < 0
}

impl SeqAdj {
    /// The shift of a sequence number of this direction.
    fn seq_offset(&self, seq: u32) -> i32 {
        if after(seq, self.pos) {
            self.after
        } else {
            self.before
        }
    }

    /// The shift of an acknowledgment (or SACK edge) of the other
    /// direction, which acknowledges shifted numbers.
    fn ack_offset(&self, ack: u32) -> i32 {
        if after(ack.wrapping_sub(self.before as u32), self.pos) {
            self.after
        } else {
            self.before
        }
    }

    /// A packet whose sequence number is `seq` changed length by `delta`.
    /// A retransmission of an earlier change changes nothing.
    fn record(&mut self, seq: u32, delta: i32) {
        if self.before == self.after || after(seq, self.pos) {
            self.before = self.after;
            self.after = self.after.wrapping_add(delta);
            self.pos = seq;
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// The session (NIL: free).
    session: u32,
    /// The session's MSS clamping ([`ext`] encoding).
    mss: u16,
    /// By the side the packets arrive on.
    adj: [SeqAdj; 2],
}

/// The ALG's tables: a slot per control connection, and the grown packets.
pub(crate) struct Alg {
    slots: Vec<Slot>,
    free: Vec<u16>,
    grown: Vec<u8>,
    /// Per grown buffer: the frame's index in the batch (`usize::MAX`:
    /// none) and the packet's length.
    grown_at: [(usize, usize); GROWN_SLOTS],
    n_grown: usize,
    /// The index of the first frame of the chunk being processed.
    pub(super) chunk_base: usize,
    /// The index in its chunk of the frame being processed (the general
    /// path sets it before each frame: a packet grown then is that
    /// frame's).
    pub(super) frame: usize,
}

impl Alg {
    pub(crate) fn new(slots: usize) -> Self {
        let n = slots.min(usize::from(ext::ALG - 1));
        Self {
            slots: vec![Slot { session: NIL, ..Slot::default() }; n],
            free: (0..n).rev().filter_map(|i| u16::try_from(i).ok()).collect(),
            grown: vec![0; GROWN_SLOTS * GROWN_MAX],
            grown_at: [(usize::MAX, 0); GROWN_SLOTS],
            n_grown: 0,
            chunk_base: 0,
            frame: usize::MAX,
        }
    }

    /// Forgets last batch's grown packets.
    #[inline(always)]
    pub(super) fn new_batch(&mut self) {
        self.n_grown = 0;
        self.frame = usize::MAX;
    }

    pub(super) fn memory_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>() + self.free.len() * 2 + self.grown.len()
    }
}

/// The one's-complement sum of `data` lying at an odd (`odd`) or even
/// offset from the start of the checksummed data (RFC 1071 section 2(B):
/// at an odd offset every word is byte-swapped).
fn sum_at(data: &[u8], odd: bool) -> u16 {
    let s = fold(sum(data));
    if odd {
        s.swap_bytes()
    } else {
        s
    }
}

/// The checksum delta of replacing the bytes `old` by `new` at offset `at`
/// of the checksummed data.
fn replace_delta(old: &[u8], new: &[u8], at: usize) -> u16 {
    crate::wire::checksum::delta16(sum_at(old, at % 2 == 1), sum_at(new, at % 2 == 1))
}

/// Adds `off` to the 32-bit field at `at` of the TCP segment `t`, folding
/// the change into its checksum.
fn shift32(t: &mut [u8], at: usize, off: i32) {
    if off == 0 {
        return;
    }
    let old = u32_at(t, at);
    let new = old.wrapping_add(off as u32);
    set_u32(t, at, new);
    let d = replace_delta(&old.to_be_bytes(), &new.to_be_bytes(), at);
    let c = u16_at(t, crate::wire::tcp::CHECKSUM);
    set_u16(t, crate::wire::tcp::CHECKSUM, apply_delta(c, d));
}

impl Engine {
    /// Gives a new TCP session the ALG; returns its [`Cold::ext`]
    /// (`mss`: its clamping, kept in the slot). No slot free: no ALG.
    pub(super) fn alg_open(&mut self, idx: u32, mss: u16) -> u16 {
        let Some(k) = self.alg.free.pop() else {
            self.counters.ftp_alg_failed += 1;
            return mss;
        };
        if let Some(s) = self.alg.slots.get_mut(usize::from(k)) {
            *s = Slot { session: idx, mss, adj: [SeqAdj::default(); 2] };
        }
        ext::ALG | k
    }

    /// The MSS clamping of an ALG session ([`ext`] encoding).
    pub(super) fn alg_mss(&self, e: u16) -> u16 {
        self.alg.slots.get(usize::from(e & !ext::ALG)).map_or(0, |s| s.mss)
    }

    /// A session goes: its slot is free again.
    pub(super) fn alg_close(&mut self, idx: u32) {
        let e = self.tcp_ext(idx);
        if e & ext::ALG == 0 {
            return;
        }
        let k = e & !ext::ALG;
        if let Some(s) = self.alg.slots.get_mut(usize::from(k)) {
            if s.session == idx {
                s.session = NIL;
                self.alg.free.push(k);
            }
        }
        if let Some(c) = self.sessions.cold.get_mut(idx as usize) {
            c.ext = 0;
        }
    }

    /// True if the mapping chain from `head` holds an expectation the ALG
    /// opened for `remote` (its data connection is admitted whatever the
    /// pool's filtering).
    pub(super) fn alg_expects(&self, head: u32, remote: u32) -> bool {
        let mut i = head;
        let mut n = 0;
        while i != NIL && n < 4096 {
            let s = self.sessions.get(i);
            if s.remote_ip == remote.into() && s.remote_port == Net16::ZERO && s.proto == L4::Tcp {
                return true;
            }
            i = self.sessions.cold.get(i as usize).map_or(NIL, Cold::map_next);
            n += 1;
        }
        false
    }

    /// The packets the ALG grew past their frames in the last
    /// [`Engine::process`]: each frame's index in the batch and the whole
    /// new frame (Ethernet header as the engine left it) to copy into it.
    pub fn grown(&self) -> impl Iterator<Item = (usize, &[u8])> {
        let a = &self.alg;
        a.grown_at.iter().take(a.n_grown).enumerate().filter_map(move |(k, &(i, len))| {
            let start = k * GROWN_MAX;
            a.grown.get(start..start + len).filter(|_| i != usize::MAX).map(|b| (i, b))
        })
    }

    /// A packet of an ALG session (slot `k`), before its NAT rewrite.
    pub(super) fn alg_packet(&mut self, k: u16, idx: u32, side: Side, now: u32, frame: &mut [u8], p: &Parsed) {
        let s = self.sessions.get(idx);
        if s.flags & flag::HAIRPIN != 0 {
            return;
        }
        let Some(slot) = self.alg.slots.get(usize::from(k)).copied().filter(|x| x.session == idx) else { return };
        // The segment: its IP total length and TCP header checked.
        let (l3, l4) = (usize::from(p.l3), usize::from(p.l4));
        let total = frame.get(l3..).map_or(0, |ip| usize::from(u16_at(ip, ipv4::field::TOTAL_LEN)));
        let end = l3 + total;
        let Some(t) = frame.get(l4..end) else { return };
        let Ok(tcp) = TcpPacket::new_checked(t) else { return };
        let (seq, hl) = (tcp.seq(), tcp.header_len());
        let d = side.index();
        let [a_in, a_out] = slot.adj;
        let (this, other) = if d == 0 { (a_in, a_out) } else { (a_out, a_in) };
        // 1. This direction's sequence number, the other's acknowledgments.
        if let Some(t) = frame.get_mut(l4..end) {
            shift32(t, tcpf::SEQ, this.seq_offset(seq));
            if p.tcp_flags & crate::wire::tcp::ACK != 0 {
                let ack = u32_at(t, tcpf::ACK);
                shift32(t, tcpf::ACK, other.ack_offset(ack).wrapping_neg());
            }
            if other.before != 0 || other.after != 0 {
                shift_sack(t, hl, &other);
            }
        }
        // 2. The payload: a line naming an address.
        let pay = l4 + hl;
        let Some(payload) = frame.get(pay..end) else { return };
        if payload.is_empty() {
            return;
        }
        // The inside host is the client (an outbound control connection)
        // or the server (an inbound one, through a forward or to a 1:1
        // static address).
        let server_inside = s.flags & flag::INBOUND != 0;
        let from_client = (side == Side::Inside) != server_inside;
        match ftp::inspect(payload, from_client) {
            ftp::Line::Other => {}
            ftp::Line::Unparsed => self.counters.ftp_alg_unparsed += 1,
            ftp::Line::Found(_) if side == Side::Outside => {
                // The outside host names its own endpoint: nothing to do. (A
                // client's PORT to a server inside: the server's data
                // connection goes out as any other connection does.)
                if !from_client {
                    self.counters.ftp_alg_passive += 1;
                }
            }
            ftp::Line::Found(f) => {
                if !from_client {
                    self.counters.ftp_alg_passive += 1;
                }
                // The inside host may only open its own address (a 229
                // names none).
                if f.cmd != ftp::Cmd::Epsv && f.addr != s.inside_ip.get() || f.port == 0 {
                    self.counters.ftp_alg_unparsed += 1;
                    return;
                }
                let Some((pub_ip, pub_port)) = self.alg_public(now, &s, &f) else {
                    self.counters.ftp_alg_failed += 1;
                    return;
                };
                let mut rep = [0u8; ftp::MAX_REPLACEMENT];
                let n = ftp::replacement(&f, pub_ip, pub_port, &mut rep);
                let Some(rep) = rep.get(..n) else { return };
                if payload.get(f.start..f.end) == Some(rep) {
                    return; // a 1:1 static host's 229: its port is public as it is
                }
                let grown_before = self.alg.n_grown;
                match self.splice(frame, p, end, pay + f.start, pay + f.end, rep) {
                    Some(delta) => {
                        if self.alg.n_grown > grown_before {
                            // The frame is rewritten after this; its grown
                            // copy, which replaces it, gets the same rewrite.
                            let r = Rewrite::arriving(side, &s);
                            let at = grown_before * GROWN_MAX;
                            let len = self.alg.grown_at.get(grown_before).map_or(0, |g| g.1);
                            if let Some(g) = self.alg.grown.get_mut(at..at + len) {
                                r.apply(g, p);
                            }
                        }
                        if delta != 0 {
                            if let Some(x) = self.alg.slots.get_mut(usize::from(k)).and_then(|x| x.adj.get_mut(d)) {
                                x.record(seq, delta);
                            }
                        }
                        self.counters.ftp_alg_rewritten += 1;
                    }
                    None => self.counters.ftp_alg_failed += 1,
                }
            }
        }
    }

    /// The public address and port an inside host's line `f` is to name
    /// instead of its own, with the data connection to it made possible.
    /// A 1:1 static host's: its public address and the same port (every
    /// inbound connection reaches it). Otherwise an expectation of the
    /// inside host's data port ([`Engine::alg_expect`]): the client's for
    /// its PORT or EPRT, a server's behind a forward for its 227 or 229. A
    /// 229 names a port only, which the client reaches at the control
    /// connection's address: a mapping on another address (the server's
    /// paired address is not the forward's) fails.
    fn alg_public(&mut self, now: u32, ctl: &Session, f: &ftp::Found) -> Option<(u32, u16)> {
        if self.ports.is_static(ctl.addr) {
            return Some((ctl.public_ip.get(), f.port));
        }
        let (ip, port) = self.alg_expect(now, ctl, f.port)?;
        (f.cmd != ftp::Cmd::Epsv || ip == ctl.public_ip.get()).then_some((ip, port))
    }

    /// Opens the expectation for the client's data port `port`: a session
    /// of its mapping towards the server's port 0. Returns the public
    /// address and port the server is to connect to.
    fn alg_expect(&mut self, now: u32, ctl: &Session, port: u16) -> Option<(u32, u16)> {
        let pool = self.pool_of_session(ctl);
        let q = Parsed {
            src: ctl.inside_ip.get(),
            dst: ctl.remote_ip.get(),
            sport: port,
            dport: 0,
            ip_proto: L4::Tcp.ip_proto(),
            proto: L4::Tcp,
            ttl: 64,
            tcp_flags: crate::wire::tcp::SYN,
            ..Parsed::default()
        };
        // Already open (a retransmitted PORT): the same one.
        let h = self.h_i2o(q.src, q.sport, q.dst, 0, L4::Tcp);
        let idx = match self.find::<true>(h, q.src, q.sport, q.dst, 0, L4::Tcp) {
            Some(i) if self.live_or_reap(i, now) => i,
            _ => self.new_mapped_i2o(now, &q, pool, Some(h), None).ok()?,
        };
        let e = self.sessions.get(idx);
        Some((e.public_ip.get(), e.public_port.get()))
    }

    /// Replaces `frame[a..b]` of the packet ending at `end` by `rep`,
    /// moving the rest of the payload, and fixes the IP total length and
    /// both checksums incrementally. In place when the frame's buffer has
    /// the room; otherwise into a grown buffer ([`Engine::grown`]).
    /// Returns the change in length, or `None` (nothing changed) when
    /// there is no room anywhere.
    fn splice(&mut self, frame: &mut [u8], p: &Parsed, end: usize, a: usize, b: usize, rep: &[u8]) -> Option<i32> {
        let (l3, l4) = (usize::from(p.l3), usize::from(p.l4));
        let old_len = b.checked_sub(a)?;
        let new_end = (end + rep.len()).checked_sub(old_len)?;
        let delta = i32::try_from(rep.len()).ok()? - i32::try_from(old_len).ok()?;
        let odd = a.checked_sub(l4)? % 2 == 1;
        let old_sum = sum_at(frame.get(a..end)?, odd);
        let tail = frame.get(b..end)?.len();
        let out: &mut [u8] = if new_end <= frame.len() {
            frame.copy_within(b..end, a + rep.len());
            frame.get_mut(a..a + rep.len())?.copy_from_slice(rep);
            if new_end < end {
                // Shrunk: what follows is Ethernet padding now.
                frame.get_mut(new_end..end)?.fill(0);
            }
            frame
        } else {
            let k = self.alg.n_grown;
            if k >= GROWN_SLOTS || new_end > GROWN_MAX {
                return None;
            }
            let g = self.alg.grown.get_mut(k * GROWN_MAX..(k + 1) * GROWN_MAX)?;
            g.get_mut(..a)?.copy_from_slice(frame.get(..a)?);
            g.get_mut(a..a + rep.len())?.copy_from_slice(rep);
            g.get_mut(a + rep.len()..new_end)?.copy_from_slice(frame.get(b..end)?);
            if let Some(x) = self.alg.grown_at.get_mut(k) {
                *x = (self.alg.chunk_base.saturating_add(self.alg.frame), new_end);
            }
            self.alg.n_grown += 1;
            g
        };
        debug_assert_eq!(a + rep.len() + tail, new_end);
        let new_sum = sum_at(out.get(a..new_end)?, odd);
        // IP total length and header checksum.
        let ip = out.get_mut(l3..)?;
        let (old_total, new_total) = (u16_at(ip, ipv4::field::TOTAL_LEN), u16::try_from(new_end - l3).ok()?);
        set_u16(ip, ipv4::field::TOTAL_LEN, new_total);
        let c = u16_at(ip, ipv4::field::CHECKSUM);
        set_u16(ip, ipv4::field::CHECKSUM, apply_delta(c, crate::wire::checksum::delta16(old_total, new_total)));
        // TCP: the bytes, and the length in the pseudo-header.
        let t = out.get_mut(l4..)?;
        let (old_tl, new_tl) = (u16::try_from(end - l4).ok()?, u16::try_from(new_end - l4).ok()?);
        let dl = add(crate::wire::checksum::delta16(old_sum, new_sum), crate::wire::checksum::delta16(old_tl, new_tl));
        let c = u16_at(t, crate::wire::tcp::CHECKSUM);
        set_u16(t, crate::wire::tcp::CHECKSUM, apply_delta(c, dl));
        Some(delta)
    }
}

/// Shifts the edges of the SACK blocks (RFC 2018) of a segment whose
/// header is `hl` bytes, which acknowledge the other direction's shifted
/// numbers.
fn shift_sack(t: &mut [u8], hl: usize, other: &SeqAdj) {
    let Some((at, len)) = t.get(tcpf::MIN_LEN..hl).and_then(|o| find_option(o, option::SACK)) else { return };
    let first = tcpf::MIN_LEN + at + 2;
    let blocks = len.saturating_sub(2) / 8;
    for b in 0..blocks.min(4) {
        for edge in [first + 8 * b, first + 8 * b + 4] {
            let v = u32_at(t, edge);
            shift32(t, edge, other.ack_offset(v).wrapping_neg());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqadj_shifts_after_the_correction_point_only() {
        let mut a = SeqAdj::default();
        a.record(1000, 3);
        assert_eq!((a.seq_offset(1000), a.seq_offset(1001)), (0, 3), "the changed packet itself keeps its number");
        a.record(1000, 3);
        assert_eq!(a.after, 3, "a retransmission changes nothing");
        a.record(2000, -1);
        assert_eq!((a.seq_offset(1500), a.seq_offset(2001)), (3, 2));
        // Acknowledgments come shifted: up to the correction point plus the
        // offset before it, the old offset applies.
        assert_eq!(a.ack_offset(2000 + 3), 3);
        assert_eq!(a.ack_offset(2050), 2);
        // Sequence space wraps.
        let mut w = SeqAdj::default();
        w.record(u32::MAX - 1, 5);
        assert_eq!(w.seq_offset(3), 5);
    }

    #[test]
    fn sum_at_an_odd_offset_is_the_byte_swapped_sum() {
        let data = [1u8, 2, 3, 4, 5];
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&data);
        assert_eq!(sum_at(&data, true), fold(sum(&shifted)));
    }
}
