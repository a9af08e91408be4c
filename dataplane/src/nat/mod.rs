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
//! are reclaimed, never established ones (netfilter FAQ 3.17).
//!
//! Checksums are updated incrementally (RFC 1624) from deltas computed when
//! the session is created; a packet that arrived with a bad checksum leaves
//! with a bad checksum, never a laundered good one.
//!
//! Batches: frames in the common layout (untagged Ethernet, IPv4 without
//! options, TCP or UDP, unfragmented) take the fast lane (`fast`): parsed
//! from fixed-size views, looked up, and rewritten if their session is in
//! its steady state. Above [`PREFETCH_ABOVE_SESSIONS`] the whole batch is
//! parsed and its index slots and sessions read first, so cache misses
//! overlap; below, each frame is done in one pass. Everything else goes
//! through the general path afterwards, in batch order. The result is the
//! same as processing the frames one at a time (a test holds it).
//!
//! Invariants: every live session is in the inside-to-outside (`i2o`) and
//! outside-to-inside (`o2i`) indexes under its own tuple, exactly once; a
//! mapped session is on the chain of its mapping, whose head is in `imap`
//! and `omap`; a mapping's public port is in use in the port maps exactly
//! while its chain is not empty.
#![forbid(unsafe_code)]

mod admin;
mod batch;
pub mod counters;
mod engine;
mod fast;
pub mod frag;
mod hairpin;
pub mod hash;
mod i2o;
mod icmp_error;
pub mod index;
mod keys;
mod lifecycle;
mod lookup;
mod mapping;
mod o2i;
pub mod params;
pub mod parse;
pub mod ports;
mod reconfigure;
mod rewrite;
pub mod rules;
pub mod session;
pub mod tcp;

pub use counters::{Counters, DropReason, PassReason};
pub use engine::{subscriber_owner, Engine};
pub use params::*;
pub use reconfigure::reconfigure_check;

use crate::wire::bytes::{set_u16, set_u32, u16_at, u32_at};
use crate::wire::checksum::{add, apply_delta, apply_delta_udp, delta32, fold, fold_wide, negate, sum};
use crate::wire::icmp;
use batch::{Created, Item, Pre};
use engine::ForwardRt;
use frag::{frag_key, Fragments};
use index::Index;
use parse::{parse, parse_embedded, parse_fast, FastKey, Kind, Parsed};
use ports::Ports;
use rewrite::*;
use session::{class, flag, pcode, Session, SessionTable, NIL};

/// Which interface a frame came from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Subscribers.
    Inside,
    /// The internet.
    Outside,
}

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit the rewritten frame on this side.
    Forward(Side),
    /// Drop it; counted under the reason.
    Drop(DropReason),
    /// Give it to the kernel's stack unchanged.
    PassToKernel(PassReason),
    /// Another worker owns its session: process it there as received on `side`.
    HandOff {
        /// The owning worker.
        worker: u16,
        /// The side to process it as.
        side: Side,
    },
}

/// Session capacity above which batches read ahead (prefetch across the batch).
pub const PREFETCH_ABOVE_SESSIONS: u32 = 1 << 16;

/// Frames processed per prefetch round.
pub const BATCH: usize = 64;

/// TTL decrement as a checksum delta: the TTL/protocol word drops by 0x0100.
const TTL_DELTA: u16 = 0xfeff;
const O2I_SALT: u64 = 0x5bd1_e995_0000_0001;
const OMAP_SALT: u64 = 0x27d4_eb2f_1656_67c5;
/// Sessions reclaimed at most per batch by the expiry sweep.
const EXPIRE_BUDGET: usize = 32;

/// L4 offsets per protocol code: (port rewritten i2o, port rewritten o2i, checksum).
const L4_OFFS: [(usize, usize, usize); 3] = [(0, 2, 16), (0, 2, 6), (4, 4, 2)];

/// A session as listed to operators (`conntrack -L` style).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    /// IP protocol number.
    pub protocol: u8,
    /// Inside address and port.
    pub inside: (u32, u16),
    /// Public address and port.
    pub public: (u32, u16),
    /// Remote address and port.
    pub remote: (u32, u16),
    /// TCP state name, or "udp"/"icmp".
    pub state: &'static str,
    /// Seconds until it idles out.
    pub expires_in: u32,
    /// Flag bits ([`session::flag`]).
    pub flags: u8,
}

fn pcode_of(proto: u8) -> u16 {
    match proto {
        6 => pcode::TCP,
        17 => pcode::UDP,
        _ => pcode::ICMP,
    }
}

fn proto_of(pc: u16) -> u8 {
    match pc {
        pcode::TCP => 6,
        pcode::UDP => 17,
        _ => 1,
    }
}
