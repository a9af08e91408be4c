//! What `masq run` is given ([`RunPlan`], [`ApiPlan`]) and how it fails
//! ([`RunError`]): the types every stage of `run` shares.

use crate::api::ApiError;
use crate::system::SystemError;
use dataplane::nat::{EngineParams, ParamError};
use dataplane::xdp::XdpError;
use std::time::Duration;

/// What `masq run` needs besides the engine parameters.
pub struct RunPlan {
    /// Inside interface.
    pub inside: String,
    /// Outside interface.
    pub outside: String,
    /// Cores for workers (worker i on `cores[i]`, queue i).
    pub cores: Vec<usize>,
    /// How long an idle worker polls before it sleeps on its sockets;
    /// `None`: it never sleeps (busy-polls always).
    pub sleep_after: Option<Duration>,
    /// Each worker's AF_XDP rings and UMEM (`workers.ring_size`, `workers.umem_frames`).
    pub xdp: dataplane::xdp::XdpParams,
    /// Engine parameters for worker 0 (the others differ by `worker`).
    pub engine: Option<EngineParams>,
    /// Static next-hop MACs (inside, outside).
    pub static_macs: [Option<[u8; 6]>; 2],
    /// Print a counter line every second.
    pub live: bool,
    /// Stop after this long (tests, demo); None: until a signal.
    pub duration: Option<Duration>,
    /// The control API, if any.
    pub api: Option<ApiPlan>,
    /// Log every port block handed to or taken back from a subscriber.
    pub nat_events: bool,
    /// Where NAT events are exported (`logging.sinks`).
    pub log_sinks: Vec<config::LogSink>,
    /// Pools (by name) with `logging: none`: their events reach no sink.
    pub unlogged_pools: Vec<String>,
    /// What the host guard lets reach the box from outside.
    pub guard: crate::system::GuardSpec,
    /// One box of an HA pair (`ha:`), if it is one.
    pub ha: Option<crate::ha::HaPlan>,
}

/// What the control API needs at start.
pub struct ApiPlan {
    /// Where it listens.
    pub listen: std::net::SocketAddr,
    /// Bearer token for changes (and off loopback, for reads).
    pub token: Option<String>,
    /// Token that opens `/metrics` only.
    pub metrics_token: Option<String>,
    /// Certificate and key files (TLS; required off loopback).
    pub tls: Option<config::ControlTls>,
    /// The configuration in force, as YAML.
    pub config_yaml: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// The validated configuration in force.
    pub config: config::ValidConfig,
    /// The outside interface's address (masquerade).
    pub outside_addr: Option<u32>,
    /// The box's addresses.
    pub local_addrs: Vec<u32>,
    /// The file SIGHUP re-reads (none: SIGHUP says so and changes nothing).
    pub config_path: Option<std::path::PathBuf>,
}

/// Why `masq run` could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Signal handlers, threads.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Interfaces.
    #[error(transparent)]
    System(#[from] SystemError),
    /// The XDP programs.
    #[error(transparent)]
    Xdp(#[from] XdpError),
    /// /proc/net/route or /proc/net/arp.
    #[error("reading routes and neighbours")]
    Routes(#[source] std::io::Error),
    /// More workers than queues can be numbered.
    #[error(transparent)]
    TooManyWorkers(#[from] std::num::TryFromIntError),
    /// An engine refused its parameters.
    #[error("{0}")]
    Engine(#[from] ParamError),
    /// A worker could not open its AF_XDP sockets.
    #[error("opening AF_XDP sockets: {0}")]
    Sockets(XdpError),
    /// A worker thread ended before saying it was ready.
    #[error("a worker died while starting")]
    WorkerDied,
    /// A worker thread panicked.
    #[error("a worker panicked")]
    WorkerPanicked,
    /// The control API.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The control API's certificate.
    #[error("control.tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
}
