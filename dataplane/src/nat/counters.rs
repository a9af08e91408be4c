//! Per-worker counters: plain `u64`s the worker alone writes; the control
//! thread copies them when scraped. Every dropped packet has a reason here.
#![forbid(unsafe_code)]

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
        /// A non-first fragment whose first fragment was not seen.
        FragmentUnknown = "fragment_unknown",
        /// An IP protocol the NAT cannot translate (only TCP, UDP, ICMP are).
        UnsupportedProtocol = "unsupported_protocol",
        /// An ICMP error whose embedded packet matches no session.
        IcmpErrorNoSession = "icmp_error_no_session",
        /// An ICMP type the NAT does not forward (neither query nor error).
        IcmpUnsupported = "icmp_unsupported",
        /// A TCP packet that cannot start a connection arrived for a forward.
        TcpNotSyn = "tcp_not_syn",
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

/// Subscriber buckets of [`Counters::port_exhaustion_by_bucket`].
pub const EXHAUSTION_BUCKETS: usize = 16;

/// The bucket of an inside address: its /24's network number modulo the
/// bucket count, so a bucket groups whole access networks.
pub fn exhaustion_bucket(inside_ip: u32) -> usize {
    ((inside_ip >> 8) as usize) % EXHAUSTION_BUCKETS
}

/// One worker's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets received from the inside.
    pub rx_i2o: u64,
    /// Packets received from the outside.
    pub rx_o2i: u64,
    /// Packets forwarded inside to outside.
    pub fwd_i2o: u64,
    /// Packets forwarded outside to inside (hairpinned ones included).
    pub fwd_o2i: u64,
    /// Packets turned back inside by hairpinning.
    pub hairpinned: u64,
    /// Drops, by [`DropReason`].
    pub drops: [u64; DropReason::COUNT],
    /// Kernel passes, by [`PassReason`].
    pub passes: [u64; PassReason::COUNT],
    /// Packets handed to another worker.
    pub handoffs: u64,
    /// Sessions created.
    pub sessions_created: u64,
    /// Sessions removed because they idled out.
    pub sessions_expired: u64,
    /// Unreplied sessions evicted to make room (netfilter FAQ 3.17).
    pub sessions_evicted: u64,
    /// Sessions removed by a flush.
    pub sessions_flushed: u64,
    /// Times a subscriber wanted a port and none was left.
    pub port_exhaustion_events: u64,
    /// The same, by subscriber bucket ([`exhaustion_bucket`] of the inside
    /// address): which part of the subscriber base runs out.
    pub port_exhaustion_by_bucket: [u64; EXHAUSTION_BUCKETS],
    /// Port blocks handed to subscribers.
    pub blocks_allocated: u64,
    /// Port blocks given back.
    pub blocks_released: u64,
    /// Fragments translated by following their first fragment.
    pub fragments_followed: u64,
    /// ICMP errors translated (RFC 5508).
    pub icmp_errors_translated: u64,
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
