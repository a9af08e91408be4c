//! Per-worker counters: plain `u64`s the worker alone writes; the control
//! thread copies them when scraped. Every dropped packet has a reason here.
//!
//! # Adding a counter
//! Two edits:
//! 1. Declare it, with a doc comment, in [`Counters`] (the engine's) or in
//!    [`WorkerCounters`](crate::worker::WorkerCounters) (the worker loop's).
//!    With `=> Total("help")` it is its own `/metrics` family,
//!    `masq_<name>_total` (a name no hand-written family has: the control
//!    crate's metrics tests fail on a clash); with `=> Drop("reason")` it is
//!    a `reason` of `masq_drops_total`.
//! 2. Count it where it happens (`self.counters.name += 1`).
//!
//! `declare_counters!` (below) generates the rest: summing the workers' structs
//! (`AddAssign`, which the control thread's snapshot uses whole), and the
//! list of [`Exported`] counters it renders. A new drop or pass reason is a
//! line in [`DropReason`] or [`PassReason`] and its count: it becomes a
//! label value by itself.
//!
//! A counter declared without `=>` is summed and kept, but `/metrics` shows
//! it only where `control/src/metrics.rs` places it by hand (a label of a
//! shared family such as `masq_sessions_events_total`), or not at all.
#![forbid(unsafe_code)]

use super::params::MAX_POOLS;

/// Where `/metrics` shows a declared counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Its own family, `masq_<name>_total`, with this help text.
    Total(&'static str),
    /// A `reason` label value of `masq_drops_total`.
    Drop(&'static str),
}

/// A counter declared with a `/metrics` [`Family`], and its count (both
/// sides summed for a per-side pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    /// The field's name.
    pub name: &'static str,
    /// Where it shows.
    pub family: Family,
    /// The count.
    pub value: u64,
}

/// A declared counter's type: one count, or an array of them (per side, per
/// reason, per bucket).
pub trait Tally {
    /// Adds `other`'s counts to these.
    fn tally(&mut self, other: &Self);
    /// Every count summed.
    fn total(&self) -> u64;
}

impl Tally for u64 {
    fn tally(&mut self, other: &Self) {
        *self += *other;
    }
    fn total(&self) -> u64 {
        *self
    }
}

impl<const N: usize, const M: usize> Tally for [[u64; M]; N] {
    fn tally(&mut self, other: &Self) {
        for (t, n) in self.iter_mut().zip(other) {
            t.tally(n);
        }
    }
    fn total(&self) -> u64 {
        self.iter().map(Tally::total).sum()
    }
}

impl<const N: usize> Tally for [u64; N] {
    fn tally(&mut self, other: &Self) {
        for (t, n) in self.iter_mut().zip(other) {
            *t += *n;
        }
    }
    fn total(&self) -> u64 {
        self.iter().sum()
    }
}

/// Declares a counters struct, each field once: a doc comment, a [`Tally`]
/// type, and optionally `=> Total("help")` or `=> Drop("reason")` (its
/// [`Family`]). Every field is `pub`. Generates `AddAssign<&Self>` (the
/// control thread sums workers) and `exported()`, the fields with a family.
macro_rules! declare_counters {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident: $ty:ty $(=> $family:ident($text:literal))?, )*
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl ::core::ops::AddAssign<&$name> for $name {
            fn add_assign(&mut self, other: &$name) {
                $( $crate::nat::counters::Tally::tally(&mut self.$field, &other.$field); )*
            }
        }

        impl $name {
            /// The counters declared with a `/metrics` family, with their counts.
            pub fn exported(&self) -> impl Iterator<Item = $crate::nat::counters::Exported> {
                [$($(
                    $crate::nat::counters::Exported {
                        name: stringify!($field),
                        family: $crate::nat::counters::Family::$family($text),
                        value: $crate::nat::counters::Tally::total(&self.$field),
                    },
                )?)*]
                .into_iter()
            }
        }
    };
}
pub(crate) use declare_counters;

macro_rules! reasons {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal,)* }) => {
        $(#[$m])*
        #[repr(u8)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v,)* }
        impl $name {
            /// Every variant, in discriminant order.
            pub const ALL: &'static [$name] = &[$($name::$v,)*];
            /// Number of variants.
            pub const COUNT: usize = Self::ALL.len();
            const NAMES: &'static [&'static str] = &[$($s,)*];
            /// The metric label value.
            pub fn name(self) -> &'static str {
                Self::NAMES.get(self as usize).copied().unwrap_or("unknown")
            }
        }
    };
}

