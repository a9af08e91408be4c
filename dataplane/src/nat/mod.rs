//! The NAT engine: one per worker, pure (no I/O, no locks, no allocation
//! after construction, no `unsafe`). It takes a batch of frames received on
//! one side and the time, rewrites the frames in place and returns a
//! [`Verdict`] per frame.
//!
//! Semantics (see DESIGN.md): the NAT decision is taken by the ordered rules
//! on the first packet of a flow and pinned in a session; replies never
//! re-match. Mappings are endpoint-independent (RFC 4787 REQ-1) with paired
//! pooling (REQ-2) and per-pool filtering (section 5, REQ-8); hairpinning
//! (REQ-9); ICMP echo is translated by identifier and ICMP errors through
//! their embedded header (RFC 5508 section 4); TCP state picks the timeout
//! class (RFC 5382 REQ-5, RFC 7857 section 2); a freed port is held 120 s
//! (RFC 6888 REQ-8); when the table is full, expired then unreplied sessions
//! are reclaimed, never established ones (netfilter FAQ 3.17); a subscriber
//! refused a port or a session is told with an ICMP host unreachable,
//! counted per pool and logged, and nothing is deleted to make room (RFC
//! 6888 REQ-11).
//!
//! # The pipeline, stage by stage
//!
//! A frame goes down this table; each file keeps the invariant beside it.
//!
//! | stage | file | what it does | invariant it keeps |
//! |---|---|---|---|
//! | parse | `parse.rs` | frame -> [`parse::Parsed`] (flow key and offsets), or the fast lane's packed key | no accessor can panic on any input |
//! | batch | `batch.rs` | a batch of one side: fast lane first, then the general path in batch order | the result equals one frame at a time |
//! | fast lane | `fast.rs` | common layout, session in steady state: look up, rewrite, done | takes only what the general path would do the same way |
//! | lookup | `lookup.rs` | general path: hit -> refresh (TCP state, timers) and translate; miss -> by kind | a session past its timeout is never used |
//! | inside to outside | `i2o.rs` | first outbound packet: own addresses, TTL, owning worker, rules, mapping | a packet that makes no session changes no state |
//! | outside to inside | `o2i.rs` | first inbound packet: 1:1 static address, forward (a port or a range), filtered mapping, no-NAT exemption, or drop | nothing reaches inside that no session, static address, forward or exemption allows |
//! | other protocols | `other.rs` | GRE, ESP, SCTP...: a session per (inside, remote, protocol), translated by address only, at the home worker of (public address, remote, protocol) | one inside host per (public address, remote, protocol), box-wide |
//! | overflow | `overflow.rs` | a deterministic pool's subscriber past its range: its overflow mapping, else its range, else a port of the overflow port-block pool (RFC 7422 section 2) | an overflow session counts on the subscriber's overflow-pool entry; a refusal changes nothing |
//! | hairpin | `hairpin.rs` | inside to a public endpoint: translate the destination as if from outside; an echo hairpin's two halves at the owner of the target's identifier | the TTL drops once |
//! | mapping | `mapping.rs` | endpoint-independent mappings: chains of sessions on one public endpoint | a mapping's port is in use exactly while its chain is not empty |
//! | ports | `ports/` | public addresses, port blocks, subscribers, holds, block events | a port is in use exactly while one mapping or forward holds it |
//! | refusal | `refusal.rs` | a subscriber at its limit: drop, ICMP host unreachable, count per pool, log (RFC 6888 REQ-11) | a refusal deletes nothing and changes no session, port or subscriber; rate limits per subscriber and per worker |
//! | lifecycle | `lifecycle.rs` | take a slot, install with checksum deltas, remove, expire, evict | every live session is in both indexes exactly once |
//! | ICMP errors | `icmp_error.rs` | find the session through the embedded datagram, rewrite both headers | an error never refreshes a session |
//! | fragments | `frag.rs`, `frag_hold.rs` | later fragments follow their first fragment's session; with several workers every fragment meets its datagram's fragment home, which sends it on to the session's owner; one that comes before its first waits in the home's hold (RFC 4787 REQ-14) | a fragment is forwarded only for a live session of its tuple; a handed-over fragment is never sent home again; a held fragment leaves after its first or is dropped and counted |
//! | MSS clamping | `mss.rs` | a rule's `mss_clamp` lowers the MSS of SYN and SYN/ACK, both ways; what a TCP session's rule added (`Cold::ext`) | an MSS is never raised; the checksum updated incrementally; the fast lane never sees a SYN |
//! | FTP ALG | `alg/` | a rule's `alg: [ftp]`: PORT/EPRT rewritten, the data connection's expectation, seqadj, packets grown past their frame | a control packet is never dropped for the ALG; an ALG session never takes the fast lane |
//! | rewrite | `rewrite.rs` | addresses, ports, TTL, checksums (RFC 1624 from stored deltas) | a bad checksum stays bad; a computed UDP 0 is sent as 0xFFFF |
//! | keys | `keys.rs`, `hash.rs`, `index.rs`, `later.rs` | the four index keys, the hash, the open-addressing index | each key is defined once |
//! | protocols | `l4.rs` | [`L4`]: TCP, UDP, ICMP, other as wire number, stored and hashed code, array index | one numbering, never changed: every key hashes it |
//! | sessions | `session.rs`, `tcp.rs` | the slab, the expiry wheel (which eviction searches); TCP states and classes | a session is 32 + 12 bytes (+ 12 for the RST check's window); hot fields in the first half; the wheel's buckets are lists headed by sentinel cold halves |
//! | rules | `rules.rs`, `params.rs`, `error.rs` | the compiled ordered rules; the engine's plain parameters and why they are refused | the compiled set decides as the plain first match |
//! | HA | `ha.rs`, `ports/ha.rs` | the standby role; blocks and sessions the active box's sync stream installs | an import is idempotent, checked, and whole or refused |
//! | admin | `admin.rs` | listings, flushes, masquerade follow, port-block use, block events | a slice of slots per call: forwarding never stalls |
//! | reconfigure | `reconfigure.rs` | live changes at a batch boundary | a change is taken whole or not at all |
//! | counters | `counters.rs` | every drop and pass reason, named as its Prometheus label | every frame not forwarded is counted under one reason |
//!
//! Engine-wide invariants: every live session is in the inside-to-outside
//! (`i2o`) and outside-to-inside (`o2i`) indexes under its own tuple,
//! exactly once; a mapped session is on the chain of its mapping, whose
//! head is in `imap` and `omap`; a mapping's public port is in use in the
//! port maps exactly while its chain is not empty. Checksums are updated
//! incrementally (RFC 1624) from deltas computed when the session is made;
//! a packet that arrived with a bad checksum leaves with a bad checksum,
//! never a laundered good one.
#![forbid(unsafe_code)]

