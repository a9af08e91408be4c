//! Hairpinning (RFC 4787 REQ-9, RFC 5382 REQ-8): an inside host reaching
//! another through its public endpoint. The source is translated as for any
//! outbound packet, then the destination as if the packet had arrived from
//! outside, so the target sees the sender's public endpoint.
//!
//! A hairpinned datagram's first fragment records its second half under
//! the key it has once its source is translated, so its later fragments
//! take both halves too ([`super::frag`]).
//!
//! Invariant: the TTL drops once, not twice.
#![forbid(unsafe_code)]

use super::*;

impl Engine {
    /// After the source of a hairpinned packet was translated, translate its
    /// destination as if it had arrived from outside (RFC 4787 REQ-9).
    pub(super) fn hairpin_dst(&mut self, now: u32, frame: &mut [u8], p: &Parsed, s: &Session, pub_ip: u32) -> Verdict {
        // The packet now reads public(s) -> p.dst:p.dport.
        let q = Parsed { src: pub_ip, sport: s.public_port, ..*p };
        let (dport, sport) = if p.proto == L4::Icmp { (s.public_port, 0) } else { (p.dport, s.public_port) };
        let q = Parsed { dport, sport, ..q };
        let h = self.h_o2i(q.dst, q.dport, q.src, q.sport, q.proto);
        let idx = match self.find::<false>(h, q.src, q.sport, q.dst, q.dport, q.proto) {
            Some(i) => i,
            None => match self.new_o2i(now, &q) {
                Ok(i) => i,
                Err(v) => {
                    // Another worker owns the target's port: the later
                    // fragments, translated here, follow the first there.
                    if let (true, Verdict::HandOff { worker, .. }) = (p.first_frag, v) {
                        self.frags.record_at(frag_key(&q), worker, now);
                    }
                    return v;
                }
            },
        };
        if p.first_frag {
            // Its later fragments take the second half by this key (`frag`).
            self.frags.record(frag_key(&q), false, idx, now);
        }
        self.touch(idx, Side::Outside, &q, now);
        let t = self.sessions.get(idx);
        // The TTL was decremented once already: undo that part of the delta.
        Rewrite::o2i(&t).apply_no_ttl(frame, &q);
        self.counters.hairpinned += 1;
        Verdict::Forward(Side::Inside)
    }
}
