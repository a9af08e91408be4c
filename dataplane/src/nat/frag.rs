//! Fragment tracking: non-first fragments carry no ports, so they follow the
//! decision taken for the first fragment of their datagram.
//!
//! The first fragment (offset 0, MF set) records (src, dst, protocol, IP id)
//! as it arrived, with the session it matched and the direction. Later
//! fragments with the same key are translated by address only (the L4
//! checksum lives in the first fragment). A non-first fragment seen before
//! its first is dropped (`fragment_unknown`); the masq does not reassemble.
//! The table is a fixed direct-mapped array: a new datagram overwrites an
//! entry whose time is up or that collides, bounding memory under attack.
#![forbid(unsafe_code)]

use super::hash::hash3;

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    src: u32,
    dst: u32,
    ident: u16,
    ip_proto: u8,
    i2o: bool,
    session: u32,
    expires: u32,
}

/// What identifies a datagram's fragments (RFC 791: source, destination,
/// protocol, identification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragKey {
    /// Source address.
    pub src: u32,
    /// Destination address.
    pub dst: u32,
    /// IP protocol number (any: fragments of other protocols are followed too).
    pub ip_proto: u8,
    /// IP identification.
    pub ident: u16,
}

/// The fragment table.
pub struct Fragments {
    slots: Vec<Entry>,
    mask: usize,
    seed: u64,
    ttl: u32,
}

impl Fragments {
    /// A table of `n` entries (rounded to a power of two) living `ttl_secs`.
    pub fn new(n: u32, ttl_secs: u32, seed: u64) -> Self {
        let n = n.max(1).next_power_of_two() as usize;
        Self { slots: vec![Entry::default(); n], mask: n - 1, seed, ttl: ttl_secs.max(1) }
    }

    fn slot(&self, k: &FragKey) -> usize {
        super::hash::bucket(
            hash3(self.seed, k.src ^ k.dst.rotate_left(13), k.ident, u16::from(k.ip_proto), 0x77),
            self.mask,
        )
    }

    /// Records the first fragment of a datagram.
    pub fn record(&mut self, k: FragKey, i2o: bool, session: u32, now: u32) {
        let i = self.slot(&k);
        let expires = now.saturating_add(self.ttl);
        if let Some(e) = self.slots.get_mut(i) {
            *e = Entry { src: k.src, dst: k.dst, ident: k.ident, ip_proto: k.ip_proto, i2o, session, expires };
        }
    }

    /// The session and direction a later fragment follows.
    pub fn find(&self, k: FragKey, now: u32) -> Option<(u32, bool)> {
        let e = self.slots.get(self.slot(&k))?;
        (e.expires > now && e.src == k.src && e.dst == k.dst && e.ip_proto == k.ip_proto && e.ident == k.ident)
            .then_some((e.session, e.i2o))
    }

    /// Bytes used.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Entry>()
    }
}

use super::rewrite::Rewrite;
use super::session;
use super::{DropReason, Engine, Parsed, PassReason, Side, Verdict};

pub(super) fn frag_key(p: &Parsed) -> FragKey {
    FragKey { src: p.src, dst: p.dst, ip_proto: p.ip_proto, ident: p.ident }
}

impl Engine {
    pub(super) fn later_fragment(&mut self, side: Side, now: u32, frame: &mut [u8], p: &Parsed) -> Verdict {
        let Some((idx, i2o)) = self.frags.find(frag_key(p), now) else {
            return Verdict::Drop(DropReason::FragmentUnknown);
        };
        let s = self.sessions.get(idx);
        let pub_ip = s.public_ip;
        let live = s.class != session::FREE
            && match side {
                Side::Inside => i2o && s.inside_ip == p.src && s.remote_ip == p.dst,
                Side::Outside => !i2o && s.remote_ip == p.src && pub_ip == p.dst,
            };
        if !live {
            return Verdict::Drop(DropReason::FragmentUnknown);
        }
        if p.ttl <= 1 {
            return Verdict::PassToKernel(PassReason::TtlExpired);
        }
        self.counters.fragments_followed += 1;
        Rewrite::arriving(side, &s).apply_addr(frame, p);
        Verdict::Forward(side.opposite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_and_expires() {
        let k = |ident| FragKey { src: 1, dst: 2, ip_proto: 17, ident };
        let mut f = Fragments::new(16, 2, 1);
        f.record(k(99), true, 7, 10);
        assert_eq!(f.find(k(99), 11), Some((7, true)));
        assert_eq!(f.find(k(98), 11), None);
        assert_eq!(f.find(FragKey { ip_proto: 6, ..k(99) }, 11), None);
        assert_eq!(f.find(k(99), 12), None, "expired");
    }
}