mod admin;
pub mod alg;
mod batch;
pub mod counters;
pub mod deterministic;
mod engine;
pub mod error;
pub mod events;
mod fast;
pub mod frag;
mod frag_hold;
pub mod ha;
mod hairpin;
pub mod hash;
mod i2o;
mod icmp_error;
pub mod index;
mod keys;
pub mod l4;
pub mod later;
mod lifecycle;
mod lookup;
mod mapping;
mod mss;
mod o2i;
mod other;
mod overflow;
pub mod params;
pub mod parse;
pub mod ports;
mod reconfigure;
pub mod refusal;
mod rewrite;
pub mod rules;
pub mod session;
pub mod tcp;

pub use counters::{Counters, DropReason, PassReason};
pub use engine::{subscriber_owner, Engine};
pub use l4::L4;
pub use other::other_home;
pub use params::*;
pub use reconfigure::reconfigure_check;

use crate::wire::bytes::{set_u16, set_u32, u16_at, u32_at};
use crate::wire::checksum::{add, add32, apply_delta, apply_delta_udp, delta32, fold, negate, sum};
use crate::wire::icmp;
use crate::wire::tcp::TcpPacket;
use batch::{Created, Item, Pre};
use engine::{forward_proto, ForwardRt};
use frag::{frag_key, Fragments};
use frag_hold::Hold;
use index::Index;
use later::LaterIndex;
use parse::{complete_key, fast_lookup_key, parse, parse_embedded, FastKey, Kind, Parsed};
use ports::Ports;
use rewrite::{decrement_ttl, set_ip_addr, Rewrite};
use session::{class, flag, Cold, Net16, Session, SessionTable, NIL};
use tcp::TcpState;
use tcp::TcpWindow;