reasons! {
    /// Why the engine dropped a packet (the `reason` label of `masq_drops_total`).
    DropReason {
        /// Truncated or malformed Ethernet/IPv4/L4 header.
        Malformed = "malformed",
        /// Outside packet for a public address with no session, forward or admitting mapping.
        NoSession = "no_session",
        /// Inbound packet a mapping exists for, refused by the pool's filtering mode.
        Filtered = "filtered",
        /// Session table full and nothing expired or unreplied to reclaim.
        TableFull = "table_full",
        /// No free public port for the subscriber (its blocks, or the pool, exhausted).
        PortsExhausted = "ports_exhausted",
        /// The subscriber reached its session limit.
        SubscriberSessionLimit = "subscriber_session_limit",
        /// The subscriber table is full.
        SubscriberTableFull = "subscriber_table_full",
        /// A non-first fragment whose first fragment was not seen (with
        /// several workers: at the datagram's fragment home, see `nat::frag`).
        FragmentUnknown = "fragment_unknown",
        /// A packet of another IP protocol (GRE, ESP...) that no session,
        /// translate rule or exemption lets through (from outside: no session).
        UnsupportedProtocol = "unsupported_protocol",
        /// An ICMP error whose embedded packet matches no session.
        IcmpErrorNoSession = "icmp_error_no_session",
        /// An ICMP type the NAT does not forward (neither query nor error).
        IcmpUnsupported = "icmp_unsupported",
        /// A TCP packet that cannot start a connection arrived for a forward.
        TcpNotSyn = "tcp_not_syn",
        /// An inside packet whose source no rule covers (`boundary.unmatched_inside: drop`).
        NoRule = "no_rule",
        /// An outside packet with a source in an inside prefix (`boundary.spoofed_outside: drop`).
        Spoofed = "spoofed",
        /// A TCP RST outside the window the session has seen (RFC 5961 section 3).
        TcpOutOfWindow = "tcp_out_of_window",
        /// A fragment its home handed to the worker that translated its first
        /// fragment, which has no entry for it any more (expired or overwritten).
        FragmentUnknownAtOwner = "fragment_unknown_at_owner",
        /// Another IP protocol's first packet whose (public address, remote,
        /// protocol) another inside host holds (`nat::other`).
        OtherProtoBusy = "other_proto_busy",
        /// A connection a forward or a 1:1 static address would give the
        /// inside tuple another session already has (a port range forwarded
        /// to one port, reached from one remote port on two public ports):
        /// the inside host's answers could not be told apart.
        InsideClash = "inside_clash",
        /// A non-first fragment that came before its first and found no
        /// room in the fragment hold (`tables.fragment_hold`, `tables.fragment_hold_bytes`).
        FragmentHoldFull = "fragment_hold_full",
        /// A held fragment whose first fragment did not come in time (`timeouts.fragment_secs`).
        FragmentHoldExpired = "fragment_hold_expired",
        /// A first packet a deterministic pool's rule matched whose source
        /// the pool's formula has no range for (outside its `inside` prefix).
        DeterministicOutside = "deterministic_outside",
        /// Any frame reaching an HA standby, which forwards nothing until
        /// promoted (`masq role active`, `nat::ha`).
        Standby = "standby",
        /// A source no router forwards (RFC 1812 section 5.3.7, Linux's
        /// `martian_source`): multicast, broadcast, 0/8 or 127/8.
        MartianSource = "martian_source",
        /// A destination no router forwards (Linux's `martian_destination`):
        /// 0/8 or 127/8.
        MartianDestination = "martian_destination",
    }
}

reasons! {
    /// Why the engine handed a frame to the kernel stack.
    PassReason {
        /// Not IPv4 (ARP, IPv6, LLDP...).
        NotIpv4 = "not_ipv4",
        /// Multicast or broadcast (netfilter FAQ 3.1: multicast never enters NAT).
        Multicast = "multicast",
        /// Addressed to the box itself.
        ToSelf = "to_self",
        /// TTL expires here: the kernel answers with ICMP time exceeded.
        TtlExpired = "ttl_expired",
    }
}

/// The drop reasons that refuse a pool's subscriber a new flow for want of
/// a port or a session (RFC 6888 REQ-11, `nat::refusal`), in the order of
/// the second index of [`Counters::subscriber_limit_events`].
pub const LIMIT_REASONS: [DropReason; 4] = [
    DropReason::PortsExhausted,
    DropReason::SubscriberSessionLimit,
    DropReason::SubscriberTableFull,
    DropReason::TableFull,
];

