//! Why engine parameters are refused, at start or for a live change: one
//! typed variant per reason, so the control side can tell them apart (and
//! map them to its own errors) without reading strings.
#![forbid(unsafe_code)]

use super::params::{MAX_BLOCKS_PER_SUBSCRIBER, MAX_POOLS};

/// Why parameters were refused (at start, or for a live change).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// A table size outside what the indexes can hold.
    #[error("{table} must be 1..{max}")]
    TableSize {
        /// Which table (`max_sessions`, `max_subscribers`).
        table: &'static str,
        /// The exclusive upper bound.
        max: u32,
    },
    /// A rule or a change names a pool that does not exist.
    #[error("pool {0} does not exist")]
    NoSuchPool(u16),
    /// A masquerade change for a pool that does not masquerade.
    #[error("pool {0} is not a masquerade pool")]
    NotMasquerade(u16),
    /// A static forward whose public address is in no pool.
    #[error("forward to {addr}:{port} is not on a pool address")]
    ForwardOffPool {
        /// The forward's public address.
        addr: std::net::Ipv4Addr,
        /// Its public port.
        port: u16,
    },
    /// A port-range forward whose ranges run backwards, or whose inside
    /// range is neither one port nor as long as the public one.
    #[error("forward from {addr}:{port}: the inside range is one port or as long as the public range")]
    ForwardRange {
        /// The forward's public address.
        addr: std::net::Ipv4Addr,
        /// Its first public port.
        port: u16,
    },
    /// A 1:1 static NAT entry that cannot be kept.
    #[error("static NAT {addr}: {why}")]
    Static {
        /// Its public (or inside) address.
        addr: std::net::Ipv4Addr,
        /// What is wrong.
        why: &'static str,
    },
    /// A static forward for a protocol other than TCP and UDP.
    #[error("forwards are TCP or UDP, not protocol {0}")]
    ForwardProtocol(u8),
    /// This worker's number is not below the worker count.
    #[error("worker {worker} of {workers}")]
    Worker {
        /// This worker.
        worker: u16,
        /// The worker count.
        workers: u16,
    },
    /// One public address in two pools.
    #[error("{0} is in two pools")]
    AddressInTwoPools(std::net::Ipv4Addr),
    /// More public addresses or pools than the engine numbers.
    #[error("too many {0} (at most 16383 addresses and {MAX_POOLS} pools, removed ones counted until restart)")]
    TooMany(&'static str),
    /// A pool's own settings are inconsistent.
    #[error("pool {pool}: {problem}")]
    Pool {
        /// The pool's name.
        pool: String,
        /// What is wrong with it.
        problem: PoolProblem,
    },
    /// A live change that only a restart can make.
    #[error("{0} change only with a restart")]
    NeedsRestart(&'static str),
    /// A live change of timeouts past the expiry wheel built at start.
    #[error("a timeout above {wheel} s (the longest at start) needs a restart")]
    TimeoutPastWheel {
        /// The longest timeout at start, in seconds.
        wheel: u32,
    },
}

/// What is wrong with one pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolProblem {
    /// Block sizes are whole bitmap words.
    #[error("block size {0} is not a multiple of 64")]
    BlockSize(u16),
    /// Blocks per subscriber outside 1..=MAX_BLOCKS_PER_SUBSCRIBER.
    #[error("blocks per subscriber must be 1..={MAX_BLOCKS_PER_SUBSCRIBER}")]
    BlocksPerSubscriber,
    /// No addresses, or a port range that is empty or starts at 0.
    #[error("needs addresses and 1 <= port_min <= port_max")]
    Range,
    /// An RSS port order in a shared pool.
    #[error("an RSS port order needs a port-block pool")]
    OrderNeedsBlocks,
    /// Port orders and addresses do not pair up.
    #[error("one port order per address")]
    OrderPerAddress,
    /// A port order repeats a port or leaves the port range.
    #[error("port order repeats {0} or leaves the port range")]
    OrderPort(u16),
    /// A pool added live shares an address with another.
    #[error("an address is in another pool")]
    AddressInAnotherPool,
    /// A kept pool's ports, mode, filtering or limits changed live.
    #[error("its ports, mode, filtering or limits change only with a restart (or give it a new name)")]
    NeedsRestart,
    /// A deterministic pool (RFC 7422) whose prefix does not fit its
    /// addresses and ports ([`crate::nat::deterministic::DetError`]).
    #[error("deterministic: {0}")]
    Deterministic(crate::nat::deterministic::DetError),
    /// A deterministic pool's overflow names no port-block pool, or a
    /// pool that is not deterministic has one.
    #[error("overflow: `{0}` is not a port-block pool (and only a deterministic pool has an overflow)")]
    Overflow(String),
    /// A kept pool gained an address live.
    #[error("{0} is new; a kept pool may only lose addresses live (add a pool for new ones)")]
    NewAddress(std::net::Ipv4Addr),
}

impl ParamError {
    /// A pool's problem.
    pub fn pool(name: &str, problem: PoolProblem) -> Self {
        ParamError::Pool { pool: name.to_string(), problem }
    }
}