/// Which interface a frame came from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Subscribers.
    Inside,
    /// The internet.
    Outside,
}

impl Side {
    /// The other side.
    #[inline(always)]
    pub fn opposite(self) -> Side {
        match self {
            Side::Inside => Side::Outside,
            Side::Outside => Side::Inside,
        }
    }

    /// 0 for inside, 1 for outside: the index of per-side pairs.
    #[inline(always)]
    pub fn index(self) -> usize {
        match self {
            Side::Inside => 0,
            Side::Outside => 1,
        }
    }
}

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit the rewritten frame on this side (the egress side).
    Forward(Side),
    /// Drop it; counted under the reason.
    Drop(DropReason),
    /// Drop it, counted under the reason as [`Verdict::Drop`], and send its
    /// sender an ICMP host unreachable from [`EngineParams::icmp_source`]
    /// back out of the inside (a subscriber at its limit, RFC 6888 REQ-11b).
    /// The engine returns it only when the error may be sent (its rate
    /// limits and RFC 1812 section 4.3.2.7 allow it, see [`refusal`]), so
    /// the worker writes it without asking again.
    Refuse(DropReason),
    /// Give it to the kernel's stack unchanged.
    PassToKernel(PassReason),
    /// Another worker owns its session: process it there as received on
    /// `arrived_on` (the arrival side, not an egress side as in `Forward`).
    HandOff {
        /// The owning worker.
        worker: u16,
        /// The side the frame arrived on, to process it as.
        arrived_on: Side,
    },
    /// A non-first fragment that came before its first: the engine copied
    /// it into its fragment hold ([`frag`]); free the frame. It comes back
    /// translated from [`Engine::take_released`] when its first fragment
    /// has been translated, or is dropped and counted.
    Held,
}

/// Session capacity above which batches read ahead (prefetch across the batch).
pub const PREFETCH_ABOVE_SESSIONS: u32 = 1 << 16;

/// Session capacity above which the indexes are filled for their size
/// (flow indexes at load 3/4, mapping indexes at 5/6) rather than for
/// short probes (1/2; the flow indexes 1/4 up to
/// [`PREFETCH_ABOVE_SESSIONS`]): 2^21 sessions, where two flow indexes at 1/2 take
/// 32 MiB, more than a last-level cache holds beside the sessions. Below
/// it the shorter probes are worth their memory (1M sessions: established
/// 17% and new sessions 15% faster at 1/2 than at 3/4 and 5/6; mapping
/// indexes at 1/2 rather than 3/4, 35 instructions a new session less);
/// above it every probe goes to memory anyway, a fuller index
/// costs no rate once the batch asks for a probe's second line too
/// (10M: the same as at load 0.6), and memory is what counts.
pub const COMPACT_ABOVE_SESSIONS: u32 = 1 << 21;

/// Frames processed per prefetch round.
pub const BATCH: usize = 64;

const O2I_SALT: u64 = 0x5bd1_e995_0000_0001;
const OMAP_SALT: u64 = 0x27d4_eb2f_1656_67c5;
/// Sessions reclaimed at most per batch by the expiry sweep.
const EXPIRE_BUDGET: usize = 32;

/// A session as listed to operators (`conntrack -L` style).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    /// IP protocol number.
    pub protocol: u8,
    /// Inside address and port (other protocols: port 0).
    pub inside: (u32, u16),
    /// Public address and port.
    pub public: (u32, u16),
    /// Remote address and port.
    pub remote: (u32, u16),
    /// TCP state name, or "udp"/"icmp"/"other".
    pub state: &'static str,
    /// Seconds until it idles out.
    pub expires_in: u32,
    /// Flag bits ([`session::flag`]).
    pub flags: u8,
    /// Traffic came back from the remote (conntrack's `[ASSURED]`).
    pub assured: bool,
}