/// The position of `r` in [`LIMIT_REASONS`], if it is one of them.
pub fn limit_index(r: DropReason) -> Option<usize> {
    LIMIT_REASONS.iter().position(|&x| x == r)
}

/// Subscriber buckets of [`Counters::port_exhaustion_by_bucket`].
pub const EXHAUSTION_BUCKETS: usize = 16;

/// The bucket of an inside address: its /24's network number modulo the
/// bucket count, so a bucket groups whole access networks.
pub fn exhaustion_bucket(inside_ip: u32) -> usize {
    ((inside_ip >> 8) as usize) % EXHAUSTION_BUCKETS
}

declare_counters! {
    /// One worker's engine counters.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Counters {
        /// Packets received from the inside.
        rx_i2o: u64,
        /// Packets received from the outside.
        rx_o2i: u64,
        /// Packets forwarded inside to outside.
        fwd_i2o: u64,
        /// Packets forwarded outside to inside (hairpinned ones included).
        fwd_o2i: u64,
        /// Packets turned back inside by hairpinning.
        hairpinned: u64,
        /// Drops, by [`DropReason`].
        drops: [u64; DropReason::COUNT],
        /// Kernel passes, by [`PassReason`].
        passes: [u64; PassReason::COUNT],
        /// Packets handed to another worker.
        handoffs: u64,
        /// Sessions created.
        sessions_created: u64,
        /// Sessions removed because they idled out.
        sessions_expired: u64,
        /// Unreplied sessions evicted to make room (netfilter FAQ 3.17).
        sessions_evicted: u64,
        /// Sessions removed by a flush.
        sessions_flushed: u64,
        /// Times a subscriber wanted a port and none was left.
        port_exhaustion_events: u64,
        /// The same, by subscriber bucket ([`exhaustion_bucket`] of the inside
        /// address): which part of the subscriber base runs out.
        port_exhaustion_by_bucket: [u64; EXHAUSTION_BUCKETS],
        /// New flows of a pool's subscriber refused for want of a port or a
        /// session (RFC 6888 REQ-11c), by pool (the engine's numbering,
        /// [`crate::nat::Engine::pool_names`]) and reason ([`LIMIT_REASONS`]).
        /// Each is also a drop under its reason.
        subscriber_limit_events: [[u64; LIMIT_REASONS.len()]; MAX_POOLS],
        /// Port blocks handed to subscribers.
        blocks_allocated: u64,
        /// Port blocks given back.
        blocks_released: u64,
        /// Fragments translated by following their first fragment.
        fragments_followed: u64,
        /// Fragments that came off the wire to a worker other than their
        /// datagram's fragment home and were handed to it (`nat::frag`).
        fragments_to_home: u64 => Total("Fragments handed to their datagram's fragment home worker."),
        /// Fragments handed on to the worker that owns their datagram's
        /// session (by their home, or by a hairpin's first half).
        fragments_to_owner: u64 => Total("Fragments handed to the worker that owns their datagram's session."),
        /// Packets of other IP protocols (GRE, ESP...) the engine handed
        /// to their session's home worker (`nat::other`), both ways.
        other_proto_handoffs: u64 => Total("Packets of other IP protocols (GRE, ESP...) handed to their session's home worker."),
        /// ICMP errors translated (RFC 5508).
        icmp_errors_translated: u64,
        /// Non-first fragments that came before their first and were held (`nat::frag`).
        fragments_held: u64 => Total("Non-first fragments held until their first fragment came (RFC 4787 REQ-14)."),
        /// Held fragments released when their first fragment came (then
        /// translated, handed on, or dropped under a reason).
        fragments_released: u64 => Total("Held fragments released when their first fragment came."),
        /// TCP SYN and SYN/ACK segments whose MSS option a rule's
        /// `mss_clamp` lowered (`nat::mss`).
        mss_clamped: u64 => Total("TCP SYN and SYN/ACK segments whose MSS a rule's mss_clamp lowered."),
        /// FTP lines the ALG rewrote (`nat::alg`): an inside client's
        /// `PORT` and `EPRT`, an inside server's `227` and `229` (behind a
        /// forward or a static address), each with its data connection's
        /// expectation where one is needed.
        ftp_alg_rewritten: u64 => Total("FTP PORT/EPRT commands of an inside client and 227/229 replies of an inside server the ALG rewrote, each opening its data connection."),
        /// FTP `227` and `229` replies the ALG read (nothing to rewrite
        /// for a client inside; rewritten, and counted in
        /// `ftp_alg_rewritten` too, for a server inside).
        ftp_alg_passive: u64 => Total("FTP 227 (PASV) and 229 (EPSV) replies the ALG read."),
        /// FTP lines the ALG reads that it could not parse, or that were not
        /// whole in one segment, or named another host than the client:
        /// forwarded unchanged.
        ftp_alg_unparsed: u64 => Total("FTP control lines the ALG could not parse (forwarded unchanged)."),
        /// FTP lines the ALG understood but could not rewrite (no port for
        /// the data connection, no room for a longer packet, a forwarded
        /// server's `229` whose port got a mapping on another address than
        /// the forward's) and control connections it had no slot for:
        /// forwarded unchanged.
        ftp_alg_failed: u64 => Total("FTP commands or connections the ALG could not handle (forwarded unchanged)."),
        /// HA sync records (blocks, sessions) an engine applied (`nat::ha`).
        ha_applied: u64 => Total("HA sync records (port blocks, sessions) this box applied from its active peer."),
        /// HA sync records refused: a conflict with what the engine holds, or an unknown address.
        ha_refused: u64 => Total("HA sync records refused: a conflict with what this box holds, or an address it does not have."),
    }
}

