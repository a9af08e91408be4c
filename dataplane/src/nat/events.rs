//! NAT events as the log sinks see them: a port block allocated to or
//! released from a subscriber (RFC 6888 REQ-12; RFC 7422 section 2 logs
//! blocks instead of sessions), and a subscriber refused a new flow at a
//! limit (RFC 6888 REQ-11c), each stamped with the UTC time in
//! milliseconds (RFC 8158 `observationTimeMilliseconds`); and, for pools
//! with `logging: sessions`, each session created and deleted (RFC 8158
//! natEvent 1 and 2), without the destination unless the pool asks
//! (RFC 6888 REQ-12).
//!
//! The engine keeps [`BlockEvent`]s without a wall clock (it runs
//! on ticks); the worker stamps them once a round as it hands them over
//! ([`NatEvent::stamp`]), so an event's time is the end of the round that
//! made it, late by at most one round.
//!
//! Invariants: a [`NatEvent`] is `Copy` and owns no heap memory (it crosses
//! a bounded ring from a worker to the control thread); a kind's
//! [`NatEventKind::name`] and [`NatEventKind::nat_event`] never change
//! (they are the JSON `event` field and the IPFIX natEvent value,
//! RFC 8158 section 4.1.1 table 1).
#![forbid(unsafe_code)]

use super::ports::{BlockEvent, EventKind, SessionChange, SessionInfo};
use super::DropReason;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatEventKind {
    /// A port block was allocated to the subscriber.
    BlockAllocated,
    /// A port block was taken back.
    BlockReleased,
    /// The subscriber's blocks, or the pool's ports, are used up.
    PortsExhausted,
    /// The subscriber is at its session quota, or the session table is
    /// full (the reason says which).
    QuotaExceeded(DropReason),
    /// No subscriber slot is left, so no address can be paired.
    AddressesExhausted,
    /// A configuration generation came into force (made by the control
    /// side, not by a worker; no RFC 8158 natEvent, so not in IPFIX).
    ConfigApplied(u32),
    /// A session of a `logging: sessions` pool was created or deleted
    /// (`port_start` and `port_end` are its public port).
    Session(SessionInfo),
    /// A mapped session created or deleted, for an HA standby only (never
    /// logged: the destination is always in it).
    SessionSync(SessionInfo),
}

impl NatEventKind {
    /// The stable name (the JSON `event` field).
    pub fn name(self) -> &'static str {
        match self {
            Self::BlockAllocated => "block_allocated",
            Self::BlockReleased => "block_released",
            Self::PortsExhausted => "ports_exhausted",
            Self::QuotaExceeded(_) => "quota_exceeded",
            Self::AddressesExhausted => "addresses_exhausted",
            Self::ConfigApplied(_) => "config_applied",
            Self::Session(i) if i.change == SessionChange::Created => "session_created",
            Self::Session(_) => "session_deleted",
            Self::SessionSync(_) => "session_sync",
        }
    }

    /// The IPFIX natEvent value (RFC 8158 section 4.1.1, table 1; 0: none).
    pub fn nat_event(self) -> u8 {
        match self {
            Self::BlockAllocated => 14,
            Self::BlockReleased => 15,
            Self::PortsExhausted => 10,
            Self::QuotaExceeded(_) => 11,
            Self::AddressesExhausted => 3,
            Self::ConfigApplied(_) => 0,
            Self::Session(i) if i.change == SessionChange::Created => 1,
            Self::Session(_) => 2,
            Self::SessionSync(_) => 0,
        }
    }

    /// The refusal's drop reason, if this is a refusal.
    pub fn reason(self) -> Option<DropReason> {
        match self {
            Self::BlockAllocated
            | Self::BlockReleased
            | Self::ConfigApplied(_)
            | Self::Session(_)
            | Self::SessionSync(_) => None,
            Self::PortsExhausted => Some(DropReason::PortsExhausted),
            Self::AddressesExhausted => Some(DropReason::SubscriberTableFull),
            Self::QuotaExceeded(r) => Some(r),
        }
    }
}

/// One NAT event with its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatEvent {
    /// UTC time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// What happened.
    pub kind: NatEventKind,
    /// The subscriber's inside address.
    pub inside: u32,
    /// The public address (for a refusal: the paired address, 0 if none).
    pub public: u32,
    /// Lowest port of the block (0 for a refusal).
    pub port_start: u16,
    /// Highest port of the block (0 for a refusal).
    pub port_end: u16,
    /// The pool (the engine's numbering).
    pub pool: u16,
}

impl NatEvent {
    /// `ev` as it happened at `time_ms`.
    pub fn stamp(ev: &BlockEvent, time_ms: u64) -> Self {
        let kind = match ev.kind {
            EventKind::Assigned => NatEventKind::BlockAllocated,
            EventKind::Released => NatEventKind::BlockReleased,
            EventKind::Refused(DropReason::PortsExhausted) => NatEventKind::PortsExhausted,
            EventKind::Refused(DropReason::SubscriberTableFull) => NatEventKind::AddressesExhausted,
            EventKind::Refused(r) => NatEventKind::QuotaExceeded(r),
            EventKind::Session(i) => NatEventKind::Session(i),
            EventKind::Sync(i) => NatEventKind::SessionSync(i),
        };
        Self {
            time_ms,
            kind,
            inside: ev.inside,
            public: ev.public,
            port_start: ev.first_port,
            port_end: ev.last_port,
            pool: ev.pool,
        }
    }
}

impl NatEvent {
    /// Configuration generation `generation` in force at `time_ms`.
    pub fn config_applied(generation: u32, time_ms: u64) -> Self {
        Self {
            time_ms,
            kind: NatEventKind::ConfigApplied(generation),
            inside: 0,
            public: 0,
            port_start: 0,
            port_end: 0,
            pool: u16::MAX,
        }
    }
}

/// The wall clock in milliseconds since the Unix epoch (0 before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_rfc8158_nat_events() {
        let b =
            BlockEvent { kind: EventKind::Assigned, inside: 1, public: 2, first_port: 1024, last_port: 1087, pool: 0 };
        let e = NatEvent::stamp(&b, 42);
        assert_eq!((e.time_ms, e.kind.name(), e.kind.nat_event()), (42, "block_allocated", 14));
        assert_eq!((e.port_start, e.port_end), (1024, 1087));
        let r = NatEvent::stamp(&BlockEvent { kind: EventKind::Released, ..b }, 1);
        assert_eq!(r.kind.nat_event(), 15);
        let q = NatEvent::stamp(&BlockEvent { kind: EventKind::Refused(DropReason::SubscriberSessionLimit), ..b }, 1);
        assert_eq!((q.kind.name(), q.kind.nat_event()), ("quota_exceeded", 11));
        assert_eq!(q.kind.reason(), Some(DropReason::SubscriberSessionLimit));
        let p = NatEvent::stamp(&BlockEvent { kind: EventKind::Refused(DropReason::PortsExhausted), ..b }, 1);
        assert_eq!(p.kind.nat_event(), 10);
        let i = SessionInfo { change: SessionChange::Created, proto: 6, inside_port: 5000, remote: 0, remote_port: 0 };
        let c = NatEvent::stamp(&BlockEvent { kind: EventKind::Session(i), ..b }, 1);
        assert_eq!((c.kind.name(), c.kind.nat_event(), c.kind.reason()), ("session_created", 1, None));
        let i = SessionInfo { change: SessionChange::Expired, ..i };
        let d = NatEvent::stamp(&BlockEvent { kind: EventKind::Session(i), ..b }, 1);
        assert_eq!((d.kind.name(), d.kind.nat_event()), ("session_deleted", 2));
    }
}
