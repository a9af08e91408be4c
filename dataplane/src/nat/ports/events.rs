//! Block events for the NAT log: a block handed to or taken back from a
//! subscriber (RFC 6888 REQ-12, RFC 7422 section 2).
//!
//! Invariant: the event buffer never grows past [`BLOCK_EVENTS`]; an event
//! that does not fit is counted in `events_dropped`.
#![forbid(unsafe_code)]
#![allow(clippy::cast_possible_truncation)]

use super::*;

/// A port block handed to or taken back from a subscriber: what a CGNAT
/// logs instead of every session (RFC 6888 REQ-12, RFC 7422 section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEvent {
    /// Assigned (true) or released (false).
    pub assigned: bool,
    /// The subscriber's inside address.
    pub inside: u32,
    /// The public address.
    pub public: u32,
    /// Lowest port of the block.
    pub first_port: u16,
    /// Highest port of the block (with an RSS port order the block's ports
    /// lie between the two, not all of them).
    pub last_port: u16,
}

/// Block events kept until the worker collects them (once a round).
pub const BLOCK_EVENTS: usize = 1024;

impl Ports {
    /// Records a block event (dropped and counted when the buffer is full;
    /// it never grows).
    #[cold]
    #[inline(never)]
    pub(super) fn note_block(&mut self, assigned: bool, inside: u32, a: u16, l: u16) {
        let Some(pool) = self.pool_of(a) else { return };
        let (chunk, min, max) = (u32::from(pool.chunk), pool.params.port_min, pool.params.port_max);
        let base = block_offset(chunk, self.workers, self.worker, l);
        let Some(ad) = self.addrs.get(usize::from(a)) else { return };
        let (first, last) = if ad.perm.is_empty() {
            (ad.port_at(u32::from(min), base), ad.port_at(u32::from(min), base + chunk - 1).min(max))
        } else {
            let ports = (base..base + chunk).map(|o| ad.port_at(u32::from(min), o));
            (ports.clone().min().unwrap_or(0), ports.max().unwrap_or(0))
        };
        let ev = BlockEvent { assigned, inside, public: ad.ip, first_port: first, last_port: last };
        if self.events.len() < BLOCK_EVENTS {
            self.events.push(ev);
        } else {
            self.events_dropped += 1;
        }
    }

    /// The block subscriber `s` took last (a new block), as an event.
    #[cold]
    #[inline(never)]
    pub(super) fn note_new_block(&mut self, s: u32) {
        let Some(sub) = self.subs.get(s as usize).copied() else { return };
        let Some(&l) = sub.blocks.get(usize::from(sub.n_blocks).saturating_sub(1)) else { return };
        self.note_block(true, sub.inside_ip, sub.addr, l);
    }
}