impl Counters {
    /// Total drops over all reasons.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
    /// Drops for one reason.
    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops.get(r as usize).copied().unwrap_or(0)
    }
    /// Passes for one reason.
    pub fn pass_count(&self, r: PassReason) -> u64 {
        self.passes.get(r as usize).copied().unwrap_or(0)
    }
    #[inline]
    pub(crate) fn drop(&mut self, r: DropReason) {
        if let Some(c) = self.drops.get_mut(r as usize) {
            *c += 1;
        }
    }
    #[inline]
    pub(crate) fn pass(&mut self, r: PassReason) {
        if let Some(c) = self.passes.get_mut(r as usize) {
            *c += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prometheus_labels() {
        for r in DropReason::ALL {
            let n = r.name();
            assert!(n.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{n}");
        }
        assert_eq!(DropReason::ALL.len(), DropReason::COUNT);
        assert_eq!(DropReason::TableFull.name(), "table_full");
        assert_eq!(PassReason::TtlExpired.name(), "ttl_expired");
    }

    declare_counters! {
        #[derive(Debug, Default, PartialEq, Eq)]
        struct Demo {
            /// Not shown.
            quiet: u64,
            /// Its own family.
            loud: u64 => Total("Loud things."),
            /// A drop reason, both sides summed.
            lost: [u64; 2] => Drop("lost"),
        }
    }

    #[test]
    fn declared_counters_sum_and_list_their_families() {
        let mut t = Demo { quiet: 1, loud: 2, lost: [3, 4] };
        t += &Demo { quiet: 10, loud: 20, lost: [30, 40] };
        assert_eq!(t, Demo { quiet: 11, loud: 22, lost: [33, 44] });
        let listed: Vec<Exported> = t.exported().collect();
        assert_eq!(
            listed,
            [
                Exported { name: "loud", family: Family::Total("Loud things."), value: 22 },
                Exported { name: "lost", family: Family::Drop("lost"), value: 77 },
            ]
        );
    }

    #[test]
    fn limit_reasons_are_the_four_that_refuse_a_subscriber() {
        let limits: Vec<DropReason> = DropReason::ALL.iter().copied().filter(|&r| limit_index(r).is_some()).collect();
        assert_eq!(limits.len(), LIMIT_REASONS.len());
        for (i, r) in LIMIT_REASONS.iter().enumerate() {
            assert_eq!(limit_index(*r), Some(i));
        }
        assert_eq!(limit_index(DropReason::NoSession), None);
        let mut t = [[1u64, 2], [3, 4], [5, 6]];
        t.tally(&[[10, 20], [30, 40], [50, 60]]);
        assert_eq!((t, t.total()), ([[11, 22], [33, 44], [55, 66]], 231));
    }

    #[test]
    fn counting() {
        let mut c = Counters::default();
        c.drop(DropReason::NoSession);
        c.drop(DropReason::NoSession);
        c.pass(PassReason::ToSelf);
        assert_eq!(c.drop_count(DropReason::NoSession), 2);
        assert_eq!(c.total_drops(), 2);
        assert_eq!(c.pass_count(PassReason::ToSelf), 1);
    }
}
