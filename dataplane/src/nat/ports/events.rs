//! Events for the NAT log: a block handed to or taken back from a
//! subscriber (RFC 6888 REQ-12, RFC 7422 section 2), and a subscriber
//! refused a new flow for want of a port or a session (RFC 6888 REQ-11c;
//! `nat::refusal` decides when).
//!
//! Invariant: the event buffer never grows past [`BLOCK_EVENTS`]; an event
//! that does not fit is counted in `events_dropped`.
#![forbid(unsafe_code)]
#![allow(clippy::cast_possible_truncation)]

use super::*;

/// What happened to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A port block was handed to it.
    Assigned,
    /// A port block was taken back.
    Released,
    /// A new flow was refused for want of a port or a session, for this
    /// reason (one of [`crate::nat::counters::LIMIT_REASONS`]); logged once
    /// per subscriber per interval (RFC 6888 REQ-11c).
    Refused(DropReason),
    /// A session of a `logging: sessions` pool was created or deleted
    /// (RFC 8158 natEvent 1 and 2); `first_port` and `last_port` are both
    /// its public port.
    Session(SessionInfo),
    /// A mapped TCP or UDP session created or deleted, for an HA standby
    /// (`sync_sessions`): the destination always filled, never logged.
    Sync(SessionInfo),
}

/// Why a session event was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionChange {
    /// The session was installed.
    Created,
    /// Its timeout passed.
    Expired,
    /// It made room for a new session (the table was full).
    Evicted,
    /// Removed otherwise (a flush, a configuration change, an admin command).
    Flushed,
}

impl SessionChange {
    /// The stable name (the JSON `cause` field).
    pub fn name(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Expired => "expired",
            Self::Evicted => "evicted",
            Self::Flushed => "flushed",
        }
    }
}

/// The session part of a session event. The destination is 0 (address and
/// port) unless the pool asks for it (`log_destination`, RFC 6888 REQ-12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    /// Created or why deleted.
    pub change: SessionChange,
    /// IP protocol number (6, 17, 1).
    pub proto: u8,
    /// The inside port (ICMP: the query identifier).
    pub inside_port: u16,
    /// The destination address, 0 when not logged.
    pub remote: u32,
    /// The destination port, 0 when not logged.
    pub remote_port: u16,
}

/// A port block handed to or taken back from a subscriber, what a CGNAT
/// logs instead of every session (RFC 6888 REQ-12, RFC 7422 section 2), or
/// a subscriber refused a new flow (RFC 6888 REQ-11c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEvent {
    /// What happened.
    pub kind: EventKind,
    /// The subscriber's inside address.
    pub inside: u32,
    /// The public address (for a refusal: the subscriber's paired address,
    /// 0 if it has none).
    pub public: u32,
    /// Lowest port of the block (0 for a refusal).
    pub first_port: u16,
    /// Highest port of the block (with an RSS port order the block's ports
    /// lie between the two, not all of them; 0 for a refusal).
    pub last_port: u16,
    /// The pool (the engine's numbering, [`crate::nat::Engine::pool_names`]).
    pub pool: u16,
}

/// Block events kept until the worker collects them (once a round).
pub const BLOCK_EVENTS: usize = 1024;

impl Ports {
    /// Records a block event (dropped and counted when the buffer is full;
    /// it never grows).
    #[cold]
    #[inline(never)]
    pub(super) fn note_block(&mut self, kind: EventKind, inside: u32, a: u16, l: u16) {
        // A deterministic block is the formula's (RFC 7422): nothing to record.
        if self.pool_of(a).is_none_or(|p| p.det.is_some()) {
            return;
        }
        let Some((first, last)) = self.block_range(a, l) else { return };
        let Some(ad) = self.addrs.get(usize::from(a)) else { return };
        let ev = BlockEvent { kind, inside, public: ad.ip, first_port: first, last_port: last, pool: ad.pool };
        self.push_event(ev);
    }

    /// Records that subscriber `inside` of `pool` was refused a new flow
    /// for `reason` (with its paired address, if it has one).
    #[cold]
    #[inline(never)]
    pub fn note_refusal(&mut self, inside: u32, pool: u16, reason: DropReason) {
        let paired = self.find_subscriber(inside, pool).and_then(|s| self.subs.get(s as usize)).map(|x| x.addr);
        let public = paired.map_or(0, |a| self.ip_of(a));
        let ev = BlockEvent { kind: EventKind::Refused(reason), inside, public, first_port: 0, last_port: 0, pool };
        self.push_event(ev);
    }

    /// Keeps `ev` until the worker collects it (dropped and counted when the
    /// buffer is full; it never grows).
    pub(crate) fn push_event(&mut self, ev: BlockEvent) {
        if self.quiet {
            return;
        }
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
        self.note_block(EventKind::Assigned, sub.inside_ip, sub.addr, l);
    }
}
